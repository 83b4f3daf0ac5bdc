//! SNP ID block and ID authentication information (`SNP_LAUNCH_FINISH` inputs).
//!
//! The ID block (96 bytes) binds the expected launch digest to a family/image ID and policy; the
//! guest owner's ID key signs it, and optionally an author key signs the ID key. Layouts (SNP ABI
//! "ID_BLOCK" / "ID_AUTH_INFO", all little-endian):
//!
//! - ID block: `ld[48] @0, family_id[16] @0x30, image_id[16] @0x40, version u32 @0x50 (1),
//!   guest_svn u32 @0x54, policy u64 @0x58`.
//! - ID auth (4096): `id_key_algo u32 @0 (1 = ECDSA P-384/SHA-384), auth_key_algo u32 @4,
//!   id_block_sig[512] @0x40, id_key[1028] @0x240, id_key_sig[512] @0x680, author_key[1028] @0x880`.
//! - Signature (512): `r[72] s[72]` little-endian, zero padded. Public key (1028): `curve u32 @0
//!   (2 = P-384), qx[72] @4, qy[72] @0x4C`, little-endian, zero padded.

use std::fmt;

use base64::Engine;
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::elliptic_curve::sec1::{EncodedPoint, FromEncodedPoint, ToEncodedPoint};
use p384::pkcs8::DecodePrivateKey;
use p384::{AffinePoint, NistP384, SecretKey};
use sha2::{Digest, Sha384};
use zeroize::Zeroizing;

use super::error::{MeasureError, Result};

/// ID block size.
pub const ID_BLOCK_SIZE: usize = 96;
/// ID auth size.
pub const ID_AUTH_SIZE: usize = 4096;
/// SNP signature size.
pub const SIGNATURE_SIZE: usize = 512;
/// SNP public key size.
pub const PUBKEY_SIZE: usize = 1028;
/// `ECDSA P-384 with SHA-384`.
pub const ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Curve id of P-384.
pub const CURVE_P384: u32 = 2;
/// The policy sev-snp-measure writes (SMT allowed, reserved bit 17).
pub const DEFAULT_POLICY: u64 = 0x3_0000;

const ID_BLOCK_SIG_OFF: usize = 0x40;
const ID_KEY_OFF: usize = 0x240;
const ID_KEY_SIG_OFF: usize = 0x680;
const AUTHOR_KEY_OFF: usize = 0x880;
const COORD: usize = 72;

const _: () = {
    assert!(ID_BLOCK_SIG_OFF + SIGNATURE_SIZE == ID_KEY_OFF);
    assert!(ID_KEY_OFF + PUBKEY_SIZE == 0x644);
    assert!(ID_KEY_SIG_OFF + SIGNATURE_SIZE == AUTHOR_KEY_OFF);
    assert!(AUTHOR_KEY_OFF + PUBKEY_SIZE == 0xC84);
};

/// The SNP ID block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdBlock {
    /// The expected launch digest.
    pub ld: [u8; 48],
    /// Family ID.
    pub family_id: [u8; 16],
    /// Image ID.
    pub image_id: [u8; 16],
    /// Version (1).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// The guest policy the launch must use.
    pub policy: u64,
}

impl IdBlock {
    /// An ID block for `ld` with zero IDs and SVN, version 1 and [`DEFAULT_POLICY`].
    pub fn new(ld: [u8; 48]) -> Self {
        IdBlock {
            ld,
            family_id: [0; 16],
            image_id: [0; 16],
            version: 1,
            guest_svn: 0,
            policy: DEFAULT_POLICY,
        }
    }

    /// The 96-byte encoding.
    pub fn to_bytes(&self) -> [u8; ID_BLOCK_SIZE] {
        let mut b = [0u8; ID_BLOCK_SIZE];
        b[..0x30].copy_from_slice(&self.ld);
        b[0x30..0x40].copy_from_slice(&self.family_id);
        b[0x40..0x50].copy_from_slice(&self.image_id);
        b[0x50..0x54].copy_from_slice(&self.version.to_le_bytes());
        b[0x54..0x58].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x58..0x60].copy_from_slice(&self.policy.to_le_bytes());
        b
    }

    /// Parses a 96-byte ID block.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() != ID_BLOCK_SIZE {
            return Err(MeasureError::invalid(
                "ID block",
                format!("{} bytes, expected {ID_BLOCK_SIZE}", b.len()),
            ));
        }
        let mut ld = [0u8; 48];
        ld.copy_from_slice(&b[..0x30]);
        let mut family_id = [0u8; 16];
        family_id.copy_from_slice(&b[0x30..0x40]);
        let mut image_id = [0u8; 16];
        image_id.copy_from_slice(&b[0x40..0x50]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut policy = [0u8; 8];
        policy.copy_from_slice(&b[0x58..0x60]);
        Ok(IdBlock {
            ld,
            family_id,
            image_id,
            version: u32_at(0x50),
            guest_svn: u32_at(0x54),
            policy: u64::from_le_bytes(policy),
        })
    }
}

/// A P-384 signing key (an ID or author key). The secret is zeroized on drop; `Debug` shows only
/// the public key digest.
#[derive(Clone)]
pub struct SnpSigningKey {
    key: SigningKey,
}

impl fmt::Debug for SnpSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpSigningKey")
            .field("public_key_digest", &super::hex(&self.public_key_digest()))
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn key_err(why: impl Into<std::borrow::Cow<'static, str>>) -> MeasureError {
    MeasureError::Key { why: why.into() }
}

impl SnpSigningKey {
    /// From DER: PKCS#8 `PrivateKeyInfo` or SEC1 `ECPrivateKey`.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let secret = SecretKey::from_pkcs8_der(der)
            .or_else(|_| SecretKey::from_sec1_der(der))
            .map_err(|_| key_err("not a P-384 PKCS#8 or SEC1 private key"))?;
        Ok(SnpSigningKey {
            key: SigningKey::from(secret),
        })
    }

    /// From PEM (`BEGIN PRIVATE KEY` or `BEGIN EC PRIVATE KEY`; unencrypted).
    pub fn from_pem(pem: &str) -> Result<Self> {
        let mut body = Zeroizing::new(String::new());
        let mut inside = false;
        let mut found = false;
        for line in pem.lines().map(str::trim) {
            if line.starts_with("-----BEGIN ") {
                if line.contains("ENCRYPTED") {
                    return Err(key_err("encrypted PEM keys are not supported"));
                }
                inside = line == "-----BEGIN PRIVATE KEY-----"
                    || line == "-----BEGIN EC PRIVATE KEY-----";
            } else if line.starts_with("-----END ") {
                if inside {
                    found = true;
                    break;
                }
            } else if inside && !line.contains(':') {
                body.push_str(line);
            }
        }
        if !found {
            return Err(key_err("no PRIVATE KEY or EC PRIVATE KEY PEM block"));
        }
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|_| key_err("PEM body is not base64"))?,
        );
        Self::from_der(&der)
    }

    /// From a raw 48-byte big-endian scalar.
    pub fn from_scalar(bytes: &[u8; 48]) -> Result<Self> {
        SigningKey::from_bytes(bytes.into())
            .map(|key| SnpSigningKey { key })
            .map_err(|_| key_err("scalar is zero or not below the group order"))
    }

    /// The public key in SNP format.
    pub fn public_key(&self) -> [u8; PUBKEY_SIZE] {
        encode_public_key(self.key.verifying_key())
    }

    /// SHA-384 of the SNP public key (`id_key_digest` / `author_key_digest` of the report).
    pub fn public_key_digest(&self) -> [u8; 48] {
        Sha384::digest(self.public_key()).into()
    }

    /// Signs `msg` (ECDSA P-384 over SHA-384, RFC 6979 nonces) in SNP format.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_SIZE] {
        let sig: Signature = self.key.sign(msg);
        let (r, s) = sig.split_bytes();
        let mut out = [0u8; SIGNATURE_SIZE];
        for (i, b) in r.iter().rev().enumerate() {
            out[i] = *b;
        }
        for (i, b) in s.iter().rev().enumerate() {
            out[COORD + i] = *b;
        }
        out
    }
}

/// Encodes a P-384 public key in SNP format.
pub fn encode_public_key(key: &VerifyingKey) -> [u8; PUBKEY_SIZE] {
    let point = key.as_affine().to_encoded_point(false);
    let mut out = [0u8; PUBKEY_SIZE];
    out[..4].copy_from_slice(&CURVE_P384.to_le_bytes());
    if let (Some(x), Some(y)) = (point.x(), point.y()) {
        for (i, b) in x.iter().rev().enumerate() {
            out[4 + i] = *b;
        }
        for (i, b) in y.iter().rev().enumerate() {
            out[4 + COORD + i] = *b;
        }
    }
    out
}

/// Reverses a 72-byte little-endian field into a 48-byte big-endian one (the top 24 bytes must
/// be zero).
fn le72_to_be48(le: &[u8]) -> Option<[u8; 48]> {
    if le.len() != COORD || le[48..].iter().any(|&b| b != 0) {
        return None;
    }
    let mut be = [0u8; 48];
    for (i, b) in le[..48].iter().rev().enumerate() {
        be[i] = *b;
    }
    Some(be)
}

/// Decodes an SNP-format public key.
pub fn decode_public_key(b: &[u8]) -> Result<VerifyingKey> {
    if b.len() != PUBKEY_SIZE {
        return Err(key_err(format!(
            "{} bytes, expected {PUBKEY_SIZE}",
            b.len()
        )));
    }
    let curve = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if curve != CURVE_P384 {
        return Err(key_err(format!(
            "curve {curve}, expected P-384 ({CURVE_P384})"
        )));
    }
    let (Some(x), Some(y)) = (
        le72_to_be48(&b[4..4 + COORD]),
        le72_to_be48(&b[4 + COORD..4 + 2 * COORD]),
    ) else {
        return Err(key_err("coordinate exceeds 48 bytes"));
    };
    if b[4 + 2 * COORD..].iter().any(|&x| x != 0) {
        return Err(key_err("reserved bytes are nonzero"));
    }
    let point = EncodedPoint::<NistP384>::from_affine_coordinates(&x.into(), &y.into(), false);
    let affine = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&point))
        .ok_or_else(|| key_err("point is not on P-384"))?;
    VerifyingKey::from_affine(affine).map_err(|_| key_err("point is the identity"))
}

/// Verifies an SNP-format signature over `msg`.
pub fn verify_signature(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<()> {
    let bad = |why: &'static str| MeasureError::Signature { why: why.into() };
    if sig.len() != SIGNATURE_SIZE {
        return Err(bad("signature is not 512 bytes"));
    }
    let (Some(r), Some(s)) = (
        le72_to_be48(&sig[..COORD]),
        le72_to_be48(&sig[COORD..2 * COORD]),
    ) else {
        return Err(bad("r or s exceeds 48 bytes"));
    };
    if sig[2 * COORD..].iter().any(|&b| b != 0) {
        return Err(bad("reserved bytes are nonzero"));
    }
    let sig = Signature::from_scalars(r, s).map_err(|_| bad("r or s is out of range"))?;
    key.verify(msg, &sig)
        .map_err(|_| bad("ECDSA verification failed"))
}

/// The ID authentication information.
#[derive(Clone, PartialEq, Eq)]
pub struct IdAuth(Box<[u8; ID_AUTH_SIZE]>);

impl fmt::Debug for IdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdAuth")
            .field("id_key_digest", &super::hex(&Sha384::digest(self.id_key())))
            .finish()
    }
}

/// What a verified ID auth proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedIdAuth {
    /// SHA-384 of the ID public key (the report's `ID_KEY_DIGEST`).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author public key, when author keys are enabled.
    pub author_key_digest: Option<[u8; 48]>,
}

impl IdAuth {
    /// Signs `block` with `id_key` and, if given, `id_key`'s public key with `author_key`.
    pub fn sign(
        block: &IdBlock,
        id_key: &SnpSigningKey,
        author_key: Option<&SnpSigningKey>,
    ) -> Self {
        let mut b = Box::new([0u8; ID_AUTH_SIZE]);
        b[0..4].copy_from_slice(&ALGO_ECDSA_P384_SHA384.to_le_bytes());
        let id_pub = id_key.public_key();
        b[ID_BLOCK_SIG_OFF..ID_KEY_OFF].copy_from_slice(&id_key.sign(&block.to_bytes()));
        b[ID_KEY_OFF..ID_KEY_OFF + PUBKEY_SIZE].copy_from_slice(&id_pub);
        if let Some(author) = author_key {
            b[4..8].copy_from_slice(&ALGO_ECDSA_P384_SHA384.to_le_bytes());
            b[ID_KEY_SIG_OFF..AUTHOR_KEY_OFF].copy_from_slice(&author.sign(&id_pub));
            b[AUTHOR_KEY_OFF..AUTHOR_KEY_OFF + PUBKEY_SIZE].copy_from_slice(&author.public_key());
        }
        IdAuth(b)
    }

    /// Wraps 4096 bytes (checked by [`IdAuth::verify`]).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let arr: [u8; ID_AUTH_SIZE] = b.try_into().map_err(|_| {
            MeasureError::invalid(
                "ID auth",
                format!("{} bytes, expected {ID_AUTH_SIZE}", b.len()),
            )
        })?;
        Ok(IdAuth(Box::new(arr)))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; ID_AUTH_SIZE] {
        &self.0
    }

    /// The ID public key field.
    pub fn id_key(&self) -> &[u8] {
        &self.0[ID_KEY_OFF..ID_KEY_OFF + PUBKEY_SIZE]
    }

    /// The author public key field.
    pub fn author_key(&self) -> &[u8] {
        &self.0[AUTHOR_KEY_OFF..AUTHOR_KEY_OFF + PUBKEY_SIZE]
    }

    /// Checks as the firmware does at `SNP_LAUNCH_FINISH`: the algorithms, the ID key's signature
    /// over `id_block` (96 bytes) and, with `author_key_en`, the author key's signature over the ID
    /// key.
    pub fn verify(&self, id_block: &[u8], author_key_en: bool) -> Result<VerifiedIdAuth> {
        let b = &self.0;
        let algo = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        if algo(0) != ALGO_ECDSA_P384_SHA384 {
            return Err(MeasureError::Signature {
                why: format!("unsupported id_key_algo {}", algo(0)).into(),
            });
        }
        IdBlock::parse(id_block)?;
        let id_key = decode_public_key(self.id_key())?;
        verify_signature(&id_key, id_block, &b[ID_BLOCK_SIG_OFF..ID_KEY_OFF])?;
        let author_key_digest = if author_key_en {
            if algo(4) != ALGO_ECDSA_P384_SHA384 {
                return Err(MeasureError::Signature {
                    why: format!("unsupported auth_key_algo {}", algo(4)).into(),
                });
            }
            let author = decode_public_key(self.author_key())?;
            verify_signature(&author, self.id_key(), &b[ID_KEY_SIG_OFF..AUTHOR_KEY_OFF])?;
            Some(Sha384::digest(self.author_key()).into())
        } else {
            None
        };
        Ok(VerifiedIdAuth {
            id_key_digest: Sha384::digest(self.id_key()).into(),
            author_key_digest,
        })
    }
}

/// The QEMU `-object sev-snp-guest` options `id-block=<base64>,id-auth=<base64>`.
pub fn qemu_options(block: &IdBlock, auth: &IdAuth) -> String {
    let e = &base64::engine::general_purpose::STANDARD;
    format!(
        "id-block={},id-auth={}",
        e.encode(block.to_bytes()),
        e.encode(auth.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SnpSigningKey {
        let mut s = [seed; 48];
        s[0] = 1;
        SnpSigningKey::from_scalar(&s).unwrap()
    }

    #[test]
    fn id_block_layout() {
        let mut blk = IdBlock::new([0xAB; 48]);
        blk.guest_svn = 7;
        let b = blk.to_bytes();
        assert_eq!(&b[0x50..0x54], &1u32.to_le_bytes());
        assert_eq!(&b[0x54..0x58], &7u32.to_le_bytes());
        assert_eq!(&b[0x58..0x60], &0x30000u64.to_le_bytes());
        assert_eq!(IdBlock::parse(&b).unwrap(), blk);
        assert!(IdBlock::parse(&b[..95]).is_err());
    }

    #[test]
    fn sign_verify_and_tamper() {
        let blk = IdBlock::new([0x11; 48]);
        let (id, author) = (key(2), key(3));
        let auth = IdAuth::sign(&blk, &id, Some(&author));
        let v = auth.verify(&blk.to_bytes(), true).unwrap();
        assert_eq!(v.id_key_digest, id.public_key_digest());
        assert_eq!(v.author_key_digest, Some(author.public_key_digest()));
        assert_eq!(
            decode_public_key(&id.public_key()).unwrap(),
            *id.key.verifying_key()
        );
        // A different LD fails.
        let other = IdBlock::new([0x12; 48]).to_bytes();
        assert!(auth.verify(&other, true).is_err());
        // A flipped signature byte fails.
        let mut bytes = *auth.as_bytes();
        bytes[ID_BLOCK_SIG_OFF] ^= 1;
        let bad = IdAuth::from_bytes(&bytes).unwrap();
        assert!(bad.verify(&blk.to_bytes(), false).is_err());
        // No author key: author verification is refused, plain verification passes.
        let solo = IdAuth::sign(&blk, &id, None);
        assert!(solo.verify(&blk.to_bytes(), false).is_ok());
        assert!(solo.verify(&blk.to_bytes(), true).is_err());
        assert!(qemu_options(&blk, &solo).starts_with("id-block=ERERER"));
        assert!(!format!("{id:?}").contains(&super::super::hex(&[2u8; 4])));
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(SnpSigningKey::from_scalar(&[0; 48]).is_err());
        assert!(SnpSigningKey::from_pem("junk").is_err());
        assert!(SnpSigningKey::from_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
        let mut pk = key(4).public_key();
        pk[10] ^= 0xFF;
        assert!(decode_public_key(&pk).is_err());
        pk[0] = 3;
        assert!(decode_public_key(&pk).is_err());
    }
}
