//! The VMSA builder: one register-state description per vCPU that yields both the measured VMSA
//! page and the KVM register structs that make KVM produce that same page.
//!
//! For SEV-ES and SEV-SNP the initial vCPU state is encrypted and measured. A verifier predicts it
//! from [`VcpuState::to_vmsa`]; a VMM launching the guest programs the vCPU with the `to_kvm_*`
//! conversions of the *same* [`VcpuState`] before `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES) or
//! `KVM_SEV_SNP_LAUNCH_FINISH` (SNP). KVM does not take a VMSA from userspace: it synthesizes it
//! (`sev_es_sync_vmsa`) from the VMCB save area (segments, CR0/CR4/EFER, DR7, RFLAGS, PAT), the
//! GPRs (RIP, RDX), XCR0, DR6, the guest FPU (x87 FCW, MXCSR — only for the `KVM_SEV_INIT2` VM
//! types) and the `vmsa_features` given to `KVM_SEV_INIT2`. The conversions here invert exactly that
//! copy, so the VMSA KVM measures equals [`VcpuState::to_vmsa`] byte for byte.
//!
//! Call order for the launch path, per vCPU, before the VMSA is encrypted:
//! `set_sregs(to_kvm_sregs())` (or [`VcpuState::apply_to_kvm_sregs`] over `get_sregs()`),
//! `set_regs(to_kvm_regs())`, `set_fpu(to_kvm_fpu())`, `set_xcrs(to_kvm_xcrs())`,
//! `set_debug_regs(to_kvm_debugregs())`, `set_msrs(kvm_msr_entries())`; and once per VM,
//! `KVM_SEV_INIT2.vmsa_features = kvm_vmsa_features()`.

use std::fmt;

use sha2::{Digest, Sha384};
use zerocopy::{FromBytes, IntoBytes};

use super::cpu::CpuSignature;
use super::error::{MeasureError, Result};
use super::save_area::{SaveArea, VmcbSeg};
use super::vmm::{RdxSource, VmmPreset};

pub use super::save_area::VMSA_SIZE;

/// The reset address of the bootstrap processor (CS base 0xFFFF0000, IP 0xFFF0).
pub const BSP_RESET_EIP: u32 = 0xFFFF_FFF0;
/// EFER.SVME: set by KVM in every SVM guest's VMCB (not settable through `KVM_SET_SREGS`).
pub const EFER_SVME: u64 = 1 << 12;
/// CR0.ET, the only CR0 bit KVM leaves at reset for an SEV-ES guest (CD/NW are cleared).
pub const CR0_ET: u64 = 1 << 4;
/// CR4.MCE, which KVM keeps set in the VMCB when the host has it.
pub const CR4_MCE: u64 = 1 << 6;
/// `SEV_FEATURES` bit 0 (SNPActive): set by KVM itself for SNP guests.
pub const SEV_FEATURE_SNP_ACTIVE: u64 = 1 << 0;
/// `SEV_FEATURES` bit 5 (DebugSwap), set by hosts with `kvm_amd debug_swap=1`.
pub const SEV_FEATURE_DEBUG_SWAP: u64 = 1 << 5;
/// `MSR_IA32_CR_PAT`, the source of the VMSA's `G_PAT`.
pub const MSR_IA32_CR_PAT: u32 = 0x277;
/// The x87 control word of the SVSM VMSA: 0, because sev-snp-measure 0.0.13 passes `fcw=` where
/// its constructor expects `x87_fcw=` (its SVSM test vectors were regenerated with that quirk and
/// not re-validated on hardware). Kept for compatibility; a KVM INIT2 host would record 0x37F.
pub const SVSM_X87_FCW: u16 = 0;
/// DR6 at reset.
pub const DR6_RESET: u64 = 0xFFFF_0FF0;
/// DR7 at reset.
pub const DR7_RESET: u64 = 0x400;

/// A segment register in VMCB form (packed attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Packed attributes: type\[3:0\] S\[4\] DPL\[6:5\] P\[7\] AVL\[8\] L\[9\] DB\[10\] G\[11\].
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

impl Segment {
    /// A real-mode segment with a 64 KiB limit.
    pub const fn real_mode(selector: u16, attrib: u16, base: u64) -> Self {
        Segment {
            selector,
            attrib,
            limit: 0xFFFF,
            base,
        }
    }

    fn to_vmcb(self) -> VmcbSeg {
        VmcbSeg {
            selector: self.selector,
            attrib: self.attrib,
            limit: self.limit,
            base: self.base,
        }
    }

    fn from_vmcb(s: &VmcbSeg) -> Self {
        Segment {
            selector: s.selector,
            attrib: s.attrib,
            limit: s.limit,
            base: s.base,
        }
    }
}

/// Whether a vCPU is the bootstrap processor or an application processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcpuRole {
    /// vCPU 0: starts at [`BSP_RESET_EIP`].
    Bsp,
    /// Every other vCPU: starts at the firmware's SEV-ES reset address.
    Ap,
}

/// The complete initial register state of one SEV-ES/SNP vCPU: every field the VMSA records that
/// can differ from zero at launch. It is the single source of both the measured page and the KVM
/// register programming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VcpuState {
    /// BSP or AP (decides the APIC base flags in [`VcpuState::to_kvm_sregs`]).
    pub role: VcpuRole,
    /// ES.
    pub es: Segment,
    /// CS.
    pub cs: Segment,
    /// SS.
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// GDTR (only base and limit reach KVM).
    pub gdtr: Segment,
    /// LDTR.
    pub ldtr: Segment,
    /// IDTR (only base and limit reach KVM).
    pub idtr: Segment,
    /// TR.
    pub tr: Segment,
    /// EFER as the VMSA holds it (with [`EFER_SVME`]).
    pub efer: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RIP (the offset within CS).
    pub rip: u64,
    /// RAX.
    pub rax: u64,
    /// RDX (the vCPU signature on QEMU/KVM).
    pub rdx: u64,
    /// Guest PAT.
    pub g_pat: u64,
    /// XCR0.
    pub xcr0: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// x87 control word.
    pub x87_fcw: u16,
    /// `SEV_FEATURES` (for SNP the guest features, bit 0 set; 0 for SEV-ES).
    pub sev_features: u64,
}

impl VcpuState {
    /// The x86 reset state of a vCPU starting at `eip` (real mode, CS base `eip & 0xFFFF0000`,
    /// IP `eip & 0xFFFF`) as the VMM of `preset` leaves it, with the given signature (used when
    /// the preset puts it in RDX) and `SEV_FEATURES`.
    pub fn reset(
        preset: &VmmPreset,
        role: VcpuRole,
        eip: u32,
        signature: CpuSignature,
        sev_features: u64,
    ) -> Self {
        let data = Segment::real_mode(0, 0x93, 0);
        let cs_attrib = match role {
            VcpuRole::Bsp => preset.cs_attrib_bsp,
            VcpuRole::Ap => preset.cs_attrib_ap,
        };
        let rdx = match preset.rdx {
            RdxSource::Signature => u64::from(signature.0),
            RdxSource::Fixed(v) => v,
        };
        VcpuState {
            role,
            es: data,
            cs: Segment::real_mode(0xF000, cs_attrib, u64::from(eip & 0xFFFF_0000)),
            ss: Segment::real_mode(0, preset.ss_attrib, 0),
            ds: data,
            fs: data,
            gs: data,
            gdtr: Segment::real_mode(0, 0, 0),
            ldtr: Segment::real_mode(0, 0x82, 0),
            idtr: Segment::real_mode(0, 0, 0),
            tr: Segment::real_mode(0, preset.tr_attrib, 0),
            efer: EFER_SVME,
            cr0: CR0_ET,
            cr3: 0,
            cr4: CR4_MCE,
            dr6: DR6_RESET,
            dr7: DR7_RESET,
            rflags: 0x2,
            rip: u64::from(eip & 0xFFFF),
            rax: 0,
            rdx,
            g_pat: preset.g_pat,
            xcr0: 0x1,
            mxcsr: preset.mxcsr,
            x87_fcw: preset.x87_fcw,
            sev_features,
        }
    }

    /// The state every vCPU of a Coconut-SVSM guest starts in (sev-snp-measure 0.0.13's
    /// `VMSA_SVSM`): 32-bit protected mode with flat segments, CR0 = PE|ET, RIP = the SVSM entry,
    /// `SEV_FEATURES` 0x1, MXCSR 0x1F80 and an x87 control word of [`SVSM_X87_FCW`].
    pub fn svsm(role: VcpuRole, entry: u32, signature: CpuSignature) -> Self {
        let flat_data = Segment {
            selector: 16,
            attrib: 0xC93,
            limit: 0xFFFF_FFFF,
            base: 0,
        };
        VcpuState {
            role,
            es: flat_data,
            cs: Segment {
                selector: 8,
                attrib: 0xC9B,
                ..flat_data
            },
            ss: flat_data,
            ds: flat_data,
            fs: flat_data,
            gs: Segment::real_mode(0, 0x93, 0),
            gdtr: Segment::real_mode(0, 0, 0),
            ldtr: Segment::real_mode(0, 0x82, 0),
            idtr: Segment::real_mode(0, 0, 0),
            tr: Segment::real_mode(0, 0x8B, 0),
            efer: EFER_SVME,
            cr0: CR0_ET | 1,
            cr3: 0,
            cr4: CR4_MCE,
            dr6: DR6_RESET,
            dr7: DR7_RESET,
            rflags: 0x2,
            rip: u64::from(entry),
            rax: 0,
            rdx: u64::from(signature.0),
            g_pat: super::vmm::PAT_RESET,
            xcr0: 0x1,
            mxcsr: 0x1F80,
            x87_fcw: SVSM_X87_FCW,
            sev_features: SEV_FEATURE_SNP_ACTIVE,
        }
    }

    fn save_area(&self) -> SaveArea {
        let mut a = SaveArea::zeroed();
        a.es = self.es.to_vmcb();
        a.cs = self.cs.to_vmcb();
        a.ss = self.ss.to_vmcb();
        a.ds = self.ds.to_vmcb();
        a.fs = self.fs.to_vmcb();
        a.gs = self.gs.to_vmcb();
        a.gdtr = self.gdtr.to_vmcb();
        a.ldtr = self.ldtr.to_vmcb();
        a.idtr = self.idtr.to_vmcb();
        a.tr = self.tr.to_vmcb();
        a.efer = self.efer;
        a.cr0 = self.cr0;
        a.cr3 = self.cr3;
        a.cr4 = self.cr4;
        a.dr6 = self.dr6;
        a.dr7 = self.dr7;
        a.rflags = self.rflags;
        a.rip = self.rip;
        a.rax = self.rax;
        a.rdx = self.rdx;
        a.g_pat = self.g_pat;
        a.xcr0 = self.xcr0;
        a.mxcsr = self.mxcsr;
        a.x87_fcw = self.x87_fcw;
        a.sev_features = self.sev_features;
        a
    }

    /// The 4096-byte VMSA page this state measures as.
    pub fn to_vmsa(&self) -> VmsaPage {
        let mut page = [0u8; VMSA_SIZE];
        page.copy_from_slice(self.save_area().as_bytes());
        VmsaPage(page)
    }

    /// Reads a VMSA page back (e.g. one dumped by `--dump-vmsa`). Bytes outside the fields this
    /// type describes must be zero, so the round trip is exact; `role` is not recorded in a VMSA.
    pub fn from_vmsa(page: &[u8], role: VcpuRole) -> Result<Self> {
        let area = SaveArea::read_from_bytes(page).map_err(|_| {
            MeasureError::invalid(
                "VMSA",
                format!("{} bytes, expected {VMSA_SIZE}", page.len()),
            )
        })?;
        // x87 FTW/FSW are not part of the launch register state either: the builder always
        // writes them as zero, so a page with them set would not round-trip.
        if !area.reserved_is_zero() || area.x87_ftw != 0 || area.x87_fsw != 0 {
            return Err(MeasureError::invalid(
                "VMSA",
                "fields outside the launch register state are nonzero",
            ));
        }
        Ok(VcpuState {
            role,
            es: Segment::from_vmcb(&area.es),
            cs: Segment::from_vmcb(&area.cs),
            ss: Segment::from_vmcb(&area.ss),
            ds: Segment::from_vmcb(&area.ds),
            fs: Segment::from_vmcb(&area.fs),
            gs: Segment::from_vmcb(&area.gs),
            gdtr: Segment::from_vmcb(&area.gdtr),
            ldtr: Segment::from_vmcb(&area.ldtr),
            idtr: Segment::from_vmcb(&area.idtr),
            tr: Segment::from_vmcb(&area.tr),
            efer: area.efer,
            cr0: area.cr0,
            cr3: area.cr3,
            cr4: area.cr4,
            dr6: area.dr6,
            dr7: area.dr7,
            rflags: area.rflags,
            rip: area.rip,
            rax: area.rax,
            rdx: area.rdx,
            g_pat: area.g_pat,
            xcr0: area.xcr0,
            mxcsr: area.mxcsr,
            x87_fcw: area.x87_fcw,
            sev_features: area.sev_features,
        })
    }

    /// XCR0 (for `KVM_SET_XCRS`).
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// The `vmsa_features` value for `KVM_SEV_INIT2`: `SEV_FEATURES` without SNPActive, which KVM
    /// adds itself for SNP VMs (and which it rejects as input).
    pub fn kvm_vmsa_features(&self) -> u64 {
        self.sev_features & !SEV_FEATURE_SNP_ACTIVE
    }
}

/// KVM conversions (x86-64 only: kvm-bindings defines these structs there).
#[cfg(target_arch = "x86_64")]
mod kvm {
    use kvm_bindings::{
        kvm_debugregs, kvm_dtable, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs,
        kvm_xcrs,
    };

    use super::{Segment, VcpuRole, VcpuState, EFER_SVME, MSR_IA32_CR_PAT};

    /// The local APIC base at reset: 0xFEE00000, enabled (bit 11), BSP flag (bit 8) on vCPU 0.
    const APIC_BASE_AP: u64 = 0xFEE0_0000 | (1 << 11);
    const APIC_BASE_BSP: u64 = APIC_BASE_AP | (1 << 8);

    impl Segment {
        /// The KVM form: the packed attributes split into fields, exactly as KVM's
        /// `svm_set_segment` packs them back.
        pub fn to_kvm_segment(&self) -> kvm_segment {
            let a = self.attrib;
            let bit = |n: u16| ((a >> n) & 1) as u8;
            let present = bit(7);
            kvm_segment {
                base: self.base,
                limit: self.limit,
                selector: self.selector,
                type_: (a & 0xF) as u8,
                s: bit(4),
                dpl: ((a >> 5) & 3) as u8,
                present,
                avl: bit(8),
                l: bit(9),
                db: bit(10),
                g: bit(11),
                unusable: u8::from(present == 0),
                padding: 0,
            }
        }

        /// The inverse of [`Segment::to_kvm_segment`] (an unusable segment has attributes 0).
        pub fn from_kvm_segment(s: &kvm_segment) -> Self {
            let attrib = if s.unusable != 0 {
                0
            } else {
                u16::from(s.type_ & 0xF)
                    | u16::from(s.s & 1) << 4
                    | u16::from(s.dpl & 3) << 5
                    | u16::from(s.present & 1) << 7
                    | u16::from(s.avl & 1) << 8
                    | u16::from(s.l & 1) << 9
                    | u16::from(s.db & 1) << 10
                    | u16::from(s.g & 1) << 11
            };
            Segment {
                selector: s.selector,
                attrib,
                limit: s.limit,
                base: s.base,
            }
        }

        fn to_kvm_dtable(self) -> kvm_dtable {
            kvm_dtable {
                base: self.base,
                // Descriptor-table limits are 16 bits in KVM's API; reset values fit.
                limit: (self.limit & 0xFFFF) as u16,
                padding: [0; 3],
            }
        }
    }

    impl VcpuState {
        /// General-purpose registers for `KVM_SET_REGS` (RIP, RFLAGS, RAX, RDX; the rest 0).
        pub fn to_kvm_regs(&self) -> kvm_regs {
            kvm_regs {
                rax: self.rax,
                rdx: self.rdx,
                rip: self.rip,
                rflags: self.rflags,
                ..Default::default()
            }
        }

        /// Special registers for `KVM_SET_SREGS`: segments, descriptor tables, CR0/CR3/CR4, EFER
        /// without [`EFER_SVME`] (KVM ORs it into the VMCB), and the reset APIC base (enabled at
        /// 0xFEE00000, BSP flag on the BSP). CR8 and the interrupt bitmap are 0.
        pub fn to_kvm_sregs(&self) -> kvm_sregs {
            let mut sregs = kvm_sregs {
                apic_base: match self.role {
                    VcpuRole::Bsp => APIC_BASE_BSP,
                    VcpuRole::Ap => APIC_BASE_AP,
                },
                ..Default::default()
            };
            self.apply_to_kvm_sregs(&mut sregs);
            sregs
        }

        /// Overwrites the measured fields of `sregs` (e.g. from `KVM_GET_SREGS`), keeping its APIC
        /// base, CR2, CR8 and interrupt bitmap.
        pub fn apply_to_kvm_sregs(&self, sregs: &mut kvm_sregs) {
            sregs.cs = self.cs.to_kvm_segment();
            sregs.ds = self.ds.to_kvm_segment();
            sregs.es = self.es.to_kvm_segment();
            sregs.fs = self.fs.to_kvm_segment();
            sregs.gs = self.gs.to_kvm_segment();
            sregs.ss = self.ss.to_kvm_segment();
            sregs.tr = self.tr.to_kvm_segment();
            sregs.ldt = self.ldtr.to_kvm_segment();
            sregs.gdt = self.gdtr.to_kvm_dtable();
            sregs.idt = self.idtr.to_kvm_dtable();
            sregs.cr0 = self.cr0;
            sregs.cr3 = self.cr3;
            sregs.cr4 = self.cr4;
            sregs.efer = self.efer & !EFER_SVME;
        }

        /// FPU state for `KVM_SET_FPU`: FCW and MXCSR (KVM copies them into the VMSA only for the
        /// `KVM_SEV_INIT2` VM types; x87/XMM registers and the tag word are 0 = empty).
        pub fn to_kvm_fpu(&self) -> kvm_fpu {
            kvm_fpu {
                fcw: self.x87_fcw,
                mxcsr: self.mxcsr,
                ..Default::default()
            }
        }

        /// `KVM_SET_XCRS` input holding XCR0.
        pub fn to_kvm_xcrs(&self) -> kvm_xcrs {
            let mut xcrs = kvm_xcrs {
                nr_xcrs: 1,
                ..Default::default()
            };
            xcrs.xcrs[0].xcr = 0;
            xcrs.xcrs[0].value = self.xcr0;
            xcrs
        }

        /// `KVM_SET_DEBUGREGS` input: DR6, DR7 (DR0–DR3 0; KVM refuses to encrypt a VMSA whose
        /// DR7 has bits beyond the fixed 0x400).
        pub fn to_kvm_debugregs(&self) -> kvm_debugregs {
            kvm_debugregs {
                dr6: self.dr6,
                dr7: self.dr7,
                ..Default::default()
            }
        }

        /// MSRs for `KVM_SET_MSRS`: the PAT (`G_PAT`).
        pub fn kvm_msr_entries(&self) -> [kvm_msr_entry; 1] {
            [kvm_msr_entry {
                index: MSR_IA32_CR_PAT,
                reserved: 0,
                data: self.g_pat,
            }]
        }
    }
}

impl fmt::Display for VcpuState {
    /// A register dump, one field per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "role: {:?}", self.role)?;
        for (name, s) in [
            ("es", &self.es),
            ("cs", &self.cs),
            ("ss", &self.ss),
            ("ds", &self.ds),
            ("fs", &self.fs),
            ("gs", &self.gs),
            ("gdtr", &self.gdtr),
            ("ldtr", &self.ldtr),
            ("idtr", &self.idtr),
            ("tr", &self.tr),
        ] {
            writeln!(
                f,
                "{name}: selector={:#06x} attrib={:#06x} limit={:#010x} base={:#018x}",
                s.selector, s.attrib, s.limit, s.base
            )?;
        }
        for (name, v) in [
            ("efer", self.efer),
            ("cr0", self.cr0),
            ("cr3", self.cr3),
            ("cr4", self.cr4),
            ("dr6", self.dr6),
            ("dr7", self.dr7),
            ("rflags", self.rflags),
            ("rip", self.rip),
            ("rax", self.rax),
            ("rdx", self.rdx),
            ("g_pat", self.g_pat),
            ("xcr0", self.xcr0),
            ("mxcsr", u64::from(self.mxcsr)),
            ("x87_fcw", u64::from(self.x87_fcw)),
            ("sev_features", self.sev_features),
        ] {
            writeln!(f, "{name}: {v:#x}")?;
        }
        Ok(())
    }
}

/// A 4096-byte VMSA page.
#[derive(Clone, PartialEq, Eq)]
pub struct VmsaPage([u8; VMSA_SIZE]);

impl VmsaPage {
    /// The page bytes.
    pub fn as_bytes(&self) -> &[u8; VMSA_SIZE] {
        &self.0
    }

    /// SHA-384 of the page (the CONTENTS of its SNP PAGE_INFO).
    pub fn sha384(&self) -> [u8; 48] {
        Sha384::digest(self.0).into()
    }
}

impl fmt::Debug for VmsaPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmsaPage")
            .field("sha384", &super::hex(&self.sha384()))
            .finish()
    }
}

/// Builds the per-vCPU initial states of a guest from explicit inputs: a VMM preset, the vCPU
/// signature, `SEV_FEATURES` and the firmware's AP reset address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmsaBuilder {
    /// The VMM preset.
    pub preset: VmmPreset,
    /// The vCPU signature (required when the preset puts it in RDX).
    pub signature: Option<CpuSignature>,
    /// `SEV_FEATURES` of every vCPU (SNP: the guest features, e.g. 0x1; SEV-ES: 0).
    pub sev_features: u64,
    /// The APs' reset address, from the OVMF SEV-ES reset block (0 = none).
    pub ap_reset_eip: u32,
}

impl VmsaBuilder {
    /// A builder for `preset` with no signature, `SEV_FEATURES` 0 and no AP reset address.
    pub fn new(preset: VmmPreset) -> Self {
        VmsaBuilder {
            preset,
            signature: None,
            sev_features: 0,
            ap_reset_eip: 0,
        }
    }

    /// Sets the vCPU signature.
    pub fn signature(mut self, signature: CpuSignature) -> Self {
        self.signature = Some(signature);
        self
    }

    /// Sets `SEV_FEATURES`.
    pub fn sev_features(mut self, features: u64) -> Self {
        self.sev_features = features;
        self
    }

    /// Sets the APs' reset address (see `OvmfImage::sev_es_reset_eip`).
    pub fn ap_reset_eip(mut self, eip: u32) -> Self {
        self.ap_reset_eip = eip;
        self
    }

    fn state(&self, role: VcpuRole, eip: u32) -> Result<VcpuState> {
        let signature = match (self.signature, self.preset.needs_signature()) {
            (Some(s), _) => s,
            (None, false) => CpuSignature(0),
            (None, true) => {
                return Err(MeasureError::invalid(
                    "vCPU signature",
                    format!(
                        "the {} preset puts the vCPU signature in RDX: give a vCPU type, \
                         signature or family/model/stepping",
                        self.preset.name
                    ),
                ))
            }
        };
        Ok(VcpuState::reset(
            &self.preset,
            role,
            eip,
            signature,
            self.sev_features,
        ))
    }

    /// The bootstrap processor's state.
    pub fn bsp(&self) -> Result<VcpuState> {
        self.state(VcpuRole::Bsp, BSP_RESET_EIP)
    }

    /// An application processor's state (an error when there is no AP reset address).
    pub fn ap(&self) -> Result<VcpuState> {
        if self.ap_reset_eip == 0 {
            return Err(MeasureError::NoApResetAddress);
        }
        self.state(VcpuRole::Ap, self.ap_reset_eip)
    }

    /// The state of vCPU `index` (0 is the BSP).
    pub fn vcpu(&self, index: u32) -> Result<VcpuState> {
        if index == 0 {
            self.bsp()
        } else {
            self.ap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::cpu::VcpuType;
    use crate::measure::vmm::VmmType;

    fn u64_at(p: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(p[off..off + 8].try_into().unwrap())
    }

    fn epyc() -> CpuSignature {
        VcpuType::by_name("EPYC-v4").unwrap().signature()
    }

    #[test]
    fn qemu_bsp_page_bytes() {
        let b = VmsaBuilder::new(VmmPreset::QEMU)
            .signature(epyc())
            .sev_features(0x1)
            .ap_reset_eip(0x0080_B004);
        let p = b.bsp().unwrap().to_vmsa();
        let p = p.as_bytes();
        // cs: selector 0xf000, attrib 0x9b, limit 0xffff, base 0xffff0000
        assert_eq!(
            &p[0x10..0x20],
            &[0x00, 0xF0, 0x9B, 0, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0]
        );
        assert_eq!(u64_at(p, 0xD0), 0x1000);
        assert_eq!(u64_at(p, 0x148), 0x40);
        assert_eq!(u64_at(p, 0x158), 0x10);
        assert_eq!(u64_at(p, 0x160), 0x400);
        assert_eq!(u64_at(p, 0x168), 0xFFFF_0FF0);
        assert_eq!(u64_at(p, 0x170), 0x2);
        assert_eq!(u64_at(p, 0x178), 0xFFF0);
        assert_eq!(u64_at(p, 0x268), 0x0007_0406_0007_0406);
        assert_eq!(u64_at(p, 0x310), 0x0080_0F12);
        assert_eq!(u64_at(p, 0x3B0), 0x1);
        assert_eq!(u64_at(p, 0x3E8), 0x1);
        assert_eq!(&p[0x408..0x40C], &0x1F80u32.to_le_bytes());
        assert_eq!(&p[0x410..0x412], &0x37Fu16.to_le_bytes());
        // ldtr and tr attributes
        assert_eq!(&p[0x72..0x74], &0x82u16.to_le_bytes());
        assert_eq!(&p[0x92..0x94], &0x8Bu16.to_le_bytes());
    }

    #[test]
    fn ap_uses_the_reset_block_address() {
        let b = VmsaBuilder::new(VmmPreset::QEMU)
            .signature(epyc())
            .ap_reset_eip(0x0080_B004);
        let ap = b.vcpu(3).unwrap();
        assert_eq!(ap.role, VcpuRole::Ap);
        assert_eq!(ap.cs.base, 0x0080_0000);
        assert_eq!(ap.rip, 0xB004);
        assert_eq!(
            VmsaBuilder::new(VmmPreset::QEMU).signature(epyc()).ap(),
            Err(MeasureError::NoApResetAddress)
        );
    }

    #[test]
    fn ec2_and_gce_presets() {
        let ec2 = VmsaBuilder::new(VmmType::Ec2.preset()).ap_reset_eip(0x0080_B004);
        let bsp = ec2.bsp().unwrap();
        let ap = ec2.ap().unwrap();
        assert_eq!((bsp.cs.attrib, ap.cs.attrib), (0x9A, 0x9B));
        assert_eq!((bsp.ss.attrib, bsp.tr.attrib, bsp.rdx), (0x92, 0x83, 0x600));
        assert_eq!((bsp.mxcsr, bsp.x87_fcw), (0, 0));
        let gce = VmsaBuilder::new(VmmType::Gce.preset()).bsp().unwrap();
        assert_eq!((gce.g_pat, gce.rdx), (0x0007_0106, 0x600));
        assert!(VmsaBuilder::new(VmmPreset::QEMU).bsp().is_err());
    }

    #[test]
    fn vmsa_round_trips_and_rejects_foreign_bytes() {
        let s = VmsaBuilder::new(VmmPreset::QEMU)
            .signature(epyc())
            .sev_features(0x21)
            .bsp()
            .unwrap();
        let page = s.to_vmsa();
        assert_eq!(
            VcpuState::from_vmsa(page.as_bytes(), VcpuRole::Bsp).unwrap(),
            s
        );
        let mut bad = *page.as_bytes();
        bad[0x1D8] = 1; // rsp: not part of the launch state
        assert!(VcpuState::from_vmsa(&bad, VcpuRole::Bsp).is_err());
        assert!(VcpuState::from_vmsa(&bad[..100], VcpuRole::Bsp).is_err());
        assert!(s.to_string().contains("cs: selector=0xf000 attrib=0x009b"));
        assert_eq!(s.kvm_vmsa_features(), 0x20);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn kvm_conversions_invert_kvms_vmsa_sync() {
        for preset in [VmmPreset::QEMU, VmmPreset::EC2, VmmPreset::GCE] {
            let b = VmsaBuilder::new(preset)
                .signature(epyc())
                .sev_features(1)
                .ap_reset_eip(0x0080_B004);
            for s in [b.bsp().unwrap(), b.ap().unwrap()] {
                let sregs = s.to_kvm_sregs();
                let regs = s.to_kvm_regs();
                // What KVM's svm_get_segment/svm_set_segment and svm_set_efer produce:
                assert_eq!(Segment::from_kvm_segment(&sregs.cs), s.cs);
                assert_eq!(Segment::from_kvm_segment(&sregs.ss), s.ss);
                assert_eq!(Segment::from_kvm_segment(&sregs.tr), s.tr);
                assert_eq!(Segment::from_kvm_segment(&sregs.ldt), s.ldtr);
                assert_eq!(sregs.efer | EFER_SVME, s.efer);
                assert_eq!((sregs.gdt.limit, sregs.idt.limit), (0xFFFF, 0xFFFF));
                assert_eq!((regs.rip, regs.rdx, regs.rflags), (s.rip, s.rdx, s.rflags));
                assert_eq!(s.to_kvm_fpu().mxcsr, s.mxcsr);
                assert_eq!(s.to_kvm_fpu().fcw, s.x87_fcw);
                assert_eq!(s.to_kvm_xcrs().xcrs[0].value, s.xcr0());
                assert_eq!(s.to_kvm_debugregs().dr6, s.dr6);
                assert_eq!(s.kvm_msr_entries()[0].data, s.g_pat);
            }
            assert_eq!(b.bsp().unwrap().to_kvm_sregs().apic_base, 0xFEE0_0900);
            assert_eq!(b.ap().unwrap().to_kvm_sregs().apic_base, 0xFEE0_0800);
        }
    }
}
