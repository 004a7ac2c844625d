//! `IngestOrderScanExec`: a feature group's rows in ingestion order, each with
//! its position in that order (`__pitlake_ingest_order`), so an ASOF JOIN can
//! let the most recently ingested row win a tie on the match value. A plain
//! table on the right of an ASOF JOIN is read by it too, without that column:
//! unlike iceberg-datafusion's scan, it takes filters pushed at run time (the
//! join's right-side filter), which Iceberg turns into file and row pruning.
//!
//! ```text
//!  data files, read in parallel ─► rows + _file ─► __pitlake_ingest_order =
//!      (rank of the file by data sequence number, then order in its commit) << 32
//!      + position of the row in its file
//!  then streamed rows not yet committed (current reads) ─► after every file
//! ```

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::table::Table;

use super::scan_predicate::iceberg_predicate;
use crate::error::Error;
use crate::storage::read_with_ingest_order;

pub use crate::shared::INGEST_ORDER_COLUMN;

/// Reads one snapshot of a table in ingestion order, one partition.
#[derive(Debug)]
pub struct IngestOrderScanExec {
    name: String,
    table: Table,
    snapshot_id: Option<i64>,
    /// Table columns read, by name, in output order (the order column, when
    /// projected, is last).
    columns: Vec<String>,
    with_order: bool,
    /// Streamed rows after the snapshot, already projected to `columns`.
    pending: Vec<RecordBatch>,
    /// Filters pushed into the scan (an ASOF JOIN's right-side filter, set
    /// once its labels are read), translated for Iceberg when the scan starts.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl IngestOrderScanExec {
    pub fn new(
        name: String,
        table: Table,
        snapshot_id: Option<i64>,
        columns: Vec<String>,
        with_order: bool,
        pending: Vec<RecordBatch>,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        IngestOrderScanExec {
            name,
            table,
            snapshot_id,
            columns,
            with_order,
            pending,
            filters: Vec::new(),
            schema,
            properties,
        }
    }
}

impl DisplayAs for IngestOrderScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IngestOrderScanExec: table={}", self.name)?;
        if let Some(id) = self.snapshot_id {
            write!(f, ", snapshot_id={id}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IngestOrderScanExec {
    fn name(&self) -> &str {
        "IngestOrderScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// Takes every filter, to prune files and row groups, and reports none
    /// as applied: the rows a filter rejects may still come through.
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DFResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let pushed: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .into_iter()
            .map(|f| f.filter)
            .collect();
        let verdicts = vec![PushedDown::No; pushed.len()];
        if pushed.is_empty() {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(
                verdicts,
            ));
        }
        let mut scan = IngestOrderScanExec::new(
            self.name.clone(),
            self.table.clone(),
            self.snapshot_id,
            self.columns.clone(),
            self.with_order,
            self.pending.clone(),
            self.schema.clone(),
        );
        scan.filters = self.filters.iter().cloned().chain(pushed).collect();
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(verdicts)
                .with_updated_node(Arc::new(scan) as Arc<dyn ExecutionPlan>),
        )
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let (name, table, snapshot_id) = (self.name.clone(), self.table.clone(), self.snapshot_id);
        let columns = self.columns.clone();
        let (filters, output) = (self.filters.clone(), self.schema.clone());
        // Run at the first poll: by then a join's dynamic filter is set.
        let files = futures::stream::once(async move {
            let predicate = iceberg_predicate(&filters, &output);
            match snapshot_id {
                Some(id) => read_with_ingest_order(&name, &table, id, &columns, predicate).await,
                None => Ok(futures::stream::empty().boxed()),
            }
        })
        .try_flatten();
        // Streamed rows come after every file.
        let mut next: i64 = i64::MAX / 2;
        let pending = futures::stream::iter(self.pending.clone()).map(move |batch| {
            let n = batch.num_rows() as i64;
            let order = Int64Array::from_iter_values(next..next + n);
            next += n;
            Ok((batch, order))
        });
        let schema = self.schema.clone();
        let with_order = self.with_order;
        let stream = files.chain(pending).map(move |item| {
            let (batch, order) = item?;
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            if with_order {
                columns.push(Arc::new(order));
            }
            RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(Error::arrow("ingestion-order scan"))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.map_err(|e| DataFusionError::External(Box::new(e))),
        )))
    }
}
