//! ASOF JOIN planning: SQL to the logical [`AsOfJoinNode`].

mod node;
mod sql;

pub use node::{AsOfJoinNode, MatchOp, MaxAge, match_kind};
pub use sql::{AsOfJoinPlanner, wrap_asof_joins};
