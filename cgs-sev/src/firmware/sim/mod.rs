//! A software model of the AMD secure processor, with real state, status codes and cryptography.
//!
//! [`SimPlatform`] is the platform (one per simulated host): its PDH and PEK keys, its VCEK, the
//! RMP ([`cgs_gmem::rmp::Rmp`]) and every guest context. [`SimFirmware`] is one VM's view of it
//! and implements [`SevFirmware`]; the backend and launch code run over it unchanged.
//!
//! What is modelled:
//!
//! - the firmware guest state machines (kernel-abi.md §13; SNP LAUNCH → RUNNING) with their
//!   status codes: a command in the wrong state is `INVALID_GUEST_STATE`, a policy the platform
//!   cannot honour is `POLICY_FAILURE`, an ID block that does not match the digest is
//!   `BAD_MEASUREMENT`, a bad ID signature `BAD_SIGNATURE`, a rejected CPUID page `INVALID_PARAM`
//!   with the corrected page written back;
//! - the KVM checks in front of the firmware (`EINVAL`, `EPERM` for legacy commands on an SNP VM,
//!   `ENOTTY` before INIT), as `Error::Kvm` with the command name;
//! - the SEV transport: LAUNCH_START unwraps the guest owner's session with ECDH against the PDH,
//!   LAUNCH_MEASURE is `HMAC-SHA256(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ SHA-256 digest ‖ mnonce)`,
//!   LAUNCH_SECRET checks the packet MAC and decrypts with the TEK;
//! - the SNP launch digest (the GCTX PAGE_INFO chain of [`crate::measure`]), the RMP transitions
//!   of SNP_LAUNCH_UPDATE, ID block / ID auth checks at SNP_LAUNCH_FINISH, and attestation reports
//!   signed with ECDSA P-384 by a VCEK generated per platform;
//! - per-guest memory encryption: [`SimFirmware::host_view`] returns what the host would read from
//!   a guest's private pages (ciphertext under that guest's key).
//!
//! On this machine KVM cannot encrypt, so guest memory in the VMM's mapping stays what the guest
//! sees; that is what lets the simulated guest actually run on plain KVM.
//!
//! Test hooks: [`UpdateFaults`] makes SNP_LAUNCH_UPDATE return partial progress and `EAGAIN`,
//! [`SimStats`] counts commands.
//!
//! Layout: `platform` (the shared platform and the test hooks), `guest` (one guest context),
//! `guest_request` (SNP guest requests the firmware answers), this module (the commands of
//! [`SevFirmware`]) and the migration commands in `src/migration/fw_sim.rs`.

mod guest;
// The platform: configuration, keys, RMP and guest contexts.
mod platform;
// SNP guest requests (MSG_REPORT_REQ, the extended report), answered for tests and examples.
mod guest_request;
// Live migration (issue 7): SEND_*/RECEIVE_* of the simulator.
#[path = "../../migration/fw_sim.rs"]
mod migration;

use std::sync::Arc;

use cgs_core::{Error, Result};
use cgs_gmem::rmp::{PageSize, Rmp, RmpEntry, RmpUpdate, PERM_ALL};
use kvm_ioctls::{Kvm, VmFd};
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{Signature, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256, Sha384};
use vm_memory::VolatileSlice;
use vmm_sys_util::errno;
use zeroize::Zeroizing;

pub use guest::GuestState;
use guest::{Guest, SnpLaunchInfo};
use platform::{spa_pfn, Platform};
pub use platform::{SimConfig, SimPlatform, SimStats, UpdateFaults};

use super::{
    Flavour, GuestStatus, InitParams, LaunchStart, SevFirmware, SevStatus, SnpLaunchFinish,
    SnpLaunchStart, SnpPageType, SnpUpdate,
};
use crate::cpuid::CpuidPage;
use crate::measure::gctx::Gctx;
use crate::measure::idblock::{IdAuth, IdBlock};
use crate::measure::vmsa::VmsaPage;
use crate::policy::{SevPolicy, SnpPolicy};
use crate::session::{
    accept_session, launch_measure_mac, open_packet, FirmwareBuild, LaunchMeasurement,
    PacketContext, PacketHeader, SessionError, TransportKeys,
};
use crate::uapi;

/// The simulator's firmware name in errors.
pub const SIM_FIRMWARE: &str = "SEV simulator";
/// Guest frames each guest may use (8 GiB of GPA).
pub const GUEST_FRAMES: u64 = 1 << 21;
/// Most guest contexts a simulated platform holds.
pub const MAX_GUESTS: u32 = 64;
/// Length of the legacy SEV attestation report.
pub const LEGACY_REPORT_LEN: usize = 0xD0;
/// Bytes of the legacy report covered by the PEK signature.
pub const LEGACY_REPORT_SIGNED_LEN: usize = 0x34;
/// VMSA offset of `SEV_FEATURES`.
const VMSA_SEV_FEATURES: usize = 0x3B0;

/// SNP_LAUNCH_UPDATE's firmware write of `spa`'s RMP entry; a refusal is the simulator's own
/// inconsistency, reported under `context`.
fn rmp_set(rmp: &mut Rmp, spa: u64, entry: RmpEntry, context: &'static str) -> Result<()> {
    rmp.firmware_set(spa, entry).map_err(|e| Error::Backend {
        context: context.into(),
        source: Box::new(e),
    })
}

fn kvm_err(op: &'static str, errno_val: i32) -> Error {
    Error::kvm(op, errno::Error::new(errno_val))
}

fn fw(op: &'static str, status: SevStatus) -> Error {
    status.error(SIM_FIRMWARE, op)
}

/// One VM's handle on a [`SimPlatform`].
#[derive(Debug)]
pub struct SimFirmware {
    platform: Arc<SimPlatform>,
    flavour: Option<Flavour>,
    handle: Option<u32>,
    req_certs: bool,
    faults: UpdateFaults,
    stats: SimStats,
}

const OP_INIT2: &str = "KVM_SEV_INIT2";
const OP_START: &str = "KVM_SEV_LAUNCH_START";
const OP_UPDATE: &str = "KVM_SEV_LAUNCH_UPDATE_DATA";
const OP_VMSA: &str = "KVM_SEV_LAUNCH_UPDATE_VMSA";
const OP_MEASURE: &str = "KVM_SEV_LAUNCH_MEASURE";
const OP_SECRET: &str = "KVM_SEV_LAUNCH_SECRET";
const OP_FINISH: &str = "KVM_SEV_LAUNCH_FINISH";
const OP_REPORT: &str = "KVM_SEV_GET_ATTESTATION_REPORT";
const OP_STATUS: &str = "KVM_SEV_GUEST_STATUS";
const OP_SNP_START: &str = "KVM_SEV_SNP_LAUNCH_START";
const OP_SNP_UPDATE: &str = "KVM_SEV_SNP_LAUNCH_UPDATE";
const OP_SNP_FINISH: &str = "KVM_SEV_SNP_LAUNCH_FINISH";
const OP_ATTR: &str = "KVM_SET_MEMORY_ATTRIBUTES";

impl SimFirmware {
    /// A firmware handle for one VM on `platform`.
    pub fn new(platform: &Arc<SimPlatform>) -> Self {
        SimFirmware {
            platform: Arc::clone(platform),
            flavour: None,
            handle: None,
            req_certs: false,
            faults: UpdateFaults::default(),
            stats: SimStats::default(),
        }
    }

    /// The platform.
    pub fn platform(&self) -> &Arc<SimPlatform> {
        &self.platform
    }

    /// Inject SNP_LAUNCH_UPDATE faults.
    pub fn set_update_faults(&mut self, faults: UpdateFaults) {
        self.faults = faults;
    }

    /// Command counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The guest handle, once LAUNCH_START / SNP_LAUNCH_START created the context.
    pub fn handle(&self) -> Option<u32> {
        self.handle
    }

    /// The firmware state of this VM's guest.
    pub fn guest_state(&self) -> Option<GuestState> {
        let p = self.platform.lock();
        Some(p.guests.get(&self.handle?)?.state)
    }

    /// What a host read of `[gpa, gpa + plain.len())` returns when the guest sees `plain`
    /// there: ciphertext for the guest's private pages.
    pub fn host_view(&self, gpa: u64, plain: &[u8]) -> Result<Vec<u8>> {
        let p = self.platform.lock();
        let g = self
            .handle
            .and_then(|h| p.guests.get(&h))
            .ok_or_else(|| Error::invalid_input("host view", "no guest context"))?;
        Ok(g.host_view(gpa, plain))
    }

    fn guest_ref<'p>(&self, p: &'p Platform, op: &'static str) -> Result<&'p Guest> {
        match self.handle {
            Some(h) => p
                .guests
                .get(&h)
                .ok_or_else(|| fw(op, SevStatus::INVALID_GUEST)),
            None => Err(fw(op, SevStatus::INVALID_GUEST)),
        }
    }

    fn require_flavour(&self, op: &'static str, snp_command: bool) -> Result<Flavour> {
        let f = self.flavour.ok_or_else(|| kvm_err(op, libc::ENOTTY))?;
        match (f == Flavour::SevSnp, snp_command) {
            (true, false) => Err(kvm_err(op, libc::EPERM)),
            (false, true) => Err(kvm_err(op, libc::EINVAL)),
            _ => Ok(f),
        }
    }

    fn guest_mut<'p>(
        &self,
        p: &'p mut Platform,
        op: &'static str,
        want: GuestState,
    ) -> Result<&'p mut Guest> {
        let h = self
            .handle
            .ok_or_else(|| fw(op, SevStatus::INVALID_GUEST))?;
        let g = p
            .guests
            .get_mut(&h)
            .ok_or_else(|| fw(op, SevStatus::INVALID_GUEST))?;
        if g.state != want {
            return Err(fw(op, SevStatus::INVALID_GUEST_STATE));
        }
        Ok(g)
    }

    fn new_guest(p: &mut Platform, op: &'static str, flavour: Flavour, policy: u64) -> Result<u32> {
        let handle = p.next_handle;
        if handle > MAX_GUESTS {
            return Err(fw(op, SevStatus::RESOURCE_LIMIT));
        }
        p.next_handle += 1;
        let mut vek = Zeroizing::new([0u8; 16]);
        OsRng.fill_bytes(&mut vek[..]);
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        let mut vmpck = Zeroizing::new([[0u8; 32]; 4]);
        for k in vmpck.iter_mut() {
            OsRng.fill_bytes(k);
        }
        p.guests.insert(
            handle,
            Guest {
                flavour,
                asid: handle,
                state: if flavour == Flavour::SevSnp {
                    GuestState::SnpLaunch
                } else {
                    GuestState::LaunchUpdate
                },
                policy,
                keys: None,
                vek,
                sev_digest: Sha256::new(),
                sev_ld: None,
                measurement: None,
                vmsa_done: false,
                snp_ld: Gctx::new(),
                snp: SnpLaunchInfo::default(),
                private: Default::default(),
                migration: Default::default(),
                report_id,
                vmpck,
                msg_seqno: [1; 4],
            },
        );
        Ok(handle)
    }
}

fn session_status(e: &SessionError) -> SevStatus {
    match e {
        SessionError::Length { .. } => SevStatus::INVALID_LEN,
        SessionError::Certificate(_) => SevStatus::INVALID_CERTIFICATE,
        SessionError::BadMac("session policy") => SevStatus::POLICY_FAILURE,
        SessionError::BadMac(_) => SevStatus::BAD_MEASUREMENT,
        SessionError::Compressed => SevStatus::INVALID_PARAM,
    }
}

impl SevFirmware for SimFirmware {
    fn name(&self) -> &'static str {
        SIM_FIRMWARE
    }

    fn kvm_vm_type(&self, _flavour: Flavour, _legacy: bool) -> u64 {
        uapi::KVM_X86_DEFAULT_VM
    }

    fn vmsa_features(&self, _kvm: &Kvm) -> Result<u64> {
        Ok(self.platform.lock().config.vmsa_features)
    }

    fn c_bit_position(&self, _kvm: &Kvm) -> Result<u32> {
        Ok(self.platform.lock().config.cbitpos)
    }

    fn build(&self) -> Result<FirmwareBuild> {
        Ok(self.platform.lock().config.build)
    }

    fn init(&mut self, _vm: &VmFd, params: &InitParams) -> Result<()> {
        let op = match params {
            InitParams::Legacy(Flavour::SevEs) => "KVM_SEV_ES_INIT",
            InitParams::Legacy(_) => "KVM_SEV_INIT",
            InitParams::Init2 { .. } => OP_INIT2,
        };
        if self.flavour.is_some() {
            return Err(kvm_err(op, libc::EINVAL));
        }
        let cfg = self.platform.config();
        let flavour = params.flavour();
        if flavour == Flavour::SevEs && !cfg.es_supported {
            return Err(fw(op, SevStatus::UNSUPPORTED));
        }
        match *params {
            InitParams::Legacy(Flavour::SevSnp) => return Err(kvm_err(op, libc::EINVAL)),
            InitParams::Legacy(_) => {}
            InitParams::Init2 {
                flavour,
                vmsa_features,
                ghcb_version,
            } => {
                let ok = match flavour {
                    Flavour::Sev => vmsa_features == 0 && ghcb_version == 0,
                    Flavour::SevEs => vmsa_features & !cfg.vmsa_features == 0 && ghcb_version <= 2,
                    Flavour::SevSnp => {
                        vmsa_features & !cfg.vmsa_features == 0
                            && (ghcb_version == 0 || ghcb_version == 2)
                    }
                };
                if !ok {
                    return Err(kvm_err(op, libc::EINVAL));
                }
            }
        }
        self.flavour = Some(flavour);
        Ok(())
    }

    fn register_region(&mut self, _vm: &VmFd, region: &VolatileSlice<'_>) -> Result<()> {
        const OP: &str = "KVM_MEMORY_ENCRYPT_REG_REGION";
        // KVM: SEV VMs only, non-empty, and (in this model) whole pages.
        match self.flavour {
            None => return Err(kvm_err(OP, libc::ENOTTY)),
            Some(Flavour::SevSnp) => return Err(kvm_err(OP, libc::EINVAL)),
            Some(_) => {}
        }
        let addr = region.ptr_guard().as_ptr() as usize;
        if region.is_empty() || !addr.is_multiple_of(4096) || !region.len().is_multiple_of(4096) {
            return Err(kvm_err(OP, libc::EINVAL));
        }
        self.stats.registered_bytes += region.len() as u64;
        Ok(())
    }

    fn launch_start(&mut self, _vm: &VmFd, s: &LaunchStart<'_>) -> Result<u32> {
        let flavour = self.require_flavour(OP_START, false)?;
        if self.handle.is_some() {
            return Err(fw(OP_START, SevStatus::INVALID_GUEST_STATE));
        }
        let policy = SevPolicy(s.policy);
        let mut p = self.platform.lock();
        if policy.validate().is_err() {
            return Err(fw(OP_START, SevStatus::INVALID_PARAM));
        }
        if !policy.allows_firmware(p.config.build) || policy.is_es() != (flavour == Flavour::SevEs)
        {
            return Err(fw(OP_START, SevStatus::POLICY_FAILURE));
        }
        let shared_vek = if s.handle != 0 {
            let other = p
                .guests
                .get(&s.handle)
                .ok_or_else(|| fw(OP_START, SevStatus::INVALID_GUEST))?;
            if other.policy as u32 & SevPolicy::NOKS != 0 || s.policy & SevPolicy::NOKS != 0 {
                return Err(fw(OP_START, SevStatus::POLICY_FAILURE));
            }
            Some(other.vek.clone())
        } else {
            None
        };
        let keys = match (s.dh_cert, s.session) {
            (Some(cert), Some(session)) => accept_session(&p.pdh, cert, session, s.policy)
                .map_err(|e| fw(OP_START, session_status(&e)))?,
            (None, None) => TransportKeys::generate(&mut OsRng),
            _ => return Err(fw(OP_START, SevStatus::INVALID_PARAM)),
        };
        let handle = Self::new_guest(&mut p, OP_START, flavour, u64::from(s.policy))?;
        if let Some(g) = p.guests.get_mut(&handle) {
            g.keys = Some(keys);
            if let Some(vek) = shared_vek {
                g.vek = vek;
            }
        }
        drop(p);
        self.handle = Some(handle);
        Ok(handle)
    }

    fn launch_update_data(&mut self, _vm: &VmFd, gpa: u64, data: &VolatileSlice<'_>) -> Result<()> {
        self.require_flavour(OP_UPDATE, false)?;
        self.stats.launch_update_data_calls += 1;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_UPDATE, GuestState::LaunchUpdate)?;
        if data.is_empty() || !data.len().is_multiple_of(16) {
            return Err(fw(OP_UPDATE, SevStatus::INVALID_LEN));
        }
        if !gpa.is_multiple_of(16) {
            return Err(fw(OP_UPDATE, SevStatus::INVALID_ADDRESS));
        }
        let mut buf = vec![0u8; data.len()];
        data.copy_to(&mut buf[..]);
        g.sev_digest.update(&buf);
        g.mark_private(gpa, data.len() as u64);
        Ok(())
    }

    fn launch_update_vmsa(&mut self, _vm: &VmFd, vmsas: &[VmsaPage]) -> Result<()> {
        let flavour = self.require_flavour(OP_VMSA, false)?;
        if flavour != Flavour::SevEs {
            return Err(kvm_err(OP_VMSA, libc::EINVAL));
        }
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_VMSA, GuestState::LaunchUpdate)?;
        if g.vmsa_done || vmsas.is_empty() {
            return Err(kvm_err(OP_VMSA, libc::EINVAL));
        }
        for v in vmsas {
            g.sev_digest.update(v.as_bytes());
        }
        g.vmsa_done = true;
        Ok(())
    }

    fn launch_measure(&mut self, _vm: &VmFd) -> Result<LaunchMeasurement> {
        self.require_flavour(OP_MEASURE, false)?;
        let mut p = self.platform.lock();
        let build = p.config.build;
        let g = self.guest_mut(&mut p, OP_MEASURE, GuestState::LaunchUpdate)?;
        let keys = g
            .keys
            .clone()
            .ok_or_else(|| fw(OP_MEASURE, SevStatus::INVALID_GUEST))?;
        let ld: [u8; 32] = g.sev_digest.clone().finalize().into();
        let mut mnonce = [0u8; 16];
        OsRng.fill_bytes(&mut mnonce);
        let m = LaunchMeasurement {
            measure: launch_measure_mac(&keys, build, g.policy as u32, &ld, &mnonce),
            mnonce,
        };
        g.sev_ld = Some(ld);
        g.measurement = Some(m);
        g.state = GuestState::LaunchSecret;
        Ok(m)
    }

    fn launch_secret(
        &mut self,
        _vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        ciphertext: &[u8],
        target: &VolatileSlice<'_>,
    ) -> Result<()> {
        self.require_flavour(OP_SECRET, false)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_SECRET, GuestState::LaunchSecret)?;
        let len = ciphertext.len();
        if len == 0 || len != target.len() || !len.is_multiple_of(16) || len > 0x5000 {
            return Err(fw(OP_SECRET, SevStatus::INVALID_LEN));
        }
        if !gpa.is_multiple_of(16) {
            return Err(fw(OP_SECRET, SevStatus::INVALID_ADDRESS));
        }
        let (Some(keys), Some(m)) = (g.keys.as_ref(), g.measurement.as_ref()) else {
            return Err(fw(OP_SECRET, SevStatus::INVALID_GUEST_STATE));
        };
        let plain = open_packet(keys, PacketContext::Secret, header, ciphertext, &m.measure)
            .map_err(|e| match e {
                SessionError::Compressed => fw(OP_SECRET, SevStatus::INVALID_PARAM),
                _ => fw(OP_SECRET, SevStatus::BAD_MEASUREMENT),
            })?;
        target.copy_from(&plain[..]);
        g.mark_private(gpa, len as u64);
        Ok(())
    }

    fn launch_finish(&mut self, _vm: &VmFd) -> Result<()> {
        self.require_flavour(OP_FINISH, false)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_FINISH, GuestState::LaunchSecret)?;
        g.state = GuestState::Running;
        Ok(())
    }

    fn attestation_report(&mut self, _vm: &VmFd, mnonce: [u8; 16]) -> Result<Vec<u8>> {
        self.require_flavour(OP_REPORT, false)?;
        let p = self.platform.lock();
        let g = self.guest_ref(&p, OP_REPORT)?;
        let ld = match (g.state, g.sev_ld) {
            (GuestState::LaunchSecret | GuestState::Running, Some(ld)) => ld,
            _ => return Err(fw(OP_REPORT, SevStatus::INVALID_GUEST_STATE)),
        };
        let mut r = vec![0u8; LEGACY_REPORT_LEN];
        r[0..16].copy_from_slice(&mnonce);
        r[16..48].copy_from_slice(&ld);
        r[48..52].copy_from_slice(&(g.policy as u32).to_le_bytes());
        r[52..56].copy_from_slice(&0x1002u32.to_le_bytes());
        r[56..60].copy_from_slice(&0x002u32.to_le_bytes());
        let digest = Sha256::digest(&r[..LEGACY_REPORT_SIGNED_LEN]);
        let sig: Signature = p
            .pek
            .sign_prehash(&digest)
            .map_err(|_| fw(OP_REPORT, SevStatus::INVALID_KEY))?;
        let (rr, ss) = sig.split_bytes();
        for (i, v) in rr.iter().rev().enumerate() {
            r[64 + i] = *v;
        }
        for (i, v) in ss.iter().rev().enumerate() {
            r[64 + 72 + i] = *v;
        }
        Ok(r)
    }

    fn guest_status(&mut self, _vm: &VmFd) -> Result<GuestStatus> {
        self.require_flavour(OP_STATUS, false)?;
        let p = self.platform.lock();
        let g = self.guest_ref(&p, OP_STATUS)?;
        Ok(GuestStatus {
            handle: self.handle.unwrap_or(0),
            policy: g.policy as u32,
            state: g.state.code(),
        })
    }

    fn dbg_decrypt(
        &mut self,
        _vm: &VmFd,
        gpa: u64,
        src: &VolatileSlice<'_>,
        dst: &mut [u8],
    ) -> Result<()> {
        const OP: &str = "KVM_SEV_DBG_DECRYPT";
        self.require_flavour(OP, false)?;
        if src.len() != dst.len()
            || dst.is_empty()
            || !dst.len().is_multiple_of(16)
            || !gpa.is_multiple_of(16)
        {
            return Err(kvm_err(OP, libc::EINVAL));
        }
        let p = self.platform.lock();
        let g = self.guest_ref(&p, OP)?;
        if g.policy as u32 & SevPolicy::NODBG != 0 {
            return Err(fw(OP, SevStatus::POLICY_FAILURE));
        }
        // The VMM's mapping holds what the guest sees (see the module docs): that is the
        // decryption of the host's view.
        src.copy_to(dst);
        Ok(())
    }

    fn snp_launch_start(&mut self, _vm: &VmFd, s: &SnpLaunchStart) -> Result<()> {
        self.require_flavour(OP_SNP_START, true)?;
        if self.handle.is_some() {
            return Err(kvm_err(OP_SNP_START, libc::EINVAL));
        }
        let policy = SnpPolicy(s.policy);
        if policy.validate(None).is_err() {
            return Err(kvm_err(OP_SNP_START, libc::EINVAL));
        }
        let mut p = self.platform.lock();
        let c = &p.config;
        if !policy.allows_firmware(c.build)
            || (!policy.smt_allowed() && c.smt_enabled)
            || (policy.single_socket() && c.sockets > 1)
        {
            return Err(fw(OP_SNP_START, SevStatus::POLICY_FAILURE));
        }
        let handle = Self::new_guest(&mut p, OP_SNP_START, Flavour::SevSnp, s.policy)?;
        drop(p);
        self.handle = Some(handle);
        Ok(())
    }

    fn snp_set_private(&mut self, _vm: &VmFd, gpa: u64, len: u64) -> Result<()> {
        self.require_flavour(OP_ATTR, true)?;
        if !gpa.is_multiple_of(4096) || !len.is_multiple_of(4096) || len == 0 {
            return Err(kvm_err(OP_ATTR, libc::EINVAL));
        }
        let mut p = self.platform.lock();
        let h = self.handle.ok_or_else(|| kvm_err(OP_ATTR, libc::EINVAL))?;
        let asid = p.guests.get(&h).map(|g| g.asid).unwrap_or(0);
        let first = gpa / 4096;
        let n = len / 4096;
        if first.checked_add(n).is_none_or(|end| end > GUEST_FRAMES) {
            return Err(kvm_err(OP_ATTR, libc::EINVAL));
        }
        for gfn in first..first + n {
            let Some(spa) = spa_pfn(asid, gfn) else {
                return Err(kvm_err(OP_ATTR, libc::EINVAL));
            };
            let assigned = p.rmp.entry(spa).is_some_and(|e| e.assigned);
            if assigned {
                continue;
            }
            p.rmp
                .update(spa, RmpUpdate::private(gfn * 4096, asid, PageSize::Size4K))
                .map_err(|e| Error::Backend {
                    context: "KVM_SET_MEMORY_ATTRIBUTES (simulated RMPUPDATE)".into(),
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }

    fn snp_launch_update(&mut self, _vm: &VmFd, u: &mut SnpUpdate<'_>) -> Result<()> {
        self.require_flavour(OP_SNP_UPDATE, true)?;
        self.stats.snp_launch_update_calls += 1;
        if u.remaining() == 0
            || !u.source.len().is_multiple_of(4096)
            || !u.done.is_multiple_of(4096)
        {
            return Err(kvm_err(OP_SNP_UPDATE, libc::EINVAL));
        }
        let eagain = if self.faults.eagain_calls > 0 {
            self.faults.eagain_calls -= 1;
            true
        } else {
            false
        };
        let mut budget = (u.remaining() / 4096) as u64;
        if let Some(max) = self.faults.max_pages_per_call {
            budget = budget.min(max.max(1));
        }
        if eagain {
            budget = budget.min(1);
        }
        let rules = self.platform.config().cpuid_rules;
        let mut p = self.platform.lock();
        let handle = self
            .handle
            .ok_or_else(|| fw(OP_SNP_UPDATE, SevStatus::INVALID_GUEST))?;
        let asid = p.guests.get(&handle).map(|g| g.asid).unwrap_or(0);
        for _ in 0..budget {
            let gfn = u.gfn_start;
            let state_ok = p
                .guests
                .get(&handle)
                .is_some_and(|g| g.state == GuestState::SnpLaunch);
            if !state_ok {
                return Err(fw(OP_SNP_UPDATE, SevStatus::INVALID_GUEST_STATE));
            }
            let spa = spa_pfn(asid, gfn).ok_or_else(|| kvm_err(OP_SNP_UPDATE, libc::EINVAL))?;
            let before = p.rmp.entry(spa).unwrap_or_default();
            let entry = before;
            if !entry.assigned || entry.asid != asid || entry.gpa != gfn * 4096 {
                // The GFN is not private: KVM refuses before the firmware sees it.
                return Err(kvm_err(OP_SNP_UPDATE, libc::EINVAL));
            }
            if entry.validated {
                return Err(fw(OP_SNP_UPDATE, SevStatus::INVALID_PAGE_STATE));
            }
            // KVM's populate step: RMPUPDATE to the immutable Pre-Guest state before the firmware
            // sees the page (`rmp_make_private(.., immutable = true)`).
            let pre_guest = RmpUpdate {
                immutable: true,
                ..RmpUpdate::private(gfn * 4096, asid, PageSize::Size4K)
            };
            if p.rmp.update(spa, pre_guest).is_err() {
                return Err(fw(OP_SNP_UPDATE, SevStatus::INVALID_PAGE_STATE));
            }
            let entry = p.rmp.entry(spa).unwrap_or_default();
            let page = u
                .source
                .subslice(u.done, 4096)
                .map_err(|e| Error::invalid_input("SNP launch update", e.to_string()))?;
            let mut bytes = vec![0u8; 4096];
            page.copy_to(&mut bytes[..]);
            let contents: [u8; 48] = match u.page_type {
                SnpPageType::Normal => Sha384::digest(&bytes).into(),
                SnpPageType::Zero => {
                    page.copy_from(&[0u8; 4096]);
                    [0; 48]
                }
                SnpPageType::Unmeasured => [0; 48],
                SnpPageType::Secrets => {
                    let g = p.guests.get(&handle);
                    let mut secrets = Zeroizing::new(vec![0u8; 4096]);
                    secrets[0..4].copy_from_slice(&2u32.to_le_bytes());
                    if let Some(g) = g {
                        for (i, k) in g.vmpck.iter().enumerate() {
                            secrets[0x20 + 32 * i..0x40 + 32 * i].copy_from_slice(k);
                        }
                    }
                    page.copy_from(&secrets[..]);
                    [0; 48]
                }
                SnpPageType::Cpuid => {
                    // A malformed page (count > 64) or one the rules correct is rejected (the
                    // corrected page written back for the VMM) and KVM reclaims the page on
                    // failure: back to its state before the call.
                    let accepted = match CpuidPage::from_bytes(&bytes) {
                        Err(_) => false,
                        Ok(provided) => {
                            let mut corrected = provided.clone();
                            for f in corrected.entries.iter_mut() {
                                for &(leaf, sub, reg, mask) in &rules {
                                    if f.eax_in == leaf && f.ecx_in == sub {
                                        *f.reg_mut(reg) &= !mask;
                                    }
                                }
                            }
                            if corrected != provided {
                                page.copy_from(&corrected.to_bytes()?);
                            }
                            corrected == provided
                        }
                    };
                    if !accepted {
                        rmp_set(
                            &mut p.rmp,
                            spa,
                            before,
                            "SNP_LAUNCH_UPDATE (simulated reclaim)",
                        )?;
                        return Err(fw(OP_SNP_UPDATE, SevStatus::INVALID_PARAM));
                    }
                    [0; 48]
                }
            };
            let Some(g) = p.guests.get_mut(&handle) else {
                return Err(fw(OP_SNP_UPDATE, SevStatus::INVALID_GUEST));
            };
            g.snp_ld
                .update(u.page_type.to_page_type(), gfn * 4096, &contents);
            g.mark_private(gfn * 4096, 4096);
            let validated = RmpEntry {
                validated: true,
                immutable: false,
                vmpl_perms: [PERM_ALL, 0, 0, 0],
                ..entry
            };
            rmp_set(
                &mut p.rmp,
                spa,
                validated,
                "SNP_LAUNCH_UPDATE (simulated RMP)",
            )?;
            u.gfn_start += 1;
            u.done += 4096;
            self.stats.snp_pages += 1;
        }
        if eagain {
            return Err(kvm_err(OP_SNP_UPDATE, libc::EAGAIN));
        }
        Ok(())
    }

    fn snp_launch_finish(
        &mut self,
        _vm: &VmFd,
        f: &SnpLaunchFinish<'_>,
        vmsas: &[VmsaPage],
    ) -> Result<()> {
        self.require_flavour(OP_SNP_FINISH, true)?;
        let mut p = self.platform.lock();
        let g = self.guest_mut(&mut p, OP_SNP_FINISH, GuestState::SnpLaunch)?;
        if vmsas.is_empty() {
            return Err(kvm_err(OP_SNP_FINISH, libc::EINVAL));
        }
        // Compute on a copy; commit only when every check passed.
        let mut ld = g.snp_ld.clone();
        for v in vmsas {
            let b = v.as_bytes();
            let mut feat = [0u8; 8];
            feat.copy_from_slice(&b[VMSA_SEV_FEATURES..VMSA_SEV_FEATURES + 8]);
            if u64::from_le_bytes(feat) & crate::measure::vmsa::SEV_FEATURE_SNP_ACTIVE == 0 {
                return Err(fw(OP_SNP_FINISH, SevStatus::INVALID_PARAM));
            }
            ld.update_vmsa(v);
        }
        let mut info = SnpLaunchInfo {
            host_data: f.host_data,
            vcek_disabled: f.vcek_disabled,
            ..Default::default()
        };
        match (f.id_block, f.id_auth) {
            (None, _) => {}
            (Some(_), None) => return Err(kvm_err(OP_SNP_FINISH, libc::EINVAL)),
            (Some(block), Some(auth)) => {
                let id = IdBlock::parse(block)
                    .map_err(|_| fw(OP_SNP_FINISH, SevStatus::INVALID_PARAM))?;
                if id.version != 1 {
                    return Err(fw(OP_SNP_FINISH, SevStatus::INVALID_PARAM));
                }
                if id.ld != ld.ld() {
                    return Err(fw(OP_SNP_FINISH, SevStatus::BAD_MEASUREMENT));
                }
                if id.policy != g.policy {
                    return Err(fw(OP_SNP_FINISH, SevStatus::POLICY_FAILURE));
                }
                let verified = IdAuth::from_bytes(auth)
                    .and_then(|a| a.verify(block, f.author_key))
                    .map_err(|_| fw(OP_SNP_FINISH, SevStatus::BAD_SIGNATURE))?;
                info.family_id = id.family_id;
                info.image_id = id.image_id;
                info.guest_svn = id.guest_svn;
                info.id_key_digest = verified.id_key_digest;
                info.author_key_digest = verified.author_key_digest.unwrap_or([0; 48]);
                info.author_key_en = f.author_key;
            }
        }
        g.snp_ld = ld;
        g.snp = info;
        g.state = GuestState::Running;
        Ok(())
    }

    fn snp_enable_req_certs(&mut self, _kvm: &Kvm, _vm: &VmFd) -> Result<()> {
        const OP: &str = "KVM_SEV_SNP_ENABLE_REQ_CERTS";
        if !self.platform.config().req_certs_supported {
            return Err(Error::unsupported(
                OP,
                "this kernel has no KVM_EXIT_SNP_REQ_CERTS",
            ));
        }
        self.require_flavour(OP, true)?;
        if self.guest_state() == Some(GuestState::Running) {
            return Err(kvm_err(OP, libc::EINVAL));
        }
        self.req_certs = true;
        Ok(())
    }
}

/// Verify a legacy SEV attestation report (0xD0 bytes) with the PEK: ECDSA over SHA-256 of the
/// first 0x34 bytes. Returns `(mnonce, launch digest, policy)`.
pub fn verify_legacy_report(
    report: &[u8],
    pek: &VerifyingKey,
) -> Result<([u8; 16], [u8; 32], u32)> {
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    if report.len() != LEGACY_REPORT_LEN {
        return Err(Error::invalid_input(
            "SEV attestation report",
            format!("{} bytes, expected {LEGACY_REPORT_LEN}", report.len()),
        ));
    }
    let be = |le: &[u8]| {
        let mut out = [0u8; 48];
        for (i, v) in le[..48].iter().enumerate() {
            out[47 - i] = *v;
        }
        out
    };
    let sig = Signature::from_scalars(be(&report[64..136]), be(&report[136..208]))
        .map_err(|_| Error::invalid_input("SEV attestation report", "malformed signature"))?;
    let digest = Sha256::digest(&report[..LEGACY_REPORT_SIGNED_LEN]);
    pek.verify_prehash(&digest, &sig)
        .map_err(|_| Error::invalid_input("SEV attestation report", "signature does not verify"))?;
    let mut mnonce = [0u8; 16];
    mnonce.copy_from_slice(&report[..16]);
    let mut ld = [0u8; 32];
    ld.copy_from_slice(&report[16..48]);
    let policy = u32::from_le_bytes([report[48], report[49], report[50], report[51]]);
    Ok((mnonce, ld, policy))
}
