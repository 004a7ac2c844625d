//! `AsOfJoinExec`: the physical ASOF JOIN.
//!
//! Semantics: every left row appears exactly once, in its input order within
//! its partition. Its right columns come from the right row with equal keys
//! whose match value is nearest to the left one while satisfying the match
//! operator, within the maximum age if one is given; NULL where there is none.
//! NULL keys and NULL match values never match. Among right rows tied on the
//! nearest value, a feature group's most recently ingested one wins, and
//! otherwise the one that sorts last by the right columns the query reads
//! (only those are held: see `output`).
//!
//! Distribution: both inputs are hash-partitioned on the keys (one partition
//! each when there are no keys), so partition `p` of the left only meets
//! partition `p` of the right.
//!
//! Per partition, the left side is read first, up to 256 MiB within the
//! memory limit, then one of two strategies (`pitlake.asof_join_strategy`):
//!
//! ```text
//!                      ┌─ all of it, and the right not known to be smaller ─► sweep: hold the left, stream the
//!   read left ─────────┤                                                       right past it (LeftSweep), emit the left
//!   (up to 256 MiB)    └─ more, or the right is smaller ─► index: collect and index the right
//!                                                          (RightIndex), stream the left through it
//! ```
//!
//! - sweep: memory O(left rows), the right side is neither kept nor sorted;
//!   a hash lookup and a binary search in the left per right row. A left side
//!   with no matchable row does not read the right at all.
//! - index: memory is the right partition plus 12 bytes per right row; a sort
//!   per key group (linear when already in order), a hash lookup and a binary
//!   search in the right per left row. Too large → ResourcesExhausted.
//!
//! Before either strategy reads the right side, the partitions' held left
//! sides set a filter pushed into the right input (`right_filter`): the
//! labels' keys and reach, so a scan skips row groups no label can match.
//!
//! Example, backward (`l.ts >= r.ts`) on key `k`:
//!
//! ```text
//! right: (a, 1, x) (a, 5, y) (b, 2, z)      left: (a, 4) → x   (a, 5) → y   (b, 1) → NULL
//! ```

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::projection::{ProjectionExpr, ProjectionMapping};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, ChildPushdownResult, FilterDescription, FilterPushdownPhase,
    FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::projection::{
    EmbeddedProjection, ProjectionExec, try_embed_projection,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::index::RightIndex;
use super::output::Output;
use super::right_filter::{LeftSpan, RightFilter};
use super::sweep::LeftSweep;
use super::values::ordered_i64;
use crate::options::{AsOfJoinStrategy, PitlakeOptions};
use crate::planning::MatchOp;

/// The physical ASOF JOIN of two inputs.
#[derive(Debug)]
pub struct AsOfJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    /// Key expressions, evaluated on the left and the right input.
    left_keys: Vec<PhysicalExprRef>,
    right_keys: Vec<PhysicalExprRef>,
    left_match: PhysicalExprRef,
    op: MatchOp,
    right_match: PhysicalExprRef,
    /// Maximum-age bound evaluated on the left input, and whether it is strict.
    max_age: Option<(PhysicalExprRef, bool)>,
    /// Left then right columns: what the join computes.
    join_schema: SchemaRef,
    /// The columns of `join_schema` it emits (all when `None`), embedded
    /// from a projection above so that unread right columns are not held.
    projection: Option<Vec<usize>>,
    /// What it emits.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// The filter pushed into the right input (see `right_filter`), and the
    /// partitions' reports that set it, shared by this plan's partitions.
    right_filter: Option<Arc<DynamicFilterPhysicalExpr>>,
    reports: OnceLock<Arc<RightFilter>>,
}

impl AsOfJoinExec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        left_keys: Vec<PhysicalExprRef>,
        right_keys: Vec<PhysicalExprRef>,
        left_match: PhysicalExprRef,
        op: MatchOp,
        right_match: PhysicalExprRef,
        max_age: Option<(PhysicalExprRef, bool)>,
        join_schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(join_schema.clone()),
            left.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        AsOfJoinExec {
            left,
            right,
            left_keys,
            right_keys,
            left_match,
            op,
            right_match,
            max_age,
            schema: join_schema.clone(),
            join_schema,
            projection: None,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            right_filter: None,
            reports: OnceLock::new(),
        }
    }

    /// The same join over new inputs, with `filter` pushed into the right
    /// one, and no state of this one's executions.
    fn rebuilt(
        &self,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        filter: Option<Arc<DynamicFilterPhysicalExpr>>,
    ) -> DFResult<Self> {
        self.unprojected(left, right, filter)
            .projected(self.projection.clone())
    }

    /// Like [`Self::rebuilt`], emitting every column of the join.
    fn unprojected(
        &self,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        filter: Option<Arc<DynamicFilterPhysicalExpr>>,
    ) -> Self {
        let mut join = AsOfJoinExec::new(
            left,
            right,
            self.left_keys.clone(),
            self.right_keys.clone(),
            self.left_match.clone(),
            self.op,
            self.right_match.clone(),
            self.max_age.clone(),
            self.join_schema.clone(),
        );
        join.right_filter = filter;
        join
    }

    /// This join emitting only `projection` (indices into its join schema).
    fn projected(mut self, projection: Option<Vec<usize>>) -> DFResult<Self> {
        let Some(columns) = &projection else {
            return Ok(self);
        };
        let mapping = ProjectionMapping::from_indices(columns, &self.join_schema)?;
        let schema = Arc::new(self.join_schema.project(columns)?);
        let joined = EquivalenceProperties::new(self.join_schema.clone());
        let partitioning = self.left.output_partitioning().project(&mapping, &joined);
        self.properties = Arc::new(PlanProperties::new(
            joined.project(&mapping, schema.clone()),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        self.schema = schema;
        self.projection = projection;
        Ok(self)
    }

    /// This join emitting `projection`, its left input narrowed to the
    /// columns the join reads or emits. In a chain of joins each one then
    /// holds only what the joins above it read, not every earlier
    /// feature group's key and time.
    fn narrowed(&self, projection: Vec<usize>) -> DFResult<Self> {
        let left_schema = self.left.schema();
        let nl = left_schema.fields().len();
        let mut needed: BTreeSet<usize> = projection.iter().copied().filter(|i| *i < nl).collect();
        let reads = self
            .left_keys
            .iter()
            .chain([&self.left_match])
            .chain(self.max_age.as_ref().map(|(bound, _)| bound));
        for expr in reads {
            needed.extend(collect_columns(expr).iter().map(Column::index));
        }
        if needed.len() == nl {
            let filter = self.right_filter.clone();
            return self
                .unprojected(self.left.clone(), self.right.clone(), filter)
                .projected(Some(projection));
        }
        let needed: Vec<usize> = needed.into_iter().collect();
        let at = |i: usize| needed.partition_point(|n| *n < i);
        let exprs = needed
            .iter()
            .map(|&i| {
                let name = left_schema.field(i).name();
                ProjectionExpr::new(
                    Arc::new(Column::new(name, i)) as PhysicalExprRef,
                    name.clone(),
                )
            })
            .collect::<Vec<_>>();
        let left: Arc<dyn ExecutionPlan> =
            Arc::new(ProjectionExec::try_new(exprs, self.left.clone())?);
        let renumber = |expr: &PhysicalExprRef| -> DFResult<PhysicalExprRef> {
            Ok(Arc::clone(expr)
                .transform(|e| {
                    Ok(match e.as_any().downcast_ref::<Column>() {
                        Some(c) => Transformed::yes(
                            Arc::new(Column::new(c.name(), at(c.index()))) as PhysicalExprRef
                        ),
                        None => Transformed::no(e),
                    })
                })?
                .data)
        };
        let fields: Vec<_> = left
            .schema()
            .fields()
            .iter()
            .chain(self.join_schema.fields().iter().skip(nl))
            .cloned()
            .collect();
        let join_schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.join_schema.metadata().clone(),
        ));
        let projection = projection
            .iter()
            .map(|&i| if i < nl { at(i) } else { i - nl + needed.len() })
            .collect();
        let mut join = self.unprojected(left, self.right.clone(), self.right_filter.clone());
        join.left_keys = self
            .left_keys
            .iter()
            .map(renumber)
            .collect::<DFResult<_>>()?;
        join.left_match = renumber(&self.left_match)?;
        if let Some((bound, _)) = &mut join.max_age {
            *bound = renumber(bound)?;
        }
        join.join_schema = join_schema;
        // Derives the schema and properties from the new join schema.
        join.projected(Some(projection))
    }

    /// The partitions' shared reports, when a scan below uses the filter.
    fn right_filter_reports(&self) -> Option<Arc<RightFilter>> {
        let filter = self.right_filter.as_ref().filter(|f| f.is_used())?;
        let reports = self.reports.get_or_init(|| {
            Arc::new(RightFilter::new(
                filter.clone(),
                self.right_keys.clone(),
                self.right_match.clone(),
                self.op,
                self.max_age.as_ref().map(|(_, strict)| *strict),
                self.right.schema(),
                self.left.output_partitioning().partition_count(),
            ))
        });
        Some(reports.clone())
    }
}

impl EmbeddedProjection for AsOfJoinExec {
    /// `projection` indexes this join's output, which may be projected
    /// already.
    fn with_projection(&self, projection: Option<Vec<usize>>) -> DFResult<Self> {
        match (projection, &self.projection) {
            (None, _) => self.rebuilt(
                self.left.clone(),
                self.right.clone(),
                self.right_filter.clone(),
            ),
            (Some(columns), None) => self.narrowed(columns),
            (Some(columns), Some(mine)) => {
                self.narrowed(columns.iter().map(|&c| mine[c]).collect())
            }
        }
    }
}

impl DisplayAs for AsOfJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self
            .left_keys
            .iter()
            .zip(&self.right_keys)
            .map(|(l, r)| format!("({l}, {r})"))
            .collect();
        write!(
            f,
            "AsOfJoinExec: match=[{} {} {}], on=[{}]",
            self.left_match,
            self.op.symbol(),
            self.right_match,
            keys.join(", ")
        )?;
        if let Some((bound, strict)) = &self.max_age {
            let cmp = self.op.bound_symbol(*strict);
            write!(f, ", max_age=[right {cmp} {bound}]")?;
        }
        if let Some(columns) = &self.projection {
            let names: Vec<String> = columns
                .iter()
                .map(|&i| format!("{}@{i}", self.join_schema.field(i).name()))
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for AsOfJoinExec {
    fn name(&self) -> &str {
        "AsOfJoinExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.left_keys.is_empty() {
            vec![Distribution::SinglePartition, Distribution::SinglePartition]
        } else {
            vec![
                Distribution::HashPartitioned(self.left_keys.clone()),
                Distribution::HashPartitioned(self.right_keys.clone()),
            ]
        }
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("AsOfJoinExec has two children".into()))?;
        Ok(Arc::new(self.rebuilt(
            left,
            right,
            self.right_filter.clone(),
        )?))
    }

    /// Embeds the columns a projection above reads: only those are held
    /// and gathered for the matches.
    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        try_embed_projection(projection, self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let (lp, rp) = (
            self.left.output_partitioning().partition_count(),
            self.right.output_partitioning().partition_count(),
        );
        if lp != rp {
            return Err(DataFusionError::Internal(format!(
                "AsOfJoinExec: {lp} left partitions but {rp} right partitions"
            )));
        }
        let metrics = JoinMetrics::new(partition, &self.metrics);
        let strategy = context
            .session_config()
            .options()
            .extensions
            .get::<PitlakeOptions>()
            .map(|o| o.asof_join_strategy)
            .unwrap_or_default();
        // What the right side is known to hold, per partition, for `auto`.
        let right_rows = self
            .right
            .partition_statistics(None)?
            .num_rows
            .get_value()
            .map(|rows| rows / rp.max(1));
        let reservation = MemoryConsumer::new(format!("AsOfJoinExec[{partition}]"))
            .register(context.memory_pool());
        let right_filter = self.right_filter_reports().map(|f| f.report());
        let right = self.right.execute(partition, context.clone())?;
        let left = self.left.execute(partition, context)?;
        let build = BuildSide {
            keys: self.right_keys.clone(),
            matches: self.right_match.clone(),
        };
        let output = Output::new(
            self.schema.clone(),
            self.left.schema().fields().len(),
            self.right.schema().fields().len(),
            self.projection.as_deref(),
        )?;
        let probe = Arc::new(ProbeSide {
            keys: self.left_keys.clone(),
            matches: self.left_match.clone(),
            op: self.op,
            max_age: self.max_age.clone(),
            output,
        });
        // Read the left first, up to LEFT_BUFFER_BYTES (within the memory
        // limit). When that is all of it, the left input is finished and
        // dropped before the right side is read, so in a chain of joins each
        // join's state is freed before the next one's is built; and unless
        // the right side is known to be smaller, the right side streams past
        // the held left (`LeftSweep`) instead of being indexed.
        let stream = futures::stream::once(async move {
            let mut reservation = reservation;
            let (head, rest) = read_left(left, &mut reservation).await?;
            let head_rows: usize = head.iter().map(RecordBatch::num_rows).sum();
            let sweep = rest.is_none()
                && match strategy {
                    AsOfJoinStrategy::Index => false,
                    AsOfJoinStrategy::Sweep => true,
                    AsOfJoinStrategy::Auto => right_rows.is_none_or(|r| r >= head_rows),
                };
            // The held left side, evaluated once for the sweep and the filter.
            let held = match rest.is_none() && (sweep || right_filter.is_some()) {
                true => {
                    let _timer = metrics.build_time.timer();
                    Some(probe.evaluate_held(&head)?)
                }
                false => None,
            };
            if let Some(report) = right_filter {
                let span = match &held {
                    Some(held) => Some(held.span()?),
                    None => None,
                };
                report.send(span).await?;
            }
            if let (true, Some(held)) = (sweep, held) {
                metrics.swept_partitions.add(1);
                let out = build
                    .sweep(probe, head, held, right, reservation, metrics)
                    .await?;
                return Ok::<_, DataFusionError>(out);
            }
            let (index, reservation) = build
                .collect(right, probe.output.right_columns(), reservation, &metrics)
                .await?;
            let index = Arc::new(index);
            let rest = rest.unwrap_or_else(|| futures::stream::empty().boxed());
            Ok(futures::stream::iter(head.into_iter().map(Ok))
                .chain(rest)
                .map(move |batch| {
                    let _hold = &reservation;
                    let _timer = metrics.probe_time.timer();
                    let out = probe.join(&index, &batch?, &metrics)?;
                    metrics.baseline.record_output(out.num_rows());
                    Ok(out)
                })
                .boxed())
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    /// Pushes the right-side filter (see `right_filter`) once the plan's
    /// shape is final. Filters from above stay here: the right side is not
    /// preserved, and the logical optimizer has pushed the left's already.
    fn gather_filters_for_pushdown(
        &self,
        phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        config: &ConfigOptions,
    ) -> DFResult<FilterDescription> {
        let left = ChildFilterDescription::all_unsupported(&parent_filters);
        let mut right = ChildFilterDescription::all_unsupported(&parent_filters);
        if phase == FilterPushdownPhase::Post
            && config.optimizer.enable_join_dynamic_filter_pushdown
        {
            right = right.with_self_filter(Arc::new(RightFilter::expr(
                &self.right_keys,
                &self.right_match,
            )));
        }
        Ok(FilterDescription::new().with_child(left).with_child(right))
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DFResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let pushed = child_pushdown_result
            .self_filters
            .get(1)
            .and_then(|filters| filters.first())
            .map(|f| f.predicate.clone());
        let mut result = FilterPushdownPropagation::if_all(child_pushdown_result);
        let filter = pushed.and_then(|p| {
            let any: Arc<dyn Any + Send + Sync> = p;
            any.downcast::<DynamicFilterPhysicalExpr>().ok()
        });
        if let Some(filter) = filter {
            let node = self.rebuilt(self.left.clone(), self.right.clone(), Some(filter))?;
            result = result.with_updated_node(Arc::new(node) as Arc<dyn ExecutionPlan>);
        }
        Ok(result)
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> DFResult<Statistics> {
        Ok(Statistics::new_unknown(&self.schema))
    }
}

/// Per-partition metrics, shown by `EXPLAIN ANALYZE`.
#[derive(Debug, Clone)]
struct JoinMetrics {
    baseline: BaselineMetrics,
    /// Indexing the held side: the left for the sweep, the right for the index.
    build_time: Time,
    /// Streaming the other side through it.
    probe_time: Time,
    right_rows: Count,
    matched_rows: Count,
    /// Partitions joined by the sweep (the others by the index).
    swept_partitions: Count,
}

impl JoinMetrics {
    fn new(partition: usize, set: &ExecutionPlanMetricsSet) -> Self {
        JoinMetrics {
            baseline: BaselineMetrics::new(set, partition),
            build_time: MetricBuilder::new(set).subset_time("build_time", partition),
            probe_time: MetricBuilder::new(set).subset_time("probe_time", partition),
            right_rows: MetricBuilder::new(set).counter("right_rows", partition),
            matched_rows: MetricBuilder::new(set).counter("matched_rows", partition),
            swept_partitions: MetricBuilder::new(set).counter("swept_partitions", partition),
        }
    }
}

struct BuildSide {
    keys: Vec<PhysicalExprRef>,
    matches: PhysicalExprRef,
}

impl BuildSide {
    /// Holds the left side (`head`, all of it) and streams the right past it;
    /// then joins the held left batches, in their order.
    async fn sweep(
        self,
        probe: Arc<ProbeSide>,
        head: Vec<RecordBatch>,
        columns: HeldLeft,
        mut right: SendableRecordBatchStream,
        reservation: MemoryReservation,
        metrics: JoinMetrics,
    ) -> DFResult<BoxStream<'static, DFResult<RecordBatch>>> {
        let held = reservation.size();
        let mut sweep = {
            let _timer = metrics.build_time.timer();
            LeftSweep::new(
                probe.op,
                &columns.keys,
                &columns.matches,
                columns.bounds,
                right.schema(),
                probe.output.right_columns(),
            )?
        };
        let too_big = |e: DataFusionError| {
            e.context("ASOF JOIN: the left side of a partition and its matches do not fit in memory (raise the memory limit, or filter the left side)")
        };
        reservation
            .try_resize(held + sweep.size())
            .map_err(too_big)?;
        // A left side no row of which can match does not read the right. A
        // repartitioned input hands its channel to a partition on first poll
        // and buffers for it until then: poll once, so dropping the stream
        // closes the channel instead of leaving it to fill with rows nobody
        // reads (the whole right side of a partition without labels).
        if sweep.is_empty() {
            let _ = futures::FutureExt::now_or_never(right.next());
        }
        while !sweep.is_empty() {
            let Some(batch) = right.next().await else {
                break;
            };
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            let _timer = metrics.probe_time.timer();
            let keys = evaluate(&self.keys, &batch)?;
            let matches = self
                .matches
                .evaluate(&batch)?
                .into_array(batch.num_rows())?;
            sweep.push(&batch, &keys, &matches)?;
            if reservation.try_resize(held + sweep.size()).is_err() {
                // Short of memory: sweep the waiting rows early rather than
                // fail while a smaller chunk would do.
                sweep.shrink()?;
                reservation
                    .try_resize(held + sweep.size())
                    .map_err(too_big)?;
            }
        }
        drop(right);
        sweep.finish()?;
        reservation
            .try_resize(held + sweep.size())
            .map_err(too_big)?;
        let mut first = 0u32;
        let joined = head.into_iter().map(move |batch| {
            let _hold = &reservation;
            let n = batch.num_rows();
            let found = sweep.matches(first, n);
            first += n as u32;
            metrics
                .matched_rows
                .add(found.iter().filter(|f| f.is_some()).count());
            let out = probe.output.batch(&batch, &sweep.take(&found)?)?;
            metrics.baseline.record_output(n);
            Ok(out)
        });
        Ok(futures::stream::iter(joined).boxed())
    }

    /// Collects the right partition under the memory reservation and indexes it.
    async fn collect(
        self,
        mut input: SendableRecordBatchStream,
        columns: &[usize],
        reservation: MemoryReservation,
        metrics: &JoinMetrics,
    ) -> DFResult<(RightIndex, MemoryReservation)> {
        let schema = input.schema();
        // What the buffered left side holds already.
        let held = reservation.size();
        let mut batches = Vec::new();
        while let Some(batch) = input.next().await {
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            reservation
                .try_grow(batch.get_array_memory_size())
                .map_err(|e| e.context("ASOF JOIN: the right side of a partition does not fit in memory (raise the memory limit, or filter the right side)"))?;
            batches.push(batch);
        }
        let _timer = metrics.build_time.timer();
        let keys = batches
            .iter()
            .map(|b| evaluate(&self.keys, b))
            .collect::<DFResult<Vec<_>>>()?;
        let matches = evaluate_each(&self.matches, &batches)?;
        let index = RightIndex::build(&schema, batches, &keys, &matches, columns)?;
        reservation.try_resize(held + index.size()).map_err(|e| {
            e.context("ASOF JOIN: the right side of a partition does not fit in memory")
        })?;
        Ok((index, reservation))
    }
}

struct ProbeSide {
    keys: Vec<PhysicalExprRef>,
    matches: PhysicalExprRef,
    op: MatchOp,
    max_age: Option<(PhysicalExprRef, bool)>,
    output: Output,
}

/// The join's expressions over every held left batch.
struct HeldLeft {
    keys: Vec<Vec<ArrayRef>>,
    matches: Vec<ArrayRef>,
    /// Maximum-age bounds, and whether they are strict.
    bounds: Option<(Vec<ArrayRef>, bool)>,
}

impl HeldLeft {
    fn span(&self) -> DFResult<LeftSpan> {
        LeftSpan::of(
            &self.keys,
            &self.matches,
            self.bounds.as_ref().map(|(b, _)| b.as_slice()),
        )
    }
}

impl ProbeSide {
    fn evaluate_held(&self, head: &[RecordBatch]) -> DFResult<HeldLeft> {
        Ok(HeldLeft {
            keys: head
                .iter()
                .map(|b| evaluate(&self.keys, b))
                .collect::<DFResult<_>>()?,
            matches: evaluate_each(&self.matches, head)?,
            bounds: match &self.max_age {
                Some((expr, strict)) => Some((evaluate_each(expr, head)?, *strict)),
                None => None,
            },
        })
    }

    /// Joins one left batch against the partition's right index.
    fn join(
        &self,
        index: &RightIndex,
        batch: &RecordBatch,
        metrics: &JoinMetrics,
    ) -> DFResult<RecordBatch> {
        let n = batch.num_rows();
        let keys = evaluate(&self.keys, batch)?;
        let groups = index.groups_of(&keys, n)?;
        let values = ordered_i64(&self.matches.evaluate(batch)?.into_array(n)?)?;
        let bounds = match &self.max_age {
            Some((expr, strict)) => {
                Some((ordered_i64(&expr.evaluate(batch)?.into_array(n)?)?, *strict))
            }
            None => None,
        };
        let mut matched = 0usize;
        let found: Vec<Option<u32>> = (0..n)
            .map(|i| {
                let (value, group) = (values.get(i)?, groups[i]?);
                let bound = match &bounds {
                    Some((b, strict)) => Some((b.get(i)?, *strict)),
                    None => None,
                };
                let found = index.probe(group, value, self.op, bound);
                matched += usize::from(found.is_some());
                found
            })
            .collect();
        metrics.matched_rows.add(matched);
        self.output.batch(batch, &index.take(&found)?)
    }
}

/// Left bytes read before the right side is read (see `execute`).
const LEFT_BUFFER_BYTES: usize = 256 << 20;

/// Reads the left input until LEFT_BUFFER_BYTES or the memory limit; the
/// rest of it, if any, is returned unread.
async fn read_left(
    mut left: SendableRecordBatchStream,
    reservation: &mut MemoryReservation,
) -> DFResult<(
    Vec<RecordBatch>,
    Option<BoxStream<'static, DFResult<RecordBatch>>>,
)> {
    let mut head = Vec::new();
    let mut bytes = 0usize;
    loop {
        if bytes > LEFT_BUFFER_BYTES {
            return Ok((head, Some(left.boxed())));
        }
        let Some(batch) = left.next().await else {
            return Ok((head, None));
        };
        let batch = batch?;
        let size = batch.get_array_memory_size();
        bytes += size;
        head.push(batch);
        if reservation.try_grow(size).is_err() {
            return Ok((head, Some(left.boxed())));
        }
    }
}

/// One expression over each of `batches`.
fn evaluate_each(expr: &PhysicalExprRef, batches: &[RecordBatch]) -> DFResult<Vec<ArrayRef>> {
    batches
        .iter()
        .map(|b| expr.evaluate(b)?.into_array(b.num_rows()))
        .collect()
}

fn evaluate(exprs: &[PhysicalExprRef], batch: &RecordBatch) -> DFResult<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}
