//! The right side of one partition, indexed for ASOF probes: rows grouped by
//! key, each group ordered by match value.
//!
//! ```text
//! keys (row-encoded) ──hash──► group ──► order[start..end]  row ids by (match value, tie-break)
//!                                        values[start..end] their match values, ascending
//! ```
//!
//! Building is O(n) to group plus a sort per group; a group that arrives in
//! time order (appends) is already sorted and costs one pass. Probing a left
//! row is a hash lookup and a binary search in its group.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::array::{DynComparator, make_comparator};
use arrow::compute::{SortOptions, cast, interleave};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};

use super::values::ordered_i64;
use crate::error::{Error, Result};
use crate::execution::ingest_order::INGEST_ORDER_COLUMN;
use crate::key_map::KeyMap;
use crate::planning::MatchOp;

/// The indexed right side of one partition.
///
/// Rows stay in the batches they were read in (no concatenated copy); a
/// row id counts rows across the batches in arrival order.
#[derive(Debug)]
pub struct RightIndex {
    /// Per right column: its array in every batch, then one NULL (what a
    /// left row without a match takes).
    columns: Vec<Vec<ArrayRef>>,
    /// Row id of each batch's first row, and the total last.
    offsets: Vec<u32>,
    /// Key → group number; group `g` is `order[starts[g]..starts[g + 1]]`.
    groups: KeyGroups,
    starts: Vec<u32>,
    /// Right row ids grouped by key, each group by (match value, tie-break).
    order: Vec<u32>,
    /// `order`'s match values.
    values: Vec<i64>,
    bytes: usize,
}

impl RightIndex {
    /// Indexes the right partition's `batches`, whose key columns are
    /// `keys[b]` and match column `matches[b]` for batch `b`. Rows with a NULL
    /// key or match value are left out: they never match.
    pub fn build(
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        keys: &[Vec<ArrayRef>],
        matches: &[ArrayRef],
    ) -> Result<Self> {
        let key_types: Vec<DataType> = match keys.first() {
            Some(k) => k.iter().map(|a| a.data_type().clone()).collect(),
            None => Vec::new(),
        };
        let mut groups = KeyGroups::new(&key_types)?;
        let mut offsets = Vec::with_capacity(batches.len() + 1);
        let mut total = 0u32;
        for batch in &batches {
            offsets.push(total);
            total = u32::try_from(batch.num_rows())
                .ok()
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| {
                    Error::Invalid(
                        "ASOF JOIN: a right partition holds more than 4G rows; raise target_partitions"
                            .into(),
                    )
                })?;
        }
        offsets.push(total);

        // Pass 1: a group per usable row, and every row's match value.
        let n = total as usize;
        let mut counts: Vec<u32> = Vec::new();
        let mut group_of: Vec<u32> = vec![u32::MAX; n];
        let mut all_values: Vec<i64> = vec![0; n];
        for (b, (batch_keys, batch_matches)) in keys.iter().zip(matches).enumerate() {
            let base = offsets[b] as usize;
            let values = ordered_i64(batch_matches)?;
            let ids = groups.assign(batch_keys, batch_matches.len())?;
            counts.resize(groups.len(), 0);
            for (i, (value, gid)) in values.into_iter().zip(ids).enumerate() {
                if let (Some(value), Some(gid)) = (value, gid) {
                    group_of[base + i] = gid;
                    all_values[base + i] = value;
                    counts[gid as usize] += 1;
                }
            }
        }
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
        let tie = TieBreak::new(&batches, &offsets)?;
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
            // Time-ordered input (appends) is already sorted: one pass.
            if !pairs.is_sorted_by_key(|p| p.0) {
                pairs.sort_unstable_by_key(|p| p.0);
            }
            // Rows tied on the value: the tie-break decides their order.
            let mut run = 0;
            while run < pairs.len() {
                let end = run + pairs[run..].partition_point(|p| p.0 == pairs[run].0);
                if end - run > 1 {
                    pairs[run..end].sort_by(|a, b| tie.cmp(a.1, b.1));
                }
                run = end;
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
        drop(pairs);
        drop(all_values);
        let bytes = batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>()
            + order.capacity() * 4
            + values.capacity() * 8
            + starts.capacity() * 4
            + groups.memory_bytes();
        let columns = (0..schema.fields().len())
            .map(|c| {
                let mut arrays: Vec<ArrayRef> =
                    batches.iter().map(|b| b.column(c).clone()).collect();
                arrays.push(new_null_array(schema.field(c).data_type(), 1));
                arrays
            })
            .collect();
        Ok(RightIndex {
            columns,
            offsets,
            groups,
            starts,
            order,
            values,
            bytes,
        })
    }

    /// Heap size, for memory accounting.
    pub fn size(&self) -> usize {
        self.bytes
    }

    pub fn matchable_rows(&self) -> usize {
        self.order.len()
    }

    /// The group of each of `rows` left rows' key (`keys`: the left key columns).
    pub fn groups_of(&self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Option<u32>>> {
        self.groups.find(keys, rows)
    }

    /// The right row matching a left row whose key is in `group`, with match
    /// value `value` and optional maximum-age `bound`.
    pub fn probe(
        &self,
        group: u32,
        value: i64,
        op: MatchOp,
        bound: Option<(i64, bool)>,
    ) -> Option<u32> {
        // No group at all when the right side is empty.
        let (start, end) = (
            *self.starts.get(group as usize)? as usize,
            *self.starts.get(group as usize + 1)? as usize,
        );
        let values = &self.values[start..end];
        // Position of the winner: the last row among those tied on the nearest value.
        let pos = match op {
            MatchOp::GtEq => values.partition_point(|r| *r <= value).checked_sub(1)?,
            MatchOp::Gt => values.partition_point(|r| *r < value).checked_sub(1)?,
            MatchOp::LtEq | MatchOp::Lt => {
                let first = if op == MatchOp::LtEq {
                    values.partition_point(|r| *r < value)
                } else {
                    values.partition_point(|r| *r <= value)
                };
                let nearest = *values.get(first)?;
                values.partition_point(|r| *r <= nearest) - 1
            }
        };
        let found = values[pos];
        if let Some((limit, strict)) = bound
            && !op.within_bound(found, limit, strict)
        {
            return None;
        }
        Some(self.order[start + pos])
    }

    /// The right columns of the rows `matches` (NULLs where `None`).
    pub fn take(&self, matches: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
        let null = (self.offsets.len() - 1, 0);
        let indices: Vec<(usize, usize)> = matches
            .iter()
            .map(|m| match m {
                Some(id) => locate(&self.offsets, *id),
                None => null,
            })
            .collect();
        self.columns
            .iter()
            .map(|arrays| {
                let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
                interleave(&arrays, &indices)
                    .map_err(|e| Error::Invalid(format!("ASOF JOIN right columns: {e}")))
            })
            .collect()
    }
}

/// Batch and row of row id `id`.
fn locate(offsets: &[u32], id: u32) -> (usize, usize) {
    let batch = offsets.partition_point(|o| *o <= id) - 1;
    (batch, (id - offsets[batch]) as usize)
}

/// Key → group number (see [`KeyMap`]); with no key columns every row is in
/// group 0.
#[derive(Debug)]
struct KeyGroups(Option<KeyMap<u32>>);

impl KeyGroups {
    fn new(types: &[DataType]) -> Result<Self> {
        Ok(KeyGroups(match types {
            [] => None,
            _ => Some(KeyMap::new(types, "ASOF JOIN")?),
        }))
    }

    /// Number of groups.
    fn len(&self) -> usize {
        self.0.as_ref().map_or(1, KeyMap::len)
    }

    /// The group of each of `rows` rows, a new key getting the next number;
    /// `None` for a NULL key.
    fn assign(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Option<u32>>> {
        let Some(map) = self.0.as_mut() else {
            return Ok(vec![Some(0); rows]);
        };
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

    /// The group of each of `rows` rows' key, if the right side has it.
    fn find(&self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Option<u32>>> {
        match &self.0 {
            None => Ok(vec![Some(0); rows]),
            Some(map) => Ok(map.find(keys)?.into_iter().map(|g| g.copied()).collect()),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, KeyMap::memory_bytes)
    }
}

/// Orders tied right rows so the last one wins: by ingestion order for a
/// feature group (its scan adds each row's position in it), otherwise by all
/// their columns, so the winner does not depend on the order rows arrived in.
enum TieBreak {
    Ingestion(Vec<i64>),
    Columns {
        /// Per column, its array in every batch.
        columns: Vec<Vec<ArrayRef>>,
        offsets: Vec<u32>,
    },
}

impl TieBreak {
    fn new(batches: &[RecordBatch], offsets: &[u32]) -> Result<Self> {
        let Some(first) = batches.first() else {
            return Ok(TieBreak::Ingestion(Vec::new()));
        };
        if let Ok(c) = first.schema().index_of(INGEST_ORDER_COLUMN) {
            let mut order = Vec::with_capacity(*offsets.last().unwrap_or(&0) as usize);
            for batch in batches {
                let ints = cast(batch.column(c), &DataType::Int64)
                    .map_err(|e| Error::Invalid(format!("ASOF JOIN ingestion order: {e}")))?;
                order.extend(
                    ints.as_primitive::<Int64Type>()
                        .iter()
                        .map(|v| v.unwrap_or(0)),
                );
            }
            return Ok(TieBreak::Ingestion(order));
        }
        let columns = (0..first.num_columns())
            .map(|c| batches.iter().map(|b| b.column(c).clone()).collect())
            .collect();
        Ok(TieBreak::Columns {
            columns,
            offsets: offsets.to_vec(),
        })
    }

    fn cmp(&self, a: u32, b: u32) -> Ordering {
        match self {
            TieBreak::Ingestion(order) => order[a as usize].cmp(&order[b as usize]),
            TieBreak::Columns { columns, offsets } => {
                // Only tied rows get here, so the comparators are made as needed.
                let ((ba, ra), (bb, rb)) = (locate(offsets, a), locate(offsets, b));
                for arrays in columns {
                    let compare: Option<DynComparator> = make_comparator(
                        arrays[ba].as_ref(),
                        arrays[bb].as_ref(),
                        SortOptions::default(),
                    )
                    .ok();
                    match compare.map(|c| c(ra, rb)) {
                        None | Some(Ordering::Equal) => continue,
                        Some(other) => return other,
                    }
                }
                Ordering::Equal
            }
        }
        .then_with(|| a.cmp(&b))
    }
}
