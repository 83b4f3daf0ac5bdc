//! The SEV-ES/SNP VMSA page layout (`struct sev_es_save_area`, AMD APM vol. 2 table B-4).
//!
//! This is the byte layout only; [`super::vmsa::VcpuState`] is the public description that
//! fills it. Only the fields the initial state can set are named; everything else is reserved
//! and stays zero. Offsets are pinned by compile-time assertions.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The VMSA page size.
pub const VMSA_SIZE: usize = 4096;

/// `struct vmcb_seg`: one segment register in VMCB format.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VmcbSeg {
    /// Selector.
    pub selector: u16,
    /// Packed attributes: type\[3:0\] S\[4\] DPL\[6:5\] P\[7\] AVL\[8\] L\[9\] DB\[10\] G\[11\].
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

/// The save area, padded to one page (fields named as in the kernel's struct).
#[repr(C)]
#[derive(Debug, Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SaveArea {
    pub es: VmcbSeg,
    pub cs: VmcbSeg,
    pub ss: VmcbSeg,
    pub ds: VmcbSeg,
    pub fs: VmcbSeg,
    pub gs: VmcbSeg,
    pub gdtr: VmcbSeg,
    pub ldtr: VmcbSeg,
    pub idtr: VmcbSeg,
    pub tr: VmcbSeg,
    pub reserved_0xa0: [u8; 0x30],
    pub efer: u64,
    pub reserved_0xd8: [u8; 0x70],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    pub reserved_0x180: [u8; 0x78],
    pub rax: u64,
    pub reserved_0x200: [u8; 0x68],
    pub g_pat: u64,
    pub reserved_0x270: [u8; 0xA0],
    pub rdx: u64,
    pub reserved_0x318: [u8; 0x98],
    pub sev_features: u64,
    pub reserved_0x3b8: [u8; 0x30],
    pub xcr0: u64,
    pub reserved_0x3f0: [u8; 0x18],
    pub mxcsr: u32,
    pub x87_ftw: u16,
    pub x87_fsw: u16,
    pub x87_fcw: u16,
    pub reserved_0x412: [u8; 0xBEE],
}

// Offsets from the kernel's `struct sev_es_save_area` (arch/x86/include/asm/svm.h).
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<VmcbSeg>() == 16);
    assert!(size_of::<SaveArea>() == VMSA_SIZE);
    assert!(offset_of!(SaveArea, es) == 0x00);
    assert!(offset_of!(SaveArea, cs) == 0x10);
    assert!(offset_of!(SaveArea, ss) == 0x20);
    assert!(offset_of!(SaveArea, ds) == 0x30);
    assert!(offset_of!(SaveArea, fs) == 0x40);
    assert!(offset_of!(SaveArea, gs) == 0x50);
    assert!(offset_of!(SaveArea, gdtr) == 0x60);
    assert!(offset_of!(SaveArea, ldtr) == 0x70);
    assert!(offset_of!(SaveArea, idtr) == 0x80);
    assert!(offset_of!(SaveArea, tr) == 0x90);
    assert!(offset_of!(SaveArea, efer) == 0xD0);
    assert!(offset_of!(SaveArea, cr4) == 0x148);
    assert!(offset_of!(SaveArea, cr3) == 0x150);
    assert!(offset_of!(SaveArea, cr0) == 0x158);
    assert!(offset_of!(SaveArea, dr7) == 0x160);
    assert!(offset_of!(SaveArea, dr6) == 0x168);
    assert!(offset_of!(SaveArea, rflags) == 0x170);
    assert!(offset_of!(SaveArea, rip) == 0x178);
    assert!(offset_of!(SaveArea, rax) == 0x1F8);
    assert!(offset_of!(SaveArea, g_pat) == 0x268);
    assert!(offset_of!(SaveArea, rdx) == 0x310);
    assert!(offset_of!(SaveArea, sev_features) == 0x3B0);
    assert!(offset_of!(SaveArea, xcr0) == 0x3E8);
    assert!(offset_of!(SaveArea, mxcsr) == 0x408);
    assert!(offset_of!(SaveArea, x87_ftw) == 0x40C);
    assert!(offset_of!(SaveArea, x87_fsw) == 0x40E);
    assert!(offset_of!(SaveArea, x87_fcw) == 0x410);
};

impl SaveArea {
    /// An all-zero save area.
    pub fn zeroed() -> Self {
        <SaveArea as zerocopy::FromZeros>::new_zeroed()
    }

    /// Whether every reserved (unnamed) byte is zero.
    pub fn reserved_is_zero(&self) -> bool {
        [
            &self.reserved_0xa0[..],
            &self.reserved_0xd8[..],
            &self.reserved_0x180[..],
            &self.reserved_0x200[..],
            &self.reserved_0x270[..],
            &self.reserved_0x318[..],
            &self.reserved_0x3b8[..],
            &self.reserved_0x3f0[..],
            &self.reserved_0x412[..],
        ]
        .iter()
        .all(|r| r.iter().all(|&b| b == 0))
    }
}
