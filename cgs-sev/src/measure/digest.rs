//! Launch digests: SEV, SEV-ES and SEV-SNP, as the secure processor computes them for a guest
//! launched by QEMU (or EC2, GCE) with an OVMF image.
//!
//! - SEV: `SHA-256(OVMF ‖ [hashes table])`.
//! - SEV-ES: `SHA-256(OVMF ‖ [hashes table] ‖ VMSA_BSP ‖ VMSA_AP × (n−1))`.
//! - SNP: the [`Gctx`] chain over the OVMF pages (or a precomputed OVMF hash), the SEV metadata
//!   sections as the launch plan maps them to page types ([`super::plan`]), then one VMSA per
//!   vCPU.

use cgs_core::PageType;
use sha2::{Digest, Sha256};

use super::cpu::CpuSignature;
use super::error::{MeasureError, Result};
use super::gctx::{Gctx, LD_SIZE, PAGE_SIZE};
use super::hashes::{KernelHashes, PADDED_TABLE_LEN};
use super::ovmf::{OvmfImage, SectionKind};
use super::plan::snp_section_plan;
use super::vmm::VmmPreset;
use super::vmsa::{VcpuRole, VcpuState, VmsaBuilder};

/// The inputs of an SEV-ES or SNP launch digest beyond the firmware image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchInputs {
    /// Number of vCPUs (at least 1).
    pub vcpus: u32,
    /// The VMM preset.
    pub vmm: VmmPreset,
    /// The vCPU signature (needed when the preset puts it in RDX).
    pub signature: Option<CpuSignature>,
    /// `SEV_FEATURES` of the VMSAs: the SNP guest features (sev-snp-measure's default 0x1), 0 for
    /// SEV-ES as sev-snp-measure assumes.
    pub sev_features: u64,
    /// Measured direct boot: the kernel hashes.
    pub kernel_hashes: Option<KernelHashes>,
    /// SNP only: a precomputed OVMF hash to start from instead of hashing the image.
    pub ovmf_hash: Option<[u8; LD_SIZE]>,
}

impl LaunchInputs {
    /// `vcpus` vCPUs of a QEMU guest with the given signature, SNP guest features 0x1, no kernel.
    pub fn qemu(vcpus: u32, signature: CpuSignature) -> Self {
        LaunchInputs {
            vcpus,
            vmm: VmmPreset::QEMU,
            signature: Some(signature),
            sev_features: 0x1,
            kernel_hashes: None,
            ovmf_hash: None,
        }
    }

    /// The VMSA builder these inputs describe (AP reset address from `ovmf`). This is what the
    /// launch path programs its vCPUs from.
    pub fn vmsa_builder(&self, ovmf: &OvmfImage<'_>) -> Result<VmsaBuilder> {
        Ok(VmsaBuilder {
            preset: self.vmm,
            signature: self.signature,
            sev_features: self.sev_features,
            ap_reset_eip: ovmf.sev_es_reset_eip()?,
        })
    }

    fn vcpu_count(&self) -> Result<u32> {
        if self.vcpus == 0 {
            return Err(MeasureError::invalid("vCPU count", "must be at least 1"));
        }
        Ok(self.vcpus)
    }
}

/// The SEV (and SEV-ES) prefix: OVMF, then the padded hashes table when booting a kernel.
fn sev_hasher(ovmf: &OvmfImage<'_>, kernel: Option<&KernelHashes>) -> Result<Sha256> {
    let mut h = Sha256::new();
    h.update(ovmf.data());
    if let Some(k) = kernel {
        match ovmf.sev_hashes_table()? {
            Some((_, size)) if size as usize >= PADDED_TABLE_LEN => h.update(k.table()),
            _ => return Err(MeasureError::KernelHashesUnsupported),
        }
    }
    Ok(h)
}

/// The SEV launch digest (GCTX.LD, the input of LAUNCH_MEASURE's HMAC).
pub fn sev_launch_digest(ovmf: &OvmfImage<'_>, kernel: Option<&KernelHashes>) -> Result<[u8; 32]> {
    Ok(sev_hasher(ovmf, kernel)?.finalize().into())
}

/// The SEV-ES launch digest.
pub fn seves_launch_digest(ovmf: &OvmfImage<'_>, inputs: &LaunchInputs) -> Result<[u8; 32]> {
    let vcpus = inputs.vcpu_count()?;
    let mut h = sev_hasher(ovmf, inputs.kernel_hashes.as_ref())?;
    let builder = inputs.vmsa_builder(ovmf)?;
    h.update(builder.bsp()?.to_vmsa().as_bytes());
    if vcpus > 1 {
        let ap = builder.ap()?.to_vmsa();
        for _ in 1..vcpus {
            h.update(ap.as_bytes());
        }
    }
    Ok(h.finalize().into())
}

/// `snp:ovmf-hash`: the SNP digest after the OVMF pages alone, to seed later computations.
pub fn snp_ovmf_hash(ovmf: &OvmfImage<'_>) -> Result<[u8; LD_SIZE]> {
    let mut g = Gctx::new();
    g.update_normal_pages(ovmf.gpa(), ovmf.data())?;
    Ok(g.ld())
}

/// The `SNP_KERNEL_HASHES` section `[gpa, +len)` of a kernel boot: the hashes table, zero-padded.
fn snp_kernel_hashes_section(
    g: &mut Gctx,
    ovmf: &OvmfImage<'_>,
    k: &KernelHashes,
    gpa: u64,
    len: u64,
) -> Result<()> {
    let (table_gpa, _) = ovmf
        .sev_hashes_table()?
        .ok_or(MeasureError::MissingTableEntry {
            name: "SEV_HASH_TABLE_RV_GUID",
        })?;
    // The section's size comes from the image: build only the pages the table can touch (it
    // starts in the first page, so at most two) and measure the rest as zero pages, instead of
    // allocating up to 4 GiB.
    let head_len = len.min(2 * PAGE_SIZE);
    let head = k
        .region((table_gpa & 0xFFF) as usize, head_len as usize)
        .map_err(|_| MeasureError::HashesTablePlacement {
            gpa: u64::from(table_gpa),
            section_len: len,
        })?;
    g.update_normal_pages_zero_padded(gpa, &head, len)
}

/// Where the SVSM image ends: below OVMF and its variable store (`ovmf.gpa() − vars_size`).
pub fn svsm_end(ovmf: &OvmfImage<'_>, vars_size: u64) -> Result<u64> {
    ovmf.gpa()
        .checked_sub(vars_size)
        .ok_or_else(|| MeasureError::invalid("OVMF vars size", "larger than the space below OVMF"))
}

/// The SNP launch digest of a QEMU guest with a Coconut-SVSM (`snp:svsm`): OVMF pages, SVSM
/// pages, the SVSM's metadata sections, then [`VcpuState::svsm`] for every vCPU. Only `vcpus`
/// and `signature` of `inputs` are used (sev-snp-measure fixes the rest); `svsm` must be parsed
/// with [`OvmfImage::parse_at`] at [`svsm_end`].
pub fn snp_svsm_launch_digest(
    ovmf: &OvmfImage<'_>,
    svsm: &OvmfImage<'_>,
    inputs: &LaunchInputs,
) -> Result<[u8; LD_SIZE]> {
    let vcpus = inputs.vcpu_count()?;
    let entry = u32::try_from(svsm.svsm_entry()?)
        .map_err(|_| MeasureError::invalid("SVSM entry", "above 4 GiB"))?;
    let sig = inputs
        .signature
        .ok_or_else(|| MeasureError::invalid("vCPU signature", "the SVSM VMSA puts it in RDX"))?;
    let vmsa = VcpuState::svsm(VcpuRole::Bsp, entry, sig)
        .to_vmsa()
        .sha384();
    let mut g = Gctx::new();
    g.update_normal_pages(ovmf.gpa(), ovmf.data())?;
    g.update_normal_pages(svsm.gpa(), svsm.data())?;
    let qemu = LaunchInputs {
        vmm: VmmPreset::QEMU,
        kernel_hashes: None,
        ..inputs.clone()
    };
    update_sections(&mut g, svsm, &qemu)?;
    for _ in 0..vcpus {
        g.update_vmsa_hash(&vmsa);
    }
    Ok(g.ld())
}

/// The metadata sections of `ovmf` as `inputs.vmm` launches them ([`snp_section_plan`]).
fn update_sections(g: &mut Gctx, ovmf: &OvmfImage<'_>, inputs: &LaunchInputs) -> Result<()> {
    let kernel = inputs.kernel_hashes.as_ref();
    for r in snp_section_plan(ovmf, &inputs.vmm, kernel.is_some())? {
        match (r.page_type, kernel) {
            (PageType::Normal, Some(k)) => snp_kernel_hashes_section(g, ovmf, k, r.gpa, r.len)?,
            (t, _) => g.update_contentless_pages(t, r.gpa, r.len)?,
        }
    }
    Ok(())
}

/// The SNP launch digest (the MEASUREMENT of the attestation report).
pub fn snp_launch_digest(ovmf: &OvmfImage<'_>, inputs: &LaunchInputs) -> Result<[u8; LD_SIZE]> {
    let vcpus = inputs.vcpu_count()?;
    let builder = inputs.vmsa_builder(ovmf)?;
    // Build the VMSAs first: a missing signature or AP reset address fails before any hashing.
    let bsp = builder.bsp()?.to_vmsa().sha384();
    let ap = if vcpus > 1 {
        Some(builder.ap()?.to_vmsa().sha384())
    } else {
        None
    };
    let kernel = inputs.kernel_hashes.as_ref();
    if kernel.is_some() && !ovmf.has_section(SectionKind::KernelHashes) {
        return Err(MeasureError::NoKernelHashesSection);
    }

    let mut g = match inputs.ovmf_hash {
        Some(seed) => Gctx::with_seed(seed),
        None => {
            let mut g = Gctx::new();
            g.update_normal_pages(ovmf.gpa(), ovmf.data())?;
            g
        }
    };
    update_sections(&mut g, ovmf, inputs)?;
    g.update_vmsa_hash(&bsp);
    if let Some(ap) = ap {
        for _ in 1..vcpus {
            g.update_vmsa_hash(&ap);
        }
    }
    Ok(g.ld())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::ovmf::tests::synthetic_image;

    /// The kernel-hashes section is measured as the zero-padded region QEMU fills, for sections
    /// of one, two and many pages (the last once allocated the whole image-declared size).
    #[test]
    fn kernel_hashes_section_equals_the_full_region() {
        let k = KernelHashes::from_contents(b"kernel", None, Some(b"console=ttyS0"));
        for pages in [1u32, 2, 3, 64] {
            let img = synthetic_image(&[(0x81_0000, pages * 0x1000, 0x10)]);
            let ovmf = OvmfImage::parse(&img).unwrap();
            let s = ovmf.metadata_sections()[0];
            let mut got = Gctx::new();
            snp_kernel_hashes_section(&mut got, &ovmf, &k, s.gpa.into(), s.size.into()).unwrap();
            let mut want = Gctx::new();
            want.update_normal_pages(
                0x81_0000,
                &k.region(0xC00, pages as usize * 0x1000).unwrap(),
            )
            .unwrap();
            assert_eq!(got, want, "{pages} pages");
        }
        let img = synthetic_image(&[(0x81_0000, 0x1800, 0x10)]);
        let ovmf = OvmfImage::parse(&img).unwrap();
        let s = ovmf.metadata_sections()[0];
        let mut g = Gctx::new();
        assert!(matches!(
            snp_kernel_hashes_section(&mut g, &ovmf, &k, s.gpa.into(), s.size.into()),
            Err(MeasureError::NotPageAligned { .. })
        ));
        assert_eq!(g, Gctx::new());
    }
}
