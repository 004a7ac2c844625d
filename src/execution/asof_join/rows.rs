//! Rows held in the batches they arrived in (no concatenated copy), a row id
//! counting rows across the batches; what both strategies gather the right
//! columns of a match from.

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, new_null_array};
use arrow::compute::{interleave, take};
use arrow::datatypes::SchemaRef;

use super::groups::{batch_offsets, locate};
use crate::error::{Error, Result};

pub struct BatchRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Row id of each batch's first row, and the total last.
    offsets: Vec<u32>,
    /// Per column, one NULL: what a row without a match takes.
    nulls: Vec<ArrayRef>,
    bytes: usize,
}

impl std::fmt::Debug for BatchRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRows")
            .field("batches", &self.batches.len())
            .field("rows", &self.rows())
            .finish()
    }
}

impl BatchRows {
    pub fn new(schema: SchemaRef) -> Self {
        let nulls = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        BatchRows {
            schema,
            batches: Vec::new(),
            offsets: vec![0],
            nulls,
            bytes: 0,
        }
    }

    /// Holds `batches`; errors past 4G rows.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self> {
        let offsets = batch_offsets(batches.iter().map(RecordBatch::num_rows))?;
        let mut rows = BatchRows::new(schema);
        rows.bytes = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        rows.batches = batches;
        rows.offsets = offsets;
        Ok(rows)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn rows(&self) -> u32 {
        *self.offsets.last().unwrap_or(&0)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    pub fn push(&mut self, batch: RecordBatch) {
        self.bytes += batch.get_array_memory_size();
        self.offsets.push(self.rows() + batch.num_rows() as u32);
        self.batches.push(batch);
    }

    /// Batch and row of row `id`.
    pub fn row(&self, id: u32) -> (&RecordBatch, usize) {
        let (batch, row) = locate(&self.offsets, id);
        (&self.batches[batch], row)
    }

    /// Batch and row of each row id (`None`: the NULL row).
    pub fn locate_all(&self, ids: &[Option<u32>]) -> Vec<(usize, usize)> {
        let null = (self.batches.len(), 0);
        ids.iter()
            .map(|id| id.map_or(null, |id| locate(&self.offsets, id)))
            .collect()
    }

    /// The columns of rows at `indices` (from [`Self::locate_all`]).
    pub fn interleave(&self, indices: &[(usize, usize)]) -> Result<Vec<ArrayRef>> {
        self.nulls
            .iter()
            .enumerate()
            .map(|(c, null)| {
                let arrays: Vec<&dyn Array> = self
                    .batches
                    .iter()
                    .map(|b| b.column(c).as_ref())
                    .chain([null.as_ref()])
                    .collect();
                interleave(&arrays, indices).map_err(Error::arrow("ASOF JOIN right columns"))
            })
            .collect()
    }

    /// The columns of rows `ids` (NULLs where `None`).
    pub fn gather(&self, ids: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
        self.interleave(&self.locate_all(ids))
    }

    /// The same rows with only `columns`.
    pub fn project(&self, columns: &[usize]) -> Result<Self> {
        let schema = self
            .schema
            .project(columns)
            .map_err(Error::arrow("ASOF JOIN right columns"))?;
        let batches = self
            .batches
            .iter()
            .map(|b| b.project(columns))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::arrow("ASOF JOIN right columns"))?;
        Self::from_batches(schema.into(), batches)
    }

    /// Keeps only the rows at `indices`, in that order, as one batch.
    pub fn replace(&mut self, indices: &[(usize, usize)]) -> Result<()> {
        let columns = self.interleave(indices)?;
        let batch = with_rows(self.schema.clone(), columns, indices.len())?;
        self.batches.clear();
        self.offsets = vec![0];
        self.bytes = 0;
        self.push(batch);
        Ok(())
    }
}

/// Rows `rows` of `batch`, which may have no columns.
pub fn take_rows(batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c, rows, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::arrow("ASOF JOIN right rows"))?;
    with_rows(batch.schema(), columns, rows.len())
}

/// A batch of `rows` rows; without columns the count is kept explicitly.
fn with_rows(schema: SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, columns, &options)
        .map_err(Error::arrow("ASOF JOIN right rows"))
}
