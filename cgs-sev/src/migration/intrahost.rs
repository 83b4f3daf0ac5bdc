//! Intra-host moves of an SEV encryption context between VMs.
//!
//! - [`move_enc_context`] (`KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM`): the destination VM takes over the
//!   source's ASID, firmware handle and pinned regions; the source can no longer run. Used for
//!   local live update of a VMM without re-launching the guest.
//! - [`mirror_enc_context`] (`KVM_CAP_VM_COPY_ENC_CONTEXT_FROM`): the destination becomes a
//!   *mirror* sharing the source's encryption context (for in-guest migration helpers); it may
//!   only issue LAUNCH_UPDATE_VMSA, GUEST_STATUS and the debug commands.
//!
//! Both are `KVM_ENABLE_CAP` on the destination VM with `args[0]` = the source VM's fd. KVM refuses
//! with `EINVAL` when the source has no SEV context, the destination already has one, the VM types
//! differ or the source is SEV-SNP, and with `EBUSY` when either VM is in use; this module turns
//! those into [`Error::Unsupported`] naming the rules, and everything else into [`Error::Kvm`].

use std::os::fd::AsRawFd;

use kvm_bindings::kvm_enable_cap;
use kvm_ioctls::{Kvm, VmFd};

use cgs_core::uapi::{KVM_CAP_VM_COPY_ENC_CONTEXT_FROM, KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM};
use cgs_core::{Error, Result};

/// Which intra-host operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextOp {
    /// `KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM`.
    Move,
    /// `KVM_CAP_VM_COPY_ENC_CONTEXT_FROM`.
    Mirror,
}

impl ContextOp {
    fn cap(self) -> u32 {
        match self {
            ContextOp::Move => KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
            ContextOp::Mirror => KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
        }
    }

    /// The capability's name.
    pub fn name(self) -> &'static str {
        match self {
            ContextOp::Move => "KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM",
            ContextOp::Mirror => "KVM_CAP_VM_COPY_ENC_CONTEXT_FROM",
        }
    }
}

/// Whether this KVM offers `op` at all (`KVM_CHECK_EXTENSION`).
pub fn supported(kvm: &Kvm, op: ContextOp) -> bool {
    kvm.check_extension_raw(u64::from(op.cap())) > 0
}

fn enable(kvm: &Kvm, dst: &VmFd, src: &VmFd, op: ContextOp) -> Result<()> {
    if !supported(kvm, op) {
        return Err(Error::unsupported(
            op.name(),
            "this KVM does not offer the capability (KVM_CHECK_EXTENSION returned 0)",
        ));
    }
    let fd = u64::try_from(src.as_raw_fd())
        .map_err(|_| Error::invalid_input("source VM", "negative file descriptor"))?;
    let cap = kvm_enable_cap {
        cap: op.cap(),
        args: [fd, 0, 0, 0],
        ..Default::default()
    };
    dst.enable_cap(&cap).map_err(|e| match e.errno() {
        libc::EINVAL => Error::unsupported(
            op.name(),
            "the host refused (EINVAL): the source VM must be a running SEV or SEV-ES guest (not \
             SEV-SNP), the destination must have no SEV context of its own, and both must have \
             the same VM type; on a host without SEV no VM has a context to move",
        ),
        libc::EBUSY => Error::unsupported(
            op.name(),
            "the host refused (EBUSY): one of the VMs is being changed or already mirrored",
        ),
        _ => Error::kvm(op.name(), e),
    })
}

/// Move `src`'s SEV encryption context into `dst` (same host). On success `src` cannot run again.
pub fn move_enc_context(kvm: &Kvm, dst: &VmFd, src: &VmFd) -> Result<()> {
    enable(kvm, dst, src, ContextOp::Move)
}

/// Make `dst` a mirror sharing `src`'s SEV encryption context (same host).
pub fn mirror_enc_context(kvm: &Kvm, dst: &VmFd, src: &VmFd) -> Result<()> {
    enable(kvm, dst, src, ContextOp::Mirror)
}
