//! The steps the backend takes, as events a VMM can log and a test can check.

use std::fmt;

use crate::lifecycle::MIGRATION_BLOCKER;
use crate::uv::rc::rc_name;

/// A step the backend took (for logs, traces and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PvEvent {
    /// RAM discard disabled (balloon, free page reporting).
    DiscardDisabled,
    /// RAM discard enabled again.
    DiscardEnabled,
    /// Migration blocker added.
    BlockerAdded,
    /// Migration blocker removed.
    BlockerRemoved,
    /// A PV command completed (successfully or not).
    Command {
        /// Command name.
        name: &'static str,
        /// KVM command number (`KVM_PV_*`).
        cmd: u32,
        /// errno on failure.
        errno: Option<i32>,
        /// UV rc.
        rc: u16,
        /// UV rrc.
        rrc: u16,
    },
    /// A PV command was interrupted and is issued again.
    Interrupted(&'static str),
    /// `KVM_PV_ASYNC_CLEANUP_PERFORM` started on its own thread.
    AsyncCleanupStarted,
}

impl fmt::Display for PvEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PvEvent::DiscardDisabled => f.write_str("RAM discard disabled"),
            PvEvent::DiscardEnabled => f.write_str("RAM discard enabled"),
            PvEvent::BlockerAdded => write!(f, "migration blocker added: {MIGRATION_BLOCKER}"),
            PvEvent::BlockerRemoved => f.write_str("migration blocker removed"),
            PvEvent::Command {
                name,
                errno: None,
                rc,
                rrc,
                ..
            } => write!(f, "{name}: ok (rc {rc:#x} rrc {rrc:#x})"),
            PvEvent::Command {
                name,
                cmd,
                errno: Some(e),
                rc,
                rrc,
            } => write!(
                f,
                "{name}: failed, errno {e} (rc {rc:#x} {} rrc {rrc:#x})",
                rc_name(*cmd, *rc)
            ),
            PvEvent::Interrupted(name) => write!(f, "{name}: EINTR, retrying"),
            PvEvent::AsyncCleanupStarted => {
                f.write_str("KVM_PV_ASYNC_CLEANUP_PERFORM started on a separate thread")
            }
        }
    }
}
