//! Rows grouped by key, each group ordered by match value: the shape both
//! ASOF JOIN strategies binary-search in ([`super::RightIndex`] over the
//! right side, [`super::LeftSweep`] over the left).
//!
//! ```text
//! keys ──KeyGroups──► group g ──► order[starts[g]..starts[g + 1]]   row ids, by match value
//!                                 values[starts[g]..starts[g + 1]]  their match values, ascending
//! ```
//!
//! Building is O(n) to group (a counting sort) plus a sort per group; a group
//! that arrives in order (time-ordered appends) is checked in one pass.

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;

use super::values::ordered_i64;
use crate::error::{Error, Result};
use crate::key_map::{KeyMap, as_int64};

/// Row ids counted across batches: the id of each batch's first row, and the
/// total last. Errors when a side holds more than 4G rows.
pub fn batch_offsets(rows: impl IntoIterator<Item = usize>) -> Result<Vec<u32>> {
    let mut offsets = vec![0u32];
    let mut total = 0u32;
    for n in rows {
        total = u32::try_from(n)
            .ok()
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| {
                Error::ResourceExhausted(
                    "ASOF JOIN: a partition holds more than 4G rows; raise target_partitions"
                        .into(),
                )
            })?;
        offsets.push(total);
    }
    Ok(offsets)
}

/// Batch and row of row id `id`.
pub fn locate(offsets: &[u32], id: u32) -> (usize, usize) {
    let batch = offsets.partition_point(|o| *o <= id) - 1;
    (batch, (id - offsets[batch]) as usize)
}

/// Row ids grouped by key, each group ascending by match value. Rows tied on
/// the value are in no particular order.
pub struct Grouped {
    pub starts: Vec<u32>,
    pub order: Vec<u32>,
    pub values: Vec<i64>,
}

impl Grouped {
    /// Groups the rows of batches whose key columns are `keys[b]` and match
    /// column `matches[b]`, numbering keys in `groups`; row ids start at
    /// `offsets[b]`. Rows with a NULL key or match value are left out: they
    /// never match.
    pub fn build(
        groups: &mut KeyGroups,
        keys: &[Vec<ArrayRef>],
        matches: &[ArrayRef],
        offsets: &[u32],
    ) -> Result<Self> {
        let group_of = groups.assign_rows(keys, offsets)?;
        Self::by_group(&group_of, groups.len(), matches, offsets)
    }

    /// Groups rows whose groups are `group_of` (`u32::MAX`: NULL key) by
    /// their match values `matches[b]`, row ids starting at `offsets[b]`;
    /// rows with a NULL match value are left out. Several sides with the
    /// same keys (the arms of one join) share the groups.
    pub fn by_group(
        group_of: &[u32],
        groups: usize,
        matches: &[ArrayRef],
        offsets: &[u32],
    ) -> Result<Self> {
        // Pass 1: every usable row's group and match value.
        let n = *offsets.last().unwrap_or(&0) as usize;
        let mut counts: Vec<u32> = vec![0; groups];
        let mut usable: Vec<u32> = vec![u32::MAX; n];
        let mut all_values: Vec<i64> = vec![0; n];
        for (b, batch_matches) in matches.iter().enumerate() {
            let base = offsets[b] as usize;
            let values = ordered_i64(batch_matches)?;
            for (i, value) in values.iter().enumerate() {
                let gid = group_of[base + i];
                if let (Some(value), true) = (value, gid != u32::MAX) {
                    usable[base + i] = gid;
                    all_values[base + i] = value;
                    counts[gid as usize] += 1;
                }
            }
        }
        let group_of = usable;
        // Pass 2: place row ids by group (counting sort), then order each group.
        let mut starts: Vec<u32> = Vec::with_capacity(counts.len() + 1);
        let mut placed = 0u32;
        for c in &counts {
            starts.push(placed);
            placed += c;
        }
        starts.push(placed);
        let mut cursor = starts.clone();
        let mut order = vec![0u32; placed as usize];
        for (i, gid) in group_of.iter().enumerate() {
            if *gid != u32::MAX {
                let slot = &mut cursor[*gid as usize];
                order[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        drop(group_of);
        let mut values = vec![0i64; placed as usize];
        // One group at a time as (match value, row id) pairs: sorting these
        // reads no other memory, unlike sorting ids by looking values up.
        let mut pairs: Vec<(i64, u32)> = Vec::new();
        for g in 0..counts.len() {
            let range = starts[g] as usize..starts[g + 1] as usize;
            pairs.clear();
            pairs.extend(
                order[range.clone()]
                    .iter()
                    .map(|&i| (all_values[i as usize], i)),
            );
            if !pairs.is_sorted_by_key(|p| p.0) {
                pairs.sort_unstable_by_key(|p| p.0);
            }
            for ((o, v), (value, id)) in order[range.clone()]
                .iter_mut()
                .zip(&mut values[range])
                .zip(&pairs)
            {
                *o = *id;
                *v = *value;
            }
        }
        Ok(Grouped {
            starts,
            order,
            values,
        })
    }

    /// Positions of group `g` in `order` and `values`; empty when there is no
    /// such group (an empty side has none).
    pub fn range(&self, g: u32) -> std::ops::Range<usize> {
        match (self.starts.get(g as usize), self.starts.get(g as usize + 1)) {
            (Some(s), Some(e)) => *s as usize..*e as usize,
            _ => 0..0,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.starts.capacity() * 4 + self.order.capacity() * 4 + self.values.capacity() * 8
    }
}

/// String and row-encoded keys held in the join's hash table itself: a
/// UUID's text (36), or a BIGINT and a string of up to 16 bytes row-encoded
/// (28). Held apart, such keys took a cache miss per right row: two to three
/// times a BIGINT key's join time.
const INLINE_KEY_BYTES: usize = 38;

/// Key → group number (see [`KeyMap`]); with no key columns every row is in
/// group 0.
#[derive(Debug)]
pub struct KeyGroups {
    map: Option<KeyMap<u32, INLINE_KEY_BYTES>>,
    /// Once frozen, integer keys in a dense range: group by `key - min`.
    dense: Option<DenseKeys>,
}

/// Integer keys in a dense range, numbered in key order: a bitmap of which
/// keys (minus the least) exist, with the number of keys before each word.
/// A key's group is that count plus the set bits below it in its word: no
/// hash and no probe sequence for every right row the sweep takes, and 16
/// bytes per 64 keys, so a million keys (256 KB) stay in a core's cache,
/// where a table of group numbers (4 MB) missed it on nearly every row.
#[derive(Debug)]
struct DenseKeys {
    min: i64,
    /// Per 64 keys: which exist, and how many exist before them.
    words: Vec<(u64, u32)>,
    /// How many keys exist.
    count: u32,
}

impl DenseKeys {
    fn group(&self, key: i64) -> Option<u32> {
        let at = usize::try_from(key.wrapping_sub(self.min)).ok()?;
        let (bits, before) = *self.words.get(at / 64)?;
        let bit = 1u64 << (at % 64);
        (bits & bit != 0).then(|| before + (bits & (bit - 1)).count_ones())
    }
}

/// Integer keys are looked up densely when their range is at most this many
/// times their number (plus a little): entity ids are usually such.
const DENSE_SPREAD: usize = 32;

impl KeyGroups {
    pub fn new(types: &[DataType]) -> Result<Self> {
        Ok(KeyGroups {
            map: match types {
                [] => None,
                _ => Some(KeyMap::new(types, "ASOF JOIN")?),
            },
            dense: None,
        })
    }

    /// Done assigning: integer keys in a dense range get a direct table,
    /// and are renumbered in key order. Returns the new number of each
    /// group when it renumbers them.
    pub fn freeze(&mut self) -> Option<Vec<u32>> {
        let map = self.map.as_mut()?;
        let (mut min, mut max, mut keys) = (i64::MAX, i64::MIN, 0usize);
        for (key, _) in map.int_entries()? {
            (min, max, keys) = (min.min(key), max.max(key), keys + 1);
        }
        let span = max
            .checked_sub(min)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| s.checked_add(1))?;
        if span > keys * DENSE_SPREAD + 4096 {
            return None;
        }
        let mut words = vec![(0u64, 0u32); span.div_ceil(64)];
        for (key, _) in map.int_entries()? {
            let at = (key - min) as usize;
            words[at / 64].0 |= 1 << (at % 64);
        }
        let mut before = 0u32;
        for (bits, count) in words.iter_mut() {
            *count = before;
            before += bits.count_ones();
        }
        let dense = DenseKeys {
            min,
            words,
            count: before,
        };
        let mut renumber = vec![0u32; keys];
        for (key, group) in map.int_entries()? {
            renumber[*group as usize] = dense.group(key)?;
        }
        for (_, group) in map.int_entries_mut()? {
            *group = renumber[*group as usize];
        }
        self.dense = Some(dense);
        Some(renumber)
    }

    /// For the key columns of a side's first batch (no keys when it has none).
    pub fn for_keys(keys: &[Vec<ArrayRef>]) -> Result<Self> {
        let types: Vec<DataType> = match keys.first() {
            Some(k) => k.iter().map(|a| a.data_type().clone()).collect(),
            None => Vec::new(),
        };
        Self::new(&types)
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        match (&self.dense, &self.map) {
            (Some(dense), _) => dense.count as usize,
            (None, map) => map.as_ref().map_or(1, KeyMap::len),
        }
    }

    /// The group of each of `rows` rows, a new key getting the next number;
    /// `None` for a NULL key.
    pub fn assign(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Option<u32>>> {
        let Some(map) = self.map.as_mut() else {
            return Ok(vec![Some(0); rows]);
        };
        self.dense = None;
        let mut groups = vec![None; rows];
        let mut next = map.len() as u32;
        map.upsert(keys, |row, existing| match existing {
            Some(group) => {
                groups[row] = Some(*group);
                None
            }
            None => {
                groups[row] = Some(next);
                next += 1;
                Some(next - 1)
            }
        })?;
        Ok(groups)
    }

    /// The group of every row of a side whose key columns are `keys[b]`
    /// per batch, row ids starting at `offsets[b]` (`u32::MAX`: NULL key);
    /// then frozen (see `freeze`), its groups renumbered.
    pub fn assign_rows(&mut self, keys: &[Vec<ArrayRef>], offsets: &[u32]) -> Result<Vec<u32>> {
        let n = *offsets.last().unwrap_or(&0) as usize;
        if let Some(group_of) = self.assign_dense(keys, n)? {
            return Ok(group_of);
        }
        let mut group_of = vec![u32::MAX; n];
        for (b, window) in offsets.windows(2).enumerate() {
            let (lo, hi) = (window[0] as usize, window[1] as usize);
            let batch_keys = keys.get(b).map_or(&[][..], Vec::as_slice);
            let ids = self.assign(batch_keys, hi - lo)?;
            for (slot, id) in group_of[lo..hi].iter_mut().zip(ids) {
                *slot = id.unwrap_or(u32::MAX);
            }
        }
        // Dense integer keys are renumbered in key order (see `freeze`).
        if let Some(renumber) = self.freeze() {
            for g in group_of.iter_mut().filter(|g| **g != u32::MAX) {
                *g = renumber[*g as usize];
            }
        }
        Ok(group_of)
    }

    /// [`Self::assign_rows`] without the hash map, for a fresh side whose
    /// single integer key is dense (as `freeze` decides): a bitmap of the keys
    /// and their ranks, the same groups in the same order. Hashing every
    /// label into the map was most of building the labels' side. `None`
    /// when that does not apply.
    fn assign_dense(&mut self, keys: &[Vec<ArrayRef>], rows: usize) -> Result<Option<Vec<u32>>> {
        let fresh = self.dense.is_none() && self.map.as_ref().is_some_and(KeyMap::is_empty);
        if !fresh {
            return Ok(None);
        }
        let columns: Option<Vec<_>> = keys.iter().map(|k| as_int64(k)).collect();
        let Some(columns) = columns else {
            return Ok(None);
        };
        let least = columns
            .iter()
            .filter_map(|c| arrow::compute::min(c.as_ref()))
            .min();
        let greatest = columns
            .iter()
            .filter_map(|c| arrow::compute::max(c.as_ref()))
            .max();
        let (Some(min), Some(max)) = (least, greatest) else {
            return Ok(None);
        };
        let span = max
            .checked_sub(min)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| s.checked_add(1));
        // More than DENSE_SPREAD times the rows is sparse for any number
        // of distinct keys among them.
        let Some(span) = span.filter(|s| *s <= rows * DENSE_SPREAD + 4096) else {
            return Ok(None);
        };
        let mut words = vec![(0u64, 0u32); span.div_ceil(64)];
        for column in &columns {
            for key in column.iter().flatten() {
                let at = (key - min) as usize;
                words[at / 64].0 |= 1 << (at % 64);
            }
        }
        let mut before = 0u32;
        for (bits, count) in words.iter_mut() {
            *count = before;
            before += bits.count_ones();
        }
        if span > before as usize * DENSE_SPREAD + 4096 {
            return Ok(None);
        }
        let dense = DenseKeys {
            min,
            words,
            count: before,
        };
        let mut group_of = Vec::with_capacity(rows);
        for column in &columns {
            group_of.extend(
                column
                    .iter()
                    .map(|k| k.and_then(|k| dense.group(k)).unwrap_or(u32::MAX)),
            );
        }
        if group_of.len() != rows {
            return Err(Error::Internal(format!(
                "ASOF JOIN: {} key rows for {rows} rows",
                group_of.len()
            )));
        }
        self.dense = Some(dense);
        Ok(Some(group_of))
    }

    /// The group of each of `rows` rows' key, if the side has it.
    pub fn find(&self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Option<u32>>> {
        if let Some(dense) = &self.dense
            && let Some(ids) = as_int64(keys)
        {
            let found = |i: usize| dense.group(ids.value(i)).filter(|_| ids.is_valid(i));
            return Ok((0..ids.len()).map(found).collect());
        }
        match &self.map {
            None => Ok(vec![Some(0); rows]),
            // Grouped densely without the map (`assign_dense`): the planner
            // casts both sides' keys to one type, so this is a bug.
            Some(map) if map.is_empty() && self.dense.is_some() => Err(Error::Internal(format!(
                "ASOF JOIN: keys of type {:?} looked up among integer keys",
                keys.iter().map(|k| k.data_type()).collect::<Vec<_>>()
            ))),
            Some(map) => Ok(map.find(keys)?.into_iter().map(|g| g.copied()).collect()),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.map.as_ref().map_or(0, KeyMap::memory_bytes)
            + self.dense.as_ref().map_or(0, |d| d.words.capacity() * 16)
    }
}

impl std::fmt::Debug for Grouped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field("groups", &self.starts.len().saturating_sub(1))
            .field("rows", &self.order.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;

    use super::*;

    /// The dense table answers as the hash map does, renumbered in key
    /// order, at its edges too: keys below the least, above the greatest, at
    /// the extremes of BIGINT, NULL.
    #[test]
    fn dense_keys_answer_like_the_map() {
        let mut groups = KeyGroups::new(&[DataType::Int64]).expect("groups");
        let left: ArrayRef = Arc::new(Int64Array::from(vec![10, -5, 3, 3, 7]));
        groups.assign(&[left], 5).expect("assign");
        let probe: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(-5),
            Some(3),
            Some(10),
            Some(7),
            Some(11),
            Some(-6),
            Some(4),
            Some(i64::MIN),
            Some(i64::MAX),
            None,
        ]));
        let by_map = groups.find(std::slice::from_ref(&probe), 10).expect("map");
        let renumber = groups.freeze().expect("16 values for 4 keys is dense");
        let by_table = groups.find(&[probe], 10).expect("table");
        let renumbered: Vec<Option<u32>> = by_map
            .iter()
            .map(|g| g.map(|g| renumber[g as usize]))
            .collect();
        assert_eq!(by_table, renumbered);
        // Keys -5, 3, 7, 10 are groups 0, 1, 2, 3.
        let expected = [Some(0), Some(1), Some(3), Some(2)];
        assert_eq!(by_table[..4], expected);
        assert!(by_table[4..].iter().all(Option::is_none), "{by_table:?}");
    }

    /// Keys grouped densely without the map get the groups the map and
    /// `freeze` give them, NULL keys none; sparse keys still go to the map.
    #[test]
    fn dense_grouping_matches_the_map() {
        for (spread, dense) in [(1i64, true), (5, true), (100_000, false)] {
            let keys: Vec<Option<i64>> = (0..2000)
                .map(|i| (i % 97 != 0).then_some((i * 7919 % 600) * spread - 300))
                .collect();
            let batches: Vec<Vec<ArrayRef>> = keys
                .chunks(301)
                .map(|c| vec![Arc::new(Int64Array::from(c.to_vec())) as ArrayRef])
                .collect();
            let offsets = batch_offsets(keys.chunks(301).map(|c| c.len())).expect("offsets");
            let mut fast = KeyGroups::for_keys(&batches).expect("groups");
            let got = fast.assign_rows(&batches, &offsets).expect("assign");
            assert_eq!(
                fast.map.as_ref().map(KeyMap::len),
                Some(if dense { 0 } else { 600 }),
                "spread {spread}: grouped without the map when dense"
            );
            let mut slow = KeyGroups::for_keys(&batches).expect("groups");
            let mut want = Vec::new();
            for b in &batches {
                let ids = slow.assign(b, b[0].len()).expect("assign");
                want.extend(ids.into_iter().map(|g| g.unwrap_or(u32::MAX)));
            }
            if let Some(renumber) = slow.freeze() {
                for g in want.iter_mut().filter(|g| **g != u32::MAX) {
                    *g = renumber[*g as usize];
                }
            }
            assert_eq!(got, want, "spread {spread}");
            assert_eq!(fast.len(), slow.len(), "spread {spread}");
            let all: ArrayRef = Arc::new(Int64Array::from(keys.clone()));
            assert_eq!(
                fast.find(std::slice::from_ref(&all), keys.len())
                    .expect("find"),
                slow.find(&[all], keys.len()).expect("find"),
                "spread {spread}"
            );
        }
    }

    /// INT, SMALLINT and unsigned keys are grouped as BIGINT ones (densely,
    /// or in the integer map when sparse, never row-encoded) and get the
    /// same groups as the same keys as BIGINT.
    #[test]
    fn narrower_integer_keys_group_as_bigint() {
        use arrow::array::Int16Array;
        use arrow::compute::cast;
        for spread in [1i64, 100_000] {
            let keys: Vec<Option<i64>> = (0..2000)
                .map(|i| (i % 97 != 0).then_some((i * 7919 % 600) * spread))
                .collect();
            let bigint = Int64Array::from(keys.clone());
            let narrow: Vec<ArrayRef> = vec![
                Arc::new(cast(&bigint, &DataType::Int32).expect("cast")),
                Arc::new(cast(&bigint, &DataType::UInt32).expect("cast")),
            ];
            let mut want =
                KeyGroups::for_keys(&[vec![Arc::new(bigint.clone()) as ArrayRef]]).expect("groups");
            let offsets = batch_offsets([keys.len()]).expect("offsets");
            let want_rows = want
                .assign_rows(&[vec![Arc::new(bigint) as ArrayRef]], &offsets)
                .expect("assign");
            for column in narrow {
                let what = column.data_type().clone();
                let batches = vec![vec![column.clone()]];
                let mut groups = KeyGroups::for_keys(&batches).expect("groups");
                assert!(
                    matches!(groups.map, Some(KeyMap::Int { .. })),
                    "{what}: in the integer map"
                );
                let got = groups.assign_rows(&batches, &offsets).expect("assign");
                assert_eq!(got, want_rows, "{what}, spread {spread}");
                assert_eq!(
                    groups.dense.is_some(),
                    spread == 1,
                    "{what}, spread {spread}"
                );
                assert_eq!(
                    groups
                        .find(std::slice::from_ref(&column), keys.len())
                        .expect("find"),
                    want_rows
                        .iter()
                        .map(|g| (*g != u32::MAX).then_some(*g))
                        .collect::<Vec<_>>(),
                    "{what}, spread {spread}"
                );
            }
        }
        let small: ArrayRef = Arc::new(Int16Array::from(vec![Some(3), None]));
        let groups = KeyGroups::for_keys(&[vec![small]]).expect("groups");
        assert!(matches!(groups.map, Some(KeyMap::Int { .. })));
    }

    /// Grouping renumbers dense keys consistently: every row is in the group
    /// its key is found in, over several batches and words of the bitmap.
    #[test]
    fn grouped_rows_are_found_by_their_key() {
        for spread in [1i64, 3, 40] {
            let keys: Vec<i64> = (0..3000)
                .map(|i| (i * 7919 % 1000) * spread - 500)
                .collect();
            let batches: Vec<Vec<ArrayRef>> = keys
                .chunks(333)
                .map(|c| vec![Arc::new(Int64Array::from(c.to_vec())) as ArrayRef])
                .collect();
            let matches: Vec<ArrayRef> = keys
                .chunks(333)
                .map(|c| Arc::new(Int64Array::from_iter_values(0..c.len() as i64)) as ArrayRef)
                .collect();
            let offsets = batch_offsets(keys.chunks(333).map(|c| c.len())).expect("offsets");
            let mut groups = KeyGroups::for_keys(&batches).expect("groups");
            let grouped = Grouped::build(&mut groups, &batches, &matches, &offsets).expect("build");
            assert_eq!(groups.dense.is_some(), spread < 40, "spread {spread}");
            let all: ArrayRef = Arc::new(Int64Array::from(keys.clone()));
            let found = groups.find(&[all], keys.len()).expect("find");
            for (id, group) in found.iter().enumerate() {
                let group = group.expect("every key has a group");
                let range = grouped.range(group);
                assert!(
                    grouped.order[range].contains(&(id as u32)),
                    "spread {spread}: row {id} (key {}) not in its group {group}",
                    keys[id]
                );
            }
        }
    }
}
