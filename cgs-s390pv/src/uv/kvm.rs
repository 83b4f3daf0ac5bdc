//! The real Ultravisor, through `KVM_S390_PV_COMMAND` on an s390x host.
//!
//! The marshalling (command structs, data pointers, copying rc/rrc back) compiles and is
//! exercised on every architecture; the ioctl itself is only issued when the crate is built for
//! s390x. Elsewhere every call returns `Error::Unsupported` saying why: the PV ioctls exist only
//! in s390 KVM.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref};

use cgs_core::uapi::{KvmDeviceAttr, KVM_CAP_S390_PROTECTED, KVM_CAP_S390_PROTECTED_ASYNC_DISABLE};
use cgs_core::uapi::{KVM_CAP_S390_PROTECTED_DUMP, KVM_GET_DEVICE_ATTR};
use cgs_core::{Error, Result};

use super::CpuState;
use super::{
    AsyncPerform, HostSupport, PvCommand, PvInfoDump, PvInfoVm, PvOutcome, PvOutput, Ultravisor,
};
use crate::uapi::*;

/// Whether this build can issue s390 PV ioctls.
pub const HOST_HAS_PV_IOCTLS: bool = cfg!(target_arch = "s390x");

fn unsupported(what: &'static str) -> Error {
    Error::unsupported(
        what,
        format!(
            "Protected Virtualization requires KVM on an s390x host; this build is for {} \
             (KVM_S390_PV_COMMAND exists only in s390 KVM)",
            std::env::consts::ARCH
        ),
    )
}

/// The real Ultravisor interface (`KVM_S390_PV_COMMAND` on the VM fd).
#[derive(Debug, Default, Clone, Copy)]
pub struct KvmUltravisor;

impl KvmUltravisor {
    /// A handle; it holds no state (KVM keeps it).
    pub fn new() -> Self {
        KvmUltravisor
    }
}

/// Issue `req` with `cmd` on `fd`; `Err(errno)` on failure (rc/rrc are in `cmd` either way).
fn pv_ioctl(fd: &impl AsRawFd, req: u32, cmd: &mut KvmPvCmd) -> std::result::Result<(), i32> {
    if !HOST_HAS_PV_IOCTLS {
        return Err(libc::ENOTTY);
    }
    // SAFETY: `fd` is a KVM VM or vCPU fd owned by the caller; `cmd` is a live, exclusively
    // borrowed `struct kvm_pv_cmd` (32 bytes, layout asserted in uapi.rs) that the kernel reads
    // and writes back; `cmd.data` points to a live data struct of the command's type (or is 0).
    let ret = unsafe { ioctl_with_mut_ref(fd, libc::c_ulong::from(req), cmd) };
    if ret < 0 {
        Err(vmm_sys_util::errno::Error::last().errno())
    } else {
        Ok(())
    }
}

/// Build the envelope for `cmd` with its data, issue it, and decode the answer.
fn run_command(fd: &impl AsRawFd, req: u32, cmd: PvCommand<'_>) -> PvOutcome {
    let id = cmd.id();
    let mut env = KvmPvCmd {
        cmd: id,
        ..Default::default()
    };
    let outcome = |env: &mut KvmPvCmd, output: &mut dyn FnMut() -> PvOutput| {
        let r = pv_ioctl(fd, req, env);
        match r {
            Ok(()) => PvOutcome::ok(env.rc, env.rrc, output()),
            Err(e) => PvOutcome::err(e, env.rc, env.rrc),
        }
    };
    match cmd {
        PvCommand::Enable
        | PvCommand::Disable
        | PvCommand::Verify
        | PvCommand::PrepReset
        | PvCommand::UnshareAll
        | PvCommand::AsyncCleanupPrepare
        | PvCommand::AsyncCleanupPerform => outcome(&mut env, &mut || PvOutput::None),
        PvCommand::SetSecParms { header } => {
            let mut parm = KvmS390PvSecParm {
                origin: header.as_ptr() as u64,
                length: header.len() as u64,
            };
            env.data = &mut parm as *mut _ as u64;
            outcome(&mut env, &mut || PvOutput::None)
        }
        PvCommand::Unpack { addr, size, tweak } => {
            let mut unp = KvmS390PvUnp { addr, size, tweak };
            env.data = &mut unp as *mut _ as u64;
            outcome(&mut env, &mut || PvOutput::None)
        }
        PvCommand::InfoVm | PvCommand::InfoDump => {
            let dump = matches!(cmd, PvCommand::InfoDump);
            let mut info = KvmS390PvInfo::request(if dump {
                KVM_PV_INFO_DUMP
            } else {
                KVM_PV_INFO_VM
            });
            env.data = &mut info as *mut _ as u64;
            let r = pv_ioctl(fd, req, &mut env);
            match r {
                Err(e) => PvOutcome::err(e, env.rc, env.rrc),
                Ok(()) => {
                    let payload = info.payload;
                    let out = if dump {
                        // SAFETY: both union members are plain integers; every bit pattern is
                        // a valid value, and KVM wrote the member `header.id` selects.
                        let d = unsafe { payload.dump };
                        PvOutput::InfoDump(PvInfoDump {
                            cpu_buffer_len: d.dump_cpu_buffer_len,
                            config_mem_buffer_per_1m: d.dump_config_mem_buffer_per_1m,
                            config_finalize_len: d.dump_config_finalize_len,
                        })
                    } else {
                        // SAFETY: as above (plain integers, the member `header.id` selects).
                        let v = unsafe { payload.vm };
                        PvOutput::InfoVm(PvInfoVm {
                            inst_calls_list: v.inst_calls_list,
                            max_cpus: v.max_cpus,
                            max_guests: v.max_guests,
                            max_guest_addr: v.max_guest_addr,
                            feature_indication: v.feature_indication,
                        })
                    };
                    PvOutcome::ok(env.rc, env.rrc, out)
                }
            }
        }
        PvCommand::DumpInit => {
            let mut dmp = KvmS390PvDmp {
                subcmd: KVM_PV_DUMP_INIT,
                ..Default::default()
            };
            env.data = &mut dmp as *mut _ as u64;
            outcome(&mut env, &mut || PvOutput::None)
        }
        PvCommand::DumpStorState { gaddr, buf } => {
            let mut dmp = KvmS390PvDmp {
                subcmd: KVM_PV_DUMP_CONFIG_STOR_STATE,
                buff_addr: buf.as_mut_ptr() as u64,
                buff_len: buf.len() as u64,
                gaddr,
                ..Default::default()
            };
            env.data = &mut dmp as *mut _ as u64;
            match pv_ioctl(fd, req, &mut env) {
                Ok(()) => PvOutcome::ok(env.rc, env.rrc, PvOutput::NextGaddr(dmp.gaddr)),
                Err(e) => PvOutcome::err(e, env.rc, env.rrc),
            }
        }
        PvCommand::DumpComplete { buf } => {
            let mut dmp = KvmS390PvDmp {
                subcmd: KVM_PV_DUMP_COMPLETE,
                buff_addr: buf.as_mut_ptr() as u64,
                buff_len: buf.len() as u64,
                ..Default::default()
            };
            env.data = &mut dmp as *mut _ as u64;
            outcome(&mut env, &mut || PvOutput::None)
        }
    }
}

impl Ultravisor for KvmUltravisor {
    fn firmware_name(&self) -> &'static str {
        "s390 UV"
    }

    fn host_support(&self, kvm: &Kvm, vm: &VmFd) -> Result<HostSupport> {
        if !HOST_HAS_PV_IOCTLS {
            return Err(unsupported("s390 Protected Virtualization"));
        }
        let cap = |c: u32| kvm.check_extension_raw(c.into()) > 0;
        let mut machine = KvmS390VmCpuMachine::default();
        let attr = KvmDeviceAttr {
            flags: 0,
            group: KVM_S390_VM_CPU_MODEL,
            attr: KVM_S390_VM_CPU_MACHINE,
            addr: &mut machine as *mut _ as u64,
        };
        // SAFETY: `vm` is a live VM fd; the kernel reads `attr` (24 bytes) and writes
        // `struct kvm_s390_vm_cpu_machine` (4112 bytes, layout asserted) to `attr.addr`, which
        // points to `machine`, alive and exclusively borrowed for the call.
        let ret = unsafe { ioctl_with_ref(vm, KVM_GET_DEVICE_ATTR(), &attr) };
        if ret < 0 {
            return Err(Error::last_os(
                "KVM_GET_DEVICE_ATTR(KVM_S390_VM_CPU_MACHINE)",
            ));
        }
        Ok(HostSupport {
            protected: cap(KVM_CAP_S390_PROTECTED),
            dump: cap(KVM_CAP_S390_PROTECTED_DUMP),
            async_disable: cap(KVM_CAP_S390_PROTECTED_ASYNC_DISABLE),
            unpack_facility: facility_bit(&machine.fac_mask, FACILITY_UNPACK),
        })
    }

    fn vm_command(&mut self, vm: &VmFd, cmd: PvCommand<'_>) -> Result<PvOutcome> {
        if !HOST_HAS_PV_IOCTLS {
            return Err(unsupported(cmd.name()));
        }
        Ok(run_command(vm, KVM_S390_PV_COMMAND, cmd))
    }

    fn dump_cpu(&mut self, vcpu: &VcpuFd, buf: &mut [u8]) -> Result<PvOutcome> {
        if !HOST_HAS_PV_IOCTLS {
            return Err(unsupported("KVM_PV_DUMP(CPU)"));
        }
        let mut dmp = KvmS390PvDmp {
            subcmd: KVM_PV_DUMP_CPU,
            buff_addr: buf.as_mut_ptr() as u64,
            buff_len: buf.len() as u64,
            ..Default::default()
        };
        let mut env = KvmPvCmd {
            cmd: KVM_PV_DUMP,
            data: &mut dmp as *mut _ as u64,
            ..Default::default()
        };
        Ok(match pv_ioctl(vcpu, KVM_S390_PV_CPU_COMMAND, &mut env) {
            Ok(()) => PvOutcome::ok(env.rc, env.rrc, PvOutput::None),
            Err(e) => PvOutcome::err(e, env.rc, env.rrc),
        })
    }

    fn set_cpu_state(&mut self, vcpu: &VcpuFd, state: CpuState) -> Result<PvOutcome> {
        if !HOST_HAS_PV_IOCTLS {
            return Err(unsupported("KVM_SET_MP_STATE for a protected vCPU"));
        }
        let mp = KvmMpState {
            mp_state: state.mp_state(),
        };
        // SAFETY: `vcpu` is a live vCPU fd; the kernel reads `struct kvm_mp_state` (4 bytes,
        // layout asserted) from `mp`, which lives for the call.
        let ret = unsafe { ioctl_with_ref(vcpu, libc::c_ulong::from(KVM_SET_MP_STATE), &mp) };
        Ok(if ret < 0 {
            PvOutcome::err(vmm_sys_util::errno::Error::last().errno(), 0, 0)
        } else {
            PvOutcome::ok(0, 0, PvOutput::None)
        })
    }

    fn async_perform(&self, vm: &VmFd) -> Result<AsyncPerform> {
        if !HOST_HAS_PV_IOCTLS {
            return Err(unsupported("KVM_PV_ASYNC_CLEANUP_PERFORM"));
        }
        // SAFETY: `dup` of a live fd has no memory-safety preconditions; the result is checked.
        let fd = unsafe { libc::dup(vm.as_raw_fd()) };
        if fd < 0 {
            return Err(Error::last_os("dup(VM fd)"));
        }
        // SAFETY: `fd` was just returned by `dup`, is valid and owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Box::new(move || {
            Ok(run_command(
                &owned,
                KVM_S390_PV_COMMAND,
                PvCommand::AsyncCleanupPerform,
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_path_reports_unsupported_off_s390x() {
        if HOST_HAS_PV_IOCTLS {
            return;
        }
        let Some(kvm) = cgs_core::testing::kvm_or_skip("kvm uv unsupported") else {
            return;
        };
        let vm = kvm.create_vm().unwrap();
        let mut uv = KvmUltravisor::new();
        let e = uv.host_support(&kvm, &vm).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("s390x host"), "{e}");
        let e = uv.vm_command(&vm, PvCommand::Enable).unwrap_err();
        assert!(
            e.to_string().contains("KVM_PV_ENABLE is not supported"),
            "{e}"
        );
        let vcpu = vm.create_vcpu(0).unwrap();
        assert!(matches!(
            uv.dump_cpu(&vcpu, &mut [0u8; 16]),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            uv.async_perform(&vm),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn marshalling_without_ioctls_yields_enotty() {
        // The marshalling runs on every host; without PV ioctls the envelope is never sent.
        if HOST_HAS_PV_IOCTLS {
            return;
        }
        let file = std::fs::File::open("/dev/null").unwrap();
        let mut buf = [0u8; 64];
        let o = run_command(
            &file,
            KVM_S390_PV_COMMAND,
            PvCommand::DumpComplete { buf: &mut buf },
        );
        assert_eq!(o, PvOutcome::err(libc::ENOTTY, 0, 0));
        let o = run_command(&file, KVM_S390_PV_COMMAND, PvCommand::InfoVm);
        assert_eq!(o.errno, Some(libc::ENOTTY));
    }
}
