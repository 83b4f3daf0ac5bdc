//! Listeners told when guest ranges become shared (populated) or stop being shared
//! (discarded), like QEMU's `RamDiscardManager` listeners, so vhost-user and VFIO mappings of
//! shared memory can follow conversions.
//!
//! A listener may refuse a change; [`Listeners::notify`] then sends the inverse notification to
//! every listener (and range) it already told, in reverse order, and reports which listener
//! refused, so the conversion can be rolled back as a whole.

use std::ops::Range;

use cgs_core::Result;

use crate::tracker::MemState;

/// Follows the shared part of guest memory. Ranges are GPA byte ranges, page aligned.
pub trait SharedMemoryListener {
    /// `[gpa, gpa + size)` became shared: map it (IOMMU, vhost-user memory table).
    fn populated(&mut self, gpa: u64, size: u64) -> Result<()>;
    /// `[gpa, gpa + size)` is no longer shared (now private): unmap it.
    fn discarded(&mut self, gpa: u64, size: u64) -> Result<()>;
}

/// Identifies a registered listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

/// A listener refused a notification; every earlier notification of the same batch was undone.
#[derive(Debug, thiserror::Error)]
#[error("listener {index} refused {what} of {gpa:#x}+{size:#x}: {source}")]
pub struct ListenerError {
    /// Registration-order index of the listener that refused.
    pub index: usize,
    /// `"populate"` or `"discard"`.
    pub what: &'static str,
    /// The range it refused.
    pub gpa: u64,
    /// Size of that range.
    pub size: u64,
    /// Its error.
    #[source]
    pub source: Box<cgs_core::Error>,
    /// Errors listeners returned while being told to undo (they are told anyway).
    pub undo_errors: Vec<cgs_core::Error>,
}

type Boxed = Box<dyn SharedMemoryListener + Send>;

/// The registered listeners, in registration order.
#[derive(Default)]
pub struct Listeners {
    list: Vec<(ListenerId, Boxed)>,
    next: u64,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.list.len())
            .finish()
    }
}

fn call(l: &mut Boxed, to: MemState, r: &Range<u64>) -> Result<()> {
    let (gpa, size) = (r.start << 12, (r.end - r.start) << 12);
    match to {
        MemState::Shared => l.populated(gpa, size),
        MemState::Private => l.discarded(gpa, size),
    }
}

impl Listeners {
    /// No listeners.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of listeners.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// `true` without listeners.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Add a listener without telling it anything (see `Converter::register_listener` for the
    /// variant that replays the shared ranges first).
    pub fn push(&mut self, l: Boxed) -> ListenerId {
        let id = ListenerId(self.next);
        self.next += 1;
        self.list.push((id, l));
        id
    }

    /// Remove a listener; returns it.
    pub fn remove(&mut self, id: ListenerId) -> Option<Boxed> {
        let i = self.list.iter().position(|(x, _)| *x == id)?;
        Some(self.list.remove(i).1)
    }

    /// Tell one listener (by id) about `ranges` (frame ranges) changing to `to`, undoing on
    /// refusal.
    pub(crate) fn notify_one(
        &mut self,
        id: ListenerId,
        to: MemState,
        ranges: &[Range<u64>],
    ) -> std::result::Result<(), ListenerError> {
        let Some(i) = self.list.iter().position(|(x, _)| *x == id) else {
            return Ok(());
        };
        Self::notify_slice(&mut self.list[i..=i], i, to, ranges)
    }

    /// Tell every listener that the frame ranges `ranges` changed to `to`. On refusal, undo
    /// what was told (inverse notifications, reverse order) and return the refusal.
    #[inline]
    pub fn notify(
        &mut self,
        to: MemState,
        ranges: &[Range<u64>],
    ) -> std::result::Result<(), ListenerError> {
        if self.list.is_empty() {
            return Ok(());
        }
        Self::notify_slice(&mut self.list, 0, to, ranges)
    }

    fn notify_slice(
        list: &mut [(ListenerId, Boxed)],
        base: usize,
        to: MemState,
        ranges: &[Range<u64>],
    ) -> std::result::Result<(), ListenerError> {
        for li in 0..list.len() {
            for (ri, r) in ranges.iter().enumerate() {
                if let Err(source) = call(&mut list[li].1, to, r) {
                    let mut undo_errors = Vec::new();
                    // This listener: the ranges before ri, newest first.
                    for done in ranges[..ri].iter().rev() {
                        if let Err(e) = call(&mut list[li].1, to.opposite(), done) {
                            undo_errors.push(e);
                        }
                    }
                    // Earlier listeners: everything, newest first.
                    for (_, l) in list[..li].iter_mut().rev() {
                        for done in ranges.iter().rev() {
                            if let Err(e) = call(l, to.opposite(), done) {
                                undo_errors.push(e);
                            }
                        }
                    }
                    return Err(ListenerError {
                        index: base + li,
                        what: if to.is_private() {
                            "discard"
                        } else {
                            "populate"
                        },
                        gpa: r.start << 12,
                        size: (r.end - r.start) << 12,
                        source: Box::new(source),
                        undo_errors,
                    });
                }
            }
        }
        Ok(())
    }
}
