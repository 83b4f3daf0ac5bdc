//! guest_memfd-backed guest memory for confidential VMs: shared/private page state, one
//! conversion path for KVM exits, GHCB page-state change, and an SEV-SNP RMP model.
//!
//! - [`memfd`]: create a guest_memfd (flags probed from `KVM_CAP_GUEST_MEMFD_FLAGS`), punch
//!   holes, allocate, map it as a vm-memory region.
//! - [`binding`]: bind guest_memfd ranges to memslots with `KVM_SET_USER_MEMORY_REGION2`, one
//!   guest_memfd behind several slots, and discard either side of a range.
//! - [`tracker`]: shared/private state of every 4 KiB page, proportional to the number of runs,
//!   at most ~1 bit per page.
//! - [`listener`]: listeners told when shared ranges are populated or discarded, with rollback.
//! - [`attrs`]: the memory-attribute backends (`KVM_SET_MEMORY_ATTRIBUTES`, a shared-only host, a
//!   userspace record).
//! - [`convert`]: the one conversion path (validate → attributes → discard → tracker → notify,
//!   rolled back on failure).
//! - [`exits`]: `KVM_EXIT_HYPERCALL` (`KVM_HC_MAP_GPA_RANGE`) and `KVM_EXIT_MEMORY_FAULT`
//!   decoding and handling on kvm-ioctls' `VcpuExit`.
//! - [`psc`]: GHCB page-state change (MSR protocol and the 253-entry PSC buffer) applied to the
//!   conversion path and the RMP, with partial progress and guest error codes.
//! - [`rmp`]: a software model of the SEV-SNP Reverse Map Table.
//! - [`testing`]: fault-injecting doubles and an in-memory model of both memory sides.
#![deny(missing_docs)]

pub mod attrs;
pub mod binding;
pub mod convert;
pub mod exits;
#[doc(hidden)]
pub mod fuzzing;
pub mod listener;
pub mod memfd;
pub mod psc;
pub mod rmp;
pub mod testing;
pub mod tracker;
pub mod uapi;
