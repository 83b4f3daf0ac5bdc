//! [`ChangedRuns`]: the frame ranges a conversion changed, without a heap allocation for the
//! common one- or two-run case.

use std::fmt;
use std::ops::{Deref, Range};

/// Runs held inline before spilling to a `Vec`.
const INLINE: usize = 2;

/// Frame ranges (GPA >> 12), in ascending order, as returned in [`super::Conversion::changed`].
/// Dereferences to `[Range<u64>]`; compares equal to a slice or `Vec` with the same ranges.
#[derive(Clone)]
pub struct ChangedRuns(Inner);

#[derive(Clone)]
enum Inner {
    Inline {
        len: usize,
        runs: [Range<u64>; INLINE],
    },
    Heap(Vec<Range<u64>>),
}

impl ChangedRuns {
    /// No ranges.
    #[inline]
    pub const fn new() -> Self {
        ChangedRuns(Inner::Inline {
            len: 0,
            runs: [0..0, 0..0],
        })
    }

    /// One range.
    #[inline]
    pub const fn one(r: Range<u64>) -> Self {
        ChangedRuns(Inner::Inline {
            len: 1,
            runs: [r, 0..0],
        })
    }

    /// Append a range (callers keep them ascending and disjoint).
    #[inline]
    pub fn push(&mut self, r: Range<u64>) {
        match &mut self.0 {
            Inner::Inline { len, runs } if *len < INLINE => {
                runs[*len] = r;
                *len += 1;
            }
            Inner::Inline { runs, .. } => {
                let mut v = Vec::with_capacity(2 * INLINE);
                v.extend(runs.iter().cloned());
                v.push(r);
                self.0 = Inner::Heap(v);
            }
            Inner::Heap(v) => v.push(r),
        }
    }

    /// The ranges.
    #[inline]
    pub fn as_slice(&self) -> &[Range<u64>] {
        match &self.0 {
            Inner::Inline { len, runs } => &runs[..*len],
            Inner::Heap(v) => v,
        }
    }
}

impl Default for ChangedRuns {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for ChangedRuns {
    type Target = [Range<u64>];

    #[inline]
    fn deref(&self) -> &[Range<u64>] {
        self.as_slice()
    }
}

impl fmt::Debug for ChangedRuns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl PartialEq for ChangedRuns {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ChangedRuns {}

impl PartialEq<[Range<u64>]> for ChangedRuns {
    fn eq(&self, other: &[Range<u64>]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<Range<u64>>> for ChangedRuns {
    fn eq(&self, other: &Vec<Range<u64>>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl FromIterator<Range<u64>> for ChangedRuns {
    #[inline]
    fn from_iter<I: IntoIterator<Item = Range<u64>>>(iter: I) -> Self {
        let mut c = ChangedRuns::new();
        for r in iter {
            c.push(r);
        }
        c
    }
}

impl<'a> IntoIterator for &'a ChangedRuns {
    type Item = &'a Range<u64>;
    type IntoIter = std::slice::Iter<'a, Range<u64>>;

    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl From<ChangedRuns> for Vec<Range<u64>> {
    fn from(c: ChangedRuns) -> Self {
        match c.0 {
            Inner::Inline { len, runs } => runs.into_iter().take(len).collect(),
            Inner::Heap(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_heap_keeps_order_and_equality() {
        let mut c = ChangedRuns::new();
        assert!(c.is_empty());
        let mut expect = Vec::new();
        for i in 0..5u64 {
            c.push(i * 10..i * 10 + 3);
            expect.push(i * 10..i * 10 + 3);
            assert_eq!(c, expect);
            assert_eq!(c.len(), expect.len());
            assert_eq!(
                c.iter().cloned().collect::<ChangedRuns>(),
                expect.iter().cloned().collect::<ChangedRuns>()
            );
        }
        assert!(matches!(c.0, Inner::Heap(_)));
        assert_eq!(format!("{c:?}"), format!("{expect:?}"));
        assert_eq!(Vec::from(c), expect);
        let two: ChangedRuns = [1..2, 4..5].into_iter().collect();
        assert!(matches!(two.0, Inner::Inline { len: 2, .. }));
        assert_eq!(Vec::from(two.clone()), vec![1..2, 4..5]);
        assert_ne!(two, ChangedRuns::new());
        let one = ChangedRuns::one(7..9);
        assert_eq!(one, vec![7..9]);
        assert_eq!(one, std::iter::once(7..9).collect::<ChangedRuns>());
    }
}
