//! Migration blockers.
//!
//! A confidential guest usually cannot be live-migrated: its memory and vCPU state are encrypted
//! with keys the destination does not have. Each backend reports whether migration is blocked
//! *now*, with a reason a VMM can show to its user; the answer can change at run time (legacy SEV:
//! lifted when the guest opts in through `MSR_KVM_MIGRATION_CONTROL`; s390 PV: only while the guest
//! is protected). QEMU models the same with `migrate_add_blocker`.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a guest cannot be migrated right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationBlocker {
    /// The reason, in QEMU's wording where QEMU has one ("PEF: Migration is not implemented").
    pub reason: Cow<'static, str>,
}

impl MigrationBlocker {
    /// A blocker with the given reason.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        MigrationBlocker {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for MigrationBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
