//! cgs-sev: AMD SEV, SEV-ES and SEV-SNP confidential-guest support for KVM-based VMMs.
//!
//! - [`measure`]: offline launch measurement (OVMF metadata, kernel hashes, VMSA builder, launch
//!   digests, ID block), shared with the launch path.
#![deny(missing_docs)]

pub mod measure;
pub mod migration;
