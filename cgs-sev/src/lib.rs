//! cgs-sev: AMD SEV, SEV-ES and SEV-SNP confidential-guest support for KVM-based VMMs.
//!
//! - [`measure`]: offline launch measurement (OVMF metadata, kernel hashes, VMSA builder, launch
//!   digests, ID block), shared with the launch path.
//! - [`backend`]: the cgs-core `ConfidentialBackend` for `sev-guest` and `sev-snp-guest`.
//! - [`firmware`]: the secure processor behind one trait ([`firmware::SevFirmware`]), with the
//!   real `KVM_MEMORY_ENCRYPT_OP` implementation and a simulator with real state and crypto.
//! - [`launch`]: the SEV/SEV-ES and SEV-SNP launch state machines (wrong order: a typed error).
//! - [`session`]: SEV transport crypto (ECDH session, KDF, wrapped TEK/TIK, packets, measure).
//! - [`guest_msg`]: SNP guest messages (AES-256-GCM under the VMPCKs), guest and firmware side.
//! - [`report`], [`certs`], [`cpuid`], [`policy`]: SNP attestation reports, the extended-request
//!   certificate table, the SNP CPUID page, guest policies.
//! - [`testing`]: a reset-vector payload and guest_memfd regions for tests and examples.
//! - [`uapi`]: the kernel structs and numbers, pinned by layout assertions.
#![deny(missing_docs)]

pub mod backend;
pub mod certs;
pub mod cpuid;
pub mod firmware;
#[doc(hidden)]
pub mod fuzzing;
pub mod guest_msg;
pub mod launch;
pub mod measure;
pub mod migration;
pub mod policy;
pub mod report;
pub mod session;
pub mod testing;
pub mod uapi;
