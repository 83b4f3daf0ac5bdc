//! Kernel ABI structs and numbers for PEF, independent of kvm-bindings (which has no powerpc
//! module).

/// `KVM_CAP_PPC_SECURE_GUEST` (181): 1 iff HV KVM runs under an ultravisor.
pub use cgs_core::uapi::KVM_CAP_PPC_SECURE_GUEST;

/// `struct kvm_enable_cap` (`include/uapi/linux/kvm.h`, 104 bytes on every architecture).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvmEnableCap {
    /// The capability.
    pub cap: u32,
    /// Must be zero.
    pub flags: u32,
    /// Capability arguments.
    pub args: [u64; 4],
    /// Reserved, zero.
    pub pad: [u8; 64],
}

impl KvmEnableCap {
    /// A request to enable `cap` with `args`.
    pub const fn new(cap: u32, args: [u64; 4]) -> Self {
        KvmEnableCap {
            cap,
            flags: 0,
            args,
            pad: [0; 64],
        }
    }
}

const _: () = assert!(std::mem::size_of::<KvmEnableCap>() == 104);
const _: () = assert!(std::mem::offset_of!(KvmEnableCap, flags) == 4);
const _: () = assert!(std::mem::offset_of!(KvmEnableCap, args) == 8);
const _: () = assert!(std::mem::offset_of!(KvmEnableCap, pad) == 40);

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn matches_kvm_bindings_on_x86_64() {
        assert_eq!(
            std::mem::size_of::<KvmEnableCap>(),
            std::mem::size_of::<kvm_bindings::kvm_enable_cap>()
        );
        assert_eq!(
            KVM_CAP_PPC_SECURE_GUEST,
            kvm_bindings::KVM_CAP_PPC_SECURE_GUEST
        );
    }
}
