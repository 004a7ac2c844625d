//! Row filters and column masks in the session: setting them (checked
//! against the table when set), keeping the session's copy current, and
//! applying them to online lookups, which do not pass through a scan.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{ExprSchemable, cast};
use sqlparser::ast::{Expr, ExprWithAlias};

use super::Session;
use super::results::done;
use crate::access::{PolicyChange, Privilege};
use crate::catalog::FeatureGroup;
use crate::catalog::{CatalogVersion, TableName};
use crate::error::{Error, Result};
use crate::sql::{PolicyClause, PolicyStatement};
use crate::tables::govern_lookup;

/// The catalog version the session's policies were read at.
pub(super) type PoliciesReadAt = Arc<std::sync::Mutex<Option<CatalogVersion>>>;

impl Session {
    /// `ALTER ... SET ROW FILTER`, `... SET MASK` and their `DROP`s: only by
    /// who may manage the table; an expression that does not apply to the
    /// table is refused when set, not when read.
    pub(super) async fn execute_policy(
        &self,
        statement: PolicyStatement,
    ) -> Result<SendableRecordBatchStream> {
        if self.temporary_name(&statement.table).is_some() {
            return Err(Error::NotSupported(
                "row filters and masks on temporary tables".into(),
            ));
        }
        let name = self.resolve_name(&statement.table)?;
        self.require_manage(&name).await?;
        let table = self
            .warehouse()
            .load_table(&name.schema, &name.table)
            .await?;
        let metadata = table.metadata();
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(metadata.current_schema())
                .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?,
        );
        let keys: Vec<String> = FeatureGroup::from_properties(metadata.properties())?
            .map(|fg| fg.entity_key)
            .unwrap_or_default();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| Error::Internal(format!("the schema of {name}: {e}")))?;
        let change = match statement.clause {
            PolicyClause::SetRowFilter(filter) => {
                let data_type = self.check_expression(&name, &filter, &df_schema, None)?;
                if !matches!(data_type, DataType::Boolean | DataType::Null) {
                    return Err(Error::Invalid(format!(
                        "the row filter of {name} must be boolean; {filter} is {data_type}"
                    )));
                }
                PolicyChange::SetRowFilter(filter.to_string())
            }
            PolicyClause::DropRowFilter => PolicyChange::DropRowFilter,
            PolicyClause::SetMask { column, mask } => {
                let column = crate::catalog::types::normalize(&column);
                let Ok(field) = schema.field_with_name(&column) else {
                    return Err(Error::Invalid(format!("{name} has no column {column}")));
                };
                // Lookups find entities by their stored keys: a masked key
                // would still answer for its real values.
                if keys.contains(&column) {
                    return Err(Error::Invalid(format!(
                        "{column} is an entity key of {name}: keys cannot be masked \
                         (a row filter can hide the entities instead)"
                    )));
                }
                let to = field.data_type().clone();
                self.check_expression(&name, &mask, &df_schema, Some(&to))?;
                PolicyChange::SetMask {
                    column,
                    expression: mask.to_string(),
                }
            }
            PolicyClause::DropMask { column } => PolicyChange::DropMask {
                column: crate::catalog::types::normalize(&column),
            },
        };
        let by = self.principal().await?.user;
        self.store.policies().change(&name, &change, &by).await?;
        self.store.principals().touch();
        self.refresh_policies().await?;
        done()
    }

    /// Plans `expr` over the table's columns as a reader's session would,
    /// cast to `to` when given; its type.
    fn check_expression(
        &self,
        table: &TableName,
        expr: &Expr,
        schema: &DFSchema,
        to: Option<&DataType>,
    ) -> Result<DataType> {
        let state = self.ctx.state();
        let refused = |e: String| Error::Invalid(format!("{expr} cannot guard {table}: {e}"));
        let logical = state
            .create_logical_expr_from_sql_expr(
                ExprWithAlias {
                    expr: expr.clone(),
                    alias: None,
                },
                schema,
            )
            .map_err(|e| refused(e.to_string()))?;
        let data_type = logical
            .get_type(schema)
            .map_err(|e| refused(e.to_string()))?;
        let logical = match to {
            Some(to) if !arrow::compute::can_cast_types(&data_type, to) => {
                return Err(refused(format!(
                    "a mask must give the column's type {to}, and {data_type} cannot be cast to it"
                )));
            }
            Some(to) => cast(logical, to.clone()),
            None => logical,
        };
        // Subqueries, aggregates and window functions do not run on one row.
        state
            .create_physical_expr(logical, schema)
            .map_err(|e| refused(e.to_string()))?;
        Ok(data_type)
    }

    /// Reads the policies and the published feature groups again when the
    /// catalog database changed since they were read (by this or another
    /// process).
    pub(super) async fn refresh_policies(&self) -> Result<()> {
        let version = self.store.warehouse().version().await;
        {
            let read_at = self
                .policies_read_at
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if version.is_some() && *read_at == version {
                return Ok(());
            }
        }
        let policies = self.store.policies().load().await?;
        self.catalog.set_policies(Arc::new(policies));
        let published = self.store.sharing().published().await?;
        self.catalog.set_published(Arc::new(published));
        *self
            .policies_read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = version;
        Ok(())
    }

    /// The latest feature values of entities of the online group `name`, as
    /// the principal may see them: `keys` holds one array per entity-key
    /// column; `columns` picks features (all when `None`). One row per
    /// entity, in request order; NULL features where an entity has no fresh
    /// value, or where the group's row filter hides its latest row.
    pub async fn lookup(
        &self,
        name: &TableName,
        keys: &[ArrayRef],
        columns: Option<&[String]>,
    ) -> Result<RecordBatch> {
        self.authorize(Privilege::Select, name).await?;
        self.refresh_policies().await?;
        let online = self.store.online();
        let group = match online.loaded(&name.to_string()) {
            Some(group) => group,
            None => online.group(name).await?,
        };
        let projection = group.projection(columns)?;
        let Some(policy) = self.catalog.policy_of(name) else {
            return group.lookup(keys, &projection);
        };
        // Every column, so the filter and masks can read what they need.
        let all = group.projection(None)?;
        let batch = group.lookup(keys, &all)?;
        let key_count = group.key_columns().len();
        let keys_at: Vec<usize> = (0..key_count).collect();
        let governed = govern_lookup(
            &self.ctx.state(),
            self.catalog.policy_parser(),
            &name.to_string(),
            &policy,
            batch,
            &keys_at,
        )?;
        // `all` lists keys first, then the other columns in table order:
        // pick the asked-for columns by their position in it.
        let picked: Vec<usize> = projection
            .iter()
            .map(|i| all.iter().position(|a| a == i).unwrap_or(*i))
            .collect();
        governed
            .project(&picked)
            .map_err(Error::arrow("the columns of an online lookup"))
    }
}
