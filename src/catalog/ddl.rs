//! Creating and dropping tables and feature groups in the warehouse.

use iceberg::spec::Schema;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, NamespaceIdent, TableCreation, TableIdent, TableUpdate};
use sqlparser::ast::ColumnDef;

use super::feature_group::FeatureGroup;
use super::types::schema_from_columns;
use super::warehouse::Warehouse;
use crate::error::{Error, Result};
pub use crate::shared::TableName;
use crate::shared::{NameKind, check_name};

fn ident(name: &TableName) -> TableIdent {
    TableIdent::new(NamespaceIdent::new(name.schema.clone()), name.table.clone())
}

/// Creates an Iceberg table; `Ok(None)` when it exists and `if_not_exists` is set.
pub async fn create_table(
    warehouse: &Warehouse,
    name: &TableName,
    schema: Schema,
    properties: std::collections::HashMap<String, String>,
    if_not_exists: bool,
) -> Result<Option<Table>> {
    check_name(NameKind::Schema, &name.schema)?;
    check_name(NameKind::Table, &name.table)?;
    if !warehouse.schema_exists(&name.schema).await? {
        return Err(Error::SchemaNotFound {
            schema: name.schema.clone(),
        });
    }
    if warehouse.views().kind_of(name).await? == Some("view") {
        if if_not_exists {
            return Ok(None);
        }
        return Err(Error::AlreadyExists {
            kind: "view",
            name: name.to_string(),
        });
    }
    let creation = TableCreation::builder()
        .name(name.table.clone())
        .schema(schema)
        .properties(properties)
        .build();
    let ns = NamespaceIdent::new(name.schema.clone());
    match warehouse.catalog().create_table(&ns, creation).await {
        Ok(table) => Ok(Some(table)),
        Err(e) if e.kind() == ErrorKind::TableAlreadyExists => {
            if if_not_exists {
                Ok(None)
            } else {
                Err(Error::AlreadyExists {
                    kind: "table",
                    name: name.to_string(),
                })
            }
        }
        Err(e) => Err(Error::iceberg(format!("cannot create {name}"))(e)),
    }
}

/// `CREATE FEATURE GROUP`: validates keys and event time against the
/// columns, then creates the table with the feature-group properties.
/// False when `if_not_exists` found one there already.
pub async fn create_feature_group(
    warehouse: &Warehouse,
    name: &TableName,
    fg: &FeatureGroup,
    columns: &[ColumnDef],
    if_not_exists: bool,
) -> Result<bool> {
    let schema = schema_from_columns(&name.to_string(), columns, |c| fg.is_required(c))?;
    let arrow = iceberg::arrow::schema_to_arrow_schema(&schema)
        .map_err(Error::iceberg(format!("invalid schema for {name}")))?;
    fg.validate(&name.to_string(), &arrow)?;
    let made = create_table(warehouse, name, schema, fg.to_properties(), if_not_exists).await?;
    Ok(made.is_some())
}

/// `ALTER FEATURE GROUP`: switches the online flag and sets options, as one
/// table-properties commit.
pub async fn alter_feature_group(
    warehouse: &Warehouse,
    name: &TableName,
    online: Option<bool>,
    options: &[(String, String)],
) -> Result<()> {
    let table = warehouse
        .try_load_table(&name.schema, &name.table)
        .await?
        .ok_or_else(|| Error::Invalid(format!("feature group {name} does not exist")))?;
    let mut fg = FeatureGroup::from_properties(table.metadata().properties())?.ok_or_else(|| {
        Error::Invalid(format!(
            "{name} is a table, not a feature group: create a feature group to use ALTER FEATURE GROUP"
        ))
    })?;
    if let Some(online) = online {
        fg.online = online;
    }
    fg.set_options(options)?;
    let properties = fg.to_properties();
    let current = table.metadata().properties();
    let removals: Vec<String> = FeatureGroup::property_keys()
        .iter()
        .filter(|key| !properties.contains_key(**key) && current.contains_key(**key))
        .map(|key| key.to_string())
        .collect();
    let mut updates = vec![TableUpdate::SetProperties {
        updates: properties,
    }];
    if !removals.is_empty() {
        updates.push(TableUpdate::RemoveProperties { removals });
    }
    let updates = &updates;
    super::commit(warehouse, name, |_: Table| {
        Box::pin(async move {
            Ok(super::Staged {
                change: super::Change::Updates(updates.clone()),
                written: Vec::new(),
            })
        })
    })
    .await?;
    Ok(())
}

/// Drops a table; with `feature_group` set, refuses plain tables.
pub async fn drop_table(
    warehouse: &Warehouse,
    name: &TableName,
    if_exists: bool,
    feature_group: bool,
) -> Result<()> {
    let Some(table) = warehouse.try_load_table(&name.schema, &name.table).await? else {
        if warehouse.views().kind_of(name).await? == Some("view") {
            return Err(Error::Invalid(format!("{name} is a view: use DROP VIEW")));
        }
        return if if_exists {
            Ok(())
        } else if feature_group {
            Err(Error::Invalid(format!(
                "feature group {name} does not exist"
            )))
        } else {
            Err(Error::TableNotFound {
                table: name.to_string(),
            })
        };
    };
    if feature_group && FeatureGroup::from_properties(table.metadata().properties())?.is_none() {
        return Err(Error::Invalid(format!(
            "{name} is a table, not a feature group: use DROP TABLE"
        )));
    }
    warehouse
        .catalog()
        .drop_table(&ident(name))
        .await
        .map_err(Error::iceberg(format!("cannot drop {name}")))
}
