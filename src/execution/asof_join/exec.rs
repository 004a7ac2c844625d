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

use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::MemoryConsumer;
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
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::{
    EmbeddedProjection, ProjectionExec, try_embed_projection,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::build::BuildSide;
use super::memory_wait::releasing;
use super::metrics::JoinMetrics;
use super::output::Output;
use super::probe::ProbeSide;
use super::right_filter::{FilterArm, RightFilter};
use super::stream::PartitionJoin;
use crate::options::PitlakeOptions;
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
pub struct Arm {
    pub left_match: PhysicalExprRef,
    pub op: MatchOp,
    pub right_match: PhysicalExprRef,
    /// Maximum-age bound evaluated on the left input, and whether it is strict.
    pub max_age: Option<(PhysicalExprRef, bool)>,
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
        let join = PartitionJoin {
            build,
            probe,
            left,
            right,
            reservation,
            strategy,
            right_rows,
            right_filter,
            pool,
            disk,
            metrics,
        };
        // Its end frees the partition's memory: partitions waiting for
        // memory are told (see `memory_wait`).
        let stream = releasing(futures::stream::once(join.run()).try_flatten().boxed());
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
