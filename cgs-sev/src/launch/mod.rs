//! The launch state machines: one for SEV and SEV-ES ([`sev::SevLauncher`]), one for SEV-SNP
//! ([`snp::SnpLauncher`]).
//!
//! Each launcher owns its [`SevFirmware`](crate::firmware::SevFirmware) and checks the command
//! order before anything reaches the firmware: a command in the wrong state returns a
//! [`SequenceError`] (wrapped in `cgs_core::Error::Backend` with context
//! [`SEQUENCE_CONTEXT`]; use [`sequence_error`] to get it back) and issues no ioctl. The firmware
//! keeps its own state machine too (the simulator answers `INVALID_GUEST_STATE`), but a VMM should
//! never get that far. A command the firmware refuses leaves the launch state unchanged.

pub mod sev;
pub mod snp;

use std::fmt;

use cgs_core::Error;

/// The `context` of the `Error::Backend` that carries a [`SequenceError`].
pub const SEQUENCE_CONTEXT: &str = "SEV launch order";

/// Where a launch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchState {
    /// Nothing issued yet.
    New,
    /// INIT / INIT2 done.
    Initialized,
    /// LAUNCH_START / SNP_LAUNCH_START done: data may be added.
    Updating,
    /// SEV-ES: LAUNCH_UPDATE_VMSA done (no more data or VMSA updates).
    VmsaEncrypted,
    /// SEV/SEV-ES: LAUNCH_MEASURE done (secrets may be injected, a report fetched).
    Measured,
    /// LAUNCH_FINISH / SNP_LAUNCH_FINISH done: the guest may run.
    Finished,
}

impl LaunchState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            LaunchState::New => "new",
            LaunchState::Initialized => "initialized",
            LaunchState::Updating => "launch-update",
            LaunchState::VmsaEncrypted => "vmsa-encrypted",
            LaunchState::Measured => "launch-secret",
            LaunchState::Finished => "running",
        }
    }
}

impl fmt::Display for LaunchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command issued out of order; nothing was sent to the firmware.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} is not allowed in launch state {actual}: {expected}")]
pub struct SequenceError {
    /// The command.
    pub op: &'static str,
    /// What must happen first (or which states allow it).
    pub expected: &'static str,
    /// The launch state at the time.
    pub actual: LaunchState,
}

impl From<SequenceError> for Error {
    fn from(e: SequenceError) -> Self {
        Error::Backend {
            context: SEQUENCE_CONTEXT.into(),
            source: Box::new(e),
        }
    }
}

/// The [`SequenceError`] inside `err`, if it is one.
pub fn sequence_error(err: &Error) -> Option<&SequenceError> {
    match err {
        Error::Backend { source, .. } => source.downcast_ref::<SequenceError>(),
        _ => None,
    }
}

fn check(
    op: &'static str,
    actual: LaunchState,
    allowed: &[LaunchState],
    expected: &'static str,
) -> Result<(), SequenceError> {
    if allowed.contains(&actual) {
        Ok(())
    } else {
        Err(SequenceError {
            op,
            expected,
            actual,
        })
    }
}
