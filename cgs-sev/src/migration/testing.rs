//! A small real-mode guest that keeps writing memory, for migration tests and examples.
//!
//! Loaded at [`COUNTER_LOAD_ADDR`], it increments a 16-bit counter kept in `AX` and at
//! [`COUNTER_ADDR`], stores it into one of the eight pages at [`DATA_BASE`]`..+0x8000`
//! (page `counter % 8`), reports it with `out 0x80, ax` ([`PROGRESS_PORT`]) and, once the
//! counter reaches the target, prints its message on COM1 and halts. Every progress exit is a
//! point where the VMM may stop the vCPU, fetch the dirty log or save the vCPU for migration; a
//! migrated guest resumes the loop where it stopped.

use cgs_core::{Error, Result};

/// Guest-physical address the payload is loaded at (its entry point).
pub const COUNTER_LOAD_ADDR: u16 = 0x1000;
/// Guest-physical address of the counter.
pub const COUNTER_ADDR: u64 = 0x500;
/// First of the eight data pages the guest writes.
pub const DATA_BASE: u64 = 0x8000;
/// Port of the progress write (`out 0x80, ax`, two bytes: the counter).
pub const PROGRESS_PORT: u16 = 0x80;

const CODE_LEN: u16 = 0x2b;

/// The payload: counts to `target`, then prints `msg` on COM1 and halts. Padded to 4 KiB.
pub fn counter_payload(target: u16, msg: &[u8]) -> Result<Vec<u8>> {
    let msg_addr = COUNTER_LOAD_ADDR + CODE_LEN;
    if msg.contains(&0) || usize::from(CODE_LEN) + msg.len() + 1 > 4096 || target == 0 {
        return Err(Error::invalid_input(
            "counter payload",
            "the message must fit in the page without NUL bytes and the target must be non-zero",
        ));
    }
    let [tl, th] = target.to_le_bytes();
    let [ml, mh] = msg_addr.to_le_bytes();
    #[rustfmt::skip]
    let mut code = vec![
        0xa1, 0x00, 0x05,       // 0x00 mov ax, [0x500]
        0x40,                   // 0x03 inc ax
        0xa3, 0x00, 0x05,       // 0x04 mov [0x500], ax
        0x89, 0xc3,             // 0x07 mov bx, ax
        0x83, 0xe3, 0x07,       // 0x09 and bx, 7
        0xc1, 0xe3, 0x0c,       // 0x0c shl bx, 12
        0x89, 0x87, 0x00, 0x80, // 0x0f mov [bx + 0x8000], ax
        0xe7, 0x80,             // 0x13 out 0x80, ax
        0x3d, tl, th,           // 0x15 cmp ax, target
        0x72, 0xe9,             // 0x18 jb 0x03
        0xbe, ml, mh,           // 0x1a mov si, msg
        0xba, 0xf8, 0x03,       // 0x1d mov dx, 0x3f8
        0xac,                   // 0x20 lodsb
        0x84, 0xc0,             // 0x21 test al, al
        0x74, 0x03,             // 0x23 jz 0x28
        0xee,                   // 0x25 out dx, al
        0xeb, 0xf8,             // 0x26 jmp 0x20
        0xf4,                   // 0x28 hlt
        0xeb, 0xfd,             // 0x29 jmp 0x28
    ];
    debug_assert_eq!(code.len(), usize::from(CODE_LEN));
    code.extend_from_slice(msg);
    code.push(0);
    code.resize(4096, 0);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape() {
        let p = counter_payload(1000, b"done\n").unwrap();
        assert_eq!(p.len(), 4096);
        assert_eq!(&p[0x15..0x18], &[0x3d, 0xe8, 0x03]);
        assert_eq!(&p[0x1b..0x1d], &(0x1000u16 + 0x2b).to_le_bytes());
        assert_eq!(&p[0x2b..0x31], b"done\n\0");
        assert!(counter_payload(0, b"x").is_err());
        assert!(counter_payload(1, b"a\0").is_err());
    }
}
