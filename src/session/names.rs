//! What the names in a statement mean in this session: the current schema,
//! temporary tables, `[catalog.][schema.]table`.

use sqlparser::ast::ObjectName;

use super::Session;
use crate::catalog::{self, CATALOG_NAME, TableName};
use crate::error::{Error, Result};
use crate::shared::{NameKind, TEMP_SCHEMA, check_name};
use crate::sql::name_parts;

impl Session {
    /// The schema unqualified names resolve in (`USE` changes it).
    pub fn current_schema(&self) -> String {
        self.ctx
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone()
    }

    /// The temporary table `name` means, if it means one: `temp.t`, or an
    /// unqualified `t` while the session has a temporary `t`.
    pub(super) fn temporary_name(&self, name: &ObjectName) -> Option<String> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(catalog::types::normalize))
            .collect();
        match parts.as_slice() {
            [table] if self.temp.contains(table) => Some(table.clone()),
            [schema, table] if schema == TEMP_SCHEMA => Some(table.clone()),
            _ => None,
        }
    }

    /// `schema.table` for a name as written, in the current schema if unqualified.
    pub fn resolve_name(&self, name: &ObjectName) -> Result<TableName> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident().map(catalog::types::normalize))
            .collect();
        match parts.as_slice() {
            [table] => TableName::new(self.current_schema(), table),
            [schema, table] => TableName::new(schema, table),
            [cat, schema, table] if cat == CATALOG_NAME => TableName::new(schema, table),
            _ => Err(Error::Invalid(format!(
                "table name {name} is not of the form [schema.]table"
            ))),
        }
    }
}

/// A schema name from `CREATE SCHEMA x` / `USE x`.
pub(super) fn schema_of(name: &ObjectName) -> Result<String> {
    let schema = match name_parts(name).as_slice() {
        [schema] => normalize_part(name, schema),
        [cat, schema] if cat == CATALOG_NAME => normalize_part(name, schema),
        _ => return Err(Error::Invalid(format!("{name} is not a schema name"))),
    };
    check_name(NameKind::Schema, &schema)?;
    Ok(schema)
}

fn normalize_part(name: &ObjectName, part: &str) -> String {
    match name.0.last().and_then(|p| p.as_ident()) {
        Some(ident) => catalog::types::normalize(ident),
        None => part.to_string(),
    }
}
