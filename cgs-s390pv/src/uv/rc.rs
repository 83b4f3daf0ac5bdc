//! Ultravisor return codes and their names (`arch/s390/include/asm/uv.h`, s390-tools
//! `stage3a.c`, kvm-unit-tests `uv.h`, QEMU `pv.c`).

use crate::uapi;

/// Success.
pub const UVC_RC_EXECUTED: u16 = 0x0001;
/// Command not installed.
pub const UVC_RC_INV_CMD: u16 = 0x0002;
/// Invalid state for the command.
pub const UVC_RC_INV_STATE: u16 = 0x0003;
/// Control block too short.
pub const UVC_RC_INV_LEN: u16 = 0x0005;
/// Cannot resume.
pub const UVC_RC_NO_RESUME: u16 = 0x0007;
/// Bad configuration handle.
pub const UVC_RC_INV_GHANDLE: u16 = 0x0020;
/// Bad CPU handle.
pub const UVC_RC_INV_CHANDLE: u16 = 0x0021;
/// More data available.
pub const UVC_RC_MORE_DATA: u16 = 0x0100;
/// VERIFY_IMG: a digest or the page count does not match the header.
pub const UV_RC_VERIFY_MISMATCH: u16 = 0x0102;
/// SET_SEC_CONF_PARAMS: the SE header is not accessible.
pub const UV_RC_SSC_HDR_ACCESS: u16 = 0x0103;
/// SET_SEC_CONF_PARAMS: header version mismatch.
pub const UV_RC_SSC_HDR_VERSION: u16 = 0x0104;
/// SET_SEC_CONF_PARAMS: unsupported plaintext control flag.
pub const UV_RC_SSC_PCF: u16 = 0x0106;
/// SET_SEC_CONF_PARAMS: key problem (host key hash, customer key, backup key).
pub const UV_RC_SSC_INVAL_HOSTKEY: u16 = 0x0108;
/// SET_SEC_CONF_PARAMS: unsupported secret control flag.
pub const UV_RC_SSC_SCF: u16 = 0x0109;
/// SET_SEC_CONF_PARAMS: header size, encrypted-area size or key slots invalid.
pub const UV_RC_SSC_HDR_INVALID: u16 = 0x010A;
/// UNPACK_IMG: the page is not mapped (KVM faults it in and retries).
pub const UV_RC_UNPACK_NOT_MAPPED: u16 = 0x010A;

/// VERIFY rrc: address list digest mismatch.
pub const RRC_ALD_MISMATCH: u16 = 0x001A;
/// VERIFY rrc: page list digest mismatch.
pub const RRC_PLD_MISMATCH: u16 = 0x001B;
/// VERIFY rrc: tweak list digest mismatch.
pub const RRC_TLD_MISMATCH: u16 = 0x001C;
/// VERIFY rrc: number of encrypted pages mismatch.
pub const RRC_NEP_MISMATCH: u16 = 0x001D;

/// Name of a generic return code, or of a command-specific one (`cmd` is the KVM command).
pub fn rc_name(cmd: u32, rc: u16) -> &'static str {
    match (cmd, rc) {
        (_, 0) => "NONE (no UV call ran)",
        (_, UVC_RC_EXECUTED) => "UVC_RC_EXECUTED",
        (_, UVC_RC_INV_CMD) => "UVC_RC_INV_CMD",
        (_, UVC_RC_INV_STATE) => "UVC_RC_INV_STATE",
        (_, UVC_RC_INV_LEN) => "UVC_RC_INV_LEN",
        (_, UVC_RC_NO_RESUME) => "UVC_RC_NO_RESUME",
        (_, UVC_RC_INV_GHANDLE) => "UVC_RC_INV_GHANDLE",
        (_, UVC_RC_INV_CHANDLE) => "UVC_RC_INV_CHANDLE",
        (_, UVC_RC_MORE_DATA) => "UVC_RC_MORE_DATA",
        (uapi::KVM_PV_VERIFY, UV_RC_VERIFY_MISMATCH) => "VERIFY_IMG_MISMATCH",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_ACCESS) => "SSC_HDR_ACCESS_EXCEPTION",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_VERSION) => "SSC_HDR_VERSION_MISMATCH",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_PCF) => "SSC_UNSUPPORTED_PCF",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_INVAL_HOSTKEY) => "UV_RC_SSC_INVAL_HOSTKEY",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_SCF) => "SSC_UNSUPPORTED_SCF",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_INVALID) => "SSC_INVALID_HEADER",
        (uapi::KVM_PV_UNPACK, UV_RC_UNPACK_NOT_MAPPED) => "UNPACK_PAGE_NOT_MAPPED",
        _ if rc & 0x8000 != 0 => "UVC_RC_NEED_DESTROY",
        _ => "UNKNOWN",
    }
}

/// Meaning of a return reason code for a command and return code, when the sources name it.
pub fn rrc_meaning(cmd: u32, rc: u16, rrc: u16) -> Option<&'static str> {
    Some(match (cmd, rc, rrc) {
        (uapi::KVM_PV_VERIFY, UV_RC_VERIFY_MISMATCH, RRC_ALD_MISMATCH) => {
            "address list digest mismatch"
        }
        (uapi::KVM_PV_VERIFY, UV_RC_VERIFY_MISMATCH, RRC_PLD_MISMATCH) => {
            "page list digest mismatch"
        }
        (uapi::KVM_PV_VERIFY, UV_RC_VERIFY_MISMATCH, RRC_TLD_MISMATCH) => {
            "tweak list digest mismatch"
        }
        (uapi::KVM_PV_VERIFY, UV_RC_VERIFY_MISMATCH, RRC_NEP_MISMATCH) => {
            "number of encrypted pages mismatch"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_VERSION, 0x0001) => {
            "mismatch in SE header version"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_PCF, 0x0030) => "unsupported plaintext control flag",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_INVAL_HOSTKEY, 0x0005) => {
            "host key hash does not match the installed host key"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_INVAL_HOSTKEY, 0x000B) => {
            "customer ECDH public key is not valid"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_INVAL_HOSTKEY, 0x0034) => {
            "backup host key hash does not match"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_INVALID, 0x0031) => "mismatch in SE header size",
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_INVALID, 0x0039) => {
            "size of the encrypted area is invalid"
        }
        (uapi::KVM_PV_SET_SEC_PARMS, UV_RC_SSC_HDR_INVALID, 0x0040) => {
            "no host key slots in the image"
        }
        _ => return None,
    })
}

/// The name of a KVM PV command (`KVM_PV_*`), as QEMU prints it.
pub fn cmd_name(cmd: u32) -> &'static str {
    match cmd {
        uapi::KVM_PV_ENABLE => "KVM_PV_ENABLE",
        uapi::KVM_PV_DISABLE => "KVM_PV_DISABLE",
        uapi::KVM_PV_SET_SEC_PARMS => "KVM_PV_SET_SEC_PARMS",
        uapi::KVM_PV_UNPACK => "KVM_PV_UNPACK",
        uapi::KVM_PV_VERIFY => "KVM_PV_VERIFY",
        uapi::KVM_PV_PREP_RESET => "KVM_PV_PREP_RESET",
        uapi::KVM_PV_UNSHARE_ALL => "KVM_PV_UNSHARE_ALL",
        uapi::KVM_PV_INFO => "KVM_PV_INFO",
        uapi::KVM_PV_DUMP => "KVM_PV_DUMP",
        uapi::KVM_PV_ASYNC_CLEANUP_PREPARE => "KVM_PV_ASYNC_CLEANUP_PREPARE",
        uapi::KVM_PV_ASYNC_CLEANUP_PERFORM => "KVM_PV_ASYNC_CLEANUP_PERFORM",
        _ => "KVM_PV_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            rc_name(uapi::KVM_PV_SET_SEC_PARMS, 0x0108),
            "UV_RC_SSC_INVAL_HOSTKEY"
        );
        assert_eq!(rc_name(uapi::KVM_PV_VERIFY, 0x0102), "VERIFY_IMG_MISMATCH");
        assert_eq!(rc_name(uapi::KVM_PV_UNPACK, 0x0003), "UVC_RC_INV_STATE");
        assert_eq!(rc_name(uapi::KVM_PV_ENABLE, 0x8101), "UVC_RC_NEED_DESTROY");
        assert_eq!(rc_name(uapi::KVM_PV_ENABLE, 0x0999), "UNKNOWN");
        assert_eq!(
            rrc_meaning(uapi::KVM_PV_VERIFY, 0x0102, 0x1B),
            Some("page list digest mismatch")
        );
        assert_eq!(rrc_meaning(uapi::KVM_PV_VERIFY, 0x0102, 0x99), None);
        assert_eq!(cmd_name(3), "KVM_PV_UNPACK");
        assert_eq!(cmd_name(99), "KVM_PV_UNKNOWN");
    }
}
