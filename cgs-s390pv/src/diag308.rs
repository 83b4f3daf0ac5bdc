//! What diag 308 subcode 10 answers the guest when the PV start fails.

use cgs_core::Error;

/// The diag 308 subcode 10 failure response in `r1+1`: `{pv_cmd, rrc, rc, diag_rc}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diag308Response {
    /// The KVM PV command that failed (2 SET_SEC_PARMS, 3 UNPACK, 4 VERIFY, …).
    pub pv_cmd: u16,
    /// UV return reason code.
    pub rrc: u16,
    /// UV return code.
    pub rc: u16,
    /// diag 308 response code (`0x0a02`, `0x0902`, `0x0402`).
    pub diag_rc: u16,
}

impl Diag308Response {
    pub(crate) fn simple(diag_rc: u16) -> Self {
        Diag308Response {
            pv_cmd: 0,
            rrc: 0,
            rc: 0,
            diag_rc,
        }
    }

    /// The 64-bit register value (pv_cmd in bits 0-15, MSB first).
    pub fn to_u64(self) -> u64 {
        (u64::from(self.pv_cmd) << 48)
            | (u64::from(self.rrc) << 32)
            | (u64::from(self.rc) << 16)
            | u64::from(self.diag_rc)
    }
}

/// A failed PV start: the error and what the guest sees in `r1+1`.
#[derive(Debug, thiserror::Error)]
#[error("{error} (diag 308 response {:#018x})", response.to_u64())]
pub struct ProtectError {
    /// What went wrong.
    #[source]
    pub error: Error,
    /// The diag 308 response for the guest.
    pub response: Diag308Response,
}

impl From<ProtectError> for Error {
    fn from(e: ProtectError) -> Error {
        e.error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipl::DIAG_308_RC_INVAL_FOR_PV;

    #[test]
    fn diag308_response_packing() {
        let r = Diag308Response {
            pv_cmd: 4,
            rrc: 0x1b,
            rc: 0x102,
            diag_rc: DIAG_308_RC_INVAL_FOR_PV,
        };
        assert_eq!(r.to_u64(), 0x0004_001b_0102_0a02);
    }
}
