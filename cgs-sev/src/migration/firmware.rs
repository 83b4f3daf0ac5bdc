//! The firmware's migration commands (`SEND_*`, `RECEIVE_*`): the [`SevMigrationFirmware`] trait
//! and its parameters and results.
//!
//! Keys involved (kernel-abi.md §14): `SEND_START` takes the **target** platform's PDH certificate
//! (and its certificate chains), creates fresh transport keys TEK/TIK, wraps them for the target
//! with ECDH between the source platform's PDH and the target's, and returns the 128-byte session.
//! `RECEIVE_START` takes the **source** platform's PDH certificate and that session. Each page then
//! travels as a packet (header + transport buffer) sealed under TEK/TIK.

use std::fmt;

use cgs_core::Result;
use kvm_ioctls::VmFd;
use vm_memory::VolatileSlice;

use crate::session::{PacketHeader, SEV_CERT_LEN};

/// A platform's published identity: what a destination gives a source for `SEND_START` (QEMU's
/// `sev-pdh`, `sev-plat-cert`, `sev-amd-cert` migration parameters).
#[derive(Clone, PartialEq, Eq)]
pub struct PlatformCerts {
    /// The platform Diffie-Hellman certificate (2084 bytes).
    pub pdh: Vec<u8>,
    /// The platform chain: PEK, OCA and CEK certificates (3 × 2084 bytes).
    pub plat_chain: Vec<u8>,
    /// The AMD chain (ASK, ARK), as published by AMD for the platform's product line.
    pub amd_chain: Vec<u8>,
}

impl fmt::Debug for PlatformCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformCerts")
            .field("pdh", &self.pdh.len())
            .field("plat_chain", &self.plat_chain.len())
            .field("amd_chain", &self.amd_chain.len())
            .finish()
    }
}

impl PlatformCerts {
    /// Length of the platform chain (PEK, OCA, CEK).
    pub const PLAT_CHAIN_LEN: usize = 3 * SEV_CERT_LEN;
}

/// `SEND_START`'s result.
#[derive(Clone, PartialEq, Eq)]
pub struct SendSession {
    /// The guest's policy, as the firmware reports it.
    pub policy: u32,
    /// The session blob for the target's `RECEIVE_START` (wrapped keys only; no secret in clear).
    pub session: Vec<u8>,
}

impl fmt::Debug for SendSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendSession")
            .field("policy", &format_args!("{:#x}", self.policy))
            .field("session_len", &self.session.len())
            .finish()
    }
}

/// `RECEIVE_START` parameters.
#[derive(Debug, Clone, Copy)]
pub struct ReceiveStart<'a> {
    /// The guest's policy (bound to the session by its policy MAC).
    pub policy: u32,
    /// The source platform's PDH certificate.
    pub source_pdh: &'a [u8],
    /// The session blob from the source's `SEND_START`.
    pub session: &'a [u8],
}

/// The firmware's live-migration commands (legacy SEV only): a supertrait of
/// [`SevFirmware`](crate::firmware::SevFirmware), implemented by the real firmware
/// (`src/migration/fw_kvm.rs`) and the simulator (`src/migration/fw_sim.rs`).
///
/// KVM has no `SEND/RECEIVE_UPDATE_VMSA`, so there are no methods for them.
pub trait SevMigrationFirmware {
    /// This platform's PDH certificate and platform chain (`SEV_PDH_CERT_EXPORT`): what a
    /// destination publishes for a source's SEND_START, and what a source puts in the stream for
    /// the destination's RECEIVE_START. The AMD chain (ASK/ARK) is not the firmware's; it is
    /// returned empty.
    fn platform_certs(&self) -> Result<PlatformCerts>;

    /// SEND_START: guest RUNNING → SUPDATE; creates transport keys wrapped for `target`.
    /// Refused (`POLICY_FAILURE`) when the guest policy has NOSEND.
    fn send_start(&mut self, vm: &VmFd, target: &PlatformCerts) -> Result<SendSession>;

    /// SEND_UPDATE_DATA: package `page` (at `gpa`, inside one 4 KiB page) as a packet header and
    /// transport buffer (ciphertext under the TEK).
    fn send_update_data(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        page: &VolatileSlice<'_>,
    ) -> Result<(PacketHeader, Vec<u8>)>;

    /// SEND_FINISH: SUPDATE → SENT; the source guest can no longer run.
    fn send_finish(&mut self, vm: &VmFd) -> Result<()>;

    /// SEND_CANCEL: SUPDATE → RUNNING; the source guest may run again.
    fn send_cancel(&mut self, vm: &VmFd) -> Result<()>;

    /// RECEIVE_START: a new guest context in RUPDATE with the source's transport keys; returns
    /// the handle. The VM must have been initialised (INIT/INIT2) but not launched.
    fn receive_start(&mut self, vm: &VmFd, params: &ReceiveStart<'_>) -> Result<u32>;

    /// RECEIVE_UPDATE_DATA: check the packet, decrypt it into `page` (at `gpa`) with the guest's
    /// new memory key.
    fn receive_update_data(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        transport: &[u8],
        page: &VolatileSlice<'_>,
    ) -> Result<()>;

    /// RECEIVE_FINISH: RUPDATE → RUNNING.
    fn receive_finish(&mut self, vm: &VmFd) -> Result<()>;
}
