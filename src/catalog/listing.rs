//! `SHOW FEATURE GROUPS` and `DESCRIBE FEATURE GROUP`, as result batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::ddl::TableName;
use super::feature_group::FeatureGroup;
use super::time_travel::format_millis;
use super::types::sql_type_name;
use super::warehouse::Warehouse;
use crate::error::{Error, Result};

/// A feature group as `SHOW FEATURE GROUPS` lists it.
struct Listed {
    schema: String,
    name: String,
    fg: FeatureGroup,
    snapshots: i64,
}

/// One row per feature group of `schema` (or of every schema) for which
/// `visible(schema, table)` holds; `published(schema, table)` fills the
/// `published` column.
pub async fn show_feature_groups(
    warehouse: &Warehouse,
    schema: Option<&str>,
    visible: &(dyn Fn(&str, &str) -> bool + Send + Sync),
    published: &(dyn Fn(&str, &str) -> bool + Send + Sync),
) -> Result<RecordBatch> {
    let schemas = match schema {
        Some(s) => {
            if !warehouse.schema_exists(s).await? {
                return Err(Error::SchemaNotFound {
                    schema: s.to_string(),
                });
            }
            vec![s.to_string()]
        }
        None => warehouse.list_schemas().await?,
    };
    let mut rows: Vec<Listed> = Vec::new();
    for s in schemas {
        for t in warehouse.list_tables(&s).await? {
            if !visible(&s, &t) {
                continue;
            }
            let Some(table) = warehouse.try_load_table(&s, &t).await? else {
                continue;
            };
            if let Some(fg) = FeatureGroup::from_properties(table.metadata().properties())? {
                let snapshots =
                    i64::try_from(table.metadata().snapshots().len()).unwrap_or(i64::MAX);
                rows.push(Listed {
                    schema: s.clone(),
                    name: t,
                    fg,
                    snapshots,
                });
            }
        }
    }
    let text = |f: &dyn Fn(&Listed) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|r| Some(r.schema.clone())),
        text(&|r| Some(r.name.clone())),
        text(&|r| Some(r.fg.entity_key.join(", "))),
        text(&|r| Some(r.fg.event_time.clone())),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.fg.online)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.snapshots),
        )),
        text(&|r| r.fg.description.clone()),
        text(&|r| r.fg.owner.clone()),
        text(&|r| (!r.fg.tags.is_empty()).then(|| r.fg.tags.join(","))),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(published(&r.schema, &r.name))),
        )),
    ];
    let schema = Schema::new(vec![
        Field::new("schema_name", DataType::Utf8, false),
        Field::new("feature_group", DataType::Utf8, false),
        Field::new("entity_key", DataType::Utf8, false),
        Field::new("event_time", DataType::Utf8, false),
        Field::new("online", DataType::Boolean, false),
        Field::new("snapshots", DataType::Int64, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("owner", DataType::Utf8, true),
        Field::new("tags", DataType::Utf8, true),
        Field::new("published", DataType::Boolean, false),
    ]);
    RecordBatch::try_new(Arc::new(schema), columns).map_err(Error::arrow("listing feature groups"))
}

/// `property | value` rows describing one feature group and its columns.
pub async fn describe_feature_group(
    warehouse: &Warehouse,
    name: &TableName,
) -> Result<RecordBatch> {
    let table = warehouse
        .try_load_table(&name.schema, &name.table)
        .await?
        .ok_or_else(|| Error::Invalid(format!("feature group {name} does not exist")))?;
    let metadata = table.metadata();
    let fg = FeatureGroup::from_properties(metadata.properties())?.ok_or_else(|| {
        Error::Invalid(format!(
            "{name} is a table, not a feature group: use DESCRIBE {name}"
        ))
    })?;
    let mut rows: Vec<(String, String)> = vec![
        ("feature_group".into(), name.to_string()),
        ("entity_key".into(), fg.entity_key.join(", ")),
        ("event_time".into(), fg.event_time.clone()),
        ("online".into(), fg.online.to_string()),
        ("max_age".into(), fg.max_age.clone().unwrap_or_default()),
        (
            "description".into(),
            fg.description.clone().unwrap_or_default(),
        ),
        ("owner".into(), fg.owner.clone().unwrap_or_default()),
        ("tags".into(), fg.tags.join(",")),
        ("snapshots".into(), metadata.snapshots().len().to_string()),
        (
            "current_snapshot".into(),
            metadata
                .current_snapshot()
                .map(|s| format!("{} ({})", s.snapshot_id(), format_millis(s.timestamp_ms())))
                .unwrap_or_else(|| "none".into()),
        ),
        ("location".into(), metadata.location().to_string()),
    ];
    let schema = iceberg::arrow::schema_to_arrow_schema(metadata.current_schema())
        .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
    let docs = metadata.current_schema().as_struct().fields().iter();
    for (field, doc) in schema.fields().iter().zip(docs.map(|f| f.doc.as_deref())) {
        let role = if fg.entity_key.contains(field.name()) {
            ", entity key"
        } else if &fg.event_time == field.name() {
            ", event time"
        } else {
            ""
        };
        let null = if field.is_nullable() { "" } else { " NOT NULL" };
        let doc = doc.map(|d| format!(" -- {d}")).unwrap_or_default();
        rows.push((
            format!("column {}", field.name()),
            format!("{}{null}{role}{doc}", sql_type_name(field.data_type())),
        ));
    }
    let schema = Schema::new(vec![
        Field::new("property", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
        ],
    )
    .map_err(Error::arrow("describing a feature group"))
}
