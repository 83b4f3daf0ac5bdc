//! vCPU signatures: the CPUID Fn0000_0001 EAX value a vCPU starts with in RDX.
//!
//! At reset an x86 CPU holds its family/model/stepping signature in RDX; for SEV-ES and SEV-SNP
//! that value is part of the measured VMSA, so a verifier must know the guest's vCPU model. The
//! encoding is AMD's (CPUID specification #25481, "Fn0000_0001_EAX Family, Model, Stepping"):
//! `ext_family[27:20] ext_model[19:16] family[11:8] model[7:4] stepping[3:0]`, where a family above
//! 0xF is stored as `0xF + ext_family`.

use std::fmt;
use std::str::FromStr;

use super::error::{MeasureError, Result};

/// A 32-bit CPUID signature (the reset value of RDX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuSignature(pub u32);

impl CpuSignature {
    /// The largest family the encoding can hold (0xF + 0xFF).
    pub const MAX_FAMILY: u32 = 0xF + 0xFF;

    /// Encodes family, model and stepping; out-of-range values are an error (family ≤ 0x10E,
    /// model ≤ 0xFF, stepping ≤ 0xF).
    pub fn from_fms(family: u32, model: u32, stepping: u32) -> Result<Self> {
        if family > Self::MAX_FAMILY {
            return Err(MeasureError::invalid(
                "vCPU family",
                format!("{family} exceeds {}", Self::MAX_FAMILY),
            ));
        }
        if model > 0xFF {
            return Err(MeasureError::invalid(
                "vCPU model",
                format!("{model} exceeds 255"),
            ));
        }
        if stepping > 0xF {
            return Err(MeasureError::invalid(
                "vCPU stepping",
                format!("{stepping} exceeds 15"),
            ));
        }
        Ok(Self::encode(family, model, stepping))
    }

    /// The encoding itself, for values already known to be in range.
    const fn encode(family: u32, model: u32, stepping: u32) -> Self {
        let (fam_lo, fam_hi) = if family > 0xF {
            (0xF, family - 0xF)
        } else {
            (family, 0)
        };
        CpuSignature(
            (fam_hi << 20) | ((model >> 4) << 16) | (fam_lo << 8) | ((model & 0xF) << 4) | stepping,
        )
    }

    /// The family (base plus extended).
    pub fn family(self) -> u32 {
        let base = (self.0 >> 8) & 0xF;
        if base == 0xF {
            base + ((self.0 >> 20) & 0xFF)
        } else {
            base
        }
    }

    /// The model (extended model in the high nibble).
    pub fn model(self) -> u32 {
        (((self.0 >> 16) & 0xF) << 4) | ((self.0 >> 4) & 0xF)
    }

    /// The stepping.
    pub fn stepping(self) -> u32 {
        self.0 & 0xF
    }
}

impl fmt::Display for CpuSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// The QEMU CPU models with a known signature (the names sev-snp-measure 0.0.13 accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VcpuType {
    name: &'static str,
    family: u32,
    model: u32,
    stepping: u32,
}

/// Every named vCPU type, in QEMU's `builtin_x86_defs` order.
pub const VCPU_TYPES: &[VcpuType] = &[
    VcpuType::new("EPYC", 23, 1, 2),
    VcpuType::new("EPYC-v1", 23, 1, 2),
    VcpuType::new("EPYC-v2", 23, 1, 2),
    VcpuType::new("EPYC-IBPB", 23, 1, 2),
    VcpuType::new("EPYC-v3", 23, 1, 2),
    VcpuType::new("EPYC-v4", 23, 1, 2),
    VcpuType::new("EPYC-Rome", 23, 49, 0),
    VcpuType::new("EPYC-Rome-v1", 23, 49, 0),
    VcpuType::new("EPYC-Rome-v2", 23, 49, 0),
    VcpuType::new("EPYC-Rome-v3", 23, 49, 0),
    VcpuType::new("EPYC-Milan", 25, 1, 1),
    VcpuType::new("EPYC-Milan-v1", 25, 1, 1),
    VcpuType::new("EPYC-Milan-v2", 25, 1, 1),
    VcpuType::new("EPYC-Genoa", 25, 17, 0),
    VcpuType::new("EPYC-Genoa-v1", 25, 17, 0),
    VcpuType::new("EPYC-Turin", 26, 0, 0),
];

impl VcpuType {
    const fn new(name: &'static str, family: u32, model: u32, stepping: u32) -> Self {
        VcpuType {
            name,
            family,
            model,
            stepping,
        }
    }

    /// The QEMU model name (`"EPYC-Milan"`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The model's signature.
    pub fn signature(&self) -> CpuSignature {
        CpuSignature::encode(self.family, self.model, self.stepping)
    }

    /// Looks a model up by its exact (case-sensitive) QEMU name.
    pub fn by_name(name: &str) -> Option<VcpuType> {
        VCPU_TYPES.iter().copied().find(|t| t.name == name)
    }
}

impl FromStr for VcpuType {
    type Err = MeasureError;

    fn from_str(s: &str) -> Result<Self> {
        VcpuType::by_name(s).ok_or_else(|| {
            let names: Vec<&str> = VCPU_TYPES.iter().map(|t| t.name).collect();
            MeasureError::invalid(
                "vCPU type",
                format!("{s:?} is not one of {}", names.join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_vectors() {
        // sev-snp-measure tests/test_vcpu_types.py
        assert_eq!(CpuSignature::from_fms(14, 1, 2).unwrap().0, 0x0E12);
        assert_eq!(CpuSignature::from_fms(23, 1, 2).unwrap().0, 0x0080_0F12);
        // virtee.md §2.6 table
        assert_eq!(
            VcpuType::by_name("EPYC-v4").unwrap().signature().0,
            0x0080_0F12
        );
        assert_eq!(
            VcpuType::by_name("EPYC-Rome").unwrap().signature().0,
            0x0083_0F10
        );
        assert_eq!(
            VcpuType::by_name("EPYC-Milan-v2").unwrap().signature().0,
            0x00A0_0F11
        );
        assert_eq!(
            VcpuType::by_name("EPYC-Genoa").unwrap().signature().0,
            0x00A1_0F10
        );
        assert_eq!(
            VcpuType::by_name("EPYC-Turin").unwrap().signature().0,
            0x00B0_0F00
        );
        assert_eq!(VCPU_TYPES.len(), 16);
    }

    #[test]
    fn decode_round_trips() {
        for (f, m, s) in [
            (23, 49, 0),
            (25, 17, 0),
            (26, 0x11, 3),
            (6, 0x55, 7),
            (0x10E, 0xFF, 0xF),
        ] {
            let sig = CpuSignature::from_fms(f, m, s).unwrap();
            assert_eq!((sig.family(), sig.model(), sig.stepping()), (f, m, s));
        }
    }

    #[test]
    fn out_of_range_and_unknown_names_are_errors() {
        assert!(CpuSignature::from_fms(0x10F, 0, 0).is_err());
        assert!(CpuSignature::from_fms(25, 256, 0).is_err());
        assert!(CpuSignature::from_fms(25, 1, 16).is_err());
        assert!("epyc".parse::<VcpuType>().is_err());
        assert_eq!(
            "EPYC-Genoa-v1".parse::<VcpuType>().unwrap().name(),
            "EPYC-Genoa-v1"
        );
    }
}
