//! ioctl numbers, encoded per target architecture.
//!
//! Linux encodes an ioctl request as direction, size, type and number, but the field widths and
//! the direction values differ between architectures. x86, arm64, s390 and riscv use the
//! asm-generic layout (2 direction bits at 30..31 with NONE = 0, WRITE = 1, READ = 2; 14 size
//! bits at 16..29); powerpc uses its own (3 direction bits at 29..31 with NONE = 1, READ = 2,
//! WRITE = 4; 13 size bits at 16..28). vmm-sys-util only knows the generic layout, so PEF, which
//! only exists on powerpc, encodes its requests here with `const fn`s, for both layouts, and the
//! unit tests check both on any build host.

/// `KVMIO`, the KVM ioctl type byte.
pub const KVMIO: u32 = 0xAE;

/// An ioctl transfer direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// No data (`_IO`).
    None,
    /// User space writes, the kernel reads (`_IOW`).
    Write,
    /// The kernel writes, user space reads (`_IOR`).
    Read,
    /// Both (`_IOWR`).
    ReadWrite,
}

/// An architecture's `_IOC` bit layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IocLayout {
    /// `include/uapi/asm-generic/ioctl.h`: x86, arm64, s390, riscv.
    Generic,
    /// `arch/powerpc/include/uapi/asm/ioctl.h`.
    PowerPc,
}

impl IocLayout {
    /// The layout of the architecture this crate is compiled for.
    pub const HOST: IocLayout = if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
        IocLayout::PowerPc
    } else {
        IocLayout::Generic
    };

    /// Width of the size field in bits.
    pub const fn size_bits(self) -> u32 {
        match self {
            IocLayout::Generic => 14,
            IocLayout::PowerPc => 13,
        }
    }

    /// Bit position of the direction field.
    pub const fn dir_shift(self) -> u32 {
        match self {
            IocLayout::Generic => 30,
            IocLayout::PowerPc => 29,
        }
    }

    /// The direction field's value for `dir`.
    pub const fn dir_bits(self, dir: Dir) -> u32 {
        match (self, dir) {
            (IocLayout::Generic, Dir::None) => 0,
            (IocLayout::Generic, Dir::Write) => 1,
            (IocLayout::Generic, Dir::Read) => 2,
            (IocLayout::Generic, Dir::ReadWrite) => 3,
            (IocLayout::PowerPc, Dir::None) => 1,
            (IocLayout::PowerPc, Dir::Read) => 2,
            (IocLayout::PowerPc, Dir::Write) => 4,
            (IocLayout::PowerPc, Dir::ReadWrite) => 6,
        }
    }

    /// `_IOC(dir, ty, nr, size)`. `size` must fit the layout's size field; used in `const`
    /// items, an oversized `size` is a compile-time error.
    pub const fn ioc(self, dir: Dir, ty: u32, nr: u32, size: u32) -> u32 {
        assert!(ty <= 0xff && nr <= 0xff, "ioctl type and number are 8 bits");
        assert!(
            size < (1 << self.size_bits()),
            "ioctl argument too large for this architecture's size field"
        );
        (self.dir_bits(dir) << self.dir_shift()) | (size << 16) | (ty << 8) | nr
    }

    /// `_IO(ty, nr)`.
    pub const fn io(self, ty: u32, nr: u32) -> u32 {
        self.ioc(Dir::None, ty, nr, 0)
    }

    /// `_IOW(ty, nr, size)`.
    pub const fn iow(self, ty: u32, nr: u32, size: u32) -> u32 {
        self.ioc(Dir::Write, ty, nr, size)
    }

    /// `_IOR(ty, nr, size)`.
    pub const fn ior(self, ty: u32, nr: u32, size: u32) -> u32 {
        self.ioc(Dir::Read, ty, nr, size)
    }

    /// `_IOWR(ty, nr, size)`.
    pub const fn iowr(self, ty: u32, nr: u32, size: u32) -> u32 {
        self.ioc(Dir::ReadWrite, ty, nr, size)
    }
}

/// The KVM requests the PEF backend issues, encoded for one layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmIoctls {
    /// `KVM_CREATE_VM`, `_IO(KVMIO, 0x01)`.
    pub create_vm: u32,
    /// `KVM_CHECK_EXTENSION`, `_IO(KVMIO, 0x03)`.
    pub check_extension: u32,
    /// `KVM_ENABLE_CAP`, `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)`.
    pub enable_cap: u32,
    /// `KVM_PPC_SVM_OFF`, `_IO(KVMIO, 0xb3)` (powerpc only).
    pub ppc_svm_off: u32,
}

impl KvmIoctls {
    /// The requests encoded for `layout`.
    pub const fn for_layout(layout: IocLayout) -> Self {
        KvmIoctls {
            create_vm: layout.io(KVMIO, 0x01),
            check_extension: layout.io(KVMIO, 0x03),
            enable_cap: layout.iow(
                KVMIO,
                0xa3,
                std::mem::size_of::<crate::uapi::KvmEnableCap>() as u32,
            ),
            ppc_svm_off: layout.io(KVMIO, 0xb3),
        }
    }

    /// The requests for the architecture this crate is compiled for.
    pub const HOST: KvmIoctls = KvmIoctls::for_layout(IocLayout::HOST);

    /// The requests as a powerpc kernel expects them.
    pub const POWERPC: KvmIoctls = KvmIoctls::for_layout(IocLayout::PowerPc);

    /// The requests as an asm-generic (x86_64, …) kernel expects them.
    pub const GENERIC: KvmIoctls = KvmIoctls::for_layout(IocLayout::Generic);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powerpc_encodings_match_the_kernel_headers() {
        // abi/layout.out, "section powerpc".
        assert_eq!(IocLayout::PowerPc.io(KVMIO, 0xb3), 0x2000_AEB3);
        let p = KvmIoctls::POWERPC;
        assert_eq!(p.ppc_svm_off, 0x2000_AEB3);
        assert_eq!(p.check_extension, 0x2000_AE03);
        assert_eq!(p.create_vm, 0x2000_AE01);
        assert_eq!(p.enable_cap, 0x8068_AEA3);
    }

    #[test]
    fn generic_encodings_match_the_kernel_headers() {
        let g = KvmIoctls::GENERIC;
        assert_eq!(g.ppc_svm_off, 0xAEB3);
        assert_eq!(g.check_extension, 0xAE03);
        assert_eq!(g.create_vm, 0xAE01);
        assert_eq!(g.enable_cap, 0x4068_AEA3);
        // Other well-known x86_64 KVM requests (kernel-abi.md §8, §9).
        assert_eq!(IocLayout::Generic.io(KVMIO, 0x80), 0xAE80); // KVM_RUN
        assert_eq!(IocLayout::Generic.iow(KVMIO, 0x46, 32), 0x4020_AE46); // SET_USER_MEMORY_REGION
        assert_eq!(IocLayout::Generic.iowr(KVMIO, 0xc5, 32), 0xC020_AEC5); // S390_PV_COMMAND
        assert_eq!(IocLayout::Generic.iowr(KVMIO, 0xba, 8), 0xC008_AEBA); // MEMORY_ENCRYPT_OP
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn generic_layout_agrees_with_vmm_sys_util_and_cgs_core_on_x86_64() {
        use vmm_sys_util::ioctl::{ioctl_expr, _IOC_NONE, _IOC_READ, _IOC_WRITE};
        assert_eq!(IocLayout::HOST, IocLayout::Generic);
        assert_eq!(KvmIoctls::HOST, KvmIoctls::GENERIC);
        for nr in [0x01, 0x03, 0x80, 0xb3] {
            assert_eq!(
                u64::from(IocLayout::Generic.io(KVMIO, nr)),
                ioctl_expr(_IOC_NONE, KVMIO, nr, 0) as u64
            );
        }
        assert_eq!(
            u64::from(IocLayout::Generic.iow(KVMIO, 0xa3, 104)),
            ioctl_expr(_IOC_WRITE, KVMIO, 0xa3, 104) as u64
        );
        assert_eq!(
            u64::from(IocLayout::Generic.iowr(KVMIO, 0xe2, 24)),
            ioctl_expr(_IOC_READ | _IOC_WRITE, KVMIO, 0xe2, 24) as u64
        );
        assert_eq!(
            u64::from(IocLayout::Generic.iow(KVMIO, 0xe2, 24)),
            cgs_core::uapi::KVM_GET_DEVICE_ATTR() as u64
        );
    }

    #[test]
    fn layouts_differ_only_where_the_headers_say() {
        // Same type/number/size fields; only the direction bits differ: _IO, _IOR and _IOW
        // change, _IOWR happens to coincide (0b11 << 30 == 0b110 << 29).
        for (dir, size) in [(Dir::None, 0), (Dir::Write, 104), (Dir::Read, 8)] {
            let g = IocLayout::Generic.ioc(dir, KVMIO, 0x42, size);
            let p = IocLayout::PowerPc.ioc(dir, KVMIO, 0x42, size);
            assert_eq!(g & 0x1fff_ffff, p & 0x1fff_ffff);
            assert_ne!(g, p, "{dir:?}");
        }
        assert_eq!(
            IocLayout::Generic.iowr(KVMIO, 0x42, 32),
            IocLayout::PowerPc.iowr(KVMIO, 0x42, 32)
        );
        assert_eq!(IocLayout::PowerPc.size_bits(), 13);
        assert_eq!(IocLayout::Generic.size_bits(), 14);
    }
}
