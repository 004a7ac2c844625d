//! Row filters and column masks: expressions stored per table that decide,
//! for whoever reads, which rows exist and what a column shows.
//!
//! They are kept as SQL text in the catalog database (`pitlake_policies`) and
//! bound to the reader's session when a table is scanned (see
//! `tables::governed`), so `current_user()` and `is_member()` in them answer
//! for the reader. A policy applies to every principal, admins included: the
//! expression itself says who is exempt (`... OR is_member('admin')`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::{Row, SqlitePool};

use crate::error::{Error, Result};
use crate::shared::TableName;

/// The row filter and column masks of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePolicy {
    /// A boolean expression over the table's columns: rows for which it is
    /// not true do not exist for the reader.
    pub row_filter: Option<String>,
    /// Column name → the expression the reader sees in its place.
    pub masks: BTreeMap<String, String>,
}

impl TablePolicy {
    pub fn is_empty(&self) -> bool {
        self.row_filter.is_none() && self.masks.is_empty()
    }
}

/// Every table's policy, as read at one time.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    tables: HashMap<String, Arc<TablePolicy>>,
}

impl PolicySet {
    /// The policy of `table`, if it has one.
    pub fn of(&self, table: &TableName) -> Option<Arc<TablePolicy>> {
        self.tables.get(&table.to_string()).cloned()
    }
}

/// One change to a table's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChange {
    SetRowFilter(String),
    DropRowFilter,
    SetMask { column: String, expression: String },
    DropMask { column: String },
}

/// The policies of one warehouse.
#[derive(Debug, Clone)]
pub struct Policies {
    pool: SqlitePool,
}

const ROW_FILTER: &str = "row_filter";
const MASK: &str = "mask";

fn db_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::unavailable(what)(e)
}

impl Policies {
    /// The policies of the catalog database behind `pool`, making their
    /// table on first use.
    pub async fn open(pool: SqlitePool) -> Result<Self> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS pitlake_policies (
                object TEXT NOT NULL, kind TEXT NOT NULL, column_name TEXT NOT NULL,
                expression TEXT NOT NULL, set_by TEXT NOT NULL,
                PRIMARY KEY (object, kind, column_name))",
        )
        .execute(&pool)
        .await
        .map_err(db_error("cannot make the policy table"))?;
        Ok(Policies { pool })
    }

    /// Every table's policy now.
    pub async fn load(&self) -> Result<PolicySet> {
        let rows =
            sqlx::query("SELECT object, kind, column_name, expression FROM pitlake_policies")
                .fetch_all(&self.pool)
                .await
                .map_err(db_error("cannot read the row filters and masks"))?;
        let mut tables: HashMap<String, TablePolicy> = HashMap::new();
        for row in rows {
            let get = |i: usize| row.try_get::<String, _>(i);
            let (Ok(object), Ok(kind), Ok(column), Ok(expression)) =
                (get(0), get(1), get(2), get(3))
            else {
                return Err(Error::Corrupt(
                    "a row of pitlake_policies is not text".into(),
                ));
            };
            let policy = tables.entry(object).or_default();
            match kind.as_str() {
                ROW_FILTER => policy.row_filter = Some(expression),
                MASK => {
                    policy.masks.insert(column, expression);
                }
                other => {
                    return Err(Error::Corrupt(format!(
                        "pitlake_policies holds a policy of unknown kind {other:?}"
                    )));
                }
            }
        }
        Ok(PolicySet {
            tables: tables
                .into_iter()
                .map(|(name, policy)| (name, Arc::new(policy)))
                .collect(),
        })
    }

    /// Applies `change` to `table`'s policy. Dropping what is not there is
    /// an error that says so.
    pub async fn change(&self, table: &TableName, change: &PolicyChange, by: &str) -> Result<()> {
        let object = table.to_string();
        let (kind, column, expression) = match change {
            PolicyChange::SetRowFilter(e) => (ROW_FILTER, "", Some(e.as_str())),
            PolicyChange::DropRowFilter => (ROW_FILTER, "", None),
            PolicyChange::SetMask { column, expression } => {
                (MASK, column.as_str(), Some(expression.as_str()))
            }
            PolicyChange::DropMask { column } => (MASK, column.as_str(), None),
        };
        match expression {
            Some(expression) => {
                sqlx::query(
                    "INSERT INTO pitlake_policies (object, kind, column_name, expression, set_by)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (object, kind, column_name)
                     DO UPDATE SET expression = excluded.expression, set_by = excluded.set_by",
                )
                .bind(&object)
                .bind(kind)
                .bind(column)
                .bind(expression)
                .bind(by)
                .execute(&self.pool)
                .await
                .map_err(db_error("cannot store the policy"))?;
            }
            None => {
                let removed = sqlx::query(
                    "DELETE FROM pitlake_policies WHERE object = ? AND kind = ? AND column_name = ?",
                )
                .bind(&object)
                .bind(kind)
                .bind(column)
                .execute(&self.pool)
                .await
                .map_err(db_error("cannot drop the policy"))?
                .rows_affected();
                if removed == 0 {
                    let what = match change {
                        PolicyChange::DropMask { column } => format!("mask on column {column}"),
                        _ => "row filter".to_string(),
                    };
                    return Err(Error::Invalid(format!("{table} has no {what}")));
                }
            }
        }
        Ok(())
    }

    /// Forgets the policies of a dropped table, so a new table of the same
    /// name starts without them.
    pub async fn forget(&self, table: &TableName) -> Result<()> {
        sqlx::query("DELETE FROM pitlake_policies WHERE object = ?")
            .bind(table.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error("cannot drop the policies of a table"))?;
        Ok(())
    }
}
