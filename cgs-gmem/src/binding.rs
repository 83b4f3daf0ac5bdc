//! Binding guest_memfd ranges to memslots (`KVM_SET_USER_MEMORY_REGION2` with
//! `KVM_MEM_GUEST_MEMFD`), next to the VMM's own vm-memory regions for the shared side.
//!
//! A [`GmemSlot`] pairs a GPA range with its shared backing (`userspace_addr`, usually the host
//! address of a vm-memory region) and its private backing (a [`GuestMemfd`] range). One
//! guest_memfd may back several slots at disjoint offsets. [`GmemLayout`] validates slots before
//! KVM sees them (alignment, overflow, GPA overlap, guest_memfd range overlap, slot ids), keeps
//! the guest_memfds alive, translates GPAs, and discards either side of a range (the
//! [`Discard`] trait the conversion path uses).

use std::sync::Arc;

use cgs_core::{Error, Result};
use kvm_bindings::{kvm_userspace_memory_region2, KVM_MEM_GUEST_MEMFD};
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryRegion, GuestRegionMmap, MemoryRegionAddress};

use crate::memfd::{check_range, os_error, GuestMemfd, PAGE_SIZE};

/// How to drop the shared copy of a range when it becomes private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDiscard {
    /// `madvise(MADV_DONTNEED)`: private anonymous mappings (vm-memory's default).
    DontNeed,
    /// `madvise(MADV_REMOVE)`: shared file or memfd mappings (frees the backing pages).
    Remove,
    /// Keep the shared pages (e.g. the shared side *is* the guest_memfd mapping, or the VMM
    /// discards itself).
    Keep,
}

/// One memslot backed by guest_memfd.
#[derive(Debug, Clone)]
pub struct GmemSlot {
    /// KVM slot id.
    pub slot: u32,
    /// First guest physical address.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Host address of the shared backing (`size` bytes mapped by the VMM).
    pub userspace_addr: u64,
    /// The private backing.
    pub gmem: Arc<GuestMemfd>,
    /// Offset of the slot's first page in `gmem`.
    pub gmem_offset: u64,
    /// How the shared side is discarded.
    pub shared_discard: SharedDiscard,
}

impl GmemSlot {
    /// A slot for a VMM's vm-memory region (its GPA, size and host address are the slot's; its
    /// mapping is the shared side), backed privately by `gmem` from `gmem_offset`. The shared
    /// side is discarded with `MADV_REMOVE` when the region maps a file, else `MADV_DONTNEED`.
    pub fn from_region(
        slot: u32,
        region: &GuestRegionMmap,
        gmem: Arc<GuestMemfd>,
        gmem_offset: u64,
    ) -> Result<Self> {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| Error::invalid_input("guest memory region", e.to_string()))?;
        Ok(GmemSlot {
            slot,
            gpa: region.start_addr().0,
            size: region.len(),
            userspace_addr: host as u64,
            gmem,
            gmem_offset,
            shared_discard: if region.file_offset().is_some() {
                SharedDiscard::Remove
            } else {
                SharedDiscard::DontNeed
            },
        })
    }

    fn end(&self) -> u64 {
        self.gpa + self.size
    }

    /// The `KVM_SET_USER_MEMORY_REGION2` argument for this slot.
    pub fn region2(&self) -> kvm_userspace_memory_region2 {
        kvm_userspace_memory_region2 {
            slot: self.slot,
            flags: KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: self.gpa,
            memory_size: self.size,
            userspace_addr: self.userspace_addr,
            guest_memfd_offset: self.gmem_offset,
            guest_memfd: self.gmem.raw_fd() as u32,
            ..Default::default()
        }
    }
}

/// Dropping one side of a GPA range (used by the conversion path).
pub trait Discard {
    /// Free the private (guest_memfd) pages of `[gpa, gpa + size)` (conversion to shared).
    fn discard_private(&mut self, gpa: u64, size: u64) -> Result<()>;
    /// Free the shared pages of `[gpa, gpa + size)` (conversion to private).
    fn discard_shared(&mut self, gpa: u64, size: u64) -> Result<()>;
}

/// The guest_memfd-backed memslots of one VM, ordered by GPA.
#[derive(Debug, Default)]
pub struct GmemLayout {
    slots: Vec<GmemSlot>,
}

impl GmemLayout {
    /// An empty layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slots, ordered by GPA.
    pub fn slots(&self) -> &[GmemSlot] {
        &self.slots
    }

    /// Check `s` against the layout without adding it.
    pub fn validate(&self, s: &GmemSlot) -> Result<()> {
        let what = "guest_memfd memslot";
        if s.size == 0
            || s.gpa % PAGE_SIZE != 0
            || s.size % PAGE_SIZE != 0
            || s.userspace_addr % PAGE_SIZE != 0
        {
            return Err(Error::invalid_input(
                what,
                "GPA, size and userspace address must be 4 KiB aligned and the size non-zero",
            ));
        }
        if s.gpa.checked_add(s.size).is_none() || s.userspace_addr.checked_add(s.size).is_none() {
            return Err(Error::invalid_input(what, "range wraps around"));
        }
        check_range(what, s.gmem_offset, s.size, s.gmem.size())?;
        for o in &self.slots {
            if o.slot == s.slot {
                return Err(Error::invalid_input(
                    what,
                    format!("slot {} is already used", s.slot),
                ));
            }
            if s.gpa < o.end() && o.gpa < s.end() {
                return Err(Error::invalid_input(
                    what,
                    format!(
                        "GPA range {:#x}+{:#x} overlaps slot {}",
                        s.gpa, s.size, o.slot
                    ),
                ));
            }
            if Arc::ptr_eq(&o.gmem, &s.gmem)
                && s.gmem_offset < o.gmem_offset + o.size
                && o.gmem_offset < s.gmem_offset + s.size
            {
                return Err(Error::invalid_input(
                    what,
                    format!("guest_memfd range is already bound to slot {}", o.slot),
                ));
            }
        }
        Ok(())
    }

    /// Validate `s` and record it without telling KVM (for VMMs that issue the ioctl
    /// themselves, and for tests).
    pub fn add(&mut self, s: GmemSlot) -> Result<()> {
        self.validate(&s)?;
        let at = self.slots.partition_point(|o| o.gpa < s.gpa);
        self.slots.insert(at, s);
        Ok(())
    }

    /// Validate `s`, register it with `KVM_SET_USER_MEMORY_REGION2` and record it.
    ///
    /// # Safety
    ///
    /// `s.userspace_addr` must point to `s.size` bytes of memory mapped by the caller that stays
    /// mapped for as long as the memslot exists (KVM and the guest access it).
    pub unsafe fn bind(&mut self, vm: &VmFd, s: GmemSlot) -> Result<()> {
        self.validate(&s)?;
        // SAFETY: the caller guarantees the shared mapping outlives the memslot; the
        // guest_memfd is kept alive by the Arc stored in the layout.
        unsafe { vm.set_user_memory_region2(s.region2()) }
            .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION2", e))?;
        self.add(s)
    }

    /// Delete slot `slot` from KVM (size 0) and from the layout.
    pub fn unbind(&mut self, vm: &VmFd, slot: u32) -> Result<()> {
        let Some(i) = self.slots.iter().position(|s| s.slot == slot) else {
            return Err(Error::invalid_input(
                "guest_memfd memslot",
                format!("slot {slot} is not bound"),
            ));
        };
        let mut region = self.slots[i].region2();
        region.memory_size = 0;
        // SAFETY: deleting a memslot makes KVM stop using its memory.
        unsafe { vm.set_user_memory_region2(region) }
            .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION2", e))?;
        self.slots.remove(i);
        Ok(())
    }

    /// The slot containing `gpa`.
    #[inline]
    pub fn find(&self, gpa: u64) -> Option<&GmemSlot> {
        let i = self.slots.partition_point(|s| s.end() <= gpa);
        self.slots.get(i).filter(|s| s.gpa <= gpa)
    }

    /// `true` when every byte of `[gpa, gpa + size)` is inside some slot.
    pub fn covers(&self, gpa: u64, size: u64) -> bool {
        let Some(end) = gpa.checked_add(size) else {
            return false;
        };
        let mut at = gpa;
        while at < end {
            match self.find(at) {
                Some(s) => at = s.end(),
                None => return false,
            }
        }
        true
    }

    /// Call `f(slot, offset in slot, length)` for the pieces of `[gpa, gpa + size)`, which
    /// must be fully covered by slots (checked before the first call).
    fn for_each_piece(
        &self,
        gpa: u64,
        size: u64,
        mut f: impl FnMut(&GmemSlot, u64, u64) -> Result<()>,
    ) -> Result<()> {
        // The common case, one slot holding the whole range: one lookup.
        if let Some(s) = self.find(gpa) {
            if gpa.checked_add(size).is_some_and(|end| end <= s.end()) {
                return f(s, gpa - s.gpa, size);
            }
        }
        if !self.covers(gpa, size) {
            return Err(not_backed(gpa, size));
        }
        let end = gpa + size;
        let mut at = gpa;
        while at < end {
            let Some(s) = self.find(at) else { break };
            let len = s.end().min(end) - at;
            f(s, at - s.gpa, len)?;
            at += len;
        }
        Ok(())
    }

    /// One past the highest GPA any slot covers (0 when empty).
    pub fn end(&self) -> u64 {
        self.slots.last().map_or(0, GmemSlot::end)
    }
}

/// A range some part of which no slot backs (out of line).
#[cold]
#[inline(never)]
fn not_backed(gpa: u64, size: u64) -> Error {
    Error::invalid_input(
        "guest range",
        format!("{gpa:#x}+{size:#x} is not fully backed by guest_memfd memslots"),
    )
}

impl Discard for GmemLayout {
    #[inline]
    fn discard_private(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.for_each_piece(gpa, size, |s, off, len| {
            s.gmem.punch_hole(s.gmem_offset + off, len)
        })
    }

    #[inline]
    fn discard_shared(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.for_each_piece(gpa, size, |s, off, len| {
            let advice = match s.shared_discard {
                SharedDiscard::DontNeed => libc::MADV_DONTNEED,
                SharedDiscard::Remove => libc::MADV_REMOVE,
                SharedDiscard::Keep => return Ok(()),
            };
            let addr = (s.userspace_addr + off) as *mut libc::c_void;
            // SAFETY: the range lies inside the slot's shared mapping, which the `bind` caller
            // keeps mapped; dropping its pages is what the conversion asks for (guest memory is
            // only ever accessed through volatile copies, never through Rust references).
            let ret = unsafe { libc::madvise(addr, len as usize, advice) };
            if ret != 0 {
                return Err(os_error(if advice == libc::MADV_REMOVE {
                    "madvise(MADV_REMOVE)"
                } else {
                    "madvise(MADV_DONTNEED)"
                }));
            }
            Ok(())
        })
    }
}
