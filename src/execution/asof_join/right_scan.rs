//! Parquet scans on an ASOF JOIN's right side filter rows while decoding,
//! when the labels are few enough that the filter may list their keys.
//!
//! The join's right-side filter (the labels' keys and reach, see
//! `right_filter`) prunes row groups by their statistics either way. With
//! row-level pushdown, Parquet also decodes the filter's columns first and
//! the rest only for rows that pass, so a few labels against a long history
//! decode and repartition a few rows instead of whole row groups (1 label
//! against 50M rows: 0.06-0.09 s against 0.11-0.15 s; 64 labels: 0.62 s
//! against 0.87 s).
//!
//! Beyond `MAX_LISTING_ROWS` labels the filter never lists keys: its ranges
//! prune whole row groups by their statistics, and evaluating them on every
//! row decoded costs CPU for rows nearly all kept (5M labels against 50M
//! rows: 6% of the user time, three alternating runs). So a left side whose
//! statistics count it exactly that large keeps the session's setting, as
//! other scans do (`datafusion.execution.parquet.pushdown_filters`); one of
//! unknown or estimated size gets the row filter.

use std::sync::Arc;

use datafusion::common::stats::Precision;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DFResult;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;

use super::right_filter::MAX_LISTING_ROWS;

/// Whether the right side of a join whose left side is `left` is worth
/// filtering row by row (see the module docs).
pub fn worth_filtering_rows(left: &dyn ExecutionPlan) -> bool {
    // Only an exact count: an estimate (a filter's guess at its selectivity)
    // can be far off, and a handful of labels without the row filter read
    // whole row groups.
    match left.partition_statistics(None).map(|s| s.num_rows) {
        Ok(Precision::Exact(rows)) => rows <= MAX_LISTING_ROWS,
        _ => true,
    }
}

/// `plan` with row-level filter pushdown on the Parquet scan it reads
/// through a chain of row-preserving single-input nodes; `plan` itself when
/// there is none.
pub fn filter_rows_while_decoding(
    plan: Arc<dyn ExecutionPlan>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    if let Some(scan) = plan.as_any().downcast_ref::<DataSourceExec>() {
        let Some((config, parquet)) = scan.downcast_to_file_source::<ParquetSource>() else {
            return Ok(plan);
        };
        if parquet.table_parquet_options().global.pushdown_filters {
            return Ok(plan);
        }
        let source = Arc::new(parquet.clone().with_pushdown_filters(true));
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(source)
            .build();
        return Ok(DataSourceExec::from_data_source(config));
    }
    let passes_through = plan.as_any().is::<ProjectionExec>()
        || plan.as_any().is::<FilterExec>()
        || plan.as_any().is::<RepartitionExec>();
    let children = plan.children();
    if !passes_through || children.len() != 1 {
        return Ok(plan);
    }
    let child = filter_rows_while_decoding(Arc::clone(children[0]))?;
    if Arc::ptr_eq(&child, children[0]) {
        return Ok(plan);
    }
    plan.with_new_children(vec![child])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;

    use super::*;

    fn labels(rows: usize) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let keys = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let batch = RecordBatch::try_new(schema.clone(), vec![keys]).expect("batch");
        MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).expect("exec")
    }

    /// Labels counted exactly and too many to list get no row filter on
    /// the right; an estimate of as many (behind a filter) does.
    #[test]
    fn only_few_labels_filter_right_rows() {
        assert!(worth_filtering_rows(labels(64).as_ref()));
        assert!(worth_filtering_rows(labels(MAX_LISTING_ROWS).as_ref()));
        assert!(!worth_filtering_rows(labels(MAX_LISTING_ROWS + 1).as_ref()));
        let all = datafusion::physical_expr::expressions::lit(true);
        let filtered = FilterExec::try_new(all, labels(MAX_LISTING_ROWS + 1)).expect("filter");
        assert!(matches!(
            filtered
                .partition_statistics(None)
                .expect("statistics")
                .num_rows,
            Precision::Inexact(_)
        ));
        assert!(worth_filtering_rows(&filtered));
    }
}
