//! Small real guests for SEV tests and examples on any KVM host.
//!
//! The vCPUs of an SEV-ES/SNP guest start at the x86 reset vector (CS base 0xFFFF0000,
//! IP 0xFFF0), as the [`VmsaBuilder`](crate::measure::vmsa::VmsaBuilder) describes them, so the
//! test payload lives in the last page below 4 GiB: [`reset_vector_payload`] writes a message to
//! the serial port and halts. [`GmemRegion`] backs a range of guest memory with guest_memfd
//! (`GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED`, bound with
//! `KVM_SET_USER_MEMORY_REGION2` through cgs-gmem), as SEV-SNP requires.

use std::sync::Arc;

use cgs_core::{Error, Result};
use cgs_gmem::binding::{GmemLayout, GmemSlot, SharedDiscard};
use cgs_gmem::memfd::{GmemFlags, GuestMemfd};
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegion;
use vm_memory::{VolatileMemory, VolatileSlice};

/// GPA of the reset-vector page.
pub const RESET_PAGE_GPA: u64 = 0xFFFF_F000;

/// A 4 KiB page for [`RESET_PAGE_GPA`]: a far-reset-vector jump at offset 0xFF0 to real-mode
/// code at offset 0 that writes `msg` to COM1 (`cgs_core::testing::SERIAL_PORT`) and halts. The
/// code reads the message through CS (base 0xFFFF0000), so DS may be anything.
pub fn reset_vector_payload(msg: &[u8]) -> Result<Vec<u8>> {
    const MSG_OFF: usize = 0x20;
    if msg.len() > 0xF00 || msg.contains(&0) {
        return Err(Error::invalid_input(
            "payload",
            "message must be shorter than 3840 bytes and contain no NUL",
        ));
    }
    let [plo, phi] = cgs_core::testing::SERIAL_PORT.to_le_bytes();
    let mut page = vec![0u8; 4096];
    let code = [
        0xBE, 0x20, 0xF0, // mov si, 0xF020 (the message)
        0xBA, plo, phi, // mov dx, COM1
        0x2E, 0xAC, // next: cs lodsb
        0x84, 0xC0, // test al, al
        0x74, 0x03, // jz done
        0xEE, // out dx, al
        0xEB, 0xF7, // jmp next
        0xF4, // done: hlt
        0xEB, 0xFD, // jmp done (if woken)
    ];
    page[..code.len()].copy_from_slice(&code);
    page[MSG_OFF..MSG_OFF + msg.len()].copy_from_slice(msg);
    // At IP 0xFFF0: jmp near 0xF000 (rel16 from 0xFFF3).
    page[0xFF0..0xFF3].copy_from_slice(&[0xE9, 0x0D, 0xF0]);
    Ok(page)
}

/// A guest_memfd-backed memslot, mapped into the VMM (`GUEST_MEMFD_FLAG_MMAP`) so the launch can
/// write and measure the pages in place. Built on cgs-gmem's [`GuestMemfd`] and [`GmemLayout`].
#[derive(Debug)]
pub struct GmemRegion {
    // Declared before `map` so the memslot's layout entry (holding the memfd) goes first; the
    // mapping is unmapped when `map` drops.
    _layout: GmemLayout,
    map: MmapRegion,
    gpa: u64,
}

impl GmemRegion {
    /// Create a guest_memfd of `size` bytes and bind it as memslot `slot` at `gpa`.
    pub fn new(vm: &VmFd, slot: u32, gpa: u64, size: usize) -> Result<Self> {
        if size == 0 || !size.is_multiple_of(4096) || !gpa.is_multiple_of(4096) {
            return Err(Error::invalid_input(
                "guest_memfd region",
                "not page aligned",
            ));
        }
        let gmem = Arc::new(GuestMemfd::create(
            vm,
            size as u64,
            GmemFlags::MMAP | GmemFlags::INIT_SHARED,
        )?);
        let map = gmem.mmap_region()?;
        let mut layout = GmemLayout::new();
        let s = GmemSlot {
            slot,
            gpa,
            size: size as u64,
            userspace_addr: map.as_ptr() as u64,
            gmem,
            gmem_offset: 0,
            shared_discard: SharedDiscard::Keep,
        };
        // SAFETY: `userspace_addr` is the mapping `map`, owned by the returned region, which the
        // caller keeps alive as long as the VM uses the slot.
        unsafe { layout.bind(vm, s)? };
        Ok(GmemRegion {
            _layout: layout,
            map,
            gpa,
        })
    }

    /// First GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.map.size()
    }

    /// Whether the region is empty (never).
    pub fn is_empty(&self) -> bool {
        self.map.size() == 0
    }

    /// The VMM's mapping of `[gpa, gpa + len)`.
    pub fn slice(&self, gpa: u64, len: usize) -> Result<VolatileSlice<'_>> {
        let outside = || {
            Error::invalid_input(
                "guest_memfd region",
                format!("[{gpa:#x}, +{len:#x}) is outside the region"),
            )
        };
        let off = usize::try_from(gpa.checked_sub(self.gpa).ok_or_else(outside)?)
            .map_err(|_| outside())?;
        self.map.get_slice(off, len).map_err(|_| outside())
    }

    /// Copy `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.slice(gpa, data.len())?.copy_from(data);
        Ok(())
    }

    /// Read `len` bytes at `gpa`.
    pub fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.slice(gpa, len)?.copy_to(&mut b[..]);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_layout() {
        let p = reset_vector_payload(b"ok").unwrap();
        assert_eq!(p.len(), 4096);
        assert_eq!(&p[0xFF0..0xFF3], &[0xE9, 0x0D, 0xF0]);
        assert_eq!(&p[0x20..0x23], b"ok\0");
        assert!(reset_vector_payload(b"a\0").is_err());
    }
}
