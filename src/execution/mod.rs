//! Physical operators and their planning.

pub mod asof_join;
pub mod ingest_order;
mod planner;
mod scan_predicate;
mod snapshot_scan;

pub use asof_join::AsOfJoinExec;
pub use planner::{AsOfJoinExtensionPlanner, PitlakeQueryPlanner};
pub use snapshot_scan::SnapshotScanExec;
