//! Guest policies: the legacy SEV `u32` policy and the SNP `u64` policy, with the checks the
//! host can make before the firmware sees them (kernel-abi.md §5).

use std::fmt;

use cgs_core::{Error, Result};

use crate::session::FirmwareBuild;

/// Legacy SEV policy (`LAUNCH_START.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SevPolicy(pub u32);

impl SevPolicy {
    /// Debugging forbidden.
    pub const NODBG: u32 = 1 << 0;
    /// Key sharing forbidden.
    pub const NOKS: u32 = 1 << 1;
    /// SEV-ES required.
    pub const ES: u32 = 1 << 2;
    /// SEND_START forbidden.
    pub const NOSEND: u32 = 1 << 3;
    /// Migrate only within the domain.
    pub const DOMAIN: u32 = 1 << 4;
    /// Migrate only to SEV platforms.
    pub const SEV: u32 = 1 << 5;
    const RESERVED: u32 = 0x0000_FFC0;

    /// Whether the policy asks for SEV-ES.
    pub fn is_es(self) -> bool {
        self.0 & Self::ES != 0
    }

    /// Whether debugging (DBG_DECRYPT/ENCRYPT) is allowed.
    pub fn debug_allowed(self) -> bool {
        self.0 & Self::NODBG == 0
    }

    /// Whether SEND_START is allowed.
    pub fn send_allowed(self) -> bool {
        self.0 & Self::NOSEND == 0
    }

    /// Minimum firmware API (major, minor) the policy demands (bits 23:16, 31:24).
    pub fn min_api(self) -> (u8, u8) {
        ((self.0 >> 16) as u8, (self.0 >> 24) as u8)
    }

    /// Reserved bits 15:6 must be zero.
    pub fn validate(self) -> Result<()> {
        if self.0 & Self::RESERVED != 0 {
            return Err(Error::invalid_input(
                "SEV policy",
                format!(
                    "{:#x} sets reserved bits {:#x}",
                    self.0,
                    self.0 & Self::RESERVED
                ),
            ));
        }
        Ok(())
    }

    /// Whether firmware `build` satisfies the policy's minimum API version.
    pub fn allows_firmware(self, build: FirmwareBuild) -> bool {
        (build.api_major, build.api_minor) >= self.min_api()
    }
}

/// SEV-SNP guest policy (`SNP_LAUNCH_START.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnpPolicy(pub u64);

impl SnpPolicy {
    /// SMT allowed.
    pub const SMT: u64 = 1 << 16;
    /// Reserved, must be one.
    pub const RSVD_MBO: u64 = 1 << 17;
    /// Migration agent allowed (not accepted by KVM).
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Debugging allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Single socket required.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// Bits KVM accepts: 0–17 and 19–25.
    pub const KVM_VALID: u64 = 0x3FF_FFFF & !Self::MIGRATE_MA;

    /// ABI minor (bits 7:0).
    pub fn abi_minor(self) -> u8 {
        self.0 as u8
    }

    /// ABI major (bits 15:8).
    pub fn abi_major(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Whether SMT is allowed.
    pub fn smt_allowed(self) -> bool {
        self.0 & Self::SMT != 0
    }

    /// Whether debugging is allowed.
    pub fn debug_allowed(self) -> bool {
        self.0 & Self::DEBUG != 0
    }

    /// Whether a single socket is required.
    pub fn single_socket(self) -> bool {
        self.0 & Self::SINGLE_SOCKET != 0
    }

    /// The host-side checks: bit 17 set, only bits KVM accepts, and (when known) only bits the
    /// kernel reports through `KVM_X86_SNP_POLICY_BITS`.
    pub fn validate(self, kvm_supported: Option<u64>) -> Result<()> {
        if self.0 & Self::RSVD_MBO == 0 {
            return Err(Error::invalid_input(
                "SNP policy",
                format!("{:#x}: reserved bit 17 must be set", self.0),
            ));
        }
        let bad = self.0 & !Self::KVM_VALID;
        if bad != 0 {
            return Err(Error::invalid_input(
                "SNP policy",
                format!("{:#x} sets bits KVM does not accept: {bad:#x}", self.0),
            ));
        }
        if let Some(mask) = kvm_supported {
            let bad = self.0 & !mask;
            if bad != 0 {
                return Err(Error::unsupported(
                    format!("SNP policy bits {bad:#x}"),
                    format!("KVM_X86_SNP_POLICY_BITS is {mask:#x}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the firmware's ABI version meets the policy's minimum.
    pub fn allows_firmware(self, build: FirmwareBuild) -> bool {
        (build.api_major, build.api_minor) >= (self.abi_major(), self.abi_minor())
    }
}

impl fmt::Display for SnpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#x} (ABI >= {}.{}, SMT {}, debug {}, single socket {})",
            self.0,
            self.abi_major(),
            self.abi_minor(),
            self.smt_allowed(),
            self.debug_allowed(),
            self.single_socket()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snp_policy_checks() {
        SnpPolicy(0x30000).validate(None).unwrap();
        assert!(SnpPolicy(0x10000).validate(None).is_err(), "bit 17 clear");
        assert!(
            SnpPolicy(0x70000).validate(None).is_err(),
            "MIGRATE_MA is not accepted by KVM (AMDESE/AMDSEV#240)"
        );
        assert!(SnpPolicy(0x30000 | 1 << 26).validate(None).is_err());
        assert!(matches!(
            SnpPolicy(0xB0000).validate(Some(0x3_FFFF)),
            Err(Error::Unsupported { .. })
        ));
        let p = SnpPolicy(0x1B_0102);
        assert_eq!((p.abi_major(), p.abi_minor()), (1, 2));
        assert!(p.debug_allowed() && p.single_socket() && p.smt_allowed());
        let fw = FirmwareBuild {
            api_major: 1,
            api_minor: 55,
            build: 3,
        };
        assert!(p.allows_firmware(fw));
        assert!(!SnpPolicy(0x3_0200).allows_firmware(fw));
    }

    #[test]
    fn sev_policy_bits() {
        let p = SevPolicy(0x5);
        assert!(p.is_es() && !p.debug_allowed());
        p.validate().unwrap();
        assert!(SevPolicy(0x40).validate().is_err());
        let fw = FirmwareBuild {
            api_major: 0,
            api_minor: 24,
            build: 1,
        };
        assert!(!SevPolicy(0x0011_0001).allows_firmware(fw));
        assert!(SevPolicy(0x1800_0001).allows_firmware(fw));
    }
}
