//! guest_memfd-backed guest memory for confidential VMs.
//!
//! - [`rmp`]: a software model of the SEV-SNP Reverse Map Table (RMPUPDATE, PVALIDATE, PSMASH,
//!   RMPADJUST with their architectural failure codes), used by the SEV-SNP simulator and by VMMs
//!   that reason about RMP state.
#![deny(missing_docs)]

pub mod binding;
pub mod memfd;
pub mod rmp;
pub mod tracker;
pub mod uapi;
