//! # cgs-core: the confidential-guest lifecycle for KVM-based VMMs
//!
//! cgs-core is to confidential guests what kvm-ioctls is to KVM: a small, platform-neutral
//! contract a Rust VMM embeds. It defines
//!
//! - [`ConfidentialBackend`], the hooks every platform implements (modelled on QEMU's
//!   `confidential-guest-support` object): the KVM VM type, `kvm_init`, launch updates with a
//!   [`PageType`], initial vCPU state, finalize, reset, a [`MigrationBlocker`] and
//!   [`DeviceRequirements`];
//! - [`Lifecycle`], which calls those hooks in the only legal order and refuses to run a guest
//!   whose backend is not ready;
//! - [`config`], QEMU `-object` syntax (`sev-snp-guest,id=sev0,cbitpos=51,...`);
//! - [`probe`], what the host can do;
//! - [`Error`], the typed errors every backend returns.
//!
//! Platform backends live in their own crates (`cgs-sev`, `cgs-s390pv`, `cgs-pef`); guest_memfd
//! and page-state conversion in `cgs-gmem`. [`Unprotected`] runs the same lifecycle with no
//! protection at all.

#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod devices;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod migration;
pub mod platform;
pub mod probe;
pub mod testing;
pub mod uapi;
pub mod unprotected;

pub use backend::{ConfidentialBackend, LaunchRegion};
pub use config::ConfigError;
pub use devices::{DeviceRequirements, VIRTIO_F_ACCESS_PLATFORM};
pub use error::{Error, FirmwareStatus, Result};
pub use lifecycle::{validate_region, Lifecycle, RunGuard, State, PAGE_SIZE};
pub use migration::MigrationBlocker;
pub use platform::{PageType, Platform};
pub use unprotected::Unprotected;
