//! `ALTER TABLE | FEATURE GROUP … ADD / RENAME / ALTER / DROP COLUMN`: the
//! statement checked and turned into column changes; `catalog::columns`
//! commits the new schema.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::execution::SendableRecordBatchStream;
use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, ColumnOption, Expr};

use super::Session;
use super::lifecycle::read_only;
use super::results::done;
use crate::catalog::{self, ColumnChange, FeatureGroup};
use crate::error::{Error, Result};
use crate::sql::ColumnsStatement;

impl Session {
    /// Changes the columns of a table the principal manages. Rows
    /// acknowledged to its stream before the change are committed as the
    /// columns are after it (matched by field id), by whichever process
    /// owns the stream; the online store rebuilds with the new columns. A
    /// column a row filter or mask reads is neither renamed nor dropped.
    pub(super) async fn change_columns(
        &self,
        statement: ColumnsStatement,
    ) -> Result<SendableRecordBatchStream> {
        if self.temporary_name(&statement.table).is_some() {
            return Err(Error::NotSupported(
                "changing the columns of a temporary table: create it again".into(),
            ));
        }
        let name = self.resolve_name(&statement.table)?;
        read_only(&name)?;
        self.require_manage_to(&name, || {
            format!(
                "change the columns of {name} (its owner, one granted ALL on it, or an admin may)"
            )
        })
        .await?;
        if self.is_view(&name) {
            return Err(Error::Invalid(format!(
                "{name} is a view: create it again with the columns it should have"
            )));
        }
        let changes = statement
            .changes
            .iter()
            .map(|op| column_change(&name.to_string(), op))
            .collect::<Result<Vec<_>>>()?;
        let table = self
            .warehouse()
            .load_table(&name.schema, &name.table)
            .await?;
        if statement.feature_group
            && FeatureGroup::from_properties(table.metadata().properties())?.is_none()
        {
            return Err(Error::Invalid(format!(
                "{name} is a table, not a feature group: use ALTER TABLE"
            )));
        }
        self.refresh_policies().await?;
        if let Some(policy) = self.catalog.policy_of(&name) {
            let mut read = policy.masks.keys().cloned().collect::<HashSet<_>>();
            for expression in policy.row_filter.iter().chain(policy.masks.values()) {
                read.extend(columns_read(expression));
            }
            for change in &changes {
                let column = match change {
                    ColumnChange::Rename { from, .. } => from,
                    ColumnChange::Drop { column, .. } => column,
                    _ => continue,
                };
                if read.contains(column) {
                    return Err(Error::Invalid(format!(
                        "column {column} of {name} is read by its row filter or a column mask: \
                         drop or change those first"
                    )));
                }
            }
        }
        let changed = catalog::change_columns(self.warehouse(), &name, &changes).await?;
        if changed.is_some() {
            self.store.streams().retarget(&name).await?;
            self.store.writes().committed(&name).await?;
        }
        done()
    }
}

/// One `ALTER TABLE` operation as a column change, or why it is not one
/// pitlake makes.
fn column_change(table: &str, op: &AlterTableOperation) -> Result<ColumnChange> {
    use catalog::types::{normalize, sql_to_iceberg, sql_to_iceberg_type};
    let unsupported = |what: &str| {
        Error::NotSupported(format!(
            "{what} in ALTER TABLE {table} (pitlake adds, renames, widens and drops columns, \
             and drops NOT NULL)"
        ))
    };
    Ok(match op {
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            column_position,
            ..
        } => {
            if column_position.is_some() {
                return Err(unsupported("FIRST or AFTER"));
            }
            let name = normalize(&column_def.name);
            let mut comment = None;
            for option in &column_def.options {
                match &option.option {
                    ColumnOption::Comment(text) => comment = Some(text.clone()),
                    ColumnOption::Null => {}
                    ColumnOption::NotNull => {
                        return Err(Error::Invalid(format!(
                            "column {name} added to {table} cannot be NOT NULL: the rows already \
                             written have no value for it"
                        )));
                    }
                    other => return Err(unsupported(&format!("column option {other}"))),
                }
            }
            ColumnChange::Add {
                // Numbered for good when the change is committed.
                ty: sql_to_iceberg_type(&name, &column_def.data_type, &mut 1)?,
                name,
                comment,
                if_not_exists: *if_not_exists,
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => ColumnChange::Rename {
            from: normalize(old_column_name),
            to: normalize(new_column_name),
        },
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } => {
            if drop_behavior.is_some() {
                return Err(unsupported("CASCADE or RESTRICT"));
            }
            let [column] = column_names.as_slice() else {
                return Err(unsupported(
                    "DROP COLUMN of several columns at once (write one DROP COLUMN per column, comma-separated)",
                ));
            };
            ColumnChange::Drop {
                column: normalize(column),
                if_exists: *if_exists,
            }
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = normalize(column_name);
            match op {
                AlterColumnOperation::SetDataType {
                    data_type, using, ..
                } => {
                    if using.is_some() {
                        return Err(unsupported("USING"));
                    }
                    ColumnChange::SetType {
                        ty: sql_to_iceberg(&column, data_type)?,
                        column,
                    }
                }
                AlterColumnOperation::DropNotNull => ColumnChange::DropNotNull { column },
                AlterColumnOperation::SetNotNull => {
                    return Err(Error::Invalid(format!(
                        "column {column} of {table} cannot become NOT NULL: rows already written \
                         may hold NULL"
                    )));
                }
                other => return Err(unsupported(&format!("ALTER COLUMN {column} {other}"))),
            }
        }
        other => return Err(unsupported(&other.to_string())),
    })
}

/// The column names an expression (a row filter, a mask) reads.
fn columns_read(expression: &str) -> HashSet<String> {
    let mut read = HashSet::new();
    let Ok(expr) = crate::sql::parse_expr(expression) else {
        return read;
    };
    let _ = sqlparser::ast::visit_expressions(&expr, |e| {
        match e {
            Expr::Identifier(ident) => {
                read.insert(catalog::types::normalize(ident));
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    read.insert(catalog::types::normalize(last));
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    read
}
