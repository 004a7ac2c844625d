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
use std::collections::HashMap;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::array::{DynComparator, make_comparator};
use arrow::compute::SortOptions;
use arrow::row::{RowConverter, Rows, SortField};

use super::values::ordered_i64;
use crate::error::{Error, Result};
use crate::execution::ingest_order::INGEST_ORDER_COLUMN;
use crate::planning::MatchOp;

/// The indexed right side of one partition.
#[derive(Debug)]
pub struct RightIndex {
    /// All right rows of the partition.
    pub batch: RecordBatch,
    /// Key bytes → range in `order` / `values`.
    groups: HashMap<Box<[u8]>, (u32, u32), ahash::RandomState>,
    /// Right row ids grouped by key, each group by (match value, tie-break).
    order: Vec<u32>,
    /// `order`'s match values.
    values: Vec<i64>,
    /// Encodes keys of both sides the same way.
    converter: RowConverter,
}

impl RightIndex {
    /// Indexes `batch`, whose key columns are `keys` and match column `matches`.
    /// Rows with a NULL key or match value are left out: they never match.
    pub fn build(batch: RecordBatch, keys: &[ArrayRef], matches: &ArrayRef) -> Result<Self> {
        let err = |e: arrow::error::ArrowError| Error::Invalid(format!("ASOF JOIN keys: {e}"));
        let converter = RowConverter::new(
            keys.iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect(),
        )
        .map_err(err)?;
        let rows = converter.convert_columns(keys).map_err(err)?;
        let values = ordered_i64(matches)?;
        let n = batch.num_rows();

        // Pass 1: a group id per usable row.
        let mut groups: HashMap<Box<[u8]>, (u32, u32), ahash::RandomState> = HashMap::default();
        let mut counts: Vec<u32> = Vec::new();
        let mut group_of: Vec<u32> = vec![u32::MAX; n];
        for (i, gid) in group_of.iter_mut().enumerate() {
            if values[i].is_none() || has_null_key(keys, i) {
                continue;
            }
            let next = counts.len() as u32;
            let entry = groups
                .entry(Box::from(key_bytes(&rows, keys.is_empty(), i)))
                .or_insert((next, 0));
            if entry.0 == next {
                counts.push(0);
            }
            *gid = entry.0;
            counts[entry.0 as usize] += 1;
        }
        // Pass 2: place row ids by group (counting sort), then order each group.
        let mut starts: Vec<u32> = Vec::with_capacity(counts.len() + 1);
        let mut total = 0u32;
        for c in &counts {
            starts.push(total);
            total += c;
        }
        starts.push(total);
        let mut cursor = starts.clone();
        let mut order = vec![0u32; total as usize];
        for (i, gid) in group_of.iter().enumerate() {
            if *gid != u32::MAX {
                let slot = &mut cursor[*gid as usize];
                order[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        drop(group_of);
        let tie = TieBreak::new(&batch)?;
        let value = |i: u32| values[i as usize].unwrap_or_default();
        for g in 0..counts.len() {
            let slice = &mut order[starts[g] as usize..starts[g + 1] as usize];
            // Stable and adaptive: time-ordered input is one pass.
            slice.sort_by(|a, b| value(*a).cmp(&value(*b)).then_with(|| tie.cmp(*a, *b)));
        }
        let sorted_values: Vec<i64> = order.iter().map(|i| value(*i)).collect();
        for range in groups.values_mut() {
            let g = range.0 as usize;
            *range = (starts[g], starts[g + 1]);
        }
        Ok(RightIndex {
            batch,
            groups,
            order,
            values: sorted_values,
            converter,
        })
    }

    /// Approximate heap size, for memory accounting.
    pub fn size(&self) -> usize {
        self.batch.get_array_memory_size()
            + self.order.capacity() * 4
            + self.values.capacity() * 8
            + self.groups.capacity() * (std::mem::size_of::<(Box<[u8]>, (u32, u32))>() + 16)
    }

    pub fn matchable_rows(&self) -> usize {
        self.order.len()
    }

    /// Row-encodes left keys with the right side's encoding.
    pub fn encode(&self, keys: &[ArrayRef]) -> Result<Rows> {
        self.converter
            .convert_columns(keys)
            .map_err(|e| Error::Invalid(format!("ASOF JOIN keys: {e}")))
    }

    /// The right row matching a left row: keys `key`, match value `value`,
    /// optional maximum-age `bound`.
    pub fn probe(
        &self,
        key: &[u8],
        value: i64,
        op: MatchOp,
        bound: Option<(i64, bool)>,
    ) -> Option<u32> {
        let &(start, end) = self.groups.get(key)?;
        let values = &self.values[start as usize..end as usize];
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
        Some(self.order[start as usize + pos])
    }
}

/// The encoded key of a row; with no key columns every row has the empty key
/// (a converter without columns encodes no rows).
pub fn key_bytes(rows: &Rows, no_keys: bool, row: usize) -> &[u8] {
    if no_keys { &[] } else { rows.row(row).data() }
}

fn has_null_key(keys: &[ArrayRef], row: usize) -> bool {
    keys.iter().any(|k| k.is_null(row))
}

/// Orders tied right rows so the last one wins: by ingestion order for a
/// feature group (its scan adds each row's position in it), otherwise by all
/// their columns, so the winner does not depend on the order rows arrived in.
struct TieBreak {
    columns: Vec<DynComparator>,
}

impl TieBreak {
    fn new(batch: &RecordBatch) -> Result<Self> {
        if let Some(order) = batch.column_by_name(INGEST_ORDER_COLUMN) {
            let columns = make_comparator(order.as_ref(), order.as_ref(), SortOptions::default())
                .map(|c| vec![c])
                .map_err(|e| Error::Invalid(format!("ASOF JOIN ingestion order: {e}")))?;
            return Ok(TieBreak { columns });
        }
        let columns = batch
            .columns()
            .iter()
            .filter_map(|c| make_comparator(c.as_ref(), c.as_ref(), SortOptions::default()).ok())
            .collect();
        Ok(TieBreak { columns })
    }

    fn cmp(&self, a: u32, b: u32) -> Ordering {
        for c in &self.columns {
            match c(a as usize, b as usize) {
                Ordering::Equal => continue,
                other => return other,
            }
        }
        a.cmp(&b)
    }
}
