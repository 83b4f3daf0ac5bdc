//! The migration error type.

use cgs_core::MigrationBlocker;

use super::stream::{EncodeError, StreamError};

/// Why a migration failed. On the destination, every error leaves the guest not ready: no
/// `RECEIVE_FINISH` was issued and no vCPU state was handed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The guest may not be migrated now (the backend's blocker, with its reason).
    #[error("migration is blocked: {0}")]
    Blocked(MigrationBlocker),
    /// The incoming stream is truncated, corrupt, reordered, replayed or of another version.
    #[error("migration stream: {0}")]
    Stream(#[from] StreamError),
    /// The stream is well-formed but does not fit this destination (memory layout, vCPU count) or
    /// is inconsistent with itself (a page never sent, a page sent in the wrong form).
    #[error("migration stream does not match the destination: {0}")]
    Mismatch(String),
    /// A firmware command, a KVM call or a local input failed.
    #[error(transparent)]
    Platform(#[from] cgs_core::Error),
    /// Reading or writing the transport failed.
    #[error("migration transport: {0}")]
    Io(#[from] std::io::Error),
}

impl From<EncodeError> for MigrationError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Stream(s) => MigrationError::Stream(s),
            EncodeError::Io(io) => MigrationError::Io(io),
        }
    }
}

impl From<MigrationError> for cgs_core::Error {
    fn from(e: MigrationError) -> Self {
        match e {
            MigrationError::Platform(p) => p,
            MigrationError::Blocked(b) => {
                cgs_core::Error::unsupported("migration", b.reason.into_owned())
            }
            MigrationError::Stream(s) => {
                cgs_core::Error::invalid_input("migration stream", s.to_string())
            }
            MigrationError::Mismatch(m) => cgs_core::Error::invalid_input("migration stream", m),
            MigrationError::Io(io) => cgs_core::Error::Backend {
                context: "migration transport".into(),
                source: Box::new(io),
            },
        }
    }
}
