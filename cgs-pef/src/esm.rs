//! The ESM blob the guest hands to `UV_ESM`, in the simulator's format.
//!
//! On real PEF systems the guest's boot loader passes `UV_ESM` the address of an "ESM blob"
//! prepared by the guest owner: it carries the integrity information of the initial guest image
//! and keys wrapped for the machines allowed to run it. Its format is not public in our
//! references, so the simulator uses a simplified, documented stand-in with the same job: the
//! guest owner lists the guest-physical regions whose contents are to be protected and seals
//! them with a key the ultravisor also holds; the ultravisor refuses to make the guest secure if
//! the memory it is about to protect differs from what the owner sealed.
//!
//! Layout (little endian):
//!
//! ```text
//! 0   magic    b"CGSPEFSM"
//! 8   version  u32 = 1
//! 12  count    u32, 1..=64
//! 16  regions  count x { gpa u64, len u64 }   (4 KiB aligned, non-empty, increasing, disjoint)
//! ..  mac      [u8; 32] = HMAC-SHA-256(key, bytes[0..16+16*count] || contents of each region)
//! ```

use std::fmt;

use hmac::Mac;

use crate::key::UvKey;

/// The blob's magic.
pub const ESM_MAGIC: [u8; 8] = *b"CGSPEFSM";
/// The only blob version.
pub const ESM_VERSION: u32 = 1;
/// Most regions one blob may list.
pub const ESM_MAX_REGIONS: usize = 64;
/// Length of the fixed header.
pub const ESM_HEADER_LEN: usize = 16;
/// Length of one region entry.
pub const ESM_REGION_LEN: usize = 16;
/// Length of the MAC.
pub const ESM_MAC_LEN: usize = 32;
/// Alignment of protected regions: 4 KiB, the smallest POWER page.
pub const ESM_ALIGN: u64 = 4096;

/// A guest-physical range the ESM blob protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsmRegion {
    /// First byte (4 KiB aligned).
    pub gpa: u64,
    /// Length in bytes (a non-zero multiple of 4 KiB).
    pub len: u64,
}

impl EsmRegion {
    /// One past the last byte (checked at parse time not to overflow).
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.len)
    }
}

/// Why an ESM blob was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsmError {
    /// Shorter than its header says, or longer than needed.
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Wrong magic.
    Magic,
    /// Unknown version.
    Version(u32),
    /// Region count 0 or above [`ESM_MAX_REGIONS`].
    RegionCount(u32),
    /// A region is empty, unaligned or wraps.
    Region {
        /// Index in the table.
        index: usize,
        /// Why.
        why: &'static str,
    },
    /// Regions are not increasing and disjoint.
    Order {
        /// Index of the offending region.
        index: usize,
    },
    /// A region is not backed by guest memory.
    OutOfMemory {
        /// Index of the region.
        index: usize,
    },
    /// The memory contents do not match the MAC.
    Integrity,
}

impl fmt::Display for EsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EsmError::Length { expected, actual } => {
                write!(f, "ESM blob is {actual} bytes, expected {expected}")
            }
            EsmError::Magic => f.write_str("ESM blob has a bad magic"),
            EsmError::Version(v) => write!(f, "ESM blob version {v} is not supported"),
            EsmError::RegionCount(n) => {
                write!(
                    f,
                    "ESM blob lists {n} regions (1..={ESM_MAX_REGIONS} allowed)"
                )
            }
            EsmError::Region { index, why } => write!(f, "ESM region {index} {why}"),
            EsmError::Order { index } => {
                write!(
                    f,
                    "ESM region {index} overlaps or precedes the previous one"
                )
            }
            EsmError::OutOfMemory { index } => {
                write!(f, "ESM region {index} is not backed by guest memory")
            }
            EsmError::Integrity => {
                f.write_str("guest memory does not match the ESM blob's integrity value")
            }
        }
    }
}

impl std::error::Error for EsmError {}

impl From<EsmError> for cgs_core::Error {
    fn from(e: EsmError) -> Self {
        cgs_core::Error::invalid_input("ESM blob", e.to_string())
    }
}

/// A parsed (structurally valid) ESM blob. Its MAC is only checked by [`EsmBlob::verify`].
#[derive(Clone, PartialEq, Eq)]
pub struct EsmBlob {
    regions: Vec<EsmRegion>,
    mac: [u8; ESM_MAC_LEN],
}

impl fmt::Debug for EsmBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsmBlob")
            .field("regions", &self.regions)
            .finish_non_exhaustive()
    }
}

impl EsmBlob {
    /// The encoded length of a blob with `count` regions.
    pub const fn encoded_len(count: usize) -> usize {
        ESM_HEADER_LEN + count * ESM_REGION_LEN + ESM_MAC_LEN
    }

    /// The region count a header announces (for readers that fetch the blob in two steps), with
    /// the magic, version and count checked.
    pub fn peek_count(header: &[u8]) -> Result<usize, EsmError> {
        if header.len() < ESM_HEADER_LEN {
            return Err(EsmError::Length {
                expected: ESM_HEADER_LEN,
                actual: header.len(),
            });
        }
        if header[..8] != ESM_MAGIC {
            return Err(EsmError::Magic);
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != ESM_VERSION {
            return Err(EsmError::Version(version));
        }
        let count = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        if count == 0 || count as usize > ESM_MAX_REGIONS {
            return Err(EsmError::RegionCount(count));
        }
        Ok(count as usize)
    }

    /// Parse an encoded blob (exact length).
    pub fn parse(bytes: &[u8]) -> Result<Self, EsmError> {
        let count = Self::peek_count(bytes)?;
        let expected = Self::encoded_len(count);
        if bytes.len() != expected {
            return Err(EsmError::Length {
                expected,
                actual: bytes.len(),
            });
        }
        let mut regions = Vec::with_capacity(count);
        for index in 0..count {
            let at = ESM_HEADER_LEN + index * ESM_REGION_LEN;
            let gpa = read_u64(&bytes[at..at + 8]);
            let len = read_u64(&bytes[at + 8..at + 16]);
            regions.push(EsmRegion { gpa, len });
        }
        validate_regions(&regions)?;
        let mut mac = [0u8; ESM_MAC_LEN];
        mac.copy_from_slice(&bytes[expected - ESM_MAC_LEN..]);
        Ok(EsmBlob { regions, mac })
    }

    /// Seal `regions` of memory (read through `read(gpa, buf)`) with `key`: what the guest
    /// owner's tooling does when it prepares the image.
    pub fn seal<E>(
        key: &UvKey,
        regions: &[EsmRegion],
        read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Self, SealError<E>> {
        validate_regions(regions).map_err(SealError::Esm)?;
        let mut blob = EsmBlob {
            regions: regions.to_vec(),
            mac: [0; ESM_MAC_LEN],
        };
        blob.mac = blob.compute_mac(key, read).map_err(SealError::Read)?;
        Ok(blob)
    }

    /// The protected regions.
    pub fn regions(&self) -> &[EsmRegion] {
        &self.regions
    }

    /// The encoded blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header_and_table();
        out.extend_from_slice(&self.mac);
        out
    }

    /// Check the MAC against memory read through `read` (constant-time comparison).
    pub fn verify<E>(
        &self,
        key: &UvKey,
        read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Result<(), EsmError>, E> {
        let mut mac = key.mac();
        mac.update(&self.header_and_table());
        feed_regions(&mut mac, &self.regions, read)?;
        Ok(mac.verify_slice(&self.mac).map_err(|_| EsmError::Integrity))
    }

    fn header_and_table(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(self.regions.len()));
        out.extend_from_slice(&ESM_MAGIC);
        out.extend_from_slice(&ESM_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for r in &self.regions {
            out.extend_from_slice(&r.gpa.to_le_bytes());
            out.extend_from_slice(&r.len.to_le_bytes());
        }
        out
    }

    fn compute_mac<E>(
        &self,
        key: &UvKey,
        read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<[u8; ESM_MAC_LEN], E> {
        let mut mac = key.mac();
        mac.update(&self.header_and_table());
        feed_regions(&mut mac, &self.regions, read)?;
        Ok(mac.finalize().into_bytes().into())
    }
}

/// Why [`EsmBlob::seal`] failed.
#[derive(Debug)]
pub enum SealError<E> {
    /// The region list is invalid.
    Esm(EsmError),
    /// Reading memory failed.
    Read(E),
}

fn feed_regions<E>(
    mac: &mut crate::key::HmacSha256,
    regions: &[EsmRegion],
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    // HMAC is a stream: the chunk size does not change the value.
    let mut chunk = vec![0u8; ESM_ALIGN as usize];
    for r in regions {
        let mut gpa = r.gpa;
        while gpa < r.end() {
            read(gpa, &mut chunk)?;
            mac.update(&chunk);
            gpa += ESM_ALIGN;
        }
    }
    Ok(())
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn validate_regions(regions: &[EsmRegion]) -> Result<(), EsmError> {
    if regions.is_empty() || regions.len() > ESM_MAX_REGIONS {
        return Err(EsmError::RegionCount(regions.len() as u32));
    }
    let mut prev_end = 0u64;
    for (index, r) in regions.iter().enumerate() {
        if r.len == 0 {
            return Err(EsmError::Region {
                index,
                why: "is empty",
            });
        }
        if r.gpa % ESM_ALIGN != 0 || r.len % ESM_ALIGN != 0 {
            return Err(EsmError::Region {
                index,
                why: "is not 4 KiB aligned",
            });
        }
        let Some(end) = r.gpa.checked_add(r.len) else {
            return Err(EsmError::Region {
                index,
                why: "wraps the address space",
            });
        };
        if index > 0 && r.gpa < prev_end {
            return Err(EsmError::Order { index });
        }
        prev_end = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PAGE_SIZE;
    use std::convert::Infallible;

    fn mem(gpa: u64, buf: &mut [u8]) -> Result<(), Infallible> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (gpa as usize / PAGE_SIZE as usize + i) as u8;
        }
        Ok(())
    }

    fn regions() -> Vec<EsmRegion> {
        vec![
            EsmRegion {
                gpa: 0,
                len: PAGE_SIZE,
            },
            EsmRegion {
                gpa: 3 * PAGE_SIZE,
                len: 2 * PAGE_SIZE,
            },
        ]
    }

    #[test]
    fn seal_encode_parse_verify_round_trip() {
        let key = UvKey::from_bytes([1; 32]);
        let blob = EsmBlob::seal(&key, &regions(), mem).unwrap();
        let bytes = blob.to_bytes();
        assert_eq!(bytes.len(), EsmBlob::encoded_len(2));
        let parsed = EsmBlob::parse(&bytes).unwrap();
        assert_eq!(parsed, blob);
        assert_eq!(parsed.verify(&key, mem).unwrap(), Ok(()));
        // Another key, or other contents, fail.
        let other = UvKey::from_bytes([2; 32]);
        assert_eq!(
            parsed.verify(&other, mem).unwrap(),
            Err(EsmError::Integrity)
        );
        let tampered = |gpa: u64, buf: &mut [u8]| {
            mem(gpa, buf)?;
            if gpa == 4 * PAGE_SIZE {
                buf[17] ^= 1;
            }
            Ok::<(), Infallible>(())
        };
        assert_eq!(
            parsed.verify(&key, tampered).unwrap(),
            Err(EsmError::Integrity)
        );
    }

    #[test]
    fn malformed_blobs_are_refused_with_typed_errors() {
        let key = UvKey::from_bytes([1; 32]);
        let good = EsmBlob::seal(&key, &regions(), mem).unwrap().to_bytes();
        assert!(matches!(
            EsmBlob::parse(&good[..10]),
            Err(EsmError::Length { .. })
        ));
        assert!(matches!(
            EsmBlob::parse(&good[..good.len() - 1]),
            Err(EsmError::Length { .. })
        ));
        let mut b = good.clone();
        b[0] ^= 1;
        assert_eq!(EsmBlob::parse(&b), Err(EsmError::Magic));
        let mut b = good.clone();
        b[8] = 2;
        assert_eq!(EsmBlob::parse(&b), Err(EsmError::Version(2)));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(EsmBlob::parse(&b), Err(EsmError::RegionCount(0)));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(EsmBlob::parse(&b), Err(EsmError::RegionCount(65)));
        let mut b = good.clone();
        b[16] = 1; // region 0 gpa unaligned
        assert!(matches!(
            EsmBlob::parse(&b),
            Err(EsmError::Region { index: 0, .. })
        ));
        let mut b = good.clone();
        b[24..32].copy_from_slice(&0u64.to_le_bytes()); // region 0 empty
        assert!(matches!(
            EsmBlob::parse(&b),
            Err(EsmError::Region { index: 0, .. })
        ));
        let mut b = good.clone();
        b[32..40].copy_from_slice(&0u64.to_le_bytes()); // region 1 at 0: overlaps region 0
        assert_eq!(EsmBlob::parse(&b), Err(EsmError::Order { index: 1 }));
        let mut b = good;
        b[32..40].copy_from_slice(&(u64::MAX - PAGE_SIZE + 1).to_le_bytes());
        assert!(matches!(
            EsmBlob::parse(&b),
            Err(EsmError::Region { index: 1, .. })
        ));
        assert!(matches!(
            EsmBlob::seal(&key, &[], mem),
            Err(SealError::Esm(EsmError::RegionCount(0)))
        ));
    }

    #[test]
    fn debug_does_not_print_the_mac() {
        let key = UvKey::from_bytes([1; 32]);
        let blob = EsmBlob::seal(&key, &regions(), mem).unwrap();
        assert!(!format!("{blob:?}").contains("mac"));
    }
}
