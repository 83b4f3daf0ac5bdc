//! The kernel-hashes table of measured direct boot (QEMU `kernel-hashes=on`).
//!
//! QEMU hashes the kernel, initrd and command line it hands to OVMF over fw_cfg and places a
//! table of the three SHA-256 digests in guest memory, where it is measured; OVMF refuses to boot
//! anything whose hash differs. Layout (packed, GUIDs little-endian):
//! `{GUID 9438d606-…, u16 len = 168, entry cmdline, entry initrd, entry kernel}`, each entry
//! `{GUID, u16 len = 50, sha256[32]}`, padded with zeros to 176 bytes.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::error::{MeasureError, Result};
use super::guid::{self, Guid};

/// One table entry: GUID, `u16` length, SHA-256.
const ENTRY_LEN: usize = 16 + 2 + 32;
/// The unpadded table: header GUID, `u16` length, three entries.
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// The table as QEMU writes it: rounded up to 16 bytes.
pub const PADDED_TABLE_LEN: usize = TABLE_LEN.div_ceil(16) * 16;
/// A page.
pub const PAGE_SIZE: usize = 4096;

const _: () = assert!(ENTRY_LEN == 50 && TABLE_LEN == 168 && PADDED_TABLE_LEN == 176);

/// The three SHA-256 digests of measured direct boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelHashes {
    /// SHA-256 of the kernel image as given to QEMU's `-kernel`.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of no bytes without one).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line with its trailing NUL (of `"\0"` without one).
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// From precomputed digests (e.g. when only the hashes of a kernel are known).
    pub fn from_hashes(kernel: [u8; 32], initrd: [u8; 32], cmdline: [u8; 32]) -> Self {
        KernelHashes {
            kernel,
            initrd,
            cmdline,
        }
    }

    /// From contents: the kernel, an optional initrd and an optional command line (without the
    /// NUL; QEMU appends it). An empty command line hashes like a missing one.
    pub fn from_contents(kernel: &[u8], initrd: Option<&[u8]>, cmdline: Option<&[u8]>) -> Self {
        KernelHashes {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            cmdline: Self::cmdline_hash(cmdline.unwrap_or(&[])),
        }
    }

    /// SHA-256 of `cmdline ‖ NUL`.
    pub fn cmdline_hash(cmdline: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(cmdline);
        h.update([0u8]);
        h.finalize().into()
    }

    /// SHA-256 of everything `reader` yields (for kernels and initrds streamed from files).
    pub fn hash_reader(mut reader: impl Read) -> std::io::Result<[u8; 32]> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().into())
    }

    /// The 176-byte padded table.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut t = [0u8; PADDED_TABLE_LEN];
        t[..16].copy_from_slice(&guid::SEV_HASH_TABLE_HEADER.0);
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        let entries: [(&Guid, &[u8; 32]); 3] = [
            (&guid::SEV_CMDLINE_ENTRY, &self.cmdline),
            (&guid::SEV_INITRD_ENTRY, &self.initrd),
            (&guid::SEV_KERNEL_ENTRY, &self.kernel),
        ];
        for (i, (g, hash)) in entries.iter().enumerate() {
            let o = 18 + i * ENTRY_LEN;
            t[o..o + 16].copy_from_slice(&g.0);
            t[o + 16..o + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[o + 18..o + ENTRY_LEN].copy_from_slice(&hash[..]);
        }
        t
    }

    /// A zeroed region of `len` bytes (a multiple of 4 KiB) with the table at `offset`, as QEMU
    /// fills the SNP `SNP_KERNEL_HASHES` section (`offset` = table GPA & 0xFFF).
    pub fn region(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        let end = offset
            .checked_add(PADDED_TABLE_LEN)
            .filter(|&e| e <= len && offset < PAGE_SIZE)
            .ok_or_else(|| {
                MeasureError::invalid(
                    "kernel hashes placement",
                    format!("table at offset {offset:#x} does not fit {len:#x} bytes"),
                )
            })?;
        let mut page = vec![0u8; len];
        page[offset..end].copy_from_slice(&self.table());
        Ok(page)
    }

    /// Parses a table (at least 168 bytes; the padding is not checked), e.g. from guest memory.
    pub fn parse_table(t: &[u8]) -> Result<Self> {
        let bad = |why: &'static str| MeasureError::invalid("kernel hashes table", why);
        if t.len() < TABLE_LEN {
            return Err(bad("shorter than 168 bytes"));
        }
        if t[..16] != guid::SEV_HASH_TABLE_HEADER.0 {
            return Err(bad("wrong header GUID"));
        }
        if u16::from_le_bytes([t[16], t[17]]) as usize != TABLE_LEN {
            return Err(bad("wrong table length"));
        }
        let mut out = [[0u8; 32]; 3];
        for (i, g) in [
            &guid::SEV_CMDLINE_ENTRY,
            &guid::SEV_INITRD_ENTRY,
            &guid::SEV_KERNEL_ENTRY,
        ]
        .iter()
        .enumerate()
        {
            let o = 18 + i * ENTRY_LEN;
            if t[o..o + 16] != g.0 {
                return Err(bad("entry GUID out of order"));
            }
            if u16::from_le_bytes([t[o + 16], t[o + 17]]) as usize != ENTRY_LEN {
                return Err(bad("wrong entry length"));
            }
            out[i].copy_from_slice(&t[o + 18..o + ENTRY_LEN]);
        }
        Ok(KernelHashes::from_hashes(out[2], out[1], out[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::hex;

    #[test]
    fn empty_inputs_match_known_sha256() {
        let h = KernelHashes::from_contents(b"", None, None);
        assert_eq!(
            hex(&h.kernel),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(h.initrd, h.kernel);
        // SHA-256 of a single NUL byte.
        assert_eq!(
            hex(&h.cmdline),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(KernelHashes::from_contents(b"", None, Some(b"")), h);
    }

    #[test]
    fn table_layout_and_round_trip() {
        let h = KernelHashes::from_contents(b"kernel", Some(b"initrd"), Some(b"console=ttyS0"));
        let t = h.table();
        assert_eq!(&t[..16], &guid::SEV_HASH_TABLE_HEADER.0);
        assert_eq!(&t[16..18], &168u16.to_le_bytes());
        assert_eq!(&t[18..34], &guid::SEV_CMDLINE_ENTRY.0);
        assert_eq!(&t[34..36], &50u16.to_le_bytes());
        assert_eq!(&t[36..68], &h.cmdline);
        assert_eq!(&t[68..84], &guid::SEV_INITRD_ENTRY.0);
        assert_eq!(&t[118..134], &guid::SEV_KERNEL_ENTRY.0);
        assert_eq!(&t[136..168], &h.kernel);
        assert_eq!(&t[168..], &[0u8; 8]);
        assert_eq!(KernelHashes::parse_table(&t).unwrap(), h);
        let page = h.region(0xC00, 4096).unwrap();
        assert_eq!(&page[0xC00..0xC00 + 176], &t[..]);
        assert!(page[..0xC00].iter().all(|&b| b == 0));
        assert!(h.region(4000, 4096).is_err());
        assert!(h.region(usize::MAX, 4096).is_err());
        assert_eq!(KernelHashes::hash_reader(&b"kernel"[..]).unwrap(), h.kernel);
    }
}
