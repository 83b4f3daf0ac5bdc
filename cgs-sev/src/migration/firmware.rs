//! Parameters and results of the firmware's migration commands (`SEND_*`, `RECEIVE_*`), used by
//! the `SevFirmware` methods of the same names.
//!
//! Keys involved (kernel-abi.md §14): `SEND_START` takes the **target** platform's PDH certificate
//! (and its certificate chains), creates fresh transport keys TEK/TIK, wraps them for the target
//! with ECDH between the source platform's PDH and the target's, and returns the 128-byte session.
//! `RECEIVE_START` takes the **source** platform's PDH certificate and that session. Each page then
//! travels as a packet (header + transport buffer) sealed under TEK/TIK.

use std::fmt;

use crate::session::SEV_CERT_LEN;

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
