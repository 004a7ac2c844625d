//! Plans a session keeps between statements, so a query asked again (a
//! Flight SQL client's GetFlightInfo and then DoGet of the same statement,
//! or a prepared statement executed with new parameters) is not parsed and
//! planned again.
//!
//! ```text
//!  SQL text ─► cache hit at the catalog's version? ─ yes ─► kept plan ─► bind $n ─► optimize (unless done once), run
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
//! made under the settings and current schema it may change.
//!
//! A kept plan without parameters is also optimized once, when no function
//! in it depends on the time or the session (`now()` is folded to the time
//! of optimizing): each run plans that plan physically, without DataFusion's
//! optimizer (the largest part of `SELECT 1`'s time on the server). A plan
//! with parameters is optimized at each run with its values bound: the
//! optimizer takes a placeholder for a value unlike every literal (it
//! intersects `x IN ($1, 3) AND x IN (2, 3)` to `x = 3`), and a scan that
//! uses a filter's value (an online lookup's key) cannot use it unbound.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use datafusion::execution::session_state::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
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
    /// `plan` optimized, when it is kept, has no parameters and may be
    /// optimized ahead (see the module's comment).
    optimized: Option<LogicalPlan>,
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
            optimized: None,
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

/// The types of a plan's parameters, `$1` first (`None` where the query
/// does not tell). A parameter compared with two columns of one type takes
/// that type: the columns' field metadata (Iceberg's field ids) differ,
/// which DataFusion's own listing takes for a conflict.
pub(super) fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut params: Vec<Option<DataType>> = Vec::new();
    visit_expressions(plan, |e| {
        let Expr::Placeholder(Placeholder { id, field }) = e else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let Some(n) = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
        else {
            return Ok(TreeNodeRecursion::Continue);
        };
        if params.len() < n {
            params.resize(n, None);
        }
        // A type of Null tells nothing (`$1 = $2` leaves both so).
        let found = field
            .as_ref()
            .map(|f| f.data_type())
            .filter(|t| !t.is_null());
        match (&params[n - 1], found) {
            (Some(known), Some(found)) if known != found => {
                return Err(DataFusionError::Plan(format!(
                    "parameter {id} is used as {known} and as {found}; \
                     cast one use to the other's type"
                )));
            }
            (None, Some(found)) => params[n - 1] = Some(found.clone()),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(params)
}

/// Calls `f` on every expression of `plan`, its subqueries' and the
/// expressions nested in them, until `f` says stop.
fn visit_expressions(
    plan: &LogicalPlan,
    mut f: impl FnMut(&Expr) -> DFResult<TreeNodeRecursion>,
) -> DFResult<()> {
    plan.apply_with_subqueries(|node| node.apply_expressions(|expr| expr.apply(&mut f)))?;
    Ok(())
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

fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ))
    })
    .unwrap_or(true)
}

/// Whether optimizing `plan` now gives the plan optimizing it later would:
/// it has no parameters, and every function in it is immutable (the
/// optimizer folds `now()` and other stable functions to their value at the
/// time it runs).
fn optimizes_ahead(plan: &LogicalPlan) -> bool {
    let mut ahead = true;
    let _ = visit_expressions(plan, |e| {
        let later = match e {
            Expr::Placeholder(_) => true,
            Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
            _ => false,
        };
        ahead &= !later;
        Ok(if later {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    ahead
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
        let mut plan = QueryPlan::new(plan)?;
        if plan.reusable && optimizes_ahead(&plan.plan) {
            plan.optimized = Some(self.ctx.state().optimize(&plan.plan)?);
        }
        let plan = Arc::new(plan);
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
        let (state, physical) = self.bind_plan(plan, values).await?;
        self.execute_physical(TaskContext::from(&state), physical)
    }

    /// `plan` with `values` bound, planned physically under the session's
    /// state now (see the module's comment for what is done ahead).
    async fn bind_plan(
        &self,
        plan: &QueryPlan,
        values: Vec<ScalarValue>,
    ) -> Result<(SessionState, Arc<dyn ExecutionPlan>)> {
        let kept = plan.optimized.as_ref().unwrap_or(&plan.plan);
        let bound = if values.is_empty() {
            kept.clone()
        } else {
            kept.clone().with_param_values(values)?
        };
        self.audit_reads(&bound).await;
        let state = self.ctx.state();
        let physical = if plan.optimized.is_some() {
            state
                .query_planner()
                .create_physical_plan(&bound, &state)
                .await?
        } else {
            state.create_physical_plan(&bound).await?
        };
        Ok((state, physical))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::displayable;

    use super::*;

    async fn session_with_online_group() -> (tempfile::TempDir, Session) {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = Session::open(dir.path()).await.expect("session");
        session
            .sql(
                "CREATE FEATURE GROUP g (k BIGINT, t TIMESTAMP, f DOUBLE) ENTITY KEY (k) \
                 EVENT TIME t ONLINE; INSERT INTO g VALUES (1, '2026-01-01', 1.5), (2, '2026-01-01', 2.5)",
            )
            .await
            .expect("setup");
        (dir, session)
    }

    async fn physical(session: &Session, plan: &QueryPlan, values: Vec<ScalarValue>) -> String {
        let (_, physical) = session.bind_plan(plan, values).await.expect("bind");
        displayable(physical.as_ref()).indent(true).to_string()
    }

    /// A kept lookup asked again with its key written in looks the key up
    /// without being optimized again; one with its key a parameter is
    /// optimized with its value, and looks that up.
    #[tokio::test]
    async fn kept_lookups_look_their_keys_up() {
        let (_dir, session) = session_with_online_group().await;
        let sql = "SELECT f FROM online.default.g WHERE k = 2";
        let plan = session.plan_query(sql).await.expect("plan").expect("query");
        assert!(plan.optimized.is_some(), "{sql} is optimized ahead");
        let shown = physical(&session, &plan, vec![]).await;
        assert!(shown.contains("keys=1"), "{shown}");
        let sql = "SELECT f FROM online.default.g WHERE k = $1";
        let plan = session.plan_query(sql).await.expect("plan").expect("query");
        assert!(
            plan.optimized.is_none(),
            "{sql} is optimized with its value"
        );
        let shown = physical(&session, &plan, vec![ScalarValue::Int64(Some(2))]).await;
        assert!(shown.contains("keys=1"), "{shown}");
    }

    /// Functions that read the clock or the session are folded by the
    /// optimizer, and parameters taken for values unlike any literal: such
    /// plans are optimized at each run.
    #[tokio::test]
    async fn plans_with_parameters_or_reading_the_clock_are_not_optimized_ahead() {
        let (_dir, session) = session_with_online_group().await;
        for (sql, ahead) in [
            ("SELECT 1", true),
            ("SELECT f * 2 FROM online.default.g WHERE k IN (1, 2)", true),
            (
                "SELECT f * 2 FROM online.default.g WHERE k IN ($1, 2)",
                false,
            ),
            ("SELECT $1 + 1", false),
            ("SELECT now()", false),
            ("SELECT current_date + 1", false),
            ("SELECT f, now() FROM online.default.g WHERE k = $1", false),
            ("SELECT random()", false),
            (
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM online.default.g WHERE k = 1 AND now() > t)",
                false,
            ),
        ] {
            let plan = session.plan_query(sql).await.expect("plan").expect("query");
            assert_eq!(plan.optimized.is_some(), ahead, "{sql}");
        }
    }
}
