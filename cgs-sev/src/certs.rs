//! The SNP extended-guest-request certificate table (GHCB spec, "SNP Extended Guest Request").
//!
//! The table is an array of 24-byte entries `{guid[16], offset u32, length u32}` ended by an
//! all-zero entry, followed by the certificates; offsets count from the start of the table. The
//! VMM writes it into the guest's buffer for `KVM_EXIT_SNP_REQ_CERTS` (kernels with
//! `KVM_SEV_SNP_ENABLE_REQ_CERTS`); the guest parses it. Both directions are here, and parsing
//! is for untrusted input: every bound is checked and every failure is a [`CertTableError`].
//! [`ReqCertsExit`] reads the exit from `kvm_run` and stores the answer (`ret`, `npages`).

/// Size of one table entry.
pub const ENTRY_LEN: usize = 24;
/// Guest page size (the guest's buffer is `npages` pages).
pub const PAGE_SIZE: usize = 4096;

pub use crate::measure::guid::Guid;

/// AMD root key.
pub const ARK: Guid = Guid::from_fields(
    0xc0b406a4,
    0xa803,
    0x4952,
    [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
);
/// AMD SEV key.
pub const ASK: Guid = Guid::from_fields(
    0x4ab7b379,
    0xbbac,
    0x4fe4,
    [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
);
/// Versioned chip endorsement key.
pub const VCEK: Guid = Guid::from_fields(
    0x63da758d,
    0xe664,
    0x4564,
    [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
);
/// Versioned loaded endorsement key.
pub const VLEK: Guid = Guid::from_fields(
    0xa8074bc2,
    0xa25a,
    0x483e,
    [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
);
/// Certificate revocation list.
pub const CRL: Guid = Guid::from_fields(
    0x92f81bc3,
    0x5811,
    0x4d3d,
    [0x97, 0xff, 0xd1, 0x9f, 0x88, 0xdc, 0x67, 0xea],
);

fn is_zero(g: &Guid) -> bool {
    g.0 == [0; 16]
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
    /// What it is ([`VCEK`], …).
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
        if is_zero(&guid) {
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
            if is_zero(&guid) {
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

/// A `KVM_EXIT_SNP_REQ_CERTS` exit (7.x kernels, after `KVM_SEV_SNP_ENABLE_REQ_CERTS`): the
/// guest's certificate buffer (`kvm_run.snp_req_certs`, kernel-abi.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReqCertsExit {
    /// Guest-physical address of the buffer (4 KiB aligned, checked by KVM).
    pub gpa: u64,
    /// Its size in pages.
    pub npages: u64,
}

/// The VMM's answer to a [`ReqCertsExit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqCertsAnswer {
    /// The table was written: KVM issues the guest request (`ret` = 0).
    Written,
    /// The buffer is too small; the guest is told how many pages it needs (`ret` = `ENOSPC`).
    TooSmall {
        /// Pages needed.
        pages: u64,
    },
    /// Ask the guest to retry later (`ret` = `EAGAIN`), e.g. while certificates are updated.
    Busy,
    /// A generic failure (`ret` = `EIO`).
    Failed,
}

impl ReqCertsAnswer {
    /// The `ret` value for `kvm_run.snp_req_certs`.
    pub fn ret(self) -> u64 {
        match self {
            ReqCertsAnswer::Written => 0,
            ReqCertsAnswer::TooSmall { .. } => libc::ENOSPC as u64,
            ReqCertsAnswer::Busy => libc::EAGAIN as u64,
            ReqCertsAnswer::Failed => libc::EIO as u64,
        }
    }
}

// Offsets inside the 256-byte exit union of `struct kvm_run` (which starts at byte 32).
const REQ_CERTS_GPA: usize = 0;
const REQ_CERTS_NPAGES: usize = 8;
const REQ_CERTS_RET: usize = 16;

fn union_bytes(run: &kvm_bindings::kvm_run) -> [u8; 256] {
    // SAFETY: the union is 256 plain bytes in every variant; any bit pattern is a valid
    // `[c_char; 256]`.
    let raw = unsafe { run.__bindgen_anon_1.padding };
    raw.map(|c| c as u8)
}

impl ReqCertsExit {
    /// The exit in `run`, if its reason is `KVM_EXIT_SNP_REQ_CERTS`.
    pub fn from_kvm_run(run: &kvm_bindings::kvm_run) -> Option<Self> {
        if run.exit_reason != crate::uapi::KVM_EXIT_SNP_REQ_CERTS {
            return None;
        }
        let u = union_bytes(run);
        let at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&u[o..o + 8]);
            u64::from_le_bytes(a)
        };
        Some(ReqCertsExit {
            gpa: at(REQ_CERTS_GPA),
            npages: at(REQ_CERTS_NPAGES),
        })
    }

    /// The buffer length in bytes (`None` if `npages` overflows).
    pub fn buffer_len(&self) -> Option<usize> {
        usize::try_from(self.npages).ok()?.checked_mul(PAGE_SIZE)
    }

    /// Write `table` into the guest's buffer (the VMM's mapping of `[gpa, gpa + npages·4K)`).
    pub fn answer(&self, table: &CertTable, guest_buf: &mut [u8]) -> ReqCertsAnswer {
        if self.buffer_len() != Some(guest_buf.len()) {
            return ReqCertsAnswer::Failed;
        }
        match table.write_to(guest_buf) {
            Ok(_) => ReqCertsAnswer::Written,
            Err(CertTableError::TooSmall { pages, .. }) => ReqCertsAnswer::TooSmall {
                pages: pages as u64,
            },
            Err(_) => ReqCertsAnswer::Failed,
        }
    }

    /// Store `answer` in `run` before the next `KVM_RUN` (`ret`, and `npages` when too small).
    pub fn complete(run: &mut kvm_bindings::kvm_run, answer: ReqCertsAnswer) {
        let mut u = union_bytes(run);
        if let ReqCertsAnswer::TooSmall { pages } = answer {
            u[REQ_CERTS_NPAGES..REQ_CERTS_NPAGES + 8].copy_from_slice(&pages.to_le_bytes());
        }
        u[REQ_CERTS_RET..REQ_CERTS_RET + 8].copy_from_slice(&answer.ret().to_le_bytes());
        run.__bindgen_anon_1.padding = u.map(|b| b as std::os::raw::c_char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_and_bytes() {
        assert_eq!(VCEK.to_string(), "63da758d-e664-4564-adc5-f4b93be8accd");
        assert_eq!(&ARK.0[..4], &[0xa4, 0x06, 0xb4, 0xc0]);
        assert_eq!(CRL.to_string(), "92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
    }

    #[test]
    fn round_trip_and_errors() {
        let mut t = CertTable::new();
        t.push(VCEK, vec![1; 100]).unwrap();
        t.push(ASK, vec![2; 50]).unwrap();
        t.push(ARK, vec![]).unwrap();
        assert_eq!(t.push(ASK, vec![]), Err(CertTableError::Duplicate(ASK)));
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

    #[test]
    fn req_certs_exit_round_trip() {
        let mut run = kvm_bindings::kvm_run {
            exit_reason: crate::uapi::KVM_EXIT_SNP_REQ_CERTS,
            ..Default::default()
        };
        let mut u = [0 as std::os::raw::c_char; 256];
        u[..8].copy_from_slice(&0x1000u64.to_le_bytes().map(|b| b as std::os::raw::c_char));
        u[8..16].copy_from_slice(&1u64.to_le_bytes().map(|b| b as std::os::raw::c_char));
        run.__bindgen_anon_1.padding = u;
        let exit = ReqCertsExit::from_kvm_run(&run).unwrap();
        assert_eq!(
            exit,
            ReqCertsExit {
                gpa: 0x1000,
                npages: 1
            }
        );
        let mut t = CertTable::new();
        t.push(VCEK, vec![7; 5000]).unwrap();
        let mut buf = vec![0u8; 4096];
        let a = exit.answer(&t, &mut buf);
        assert_eq!(a, ReqCertsAnswer::TooSmall { pages: 2 });
        ReqCertsExit::complete(&mut run, a);
        let u = union_bytes(&run);
        assert_eq!(u64::from_le_bytes(u[8..16].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(u[16..24].try_into().unwrap()), 28);
        assert_eq!(
            exit.answer(&CertTable::new(), &mut buf),
            ReqCertsAnswer::Written
        );
        assert_eq!(exit.answer(&t, &mut [0u8; 10]), ReqCertsAnswer::Failed);
        run.exit_reason = 2;
        assert!(ReqCertsExit::from_kvm_run(&run).is_none());
    }
}
