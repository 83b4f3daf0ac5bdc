//! The SEV migration stream: a versioned, self-describing byte stream from source to destination.
//!
//! ```text
//! stream   := preamble record* finish
//! preamble := magic "CGSSEVMG" (8) ‖ version u16 ‖ flags u16 (0)
//! record   := tag u8 ‖ flags u8 (0) ‖ reserved u16 (0) ‖ seq u32 ‖ len u32 ‖ payload[len]
//! order    := Header Session (Round Page{Round.pages})+ SharedRanges Vcpu{Header.vcpus} Finish
//! ```
//!
//! All integers are little-endian. `seq` numbers records from 0 (the header) without gaps; a
//! record whose `seq` is lower than expected is a replay, a higher one means records were dropped
//! or reordered. Every payload has an exact (or bounded) length for its type, a page's GPA must lie
//! in the header's memory layout and appear at most once per dirty round, vCPU records come in index
//! order, and the [`Finish`] record carries the number of records before it and SHA-256 over every
//! byte before it. [`Encoder`] and [`Decoder`] share one [`Sequencer`], so the encoder cannot
//! produce a stream the decoder refuses.
//!
//! Integrity: private pages are authenticated by the firmware (the packet MAC under the transport
//! integrity key); shared pages, vCPU state and the record order are protected only by the
//! checksum, which detects corruption but, being unkeyed, not a deliberate rewrite. This is the
//! SEV threat model: the host can already read and change shared memory and (legacy SEV) vCPU
//! registers.

use std::collections::HashSet;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::checksum::Checksum;
use super::vcpu::{VcpuState, VCPU_STATE_LEN};
use super::wire::{Reader, Writer};
use crate::session::{PacketHeader, PACKET_HEADER_LEN};

/// The first eight bytes of every stream.
pub const STREAM_MAGIC: [u8; 8] = *b"CGSSEVMG";
/// The stream version this crate writes and reads.
pub const STREAM_VERSION: u16 = 1;
/// Length of the preamble (magic, version, flags).
pub const PREAMBLE_LEN: usize = 12;
/// Length of a record's frame header (tag, flags, reserved, seq, len).
pub const FRAME_HEADER_LEN: usize = 12;
/// Length of the finish record (frame header, record count, SHA-256).
pub const FINISH_RECORD_LEN: usize = FRAME_HEADER_LEN + 4 + 32;
/// Guest page size the stream moves (KVM moves one 4 KiB page per `SEND_UPDATE_DATA`).
pub const PAGE_SIZE: u64 = 4096;
/// Largest payload any record may have.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest certificate or session blob (`SEV_FW_BLOB_MAX_SIZE`, what KVM copies at most).
pub const MAX_BLOB: usize = 0x4000;
/// Most memory regions a header may describe.
pub const MAX_REGIONS: usize = 64;
/// Most vCPUs a header may announce (KVM_MAX_VCPUS on x86).
pub const MAX_VCPUS: u32 = 4096;
/// Most shared ranges a stream may carry.
pub const MAX_SHARED_RANGES: usize = (MAX_PAYLOAD - 4) / 16;
/// Header `flavour` for legacy SEV, the only flavour KVM can migrate.
pub const FLAVOUR_SEV: u8 = 0;

/// Why a stream was refused. Every variant is final: after it the decoder accepts nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The input ended before the stream did.
    #[error("stream truncated: ended inside {inside} ({have} bytes buffered)")]
    Truncated {
        /// What was being read.
        inside: &'static str,
        /// Bytes received but not yet forming a whole item.
        have: usize,
    },
    /// The first eight bytes are not [`STREAM_MAGIC`].
    #[error("not a cgs SEV migration stream (bad magic)")]
    BadMagic,
    /// The stream was written by a version this decoder does not read.
    #[error("unsupported stream version {found} (this decoder reads version {supported})")]
    UnsupportedVersion {
        /// The stream's version.
        found: u16,
        /// The version this crate reads.
        supported: u16,
    },
    /// A record tag this version does not define.
    #[error("unknown record tag {tag:#x} (record {seq})")]
    UnknownRecord {
        /// The tag.
        tag: u8,
        /// Its sequence number.
        seq: u32,
    },
    /// A record declares a payload longer than any record of its kind may have.
    #[error("{record} record declares {len} payload bytes (at most {max})")]
    RecordTooLarge {
        /// The record kind.
        record: &'static str,
        /// The declared length.
        len: u32,
        /// The largest allowed.
        max: usize,
    },
    /// A record that was already received arrived again.
    #[error("record {seq} replayed (expected record {expected})")]
    Replayed {
        /// Its sequence number.
        seq: u32,
        /// The sequence number expected.
        expected: u32,
    },
    /// Records are missing or arrived out of order.
    #[error(
        "record {seq} arrived where record {expected} was expected (records dropped or reordered)"
    )]
    Reordered {
        /// Its sequence number.
        seq: u32,
        /// The sequence number expected.
        expected: u32,
    },
    /// A record of the wrong kind for this point of the stream.
    #[error("unexpected {found} record: expected {expected}")]
    UnexpectedRecord {
        /// The record kind received.
        found: &'static str,
        /// What the stream order allows here.
        expected: &'static str,
    },
    /// A record's contents are invalid.
    #[error("malformed {record} record: {why}")]
    Malformed {
        /// The record kind.
        record: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The checksum in the finish record does not match the bytes received.
    #[error("stream checksum mismatch: the stream was corrupted")]
    ChecksumMismatch,
    /// Bytes follow the finish record.
    #[error("bytes follow the end of the stream (at offset {at})")]
    TrailingData {
        /// The stream's length: where the unexpected bytes begin.
        at: u64,
    },
}

/// One guest-physical memory region of the migrated guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemoryRegion {
    /// First guest-physical address (4 KiB aligned).
    pub gpa: u64,
    /// Length in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
}

/// The guest's memory layout: sorted, non-overlapping, page-aligned regions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct MemoryLayout {
    regions: Vec<MemoryRegion>,
}

impl MemoryLayout {
    /// Validate and build a layout.
    pub fn new(regions: Vec<MemoryRegion>) -> Result<Self, StreamError> {
        let bad = |why: String| StreamError::Malformed {
            record: "header",
            why,
        };
        if regions.is_empty() || regions.len() > MAX_REGIONS {
            return Err(bad(format!(
                "{} memory regions (1..={MAX_REGIONS} allowed)",
                regions.len()
            )));
        }
        let mut prev_end = 0u64;
        for (i, r) in regions.iter().enumerate() {
            if r.size == 0 || r.gpa % PAGE_SIZE != 0 || r.size % PAGE_SIZE != 0 {
                return Err(bad(format!(
                    "region [{:#x}, +{:#x}) is empty or not 4 KiB aligned",
                    r.gpa, r.size
                )));
            }
            let end = r.gpa.checked_add(r.size).ok_or_else(|| {
                bad(format!(
                    "region [{:#x}, +{:#x}) wraps the address space",
                    r.gpa, r.size
                ))
            })?;
            if i > 0 && r.gpa < prev_end {
                return Err(bad(format!(
                    "region [{:#x}, +{:#x}) overlaps or precedes the previous one",
                    r.gpa, r.size
                )));
            }
            prev_end = end;
        }
        Ok(MemoryLayout { regions })
    }

    /// The regions, in address order.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions
    }

    /// Total number of 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.regions.iter().map(|r| r.size / PAGE_SIZE).sum()
    }

    /// The dense index (0..pages) of the page at `gpa`, if `gpa` is a page-aligned address of the
    /// layout.
    pub fn page_index(&self, gpa: u64) -> Option<u64> {
        if !gpa.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let mut base = 0u64;
        for r in &self.regions {
            if gpa >= r.gpa && gpa - r.gpa < r.size {
                return Some(base + (gpa - r.gpa) / PAGE_SIZE);
            }
            base += r.size / PAGE_SIZE;
        }
        None
    }

    /// Whether `[gpa, gpa + pages * 4 KiB)` lies inside one region.
    pub fn contains_range(&self, gpa: u64, pages: u64) -> bool {
        let Some(len) = pages.checked_mul(PAGE_SIZE) else {
            return false;
        };
        gpa.is_multiple_of(PAGE_SIZE)
            && pages != 0
            && self
                .regions
                .iter()
                .any(|r| gpa >= r.gpa && gpa - r.gpa <= r.size && r.size - (gpa - r.gpa) >= len)
    }

    /// Every page-aligned GPA of the layout, in order.
    pub fn page_gpas(&self) -> impl Iterator<Item = u64> + '_ {
        self.regions
            .iter()
            .flat_map(|r| (0..r.size / PAGE_SIZE).map(move |i| r.gpa + i * PAGE_SIZE))
    }
}

/// The stream header: what is migrated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// The guest's SEV policy (the destination's firmware checks it against the session).
    pub policy: u32,
    /// Number of vCPUs; exactly this many vCPU records follow the pages.
    pub vcpus: u32,
    /// The guest memory layout; every page record lies in it.
    pub layout: MemoryLayout,
    /// A random identifier of this migration (for logs; the checksum covers it).
    pub stream_id: [u8; 16],
}

/// The transport session the destination's firmware needs for `RECEIVE_START`.
#[derive(Clone, PartialEq, Eq)]
pub struct TransportSession {
    /// The source platform's PDH certificate.
    pub pdh_cert: Vec<u8>,
    /// The session blob from `SEND_START` (nonce, wrapped TEK/TIK, MACs; no key in clear).
    pub session: Vec<u8>,
}

impl std::fmt::Debug for TransportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSession")
            .field("pdh_cert_len", &self.pdh_cert.len())
            .field("session_len", &self.session.len())
            .finish()
    }
}

/// The start of one dirty round: `pages` page records follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Round number, 0 for the first full pass, then 1, 2, … without gaps.
    pub index: u32,
    /// How many page records the round carries.
    pub pages: u32,
}

/// A shared (unencrypted) page, sent in plain.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedPage {
    /// Its GPA.
    pub gpa: u64,
    /// The 4 KiB of contents.
    pub data: Vec<u8>,
}

/// A private page, as `SEND_UPDATE_DATA` packaged it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedPage {
    /// Its GPA.
    pub gpa: u64,
    /// The packet header (IV, MAC).
    pub header: PacketHeader,
    /// The transport buffer (ciphertext under the TEK), 4 KiB.
    pub transport: Vec<u8>,
}

impl std::fmt::Debug for SharedPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedPage({:#x}, {} bytes)", self.gpa, self.data.len())
    }
}

impl std::fmt::Debug for EncryptedPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EncryptedPage({:#x}, {} bytes)",
            self.gpa,
            self.transport.len()
        )
    }
}

/// A range of shared pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpaRange {
    /// First GPA (4 KiB aligned).
    pub gpa: u64,
    /// Number of 4 KiB pages (non-zero).
    pub pages: u64,
}

/// One vCPU's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VcpuRecord {
    /// vCPU index (0..vcpus, in order).
    pub index: u32,
    /// Its registers.
    pub state: VcpuState,
}

/// The end of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// Number of records before this one.
    pub records: u32,
    /// SHA-256 of every stream byte before this record's frame.
    pub digest: [u8; 32],
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// What is migrated.
    Header(StreamHeader),
    /// The transport session.
    Session(TransportSession),
    /// The start of a dirty round.
    Round(Round),
    /// A shared page in plain.
    SharedPage(SharedPage),
    /// A private page, encrypted for transport.
    EncryptedPage(EncryptedPage),
    /// The final list of shared ranges (the guest's page-encryption status).
    SharedRanges(Vec<GpaRange>),
    /// One vCPU's registers (boxed: the largest record).
    Vcpu(Box<VcpuRecord>),
    /// End of stream with checksum.
    Finish(Finish),
}

const TAG_HEADER: u8 = 1;
const TAG_SESSION: u8 = 2;
const TAG_ROUND: u8 = 3;
const TAG_SHARED_PAGE: u8 = 4;
const TAG_ENCRYPTED_PAGE: u8 = 5;
const TAG_SHARED_RANGES: u8 = 6;
const TAG_VCPU: u8 = 7;
const TAG_FINISH: u8 = 8;

const SHARED_PAGE_LEN: usize = 8 + PAGE_SIZE as usize;
const ENCRYPTED_PAGE_LEN: usize = 8 + PACKET_HEADER_LEN + 4 + PAGE_SIZE as usize;
const HEADER_FIXED_LEN: usize = 4 + 4 + 4 + 4 + 16 + 4;

impl Record {
    /// The record kind's name, as errors use it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Header(_) => "header",
            Record::Session(_) => "session",
            Record::Round(_) => "round",
            Record::SharedPage(_) => "shared page",
            Record::EncryptedPage(_) => "encrypted page",
            Record::SharedRanges(_) => "shared ranges",
            Record::Vcpu(_) => "vcpu",
            Record::Finish(_) => "finish",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Record::Header(_) => TAG_HEADER,
            Record::Session(_) => TAG_SESSION,
            Record::Round(_) => TAG_ROUND,
            Record::SharedPage(_) => TAG_SHARED_PAGE,
            Record::EncryptedPage(_) => TAG_ENCRYPTED_PAGE,
            Record::SharedRanges(_) => TAG_SHARED_RANGES,
            Record::Vcpu(_) => TAG_VCPU,
            Record::Finish(_) => TAG_FINISH,
        }
    }

    fn encode_payload(&self) -> Result<Vec<u8>, StreamError> {
        let mut w = Writer::default();
        match self {
            Record::Header(h) => {
                w.u32(h.policy)
                    .u8(FLAVOUR_SEV)
                    .bytes(&[0; 3])
                    .u32(h.vcpus)
                    .u32(PAGE_SIZE as u32)
                    .bytes(&h.stream_id)
                    .u32(h.layout.regions.len() as u32);
                for r in &h.layout.regions {
                    w.u64(r.gpa).u64(r.size);
                }
            }
            Record::Session(s) => {
                for (field, blob) in [("PDH certificate", &s.pdh_cert), ("session", &s.session)] {
                    if blob.is_empty() || blob.len() > MAX_BLOB {
                        return Err(StreamError::Malformed {
                            record: "session",
                            why: format!("{field} length {} is outside 1..={MAX_BLOB}", blob.len()),
                        });
                    }
                    w.blob(blob);
                }
            }
            Record::Round(r) => {
                w.u32(r.index).u32(r.pages);
            }
            Record::SharedPage(p) => {
                check_page_len("shared page", p.data.len())?;
                w = Writer::with_capacity(SHARED_PAGE_LEN);
                w.u64(p.gpa).bytes(&p.data);
            }
            Record::EncryptedPage(p) => {
                check_page_len("encrypted page", p.transport.len())?;
                w = Writer::with_capacity(ENCRYPTED_PAGE_LEN);
                w.u64(p.gpa).bytes(&p.header.to_bytes()).blob(&p.transport);
            }
            Record::SharedRanges(ranges) => {
                if ranges.len() > MAX_SHARED_RANGES {
                    return Err(StreamError::Malformed {
                        record: "shared ranges",
                        why: format!("{} ranges (at most {MAX_SHARED_RANGES})", ranges.len()),
                    });
                }
                w.u32(ranges.len() as u32);
                for r in ranges {
                    w.u64(r.gpa).u64(r.pages);
                }
            }
            Record::Vcpu(v) => {
                w.u32(v.index);
                v.state.encode(&mut w);
            }
            Record::Finish(f) => {
                w.u32(f.records).bytes(&f.digest);
            }
        }
        Ok(w.buf)
    }

    fn decode(tag: u8, seq: u32, payload: &[u8]) -> Result<Record, StreamError> {
        let rec = match tag {
            TAG_HEADER => {
                let mut r = Reader::new(payload, "header");
                let policy = r.u32()?;
                let flavour = r.u8()?;
                let reserved = r.array::<3>()?;
                let vcpus = r.u32()?;
                let page_size = r.u32()?;
                let stream_id = r.array::<16>()?;
                let count = r.u32()? as usize;
                let bad = |why: String| StreamError::Malformed {
                    record: "header",
                    why,
                };
                if flavour != FLAVOUR_SEV {
                    return Err(bad(format!(
                        "flavour {flavour} is not legacy SEV (the only one KVM can migrate)"
                    )));
                }
                if reserved != [0; 3] {
                    return Err(bad("reserved bytes are not zero".into()));
                }
                if !(1..=MAX_VCPUS).contains(&vcpus) {
                    return Err(bad(format!("{vcpus} vCPUs (1..={MAX_VCPUS} allowed)")));
                }
                if u64::from(page_size) != PAGE_SIZE {
                    return Err(bad(format!("page size {page_size} is not 4096")));
                }
                if count == 0 || count > MAX_REGIONS {
                    return Err(bad(format!(
                        "{count} memory regions (1..={MAX_REGIONS} allowed)"
                    )));
                }
                let mut regions = Vec::with_capacity(count);
                for _ in 0..count {
                    regions.push(MemoryRegion {
                        gpa: r.u64()?,
                        size: r.u64()?,
                    });
                }
                r.finish()?;
                Record::Header(StreamHeader {
                    policy,
                    vcpus,
                    layout: MemoryLayout::new(regions)?,
                    stream_id,
                })
            }
            TAG_SESSION => {
                let mut r = Reader::new(payload, "session");
                let pdh_cert = r.blob("PDH certificate", MAX_BLOB)?.to_vec();
                let session = r.blob("session", MAX_BLOB)?.to_vec();
                r.finish()?;
                Record::Session(TransportSession { pdh_cert, session })
            }
            TAG_ROUND => {
                let mut r = Reader::new(payload, "round");
                let index = r.u32()?;
                let pages = r.u32()?;
                r.finish()?;
                Record::Round(Round { index, pages })
            }
            TAG_SHARED_PAGE => {
                let mut r = Reader::new(payload, "shared page");
                let gpa = r.u64()?;
                let data = r.bytes(PAGE_SIZE as usize)?.to_vec();
                r.finish()?;
                Record::SharedPage(SharedPage { gpa, data })
            }
            TAG_ENCRYPTED_PAGE => {
                let mut r = Reader::new(payload, "encrypted page");
                let gpa = r.u64()?;
                let header =
                    PacketHeader::from_bytes(r.bytes(PACKET_HEADER_LEN)?).map_err(|e| {
                        StreamError::Malformed {
                            record: "encrypted page",
                            why: e.to_string(),
                        }
                    })?;
                let transport = r.blob("transport buffer", PAGE_SIZE as usize)?.to_vec();
                check_page_len("encrypted page", transport.len())?;
                r.finish()?;
                Record::EncryptedPage(EncryptedPage {
                    gpa,
                    header,
                    transport,
                })
            }
            TAG_SHARED_RANGES => {
                let mut r = Reader::new(payload, "shared ranges");
                let count = r.u32()? as usize;
                if count > MAX_SHARED_RANGES {
                    return Err(StreamError::Malformed {
                        record: "shared ranges",
                        why: format!("{count} ranges (at most {MAX_SHARED_RANGES})"),
                    });
                }
                let mut ranges = Vec::with_capacity(count.min(payload.len() / 16));
                for _ in 0..count {
                    ranges.push(GpaRange {
                        gpa: r.u64()?,
                        pages: r.u64()?,
                    });
                }
                r.finish()?;
                Record::SharedRanges(ranges)
            }
            TAG_VCPU => {
                let mut r = Reader::new(payload, "vcpu");
                let index = r.u32()?;
                let state = VcpuState::decode(&mut r)?;
                r.finish()?;
                Record::Vcpu(Box::new(VcpuRecord { index, state }))
            }
            TAG_FINISH => {
                let mut r = Reader::new(payload, "finish");
                let records = r.u32()?;
                let digest = r.array::<32>()?;
                r.finish()?;
                Record::Finish(Finish { records, digest })
            }
            tag => return Err(StreamError::UnknownRecord { tag, seq }),
        };
        Ok(rec)
    }
}

fn check_page_len(record: &'static str, len: usize) -> Result<(), StreamError> {
    if len as u64 == PAGE_SIZE {
        Ok(())
    } else {
        Err(StreamError::Malformed {
            record,
            why: format!("page data is {len} bytes, not 4096"),
        })
    }
}

/// The largest payload a record with `tag` may declare.
fn max_payload(tag: u8) -> Option<(&'static str, usize)> {
    Some(match tag {
        TAG_HEADER => ("header", HEADER_FIXED_LEN + 16 * MAX_REGIONS),
        TAG_SESSION => ("session", 8 + 2 * MAX_BLOB),
        TAG_ROUND => ("round", 8),
        TAG_SHARED_PAGE => ("shared page", SHARED_PAGE_LEN),
        TAG_ENCRYPTED_PAGE => ("encrypted page", ENCRYPTED_PAGE_LEN),
        TAG_SHARED_RANGES => ("shared ranges", MAX_PAYLOAD),
        TAG_VCPU => ("vcpu", 4 + VCPU_STATE_LEN),
        TAG_FINISH => ("finish", 4 + 32),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Session,
    /// A round (number `next`) or, after at least one round, the shared ranges.
    RoundOrShared {
        next: u32,
    },
    Pages {
        round: u32,
        remaining: u32,
    },
    Vcpu {
        next: u32,
    },
    Finish,
    Done,
}

impl Phase {
    fn expected(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Session => "session",
            Phase::RoundOrShared { next: 0 } => "round 0",
            Phase::RoundOrShared { .. } => "round or shared ranges",
            Phase::Pages { .. } => "page (shared or encrypted)",
            Phase::Vcpu { .. } => "vcpu",
            Phase::Finish => "finish",
            Phase::Done => "end of stream",
        }
    }
}

/// The stream's order and semantic rules, shared by [`Encoder`] and [`Decoder`].
#[derive(Debug)]
pub struct Sequencer {
    phase: Phase,
    seq: u32,
    vcpus: u32,
    layout: MemoryLayout,
    round_pages: HashSet<u64>,
}

impl Default for Sequencer {
    fn default() -> Self {
        Sequencer {
            phase: Phase::Header,
            seq: 0,
            vcpus: 0,
            layout: MemoryLayout::default(),
            round_pages: HashSet::new(),
        }
    }
}

impl Sequencer {
    /// The sequence number the next record must carry.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// Whether the finish record was accepted.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The memory layout from the header (empty before it).
    pub fn layout(&self) -> &MemoryLayout {
        &self.layout
    }

    /// Accept `rec` as the next record, or say why it cannot come here. On error nothing changes.
    pub fn accept(&mut self, rec: &Record) -> Result<(), StreamError> {
        let unexpected = || StreamError::UnexpectedRecord {
            found: rec.kind(),
            expected: self.phase.expected(),
        };
        let next = match (self.phase, rec) {
            (Phase::Header, Record::Header(h)) => {
                self.vcpus = h.vcpus;
                self.layout = h.layout.clone();
                Phase::Session
            }
            (Phase::Session, Record::Session(_)) => Phase::RoundOrShared { next: 0 },
            (Phase::RoundOrShared { next }, Record::Round(r)) => {
                if r.index != next {
                    return Err(StreamError::Malformed {
                        record: "round",
                        why: format!("round {} where round {next} was expected", r.index),
                    });
                }
                if u64::from(r.pages) > self.layout.pages() {
                    return Err(StreamError::Malformed {
                        record: "round",
                        why: format!(
                            "{} pages in a round of a {}-page guest",
                            r.pages,
                            self.layout.pages()
                        ),
                    });
                }
                self.round_pages.clear();
                if r.pages == 0 {
                    Phase::RoundOrShared { next: next + 1 }
                } else {
                    Phase::Pages {
                        round: next,
                        remaining: r.pages,
                    }
                }
            }
            (
                Phase::Pages { round, remaining },
                Record::SharedPage(SharedPage { gpa, .. })
                | Record::EncryptedPage(EncryptedPage { gpa, .. }),
            ) => {
                if self.layout.page_index(*gpa).is_none() {
                    return Err(StreamError::Malformed {
                        record: rec.kind(),
                        why: format!("GPA {gpa:#x} is not a page of the guest's memory"),
                    });
                }
                if !self.round_pages.insert(*gpa) {
                    return Err(StreamError::Malformed {
                        record: rec.kind(),
                        why: format!("page {gpa:#x} sent twice in round {round}"),
                    });
                }
                if remaining == 1 {
                    Phase::RoundOrShared { next: round + 1 }
                } else {
                    Phase::Pages {
                        round,
                        remaining: remaining - 1,
                    }
                }
            }
            (Phase::RoundOrShared { next }, Record::SharedRanges(ranges)) if next > 0 => {
                self.check_ranges(ranges)?;
                Phase::Vcpu { next: 0 }
            }
            (Phase::Vcpu { next }, Record::Vcpu(v)) => {
                if v.index != next {
                    return Err(StreamError::Malformed {
                        record: "vcpu",
                        why: format!("vCPU {} where vCPU {next} was expected", v.index),
                    });
                }
                if next + 1 == self.vcpus {
                    Phase::Finish
                } else {
                    Phase::Vcpu { next: next + 1 }
                }
            }
            (Phase::Finish, Record::Finish(f)) => {
                if f.records != self.seq {
                    return Err(StreamError::Malformed {
                        record: "finish",
                        why: format!("stream has {} records, finish says {}", self.seq, f.records),
                    });
                }
                Phase::Done
            }
            _ => return Err(unexpected()),
        };
        self.phase = next;
        self.seq += 1;
        Ok(())
    }

    fn check_ranges(&self, ranges: &[GpaRange]) -> Result<(), StreamError> {
        let mut prev_end = 0u64;
        for (i, r) in ranges.iter().enumerate() {
            if !self.layout.contains_range(r.gpa, r.pages) {
                return Err(StreamError::Malformed {
                    record: "shared ranges",
                    why: format!(
                        "range [{:#x}, {} pages) is empty, unaligned or outside one memory region",
                        r.gpa, r.pages
                    ),
                });
            }
            if i > 0 && r.gpa < prev_end {
                return Err(StreamError::Malformed {
                    record: "shared ranges",
                    why: format!("range at {:#x} is unsorted or overlaps", r.gpa),
                });
            }
            // contains_range guarantees no overflow.
            prev_end = r.gpa + r.pages * PAGE_SIZE;
        }
        Ok(())
    }
}

fn frame(tag: u8, seq: u32, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let mut f = [0u8; FRAME_HEADER_LEN];
    f[0] = tag;
    f[4..8].copy_from_slice(&seq.to_le_bytes());
    f[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f
}

/// Why writing a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The record cannot come here or is invalid (a bug in the caller: nothing was written).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The output failed.
    #[error("writing the migration stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a stream record by record, checking each against the stream rules first.
#[derive(Debug)]
pub struct Encoder<W: Write> {
    out: W,
    seq: Sequencer,
    sum: Checksum,
    bytes: u64,
}

impl<W: Write> Encoder<W> {
    /// Start a stream on `out` (writes the preamble).
    pub fn new(out: W) -> Result<Self, EncodeError> {
        Self::start(out, Checksum::inline())
    }

    /// Like [`new`](Self::new), with the checksum computed on a helper thread, overlapping the
    /// caller's work (the source's page encryption).
    pub fn pipelined(out: W) -> Result<Self, EncodeError> {
        Self::start(out, Checksum::pipelined())
    }

    fn start(mut out: W, mut sum: Checksum) -> Result<Self, EncodeError> {
        let mut pre = [0u8; PREAMBLE_LEN];
        pre[..8].copy_from_slice(&STREAM_MAGIC);
        pre[8..10].copy_from_slice(&STREAM_VERSION.to_le_bytes());
        out.write_all(&pre)?;
        sum.update(pre.to_vec());
        Ok(Encoder {
            out,
            seq: Sequencer::default(),
            sum,
            bytes: PREAMBLE_LEN as u64,
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Append one record (not [`Record::Finish`]: use [`finish`](Self::finish)).
    pub fn write(&mut self, rec: &Record) -> Result<(), EncodeError> {
        if matches!(rec, Record::Finish(_)) {
            return Err(StreamError::UnexpectedRecord {
                found: "finish",
                expected: "a call to Encoder::finish",
            }
            .into());
        }
        self.emit(rec, true)
    }

    fn emit(&mut self, rec: &Record, hashed: bool) -> Result<(), EncodeError> {
        let payload = rec.encode_payload()?;
        let seq = self.seq.next_seq();
        // `accept` leaves the sequencer unchanged on error, so nothing is written then.
        self.seq.accept(rec)?;
        let f = frame(rec.tag(), seq, &payload);
        self.out.write_all(&f)?;
        self.out.write_all(&payload)?;
        self.bytes += (FRAME_HEADER_LEN + payload.len()) as u64;
        if hashed {
            self.sum.update(f.to_vec());
            self.sum.update(payload);
        }
        Ok(())
    }

    /// Write the finish record (count and checksum), flush, and return the output.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        let sum = std::mem::replace(&mut self.sum, Checksum::inline());
        let digest = sum
            .finish()
            .ok_or_else(|| std::io::Error::other("the stream checksum thread failed"))?;
        let rec = Record::Finish(Finish {
            records: self.seq.next_seq(),
            digest,
        });
        self.emit(&rec, false)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// An incremental stream decoder: feed bytes as they arrive, take records as they complete.
///
/// After any error the decoder is poisoned and returns the same error again.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    preamble: bool,
    seq: Sequencer,
    hasher: Sha256,
    consumed: u64,
    failed: Option<StreamError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder expecting the preamble.
    pub fn new() -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            preamble: false,
            seq: Sequencer::default(),
            hasher: Sha256::new(),
            consumed: 0,
            failed: None,
        }
    }

    /// Append received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 16) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes fed but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the finish record was accepted (and the checksum matched).
    pub fn is_done(&self) -> bool {
        self.seq.is_done()
    }

    /// The memory layout announced by the header (empty before it).
    pub fn layout(&self) -> &MemoryLayout {
        self.seq.layout()
    }

    fn fail(&mut self, e: StreamError) -> StreamError {
        self.failed = Some(e.clone());
        e
    }

    /// The next complete record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Record>, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step() {
            Ok(r) => Ok(r),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn step(&mut self) -> Result<Option<Record>, StreamError> {
        let avail = &self.buf[self.start..];
        if self.seq.is_done() {
            return if avail.is_empty() {
                Ok(None)
            } else {
                Err(StreamError::TrailingData { at: self.consumed })
            };
        }
        if !self.preamble {
            // Refuse a wrong magic as soon as its first bytes are visible.
            let n = avail.len().min(8);
            if avail[..n] != STREAM_MAGIC[..n] {
                return Err(StreamError::BadMagic);
            }
            if avail.len() < PREAMBLE_LEN {
                return Ok(None);
            }
            let version = u16::from_le_bytes([avail[8], avail[9]]);
            if version != STREAM_VERSION {
                return Err(StreamError::UnsupportedVersion {
                    found: version,
                    supported: STREAM_VERSION,
                });
            }
            if avail[10..12] != [0, 0] {
                return Err(StreamError::Malformed {
                    record: "preamble",
                    why: "flags are not zero".into(),
                });
            }
            self.hasher.update(&avail[..PREAMBLE_LEN]);
            self.start += PREAMBLE_LEN;
            self.consumed += PREAMBLE_LEN as u64;
            self.preamble = true;
            return self.step();
        }
        if avail.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let tag = avail[0];
        let seq = u32::from_le_bytes([avail[4], avail[5], avail[6], avail[7]]);
        let len = u32::from_le_bytes([avail[8], avail[9], avail[10], avail[11]]);
        let expected = self.seq.next_seq();
        if seq < expected {
            return Err(StreamError::Replayed { seq, expected });
        }
        if seq > expected {
            return Err(StreamError::Reordered { seq, expected });
        }
        let Some((kind, max)) = max_payload(tag) else {
            return Err(StreamError::UnknownRecord { tag, seq });
        };
        if avail[1] != 0 || avail[2..4] != [0, 0] {
            return Err(StreamError::Malformed {
                record: kind,
                why: "frame flags or reserved bytes are not zero".into(),
            });
        }
        if len as usize > max {
            return Err(StreamError::RecordTooLarge {
                record: kind,
                len,
                max,
            });
        }
        let total = FRAME_HEADER_LEN + len as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let rec = Record::decode(tag, seq, &avail[FRAME_HEADER_LEN..total])?;
        if let Record::Finish(f) = &rec {
            let digest: [u8; 32] = self.hasher.clone().finalize().into();
            if digest != f.digest {
                return Err(StreamError::ChecksumMismatch);
            }
            self.seq.accept(&rec)?;
        } else {
            self.seq.accept(&rec)?;
            self.hasher.update(&avail[..total]);
        }
        self.start += total;
        self.consumed += total as u64;
        Ok(Some(rec))
    }

    /// The input has ended: `Ok` only if the whole stream, finish record included, was decoded and
    /// nothing follows it.
    pub fn end(&mut self) -> Result<(), StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let have = self.buffered();
        if self.seq.is_done() {
            return if have == 0 {
                Ok(())
            } else {
                Err(self.fail(StreamError::TrailingData { at: self.consumed }))
            };
        }
        let inside = if !self.preamble {
            "preamble"
        } else if have == 0 {
            self.seq.phase.expected()
        } else {
            "a record"
        };
        Err(self.fail(StreamError::Truncated { inside, have }))
    }
}

/// Decode a complete stream held in memory.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Record>, StreamError> {
    let mut d = Decoder::new();
    d.feed(bytes);
    let mut out = Vec::new();
    while let Some(r) = d.next_record()? {
        out.push(r);
    }
    d.end()?;
    Ok(out)
}
