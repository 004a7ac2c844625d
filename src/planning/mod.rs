//! From SQL statements to DataFusion logical plans: pitlake's relation planners
//! and logical nodes.

pub mod as_of;
pub mod asof_join;
mod physical;
pub mod temporary;
pub mod time_travel;
pub mod views;

pub use asof_join::{AsOfJoinNode, AsOfJoinPlanner, MatchOp};
pub use physical::{AsOfJoinExtensionPlanner, PitlakeQueryPlanner};
pub use time_travel::TimeTravelPlanner;
