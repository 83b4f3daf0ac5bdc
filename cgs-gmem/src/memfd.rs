//! guest_memfd: KVM-owned memory for a VM's private (and, with `MMAP`, shared) pages.
//!
//! [`GuestMemfd`] owns the file descriptor `KVM_CREATE_GUEST_MEMFD` returns. Creation validates
//! the size (non-zero, 4 KiB multiple) and the flags against what this VM supports
//! (`KVM_CAP_GUEST_MEMFD_FLAGS`, probed with [`supported_flags`]) before asking KVM, so a bad
//! request is a typed error rather than an `EINVAL`. [`GuestMemfd::punch_hole`] and
//! [`GuestMemfd::allocate`] wrap `fallocate`; [`GuestMemfd::mmap_region`] maps the file as a
//! vm-memory [`MmapRegion`] when the memfd was created with [`GmemFlags::MMAP`], so a VMM adds it
//! to its `GuestMemoryMmap` like any other region.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use cgs_core::{Error, Result};
use kvm_bindings::kvm_create_guest_memfd;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, MmapRegion};

use crate::uapi;

/// Size of a page as guest_memfd sees it.
pub const PAGE_SIZE: u64 = 4096;

bitflags::bitflags! {
    /// `KVM_CREATE_GUEST_MEMFD` flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GmemFlags: u64 {
        /// `GUEST_MEMFD_FLAG_MMAP`: the file may be mmap()ed (shared pages are then faulted
        /// through guest_memfd too).
        const MMAP = uapi::GUEST_MEMFD_FLAG_MMAP;
        /// `GUEST_MEMFD_FLAG_INIT_SHARED`: every page starts shared (useful with `MMAP`).
        const INIT_SHARED = uapi::GUEST_MEMFD_FLAG_INIT_SHARED;
    }
}

/// What this VM's KVM offers for guest_memfd: `None` when `KVM_CAP_GUEST_MEMFD` is absent, else
/// the flags `KVM_CAP_GUEST_MEMFD_FLAGS` reports (empty on kernels before 6.18). Unknown bits the
/// kernel reports are kept so a caller can see them.
pub fn supported_flags(vm: &VmFd) -> Option<GmemFlags> {
    if vm.check_extension_raw(libc::c_ulong::from(uapi::KVM_CAP_GUEST_MEMFD)) <= 0 {
        return None;
    }
    let mask = vm.check_extension_raw(libc::c_ulong::from(uapi::KVM_CAP_GUEST_MEMFD_FLAGS));
    Some(GmemFlags::from_bits_retain(
        u64::try_from(mask).unwrap_or(0),
    ))
}

/// Check that `[offset, offset + len)` is a non-empty, page-aligned range inside `size` bytes.
pub(crate) fn check_range(what: &'static str, offset: u64, len: u64, size: u64) -> Result<()> {
    if len == 0 || offset % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return Err(range_error(what, offset, len, None));
    }
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(range_error(what, offset, len, Some(size))),
    }
}

/// The error of [`check_range`]: unaligned/empty (`size` `None`) or outside the file (out of
/// line, so the formatting stays off the conversion path).
#[cold]
#[inline(never)]
fn range_error(what: &'static str, offset: u64, len: u64, size: Option<u64>) -> Error {
    let why = match size {
        None => {
            format!("offset {offset:#x} and length {len:#x} must be non-zero multiples of 4 KiB")
        }
        Some(size) => {
            format!("range {offset:#x}+{len:#x} is outside the {size:#x}-byte guest_memfd")
        }
    };
    Error::invalid_input(what, why)
}

/// The error of a failed syscall, from `errno` (out of line).
#[cold]
#[inline(never)]
pub(crate) fn os_error(op: &'static str) -> Error {
    Error::last_os(op)
}

/// A guest_memfd file, owned.
#[derive(Debug)]
pub struct GuestMemfd {
    fd: OwnedFd,
    size: u64,
    flags: GmemFlags,
}

impl GuestMemfd {
    /// `KVM_CREATE_GUEST_MEMFD` of `size` bytes with `flags` on `vm`.
    ///
    /// Errors: `InvalidInput` for a zero or unaligned size; `Unsupported` when the VM has no guest_memfd or does not support a requested flag
    /// (including bits no kernel defines); `Kvm` when the ioctl fails anyway.
    pub fn create(vm: &VmFd, size: u64, flags: GmemFlags) -> Result<Self> {
        if size == 0 || size % PAGE_SIZE != 0 {
            return Err(Error::invalid_input(
                "guest_memfd size",
                format!("{size:#x} is not a non-zero multiple of 4 KiB"),
            ));
        }
        let Some(supported) = supported_flags(vm) else {
            return Err(Error::unsupported(
                "guest_memfd",
                "KVM_CAP_GUEST_MEMFD is not reported by this VM",
            ));
        };
        let unsupported = flags.bits() & !(supported & GmemFlags::all()).bits();
        if unsupported != 0 {
            return Err(Error::unsupported(
                format!("guest_memfd flags {unsupported:#x}"),
                format!(
                    "KVM_CAP_GUEST_MEMFD_FLAGS reports {:#x} for this VM",
                    supported.bits()
                ),
            ));
        }
        let raw = vm
            .create_guest_memfd(kvm_create_guest_memfd {
                size,
                flags: flags.bits(),
                reserved: [0; 6],
            })
            .map_err(|e| Error::kvm("KVM_CREATE_GUEST_MEMFD", e))?;
        // SAFETY: KVM_CREATE_GUEST_MEMFD returned a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(GuestMemfd { fd, size, flags })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The flags it was created with.
    pub fn flags(&self) -> GmemFlags {
        self.flags
    }

    /// The file descriptor, for `kvm_userspace_memory_region2.guest_memfd`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    #[inline]
    fn fallocate(&self, op: &'static str, mode: i32, offset: u64, len: u64) -> Result<()> {
        check_range(op, offset, len, self.size)?;
        let (off, l) = (offset as libc::off_t, len as libc::off_t);
        // SAFETY: fallocate on a descriptor we own; it reads no user memory.
        let ret = unsafe { libc::fallocate(self.fd.as_raw_fd(), mode, off, l) };
        if ret != 0 {
            return Err(os_error(op));
        }
        Ok(())
    }

    /// Free the pages of `[offset, offset + len)` (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); they
    /// read back as zero. Offset and length must be page aligned and inside the file.
    #[inline]
    pub fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.fallocate(
            "fallocate(PUNCH_HOLE)",
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Allocate the pages of `[offset, offset + len)` (`fallocate(KEEP_SIZE)`; guest_memfd
    /// never changes size).
    pub fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.fallocate("fallocate", libc::FALLOC_FL_KEEP_SIZE, offset, len)
    }

    /// Map the whole file `MAP_SHARED` read/write as a vm-memory region (needs
    /// [`GmemFlags::MMAP`]). Wrap it in a `GuestRegionMmap` at the GPA it backs.
    pub fn mmap_region(&self) -> Result<MmapRegion> {
        if !self.flags.contains(GmemFlags::MMAP) {
            return Err(Error::unsupported(
                "mmap of guest_memfd",
                "the guest_memfd was created without GUEST_MEMFD_FLAG_MMAP",
            ));
        }
        let len = usize::try_from(self.size).map_err(|_| {
            Error::invalid_input("guest_memfd size", "larger than the address space")
        })?;
        let dup = self.fd.try_clone().map_err(|e| Error::Backend {
            context: "dup guest_memfd".into(),
            source: Box::new(e),
        })?;
        vm_memory::mmap::MmapRegionBuilder::new(len)
            .with_file_offset(FileOffset::new(File::from(dup), 0))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_SHARED)
            .build()
            .map_err(|e| Error::Backend {
                context: "mmap guest_memfd".into(),
                source: Box::new(e),
            })
    }
}

impl AsFd for GuestMemfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for GuestMemfd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
