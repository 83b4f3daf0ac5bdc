//! Typed errors shared by every cgs backend.
//!
//! Every failure a VMM can see from a confidential-guest backend falls in one of a few classes:
//! a KVM ioctl failed (with the operation's name and the errno), the platform firmware refused a
//! command (with the status code and its name), a call came in the wrong lifecycle state, the host
//! or the backend does not support something, the configuration is invalid, or an input (from the
//! guest, a file or a stream) is malformed. Backends map their own errors onto these classes so a VMM
//! can handle all platforms the same way.

use std::borrow::Cow;
use std::fmt;

use crate::config::ConfigError;
use crate::lifecycle::State;

/// The result type of every cgs-core operation.
pub type Result<T> = std::result::Result<T, Error>;

/// A firmware (secure processor, ultravisor) status, as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareStatus {
    /// Which firmware: `"SEV"`, `"s390 UV"`, `"POWER UV"`, or a simulator's name.
    pub firmware: &'static str,
    /// The raw status code (for s390 the UV return code; the reason code goes in `detail`).
    pub code: u64,
    /// The architectural name of the code (`"INVALID_GUEST_STATE"`), or `"UNKNOWN"`.
    pub name: Cow<'static, str>,
    /// Additional platform detail (s390 return-reason code, a hint), if any.
    pub detail: Option<String>,
}

impl fmt::Display for FirmwareStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} status {:#x} ({})",
            self.firmware, self.code, self.name
        )?;
        if let Some(detail) = &self.detail {
            write!(f, ", {detail}")?;
        }
        Ok(())
    }
}

/// Errors returned by cgs backends and the lifecycle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A KVM (or other kernel) ioctl failed.
    #[error("{op} failed: {source}")]
    Kvm {
        /// The operation, e.g. `"KVM_CREATE_VM"` or `"KVM_SEV_SNP_LAUNCH_UPDATE"`.
        op: &'static str,
        /// The errno the kernel returned.
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// The platform firmware rejected a command.
    #[error("{op}: {status}")]
    Firmware {
        /// The firmware command, e.g. `"SNP_LAUNCH_FINISH"` or `"UNPACK"`.
        op: &'static str,
        /// The status the firmware returned.
        status: FirmwareStatus,
    },
    /// A lifecycle call arrived in the wrong state; nothing was done.
    #[error("{op} is not allowed in state {actual}: expected {expected}")]
    InvalidState {
        /// The call that was refused.
        op: &'static str,
        /// The state(s) in which the call is legal.
        expected: &'static str,
        /// The state the guest was in.
        actual: State,
    },
    /// The guest must not run: its backend has not finished (QEMU: "accelerator does not support
    /// confidential guest …").
    #[error("confidential guest {object_type} is not ready to run (state {state}): {hint}")]
    NotReady {
        /// The QEMU object type of the backend (`"sev-snp-guest"`).
        object_type: &'static str,
        /// The state the guest was in.
        state: State,
        /// What is missing.
        hint: &'static str,
    },
    /// The host, the kernel or the backend does not support what was asked.
    #[error("{what} is not supported: {why}")]
    Unsupported {
        /// The feature or operation.
        what: Cow<'static, str>,
        /// Why, as precisely as known ("this KVM has no SEV (KVM_MEMORY_ENCRYPT_OP: ENOTTY)").
        why: Cow<'static, str>,
    },
    /// An invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A malformed or out-of-range input (from the guest, a file, a stream or the caller).
    #[error("invalid {what}: {why}")]
    InvalidInput {
        /// What was invalid ("launch region", "SE header", "migration stream").
        what: Cow<'static, str>,
        /// Why.
        why: Cow<'static, str>,
    },
    /// A backend-specific failure that fits no other class, with its context.
    #[error("{context}: {source}")]
    Backend {
        /// What the backend was doing.
        context: Cow<'static, str>,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// A KVM ioctl failure for `op` with the given errno.
    pub fn kvm(op: &'static str, source: vmm_sys_util::errno::Error) -> Self {
        Error::Kvm { op, source }
    }

    /// The last OS error as a KVM failure of `op`.
    pub fn last_os(op: &'static str) -> Self {
        Error::Kvm {
            op,
            source: vmm_sys_util::errno::Error::last(),
        }
    }

    /// An `Unsupported` error.
    pub fn unsupported(
        what: impl Into<Cow<'static, str>>,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::Unsupported {
            what: what.into(),
            why: why.into(),
        }
    }

    /// An `InvalidInput` error.
    pub fn invalid_input(
        what: impl Into<Cow<'static, str>>,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidInput {
            what: what.into(),
            why: why.into(),
        }
    }

    /// The errno of a `Kvm` error, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kvm { source, .. } => Some(source.errno()),
            _ => None,
        }
    }
}
