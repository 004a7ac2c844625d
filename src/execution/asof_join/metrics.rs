//! What `EXPLAIN ANALYZE` shows of an ASOF JOIN, per partition.

use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, Time,
};

/// Per-partition metrics, shown by `EXPLAIN ANALYZE`.
#[derive(Debug, Clone)]
pub struct JoinMetrics {
    pub baseline: BaselineMetrics,
    /// Indexing the held side: the left for the sweep, the right for the index.
    pub build_time: Time,
    /// Streaming the other side through it.
    pub probe_time: Time,
    pub right_rows: Count,
    pub matched_rows: Count,
    /// Partitions joined by the sweep (the others by the index, or in passes).
    pub swept_partitions: Count,
    /// The right side written to disk when neither side fits (see `in_passes`),
    /// and the passes over it.
    pub spilled_bytes: Count,
    pub spilled_rows: Count,
    pub right_passes: Count,
}

impl JoinMetrics {
    pub fn new(partition: usize, set: &ExecutionPlanMetricsSet) -> Self {
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
