//! SEV live migration.
//!
//! - [`stream`]: the versioned, self-describing migration stream (encoder, incremental decoder).
//! - [`vcpu`]: vCPU register state in the stream.
//! - [`dirty`]: dirty-page tracking with KVM's dirty log.
//! - [`optin`]: the guest's opt-in through `MSR_KVM_MIGRATION_CONTROL`, and the blocker.
//! - [`intrahost`]: moving or mirroring an encryption context between VMs of one host.
//! - [`testing`]: a guest that keeps writing memory, for tests and examples.

mod checksum;
mod wire;

pub mod backend;
pub mod dirty;
pub mod error;
pub mod firmware;
#[doc(hidden)]
pub mod fuzzing;
pub mod incoming;
pub mod intrahost;
pub mod optin;
pub mod outgoing;
pub mod stream;
pub mod testing;
pub mod vcpu;

pub use crate::session::PacketHeader;
