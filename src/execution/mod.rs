//! Physical operators.

pub mod asof_join;
pub mod ingest_order;
mod scan_predicate;
mod snapshot_scan;
pub mod vectors;

pub use asof_join::AsOfJoinExec;
pub use scan_predicate::{defaulted_columns, iceberg_predicate};
pub use snapshot_scan::SnapshotScanExec;
