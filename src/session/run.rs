//! Planning and running queries with DataFusion once pitlake's passes
//! (`prepare`) have rewritten them.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use sqlparser::ast;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;

use super::Session;
use crate::access::Securable;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::sql::Statement;
use crate::tables::GovernedTable;

impl Session {
    /// True for statements that only read (queries, EXPLAIN): they can be
    /// planned once to learn their schema and run later, or run again.
    pub fn is_query(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::Sql(s) if matches!(**s, ast::Statement::Query(_) | ast::Statement::Explain { .. })
        )
    }

    /// The schema a query's result will have, without running it.
    pub async fn query_schema(&self, statement: Statement) -> Result<SchemaRef> {
        Ok(self.describe_query(statement).await?.0)
    }

    /// A query's result schema and the types of its parameters (`$1` … in
    /// order; `None` where the query does not tell).
    pub async fn describe_query(
        &self,
        statement: Statement,
    ) -> Result<(SchemaRef, Vec<Option<DataType>>)> {
        self.catalog.refresh().await?;
        self.refresh_gate().await?;
        let Statement::Sql(statement) = statement else {
            return Err(Error::Internal("not a query".into()));
        };
        let mut statement = *statement;
        self.prepare(&mut statement).await?;
        let plan = self
            .plan_statement(DFStatement::Statement(Box::new(statement)))
            .await?;
        let params = super::plans::parameter_types(&plan)?;
        Ok((Arc::new(plan.schema().as_arrow().clone()), params))
    }

    /// Plans and runs a statement with DataFusion, after resolving its
    /// time-travel clauses to snapshot ids.
    pub(super) async fn run_query(
        &self,
        mut statement: ast::Statement,
    ) -> Result<SendableRecordBatchStream> {
        self.prepare(&mut statement).await?;
        self.run_planned(DFStatement::Statement(Box::new(statement)))
            .await
    }

    pub(super) async fn run_planned(
        &self,
        statement: DFStatement,
    ) -> Result<SendableRecordBatchStream> {
        let plan = self.plan_statement(statement).await?;
        self.run_plan(plan).await
    }

    /// Plans `statement`; a refusal for want of a privilege (a table the
    /// principal may not read) is recorded in the audit log.
    pub(super) async fn plan_statement(&self, statement: DFStatement) -> Result<LogicalPlan> {
        let planned = self
            .ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(Error::from);
        self.audit_query_denial(planned.as_ref().err()).await;
        planned
    }

    pub(super) async fn run_plan(&self, plan: LogicalPlan) -> Result<SendableRecordBatchStream> {
        self.check_explain(&plan).await?;
        self.audit_reads(&plan).await;
        // DataFusion's own statements (DDL, SET) take effect here.
        let frame = self.ctx.execute_logical_plan(plan).await?;
        let task = frame.task_ctx();
        let physical = frame.create_physical_plan().await?;
        self.execute_physical(task, physical)
    }

    /// Runs a physical plan under `task`, within the session's memory limit
    /// per query if it has one.
    pub(super) fn execute_physical(
        &self,
        task: TaskContext,
        physical: Arc<dyn ExecutionPlan>,
    ) -> Result<SendableRecordBatchStream> {
        let task = match self.query_memory {
            None => task,
            // A pool of its own per query: one query's limit, not the session's.
            Some(limit) => {
                let runtime = RuntimeEnvBuilder::from_runtime_env(task.runtime_env().as_ref())
                    .with_memory_limit(limit, 1.0)
                    .build_arc()?;
                task.with_runtime(runtime)
            }
        };
        Ok(datafusion::physical_plan::execute_stream(
            physical,
            Arc::new(task),
        )?)
    }

    /// EXPLAIN shows a policy's expressions and EXPLAIN ANALYZE counts the
    /// rows its filter hides: of a table under a row filter or masks, only
    /// for those who may manage it (and so see its policy anyway).
    async fn check_explain(&self, plan: &LogicalPlan) -> Result<()> {
        if !matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
            return Ok(());
        }
        let mut governed = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(provider) = source_as_provider(&scan.source)
                && let Some(table) = provider.as_any().downcast_ref::<GovernedTable>()
            {
                governed.push(table.table_name().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if governed.is_empty() {
            return Ok(());
        }
        let access = self.access().await?;
        for table in governed {
            let managed = table
                .split_once('.')
                .and_then(|(schema, name)| TableName::new(schema, name).ok())
                .is_some_and(|t| access.may_manage(&Securable::Table(t)));
            if !managed {
                let denied = Error::Denied {
                    user: self.principal().await?.user,
                    action: format!(
                        "explain a query of {table}: it has a row filter or column masks"
                    ),
                };
                self.audit_query_denial(Some(&denied)).await;
                return Err(denied);
            }
        }
        Ok(())
    }

    /// The session on one partition: rows come out in input order, so a
    /// write's "row N" is the Nth row of the file or VALUES list.
    pub(super) fn in_order(&self) -> SessionContext {
        let mut state = self.ctx.state();
        let options = state.config_mut().options_mut();
        options.execution.target_partitions = 1;
        options.optimizer.repartition_file_scans = false;
        SessionContext::new_with_state(state)
    }
}
