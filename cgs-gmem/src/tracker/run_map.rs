//! The ordered map of private runs (start → end) behind [`super::PageTracker`]'s run
//! representation.
//!
//! Up to [`INLINE_RUNS`] runs live in a sorted inline array: no heap, and a lookup or update is
//! a short binary search and a small copy, so a conversion on a tracker with few runs (the
//! common case) costs a few nanoseconds instead of several `BTreeMap` operations. Beyond that
//! the runs move to a `BTreeMap`, and back inline once they fall to half of [`INLINE_RUNS`]
//! (hysteresis, so a count oscillating around the limit does not rebuild the map every time).

use std::collections::BTreeMap;

/// Runs kept inline before moving to a `BTreeMap`.
pub(super) const INLINE_RUNS: usize = 16;

/// Private runs `start → end` (exclusive), ordered by start. The tracker keeps them disjoint and
/// never adjacent; this type only stores them.
// The inline variant is large on purpose: it is what keeps the common case off the heap (one
// map per tracker, so the bytes do not add up).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(super) enum RunMap {
    /// `runs[..len]`, sorted by start.
    Inline {
        len: usize,
        runs: [(u64, u64); INLINE_RUNS],
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
    /// A map of `runs`, which must be sorted by start with distinct starts.
    pub(super) fn from_sorted(runs: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut m = RunMap::default();
        for (s, e) in runs {
            match &mut m {
                RunMap::Inline { len, runs } if *len < INLINE_RUNS => {
                    runs[*len] = (s, e);
                    *len += 1;
                }
                _ => m.put(s, e),
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
    pub(super) fn floor(&self, x: u64) -> Option<(u64, u64)> {
        match self {
            RunMap::Inline { len, runs } => {
                let i = runs[..*len].partition_point(|r| r.0 <= x);
                i.checked_sub(1).map(|i| runs[i])
            }
            RunMap::Tree(t) => t.range(..=x).next_back().map(|(&s, &e)| (s, e)),
        }
    }

    /// The run with the smallest start `>= x`.
    #[inline]
    pub(super) fn ceil(&self, x: u64) -> Option<(u64, u64)> {
        match self {
            RunMap::Inline { len, runs } => {
                let i = runs[..*len].partition_point(|r| r.0 < x);
                runs[..*len].get(i).copied()
            }
            RunMap::Tree(t) => t.range(x..).next().map(|(&s, &e)| (s, e)),
        }
    }

    /// Insert the run `s → e`, or set the end of the run starting at `s` to `e`.
    #[inline]
    pub(super) fn put(&mut self, s: u64, e: u64) {
        match self {
            RunMap::Inline { len, runs } => {
                let n = *len;
                let i = runs[..n].partition_point(|r| r.0 < s);
                if i < n && runs[i].0 == s {
                    runs[i].1 = e;
                } else if n < INLINE_RUNS {
                    runs.copy_within(i..n, i + 1);
                    runs[i] = (s, e);
                    *len = n + 1;
                } else {
                    let mut t: BTreeMap<u64, u64> = runs.iter().copied().collect();
                    t.insert(s, e);
                    *self = RunMap::Tree(t);
                }
            }
            RunMap::Tree(t) => {
                t.insert(s, e);
            }
        }
    }

    /// Remove the run starting at `s` (nothing when there is none).
    #[inline]
    pub(super) fn remove(&mut self, s: u64) {
        match self {
            RunMap::Inline { len, runs } => {
                let n = *len;
                let i = runs[..n].partition_point(|r| r.0 < s);
                if i < n && runs[i].0 == s {
                    runs.copy_within(i + 1..n, i);
                    *len = n - 1;
                }
            }
            RunMap::Tree(t) => {
                t.remove(&s);
                if t.len() <= INLINE_RUNS / 2 {
                    let runs = std::mem::take(t);
                    *self = RunMap::from_sorted(runs.into_iter());
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(m: &RunMap) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        m.for_each(|s, e| v.push((s, e)));
        v
    }

    /// Every operation agrees with a `BTreeMap` reference across the inline → tree → inline
    /// transitions.
    #[test]
    fn agrees_with_btreemap_across_transitions() {
        let mut m = RunMap::default();
        let mut reference = BTreeMap::new();
        let check = |m: &RunMap, r: &BTreeMap<u64, u64>| {
            assert_eq!(
                collect(m),
                r.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>()
            );
            assert_eq!(m.len(), r.len());
            for x in 0..(4 * INLINE_RUNS as u64 * 10 + 20) {
                let floor = r.range(..=x).next_back().map(|(&s, &e)| (s, e));
                let ceil = r.range(x..).next().map(|(&s, &e)| (s, e));
                assert_eq!(m.floor(x), floor, "floor({x})");
                assert_eq!(m.ceil(x), ceil, "ceil({x})");
            }
        };
        // Grow past the inline capacity, in a scrambled order.
        let n = 3 * INLINE_RUNS as u64;
        for i in (0..n).map(|i| (i * 7) % n) {
            m.put(i * 10, i * 10 + 5);
            reference.insert(i * 10, i * 10 + 5);
            check(&m, &reference);
        }
        assert!(!m.is_inline());
        assert_eq!(m.heap_bytes(), n * super::super::RUN_COST_BYTES);
        // Update ends in place.
        m.put(20, 27);
        reference.insert(20, 27);
        m.remove(12345);
        check(&m, &reference);
        // Shrink until the runs move back inline.
        for i in 0..n {
            m.remove(i * 10);
            reference.remove(&(i * 10));
            check(&m, &reference);
            assert_eq!(m.is_inline(), reference.len() <= INLINE_RUNS / 2);
        }
        assert!(m.is_inline());
        assert_eq!(m.heap_bytes(), 0);
        let rebuilt = RunMap::from_sorted((0..n).map(|i| (i * 10, i * 10 + 1)));
        assert!(!rebuilt.is_inline());
        assert_eq!(rebuilt.len(), n as usize);
    }
}
