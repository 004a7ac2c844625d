//! `IngestOrderScanExec`: the scan of every Iceberg table and feature group,
//! at the current snapshot or a time-travel one, in `target_partitions`
//! partitions. A feature group on the right of an ASOF JOIN is read with each
//! row's position in ingestion order (`__pitlake_ingest_order`), so the join
//! can let the most recently ingested row win a tie on the match value. It
//! takes filters pushed at run time (the join's right-side filter, a `WHERE`
//! above), which Iceberg turns into file, row-group and row pruning.
//!
//! ```text
//!  at the first poll of any partition, once for all (a join's filter is set by then):
//!    the snapshot's files the filter leaves ─► ranked in ingestion order
//!      ─► large files cut at row-group boundaries ─► pieces shared among the
//!         partitions by bytes
//!  each partition reads its pieces one after another:
//!    rows ─► __pitlake_ingest_order = (rank of the file by data sequence number,
//!              then order in its commit) << 32 + position of the row in its file
//!  the last partition then yields the streamed rows not yet committed
//!  (current reads), after every file
//! ```
//!
//! A row's position depends only on its file and its place in it, never on
//! which partition reads it or when, so the tie-break is the same at any
//! number of partitions.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNode;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, conjunction};
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::table::Table;

use super::scan_predicate::{defaulted_columns, iceberg_predicate, reading_predicate};
use crate::error::Error;
use crate::storage::{
    ReadAt, RowTest, ScanPiece, as_declared, plan_pieces, read_pieces, read_schema,
};

pub use crate::shared::INGEST_ORDER_COLUMN;

/// What the first poll plans once for all partitions.
type Shares = Arc<tokio::sync::OnceCell<Planned>>;

#[derive(Debug)]
struct Planned {
    /// The pieces of each partition.
    shares: Vec<Vec<ScanPiece>>,
    /// The pushed filters that nothing above applies (a join's dynamic
    /// filter), at their values then, when the Parquet reader gets a wider
    /// predicate than they are (a long `IN` list as its range): the scan
    /// applies them to its rows, hashed.
    exact: Option<Arc<dyn PhysicalExpr>>,
    /// `exact` as the Parquet reader's row filter, where a piece allows it.
    test: Option<RowTest>,
}

/// Reads one snapshot of a table, its files shared among partitions, each row
/// optionally with its position in ingestion order.
#[derive(Debug)]
pub struct IngestOrderScanExec {
    name: String,
    table: Table,
    /// The snapshot read and the schema it is read with; None for a table
    /// with no snapshot yet.
    at: Option<ReadAt>,
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
    partitions: usize,
    /// Planned at the first poll of any partition (see the module's doc).
    shares: Shares,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl IngestOrderScanExec {
    pub fn new(
        name: String,
        table: Table,
        at: Option<ReadAt>,
        columns: Vec<String>,
        with_order: bool,
        pending: Vec<RecordBatch>,
        schema: SchemaRef,
    ) -> Self {
        let partitions = 1;
        let properties = Self::properties_for(&schema, partitions);
        IngestOrderScanExec {
            name,
            table,
            at,
            columns,
            with_order,
            pending,
            filters: Vec::new(),
            schema,
            partitions,
            shares: Arc::default(),
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The same scan in `partitions` partitions (at least one).
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = partitions.max(1);
        self.properties = Self::properties_for(&self.schema, self.partitions);
        self.shares = Arc::default();
        self
    }

    fn properties_for(schema: &SchemaRef, partitions: usize) -> Arc<PlanProperties> {
        Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ))
    }
}

impl DisplayAs for IngestOrderScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IngestOrderScanExec: table={}", self.name)?;
        if let Some(at) = &self.at {
            write!(f, ", snapshot_id={}", at.snapshot_id)?;
        }
        // What Iceberg prunes with, as far as it is known when the plan is
        // shown (a join's filter is set only once its labels are read).
        let defaulted = self
            .at
            .as_ref()
            .map(|at| defaulted_columns(&at.schema))
            .unwrap_or_default();
        if let Some(predicate) = iceberg_predicate(&self.filters, &self.schema, &defaulted) {
            write!(f, ", predicate=[{predicate}]")?;
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

    /// The rows the snapshot's summary counts (`total-records`) and the
    /// streamed rows pending, split evenly among the partitions: an
    /// estimate, since filters pushed in drop rows. An ASOF JOIN's `auto`
    /// strategy holds the smaller side by it.
    fn partition_statistics(&self, partition: Option<usize>) -> DFResult<Statistics> {
        let mut statistics = Statistics::new_unknown(&self.schema);
        let snapshot_rows = match &self.at {
            None => Some(0),
            Some(at) => self
                .table
                .metadata()
                .snapshot_by_id(at.snapshot_id)
                .and_then(|s| s.summary().additional_properties.get("total-records"))
                .and_then(|rows| rows.parse::<usize>().ok()),
        };
        if let Some(rows) = snapshot_rows {
            let rows = rows
                + self
                    .pending
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>();
            statistics.num_rows = Precision::Inexact(match partition {
                Some(_) => rows.div_ceil(self.partitions.max(1)),
                None => rows,
            });
        }
        Ok(statistics)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    /// Rows out and time spent producing them (reading included), per
    /// partition; the pieces each read, and the rows the join's filter
    /// dropped after they were read (see `Planned::exact`).
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
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
            self.at.clone(),
            self.columns.clone(),
            self.with_order,
            self.pending.clone(),
            self.schema.clone(),
        )
        .with_partitions(self.partitions);
        scan.filters = self.filters.iter().cloned().chain(pushed).collect();
        Ok(
            FilterPushdownPropagation::with_parent_pushdown_result(verdicts)
                .with_updated_node(Arc::new(scan) as Arc<dyn ExecutionPlan>),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let (name, table, at) = (self.name.clone(), self.table.clone(), self.at.clone());
        // With no column asked for (count(*)), the first is read for the row
        // counts.
        let columns = match (self.columns.is_empty(), &at) {
            (true, Some(at)) => first_column(&at.schema).into_iter().collect(),
            _ => self.columns.clone(),
        };
        let (filters, output) = (self.filters.clone(), self.schema.clone());
        let (shares, partitions) = (self.shares.clone(), self.partitions);
        let batch_size = context.session_config().batch_size();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let pieces_read = MetricBuilder::new(&self.metrics).counter("pieces", partition);
        let dropped =
            MetricBuilder::new(&self.metrics).counter("rows_dropped_by_filter", partition);
        // Run at the first poll: by then a join's dynamic filter is set.
        let files = futures::stream::once(async move {
            let Some(at) = at else {
                return Ok::<_, Error>(futures::stream::empty().boxed());
            };
            let planned = shares
                .get_or_try_init(|| async {
                    let defaulted = defaulted_columns(&at.schema);
                    let predicate = iceberg_predicate(&filters, &output, &defaulted);
                    let reading = reading_predicate(&filters, &output, &defaulted);
                    let exact = match reading == predicate {
                        true => None,
                        false => unapplied_filter(&filters),
                    };
                    let pieces = (predicate, reading);
                    let shares =
                        plan_pieces(&name, &table, &at, &columns, pieces, partitions).await?;
                    let test = exact.as_ref().and_then(|e| row_test(e, &output));
                    Ok::<_, Error>(Planned {
                        shares,
                        exact,
                        test,
                    })
                })
                .await?;
            let pieces = planned.shares.get(partition).cloned().unwrap_or_default();
            pieces_read.add(pieces.len());
            let schema = read_schema(&name, &at, Some(&columns))?;
            let test = planned.test.clone();
            Ok(read_pieces(
                &name,
                &table,
                (pieces, schema),
                test,
                batch_size,
            ))
        })
        .try_flatten();
        // Streamed rows come after every file, in the last partition.
        let pending = match partition + 1 == self.partitions {
            true => self.pending.clone(),
            false => Vec::new(),
        };
        let mut next: i64 = i64::MAX / 2;
        let pending = futures::stream::iter(pending).map(move |batch| {
            let n = batch.num_rows() as i64;
            let order = Int64Array::from_iter_values(next..next + n);
            next += n;
            Ok((batch, order))
        });
        let schema = self.schema.clone();
        let (with_order, no_columns) = (self.with_order, self.columns.is_empty());
        let planned = self.shares.clone();
        let stream = files.chain(pending).map(move |item| {
            let (batch, order) = item.map_err(|e| DataFusionError::External(Box::new(e)))?;
            let mut columns: Vec<ArrayRef> = match no_columns {
                true => Vec::new(),
                false => batch.columns().to_vec(),
            };
            if with_order {
                columns.push(Arc::new(order));
            }
            // Typed as declared: nested fields without their field ids.
            let batch = RecordBatch::try_new_with_options(
                Arc::new(Schema::new(
                    columns
                        .iter()
                        .zip(schema.fields())
                        .map(|(c, f)| f.as_ref().clone().with_data_type(c.data_type().clone()))
                        .collect::<Vec<_>>(),
                )),
                columns,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(Error::arrow("ingestion-order scan"))
            .and_then(|b| as_declared(b, &schema))
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
            // Planned by now: the files' stream plans before its first batch,
            // and the streamed rows come after it.
            match planned.get().and_then(|p| p.exact.as_ref()) {
                Some(exact) => {
                    let read = batch.num_rows();
                    let kept = keep_passing(batch, exact)?;
                    dropped.add(read - kept.num_rows());
                    Ok(kept)
                }
                None => Ok(batch),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            timed(stream, baseline),
        )))
    }
}

/// `stream` with its rows counted and the time spent in each poll (reading
/// and decoding included) recorded in `baseline`.
fn timed(
    stream: impl futures::Stream<Item = DFResult<RecordBatch>> + Send + 'static,
    baseline: BaselineMetrics,
) -> impl futures::Stream<Item = DFResult<RecordBatch>> + Send + 'static {
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        let timer = baseline.elapsed_compute().timer();
        let poll = stream.as_mut().poll_next(cx);
        timer.done();
        baseline.record_poll(poll)
    })
}

/// The conjunction, at their current values, of the `filters` that contain
/// a dynamic filter (only the scan can apply those; a `WHERE`'s filter stays
/// above the scan too).
fn unapplied_filter(filters: &[Arc<dyn PhysicalExpr>]) -> Option<Arc<dyn PhysicalExpr>> {
    let dynamic: Vec<Arc<dyn PhysicalExpr>> = filters
        .iter()
        .filter(|f| {
            f.exists(|e| Ok(e.as_any().is::<DynamicFilterPhysicalExpr>()))
                .unwrap_or(false)
        })
        .filter_map(|f| snapshot_physical_expr(Arc::clone(f)).ok())
        .collect();
    (!dynamic.is_empty()).then(|| conjunction(dynamic))
}

/// `exact` (over the scan's `output`) as a test of the rows of its own
/// columns; None when it reads the ingestion order, which no file holds.
fn row_test(exact: &Arc<dyn PhysicalExpr>, output: &Schema) -> Option<RowTest> {
    let mut columns: Vec<String> = collect_columns(exact)
        .into_iter()
        .map(|c| c.name().to_string())
        .collect();
    columns.sort();
    columns.dedup();
    if columns.iter().any(|c| c == INGEST_ORDER_COLUMN) {
        return None;
    }
    let fields: Vec<_> = columns
        .iter()
        .map(|c| output.field_with_name(c).ok().cloned())
        .collect::<Option<_>>()?;
    let schema = Schema::new(fields);
    let expr = reassign_expr_columns(Arc::clone(exact), &schema).ok()?;
    let test = move |batch: &RecordBatch| {
        let value = expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
        value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| {
                arrow::error::ArrowError::ComputeError("a join's filter is not boolean".into())
            })
    };
    Some(RowTest {
        columns,
        test: Arc::new(test),
    })
}

/// The rows of `batch`, a batch of the scan's output, that pass `exact`.
fn keep_passing(batch: RecordBatch, exact: &Arc<dyn PhysicalExpr>) -> DFResult<RecordBatch> {
    let mask = exact.evaluate(&batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| DataFusionError::Internal("a join's filter is not boolean".into()))?;
    Ok(filter_record_batch(&batch, mask)?)
}

/// The name of the first column of the schema read with.
fn first_column(schema: &iceberg::spec::Schema) -> Option<String> {
    schema.as_struct().fields().first().map(|f| f.name.clone())
}
