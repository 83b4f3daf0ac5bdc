//! The one conversion path: explicit calls, `KVM_HC_MAP_GPA_RANGE` hypercall exits,
//! `KVM_EXIT_MEMORY_FAULT` exits and GHCB page-state changes all end in
//! [`Converter::convert`].
//!
//! Steps, in order ([`Step`]):
//! 1. **validate**: non-empty, 4 KiB aligned, no overflow, inside guest RAM, and for a 2 MiB
//!    (1 GiB) request 2 MiB (1 GiB) aligned in address and size;
//! 2. **set memory attributes** over the range ([`MemoryAttributes`]);
//! 3. **discard** the side that became stale in every run that changed: the guest_memfd pages
//!    for a conversion to shared, the shared mapping for a conversion to private ([`Discard`]);
//! 4. **update the tracker**;
//! 5. **notify** the listeners (populated for → shared, discarded for → private).
//!
//! A range already in the requested state succeeds without any work. When a step fails, the
//! earlier steps are undone (attributes of the changed runs set back, tracker restored,
//! listeners told the inverse) and the [`ConvertError`] names the step; the one thing that
//! cannot be undone is the content of pages already discarded in step 3, which by definition
//! was the stale side the guest asked to give up.

use std::fmt;
use std::ops::Range;

use cgs_core::Error;

use crate::attrs::MemoryAttributes;
use crate::binding::Discard;
use crate::listener::{ListenerError, ListenerId, Listeners, SharedMemoryListener};
use crate::tracker::{MemState, PageTracker};

mod changed;

pub use changed::ChangedRuns;

const PAGE: u64 = 4096;

/// The page-size hint of a request (`KVM_MAP_GPA_RANGE_PAGE_SZ_*`, PSC entry size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageSizeHint {
    /// 4 KiB.
    #[default]
    Size4K,
    /// 2 MiB: address and size must be 2 MiB aligned.
    Size2M,
    /// 1 GiB: address and size must be 1 GiB aligned.
    Size1G,
}

impl PageSizeHint {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSizeHint::Size4K => 1 << 12,
            PageSizeHint::Size2M => 1 << 21,
            PageSizeHint::Size1G => 1 << 30,
        }
    }
}

/// Where a request came from (for messages and statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A VMM call.
    Explicit,
    /// `KVM_EXIT_HYPERCALL` / `KVM_HC_MAP_GPA_RANGE`.
    Hypercall,
    /// `KVM_EXIT_MEMORY_FAULT`.
    MemoryFault,
    /// GHCB page-state change (MSR protocol or PSC buffer).
    PageStateChange,
}

/// A conversion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversionRequest {
    /// First GPA.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Target state.
    pub to: MemState,
    /// Page-size hint.
    pub page_size: PageSizeHint,
    /// Source.
    pub origin: Origin,
}

impl ConversionRequest {
    /// An explicit 4 KiB-granular request.
    pub const fn new(gpa: u64, size: u64, to: MemState) -> Self {
        ConversionRequest {
            gpa,
            size,
            to,
            page_size: PageSizeHint::Size4K,
            origin: Origin::Explicit,
        }
    }
}

/// A conversion step (named by [`ConvertError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Request validation.
    Validate,
    /// Setting the memory attributes.
    SetAttributes,
    /// Discarding the stale side.
    Discard,
    /// Updating the page-state tracker.
    UpdateTracker,
    /// Notifying listeners.
    Notify,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Validate => "validate",
            Step::SetAttributes => "set memory attributes",
            Step::Discard => "discard",
            Step::UpdateTracker => "update tracker",
            Step::Notify => "notify listeners",
        })
    }
}

/// A failed conversion: nothing changed (see the module docs for discarded contents).
#[derive(Debug, thiserror::Error)]
#[error("converting {gpa:#x}+{size:#x} to {to} failed at step \"{step}\": {source}")]
pub struct ConvertError {
    /// The step that failed.
    pub step: Step,
    /// Requested GPA.
    pub gpa: u64,
    /// Requested size.
    pub size: u64,
    /// Requested state.
    pub to: MemState,
    /// The step's error.
    #[source]
    pub source: Box<Error>,
    /// Errors while undoing earlier steps (empty when the rollback was clean).
    pub rollback_errors: Vec<Error>,
}

impl ConvertError {
    /// The value for `hypercall.ret`: `EAGAIN` when the failure is transient (the step's errno
    /// is EAGAIN, EINTR, EBUSY or ENOMEM), else `EINVAL`.
    pub fn guest_errno(&self) -> u64 {
        let transient = |e: &Error| {
            matches!(
                e.errno(),
                Some(libc::EAGAIN | libc::EINTR | libc::EBUSY | libc::ENOMEM)
            )
        };
        if self.step != Step::Validate && transient(&self.source) {
            libc::EAGAIN as u64
        } else {
            libc::EINVAL as u64
        }
    }
}

impl From<ConvertError> for Error {
    fn from(e: ConvertError) -> Self {
        Error::Backend {
            context: format!("page conversion ({})", e.step).into(),
            source: Box::new(e),
        }
    }
}

/// What a successful conversion changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversion {
    /// Frame ranges (GPA >> 12) whose state changed; empty when nothing had to be done.
    pub changed: ChangedRuns,
}

impl Conversion {
    /// Number of 4 KiB pages that changed.
    #[inline]
    pub fn changed_pages(&self) -> u64 {
        self.changed.iter().map(|r| r.end - r.start).sum()
    }
}

/// Counters of the conversion path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Successful conversions that changed something.
    pub converted: u64,
    /// Successful requests that found the range already converted.
    pub noop: u64,
    /// Failed requests.
    pub failed: u64,
    /// Pages converted to private.
    pub pages_to_private: u64,
    /// Pages converted to shared.
    pub pages_to_shared: u64,
}

/// The conversion engine of one VM: guest RAM layout, page-state tracker, attributes backend,
/// discard backend and listeners.
// `repr(C)` in this order: the small fields every conversion reads (RAM span, counters,
// listener list header, discard backend's header) are packed together ahead of the tracker,
// whose hot head (page count, run count, first runs) follows; the cold inline run storage comes
// after. The success path runs right after the discard syscalls, with the caches partly
// evicted, so each cache line it touches counts.
#[repr(C)]
pub struct Converter<A, D> {
    /// `ram`'s hull when its ranges leave no gap (the usual layout), else empty: validation
    /// checks it without reading the heap-allocated `ram`.
    span: Range<u64>,
    stats: Stats,
    listeners: Listeners,
    discard: D,
    tracker: PageTracker,
    attrs: A,
    ram: Vec<Range<u64>>,
}

impl<A, D> fmt::Debug for Converter<A, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Converter")
            .field("ram", &self.ram)
            .field("tracker", &self.tracker)
            .field("listeners", &self.listeners)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Why a request is invalid.
#[derive(Clone, Copy)]
enum Invalid {
    Empty,
    Unaligned(u64),
    Wraps,
    OutsideRam,
}

/// The error of an invalid request (out of line: formatting stays off the success path).
#[cold]
#[inline(never)]
fn bad(gpa: u64, size: u64, why: Invalid) -> Error {
    let why = match why {
        Invalid::Empty => "size is zero".to_string(),
        Invalid::Unaligned(align) => {
            format!("{gpa:#x}+{size:#x} is not aligned to the {align:#x}-byte page size")
        }
        Invalid::Wraps => format!("{gpa:#x}+{size:#x} wraps around"),
        Invalid::OutsideRam => format!("{gpa:#x}+{size:#x} is not inside guest RAM"),
    };
    Error::invalid_input("conversion request", why)
}

/// The error of a failed request.
#[cold]
#[inline(never)]
fn failed(
    req: &ConversionRequest,
    step: Step,
    source: Error,
    rollback_errors: Vec<Error>,
) -> ConvertError {
    ConvertError {
        step,
        gpa: req.gpa,
        size: req.size,
        to: req.to,
        source: Box::new(source),
        rollback_errors,
    }
}

impl<A: MemoryAttributes, D: Discard> Converter<A, D> {
    /// A converter for guest RAM `ram` (GPA, size pairs; page aligned, disjoint) whose pages
    /// are all `initial`. With `initial` private the attributes of every RAM range are set to
    /// private now (as QEMU does when it binds guest_memfd slots).
    pub fn new(
        ram: &[(u64, u64)],
        initial: MemState,
        mut attrs: A,
        discard: D,
    ) -> cgs_core::Result<Self> {
        let mut ranges: Vec<Range<u64>> = Vec::with_capacity(ram.len());
        for &(gpa, size) in ram {
            let end = gpa
                .checked_add(size)
                .ok_or_else(|| Error::invalid_input("guest RAM", "range wraps around"))?;
            if size == 0 || gpa % PAGE != 0 || size % PAGE != 0 {
                return Err(Error::invalid_input(
                    "guest RAM",
                    format!("{gpa:#x}+{size:#x} is empty or not 4 KiB aligned"),
                ));
            }
            ranges.push(gpa..end);
        }
        ranges.sort_by_key(|r| r.start);
        if ranges.windows(2).any(|w| w[0].end > w[1].start) {
            return Err(Error::invalid_input("guest RAM", "ranges overlap"));
        }
        let pages = ranges.last().map_or(0, |r| r.end / PAGE);
        if initial.is_private() {
            for r in &ranges {
                attrs.set(r.start, r.end - r.start, MemState::Private)?;
            }
        }
        let gap_free = ranges.windows(2).all(|w| w[0].end == w[1].start);
        let span = match (ranges.first(), ranges.last()) {
            (Some(first), Some(last)) if gap_free => first.start..last.end,
            _ => 0..0,
        };
        Ok(Converter {
            span,
            stats: Stats::default(),
            listeners: Listeners::new(),
            discard,
            tracker: PageTracker::new(pages, initial),
            attrs,
            ram: ranges,
        })
    }

    /// The page-state tracker.
    pub fn tracker(&self) -> &PageTracker {
        &self.tracker
    }

    /// The attributes backend.
    pub fn attrs(&self) -> &A {
        &self.attrs
    }

    /// The attributes backend, mutably (e.g. to arm fault injection).
    pub fn attrs_mut(&mut self) -> &mut A {
        &mut self.attrs
    }

    /// The discard backend.
    pub fn discard(&self) -> &D {
        &self.discard
    }

    /// The discard backend, mutably.
    pub fn discard_mut(&mut self) -> &mut D {
        &mut self.discard
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Guest RAM ranges (GPA).
    pub fn ram(&self) -> &[Range<u64>] {
        &self.ram
    }

    /// State of the page containing `gpa`, `None` outside guest RAM.
    pub fn state(&self, gpa: u64) -> Option<MemState> {
        if !self.ram.iter().any(|r| r.contains(&gpa)) {
            return None;
        }
        self.tracker.state(gpa / PAGE)
    }

    /// `true` when `[gpa, end)` lies inside guest RAM (possibly across adjacent ranges).
    #[inline]
    fn in_ram(&self, gpa: u64, end: u64) -> bool {
        // Gap-free RAM: inside the hull is inside RAM (no heap read).
        if self.span.start <= gpa && end <= self.span.end {
            return true;
        }
        self.in_ram_ranges(gpa, end)
    }

    /// [`Converter::in_ram`] over the individual ranges (out of line: RAM with holes, or a
    /// request outside the hull).
    #[inline(never)]
    fn in_ram_ranges(&self, gpa: u64, end: u64) -> bool {
        let mut at = gpa;
        for r in &self.ram {
            if r.start <= at && at < r.end {
                at = r.end;
                if at >= end {
                    return true;
                }
            }
        }
        false
    }

    /// Shared frame runs inside guest RAM.
    fn shared_runs(&self) -> Vec<Range<u64>> {
        self.ram
            .iter()
            .flat_map(|r| {
                self.tracker
                    .runs(r.start / PAGE..r.end / PAGE, MemState::Shared)
            })
            .collect()
    }

    /// Register a listener and replay the currently shared ranges to it as `populated`; when
    /// it refuses, it is told to discard what it accepted and is not registered.
    pub fn register_listener(
        &mut self,
        l: Box<dyn SharedMemoryListener + Send>,
    ) -> Result<ListenerId, ListenerError> {
        let runs = self.shared_runs();
        let id = self.listeners.push(l);
        if let Err(e) = self.listeners.notify_one(id, MemState::Shared, &runs) {
            self.listeners.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Unregister a listener, telling it that the shared ranges are gone.
    pub fn unregister_listener(
        &mut self,
        id: ListenerId,
    ) -> Option<Box<dyn SharedMemoryListener + Send>> {
        let runs = self.shared_runs();
        // The listener is leaving; a refusal to unmap cannot be acted on.
        let _ = self.listeners.notify_one(id, MemState::Private, &runs);
        self.listeners.remove(id)
    }

    /// Validate a request; returns the frame range.
    pub fn validate(&self, req: &ConversionRequest) -> cgs_core::Result<Range<u64>> {
        let (gpa, size) = (req.gpa, req.size);
        if size == 0 {
            return Err(bad(gpa, size, Invalid::Empty));
        }
        let align = req.page_size.bytes();
        if gpa % align != 0 || size % align != 0 {
            return Err(bad(gpa, size, Invalid::Unaligned(align)));
        }
        let Some(end) = gpa.checked_add(size) else {
            return Err(bad(gpa, size, Invalid::Wraps));
        };
        if !self.in_ram(gpa, end) {
            return Err(bad(gpa, size, Invalid::OutsideRam));
        }
        Ok(gpa / PAGE..end / PAGE)
    }

    /// Convert a range. See the module documentation for the steps and the rollback.
    pub fn convert(&mut self, req: ConversionRequest) -> Result<Conversion, ConvertError> {
        let r = self.convert_inner(&req);
        match &r {
            Ok(c) if c.changed.is_empty() => self.stats.noop += 1,
            Ok(c) => {
                self.stats.converted += 1;
                match req.to {
                    MemState::Private => self.stats.pages_to_private += c.changed_pages(),
                    MemState::Shared => self.stats.pages_to_shared += c.changed_pages(),
                }
            }
            Err(_) => self.stats.failed += 1,
        }
        r
    }

    /// Convert `[gpa, gpa + size)` to private (explicit, 4 KiB granular).
    pub fn to_private(&mut self, gpa: u64, size: u64) -> Result<Conversion, ConvertError> {
        self.convert(ConversionRequest::new(gpa, size, MemState::Private))
    }

    /// Convert `[gpa, gpa + size)` to shared (explicit, 4 KiB granular).
    pub fn to_shared(&mut self, gpa: u64, size: u64) -> Result<Conversion, ConvertError> {
        self.convert(ConversionRequest::new(gpa, size, MemState::Shared))
    }

    // The success path is kept small (it runs between the discard syscalls with cold caches):
    // every failure leaves through one of the out-of-line `fail_*` functions below.
    fn convert_inner(&mut self, req: &ConversionRequest) -> Result<Conversion, ConvertError> {
        // 1. validate
        let frames = match self.validate(req) {
            Ok(f) => f,
            Err(e) => return Err(failed(req, Step::Validate, e, Vec::new())),
        };
        let to = req.to;
        // One run lookup for "is anything to do?" and, in the common case of a range inside
        // one run of the other state, the whole list of changed runs.
        let Some(first) = self
            .tracker
            .next_run(frames.start, frames.end, to.opposite())
        else {
            return Ok(Conversion::default());
        };
        let changed = if first.end == frames.end {
            ChangedRuns::one(first)
        } else {
            self.more_runs(first, frames.end, to.opposite())
        };
        // 2. attributes (all or nothing per the trait contract)
        if let Err(e) = self.attrs.set(req.gpa, req.size, to) {
            return Err(failed(req, Step::SetAttributes, e, Vec::new()));
        }
        // 3. discard the stale side of every changed run
        for r in changed.iter() {
            let (gpa, size) = (r.start * PAGE, (r.end - r.start) * PAGE);
            let res = match to {
                MemState::Shared => self.discard.discard_private(gpa, size),
                MemState::Private => self.discard.discard_shared(gpa, size),
            };
            if let Err(e) = res {
                return Err(self.fail_discard(req, &changed, e));
            }
        }
        // 4. tracker
        if let Err(e) = self.tracker.fill(frames, to) {
            return Err(self.fail_tracker(req, &changed, e));
        }
        // 5. listeners
        if let Err(e) = self.listeners.notify(to, &changed) {
            return Err(self.fail_notify(req, &changed, e));
        }
        Ok(Conversion { changed })
    }

    /// The changed runs when the range spans more than one run (out of line).
    #[inline(never)]
    fn more_runs(&self, first: Range<u64>, end: u64, state: MemState) -> ChangedRuns {
        let from = first.end;
        std::iter::once(first)
            .chain(self.tracker.runs(from..end, state))
            .collect()
    }

    /// Step 3 failed: attributes back.
    #[cold]
    #[inline(never)]
    fn fail_discard(
        &mut self,
        req: &ConversionRequest,
        changed: &[Range<u64>],
        e: Error,
    ) -> ConvertError {
        let rb = self.undo_attributes(changed, req.to);
        failed(req, Step::Discard, e, rb)
    }

    /// Step 4 failed (cannot happen for a validated range): attributes back.
    #[cold]
    #[inline(never)]
    fn fail_tracker(
        &mut self,
        req: &ConversionRequest,
        changed: &[Range<u64>],
        e: crate::tracker::OutOfRange,
    ) -> ConvertError {
        let rb = self.undo_attributes(changed, req.to);
        let source = Error::invalid_input("page range", e.to_string());
        failed(req, Step::UpdateTracker, source, rb)
    }

    /// Step 5 failed (the listeners already undid what they were told): tracker and
    /// attributes back.
    #[cold]
    #[inline(never)]
    fn fail_notify(
        &mut self,
        req: &ConversionRequest,
        changed: &[Range<u64>],
        mut e: ListenerError,
    ) -> ConvertError {
        let to = req.to;
        let mut rb: Vec<Error> = e.undo_errors.drain(..).collect();
        for r in changed {
            // Cannot fail: the runs are inside the tracker.
            if let Err(te) = self.tracker.fill(r.clone(), to.opposite()) {
                rb.push(Error::invalid_input("page range", te.to_string()));
            }
        }
        rb.extend(self.undo_attributes(changed, to));
        let source = Error::Backend {
            context: format!("listener {} refused {}", e.index, e.what).into(),
            source: Box::new(e),
        };
        failed(req, Step::Notify, source, rb)
    }

    /// Set the attributes of the changed runs back to their previous state.
    fn undo_attributes(&mut self, changed: &[Range<u64>], to: MemState) -> Vec<Error> {
        changed
            .iter()
            .filter_map(|r| {
                self.attrs
                    .set(r.start * PAGE, (r.end - r.start) * PAGE, to.opposite())
                    .err()
            })
            .collect()
    }
}
