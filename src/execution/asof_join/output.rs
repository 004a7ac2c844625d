//! Which columns an ASOF JOIN emits, and how an output batch is put together
//! from a left batch and the right columns gathered for its matches.
//!
//! The join computes left columns then, per arm (see `AsOfJoinExec`), the
//! right columns; a projection embedded in it (`SELECT l.id, f.price …`
//! rarely reads the right side's key or time) picks some of them. Only the right columns it picks are held for the
//! matches and gathered: holding and copying the key and time of every
//! winning right row was most of the work of compacting them.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};

#[derive(Debug, Clone, Copy)]
enum Source {
    Left(usize),
    /// Of an arm, the n-th of its gathered right columns.
    Right(usize, usize),
}

/// The output columns of one join.
#[derive(Debug)]
pub struct Output {
    schema: SchemaRef,
    /// Per arm, the right input columns the output reads, ascending: the
    /// only ones held.
    right_columns: Vec<Vec<usize>>,
    sources: Vec<Source>,
}

impl Output {
    /// `projection`: indices into the left columns (`0..left`) followed by
    /// each arm's right ones (`left + a * right..left + (a + 1) * right`);
    /// all of them when `None`.
    pub fn new(
        schema: SchemaRef,
        left: usize,
        right: usize,
        arms: usize,
        projection: Option<&[usize]>,
    ) -> DFResult<Self> {
        let width = left + right * arms;
        let all: Vec<usize> = (0..width).collect();
        let projection = projection.unwrap_or(&all);
        if let Some(bad) = projection.iter().find(|i| **i >= width) {
            return Err(DataFusionError::Internal(format!(
                "AsOfJoinExec: projected column {bad} of {width}"
            )));
        }
        // (arm, right column) of a joined column past the left ones.
        let of = |i: usize| ((i - left) / right.max(1), (i - left) % right.max(1));
        let mut right_columns = vec![Vec::new(); arms];
        for &i in projection.iter().filter(|i| **i >= left) {
            let (arm, column) = of(i);
            right_columns[arm].push(column);
        }
        for columns in &mut right_columns {
            columns.sort_unstable();
            columns.dedup();
        }
        let sources = projection
            .iter()
            .map(|&i| match i.checked_sub(left) {
                None => Source::Left(i),
                Some(_) => {
                    let (arm, column) = of(i);
                    let held = &right_columns[arm];
                    Source::Right(arm, held.partition_point(|c| *c < column))
                }
            })
            .collect();
        Ok(Output {
            schema,
            right_columns,
            sources,
        })
    }

    /// The right input columns to hold and gather for `arm`, ascending.
    pub fn right_columns(&self, arm: usize) -> &[usize] {
        &self.right_columns[arm]
    }

    /// The output rows of `left`, given per arm the right columns gathered
    /// for its rows' matches (in the order of [`Self::right_columns`]).
    pub fn batch(&self, left: &RecordBatch, right: &[Vec<ArrayRef>]) -> DFResult<RecordBatch> {
        let columns = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Left(i) => left.column(*i).clone(),
                Source::Right(arm, i) => Arc::clone(&right[*arm][*i]),
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
