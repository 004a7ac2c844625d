//! Plans a session keeps between statements, so a query asked again (a
//! Flight SQL client's GetFlightInfo and then DoGet of the same statement,
//! or a prepared statement executed with new parameters) is not parsed and
//! planned again.
//!
//! ```text
//!  SQL text ─► cache hit at the catalog's version? ─ yes ─► logical plan ─► bind $n ─► optimize, run
//!                         │ no
//!                         └─► parse, pin time travel, plan ─► kept if reusable
//! ```
//!
//! A plan is kept under its SQL text with the catalog's version it was made
//! at, and used only while the catalog has that version: any commit (ours or
//! another process's: a table created, dropped, written) makes the next
//! statement plan afresh. Only plans that pin no data at planning time are
//! kept: those that read no table at all (`SELECT 1`) or only online tables,
//! which find their group in the online store when they run. A scan of an
//! Iceberg table holds the snapshot and the streamed rows pending at planning
//! time, so such plans are made for every statement. A statement that is not
//! a query (`USE`, `SET`, DDL, writes) forgets every kept plan: they were
//! made under the settings and current schema it may change. The kept plan
//! is the unoptimized one; each run binds its parameters and optimizes it
//! under the session's settings at that time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DFStatement;

use super::Session;
use crate::catalog::CatalogVersion;
use crate::error::Result;
use crate::sql::{Statement, number_placeholders, parse_sql};
use crate::tables::is_online_table;

/// A query planned with its parameters (`$1`, …) unbound.
#[derive(Debug)]
pub struct QueryPlan {
    pub(super) plan: LogicalPlan,
    schema: SchemaRef,
    params: Vec<Option<DataType>>,
    reusable: bool,
    small: bool,
}

impl QueryPlan {
    pub(super) fn new(plan: LogicalPlan) -> Result<Self> {
        let params = parameter_types(&plan)?;
        Ok(QueryPlan {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            reusable: reusable(&plan),
            small: small(&plan),
            plan,
            params,
        })
    }

    /// Whether it is answered in about the time it takes to plan: it reads
    /// no table, or only online tables through a filter (lookups of
    /// entities), and does not recurse. A server may run such a plan where
    /// the request arrived, without handing it to its execution threads.
    pub fn is_small(&self) -> bool {
        self.small
    }

    /// The schema of its result.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The types of its parameters, `$1` first; `None` where the query
    /// does not tell.
    pub fn parameter_types(&self) -> &[Option<DataType>] {
        &self.params
    }

    /// Whether `values` bind to this plan exactly as their literals would to
    /// the statement: one per parameter, each of the type the query gives
    /// it. Other bindings go the way of literals in the SQL text.
    pub fn binds(&self, values: &[ScalarValue]) -> bool {
        values.len() == self.params.len()
            && values
                .iter()
                .zip(&self.params)
                .all(|(v, t)| t.as_ref() == Some(&v.data_type()))
    }
}

/// The types of a plan's parameters, `$1` first.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut params: Vec<Option<DataType>> = Vec::new();
    for (name, data_type) in plan.get_parameter_types()? {
        if let Some(n) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            && n >= 1
        {
            if params.len() < n {
                params.resize(n, None);
            }
            params[n - 1] = data_type;
        }
    }
    Ok(params)
}

/// Whether a plan may run again later: a query (not EXPLAIN) whose scans are
/// all of online tables (see the module's comment).
fn reusable(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return false;
    }
    let mut reusable = true;
    let _ = plan.apply_with_subqueries(|node| {
        let ok = match node {
            LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
                .is_ok_and(|provider| is_online_table(provider.as_ref())),
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_) => false,
            _ => true,
        };
        reusable &= ok;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    reusable
}

/// See [`QueryPlan::is_small`]: every table it reads is an online table
/// under a filter (the plan as planned, before the optimizer pushes the
/// filter into the scan, or after).
fn small(plan: &LogicalPlan) -> bool {
    let online = |node: &LogicalPlan| match node {
        LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
            .is_ok_and(|provider| is_online_table(provider.as_ref())),
        _ => false,
    };
    let mut small = true;
    let _ = plan.apply_with_subqueries(|node| {
        let ok = match node {
            LogicalPlan::TableScan(scan) => !scan.filters.is_empty() && online(node),
            // A filtered online scan: fine, and the scan below is seen
            // here (a subquery in the filter is not: it is judged as a plan).
            LogicalPlan::Filter(filter)
                if online(&filter.input) && !has_subquery(&filter.predicate) =>
            {
                return Ok(TreeNodeRecursion::Jump);
            }
            LogicalPlan::RecursiveQuery(_) | LogicalPlan::Unnest(_) => false,
            _ => true,
        };
        small &= ok;
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    small
}

fn has_subquery(expr: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::Expr;
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ))
    })
    .unwrap_or(true)
}

/// A session's kept plans, by SQL text, oldest forgotten first.
#[derive(Debug, Default)]
pub(super) struct PlanCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_sql: HashMap<String, (CatalogVersion, Arc<QueryPlan>)>,
    order: VecDeque<String>,
}

impl PlanCache {
    /// Plans kept at most per session.
    const CAPACITY: usize = 256;

    /// The plan kept for `sql` if it was made at `version`.
    pub(super) fn get(&self, sql: &str, version: Option<CatalogVersion>) -> Option<Arc<QueryPlan>> {
        let version = version?;
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.by_sql.get(sql) {
            Some((made_at, plan)) if *made_at == version => Some(plan.clone()),
            _ => None,
        }
    }

    /// Keeps `plan` of `sql`, made at `version`, if it may be reused.
    pub(super) fn keep(&self, sql: &str, version: Option<CatalogVersion>, plan: &Arc<QueryPlan>) {
        let Some(version) = version else { return };
        if !plan.reusable {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries
            .by_sql
            .insert(sql.to_string(), (version, plan.clone()))
            .is_none()
        {
            entries.order.push_back(sql.to_string());
        }
        while entries.order.len() > Self::CAPACITY {
            if let Some(old) = entries.order.pop_front() {
                entries.by_sql.remove(&old);
            }
        }
    }

    /// Forgets every plan.
    pub(super) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.by_sql.clear();
        entries.order.clear();
    }
}

impl Session {
    /// Plans the one query of `sql` with its parameters (`?`, `$1`, …)
    /// unbound, for [`Self::execute_plan`]; `None` when `sql` is not exactly
    /// one query. The plan is kept for the next statement of the same text
    /// when it may be (see `plans`), and taken from there while the catalog
    /// has not changed.
    pub async fn plan_query(&self, sql: &str) -> Result<Option<Arc<QueryPlan>>> {
        let version = self.catalog.refresh().await?;
        if let Some(plan) = self.plans.get(sql, version) {
            return Ok(Some(plan));
        }
        let mut statements = parse_sql(sql)?;
        let (Some(statement), None) = (statements.pop(), statements.pop()) else {
            return Ok(None);
        };
        if !Session::is_query(&statement) {
            return Ok(None);
        }
        let Statement::Sql(statement) = statement else {
            return Ok(None);
        };
        self.refresh_gate().await?;
        let mut statement = *statement;
        number_placeholders(&mut statement);
        self.prepare(&mut statement).await?;
        let plan = self
            .plan_statement(DFStatement::Statement(Box::new(statement)))
            .await?;
        let plan = Arc::new(QueryPlan::new(plan)?);
        self.plans.keep(sql, version, &plan);
        Ok(Some(plan))
    }

    /// The plan kept for `sql` if the catalog has not changed since it was
    /// made (no planning: `None` otherwise).
    pub async fn kept_plan(&self, sql: &str) -> Result<Option<Arc<QueryPlan>>> {
        let version = self.catalog.refresh().await?;
        Ok(self.plans.get(sql, version))
    }

    /// Runs a plan of [`Self::plan_query`] with `values` bound to its
    /// parameters (see [`QueryPlan::binds`]).
    pub async fn execute_plan(
        &self,
        plan: &QueryPlan,
        values: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let plan = if values.is_empty() {
            plan.plan.clone()
        } else {
            plan.plan.clone().with_param_values(values)?
        };
        self.run_plan(plan).await
    }
}
