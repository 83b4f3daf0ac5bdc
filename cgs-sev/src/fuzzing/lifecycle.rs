//! The `sev_lifecycle` fuzz target: arbitrary orders of [`Lifecycle`] calls and of the
//! backend's own launch operations (LAUNCH_MEASURE, LAUNCH_SECRET, attestation, batched
//! SNP_LAUNCH_UPDATE, memory registration, migration blocker) on an SEV, SEV-ES or SEV-SNP guest
//! over the simulated secure processor, checked step by step against a reference model.
//!
//! # What is checked
//!
//! - Every call returns exactly the outcome the model predicts: `Ok`, or the error class the
//!   lifecycle, the launchers or the firmware must answer (`InvalidState`, `InvalidInput`,
//!   `Unsupported`, `NotReady`, a launch-order [`SequenceError`](crate::launch::SequenceError),
//!   a firmware status, a KVM errno).
//! - After every step the lifecycle, its ready guards, the backend's launch state, the firmware's
//!   guest state and handle, its command counters (a refused call issued no command) and, for
//!   SNP, the RMP entry of every guest frame the input can touch agree with the model.
//! - Differential: the model keeps its own launch digest, built with the offline calculator
//!   ([`crate::measure`]: SHA-256 over the launched bytes and VMSAs for SEV/SEV-ES, the
//!   [`Gctx`] PAGE_INFO chain for SNP, VMSAs from a [`VmsaBuilder`] the model configures itself).
//!   Whenever the firmware reveals its digest (the legacy attestation report of SEV/SEV-ES,
//!   the SNP attestation report after finalize) the two must match, so a refused call that
//!   changed the firmware's digest is caught.
//!
//! SNP_LAUNCH_UPDATE works page by page, as on hardware: a range that reaches an already
//! launched page fails there, and the pages before it stay measured (the firmware cannot take a
//! page back). The model predicts exactly that prefix.
//!
//! # Why one shared VM
//!
//! The simulator never issues an ioctl on the VM, but `set_vcpu_state` programs real vCPUs and
//! the lifecycle creates them, so the target needs `/dev/kvm`. As in `pef_lifecycle`, one VM
//! serves every input, each input's vCPUs get KVM ids no earlier input used, and an input creates
//! at most [`MAX_VCPUS`]. Simulated platforms (whose P-384 keys are costly to generate) are
//! pooled per configuration and replaced before their guest handles run out. LAUNCH_START takes
//! no guest-owner session: the simulator's ECDH for it took most of the target's time (the
//! session, LAUNCH_SECRET and the owner's check of LAUNCH_MEASURE are tested in
//! `tests/launch_sim.rs`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use cgs_core::fuzzing::{expect_outcome, page_type_from_byte};
use cgs_core::testing::SharedVm;
use kvm_ioctls::VcpuFd;
use sha2::{Digest, Sha256, Sha384};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use cgs_core::config::{OnOffAuto, SevGuestConfig, SevSnpGuestConfig};
use cgs_core::{
    ConfidentialBackend, Error, LaunchRegion, Lifecycle, MigrationBlocker, PageType, RunGuard,
    State,
};

use crate::backend::{SevBackend, BLOCKER_SEV, BLOCKER_SEV_ES, BLOCKER_SEV_SNP};
use crate::cpuid::{CpuidFunction, CpuidPage, Reg};
use crate::firmware::sim::{
    GuestState, SimConfig, SimFirmware, SimPlatform, UpdateFaults, GUEST_FRAMES, LEGACY_REPORT_LEN,
    MAX_GUESTS,
};
use crate::firmware::{status_of, Flavour, SevFirmware, SevStatus};
use crate::launch::snp::CpuidRetry;
use crate::launch::{sequence_error, LaunchState};
use crate::measure::gctx::Gctx;
use crate::measure::idblock::{IdAuth, IdBlock, SnpSigningKey};
use crate::measure::vmsa::{VmsaBuilder, SEV_FEATURE_DEBUG_SWAP, SEV_FEATURE_SNP_ACTIVE};
use crate::measure::{VcpuType, VmmPreset};
use crate::policy::{SevPolicy, SnpPolicy};
use crate::report::AttestationReport;
use crate::session::PacketHeader;
use crate::uapi::KVM_X86_DEFAULT_VM;

/// At most this many vCPUs reach KVM per input (each costs about 1 ms).
pub const MAX_VCPUS: usize = 2;
/// vCPU ids an input chooses from (one more than [`MAX_VCPUS`]).
pub const VCPU_IDS: u64 = 3;
/// Guest memory of every input: this many pages at GPA 0.
pub const MEM_PAGES: u64 = 8;
/// At most this many operations per input are run.
pub const MAX_OPS: usize = 64;
/// Length of the input header (flavour, policy, platform, extras).
pub const HEADER_LEN: usize = 4;
/// Length of one encoded operation (selector, a, b, c).
pub const OP_LEN: usize = 4;
/// An SEV-feature bit the simulated platforms never offer.
pub const UNSUPPORTED_FEATURE: u64 = 1 << 9;
/// The AP reset address of the builder a header can ask for.
pub const AP_RESET_EIP: u32 = 0xFFFF_F000;
/// The host's C-bit position on every simulated platform.
const HOST_CBITPOS: u32 = 51;
const PAGE: u64 = 4096;
/// The first guest frame of the "far" claimed addresses (the last frame the simulator has).
const FAR_GFN: u64 = GUEST_FRAMES - 1;

/// Operation selectors (`selector % op::COUNT`).
pub mod op {
    /// `Lifecycle::kvm_init`.
    pub const KVM_INIT: u8 = 0;
    /// `Lifecycle::create_vcpu` with id `a % VCPU_IDS`.
    pub const CREATE_VCPU: u8 = 1;
    /// `Lifecycle::launch_update_memory` of `b % 4` pages from page `a % (MEM_PAGES + 1)`,
    /// page type `c % 7`, misaligned when `c & 0x80`; CPUID pages get contents `(c >> 3) % 3`.
    pub const LAUNCH_MEMORY: u8 = 2;
    /// `Lifecycle::launch_update` of `1 + b % 2` pages of memory from page `a`, claimed to be at
    /// page `(b >> 4) % MEM_PAGES`, or at the simulator's last frames when `c & 0x80`.
    pub const LAUNCH_SLICE: u8 = 3;
    /// `SevBackend::launch_update_batch` of two one-page regions (adjacent unless `c & 0x40`).
    pub const LAUNCH_BATCH: u8 = 4;
    /// `Lifecycle::set_vcpu_state` for index `a % 3`.
    pub const SET_VCPU_STATE: u8 = 5;
    /// `Lifecycle::finalize`, then (when `a & 1`) the attestation that reveals the digest.
    pub const FINALIZE: u8 = 6;
    /// `SevBackend::measure` (LAUNCH_MEASURE).
    pub const MEASURE: u8 = 7;
    /// `SevBackend::attestation_report` and the SNP guest's report request.
    pub const ATTEST: u8 = 8;
    /// `SevBackend::inject_secret` of an unsealed packet (a bad length when `b & 1`).
    pub const SECRET: u8 = 9;
    /// `Lifecycle::reset`.
    pub const RESET: u8 = 10;
    /// Migration blocker (`a % 3`: query, lift, replace), platform, VM type.
    pub const QUERIES: u8 = 11;
    /// `Lifecycle::run` and the ready guards before the guest is ready.
    pub const RUN: u8 = 12;
    /// SNP_LAUNCH_UPDATE faults: at most `a % 4` pages per call (0: no limit), `b % 3` EAGAINs.
    pub const FAULTS: u8 = 13;
    /// `SevBackend::register_memory` of all guest memory.
    pub const REGISTER: u8 = 14;
    /// GUEST_STATUS.
    pub const STATUS: u8 = 15;
    /// Number of selectors; others wrap around.
    pub const COUNT: u8 = 16;
}

/// What the CPUID page of a CPUID launch update contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuidKind {
    /// A page the firmware accepts.
    Good,
    /// A page the firmware corrects (the nvtrust#91 bit).
    NeedsFix,
    /// Not a CPUID page (count above 64).
    Garbage,
}

fn cpuid_page(kind: CpuidKind) -> Vec<u8> {
    let mut page = CpuidPage::default();
    page.entries.push(CpuidFunction {
        eax_in: 0x8000_0000,
        eax: 0x8000_0021,
        ..Default::default()
    });
    match kind {
        CpuidKind::Good => {}
        CpuidKind::NeedsFix => page.entries.push(CpuidFunction {
            eax_in: 0x8000_001D,
            ecx_in: 3,
            edx: 0x6,
            ..Default::default()
        }),
        CpuidKind::Garbage => {
            let mut b = vec![0xA5u8; PAGE as usize];
            b[0..4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
            return b;
        }
    }
    // Two entries always fit a page.
    page.to_bytes().unwrap_or_default()
}

/// The platform configurations a header chooses from.
fn sim_config(variant: usize) -> SimConfig {
    match variant {
        0 => SimConfig::default(),
        1 => SimConfig {
            es_supported: false,
            req_certs_supported: false,
            smt_enabled: false,
            ..SimConfig::default()
        },
        _ => SimConfig {
            sockets: 2,
            vmsa_features: 0,
            ..SimConfig::default()
        },
    }
}
const PLATFORM_VARIANTS: usize = 3;

/// A pooled simulated platform and the guest contexts created on it so far.
struct PooledPlatform {
    platform: Arc<SimPlatform>,
    guests: u32,
}

/// The shared KVM VM and platform pool (see the module documentation).
struct Host {
    shared: SharedVm,
    platforms: Vec<Option<PooledPlatform>>,
    /// An ID block whose digest matches no launch, with its signed ID auth.
    bad_id_block: Option<(Vec<u8>, Vec<u8>)>,
}

fn host() -> Option<&'static Mutex<Host>> {
    static HOST: OnceLock<Option<Mutex<Host>>> = OnceLock::new();
    HOST.get_or_init(|| {
        let shared = SharedVm::open("sev_lifecycle fuzz target")?;
        Some(Mutex::new(Host {
            shared,
            platforms: (0..PLATFORM_VARIANTS).map(|_| None).collect(),
            bad_id_block: None,
        }))
    })
    .as_ref()
}

impl Host {
    fn fresh_ids(&mut self) -> u64 {
        self.shared.fresh_ids(VCPU_IDS)
    }

    /// The pooled platform of `variant`, replaced before it could run out of guest handles
    /// (an input creates at most one guest context; `fuzz_lifecycle` counts them).
    fn platform(&mut self, variant: usize) -> &mut PooledPlatform {
        let slot = &mut self.platforms[variant];
        if slot.as_ref().is_some_and(|p| p.guests >= MAX_GUESTS) {
            *slot = None;
        }
        slot.get_or_insert_with(|| PooledPlatform {
            platform: SimPlatform::new(sim_config(variant)),
            guests: 0,
        })
    }

    #[allow(clippy::panic)]
    fn bad_id_block(&mut self) -> (Vec<u8>, Vec<u8>) {
        self.bad_id_block
            .get_or_insert_with(|| {
                let key = SnpSigningKey::from_scalar(&[0x11; 48])
                    .unwrap_or_else(|e| panic!("ID key: {e}"));
                let block = IdBlock::new([0x5A; 48]);
                let auth = IdAuth::sign(&block, &key, None);
                (block.to_bytes().to_vec(), auth.as_bytes().to_vec())
            })
            .clone()
    }
}

/// The decoded input header.
#[derive(Debug, Clone)]
struct Header {
    flavour: Flavour,
    legacy: bool,
    features: u64,
    cbitpos: Option<u32>,
    sev_policy: u32,
    snp_policy: u64,
    vcek_disabled: bool,
    id_block: bool,
    variant: usize,
    req_certs: bool,
    cpuid_fail: bool,
    ap_builder: bool,
    host_data: [u8; 32],
}

fn header(h: [u8; HEADER_LEN]) -> Header {
    let [f, p, v, x] = h;
    let flavour = match f & 3 {
        0 => Flavour::Sev,
        1 => Flavour::SevEs,
        _ => Flavour::SevSnp,
    };
    let mut features = 0;
    if f & 0x10 != 0 {
        features |= SEV_FEATURE_DEBUG_SWAP;
    }
    if f & 0x20 != 0 {
        features |= UNSUPPORTED_FEATURE;
    }
    // Bits 0-4: NODBG, NOKS, NOSEND, DOMAIN, SEV (ES comes from the flavour).
    let mut sev_policy = u32::from(p & 3) | (u32::from(p >> 2) & 7) << 3;
    if flavour == Flavour::SevEs {
        sev_policy |= SevPolicy::ES;
    }
    // Bits 5-6: 01 a minimum API newer than the firmware, 11 a reserved bit.
    match (p >> 5) & 3 {
        1 => sev_policy |= 2 << 16,
        3 => sev_policy |= 1 << 6,
        _ => {}
    }
    let mut snp_policy = SnpPolicy::RSVD_MBO;
    for (bit, flag) in [
        (1, SnpPolicy::SMT),
        (2, SnpPolicy::DEBUG),
        (4, SnpPolicy::SINGLE_SOCKET),
        (8, 2 << 8),
    ] {
        if p & bit != 0 {
            snp_policy |= flag;
        }
    }
    // Bits 4-5 both set: a policy the host refuses (bit 18, or bit 17 clear with bit 6).
    if p & 0x30 == 0x30 {
        if p & 0x40 != 0 {
            snp_policy &= !SnpPolicy::RSVD_MBO;
        } else {
            snp_policy |= SnpPolicy::MIGRATE_MA;
        }
    }
    Header {
        flavour,
        legacy: f & 4 != 0,
        features,
        cbitpos: match f >> 6 {
            1 => Some(HOST_CBITPOS),
            2 => Some(47),
            _ => None,
        },
        sev_policy,
        snp_policy,
        vcek_disabled: p & 0x40 != 0,
        id_block: p & 0x80 != 0,
        variant: usize::from(v) % PLATFORM_VARIANTS,
        req_certs: x & 1 != 0,
        cpuid_fail: x & 2 != 0,
        ap_builder: x & 4 != 0,
        host_data: [x; 32],
    }
}

/// What a call must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Ok,
    InvalidState,
    InvalidInput,
    Unsupported,
    NotReady,
    /// A launch-order `SequenceError`.
    Sequence,
    /// Another `Error::Backend` (the VMSA builder).
    Backend,
    Firmware(SevStatus),
    Kvm(i32),
    /// A class no call may answer.
    Other,
}

fn outcome<T>(r: &cgs_core::Result<T>) -> Want {
    match r {
        Ok(_) => Want::Ok,
        Err(e) => class(e),
    }
}

fn class(e: &Error) -> Want {
    match e {
        Error::InvalidState { .. } => Want::InvalidState,
        Error::InvalidInput { .. } => Want::InvalidInput,
        Error::Unsupported { .. } => Want::Unsupported,
        Error::NotReady { .. } => Want::NotReady,
        Error::Backend { .. } if sequence_error(e).is_some() => Want::Sequence,
        Error::Backend { .. } => Want::Backend,
        Error::Firmware { .. } => status_of(e).map_or(Want::Other, Want::Firmware),
        Error::Kvm { .. } => Want::Kvm(e.errno().unwrap_or(0)),
        _ => Want::Other,
    }
}

fn check<T>(step: usize, what: &str, got: &cgs_core::Result<T>, want: Want) {
    expect_outcome(step, what, outcome(got), want, got.as_ref().err());
}

/// The reference model.
#[derive(Debug)]
struct Model {
    h: Header,
    lc: State,
    ls: LaunchState,
    /// The firmware's guest state (`None`: no context yet).
    fw: Option<GuestState>,
    vcpus: Vec<(u64, bool)>,
    /// SEV/SEV-ES launch digest so far.
    sev: Sha256,
    /// SEV/SEV-ES digest LAUNCH_MEASURE sealed.
    measured: Option<[u8; 32]>,
    /// SNP launch digest so far.
    gctx: Gctx,
    /// SNP: frames made private and frames launched.
    assigned: BTreeSet<u64>,
    launched: BTreeSet<u64>,
    update_data_calls: u64,
    snp_pages: u64,
    cpuid_changes: usize,
    registered: u64,
    blocker: Option<String>,
}

impl Model {
    fn snp(&self) -> bool {
        self.h.flavour == Flavour::SevSnp
    }

    /// The VMSA builder the backend must program vCPUs from, built independently.
    fn builder(&self) -> VmsaBuilder {
        let legacy = self.h.legacy && !self.snp();
        let preset = if legacy && !self.h.ap_builder {
            VmmPreset::QEMU_LEGACY_INIT
        } else {
            VmmPreset::QEMU
        };
        let mut b = VmsaBuilder::new(preset);
        if let Some(t) = VcpuType::by_name("EPYC-v4") {
            b = b.signature(t.signature());
        }
        if self.h.ap_builder {
            b = b.ap_reset_eip(AP_RESET_EIP);
        }
        let features = match self.h.flavour {
            Flavour::Sev => 0,
            Flavour::SevEs => self.h.features,
            Flavour::SevSnp => self.h.features | SEV_FEATURE_SNP_ACTIVE,
        };
        b.sev_features(features)
    }

    /// The VMSA pages of every vCPU, in order, as the offline calculator builds them.
    #[allow(clippy::panic)]
    fn vmsas(&self) -> Vec<crate::measure::vmsa::VmsaPage> {
        let b = self.builder();
        (0..self.vcpus.len() as u32)
            .map(|i| match b.vcpu(i) {
                Ok(s) => s.to_vmsa(),
                Err(e) => panic!("a vCPU whose state was set has no VMSA: {e}"),
            })
            .collect()
    }

    fn all_set(&self) -> bool {
        !self.vcpus.is_empty() && self.vcpus.iter().all(|v| v.1)
    }

    /// One region through the backend's `launch_update` hook (after the lifecycle's checks).
    fn sev_region(&mut self, data: &[u8], pt: PageType) -> Want {
        match pt {
            PageType::Normal | PageType::Zero => {
                if self.ls != LaunchState::Updating {
                    return Want::Sequence;
                }
                self.update_data_calls += 1;
                self.sev.update(data);
                Want::Ok
            }
            PageType::Unmeasured => Want::Ok,
            _ => Want::Unsupported,
        }
    }

    /// SNP_LAUNCH_UPDATE of `ranges` (already coalesced): `(gfn, page contents, type)`.
    fn snp_update(&mut self, ranges: &[(u64, Vec<u8>, PageType)]) -> Want {
        if self.ls != LaunchState::Updating {
            return Want::Sequence;
        }
        let rules = sim_config(self.h.variant).cpuid_rules;
        for (first, data, pt) in ranges {
            let pages = data.len() as u64 / PAGE;
            if first + pages > GUEST_FRAMES {
                return Want::Kvm(libc::EINVAL);
            }
            self.assigned.extend(*first..first + pages);
            let mut retried = false;
            for (i, page) in data.chunks_exact(PAGE as usize).enumerate() {
                let gfn = first + i as u64;
                if self.launched.contains(&gfn) {
                    return Want::Firmware(SevStatus::INVALID_PAGE_STATE);
                }
                let contents: [u8; 48] = match pt {
                    PageType::Normal => Sha384::digest(page).into(),
                    PageType::Cpuid => {
                        match cpuid_verdict(page, &rules) {
                            CpuidVerdict::Good => {}
                            CpuidVerdict::NeedsFix(n) if !retried && !self.h.cpuid_fail => {
                                retried = true;
                                self.cpuid_changes += n;
                            }
                            _ => return Want::InvalidInput,
                        }
                        [0; 48]
                    }
                    _ => [0; 48],
                };
                self.gctx.update(*pt, gfn * PAGE, &contents);
                self.launched.insert(gfn);
                self.snp_pages += 1;
            }
        }
        Want::Ok
    }
}

/// How the simulated firmware treats a CPUID page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuidVerdict {
    /// Accepted as it is.
    Good,
    /// Rejected, corrected in `n` leaves.
    NeedsFix(usize),
    /// Rejected, not a CPUID page.
    Garbage,
}

fn cpuid_verdict(page: &[u8], rules: &[(u32, u32, Reg, u32)]) -> CpuidVerdict {
    let Ok(provided) = CpuidPage::from_bytes(page) else {
        return CpuidVerdict::Garbage;
    };
    let mut corrected = provided.clone();
    for f in corrected.entries.iter_mut() {
        for &(leaf, sub, reg, mask) in rules {
            if f.eax_in == leaf && f.ecx_in == sub {
                *f.reg_mut(reg) &= !mask;
            }
        }
    }
    match provided.diff(&corrected).len() {
        0 => CpuidVerdict::Good,
        n => CpuidVerdict::NeedsFix(n),
    }
}

impl Model {
    fn new(h: Header) -> Self {
        let blocker = Some(match h.flavour {
            Flavour::Sev => BLOCKER_SEV,
            Flavour::SevEs => BLOCKER_SEV_ES,
            Flavour::SevSnp => BLOCKER_SEV_SNP,
        });
        Model {
            h,
            lc: State::New,
            ls: LaunchState::New,
            fw: None,
            vcpus: Vec::new(),
            sev: Sha256::new(),
            measured: None,
            gctx: Gctx::new(),
            assigned: BTreeSet::new(),
            launched: BTreeSet::new(),
            update_data_calls: 0,
            snp_pages: 0,
            cpuid_changes: 0,
            registered: 0,
            blocker: blocker.map(str::to_owned),
        }
    }

    /// `kvm_init`: the backend's checks, then INIT / INIT2 and LAUNCH_START (a retry continues
    /// after the last step that succeeded).
    fn kvm_init(&mut self) -> Want {
        if self.lc != State::New {
            return Want::InvalidState;
        }
        let h = &self.h;
        if h.cbitpos.is_some_and(|c| c != HOST_CBITPOS) {
            return Want::InvalidInput;
        }
        let cfg = sim_config(h.variant);
        if h.features & !cfg.vmsa_features != 0 {
            return Want::Unsupported;
        }
        if h.flavour == Flavour::SevSnp {
            if self.ls == LaunchState::New {
                self.ls = LaunchState::Initialized;
            }
            if self.ls == LaunchState::Initialized {
                let p = SnpPolicy(h.snp_policy);
                if !p.allows_firmware(cfg.build)
                    || (!p.smt_allowed() && cfg.smt_enabled)
                    || (p.single_socket() && cfg.sockets > 1)
                {
                    return Want::Firmware(SevStatus::POLICY_FAILURE);
                }
                self.ls = LaunchState::Updating;
                self.fw = Some(GuestState::SnpLaunch);
            }
            if h.req_certs && !cfg.req_certs_supported {
                return Want::Unsupported;
            }
        } else {
            if self.ls == LaunchState::New {
                if (h.flavour == Flavour::Sev || h.legacy) && h.features != 0 {
                    return Want::InvalidInput;
                }
                if h.flavour == Flavour::SevEs && !cfg.es_supported {
                    return Want::Firmware(SevStatus::UNSUPPORTED);
                }
                self.ls = LaunchState::Initialized;
            }
            if !SevPolicy(h.sev_policy).allows_firmware(cfg.build) {
                return Want::Firmware(SevStatus::POLICY_FAILURE);
            }
            self.ls = LaunchState::Updating;
            self.fw = Some(GuestState::LaunchUpdate);
        }
        self.lc = State::Launching;
        Want::Ok
    }

    /// SEV-ES: LAUNCH_UPDATE_VMSA of every vCPU when still updating.
    fn update_vmsas(&mut self) {
        if self.h.flavour == Flavour::SevEs && self.ls == LaunchState::Updating {
            for v in self.vmsas() {
                self.sev.update(v.as_bytes());
            }
            self.ls = LaunchState::VmsaEncrypted;
        }
    }

    /// LAUNCH_MEASURE through `SevBackend::measure`.
    fn measure(&mut self) -> Want {
        match self.h.flavour {
            Flavour::SevSnp => return Want::Unsupported,
            Flavour::SevEs => {
                if !self.all_set() {
                    return Want::InvalidInput;
                }
                self.update_vmsas();
                if self.ls != LaunchState::VmsaEncrypted {
                    return Want::Sequence;
                }
            }
            Flavour::Sev => {
                if self.ls != LaunchState::Updating {
                    return Want::Sequence;
                }
            }
        }
        self.measured = Some(self.sev.clone().finalize().into());
        self.ls = LaunchState::Measured;
        self.fw = Some(GuestState::LaunchSecret);
        Want::Ok
    }

    /// `Lifecycle::finalize`.
    fn finalize(&mut self) -> Want {
        if self.lc != State::Launching {
            return Want::InvalidState;
        }
        if !self.all_set() {
            return Want::InvalidInput;
        }
        if self.snp() {
            if self.h.id_block {
                // The ID block's digest matches no launch: refused, nothing committed.
                return Want::Firmware(SevStatus::BAD_MEASUREMENT);
            }
            for v in self.vmsas() {
                self.gctx.update_vmsa(&v);
            }
        } else {
            self.update_vmsas();
            if self.ls != LaunchState::Measured {
                self.measured = Some(self.sev.clone().finalize().into());
            }
        }
        self.ls = LaunchState::Finished;
        self.fw = Some(GuestState::Running);
        self.lc = State::Ready;
        Want::Ok
    }

    /// A launch update of `data` claimed at `gpa` after the lifecycle's checks passed.
    fn region(&mut self, gpa: u64, data: Vec<u8>, pt: PageType) -> Want {
        if self.snp() {
            self.snp_update(&[(gpa / PAGE, data, pt)])
        } else {
            self.sev_region(&data, pt)
        }
    }
}

/// The live objects of one input.
struct Run<'h> {
    host: &'h mut Host,
    platform: Arc<SimPlatform>,
    guest: Lifecycle<SevBackend<SimFirmware>>,
    early_guard: RunGuard,
    vcpus: Vec<VcpuFd>,
    mem: GuestMemoryMmap,
    id_base: u64,
    m: Model,
}

#[allow(clippy::panic)]
fn read(mem: &GuestMemoryMmap, gpa: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    if let Err(e) = mem.read_slice(&mut b, GuestAddress(gpa)) {
        panic!("read guest memory [{gpa:#x}, +{len:#x}): {e}");
    }
    b
}

#[allow(clippy::panic)]
fn slice(mem: &GuestMemoryMmap, gpa: u64, len: u64) -> VolatileSlice<'_> {
    match mem.get_slice(GuestAddress(gpa), len as usize) {
        Ok(s) => s,
        Err(e) => panic!("slice [{gpa:#x}, +{len:#x}): {e}"),
    }
}

/// Write CPUID page contents `kind` into the in-memory pages of `[first, first + pages)`.
#[allow(clippy::panic)]
fn fill_cpuid(mem: &GuestMemoryMmap, first: u64, pages: u64, kind: u8) {
    let kind = match kind % 3 {
        0 => CpuidKind::Good,
        1 => CpuidKind::NeedsFix,
        _ => CpuidKind::Garbage,
    };
    let page = cpuid_page(kind);
    for p in first..(first + pages).min(MEM_PAGES) {
        if let Err(e) = mem.write_slice(&page, GuestAddress(p * PAGE)) {
            panic!("write CPUID page: {e}");
        }
    }
}

/// Arbitrary sequences of lifecycle and launch calls on an SEV, SEV-ES or SEV-SNP guest over
/// the simulated secure processor; see the module documentation for what is checked.
///
/// Input: a [`HEADER_LEN`]-byte header, then up to [`MAX_OPS`] [`OP_LEN`]-byte operations
/// (selector `% op::COUNT`, `a`, `b`, `c`). Header byte 0: flavour (bits 0-1: SEV, SEV-ES,
/// SNP), legacy VM type (bit 2), bit 3 unused, VMSA features DEBUG_SWAP (bit 4) and an
/// unsupported one (bit 5), `cbitpos` (bits 6-7: none, the host's, a wrong one). Byte 1: the
/// policy (SEV: NODBG, NOKS, NOSEND, DOMAIN, SEV, then a too-new API or a reserved bit; SNP: SMT, DEBUG,
/// SINGLE_SOCKET, ABI 2.0, an invalid policy, VCEK disabled, an ID block that cannot match).
/// Byte 2: the platform (default; no SEV-ES, no SMT, no certificate requests; two sockets, no
/// VMSA features). Byte 3: certificate requests (bit 0), CPUID correction refused (bit 1), a
/// VMSA builder with an AP reset address (bit 2), host data. Without `/dev/kvm` this prints
/// SKIP once and does nothing (it panics when `CGS_REQUIRE_KVM=1`).
#[allow(clippy::panic)]
pub fn fuzz_lifecycle(data: &[u8]) {
    let Some(host) = host() else {
        return;
    };
    let mut host = match host.lock() {
        Ok(h) => h,
        // A panic in an earlier input poisoned the lock; the Host itself is still whole.
        Err(poisoned) => poisoned.into_inner(),
    };
    let Some((head, ops)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let h = header(*head);
    let h_variant = h.variant;
    let snp = h.flavour == Flavour::SevSnp;
    let id_base = host.fresh_ids();
    let bad_id = (snp && h.id_block).then(|| host.bad_id_block());
    let pooled = host.platform(h.variant);
    let platform = Arc::clone(&pooled.platform);

    let fw = SimFirmware::new(&platform);
    let (built, valid) = if snp {
        let mut cfg = SevSnpGuestConfig::new("snp0", 1);
        cfg.policy = h.snp_policy;
        cfg.common.cbitpos = h.cbitpos;
        cfg.vcek_disabled = h.vcek_disabled;
        cfg.host_data = h.host_data;
        if let Some((block, auth)) = bad_id {
            cfg.id_block = Some(block);
            cfg.id_auth = Some(auth);
        }
        let retry = if h.cpuid_fail {
            CpuidRetry::Fail
        } else {
            CpuidRetry::UseCorrected
        };
        let b = SevBackend::snp(&cfg, fw)
            .map(|b| b.with_req_certs(h.req_certs).with_cpuid_retry(retry));
        (b, SnpPolicy(h.snp_policy).validate(None).is_ok())
    } else {
        let mut cfg = SevGuestConfig::new("sev0", 1);
        cfg.policy = h.sev_policy;
        cfg.common.cbitpos = h.cbitpos;
        cfg.legacy_vm_type = if h.legacy {
            OnOffAuto::On
        } else {
            OnOffAuto::Off
        };
        (
            SevBackend::sev(&cfg, fw),
            SevPolicy(h.sev_policy).validate().is_ok(),
        )
    };
    let mut backend = match (built, valid) {
        (Ok(b), true) => b,
        (Err(e), false) if class(&e) == Want::InvalidInput => return,
        (r, _) => panic!("backend construction: got {r:?}, the policy is valid: {valid}"),
    };
    backend = backend.with_vmsa_features(h.features);
    if h.ap_builder {
        let mut b = VmsaBuilder::new(VmmPreset::QEMU).ap_reset_eip(AP_RESET_EIP);
        if let Some(t) = VcpuType::by_name("EPYC-v4") {
            b = b.signature(t.signature());
        }
        backend = backend.with_vmsa_builder(b);
    }
    let mem_len = (MEM_PAGES * PAGE) as usize;
    let mem = match GuestMemoryMmap::from_ranges(&[(GuestAddress(0), mem_len)]) {
        Ok(m) => m,
        Err(e) => panic!("guest memory: {e}"),
    };
    for p in 0..MEM_PAGES {
        // Every page different, and different per header.
        let mut page = [p as u8 ^ head[0]; PAGE as usize];
        page[..8].copy_from_slice(&(p ^ u64::from_le_bytes([head[0]; 8])).to_le_bytes());
        if let Err(e) = mem.write_slice(&page, GuestAddress(p * PAGE)) {
            panic!("fill guest memory: {e}");
        }
    }
    let guest = Lifecycle::new(backend);
    let early_guard = guest.run_guard();
    let mut run = Run {
        host: &mut host,
        platform,
        guest,
        early_guard,
        vcpus: Vec::new(),
        mem,
        id_base,
        m: Model::new(h),
    };
    for (step, op) in ops.chunks_exact(OP_LEN).take(MAX_OPS).enumerate() {
        run.step(step, [op[0], op[1], op[2], op[3]]);
        run.check_consistency(step);
    }
    if run.m.fw.is_some() {
        // This input used one of the platform's guest handles.
        if let Some(p) = run.host.platforms[h_variant].as_mut() {
            p.guests += 1;
        }
    }
}

impl Run<'_> {
    #[allow(clippy::panic)]
    fn step(&mut self, step: usize, [sel, a, b, c]: [u8; OP_LEN]) {
        let vm = &self.host.shared.vm;
        let m = &mut self.m;
        match sel % op::COUNT {
            op::KVM_INIT => {
                let r = self.guest.kvm_init(&self.host.shared.kvm, vm);
                check(step, "kvm_init", &r, m.kvm_init());
            }
            op::CREATE_VCPU => {
                let id = self.id_base + u64::from(a) % VCPU_IDS;
                let dup = m.vcpus.iter().any(|v| v.0 == id);
                if m.lc == State::Launching && !dup && m.vcpus.len() >= MAX_VCPUS {
                    return;
                }
                let r = self.guest.create_vcpu(vm, id).map(|v| self.vcpus.push(v));
                let want = if m.lc != State::Launching {
                    Want::InvalidState
                } else if dup {
                    Want::InvalidInput
                } else {
                    m.vcpus.push((id, false));
                    Want::Ok
                };
                check(step, "create_vcpu", &r, want);
            }
            op::LAUNCH_MEMORY => {
                let first = u64::from(a) % (MEM_PAGES + 1);
                let pages = u64::from(b) % 4;
                let pt = page_type_from_byte(c);
                let gpa = first * PAGE + if c & 0x80 != 0 { 0x800 } else { 0 };
                let len = pages * PAGE;
                if pt == PageType::Cpuid {
                    fill_cpuid(&self.mem, first, pages, c >> 3);
                }
                let in_mem = gpa + len <= MEM_PAGES * PAGE;
                let data = if in_mem {
                    read(&self.mem, gpa, len)
                } else {
                    Vec::new()
                };
                let r = self.guest.launch_update_memory(
                    vm,
                    &self.mem,
                    GuestAddress(gpa),
                    len as usize,
                    pt,
                );
                let want = if m.lc != State::Launching {
                    Want::InvalidState
                } else if cgs_core::validate_region(gpa, len, pt).is_err() || !in_mem {
                    Want::InvalidInput
                } else {
                    m.region(gpa, data, pt)
                };
                check(step, "launch_update_memory", &r, want);
            }
            op::LAUNCH_SLICE => {
                let off = u64::from(a) % MEM_PAGES;
                let pages = (1 + u64::from(b) % 2).min(MEM_PAGES - off);
                let gpa = if c & 0x80 != 0 {
                    (FAR_GFN + u64::from(c & 1)) * PAGE
                } else {
                    (u64::from(b >> 4) % MEM_PAGES) * PAGE
                };
                let pt = page_type_from_byte(c & 0x3f);
                if pt == PageType::Cpuid {
                    fill_cpuid(&self.mem, off, pages, b >> 6);
                }
                let data = read(&self.mem, off * PAGE, pages * PAGE);
                let s = slice(&self.mem, off * PAGE, pages * PAGE);
                let r = self.guest.launch_update(vm, gpa, s, pt);
                let want = if m.lc != State::Launching {
                    Want::InvalidState
                } else if cgs_core::validate_region(gpa, pages * PAGE, pt).is_err() {
                    Want::InvalidInput
                } else {
                    m.region(gpa, data, pt)
                };
                check(step, "launch_update", &r, want);
            }
            op::LAUNCH_BATCH => {
                let p = u64::from(a) % (MEM_PAGES - 2);
                let q = if c & 0x40 != 0 { p + 2 } else { p + 1 };
                let (t1, t2) = (page_type_from_byte(b), page_type_from_byte(b >> 3));
                for (page, t) in [(p, t1), (q, t2)] {
                    if t == PageType::Cpuid {
                        fill_cpuid(&self.mem, page, 1, c);
                    }
                }
                let (d1, d2) = (
                    read(&self.mem, p * PAGE, PAGE),
                    read(&self.mem, q * PAGE, PAGE),
                );
                let regions = [
                    LaunchRegion {
                        gpa: p * PAGE,
                        data: slice(&self.mem, p * PAGE, PAGE),
                        page_type: t1,
                    },
                    LaunchRegion {
                        gpa: q * PAGE,
                        data: slice(&self.mem, q * PAGE, PAGE),
                        page_type: t2,
                    },
                ];
                let r = self.guest.backend_mut().launch_update_batch(vm, &regions);
                let want = if t1 == PageType::Vmsa || t2 == PageType::Vmsa {
                    Want::InvalidInput
                } else if m.snp() {
                    // Neighbours in GPA and host memory of one type become one range.
                    if t1 == t2 && q == p + 1 {
                        m.snp_update(&[(p, [d1, d2].concat(), t1)])
                    } else {
                        m.snp_update(&[(p, d1, t1), (q, d2, t2)])
                    }
                } else {
                    match m.sev_region(&d1, t1) {
                        Want::Ok => m.sev_region(&d2, t2),
                        w => w,
                    }
                };
                check(step, "launch_update_batch", &r, want);
            }
            op::SET_VCPU_STATE => {
                let index = usize::from(a) % 3;
                let vcpu = self.vcpus.get(index).unwrap_or(&self.host.shared.stray);
                let r = self.guest.set_vcpu_state(vm, index, vcpu);
                let want = if m.lc != State::Launching {
                    Want::InvalidState
                } else if m.vcpus.get(index).is_none_or(|v| v.1) {
                    Want::InvalidInput
                } else if index > 0 && !m.h.ap_builder {
                    // No AP reset address: the builder has no AP state.
                    Want::Backend
                } else {
                    m.vcpus[index].1 = true;
                    Want::Ok
                };
                check(step, "set_vcpu_state", &r, want);
            }
            op::FINALIZE => {
                let r = self.guest.finalize(vm);
                let want = m.finalize();
                check(step, "finalize", &r, want);
                if want == Want::Ok && a & 1 != 0 {
                    // The differential check: the firmware's digest is the offline one (only
                    // when `a` bit 0 asks: the report's signature is slow in debug builds).
                    if m.snp() {
                        self.snp_report(step, [a; 64]);
                    } else {
                        self.legacy_report(step, [a; 16]);
                    }
                }
            }
            op::MEASURE => {
                let r = self.guest.backend_mut().measure(vm);
                let want = m.measure();
                check(step, "measure", &r, want);
            }
            op::ATTEST => {
                if m.snp() {
                    let r = self.guest.backend_mut().attestation_report(vm, [a; 16]);
                    check(step, "attestation_report", &r, Want::Unsupported);
                    self.snp_report(step, [a; 64]);
                } else {
                    self.legacy_report(step, [a; 16]);
                    let r = self.guest.backend().firmware().snp_guest_report([a; 64], 0);
                    check(
                        step,
                        "snp_guest_report",
                        &r,
                        Want::Firmware(SevStatus::INVALID_GUEST),
                    );
                }
            }
            op::SECRET => self.secret(step, a, b),
            op::RESET => {
                let r = self.guest.reset(vm);
                let want = if m.lc != State::Ready {
                    Want::InvalidState
                } else if m.h.flavour != Flavour::Sev {
                    Want::Unsupported
                } else {
                    Want::Ok
                };
                check(step, "reset", &r, want);
            }
            op::QUERIES => self.queries(step, a),
            op::RUN => {
                if m.lc != State::Ready {
                    // The guard must refuse before KVM_RUN; a ready guest is not run.
                    let vcpu = match self.vcpus.first_mut() {
                        Some(v) => v,
                        None => &mut self.host.shared.stray,
                    };
                    let r = self.guest.run(vcpu).map(|_| ());
                    check(step, "run", &r, Want::NotReady);
                    let r = self.guest.run_guard().run(vcpu).map(|_| ());
                    check(step, "run_guard().run", &r, Want::NotReady);
                }
            }
            op::FAULTS => {
                let max = u64::from(a) % 4;
                self.guest
                    .backend_mut()
                    .firmware_mut()
                    .set_update_faults(UpdateFaults {
                        max_pages_per_call: (max != 0).then_some(max),
                        eagain_calls: u32::from(b) % 3,
                    });
            }
            op::REGISTER => {
                let all = slice(&self.mem, 0, MEM_PAGES * PAGE);
                let r = self.guest.backend_mut().register_memory(vm, &all);
                let want = if m.snp() {
                    Want::Ok
                } else if m.ls == LaunchState::New {
                    Want::Kvm(libc::ENOTTY)
                } else {
                    m.registered += MEM_PAGES * PAGE;
                    Want::Ok
                };
                check(step, "register_memory", &r, want);
            }
            _ => {
                let r = self.guest.backend_mut().firmware_mut().guest_status(vm);
                let want = if m.ls == LaunchState::New {
                    Want::Kvm(libc::ENOTTY)
                } else if m.snp() {
                    Want::Kvm(libc::EPERM)
                } else if m.fw.is_none() {
                    Want::Firmware(SevStatus::INVALID_GUEST)
                } else {
                    Want::Ok
                };
                check(step, "guest_status", &r, want);
                if let (Ok(s), Some(fw)) = (&r, m.fw) {
                    if s.state != fw.code() || s.policy != m.h.sev_policy {
                        panic!("step {step}: GUEST_STATUS {s:?}, the model has {fw:?}");
                    }
                }
            }
        }
    }

    /// The legacy attestation report: refused before LAUNCH_MEASURE, afterwards signed by the
    /// PEK over the model's digest.
    #[allow(clippy::panic)]
    fn legacy_report(&mut self, step: usize, mnonce: [u8; 16]) {
        let r = self
            .guest
            .backend_mut()
            .attestation_report(&self.host.shared.vm, mnonce);
        let m = &self.m;
        let want = if matches!(m.ls, LaunchState::Measured | LaunchState::Finished) {
            Want::Ok
        } else {
            Want::Sequence
        };
        check(step, "attestation_report", &r, want);
        if let Ok(raw) = r {
            // The layout `verify_legacy_report` reads (its ECDSA check is left to the unit
            // tests: too slow for the stable corpus run).
            let field = |range: std::ops::Range<usize>| raw.get(range).map(<[u8]>::to_vec);
            let policy = field(48..52).map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
            if raw.len() != LEGACY_REPORT_LEN
                || field(0..16).as_deref() != Some(&mnonce[..])
                || field(16..48).as_deref() != m.measured.as_ref().map(|d| &d[..])
                || policy != Some(m.h.sev_policy)
            {
                panic!(
                    "step {step}: legacy report {raw:02x?}, the model measured {:?}",
                    m.measured
                );
            }
        }
    }

    /// The SNP guest's attestation report: refused until the guest runs, afterwards over the
    /// model's digest and the configured host data.
    #[allow(clippy::panic)]
    fn snp_report(&mut self, step: usize, report_data: [u8; 64]) {
        let r = self
            .guest
            .backend()
            .firmware()
            .snp_guest_report(report_data, 0);
        let m = &self.m;
        let want = match m.fw {
            None => Want::Firmware(SevStatus::INVALID_GUEST),
            Some(GuestState::Running) => Want::Ok,
            Some(_) => Want::Firmware(SevStatus::INVALID_GUEST_STATE),
        };
        check(step, "snp_guest_report", &r, want);
        if let Ok(raw) = r {
            let report = match AttestationReport::parse(&raw) {
                Ok(rep) => rep,
                Err(e) => panic!("step {step}: the firmware's report does not parse: {e}"),
            };
            let b = &report.body;
            if b.measurement != m.gctx.ld()
                || b.host_data != m.h.host_data
                || b.report_data != report_data
                || b.policy != m.h.snp_policy
            {
                panic!(
                    "step {step}: SNP report measurement {:02x?}, the model's digest {:02x?}",
                    b.measurement,
                    m.gctx.ld()
                );
            }
        }
    }

    /// LAUNCH_SECRET of a packet no guest owner sealed (the transport keys are the
    /// firmware's own: no session, whose ECDH would make the target too slow), 32 bytes or
    /// (`b & 1`) a length the firmware refuses.
    #[allow(clippy::panic)]
    fn secret(&mut self, step: usize, a: u8, b: u8) {
        let gpa = (u64::from(a) % MEM_PAGES) * PAGE + u64::from((b >> 1) & 3) * 16;
        let len = if b & 1 != 0 { 24 } else { 32 };
        let target = slice(&self.mem, gpa, len);
        let hdr = match PacketHeader::from_bytes(&[0; crate::session::PACKET_HEADER_LEN]) {
            Ok(hdr) => hdr,
            Err(e) => panic!("step {step}: packet header: {e}"),
        };
        let before = read(&self.mem, gpa, len);
        let r = self.guest.backend_mut().inject_secret(
            &self.host.shared.vm,
            gpa,
            &hdr,
            &vec![0x5E; len as usize],
            &target,
        );
        let m = &mut self.m;
        let want = if m.snp() {
            Want::Unsupported
        } else if m.ls != LaunchState::Measured {
            Want::Sequence
        } else if len % 16 != 0 {
            Want::Firmware(SevStatus::INVALID_LEN)
        } else {
            Want::Firmware(SevStatus::BAD_MEASUREMENT)
        };
        check(step, "inject_secret", &r, want);
        if read(&self.mem, gpa, len) != before {
            panic!("step {step}: a refused LAUNCH_SECRET wrote guest memory");
        }
    }

    /// The migration blocker (`a % 3`: query, lift, replace) and the fixed properties.
    #[allow(clippy::panic)]
    fn queries(&mut self, step: usize, a: u8) {
        const REPLACED: &str = "fuzz: replaced blocker";
        let backend = self.guest.backend_mut();
        let m = &mut self.m;
        match a % 3 {
            1 => {
                let r = backend.set_migration_blocker(None);
                let want = if m.h.flavour == Flavour::Sev {
                    m.blocker = None;
                    Want::Ok
                } else {
                    Want::Unsupported
                };
                check(step, "set_migration_blocker(None)", &r, want);
            }
            2 => {
                let r = backend.set_migration_blocker(Some(MigrationBlocker::new(REPLACED)));
                m.blocker = Some(REPLACED.to_owned());
                check(step, "set_migration_blocker(Some)", &r, Want::Ok);
            }
            _ => {}
        }
        let got = self.guest.migration_blocker().map(|b| b.reason.to_string());
        let backend = self.guest.backend();
        if got != m.blocker
            || backend.flavour() != m.h.flavour
            || backend.platform() != m.h.flavour.platform()
            || backend.vm_type() != KVM_X86_DEFAULT_VM
            || backend.object_type()
                != if m.snp() {
                    SevSnpGuestConfig::TYPE
                } else {
                    SevGuestConfig::TYPE
                }
        {
            panic!("step {step}: blocker {got:?} / properties disagree with the model {m:?}");
        }
    }

    /// The lifecycle, its guards, the backend, the firmware and (SNP) the RMP agree with the
    /// model.
    #[allow(clippy::panic)]
    fn check_consistency(&self, step: usize) {
        let m = &self.m;
        let backend = self.guest.backend();
        let fw = backend.firmware();
        let stats = fw.stats();
        let ready = m.lc == State::Ready;
        let cpuid_changes = backend.snp_update_totals().map(|t| t.cpuid_changes.len());
        let facts = [
            ("state", self.guest.state() == m.lc),
            ("is_ready", self.guest.is_ready() == ready),
            ("ensure_ready", self.guest.ensure_ready().is_ok() == ready),
            (
                "run_guard",
                self.guest.run_guard().ensure_ready().is_ok() == ready,
            ),
            (
                "early run_guard",
                self.early_guard.ensure_ready().is_ok() == ready,
            ),
            ("vcpu_count", self.guest.vcpu_count() == m.vcpus.len()),
            ("launch_state", backend.launch_state() == m.ls),
            ("guest_state", fw.guest_state() == m.fw),
            ("handle", fw.handle().is_some() == m.fw.is_some()),
            (
                "launch_update_data_calls",
                stats.launch_update_data_calls == m.update_data_calls,
            ),
            ("snp_pages", stats.snp_pages == m.snp_pages),
            ("registered_bytes", stats.registered_bytes == m.registered),
            (
                "cpuid_changes",
                cpuid_changes == m.snp().then_some(m.cpuid_changes),
            ),
            (
                "vmsas",
                backend.vmsas().len() == m.vcpus.iter().filter(|v| v.1).count(),
            ),
        ];
        if let Some((name, _)) = facts.iter().find(|(_, ok)| !ok) {
            panic!(
                "step {step}: {name} disagrees with the model {m:?}: lifecycle {}, launch {}, \
                 firmware {:?}, {stats:?}",
                self.guest.state(),
                backend.launch_state(),
                fw.guest_state()
            );
        }
        if let (true, Some(handle)) = (m.snp(), fw.handle()) {
            for gfn in (0..MEM_PAGES).chain([FAR_GFN]) {
                let e = self.platform.rmp_entry(handle, gfn).unwrap_or_default();
                let want = (m.assigned.contains(&gfn), m.launched.contains(&gfn));
                if (e.assigned, e.validated) != want {
                    panic!("step {step}: RMP entry of GFN {gfn:#x} is {e:?}, the model {want:?}");
                }
            }
        }
    }
}

/// One encoded operation.
pub fn encode_op(sel: u8, a: u8, b: u8, c: u8) -> [u8; OP_LEN] {
    [sel, a, b, c]
}

/// Seed inputs for the `sev_lifecycle` target: whole launches of each flavour (SEV with
/// registration, measurement, refused secrets and report; SEV-ES with two vCPUs; SNP with every page
/// type, a corrected CPUID page, update faults and a batch), the illegal orders (every call
/// before `kvm_init`, twice, after finalize, overlapping and misaligned regions) and the
/// refusals of the configuration (policies the firmware refuses, missing features, a wrong
/// C-bit, an ID block that does not match).
pub fn seeds_lifecycle() -> Vec<Vec<u8>> {
    use op::*;
    let o = encode_op;
    // Page types for `c`: 0 normal, 2 zero, 3 unmeasured, 4 VMSA, 5 secrets, 6 CPUID.
    let sev_launch = [
        o(STATUS, 0, 0, 0),
        o(REGISTER, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(REGISTER, 0, 0, 0),
        o(STATUS, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 2, 0),
        o(LAUNCH_SLICE, 3, 0x10, 2),
        o(LAUNCH_BATCH, 4, 3 << 3, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(ATTEST, 1, 0, 0),
        o(MEASURE, 0, 0, 0),
        o(LAUNCH_MEMORY, 6, 1, 0),
        o(SECRET, 2, 1, 7),
        o(SECRET, 2, 0, 7),
        o(STATUS, 0, 0, 0),
        o(FINALIZE, 2, 0, 0),
        o(RUN, 0, 0, 0),
        o(RESET, 0, 0, 0),
        o(QUERIES, 0, 0, 0),
        o(QUERIES, 1, 0, 0),
        o(QUERIES, 2, 0, 0),
    ];
    let es_launch = [
        o(KVM_INIT, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(CREATE_VCPU, 1, 0, 0),
        o(LAUNCH_MEMORY, 0, 3, 0),
        o(LAUNCH_MEMORY, 4, 1, 3),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(MEASURE, 0, 0, 0),
        o(SET_VCPU_STATE, 1, 0, 0),
        o(MEASURE, 0, 0, 0),
        o(LAUNCH_MEMORY, 5, 1, 0),
        o(FINALIZE, 1, 0, 0),
        o(RESET, 0, 0, 0),
        o(QUERIES, 1, 0, 0),
    ];
    let snp_launch = [
        o(ATTEST, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(CREATE_VCPU, 2, 0, 0),
        o(LAUNCH_MEMORY, 0, 2, 0),
        o(LAUNCH_MEMORY, 2, 1, 2),
        o(LAUNCH_MEMORY, 3, 1, 5),
        o(LAUNCH_MEMORY, 4, 1, 6),
        o(FAULTS, 1, 2, 0),
        o(LAUNCH_MEMORY, 5, 1, 6 | 1 << 3),
        o(FAULTS, 0, 0, 0),
        o(LAUNCH_BATCH, 5, 3 | 3 << 3, 0),
        o(LAUNCH_SLICE, 0, 0, 0x80),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(SET_VCPU_STATE, 1, 0, 0),
        o(ATTEST, 0, 0, 0),
        o(FINALIZE, 5, 0, 0),
        o(RESET, 0, 0, 0),
        o(QUERIES, 1, 0, 0),
        o(QUERIES, 2, 0, 0),
        o(STATUS, 0, 0, 0),
        o(REGISTER, 0, 0, 0),
    ];
    let snp_illegal = [
        o(FINALIZE, 0, 0, 0),
        o(RUN, 0, 0, 0),
        o(RESET, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 1, 0),
        o(LAUNCH_BATCH, 0, 0, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(MEASURE, 0, 0, 0),
        o(SECRET, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(CREATE_VCPU, 1, 0, 0),
        o(CREATE_VCPU, 1, 0, 0),
        o(SET_VCPU_STATE, 1, 0, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 1, 4),
        o(LAUNCH_MEMORY, 0, 1, 0x80),
        o(LAUNCH_MEMORY, 7, 2, 0),
        o(LAUNCH_MEMORY, 1, 2, 0),
        o(LAUNCH_MEMORY, 0, 3, 0),
        o(LAUNCH_MEMORY, 4, 1, 6 | 2 << 3),
        o(LAUNCH_SLICE, 0, 1, 0x81),
        o(LAUNCH_BATCH, 0, 0, 0),
        o(LAUNCH_BATCH, 2, 4, 0x40),
        o(FINALIZE, 0, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(LAUNCH_MEMORY, 5, 1, 0),
        o(KVM_INIT, 0, 0, 0),
        o(CREATE_VCPU, 2, 0, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
    ];
    let sev_illegal = [
        o(MEASURE, 0, 0, 0),
        o(ATTEST, 0, 0, 0),
        o(SECRET, 0, 0, 0),
        o(LAUNCH_BATCH, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(SECRET, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 1, 5),
        o(LAUNCH_MEMORY, 0, 1, 6),
        o(LAUNCH_MEMORY, 0, 1, 3),
        o(MEASURE, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 1, 0),
        o(LAUNCH_MEMORY, 0, 1, 3),
        o(MEASURE, 0, 0, 0),
        o(SECRET, 1, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(SECRET, 0, 0, 0),
        o(MEASURE, 0, 0, 0),
    ];
    let init_only = [
        o(KVM_INIT, 0, 0, 0),
        o(KVM_INIT, 0, 0, 0),
        o(STATUS, 0, 0, 0),
    ];
    let snp_finish = [
        o(KVM_INIT, 0, 0, 0),
        o(CREATE_VCPU, 0, 0, 0),
        o(LAUNCH_MEMORY, 0, 1, 0),
        o(SET_VCPU_STATE, 0, 0, 0),
        o(FINALIZE, 0, 0, 0),
        o(ATTEST, 0, 0, 0),
        o(FINALIZE, 1, 0, 0),
    ];
    let seed = |h: [u8; HEADER_LEN], ops: &[[u8; OP_LEN]]| {
        let mut v = h.to_vec();
        v.extend(ops.concat());
        v
    };
    let mut seeds = vec![
        // SEV, INIT2, NODBG; then legacy INIT, checked through the signed report.
        seed([0x00, 0x01, 0, 0], &sev_launch),
        seed(
            [0x04, 0x00, 0, 0],
            &[&sev_launch[..], &[o(ATTEST, 3, 0, 0)]].concat(),
        ),
        // SEV-ES, INIT2 with DEBUG_SWAP, AP builder.
        seed([0x11, 0x01, 0, 0x04], &es_launch),
        // SEV-ES without an AP reset address, legacy ES_INIT.
        seed([0x05, 0x00, 0, 0x00], &es_launch),
        // SNP with SMT, certificate requests, AP builder, host data, VCEK disabled (an
        // unsigned report, fast in debug builds); CPUID corrections refused.
        seed([0x12, 0x41, 0, 0x25], &snp_launch),
        seed([0x02, 0x41, 0, 0x06], &snp_launch),
        seed([0x02, 0x01, 0, 0x04], &snp_illegal),
        seed([0x00, 0x00, 0, 0x00], &sev_illegal),
        seed([0x01, 0x00, 0, 0x00], &sev_illegal),
        // Refused configurations: ES on a platform without it, a too-new API, (accepted: the
        // host's C-bit, DOMAIN and SEV), a wrong C-bit, an unsupported feature, SNP without
        // SMT, on two sockets, certificate requests the kernel lacks.
        seed([0x01, 0x00, 1, 0], &init_only),
        seed([0x00, 0x20, 0, 0], &init_only),
        seed([0x40, 0x18, 0, 0], &init_only),
        seed([0x80, 0x00, 0, 0], &init_only),
        seed([0x21, 0x00, 0, 0], &init_only),
        seed([0x12, 0x01, 2, 0], &init_only),
        seed([0x02, 0x00, 0, 0], &init_only),
        seed([0x02, 0x05, 2, 0], &init_only),
        seed([0x02, 0x00, 1, 1], &init_only),
        seed([0x00, 0x60, 0, 0], &init_only),
        // SNP with an ID block whose digest cannot match.
        seed([0x02, 0x81, 0, 0], &snp_finish),
    ];
    // The illegal orders on every flavour and platform, with and without an AP builder.
    for flavour in 0..3u8 {
        for platform in 0..PLATFORM_VARIANTS as u8 {
            for extras in [0u8, 4] {
                let ops: &[[u8; OP_LEN]] = if flavour == 2 {
                    &snp_illegal
                } else {
                    &sev_illegal
                };
                seeds.push(seed([flavour, 1, platform, extras], ops));
            }
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed runs through the model without a disagreement, and the checked-in corpus is
    /// what the encoder makes (`CGS_WRITE_CORPUS=1` regenerates fuzz/corpus/sev_lifecycle).
    #[test]
    fn seeds_run_and_match_the_checked_in_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/sev_lifecycle");
        let write = std::env::var("CGS_WRITE_CORPUS").is_ok_and(|v| v == "1");
        for (i, seed) in seeds_lifecycle().iter().enumerate() {
            fuzz_lifecycle(seed);
            let path = dir.join(format!("seed-{i}"));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
        }
    }

    /// Mutated seeds (bytes flipped, operations dropped and repeated) keep the model and the
    /// backend in agreement.
    #[test]
    fn mutated_seeds_agree_with_the_model() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for seed in seeds_lifecycle() {
            for _ in 0..8 {
                let mut s = seed.clone();
                for _ in 0..(next() % 6) {
                    let i = (next() as usize) % s.len();
                    s[i] ^= 1 << (next() % 8);
                }
                if next() % 2 == 0 && s.len() > HEADER_LEN + OP_LEN {
                    let i = HEADER_LEN + (next() as usize) % (s.len() - HEADER_LEN - OP_LEN);
                    let i = i - (i - HEADER_LEN) % OP_LEN;
                    let op: Vec<u8> = s[i..i + OP_LEN].to_vec();
                    s.splice(i..i, op);
                }
                fuzz_lifecycle(&s);
            }
        }
    }
}
