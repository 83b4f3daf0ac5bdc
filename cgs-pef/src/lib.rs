//! # cgs-pef: POWER Protected Execution Facility for KVM-based VMMs
//!
//! [`PefGuest`] is the `pef-guest` backend of [`cgs_core::ConfidentialBackend`]. It does what
//! QEMU's `hw/ppc/pef.c` does:
//!
//! - `kvm_init` checks `KVM_CAP_PPC_SECURE_GUEST` ("KVM implementation does not support Secure
//!   VMs (is an ultravisor running?)"), enables it ("Error enabling PEF with KVM") and blocks
//!   migration ("PEF: Migration is not implemented");
//! - every reset issues `KVM_PPC_SVM_OFF` (`0x2000AEB3` on powerpc), tolerating `ENOTTY`;
//! - virtio devices must use `VIRTIO_F_ACCESS_PLATFORM` (the default protected
//!   [`DeviceRequirements`](cgs_core::DeviceRequirements)).
//!
//! The backend talks to the ultravisor through the [`Ultravisor`] trait: [`KvmUltravisor`]
//! issues the real ioctls (encoded for powerpc by [`ioctl`]; on other hosts it reports
//! `Error::Unsupported`), [`SimUltravisor`] models the POWER ultravisor and KVM's side of the
//! secure-guest protocol (`UV_ESM`, `H_SVM_INIT_*`, page states, page-out encryption,
//! `KVM_PPC_SVM_OFF`), so the lifecycle runs on any KVM host.
//!
//! ```no_run
//! use cgs_core::{config::PefGuestConfig, Lifecycle};
//! use cgs_pef::{PefGuest, SimConfig, SimUltravisor, UvKey};
//! use vm_memory::{GuestAddress, GuestMemoryMmap};
//!
//! # fn main() -> cgs_core::Result<()> {
//! let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)])
//!     .map_err(|e| cgs_core::Error::invalid_input("memory", e.to_string()))?;
//! let uv = SimUltravisor::new(SimConfig::new(UvKey::from_bytes([7; 32])), &mem)?;
//! let guest = Lifecycle::new(PefGuest::with_ultravisor(PefGuestConfig::new("pef0"), uv));
//! # let _ = guest;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod esm;
#[doc(hidden)]
pub mod fuzzing;
pub mod ioctl;
mod key;
pub mod papr;
pub mod uapi;
pub mod uv;

pub use backend::{PefGuest, MIGRATION_BLOCKER, MSG_ENABLE_FAILED, MSG_NO_SECURE_VMS};
pub use esm::{EsmBlob, EsmError, EsmRegion};
pub use key::UvKey;
pub use uv::sim::{self, GuestMode, PageState, SimConfig, SimEvent};
pub use uv::{KvmUltravisor, SimUltravisor, Ultravisor};

/// log2 of the default secure-memory page size (64 KiB, what POWER distributions ship).
pub const PAGE_SHIFT: u32 = 16;
/// The default secure-memory page size (64 KiB).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
