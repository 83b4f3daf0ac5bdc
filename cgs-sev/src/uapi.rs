//! Kernel ABI for `KVM_MEMORY_ENCRYPT_OP` and `/dev/sev`: command ids, per-command structs and
//! constants, with compile-time size/offset assertions against the kernel headers
//! (`arch/x86/include/uapi/asm/kvm.h`, `include/uapi/linux/psp-sev.h`; facts in kernel-abi.md
//! §2–5, §11 and `abi/layout.out`).
//!
//! kvm-bindings 0.14 (Linux 6.15 headers) has every `kvm_sev_*` struct, including the 6.11+
//! 88-byte `kvm_sev_snp_launch_finish`; they are re-exported here and pinned again so a binding
//! change cannot drift silently. Items newer than those headers (`KVM_SEV_SNP_ENABLE_REQ_CERTS`,
//! `KVM_EXIT_SNP_REQ_CERTS`, the 7.x device attributes) and the packed `/dev/sev` structs are
//! defined here. Nothing in this module is part of the typed public API; the launch and firmware
//! modules convert to and from these structs.

#![allow(non_camel_case_types)]

use std::mem::{align_of, offset_of, size_of};

pub use kvm_bindings::{
    kvm_sev_attestation_report, kvm_sev_cmd, kvm_sev_dbg, kvm_sev_guest_status, kvm_sev_init,
    kvm_sev_launch_measure, kvm_sev_launch_secret, kvm_sev_launch_start,
    kvm_sev_launch_update_data, kvm_sev_receive_start, kvm_sev_receive_update_data,
    kvm_sev_send_start, kvm_sev_send_update_data, kvm_sev_snp_launch_finish,
    kvm_sev_snp_launch_start, kvm_sev_snp_launch_update,
};

/// `KVM_SEV_INIT` (deprecated; VM type 0 only).
pub const KVM_SEV_INIT: u32 = 0;
/// `KVM_SEV_ES_INIT` (deprecated; VM type 0 only).
pub const KVM_SEV_ES_INIT: u32 = 1;
/// `KVM_SEV_LAUNCH_START`.
pub const KVM_SEV_LAUNCH_START: u32 = 2;
/// `KVM_SEV_LAUNCH_UPDATE_DATA`.
pub const KVM_SEV_LAUNCH_UPDATE_DATA: u32 = 3;
/// `KVM_SEV_LAUNCH_UPDATE_VMSA`.
pub const KVM_SEV_LAUNCH_UPDATE_VMSA: u32 = 4;
/// `KVM_SEV_LAUNCH_SECRET`.
pub const KVM_SEV_LAUNCH_SECRET: u32 = 5;
/// `KVM_SEV_LAUNCH_MEASURE`.
pub const KVM_SEV_LAUNCH_MEASURE: u32 = 6;
/// `KVM_SEV_LAUNCH_FINISH`.
pub const KVM_SEV_LAUNCH_FINISH: u32 = 7;
/// `KVM_SEV_SEND_START`.
pub const KVM_SEV_SEND_START: u32 = 8;
/// `KVM_SEV_SEND_UPDATE_DATA`.
pub const KVM_SEV_SEND_UPDATE_DATA: u32 = 9;
/// `KVM_SEV_SEND_FINISH`.
pub const KVM_SEV_SEND_FINISH: u32 = 11;
/// `KVM_SEV_RECEIVE_START`.
pub const KVM_SEV_RECEIVE_START: u32 = 12;
/// `KVM_SEV_RECEIVE_UPDATE_DATA`.
pub const KVM_SEV_RECEIVE_UPDATE_DATA: u32 = 13;
/// `KVM_SEV_RECEIVE_FINISH`.
pub const KVM_SEV_RECEIVE_FINISH: u32 = 15;
/// `KVM_SEV_GUEST_STATUS`.
pub const KVM_SEV_GUEST_STATUS: u32 = 16;
/// `KVM_SEV_DBG_DECRYPT`.
pub const KVM_SEV_DBG_DECRYPT: u32 = 17;
/// `KVM_SEV_DBG_ENCRYPT`.
pub const KVM_SEV_DBG_ENCRYPT: u32 = 18;
/// `KVM_SEV_GET_ATTESTATION_REPORT`.
pub const KVM_SEV_GET_ATTESTATION_REPORT: u32 = 20;
/// `KVM_SEV_SEND_CANCEL`.
pub const KVM_SEV_SEND_CANCEL: u32 = 21;
/// `KVM_SEV_INIT2` (Linux 6.10+).
pub const KVM_SEV_INIT2: u32 = 22;
/// `KVM_SEV_SNP_LAUNCH_START` (Linux 6.11+).
pub const KVM_SEV_SNP_LAUNCH_START: u32 = 100;
/// `KVM_SEV_SNP_LAUNCH_UPDATE`.
pub const KVM_SEV_SNP_LAUNCH_UPDATE: u32 = 101;
/// `KVM_SEV_SNP_LAUNCH_FINISH`.
pub const KVM_SEV_SNP_LAUNCH_FINISH: u32 = 102;
/// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (7.x headers only; probe with [`KVM_X86_SEV_SNP_REQ_CERTS`]).
pub const KVM_SEV_SNP_ENABLE_REQ_CERTS: u32 = 103;

/// `KVM_X86_DEFAULT_VM`.
pub const KVM_X86_DEFAULT_VM: u64 = 0;
/// `KVM_X86_SEV_VM`.
pub const KVM_X86_SEV_VM: u64 = 2;
/// `KVM_X86_SEV_ES_VM`.
pub const KVM_X86_SEV_ES_VM: u64 = 3;
/// `KVM_X86_SNP_VM`.
pub const KVM_X86_SNP_VM: u64 = 4;

/// Device attribute `KVM_X86_SNP_POLICY_BITS` (group `KVM_X86_GRP_SEV`, 7.x).
pub const KVM_X86_SNP_POLICY_BITS: u64 = 1;
/// Device attribute `KVM_X86_SEV_SNP_REQ_CERTS` (group `KVM_X86_GRP_SEV`, 7.x): 1 when the
/// kernel has `KVM_EXIT_SNP_REQ_CERTS`.
pub const KVM_X86_SEV_SNP_REQ_CERTS: u64 = 2;
/// `KVM_EXIT_SNP_REQ_CERTS` exit reason (7.x).
pub const KVM_EXIT_SNP_REQ_CERTS: u32 = 43;

/// `KVM_SEV_SNP_PAGE_TYPE_NORMAL`.
pub const KVM_SEV_SNP_PAGE_TYPE_NORMAL: u8 = 1;
/// Firmware-only VMSA page type (`SNP_PAGE_TYPE_VMSA`, never passed by userspace).
pub const SNP_PAGE_TYPE_VMSA: u8 = 2;
/// `KVM_SEV_SNP_PAGE_TYPE_ZERO`.
pub const KVM_SEV_SNP_PAGE_TYPE_ZERO: u8 = 3;
/// `KVM_SEV_SNP_PAGE_TYPE_UNMEASURED`.
pub const KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: u8 = 4;
/// `KVM_SEV_SNP_PAGE_TYPE_SECRETS`.
pub const KVM_SEV_SNP_PAGE_TYPE_SECRETS: u8 = 5;
/// `KVM_SEV_SNP_PAGE_TYPE_CPUID`.
pub const KVM_SEV_SNP_PAGE_TYPE_CPUID: u8 = 6;

/// `KVM_SEV_SNP_ID_BLOCK_SIZE`.
pub const KVM_SEV_SNP_ID_BLOCK_SIZE: usize = 96;
/// `KVM_SEV_SNP_ID_AUTH_SIZE`.
pub const KVM_SEV_SNP_ID_AUTH_SIZE: usize = 4096;
/// `KVM_SEV_SNP_FINISH_DATA_SIZE` (host data).
pub const KVM_SEV_SNP_FINISH_DATA_SIZE: usize = 32;
/// `SEV_FW_BLOB_MAX_SIZE`: the largest blob KVM copies for a command.
pub const SEV_FW_BLOB_MAX_SIZE: usize = 0x4000;
/// GPA KVM and the firmware use for VMSA pages in the SNP launch digest.
pub const SNP_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// `SEV_ISSUE_CMD` on `/dev/sev`: `_IOWR('S', 0, struct sev_issue_cmd)`.
pub const SEV_ISSUE_CMD: u64 = 0xC010_5300;
/// `/dev/sev` command `SEV_PLATFORM_STATUS`.
pub const SEV_PLATFORM_STATUS: u32 = 1;
/// `/dev/sev` command `SNP_PLATFORM_STATUS`.
pub const SNP_PLATFORM_STATUS: u32 = 9;

/// `struct sev_issue_cmd` (packed, 16 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sev_issue_cmd {
    /// Command id.
    pub cmd: u32,
    /// User pointer to the command buffer.
    pub data: u64,
    /// Firmware status (out).
    pub error: u32,
}

/// `struct sev_user_data_status` (packed, 12 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sev_user_data_status {
    /// API major.
    pub api_major: u8,
    /// API minor.
    pub api_minor: u8,
    /// Platform state.
    pub state: u8,
    /// Flags (bit 8: SEV-ES configured).
    pub flags: u32,
    /// Firmware build.
    pub build: u8,
    /// Number of guests.
    pub guest_count: u32,
}

/// `SEV_STATUS_FLAGS_CONFIG_ES`.
pub const SEV_STATUS_FLAGS_CONFIG_ES: u32 = 0x100;

macro_rules! layout {
    ($t:ty, $size:expr, $align:expr $(, $f:ident @ $off:expr)*) => {
        const _: () = assert!(size_of::<$t>() == $size);
        const _: () = assert!(align_of::<$t>() == $align);
        $(const _: () = assert!(offset_of!($t, $f) == $off);)*
    };
}

layout!(kvm_sev_cmd, 24, 8, id @ 0, pad0 @ 4, data @ 8, error @ 16, sev_fd @ 20);
layout!(kvm_sev_init, 48, 8, vmsa_features @ 0, flags @ 8, ghcb_version @ 12, pad1 @ 14, pad2 @ 16);
layout!(kvm_sev_launch_start, 40, 8, handle @ 0, policy @ 4, dh_uaddr @ 8, dh_len @ 16,
    session_uaddr @ 24, session_len @ 32);
layout!(kvm_sev_launch_update_data, 16, 8, uaddr @ 0, len @ 8);
layout!(kvm_sev_launch_secret, 48, 8, hdr_uaddr @ 0, hdr_len @ 8, guest_uaddr @ 16,
    guest_len @ 24, trans_uaddr @ 32, trans_len @ 40);
layout!(kvm_sev_launch_measure, 16, 8, uaddr @ 0, len @ 8);
layout!(kvm_sev_guest_status, 12, 4, handle @ 0, policy @ 4, state @ 8);
layout!(kvm_sev_dbg, 24, 8, src_uaddr @ 0, dst_uaddr @ 8, len @ 16);
layout!(kvm_sev_attestation_report, 32, 8, mnonce @ 0, uaddr @ 16, len @ 24);
layout!(kvm_sev_send_start, 72, 8, policy @ 0, pdh_cert_uaddr @ 8, pdh_cert_len @ 16,
    plat_certs_uaddr @ 24, plat_certs_len @ 32, amd_certs_uaddr @ 40, amd_certs_len @ 48,
    session_uaddr @ 56, session_len @ 64);
layout!(kvm_sev_send_update_data, 48, 8, hdr_uaddr @ 0, hdr_len @ 8, guest_uaddr @ 16,
    guest_len @ 24, trans_uaddr @ 32, trans_len @ 40);
layout!(kvm_sev_receive_start, 40, 8, handle @ 0, policy @ 4, pdh_uaddr @ 8, pdh_len @ 16,
    session_uaddr @ 24, session_len @ 32);
layout!(kvm_sev_receive_update_data, 48, 8, hdr_uaddr @ 0, hdr_len @ 8, guest_uaddr @ 16,
    guest_len @ 24, trans_uaddr @ 32, trans_len @ 40);
layout!(kvm_sev_snp_launch_start, 64, 8, policy @ 0, gosvw @ 8, flags @ 24, pad0 @ 26, pad1 @ 32);
layout!(kvm_sev_snp_launch_update, 64, 8, gfn_start @ 0, uaddr @ 8, len @ 16, type_ @ 24,
    pad0 @ 25, flags @ 26, pad1 @ 28, pad2 @ 32);
layout!(kvm_sev_snp_launch_finish, 88, 8, id_block_uaddr @ 0, id_auth_uaddr @ 8,
    id_block_en @ 16, auth_key_en @ 17, vcek_disabled @ 18, host_data @ 19, pad0 @ 51,
    flags @ 54, pad1 @ 56);
layout!(sev_issue_cmd, 16, 1, cmd @ 0, data @ 4, error @ 12);
layout!(sev_user_data_status, 12, 1, api_major @ 0, api_minor @ 1, state @ 2, flags @ 3,
    build @ 7, guest_count @ 8);

// ---- Live migration (issue 7): `/dev/sev` PDH export. The KVM SEND/RECEIVE structs above come
// from kvm-bindings. Layout: kernel-abi.md §11 (`sev_user_data_pdh_cert_export`, packed, 24). ----

/// `/dev/sev` command `SEV_PDH_CERT_EXPORT`.
pub const SEV_PDH_CERT_EXPORT: u32 = 5;

/// `struct sev_user_data_pdh_cert_export` (packed, 24 bytes).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
pub struct sev_user_data_pdh_cert_export {
    /// User address of the PDH certificate buffer.
    pub pdh_cert_address: u64,
    /// Its length (in: buffer size; out: certificate length).
    pub pdh_cert_len: u32,
    /// User address of the certificate chain buffer (PEK, OCA, CEK).
    pub cert_chain_address: u64,
    /// Its length.
    pub cert_chain_len: u32,
}

layout!(sev_user_data_pdh_cert_export, 24, 1, pdh_cert_address @ 0, pdh_cert_len @ 8,
    cert_chain_address @ 12, cert_chain_len @ 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_match_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(KVM_SEV_INIT, kb::sev_cmd_id_KVM_SEV_INIT);
        assert_eq!(KVM_SEV_LAUNCH_START, kb::sev_cmd_id_KVM_SEV_LAUNCH_START);
        assert_eq!(KVM_SEV_LAUNCH_SECRET, kb::sev_cmd_id_KVM_SEV_LAUNCH_SECRET);
        assert_eq!(KVM_SEV_LAUNCH_FINISH, kb::sev_cmd_id_KVM_SEV_LAUNCH_FINISH);
        assert_eq!(
            KVM_SEV_GET_ATTESTATION_REPORT,
            kb::sev_cmd_id_KVM_SEV_GET_ATTESTATION_REPORT
        );
        assert_eq!(KVM_SEV_INIT2, kb::sev_cmd_id_KVM_SEV_INIT2);
        assert_eq!(
            KVM_SEV_SNP_LAUNCH_START,
            kb::sev_cmd_id_KVM_SEV_SNP_LAUNCH_START
        );
        assert_eq!(
            KVM_SEV_SNP_LAUNCH_UPDATE,
            kb::sev_cmd_id_KVM_SEV_SNP_LAUNCH_UPDATE
        );
        assert_eq!(
            KVM_SEV_SNP_LAUNCH_FINISH,
            kb::sev_cmd_id_KVM_SEV_SNP_LAUNCH_FINISH
        );
        // 6.15 headers end at 103, which the 7.x headers give to ENABLE_REQ_CERTS.
        assert_eq!(KVM_SEV_SNP_ENABLE_REQ_CERTS, kb::sev_cmd_id_KVM_SEV_NR_MAX);
        assert_eq!(KVM_X86_SNP_VM, u64::from(kb::KVM_X86_SNP_VM));
        assert_eq!(KVM_X86_SEV_ES_VM, u64::from(kb::KVM_X86_SEV_ES_VM));
        assert_eq!(
            u32::from(KVM_SEV_SNP_PAGE_TYPE_CPUID),
            kb::KVM_SEV_SNP_PAGE_TYPE_CPUID
        );
        assert_eq!(
            KVM_SEV_SNP_ID_AUTH_SIZE as u32,
            kb::KVM_SEV_SNP_ID_AUTH_SIZE
        );
    }

    #[test]
    fn ioctl_number() {
        use vmm_sys_util::ioctl_iowr_nr;
        ioctl_iowr_nr!(SEV_ISSUE, 0x53, 0, sev_issue_cmd);
        assert_eq!(SEV_ISSUE() as u64, SEV_ISSUE_CMD);
    }
}
