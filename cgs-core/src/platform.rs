//! Platforms and page types: the vocabulary every backend shares.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The confidential-computing platform a backend implements.
///
/// Predicates describe what a platform protects, so VMM code can ask "are vCPU registers
/// protected?" rather than matching on platform names (crosvm's `ProtectionType` style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// No protection; the lifecycle is followed so VMMs and tests can exercise it on any KVM.
    Unprotected,
    /// AMD SEV: memory encryption.
    Sev,
    /// AMD SEV-ES: memory and vCPU register state encryption.
    SevEs,
    /// AMD SEV-SNP: SEV-ES plus memory integrity (RMP), private memory in guest_memfd.
    SevSnp,
    /// IBM s390 Protected Virtualization (Secure Execution).
    S390Pv,
    /// IBM POWER Protected Execution Facility.
    Pef,
}

impl Platform {
    /// Whether guest memory is protected from the host at all.
    pub fn is_protected(self) -> bool {
        !matches!(self, Platform::Unprotected)
    }

    /// Whether vCPU register state becomes inaccessible to the host after launch, so vCPUs cannot
    /// be reset by the VMM (QEMU: "cpus are not resettable, terminating").
    pub fn protects_vcpu_state(self) -> bool {
        matches!(self, Platform::SevEs | Platform::SevSnp)
    }

    /// Whether guest private memory must live in guest_memfd.
    pub fn requires_guest_memfd(self) -> bool {
        matches!(self, Platform::SevSnp)
    }

    /// Whether the platform has a launch measurement the guest owner can verify.
    pub fn is_measured(self) -> bool {
        matches!(
            self,
            Platform::Sev | Platform::SevEs | Platform::SevSnp | Platform::S390Pv
        )
    }

    /// A short human name ("SEV-SNP").
    pub fn name(self) -> &'static str {
        match self {
            Platform::Unprotected => "unprotected",
            Platform::Sev => "SEV",
            Platform::SevEs => "SEV-ES",
            Platform::SevSnp => "SEV-SNP",
            Platform::S390Pv => "s390 PV",
            Platform::Pef => "PEF",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a launch-update region is treated by the platform (QEMU's `ConfidentialGuestPageType`).
///
/// For SEV-SNP these map onto `KVM_SEV_SNP_PAGE_TYPE_*`; legacy SEV and SEV-ES measure and
/// encrypt `Normal` pages only; s390 PV and PEF have no host-driven launch update and accept
/// `Normal` as a no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageType {
    /// Encrypted and measured with its contents.
    Normal,
    /// A vCPU save area (handled by the backend from `set_vcpu_state`; not passed by VMMs).
    Vmsa,
    /// Zero pages, measured as zero without reading contents.
    Zero,
    /// Encrypted but not measured (contents may differ between launches).
    Unmeasured,
    /// The SNP secrets page, filled by the firmware.
    Secrets,
    /// The SNP CPUID page, validated (and possibly corrected) by the firmware.
    Cpuid,
}

impl PageType {
    /// The name used in messages and in QEMU's IGVM code.
    pub fn name(self) -> &'static str {
        match self {
            PageType::Normal => "normal",
            PageType::Vmsa => "vmsa",
            PageType::Zero => "zero",
            PageType::Unmeasured => "unmeasured",
            PageType::Secrets => "secrets",
            PageType::Cpuid => "cpuid",
        }
    }
}

impl fmt::Display for PageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
