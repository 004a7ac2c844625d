//! Which columns an ASOF JOIN emits, and how an output batch is put together
//! from a left batch and the right columns gathered for its matches.
//!
//! The join computes left columns then right columns; a projection embedded
//! in it (`SELECT l.id, f.price …` rarely reads the right side's key or time)
//! picks some of them. Only the right columns it picks are held for the
//! matches and gathered: holding and copying the key and time of every
//! winning right row was most of the work of compacting them.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};

#[derive(Debug, Clone, Copy)]
enum Source {
    Left(usize),
    /// The n-th of the gathered right columns.
    Right(usize),
}

/// The output columns of one join.
#[derive(Debug)]
pub struct Output {
    schema: SchemaRef,
    /// Right input columns the output reads, ascending: the only ones held.
    right_columns: Vec<usize>,
    sources: Vec<Source>,
}

impl Output {
    /// `projection`: indices into the left columns (`0..left`) followed by
    /// the right ones (`left..left + right`); all of them when `None`.
    pub fn new(
        schema: SchemaRef,
        left: usize,
        right: usize,
        projection: Option<&[usize]>,
    ) -> DFResult<Self> {
        let all: Vec<usize> = (0..left + right).collect();
        let projection = projection.unwrap_or(&all);
        if let Some(bad) = projection.iter().find(|i| **i >= left + right) {
            return Err(DataFusionError::Internal(format!(
                "AsOfJoinExec: projected column {bad} of {}",
                left + right
            )));
        }
        let mut right_columns: Vec<usize> = projection
            .iter()
            .filter(|i| **i >= left)
            .map(|i| i - left)
            .collect();
        right_columns.sort_unstable();
        right_columns.dedup();
        let sources = projection
            .iter()
            .map(|&i| match i.checked_sub(left) {
                None => Source::Left(i),
                Some(r) => Source::Right(right_columns.partition_point(|c| *c < r)),
            })
            .collect();
        Ok(Output {
            schema,
            right_columns,
            sources,
        })
    }

    /// The right input columns to hold and gather, ascending.
    pub fn right_columns(&self) -> &[usize] {
        &self.right_columns
    }

    /// The output rows of `left`, given the right columns gathered for its
    /// rows' matches (in the order of [`Self::right_columns`]).
    pub fn batch(&self, left: &RecordBatch, right: &[ArrayRef]) -> DFResult<RecordBatch> {
        let columns = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Left(i) => left.column(*i).clone(),
                Source::Right(i) => Arc::clone(&right[*i]),
            })
            .collect();
        // A projection may keep no column at all (`SELECT count(*)`).
        let options = RecordBatchOptions::new().with_row_count(Some(left.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}
