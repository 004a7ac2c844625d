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
//!
//!   neither fits (the sweep's matches or the right side) ─► passes: spill the right side (and the left
//!                                                            read so far) to disk, sweep the left in
//!                                                            chunks against it, one read of the file each
//! ```
//!
//! - sweep: memory O(left rows), the right side is neither kept nor sorted;
//!   a hash lookup and a binary search in the left per right row. A left side
//!   with no matchable row does not read the right at all.
//!   Right rows gone past cannot be read again, so where the join can spill a
//!   sweep starts only when its matches (one right row per left row and arm,
//!   as wide as the first right batch's) fit in the pool's free memory shared
//!   among the partitions; otherwise the partition is joined in passes.
//! - index: memory is the right partition plus 12 bytes per right row; a sort
//!   per key group (linear when already in order), a hash lookup and a binary
//!   search in the right per left row. Too large → passes.
//! - passes (`in_passes`): memory one left chunk and its sweep (a chunk
//!   that outgrows the pool is retried in halves); time the right side read
//!   from disk once per chunk. Without a disk manager → ResourcesExhausted.
//!
//! Arms: joins of one left input against the same right relation on the
//! same keys (a chain of lag features) are one join with an arm per match
//! condition (see [`AsOfJoinExec::absorb`]). The right side is read and
//! repartitioned once. The sweep pushes each right batch to a `LeftSweep`
//! per distinct right match value and right columns (usually one for all
//! arms: one key lookup, chunk and sort by group per right row, then each
//! arm's own bucket search); the index builds one `RightIndex` per arm.
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
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
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
use super::right_filter::{FilterArm, LeftSpan, RightFilter};
use super::spill::Spilled;
use super::sweep::{LeftArm, LeftSweep};
use super::values::ordered_i64;
use crate::options::{AsOfJoinStrategy, PitlakeOptions};
use crate::shared::MatchOp;

/// The physical ASOF JOIN of two inputs, with one or more arms.
///
/// An arm is one match condition (and maximum age) of the left input
/// against the right. Joins of one left input against the same right
/// relation on the same keys (lag features: the value at the label's time
/// and a week before) are planned as one join with an arm each: the right
/// side is read and repartitioned once, and each right batch is pushed to
/// every arm.
#[derive(Debug)]
pub struct AsOfJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    /// Key expressions, evaluated on the left and the right input.
    left_keys: Vec<PhysicalExprRef>,
    right_keys: Vec<PhysicalExprRef>,
    arms: Vec<Arm>,
    /// Left columns then each arm's right columns: what the join computes.
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

/// One match of the left input against the right (see [`AsOfJoinExec`]).
#[derive(Debug, Clone)]
struct Arm {
    left_match: PhysicalExprRef,
    op: MatchOp,
    right_match: PhysicalExprRef,
    /// Maximum-age bound evaluated on the left input, and whether it is strict.
    max_age: Option<(PhysicalExprRef, bool)>,
}

impl Arm {
    /// The expressions it evaluates on the left input.
    fn left_exprs(&self) -> impl Iterator<Item = &PhysicalExprRef> {
        [&self.left_match]
            .into_iter()
            .chain(self.max_age.as_ref().map(|(bound, _)| bound))
    }

    /// The same arm with `f` applied to its left expressions.
    fn map_left(
        &self,
        mut f: impl FnMut(&PhysicalExprRef) -> DFResult<PhysicalExprRef>,
    ) -> DFResult<Self> {
        Ok(Arm {
            left_match: f(&self.left_match)?,
            op: self.op,
            right_match: self.right_match.clone(),
            max_age: match &self.max_age {
                Some((bound, strict)) => Some((f(bound)?, *strict)),
                None => None,
            },
        })
    }

    fn fmt_as(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "match=[{} {} {}]",
            self.left_match,
            self.op.symbol(),
            self.right_match
        )
    }

    fn fmt_max_age(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some((bound, strict)) = &self.max_age {
            let cmp = self.op.bound_symbol(*strict);
            write!(f, ", max_age=[right {cmp} {bound}]")?;
        }
        Ok(())
    }
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
        let arm = Arm {
            left_match,
            op,
            right_match,
            max_age,
        };
        Self::assemble(left, right, left_keys, right_keys, vec![arm], join_schema)
    }

    /// The join of its parts, emitting every column, with no right filter.
    fn assemble(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        left_keys: Vec<PhysicalExprRef>,
        right_keys: Vec<PhysicalExprRef>,
        arms: Vec<Arm>,
        join_schema: SchemaRef,
    ) -> Self {
        // Left rows come out in their input order within a partition, and
        // the left columns lead the join schema: the left's orderings hold.
        let mut equivalences = EquivalenceProperties::new(join_schema.clone());
        equivalences.add_orderings(left.equivalence_properties().oeq_class().clone());
        let properties = Arc::new(PlanProperties::new(
            equivalences,
            left.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        AsOfJoinExec {
            left,
            right,
            left_keys,
            right_keys,
            arms,
            schema: join_schema.clone(),
            join_schema,
            projection: None,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            right_filter: None,
            reports: OnceLock::new(),
        }
    }

    /// How many matches of the left input it computes.
    pub fn arms(&self) -> usize {
        self.arms.len()
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
        let mut join = AsOfJoinExec::assemble(
            left,
            right,
            self.left_keys.clone(),
            self.right_keys.clone(),
            self.arms.clone(),
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
        let joined = self.properties.equivalence_properties().clone();
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
            .chain(self.arms.iter().flat_map(Arm::left_exprs));
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
        let join_schema =
            self.join_schema_of(left.schema().fields(), &self.join_schema.fields()[nl..]);
        let projection = projection
            .iter()
            .map(|&i| if i < nl { at(i) } else { i - nl + needed.len() })
            .collect();
        let mut join = AsOfJoinExec::assemble(
            left,
            self.right.clone(),
            self.left_keys
                .iter()
                .map(renumber)
                .collect::<DFResult<_>>()?,
            self.right_keys.clone(),
            self.arms
                .iter()
                .map(|arm| arm.map_left(renumber))
                .collect::<DFResult<_>>()?,
            join_schema,
        );
        join.right_filter = self.right_filter.clone();
        join.projected(Some(projection))
    }

    /// This join with `outer`'s match as one more arm, when `outer` joins
    /// this join's output (through `between`, a projection of its columns,
    /// if any) against the same right relation, on the same keys, with
    /// left expressions over this join's left input only. The caller
    /// checks that both right inputs read the same relation; `None` when
    /// the rest does not hold.
    pub fn absorb(
        &self,
        between: Option<&ProjectionExec>,
        outer: &AsOfJoinExec,
    ) -> DFResult<Option<AsOfJoinExec>> {
        let [arm] = outer.arms.as_slice() else {
            return Ok(None);
        };
        if outer.projection.is_some()
            || self.right_filter.is_some()
            || outer.right.schema().fields() != self.right.schema().fields()
            || outer.right_keys != self.right_keys
        {
            return Ok(None);
        }
        // Where each column of the outer join's left input comes from in
        // this join's columns.
        let own = |c: usize| {
            self.projection
                .as_ref()
                .map_or(Some(c), |p| p.get(c).copied())
        };
        let sources: Option<Vec<usize>> = match between {
            None => (0..self.schema.fields().len()).map(own).collect(),
            Some(projection) => projection
                .expr()
                .iter()
                .map(|e| {
                    let column = e.expr.as_any().downcast_ref::<Column>()?;
                    (column.name() == e.alias).then_some(())?;
                    own(column.index())
                })
                .collect(),
        };
        let Some(sources) = sources else {
            return Ok(None);
        };
        let left_schema = self.left.schema();
        let nl = left_schema.fields().len();
        // An expression of the outer join's left input over this join's
        // left input; None when it reads a right column of this join.
        let onto_left = |expr: &PhysicalExprRef| -> DFResult<Option<PhysicalExprRef>> {
            let columns = collect_columns(expr);
            if columns
                .iter()
                .any(|c| sources.get(c.index()).is_none_or(|s| *s >= nl))
            {
                return Ok(None);
            }
            let mapped = Arc::clone(expr).transform(|e| {
                Ok(match e.as_any().downcast_ref::<Column>() {
                    Some(c) => {
                        let at = sources[c.index()];
                        let name = left_schema.field(at).name();
                        Transformed::yes(Arc::new(Column::new(name, at)) as PhysicalExprRef)
                    }
                    None => Transformed::no(e),
                })
            })?;
            Ok(Some(mapped.data))
        };
        let mut left_keys = Vec::with_capacity(outer.left_keys.len());
        for key in &outer.left_keys {
            match onto_left(key)? {
                Some(key) => left_keys.push(key),
                None => return Ok(None),
            }
        }
        if left_keys != self.left_keys {
            return Ok(None);
        }
        let mut reads_right = false;
        let arm = arm.map_left(|e| {
            Ok(onto_left(e)?.unwrap_or_else(|| {
                reads_right = true;
                Arc::clone(e)
            }))
        })?;
        if reads_right {
            return Ok(None);
        }
        // This join's columns, then the outer join's right ones.
        let outer_left = outer.left.schema().fields().len();
        let width = self.join_schema.fields().len();
        let added = outer.join_schema.fields().len() - outer_left;
        let join_schema = self.join_schema_of(
            self.join_schema.fields(),
            &outer.join_schema.fields()[outer_left..],
        );
        let projection: Vec<usize> = sources
            .iter()
            .copied()
            .chain(width..width + added)
            .collect();
        let mut arms = self.arms.clone();
        arms.push(arm);
        let join = AsOfJoinExec::assemble(
            self.left.clone(),
            self.right.clone(),
            self.left_keys.clone(),
            self.right_keys.clone(),
            arms,
            join_schema,
        );
        let everything = projection.iter().copied().eq(0..width + added);
        Ok(Some(join.projected((!everything).then_some(projection))?))
    }

    /// A join schema of `left` columns then `right` ones, with this one's
    /// metadata.
    fn join_schema_of(&self, left: &[FieldRef], right: &[FieldRef]) -> SchemaRef {
        let fields: Vec<FieldRef> = left.iter().chain(right).cloned().collect();
        Arc::new(Schema::new_with_metadata(
            fields,
            self.join_schema.metadata().clone(),
        ))
    }

    /// The partitions' shared reports, when a scan below uses the filter.
    fn right_filter_reports(&self) -> Option<Arc<RightFilter>> {
        let filter = self.right_filter.as_ref().filter(|f| f.is_used())?;
        let reports = self.reports.get_or_init(|| {
            Arc::new(RightFilter::new(
                filter.clone(),
                self.right_keys.clone(),
                self.arms
                    .iter()
                    .map(|arm| FilterArm {
                        matches: arm.right_match.clone(),
                        op: arm.op,
                        max_age_strict: arm.max_age.as_ref().map(|(_, strict)| *strict),
                    })
                    .collect(),
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
        let on = format!("on=[{}]", keys.join(", "));
        f.write_str("AsOfJoinExec: ")?;
        if let [arm] = self.arms.as_slice() {
            arm.fmt_as(f)?;
            write!(f, ", {on}")?;
            arm.fmt_max_age(f)?;
        } else {
            write!(f, "{on}, arms=[")?;
            for (i, arm) in self.arms.iter().enumerate() {
                f.write_str(if i == 0 { "" } else { "; " })?;
                arm.fmt_as(f)?;
                arm.fmt_max_age(f)?;
            }
            f.write_str("]")?;
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
        let pool = context.memory_pool().clone();
        let disk = context.runtime_env().disk_manager.clone();
        let reservation = MemoryConsumer::new(format!("AsOfJoinExec[{partition}]"))
            .register(context.memory_pool());
        let right_filter = self.right_filter_reports().map(|f| f.report());
        let right = self.right.execute(partition, context.clone())?;
        let left = self.left.execute(partition, context)?;
        let build = BuildSide {
            keys: self.right_keys.clone(),
            matches: self.arms.iter().map(|a| a.right_match.clone()).collect(),
            pool: pool.clone(),
            sharers: lp,
            can_spill: disk.tmp_files_enabled(),
        };
        let output = Output::new(
            self.schema.clone(),
            self.left.schema().fields().len(),
            self.right.schema().fields().len(),
            self.arms.len(),
            self.projection.as_deref(),
        )?;
        let probe = Arc::new(ProbeSide {
            keys: self.left_keys.clone(),
            arms: self.arms.clone(),
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
                let spans = match &held {
                    Some(held) => Some(held.spans()?),
                    None => None,
                };
                report.send(spans).await?;
            }
            if let (true, Some(held)) = (sweep, held) {
                let swept = build
                    .clone()
                    .sweep(
                        probe.clone(),
                        head,
                        held,
                        right,
                        reservation,
                        metrics.clone(),
                    )
                    .await?;
                let (head, right, reservation) = match swept {
                    Swept::Joined(out) => {
                        metrics.swept_partitions.add(1);
                        return Ok::<_, DataFusionError>(out);
                    }
                    Swept::TooBig {
                        head,
                        right,
                        reservation,
                    } => (head, right, reservation),
                };
                let spill = Spill {
                    held: Vec::new(),
                    right,
                    disk,
                };
                return in_passes(build, probe, head, None, spill, reservation, pool, metrics)
                    .await;
            }
            let (indexes, reservation) = match build
                .clone()
                .collect(right, &probe.output, reservation, &metrics)
                .await?
            {
                Collected::Indexed(indexes, reservation) => (indexes, reservation),
                Collected::TooBig {
                    held,
                    rest: right,
                    reservation,
                } => {
                    let spill = Spill { held, right, disk };
                    return in_passes(build, probe, head, rest, spill, reservation, pool, metrics)
                        .await;
                }
            };
            let rest = rest.unwrap_or_else(|| futures::stream::empty().boxed());
            Ok(futures::stream::iter(head.into_iter().map(Ok))
                .chain(rest)
                .map(move |batch| {
                    let _hold = &reservation;
                    let _timer = metrics.probe_time.timer();
                    let out = probe.join(&indexes, &batch?, &metrics)?;
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
            let matches: Vec<PhysicalExprRef> =
                self.arms.iter().map(|a| a.right_match.clone()).collect();
            right = right.with_self_filter(Arc::new(RightFilter::expr(&self.right_keys, &matches)));
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
    /// Partitions joined by the sweep (the others by the index, or in passes).
    swept_partitions: Count,
    /// The right side written to disk when neither side fits (see `in_passes`),
    /// and the passes over it.
    spilled_bytes: Count,
    spilled_rows: Count,
    right_passes: Count,
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
            spilled_bytes: MetricBuilder::new(set).spilled_bytes(partition),
            spilled_rows: MetricBuilder::new(set).spilled_rows(partition),
            right_passes: MetricBuilder::new(set).counter("right_passes", partition),
        }
    }
}

#[derive(Clone)]
struct BuildSide {
    keys: Vec<PhysicalExprRef>,
    /// Per arm, its right match expression.
    matches: Vec<PhysicalExprRef>,
    pool: Arc<dyn MemoryPool>,
    /// How many sweeps may grow in the pool at once: where the join can
    /// spill, a sweep starts only when its matches' bound fits in this share
    /// of the free memory (see `sweep`).
    sharers: usize,
    can_spill: bool,
}

impl BuildSide {
    /// Holds the left side (`head`, all of it) and streams the right past it,
    /// each right batch pushed to every arm's sweep; then joins the held
    /// left batches, in their order. When the sweep's state does not fit
    /// beside the held left, or its matches would not (see `fits`), the
    /// inputs are handed back untouched.
    async fn sweep(
        self,
        probe: Arc<ProbeSide>,
        head: Vec<RecordBatch>,
        held_left: HeldLeft,
        mut right: SendableRecordBatchStream,
        reservation: MemoryReservation,
        metrics: JoinMetrics,
    ) -> DFResult<Swept> {
        let held = reservation.size();
        // Arms with the same right match value and right columns share one
        // sweep (see `LeftSweep`): `place[a]` is arm a's sweep and its
        // place among that sweep's arms.
        let mut members: Vec<(PhysicalExprRef, &[usize], Vec<usize>)> = Vec::new();
        let mut place = Vec::with_capacity(probe.arms.len());
        for (a, arm) in probe.arms.iter().enumerate() {
            let columns = probe.output.right_columns(a);
            let found = members
                .iter()
                .position(|(m, c, _)| **m == *arm.right_match && *c == columns);
            let s = found.unwrap_or_else(|| {
                members.push((arm.right_match.clone(), columns, Vec::new()));
                members.len() - 1
            });
            place.push((s, members[s].2.len()));
            members[s].2.push(a);
        }
        let (mut sweeps, matches) = {
            let _timer = metrics.build_time.timer();
            let HeldLeft { keys, arms } = held_left;
            let mut arms: Vec<Option<HeldArm>> = arms.into_iter().map(Some).collect();
            let mut sweeps = Vec::with_capacity(members.len());
            let mut matches = Vec::with_capacity(members.len());
            for (right_match, columns, indices) in &members {
                let left_arms = indices
                    .iter()
                    .map(|&a| {
                        let held = arms[a]
                            .take()
                            .unwrap_or_else(|| unreachable!("arm {a} held once"));
                        LeftArm {
                            op: probe.arms[a].op,
                            matches: held.matches,
                            bounds: held.bounds,
                        }
                    })
                    .collect();
                sweeps.push(LeftSweep::new(&keys, left_arms, right.schema(), columns)?);
                matches.push(right_match.clone());
            }
            (sweeps, matches)
        };
        let size = |sweeps: &[LeftSweep]| held + sweeps.iter().map(LeftSweep::size).sum::<usize>();
        let too_big = |e: DataFusionError| {
            e.context("ASOF JOIN: the left side of a partition and its matches do not fit in memory (raise the memory limit, or filter the left side)")
        };
        let mut fits = reservation.try_resize(size(&sweeps)).is_ok();
        let done = |sweeps: &[LeftSweep]| sweeps.iter().all(LeftSweep::is_empty);
        // A left side no row of which can match does not read the right. A
        // repartitioned input hands its channel to a partition on first poll
        // and buffers for it until then: poll once, so dropping the stream
        // closes the channel instead of leaving it to fill with rows nobody
        // reads (the whole right side of a partition without labels).
        if fits && done(&sweeps) {
            let _ = futures::FutureExt::now_or_never(right.next());
        } else if fits && let Some(first) = right.next().await {
            // Rows gone past the sweep cannot be read again: a sweep whose
            // matches could outgrow the pool, judged by the first batch's
            // width, hands back its inputs (to be joined in passes) before
            // it starts rather than fail part-way.
            let first = first?;
            let mut bound = size(&sweeps);
            for sweep in &sweeps {
                bound += sweep.matches_bound(&first)?;
            }
            fits = self.fits(bound, reservation.size());
            let schema = right.schema();
            let first = futures::stream::once(async { Ok(first) });
            right = Box::pin(RecordBatchStreamAdapter::new(schema, first.chain(right)));
        }
        if !fits {
            drop(sweeps);
            reservation.resize(held);
            return Ok(Swept::TooBig {
                head,
                right,
                reservation,
            });
        }
        while !done(&sweeps) {
            let Some(batch) = right.next().await else {
                break;
            };
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            let _timer = metrics.probe_time.timer();
            let keys = evaluate(&self.keys, &batch)?;
            for (sweep, matches) in sweeps.iter_mut().zip(&matches) {
                let matches = matches.evaluate(&batch)?.into_array(batch.num_rows())?;
                sweep.push(&batch, &keys, &matches)?;
            }
            if reservation.try_resize(size(&sweeps)).is_err() {
                // Short of memory: sweep the waiting rows early rather than
                // fail while a smaller chunk would do.
                for sweep in &mut sweeps {
                    sweep.shrink()?;
                }
                reservation.try_resize(size(&sweeps)).map_err(too_big)?;
            }
        }
        drop(right);
        for sweep in &mut sweeps {
            sweep.finish()?;
        }
        reservation.try_resize(size(&sweeps)).map_err(too_big)?;
        let mut first = 0u32;
        let joined = head.into_iter().map(move |batch| {
            let _hold = &reservation;
            let n = batch.num_rows();
            let mut right = Vec::with_capacity(place.len());
            for &(s, arm) in &place {
                let found = sweeps[s].matches(arm, first, n);
                metrics
                    .matched_rows
                    .add(found.iter().filter(|f| f.is_some()).count());
                right.push(sweeps[s].take(arm, &found)?);
            }
            first += n as u32;
            let out = probe.output.batch(&batch, &right)?;
            metrics.baseline.record_output(n);
            Ok(out)
        });
        Ok(Swept::Joined(futures::stream::iter(joined).boxed()))
    }

    /// Whether `bytes` fit in the pool beside what others hold (all but
    /// `own`), shared among `sharers`; always, where the join cannot spill
    /// (the sweep is its only chance).
    fn fits(&self, bytes: usize, own: usize) -> bool {
        if !self.can_spill {
            return true;
        }
        match self.pool.memory_limit() {
            MemoryLimit::Finite(limit) => {
                let others = self.pool.reserved().saturating_sub(own);
                bytes.saturating_mul(self.sharers) <= limit.saturating_sub(others)
            }
            _ => true,
        }
    }

    /// Collects the right partition under the memory reservation and
    /// indexes it, once per arm; or, when it does not fit, what was read of
    /// it and the rest.
    async fn collect(
        self,
        mut input: SendableRecordBatchStream,
        output: &Output,
        reservation: MemoryReservation,
        metrics: &JoinMetrics,
    ) -> DFResult<Collected> {
        let schema = input.schema();
        // What the buffered left side holds already.
        let held = reservation.size();
        let mut batches = Vec::new();
        while let Some(batch) = input.next().await {
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            let fits = reservation.try_grow(batch.get_array_memory_size()).is_ok();
            batches.push(batch);
            if !fits {
                reservation.resize(held);
                return Ok(Collected::TooBig {
                    held: batches,
                    rest: input,
                    reservation,
                });
            }
        }
        let _timer = metrics.build_time.timer();
        let keys = batches
            .iter()
            .map(|b| evaluate(&self.keys, b))
            .collect::<DFResult<Vec<_>>>()?;
        let mut indexes = Vec::with_capacity(self.matches.len());
        for (a, expr) in self.matches.iter().enumerate() {
            let matches = evaluate_each(expr, &batches)?;
            let columns = output.right_columns(a);
            indexes.push(RightIndex::build(
                &schema,
                batches.clone(),
                &keys,
                &matches,
                columns,
            )?);
        }
        let size = held + indexes.iter().map(RightIndex::size).sum::<usize>();
        if reservation.try_resize(size).is_err() {
            drop(indexes);
            reservation.resize(held);
            let rest = RecordBatchStreamAdapter::new(schema, futures::stream::empty());
            return Ok(Collected::TooBig {
                held: batches,
                rest: Box::pin(rest),
                reservation,
            });
        }
        Ok(Collected::Indexed(indexes, reservation))
    }
}

/// A partition joined by the sweep; or, when the sweep's state does not fit
/// beside the left side, its inputs.
enum Swept {
    Joined(BoxStream<'static, DFResult<RecordBatch>>),
    TooBig {
        head: Vec<RecordBatch>,
        right: SendableRecordBatchStream,
        reservation: MemoryReservation,
    },
}

/// The right side of a partition, indexed; or, when it does not fit in
/// memory, what was read of it (`held`, no longer reserved) and the rest.
/// Either way with the reservation of the left side read before it.
enum Collected {
    Indexed(Vec<RightIndex>, MemoryReservation),
    TooBig {
        held: Vec<RecordBatch>,
        rest: SendableRecordBatchStream,
        reservation: MemoryReservation,
    },
}

/// A right side to spill: the batches read and the rest of the input.
struct Spill {
    held: Vec<RecordBatch>,
    right: SendableRecordBatchStream,
    disk: Arc<DiskManager>,
}

/// Joins a partition neither of whose sides fits in memory: the right side
/// and the left rows read so far are written to disk, then the left is read
/// in chunks that fit and each chunk is swept against the spilled right side
/// (a pass per chunk), its rows emitted in their order. Memory: one chunk and
/// its matches; time: the right side read once per chunk.
#[allow(clippy::too_many_arguments)]
async fn in_passes(
    build: BuildSide,
    probe: Arc<ProbeSide>,
    head: Vec<RecordBatch>,
    rest: Option<BoxStream<'static, DFResult<RecordBatch>>>,
    spill: Spill,
    reservation: MemoryReservation,
    pool: Arc<dyn MemoryPool>,
    metrics: JoinMetrics,
) -> DFResult<BoxStream<'static, DFResult<RecordBatch>>> {
    let Spill { held, right, disk } = spill;
    // Chunks are sized to the free memory already (see `LeftChunks`).
    let build = BuildSide {
        sharers: 1,
        ..build
    };
    let (right_schema, left_schema) = (right.schema(), head.first().map(RecordBatch::schema));
    let timer = metrics.build_time.timer();
    // The left rows read so far go to disk first, so chunks have the memory.
    let left_spilled = match left_schema {
        Some(schema) => {
            let none = futures::stream::empty();
            Some(Spilled::write(&disk, "ASOF JOIN left side", head, none, schema, |_| {}).await?)
        }
        None => None,
    };
    reservation.free();
    let rows = metrics.right_rows.clone();
    let right = Spilled::write(
        &disk,
        "ASOF JOIN right side",
        held,
        right,
        right_schema,
        |b| rows.add(b.num_rows()),
    )
    .await?;
    timer.done();
    for spilled in left_spilled.iter().chain([&right]) {
        metrics.spilled_bytes.add(spilled.bytes);
        metrics.spilled_rows.add(spilled.rows);
    }
    let mut source = match &left_spilled {
        Some(spilled) => spilled.read()?.boxed(),
        None => futures::stream::empty().boxed(),
    };
    if let Some(rest) = rest {
        source = source.chain(rest).boxed();
    }
    let left = LeftChunks {
        retry: Default::default(),
        share: 8,
        source: Some(source),
        memory: reservation,
        pool,
        _spilled: left_spilled,
    };
    let right = Arc::new(right);
    // The right rows were counted as they were spilled, not once per pass.
    let metrics = JoinMetrics {
        right_rows: Count::new(),
        ..metrics
    };
    let passes = futures::stream::try_unfold(left, move |mut left| {
        let (build, probe, metrics) = (build.clone(), probe.clone(), metrics.clone());
        let right = right.clone();
        async move {
            let Some((chunk, reservation)) = left.next_chunk().await? else {
                return Ok::<_, DataFusionError>(None);
            };
            metrics.right_passes.add(1);
            let held = {
                let _timer = metrics.build_time.timer();
                probe.evaluate_held(&chunk)?
            };
            let swept = build
                .sweep(
                    probe,
                    chunk.clone(),
                    held,
                    right.read()?,
                    reservation,
                    metrics,
                )
                .await;
            match swept {
                Ok(Swept::Joined(out)) => {
                    left.share = (left.share / 2).max(8);
                    Ok(Some((out, left)))
                }
                // The sweep outgrew the memory (partitions share the pool):
                // the right side is on disk, so the chunk is retried in halves.
                Ok(Swept::TooBig { .. }) => {
                    left.retry_in_halves(chunk)?;
                    Ok(Some((futures::stream::empty().boxed(), left)))
                }
                Err(e) if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) => {
                    left.retry_in_halves(chunk).map_err(|_| e)?;
                    Ok(Some((futures::stream::empty().boxed(), left)))
                }
                Err(e) => Err(e),
            }
        }
    });
    Ok(passes.try_flatten().boxed())
}

/// How long a chunk waits for memory held by other partitions before its
/// first batch is halved: MEMORY_WAITS sleeps of MEMORY_WAIT, in all.
const MEMORY_WAITS: usize = 50;
const MEMORY_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The left side of a partition in chunks that fit in memory beside their
/// sweep (see [`in_passes`]).
struct LeftChunks {
    /// Batches of a chunk to retry, taken before the source's.
    retry: std::collections::VecDeque<RecordBatch>,
    /// Divides the free memory for a chunk's budget; doubles on each retry.
    share: usize,
    source: Option<BoxStream<'static, DFResult<RecordBatch>>>,
    /// An empty reservation, from which each chunk's is made.
    memory: MemoryReservation,
    pool: Arc<dyn MemoryPool>,
    /// The file the source reads first, kept until it is read.
    _spilled: Option<Spilled>,
}

impl LeftChunks {
    /// Left bytes per chunk: an eighth of the pool's free memory, at most
    /// LEFT_BUFFER_BYTES. The sweep holds up to about four times a chunk's
    /// batches beside them (per left row its position, bound, best row and
    /// retained right row), and partitions share the pool.
    fn budget(&self) -> usize {
        match self.pool.memory_limit() {
            MemoryLimit::Finite(limit) => {
                (limit.saturating_sub(self.pool.reserved()) / self.share).min(LEFT_BUFFER_BYTES)
            }
            _ => LEFT_BUFFER_BYTES,
        }
    }

    /// The next chunk (at least one batch) and the reservation holding it;
    /// `None` when the left side is done.
    async fn next_chunk(&mut self) -> DFResult<Option<(Vec<RecordBatch>, MemoryReservation)>> {
        let budget = self.budget();
        let memory = self.memory.new_empty();
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut waited = 0;
        while chunk.is_empty() || bytes < budget {
            let batch = match self.retry.pop_front() {
                Some(batch) => batch,
                None => {
                    let Some(source) = self.source.as_mut() else {
                        break;
                    };
                    let Some(batch) = source.next().await else {
                        self.source = None;
                        break;
                    };
                    batch?
                }
            };
            // Read back from a file, a batch's columns share one buffer:
            // counted once, not once per column.
            let size = get_record_batch_memory_size(&batch);
            if memory.try_grow(size).is_err() {
                // Other partitions hold the pool: a smaller chunk; or, for
                // the first batch, a wait for them to spill or finish (once
                // per chunk), then the batch in halves (down to one row that
                // does not fit).
                if chunk.is_empty() {
                    if waited < MEMORY_WAITS {
                        waited += 1;
                        self.retry.push_front(batch);
                        tokio::time::sleep(MEMORY_WAIT).await;
                        continue;
                    }
                    self.retry_in_halves(vec![batch])?;
                    continue;
                }
                self.retry.push_front(batch);
                break;
            }
            bytes += size;
            chunk.push(batch);
        }
        Ok((!chunk.is_empty()).then_some((chunk, memory)))
    }

    /// Puts a chunk whose sweep did not fit back as two halves, each its own
    /// chunk, and halves later budgets. A single row that does not fit is an
    /// error.
    fn retry_in_halves(&mut self, chunk: Vec<RecordBatch>) -> DFResult<()> {
        let rows: usize = chunk.iter().map(RecordBatch::num_rows).sum();
        if rows <= 1 {
            return Err(DataFusionError::ResourcesExhausted(
                "ASOF JOIN: neither side of a partition fits in memory, nor does the sweep of one left row beside the rest of the query (raise the memory limit)".into(),
            ));
        }
        self.share = self.share.saturating_mul(2);
        let schema = chunk[0].schema();
        let all = arrow::compute::concat_batches(&schema, &chunk)?;
        // Copies, so each half is counted for its own rows only.
        let half = |offset, len| arrow::compute::concat_batches(&schema, [&all.slice(offset, len)]);
        let first = half(0, rows / 2)?;
        let second = half(rows / 2, rows - rows / 2)?;
        self.retry.push_front(second);
        self.retry.push_front(first);
        Ok(())
    }
}

struct ProbeSide {
    keys: Vec<PhysicalExprRef>,
    arms: Vec<Arm>,
    output: Output,
}

/// The join's expressions over every held left batch.
struct HeldLeft {
    keys: Vec<Vec<ArrayRef>>,
    arms: Vec<HeldArm>,
}

/// One arm's expressions over every held left batch.
struct HeldArm {
    matches: Vec<ArrayRef>,
    /// Maximum-age bounds, and whether they are strict.
    bounds: Option<(Vec<ArrayRef>, bool)>,
}

impl HeldLeft {
    /// What each arm's left side spans.
    fn spans(&self) -> DFResult<Vec<LeftSpan>> {
        self.arms
            .iter()
            .map(|arm| {
                LeftSpan::of(
                    &self.keys,
                    &arm.matches,
                    arm.bounds.as_ref().map(|(b, _)| b.as_slice()),
                )
            })
            .collect()
    }
}

impl ProbeSide {
    fn evaluate_held(&self, head: &[RecordBatch]) -> DFResult<HeldLeft> {
        Ok(HeldLeft {
            keys: head
                .iter()
                .map(|b| evaluate(&self.keys, b))
                .collect::<DFResult<_>>()?,
            arms: self
                .arms
                .iter()
                .map(|arm| {
                    Ok(HeldArm {
                        matches: evaluate_each(&arm.left_match, head)?,
                        bounds: match &arm.max_age {
                            Some((expr, strict)) => Some((evaluate_each(expr, head)?, *strict)),
                            None => None,
                        },
                    })
                })
                .collect::<DFResult<_>>()?,
        })
    }

    /// Joins one left batch against the partition's right index, per arm.
    fn join(
        &self,
        indexes: &[RightIndex],
        batch: &RecordBatch,
        metrics: &JoinMetrics,
    ) -> DFResult<RecordBatch> {
        let n = batch.num_rows();
        let keys = evaluate(&self.keys, batch)?;
        let mut right = Vec::with_capacity(self.arms.len());
        for (arm, index) in self.arms.iter().zip(indexes) {
            let groups = index.groups_of(&keys, n)?;
            let values = ordered_i64(&arm.left_match.evaluate(batch)?.into_array(n)?)?;
            let bounds = match &arm.max_age {
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
                    let found = index.probe(group, value, arm.op, bound);
                    matched += usize::from(found.is_some());
                    found
                })
                .collect();
            metrics.matched_rows.add(matched);
            right.push(index.take(&found)?);
        }
        self.output.batch(batch, &right)
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
