//! The SEV-SNP CPUID page (`SnpCpuidInfo`, qemu-cgs.md §3.7).
//!
//! Built from `KVM_GET_SUPPORTED_CPUID` (or any `kvm_cpuid_entry2` list) with QEMU's rules:
//! `ecx_in` only for leaves with a significant index, leaf 0xD subleaves 0/1 forced to
//! `ebx = 0x240, xcr0_in = 1, xss_in = 0`, and the bits the firmware would reject cleared
//! beforehand ([`FIRMWARE_REJECTED_BITS`]). When the firmware still rejects the page
//! (`INVALID_PARAM`), KVM copies the corrected page back; [`CpuidPage::diff`] says which leaves
//! changed so the launch can report them and re-issue the corrected page (a policy QEMU does not
//! have: it exits).

use std::fmt;

use cgs_core::{Error, Result};
use kvm_bindings::{kvm_cpuid_entry2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

/// Maximum number of functions in the page.
pub const MAX_ENTRIES: usize = 64;
/// Size of the page.
pub const PAGE_LEN: usize = 4096;
const HEADER_LEN: usize = 16;
const ENTRY_LEN: usize = 48;

/// A CPUID register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reg {
    /// EAX.
    Eax,
    /// EBX.
    Ebx,
    /// ECX.
    Ecx,
    /// EDX.
    Edx,
}

/// Bits cleared before the page is submitted, as QEMU's `sev_snp_adjust_cpuid_features` does:
/// `(leaf, subleaf, register, mask)`.
pub const FIRMWARE_REJECTED_BITS: &[(u32, u32, Reg, u32)] = &[
    (0x1, 0, Reg::Ecx, 1 << 24),         // TSC_DEADLINE
    (0x7, 0, Reg::Ebx, 1 << 1),          // TSC_ADJUST
    (0x7, 0, Reg::Edx, 0xFC00_0000),     // SPEC_CTRL, STIBP, FLUSH_L1D, ARCH_CAP, CORE_CAP, SSBD
    (0x8000_0008, 0, Reg::Ebx, 1 << 25), // VIRT_SSBD
];

/// One function of the page (`SnpCpuidFunc`, 48 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidFunction {
    /// Leaf.
    pub eax_in: u32,
    /// Subleaf (0 unless the leaf has a significant index).
    pub ecx_in: u32,
    /// XCR0 the values apply to.
    pub xcr0_in: u64,
    /// XSS the values apply to.
    pub xss_in: u64,
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidFunction {
    /// A register's value.
    pub fn reg(&self, r: Reg) -> u32 {
        match r {
            Reg::Eax => self.eax,
            Reg::Ebx => self.ebx,
            Reg::Ecx => self.ecx,
            Reg::Edx => self.edx,
        }
    }

    /// A register, mutably.
    pub fn reg_mut(&mut self, r: Reg) -> &mut u32 {
        match r {
            Reg::Eax => &mut self.eax,
            Reg::Ebx => &mut self.ebx,
            Reg::Ecx => &mut self.ecx,
            Reg::Edx => &mut self.edx,
        }
    }
}

/// A leaf whose values the firmware changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuidChange {
    /// Leaf.
    pub eax_in: u32,
    /// Subleaf.
    pub ecx_in: u32,
    /// What was provided (`None`: the firmware added the leaf).
    pub provided: Option<[u32; 4]>,
    /// What the firmware expects (`None`: the firmware removed the leaf).
    pub corrected: Option<[u32; 4]>,
}

impl fmt::Display for CpuidChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<[u32; 4]>| match v {
            Some([a, b, c, d]) => format!("eax:{a:#x} ebx:{b:#x} ecx:{c:#x} edx:{d:#x}"),
            None => "absent".to_string(),
        };
        write!(
            f,
            "function {:#x} index {:#x}: provided {}, expected {}",
            self.eax_in,
            self.ecx_in,
            show(&self.provided),
            show(&self.corrected)
        )
    }
}

/// The CPUID page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuidPage {
    /// The functions, in order.
    pub entries: Vec<CpuidFunction>,
}

impl CpuidPage {
    /// The page for the CPUID `KVM_GET_SUPPORTED_CPUID` reports.
    pub fn from_supported(kvm: &Kvm) -> Result<Self> {
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| Error::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        Self::from_kvm_entries(cpuid.as_slice())
    }

    /// The page for a list of KVM CPUID entries, with QEMU's adjustments.
    pub fn from_kvm_entries(entries: &[kvm_cpuid_entry2]) -> Result<Self> {
        if entries.len() > MAX_ENTRIES {
            return Err(Error::invalid_input(
                "SNP CPUID page",
                format!(
                    "CPUID entry count ({}) exceeds max ({MAX_ENTRIES})",
                    entries.len()
                ),
            ));
        }
        let mut page = CpuidPage::default();
        for e in entries {
            let mut f = CpuidFunction {
                eax_in: e.function,
                ecx_in: if e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX != 0 {
                    e.index
                } else {
                    0
                },
                xcr0_in: 0,
                xss_in: 0,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            };
            if f.eax_in == 0xD && (f.ecx_in == 0 || f.ecx_in == 1) {
                f.ebx = 0x240;
                f.xcr0_in = 1;
                f.xss_in = 0;
            }
            for &(leaf, sub, reg, mask) in FIRMWARE_REJECTED_BITS {
                if f.eax_in == leaf && f.ecx_in == sub {
                    *f.reg_mut(reg) &= !mask;
                }
            }
            page.entries.push(f);
        }
        Ok(page)
    }

    /// Serialize to the 4096-byte page.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(Error::invalid_input(
                "SNP CPUID page",
                format!("{} entries, at most {MAX_ENTRIES}", self.entries.len()),
            ));
        }
        let mut b = vec![0u8; PAGE_LEN];
        b[0..4].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (i, f) in self.entries.iter().enumerate() {
            let o = HEADER_LEN + i * ENTRY_LEN;
            b[o..o + 4].copy_from_slice(&f.eax_in.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&f.ecx_in.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&f.xcr0_in.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&f.xss_in.to_le_bytes());
            b[o + 24..o + 28].copy_from_slice(&f.eax.to_le_bytes());
            b[o + 28..o + 32].copy_from_slice(&f.ebx.to_le_bytes());
            b[o + 32..o + 36].copy_from_slice(&f.ecx.to_le_bytes());
            b[o + 36..o + 40].copy_from_slice(&f.edx.to_le_bytes());
        }
        Ok(b)
    }

    /// Parse a page (untrusted: the firmware's correction comes back through host memory).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != PAGE_LEN {
            return Err(Error::invalid_input(
                "SNP CPUID page",
                format!("{} bytes, expected {PAGE_LEN}", b.len()),
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        let count = u32_at(0) as usize;
        if count > MAX_ENTRIES {
            return Err(Error::invalid_input(
                "SNP CPUID page",
                format!("count {count} exceeds {MAX_ENTRIES}"),
            ));
        }
        let entries = (0..count)
            .map(|i| {
                let o = HEADER_LEN + i * ENTRY_LEN;
                CpuidFunction {
                    eax_in: u32_at(o),
                    ecx_in: u32_at(o + 4),
                    xcr0_in: u64_at(o + 8),
                    xss_in: u64_at(o + 16),
                    eax: u32_at(o + 24),
                    ebx: u32_at(o + 28),
                    ecx: u32_at(o + 32),
                    edx: u32_at(o + 36),
                }
            })
            .collect();
        Ok(CpuidPage { entries })
    }

    /// The function for `(leaf, subleaf)`.
    pub fn get(&self, leaf: u32, subleaf: u32) -> Option<&CpuidFunction> {
        self.entries
            .iter()
            .find(|f| f.eax_in == leaf && f.ecx_in == subleaf)
    }

    /// Which leaves differ between `self` (provided) and `corrected`.
    pub fn diff(&self, corrected: &CpuidPage) -> Vec<CpuidChange> {
        let regs = |f: &CpuidFunction| [f.eax, f.ebx, f.ecx, f.edx];
        let mut out = Vec::new();
        for f in &self.entries {
            match corrected.get(f.eax_in, f.ecx_in) {
                Some(c) if c == f => {}
                c => out.push(CpuidChange {
                    eax_in: f.eax_in,
                    ecx_in: f.ecx_in,
                    provided: Some(regs(f)),
                    corrected: c.map(regs),
                }),
            }
        }
        for c in &corrected.entries {
            if self.get(c.eax_in, c.ecx_in).is_none() {
                out.push(CpuidChange {
                    eax_in: c.eax_in,
                    ecx_in: c.ecx_in,
                    provided: None,
                    corrected: Some(regs(c)),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, flags: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags,
            eax: 1,
            ebx: 2,
            ecx,
            edx: 0xFFFF_FFFF,
            padding: [0; 3],
        }
    }

    #[test]
    fn qemu_rules_and_round_trip() {
        let p = CpuidPage::from_kvm_entries(&[
            entry(0x1, 5, 0, 0xFFFF_FFFF),
            entry(0x7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0),
            entry(0xD, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0),
        ])
        .unwrap();
        assert_eq!(p.entries[0].ecx_in, 0, "index only with SIGNIFICANT_INDEX");
        assert_eq!(p.entries[0].ecx & (1 << 24), 0, "TSC_DEADLINE cleared");
        assert_eq!(p.entries[1].edx, 0x03FF_FFFF);
        assert_eq!((p.entries[2].ebx, p.entries[2].xcr0_in), (0x240, 1));
        let b = p.to_bytes().unwrap();
        assert_eq!(CpuidPage::from_bytes(&b).unwrap(), p);
        let mut bad = b.clone();
        bad[0] = 65;
        assert!(CpuidPage::from_bytes(&bad).is_err());
        let too_many: Vec<_> = (0..65).map(|i| entry(i, 0, 0, 0)).collect();
        assert!(CpuidPage::from_kvm_entries(&too_many).is_err());
    }

    #[test]
    fn diff_names_changed_leaves() {
        let a = CpuidPage::from_kvm_entries(&[entry(0x1, 0, 0, 0), entry(0x8000_001D, 3, 1, 0)])
            .unwrap();
        let mut b = a.clone();
        b.entries[1].edx = 0x2;
        let d = a.diff(&b);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].eax_in, d[0].ecx_in), (0x8000_001D, 3));
        assert!(d[0].to_string().contains("function 0x8000001d index 0x3"));
        assert!(a.diff(&a).is_empty());
    }
}
