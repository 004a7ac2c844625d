//! The ASOF JOIN for Rust callers, on DataFusion DataFrames.

use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::node::{AsOfJoinNode, MatchOp, MaxAge};
use crate::error::{Error, Result};

/// How to join: keys, match condition and an optional maximum age.
#[derive(Debug, Clone)]
pub struct AsOfJoinSpec {
    /// `(left column, right column)` pairs that must be equal.
    pub on: Vec<(String, String)>,
    pub left_match: String,
    pub op: MatchOp,
    pub right_match: String,
    /// The bound on the right match value, an expression over left columns,
    /// and whether it is strict (see [`MaxAge`]).
    pub max_age: Option<(Expr, bool)>,
}

/// `left ASOF JOIN right` as a DataFrame (see [`AsOfJoinNode`] for semantics).
///
/// ```no_run
/// # use pitlake::planning::asof_join::{asof_join, AsOfJoinSpec};
/// # use pitlake::planning::MatchOp;
/// # async fn f(ctx: datafusion::prelude::SessionContext) -> pitlake::Result<()> {
/// let labels = ctx.table("labels").await?;
/// let features = ctx.table("features").await?;
/// let training = asof_join(labels, features, AsOfJoinSpec {
///     on: vec![("carrier".into(), "carrier".into())],
///     left_match: "ts".into(),
///     op: MatchOp::GtEq,
///     right_match: "event_time".into(),
///     max_age: None,
/// })?;
/// # Ok(()) }
/// ```
pub fn asof_join(left: DataFrame, right: DataFrame, spec: AsOfJoinSpec) -> Result<DataFrame> {
    let (state, left_plan) = left.into_parts();
    let right_plan = right.into_unoptimized_plan();
    let on = spec
        .on
        .iter()
        .map(|(l, r)| Ok((column(&left_plan, l)?, column(&right_plan, r)?)))
        .collect::<Result<Vec<_>>>()?;
    let left_match = column(&left_plan, &spec.left_match)?;
    let right_match = column(&right_plan, &spec.right_match)?;
    let node = AsOfJoinNode::try_new(
        left_plan,
        right_plan,
        on,
        left_match,
        spec.op,
        right_match,
        spec.max_age.map(|(bound, strict)| MaxAge { bound, strict }),
    )?;
    Ok(DataFrame::new(state, node.into_plan()))
}

/// A column of `plan` by its unqualified name.
fn column(plan: &LogicalPlan, name: &str) -> Result<Expr> {
    let (qualifier, field) = plan
        .schema()
        .qualified_field_with_unqualified_name(name)
        .map_err(|_| Error::Invalid(format!("ASOF JOIN: no column {name}")))?;
    Ok(Expr::Column(Column::from((qualifier, field))))
}
