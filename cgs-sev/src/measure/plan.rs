//! The SNP launch plan of an OVMF image: which guest-physical ranges a VMM launch-updates, in
//! which order and as which page type (qemu-cgs.md §3.6). The SNP launch digest
//! ([`super::digest`]) and the launch path ([`crate::launch::snp::ovmf_launch_plan`]) both walk
//! this one plan, so what is launched and what is predicted cannot drift apart.
//!
//! Each SEV metadata section maps to a page type as the VMM preset says: `SNP_SEC_MEM` as ZERO
//! (QEMU, EC2) or UNMEASURED (GCE), the secrets and CPUID sections as one SECRETS and one CPUID
//! page, `SVSM_CAA` as ZERO, and `SNP_KERNEL_HASHES` as NORMAL pages holding the kernel-hashes
//! table when booting a kernel (ZERO otherwise). The CPUID page comes in metadata order or after
//! every other section ([`CpuidPlacement`]).

use cgs_core::PageType;

use super::error::{MeasureError, Result};
use super::ovmf::{OvmfImage, SectionKind};
use super::vmm::{CpuidPlacement, SecMemPages, VmmPreset};

/// One range of a launch plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedRegion {
    /// First GPA.
    pub gpa: u64,
    /// Length in bytes (whole pages in a well-formed image; the consumer checks).
    pub len: u64,
    /// How the range is launched. NORMAL ranges of the section plan hold the kernel-hashes table.
    pub page_type: PageType,
}

/// The metadata sections of `ovmf` as `vmm` launches them, in launch order; `kernel` says whether
/// a kernel is booted (its hashes table fills the `SNP_KERNEL_HASHES` section).
pub fn snp_section_plan(
    ovmf: &OvmfImage<'_>,
    vmm: &VmmPreset,
    kernel: bool,
) -> Result<Vec<PlannedRegion>> {
    let cpuid_last = vmm.cpuid == CpuidPlacement::AfterSections;
    let mut plan = Vec::with_capacity(ovmf.metadata_sections().len());
    let mut cpuid = Vec::new();
    for s in ovmf.metadata_sections() {
        let size = u64::from(s.size);
        let (len, page_type) = match s.kind {
            SectionKind::SecMem => match vmm.sec_mem {
                SecMemPages::Zero => (size, PageType::Zero),
                SecMemPages::Unmeasured => (size, PageType::Unmeasured),
            },
            SectionKind::Secrets => (0x1000, PageType::Secrets),
            SectionKind::Cpuid => (0x1000, PageType::Cpuid),
            SectionKind::KernelHashes if kernel => (size, PageType::Normal),
            SectionKind::KernelHashes | SectionKind::SvsmCaa => (size, PageType::Zero),
            SectionKind::Unknown(t) => return Err(MeasureError::UnknownSectionType(t)),
        };
        let region = PlannedRegion {
            gpa: u64::from(s.gpa),
            len,
            page_type,
        };
        if cpuid_last && s.kind == SectionKind::Cpuid {
            cpuid.push(region);
        } else {
            plan.push(region);
        }
    }
    plan.extend(cpuid);
    Ok(plan)
}

/// The whole plan: the image as NORMAL pages, then [`snp_section_plan`].
pub fn snp_launch_plan(
    ovmf: &OvmfImage<'_>,
    vmm: &VmmPreset,
    kernel: bool,
) -> Result<Vec<PlannedRegion>> {
    let mut plan = vec![PlannedRegion {
        gpa: ovmf.gpa(),
        len: ovmf.data().len() as u64,
        page_type: PageType::Normal,
    }];
    plan.extend(snp_section_plan(ovmf, vmm, kernel)?);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::ovmf::tests::synthetic_image;

    fn region(gpa: u64, len: u64, page_type: PageType) -> PlannedRegion {
        PlannedRegion {
            gpa,
            len,
            page_type,
        }
    }

    #[test]
    fn sections_follow_the_preset() {
        // SEC_MEM, CPUID, SECRETS, KERNEL_HASHES, SVSM_CAA.
        let img = synthetic_image(&[
            (0x80_0000, 0x3000, 1),
            (0x80_3000, 0x1000, 3),
            (0x80_4000, 0x1000, 2),
            (0x80_5000, 0x1000, 0x10),
            (0x80_6000, 0x1000, 4),
        ]);
        let ovmf = OvmfImage::parse(&img).unwrap();
        let qemu = snp_section_plan(&ovmf, &VmmPreset::QEMU, false).unwrap();
        assert_eq!(
            qemu,
            vec![
                region(0x80_0000, 0x3000, PageType::Zero),
                region(0x80_3000, 0x1000, PageType::Cpuid),
                region(0x80_4000, 0x1000, PageType::Secrets),
                region(0x80_5000, 0x1000, PageType::Zero),
                region(0x80_6000, 0x1000, PageType::Zero),
            ]
        );
        let kernel = snp_section_plan(&ovmf, &VmmPreset::QEMU, true).unwrap();
        assert_eq!(kernel[3], region(0x80_5000, 0x1000, PageType::Normal));
        let ec2 = snp_section_plan(&ovmf, &VmmPreset::EC2, false).unwrap();
        assert_eq!(ec2[1], region(0x80_4000, 0x1000, PageType::Secrets));
        assert_eq!(ec2[4], region(0x80_3000, 0x1000, PageType::Cpuid));
        let gce = snp_section_plan(&ovmf, &VmmPreset::GCE, false).unwrap();
        assert_eq!(gce[0], region(0x80_0000, 0x3000, PageType::Unmeasured));

        let full = snp_launch_plan(&ovmf, &VmmPreset::QEMU, false).unwrap();
        assert_eq!(
            full[0],
            region(ovmf.gpa(), img.len() as u64, PageType::Normal)
        );
        assert_eq!(&full[1..], &qemu[..]);
    }

    #[test]
    fn unknown_sections_are_rejected() {
        let img = synthetic_image(&[(0x80_0000, 0x1000, 1), (0x80_1000, 0x1000, 7)]);
        let ovmf = OvmfImage::parse(&img).unwrap();
        assert!(matches!(
            snp_section_plan(&ovmf, &VmmPreset::QEMU, false),
            Err(MeasureError::UnknownSectionType(7))
        ));
    }
}
