//! DELETE: the statement checked and turned into a predicate over the
//! table's columns; `lifecycle/` removes the rows.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::lit;
use iceberg::arrow::schema_to_arrow_schema;
use sqlparser::ast::{self, FromTable, TableFactor};

use super::Session;
use super::results::count;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::lifecycle;

impl Session {
    /// `DELETE FROM t [WHERE …]`: the rows where the condition is TRUE
    /// leave the current snapshot (history keeps them); the online store
    /// follows. By those who manage `t`.
    pub(super) async fn delete(&self, delete: ast::Delete) -> Result<SendableRecordBatchStream> {
        if !delete.tables.is_empty()
            || delete.using.is_some()
            || delete.returning.is_some()
            || !delete.order_by.is_empty()
            || delete.limit.is_some()
        {
            return Err(Error::NotSupported(
                "DELETE with USING, RETURNING, ORDER BY, LIMIT or several tables: \
                 write DELETE FROM t WHERE <condition>"
                    .into(),
            ));
        }
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        let [only] = from.as_slice() else {
            return Err(Error::NotSupported("DELETE from several tables".into()));
        };
        let TableFactor::Table { name, alias, .. } = &only.relation else {
            return Err(Error::NotSupported(
                "DELETE from anything but a table".into(),
            ));
        };
        if !only.joins.is_empty() {
            return Err(Error::NotSupported("DELETE with a join".into()));
        }
        if self.temporary_name(name).is_some() {
            return Err(Error::NotSupported(
                "DELETE from a temporary table: create it again from the rows to keep".into(),
            ));
        }
        let name = self.resolve_name(name)?;
        self.require_manage_to(&name, || {
            format!("delete rows from {name} (its owner, one granted ALL on it, or an admin may)")
        })
        .await?;
        if self.is_view(&name) {
            return Err(Error::Invalid(format!(
                "{name} is a view: delete from the tables it reads"
            )));
        }
        let table = self
            .warehouse()
            .load_table(&name.schema, &name.table)
            .await?;
        let schema = schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
        let qualifier = alias
            .as_ref()
            .map(|a| a.name.value.clone())
            .unwrap_or_else(|| name.table.clone());
        let predicate = match &delete.selection {
            Some(condition) => self.row_predicate(&name, &qualifier, &schema, condition)?,
            None => lit(true),
        };
        // Rows acknowledged to a stream are rows of the table: committed
        // first, so the delete sees them.
        self.store.streams().flush(Some(&name.to_string())).await?;
        let removed = lifecycle::delete_rows(self.warehouse(), &name, &predicate, &schema).await?;
        if removed.snapshot_id.is_some() {
            self.store.writes().committed(&name).await?;
        }
        count(removed.rows)
    }

    /// `condition` as an expression over the rows of `name` (columns as
    /// `schema`, qualified by `qualifier`). Subqueries are refused.
    fn row_predicate(
        &self,
        name: &TableName,
        qualifier: &str,
        schema: &arrow::datatypes::Schema,
        condition: &ast::Expr,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let mut subquery = false;
        let _ = ast::visit_expressions(condition, |e| {
            if matches!(
                e,
                ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. }
            ) {
                subquery = true;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if subquery {
            return Err(Error::NotSupported(format!(
                "a subquery in the condition of a DELETE from {name}: list the values, or \
                 compute them first"
            )));
        }
        let context = |e: datafusion::error::DataFusionError| {
            Error::Invalid(format!("the condition of the DELETE from {name}: {e}"))
        };
        let df_schema = DFSchema::try_from_qualified_schema(qualifier, schema).map_err(context)?;
        let state = self.ctx.state();
        let expr = state
            .create_logical_expr(&condition.to_string(), &df_schema)
            .map_err(context)?;
        let typed = expr.get_type(&df_schema).map_err(context)?;
        if !matches!(
            typed,
            arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null
        ) {
            return Err(Error::Invalid(format!(
                "the condition of the DELETE from {name} is a {typed}, not a boolean"
            )));
        }
        state
            .create_physical_expr(expr, &df_schema)
            .map_err(context)
    }
}
