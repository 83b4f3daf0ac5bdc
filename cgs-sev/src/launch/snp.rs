//! The SEV-SNP launch (kernel-abi.md §4, qemu-cgs.md §3.4):
//!
//! ```text
//!  New ─init (INIT2, KVM_X86_SNP_VM)─▶ Initialized ─start (SNP_LAUNCH_START)─▶ Updating
//!      Updating: update (SNP_LAUNCH_UPDATE, any page type, repeated)
//!      Updating ─finish (SNP_LAUNCH_FINISH: VMSAs, ID block, host data)─▶ Finished
//! ```
//!
//! [`SnpLauncher::update`] takes a batch of regions, coalesces neighbours that are contiguous in
//! guest-physical *and* host memory and of the same page type into one SNP_LAUNCH_UPDATE range,
//! makes each range private, and loops on the kernel's partial progress (`gfn_start`, `uaddr`,
//! `len` advanced in place) and on `EAGAIN`. A CPUID page the firmware rejects comes back
//! corrected; the launcher reports which leaves changed and, under
//! [`CpuidRetry::UseCorrected`], re-issues the corrected page once.

use cgs_core::{Error, Result};
use kvm_ioctls::VmFd;
use vm_memory::VolatileSlice;

use super::{check, LaunchState};
use crate::cpuid::{CpuidChange, CpuidPage};
use crate::firmware::{
    status_of, Flavour, InitParams, SevFirmware, SevStatus, SnpLaunchFinish, SnpLaunchStart,
    SnpPageType, SnpUpdate,
};
use crate::measure::error::MeasureError;
use crate::measure::ovmf::OvmfImage;
use crate::measure::plan::snp_launch_plan;
pub use crate::measure::plan::PlannedRegion;
use crate::measure::vmm::VmmPreset;
use crate::measure::vmsa::VmsaPage;
use crate::policy::SnpPolicy;

/// How many `EAGAIN`s in a row one range may see before the launch gives up.
pub const MAX_EAGAIN: u32 = 1000;

/// What to do when the firmware rejects the CPUID page and returns a corrected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuidRetry {
    /// Re-issue the corrected page once and report the changes (the default).
    #[default]
    UseCorrected,
    /// Fail, naming the changed leaves (QEMU's behaviour).
    Fail,
}

/// One range for SNP_LAUNCH_UPDATE.
#[derive(Debug)]
pub struct SnpRegion<'a> {
    /// Guest-physical address (4 KiB aligned).
    pub gpa: u64,
    /// The VMM's mapping of the range (a multiple of 4 KiB).
    pub data: VolatileSlice<'a>,
    /// Page type.
    pub page_type: SnpPageType,
}

/// What one [`SnpLauncher::update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateReport {
    /// Ranges after coalescing.
    pub ranges: usize,
    /// SNP_LAUNCH_UPDATE calls issued (including partial-progress and `EAGAIN` repeats).
    pub calls: u64,
    /// `EAGAIN`s seen.
    pub eagain: u64,
    /// CPUID leaves the firmware corrected.
    pub cpuid_changes: Vec<CpuidChange>,
}

/// An SEV-SNP launch on firmware `F`.
#[derive(Debug)]
pub struct SnpLauncher<F> {
    fw: F,
    policy: SnpPolicy,
    gosvw: [u8; 16],
    state: LaunchState,
    cpuid_retry: CpuidRetry,
    total: UpdateReport,
}

impl<F: SevFirmware> SnpLauncher<F> {
    /// A launch with `policy` (checked: bit 17 set, only KVM-accepted bits) and the guest OS
    /// visible workarounds.
    pub fn new(fw: F, policy: u64, gosvw: [u8; 16]) -> Result<Self> {
        let policy = SnpPolicy(policy);
        policy.validate(None)?;
        Ok(SnpLauncher {
            fw,
            policy,
            gosvw,
            state: LaunchState::New,
            cpuid_retry: CpuidRetry::default(),
            total: UpdateReport::default(),
        })
    }

    /// Choose the CPUID rejection policy.
    pub fn set_cpuid_retry(&mut self, retry: CpuidRetry) {
        self.cpuid_retry = retry;
    }

    /// The guest policy.
    pub fn policy(&self) -> SnpPolicy {
        self.policy
    }

    /// The launch state.
    pub fn state(&self) -> LaunchState {
        self.state
    }

    /// The firmware.
    pub fn firmware(&self) -> &F {
        &self.fw
    }

    /// The firmware, mutably.
    pub fn firmware_mut(&mut self) -> &mut F {
        &mut self.fw
    }

    /// Everything the updates so far did, including the part of a failed update that reached
    /// the firmware.
    pub fn update_totals(&self) -> &UpdateReport {
        &self.total
    }

    /// INIT2 on a `KVM_X86_SNP_VM` with `vmsa_features` (without `SNP_ACTIVE`, which KVM adds).
    pub fn init(&mut self, vm: &VmFd, vmsa_features: u64) -> Result<()> {
        check("INIT2", self.state, &[LaunchState::New], "first command")?;
        self.fw.init(
            vm,
            &InitParams::Init2 {
                flavour: Flavour::SevSnp,
                vmsa_features,
                ghcb_version: 0,
            },
        )?;
        self.state = LaunchState::Initialized;
        Ok(())
    }

    /// SNP_LAUNCH_START. With `kvm_policy_bits` (`KVM_X86_SNP_POLICY_BITS`, 7.x kernels) the
    /// policy is also checked against what the kernel accepts.
    pub fn start(&mut self, vm: &VmFd, kvm_policy_bits: Option<u64>) -> Result<()> {
        check(
            "SNP_LAUNCH_START",
            self.state,
            &[LaunchState::Initialized],
            "after INIT2, once",
        )?;
        self.policy.validate(kvm_policy_bits)?;
        self.fw.snp_launch_start(
            vm,
            &SnpLaunchStart {
                policy: self.policy.0,
                gosvw: self.gosvw,
            },
        )?;
        self.state = LaunchState::Updating;
        Ok(())
    }

    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (before any vCPU exists).
    pub fn enable_req_certs(&mut self, kvm: &kvm_ioctls::Kvm, vm: &VmFd) -> Result<()> {
        check(
            "SNP_ENABLE_REQ_CERTS",
            self.state,
            &[LaunchState::Initialized, LaunchState::Updating],
            "after INIT2 and before SNP_LAUNCH_FINISH",
        )?;
        self.fw.snp_enable_req_certs(kvm, vm)
    }

    /// SNP_LAUNCH_UPDATE a batch of regions (coalesced; see the module docs).
    pub fn update(&mut self, vm: &VmFd, regions: &[SnpRegion<'_>]) -> Result<UpdateReport> {
        check(
            "SNP_LAUNCH_UPDATE",
            self.state,
            &[LaunchState::Updating],
            "after SNP_LAUNCH_START and before SNP_LAUNCH_FINISH",
        )?;
        for r in regions {
            if r.gpa % 4096 != 0 || r.data.is_empty() || r.data.len() % 4096 != 0 {
                return Err(Error::invalid_input(
                    "SNP launch region",
                    format!(
                        "[{:#x}, +{:#x}) is not whole 4 KiB pages",
                        r.gpa,
                        r.data.len()
                    ),
                ));
            }
            if r.gpa.checked_add(r.data.len() as u64).is_none() {
                return Err(Error::invalid_input("SNP launch region", "wraps"));
            }
        }
        let mut report = UpdateReport::default();
        let mut result = Ok(());
        for range in coalesce(regions) {
            report.ranges += 1;
            result = self.update_range(vm, range, &mut report);
            if result.is_err() {
                break;
            }
        }
        // The totals count what reached the firmware even when a later page failed: the pages
        // before it stay measured, with any CPUID correction the firmware made to them.
        self.total.ranges += report.ranges;
        self.total.calls += report.calls;
        self.total.eagain += report.eagain;
        self.total
            .cpuid_changes
            .extend(report.cpuid_changes.iter().cloned());
        result.map(|()| report)
    }

    fn update_range(
        &mut self,
        vm: &VmFd,
        range: SnpRegion<'_>,
        report: &mut UpdateReport,
    ) -> Result<()> {
        let len = range.data.len() as u64;
        self.fw.snp_set_private(vm, range.gpa, len)?;
        let end_gfn = (range.gpa + len) / 4096;
        let mut u = SnpUpdate {
            gfn_start: range.gpa / 4096,
            source: range.data,
            done: 0,
            page_type: range.page_type,
        };
        let mut eagain_run = 0u32;
        let mut cpuid_retried = false;
        while u.remaining() > 0 {
            let provided = if u.page_type == SnpPageType::Cpuid {
                Some(read_page(&u.source, u.done)?)
            } else {
                None
            };
            let before = (u.done, u.gfn_start);
            report.calls += 1;
            match self.fw.snp_launch_update(vm, &mut u) {
                Ok(()) => {
                    eagain_run = 0;
                    if (u.done, u.gfn_start) == before {
                        return Err(Error::invalid_input(
                            "SNP_LAUNCH_UPDATE",
                            format!("no progress at GFN {:#x}", u.gfn_start),
                        ));
                    }
                }
                Err(e) if matches!(e.errno(), Some(libc::EAGAIN) | Some(libc::EINTR)) => {
                    report.eagain += 1;
                    eagain_run += 1;
                    if eagain_run > MAX_EAGAIN {
                        return Err(e);
                    }
                }
                Err(e) if status_of(&e) == Some(SevStatus::INVALID_PARAM) && provided.is_some() => {
                    let provided = match provided {
                        Some(p) => CpuidPage::from_bytes(&p)?,
                        None => return Err(e),
                    };
                    let corrected = CpuidPage::from_bytes(&read_page(&u.source, u.done)?)?;
                    let changes = provided.diff(&corrected);
                    if changes.is_empty() || cpuid_retried || self.cpuid_retry == CpuidRetry::Fail {
                        let list: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
                        return Err(Error::invalid_input(
                            "SNP CPUID page",
                            format!("rejected by the firmware ({e}); {}", list.join("; ")),
                        ));
                    }
                    report.cpuid_changes.extend(changes);
                    cpuid_retried = true;
                }
                Err(e) => return Err(e),
            }
            if u.done > u.source.len() {
                return Err(Error::invalid_input(
                    "SNP_LAUNCH_UPDATE",
                    "the firmware reported progress past the range",
                ));
            }
        }
        if u.gfn_start != end_gfn {
            return Err(Error::invalid_input(
                "SNP_LAUNCH_UPDATE",
                format!(
                    "expected update of GPA range ending at {:#x}, got GFN {:#x}",
                    end_gfn * 4096,
                    u.gfn_start
                ),
            ));
        }
        Ok(())
    }

    /// SNP_LAUNCH_FINISH with the VMSAs the vCPUs were programmed from.
    pub fn finish(
        &mut self,
        vm: &VmFd,
        params: &SnpLaunchFinish<'_>,
        vmsas: &[VmsaPage],
    ) -> Result<()> {
        check(
            "SNP_LAUNCH_FINISH",
            self.state,
            &[LaunchState::Updating],
            "after SNP_LAUNCH_START, once",
        )?;
        if params.id_block.is_some() != params.id_auth.is_some() {
            return Err(Error::invalid_input(
                "SNP_LAUNCH_FINISH",
                "an ID block needs its ID auth structure and vice versa",
            ));
        }
        if params.author_key && params.id_auth.is_none() {
            return Err(Error::invalid_input(
                "SNP_LAUNCH_FINISH",
                "author-key-enabled needs an ID auth structure",
            ));
        }
        self.fw.snp_launch_finish(vm, params, vmsas)?;
        self.state = LaunchState::Finished;
        Ok(())
    }
}

/// What QEMU launch-updates for an SNP guest booting `ovmf` without a kernel (qemu-cgs.md §3.6):
/// [`snp_launch_plan`] under [`VmmPreset::QEMU`] — the image as NORMAL pages, then each SEV
/// metadata section in file order (SEC_MEM, SVSM_CAA and the unused KERNEL_HASHES page as ZERO,
/// the SECRETS page, the CPUID page) — the same plan the offline digest measures. Every range
/// must be whole, non-empty pages. The VMM fills the CPUID page ([`CpuidPage::to_bytes`]) before
/// launching it.
pub fn ovmf_launch_plan(ovmf: &OvmfImage<'_>) -> Result<Vec<PlannedRegion>> {
    let plan = snp_launch_plan(ovmf, &VmmPreset::QEMU, false).map_err(|e| match e {
        MeasureError::UnknownSectionType(t) => {
            Error::invalid_input("OVMF SEV metadata", format!("unknown section type {t:#x}"))
        }
        e => Error::invalid_input("OVMF SEV metadata", e.to_string()),
    })?;
    for r in &plan[1..] {
        if r.gpa % 4096 != 0 || r.len % 4096 != 0 || r.len == 0 {
            return Err(Error::invalid_input(
                "OVMF SEV metadata",
                format!("section [{:#x}, +{:#x}) is not whole pages", r.gpa, r.len),
            ));
        }
    }
    Ok(plan)
}

fn read_page(s: &VolatileSlice<'_>, offset: usize) -> Result<Vec<u8>> {
    let page = s
        .subslice(offset, 4096)
        .map_err(|e| Error::invalid_input("SNP launch region", e.to_string()))?;
    let mut b = vec![0u8; 4096];
    page.copy_to(&mut b[..]);
    Ok(b)
}

fn host_addr(s: &VolatileSlice<'_>) -> usize {
    s.ptr_guard().as_ptr() as usize
}

/// Merge neighbours that are contiguous in GPA and in host memory and share a page type.
fn coalesce<'a>(regions: &[SnpRegion<'a>]) -> Vec<SnpRegion<'a>> {
    let mut out: Vec<SnpRegion<'a>> = Vec::new();
    for r in regions {
        if let Some(last) = out.last_mut() {
            let contiguous = last.page_type == r.page_type
                && last.gpa + last.data.len() as u64 == r.gpa
                && host_addr(&last.data) + last.data.len() == host_addr(&r.data);
            if contiguous {
                let len = last.data.len() + r.data.len();
                // SAFETY: `last.data` and `r.data` are live mappings borrowed for 'a and the
                // second starts exactly where the first ends, so the merged range covers only
                // bytes of those two borrows and lives no longer than they do.
                last.data = unsafe { VolatileSlice::new(last.data.ptr_guard_mut().as_ptr(), len) };
                continue;
            }
        }
        out.push(SnpRegion {
            gpa: r.gpa,
            data: r.data,
            page_type: r.page_type,
        });
    }
    out
}
