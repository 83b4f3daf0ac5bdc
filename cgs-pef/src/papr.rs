//! POWER hypercall and ultracall numbers and return codes used by PEF.
//!
//! Numbers from `arch/powerpc/include/asm/hvcall.h` and `ultravisor-api.h` (Linux), described in
//! `Documentation/arch/powerpc/ultravisor.rst`. Ultracall return codes are the hcall codes
//! (`U_SUCCESS` = `H_SUCCESS`, …).

/// `H_SVM_PAGE_IN`: the ultravisor asks KVM to move a page to secure memory.
pub const H_SVM_PAGE_IN: u64 = 0xEF00;
/// `H_SVM_PAGE_OUT`: the ultravisor gives a page back to KVM.
pub const H_SVM_PAGE_OUT: u64 = 0xEF04;
/// `H_SVM_INIT_START`: a guest asked to become secure (UV_ESM).
pub const H_SVM_INIT_START: u64 = 0xEF08;
/// `H_SVM_INIT_DONE`: the transition to secure succeeded.
pub const H_SVM_INIT_DONE: u64 = 0xEF0C;
/// `H_SVM_INIT_ABORT`: the transition to secure failed; KVM undoes it.
pub const H_SVM_INIT_ABORT: u64 = 0xEF14;
/// `H_PAGE_IN_SHARED` flag of `H_SVM_PAGE_IN`.
pub const H_PAGE_IN_SHARED: u64 = 1;

/// `UV_ESM`: enter secure mode (guest → ultravisor; args: ESM blob address, FDT address).
pub const UV_ESM: u64 = 0xF110;
/// `UV_PAGE_IN` (KVM → ultravisor).
pub const UV_PAGE_IN: u64 = 0xF128;
/// `UV_PAGE_OUT` (KVM → ultravisor).
pub const UV_PAGE_OUT: u64 = 0xF12C;
/// `UV_SHARE_PAGE` (secure guest → ultravisor; args: gfn, number of pages).
pub const UV_SHARE_PAGE: u64 = 0xF130;
/// `UV_UNSHARE_PAGE` (secure guest → ultravisor; args: gfn, number of pages).
pub const UV_UNSHARE_PAGE: u64 = 0xF134;
/// `UV_SVM_TERMINATE` (KVM → ultravisor, from `KVM_PPC_SVM_OFF`).
pub const UV_SVM_TERMINATE: u64 = 0xF13C;
/// `UV_UNSHARE_ALL_PAGES` (secure guest → ultravisor).
pub const UV_UNSHARE_ALL_PAGES: u64 = 0xF140;

/// `H_SUCCESS` / `U_SUCCESS`.
pub const H_SUCCESS: i64 = 0;
/// `H_BUSY` / `U_BUSY`.
pub const H_BUSY: i64 = 1;
/// `H_NOT_AVAILABLE` / `U_NOT_AVAILABLE`.
pub const H_NOT_AVAILABLE: i64 = 3;
/// `H_FUNCTION` / `U_FUNCTION`: not supported in this state or by this caller.
pub const H_FUNCTION: i64 = -2;
/// `H_PARAMETER` / `U_PARAMETER`.
pub const H_PARAMETER: i64 = -4;
/// `H_AUTHORITY`: KVM refuses `H_SVM_INIT_START` when `KVM_CAP_PPC_SECURE_GUEST` was not enabled.
pub const H_AUTHORITY: i64 = -10;
/// `H_PERMISSION` / `U_PERMISSION`.
pub const H_PERMISSION: i64 = -11;
/// `H_P2` / `U_P2`: second argument invalid.
pub const H_P2: i64 = -55;
/// `H_P3` / `U_P3`: third argument invalid.
pub const H_P3: i64 = -56;
/// `H_P4` / `U_P4`.
pub const H_P4: i64 = -57;
/// `H_P5` / `U_P5`.
pub const H_P5: i64 = -58;
/// `H_UNSUPPORTED`: no secure memory (uvmem) on this host, or a hash-MMU guest.
pub const H_UNSUPPORTED: i64 = -67;
/// `H_STATE`: `H_SVM_INIT_ABORT` after `H_SVM_INIT_DONE`.
pub const H_STATE: i64 = -75;

/// The architectural name of an hcall / ultracall return code.
pub fn rc_name(rc: i64) -> &'static str {
    match rc {
        H_SUCCESS => "H_SUCCESS",
        H_BUSY => "H_BUSY",
        H_NOT_AVAILABLE => "H_NOT_AVAILABLE",
        H_FUNCTION => "H_FUNCTION",
        H_PARAMETER => "H_PARAMETER",
        H_AUTHORITY => "H_AUTHORITY",
        H_PERMISSION => "H_PERMISSION",
        H_P2 => "H_P2",
        H_P3 => "H_P3",
        H_P4 => "H_P4",
        H_P5 => "H_P5",
        H_UNSUPPORTED => "H_UNSUPPORTED",
        H_STATE => "H_STATE",
        _ => "UNKNOWN",
    }
}

/// The name of an ultracall or SVM hcall opcode.
pub fn opcode_name(op: u64) -> &'static str {
    match op {
        H_SVM_PAGE_IN => "H_SVM_PAGE_IN",
        H_SVM_PAGE_OUT => "H_SVM_PAGE_OUT",
        H_SVM_INIT_START => "H_SVM_INIT_START",
        H_SVM_INIT_DONE => "H_SVM_INIT_DONE",
        H_SVM_INIT_ABORT => "H_SVM_INIT_ABORT",
        UV_ESM => "UV_ESM",
        UV_PAGE_IN => "UV_PAGE_IN",
        UV_PAGE_OUT => "UV_PAGE_OUT",
        UV_SHARE_PAGE => "UV_SHARE_PAGE",
        UV_UNSHARE_PAGE => "UV_UNSHARE_PAGE",
        UV_SVM_TERMINATE => "UV_SVM_TERMINATE",
        UV_UNSHARE_ALL_PAGES => "UV_UNSHARE_ALL_PAGES",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(rc_name(-10), "H_AUTHORITY");
        assert_eq!(rc_name(-67), "H_UNSUPPORTED");
        assert_eq!(rc_name(12345), "UNKNOWN");
        assert_eq!(opcode_name(0xF110), "UV_ESM");
        assert_eq!(opcode_name(0xEF14), "H_SVM_INIT_ABORT");
        assert_eq!(opcode_name(7), "UNKNOWN");
    }
}
