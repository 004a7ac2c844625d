//! The right side of one partition, indexed for ASOF probes: rows grouped by
//! key, each group ordered by (match value, tie-break) (see [`Grouped`]).
//! Probing a left row is a hash lookup and a binary search in its group.
//!
//! The strategy for a left side too large to hold; otherwise
//! [`super::LeftSweep`] streams the right side instead of keeping it.

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;

use super::groups::{Grouped, KeyGroups};
use super::rows::BatchRows;
use super::tie_break::{TieBreak, ingest_order_column};
use crate::error::Result;
use crate::shared::MatchOp;

/// The indexed right side of one partition.
///
/// Rows stay in the batches they were read in (no concatenated copy); a
/// row id counts rows across the batches in arrival order.
#[derive(Debug)]
pub struct RightIndex {
    rows: BatchRows,
    groups: KeyGroups,
    /// Right row ids grouped by key, each group by (match value, tie-break).
    grouped: Grouped,
    bytes: usize,
}

impl RightIndex {
    /// Indexes the right partition's `batches`, whose key columns are
    /// `keys[b]` and match column `matches[b]` for batch `b`, holding only
    /// `columns` of them. Rows with a NULL key or match value are left out:
    /// they never match.
    pub fn build(
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        keys: &[Vec<ArrayRef>],
        matches: &[ArrayRef],
        columns: &[usize],
    ) -> Result<Self> {
        let mut groups = KeyGroups::for_keys(keys)?;
        let all = BatchRows::from_batches(schema.clone(), batches)?;
        let mut grouped = Grouped::build(&mut groups, keys, matches, all.offsets())?;
        let rows = all.project(columns)?;
        // Rows tied on the value: the tie-break decides their order, by
        // ingestion order, else by the held columns (as the sweep does).
        let ties = match ingest_order_column(schema) {
            Some(_) => all.batches(),
            None => rows.batches(),
        };
        let tie = TieBreak::new(ties, rows.offsets())?;
        for g in 0..groups.len() as u32 {
            let range = grouped.range(g);
            let (order, values) = (&mut grouped.order[range.clone()], &grouped.values[range]);
            let mut run = 0;
            while run < values.len() {
                let end = run + values[run..].partition_point(|v| *v == values[run]);
                if end - run > 1 {
                    order[run..end].sort_by(|a, b| tie.cmp(*a, *b));
                }
                run = end;
            }
        }
        // Only the held columns stay.
        drop(tie);
        drop(all);
        let bytes = rows.bytes() + grouped.memory_bytes() + groups.memory_bytes();
        Ok(RightIndex {
            rows,
            groups,
            grouped,
            bytes,
        })
    }

    /// Heap size, for memory accounting.
    pub fn size(&self) -> usize {
        self.bytes
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
        let range = self.grouped.range(group);
        let start = range.start;
        let values = &self.grouped.values[range];
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
        Some(self.grouped.order[start + pos])
    }

    /// The right columns of the rows `matches` (NULLs where `None`).
    pub fn take(&self, matches: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
        self.rows.gather(matches)
    }
}
