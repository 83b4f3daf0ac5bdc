//! SEV live migration (legacy SEV; SEV-ES and SEV-SNP stay blocked: KVM has no
//! `SEND/RECEIVE_UPDATE_VMSA` and no SNP migration commands).
//!
//! ```text
//! source VMM                                         destination VMM
//! SevBackend (launched), guest opts in (optin)       IncomingSev::kvm_init (INIT only), vCPUs
//! Outgoing::start ── SEND_START(target PDH) ──▶      IncomingSev::receive / Incoming::feed
//!   full_round, round(DirtyLog::fetch) …  ── pages ──▶ RECEIVE_START, RECEIVE_UPDATE_DATA
//!   (vCPUs stopped) finish: SEND_FINISH ── vCPUs ──▶ Incoming::finish: checks, RECEIVE_FINISH
//!                                                    set_vcpu_state (restore), finalize, run
//! ```
//!
//! - [`outgoing`], [`incoming`]: the two sides; [`backend`]: the cgs-core backend of an arriving
//!   guest; [`firmware`]: parameter types of the `SevFirmware` migration methods; [`error`].
//! - [`stream`]: the versioned, self-describing migration stream (encoder, incremental decoder).
//! - [`vcpu`]: vCPU register state in the stream.
//! - [`dirty`]: dirty-page tracking with KVM's dirty log.
//! - [`optin`]: the guest's opt-in through `MSR_KVM_MIGRATION_CONTROL`, and the blocker.
//! - [`intrahost`]: moving or mirroring an encryption context between VMs of one host.
//! - [`testing`]: a guest that keeps writing memory, for tests and examples.
//!
//! Which pages are shared comes from cgs-gmem's page-state tracker (fed by
//! `KVM_HC_MAP_GPA_RANGE`); shared pages travel in plain, private pages through
//! `SEND_UPDATE_DATA` (one page per call, as KVM requires).

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
