//! pitlake's passes over a statement before DataFusion plans it.

use arrow::array::{ArrayRef, RecordBatch};
use futures::TryStreamExt;
use sqlparser::ast::{self, ObjectName};

use super::Session;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::planning::as_of;
use crate::planning::asof_join::wrap_asof_joins;
use crate::planning::temporary::qualify_temporary;
use crate::sql::{Statement, parse_sql};

impl Session {
    /// Unqualified names of this session's temporary tables become `temp.<name>`.
    pub(super) fn qualify_temporary(&self, statement: &mut ast::Statement) {
        qualify_temporary(statement, |name| self.temp.contains(name));
    }

    /// pitlake's passes over a query before DataFusion plans it, in order:
    /// temporary tables qualified, views expanded, time travel pinned to
    /// snapshot ids, ASOF JOINs wrapped. Every path that plans a query goes
    /// through here, so none can skip one.
    /// A refusal for want of a privilege is recorded in the audit log.
    pub(super) async fn prepare(&self, statement: &mut ast::Statement) -> Result<()> {
        self.qualify_temporary(statement);
        let passes = async {
            self.expand_views(statement).await?;
            self.pin_time_travel(statement).await
        };
        let passed = passes.await;
        self.audit_query_denial(passed.as_ref().err()).await;
        passed?;
        wrap_asof_joins(statement);
        Ok(())
    }

    /// Resolves every time-travel clause that is not a literal snapshot id
    /// (timestamps, tags, computed ids) and rewrites it to `VERSION AS OF <id>`.
    pub(super) async fn pin_time_travel(&self, statement: &mut ast::Statement) -> Result<()> {
        as_of::pin_time_travel(statement, self.warehouse(), self).await
    }

    /// Evaluates a constant expression (a scalar subquery included) to one value.
    async fn evaluate_scalar(&self, expr: &ast::Expr) -> Result<ArrayRef> {
        let statements = parse_sql(&format!("SELECT {expr}"))?;
        let Some(Statement::Sql(select)) = statements.into_iter().next() else {
            return Err(Error::Internal(format!("cannot evaluate {expr}")));
        };
        let result: Vec<RecordBatch> = Box::pin(self.run_query(*select))
            .await?
            .try_collect()
            .await?;
        let batch = result
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::Invalid(format!("AS OF {expr} gives no value")))?;
        Ok(batch.column(0).slice(0, 1))
    }
}

#[async_trait::async_trait]
impl as_of::Evaluate for Session {
    async fn scalar(&self, expr: &ast::Expr) -> Result<ArrayRef> {
        self.evaluate_scalar(expr).await
    }

    fn resolve_name(&self, name: &ObjectName) -> Result<TableName> {
        if let Some(temporary) = self.temporary_name(name) {
            return Err(Error::NotIceberg {
                table: format!("temporary table {temporary}"),
            });
        }
        let table = Session::resolve_name(self, name)?;
        // Time travel reads snapshots: only of what the principal may read.
        if !self.catalog.may_read(&table) {
            return Err(self.catalog.unreadable(&table));
        }
        Ok(table)
    }
}
