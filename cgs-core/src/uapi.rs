//! Kernel ABI numbers cgs-core needs that are not available on every architecture in
//! kvm-bindings, and the system-scope device-attribute ioctls kvm-ioctls lacks.
//!
//! Capability numbers are the same on every architecture (`include/uapi/linux/kvm.h`); on x86_64
//! a unit test checks them against kvm-bindings.

use std::os::fd::AsRawFd;

use vmm_sys_util::errno;
use vmm_sys_util::ioctl::ioctl_with_ref;

mod nr {
    #![allow(missing_docs)]
    use super::KvmDeviceAttr;
    use vmm_sys_util::ioctl_iow_nr;
    const KVMIO: u32 = 0xAE;
    ioctl_iow_nr!(KVM_HAS_DEVICE_ATTR, KVMIO, 0xe3, KvmDeviceAttr);
    ioctl_iow_nr!(KVM_GET_DEVICE_ATTR, KVMIO, 0xe2, KvmDeviceAttr);
}
pub use nr::{KVM_GET_DEVICE_ATTR, KVM_HAS_DEVICE_ATTR};

/// `KVM_CAP_S390_PROTECTED`.
pub const KVM_CAP_S390_PROTECTED: u32 = 180;
/// `KVM_CAP_PPC_SECURE_GUEST`.
pub const KVM_CAP_PPC_SECURE_GUEST: u32 = 181;
/// `KVM_CAP_VM_COPY_ENC_CONTEXT_FROM`.
pub const KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: u32 = 197;
/// `KVM_CAP_EXIT_HYPERCALL`.
pub const KVM_CAP_EXIT_HYPERCALL: u32 = 201;
/// `KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM`.
pub const KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: u32 = 206;
/// `KVM_CAP_SYS_ATTRIBUTES`.
pub const KVM_CAP_SYS_ATTRIBUTES: u32 = 209;
/// `KVM_CAP_S390_PROTECTED_DUMP`.
pub const KVM_CAP_S390_PROTECTED_DUMP: u32 = 217;
/// `KVM_CAP_S390_PROTECTED_ASYNC_DISABLE`.
pub const KVM_CAP_S390_PROTECTED_ASYNC_DISABLE: u32 = 224;
/// `KVM_CAP_USER_MEMORY2`.
pub const KVM_CAP_USER_MEMORY2: u32 = 231;
/// `KVM_CAP_MEMORY_FAULT_INFO`.
pub const KVM_CAP_MEMORY_FAULT_INFO: u32 = 232;
/// `KVM_CAP_MEMORY_ATTRIBUTES`.
pub const KVM_CAP_MEMORY_ATTRIBUTES: u32 = 233;
/// `KVM_CAP_GUEST_MEMFD`.
pub const KVM_CAP_GUEST_MEMFD: u32 = 234;
/// `KVM_CAP_VM_TYPES`.
pub const KVM_CAP_VM_TYPES: u32 = 235;
/// `KVM_CAP_PRE_FAULT_MEMORY`.
pub const KVM_CAP_PRE_FAULT_MEMORY: u32 = 236;
/// `KVM_CAP_GUEST_MEMFD_FLAGS` (Linux 6.18).
pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;

/// `GUEST_MEMFD_FLAG_MMAP`: the guest_memfd may be mmap()ed.
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
/// `GUEST_MEMFD_FLAG_INIT_SHARED`: the guest_memfd's pages start shared.
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
/// `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

/// x86 `KVM_X86_GRP_SEV` device-attribute group (on `/dev/kvm`).
pub const KVM_X86_GRP_SEV: u32 = 1;
/// x86 `KVM_X86_SEV_VMSA_FEATURES` attribute: the VMSA SEV_FEATURES KVM supports.
pub const KVM_X86_SEV_VMSA_FEATURES: u64 = 0;

/// `struct kvm_device_attr`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct KvmDeviceAttr {
    /// Must be zero.
    pub flags: u32,
    /// Attribute group.
    pub group: u32,
    /// Attribute within the group.
    pub attr: u64,
    /// User address of the attribute's value.
    pub addr: u64,
}

const _: () = assert!(std::mem::size_of::<KvmDeviceAttr>() == 24);
const _: () = assert!(std::mem::offset_of!(KvmDeviceAttr, attr) == 8);
const _: () = assert!(std::mem::offset_of!(KvmDeviceAttr, addr) == 16);

/// `KVM_GET_DEVICE_ATTR` on a KVM fd (`/dev/kvm` for system scope): read a `u64` attribute.
///
/// See the KVM API documentation, section "KVM_GET_DEVICE_ATTR" (system scope needs
/// `KVM_CAP_SYS_ATTRIBUTES`).
pub fn get_device_attr_u64(fd: &impl AsRawFd, group: u32, attr: u64) -> errno::Result<u64> {
    let mut value = 0u64;
    let da = KvmDeviceAttr {
        flags: 0,
        group,
        attr,
        addr: &mut value as *mut u64 as u64,
    };
    // SAFETY: `fd` is an open KVM fd; the kernel reads the 24-byte `da` and writes at most 8
    // bytes (a u64 attribute) to `addr`, which points at `value`, live for the whole call.
    let ret = unsafe { ioctl_with_ref(fd, KVM_GET_DEVICE_ATTR(), &da) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(value)
}

/// `KVM_HAS_DEVICE_ATTR` on a KVM fd: whether the attribute exists.
pub fn has_device_attr(fd: &impl AsRawFd, group: u32, attr: u64) -> errno::Result<()> {
    let da = KvmDeviceAttr {
        flags: 0,
        group,
        attr,
        addr: 0,
    };
    // SAFETY: `fd` is an open KVM fd; the kernel only reads the 24-byte `da`, which lives for
    // the call; `addr` is not dereferenced by HAS_DEVICE_ATTR.
    let ret = unsafe { ioctl_with_ref(fd, KVM_HAS_DEVICE_ATTR(), &da) };
    if ret < 0 {
        return Err(errno::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers() {
        assert_eq!(KVM_GET_DEVICE_ATTR(), 0x4018_AEE2);
        assert_eq!(KVM_HAS_DEVICE_ATTR(), 0x4018_AEE3);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn capability_numbers_match_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(KVM_CAP_S390_PROTECTED, kb::KVM_CAP_S390_PROTECTED);
        assert_eq!(KVM_CAP_PPC_SECURE_GUEST, kb::KVM_CAP_PPC_SECURE_GUEST);
        assert_eq!(
            KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
            kb::KVM_CAP_VM_COPY_ENC_CONTEXT_FROM
        );
        assert_eq!(KVM_CAP_EXIT_HYPERCALL, kb::KVM_CAP_EXIT_HYPERCALL);
        assert_eq!(
            KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
            kb::KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM
        );
        assert_eq!(KVM_CAP_SYS_ATTRIBUTES, kb::KVM_CAP_SYS_ATTRIBUTES);
        assert_eq!(KVM_CAP_USER_MEMORY2, kb::KVM_CAP_USER_MEMORY2);
        assert_eq!(KVM_CAP_MEMORY_FAULT_INFO, kb::KVM_CAP_MEMORY_FAULT_INFO);
        assert_eq!(KVM_CAP_MEMORY_ATTRIBUTES, kb::KVM_CAP_MEMORY_ATTRIBUTES);
        assert_eq!(KVM_CAP_GUEST_MEMFD, kb::KVM_CAP_GUEST_MEMFD);
        assert_eq!(KVM_CAP_VM_TYPES, kb::KVM_CAP_VM_TYPES);
        assert_eq!(KVM_CAP_PRE_FAULT_MEMORY, kb::KVM_CAP_PRE_FAULT_MEMORY);
        assert_eq!(KVM_X86_GRP_SEV, kb::KVM_X86_GRP_SEV);
        assert_eq!(
            KVM_X86_SEV_VMSA_FEATURES as u32,
            kb::KVM_X86_SEV_VMSA_FEATURES
        );
        assert_eq!(
            KVM_MEMORY_ATTRIBUTE_PRIVATE,
            kb::KVM_MEMORY_ATTRIBUTE_PRIVATE as u64
        );
    }
}
