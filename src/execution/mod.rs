//! Physical operators and their planning.

pub mod asof_join;
mod planner;

pub use asof_join::AsOfJoinExec;
pub use planner::{AsOfJoinExtensionPlanner, PitlakeQueryPlanner};
