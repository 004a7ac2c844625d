//! Which streamed records (log positions) an online group holds, so each is
//! applied once, whatever order their acknowledgements and the catch-ups
//! from Iceberg come in.
//!
//! A contiguous watermark plus the ranges above it: acknowledgements finish
//! nearly in log order, so the ranges stay few and are absorbed as the gaps
//! below them fill (or as a commit covers them).

use std::collections::BTreeMap;

/// Log positions applied: every one through `through`, and `above`.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    through: u64,
    /// Disjoint ranges `first → last` (inclusive), above `through + 1` and
    /// not touching each other.
    above: BTreeMap<u64, u64>,
}

impl Applied {
    /// Every position through `lsn` applied, none above.
    pub fn through(lsn: u64) -> Self {
        Applied {
            through: lsn,
            above: BTreeMap::new(),
        }
    }

    /// The position below which (and at which) every record is applied.
    pub fn watermark(&self) -> u64 {
        self.through
    }

    pub fn contains(&self, lsn: u64) -> bool {
        lsn <= self.through
            || self
                .above
                .range(..=lsn)
                .next_back()
                .is_some_and(|(_, &last)| lsn <= last)
    }

    /// Whether every position of `first..=last` is applied.
    pub fn covers(&self, first: u64, last: u64) -> bool {
        let first = first.max(self.through.saturating_add(1));
        first > last
            || self
                .above
                .range(..=first)
                .next_back()
                .is_some_and(|(_, &end)| last <= end)
    }

    pub fn insert(&mut self, lsn: u64) {
        self.insert_range(lsn, lsn);
    }

    /// Marks every position through `lsn` applied.
    pub fn insert_through(&mut self, lsn: u64) {
        self.insert_range(0, lsn);
    }

    /// Marks `first..=last` applied.
    pub fn insert_range(&mut self, first: u64, last: u64) {
        if last <= self.through {
            return;
        }
        let next = self.through.saturating_add(1);
        let mut first = first.max(next);
        let mut last = last;
        if let Some((&start, &end)) = self.above.range(..first).next_back()
            && end.saturating_add(1) >= first
        {
            self.above.remove(&start);
            first = start;
            last = last.max(end);
        }
        while let Some((&start, &end)) = self.above.range(first..=last.saturating_add(1)).next() {
            self.above.remove(&start);
            last = last.max(end);
        }
        if first == next {
            self.through = last;
        } else {
            self.above.insert(first, last);
        }
    }

    /// Number of separate ranges above the watermark.
    #[cfg(test)]
    fn gaps(&self) -> usize {
        self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn ranges_merge_and_the_watermark_advances_over_filled_gaps() {
        let mut applied = Applied::through(3);
        applied.insert(6);
        applied.insert(8);
        applied.insert(7);
        assert_eq!((applied.watermark(), applied.gaps()), (3, 1));
        assert!(applied.contains(2) && applied.contains(7) && !applied.contains(5));
        assert!(applied.covers(6, 8) && !applied.covers(5, 8) && applied.covers(1, 3));
        applied.insert_range(10, 12);
        assert!(!applied.covers(8, 10));
        applied.insert(5);
        assert_eq!(applied.gaps(), 2);
        applied.insert(4);
        assert_eq!((applied.watermark(), applied.gaps()), (8, 1));
        applied.insert_through(11);
        assert_eq!((applied.watermark(), applied.gaps()), (12, 0));
        applied.insert(12);
        assert_eq!(applied.watermark(), 12);
    }

    #[test]
    fn agrees_with_a_plain_set_in_any_order() {
        let mut state = 5u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for _ in 0..200 {
            let mut applied = Applied::through(0);
            let mut set = BTreeSet::new();
            for _ in 0..60 {
                let first = 1 + next(80);
                let last = first + next(3) * next(4);
                match next(10) {
                    0 => {
                        applied.insert_through(first);
                        set.extend(1..=first);
                    }
                    1..=3 => {
                        applied.insert_range(first, last);
                        set.extend(first..=last);
                    }
                    _ => {
                        applied.insert(first);
                        set.insert(first);
                    }
                }
                for lsn in 1..100 {
                    assert_eq!(applied.contains(lsn), set.contains(&lsn), "{lsn}");
                }
                let (a, b) = (1 + next(90), next(6));
                assert_eq!(
                    applied.covers(a, a + b),
                    (a..=a + b).all(|l| set.contains(&l))
                );
                let contiguous = (1..).take_while(|l| set.contains(l)).last().unwrap_or(0);
                assert_eq!(applied.watermark(), contiguous);
            }
        }
    }
}
