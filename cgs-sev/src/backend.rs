//! The cgs-core [`ConfidentialBackend`] for `sev-guest` (SEV, SEV-ES) and `sev-snp-guest`
//! (SEV-SNP), generic over the [`SevFirmware`].
//!
//! Hook mapping (QEMU `target/i386/sev.c` order, qemu-cgs.md §3):
//!
//! | hook | SEV / SEV-ES | SEV-SNP |
//! |---|---|---|
//! | `kvm_init` | INIT or INIT2 (VMSA features probed and checked), LAUNCH_START | INIT2, `KVM_CAP_EXIT_HYPERCALL` (MAP_GPA_RANGE), SNP_LAUNCH_START, optionally ENABLE_REQ_CERTS |
//! | `launch_update` | LAUNCH_UPDATE_DATA (normal and zero pages) | private + SNP_LAUNCH_UPDATE (every page type; EAGAIN / partial-progress loop; CPUID retry) |
//! | `set_vcpu_state` | registers programmed from the [`VmsaBuilder`] (the VMSA kept for ES) | same, VMSA kept |
//! | `finalize` | (ES: LAUNCH_UPDATE_VMSA), LAUNCH_MEASURE unless the VMM already called [`SevBackend::measure`], LAUNCH_FINISH | SNP_LAUNCH_FINISH (VMSAs, ID block, ID auth, host data) |
//! | `reset` | allowed for SEV; SEV-ES refuses (`Unsupported`) | refuses |
//!
//! Between [`SevBackend::measure`] and `finalize` the guest owner verifies the measurement and the
//! VMM may [`SevBackend::inject_secret`] and fetch an [`SevBackend::attestation_report`], as with
//! QEMU's `-S` launch.
//!
//! Migration: SEV-ES and SNP are always blocked (KVM has no command to migrate encrypted vCPU
//! state or SNP guests); legacy SEV is blocked until [`SevBackend::set_migration_blocker`] lifts it
//! (the SEV live-migration work calls it when the guest opts in).

use std::borrow::Cow;

use base64::Engine;
use cgs_core::config::{OnOffAuto, SevGuestConfig, SevSnpGuestConfig};
use cgs_core::uapi::KVM_CAP_EXIT_HYPERCALL;
use cgs_core::{
    ConfidentialBackend, Error, LaunchRegion, MigrationBlocker, PageType, Platform, Result,
};
use kvm_bindings::kvm_enable_cap;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::VolatileSlice;

use crate::firmware::{Flavour, SevFirmware, SnpLaunchFinish, SnpPageType};
use crate::launch::sev::{SevLauncher, StartParams};
use crate::launch::snp::{CpuidRetry, SnpLauncher, SnpRegion, UpdateReport};
use crate::launch::LaunchState;
use crate::measure::vmsa::{VcpuState, VmsaBuilder, VmsaPage, SEV_FEATURE_SNP_ACTIVE};
use crate::measure::{VcpuType, VmmPreset};
use crate::session::{LaunchMeasurement, PacketHeader};
use crate::uapi::{
    KVM_SEV_SNP_FINISH_DATA_SIZE, KVM_SEV_SNP_ID_AUTH_SIZE, KVM_SEV_SNP_ID_BLOCK_SIZE,
};

/// `KVM_HC_MAP_GPA_RANGE`.
const KVM_HC_MAP_GPA_RANGE: u64 = 12;

/// Migration blocker of a legacy SEV guest until it opts in (lifted by
/// [`migration::optin::apply`](crate::migration::optin::apply)).
pub const BLOCKER_SEV: &str =
    "SEV: the guest has not enabled migration (MSR_KVM_MIGRATION_CONTROL.KVM_MIGRATION_READY)";
/// SEV-ES blocker (permanent: KVM has no interface for the firmware's *_UPDATE_VMSA).
pub const BLOCKER_SEV_ES: &str = "SEV-ES: Migration is not implemented: KVM has no \
     SEND_UPDATE_VMSA/RECEIVE_UPDATE_VMSA, so the encrypted vCPU state cannot be moved";
/// SEV-SNP blocker (permanent).
pub const BLOCKER_SEV_SNP: &str =
    "SEV-SNP: Migration is not implemented: KVM has no SNP migration commands";

#[derive(Debug)]
enum Launch<F> {
    Sev(SevLauncher<F>),
    Snp(SnpLauncher<F>),
}

#[derive(Debug, Clone)]
struct SnpFinishInputs {
    id_block: Option<Box<[u8; KVM_SEV_SNP_ID_BLOCK_SIZE]>>,
    id_auth: Option<Box<[u8; KVM_SEV_SNP_ID_AUTH_SIZE]>>,
    author_key: bool,
    vcek_disabled: bool,
    host_data: [u8; KVM_SEV_SNP_FINISH_DATA_SIZE],
}

/// The SEV family backend.
#[derive(Debug)]
pub struct SevBackend<F> {
    id: String,
    launch: Launch<F>,
    legacy: bool,
    vmsa_features: u64,
    vmsa: VmsaBuilder,
    start: StartParams,
    snp_finish: Option<SnpFinishInputs>,
    req_certs: bool,
    cbitpos: Option<u32>,
    vcpus: usize,
    states: Vec<Option<VcpuState>>,
    blocker: Option<MigrationBlocker>,
}

fn read_b64_file(property: &'static str, path: &str) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid_input(property, format!("SEV: Failed to read '{path}' ({e})"))
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Error::invalid_input(property, format!("'{path}' is not base64: {e}")))
}

/// QEMU's default vCPU model for measurement (EPYC-v4, signature 0x00800F12); with the legacy
/// `KVM_SEV_ES_INIT` KVM does not sync MXCSR/FCW into the VMSA, so the legacy preset applies.
fn default_vmsa_builder(legacy: bool) -> VmsaBuilder {
    let preset = if legacy {
        VmmPreset::QEMU_LEGACY_INIT
    } else {
        VmmPreset::QEMU
    };
    let b = VmsaBuilder::new(preset);
    match VcpuType::by_name("EPYC-v4") {
        Some(t) => b.signature(t.signature()),
        None => b,
    }
}

impl<F: SevFirmware> SevBackend<F> {
    /// A `sev-guest` backend (SEV, or SEV-ES when the policy has the ES bit). `dh-cert-file` and
    /// `session-file` are read (base64) here.
    pub fn sev(config: &SevGuestConfig, fw: F) -> Result<Self> {
        config.validate()?;
        let mut start = StartParams {
            handle: config.handle,
            ..Default::default()
        };
        if let Some(p) = &config.dh_cert_file {
            start.dh_cert = Some(read_b64_file("dh-cert-file", p)?);
        }
        if let Some(p) = &config.session_file {
            start.session = Some(read_b64_file("session-file", p)?);
        }
        let launcher = SevLauncher::new(fw, config.policy)?;
        // QEMU: `auto` behaves like `on` today.
        let legacy = config.legacy_vm_type != OnOffAuto::Off;
        let blocker = if launcher.flavour() == Flavour::SevEs {
            BLOCKER_SEV_ES
        } else {
            BLOCKER_SEV
        };
        Ok(SevBackend {
            id: config.id.clone(),
            launch: Launch::Sev(launcher),
            legacy,
            vmsa_features: 0,
            vmsa: default_vmsa_builder(legacy),
            start,
            snp_finish: None,
            req_certs: false,
            cbitpos: config.common.cbitpos,
            vcpus: 0,
            states: Vec::new(),
            blocker: Some(MigrationBlocker::new(blocker)),
        })
    }

    /// A `sev-snp-guest` backend.
    pub fn snp(config: &SevSnpGuestConfig, fw: F) -> Result<Self> {
        config.validate()?;
        let id_block = match &config.id_block {
            Some(b) => {
                let arr: [u8; KVM_SEV_SNP_ID_BLOCK_SIZE] =
                    b.as_slice().try_into().map_err(|_| {
                        Error::invalid_input("id-block", format!("{} bytes, expected 96", b.len()))
                    })?;
                Some(Box::new(arr))
            }
            None => None,
        };
        let launcher = SnpLauncher::new(fw, config.policy, config.guest_visible_workarounds)?;
        Ok(SevBackend {
            id: config.id.clone(),
            launch: Launch::Snp(launcher),
            legacy: false,
            vmsa_features: 0,
            vmsa: default_vmsa_builder(false),
            start: StartParams::default(),
            snp_finish: Some(SnpFinishInputs {
                id_block,
                id_auth: config.id_auth_padded(),
                author_key: config.author_key_enabled,
                vcek_disabled: config.vcek_disabled,
                host_data: config.host_data,
            }),
            req_certs: false,
            cbitpos: config.common.cbitpos,
            vcpus: 0,
            states: Vec::new(),
            blocker: Some(MigrationBlocker::new(BLOCKER_SEV_SNP)),
        })
    }

    /// Use `builder` (VMM preset, vCPU signature, AP reset address) for the vCPUs' initial
    /// state; its `SEV_FEATURES` are replaced by the backend's. Call before `set_vcpu_state`.
    pub fn with_vmsa_builder(mut self, builder: VmsaBuilder) -> Self {
        self.vmsa = builder;
        self
    }

    /// Request VMSA `SEV_FEATURES` for INIT2 (SEV-ES/SNP; checked against
    /// `KVM_X86_SEV_VMSA_FEATURES` at `kvm_init`). Without `SNP_ACTIVE`, which SNP adds itself.
    pub fn with_vmsa_features(mut self, features: u64) -> Self {
        self.vmsa_features = features & !SEV_FEATURE_SNP_ACTIVE;
        self
    }

    /// Give LAUNCH_START's DH certificate and session directly instead of through files.
    pub fn with_start_params(mut self, start: StartParams) -> Self {
        self.start = start;
        self
    }

    /// Enable `KVM_SEV_SNP_ENABLE_REQ_CERTS` at `kvm_init` (SNP).
    pub fn with_req_certs(mut self, on: bool) -> Self {
        self.req_certs = on;
        self
    }

    /// Choose what happens when the firmware corrects the CPUID page (SNP).
    pub fn with_cpuid_retry(mut self, retry: CpuidRetry) -> Self {
        if let Launch::Snp(l) = &mut self.launch {
            l.set_cpuid_retry(retry);
        }
        self
    }

    /// The object id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The flavour.
    pub fn flavour(&self) -> Flavour {
        match &self.launch {
            Launch::Sev(l) => l.flavour(),
            Launch::Snp(_) => Flavour::SevSnp,
        }
    }

    /// The launch state.
    pub fn launch_state(&self) -> LaunchState {
        match &self.launch {
            Launch::Sev(l) => l.state(),
            Launch::Snp(l) => l.state(),
        }
    }

    /// The firmware.
    pub fn firmware(&self) -> &F {
        match &self.launch {
            Launch::Sev(l) => l.firmware(),
            Launch::Snp(l) => l.firmware(),
        }
    }

    /// The firmware, mutably.
    pub fn firmware_mut(&mut self) -> &mut F {
        match &mut self.launch {
            Launch::Sev(l) => l.firmware_mut(),
            Launch::Snp(l) => l.firmware_mut(),
        }
    }

    /// The `SEV_FEATURES` the vCPUs get (SNP: with `SNP_ACTIVE`).
    pub fn sev_features(&self) -> u64 {
        match self.flavour() {
            Flavour::Sev => 0,
            Flavour::SevEs => self.vmsa_features,
            Flavour::SevSnp => self.vmsa_features | SEV_FEATURE_SNP_ACTIVE,
        }
    }

    /// The VMSA builder the backend programs vCPUs from (with the backend's `SEV_FEATURES`),
    /// so an offline measurement can use exactly the same one.
    pub fn vmsa_builder(&self) -> VmsaBuilder {
        self.vmsa.sev_features(self.sev_features())
    }

    /// The VMSA pages of the vCPUs whose state was set, in vCPU order.
    pub fn vmsas(&self) -> Vec<VmsaPage> {
        self.states.iter().flatten().map(|s| s.to_vmsa()).collect()
    }

    /// SNP: what the launch updates so far did (calls, coalesced ranges, CPUID corrections).
    pub fn snp_update_totals(&self) -> Option<&UpdateReport> {
        match &self.launch {
            Launch::Snp(l) => Some(l.update_totals()),
            Launch::Sev(_) => None,
        }
    }

    /// Replace the migration blocker. Only legacy SEV may be unblocked (the live-migration work
    /// calls this when the guest opts in through `MSR_KVM_MIGRATION_CONTROL`); SEV-ES and SNP
    /// refuse with `Unsupported`.
    pub fn set_migration_blocker(&mut self, blocker: Option<MigrationBlocker>) -> Result<()> {
        if blocker.is_none() && self.flavour() != Flavour::Sev {
            return Err(Error::unsupported(
                format!("migration of {} guests", self.flavour().platform()),
                match self.flavour() {
                    Flavour::SevSnp => BLOCKER_SEV_SNP,
                    _ => BLOCKER_SEV_ES,
                },
            ));
        }
        self.blocker = blocker;
        Ok(())
    }

    fn sev_launcher(&mut self, op: &'static str) -> Result<&mut SevLauncher<F>> {
        match &mut self.launch {
            Launch::Sev(l) => Ok(l),
            Launch::Snp(_) => Err(Error::unsupported(
                op,
                "SEV-SNP guests have no legacy launch measurement, secret or report",
            )),
        }
    }

    fn all_vmsas(&self) -> Result<Vec<VmsaPage>> {
        if self.states.len() != self.vcpus
            || self.states.iter().any(Option::is_none)
            || self.vcpus == 0
        {
            return Err(Error::invalid_input(
                "launch",
                "every vCPU needs its initial state (set_vcpu_state) before the VMSAs are measured",
            ));
        }
        Ok(self.vmsas())
    }

    /// Register (pin) a guest RAM region of an SEV/SEV-ES guest (`KVM_MEMORY_ENCRYPT_REG_REGION`,
    /// QEMU's RAM-block notifier). Call it for every RAM region after `kvm_init`. SNP guests use
    /// guest_memfd and need no registration (`Ok` without a call).
    pub fn register_memory(&mut self, vm: &VmFd, region: &VolatileSlice<'_>) -> Result<()> {
        if self.flavour() == Flavour::SevSnp {
            return Ok(());
        }
        self.firmware_mut().register_region(vm, region)
    }

    /// LAUNCH_MEASURE (SEV/SEV-ES; for SEV-ES first LAUNCH_UPDATE_VMSA of every vCPU). The guest
    /// owner checks the result with [`crate::session::GuestOwner::verify_measurement`].
    pub fn measure(&mut self, vm: &VmFd) -> Result<LaunchMeasurement> {
        let vmsas = if self.flavour() == Flavour::SevEs {
            Some(self.all_vmsas()?)
        } else {
            None
        };
        let l = self.sev_launcher("LAUNCH_MEASURE")?;
        if let Some(v) = vmsas {
            if l.state() == LaunchState::Updating {
                l.update_vmsa(vm, &v)?;
            }
        }
        l.measure(vm)
    }

    /// LAUNCH_SECRET of a packet sealed by the guest owner into the VMM's mapping `target` of
    /// guest memory at `gpa` (SEV/SEV-ES, after [`measure`](Self::measure)).
    pub fn inject_secret(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        ciphertext: &[u8],
        target: &VolatileSlice<'_>,
    ) -> Result<()> {
        self.sev_launcher("LAUNCH_SECRET")?
            .inject_secret(vm, gpa, header, ciphertext, target)
    }

    /// DBG_DECRYPT of guest memory at `gpa` (SEV/SEV-ES with a policy that allows debugging;
    /// `POLICY_FAILURE` under NODBG).
    pub fn dbg_decrypt(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        src: &VolatileSlice<'_>,
        dst: &mut [u8],
    ) -> Result<()> {
        self.sev_launcher("DBG_DECRYPT")?;
        self.firmware_mut().dbg_decrypt(vm, gpa, src, dst)
    }

    /// GET_ATTESTATION_REPORT (SEV/SEV-ES, after [`measure`](Self::measure)).
    pub fn attestation_report(&mut self, vm: &VmFd, mnonce: [u8; 16]) -> Result<Vec<u8>> {
        self.sev_launcher("GET_ATTESTATION_REPORT")?
            .attestation_report(vm, mnonce)
    }

    /// SNP: launch-update several regions at once, coalescing neighbours into one
    /// SNP_LAUNCH_UPDATE each (SEV: one LAUNCH_UPDATE_DATA per region). Same checks as
    /// [`ConfidentialBackend::launch_update`].
    pub fn launch_update_batch(&mut self, vm: &VmFd, regions: &[LaunchRegion<'_>]) -> Result<()> {
        for r in regions {
            cgs_core::validate_region(r.gpa, r.len() as u64, r.page_type)?;
        }
        match &mut self.launch {
            Launch::Snp(l) => {
                let snp: Vec<SnpRegion<'_>> = regions
                    .iter()
                    .map(|r| {
                        Ok(SnpRegion {
                            gpa: r.gpa,
                            data: r.data,
                            page_type: SnpPageType::from_page_type(r.page_type)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                l.update(vm, &snp)?;
                Ok(())
            }
            Launch::Sev(_) => {
                for r in regions {
                    self.launch_update(vm, r)?;
                }
                Ok(())
            }
        }
    }

    fn program_vcpu(&self, vcpu: &VcpuFd, state: &VcpuState) -> Result<()> {
        vcpu.set_regs(&state.to_kvm_regs())
            .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
        let mut sregs = vcpu
            .get_sregs()
            .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
        state.apply_to_kvm_sregs(&mut sregs);
        vcpu.set_sregs(&sregs)
            .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
        vcpu.set_fpu(&state.to_kvm_fpu())
            .map_err(|e| Error::kvm("KVM_SET_FPU", e))?;
        vcpu.set_xcrs(&state.to_kvm_xcrs())
            .map_err(|e| Error::kvm("KVM_SET_XCRS", e))?;
        vcpu.set_debug_regs(&state.to_kvm_debugregs())
            .map_err(|e| Error::kvm("KVM_SET_DEBUGREGS", e))?;
        let msrs = kvm_bindings::Msrs::from_entries(&state.kvm_msr_entries())
            .map_err(|e| Error::invalid_input("MSR list", format!("{e:?}")))?;
        let n = vcpu
            .set_msrs(&msrs)
            .map_err(|e| Error::kvm("KVM_SET_MSRS", e))?;
        if n != 1 {
            return Err(Error::unsupported(
                "KVM_SET_MSRS(IA32_PAT)",
                "KVM did not accept the PAT value",
            ));
        }
        Ok(())
    }
}

impl<F: SevFirmware> ConfidentialBackend for SevBackend<F> {
    fn object_type(&self) -> &'static str {
        match self.launch {
            Launch::Sev(_) => SevGuestConfig::TYPE,
            Launch::Snp(_) => SevSnpGuestConfig::TYPE,
        }
    }

    fn platform(&self) -> Platform {
        self.flavour().platform()
    }

    fn vm_type(&self) -> u64 {
        self.firmware().kvm_vm_type(self.flavour(), self.legacy)
    }

    fn kvm_init(&mut self, kvm: &Kvm, vm: &VmFd) -> Result<()> {
        if let Some(requested) = self.cbitpos {
            let host = self.firmware().c_bit_position(kvm)?;
            if host != requested {
                return Err(Error::invalid_input(
                    "cbitpos",
                    format!("cbitpos check failed, host '{host}' requested '{requested}'"),
                ));
            }
        }
        if self.vmsa_features != 0 {
            let supported = self.firmware().vmsa_features(kvm)?;
            let missing = self.vmsa_features & !supported;
            if missing != 0 {
                return Err(Error::unsupported(
                    format!("VMSA features {missing:#x}"),
                    format!("KVM_X86_SEV_VMSA_FEATURES is {supported:#x}"),
                ));
            }
        }
        let features = self.vmsa_features;
        let legacy = self.legacy;
        let start = self.start.clone();
        let req_certs = self.req_certs;
        let policy_bits = self.firmware().snp_policy_bits(kvm);
        match &mut self.launch {
            // A retried kvm_init continues where a failed one stopped (the firmware context of a
            // finished step cannot be undone).
            Launch::Sev(l) => {
                if l.state() == LaunchState::New {
                    l.init(vm, legacy, features)?;
                }
                l.start(vm, &start)?;
            }
            Launch::Snp(l) => {
                if l.state() == LaunchState::New {
                    l.init(vm, features)?;
                }
                let mask = kvm.check_extension_raw(u64::from(KVM_CAP_EXIT_HYPERCALL));
                if mask > 0 && (mask as u64) & (1 << KVM_HC_MAP_GPA_RANGE) != 0 {
                    let mut cap = kvm_enable_cap {
                        cap: KVM_CAP_EXIT_HYPERCALL,
                        ..Default::default()
                    };
                    cap.args[0] = 1 << KVM_HC_MAP_GPA_RANGE;
                    vm.enable_cap(&cap)
                        .map_err(|e| Error::kvm("KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)", e))?;
                }
                if l.state() == LaunchState::Initialized {
                    l.start(vm, policy_bits)?;
                }
                if req_certs {
                    l.enable_req_certs(kvm, vm)?;
                }
            }
        }
        Ok(())
    }

    fn vcpu_created(&mut self, _vm: &VmFd, index: usize, _vcpu: &VcpuFd) -> Result<()> {
        self.vcpus = self.vcpus.max(index + 1);
        if self.states.len() < self.vcpus {
            self.states.resize(self.vcpus, None);
        }
        Ok(())
    }

    fn launch_update(&mut self, vm: &VmFd, region: &LaunchRegion<'_>) -> Result<()> {
        match &mut self.launch {
            Launch::Sev(l) => match region.page_type {
                PageType::Normal | PageType::Zero => l.update_data(vm, region.gpa, &region.data),
                // Not measured, not encrypted by the firmware: nothing to do (QEMU's IGVM path).
                PageType::Unmeasured => Ok(()),
                t => Err(Error::unsupported(
                    format!("{t} pages"),
                    "only SEV-SNP has secrets and CPUID pages",
                )),
            },
            Launch::Snp(l) => {
                let r = SnpRegion {
                    gpa: region.gpa,
                    data: region.data,
                    page_type: SnpPageType::from_page_type(region.page_type)?,
                };
                l.update(vm, std::slice::from_ref(&r))?;
                Ok(())
            }
        }
    }

    fn set_vcpu_state(&mut self, _vm: &VmFd, index: usize, vcpu: &VcpuFd) -> Result<()> {
        let index32 =
            u32::try_from(index).map_err(|_| Error::invalid_input("vCPU index", "too large"))?;
        let state = self
            .vmsa_builder()
            .vcpu(index32)
            .map_err(|e| Error::Backend {
                context: Cow::Borrowed("VMSA builder"),
                source: Box::new(e),
            })?;
        self.program_vcpu(vcpu, &state)?;
        if self.states.len() <= index {
            self.states.resize(index + 1, None);
            self.vcpus = self.vcpus.max(index + 1);
        }
        self.states[index] = Some(state);
        Ok(())
    }

    fn finalize(&mut self, vm: &VmFd) -> Result<()> {
        let vmsas = self.all_vmsas()?;
        let finish = self.snp_finish.clone();
        match &mut self.launch {
            Launch::Sev(l) => {
                if l.flavour() == Flavour::SevEs && l.state() == LaunchState::Updating {
                    l.update_vmsa(vm, &vmsas)?;
                }
                if l.state() != LaunchState::Measured {
                    l.measure(vm)?;
                }
                l.finish(vm)
            }
            Launch::Snp(l) => {
                let f = finish.ok_or_else(|| {
                    Error::invalid_input("SNP_LAUNCH_FINISH", "missing finish parameters")
                })?;
                l.finish(
                    vm,
                    &SnpLaunchFinish {
                        id_block: f.id_block.as_deref(),
                        id_auth: f.id_auth.as_deref(),
                        author_key: f.author_key,
                        vcek_disabled: f.vcek_disabled,
                        host_data: f.host_data,
                    },
                    &vmsas,
                )
            }
        }
    }

    fn reset(&mut self, _vm: &VmFd) -> Result<()> {
        if self.platform().protects_vcpu_state() {
            return Err(Error::unsupported(
                format!("reset of a {} guest", self.platform()),
                "cpus are not resettable, terminating",
            ));
        }
        Ok(())
    }

    fn migration_blocker(&self) -> Option<MigrationBlocker> {
        self.blocker.clone()
    }
}
