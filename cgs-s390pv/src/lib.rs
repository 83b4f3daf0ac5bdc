//! # cgs-s390pv: IBM s390 Protected Virtualization for KVM-based VMMs
//!
//! The `s390-pv-guest` backend of [cgs-core](cgs_core): what QEMU's `target/s390x/kvm/pv.c` and
//! `s390_machine_protect()` do, as a library any Rust VMM can embed.
//!
//! - [`uapi`]: `struct kvm_pv_cmd` and its data structures (`repr(C)`, layouts asserted against
//!   the kernel headers), `KVM_S390_PV_COMMAND` / `KVM_S390_PV_CPU_COMMAND` encoded per
//!   architecture by a `const fn` `_IOC` model.
//! - [`se_header`], [`ipl`]: the Secure Execution header and the PV IPL parameter block, parsed and
//!   validated with typed errors.
//! - [`uv`]: the [`Ultravisor`] trait with the real KVM implementation
//!   ([`KvmUltravisor`], s390x only; elsewhere it reports `Unsupported`)
//!   and an Ultravisor simulator ([`SimUltravisor`]) with real state,
//!   real digests and real cryptography.
//! - [`lifecycle`]: [`S390PvGuest`], the `ConfidentialBackend`: QEMU's kvm_init checks, the
//!   protect sequence (diag 308 subcode 10), the reset/reboot paths, dump, and the migration
//!   blocker that exists only while the guest is protected.
//! - [`image`]: a sample SE image builder (the secured part of what genprotimg/pvimg produce).
//!
//! What stays with the VMM: guest memory, vCPU threads, intercepting diag 308 and calling
//! [`S390PvGuest::set_pv_iplb`] / [`S390PvGuest::protect`] / [`S390PvGuest::machine_reset`], and
//! applying [`DeviceRequirements`](cgs_core::DeviceRequirements) to its devices.

#![deny(missing_docs)]

pub mod crypto;
pub mod diag308;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod host_keys;
pub mod image;
pub mod ipl;
pub mod lifecycle;
pub mod machine;
pub mod se_header;
pub mod uapi;
pub mod uv;

pub use image::{ComponentKind, ImageBuilder, SeImage};
pub use ipl::{IplError, PvComponent, PvIplBlock};
pub use lifecycle::{
    Diag308Response, MachineSpec, ProtectError, PvDump, PvEvent, ResetKind, S390PvGuest,
};
pub use se_header::{Pcf, SeHeader, SeHeaderError, SeSecrets};
pub use uv::kvm::KvmUltravisor;
pub use uv::sim::{SimConfig, SimUltravisor};
pub use uv::Ultravisor;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
