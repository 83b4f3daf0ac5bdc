//! GHCB page-state change (PSC): the SEV-SNP guest asks the hypervisor to make pages private or
//! shared, either one 4 KiB page at a time through the GHCB MSR protocol
//! ([`decode_msr_request`], [`apply_msr_request`]) or in batches of up to 253 entries through
//! the PSC buffer in the GHCB shared area ([`PscBuffer`], [`apply_buffer`]).
//!
//! Each entry goes through the one conversion path ([`Converter::convert`]) and, when an
//! [`RmpContext`] is given, the RMP follows: pages made private are assigned to the guest's ASID
//! at their GPA (RMPUPDATE; not validated, the guest PVALIDATEs next), pages made shared go back
//! to the hypervisor (a 2 MiB RMP entry is PSMASHed first when only part of it changes). If the
//! RMP refuses, the RMP entries and the conversion of that entry are undone.
//!
//! Progress follows KVM (`arch/x86/kvm/svm/sev.c`): entries are processed from `cur_entry` to
//! `end_entry`; each finished entry gets `cur_page` = 1 (4K) or 512 (2M) and `cur_entry`
//! advances; an entry with `cur_page` already set resumes after that many pages (4K-granular).
//! The first failing entry stops processing and leaves `cur_entry` on it, with
//! `SW_EXITINFO2` = [`VMGEXIT_PSC_ERROR_INVALID_HDR`], [`VMGEXIT_PSC_ERROR_INVALID_ENTRY`] or
//! [`VMGEXIT_PSC_ERROR_GENERIC`].
//!
//! PSMASH (3) entries PSMASH the 2 MiB RMP entry (a no-op without an RMP); UNSMASH (4) entries
//! complete without action, as KVM does.

use cgs_core::{Error, Result};

use crate::attrs::MemoryAttributes;
use crate::binding::Discard;
use crate::convert::{Conversion, ConversionRequest, Converter, Origin, PageSizeHint};
use crate::rmp::{PageSize, Rmp, RmpEntry, RmpError, RmpUpdate, PAGES_PER_2M};
use crate::tracker::MemState;
use crate::uapi::{
    GHCB_MSR_INFO_MASK, GHCB_MSR_PSC_ERROR_SHIFT, GHCB_MSR_PSC_GFN_MASK, GHCB_MSR_PSC_GFN_SHIFT,
    GHCB_MSR_PSC_OP_MASK, GHCB_MSR_PSC_OP_SHIFT, GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP,
    GHCB_SHARED_BUFFER_SIZE, PSC_HDR_SIZE, SNP_PAGE_STATE_PRIVATE, SNP_PAGE_STATE_PSMASH,
    SNP_PAGE_STATE_SHARED, SNP_PAGE_STATE_UNSMASH, VMGEXIT_PSC_ERROR_GENERIC,
    VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR, VMGEXIT_PSC_MAX_COUNT,
};

pub use crate::uapi::{
    VMGEXIT_PSC_ERROR_GENERIC as PSC_ERROR_GENERIC,
    VMGEXIT_PSC_ERROR_INVALID_ENTRY as PSC_ERROR_INVALID_ENTRY,
    VMGEXIT_PSC_ERROR_INVALID_HDR as PSC_ERROR_INVALID_HDR,
};

/// A page-state-change operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PscOp {
    /// 1: make private.
    Private,
    /// 2: make shared.
    Shared,
    /// 3: PSMASH the 2 MiB page.
    Psmash,
    /// 4: UNSMASH.
    Unsmash,
}

impl PscOp {
    /// Decode the 4-bit operation field.
    pub fn from_raw(op: u8) -> Option<Self> {
        match op {
            SNP_PAGE_STATE_PRIVATE => Some(PscOp::Private),
            SNP_PAGE_STATE_SHARED => Some(PscOp::Shared),
            SNP_PAGE_STATE_PSMASH => Some(PscOp::Psmash),
            SNP_PAGE_STATE_UNSMASH => Some(PscOp::Unsmash),
            _ => None,
        }
    }

    /// The 4-bit operation field.
    pub fn raw(self) -> u8 {
        match self {
            PscOp::Private => SNP_PAGE_STATE_PRIVATE,
            PscOp::Shared => SNP_PAGE_STATE_SHARED,
            PscOp::Psmash => SNP_PAGE_STATE_PSMASH,
            PscOp::Unsmash => SNP_PAGE_STATE_UNSMASH,
        }
    }
}

/// The RMP side of page-state changes: the RMP, the guest's ASID and the GFN → host frame
/// mapping.
pub struct RmpContext<'a> {
    /// The RMP.
    pub rmp: &'a mut Rmp,
    /// The guest's ASID.
    pub asid: u32,
    /// The host frame backing a guest frame, `None` when unbacked.
    pub spa_of: &'a dyn Fn(u64) -> Option<u64>,
}

impl std::fmt::Debug for RmpContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmpContext")
            .field("asid", &self.asid)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// MSR protocol

/// A decoded GHCB MSR page-state-change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrPscRequest {
    /// The guest frame.
    pub gfn: u64,
    /// Private or shared (the MSR protocol has no PSMASH/UNSMASH).
    pub op: PscOp,
}

/// Encode an MSR PSC request (what the guest writes): `0x014 | gfn << 12 | op << 52`.
pub fn encode_msr_request(gfn: u64, op: PscOp) -> u64 {
    GHCB_MSR_PSC_REQ
        | (gfn & GHCB_MSR_PSC_GFN_MASK) << GHCB_MSR_PSC_GFN_SHIFT
        | (u64::from(op.raw()) & GHCB_MSR_PSC_OP_MASK) << GHCB_MSR_PSC_OP_SHIFT
}

/// Decode the GHCB MSR value of a PSC request (guest controlled).
pub fn decode_msr_request(msr: u64) -> Result<MsrPscRequest> {
    if msr & GHCB_MSR_INFO_MASK != GHCB_MSR_PSC_REQ {
        return Err(Error::invalid_input(
            "GHCB MSR PSC request",
            format!("GHCBInfo {:#x} is not PSC_REQ", msr & GHCB_MSR_INFO_MASK),
        ));
    }
    if msr >> 56 != 0 {
        return Err(Error::invalid_input(
            "GHCB MSR PSC request",
            "reserved bits 63:56 are set",
        ));
    }
    let gfn = (msr >> GHCB_MSR_PSC_GFN_SHIFT) & GHCB_MSR_PSC_GFN_MASK;
    let raw_op = ((msr >> GHCB_MSR_PSC_OP_SHIFT) & GHCB_MSR_PSC_OP_MASK) as u8;
    let op = match PscOp::from_raw(raw_op) {
        Some(op @ (PscOp::Private | PscOp::Shared)) => op,
        _ => {
            return Err(Error::invalid_input(
                "GHCB MSR PSC request",
                format!("operation {raw_op} is not private (1) or shared (2)"),
            ))
        }
    };
    Ok(MsrPscRequest { gfn, op })
}

/// The MSR PSC response: `0x015 | error << 32` (0 = success).
pub fn msr_response(error: u32) -> u64 {
    GHCB_MSR_PSC_RESP | u64::from(error) << GHCB_MSR_PSC_ERROR_SHIFT
}

/// The error code KVM returns in an MSR PSC response on failure (bit 63 of the MSR).
pub const MSR_PSC_ERROR: u32 = 0x8000_0000;

/// Apply a GHCB MSR PSC request and return the response MSR value (success, or
/// [`MSR_PSC_ERROR`] with everything unchanged).
pub fn apply_msr_request<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    rmp: Option<&mut RmpContext<'_>>,
    msr: u64,
) -> u64 {
    let Ok(req) = decode_msr_request(msr) else {
        return msr_response(MSR_PSC_ERROR);
    };
    match apply_pages(conv, rmp, req.gfn, 1, false, req.op) {
        Ok(()) => msr_response(0),
        Err(_) => msr_response(MSR_PSC_ERROR),
    }
}

// ---------------------------------------------------------------------------------------------
// PSC buffer

/// One PSC buffer entry (`struct psc_entry`, a u64 bit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PscEntry {
    /// Bits 11:0: pages of this entry already processed.
    pub cur_page: u16,
    /// Bits 51:12: first guest frame.
    pub gfn: u64,
    /// Bits 55:52: operation (raw, see [`PscOp::from_raw`]).
    pub op: u8,
    /// Bit 56: 2 MiB entry.
    pub huge: bool,
    /// Bits 63:57: reserved (must be zero).
    pub reserved: u8,
}

impl PscEntry {
    /// Decode the u64 bit field.
    pub fn from_raw(raw: u64) -> Self {
        PscEntry {
            cur_page: (raw & 0xfff) as u16,
            gfn: (raw >> 12) & ((1 << 40) - 1),
            op: ((raw >> 52) & 0xf) as u8,
            huge: raw >> 56 & 1 != 0,
            reserved: (raw >> 57) as u8,
        }
    }

    /// Encode the u64 bit field.
    pub fn to_raw(self) -> u64 {
        u64::from(self.cur_page & 0xfff)
            | (self.gfn & ((1 << 40) - 1)) << 12
            | u64::from(self.op & 0xf) << 52
            | u64::from(self.huge) << 56
            | u64::from(self.reserved & 0x7f) << 57
    }

    /// Pages this entry covers (1 or 512).
    pub fn npages(&self) -> u64 {
        if self.huge {
            PAGES_PER_2M
        } else {
            1
        }
    }
}

/// A PSC buffer: header (`cur_entry`, `end_entry` inclusive, reserved) and its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PscBuffer {
    /// Next entry to process.
    pub cur_entry: u16,
    /// Last entry to process (inclusive).
    pub end_entry: u16,
    /// Reserved header word.
    pub reserved: u32,
    /// The entries present in the buffer (at most [`VMGEXIT_PSC_MAX_COUNT`]).
    pub entries: Vec<PscEntry>,
}

impl PscBuffer {
    /// Parse a buffer (normally the 2032-byte GHCB shared buffer; shorter input holds fewer
    /// entries, longer input is refused).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < PSC_HDR_SIZE || bytes.len() > GHCB_SHARED_BUFFER_SIZE {
            return Err(Error::invalid_input(
                "PSC buffer",
                format!(
                    "{} bytes (header is {PSC_HDR_SIZE}, buffer at most {GHCB_SHARED_BUFFER_SIZE})",
                    bytes.len()
                ),
            ));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let mut word = [0u8; 8];
        let entries = bytes[PSC_HDR_SIZE..]
            .chunks_exact(8)
            .take(VMGEXIT_PSC_MAX_COUNT)
            .map(|c| {
                word.copy_from_slice(c);
                PscEntry::from_raw(u64::from_le_bytes(word))
            })
            .collect();
        Ok(PscBuffer {
            cur_entry: u16_at(0),
            end_entry: u16_at(2),
            reserved: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            entries,
        })
    }

    /// Encode into the GHCB shared-buffer layout (8 + 8 × entries bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PSC_HDR_SIZE + 8 * self.entries.len());
        out.extend_from_slice(&self.cur_entry.to_le_bytes());
        out.extend_from_slice(&self.end_entry.to_le_bytes());
        out.extend_from_slice(&self.reserved.to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.to_raw().to_le_bytes());
        }
        out
    }
}

/// The result of [`apply_buffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PscOutcome {
    /// `SW_EXITINFO2` for the guest: 0 or a `VMGEXIT_PSC_ERROR_*` value.
    pub exit_info2: u64,
    /// Entries completed by this call.
    pub completed: usize,
}

/// Process `buf` from `cur_entry` to `end_entry`, updating it in place (see the module docs).
pub fn apply_buffer<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    mut rmp: Option<&mut RmpContext<'_>>,
    buf: &mut PscBuffer,
) -> PscOutcome {
    let mut completed = 0;
    let end = usize::from(buf.end_entry);
    if end >= VMGEXIT_PSC_MAX_COUNT || end >= buf.entries.len() {
        return PscOutcome {
            exit_info2: VMGEXIT_PSC_ERROR_INVALID_HDR,
            completed,
        };
    }
    while usize::from(buf.cur_entry) <= end {
        let idx = usize::from(buf.cur_entry);
        let e = buf.entries[idx];
        let npages = e.npages();
        if u64::from(e.cur_page) > npages || e.gfn % npages != 0 || e.reserved != 0 {
            return PscOutcome {
                exit_info2: VMGEXIT_PSC_ERROR_INVALID_ENTRY,
                completed,
            };
        }
        let Some(op) = PscOp::from_raw(e.op) else {
            return PscOutcome {
                exit_info2: VMGEXIT_PSC_ERROR_INVALID_ENTRY,
                completed,
            };
        };
        let done = u64::from(e.cur_page);
        if done < npages {
            // A partially done 2M entry continues 4K-granular.
            let huge = e.huge && done == 0;
            let gfn = e.gfn + done;
            if apply_pages(conv, rmp.as_deref_mut(), gfn, npages - done, huge, op).is_err() {
                return PscOutcome {
                    exit_info2: VMGEXIT_PSC_ERROR_GENERIC,
                    completed,
                };
            }
        }
        buf.entries[idx].cur_page = npages as u16;
        buf.cur_entry += 1;
        completed += 1;
    }
    PscOutcome {
        exit_info2: 0,
        completed,
    }
}

// ---------------------------------------------------------------------------------------------
// Applying one entry

fn rmp_err(e: RmpError) -> Error {
    Error::Firmware {
        op: "RMP update",
        status: cgs_core::FirmwareStatus {
            firmware: "RMP model",
            code: e.code().map_or(u64::MAX, u64::from),
            name: e.code().map_or("FAULT", crate::rmp::fail_name).into(),
            detail: Some(e.to_string()),
        },
    }
}

/// Apply `npages` frames from `gfn` with `op`: conversion, then the RMP; undone on RMP failure.
fn apply_pages<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    rmp: Option<&mut RmpContext<'_>>,
    gfn: u64,
    npages: u64,
    huge: bool,
    op: PscOp,
) -> Result<()> {
    let to = match op {
        PscOp::Private => MemState::Private,
        PscOp::Shared => MemState::Shared,
        PscOp::Psmash => {
            return match rmp {
                Some(ctx) if huge => {
                    let spa = (ctx.spa_of)(gfn).ok_or_else(|| unbacked(gfn))?;
                    ctx.rmp.psmash(spa).map_err(rmp_err)
                }
                Some(_) => Err(Error::invalid_input("PSC entry", "PSMASH of a 4K entry")),
                None => Ok(()),
            }
        }
        PscOp::Unsmash => return Ok(()),
    };
    let gpa = gfn
        .checked_mul(4096)
        .ok_or_else(|| Error::invalid_input("PSC entry", "GFN overflows"))?;
    let req = ConversionRequest {
        gpa,
        size: npages * 4096,
        to,
        page_size: if huge {
            PageSizeHint::Size2M
        } else {
            PageSizeHint::Size4K
        },
        origin: Origin::PageStateChange,
    };
    // Check the RMP side can be done before converting (unbacked frames).
    if let Some(ctx) = &rmp {
        for g in gfn..gfn + npages {
            (ctx.spa_of)(g).ok_or_else(|| unbacked(g))?;
        }
    }
    let conversion = conv.convert(req).map_err(Error::from)?;
    let Some(ctx) = rmp else {
        return Ok(());
    };
    let mut saved: Vec<(u64, RmpEntry)> = Vec::new();
    if let Err(e) = rmp_apply(ctx, &conversion, to, huge, &mut saved) {
        // Restore the RMP entries, newest first, then the conversion.
        for (pfn, old) in saved.into_iter().rev() {
            let _ = ctx.rmp.firmware_set(pfn, old);
        }
        for r in &conversion.changed {
            let undo = ConversionRequest {
                gpa: r.start * 4096,
                size: (r.end - r.start) * 4096,
                to: to.opposite(),
                page_size: PageSizeHint::Size4K,
                origin: Origin::PageStateChange,
            };
            let _ = conv.convert(undo);
        }
        return Err(e);
    }
    Ok(())
}

fn unbacked(gfn: u64) -> Error {
    Error::invalid_input("PSC entry", format!("GFN {gfn:#x} has no host frame"))
}

/// RMP updates for the frames a conversion changed; records old entries in `saved`.
///
/// A 2M request whose whole 2M page changed, backed by an aligned, contiguous 2M host page,
/// becomes one 2M entry (private), or releases a 2M entry as a whole (shared); everything else
/// is done in 4K entries, PSMASHing a 2M entry that only partly changes.
fn rmp_apply(
    ctx: &mut RmpContext<'_>,
    conversion: &Conversion,
    to: MemState,
    huge: bool,
    saved: &mut Vec<(u64, RmpEntry)>,
) -> Result<()> {
    for r in &conversion.changed {
        let mut g = r.start;
        while g < r.end {
            let spa = (ctx.spa_of)(g).ok_or_else(|| unbacked(g))?;
            let aligned_run = huge
                && g % PAGES_PER_2M == 0
                && r.end - g >= PAGES_PER_2M
                && spa % PAGES_PER_2M == 0
                && (1..PAGES_PER_2M).all(|i| (ctx.spa_of)(g + i) == Some(spa + i));
            let whole_2m = aligned_run
                && match to {
                    MemState::Private => true,
                    MemState::Shared => ctx
                        .rmp
                        .entry(spa)
                        .is_some_and(|e| e.assigned && e.page_size == PageSize::Size2M),
                };
            let size = if whole_2m {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            };
            if size == PageSize::Size4K {
                // Split a 2M entry that only partly changes.
                if let Some((head, e)) = ctx.rmp.lookup(spa) {
                    if e.assigned && e.page_size == PageSize::Size2M {
                        save_range(ctx.rmp, head, PAGES_PER_2M, saved);
                        ctx.rmp.psmash(head).map_err(rmp_err)?;
                    }
                }
            }
            save_range(ctx.rmp, spa, size.pages(), saved);
            let update = match to {
                MemState::Private => RmpUpdate::private(g * 4096, ctx.asid, size),
                MemState::Shared => RmpUpdate::shared(size),
            };
            ctx.rmp.update(spa, update).map_err(rmp_err)?;
            g += size.pages();
        }
    }
    Ok(())
}

fn save_range(rmp: &Rmp, pfn: u64, n: u64, saved: &mut Vec<(u64, RmpEntry)>) {
    for p in pfn..pfn + n {
        if let Some(e) = rmp.entry(p) {
            saved.push((p, e));
        }
    }
}
