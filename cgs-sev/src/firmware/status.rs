//! SEV firmware status codes (`enum sev_ret_code`, Linux 7.3 `include/uapi/linux/psp-sev.h`).
//!
//! Every code 0x00–0x3F has its name, looked up in one table indexed by the code (so there is no
//! range to get off by one, unlike the `sev` crate's `0x01..0x027`). Unassigned codes inside that
//! range are named `RESERVED`; codes above it are `UNKNOWN` and kept verbatim.

use std::fmt;

use cgs_core::{Error, FirmwareStatus};

/// Firmware name used in [`FirmwareStatus::firmware`] for the real AMD secure processor.
pub const SEV_FIRMWARE: &str = "SEV";

/// An SEV firmware status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SevStatus(pub u32);

const NAMES: [&str; 0x40] = [
    "SUCCESS",                      // 0x00
    "INVALID_PLATFORM_STATE",       // 0x01
    "INVALID_GUEST_STATE",          // 0x02
    "INVALID_CONFIG",               // 0x03 (header spells it INAVLID_CONFIG)
    "INVALID_LEN",                  // 0x04
    "ALREADY_OWNED",                // 0x05
    "INVALID_CERTIFICATE",          // 0x06
    "POLICY_FAILURE",               // 0x07
    "INACTIVE",                     // 0x08
    "INVALID_ADDRESS",              // 0x09
    "BAD_SIGNATURE",                // 0x0A
    "BAD_MEASUREMENT",              // 0x0B
    "ASID_OWNED",                   // 0x0C
    "INVALID_ASID",                 // 0x0D
    "WBINVD_REQUIRED",              // 0x0E
    "DFFLUSH_REQUIRED",             // 0x0F
    "INVALID_GUEST",                // 0x10
    "INVALID_COMMAND",              // 0x11
    "ACTIVE",                       // 0x12
    "HWSEV_RET_PLATFORM",           // 0x13
    "HWSEV_RET_UNSAFE",             // 0x14
    "UNSUPPORTED",                  // 0x15
    "INVALID_PARAM",                // 0x16
    "RESOURCE_LIMIT",               // 0x17
    "SECURE_DATA_INVALID",          // 0x18
    "INVALID_PAGE_SIZE",            // 0x19
    "INVALID_PAGE_STATE",           // 0x1A
    "INVALID_MDATA_ENTRY",          // 0x1B
    "INVALID_PAGE_OWNER",           // 0x1C
    "AEAD_OFLOW",                   // 0x1D
    "RESERVED",                     // 0x1E
    "EXIT_RING_BUFFER",             // 0x1F
    "RMP_INIT_REQUIRED",            // 0x20
    "BAD_SVN",                      // 0x21
    "BAD_VERSION",                  // 0x22
    "SHUTDOWN_REQUIRED",            // 0x23
    "UPDATE_FAILED",                // 0x24
    "RESTORE_REQUIRED",             // 0x25
    "RMP_INITIALIZATION_FAILED",    // 0x26
    "INVALID_KEY",                  // 0x27
    "SHUTDOWN_INCOMPLETE",          // 0x28
    "RESERVED",                     // 0x29
    "RESERVED",                     // 0x2A
    "RESERVED",                     // 0x2B
    "RESERVED",                     // 0x2C
    "RESERVED",                     // 0x2D
    "RESERVED",                     // 0x2E
    "RESERVED",                     // 0x2F
    "INCORRECT_BUFFER_LENGTH",      // 0x30
    "EXPAND_BUFFER_LENGTH_REQUEST", // 0x31
    "SPDM_REQUEST",                 // 0x32
    "SPDM_ERROR",                   // 0x33
    "RESERVED",                     // 0x34
    "ERR_IN_DEV_CONN",              // 0x35
    "INVALID_DEV_CTX",              // 0x36
    "INVALID_TDI_CTX",              // 0x37
    "INVALID_TDI",                  // 0x38
    "RECLAIM_REQUIRED",             // 0x39
    "IN_USE",                       // 0x3A
    "INVALID_DEV_STATE",            // 0x3B
    "INVALID_TDI_STATE",            // 0x3C
    "DEV_CERT_CHANGED",             // 0x3D
    "RESYNC_REQ",                   // 0x3E
    "RESPONSE_TOO_LARGE",           // 0x3F
];

impl SevStatus {
    /// `SUCCESS`.
    pub const SUCCESS: SevStatus = SevStatus(0x00);
    /// `INVALID_PLATFORM_STATE`.
    pub const INVALID_PLATFORM_STATE: SevStatus = SevStatus(0x01);
    /// `INVALID_GUEST_STATE`.
    pub const INVALID_GUEST_STATE: SevStatus = SevStatus(0x02);
    /// `INVALID_CONFIG`.
    pub const INVALID_CONFIG: SevStatus = SevStatus(0x03);
    /// `INVALID_LEN`.
    pub const INVALID_LEN: SevStatus = SevStatus(0x04);
    /// `INVALID_CERTIFICATE`.
    pub const INVALID_CERTIFICATE: SevStatus = SevStatus(0x06);
    /// `POLICY_FAILURE`.
    pub const POLICY_FAILURE: SevStatus = SevStatus(0x07);
    /// `INVALID_ADDRESS`.
    pub const INVALID_ADDRESS: SevStatus = SevStatus(0x09);
    /// `BAD_SIGNATURE`.
    pub const BAD_SIGNATURE: SevStatus = SevStatus(0x0A);
    /// `BAD_MEASUREMENT`.
    pub const BAD_MEASUREMENT: SevStatus = SevStatus(0x0B);
    /// `INVALID_GUEST`.
    pub const INVALID_GUEST: SevStatus = SevStatus(0x10);
    /// `INVALID_COMMAND`.
    pub const INVALID_COMMAND: SevStatus = SevStatus(0x11);
    /// `UNSUPPORTED`.
    pub const UNSUPPORTED: SevStatus = SevStatus(0x15);
    /// `INVALID_PARAM`.
    pub const INVALID_PARAM: SevStatus = SevStatus(0x16);
    /// `RESOURCE_LIMIT`.
    pub const RESOURCE_LIMIT: SevStatus = SevStatus(0x17);
    /// `INVALID_PAGE_SIZE`.
    pub const INVALID_PAGE_SIZE: SevStatus = SevStatus(0x19);
    /// `INVALID_PAGE_STATE`.
    pub const INVALID_PAGE_STATE: SevStatus = SevStatus(0x1A);
    /// `INVALID_PAGE_OWNER`.
    pub const INVALID_PAGE_OWNER: SevStatus = SevStatus(0x1C);
    /// `BAD_VERSION`.
    pub const BAD_VERSION: SevStatus = SevStatus(0x22);
    /// `INVALID_KEY`.
    pub const INVALID_KEY: SevStatus = SevStatus(0x27);
    /// `RESPONSE_TOO_LARGE`, the last named code.
    pub const RESPONSE_TOO_LARGE: SevStatus = SevStatus(0x3F);

    /// The architectural name, `RESERVED` for unassigned codes in 0x00–0x3F, `UNKNOWN` above.
    pub fn name(self) -> &'static str {
        NAMES.get(self.0 as usize).copied().unwrap_or("UNKNOWN")
    }

    /// The status as cgs-core's [`FirmwareStatus`] with the given firmware name.
    pub fn to_firmware_status(self, firmware: &'static str) -> FirmwareStatus {
        FirmwareStatus {
            firmware,
            code: u64::from(self.0),
            name: self.name().into(),
            detail: None,
        }
    }

    /// An `Error::Firmware` for command `op`.
    pub fn error(self, firmware: &'static str, op: &'static str) -> Error {
        Error::Firmware {
            op,
            status: self.to_firmware_status(firmware),
        }
    }
}

impl fmt::Display for SevStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.name())
    }
}

/// The SEV status carried by an `Error::Firmware`, if `err` is one.
pub fn status_of(err: &Error) -> Option<SevStatus> {
    match err {
        Error::Firmware { status, .. } => u32::try_from(status.code).ok().map(SevStatus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_no_off_by_one() {
        assert_eq!(SevStatus(0x00).name(), "SUCCESS");
        assert_eq!(SevStatus(0x02).name(), "INVALID_GUEST_STATE");
        assert_eq!(SevStatus(0x07).name(), "POLICY_FAILURE");
        assert_eq!(SevStatus(0x0B).name(), "BAD_MEASUREMENT");
        assert_eq!(SevStatus(0x16).name(), "INVALID_PARAM");
        assert_eq!(SevStatus(0x1E).name(), "RESERVED");
        assert_eq!(SevStatus(0x27).name(), "INVALID_KEY");
        assert_eq!(SevStatus(0x28).name(), "SHUTDOWN_INCOMPLETE");
        assert_eq!(SevStatus(0x34).name(), "RESERVED");
        assert_eq!(SevStatus(0x3F).name(), "RESPONSE_TOO_LARGE");
        assert_eq!(SevStatus(0x40).name(), "UNKNOWN");
        assert_eq!(SevStatus(u32::MAX).name(), "UNKNOWN");
        let named = (0..0x40u32)
            .filter(|c| SevStatus(*c).name() != "RESERVED")
            .count();
        assert_eq!(named, 0x40 - 9);
    }

    #[test]
    fn converts_to_core_error() {
        let e = SevStatus::BAD_MEASUREMENT.error(SEV_FIRMWARE, "SNP_LAUNCH_FINISH");
        assert_eq!(status_of(&e), Some(SevStatus::BAD_MEASUREMENT));
        assert_eq!(
            e.to_string(),
            "SNP_LAUNCH_FINISH: SEV status 0xb (BAD_MEASUREMENT)"
        );
    }
}
