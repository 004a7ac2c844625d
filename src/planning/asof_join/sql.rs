//! ASOF JOIN in SQL (Snowflake's syntax, which sqlparser parses):
//!
//! ```sql
//! <left> ASOF JOIN <right> MATCH_CONDITION (<l.col> <op> <r.col>) ON <l.k = r.k AND ...> [AND <max age>]
//! ```
//!
//! DataFusion plans joins itself and rejects ASOF. So [`wrap_asof_joins`]
//! rewrites each `FROM` list so that everything up to an ASOF join becomes one
//! nested join, a table factor; [`AsOfJoinPlanner`], a relation planner, then
//! plans that factor as an [`AsOfJoinNode`].

use std::ops::ControlFlow;

use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, Projection, SubqueryAlias,
    TableScan,
};
use sqlparser::ast::{
    Join, JoinConstraint, JoinOperator, Query, SetExpr, Statement, TableFactor, TableWithJoins,
    VisitMut, VisitorMut,
};
use std::sync::Arc;

use super::node::{AsOfJoinNode, MatchOp, MaxAge};
use crate::error::Error;
use crate::shared::INGEST_ORDER_COLUMN;
use crate::tables::versioned;

/// Rewrites every `FROM` list of `statement` so that ASOF joins are planned by
/// [`AsOfJoinPlanner`].
pub fn wrap_asof_joins(statement: &mut Statement) {
    struct Wrap;
    impl VisitorMut for Wrap {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            wrap_set_expr(&mut query.body);
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = factor
            {
                wrap_nested(table_with_joins);
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Wrap);
}

fn wrap_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => select.from.iter_mut().for_each(wrap),
        SetExpr::SetOperation { left, right, .. } => {
            wrap_set_expr(left);
            wrap_set_expr(right);
        }
        _ => {}
    }
}

fn is_asof(join: &Join) -> bool {
    matches!(join.join_operator, JoinOperator::AsOf { .. })
}

/// Inside a nested join, one that already ends with its ASOF join is what
/// the planner expects; only joins after the last ASOF need wrapping.
fn wrap_nested(from: &mut TableWithJoins) {
    if from.joins.last().is_some_and(is_asof) {
        return;
    }
    wrap(from);
}

/// `a J1 b ASOF c J2 d` becomes `(a J1 b ASOF c) J2 d`.
fn wrap(from: &mut TableWithJoins) {
    let Some(last_asof) = from.joins.iter().rposition(is_asof) else {
        return;
    };
    let rest = from.joins.split_off(last_asof + 1);
    let upto = std::mem::take(&mut from.joins);
    let relation = std::mem::replace(&mut from.relation, placeholder());
    from.relation = TableFactor::NestedJoin {
        table_with_joins: Box::new(TableWithJoins {
            relation,
            joins: upto,
        }),
        alias: None,
    };
    from.joins = rest;
}

fn placeholder() -> TableFactor {
    TableFactor::Table {
        name: sqlparser::ast::ObjectName(vec![]),
        alias: None,
        args: None,
        with_hints: vec![],
        version: None,
        with_ordinality: false,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    }
}

/// Plans a nested join whose last join is an ASOF join.
#[derive(Debug, Default)]
pub struct AsOfJoinPlanner;

impl RelationPlanner for AsOfJoinPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> DFResult<RelationPlanning> {
        let TableFactor::NestedJoin {
            mut table_with_joins,
            alias,
        } = relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        if !table_with_joins.joins.last().is_some_and(is_asof) {
            return Ok(RelationPlanning::Original(Box::new(
                TableFactor::NestedJoin {
                    table_with_joins,
                    alias,
                },
            )));
        }
        let Some(join) = table_with_joins.joins.pop() else {
            return Ok(RelationPlanning::Original(Box::new(
                TableFactor::NestedJoin {
                    table_with_joins,
                    alias,
                },
            )));
        };
        let JoinOperator::AsOf {
            match_condition,
            constraint,
        } = join.join_operator
        else {
            return Err(Error::Internal("ASOF JOIN expected".into()).into());
        };

        // The left side is everything before this join, itself possibly ending in an ASOF join.
        let mut left = *table_with_joins;
        wrap_nested(&mut left);
        let left_factor = if left.joins.is_empty() {
            left.relation
        } else {
            TableFactor::NestedJoin {
                table_with_joins: Box::new(left),
                alias: None,
            }
        };
        let left_plan = context.plan(left_factor)?;
        let right_plan = context.plan(join.relation)?;
        let (right_plan, ordered) = in_ingest_order(right_plan)?;
        let (ls, rs) = (left_plan.schema().clone(), right_plan.schema().clone());
        let both = ls.join(&rs)?;

        let condition = context.sql_to_expr(match_condition.clone(), &both)?;
        let (left_match, op, right_match) = split_match(&condition, &ls, &rs).ok_or_else(|| {
            Error::Invalid(format!(
                "ASOF JOIN MATCH_CONDITION must compare a left column with a right column using >=, >, <= or <, not {match_condition}"
            ))
        })?;

        let mut on = Vec::new();
        let mut max_age = None;
        match constraint {
            JoinConstraint::On(expr) => {
                let expr = context.sql_to_expr(expr, &both)?;
                for conjunct in split_conjunction(&expr) {
                    if let Some((l, r)) = split_key(conjunct, &ls, &rs) {
                        on.push((l, r));
                    } else if let Some(age) = split_max_age(conjunct, op, &right_match, &ls) {
                        if max_age.is_some() {
                            return Err(not_supported(conjunct, "a second maximum age").into());
                        }
                        max_age = Some(age);
                    } else if compares_right_match(conjunct, &right_match) {
                        let bound = match op.is_backward() {
                            true => format!("{right_match} >= <left time> - INTERVAL '...'"),
                            false => format!("{right_match} <= <left time> + INTERVAL '...'"),
                        };
                        return Err(not_supported(
                            conjunct,
                            &format!("ON takes one maximum age on the right match column, written {bound}"),
                        )
                        .into());
                    } else {
                        return Err(not_supported(
                            conjunct,
                            "ON takes equalities between left and right columns and one maximum age bound on the right match column",
                        )
                        .into());
                    }
                }
            }
            JoinConstraint::Using(columns) => {
                for column in columns {
                    let name = context.normalize_ident(
                        column
                            .0
                            .last()
                            .and_then(|p| p.as_ident())
                            .cloned()
                            .ok_or_else(|| Error::Invalid(format!("USING {column}")))?,
                    );
                    let l = ls.qualified_field_with_unqualified_name(&name)?;
                    let r = rs.qualified_field_with_unqualified_name(&name)?;
                    on.push((
                        Expr::Column(Column::from((l.0, l.1))),
                        Expr::Column(Column::from((r.0, r.1))),
                    ));
                }
            }
            JoinConstraint::None => {}
            JoinConstraint::Natural => {
                return Err(Error::NotSupported(
                    "NATURAL in ASOF JOIN: name the keys with ON".into(),
                )
                .into());
            }
        }
        let node = AsOfJoinNode::try_new(
            left_plan,
            right_plan,
            on,
            left_match,
            op,
            right_match,
            max_age,
        )?;
        let mut plan = node.into_plan();
        if ordered {
            // The ingestion order breaks ties inside the join; it is no column of the result.
            let keep: Vec<Expr> = plan
                .schema()
                .iter()
                .filter(|(_, f)| f.name() != INGEST_ORDER_COLUMN)
                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                .collect();
            plan = LogicalPlanBuilder::from(plan).project(keep)?.build()?;
        }
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// A feature group on the right is read in ingestion order, each row with
/// its position in it, so that among rows tied on the match value the most
/// recently ingested one wins; a plain table by the same reader without it
/// (both take the join's right-side filter at run time). Other relations
/// keep their plan.
fn in_ingest_order(plan: LogicalPlan) -> DFResult<(LogicalPlan, bool)> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok();
            let Some(table) = provider.as_deref().and_then(versioned) else {
                return Ok((LogicalPlan::TableScan(scan), false));
            };
            // A plain table keeps its columns and is read by the reader that
            // takes the join's right-side filter.
            let ordered = table.is_feature_group();
            let table = match ordered {
                true => table.in_ingest_order(),
                false => table.with_runtime_filters(),
            };
            let projection = match ordered {
                true => None,
                false => scan.projection.clone(),
            };
            let scan = TableScan::try_new(
                scan.table_name.clone(),
                provider_as_source(table),
                projection,
                scan.filters.clone(),
                scan.fetch,
            )?;
            Ok((LogicalPlan::TableScan(scan), ordered))
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let (input, ordered) = in_ingest_order(Arc::unwrap_or_clone(alias.input))?;
            let alias = SubqueryAlias::try_new(Arc::new(input), alias.alias)?;
            Ok((LogicalPlan::SubqueryAlias(alias), ordered))
        }
        // A subquery that filters or projects one feature group keeps its order.
        LogicalPlan::Filter(filter) => {
            let (input, ordered) = in_ingest_order(Arc::unwrap_or_clone(filter.input))?;
            let filter = Filter::try_new(filter.predicate, Arc::new(input))?;
            Ok((LogicalPlan::Filter(filter), ordered))
        }
        LogicalPlan::Projection(projection) => {
            let (input, ordered) = in_ingest_order(Arc::unwrap_or_clone(projection.input))?;
            let mut exprs = projection.expr;
            if ordered {
                let (qualifier, field) = input
                    .schema()
                    .iter()
                    .find(|(_, f)| f.name() == INGEST_ORDER_COLUMN)
                    .ok_or_else(|| Error::Internal("the ingestion order went missing".into()))?;
                exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
            }
            let projection = Projection::try_new(exprs, Arc::new(input))?;
            Ok((LogicalPlan::Projection(projection), ordered))
        }
        other => Ok((other, false)),
    }
}

fn not_supported(conjunct: &Expr, why: &str) -> Error {
    // As SQL (`INTERVAL '1 DAYS'`), not as DataFusion's debug form of a literal.
    let sql = match datafusion::sql::unparser::expr_to_sql(conjunct) {
        Ok(sqlparser::ast::Expr::Nested(inner)) => inner.to_string(),
        Ok(e) => e.to_string(),
        Err(_) => conjunct.to_string(),
    };
    Error::NotSupported(format!("{sql} in ASOF JOIN: {why}"))
}

/// Which side an expression's columns come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Neither,
}

fn side(expr: &Expr, ls: &DFSchema, rs: &DFSchema) -> Side {
    let columns = expr.column_refs();
    if columns.is_empty() {
        Side::Neither
    } else if columns.iter().all(|c| ls.has_column(c)) {
        Side::Left
    } else if columns.iter().all(|c| rs.has_column(c)) {
        Side::Right
    } else {
        Side::Neither
    }
}

fn comparison(op: Operator) -> Option<MatchOp> {
    match op {
        Operator::GtEq => Some(MatchOp::GtEq),
        Operator::Gt => Some(MatchOp::Gt),
        Operator::LtEq => Some(MatchOp::LtEq),
        Operator::Lt => Some(MatchOp::Lt),
        _ => None,
    }
}

/// `l.ts >= r.ts` (either way round) as `(left, op, right)`.
fn split_match(expr: &Expr, ls: &DFSchema, rs: &DFSchema) -> Option<(Expr, MatchOp, Expr)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    let op = comparison(*op)?;
    match (side(left, ls, rs), side(right, ls, rs)) {
        (Side::Left, Side::Right) => Some((*left.clone(), op, *right.clone())),
        (Side::Right, Side::Left) => Some((*right.clone(), op.flip(), *left.clone())),
        _ => None,
    }
}

/// `l.k = r.k` (either way round) as `(left, right)`.
fn split_key(expr: &Expr, ls: &DFSchema, rs: &DFSchema) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = expr
    else {
        return None;
    };
    match (side(left, ls, rs), side(right, ls, rs)) {
        (Side::Left, Side::Right) => Some((*left.clone(), *right.clone())),
        (Side::Right, Side::Left) => Some((*right.clone(), *left.clone())),
        _ => None,
    }
}

/// Whether `expr` is a comparison that reads the right match column (a
/// maximum age in a form the join does not take, such as
/// `l.ts <= f.ts + INTERVAL '1 day'`).
fn compares_right_match(expr: &Expr, right_match: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr { op, .. }) = expr else {
        return false;
    };
    let wanted = right_match.column_refs();
    comparison(*op).is_some()
        && !wanted.is_empty()
        && wanted.iter().all(|c| expr.column_refs().contains(c))
}

/// A bound on the right match column by a left-side expression, in the
/// direction that limits the distance: `r.ts >= l.ts - INTERVAL '7 days'` for
/// a backward match, `r.ts <= l.ts + INTERVAL '1 hour'` for a forward one.
fn split_max_age(expr: &Expr, op: MatchOp, right_match: &Expr, ls: &DFSchema) -> Option<MaxAge> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: cmp,
        right,
    }) = expr
    else {
        return None;
    };
    let cmp = comparison(*cmp)?;
    let strip = |e: &Expr| match e {
        Expr::Cast(c) => (*c.expr).clone(),
        other => other.clone(),
    };
    let is_right_match = |e: &Expr| strip(e) == strip(right_match) || e == right_match;
    let left_only = |e: &Expr| {
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| ls.has_column(c))
    };
    // Normalize to `right_match <cmp> bound`.
    let (cmp, bound) = if is_right_match(left) && left_only(right) {
        (cmp, (**right).clone())
    } else if is_right_match(right) && left_only(left) {
        (cmp.flip(), (**left).clone())
    } else {
        return None;
    };
    match (op.is_backward(), cmp) {
        (true, MatchOp::GtEq) | (false, MatchOp::LtEq) => Some(MaxAge {
            bound,
            strict: false,
        }),
        (true, MatchOp::Gt) | (false, MatchOp::Lt) => Some(MaxAge {
            bound,
            strict: true,
        }),
        _ => None,
    }
}
