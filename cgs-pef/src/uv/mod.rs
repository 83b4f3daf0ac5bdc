//! The host's interface to the POWER ultravisor, as KVM exposes it.
//!
//! On a PEF host the VMM never talks to the ultravisor directly: it checks and enables
//! `KVM_CAP_PPC_SECURE_GUEST` on the VM and issues `KVM_PPC_SVM_OFF` on reset; the guest does the
//! rest with ultracalls, and the ultravisor and KVM exchange `H_SVM_*` hcalls and `UV_*`
//! ultracalls behind the VMM's back. [`Ultravisor`] is that host-visible surface.
//! [`KvmUltravisor`] issues the real ioctls; [`SimUltravisor`] is a software model of the
//! ultravisor and of KVM's side of the protocol, so the whole flow runs on any host.

mod kvm;
pub mod sim;

use kvm_ioctls::VmFd;

use cgs_core::Result;

pub use kvm::KvmUltravisor;
pub use sim::SimUltravisor;

/// Operation name of the capability enable, as errors report it.
pub const OP_ENABLE_CAP: &str = "KVM_ENABLE_CAP(KVM_CAP_PPC_SECURE_GUEST)";
/// Operation name of `KVM_PPC_SVM_OFF`, as errors report it (QEMU: "KVM_PPC_SVM_OFF ioctl
/// failed").
pub const OP_SVM_OFF: &str = "KVM_PPC_SVM_OFF ioctl";

/// What the VMM can ask of the ultravisor through KVM.
pub trait Ultravisor: Send {
    /// A short name for messages ("KVM", "simulated POWER ultravisor").
    fn name(&self) -> &'static str;

    /// `KVM_CHECK_EXTENSION(KVM_CAP_PPC_SECURE_GUEST)` on the VM: whether the host can run
    /// secure guests (HV KVM under an ultravisor, with secure memory).
    fn secure_guest_supported(&mut self, vm: &VmFd) -> Result<bool>;

    /// `KVM_ENABLE_CAP(KVM_CAP_PPC_SECURE_GUEST)`: allow this VM's guest to switch to secure
    /// mode. Fails with `Error::Kvm { op: OP_ENABLE_CAP, .. }` (EINVAL without an ultravisor).
    fn enable_secure_guest(&mut self, vm: &VmFd) -> Result<()>;

    /// `KVM_PPC_SVM_OFF`: terminate the secure guest (if it is one) and return the VM to normal
    /// mode. Fails with `Error::Kvm { op: OP_SVM_OFF, .. }` (EBUSY while vCPUs run, EINVAL when the
    /// ultravisor fails, ENOTTY from kernels without the ioctl).
    fn svm_off(&mut self, vm: &VmFd) -> Result<()>;
}

impl<U: Ultravisor + ?Sized> Ultravisor for Box<U> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn secure_guest_supported(&mut self, vm: &VmFd) -> Result<bool> {
        (**self).secure_guest_supported(vm)
    }
    fn enable_secure_guest(&mut self, vm: &VmFd) -> Result<()> {
        (**self).enable_secure_guest(vm)
    }
    fn svm_off(&mut self, vm: &VmFd) -> Result<()> {
        (**self).svm_off(vm)
    }
}
