//! Test doubles for the conversion path: fault injection around any backend or listener, an
//! in-memory model of both sides of guest memory, and a listener that records its events.
//! Used by this crate's tests, benchmarks, fuzz targets and example; VMM authors can use them to
//! test their own conversion handling.

use std::sync::{Arc, Mutex};

use cgs_core::{Error, Result};

use crate::attrs::MemoryAttributes;
use crate::binding::Discard;
use crate::listener::SharedMemoryListener;
use crate::tracker::MemState;

/// When a [`Faulty`] wrapper fails: a shared handle, so a wrapper that has been moved into a
/// converter (or boxed as a listener) can still be armed.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan(Arc<Mutex<PlanState>>);

#[derive(Debug, Default)]
struct PlanState {
    countdown: Option<usize>,
    errno: i32,
    failures: usize,
}

impl FaultPlan {
    /// Let `n` more calls through, then fail the next one (once) with `EIO`.
    pub fn fail_after(&self, n: usize) {
        self.fail_after_with(n, libc::EIO);
    }

    /// Like [`FaultPlan::fail_after`] with a chosen errno (e.g. `EAGAIN`).
    pub fn fail_after_with(&self, n: usize, errno: i32) {
        if let Ok(mut p) = self.0.lock() {
            p.countdown = Some(n);
            p.errno = errno;
        }
    }

    /// Disarm.
    pub fn disarm(&self) {
        if let Ok(mut p) = self.0.lock() {
            p.countdown = None;
        }
    }

    /// Number of injected failures so far.
    pub fn failures(&self) -> usize {
        self.0.lock().map(|p| p.failures).unwrap_or(0)
    }

    fn tick(&self, op: &'static str) -> Result<()> {
        let mut p = self
            .0
            .lock()
            .map_err(|_| Error::invalid_input("fault plan", "poisoned"))?;
        match p.countdown {
            Some(0) => {
                p.countdown = None;
                p.failures += 1;
                Err(Error::kvm(op, vmm_sys_util::errno::Error::new(p.errno)))
            }
            Some(n) => {
                p.countdown = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Wraps a backend or listener and fails the call its [`FaultPlan`] chooses (changing nothing).
#[derive(Debug, Clone)]
pub struct Faulty<T> {
    /// The wrapped value.
    pub inner: T,
    plan: FaultPlan,
}

impl<T> Faulty<T> {
    /// Wrap `inner`; no failure armed.
    pub fn new(inner: T) -> Self {
        Faulty {
            inner,
            plan: FaultPlan::default(),
        }
    }

    /// The plan (clone it to arm the wrapper later).
    pub fn plan(&self) -> FaultPlan {
        self.plan.clone()
    }

    fn tick(&mut self, op: &'static str) -> Result<()> {
        self.plan.tick(op)
    }
}

impl<A: MemoryAttributes> MemoryAttributes for Faulty<A> {
    fn set(&mut self, gpa: u64, size: u64, state: MemState) -> Result<()> {
        self.tick("KVM_SET_MEMORY_ATTRIBUTES (injected)")?;
        self.inner.set(gpa, size, state)
    }
}

impl<D: Discard> Discard for Faulty<D> {
    fn discard_private(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.tick("fallocate(PUNCH_HOLE) (injected)")?;
        self.inner.discard_private(gpa, size)
    }

    fn discard_shared(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.tick("madvise (injected)")?;
        self.inner.discard_shared(gpa, size)
    }
}

impl<L: SharedMemoryListener> SharedMemoryListener for Faulty<L> {
    fn populated(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.tick("listener populate (injected)")?;
        self.inner.populated(gpa, size)
    }

    fn discarded(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.tick("listener discard (injected)")?;
        self.inner.discarded(gpa, size)
    }
}

/// Both sides of guest memory in process memory: `shared` and `private` byte arrays covering
/// GPAs `base..base + size`. Discarding zeroes a side.
#[derive(Debug, Clone)]
pub struct MemDiscard {
    /// GPA of the first byte.
    pub base: u64,
    /// Shared side.
    pub shared: Vec<u8>,
    /// Private side.
    pub private: Vec<u8>,
}

impl MemDiscard {
    /// `size` bytes of each side at `base`, zeroed.
    pub fn new(base: u64, size: usize) -> Self {
        MemDiscard {
            base,
            shared: vec![0; size],
            private: vec![0; size],
        }
    }

    /// The byte range of `[gpa, gpa + size)` in the arrays.
    pub fn span(&self, gpa: u64, size: u64) -> Result<std::ops::Range<usize>> {
        let start = gpa
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok());
        let end = start.and_then(|s| s.checked_add(usize::try_from(size).ok()?));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.shared.len() => Ok(s..e),
            _ => Err(Error::invalid_input(
                "discard range",
                "outside the model memory",
            )),
        }
    }
}

impl Discard for MemDiscard {
    fn discard_private(&mut self, gpa: u64, size: u64) -> Result<()> {
        let r = self.span(gpa, size)?;
        self.private[r].fill(0);
        Ok(())
    }

    fn discard_shared(&mut self, gpa: u64, size: u64) -> Result<()> {
        let r = self.span(gpa, size)?;
        self.shared[r].fill(0);
        Ok(())
    }
}

/// A discard backend that only counts the pages it was asked to drop (for fuzzing and
/// benchmarks, where contents do not matter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountingDiscard {
    /// Private (guest_memfd) pages discarded.
    pub private_pages: u64,
    /// Shared pages discarded.
    pub shared_pages: u64,
}

impl Discard for CountingDiscard {
    fn discard_private(&mut self, _gpa: u64, size: u64) -> Result<()> {
        self.private_pages += size / 4096;
        Ok(())
    }

    fn discard_shared(&mut self, _gpa: u64, size: u64) -> Result<()> {
        self.shared_pages += size / 4096;
        Ok(())
    }
}

/// A listener event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// `populated(gpa, size)`.
    Populated(u64, u64),
    /// `discarded(gpa, size)`.
    Discarded(u64, u64),
}

/// A listener that appends its events to a shared log.
#[derive(Debug, Clone, Default)]
pub struct RecordingListener {
    /// The log (clone the `Arc` before registering to read it later).
    pub events: Arc<Mutex<Vec<ListenerEvent>>>,
}

impl RecordingListener {
    /// A listener with an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events so far.
    pub fn snapshot(&self) -> Vec<ListenerEvent> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn push(&self, e: ListenerEvent) -> Result<()> {
        self.events
            .lock()
            .map_err(|_| Error::invalid_input("listener log", "poisoned"))?
            .push(e);
        Ok(())
    }
}

impl SharedMemoryListener for RecordingListener {
    fn populated(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.push(ListenerEvent::Populated(gpa, size))
    }

    fn discarded(&mut self, gpa: u64, size: u64) -> Result<()> {
        self.push(ListenerEvent::Discarded(gpa, size))
    }
}
