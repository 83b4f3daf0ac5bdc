//! SHA-384 of many messages at once (multi-buffer).
//!
//! One SHA-384 is a sequential chain of compressions, but the NORMAL pages of an SNP launch
//! digest are independent 4 KiB messages. This module runs several of them side by side, one per
//! 64-bit lane of a SIMD register: eight lanes with AVX-512 (AVX512F + AVX512BW), four with
//! AVX2, and the `sha2` crate one message at a time otherwise. The tier is chosen at run time
//! ([`Tier::best`]); every tier gives the same digests as `sha2::Sha384`.
//!
//! [`sha384_112`] is the other half of the SNP digest: the one SHA-384 of a 112-byte PAGE_INFO per
//! page, which is sequential (each includes the previous digest), with its constant final block
//! precomputed.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
// Only the x86_64 SIMD tiers drive lanes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod lanes;
mod page_info;
mod rounds;

use sha2::{Digest, Sha384};

pub use page_info::sha384_112;

/// The SHA-384 digest size.
pub const DIGEST_LEN: usize = 48;

/// An implementation of the multi-buffer hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// One message at a time (`sha2::Sha384`); available everywhere.
    Scalar,
    /// Four lanes in AVX2 registers (x86_64 with AVX2).
    Avx2,
    /// Eight lanes in AVX-512 registers (x86_64 with AVX512F and AVX512BW).
    Avx512,
}

impl Tier {
    /// Every tier, slowest first.
    pub const ALL: [Tier; 3] = [Tier::Scalar, Tier::Avx2, Tier::Avx512];

    /// Whether this CPU runs the tier.
    pub fn is_available(self) -> bool {
        match self {
            Tier::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => avx2::Avx2::detect().is_some(),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => avx512::Avx512::detect().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Tier::Avx2 | Tier::Avx512 => false,
        }
    }

    /// The fastest tier this CPU runs.
    pub fn best() -> Tier {
        Tier::ALL
            .into_iter()
            .rev()
            .find(|t| t.is_available())
            .unwrap_or(Tier::Scalar)
    }

    /// How many messages the tier hashes at once.
    pub fn lanes(self) -> usize {
        match self {
            Tier::Scalar => 1,
            Tier::Avx2 => 4,
            Tier::Avx512 => 8,
        }
    }
}

/// SHA-384 of one message.
fn scalar(msg: &[u8]) -> [u8; DIGEST_LEN] {
    Sha384::digest(msg).into()
}

/// SHA-384 of each of `msgs`, in order, with the fastest tier this CPU runs. Messages of equal
/// length (e.g. pages) are what the SIMD tiers speed up; mixed lengths are correct, only slower.
pub fn sha384_each(msgs: &[&[u8]]) -> Vec<[u8; DIGEST_LEN]> {
    let mut out = Vec::with_capacity(msgs.len());
    hash_into(Tier::best(), msgs, &mut out);
    out
}

/// [`sha384_each`] with a given tier, or `None` if this CPU does not run it (for tests and
/// benchmarks).
pub fn sha384_each_with(tier: Tier, msgs: &[&[u8]]) -> Option<Vec<[u8; DIGEST_LEN]>> {
    if !tier.is_available() {
        return None;
    }
    let mut out = Vec::with_capacity(msgs.len());
    hash_into(tier, msgs, &mut out);
    Some(out)
}

/// Hashes `msgs` with `tier` (falling back to the scalar path if the CPU does not run it).
fn hash_into(tier: Tier, msgs: &[&[u8]], out: &mut Vec<[u8; DIGEST_LEN]>) {
    #[cfg(target_arch = "x86_64")]
    match tier {
        Tier::Avx512 => {
            if let Some(t) = avx512::Avx512::detect() {
                return lanes::hash_all(&t, msgs, out);
            }
        }
        Tier::Avx2 => {
            if let Some(t) = avx2::Avx2::detect() {
                return lanes::hash_all(&t, msgs, out);
            }
        }
        Tier::Scalar => {}
    }
    let _ = tier;
    out.extend(msgs.iter().map(|m| scalar(m)));
}

#[cfg(test)]
mod tests;
