//! Typed errors of the measurement library.
//!
//! Every malformed input (an OVMF image, a hex string, a VMSA page, a key, an ID block) maps to one
//! variant here; nothing in `measure` panics on untrusted bytes.

use std::borrow::Cow;

/// The result type of the measurement library.
pub type Result<T> = std::result::Result<T, MeasureError>;

/// Errors of the measurement library.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// The firmware image is too small to hold an OVMF footer table.
    #[error("OVMF image is too small ({len} bytes)")]
    OvmfTooSmall {
        /// The image length.
        len: usize,
    },
    /// The OVMF footer GUID table is malformed.
    #[error("invalid OVMF footer table: {why}")]
    FooterTable {
        /// What is wrong.
        why: Cow<'static, str>,
    },
    /// A footer-table entry the computation needs is absent.
    #[error("Can't find {name} entry in OVMF table")]
    MissingTableEntry {
        /// The entry's name (`"SEV_ES_RESET_BLOCK_GUID"`).
        name: &'static str,
    },
    /// A footer-table entry is too short for the fields it must hold.
    #[error("OVMF table entry {name} is {len} bytes, expected at least {need}")]
    ShortTableEntry {
        /// The entry's name.
        name: &'static str,
        /// Its data length.
        len: usize,
        /// The length needed.
        need: usize,
    },
    /// The SEV metadata (`ASEV`) block is malformed.
    #[error("invalid SEV metadata: {why}")]
    Metadata {
        /// What is wrong.
        why: Cow<'static, str>,
    },
    /// A SEV metadata section has a type this library does not know.
    #[error("unknown OVMF metadata section type {0:#x}")]
    UnknownSectionType(u32),
    /// A region that is measured page by page is not 4 KiB aligned.
    #[error("{what} at {gpa:#x} (+{len:#x}) is not 4 KiB aligned")]
    NotPageAligned {
        /// What region.
        what: &'static str,
        /// Its guest-physical address.
        gpa: u64,
        /// Its length.
        len: u64,
    },
    /// A kernel was given but the OVMF image has no usable hashes table (SEV, SEV-ES).
    #[error("Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement")]
    KernelHashesUnsupported,
    /// A kernel was given but the OVMF SEV metadata has no `SNP_KERNEL_HASHES` section (SNP).
    #[error("Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section")]
    NoKernelHashesSection,
    /// The hashes table does not fit in its page or section.
    #[error("kernel hashes table at {gpa:#x} does not fit its {section_len:#x}-byte section")]
    HashesTablePlacement {
        /// The table's guest-physical address (from the footer table).
        gpa: u64,
        /// The length of the `SNP_KERNEL_HASHES` section.
        section_len: u64,
    },
    /// Application processors need a SEV-ES reset address but the firmware gives none (zero).
    #[error("SEV-ES reset address is zero: the firmware cannot start application processors")]
    NoApResetAddress,
    /// An invalid argument or value.
    #[error("invalid {what}: {why}")]
    InvalidInput {
        /// What was invalid.
        what: Cow<'static, str>,
        /// Why.
        why: Cow<'static, str>,
    },
    /// A key could not be parsed or has the wrong curve.
    #[error("invalid key: {why}")]
    Key {
        /// Why.
        why: Cow<'static, str>,
    },
    /// A signature does not verify or is malformed.
    #[error("signature check failed: {why}")]
    Signature {
        /// Why.
        why: Cow<'static, str>,
    },
}

impl MeasureError {
    /// An [`MeasureError::InvalidInput`].
    pub fn invalid(what: impl Into<Cow<'static, str>>, why: impl Into<Cow<'static, str>>) -> Self {
        MeasureError::InvalidInput {
            what: what.into(),
            why: why.into(),
        }
    }
}
