//! The SEV-SNP attestation report (`ATTESTATION_REPORT`, 1184 bytes; kernel-abi.md §12.4).
//!
//! [`AttestationReport::parse`] decodes versions 2–5 (an unknown version is an error, never a
//! fallback to the newest layout) and keeps the raw bytes; [`AttestationReport::verify`] checks
//! the ECDSA P-384 / SHA-384 signature over the raw bytes `0x000..0x2A0` (never a re-serialized
//! copy). [`ReportBody::sign`] builds and signs a report, as the simulator's firmware does with
//! its VCEK.

use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

/// Report length.
pub const REPORT_LEN: usize = 0x4A0;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Oldest report version this parser accepts.
pub const MIN_VERSION: u32 = 2;
/// Newest report version this parser knows.
pub const MAX_VERSION: u32 = 5;
/// `SIGNING_KEY` value for the VCEK.
pub const SIGNING_KEY_VCEK: u8 = 0;
/// `SIGNING_KEY` value for the VLEK.
pub const SIGNING_KEY_VLEK: u8 = 1;
/// `SIGNING_KEY` value for "no key" (VCEK disabled and no VLEK).
pub const SIGNING_KEY_NONE: u8 = 7;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not 1184 bytes.
    #[error("attestation report is {0} bytes, expected {REPORT_LEN}")]
    Length(usize),
    /// A version this parser does not know.
    #[error("attestation report version {0} is not supported (2 to 5)")]
    UnsupportedVersion(u32),
    /// A signature algorithm other than ECDSA P-384/SHA-384.
    #[error("signature algorithm {0} is not supported")]
    UnsupportedAlgorithm(u32),
    /// The signature components are not valid P-384 scalars.
    #[error("malformed signature: {0}")]
    MalformedSignature(&'static str),
    /// The signature does not verify with the given key.
    #[error("signature does not verify with the given key")]
    BadSignature,
}

impl From<ReportError> for cgs_core::Error {
    fn from(e: ReportError) -> Self {
        cgs_core::Error::invalid_input("SNP attestation report", e.to_string())
    }
}

/// Every field of a report except the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBody {
    /// Report format version (2–5).
    pub version: u32,
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: u64,
    /// Family id from the ID block.
    pub family_id: [u8; 16],
    /// Image id from the ID block.
    pub image_id: [u8; 16],
    /// VMPL of the requester.
    pub vmpl: u32,
    /// Signature algorithm.
    pub sig_algo: u32,
    /// Current TCB.
    pub current_tcb: u64,
    /// Platform info bits.
    pub platform_info: u64,
    /// Author key digest is valid (the ID auth had an author key).
    pub author_key_en: bool,
    /// The chip key is masked.
    pub mask_chip_key: bool,
    /// Which key signed (0 VCEK, 1 VLEK, 7 none).
    pub signing_key: u8,
    /// Guest-supplied data.
    pub report_data: [u8; 64],
    /// The launch digest.
    pub measurement: [u8; 48],
    /// Host data from SNP_LAUNCH_FINISH.
    pub host_data: [u8; 32],
    /// SHA-384 of the ID key.
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key.
    pub author_key_digest: [u8; 48],
    /// Report id of the guest.
    pub report_id: [u8; 32],
    /// Report id of the migration agent.
    pub report_id_ma: [u8; 32],
    /// Reported TCB.
    pub reported_tcb: u64,
    /// CPUID family, model, stepping (version 3+).
    pub cpuid_fms: Option<[u8; 3]>,
    /// Chip id (zero when masked).
    pub chip_id: [u8; 64],
    /// Committed TCB.
    pub committed_tcb: u64,
    /// Current firmware build, minor, major.
    pub current_version: [u8; 3],
    /// Committed firmware build, minor, major.
    pub committed_version: [u8; 3],
    /// TCB at launch.
    pub launch_tcb: u64,
    /// Mitigation vectors at launch and now (version 5).
    pub mit_vectors: Option<(u64, u64)>,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn arr<const N: usize>(b: &[u8], o: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[o..o + N]);
    a
}

impl ReportBody {
    /// Serialize the body into a 1184-byte report with a zero signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        let put = |b: &mut [u8], o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
        put(&mut b, 0x00, &self.version.to_le_bytes());
        put(&mut b, 0x04, &self.guest_svn.to_le_bytes());
        put(&mut b, 0x08, &self.policy.to_le_bytes());
        put(&mut b, 0x10, &self.family_id);
        put(&mut b, 0x20, &self.image_id);
        put(&mut b, 0x30, &self.vmpl.to_le_bytes());
        put(&mut b, 0x34, &self.sig_algo.to_le_bytes());
        put(&mut b, 0x38, &self.current_tcb.to_le_bytes());
        put(&mut b, 0x40, &self.platform_info.to_le_bytes());
        let key_info = u32::from(self.author_key_en)
            | u32::from(self.mask_chip_key) << 1
            | u32::from(self.signing_key & 7) << 2;
        put(&mut b, 0x48, &key_info.to_le_bytes());
        put(&mut b, 0x50, &self.report_data);
        put(&mut b, 0x90, &self.measurement);
        put(&mut b, 0xC0, &self.host_data);
        put(&mut b, 0xE0, &self.id_key_digest);
        put(&mut b, 0x110, &self.author_key_digest);
        put(&mut b, 0x140, &self.report_id);
        put(&mut b, 0x160, &self.report_id_ma);
        put(&mut b, 0x180, &self.reported_tcb.to_le_bytes());
        if let Some(fms) = self.cpuid_fms {
            put(&mut b, 0x188, &fms);
        }
        put(&mut b, 0x1A0, &self.chip_id);
        put(&mut b, 0x1E0, &self.committed_tcb.to_le_bytes());
        put(&mut b, 0x1E8, &self.current_version);
        put(&mut b, 0x1EC, &self.committed_version);
        put(&mut b, 0x1F0, &self.launch_tcb.to_le_bytes());
        if let Some((launch, current)) = self.mit_vectors {
            put(&mut b, 0x1F8, &launch.to_le_bytes());
            put(&mut b, 0x200, &current.to_le_bytes());
        }
        b
    }

    /// Serialize and sign with `key` (SHA-384 over bytes `0..0x2A0`, R and S little-endian,
    /// zero-extended to 72 bytes each).
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let mut b = self.to_bytes();
        let sig: Signature = key.sign(&b[..SIGNED_LEN]);
        let (r, s) = sig.split_bytes();
        for (i, v) in r.iter().rev().enumerate() {
            b[0x2A0 + i] = *v;
        }
        for (i, v) in s.iter().rev().enumerate() {
            b[0x2E8 + i] = *v;
        }
        b
    }
}

/// A parsed report with its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// The decoded fields.
    pub body: ReportBody,
    raw: Vec<u8>,
}

impl AttestationReport {
    /// Decode a 1184-byte report of version 2–5.
    pub fn parse(raw: &[u8]) -> Result<Self, ReportError> {
        if raw.len() != REPORT_LEN {
            return Err(ReportError::Length(raw.len()));
        }
        let b = raw;
        let version = u32_at(b, 0);
        if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Err(ReportError::UnsupportedVersion(version));
        }
        let key_info = u32_at(b, 0x48);
        let body = ReportBody {
            version,
            guest_svn: u32_at(b, 0x04),
            policy: u64_at(b, 0x08),
            family_id: arr(b, 0x10),
            image_id: arr(b, 0x20),
            vmpl: u32_at(b, 0x30),
            sig_algo: u32_at(b, 0x34),
            current_tcb: u64_at(b, 0x38),
            platform_info: u64_at(b, 0x40),
            author_key_en: key_info & 1 != 0,
            mask_chip_key: key_info & 2 != 0,
            signing_key: ((key_info >> 2) & 7) as u8,
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            id_key_digest: arr(b, 0xE0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            report_id_ma: arr(b, 0x160),
            reported_tcb: u64_at(b, 0x180),
            cpuid_fms: (version >= 3).then(|| arr(b, 0x188)),
            chip_id: arr(b, 0x1A0),
            committed_tcb: u64_at(b, 0x1E0),
            current_version: arr(b, 0x1E8),
            committed_version: arr(b, 0x1EC),
            launch_tcb: u64_at(b, 0x1F0),
            mit_vectors: (version >= 5).then(|| (u64_at(b, 0x1F8), u64_at(b, 0x200))),
        };
        Ok(AttestationReport {
            body,
            raw: raw.to_vec(),
        })
    }

    /// The raw report bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The signature's R and S as a P-384 ECDSA signature (little-endian, zero-extended to 72
    /// bytes each in the report).
    pub fn signature(&self) -> Result<Signature, ReportError> {
        let (r, s) = (&self.raw[0x2A0..0x2E8], &self.raw[0x2E8..0x330]);
        if r[48..].iter().chain(&s[48..]).any(|&v| v != 0) {
            return Err(ReportError::MalformedSignature(
                "component exceeds 384 bits",
            ));
        }
        let be = |le: &[u8]| {
            let mut out = [0u8; 48];
            for (i, v) in le[..48].iter().enumerate() {
                out[47 - i] = *v;
            }
            out
        };
        Signature::from_scalars(be(r), be(s))
            .map_err(|_| ReportError::MalformedSignature("R or S is not a valid scalar"))
    }

    /// Verify the signature over the raw signed bytes with a VCEK (or VLEK) public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), ReportError> {
        if self.body.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(ReportError::UnsupportedAlgorithm(self.body.sig_algo));
        }
        let sig = self.signature()?;
        key.verify(&self.raw[..SIGNED_LEN], &sig)
            .map_err(|_| ReportError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    pub(crate) fn body(version: u32) -> ReportBody {
        ReportBody {
            version,
            guest_svn: 1,
            policy: 0x30000,
            family_id: [1; 16],
            image_id: [2; 16],
            vmpl: 0,
            sig_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: 0x1100_0000_0000_0304,
            platform_info: 1,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: SIGNING_KEY_VCEK,
            report_data: [0x55; 64],
            measurement: [0x66; 48],
            host_data: [0x77; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: [9; 32],
            report_id_ma: [0xff; 32],
            reported_tcb: 3,
            cpuid_fms: (version >= 3).then_some([0x19, 0x01, 0x01]),
            chip_id: [0xc; 64],
            committed_tcb: 3,
            current_version: [3, 55, 1],
            committed_version: [3, 55, 1],
            launch_tcb: 3,
            mit_vectors: (version >= 5).then_some((1, 2)),
        }
    }

    #[test]
    fn sign_parse_verify_all_versions() {
        let vcek = SigningKey::random(&mut OsRng);
        let other = SigningKey::random(&mut OsRng);
        for v in 2..=5 {
            let raw = body(v).sign(&vcek);
            let r = AttestationReport::parse(&raw).unwrap();
            assert_eq!(r.body, body(v));
            r.verify(vcek.verifying_key()).unwrap();
            assert_eq!(
                r.verify(other.verifying_key()),
                Err(ReportError::BadSignature)
            );
            let mut tampered = raw.clone();
            tampered[0x90] ^= 1;
            let t = AttestationReport::parse(&tampered).unwrap();
            assert_eq!(
                t.verify(vcek.verifying_key()),
                Err(ReportError::BadSignature)
            );
        }
    }

    #[test]
    fn unknown_versions_and_lengths_are_errors() {
        let vcek = SigningKey::random(&mut OsRng);
        for v in [0, 1, 6, 0xffff_ffff] {
            let mut b = body(2);
            b.version = v;
            assert_eq!(
                AttestationReport::parse(&b.sign(&vcek)),
                Err(ReportError::UnsupportedVersion(v))
            );
        }
        assert_eq!(
            AttestationReport::parse(&[0; 100]),
            Err(ReportError::Length(100))
        );
        let mut b = body(2);
        b.sig_algo = 2;
        let r = AttestationReport::parse(&b.sign(&vcek)).unwrap();
        assert_eq!(
            r.verify(vcek.verifying_key()),
            Err(ReportError::UnsupportedAlgorithm(2))
        );
    }
}
