//! Shared/private state of every 4 KiB page of guest RAM.
//!
//! [`PageTracker`] answers "is this page private?", iterates maximal runs of pages in one state
//! and converts ranges. It stores the private runs in an ordered map while they are few, so its
//! memory is proportional to the number of runs (up to 16 runs inline, without heap, so the
//! common few-run conversion allocates nothing), and switches to a bitmap (1 bit per page) as
//! soon as the map would be larger than the bitmap; it switches back when the run count falls to
//! a quarter of that (or to 8). Memory is therefore bounded by about one bit per page in the
//! worst case.
//!
//! Pages are numbered by guest frame number (GPA >> 12) from 0 to [`PageTracker::pages`].

use std::ops::Range;

mod run_map;

use run_map::{RunMap, INLINE_RUNS};

/// The shared/private state of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemState {
    /// Shared with the host (backed by the memslot's userspace mapping).
    Shared,
    /// Private to the guest (backed by guest_memfd).
    Private,
}

impl MemState {
    /// The other state.
    pub const fn opposite(self) -> Self {
        match self {
            MemState::Shared => MemState::Private,
            MemState::Private => MemState::Shared,
        }
    }

    /// `true` for [`MemState::Private`].
    pub const fn is_private(self) -> bool {
        matches!(self, MemState::Private)
    }
}

impl std::fmt::Display for MemState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemState::Shared => "shared",
            MemState::Private => "private",
        })
    }
}

/// Upper bound of the bytes one run costs in the map representation: a `BTreeMap<u64, u64>`
/// leaf node is 192 bytes for at least 5 entries when nodes are least full, plus internal nodes.
/// Used to decide between map and bitmap, so the map never outgrows the bitmap; the measured
/// cost is about 34 bytes per run (see the `tracker` benchmark).
pub const RUN_COST_BYTES: u64 = 48;

/// A range outside the tracker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("page range {start:#x}..{end:#x} is empty, reversed or outside 0..{pages:#x}")]
pub struct OutOfRange {
    /// First frame of the rejected range.
    pub start: u64,
    /// End (exclusive) of the rejected range.
    pub end: u64,
    /// Number of frames tracked.
    pub pages: u64,
}

// The run variant holds the inline runs (see `run_map`); boxing them would put the common case
// back on the heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Repr {
    /// Private runs: start → end (exclusive), disjoint and never adjacent.
    Runs(RunMap),
    /// One bit per page (1 = private) and the number of private runs.
    Bitmap { bits: Vec<u64>, runs: u64 },
}

/// Shared/private state of `pages` guest frames.
// `repr(C)`, `pages` first: the page count, the representation's tag, the inline run count and
// the first runs share one cache line, so a conversion on a tracker with a few runs touches one
// line of it (the default layout put `pages` after the 256 bytes of inline runs).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct PageTracker {
    pages: u64,
    repr: Repr,
}

impl PageTracker {
    /// Track `pages` frames, all in state `initial`.
    pub fn new(pages: u64, initial: MemState) -> Self {
        let mut runs = RunMap::default();
        if initial.is_private() && pages > 0 {
            runs.insert(0, pages);
        }
        PageTracker {
            pages,
            repr: Repr::Runs(runs),
        }
    }

    /// Number of frames tracked.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// State of frame `gfn`, or `None` outside the tracker.
    pub fn state(&self, gfn: u64) -> Option<MemState> {
        if gfn >= self.pages {
            return None;
        }
        let private = match &self.repr {
            Repr::Runs(m) => m.floor(gfn).is_some_and(|(_, e)| e > gfn),
            Repr::Bitmap { bits, .. } => bit(bits, gfn),
        };
        Some(if private {
            MemState::Private
        } else {
            MemState::Shared
        })
    }

    /// Number of maximal private runs.
    pub fn private_runs(&self) -> u64 {
        match &self.repr {
            Repr::Runs(m) => m.len() as u64,
            Repr::Bitmap { runs, .. } => *runs,
        }
    }

    /// `true` while the bitmap representation is in use.
    pub fn is_bitmap(&self) -> bool {
        matches!(self.repr, Repr::Bitmap { .. })
    }

    /// Heap bytes used: none while the runs are inline (up to 16), an upper bound for the map
    /// (runs × [`RUN_COST_BYTES`]), exact for the bitmap.
    pub fn memory_bytes(&self) -> u64 {
        match &self.repr {
            Repr::Runs(m) => m.heap_bytes(),
            Repr::Bitmap { bits, .. } => bits.capacity() as u64 * 8,
        }
    }

    fn bitmap_bytes(&self) -> u64 {
        self.pages.div_ceil(64) * 8
    }

    #[inline]
    fn check(&self, r: &Range<u64>) -> Result<(), OutOfRange> {
        if r.start >= r.end || r.end > self.pages {
            return Err(OutOfRange {
                start: r.start,
                end: r.end,
                pages: self.pages,
            });
        }
        Ok(())
    }

    /// The first maximal run of `state` pages that intersects `[from, limit)`, clipped to it.
    #[inline]
    pub fn next_run(&self, from: u64, limit: u64, state: MemState) -> Option<Range<u64>> {
        let limit = limit.min(self.pages);
        if from >= limit {
            return None;
        }
        let run = match (&self.repr, state) {
            // One lookup: the run at or before `from` and the one after it (which is also the
            // first run after the end of the former, as runs never touch).
            (Repr::Runs(m), MemState::Private) => match m.around(from) {
                (Some((_, e)), _) if e > from => from..e,
                (_, next) => {
                    let (s, e) = next?;
                    s..e
                }
            },
            (Repr::Runs(m), MemState::Shared) => {
                let (floor, next) = m.around(from);
                let start = match floor {
                    Some((_, e)) if e > from => e,
                    _ => from,
                };
                let end = next.map_or(self.pages, |(s, _)| s);
                start..end
            }
            (Repr::Bitmap { bits, .. }, state) => bitmap_next_run(bits, from, limit, state)?,
        };
        let run = run.start.max(from)..run.end.min(limit);
        (run.start < run.end).then_some(run)
    }

    /// Every maximal run of `state` pages inside `range` (clipped to it), in order.
    #[inline]
    pub fn runs(&self, range: Range<u64>, state: MemState) -> Runs<'_> {
        Runs {
            tracker: self,
            next: range.start,
            limit: range.end,
            state,
        }
    }

    /// Number of pages in `state` inside `range`.
    pub fn count(&self, range: Range<u64>, state: MemState) -> u64 {
        self.runs(range, state).map(|r| r.end - r.start).sum()
    }

    /// Set every page of `range` to `state`; returns the sub-ranges whose state changed (empty
    /// when the range already was in `state`). Setting them back to `state.opposite()` undoes
    /// the call exactly.
    pub fn set(
        &mut self,
        range: Range<u64>,
        state: MemState,
    ) -> Result<Vec<Range<u64>>, OutOfRange> {
        self.check(&range)?;
        let changed: Vec<Range<u64>> = self.runs(range.clone(), state.opposite()).collect();
        if !changed.is_empty() {
            self.apply(range, state);
        }
        Ok(changed)
    }

    /// Like [`PageTracker::set`] without reporting what changed (cheaper).
    #[inline]
    pub fn fill(&mut self, range: Range<u64>, state: MemState) -> Result<(), OutOfRange> {
        self.check(&range)?;
        self.apply(range, state);
        Ok(())
    }

    /// Set a checked range.
    #[inline]
    fn apply(&mut self, range: Range<u64>, state: MemState) {
        match &mut self.repr {
            Repr::Runs(m) => {
                match state {
                    MemState::Private => m.insert(range.start, range.end),
                    MemState::Shared => m.remove(range.start, range.end),
                }
                if m.heap_bytes() > self.bitmap_bytes() {
                    self.switch_to_bitmap();
                }
            }
            Repr::Bitmap { .. } => self.apply_bitmap(range, state),
        }
    }

    /// [`PageTracker::apply`] on the bitmap (out of line: keeps the run path small).
    #[inline(never)]
    fn apply_bitmap(&mut self, range: Range<u64>, state: MemState) {
        let pages = self.pages;
        let bitmap_bytes = self.bitmap_bytes();
        let Repr::Bitmap { bits, runs } = &mut self.repr else {
            return;
        };
        let lo = range.start;
        let hi = (range.end + 1).min(pages);
        let before = run_starts(bits, lo, hi);
        set_bits(bits, range, state.is_private());
        let after = run_starts(bits, lo, hi);
        *runs = *runs + after - before;
        if *runs <= (INLINE_RUNS / 2) as u64 || *runs * RUN_COST_BYTES * 4 <= bitmap_bytes {
            self.switch_to_runs();
        }
    }

    fn switch_to_bitmap(&mut self) {
        let mut bits = vec![0u64; self.pages.div_ceil(64) as usize];
        let mut runs = 0;
        if let Repr::Runs(m) = &self.repr {
            m.for_each(|s, e| {
                set_bits(&mut bits, s..e, true);
                runs += 1;
            });
        }
        self.repr = Repr::Bitmap { bits, runs };
    }

    fn switch_to_runs(&mut self) {
        let m = RunMap::from_sorted(
            self.runs(0..self.pages, MemState::Private)
                .map(|r| (r.start, r.end)),
        );
        self.repr = Repr::Runs(m);
    }
}

/// Iterator over maximal runs of one state, from [`PageTracker::runs`].
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    tracker: &'a PageTracker,
    next: u64,
    limit: u64,
    state: MemState,
}

impl Iterator for Runs<'_> {
    type Item = Range<u64>;

    #[inline]
    fn next(&mut self) -> Option<Range<u64>> {
        let r = self.tracker.next_run(self.next, self.limit, self.state)?;
        self.next = r.end;
        Some(r)
    }
}

fn bit(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] >> (i % 64) & 1 != 0
}

/// Mask of bits `[lo, hi)` within one word (0 <= lo < hi <= 64).
fn word_mask(lo: u64, hi: u64) -> u64 {
    let upper = if hi == 64 { !0 } else { (1u64 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

fn set_bits(bits: &mut [u64], r: Range<u64>, value: bool) {
    let mut i = r.start;
    while i < r.end {
        let w = i / 64;
        let hi = (r.end - w * 64).min(64);
        let mask = word_mask(i % 64, hi);
        if value {
            bits[w as usize] |= mask;
        } else {
            bits[w as usize] &= !mask;
        }
        i = w * 64 + hi;
    }
}

/// The first run of `state` bits starting in `[from, limit)`, clipped to `limit`.
#[inline(never)]
fn bitmap_next_run(bits: &[u64], from: u64, limit: u64, state: MemState) -> Option<Range<u64>> {
    let want = state.is_private();
    let start = find(bits, from, limit, want)?;
    // The run is clipped to `limit` by the caller, so there is no need to look further.
    let end = find(bits, start, limit, !want).unwrap_or(limit);
    Some(start..end)
}

/// First index in `[from, limit)` whose bit equals `want`.
fn find(bits: &[u64], from: u64, limit: u64, want: bool) -> Option<u64> {
    let mut i = from;
    while i < limit {
        let w = i / 64;
        let word = if want {
            bits[w as usize]
        } else {
            !bits[w as usize]
        };
        let masked = word & word_mask(i % 64, 64);
        if masked != 0 {
            let idx = w * 64 + u64::from(masked.trailing_zeros());
            return (idx < limit).then_some(idx);
        }
        i = (w + 1) * 64;
    }
    None
}

/// Number of positions p in `[lo, hi)` where a private run starts (bit p set, bit p-1 clear).
fn run_starts(bits: &[u64], lo: u64, hi: u64) -> u64 {
    let mut n = 0;
    let mut i = lo;
    while i < hi {
        let w = i / 64;
        let x = bits[w as usize];
        let carry = if w > 0 { bits[w as usize - 1] >> 63 } else { 0 };
        let starts = x & !(x << 1 | carry);
        let top = (hi - w * 64).min(64);
        n += u64::from((starts & word_mask(i % 64, top)).count_ones());
        i = w * 64 + top;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model_runs(model: &[bool], want: bool) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < model.len() {
            if model[i] == want {
                let s = i;
                while i < model.len() && model[i] == want {
                    i += 1;
                }
                out.push(s as u64..i as u64);
            } else {
                i += 1;
            }
        }
        out
    }

    fn check_against(t: &PageTracker, model: &[bool]) {
        for (i, &p) in model.iter().enumerate() {
            assert_eq!(t.state(i as u64).unwrap().is_private(), p, "page {i}");
        }
        let n = model.len() as u64;
        let private: Vec<_> = t.runs(0..n, MemState::Private).collect();
        let shared: Vec<_> = t.runs(0..n, MemState::Shared).collect();
        assert_eq!(private, model_runs(model, true));
        assert_eq!(shared, model_runs(model, false));
        assert_eq!(t.private_runs(), private.len() as u64);
        assert!(t.memory_bytes() <= t.bitmap_bytes().max(RUN_COST_BYTES));
    }

    #[test]
    fn basic_convert_and_query() {
        let mut t = PageTracker::new(100, MemState::Shared);
        assert_eq!(t.set(10..20, MemState::Private).unwrap(), vec![10..20]);
        assert_eq!(t.set(15..25, MemState::Private).unwrap(), vec![20..25]);
        assert_eq!(t.set(10..25, MemState::Private).unwrap(), vec![]);
        assert_eq!(t.state(9), Some(MemState::Shared));
        assert_eq!(t.state(10), Some(MemState::Private));
        assert_eq!(t.state(100), None);
        assert_eq!(t.set(12..14, MemState::Shared).unwrap(), vec![12..14]);
        assert_eq!(
            t.runs(0..100, MemState::Private).collect::<Vec<_>>(),
            vec![10..12, 14..25]
        );
        assert_eq!(t.count(0..100, MemState::Shared), 100 - 13);
        assert!(t.set(5..5, MemState::Shared).is_err());
        assert!(t.set(90..101, MemState::Shared).is_err());
        let all_private = PageTracker::new(8, MemState::Private);
        assert_eq!(all_private.runs(0..8, MemState::Private).count(), 1);
    }

    #[test]
    fn switches_to_bitmap_and_back() {
        let pages = 64 * 1024;
        let mut t = PageTracker::new(pages, MemState::Shared);
        let mut model = vec![false; pages as usize];
        // Every other page private: maximal fragmentation.
        for g in (0..pages).step_by(2) {
            t.set(g..g + 1, MemState::Private).unwrap();
            model[g as usize] = true;
        }
        assert!(t.is_bitmap());
        assert_eq!(t.memory_bytes(), pages / 8);
        check_against(&t, &model);
        t.set(0..pages, MemState::Shared).unwrap();
        assert!(!t.is_bitmap());
        assert_eq!(t.private_runs(), 0);
    }

    /// Inline runs → map → inline while the run count grows past 16 and falls back, with the
    /// state checked against a model after every step.
    #[test]
    fn inline_map_and_back() {
        let pages = 20_000;
        let mut t = PageTracker::new(pages, MemState::Shared);
        let mut model = vec![false; pages as usize];
        let mut set = |t: &mut PageTracker, g: u64, private: bool| {
            let state = if private {
                MemState::Private
            } else {
                MemState::Shared
            };
            t.set(g..g + 3, state).unwrap();
            model[g as usize..g as usize + 3].fill(private);
            check_against(t, &model);
        };
        for i in 0..40 {
            set(&mut t, 100 + i * 10, true);
            assert_eq!(t.private_runs(), i + 1);
            assert_eq!(t.memory_bytes() == 0, i < INLINE_RUNS as u64);
        }
        assert!(!t.is_bitmap());
        // Bridge neighbours (merging runs), then remove runs again.
        set(&mut t, 103, true);
        set(&mut t, 106, true);
        assert_eq!(t.private_runs(), 40);
        set(&mut t, 108, true);
        assert_eq!(t.private_runs(), 39);
        for i in (0..40).rev() {
            set(&mut t, 100 + i * 10, false);
        }
        assert_eq!(t.memory_bytes(), 0);
    }

    #[derive(Debug, Clone)]
    struct Op {
        start: u64,
        len: u64,
        private: bool,
    }

    fn op(pages: u64) -> impl Strategy<Value = Op> {
        (0..pages, 1..=pages / 4, any::<bool>()).prop_map(move |(start, len, private)| Op {
            start,
            len: len.min(pages - start),
            private,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The tracker agrees with a per-page Vec<bool> after every operation of a random
        /// sequence, and each `set` reports exactly the pages that changed.
        #[test]
        fn tracker_matches_vec_bool_model(
            ops in prop::collection::vec(op(700), 1..120),
            small in prop::collection::vec((0u64..700, any::<bool>()), 0..400),
        ) {
            let pages = 700;
            let mut t = PageTracker::new(pages, MemState::Shared);
            let mut model = vec![false; pages as usize];
            let singles = small.into_iter().map(|(g, p)| Op { start: g, len: 1, private: p });
            for o in ops.into_iter().chain(singles) {
                let state = if o.private { MemState::Private } else { MemState::Shared };
                let changed = t.set(o.start..o.start + o.len, state).unwrap();
                let mut expect = Vec::new();
                for g in o.start..o.start + o.len {
                    if model[g as usize] != o.private {
                        expect.push(g);
                    }
                    model[g as usize] = o.private;
                }
                let got: Vec<u64> = changed.into_iter().flatten().collect();
                prop_assert_eq!(got, expect);
                check_against(&t, &model);
            }
        }

        /// The same over a larger tracker that mostly stays in the map representation
        /// (checked once at the end, and through the reported changes at every step).
        #[test]
        fn tracker_matches_model_in_map_mode(
            ops in prop::collection::vec(op(20_000), 1..200),
        ) {
            let pages = 20_000;
            let mut t = PageTracker::new(pages, MemState::Private);
            let mut model = vec![true; pages as usize];
            for o in ops {
                let state = if o.private { MemState::Private } else { MemState::Shared };
                let changed = t.set(o.start..o.start + o.len, state).unwrap();
                let flipped: u64 = changed.iter().map(|r| r.end - r.start).sum();
                let expect = model[o.start as usize..(o.start + o.len) as usize]
                    .iter()
                    .filter(|&&p| p != o.private)
                    .count() as u64;
                prop_assert_eq!(flipped, expect);
                model[o.start as usize..(o.start + o.len) as usize].fill(o.private);
            }
            check_against(&t, &model);
        }
    }
}
