//! The Secure Execution header (version 1), its public fields and its sealed secrets.
//!
//! Layout (big-endian): a 0x1A0-byte plaintext head (magic `"IBMSecEx"`, version 0x100, total size,
//! GCM IV, number of key slots, size of the encrypted area, number of encrypted pages, plaintext
//! control flags, the customer's P-521 public key, and the SHA-512 page/address/tweak list
//! digests), `nks` 80-byte key slots, the AES-256-GCM-encrypted area (128 bytes in version 1) and
//! the 16-byte GCM tag. [`SeHeader::parse`] checks every public field and returns typed errors;
//! the encrypted area stays opaque until someone with a host key opens it
//! ([`SeSecrets::parse`] reads the plaintext).

use std::fmt;

use bitflags::bitflags;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `"IBMSecEx"`.
pub const SE_MAGIC: u64 = 0x4942_4D53_6563_4578;
/// The only defined header version.
pub const SE_VERSION_1: u32 = 0x100;
/// Size of the plaintext head.
pub const HEAD_LEN: usize = 0x1A0;
/// Size of one key slot.
pub const KEY_SLOT_LEN: usize = 0x50;
/// Size of the version-1 encrypted area (no optional items).
pub const ENCRYPTED_LEN_V1: usize = 0x80;
/// Size of the GCM tag at the end.
pub const TAG_LEN: usize = 16;
/// Largest header accepted: two pages, the limit of genprotimg, of QEMU's PV IPL block check
/// and of KVM's `KVM_PV_SET_SEC_PARMS` before Linux 7.x.
pub const MAX_HEADER_LEN: usize = 2 * 4096;
/// PSW mask of the initial secure PSW written by genprotimg/pvimg (EA | BA).
pub const DEFAULT_PSW_MASK: u64 = 0x0000_0001_8000_0000;

bitflags! {
    /// Plaintext control flags (head offset 0x38), MSB-0 bit numbers in the names' docs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Pcf: u64 {
        /// Bit 34: dumping the secure guest is allowed.
        const ALLOW_DUMPING = 1 << (63 - 34);
        /// Bit 35: UNPACK does not decrypt component pages (digests are still verified).
        const NO_COMPONENT_ENCRYPTION = 1 << (63 - 35);
        /// Bit 56: PCKMO encrypt-DEA/TDEA-key functions allowed.
        const PCKMO_DEA_TDEA = 1 << (63 - 56);
        /// Bit 57: PCKMO encrypt-AES-key functions allowed.
        const PCKMO_AES = 1 << (63 - 57);
        /// Bit 58: PCKMO encrypt-ECC-key functions allowed.
        const PCKMO_ECC = 1 << (63 - 58);
        /// Bit 59: HMAC PCKMO functions allowed.
        const PCKMO_HMAC = 1 << (63 - 59);
        /// Bit 62: temporary backup-host-key use allowed.
        const BACKUP_TARGET_KEYS = 1 << (63 - 62);
        // Unknown bits are kept so the UV (or its simulator) can refuse them.
        const _ = !0;
    }
}

impl Pcf {
    /// genprotimg's and pvimg's default: PCKMO DEA/TDEA, AES and ECC (0xE0).
    pub const DEFAULT: Pcf = Pcf::PCKMO_DEA_TDEA
        .union(Pcf::PCKMO_AES)
        .union(Pcf::PCKMO_ECC);
}

/// Secret control flags (encrypted area offset 0x70): bit 1, CCK extension secret enforcement.
pub const SCF_CCK_EXTENSION_SECRET: u64 = 1 << (63 - 1);
/// Secret control flags: bit 2, CCK update allowed.
pub const SCF_CCK_UPDATE_ALLOWED: u64 = 1 << (63 - 2);

/// Why an SE header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeHeaderError {
    /// Fewer bytes than the head (or than the header claims).
    #[error("SE header truncated: {have} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The magic is not `"IBMSecEx"`.
    #[error("not an SE header: magic {0:#018x}")]
    BadMagic(u64),
    /// A version other than 0x100.
    #[error("unsupported SE header version {0:#x}")]
    UnsupportedVersion(u32),
    /// The size field disagrees with the buffer or with the key-slot count.
    #[error("SE header size mismatch: header says {declared:#x}, expected {expected:#x}")]
    SizeMismatch {
        /// The `phs` field.
        declared: u64,
        /// What the buffer or the slot count gives.
        expected: u64,
    },
    /// Larger than [`MAX_HEADER_LEN`].
    #[error("SE header too large: {0:#x} bytes (at most {MAX_HEADER_LEN:#x})")]
    TooLarge(u64),
    /// No key slot.
    #[error("SE header has no key slots")]
    NoKeySlots,
    /// The encrypted area is not the version-1 size.
    #[error(
        "SE header encrypted area size {0:#x} is invalid (version 1 uses {ENCRYPTED_LEN_V1:#x})"
    )]
    EncryptedAreaSize(u64),
    /// A reserved field is not zero.
    #[error("SE header reserved field at {0:#x} is not zero")]
    Reserved(usize),
    /// The number of encrypted pages is zero.
    #[error("SE header declares no encrypted pages")]
    NoPages,
}

/// One key slot: the host key it is for and the wrapped header protection key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlot {
    /// SHA-256 of the target host key's coordinates.
    pub phkh: [u8; 32],
    /// The protection key, AES-256-GCM encrypted with the exchange key.
    pub wrapped_key: [u8; 32],
    /// The wrap's GCM tag.
    pub tag: [u8; 16],
}

/// A parsed SE header (public fields; the encrypted area is opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeHeader {
    /// Header version (0x100).
    pub version: u32,
    /// GCM IV of the header seal.
    pub iv: [u8; 12],
    /// Size of the encrypted area.
    pub sea: u64,
    /// Number of encrypted (component) pages.
    pub nep: u64,
    /// Plaintext control flags.
    pub pcf: Pcf,
    /// The customer's ephemeral P-521 public key (`X ‖ Y`, 80 bytes each).
    pub cust_pub_key: [u8; 160],
    /// SHA-512 page list digest.
    pub pld: [u8; 64],
    /// SHA-512 address list digest.
    pub ald: [u8; 64],
    /// SHA-512 tweak list digest.
    pub tld: [u8; 64],
    /// The key slots (at least one).
    pub key_slots: Vec<KeySlot>,
    /// The encrypted area (ciphertext).
    pub encrypted: Vec<u8>,
    /// The GCM tag over head + slots (AAD) and the encrypted area.
    pub tag: [u8; 16],
}

/// The big-endian `u64` at `off` (callers check `off + 8 <= b.len()`; shared with the IPIB).
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

/// The big-endian `u32` at `off` (callers check `off + 4 <= b.len()`).
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

/// The total size of a version-1 header with `nks` key slots.
pub fn header_len(nks: usize) -> usize {
    HEAD_LEN + KEY_SLOT_LEN * nks + ENCRYPTED_LEN_V1 + TAG_LEN
}

impl SeHeader {
    /// Parse and check a header; `bytes` must be exactly the header (its size field's length).
    pub fn parse(bytes: &[u8]) -> Result<SeHeader, SeHeaderError> {
        if bytes.len() < HEAD_LEN {
            return Err(SeHeaderError::Truncated {
                have: bytes.len(),
                need: HEAD_LEN,
            });
        }
        let magic = be64(bytes, 0);
        if magic != SE_MAGIC {
            return Err(SeHeaderError::BadMagic(magic));
        }
        let version = be32(bytes, 0x08);
        if version != SE_VERSION_1 {
            return Err(SeHeaderError::UnsupportedVersion(version));
        }
        let phs = u64::from(be32(bytes, 0x0C));
        if phs > MAX_HEADER_LEN as u64 {
            return Err(SeHeaderError::TooLarge(phs));
        }
        if phs != bytes.len() as u64 {
            return Err(SeHeaderError::SizeMismatch {
                declared: phs,
                expected: bytes.len() as u64,
            });
        }
        if be32(bytes, 0x1C) != 0 {
            return Err(SeHeaderError::Reserved(0x1C));
        }
        let nks = be64(bytes, 0x20);
        let sea = be64(bytes, 0x28);
        if nks == 0 {
            return Err(SeHeaderError::NoKeySlots);
        }
        if sea != ENCRYPTED_LEN_V1 as u64 {
            return Err(SeHeaderError::EncryptedAreaSize(sea));
        }
        // phs <= 8 KiB bounds nks, so this cannot overflow once checked against phs.
        let expected = (HEAD_LEN as u64)
            .saturating_add(nks.saturating_mul(KEY_SLOT_LEN as u64))
            .saturating_add(sea)
            .saturating_add(TAG_LEN as u64);
        if expected != phs {
            return Err(SeHeaderError::SizeMismatch {
                declared: phs,
                expected,
            });
        }
        let nep = be64(bytes, 0x30);
        if nep == 0 {
            return Err(SeHeaderError::NoPages);
        }
        let nks = nks as usize;
        let key_slots = (0..nks)
            .map(|i| {
                let o = HEAD_LEN + KEY_SLOT_LEN * i;
                KeySlot {
                    phkh: arr(bytes, o),
                    wrapped_key: arr(bytes, o + 0x20),
                    tag: arr(bytes, o + 0x40),
                }
            })
            .collect();
        let enc_off = HEAD_LEN + KEY_SLOT_LEN * nks;
        Ok(SeHeader {
            version,
            iv: arr(bytes, 0x10),
            sea,
            nep,
            pcf: Pcf::from_bits_retain(be64(bytes, 0x38)),
            cust_pub_key: arr(bytes, 0x40),
            pld: arr(bytes, 0xE0),
            ald: arr(bytes, 0x120),
            tld: arr(bytes, 0x160),
            key_slots,
            encrypted: bytes[enc_off..enc_off + ENCRYPTED_LEN_V1].to_vec(),
            tag: arr(bytes, bytes.len() - TAG_LEN),
        })
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        HEAD_LEN + KEY_SLOT_LEN * self.key_slots.len() + self.encrypted.len() + TAG_LEN
    }

    /// Never true: a header has at least its head.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Length of the GCM additional data: the head and every key slot.
    pub fn aad_len(&self) -> usize {
        HEAD_LEN + KEY_SLOT_LEN * self.key_slots.len()
    }

    /// Whether the guest owner allowed dumping (PCF bit 34).
    pub fn dump_allowed(&self) -> bool {
        self.pcf.contains(Pcf::ALLOW_DUMPING)
    }

    /// Encode the header (inverse of [`parse`](Self::parse)).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.len()];
        b[0..8].copy_from_slice(&SE_MAGIC.to_be_bytes());
        b[0x08..0x0C].copy_from_slice(&self.version.to_be_bytes());
        b[0x0C..0x10].copy_from_slice(&(self.len() as u32).to_be_bytes());
        b[0x10..0x1C].copy_from_slice(&self.iv);
        b[0x20..0x28].copy_from_slice(&(self.key_slots.len() as u64).to_be_bytes());
        b[0x28..0x30].copy_from_slice(&(self.encrypted.len() as u64).to_be_bytes());
        b[0x30..0x38].copy_from_slice(&self.nep.to_be_bytes());
        b[0x38..0x40].copy_from_slice(&self.pcf.bits().to_be_bytes());
        b[0x40..0xE0].copy_from_slice(&self.cust_pub_key);
        b[0xE0..0x120].copy_from_slice(&self.pld);
        b[0x120..0x160].copy_from_slice(&self.ald);
        b[0x160..0x1A0].copy_from_slice(&self.tld);
        for (i, s) in self.key_slots.iter().enumerate() {
            let o = HEAD_LEN + KEY_SLOT_LEN * i;
            b[o..o + 0x20].copy_from_slice(&s.phkh);
            b[o + 0x20..o + 0x40].copy_from_slice(&s.wrapped_key);
            b[o + 0x40..o + 0x50].copy_from_slice(&s.tag);
        }
        let e = self.aad_len();
        b[e..e + self.encrypted.len()].copy_from_slice(&self.encrypted);
        let t = b.len() - TAG_LEN;
        b[t..].copy_from_slice(&self.tag);
        b
    }
}

/// The plaintext of the encrypted area: keys and the initial PSW. Zeroized on drop; `Debug`
/// redacts the keys.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SeSecrets {
    /// Customer communication key (dump encryption, add-secret).
    pub cck: [u8; 32],
    /// AES-256-XTS component key (key 1 ‖ key 2).
    pub xts_key: [u8; 64],
    /// Initial secure PSW mask.
    pub psw_mask: u64,
    /// Initial secure PSW address.
    pub psw_addr: u64,
    /// Secret control flags.
    pub scf: u64,
}

impl fmt::Debug for SeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeSecrets")
            .field("cck", &"<redacted>")
            .field("xts_key", &"<redacted>")
            .field("psw_mask", &format_args!("{:#x}", self.psw_mask))
            .field("psw_addr", &format_args!("{:#x}", self.psw_addr))
            .field("scf", &format_args!("{:#x}", self.scf))
            .finish()
    }
}

impl SeSecrets {
    /// Read the 128-byte plaintext of a version-1 encrypted area. `None` when it has optional
    /// items (`noi` ≠ 0) or a non-zero reserved field.
    pub fn parse(plain: &[u8; ENCRYPTED_LEN_V1]) -> Option<SeSecrets> {
        if be32(plain, 0x78) != 0 || be32(plain, 0x7C) != 0 {
            return None;
        }
        Some(SeSecrets {
            cck: arr(plain, 0),
            xts_key: arr(plain, 0x20),
            psw_mask: be64(plain, 0x60),
            psw_addr: be64(plain, 0x68),
            scf: be64(plain, 0x70),
        })
    }

    /// Encode the plaintext area (zeroize the result when done).
    pub fn encode(&self) -> zeroize::Zeroizing<[u8; ENCRYPTED_LEN_V1]> {
        let mut p = zeroize::Zeroizing::new([0u8; ENCRYPTED_LEN_V1]);
        p[..0x20].copy_from_slice(&self.cck);
        p[0x20..0x60].copy_from_slice(&self.xts_key);
        p[0x60..0x68].copy_from_slice(&self.psw_mask.to_be_bytes());
        p[0x68..0x70].copy_from_slice(&self.psw_addr.to_be_bytes());
        p[0x70..0x78].copy_from_slice(&self.scf.to_be_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(nks: usize) -> SeHeader {
        SeHeader {
            version: SE_VERSION_1,
            iv: [3; 12],
            sea: ENCRYPTED_LEN_V1 as u64,
            nep: 5,
            pcf: Pcf::DEFAULT | Pcf::ALLOW_DUMPING,
            cust_pub_key: [0x11; 160],
            pld: [1; 64],
            ald: [2; 64],
            tld: [3; 64],
            key_slots: (0..nks)
                .map(|i| KeySlot {
                    phkh: [i as u8; 32],
                    wrapped_key: [0xAA; 32],
                    tag: [0xBB; 16],
                })
                .collect(),
            encrypted: vec![0xCC; ENCRYPTED_LEN_V1],
            tag: [0xDD; 16],
        }
    }

    #[test]
    fn round_trip_and_sizes() {
        let h = sample(1);
        let b = h.encode();
        assert_eq!(b.len(), 0x280);
        assert_eq!(header_len(1), 0x280);
        assert_eq!(&b[..8], b"IBMSecEx");
        assert_eq!(SeHeader::parse(&b).unwrap(), h);
        assert!(SeHeader::parse(&b).unwrap().dump_allowed());
        let h3 = sample(3);
        assert_eq!(SeHeader::parse(&h3.encode()).unwrap().key_slots.len(), 3);
        assert_eq!(Pcf::DEFAULT.bits(), 0xE0);
        assert_eq!(Pcf::ALLOW_DUMPING.bits(), 0x2000_0000);
        assert_eq!(Pcf::NO_COMPONENT_ENCRYPTION.bits(), 0x1000_0000);
    }

    #[test]
    fn bad_headers_give_typed_errors() {
        let good = sample(1).encode();
        assert!(matches!(
            SeHeader::parse(&good[..100]),
            Err(SeHeaderError::Truncated { have: 100, .. })
        ));
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(
            SeHeader::parse(&b),
            Err(SeHeaderError::BadMagic(_))
        ));
        let mut b = good.clone();
        b[0x0A] = 2;
        assert_eq!(
            SeHeader::parse(&b),
            Err(SeHeaderError::UnsupportedVersion(0x200))
        );
        // Size field larger than the buffer.
        let mut b = good.clone();
        b[0x0C..0x10].copy_from_slice(&0x2d0u32.to_be_bytes());
        assert!(matches!(
            SeHeader::parse(&b),
            Err(SeHeaderError::SizeMismatch { .. })
        ));
        // Key-slot count disagrees with the size.
        let mut b = good.clone();
        b[0x20..0x28].copy_from_slice(&2u64.to_be_bytes());
        assert!(matches!(
            SeHeader::parse(&b),
            Err(SeHeaderError::SizeMismatch { .. })
        ));
        // Huge key-slot count must not overflow.
        let mut b = good.clone();
        b[0x20..0x28].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            SeHeader::parse(&b),
            Err(SeHeaderError::SizeMismatch { .. })
        ));
        let mut b = good.clone();
        b[0x20..0x28].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(SeHeader::parse(&b), Err(SeHeaderError::NoKeySlots));
        let mut b = good.clone();
        b[0x28..0x30].copy_from_slice(&0x90u64.to_be_bytes());
        assert_eq!(
            SeHeader::parse(&b),
            Err(SeHeaderError::EncryptedAreaSize(0x90))
        );
        let mut b = good.clone();
        b[0x30..0x38].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(SeHeader::parse(&b), Err(SeHeaderError::NoPages));
        let mut b = good.clone();
        b[0x1D] = 1;
        assert_eq!(SeHeader::parse(&b), Err(SeHeaderError::Reserved(0x1C)));
        let mut big = good;
        big[0x0C..0x10].copy_from_slice(&0x3000u32.to_be_bytes());
        assert_eq!(SeHeader::parse(&big), Err(SeHeaderError::TooLarge(0x3000)));
    }

    #[test]
    fn secrets_round_trip_and_redact() {
        let s = SeSecrets {
            cck: [1; 32],
            xts_key: [2; 64],
            psw_mask: DEFAULT_PSW_MASK,
            psw_addr: 0x1_0000,
            scf: 0,
        };
        let p = s.encode();
        assert_eq!(SeSecrets::parse(&p), Some(s.clone()));
        let dbg = format!("{s:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("[1, 1"));
        let mut with_items = *p;
        with_items[0x7B] = 1;
        assert_eq!(SeSecrets::parse(&with_items), None);
    }
}
