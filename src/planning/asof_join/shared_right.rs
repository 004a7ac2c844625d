//! Whether two ASOF JOINs read the same right relation, so that they can
//! share one read of it (see `AsOfJoinExec`'s arms).
//!
//! The same relation: equal plans under their aliases (`features f0` and
//! `features f1`), whose scans read the same rows: the same provider, or
//! two providers of one Iceberg table at the same snapshot with the same
//! uncommitted rows. Not when the plans hold a volatile expression
//! (`random()` drawn once would be drawn for both) or a subquery.

use std::sync::Arc;

use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, LogicalPlan, TableSource};

use crate::tables::versioned;

/// Whether `a` and `b`, right inputs of two ASOF JOINs, read the same rows.
pub fn same_right_relation(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    let (a, b) = (unaliased(a), unaliased(b));
    a == b && same_sources(a, b) && !volatile(a)
}

fn unaliased(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => &alias.input,
        other => other,
    }
}

/// Equal plans `a` and `b` scan the same rows wherever they scan.
fn same_sources(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    if let (LogicalPlan::TableScan(x), LogicalPlan::TableScan(y)) = (a, b)
        && !same_source(&x.source, &y.source)
    {
        return false;
    }
    let (x, y) = (a.inputs(), b.inputs());
    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_sources(x, y))
}

fn same_source(a: &Arc<dyn TableSource>, b: &Arc<dyn TableSource>) -> bool {
    let (Ok(x), Ok(y)) = (source_as_provider(a), source_as_provider(b)) else {
        return Arc::ptr_eq(a, b);
    };
    if Arc::ptr_eq(&x, &y) {
        return true;
    }
    match (versioned(x.as_ref()), versioned(y.as_ref())) {
        (Some(x), Some(y)) => x.reads_same_rows(y),
        _ => false,
    }
}

/// Whether any expression of the plan is volatile or holds a subquery.
fn volatile(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found |= node.expressions().iter().any(|e| {
            e.is_volatile()
                || e.exists(|x| {
                    Ok(matches!(
                        x,
                        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                    ))
                })
                .unwrap_or(true)
        });
        Ok(if found {
            datafusion::common::tree_node::TreeNodeRecursion::Stop
        } else {
            datafusion::common::tree_node::TreeNodeRecursion::Continue
        })
    });
    found
}
