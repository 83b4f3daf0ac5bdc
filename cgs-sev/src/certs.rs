//! The SNP extended-guest-request certificate table (GHCB spec, "SNP Extended Guest Request").
//!
//! The table is an array of 24-byte entries `{guid[16], offset u32, length u32}` ended by an
//! all-zero entry, followed by the certificates; offsets count from the start of the table. The
//! VMM writes it into the guest's buffer for `KVM_EXIT_SNP_REQ_CERTS` (kernels with
//! `KVM_SEV_SNP_ENABLE_REQ_CERTS`); the guest parses it. Both directions are here, and parsing
//! is for untrusted input: every bound is checked and every failure is a [`CertTableError`].

use std::fmt;

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;
/// Guest page size (the guest's buffer is `npages` pages).
pub const PAGE_SIZE: usize = 4096;

/// A GUID in the little-endian ("mixed-endian", `uuid.bytes_le`) byte order the table uses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// AMD root key.
    pub const ARK: Guid = Guid::from_fields(0xc0b406a4, 0xa803, 0x4952, 0x9743_3fb6014cd0ae);
    /// AMD SEV key.
    pub const ASK: Guid = Guid::from_fields(0x4ab7b379, 0xbbac, 0x4fe4, 0xa02f_05aef327c782);
    /// Versioned chip endorsement key.
    pub const VCEK: Guid = Guid::from_fields(0x63da758d, 0xe664, 0x4564, 0xadc5_f4b93be8accd);
    /// Versioned loaded endorsement key.
    pub const VLEK: Guid = Guid::from_fields(0xa8074bc2, 0xa25a, 0x483e, 0xaae6_39c045a0b8a1);
    /// Certificate revocation list.
    pub const CRL: Guid = Guid::from_fields(0x92f81bc3, 0x5811, 0x4d3d, 0x97ff_d19f88dc67ea);

    /// From the textual fields `d1-d2-d3-d4` (d4 is the last 8 bytes, big-endian).
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: u64) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        let d = d4.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }

    /// Whether this is the all-zero GUID (the terminator's).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]])
        )?;
        for b in &g[8..10] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in &g[10..] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// Why a table could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// No all-zero terminator entry inside the buffer.
    #[error("certificate table has no terminator entry")]
    MissingTerminator,
    /// An entry with the zero GUID but non-zero offset or length.
    #[error("entry {0} has a zero GUID but is not the terminator")]
    ZeroGuid(usize),
    /// An entry's data lies outside the buffer or inside the entry array.
    #[error("entry {index} ({guid}) points at [{offset:#x}, +{length:#x}) outside the data area of a {size:#x}-byte buffer")]
    OutOfBounds {
        /// Entry index.
        index: usize,
        /// Its GUID.
        guid: Guid,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
        /// Buffer size.
        size: usize,
    },
    /// Two entries with the same GUID.
    #[error("GUID {0} appears twice")]
    Duplicate(Guid),
    /// The guest's buffer is too small; it needs `pages` pages.
    #[error("certificate table needs {needed} bytes ({pages} pages), the buffer has {have}")]
    TooSmall {
        /// Bytes needed.
        needed: usize,
        /// Pages needed (what the VMM reports back in RBX).
        pages: usize,
        /// Bytes available.
        have: usize,
    },
    /// A certificate longer than `u32::MAX` or a table past 4 GiB.
    #[error("certificate table exceeds 4 GiB")]
    TooLarge,
}

impl From<CertTableError> for cgs_core::Error {
    fn from(e: CertTableError) -> Self {
        cgs_core::Error::invalid_input("SNP certificate table", e.to_string())
    }
}

/// One certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// What it is ([`Guid::VCEK`], …).
    pub guid: Guid,
    /// The certificate bytes (DER for AMD's keys).
    pub data: Vec<u8>,
}

/// A certificate table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertTable {
    /// The entries, in table order.
    pub entries: Vec<CertEntry>,
}

impl CertTable {
    /// An empty table (just the terminator), what KVM gives guests when the VMM supplies none.
    pub fn new() -> Self {
        CertTable::default()
    }

    /// Add a certificate; a GUID may appear once, the zero GUID never.
    pub fn push(&mut self, guid: Guid, data: Vec<u8>) -> Result<(), CertTableError> {
        if guid.is_zero() {
            return Err(CertTableError::ZeroGuid(self.entries.len()));
        }
        if self.entries.iter().any(|e| e.guid == guid) {
            return Err(CertTableError::Duplicate(guid));
        }
        self.entries.push(CertEntry { guid, data });
        Ok(())
    }

    /// The certificate with `guid`.
    pub fn get(&self, guid: Guid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.guid == guid)
            .map(|e| e.data.as_slice())
    }

    /// The serialized length.
    pub fn encoded_len(&self) -> usize {
        (self.entries.len() + 1) * ENTRY_LEN
            + self.entries.iter().map(|e| e.data.len()).sum::<usize>()
    }

    /// Serialize: entries, terminator, then the certificates in order.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CertTableError> {
        let len = self.encoded_len();
        if u32::try_from(len).is_err() {
            return Err(CertTableError::TooLarge);
        }
        let mut out = vec![0u8; (self.entries.len() + 1) * ENTRY_LEN];
        let mut offset = out.len();
        for (i, e) in self.entries.iter().enumerate() {
            let o = i * ENTRY_LEN;
            out[o..o + 16].copy_from_slice(&e.guid.0);
            out[o + 16..o + 20].copy_from_slice(&(offset as u32).to_le_bytes());
            out[o + 20..o + 24].copy_from_slice(&(e.data.len() as u32).to_le_bytes());
            offset += e.data.len();
        }
        for e in &self.entries {
            out.extend_from_slice(&e.data);
        }
        Ok(out)
    }

    /// Write into a guest buffer of `buf.len()` bytes (a whole number of pages), or say how
    /// many pages are needed (the `ENOSPC` answer to `KVM_EXIT_SNP_REQ_CERTS`).
    pub fn write_to(&self, buf: &mut [u8]) -> Result<usize, CertTableError> {
        let bytes = self.to_bytes()?;
        if bytes.len() > buf.len() {
            return Err(CertTableError::TooSmall {
                needed: bytes.len(),
                pages: bytes.len().div_ceil(PAGE_SIZE),
                have: buf.len(),
            });
        }
        buf[..bytes.len()].copy_from_slice(&bytes);
        buf[bytes.len()..].fill(0);
        Ok(bytes.len())
    }

    /// Parse a table from an untrusted buffer.
    pub fn parse(buf: &[u8]) -> Result<Self, CertTableError> {
        let mut raw = Vec::new();
        let mut terminated = false;
        for (index, e) in buf.chunks_exact(ENTRY_LEN).enumerate() {
            let mut g = [0u8; 16];
            g.copy_from_slice(&e[..16]);
            let guid = Guid(g);
            let offset = u32::from_le_bytes([e[16], e[17], e[18], e[19]]);
            let length = u32::from_le_bytes([e[20], e[21], e[22], e[23]]);
            if guid.is_zero() {
                if offset != 0 || length != 0 {
                    return Err(CertTableError::ZeroGuid(index));
                }
                terminated = true;
                break;
            }
            raw.push((index, guid, offset, length));
        }
        if !terminated {
            return Err(CertTableError::MissingTerminator);
        }
        let data_start = (raw.len() + 1) * ENTRY_LEN;
        let mut table = CertTable::new();
        for (index, guid, offset, length) in raw {
            let start = offset as usize;
            let end = start.checked_add(length as usize);
            match end {
                Some(end) if start >= data_start && end <= buf.len() => {
                    table.push(guid, buf[start..end].to_vec())?;
                }
                _ => {
                    return Err(CertTableError::OutOfBounds {
                        index,
                        guid,
                        offset,
                        length,
                        size: buf.len(),
                    })
                }
            }
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_and_bytes() {
        assert_eq!(
            Guid::VCEK.to_string(),
            "63da758d-e664-4564-adc5-f4b93be8accd"
        );
        assert_eq!(&Guid::ARK.0[..4], &[0xa4, 0x06, 0xb4, 0xc0]);
        assert_eq!(
            Guid::CRL.to_string(),
            "92f81bc3-5811-4d3d-97ff-d19f88dc67ea"
        );
    }

    #[test]
    fn round_trip_and_errors() {
        let mut t = CertTable::new();
        t.push(Guid::VCEK, vec![1; 100]).unwrap();
        t.push(Guid::ASK, vec![2; 50]).unwrap();
        t.push(Guid::ARK, vec![]).unwrap();
        assert_eq!(
            t.push(Guid::ASK, vec![]),
            Err(CertTableError::Duplicate(Guid::ASK))
        );
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 4 * ENTRY_LEN + 150);
        assert_eq!(CertTable::parse(&b).unwrap(), t);
        let mut page = vec![0xffu8; PAGE_SIZE];
        assert_eq!(t.write_to(&mut page).unwrap(), b.len());
        assert_eq!(CertTable::parse(&page).unwrap(), t);
        let mut small = vec![0u8; 64];
        assert_eq!(
            t.write_to(&mut small),
            Err(CertTableError::TooSmall {
                needed: b.len(),
                pages: 1,
                have: 64
            })
        );
        assert_eq!(
            CertTable::parse(&b[..ENTRY_LEN * 2]),
            Err(CertTableError::MissingTerminator)
        );
        let mut oob = b.clone();
        oob[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            CertTable::parse(&oob),
            Err(CertTableError::OutOfBounds { index: 0, .. })
        ));
        let mut into_entries = b.clone();
        into_entries[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            CertTable::parse(&into_entries),
            Err(CertTableError::OutOfBounds { .. })
        ));
        let mut bad_term = b.clone();
        bad_term[3 * ENTRY_LEN + 16] = 1;
        assert_eq!(
            CertTable::parse(&bad_term),
            Err(CertTableError::ZeroGuid(3))
        );
        assert_eq!(CertTable::parse(&[0; ENTRY_LEN]).unwrap(), CertTable::new());
    }
}
