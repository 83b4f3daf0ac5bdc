//! The simulated platform: its configuration ([`SimConfig`]), its keys (PDH, PEK, VCEK), the RMP
//! and every guest context, shared by the [`super::SimFirmware`]s of its VMs; and the test hooks
//! ([`UpdateFaults`], [`SimStats`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cgs_gmem::rmp::{Rmp, RmpEntry};
use p384::ecdsa::{SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};

use super::guest::Guest;
use super::{GUEST_FRAMES, MAX_GUESTS};
use crate::certs::CertTable;
use crate::cpuid::Reg;
use crate::session::{DhKey, FirmwareBuild};

/// The simulated platform's properties.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// API version and build reported by PLATFORM_STATUS (and used in LAUNCH_MEASURE).
    pub build: FirmwareBuild,
    /// VMSA `SEV_FEATURES` KVM offers (`KVM_X86_SEV_VMSA_FEATURES`).
    pub vmsa_features: u64,
    /// SMT is enabled on the host (an SNP policy without SMT fails).
    pub smt_enabled: bool,
    /// Number of sockets (an SNP policy requiring a single socket fails if > 1).
    pub sockets: u32,
    /// The host supports SEV-ES.
    pub es_supported: bool,
    /// The kernel has `KVM_SEV_SNP_ENABLE_REQ_CERTS` (7.x).
    pub req_certs_supported: bool,
    /// The host's C-bit position (CPUID 0x8000001F EBX\[5:0\]).
    pub cbitpos: u32,
    /// CPUID bits the firmware refuses: `(leaf, subleaf, register, bits that must be clear)`.
    pub cpuid_rules: Vec<(u32, u32, Reg, u32)>,
    /// TCB version reported in attestation reports.
    pub tcb: u64,
    /// Attestation report version (2–5).
    pub report_version: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            build: FirmwareBuild {
                api_major: 1,
                api_minor: 55,
                build: 21,
            },
            vmsa_features: crate::measure::vmsa::SEV_FEATURE_DEBUG_SWAP,
            smt_enabled: true,
            sockets: 1,
            es_supported: true,
            req_certs_supported: true,
            cbitpos: 51,
            // The nvtrust#91 case: cache-topology leaf 0x8000001D, EDX bit 2.
            cpuid_rules: vec![(0x8000_001D, 3, Reg::Edx, 1 << 2)],
            tcb: 0x1B00_0000_0000_0304,
            report_version: 3,
        }
    }
}

/// Fault injection for SNP_LAUNCH_UPDATE, to exercise the caller's partial-progress loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateFaults {
    /// Process at most this many pages per call (then return success with progress).
    pub max_pages_per_call: Option<u64>,
    /// The next this-many calls process at most one page and fail with `EAGAIN`.
    pub eagain_calls: u32,
}

/// Command counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// SNP_LAUNCH_UPDATE calls (including ones that failed).
    pub snp_launch_update_calls: u64,
    /// Pages SNP_LAUNCH_UPDATE processed.
    pub snp_pages: u64,
    /// LAUNCH_UPDATE_DATA calls.
    pub launch_update_data_calls: u64,
    /// Bytes registered with `KVM_MEMORY_ENCRYPT_REG_REGION`.
    pub registered_bytes: u64,
}

pub(super) struct Platform {
    pub(super) config: SimConfig,
    pub(super) pdh: DhKey,
    pub(super) pek: SigningKey,
    pub(super) vcek: SigningKey,
    pub(super) chip_id: [u8; 64],
    pub(super) next_handle: u32,
    pub(super) guests: BTreeMap<u32, Guest>,
    pub(super) rmp: Rmp,
    pub(super) certs: CertTable,
}

/// A simulated SEV platform shared by the [`SimFirmware`](super::SimFirmware)s of its VMs.
pub struct SimPlatform {
    state: Mutex<Platform>,
}

impl std::fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimPlatform { keys: <redacted>, .. }")
    }
}

impl SimPlatform {
    /// A platform with fresh keys.
    pub fn new(config: SimConfig) -> Arc<Self> {
        let mut chip_id = [0u8; 64];
        OsRng.fill_bytes(&mut chip_id);
        Arc::new(SimPlatform {
            state: Mutex::new(Platform {
                config,
                pdh: DhKey::generate(&mut OsRng),
                pek: SigningKey::random(&mut OsRng),
                vcek: SigningKey::random(&mut OsRng),
                chip_id,
                next_handle: 1,
                guests: BTreeMap::new(),
                rmp: Rmp::new(u64::from(MAX_GUESTS + 1) * GUEST_FRAMES),
                certs: CertTable::new(),
            }),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Platform> {
        // A panic while holding the lock cannot leave a half-updated guest: every command
        // computes first and commits last.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The platform Diffie-Hellman key (what `SEV_PDH_CERT_EXPORT` would give the guest owner).
    pub fn pdh_public(&self) -> p384::PublicKey {
        self.lock().pdh.public()
    }

    /// The VCEK public key that verifies SNP attestation reports.
    pub fn vcek_public(&self) -> VerifyingKey {
        *self.lock().vcek.verifying_key()
    }

    /// The PEK public key that verifies legacy SEV attestation reports.
    pub fn pek_public(&self) -> VerifyingKey {
        *self.lock().pek.verifying_key()
    }

    /// The certificates given to guests' extended requests once the VMM enabled them.
    pub fn set_certificates(&self, certs: CertTable) {
        self.lock().certs = certs;
    }

    /// The platform's configuration.
    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    /// The RMP entry of guest frame `gfn` of the guest with `handle` (tests, inspection).
    pub fn rmp_entry(&self, handle: u32, gfn: u64) -> Option<RmpEntry> {
        let p = self.lock();
        let asid = p.guests.get(&handle)?.asid;
        p.rmp.entry(spa_pfn(asid, gfn)?)
    }
}

pub(super) fn spa_pfn(asid: u32, gfn: u64) -> Option<u64> {
    (gfn < GUEST_FRAMES).then(|| u64::from(asid) * GUEST_FRAMES + gfn)
}
