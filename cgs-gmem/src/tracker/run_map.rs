//! The ordered map of private runs (start → end) behind [`super::PageTracker`]'s run
//! representation, with the two updates the tracker needs: merge a range in, cut a range out.
//!
//! Up to [`INLINE_RUNS`] runs live in a sorted inline array: no heap, and an update is two
//! binary searches and one small copy (a splice of the affected runs), so a conversion on a
//! tracker with few runs (the common case) costs a few nanoseconds instead of several `BTreeMap`
//! operations. Beyond that the runs move to a `BTreeMap`, and back inline once they fall to half
//! of [`INLINE_RUNS`] (hysteresis, so a count oscillating around the limit does not rebuild the
//! map every time).
//!
//! Runs are kept disjoint and never adjacent (touching runs are merged), so both their starts
//! and their ends are strictly increasing.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Runs kept inline before moving to a `BTreeMap`.
pub(super) const INLINE_RUNS: usize = 16;

/// A run: start, end (exclusive).
type Run = (u64, u64);

/// Private runs `start → end` (exclusive), ordered, disjoint and never adjacent.
// The inline variant is large on purpose: it is what keeps the common case off the heap (one
// map per tracker, so the bytes do not add up).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(super) enum RunMap {
    /// `runs[..len]`, sorted by start.
    Inline {
        len: usize,
        runs: [Run; INLINE_RUNS],
    },
    /// More than [`INLINE_RUNS`] runs (until they fall to half of it).
    Tree(BTreeMap<u64, u64>),
}

impl Default for RunMap {
    fn default() -> Self {
        RunMap::Inline {
            len: 0,
            runs: [(0, 0); INLINE_RUNS],
        }
    }
}

impl RunMap {
    /// A map of `runs`, which must be sorted, disjoint and non-adjacent.
    pub(super) fn from_sorted(runs: impl Iterator<Item = Run>) -> Self {
        let mut m = RunMap::default();
        for (s, e) in runs {
            match &mut m {
                RunMap::Inline { len, runs } if *len < INLINE_RUNS => {
                    runs[*len] = (s, e);
                    *len += 1;
                }
                RunMap::Inline { runs, .. } => {
                    let mut t: BTreeMap<u64, u64> = runs.iter().copied().collect();
                    t.insert(s, e);
                    m = RunMap::Tree(t);
                }
                RunMap::Tree(t) => {
                    t.insert(s, e);
                }
            }
        }
        m
    }

    /// Number of runs.
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            RunMap::Inline { len, .. } => *len,
            RunMap::Tree(t) => t.len(),
        }
    }

    /// Heap bytes: none inline, at most `len × RUN_COST_BYTES` in the tree.
    #[inline]
    pub(super) fn heap_bytes(&self) -> u64 {
        match self {
            RunMap::Inline { .. } => 0,
            RunMap::Tree(t) => t.len() as u64 * super::RUN_COST_BYTES,
        }
    }

    /// The run with the greatest start `<= x`.
    #[inline]
    pub(super) fn floor(&self, x: u64) -> Option<Run> {
        match self {
            RunMap::Inline { len, runs } => {
                let rs = &runs[..*len];
                let i = rs.partition_point(|r| r.0 <= x);
                i.checked_sub(1).map(|i| rs[i])
            }
            RunMap::Tree(t) => t.range(..=x).next_back().map(|(&s, &e)| (s, e)),
        }
    }

    /// The run with the greatest start `<= x` and the run after it (the first start `> x`).
    #[inline]
    pub(super) fn around(&self, x: u64) -> (Option<Run>, Option<Run>) {
        match self {
            RunMap::Inline { len, runs } => {
                let rs = &runs[..*len];
                let i = rs.partition_point(|r| r.0 <= x);
                (i.checked_sub(1).map(|i| rs[i]), rs.get(i).copied())
            }
            RunMap::Tree(t) => tree_around(t, x),
        }
    }

    /// Merge `[s, e)` (non-empty) into the runs, joining every run it overlaps or touches.
    #[inline]
    pub(super) fn insert(&mut self, s: u64, e: u64) {
        match self {
            RunMap::Inline { len, runs } => {
                let rs = &runs[..*len];
                // Runs that overlap or touch [s, e]: end >= s and start <= e, a contiguous
                // index range because starts and ends both increase.
                let lo = rs.partition_point(|r| r.1 < s);
                let hi = rs.partition_point(|r| r.0 <= e);
                let merged = if lo < hi {
                    (rs[lo].0.min(s), rs[hi - 1].1.max(e))
                } else {
                    (s, e)
                };
                self.splice(lo, hi, [merged, (0, 0)], 1);
            }
            RunMap::Tree(t) => {
                tree_insert(t, s, e);
                self.maybe_inline();
            }
        }
    }

    /// Cut `[s, e)` (non-empty) out of the runs.
    #[inline]
    pub(super) fn remove(&mut self, s: u64, e: u64) {
        match self {
            RunMap::Inline { len, runs } => {
                let rs = &runs[..*len];
                // Runs that overlap [s, e): end > s and start < e.
                let lo = rs.partition_point(|r| r.1 <= s);
                let hi = rs.partition_point(|r| r.0 < e);
                if lo == hi {
                    return;
                }
                let (first, last) = (rs[lo], rs[hi - 1]);
                let mut kept = [(0, 0); 2];
                let mut k = 0;
                if first.0 < s {
                    kept[k] = (first.0, s);
                    k += 1;
                }
                if last.1 > e {
                    kept[k] = (e, last.1);
                    k += 1;
                }
                self.splice(lo, hi, kept, k);
            }
            RunMap::Tree(t) => {
                tree_remove(t, s, e);
                self.maybe_inline();
            }
        }
    }

    /// Inline only: replace `runs[lo..hi]` by the first `k` (at most 2) of `new`, moving to
    /// the tree when they no longer fit. (`new` by value: the runs stay in registers, instead
    /// of being stored and reloaded through a slice.)
    #[inline]
    fn splice(&mut self, lo: usize, hi: usize, new: [Run; 2], k: usize) {
        let RunMap::Inline { len, runs } = self else {
            return;
        };
        let n = *len;
        let new_len = n - (hi - lo) + k;
        if new_len <= INLINE_RUNS {
            // Shift the tail by element (at most a few runs move; a `memmove` call would cost
            // more than the copy), then write the new runs.
            let to = lo + k;
            if to > hi {
                for i in (hi..n).rev() {
                    runs[i + (to - hi)] = runs[i];
                }
            } else if to < hi {
                for i in hi..n {
                    runs[i - (hi - to)] = runs[i];
                }
            }
            if k > 0 {
                runs[lo] = new[0];
            }
            if k > 1 {
                runs[lo + 1] = new[1];
            }
            *len = new_len;
        } else {
            self.spill(lo, hi, &new[..k]);
        }
    }

    /// Inline only, out of line: the splice that no longer fits moves the runs to the tree.
    #[inline(never)]
    fn spill(&mut self, lo: usize, hi: usize, new: &[Run]) {
        if let RunMap::Inline { len, runs } = self {
            let n = *len;
            let all = runs[..lo]
                .iter()
                .chain(new)
                .chain(&runs[hi..n])
                .copied()
                .collect();
            *self = RunMap::Tree(all);
        }
    }

    /// Tree only: back inline once the runs fall to half of [`INLINE_RUNS`].
    fn maybe_inline(&mut self) {
        if let RunMap::Tree(t) = self {
            if t.len() <= INLINE_RUNS / 2 {
                let runs = std::mem::take(t);
                *self = RunMap::from_sorted(runs.into_iter());
            }
        }
    }

    /// Call `f(start, end)` for every run, in order.
    pub(super) fn for_each(&self, mut f: impl FnMut(u64, u64)) {
        match self {
            RunMap::Inline { len, runs } => runs[..*len].iter().for_each(|&(s, e)| f(s, e)),
            RunMap::Tree(t) => t.iter().for_each(|(&s, &e)| f(s, e)),
        }
    }

    /// `true` while the runs are inline.
    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        matches!(self, RunMap::Inline { .. })
    }
}

// The tree paths are kept out of line so the inline fast path stays small (it runs right
// after the kernel's discard syscalls, with cold instruction caches).

#[inline(never)]
fn tree_around(t: &BTreeMap<u64, u64>, x: u64) -> (Option<Run>, Option<Run>) {
    let floor = t.range(..=x).next_back().map(|(&s, &e)| (s, e));
    let next = t
        .range((Bound::Excluded(x), Bound::Unbounded))
        .next()
        .map(|(&s, &e)| (s, e));
    (floor, next)
}

#[inline(never)]
fn tree_insert(t: &mut BTreeMap<u64, u64>, s: u64, e: u64) {
    let (mut s, mut e) = (s, e);
    // Absorb runs that overlap or touch [s, e]: start <= e and end >= s.
    while let Some((&a, &b)) = t.range(..=e).next_back() {
        if b < s {
            break;
        }
        t.remove(&a);
        s = s.min(a);
        e = e.max(b);
    }
    t.insert(s, e);
}

#[inline(never)]
fn tree_remove(t: &mut BTreeMap<u64, u64>, s: u64, e: u64) {
    // Runs that overlap [s, e), from the last one down; a kept right part starts at e and a
    // kept left part ends at s, so neither is visited again.
    while let Some((&a, &b)) = t.range(..e).next_back() {
        if b <= s {
            break;
        }
        t.remove(&a);
        if b > e {
            t.insert(e, b);
        }
        if a < s {
            t.insert(a, s);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 700;

    fn runs_of(model: &[bool]) -> Vec<Run> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < model.len() {
            if model[i] {
                let s = i;
                while i < model.len() && model[i] {
                    i += 1;
                }
                out.push((s as u64, i as u64));
            } else {
                i += 1;
            }
        }
        out
    }

    /// Runs equal the model's; `around` agrees at the points `xs`.
    fn check(m: &RunMap, model: &[bool], xs: impl Iterator<Item = u64>) {
        let mut got = Vec::new();
        m.for_each(|s, e| got.push((s, e)));
        let want = runs_of(model);
        assert_eq!(got, want);
        assert_eq!(m.len(), want.len());
        for x in xs {
            let floor = want.iter().rev().find(|r| r.0 <= x).copied();
            let next = want.iter().find(|r| r.0 > x).copied();
            assert_eq!(m.around(x), (floor, next), "around({x})");
            assert_eq!(m.floor(x), floor, "floor({x})");
        }
    }

    /// Random merges and cuts agree with a per-frame model, through inline → tree → inline
    /// transitions (both representations, and the splice that moves between them).
    #[test]
    fn agrees_with_per_frame_model_across_transitions() {
        let mut m = RunMap::default();
        let mut model = vec![false; N];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut saw_tree, mut saw_inline_again) = (false, false);
        for step in 0..3000 {
            // Phases: many short inserts (fragment), then long cuts (defragment).
            let phase_insert = (step / 500) % 2 == 0;
            let s = rnd(N as u64 - 1);
            let len = if phase_insert {
                1 + rnd(3)
            } else {
                1 + rnd(40)
            };
            let e = (s + len).min(N as u64);
            let insert = if phase_insert {
                rnd(4) != 0
            } else {
                rnd(4) == 0
            };
            if insert {
                m.insert(s, e);
            } else {
                m.remove(s, e);
            }
            model[s as usize..e as usize].fill(insert);
            // Every point now and then, else the edges of the touched range.
            if step % 50 == 0 {
                check(&m, &model, 0..N as u64 + 2);
            } else {
                check(
                    &m,
                    &model,
                    [s.saturating_sub(1), s, e - 1, e, e + 1].into_iter(),
                );
            }
            if !m.is_inline() {
                saw_tree = true;
                assert!(m.len() > INLINE_RUNS / 2);
                assert_eq!(
                    m.heap_bytes(),
                    m.len() as u64 * super::super::RUN_COST_BYTES
                );
            } else {
                assert!(m.len() <= INLINE_RUNS);
                assert_eq!(m.heap_bytes(), 0);
                saw_inline_again |= saw_tree;
            }
        }
        assert!(saw_tree && saw_inline_again);
        let rebuilt = RunMap::from_sorted((0..40).map(|i| (i * 10, i * 10 + 1)));
        assert!(!rebuilt.is_inline());
        assert_eq!(rebuilt.len(), 40);
    }
}
