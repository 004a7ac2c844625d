//! Schema evolution: adding, renaming, widening and dropping columns as a
//! new current schema, committed with the feature-group properties that
//! name columns. Data files are never rewritten: readers match file columns
//! to the schema by field id, so old snapshots keep their schema and the
//! current one reads every file (see `storage::ReadAt`).

use std::collections::HashSet;
use std::sync::Arc;

use iceberg::TableUpdate;
use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, TableMetadata, Type};
use iceberg::table::Table;

use super::feature_group::FeatureGroup;
use super::{Change, Staged, TableName, Warehouse, commit};
use crate::error::{Error, Result};

/// One change of a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnChange {
    /// A new column, NULL in every row written before it.
    Add {
        name: String,
        /// Nested fields are numbered again when the column is added.
        ty: Type,
        comment: Option<String>,
        if_not_exists: bool,
    },
    Rename {
        from: String,
        to: String,
    },
    /// A widening: INT to BIGINT, REAL to DOUBLE, DECIMAL(P,S) to DECIMAL(P',S) with P' > P.
    SetType {
        column: String,
        ty: PrimitiveType,
    },
    DropNotNull {
        column: String,
    },
    Drop {
        column: String,
        if_exists: bool,
    },
}

/// Applies `changes`, in order, to the columns of `name` as one commit
/// (checked again against the table each attempt finds). Returns the
/// committed table, or None when nothing changed (`IF [NOT] EXISTS`).
pub async fn change_columns(
    warehouse: &Warehouse,
    name: &TableName,
    changes: &[ColumnChange],
) -> Result<Option<Table>> {
    let table = warehouse.load_table(&name.schema, &name.table).await?;
    if evolve(&name.to_string(), table.metadata(), changes)?.is_none() {
        return Ok(None);
    }
    let label = name.to_string();
    let committed = commit(warehouse, name, |table: Table| {
        let evolved = evolve(&label, table.metadata(), changes);
        Box::pin(async move {
            let mut updates = Vec::new();
            if let Some((schema, feature_group)) = evolved? {
                updates.push(TableUpdate::AddSchema { schema });
                updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
                if let Some(fg) = feature_group {
                    updates.push(TableUpdate::SetProperties {
                        updates: fg.to_properties(),
                    });
                }
            }
            Ok(Staged {
                change: Change::Updates(updates),
                written: Vec::new(),
            })
        })
    })
    .await?;
    Ok(Some(committed))
}

/// The schema after `changes` (and the feature-group metadata, when a
/// change renamed its key or event time); None when nothing changes.
pub fn evolve(
    name: &str,
    metadata: &TableMetadata,
    changes: &[ColumnChange],
) -> Result<Option<(Schema, Option<FeatureGroup>)>> {
    let current = metadata.current_schema();
    let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
    let original = FeatureGroup::from_properties(metadata.properties())?;
    let mut feature_group = original.clone();
    let mut next_id = metadata.last_column_id() + 1;
    // Columns a partition spec, sort order or identifier field is made of:
    // dropping one would leave them pointing at nothing.
    let mut structural: HashSet<i32> = current.identifier_field_ids().collect();
    for spec in metadata.partition_specs_iter() {
        structural.extend(spec.fields().iter().map(|f| f.source_id));
    }
    for order in metadata.sort_orders_iter() {
        structural.extend(order.fields.iter().map(|f| f.source_id));
    }
    let position =
        |fields: &[NestedFieldRef], column: &str| fields.iter().position(|f| f.name == column);
    let missing = |column: &str| Error::Invalid(format!("{name} has no column {column}"));
    let role = |fg: &Option<FeatureGroup>, column: &str| -> Option<&'static str> {
        let fg = fg.as_ref()?;
        if fg.entity_key.iter().any(|k| k == column) {
            Some("part of the entity key")
        } else if fg.event_time == column {
            Some("the event time")
        } else {
            None
        }
    };
    let mut changed = false;
    for change in changes {
        match change {
            ColumnChange::Add {
                name: column,
                ty,
                comment,
                if_not_exists,
            } => {
                valid_name(name, column)?;
                if position(&fields, column).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(Error::Invalid(format!(
                        "{name} already has a column {column}"
                    )));
                }
                let id = next_id;
                next_id += 1;
                let ty = super::types::with_fresh_ids(ty, &mut next_id);
                let field = NestedField::optional(id, column, ty);
                let field = match comment {
                    Some(doc) => field.with_doc(doc),
                    None => field,
                };
                fields.push(Arc::new(field));
            }
            ColumnChange::Rename { from, to } => {
                let at = position(&fields, from).ok_or_else(|| missing(from))?;
                valid_name(name, to)?;
                if from == to {
                    continue;
                }
                if position(&fields, to).is_some() {
                    return Err(Error::Invalid(format!(
                        "cannot rename column {from} of {name} to {to}: {name} already has a column {to}"
                    )));
                }
                let mut field = fields[at].as_ref().clone();
                field.name = to.clone();
                fields[at] = Arc::new(field);
                if let Some(fg) = &mut feature_group {
                    for key in &mut fg.entity_key {
                        if key == from {
                            *key = to.clone();
                        }
                    }
                    if &fg.event_time == from {
                        fg.event_time = to.clone();
                    }
                }
            }
            ColumnChange::SetType { column, ty } => {
                let at = position(&fields, column).ok_or_else(|| missing(column))?;
                let Type::Primitive(was) = fields[at].field_type.as_ref() else {
                    return Err(Error::NotSupported(format!(
                        "changing the type of column {column} of {name}, which is not of a primitive type"
                    )));
                };
                if was == ty {
                    continue;
                }
                if !widens(was, ty) {
                    return Err(Error::Invalid(format!(
                        "cannot change column {column} of {name} from {} to {}: only INT to BIGINT, \
                         REAL to DOUBLE and DECIMAL(P,S) to DECIMAL(P',S) with P' > P keep every \
                         value written (add a column and fill it instead)",
                        type_name(was),
                        type_name(ty)
                    )));
                }
                let mut field = fields[at].as_ref().clone();
                field.field_type = Box::new(Type::Primitive(ty.clone()));
                fields[at] = Arc::new(field);
            }
            ColumnChange::DropNotNull { column } => {
                let at = position(&fields, column).ok_or_else(|| missing(column))?;
                if let Some(role) = role(&feature_group, column) {
                    return Err(Error::Invalid(format!(
                        "column {column} of {name} is {role}: it is never NULL"
                    )));
                }
                if !fields[at].required {
                    continue;
                }
                let mut field = fields[at].as_ref().clone();
                field.required = false;
                fields[at] = Arc::new(field);
            }
            ColumnChange::Drop { column, if_exists } => {
                let Some(at) = position(&fields, column) else {
                    if *if_exists {
                        continue;
                    }
                    return Err(missing(column));
                };
                if let Some(role) = role(&feature_group, column) {
                    return Err(Error::Invalid(format!(
                        "cannot drop column {column} of {name}: it is {role}"
                    )));
                }
                if structural.contains(&fields[at].id) {
                    return Err(Error::Invalid(format!(
                        "cannot drop column {column} of {name}: the table is partitioned or \
                         sorted by it"
                    )));
                }
                if fields.len() == 1 {
                    return Err(Error::Invalid(format!(
                        "cannot drop column {column} of {name}: it is the last one"
                    )));
                }
                fields.remove(at);
            }
        }
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let schema = Schema::builder()
        .with_schema_id(current.schema_id())
        .with_fields(fields)
        .with_identifier_field_ids(current.identifier_field_ids())
        .build()
        .map_err(Error::iceberg(format!(
            "cannot change the columns of {name}"
        )))?;
    let renamed = (feature_group != original)
        .then_some(feature_group)
        .flatten();
    Ok(Some((schema, renamed)))
}

/// True for the type changes that keep every value already written
/// (Iceberg's legal promotions).
fn widens(from: &PrimitiveType, to: &PrimitiveType) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (P::Int, P::Long) | (P::Float, P::Double) => true,
        (
            P::Decimal {
                precision: p,
                scale: s,
            },
            P::Decimal {
                precision: q,
                scale: t,
            },
        ) => s == t && q >= p && *q <= 38,
        _ => false,
    }
}

fn valid_name(table: &str, column: &str) -> Result<()> {
    super::types::check_column_name(table, column)
}

/// A type as SQL spells it, for messages.
fn type_name(ty: &PrimitiveType) -> String {
    use PrimitiveType as P;
    match ty {
        P::Int => "INT".into(),
        P::Long => "BIGINT".into(),
        P::Float => "REAL".into(),
        P::Double => "DOUBLE".into(),
        P::String => "VARCHAR".into(),
        P::Boolean => "BOOLEAN".into(),
        P::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        other => other.to_string().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_promotions_that_keep_every_value_widen() {
        use PrimitiveType as P;
        assert!(widens(&P::Int, &P::Long));
        assert!(widens(&P::Float, &P::Double));
        let d = |precision, scale| P::Decimal { precision, scale };
        assert!(widens(&d(10, 2), &d(12, 2)));
        assert!(!widens(&d(10, 2), &d(12, 3)));
        assert!(!widens(&d(12, 2), &d(10, 2)));
        assert!(!widens(&P::Long, &P::Int));
        assert!(!widens(&P::Int, &P::String));
        assert!(!widens(&P::Double, &P::Float));
    }
}
