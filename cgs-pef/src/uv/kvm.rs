//! The real ultravisor interface: KVM ioctls on the VM fd.

use std::os::raw::c_ulong;

use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::{ioctl, ioctl_with_ref, ioctl_with_val};

use cgs_core::{Error, Result};

use super::{Ultravisor, OP_ENABLE_CAP, OP_SVM_OFF};
use crate::ioctl::{IocLayout, KvmIoctls};
use crate::uapi::{KvmEnableCap, KVM_CAP_PPC_SECURE_GUEST};

/// The ultravisor as KVM exposes it on a POWER host.
///
/// The ioctl path compiles on every architecture, with the requests encoded for the build target
/// ([`KvmIoctls::HOST`]). PEF exists only in powerpc HV KVM, so on any other host every call
/// returns `Error::Unsupported` with the reason instead of sending a request number that means
/// something else there.
#[derive(Debug, Clone)]
pub struct KvmUltravisor {
    ioctls: KvmIoctls,
    layout: IocLayout,
}

impl Default for KvmUltravisor {
    fn default() -> Self {
        Self::new()
    }
}

impl KvmUltravisor {
    /// The ultravisor interface of this host's KVM.
    pub fn new() -> Self {
        KvmUltravisor {
            ioctls: KvmIoctls::HOST,
            layout: IocLayout::HOST,
        }
    }

    /// The request numbers this instance uses.
    pub fn ioctls(&self) -> KvmIoctls {
        self.ioctls
    }

    fn require_powerpc(&self, op: &'static str) -> Result<()> {
        if self.layout == IocLayout::PowerPc {
            return Ok(());
        }
        Err(Error::unsupported(
            format!("POWER PEF ({op})"),
            format!(
                "this host is {}: KVM_CAP_PPC_SECURE_GUEST and KVM_PPC_SVM_OFF exist only in \
                 powerpc HV KVM running under an ultravisor (POWER9 DD2.3 or later with PEF \
                 enabled); use the simulated ultravisor elsewhere",
                std::env::consts::ARCH
            ),
        ))
    }
}

impl Ultravisor for KvmUltravisor {
    fn name(&self) -> &'static str {
        "KVM"
    }

    fn secure_guest_supported(&mut self, vm: &VmFd) -> Result<bool> {
        self.require_powerpc("KVM_CHECK_EXTENSION(KVM_CAP_PPC_SECURE_GUEST)")?;
        // SAFETY: `vm` is an open KVM VM fd; KVM_CHECK_EXTENSION takes its argument by value and
        // touches no user memory.
        let ret = unsafe {
            ioctl_with_val(
                vm,
                c_ulong::from(self.ioctls.check_extension),
                c_ulong::from(KVM_CAP_PPC_SECURE_GUEST),
            )
        };
        // KVM returns 0 for unknown capabilities; a negative value is a failed ioctl.
        if ret < 0 {
            return Err(Error::last_os(
                "KVM_CHECK_EXTENSION(KVM_CAP_PPC_SECURE_GUEST)",
            ));
        }
        Ok(ret > 0)
    }

    fn enable_secure_guest(&mut self, vm: &VmFd) -> Result<()> {
        self.require_powerpc(OP_ENABLE_CAP)?;
        // QEMU: kvm_vm_enable_cap(s, KVM_CAP_PPC_SECURE_GUEST, 0, 1); the kernel ignores args.
        let cap = KvmEnableCap::new(KVM_CAP_PPC_SECURE_GUEST, [1, 0, 0, 0]);
        // SAFETY: `vm` is an open KVM VM fd; the kernel reads the 104-byte `cap`, which lives for
        // the whole call, and writes nothing back.
        let ret = unsafe { ioctl_with_ref(vm, c_ulong::from(self.ioctls.enable_cap), &cap) };
        if ret < 0 {
            return Err(Error::last_os(OP_ENABLE_CAP));
        }
        Ok(())
    }

    fn svm_off(&mut self, vm: &VmFd) -> Result<()> {
        self.require_powerpc(OP_SVM_OFF)?;
        // SAFETY: `vm` is an open KVM VM fd; KVM_PPC_SVM_OFF has no argument.
        let ret = unsafe { ioctl(vm, c_ulong::from(self.ioctls.ppc_svm_off)) };
        if ret < 0 {
            return Err(Error::last_os(OP_SVM_OFF));
        }
        Ok(())
    }
}
