//! From SQL statements to DataFusion logical plans: pitlake's relation planners.

pub mod time_travel;

pub use time_travel::TimeTravelPlanner;
