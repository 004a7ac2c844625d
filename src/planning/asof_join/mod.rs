//! ASOF JOIN planning: SQL to the logical [`AsOfJoinNode`].

mod coercion;
mod dataframe;
mod node;
mod shared_right;
mod sql;

pub use dataframe::{AsOfJoinSpec, asof_join};
pub use node::{AsOfJoinNode, MatchOp, MaxAge, match_kind};
pub use shared_right::same_right_relation;
pub use sql::{AsOfJoinPlanner, wrap_asof_joins};
