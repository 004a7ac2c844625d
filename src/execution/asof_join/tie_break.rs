//! Which of the right rows tied on the nearest match value wins: the last by
//! ingestion order for a feature group (its scan adds each row's position in
//! it, see [`INGEST_ORDER_COLUMN`]), otherwise the last by the right columns
//! the join holds (those the query reads), so the winner does not depend on
//! the order rows arrived in.

use std::cmp::Ordering;

use arrow::array::{ArrayRef, AsArray, RecordBatch, make_comparator};
use arrow::compute::{SortOptions, cast};
use arrow::datatypes::{DataType, Int64Type, Schema};

use super::groups::locate;
use crate::error::{Error, Result};
use crate::execution::ingest_order::INGEST_ORDER_COLUMN;

/// The column holding each row's ingestion order, if the side has one.
pub fn ingest_order_column(schema: &Schema) -> Option<usize> {
    schema.index_of(INGEST_ORDER_COLUMN).ok()
}

/// A batch's ingestion order column as `i64`s (0 where NULL).
pub fn ingest_order(batch: &RecordBatch, column: usize) -> Result<Vec<i64>> {
    let ints = cast(batch.column(column), &DataType::Int64)
        .map_err(Error::arrow("ASOF JOIN ingestion order"))?;
    Ok(ints
        .as_primitive::<Int64Type>()
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// Compares row `ra` of columns `a` with row `rb` of columns `b` (same
/// schema), column by column. Only tied rows get here, so the comparators
/// are made as needed.
pub fn cmp_rows<'a>(
    columns: impl IntoIterator<Item = (&'a ArrayRef, &'a ArrayRef)>,
    ra: usize,
    rb: usize,
) -> Ordering {
    for (a, b) in columns {
        match make_comparator(a.as_ref(), b.as_ref(), SortOptions::default()).map(|c| c(ra, rb)) {
            Err(_) | Ok(Ordering::Equal) => continue,
            Ok(other) => return other,
        }
    }
    Ordering::Equal
}

/// The tie-break over a side's rows held in batches, by row id.
pub enum TieBreak {
    Ingestion(Vec<i64>),
    Columns {
        /// Per column, its array in every batch.
        columns: Vec<Vec<ArrayRef>>,
        offsets: Vec<u32>,
    },
}

impl TieBreak {
    pub fn new(batches: &[RecordBatch], offsets: &[u32]) -> Result<Self> {
        let Some(first) = batches.first() else {
            return Ok(TieBreak::Ingestion(Vec::new()));
        };
        if let Some(c) = ingest_order_column(&first.schema()) {
            let mut order = Vec::with_capacity(*offsets.last().unwrap_or(&0) as usize);
            for batch in batches {
                order.extend(ingest_order(batch, c)?);
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

    /// Orders rows `a` and `b`; the later one wins. Fully equal rows are
    /// ordered by arrival.
    pub fn cmp(&self, a: u32, b: u32) -> Ordering {
        match self {
            TieBreak::Ingestion(order) => order[a as usize].cmp(&order[b as usize]),
            TieBreak::Columns { columns, offsets } => {
                let ((ba, ra), (bb, rb)) = (locate(offsets, a), locate(offsets, b));
                cmp_rows(columns.iter().map(|c| (&c[ba], &c[bb])), ra, rb)
            }
        }
        .then_with(|| a.cmp(&b))
    }
}
