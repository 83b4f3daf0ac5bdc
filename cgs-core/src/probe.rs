//! Host capability probing.

/// `KVM_CAP_VM_TYPES`: bitmap of supported `KVM_CREATE_VM` machine types (x86).
pub const KVM_CAP_VM_TYPES: u32 = 235;

/// The name of an x86 `KVM_CREATE_VM` machine type.
pub fn vm_type_name(vm_type: u64) -> &'static str {
    match vm_type {
        0 => "KVM_X86_DEFAULT_VM",
        1 => "KVM_X86_SW_PROTECTED_VM",
        2 => "KVM_X86_SEV_VM",
        3 => "KVM_X86_SEV_ES_VM",
        4 => "KVM_X86_SNP_VM",
        5 => "KVM_X86_TDX_VM",
        _ => "unknown",
    }
}
