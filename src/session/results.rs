//! What a statement gives back.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;

use crate::error::{Error, Result};

/// A statement's complete result.
#[derive(Debug, Clone)]
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl StatementResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The result of a statement that returns nothing.
pub(super) fn done() -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::empty());
    Ok(Box::pin(MemoryStream::try_new(vec![], schema, None)?))
}

pub(super) fn one_batch(batch: RecordBatch) -> Result<SendableRecordBatchStream> {
    let schema = batch.schema();
    Ok(Box::pin(MemoryStream::try_new(vec![batch], schema, None)?))
}

/// `count` of rows written, as DataFusion reports DML.
pub(super) fn count(rows: u64) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![rows]))])
        .map_err(Error::arrow("the count of rows written"))?;
    one_batch(batch)
}
