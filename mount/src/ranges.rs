//! A set of byte ranges of a file (the parts a handle changed): disjoint,
//! merged where they touch, in order.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// start -> end; no two overlap or touch.
    map: BTreeMap<u64, u64>,
}

impl Ranges {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// The ranges in order, as (start, end).
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&start, &end)| (start, end))
    }

    /// Adds `start..end`.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut start = start;
        let mut end = end;
        // A range that starts before and reaches `start` joins.
        if let Some((&before, &before_end)) = self.map.range(..=start).next_back() {
            if before_end >= start {
                start = before;
                end = end.max(before_end);
            }
        }
        // Every range starting within the new one joins.
        let joined: Vec<u64> = self.map.range(start..=end).map(|(&s, _)| s).collect();
        for other in joined {
            if let Some(other_end) = self.map.remove(&other) {
                end = end.max(other_end);
            }
        }
        self.map.insert(start, end);
    }

    /// Removes `start..end`.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let touched: Vec<(u64, u64)> = self
            .map
            .range(..end)
            .rev()
            .take_while(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touched {
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
    }

    /// Bytes covered below `limit`.
    pub fn covered_bytes(&self, limit: u64) -> u64 {
        self.map
            .range(..limit)
            .map(|(&s, &e)| e.min(limit) - s)
            .sum()
    }

    /// `start..end` cut into consecutive pieces, each (start, end, inside).
    pub fn segments(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut pieces = Vec::new();
        if start >= end {
            return pieces;
        }
        let mut at = start;
        let first = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, &e)| e > start)
            .map(|(&s, &e)| (s, e));
        let rest = self
            .map
            .range(start.saturating_add(1)..end)
            .map(|(&s, &e)| (s, e));
        for (s, e) in first.into_iter().chain(rest) {
            if at >= end {
                break;
            }
            if s > at {
                pieces.push((at, s.min(end), false));
                at = s.min(end);
            }
            if at < end {
                let stop = e.min(end);
                pieces.push((at, stop, true));
                at = stop;
            }
        }
        if at < end {
            pieces.push((at, end, false));
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inserts and removals against a bitmap.
    #[test]
    fn ranges_match_a_bitmap() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..300 {
            let mut ranges = Ranges::default();
            let mut model = [false; 64];
            for _ in 0..30 {
                let a = next(64);
                let b = a + next(64 - a + 1);
                if next(3) == 0 {
                    ranges.remove(a, b);
                    model[a as usize..b as usize].fill(false);
                } else {
                    ranges.insert(a, b);
                    model[a as usize..b as usize].fill(true);
                }
                let mut bits = [false; 64];
                let mut last_end = None;
                for (s, e) in ranges.iter() {
                    assert!(s < e);
                    assert!(last_end.is_none_or(|last| last < s), "merged");
                    last_end = Some(e);
                    bits[s as usize..e as usize].fill(true);
                }
                assert_eq!(bits, model);
                let limit = next(65);
                let count = model[..limit as usize].iter().filter(|&&b| b).count() as u64;
                assert_eq!(ranges.covered_bytes(limit), count);
                let (s, e) = (next(64), next(65));
                if s >= e {
                    assert!(
                        ranges.segments(s, e).is_empty(),
                        "an empty range has no pieces"
                    );
                } else {
                    let mut at = s;
                    for (from, to, inside) in ranges.segments(s, e) {
                        assert_eq!(from, at);
                        assert!(from < to);
                        assert!(model[from as usize..to as usize]
                            .iter()
                            .all(|&b| b == inside));
                        at = to;
                    }
                    assert_eq!(at, e);
                }
            }
        }
    }
}
