//! Dirty-page tracking with KVM's dirty log (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_GET_DIRTY_LOG`).
//!
//! [`DirtyLog::enable`] re-registers the VMM's memslots with `KVM_MEM_LOG_DIRTY_PAGES` (a
//! flags-only change of each slot: same GPA, size and host mapping), and [`DirtyLog::fetch`]
//! returns the pages the guest wrote since the previous fetch (`KVM_GET_DIRTY_LOG` returns and
//! clears each slot's bitmap). Writes by the VMM itself (device emulation) do not appear in KVM's
//! log; a VMM that writes guest memory while migrating must add those pages itself.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use cgs_core::{Error, Result};

use super::stream::PAGE_SIZE;

/// One memslot under dirty logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtySlot {
    /// The KVM memslot number the VMM registered the range with.
    pub slot: u32,
    /// First guest-physical address of the slot.
    pub gpa: u64,
    /// Length of the slot in bytes.
    pub size: u64,
    host_addr: u64,
}

/// Dirty logging over a set of memslots.
#[derive(Debug)]
pub struct DirtyLog {
    slots: Vec<DirtySlot>,
}

impl DirtyLog {
    /// Turn dirty logging on for the memslots backing `mem`: region `i` of `mem` must be
    /// registered as memslot `first_slot + i` (as `cgs_core::testing::map_guest_memory` does with
    /// `first_slot` 0). The host mapping comes from `mem`, so the slot keeps pointing at the same
    /// memory; `mem` must stay alive as long as the VM uses it, as for the original registration.
    pub fn enable(vm: &VmFd, mem: &GuestMemoryMmap, first_slot: u32) -> Result<Self> {
        let mut slots = Vec::new();
        for (i, region) in mem.iter().enumerate() {
            let slot = u32::try_from(i)
                .ok()
                .and_then(|i| first_slot.checked_add(i))
                .ok_or_else(|| Error::invalid_input("memslot", "slot number overflows"))?;
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
            slots.push(DirtySlot {
                slot,
                gpa: region.start_addr().0,
                size: region.len(),
                host_addr: host as u64,
            });
        }
        let log = DirtyLog { slots };
        if let Err(e) = log.set_flags(vm, KVM_MEM_LOG_DIRTY_PAGES) {
            // Leave no slot half-switched.
            let _ = log.set_flags(vm, 0);
            return Err(e);
        }
        Ok(log)
    }

    fn set_flags(&self, vm: &VmFd, flags: u32) -> Result<()> {
        for s in &self.slots {
            let desc = kvm_userspace_memory_region {
                slot: s.slot,
                flags,
                guest_phys_addr: s.gpa,
                memory_size: s.size,
                userspace_addr: s.host_addr,
            };
            // SAFETY: the slot is re-registered with the GPA, size and host mapping taken from the
            // live `GuestMemoryMmap` the VMM registered it with; only the flags change, so KVM
            // keeps using memory the caller already keeps alive for the VM.
            unsafe { vm.set_user_memory_region(desc) }
                .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION (dirty logging)", e))?;
        }
        Ok(())
    }

    /// The slots under logging.
    pub fn slots(&self) -> &[DirtySlot] {
        &self.slots
    }

    /// The GPAs of every page written since the previous fetch (or since `enable`), in address
    /// order; the log is cleared.
    pub fn fetch(&self, vm: &VmFd) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for s in &self.slots {
            let size = usize::try_from(s.size).map_err(|_| {
                Error::invalid_input("memslot", "slot larger than the address space")
            })?;
            let bitmap = vm
                .get_dirty_log(s.slot, size)
                .map_err(|e| Error::kvm("KVM_GET_DIRTY_LOG", e))?;
            let pages = s.size / PAGE_SIZE;
            for (w, word) in bitmap.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let b = u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    let page = w as u64 * 64 + b;
                    if page < pages {
                        out.push(s.gpa + page * PAGE_SIZE);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Turn dirty logging off again.
    pub fn disable(self, vm: &VmFd) -> Result<()> {
        self.set_flags(vm, 0)
    }

    /// Whether `gpa` lies in a logged slot.
    pub fn covers(&self, gpa: GuestAddress) -> bool {
        self.slots
            .iter()
            .any(|s| gpa.0 >= s.gpa && gpa.0 - s.gpa < s.size)
    }
}
