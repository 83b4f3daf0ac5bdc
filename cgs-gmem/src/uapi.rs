//! Kernel ABI numbers this crate needs that kvm-bindings lacks or that are not exposed on every
//! architecture: hypercall numbers and attributes (`include/uapi/linux/kvm_para.h`,
//! `arch/x86/include/uapi/asm/kvm_para.h`), memory-fault exit flags, and the GHCB MSR protocol /
//! page-state-change encodings (`arch/x86/include/asm/sev-common.h`, `asm/svm.h`).
//!
//! The ioctl structures themselves (`kvm_create_guest_memfd`, `kvm_userspace_memory_region2`,
//! `kvm_memory_attributes`) come from kvm-bindings; their sizes are asserted below.

pub use cgs_core::uapi::{
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_EXIT_HYPERCALL,
    KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_MEMORY_ATTRIBUTES,
    KVM_CAP_USER_MEMORY2, KVM_MEMORY_ATTRIBUTE_PRIVATE,
};

/// `KVM_HC_MAP_GPA_RANGE`: the guest asks to map a GPA range shared or private.
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
/// Page-size field of the attributes (bits 3:0): 4 KiB.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_4K: u64 = 0;
/// Page-size field: 2 MiB.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_2M: u64 = 1;
/// Page-size field: 1 GiB.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_1G: u64 = 2;
/// Mask of the page-size field.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_MASK: u64 = 0xf;
/// Attribute bit 4: map encrypted (private).
pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;
/// Attribute value: map decrypted (shared).
pub const KVM_MAP_GPA_RANGE_DECRYPTED: u64 = 0;
/// `hypercall.flags` bit 0: the guest was in 64-bit mode.
pub const KVM_EXIT_HYPERCALL_LONG_MODE: u64 = 1;

/// `KVM_MEMORY_EXIT_FLAG_PRIVATE`: the faulting access was private.
pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;

/// The GHCB MSR (`MSR_AMD64_SEV_ES_GHCB`).
pub const MSR_AMD64_SEV_ES_GHCB: u32 = 0xc001_0130;
/// GHCB MSR protocol: mask of GHCBInfo (bits 11:0).
pub const GHCB_MSR_INFO_MASK: u64 = 0xfff;
/// GHCB MSR protocol: page state change request.
pub const GHCB_MSR_PSC_REQ: u64 = 0x014;
/// GHCB MSR protocol: page state change response.
pub const GHCB_MSR_PSC_RESP: u64 = 0x015;
/// PSC request GFN field: bits 51:12.
pub const GHCB_MSR_PSC_GFN_SHIFT: u32 = 12;
/// PSC request GFN field width (40 bits).
pub const GHCB_MSR_PSC_GFN_MASK: u64 = (1 << 40) - 1;
/// PSC request operation field: bits 55:52.
pub const GHCB_MSR_PSC_OP_SHIFT: u32 = 52;
/// PSC request operation field width.
pub const GHCB_MSR_PSC_OP_MASK: u64 = 0xf;
/// PSC response error field: bits 63:32.
pub const GHCB_MSR_PSC_ERROR_SHIFT: u32 = 32;

/// Page-state-change operation: make private.
pub const SNP_PAGE_STATE_PRIVATE: u8 = 1;
/// Page-state-change operation: make shared.
pub const SNP_PAGE_STATE_SHARED: u8 = 2;
/// Page-state-change operation: PSMASH (GHCB spec; KVM completes it without exiting).
pub const SNP_PAGE_STATE_PSMASH: u8 = 3;
/// Page-state-change operation: UNSMASH.
pub const SNP_PAGE_STATE_UNSMASH: u8 = 4;

/// NAE exit code of the PSC buffer request.
pub const SVM_VMGEXIT_PSC: u64 = 0x8000_0010;
/// Entries that fit the GHCB shared buffer: (2032 − 8) / 8.
pub const VMGEXIT_PSC_MAX_COUNT: usize = 253;
/// Size of the GHCB shared buffer.
pub const GHCB_SHARED_BUFFER_SIZE: usize = 2032;
/// Size of `struct psc_hdr`.
pub const PSC_HDR_SIZE: usize = 8;
/// SW_EXITINFO2 error: generic.
pub const VMGEXIT_PSC_ERROR_GENERIC: u64 = 0x100 << 32;
/// SW_EXITINFO2 error: invalid header.
pub const VMGEXIT_PSC_ERROR_INVALID_HDR: u64 = (1 << 32) | 1;
/// SW_EXITINFO2 error: invalid entry.
pub const VMGEXIT_PSC_ERROR_INVALID_ENTRY: u64 = (1 << 32) | 2;

#[cfg(target_arch = "x86_64")]
const _: () = {
    assert!(std::mem::size_of::<kvm_bindings::kvm_create_guest_memfd>() == 64);
    assert!(std::mem::size_of::<kvm_bindings::kvm_userspace_memory_region2>() == 160);
    assert!(std::mem::offset_of!(kvm_bindings::kvm_userspace_memory_region2, guest_memfd) == 40);
    assert!(std::mem::size_of::<kvm_bindings::kvm_memory_attributes>() == 32);
    assert!(kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE as u64 == KVM_MEMORY_EXIT_FLAG_PRIVATE);
    assert!(kvm_bindings::KVM_MEM_GUEST_MEMFD == 4);
    assert!(GHCB_SHARED_BUFFER_SIZE - PSC_HDR_SIZE == VMGEXIT_PSC_MAX_COUNT * 8);
};
