//! DELETE and ERASE: the statement checked and turned into a predicate over
//! the table's columns; `lifecycle/` removes the rows.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::lit;
use iceberg::arrow::schema_to_arrow_schema;
use sqlparser::ast::{self, FromTable, TableFactor};

use super::Session;
use super::results::{count, one_batch};
use crate::access::AuditAction;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::sql::RefStatement;

/// System tables (the audit log, grants, …) change only through pitlake's
/// own statements.
pub(super) fn read_only(name: &TableName) -> Result<()> {
    if name.schema == crate::shared::SYSTEM_SCHEMA {
        return Err(Error::Invalid(format!(
            "{name} is a system table: it is read-only"
        )));
    }
    Ok(())
}

/// The table a DELETE or ERASE removes rows from, and which rows.
struct Removal {
    name: TableName,
    schema: arrow::datatypes::Schema,
    predicate: Arc<dyn PhysicalExpr>,
}

impl Session {
    /// `DELETE FROM t [WHERE …]`: the rows where the condition is TRUE
    /// leave the current snapshot (history keeps them); the online store
    /// follows. By those who manage `t`.
    pub(super) async fn delete(&self, delete: ast::Delete) -> Result<SendableRecordBatchStream> {
        let target = self.removal(&delete, "DELETE").await?;
        let removed = lifecycle::delete_rows(
            self.warehouse(),
            &target.name,
            &target.predicate,
            &target.schema,
        )
        .await?;
        if removed.snapshot_id.is_some() {
            self.store.writes().committed(&target.name).await?;
        }
        count(removed.rows)
    }

    /// `ERASE FROM t [WHERE …]`: the rows where the condition is TRUE leave
    /// every snapshot, the files that held them the disk, and the online
    /// store; the audit log says who erased how many rows with which
    /// condition (its literals as `?`) from which snapshots. By those who
    /// manage `t`.
    pub(super) async fn erase(&self, erase: ast::Delete) -> Result<SendableRecordBatchStream> {
        let target = self.removal(&erase, "ERASE").await?;
        let erasure = lifecycle::erase_rows(
            self.warehouse(),
            &target.name,
            &target.predicate,
            &target.schema,
        )
        .await?;
        // The snapshot ids stayed: the online store rebuilds from the new
        // history (here at once; other processes at their next refresh).
        self.store.online().forget(&target.name.to_string());
        self.store.writes().committed(&target.name).await?;
        let erased = erasure.erased.clone();
        let statement = crate::sql::Statement::Erase(Box::new(erase));
        let detail = format!(
            "{statement}: {} rows from {} files in {} snapshots ({}); {} files of the old history deleted",
            erased.rows,
            erased.files,
            erased.snapshots.len(),
            erased
                .snapshots
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            erased.obsolete
        );
        // Recorded before the old files go: a process killed in between
        // leaves them to the next ERASE or VACUUM (the erase's journal), and
        // the record is there.
        self.audit(AuditAction::Erase, target.name.to_string(), detail, true)
            .await;
        erasure.finish().await;
        count(erased.rows)
    }

    /// `ALTER TABLE t CREATE TAG …` / `DROP TAG …` (or `ALTER FEATURE
    /// GROUP`): one row, the tag and its snapshot (NULL when nothing
    /// changed). By those who manage `t`.
    pub(super) async fn tag(&self, statement: RefStatement) -> Result<SendableRecordBatchStream> {
        let name = self.resolve_name(statement.table())?;
        read_only(&name)?;
        self.require_manage_to(&name, || {
            format!("tag versions of {name} (its owner, one granted ALL on it, or an admin may)")
        })
        .await?;
        if self.is_view(&name) {
            return Err(Error::Invalid(format!(
                "{name} is a view: tag the tables it reads"
            )));
        }
        let warehouse = self.warehouse();
        let (tag, snapshot) = match statement {
            RefStatement::CreateTag {
                tag,
                snapshot,
                retain_ms,
                replace,
                if_not_exists,
                ..
            } => {
                let new = lifecycle::NewTag {
                    name: tag.value.clone(),
                    snapshot,
                    retain_ms,
                    replace,
                    if_not_exists,
                };
                (
                    tag.value,
                    lifecycle::create_tag(warehouse, &name, &new).await?,
                )
            }
            RefStatement::DropTag { tag, if_exists, .. } => {
                lifecycle::drop_tag(warehouse, &name, &tag.value, if_exists).await?;
                (tag.value, None)
            }
        };
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("tag", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("snapshot_id", arrow::datatypes::DataType::Int64, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::StringArray::from(vec![tag])),
                Arc::new(arrow::array::Int64Array::from(vec![snapshot])),
            ],
        )
        .map_err(Error::arrow("the tag statement's result"))?;
        one_batch(batch)
    }

    /// What a DELETE or ERASE removes rows from, checked: one table the
    /// principal manages, not a view or temporary table, with the condition
    /// as a predicate over its columns. Rows acknowledged to its stream are
    /// committed first, so the removal sees them (for an ERASE, the log
    /// files that held them are deleted too).
    async fn removal(&self, delete: &ast::Delete, statement: &str) -> Result<Removal> {
        if !delete.tables.is_empty()
            || delete.using.is_some()
            || delete.returning.is_some()
            || !delete.order_by.is_empty()
            || delete.limit.is_some()
        {
            return Err(Error::NotSupported(format!(
                "{statement} with USING, RETURNING, ORDER BY, LIMIT or several tables: \
                 write {statement} FROM t WHERE <condition>"
            )));
        }
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
        let [only] = from.as_slice() else {
            return Err(Error::NotSupported(format!(
                "{statement} from several tables"
            )));
        };
        let TableFactor::Table { name, alias, .. } = &only.relation else {
            return Err(Error::NotSupported(format!(
                "{statement} from anything but a table"
            )));
        };
        if !only.joins.is_empty() {
            return Err(Error::NotSupported(format!("{statement} with a join")));
        }
        if self.temporary_name(name).is_some() {
            return Err(Error::NotSupported(format!(
                "{statement} from a temporary table: create it again from the rows to keep"
            )));
        }
        let name = self.resolve_name(name)?;
        read_only(&name)?;
        let verb = if statement == "ERASE" {
            "erase rows of"
        } else {
            "delete rows from"
        };
        self.require_manage_to(&name, || {
            format!("{verb} {name} (its owner, one granted ALL on it, or an admin may)")
        })
        .await?;
        // A condition reads the rows as stored: under a row filter or masks
        // it would find (and remove) rows and values hidden from the caller.
        self.refresh_policies().await?;
        if self.catalog.policy_of(&name).is_some() {
            self.require_admin(|| {
                format!(
                    "{verb} {name}, which has a row filter or column masks (its condition would \
                     read rows and values they hide; an admin may, or drop the policy first)"
                )
            })
            .await?;
        }
        if self.is_view(&name) {
            return Err(Error::Invalid(format!(
                "{name} is a view: {} the tables it reads",
                verb.replace(" rows", "").replace(" of", " from")
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
            Some(condition) => {
                self.row_predicate(&name, statement, &qualifier, &schema, condition)?
            }
            None => lit(true),
        };
        // For an ERASE, the log files that held them are deleted too: erased
        // values must not stay in the log.
        self.store
            .streams()
            .settle(&name, statement == "ERASE")
            .await?;
        Ok(Removal {
            name,
            schema,
            predicate,
        })
    }

    /// `condition` as an expression over the rows of `name` (columns as
    /// `schema`, qualified by `qualifier`). Subqueries are refused.
    fn row_predicate(
        &self,
        name: &TableName,
        statement: &str,
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
                "a subquery in the condition of {statement} FROM {name}: list the values, or \
                 compute them first"
            )));
        }
        let context = |e: datafusion::error::DataFusionError| {
            Error::Invalid(format!("the condition of {statement} FROM {name}: {e}"))
        };
        let df_schema = DFSchema::try_from_qualified_schema(qualifier, schema).map_err(context)?;
        let state = self.ctx.state();
        let expr = state
            .create_logical_expr(&condition.to_string(), &df_schema)
            .map_err(context)?;
        if expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    datafusion::logical_expr::Expr::AggregateFunction(_)
                        | datafusion::logical_expr::Expr::WindowFunction(_)
                ))
            })
            .unwrap_or(false)
        {
            return Err(Error::Invalid(format!(
                "the condition of {statement} FROM {name} holds an aggregate or window function: \
                 it is evaluated row by row"
            )));
        }
        // Functions that only exist to be rewritten (coalesce, now()) are
        // rewritten here, as a query's planning would.
        let simplify = datafusion::logical_expr::simplify::SimplifyContext::default()
            .with_schema(Arc::new(df_schema.clone()))
            .with_config_options(Arc::new(state.config_options().as_ref().clone()))
            .with_current_time();
        let expr = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(simplify)
            .simplify(expr)
            .map_err(context)?;
        let typed = expr.get_type(&df_schema).map_err(context)?;
        if !matches!(
            typed,
            arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null
        ) {
            return Err(Error::Invalid(format!(
                "the condition of {statement} FROM {name} is a {typed}, not a boolean"
            )));
        }
        state
            .create_physical_expr(expr, &df_schema)
            .map_err(context)
    }
}
