//! A software model of the SEV-SNP Reverse Map Table (RMP).
//!
//! The RMP holds one entry per 4 KiB page of system physical memory. An entry says whether the
//! page belongs to the hypervisor or is *assigned* (to a guest ASID, or to the firmware when the
//! ASID is 0), which guest physical address it is mapped at, its page size (a 2 MiB page is
//! described by the entry of its first 4 KiB page), whether the guest has *validated* it, whether
//! it is *immutable* (only the firmware may change it), whether it is a guest context page (VMSA)
//! and the per-VMPL permission masks.
//!
//! [`Rmp`] keeps that state for `pages` host pages, keyed by system physical page frame number
//! (SPA >> 12), and implements the four instructions that change it with the checks and
//! architectural return codes of the AMD64 APM (vol. 3, "RMPUPDATE", "PVALIDATE", "PSMASH",
//! "RMPADJUST"):
//!
//! | Operation | Who | Result codes |
//! |---|---|---|
//! | [`Rmp::update`] (RMPUPDATE) | hypervisor | `FAIL_INPUT`, `FAIL_PERMISSION`, `FAIL_INUSE`, `FAIL_OVERLAP` |
//! | [`Rmp::pvalidate`] (PVALIDATE) | guest | `FAIL_INPUT`, `FAIL_SIZEMISMATCH`, "no update" (CF = 1), RMP fault |
//! | [`Rmp::psmash`] (PSMASH) | hypervisor | `FAIL_INPUT`, `FAIL_PERMISSION`, `FAIL_INUSE` |
//! | [`Rmp::adjust`] (RMPADJUST) | guest | `FAIL_INPUT`, `FAIL_PERMISSION`, `FAIL_SIZEMISMATCH`, RMP fault |
//! | [`Rmp::firmware_set`] | secure processor | `FAIL_INPUT`, `FAIL_INUSE`, `FAIL_OVERLAP` |
//!
//! Failures the hardware reports as a nested page fault (#NPF with the RMP bit) or a #VC instead
//! of a return code are [`RmpError::Fault`] with the reason. Another CPU holding an entry (the
//! source of `FAIL_INUSE`) is modelled with [`Rmp::lock`] / [`Rmp::unlock`].
//!
//! Memory use is proportional to the number of entries that differ from the default hypervisor
//! state, so an `Rmp` can cover a large host cheaply.
//!
//! Where the APM leaves the choice between two codes open, this model documents its choice on the
//! operation (e.g. PSMASH of an entry that is not a 2 MiB page returns `FAIL_PERMISSION`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `RMPUPDATE`/`PVALIDATE`/`PSMASH`/`RMPADJUST` success.
pub const RMP_SUCCESS: u32 = 0;
/// Invalid input: misaligned address, reserved bits, out-of-range value.
pub const FAIL_INPUT: u32 = 1;
/// The entry may not be changed this way (immutable page, VMPL permission, wrong page kind).
pub const FAIL_PERMISSION: u32 = 2;
/// Another processor is updating the entry; retry.
pub const FAIL_INUSE: u32 = 3;
/// A 4 KiB entry overlaps an assigned 2 MiB page, or a 2 MiB update overlaps assigned 4 KiB pages.
pub const FAIL_OVERLAP: u32 = 4;
/// A 2 MiB PVALIDATE/RMPADJUST hit a page the RMP describes as 4 KiB pages.
pub const FAIL_SIZEMISMATCH: u32 = 6;
/// Linux's software code for a PVALIDATE that changed nothing (rFLAGS.CF = 1).
pub const PVALIDATE_FAIL_NOUPDATE: u32 = 255;

/// Number of 4 KiB pages in a 2 MiB page.
pub const PAGES_PER_2M: u64 = 512;
/// Largest ASID an RMP entry can hold (10 bits in the entry format).
pub const MAX_ASID: u32 = (1 << 10) - 1;
/// Guest physical addresses an RMP entry can hold are below this (GPA bits 50:12).
pub const GPA_LIMIT: u64 = 1 << 51;
/// Number of VMPLs with a permission mask.
pub const VMPL_COUNT: usize = 4;

/// VMPL permission: read.
pub const PERM_READ: u8 = 1 << 0;
/// VMPL permission: write.
pub const PERM_WRITE: u8 = 1 << 1;
/// VMPL permission: execute in user mode.
pub const PERM_EXEC_USER: u8 = 1 << 2;
/// VMPL permission: execute in supervisor mode.
pub const PERM_EXEC_SUPERVISOR: u8 = 1 << 3;
/// VMPL permission: supervisor shadow stack.
pub const PERM_SUPERVISOR_SHADOW_STACK: u8 = 1 << 4;
/// Every VMPL permission (what VMPL0 gets when a page is assigned).
pub const PERM_ALL: u8 = 0x1f;

const PAGE_SHIFT: u32 = 12;

/// The page size an RMP entry (or a request) describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageSize {
    /// 4 KiB (`RMP_PG_SIZE_4K` = 0).
    #[default]
    Size4K,
    /// 2 MiB (`RMP_PG_SIZE_2M` = 1).
    Size2M,
}

impl PageSize {
    /// Number of 4 KiB pages this size covers (1 or 512).
    pub const fn pages(self) -> u64 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => PAGES_PER_2M,
        }
    }

    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        self.pages() << PAGE_SHIFT
    }

    /// The architectural encoding (0 = 4K, 1 = 2M).
    pub const fn bit(self) -> u64 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
        }
    }

    /// Decode the architectural encoding; anything but 0 or 1 is `None`.
    pub const fn from_bit(bit: u64) -> Option<Self> {
        match bit {
            0 => Some(PageSize::Size4K),
            1 => Some(PageSize::Size2M),
            _ => None,
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
        })
    }
}

/// One RMP entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RmpEntry {
    /// Owned by a guest or the firmware (not the hypervisor).
    pub assigned: bool,
    /// The guest has PVALIDATEd the page.
    pub validated: bool,
    /// The page size; a 2 MiB page is described by the entry of its first 4 KiB page.
    pub page_size: PageSize,
    /// Owning ASID (0 for hypervisor and firmware pages).
    pub asid: u32,
    /// Guest physical address the page is mapped at (for firmware pages: the GPA tag).
    pub gpa: u64,
    /// Only the firmware may change the entry.
    pub immutable: bool,
    /// The page is a guest context page (VMSA).
    pub vmsa: bool,
    /// Permission masks of VMPL0..3 (`PERM_*` bits).
    pub vmpl_perms: [u8; VMPL_COUNT],
}

/// The SEV-SNP firmware page states (SEV-SNP ABI; the firmware's `snp_page_state_t` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// Owned by the hypervisor (2).
    Hypervisor,
    /// Hypervisor page the firmware made immutable (3).
    HypervisorFixed,
    /// Firmware page (4).
    Firmware,
    /// Firmware page used by the IOMMU (5).
    FirmwareIommu,
    /// Assigned page waiting to be reclaimed by the hypervisor (6).
    Reclaim,
    /// Guest context page (7).
    Context,
    /// Firmware metadata page (8).
    Metadata,
    /// Guest page during launch or swap-in, immutable (9).
    PreGuest,
    /// Validated guest page during swap-out, immutable (10).
    PreSwap,
    /// Private guest page, not validated (11).
    GuestInvalid,
    /// Private guest page, validated (12).
    GuestValid,
}

impl PageState {
    /// The firmware's numeric value of the state.
    pub const fn value(self) -> u8 {
        match self {
            PageState::Hypervisor => 2,
            PageState::HypervisorFixed => 3,
            PageState::Firmware => 4,
            PageState::FirmwareIommu => 5,
            PageState::Reclaim => 6,
            PageState::Context => 7,
            PageState::Metadata => 8,
            PageState::PreGuest => 9,
            PageState::PreSwap => 10,
            PageState::GuestInvalid => 11,
            PageState::GuestValid => 12,
        }
    }
}

impl RmpEntry {
    /// The hypervisor-owned entry of the given page size (what [`RmpUpdate::shared`] produces).
    pub const fn hypervisor(page_size: PageSize) -> Self {
        RmpEntry {
            assigned: false,
            validated: false,
            page_size,
            asid: 0,
            gpa: 0,
            immutable: false,
            vmsa: false,
            vmpl_perms: [0; VMPL_COUNT],
        }
    }

    /// The firmware page state this entry is in, or `None` for a combination no firmware state
    /// describes (e.g. validated with ASID 0).
    pub fn state(&self) -> Option<PageState> {
        let e = self;
        Some(match (e.assigned, e.validated, e.asid != 0, e.immutable) {
            (false, false, false, false) => PageState::Hypervisor,
            (false, false, false, true) => PageState::HypervisorFixed,
            (true, false, false, true) if e.vmsa => PageState::Context,
            (true, false, false, true) => match e.gpa {
                0 => PageState::Firmware,
                1 => PageState::Metadata,
                2 => PageState::FirmwareIommu,
                _ => return None,
            },
            (true, false, false, false) => PageState::Reclaim,
            (true, false, true, true) => PageState::PreGuest,
            (true, true, true, true) => PageState::PreSwap,
            (true, false, true, false) => PageState::GuestInvalid,
            (true, true, true, false) => PageState::GuestValid,
            _ => return None,
        })
    }

    /// The entry in the (Zen 3/Zen 4, non-architectural) 16-byte RMP table format: low word
    /// bit 0 assigned, 1 page size, 2 immutable, 50:12 GPA, 60:51 ASID, 61 VMSA, 62 validated;
    /// high word bytes 0..3 the VMPL permission masks.
    pub fn to_raw(&self) -> [u64; 2] {
        let lo = u64::from(self.assigned)
            | self.page_size.bit() << 1
            | u64::from(self.immutable) << 2
            | (self.gpa & (GPA_LIMIT - 1) & !0xfff)
            | (u64::from(self.asid) & u64::from(MAX_ASID)) << 51
            | u64::from(self.vmsa) << 61
            | u64::from(self.validated) << 62;
        let hi = u64::from(u32::from_le_bytes(self.vmpl_perms));
        [lo, hi]
    }

    /// Decode the 16-byte table format written by [`RmpEntry::to_raw`] (reserved bits ignored).
    pub fn from_raw(raw: [u64; 2]) -> Self {
        let [lo, hi] = raw;
        let perms = (hi as u32).to_le_bytes();
        RmpEntry {
            assigned: lo & 1 != 0,
            page_size: if lo & 2 != 0 {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            },
            immutable: lo & 4 != 0,
            gpa: lo & (GPA_LIMIT - 1) & !0xfff,
            asid: ((lo >> 51) & u64::from(MAX_ASID)) as u32,
            vmsa: lo & (1 << 61) != 0,
            validated: lo & (1 << 62) != 0,
            vmpl_perms: perms.map(|p| p & PERM_ALL),
        }
    }
}

/// The new state an RMPUPDATE writes (the instruction's 16-byte operand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RmpUpdate {
    /// Assign the page to `asid` (or give it back to the hypervisor when `false`).
    pub assigned: bool,
    /// Page size of the new entry.
    pub page_size: PageSize,
    /// Make the page immutable (only the firmware can change it afterwards).
    pub immutable: bool,
    /// Owning ASID (1..=[`MAX_ASID`] when assigned, 0 otherwise).
    pub asid: u32,
    /// Guest physical address (aligned to `page_size`, 0 when not assigned).
    pub gpa: u64,
}

impl RmpUpdate {
    /// Give the page back to the hypervisor (Linux `rmp_make_shared`).
    pub const fn shared(page_size: PageSize) -> Self {
        RmpUpdate {
            assigned: false,
            page_size,
            immutable: false,
            asid: 0,
            gpa: 0,
        }
    }

    /// Assign the page to `asid` at `gpa` (Linux `rmp_make_private`), not immutable.
    pub const fn private(gpa: u64, asid: u32, page_size: PageSize) -> Self {
        RmpUpdate {
            assigned: true,
            page_size,
            immutable: false,
            asid,
            gpa,
        }
    }
}

/// A guest's PVALIDATE: (in)validate the page the guest maps at `gpa`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pvalidate {
    /// The ASID of the guest executing the instruction.
    pub asid: u32,
    /// The guest physical address of the page (RAX translates to it).
    pub gpa: u64,
    /// The page size operand (ECX).
    pub page_size: PageSize,
    /// Validate (`true`) or rescind validation (`false`) (EDX).
    pub validate: bool,
}

/// What a successful PVALIDATE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvalidateOutcome {
    /// The validated bit changed (rFLAGS.CF = 0).
    Updated,
    /// The page already had the requested state (rFLAGS.CF = 1; Linux:
    /// [`PVALIDATE_FAIL_NOUPDATE`]).
    NoUpdate,
}

/// A guest's RMPADJUST: set the permissions of a higher (less privileged) VMPL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rmpadjust {
    /// The ASID of the guest executing the instruction.
    pub asid: u32,
    /// The guest physical address of the page.
    pub gpa: u64,
    /// The page size operand (RCX bit 0).
    pub page_size: PageSize,
    /// The VMPL the instruction executes at.
    pub current_vmpl: u8,
    /// The VMPL whose permissions change (RDX bits 15:8); must be greater than `current_vmpl`.
    pub target_vmpl: u8,
    /// The new permission mask (RDX bits 7:0, `PERM_*`).
    pub perms: u8,
    /// Mark the page as a VMSA (RDX bit 16, `RMPADJUST_VMSA_PAGE_BIT`).
    pub vmsa: bool,
}

/// The instruction (or firmware action) an [`RmpError`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmpOp {
    /// RMPUPDATE.
    Rmpupdate,
    /// PVALIDATE.
    Pvalidate,
    /// PSMASH.
    Psmash,
    /// RMPADJUST.
    Rmpadjust,
    /// A firmware write ([`Rmp::firmware_set`]).
    Firmware,
    /// [`Rmp::lock`] / [`Rmp::unlock`].
    Lock,
}

impl fmt::Display for RmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RmpOp::Rmpupdate => "RMPUPDATE",
            RmpOp::Pvalidate => "PVALIDATE",
            RmpOp::Psmash => "PSMASH",
            RmpOp::Rmpadjust => "RMPADJUST",
            RmpOp::Firmware => "firmware RMP write",
            RmpOp::Lock => "RMP entry lock",
        })
    }
}

/// Why a guest instruction raised an RMP fault (#NPF with the RMP bit, or #VC) instead of
/// returning a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmpFault {
    /// The page is not assigned.
    NotAssigned,
    /// The page belongs to another ASID.
    AsidMismatch {
        /// The entry's ASID.
        owner: u32,
    },
    /// The entry maps a different GPA.
    GpaMismatch {
        /// The GPA in the entry (for the faulting 4 KiB page).
        entry_gpa: u64,
    },
    /// The page is immutable.
    Immutable,
    /// The page has not been validated (RMPADJUST).
    NotValidated,
    /// A 4 KiB access hit a 2 MiB RMP entry: the hypervisor must PSMASH and retry.
    SizeMismatch,
}

impl fmt::Display for RmpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RmpFault::NotAssigned => f.write_str("page not assigned to the guest"),
            RmpFault::AsidMismatch { owner } => write!(f, "page belongs to ASID {owner}"),
            RmpFault::GpaMismatch { entry_gpa } => {
                write!(f, "entry maps GPA {entry_gpa:#x}")
            }
            RmpFault::Immutable => f.write_str("page is immutable"),
            RmpFault::NotValidated => f.write_str("page not validated"),
            RmpFault::SizeMismatch => f.write_str("4K access to a 2M RMP entry"),
        }
    }
}

/// A refused RMP operation; the RMP is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RmpError {
    /// The instruction returned a failure code (EAX).
    #[error("{op} failed with {} ({code}): {why}", fail_name(*code))]
    Fail {
        /// The instruction.
        op: RmpOp,
        /// The architectural code (`FAIL_*`).
        code: u32,
        /// What the check that failed was.
        why: &'static str,
    },
    /// The instruction faulted (RMP #NPF or #VC).
    #[error("{op} raised an RMP fault: {fault}")]
    Fault {
        /// The instruction.
        op: RmpOp,
        /// Why.
        fault: RmpFault,
    },
}

impl RmpError {
    /// The architectural return code, or `None` for a fault.
    pub fn code(&self) -> Option<u32> {
        match self {
            RmpError::Fail { code, .. } => Some(*code),
            RmpError::Fault { .. } => None,
        }
    }
}

/// The APM name of a failure code (`"FAIL_INPUT"`), or `"UNKNOWN"`.
pub fn fail_name(code: u32) -> &'static str {
    match code {
        RMP_SUCCESS => "SUCCESS",
        FAIL_INPUT => "FAIL_INPUT",
        FAIL_PERMISSION => "FAIL_PERMISSION",
        FAIL_INUSE => "FAIL_INUSE",
        FAIL_OVERLAP => "FAIL_OVERLAP",
        FAIL_SIZEMISMATCH => "FAIL_SIZEMISMATCH",
        PVALIDATE_FAIL_NOUPDATE => "NOUPDATE",
        _ => "UNKNOWN",
    }
}

fn fail(op: RmpOp, code: u32, why: &'static str) -> RmpError {
    RmpError::Fail { op, code, why }
}

fn fault(op: RmpOp, fault: RmpFault) -> RmpError {
    RmpError::Fault { op, fault }
}

/// The RMP of a host with `pages` 4 KiB pages (system physical frames `0..pages`).
#[derive(Debug, Clone, Default)]
pub struct Rmp {
    pages: u64,
    /// Entries that differ from the default hypervisor 4 KiB entry.
    entries: BTreeMap<u64, RmpEntry>,
    /// Entries held by "another processor" (FAIL_INUSE).
    locked: BTreeSet<u64>,
}

impl Rmp {
    /// An RMP covering frames `0..pages`, every page in the hypervisor state.
    pub fn new(pages: u64) -> Self {
        Rmp {
            pages,
            entries: BTreeMap::new(),
            locked: BTreeSet::new(),
        }
    }

    /// Number of frames covered.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The raw entry of frame `pfn` (for a page inside a 2 MiB page this is the 4 KiB entry,
    /// not the 2 MiB one; see [`Rmp::lookup`]), or `None` outside the RMP.
    pub fn entry(&self, pfn: u64) -> Option<RmpEntry> {
        (pfn < self.pages).then(|| self.raw(pfn))
    }

    /// The entry that governs frame `pfn`: the 2 MiB entry at the aligned frame when that is an
    /// assigned 2 MiB page, else the frame's own entry. Returns the governing frame and entry.
    pub fn lookup(&self, pfn: u64) -> Option<(u64, RmpEntry)> {
        if pfn >= self.pages {
            return None;
        }
        let head = pfn & !(PAGES_PER_2M - 1);
        let h = self.raw(head);
        if h.assigned && h.page_size == PageSize::Size2M {
            Some((head, h))
        } else {
            Some((pfn, self.raw(pfn)))
        }
    }

    /// Every entry that differs from the default hypervisor 4 KiB entry, by frame.
    pub fn entries(&self) -> impl Iterator<Item = (u64, RmpEntry)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, *v))
    }

    /// Number of assigned entries (a 2 MiB page counts once).
    pub fn assigned_count(&self) -> usize {
        self.entries.values().filter(|e| e.assigned).count()
    }

    /// Mark frame `pfn` as held by another processor: RMPUPDATE, PSMASH and firmware writes that
    /// touch it fail with `FAIL_INUSE` until [`Rmp::unlock`].
    pub fn lock(&mut self, pfn: u64) -> Result<(), RmpError> {
        if pfn >= self.pages {
            return Err(fail(RmpOp::Lock, FAIL_INPUT, "frame outside the RMP"));
        }
        self.locked.insert(pfn);
        Ok(())
    }

    /// Release a frame locked with [`Rmp::lock`].
    pub fn unlock(&mut self, pfn: u64) {
        self.locked.remove(&pfn);
    }

    fn raw(&self, pfn: u64) -> RmpEntry {
        self.entries.get(&pfn).copied().unwrap_or_default()
    }

    fn store(&mut self, pfn: u64, e: RmpEntry) {
        if e == RmpEntry::default() {
            self.entries.remove(&pfn);
        } else {
            self.entries.insert(pfn, e);
        }
    }

    /// Frame range `[pfn, pfn + size)` must be aligned and inside the RMP.
    fn check_frames(&self, op: RmpOp, pfn: u64, size: PageSize) -> Result<(), RmpError> {
        if pfn % size.pages() != 0 {
            return Err(fail(op, FAIL_INPUT, "address not aligned to the page size"));
        }
        match pfn.checked_add(size.pages()) {
            Some(end) if end <= self.pages => Ok(()),
            _ => Err(fail(op, FAIL_INPUT, "address outside the RMP")),
        }
    }

    fn check_unlocked(&self, op: RmpOp, pfn: u64, size: PageSize) -> Result<(), RmpError> {
        if self.locked.range(pfn..pfn + size.pages()).next().is_some() {
            return Err(fail(op, FAIL_INUSE, "entry in use by another processor"));
        }
        Ok(())
    }

    /// The 4K/2M overlap rule shared by RMPUPDATE and firmware writes.
    fn check_overlap(&self, op: RmpOp, pfn: u64, size: PageSize) -> Result<(), RmpError> {
        match size {
            PageSize::Size4K => {
                let head = pfn & !(PAGES_PER_2M - 1);
                let h = self.raw(head);
                if h.assigned && h.page_size == PageSize::Size2M {
                    return Err(fail(
                        op,
                        FAIL_OVERLAP,
                        "4K entry inside an assigned 2M page (PSMASH first)",
                    ));
                }
            }
            PageSize::Size2M => {
                let tail = self
                    .entries
                    .range(pfn + 1..pfn + PAGES_PER_2M)
                    .any(|(_, e)| e.assigned);
                if tail {
                    return Err(fail(op, FAIL_OVERLAP, "2M entry over assigned 4K entries"));
                }
            }
        }
        Ok(())
    }

    /// RMPUPDATE: the hypervisor writes a new state for frame `spa_pfn` (and, for a 2 MiB
    /// update, the 2 MiB page starting there).
    ///
    /// Checks, in order: the frame is aligned to the page size and inside the RMP, the new GPA is
    /// aligned and below [`GPA_LIMIT`], an assigned page has an ASID in `1..=MAX_ASID` (the
    /// hypervisor cannot create firmware pages), an unassigned one has ASID 0, GPA 0 and is not
    /// immutable (`FAIL_INPUT`); no entry in the range is locked (`FAIL_INUSE`); the governing
    /// entry is not immutable (`FAIL_PERMISSION`); 4K/2M overlap (`FAIL_OVERLAP`). The result
    /// has `validated` and `vmsa` clear and VMPL0 holding every permission when assigned.
    pub fn update(&mut self, spa_pfn: u64, new: RmpUpdate) -> Result<(), RmpError> {
        let op = RmpOp::Rmpupdate;
        self.check_frames(op, spa_pfn, new.page_size)?;
        if new.gpa % new.page_size.bytes() != 0 || new.gpa >= GPA_LIMIT {
            return Err(fail(op, FAIL_INPUT, "GPA misaligned or too large"));
        }
        if new.assigned {
            if new.asid == 0 || new.asid > MAX_ASID {
                return Err(fail(op, FAIL_INPUT, "ASID out of range"));
            }
        } else if new.asid != 0 || new.gpa != 0 || new.immutable {
            return Err(fail(
                op,
                FAIL_INPUT,
                "a hypervisor page has no ASID, GPA or immutable bit",
            ));
        }
        self.check_unlocked(op, spa_pfn, new.page_size)?;
        let immutable = match new.page_size {
            PageSize::Size4K => self.lookup(spa_pfn).is_some_and(|(_, e)| e.immutable),
            PageSize::Size2M => self
                .entries
                .range(spa_pfn..spa_pfn + PAGES_PER_2M)
                .any(|(_, e)| e.immutable),
        };
        if immutable {
            return Err(fail(op, FAIL_PERMISSION, "entry is immutable"));
        }
        self.check_overlap(op, spa_pfn, new.page_size)?;
        self.store(
            spa_pfn,
            RmpEntry {
                assigned: new.assigned,
                validated: false,
                page_size: new.page_size,
                asid: new.asid,
                gpa: new.gpa,
                immutable: new.immutable,
                vmsa: false,
                vmpl_perms: if new.assigned {
                    [PERM_ALL, 0, 0, 0]
                } else {
                    [0; VMPL_COUNT]
                },
            },
        );
        Ok(())
    }

    /// The ownership checks PVALIDATE and RMPADJUST share: returns the governing entry's frame
    /// and entry after checking assignment, ASID, GPA and immutability, and the size rules.
    fn guest_entry(
        &self,
        op: RmpOp,
        spa_pfn: u64,
        asid: u32,
        gpa: u64,
        size: PageSize,
    ) -> Result<(u64, RmpEntry), RmpError> {
        self.check_frames(op, spa_pfn, size)?;
        if gpa % size.bytes() != 0 || gpa >= GPA_LIMIT {
            return Err(fail(op, FAIL_INPUT, "GPA misaligned or too large"));
        }
        let (head, e) = match size {
            PageSize::Size4K => self.lookup(spa_pfn).unwrap_or_default(),
            PageSize::Size2M => (spa_pfn, self.raw(spa_pfn)),
        };
        if !e.assigned {
            return Err(fault(op, RmpFault::NotAssigned));
        }
        if e.asid != asid {
            return Err(fault(op, RmpFault::AsidMismatch { owner: e.asid }));
        }
        let entry_gpa = e.gpa + ((spa_pfn - head) << PAGE_SHIFT);
        if entry_gpa != gpa {
            return Err(fault(op, RmpFault::GpaMismatch { entry_gpa }));
        }
        if e.immutable {
            return Err(fault(op, RmpFault::Immutable));
        }
        match (size, e.page_size) {
            (PageSize::Size2M, PageSize::Size4K) => Err(fail(
                op,
                FAIL_SIZEMISMATCH,
                "2M request on a page the RMP maps as 4K",
            )),
            (PageSize::Size4K, PageSize::Size2M) => Err(fault(op, RmpFault::SizeMismatch)),
            _ => Ok((head, e)),
        }
    }

    /// PVALIDATE: the guest with `req.asid` sets or clears the validated bit of the page it maps
    /// at `req.gpa`, backed by frame `spa_pfn`.
    ///
    /// `FAIL_INPUT` for misaligned or out-of-range addresses; an RMP fault when the page is not
    /// assigned to this ASID at this GPA, is immutable, or a 4K request hits a 2M entry;
    /// `FAIL_SIZEMISMATCH` for a 2M request on 4K entries; [`PvalidateOutcome::NoUpdate`] when the
    /// bit already has the requested value.
    pub fn pvalidate(
        &mut self,
        spa_pfn: u64,
        req: Pvalidate,
    ) -> Result<PvalidateOutcome, RmpError> {
        let (head, mut e) =
            self.guest_entry(RmpOp::Pvalidate, spa_pfn, req.asid, req.gpa, req.page_size)?;
        if e.validated == req.validate {
            return Ok(PvalidateOutcome::NoUpdate);
        }
        e.validated = req.validate;
        self.store(head, e);
        Ok(PvalidateOutcome::Updated)
    }

    /// PSMASH: split the 2 MiB entry at `spa_pfn` into 512 4 KiB entries with the same
    /// assignment, ASID, validation, immutability and permissions and consecutive GPAs.
    ///
    /// `FAIL_INPUT` when `spa_pfn` is not 2 MiB aligned or the page is outside the RMP,
    /// `FAIL_INUSE` when an entry in it is locked, `FAIL_PERMISSION` when the entry is not a
    /// 2 MiB page (this model's choice for that case).
    pub fn psmash(&mut self, spa_pfn: u64) -> Result<(), RmpError> {
        let op = RmpOp::Psmash;
        self.check_frames(op, spa_pfn, PageSize::Size2M)?;
        self.check_unlocked(op, spa_pfn, PageSize::Size2M)?;
        let head = self.raw(spa_pfn);
        if head.page_size != PageSize::Size2M {
            return Err(fail(op, FAIL_PERMISSION, "entry is not a 2M page"));
        }
        for i in 0..PAGES_PER_2M {
            let gpa = if head.assigned {
                head.gpa + (i << PAGE_SHIFT)
            } else {
                0
            };
            self.store(
                spa_pfn + i,
                RmpEntry {
                    page_size: PageSize::Size4K,
                    gpa,
                    vmsa: head.vmsa && i == 0,
                    ..head
                },
            );
        }
        Ok(())
    }

    /// RMPADJUST: the guest at `req.current_vmpl` sets the permissions (and VMSA bit) of
    /// `req.target_vmpl` for its page at `req.gpa`, backed by `spa_pfn`.
    ///
    /// `FAIL_INPUT` for misaligned addresses, VMPLs above 3 or reserved permission bits; an RMP
    /// fault as for PVALIDATE, or when the page is not validated; `FAIL_SIZEMISMATCH` for a 2M
    /// request on 4K entries; `FAIL_PERMISSION` when the target VMPL is not less privileged than
    /// the current one or the new permissions exceed the current VMPL's.
    pub fn adjust(&mut self, spa_pfn: u64, req: Rmpadjust) -> Result<(), RmpError> {
        let op = RmpOp::Rmpadjust;
        if usize::from(req.current_vmpl) >= VMPL_COUNT
            || usize::from(req.target_vmpl) >= VMPL_COUNT
            || req.perms & !PERM_ALL != 0
        {
            return Err(fail(
                op,
                FAIL_INPUT,
                "VMPL above 3 or reserved permission bits",
            ));
        }
        let (head, mut e) = self.guest_entry(op, spa_pfn, req.asid, req.gpa, req.page_size)?;
        if !e.validated {
            return Err(fault(op, RmpFault::NotValidated));
        }
        if req.target_vmpl <= req.current_vmpl {
            return Err(fail(
                op,
                FAIL_PERMISSION,
                "target VMPL must be less privileged than the current VMPL",
            ));
        }
        if req.perms & !e.vmpl_perms[usize::from(req.current_vmpl)] != 0 {
            return Err(fail(
                op,
                FAIL_PERMISSION,
                "permissions exceed the current VMPL's",
            ));
        }
        e.vmpl_perms[usize::from(req.target_vmpl)] = req.perms;
        e.vmsa = req.vmsa;
        self.store(head, e);
        Ok(())
    }

    /// Write an entry as the secure processor does (SNP_LAUNCH_UPDATE making pages Guest-Valid,
    /// firmware/context/metadata pages, reclaim): no immutability check, but the frame must be
    /// aligned and inside the RMP (`FAIL_INPUT`), unlocked (`FAIL_INUSE`) and respect the 4K/2M
    /// overlap rule (`FAIL_OVERLAP`).
    pub fn firmware_set(&mut self, spa_pfn: u64, entry: RmpEntry) -> Result<(), RmpError> {
        let op = RmpOp::Firmware;
        self.check_frames(op, spa_pfn, entry.page_size)?;
        if entry.asid > MAX_ASID
            || entry.gpa >= GPA_LIMIT
            || entry.vmpl_perms.iter().any(|p| p & !PERM_ALL != 0)
        {
            return Err(fail(op, FAIL_INPUT, "entry field out of range"));
        }
        self.check_unlocked(op, spa_pfn, entry.page_size)?;
        if entry.assigned {
            self.check_overlap(op, spa_pfn, entry.page_size)?;
        }
        self.store(spa_pfn, entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASID: u32 = 5;

    fn code(r: Result<impl std::fmt::Debug, RmpError>) -> u32 {
        match r {
            Ok(_) => RMP_SUCCESS,
            Err(e) => e.code().unwrap_or_else(|| panic!("fault, not a code: {e}")),
        }
    }

    fn fault_of<T: std::fmt::Debug>(r: Result<T, RmpError>) -> RmpFault {
        match r {
            Err(RmpError::Fault { fault, .. }) => fault,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    fn pv(gpa: u64, size: PageSize, validate: bool) -> Pvalidate {
        Pvalidate {
            asid: ASID,
            gpa,
            page_size: size,
            validate,
        }
    }

    #[test]
    fn new_rmp_is_all_hypervisor() {
        let rmp = Rmp::new(1024);
        assert_eq!(rmp.entry(0).unwrap().state(), Some(PageState::Hypervisor));
        assert_eq!(rmp.entry(1023).unwrap(), RmpEntry::default());
        assert_eq!(rmp.entry(1024), None);
        assert_eq!(rmp.assigned_count(), 0);
    }

    #[test]
    fn rmpupdate_private_then_shared() {
        let mut rmp = Rmp::new(1024);
        rmp.update(7, RmpUpdate::private(0x5000, ASID, PageSize::Size4K))
            .unwrap();
        let e = rmp.entry(7).unwrap();
        assert!(e.assigned && !e.validated && e.asid == ASID && e.gpa == 0x5000);
        assert_eq!(e.vmpl_perms, [PERM_ALL, 0, 0, 0]);
        assert_eq!(e.state(), Some(PageState::GuestInvalid));
        rmp.update(7, RmpUpdate::shared(PageSize::Size4K)).unwrap();
        assert_eq!(rmp.entry(7).unwrap(), RmpEntry::default());
        assert_eq!(rmp.entries().count(), 0);
    }

    #[test]
    fn rmpupdate_fail_input() {
        let mut rmp = Rmp::new(1024);
        let cases = [
            (1024, RmpUpdate::private(0, ASID, PageSize::Size4K)), // outside
            (1, RmpUpdate::private(0, ASID, PageSize::Size2M)),    // SPA misaligned
            (0, RmpUpdate::private(0x1000, ASID, PageSize::Size2M)), // GPA misaligned
            (0, RmpUpdate::private(0x123, ASID, PageSize::Size4K)), // GPA misaligned
            (0, RmpUpdate::private(GPA_LIMIT, ASID, PageSize::Size4K)),
            (0, RmpUpdate::private(0, 0, PageSize::Size4K)), // firmware page
            (0, RmpUpdate::private(0, MAX_ASID + 1, PageSize::Size4K)),
            (
                0,
                RmpUpdate {
                    asid: 1,
                    ..RmpUpdate::shared(PageSize::Size4K)
                },
            ),
            (
                0,
                RmpUpdate {
                    immutable: true,
                    ..RmpUpdate::shared(PageSize::Size4K)
                },
            ),
        ];
        let mut rmp2 = Rmp::new(1000);
        assert_eq!(
            code(rmp2.update(512, RmpUpdate::private(0, ASID, PageSize::Size2M))),
            FAIL_INPUT
        );
        for (pfn, u) in cases {
            assert_eq!(code(rmp.update(pfn, u)), FAIL_INPUT, "{pfn} {u:?}");
        }
        assert_eq!(rmp.entries().count(), 0, "failed updates change nothing");
    }

    #[test]
    fn rmpupdate_fail_permission_on_immutable() {
        let mut rmp = Rmp::new(1024);
        let u = RmpUpdate {
            immutable: true,
            ..RmpUpdate::private(0x2000, ASID, PageSize::Size4K)
        };
        rmp.update(3, u).unwrap();
        assert_eq!(rmp.entry(3).unwrap().state(), Some(PageState::PreGuest));
        assert_eq!(
            code(rmp.update(3, RmpUpdate::shared(PageSize::Size4K))),
            FAIL_PERMISSION
        );
        // A 2M update covering the immutable 4K page is refused too.
        assert_eq!(
            code(rmp.update(0, RmpUpdate::shared(PageSize::Size2M))),
            FAIL_PERMISSION
        );
        // The firmware may change it.
        rmp.firmware_set(3, RmpEntry::default()).unwrap();
        rmp.update(3, RmpUpdate::shared(PageSize::Size4K)).unwrap();
    }

    #[test]
    fn rmpupdate_fail_inuse() {
        let mut rmp = Rmp::new(1024);
        rmp.lock(600).unwrap();
        assert_eq!(
            code(rmp.update(600, RmpUpdate::private(0, ASID, PageSize::Size4K))),
            FAIL_INUSE
        );
        assert_eq!(
            code(rmp.update(512, RmpUpdate::private(0, ASID, PageSize::Size2M))),
            FAIL_INUSE
        );
        assert_eq!(code(rmp.psmash(512)), FAIL_INUSE);
        assert_eq!(code(rmp.firmware_set(600, RmpEntry::default())), FAIL_INUSE);
        assert_eq!(code(rmp.lock(5000)), FAIL_INPUT);
        rmp.unlock(600);
        rmp.update(600, RmpUpdate::private(0, ASID, PageSize::Size4K))
            .unwrap();
    }

    #[test]
    fn rmpupdate_fail_overlap() {
        let mut rmp = Rmp::new(2048);
        rmp.update(512, RmpUpdate::private(0x20_0000, ASID, PageSize::Size2M))
            .unwrap();
        // 4K update inside the assigned 2M page, including its first frame.
        for pfn in [512, 513, 1023] {
            assert_eq!(
                code(rmp.update(pfn, RmpUpdate::shared(PageSize::Size4K))),
                FAIL_OVERLAP
            );
        }
        // 2M update over an assigned 4K page.
        rmp.update(1030, RmpUpdate::private(0, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            code(rmp.update(1024, RmpUpdate::private(0, ASID, PageSize::Size2M))),
            FAIL_OVERLAP
        );
        // The same 2M page as a whole can go back to the hypervisor.
        rmp.update(512, RmpUpdate::shared(PageSize::Size2M))
            .unwrap();
        rmp.update(513, RmpUpdate::private(0x1000, ASID, PageSize::Size4K))
            .unwrap();
    }

    #[test]
    fn pvalidate_toggles_and_reports_no_update() {
        let mut rmp = Rmp::new(1024);
        rmp.update(9, RmpUpdate::private(0x9000, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            rmp.pvalidate(9, pv(0x9000, PageSize::Size4K, true)),
            Ok(PvalidateOutcome::Updated)
        );
        assert_eq!(rmp.entry(9).unwrap().state(), Some(PageState::GuestValid));
        assert_eq!(
            rmp.pvalidate(9, pv(0x9000, PageSize::Size4K, true)),
            Ok(PvalidateOutcome::NoUpdate)
        );
        assert_eq!(
            rmp.pvalidate(9, pv(0x9000, PageSize::Size4K, false)),
            Ok(PvalidateOutcome::Updated)
        );
        // RMPUPDATE clears validated.
        rmp.pvalidate(9, pv(0x9000, PageSize::Size4K, true))
            .unwrap();
        rmp.update(9, RmpUpdate::private(0x9000, ASID, PageSize::Size4K))
            .unwrap();
        assert!(!rmp.entry(9).unwrap().validated);
    }

    #[test]
    fn pvalidate_fail_input_and_sizemismatch() {
        let mut rmp = Rmp::new(1024);
        rmp.update(0, RmpUpdate::private(0, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            code(rmp.pvalidate(0, pv(0x800, PageSize::Size4K, true))),
            FAIL_INPUT
        );
        assert_eq!(
            code(rmp.pvalidate(1, pv(0x1000, PageSize::Size2M, true))),
            FAIL_INPUT
        );
        assert_eq!(
            code(rmp.pvalidate(5000, pv(0, PageSize::Size4K, true))),
            FAIL_INPUT
        );
        assert_eq!(
            code(rmp.pvalidate(0, pv(0, PageSize::Size2M, true))),
            FAIL_SIZEMISMATCH
        );
        assert!(!rmp.entry(0).unwrap().validated);
    }

    #[test]
    fn pvalidate_faults() {
        let mut rmp = Rmp::new(2048);
        assert_eq!(
            fault_of(rmp.pvalidate(1, pv(0x1000, PageSize::Size4K, true))),
            RmpFault::NotAssigned
        );
        rmp.update(1, RmpUpdate::private(0x1000, ASID + 1, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            fault_of(rmp.pvalidate(1, pv(0x1000, PageSize::Size4K, true))),
            RmpFault::AsidMismatch { owner: ASID + 1 }
        );
        rmp.update(2, RmpUpdate::private(0x7000, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            fault_of(rmp.pvalidate(2, pv(0x2000, PageSize::Size4K, true))),
            RmpFault::GpaMismatch { entry_gpa: 0x7000 }
        );
        let imm = RmpUpdate {
            immutable: true,
            ..RmpUpdate::private(0x3000, ASID, PageSize::Size4K)
        };
        rmp.update(3, imm).unwrap();
        assert_eq!(
            fault_of(rmp.pvalidate(3, pv(0x3000, PageSize::Size4K, true))),
            RmpFault::Immutable
        );
        // 4K PVALIDATE inside a 2M page: fault, the hypervisor PSMASHes, then it works.
        rmp.update(1024, RmpUpdate::private(0x40_0000, ASID, PageSize::Size2M))
            .unwrap();
        assert_eq!(
            fault_of(rmp.pvalidate(1025, pv(0x40_1000, PageSize::Size4K, true))),
            RmpFault::SizeMismatch
        );
        rmp.psmash(1024).unwrap();
        assert_eq!(
            rmp.pvalidate(1025, pv(0x40_1000, PageSize::Size4K, true)),
            Ok(PvalidateOutcome::Updated)
        );
        assert!(!rmp.entry(1024).unwrap().validated);
    }

    #[test]
    fn pvalidate_2m_and_psmash_keeps_state() {
        let mut rmp = Rmp::new(1024);
        rmp.update(512, RmpUpdate::private(0x20_0000, ASID, PageSize::Size2M))
            .unwrap();
        assert_eq!(
            rmp.pvalidate(512, pv(0x20_0000, PageSize::Size2M, true)),
            Ok(PvalidateOutcome::Updated)
        );
        assert_eq!(rmp.lookup(700).unwrap().0, 512);
        rmp.psmash(512).unwrap();
        for i in 0..PAGES_PER_2M {
            let e = rmp.entry(512 + i).unwrap();
            assert_eq!(e.page_size, PageSize::Size4K);
            assert_eq!(e.gpa, 0x20_0000 + i * 4096);
            assert!(e.assigned && e.validated && e.asid == ASID);
        }
        assert_eq!(rmp.lookup(700).unwrap().0, 700);
        assert_eq!(rmp.assigned_count(), 512);
    }

    #[test]
    fn psmash_failures() {
        let mut rmp = Rmp::new(1024);
        assert_eq!(code(rmp.psmash(3)), FAIL_INPUT);
        assert_eq!(code(rmp.psmash(1024)), FAIL_INPUT);
        assert_eq!(code(rmp.psmash(0)), FAIL_PERMISSION);
        rmp.update(0, RmpUpdate::private(0, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(code(rmp.psmash(0)), FAIL_PERMISSION);
    }

    fn adj(target: u8, perms: u8) -> Rmpadjust {
        Rmpadjust {
            asid: ASID,
            gpa: 0x4000,
            page_size: PageSize::Size4K,
            current_vmpl: 0,
            target_vmpl: target,
            perms,
            vmsa: false,
        }
    }

    #[test]
    fn rmpadjust_sets_permissions_and_vmsa() {
        let mut rmp = Rmp::new(1024);
        rmp.update(4, RmpUpdate::private(0x4000, ASID, PageSize::Size4K))
            .unwrap();
        assert_eq!(
            fault_of(rmp.adjust(4, adj(1, PERM_READ))),
            RmpFault::NotValidated
        );
        rmp.pvalidate(4, pv(0x4000, PageSize::Size4K, true))
            .unwrap();
        rmp.adjust(4, adj(1, PERM_READ | PERM_WRITE)).unwrap();
        assert_eq!(rmp.entry(4).unwrap().vmpl_perms[1], PERM_READ | PERM_WRITE);
        rmp.adjust(
            4,
            Rmpadjust {
                vmsa: true,
                ..adj(1, PERM_READ)
            },
        )
        .unwrap();
        assert!(rmp.entry(4).unwrap().vmsa);
        // VMPL1 may hand VMPL2 only what it has.
        let from1 = |perms| Rmpadjust {
            current_vmpl: 1,
            ..adj(2, perms)
        };
        rmp.adjust(4, from1(PERM_READ)).unwrap();
        assert_eq!(
            code(rmp.adjust(4, from1(PERM_READ | PERM_WRITE))),
            FAIL_PERMISSION
        );
    }

    #[test]
    fn rmpadjust_failures() {
        let mut rmp = Rmp::new(1024);
        rmp.update(4, RmpUpdate::private(0x4000, ASID, PageSize::Size4K))
            .unwrap();
        rmp.pvalidate(4, pv(0x4000, PageSize::Size4K, true))
            .unwrap();
        let before = rmp.entry(4).unwrap();
        assert_eq!(code(rmp.adjust(4, adj(4, PERM_READ))), FAIL_INPUT);
        assert_eq!(code(rmp.adjust(4, adj(1, 0x20))), FAIL_INPUT);
        assert_eq!(
            code(rmp.adjust(
                4,
                Rmpadjust {
                    gpa: 0x4001,
                    ..adj(1, 0)
                }
            )),
            FAIL_INPUT
        );
        assert_eq!(code(rmp.adjust(4, adj(0, PERM_READ))), FAIL_PERMISSION);
        assert_eq!(
            code(rmp.adjust(
                4,
                Rmpadjust {
                    current_vmpl: 2,
                    ..adj(1, 0)
                }
            )),
            FAIL_PERMISSION
        );
        // Frame 0 is not assigned: the ownership fault comes before any size check.
        let r = rmp.adjust(
            0,
            Rmpadjust {
                gpa: 0,
                page_size: PageSize::Size2M,
                ..adj(1, 0)
            },
        );
        assert_eq!(fault_of(r), RmpFault::NotAssigned);
        assert_eq!(rmp.entry(4).unwrap(), before);
    }

    #[test]
    fn rmpadjust_sizemismatch() {
        let mut rmp = Rmp::new(1024);
        rmp.update(0, RmpUpdate::private(0, ASID, PageSize::Size4K))
            .unwrap();
        rmp.pvalidate(0, pv(0, PageSize::Size4K, true)).unwrap();
        let r = rmp.adjust(
            0,
            Rmpadjust {
                gpa: 0,
                page_size: PageSize::Size2M,
                ..adj(1, 0)
            },
        );
        assert_eq!(code(r), FAIL_SIZEMISMATCH);
    }

    #[test]
    fn firmware_states_and_overlap() {
        let mut rmp = Rmp::new(2048);
        let fw = RmpEntry {
            assigned: true,
            immutable: true,
            ..RmpEntry::default()
        };
        rmp.firmware_set(10, fw).unwrap();
        assert_eq!(rmp.entry(10).unwrap().state(), Some(PageState::Firmware));
        rmp.firmware_set(11, RmpEntry { gpa: 1, ..fw }).unwrap();
        assert_eq!(rmp.entry(11).unwrap().state(), Some(PageState::Metadata));
        rmp.firmware_set(12, RmpEntry { vmsa: true, ..fw }).unwrap();
        assert_eq!(rmp.entry(12).unwrap().state(), Some(PageState::Context));
        assert_eq!(
            code(rmp.firmware_set(
                0,
                RmpEntry {
                    page_size: PageSize::Size2M,
                    ..fw
                }
            )),
            FAIL_OVERLAP
        );
        assert_eq!(code(rmp.firmware_set(5000, fw)), FAIL_INPUT);
        assert_eq!(
            code(rmp.firmware_set(13, RmpEntry { asid: 4096, ..fw })),
            FAIL_INPUT
        );
        // Launch: Pre-Guest → Guest-Valid done by the firmware.
        let pre = RmpUpdate {
            immutable: true,
            ..RmpUpdate::private(0x1000, ASID, PageSize::Size4K)
        };
        rmp.update(20, pre).unwrap();
        let mut e = rmp.entry(20).unwrap();
        e.immutable = false;
        e.validated = true;
        rmp.firmware_set(20, e).unwrap();
        assert_eq!(rmp.entry(20).unwrap().state(), Some(PageState::GuestValid));
        let odd = RmpEntry {
            validated: true,
            ..RmpEntry::default()
        };
        assert_eq!(odd.state(), None);
    }

    #[test]
    fn raw_format_round_trips() {
        let e = RmpEntry {
            assigned: true,
            validated: true,
            page_size: PageSize::Size2M,
            asid: MAX_ASID,
            gpa: 0x7_ffff_ffe0_0000,
            immutable: false,
            vmsa: true,
            vmpl_perms: [PERM_ALL, PERM_READ, 0, PERM_WRITE],
        };
        let raw = e.to_raw();
        assert_eq!(raw[0] & 0b111, 0b011);
        assert_eq!((raw[0] >> 51) & 0x3ff, u64::from(MAX_ASID));
        assert_eq!(raw[0] >> 61 & 3, 3);
        assert_eq!(RmpEntry::from_raw(raw), e);
        assert_eq!(RmpEntry::from_raw([0, 0]), RmpEntry::default());
        assert_eq!(fail_name(FAIL_OVERLAP), "FAIL_OVERLAP");
        assert_eq!(PageState::GuestValid.value(), 12);
        assert_eq!(PageSize::from_bit(2), None);
    }
}
