//! `AsOfJoinExec`: the physical ASOF JOIN.
//!
//! Semantics: every left row appears exactly once, in its input order within
//! its partition. Its right columns come from the right row with equal keys
//! whose match value is nearest to the left one while satisfying the match
//! operator, within the maximum age if one is given; NULL where there is none.
//! NULL keys and NULL match values never match. Among right rows tied on the
//! nearest value, the one that sorts last by all its columns wins.
//!
//! Distribution: both inputs are hash-partitioned on the keys (one partition
//! each when there are no keys), so partition `p` of the left only meets
//! partition `p` of the right.
//!
//! Per partition, as a state machine:
//!
//! ```text
//!   Peek ── up to 256 MiB of left buffered ──► Build ── index built ──► Probe ── left done ──► Done
//!   (if that is the whole left side, the      (collect right batches     (per left batch: hash
//!    left input is released first; under       under a memory reservation;  lookup + binary search,
//!    64Ki rows, keep only right rows with      too large → ResourcesExhausted) gather right columns)
//!    its keys)
//! ```
//!
//! Memory: the right partition plus 12 bytes per right row and the key map.
//! Time: O(R) to group, a sort per key group (linear when already in order),
//! O(L log g) to probe, g the size of a key group.
//!
//! Example, backward (`l.ts >= r.ts`) on key `k`:
//!
//! ```text
//! right: (a, 1, x) (a, 5, y) (b, 2, z)      left: (a, 4) → x   (a, 5) → y   (b, 1) → NULL
//! ```

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::index::RightIndex;
use super::values::ordered_i64;
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
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
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
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
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
            schema,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
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
        Ok(Arc::new(AsOfJoinExec::new(
            left,
            right,
            self.left_keys.clone(),
            self.right_keys.clone(),
            self.left_match.clone(),
            self.op,
            self.right_match.clone(),
            self.max_age.clone(),
            self.schema.clone(),
        )))
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
        let reservation = MemoryConsumer::new(format!("AsOfJoinExec[{partition}]"))
            .register(context.memory_pool());
        let right = self.right.execute(partition, context.clone())?;
        let left = self.left.execute(partition, context)?;
        let build = BuildSide {
            keys: self.right_keys.clone(),
            matches: self.right_match.clone(),
        };
        let probe = Arc::new(ProbeSide {
            keys: self.left_keys.clone(),
            matches: self.left_match.clone(),
            op: self.op,
            max_age: self.max_age.clone(),
            schema: self.schema.clone(),
        });
        // Read the left first, up to LEFT_BUFFER_BYTES (within the memory
        // limit). When that is all of it:
        // - the left input is finished and dropped before the right side is
        //   indexed, so in a chain of joins each join's index is freed before
        //   the next one is built, instead of all of them being held at once;
        // - a small left side (a handful of labels) keeps only right rows with
        //   one of its keys, and does not pay for indexing the whole right.
        // Then build, then probe.
        let stream = futures::stream::once(async move {
            let mut left = Some(left);
            let mut head = Vec::new();
            let (mut head_rows, mut head_bytes) = (0usize, 0usize);
            while let Some(input) = left.as_mut() {
                if head_bytes > LEFT_BUFFER_BYTES {
                    break;
                }
                match input.next().await {
                    Some(batch) => {
                        let batch = batch?;
                        let bytes = batch.get_array_memory_size();
                        head_rows += batch.num_rows();
                        head_bytes += bytes;
                        head.push(batch);
                        if reservation.try_grow(bytes).is_err() {
                            break;
                        }
                    }
                    None => left = None,
                }
            }
            let key_filter =
                if left.is_none() && head_rows <= SMALL_LEFT_ROWS && !probe.keys.is_empty() {
                    Some(probe.key_set(&head)?)
                } else {
                    None
                };
            let (index, reservation) = build
                .collect(right, reservation, key_filter, &metrics)
                .await?;
            let index = Arc::new(index);
            let rest: BoxStream<'static, DFResult<RecordBatch>> = match left {
                Some(left) => left.boxed(),
                None => futures::stream::empty().boxed(),
            };
            Ok::<_, DataFusionError>(
                futures::stream::iter(head.into_iter().map(Ok))
                    .chain(rest)
                    .map(move |batch| {
                        let _hold = &reservation;
                        let _timer = metrics.probe_time.timer();
                        let out = probe.join(&index, &batch?, &metrics)?;
                        metrics.baseline.record_output(out.num_rows());
                        Ok(out)
                    }),
            )
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

    fn partition_statistics(&self, _partition: Option<usize>) -> DFResult<Statistics> {
        Ok(Statistics::new_unknown(&self.schema))
    }
}

/// Per-partition metrics, shown by `EXPLAIN ANALYZE`.
#[derive(Debug, Clone)]
struct JoinMetrics {
    baseline: BaselineMetrics,
    build_time: Time,
    probe_time: Time,
    right_rows: Count,
    matched_rows: Count,
}

impl JoinMetrics {
    fn new(partition: usize, set: &ExecutionPlanMetricsSet) -> Self {
        JoinMetrics {
            baseline: BaselineMetrics::new(set, partition),
            build_time: MetricBuilder::new(set).subset_time("build_time", partition),
            probe_time: MetricBuilder::new(set).subset_time("probe_time", partition),
            right_rows: MetricBuilder::new(set).counter("right_rows", partition),
            matched_rows: MetricBuilder::new(set).counter("matched_rows", partition),
        }
    }
}

struct BuildSide {
    keys: Vec<PhysicalExprRef>,
    matches: PhysicalExprRef,
}

impl BuildSide {
    /// Collects the right partition under the memory reservation and indexes it.
    async fn collect(
        self,
        mut input: SendableRecordBatchStream,
        reservation: MemoryReservation,
        mut key_filter: Option<KeySet>,
        metrics: &JoinMetrics,
    ) -> DFResult<(RightIndex, MemoryReservation)> {
        let schema = input.schema();
        // What the buffered left side holds already.
        let held = reservation.size();
        let mut batches = Vec::new();
        while let Some(batch) = input.next().await {
            let mut batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            if let Some(filter) = key_filter.as_mut() {
                let keys = evaluate(&self.keys, &batch)?;
                batch = filter.retain(&batch, &keys)?;
            }
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
        let matches = batches
            .iter()
            .map(|b| self.matches.evaluate(b)?.into_array(b.num_rows()))
            .collect::<DFResult<Vec<_>>>()?;
        let index = RightIndex::build(&schema, batches, &keys, &matches)?;
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
    schema: SchemaRef,
}

impl ProbeSide {
    /// The encoded keys of a (small) left side, to filter the right side by.
    fn key_set(&self, batches: &[RecordBatch]) -> DFResult<KeySet> {
        let mut set = KeySet::default();
        for batch in batches {
            let keys = evaluate(&self.keys, batch)?;
            set.insert(&keys)?;
        }
        Ok(set)
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
                let (value, group) = (values[i]?, groups[i]?);
                let bound = match &bounds {
                    Some((b, strict)) => Some((b[i]?, *strict)),
                    None => None,
                };
                let found = index.probe(group, value, self.op, bound);
                matched += usize::from(found.is_some());
                found
            })
            .collect();
        metrics.matched_rows.add(matched);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.extend(index.take(&found)?);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Left rows below which the right side is filtered to the left's keys.
const SMALL_LEFT_ROWS: usize = 65_536;
/// Left bytes read before the right side is indexed (see `execute`).
const LEFT_BUFFER_BYTES: usize = 256 << 20;

/// A set of row-encoded keys.
#[derive(Default)]
struct KeySet {
    converter: Option<RowConverter>,
    keys: HashSet<Box<[u8]>, ahash::RandomState>,
}

impl KeySet {
    fn converter(&mut self, keys: &[ArrayRef]) -> DFResult<&RowConverter> {
        if self.converter.is_none() {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            self.converter = Some(RowConverter::new(fields)?);
        }
        self.converter
            .as_ref()
            .ok_or_else(|| DataFusionError::Internal("key converter".into()))
    }

    fn insert(&mut self, keys: &[ArrayRef]) -> DFResult<()> {
        let rows = self.converter(keys)?.convert_columns(keys)?;
        for i in 0..rows.num_rows() {
            if !keys.iter().any(|k| k.is_null(i)) {
                self.keys.insert(Box::from(rows.row(i).data()));
            }
        }
        Ok(())
    }

    /// The rows of `batch` whose key is in the set.
    fn retain(&mut self, batch: &RecordBatch, keys: &[ArrayRef]) -> DFResult<RecordBatch> {
        let rows = self.converter(keys)?.convert_columns(keys)?;
        let mask: BooleanArray = (0..rows.num_rows())
            .map(|i| Some(self.keys.contains(rows.row(i).data())))
            .collect();
        Ok(filter_record_batch(batch, &mask)?)
    }
}

fn evaluate(exprs: &[PhysicalExprRef], batch: &RecordBatch) -> DFResult<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}
