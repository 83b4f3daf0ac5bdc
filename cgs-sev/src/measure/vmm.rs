//! VMM presets: the initial vCPU state and measurement order each hypervisor produces.
//!
//! The launch digest depends on details the guest owner does not control: the segment attributes
//! the VMM writes at reset, its PAT value, whether RDX holds the vCPU signature, whether the
//! kernel's `KVM_SEV_INIT2` path syncs the FPU (MXCSR/FCW) into the VMSA, and where the VMM puts the
//! CPUID page in the launch sequence. These are data here ([`VmmPreset`]), versioned by name, so a
//! mismatch can be traced to one field instead of guessed at.

use std::fmt;
use std::str::FromStr;

use super::error::{MeasureError, Result};

/// The VMM families sev-snp-measure 0.0.13 knows (`--vmm-type QEMU|ec2|gce`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VmmType {
    /// QEMU/KVM (and any VMM that programs KVM the way QEMU does, e.g. the cgs launch path).
    #[default]
    Qemu,
    /// Amazon EC2 (Nitro).
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl VmmType {
    /// The CLI spelling (`"QEMU"`, `"ec2"`, `"gce"`).
    pub fn as_str(self) -> &'static str {
        match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        }
    }

    /// The current preset of this VMM (the values sev-snp-measure 0.0.13 uses).
    pub fn preset(self) -> VmmPreset {
        match self {
            VmmType::Qemu => VmmPreset::QEMU,
            VmmType::Ec2 => VmmPreset::EC2,
            VmmType::Gce => VmmPreset::GCE,
        }
    }
}

impl FromStr for VmmType {
    type Err = MeasureError;

    /// Parses the case-sensitive CLI spelling, as sev-snp-measure does.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "QEMU" => Ok(VmmType::Qemu),
            "ec2" => Ok(VmmType::Ec2),
            "gce" => Ok(VmmType::Gce),
            _ => Err(MeasureError::invalid(
                "VMM type",
                format!("unknown VMM type '{s}'"),
            )),
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where RDX's reset value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RdxSource {
    /// The vCPU signature (CPUID Fn0000_0001 EAX), as KVM and QEMU set it.
    Signature,
    /// A fixed value, whatever the vCPU model.
    Fixed(u64),
}

/// How SEV metadata `SNP_SEC_MEM` sections enter the launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecMemPages {
    /// As ZERO pages (QEMU, EC2).
    Zero,
    /// As UNMEASURED pages (GCE).
    Unmeasured,
}

/// Where the CPUID page enters the SNP launch sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuidPlacement {
    /// In metadata order, with the other sections (QEMU, GCE).
    InOrder,
    /// After every other metadata section (EC2).
    AfterSections,
}

/// The VMM-dependent initial state and measurement order. Every field is an explicit input of the
/// digest; the named constants are the versions known to match each VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmmPreset {
    /// A versioned name (`"qemu"`, `"ec2-2026"`, …), shown by dumps.
    pub name: &'static str,
    /// CS attributes of the bootstrap processor (VMCB packed attribute format).
    pub cs_attrib_bsp: u16,
    /// CS attributes of the application processors.
    pub cs_attrib_ap: u16,
    /// SS attributes.
    pub ss_attrib: u16,
    /// TR attributes.
    pub tr_attrib: u16,
    /// The guest PAT MSR (`G_PAT` in the VMSA).
    pub g_pat: u64,
    /// RDX at reset.
    pub rdx: RdxSource,
    /// MXCSR (0x1F80 when KVM's INIT2 path syncs the FPU into the VMSA, Linux 6.10+).
    pub mxcsr: u32,
    /// x87 control word (0x37F with INIT2, like MXCSR).
    pub x87_fcw: u16,
    /// How `SNP_SEC_MEM` sections are measured.
    pub sec_mem: SecMemPages,
    /// Where the CPUID page is measured.
    pub cpuid: CpuidPlacement,
}

/// The architectural PAT reset value (AMD APM vol. 2, §A.3).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

impl VmmPreset {
    /// QEMU on KVM with `KVM_SEV_INIT2` (the SEV-ES/SNP VM types; Linux 6.10+), where KVM copies the
    /// reset FPU state (MXCSR 0x1F80, FCW 0x37F) into the VMSA.
    pub const QEMU: VmmPreset = VmmPreset {
        name: "qemu",
        cs_attrib_bsp: 0x9B,
        cs_attrib_ap: 0x9B,
        ss_attrib: 0x93,
        tr_attrib: 0x8B,
        g_pat: PAT_RESET,
        rdx: RdxSource::Signature,
        mxcsr: 0x1F80,
        x87_fcw: 0x37F,
        sec_mem: SecMemPages::Zero,
        cpuid: CpuidPlacement::InOrder,
    };

    /// QEMU on KVM with the legacy `KVM_SEV_ES_INIT` (no FPU sync: MXCSR and FCW stay 0), the state
    /// of sev-snp-measure before 0.0.10 and of sevctl's VMSA fixtures.
    pub const QEMU_LEGACY_INIT: VmmPreset = VmmPreset {
        name: "qemu-legacy-init",
        mxcsr: 0,
        x87_fcw: 0,
        ..VmmPreset::QEMU
    };

    /// Amazon EC2 as of 2026 (RDX 0x600; sev-snp-measure 0.0.13).
    pub const EC2: VmmPreset = VmmPreset {
        name: "ec2-2026",
        cs_attrib_bsp: 0x9A,
        cs_attrib_ap: 0x9B,
        ss_attrib: 0x92,
        tr_attrib: 0x83,
        g_pat: PAT_RESET,
        rdx: RdxSource::Fixed(0x600),
        mxcsr: 0,
        x87_fcw: 0,
        sec_mem: SecMemPages::Zero,
        cpuid: CpuidPlacement::AfterSections,
    };

    /// Amazon EC2 before 2026 (RDX 0; sev-snp-measure ≤ 0.0.12, the `sev` crate 8.0).
    pub const EC2_BEFORE_2026: VmmPreset = VmmPreset {
        name: "ec2-legacy",
        rdx: RdxSource::Fixed(0),
        ..VmmPreset::EC2
    };

    /// Google Compute Engine (its own PAT, SEC_MEM as UNMEASURED pages).
    pub const GCE: VmmPreset = VmmPreset {
        name: "gce",
        cs_attrib_bsp: 0x9B,
        cs_attrib_ap: 0x9B,
        ss_attrib: 0x93,
        tr_attrib: 0x8B,
        g_pat: 0x0007_0106,
        rdx: RdxSource::Fixed(0x600),
        mxcsr: 0,
        x87_fcw: 0,
        sec_mem: SecMemPages::Unmeasured,
        cpuid: CpuidPlacement::InOrder,
    };

    /// Whether this preset needs a vCPU signature (RDX comes from it).
    pub fn needs_signature(&self) -> bool {
        self.rdx == RdxSource::Signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_round_trip_and_are_case_sensitive() {
        for t in [VmmType::Qemu, VmmType::Ec2, VmmType::Gce] {
            assert_eq!(t.as_str().parse::<VmmType>().unwrap(), t);
        }
        assert!("qemu".parse::<VmmType>().is_err());
        assert!("EC2".parse::<VmmType>().is_err());
    }

    #[test]
    fn presets_differ_where_the_vmms_differ() {
        assert!(VmmPreset::QEMU.needs_signature());
        assert!(!VmmPreset::EC2.needs_signature());
        assert_eq!(VmmPreset::EC2_BEFORE_2026.rdx, RdxSource::Fixed(0));
        assert_eq!(VmmPreset::EC2_BEFORE_2026.ss_attrib, 0x92);
        assert_eq!(VmmPreset::QEMU_LEGACY_INIT.mxcsr, 0);
        assert_eq!(VmmPreset::QEMU_LEGACY_INIT.cs_attrib_bsp, 0x9B);
        assert_eq!(VmmType::Gce.preset().sec_mem, SecMemPages::Unmeasured);
        assert_eq!(VmmType::Ec2.preset().cpuid, CpuidPlacement::AfterSections);
    }
}
