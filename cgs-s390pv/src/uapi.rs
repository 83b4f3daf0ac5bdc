//! The s390 Protected Virtualization userspace ABI (`arch/s390/include/uapi/asm/kvm.h`).
//!
//! kvm-bindings has no s390x module, so the `KVM_S390_PV_COMMAND` structures are declared here as
//! `#[repr(C)]` with compile-time size and offset assertions taken from the kernel headers
//! (`shared/reference/abi/layout.out`, s390 run). A unit test also prints them in that file's
//! format and compares line by line.
//!
//! ioctl numbers are encoded with [`IocLayout`], a `const fn` model of each architecture's
//! `_IOC` convention, so the s390x numbers are computed (and tested) on any host. These structs
//! are native-endian: on an s390x host that is big-endian, exactly what the kernel expects.

use std::mem::{offset_of, size_of};

/// `KVMIO`, the ioctl type of every KVM ioctl.
pub const KVMIO: u32 = 0xAE;

/// An architecture's `_IOC` bit layout (`include/uapi/asm-generic/ioctl.h` and overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IocLayout {
    /// Width of the size field in bits.
    pub size_bits: u32,
    /// Width of the direction field in bits.
    pub dir_bits: u32,
    /// Direction value for "no data".
    pub dir_none: u32,
    /// Direction value for "userspace writes" (`_IOW`).
    pub dir_write: u32,
    /// Direction value for "userspace reads" (`_IOR`).
    pub dir_read: u32,
}

impl IocLayout {
    /// The asm-generic layout used by x86, arm64, riscv and **s390x**: size 14 bits, direction 2
    /// bits, NONE = 0, WRITE = 1, READ = 2.
    pub const GENERIC: IocLayout = IocLayout {
        size_bits: 14,
        dir_bits: 2,
        dir_none: 0,
        dir_write: 1,
        dir_read: 2,
    };
    /// s390x uses the generic layout.
    pub const S390X: IocLayout = IocLayout::GENERIC;
    /// powerpc: size 13 bits, direction 3 bits, NONE = 1, READ = 2, WRITE = 4.
    pub const POWERPC: IocLayout = IocLayout {
        size_bits: 13,
        dir_bits: 3,
        dir_none: 1,
        dir_write: 4,
        dir_read: 2,
    };

    /// `_IOC(dir, ty, nr, size)`. Panics at compile time (in const context) when `size` does not
    /// fit the size field.
    pub const fn ioc(self, dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
        assert!(size < (1usize << self.size_bits), "ioctl size too large");
        assert!(ty < 256 && nr < 256, "ioctl type/nr out of range");
        let size_shift = 16;
        let dir_shift = size_shift + self.size_bits;
        assert!(
            dir_shift + self.dir_bits == 32,
            "ioctl layout must span 32 bits"
        );
        (dir << dir_shift) | ((size as u32) << size_shift) | (ty << 8) | nr
    }

    /// `_IO(ty, nr)`.
    pub const fn io(self, ty: u32, nr: u32) -> u32 {
        self.ioc(self.dir_none, ty, nr, 0)
    }

    /// `_IOW(ty, nr, size)`.
    pub const fn iow(self, ty: u32, nr: u32, size: usize) -> u32 {
        self.ioc(self.dir_write, ty, nr, size)
    }

    /// `_IOR(ty, nr, size)`.
    pub const fn ior(self, ty: u32, nr: u32, size: usize) -> u32 {
        self.ioc(self.dir_read, ty, nr, size)
    }

    /// `_IOWR(ty, nr, size)`.
    pub const fn iowr(self, ty: u32, nr: u32, size: usize) -> u32 {
        self.ioc(self.dir_read | self.dir_write, ty, nr, size)
    }
}

/// `struct kvm_pv_cmd`: the envelope of every `KVM_S390_PV_COMMAND`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmPvCmd {
    /// Command (`KVM_PV_*`).
    pub cmd: u32,
    /// Ultravisor return code (out; 0 when no UV call ran).
    pub rc: u16,
    /// Ultravisor return reason code (out).
    pub rrc: u16,
    /// Userspace address of the command's data structure.
    pub data: u64,
    /// Must be zero.
    pub flags: u32,
    /// Reserved, zero.
    pub reserved: [u32; 3],
}

/// `struct kvm_s390_pv_sec_parm` (`KVM_PV_SET_SEC_PARMS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvSecParm {
    /// Userspace address of the SE header.
    pub origin: u64,
    /// Its length in bytes.
    pub length: u64,
}

/// `struct kvm_s390_pv_unp` (`KVM_PV_UNPACK`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvUnp {
    /// Guest absolute address (4 KiB aligned).
    pub addr: u64,
    /// Size in bytes (non-zero multiple of 4 KiB).
    pub size: u64,
    /// Tweak prefix (first 8 bytes of each page's XTS tweak).
    pub tweak: u64,
}

/// `struct kvm_s390_pv_dmp` (`KVM_PV_DUMP`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvDmp {
    /// Dump subcommand (`KVM_PV_DUMP_*`).
    pub subcmd: u64,
    /// Userspace address of the output buffer.
    pub buff_addr: u64,
    /// Its length.
    pub buff_len: u64,
    /// Guest address (CONFIG_STOR_STATE: in, then the next address out).
    pub gaddr: u64,
    /// Reserved, zero.
    pub reserved: [u64; 4],
}

/// `struct kvm_s390_pv_info_dump`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvInfoDump {
    /// Size of the per-CPU dump buffer.
    pub dump_cpu_buffer_len: u64,
    /// Storage-state bytes per 1 MiB of guest memory.
    pub dump_config_mem_buffer_per_1m: u64,
    /// Size of the completion (finalize) data.
    pub dump_config_finalize_len: u64,
}

/// `struct kvm_s390_pv_info_vm`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvInfoVm {
    /// Installed UV calls (MSB-0 bit per call).
    pub inst_calls_list: [u64; 4],
    /// Maximum number of CPUs of a secure guest.
    pub max_cpus: u64,
    /// Maximum number of secure guests.
    pub max_guests: u64,
    /// Highest secure guest address.
    pub max_guest_addr: u64,
    /// UV feature indications.
    pub feature_indication: u64,
}

/// `struct kvm_s390_pv_info_header`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmS390PvInfoHeader {
    /// `KVM_PV_INFO_VM` or `KVM_PV_INFO_DUMP`.
    pub id: u32,
    /// Size of the whole buffer (at least 16).
    pub len_max: u32,
    /// Bytes written by KVM (out).
    pub len_written: u32,
    /// Reserved.
    pub reserved: u32,
}

/// The union in `struct kvm_s390_pv_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union KvmS390PvInfoPayload {
    /// `KVM_PV_INFO_DUMP` payload.
    pub dump: KvmS390PvInfoDump,
    /// `KVM_PV_INFO_VM` payload.
    pub vm: KvmS390PvInfoVm,
}

/// `struct kvm_s390_pv_info` (`KVM_PV_INFO`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KvmS390PvInfo {
    /// Request / answer header.
    pub header: KvmS390PvInfoHeader,
    /// The payload selected by `header.id`.
    pub payload: KvmS390PvInfoPayload,
}

impl KvmS390PvInfo {
    /// A zeroed request for `id` with `len_max` = the full structure.
    pub fn request(id: u32) -> Self {
        KvmS390PvInfo {
            header: KvmS390PvInfoHeader {
                id,
                len_max: size_of::<KvmS390PvInfo>() as u32,
                len_written: 0,
                reserved: 0,
            },
            payload: KvmS390PvInfoPayload {
                vm: KvmS390PvInfoVm::default(),
            },
        }
    }
}

impl std::fmt::Debug for KvmS390PvInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmS390PvInfo")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// `struct kvm_s390_vm_cpu_machine` (`KVM_S390_VM_CPU_MODEL` / `KVM_S390_VM_CPU_MACHINE`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct KvmS390VmCpuMachine {
    /// CPU id.
    pub cpuid: u64,
    /// Instruction-blocking control.
    pub ibc: u32,
    /// Padding.
    pub pad: [u8; 4],
    /// Facilities KVM can offer to guests (stfle format, MSB-0).
    pub fac_mask: [u64; 256],
    /// The host's raw facility list.
    pub fac_list: [u64; 256],
}

impl Default for KvmS390VmCpuMachine {
    fn default() -> Self {
        KvmS390VmCpuMachine {
            cpuid: 0,
            ibc: 0,
            pad: [0; 4],
            fac_mask: [0; 256],
            fac_list: [0; 256],
        }
    }
}

impl std::fmt::Debug for KvmS390VmCpuMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmS390VmCpuMachine")
            .field("cpuid", &self.cpuid)
            .field("ibc", &self.ibc)
            .finish_non_exhaustive()
    }
}

/// Whether MSB-0 facility bit `bit` is set in an stfle-format list.
pub fn facility_bit(list: &[u64], bit: usize) -> bool {
    list.get(bit / 64)
        .is_some_and(|w| w & (1u64 << (63 - bit % 64)) != 0)
}

/// `KVM_S390_VM_CPU_MODEL` device-attribute group.
pub const KVM_S390_VM_CPU_MODEL: u32 = 3;
/// `KVM_S390_VM_CPU_MACHINE` attribute (host CPU model and facilities).
pub const KVM_S390_VM_CPU_MACHINE: u64 = 1;
/// The Ultravisor-call facility (stfle bit 158), needed on the host.
pub const FACILITY_UV_CALL: usize = 158;
/// The unpack facility (stfle bit 161), needed in the guest CPU model.
pub const FACILITY_UNPACK: usize = 161;

/// `KVM_S390_PV_COMMAND` on s390x: `_IOWR(KVMIO, 0xC5, struct kvm_pv_cmd)`, VM fd.
pub const KVM_S390_PV_COMMAND: u32 = IocLayout::S390X.iowr(KVMIO, 0xC5, size_of::<KvmPvCmd>());
/// `KVM_S390_PV_CPU_COMMAND` on s390x: `_IOWR(KVMIO, 0xD0, struct kvm_pv_cmd)`, vCPU fd.
pub const KVM_S390_PV_CPU_COMMAND: u32 = IocLayout::S390X.iowr(KVMIO, 0xD0, size_of::<KvmPvCmd>());

/// `struct kvm_mp_state`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KvmMpState {
    /// `KVM_MP_STATE_*`.
    pub mp_state: u32,
}

/// `KVM_SET_MP_STATE` on s390x: `_IOW(KVMIO, 0x99, struct kvm_mp_state)`, vCPU fd.
pub const KVM_SET_MP_STATE: u32 = IocLayout::S390X.iow(KVMIO, 0x99, size_of::<KvmMpState>());
/// `KVM_MP_STATE_OPERATING` (s390).
pub const KVM_MP_STATE_OPERATING: u32 = 7;
/// `KVM_MP_STATE_LOAD` (s390): for a protected vCPU KVM issues UV CPU_SET_STATE OPR_LOAD.
pub const KVM_MP_STATE_LOAD: u32 = 8;

/// `KVM_PV_ENABLE`.
pub const KVM_PV_ENABLE: u32 = 0;
/// `KVM_PV_DISABLE`.
pub const KVM_PV_DISABLE: u32 = 1;
/// `KVM_PV_SET_SEC_PARMS`.
pub const KVM_PV_SET_SEC_PARMS: u32 = 2;
/// `KVM_PV_UNPACK`.
pub const KVM_PV_UNPACK: u32 = 3;
/// `KVM_PV_VERIFY`.
pub const KVM_PV_VERIFY: u32 = 4;
/// `KVM_PV_PREP_RESET`.
pub const KVM_PV_PREP_RESET: u32 = 5;
/// `KVM_PV_UNSHARE_ALL`.
pub const KVM_PV_UNSHARE_ALL: u32 = 6;
/// `KVM_PV_INFO`.
pub const KVM_PV_INFO: u32 = 7;
/// `KVM_PV_DUMP`.
pub const KVM_PV_DUMP: u32 = 8;
/// `KVM_PV_ASYNC_CLEANUP_PREPARE`.
pub const KVM_PV_ASYNC_CLEANUP_PREPARE: u32 = 9;
/// `KVM_PV_ASYNC_CLEANUP_PERFORM`.
pub const KVM_PV_ASYNC_CLEANUP_PERFORM: u32 = 10;

/// `KVM_PV_DUMP_INIT`.
pub const KVM_PV_DUMP_INIT: u64 = 0;
/// `KVM_PV_DUMP_CONFIG_STOR_STATE`.
pub const KVM_PV_DUMP_CONFIG_STOR_STATE: u64 = 1;
/// `KVM_PV_DUMP_COMPLETE`.
pub const KVM_PV_DUMP_COMPLETE: u64 = 2;
/// `KVM_PV_DUMP_CPU`.
pub const KVM_PV_DUMP_CPU: u64 = 3;

/// `KVM_PV_INFO_VM`.
pub const KVM_PV_INFO_VM: u32 = 0;
/// `KVM_PV_INFO_DUMP`.
pub const KVM_PV_INFO_DUMP: u32 = 1;

// Layouts from layout.out (s390 run, 6.12 headers).
const _: () = assert!(size_of::<KvmPvCmd>() == 32);
const _: () = assert!(offset_of!(KvmPvCmd, rc) == 4);
const _: () = assert!(offset_of!(KvmPvCmd, rrc) == 6);
const _: () = assert!(offset_of!(KvmPvCmd, data) == 8);
const _: () = assert!(offset_of!(KvmPvCmd, flags) == 16);
const _: () = assert!(offset_of!(KvmPvCmd, reserved) == 20);
const _: () = assert!(size_of::<KvmS390PvSecParm>() == 16);
const _: () = assert!(offset_of!(KvmS390PvSecParm, length) == 8);
const _: () = assert!(size_of::<KvmS390PvUnp>() == 24);
const _: () = assert!(offset_of!(KvmS390PvUnp, size) == 8);
const _: () = assert!(offset_of!(KvmS390PvUnp, tweak) == 16);
const _: () = assert!(size_of::<KvmS390PvDmp>() == 64);
const _: () = assert!(offset_of!(KvmS390PvDmp, buff_addr) == 8);
const _: () = assert!(offset_of!(KvmS390PvDmp, buff_len) == 16);
const _: () = assert!(offset_of!(KvmS390PvDmp, gaddr) == 24);
const _: () = assert!(offset_of!(KvmS390PvDmp, reserved) == 32);
const _: () = assert!(size_of::<KvmS390PvInfoDump>() == 24);
const _: () = assert!(size_of::<KvmS390PvInfoVm>() == 64);
const _: () = assert!(offset_of!(KvmS390PvInfoVm, max_cpus) == 32);
const _: () = assert!(offset_of!(KvmS390PvInfoVm, feature_indication) == 56);
const _: () = assert!(size_of::<KvmS390PvInfoHeader>() == 16);
const _: () = assert!(std::mem::align_of::<KvmS390PvInfoHeader>() == 4);
const _: () = assert!(size_of::<KvmS390PvInfo>() == 80);
const _: () = assert!(offset_of!(KvmS390PvInfo, payload) == 16);
const _: () = assert!(size_of::<KvmS390VmCpuMachine>() == 4112);
const _: () = assert!(offset_of!(KvmS390VmCpuMachine, fac_mask) == 16);
const _: () = assert!(offset_of!(KvmS390VmCpuMachine, fac_list) == 2064);
const _: () = assert!(KVM_S390_PV_COMMAND == 0xC020_AEC5);
const _: () = assert!(size_of::<KvmMpState>() == 4);
const _: () = assert!(KVM_S390_PV_CPU_COMMAND == 0xC020_AED0);

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;
    use std::mem::align_of;

    macro_rules! field {
        ($out:ident, $ty:ty, $f:ident, $size:expr) => {
            writeln!(
                $out,
                "  .{} off={} size={}",
                stringify!($f),
                offset_of!($ty, $f),
                $size
            )
            .unwrap()
        };
    }

    fn strukt(out: &mut String, name: &str, size: usize, align: usize) {
        writeln!(out, "struct {name} size={size} align={align}").unwrap();
    }

    /// The s390 section of layout.out, regenerated from the Rust definitions.
    fn generated() -> String {
        let mut o = String::new();
        let c = |o: &mut String, name: &str, v: u64| {
            writeln!(o, "const {name} = {v:#x} ({v})").unwrap();
        };
        c(&mut o, "KVM_S390_PV_COMMAND", KVM_S390_PV_COMMAND.into());
        c(
            &mut o,
            "KVM_S390_PV_CPU_COMMAND",
            KVM_S390_PV_CPU_COMMAND.into(),
        );
        strukt(
            &mut o,
            "kvm_pv_cmd",
            size_of::<KvmPvCmd>(),
            align_of::<KvmPvCmd>(),
        );
        field!(o, KvmPvCmd, cmd, 4);
        field!(o, KvmPvCmd, rc, 2);
        field!(o, KvmPvCmd, rrc, 2);
        field!(o, KvmPvCmd, data, 8);
        field!(o, KvmPvCmd, flags, 4);
        field!(o, KvmPvCmd, reserved, 12);
        for (n, v) in [
            ("KVM_PV_ENABLE", KVM_PV_ENABLE),
            ("KVM_PV_DISABLE", KVM_PV_DISABLE),
            ("KVM_PV_SET_SEC_PARMS", KVM_PV_SET_SEC_PARMS),
            ("KVM_PV_UNPACK", KVM_PV_UNPACK),
            ("KVM_PV_VERIFY", KVM_PV_VERIFY),
            ("KVM_PV_PREP_RESET", KVM_PV_PREP_RESET),
            ("KVM_PV_UNSHARE_ALL", KVM_PV_UNSHARE_ALL),
            ("KVM_PV_INFO", KVM_PV_INFO),
            ("KVM_PV_DUMP", KVM_PV_DUMP),
            ("KVM_PV_ASYNC_CLEANUP_PREPARE", KVM_PV_ASYNC_CLEANUP_PREPARE),
            ("KVM_PV_ASYNC_CLEANUP_PERFORM", KVM_PV_ASYNC_CLEANUP_PERFORM),
        ] {
            c(&mut o, n, v.into());
        }
        for (n, v) in [
            ("KVM_PV_DUMP_INIT", KVM_PV_DUMP_INIT),
            (
                "KVM_PV_DUMP_CONFIG_STOR_STATE",
                KVM_PV_DUMP_CONFIG_STOR_STATE,
            ),
            ("KVM_PV_DUMP_COMPLETE", KVM_PV_DUMP_COMPLETE),
            ("KVM_PV_DUMP_CPU", KVM_PV_DUMP_CPU),
        ] {
            c(&mut o, n, v);
        }
        c(&mut o, "KVM_PV_INFO_VM", KVM_PV_INFO_VM.into());
        c(&mut o, "KVM_PV_INFO_DUMP", KVM_PV_INFO_DUMP.into());
        strukt(
            &mut o,
            "kvm_s390_pv_sec_parm",
            16,
            align_of::<KvmS390PvSecParm>(),
        );
        field!(o, KvmS390PvSecParm, origin, 8);
        field!(o, KvmS390PvSecParm, length, 8);
        strukt(
            &mut o,
            "kvm_s390_pv_unp",
            size_of::<KvmS390PvUnp>(),
            align_of::<KvmS390PvUnp>(),
        );
        field!(o, KvmS390PvUnp, addr, 8);
        field!(o, KvmS390PvUnp, size, 8);
        field!(o, KvmS390PvUnp, tweak, 8);
        strukt(
            &mut o,
            "kvm_s390_pv_dmp",
            size_of::<KvmS390PvDmp>(),
            align_of::<KvmS390PvDmp>(),
        );
        field!(o, KvmS390PvDmp, subcmd, 8);
        field!(o, KvmS390PvDmp, buff_addr, 8);
        field!(o, KvmS390PvDmp, buff_len, 8);
        field!(o, KvmS390PvDmp, gaddr, 8);
        field!(o, KvmS390PvDmp, reserved, 32);
        strukt(
            &mut o,
            "kvm_s390_pv_info_dump",
            size_of::<KvmS390PvInfoDump>(),
            align_of::<KvmS390PvInfoDump>(),
        );
        field!(o, KvmS390PvInfoDump, dump_cpu_buffer_len, 8);
        field!(o, KvmS390PvInfoDump, dump_config_mem_buffer_per_1m, 8);
        field!(o, KvmS390PvInfoDump, dump_config_finalize_len, 8);
        strukt(
            &mut o,
            "kvm_s390_pv_info_vm",
            size_of::<KvmS390PvInfoVm>(),
            align_of::<KvmS390PvInfoVm>(),
        );
        field!(o, KvmS390PvInfoVm, inst_calls_list, 32);
        field!(o, KvmS390PvInfoVm, max_cpus, 8);
        field!(o, KvmS390PvInfoVm, max_guests, 8);
        field!(o, KvmS390PvInfoVm, max_guest_addr, 8);
        field!(o, KvmS390PvInfoVm, feature_indication, 8);
        strukt(
            &mut o,
            "kvm_s390_pv_info_header",
            size_of::<KvmS390PvInfoHeader>(),
            align_of::<KvmS390PvInfoHeader>(),
        );
        field!(o, KvmS390PvInfoHeader, id, 4);
        field!(o, KvmS390PvInfoHeader, len_max, 4);
        field!(o, KvmS390PvInfoHeader, len_written, 4);
        field!(o, KvmS390PvInfoHeader, reserved, 4);
        strukt(
            &mut o,
            "kvm_s390_pv_info",
            size_of::<KvmS390PvInfo>(),
            align_of::<KvmS390PvInfo>(),
        );
        writeln!(o, "  .header off=0 size=16").unwrap();
        let p = offset_of!(KvmS390PvInfo, payload);
        writeln!(o, "  .dump off={p} size={}", size_of::<KvmS390PvInfoDump>()).unwrap();
        writeln!(o, "  .vm off={p} size={}", size_of::<KvmS390PvInfoVm>()).unwrap();
        o
    }

    #[test]
    fn layouts_match_layout_out_s390_run() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/abi/layout.out"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!(
                "SKIP layout.out cross-check: {path} not present (compile-time asserts hold)"
            );
            return;
        };
        let section: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# section s390"))
            .skip(1)
            .take_while(|l| !l.starts_with("# section"))
            .filter(|l| !l.starts_with("const KVM_CAP_"))
            .collect();
        let ours = generated();
        let ours: Vec<&str> = ours.lines().collect();
        assert_eq!(ours, section);
    }

    #[test]
    fn ioctl_encodings_per_architecture() {
        // s390x (generic layout): the numbers layout.out prints for the s390 run.
        assert_eq!(IocLayout::S390X.iowr(KVMIO, 0xC5, 32), 0xC020_AEC5);
        assert_eq!(IocLayout::S390X.iowr(KVMIO, 0xD0, 32), 0xC020_AED0);
        assert_eq!(IocLayout::S390X.io(KVMIO, 0x03), 0xAE03);
        // KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, struct kvm_device_attr (24)).
        assert_eq!(IocLayout::S390X.iow(KVMIO, 0xE2, 24), 0x4018_AEE2);
        assert_eq!(
            IocLayout::S390X.iow(KVMIO, 0xE2, 24),
            cgs_core::uapi::KVM_GET_DEVICE_ATTR() as u32
        );
        assert_eq!(IocLayout::S390X.ior(KVMIO, 0x04, 0), 0x8000_AE04);
        // powerpc differs: KVM_PPC_SVM_OFF and KVM_ENABLE_CAP from layout.out's ppc run.
        assert_eq!(IocLayout::POWERPC.io(KVMIO, 0xB3), 0x2000_AEB3);
        assert_eq!(IocLayout::POWERPC.iow(KVMIO, 0xA3, 104), 0x8068_AEA3);
        assert_eq!(IocLayout::GENERIC.iow(KVMIO, 0xA3, 104), 0x4068_AEA3);
        assert_eq!(IocLayout::GENERIC.io(KVMIO, 0xB3), 0xAEB3);
    }

    #[test]
    fn mp_state_numbers_match_kvm_bindings() {
        assert_eq!(KVM_SET_MP_STATE, 0x4004_AE99);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(KVM_MP_STATE_LOAD, kvm_bindings::KVM_MP_STATE_LOAD);
            assert_eq!(KVM_MP_STATE_OPERATING, kvm_bindings::KVM_MP_STATE_OPERATING);
            assert_eq!(
                size_of::<KvmMpState>(),
                size_of::<kvm_bindings::kvm_mp_state>()
            );
        }
    }

    #[test]
    fn facility_bits_are_msb0() {
        let mut fac = [0u64; 4];
        fac[2] = 0x0000_0000_4000_0000;
        assert!(facility_bit(&fac, FACILITY_UNPACK));
        assert!(!facility_bit(&fac, FACILITY_UV_CALL));
        fac[2] |= 0x0000_0002_0000_0000;
        assert!(facility_bit(&fac, FACILITY_UV_CALL));
        assert!(!facility_bit(&fac, 10_000));
    }

    #[test]
    fn info_request_is_full_length() {
        let r = KvmS390PvInfo::request(KVM_PV_INFO_DUMP);
        assert_eq!(r.header.len_max, 80);
        assert_eq!(r.header.id, 1);
    }
}
