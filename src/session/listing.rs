//! What a client may see of the catalog, for Flight SQL's metadata calls
//! (GetDbSchemas, GetTables with tables and views, GetPrimaryKeys). They go through the session
//! like every statement, so the one place that decides what a client may
//! do also decides what it is shown.

use arrow::datatypes::Schema;

use super::Session;
use crate::access::Privilege;
use crate::catalog::{FeatureGroup, TableName};
use crate::error::{Error, Result};
use crate::sql::parse_sql;

/// One table as listed: its schema, name and (when asked for) columns.
#[derive(Debug, Clone)]
pub struct ListedTable {
    pub schema: String,
    pub table: String,
    /// "TABLE" or "VIEW", as Flight SQL's GetTables says it.
    pub kind: &'static str,
    /// The current columns; empty unless they were asked for.
    pub columns: Schema,
}

impl Session {
    /// The schemas of the warehouse.
    pub async fn list_schemas(&self) -> Result<Vec<String>> {
        self.warehouse().list_schemas().await
    }

    /// Every table of every schema, with its current columns when
    /// `with_columns`. A table dropped while listing is left out.
    pub async fn list_tables(&self, with_columns: bool) -> Result<Vec<ListedTable>> {
        let warehouse = self.warehouse();
        let access = self.access().await?;
        let visible = |schema: &str, table: &str| {
            TableName::new(schema, table).is_ok_and(|t| access.may(Privilege::Select, &t))
        };
        let mut out = Vec::new();
        for schema in warehouse.list_schemas().await? {
            for table in warehouse.list_tables(&schema).await? {
                if !visible(&schema, &table) {
                    continue;
                }
                let columns = if with_columns {
                    match warehouse.try_load_table(&schema, &table).await? {
                        Some(t) => {
                            iceberg::arrow::schema_to_arrow_schema(t.metadata().current_schema())
                                .map_err(Error::iceberg(format!("schema of {schema}.{table}")))?
                        }
                        None => continue,
                    }
                } else {
                    Schema::empty()
                };
                out.push(ListedTable {
                    schema: schema.clone(),
                    table,
                    kind: "TABLE",
                    columns,
                });
            }
            for view in warehouse.views().list(&schema).await? {
                if !visible(&schema, &view) {
                    continue;
                }
                let columns = if with_columns {
                    self.view_columns(&schema, &view).await?
                } else {
                    Schema::empty()
                };
                out.push(ListedTable {
                    schema: schema.clone(),
                    table: view,
                    kind: "VIEW",
                    columns,
                });
            }
        }
        Ok(out)
    }

    /// A view's columns as a query of it returns them; as stored when it no
    /// longer plans (a table it reads was dropped).
    async fn view_columns(&self, schema: &str, view: &str) -> Result<Schema> {
        let name = TableName::new(schema, view)?;
        let sql = format!("SELECT * FROM \"{schema}\".\"{view}\"");
        let planned = match parse_sql(&sql)?.pop() {
            Some(statement) => self.query_schema(statement).await.ok(),
            None => None,
        };
        if let Some(planned) = planned {
            return Ok(planned.as_ref().clone());
        }
        match self.warehouse().views().load(&name).await? {
            Some(stored) => iceberg::arrow::schema_to_arrow_schema(&stored.schema)
                .map_err(Error::iceberg(format!("columns of view {name}"))),
            None => Ok(Schema::empty()),
        }
    }

    /// The entity-key columns of a table (in the current schema when
    /// `schema` is `None`), in key order; none for a plain table.
    pub async fn primary_keys(
        &self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<(TableName, Vec<String>)> {
        let schema = schema.map_or_else(|| self.current_schema(), str::to_string);
        let name = TableName::new(schema, table)?;
        self.require_read(&name).await?;
        let Some(t) = self
            .warehouse()
            .try_load_table(&name.schema, &name.table)
            .await?
        else {
            return Err(Error::TableNotFound {
                table: name.to_string(),
            });
        };
        let keys = FeatureGroup::from_properties(t.metadata().properties())?
            .map(|fg| fg.entity_key)
            .unwrap_or_default();
        Ok((name, keys))
    }
}
