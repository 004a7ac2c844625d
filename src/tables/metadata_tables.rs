//! Iceberg metadata tables, with Trino's names and columns:
//! `"t$snapshots"`, `"t$history"`, `"t$refs"` and `"t$files"`.
//! `$snapshots` adds `sequence_number`, which orders commits even when two
//! share a millisecond.
//!
//! Each is built from the table's metadata when a query names it and served as
//! an in-memory table, so projections and filters behave as on any table.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, MapBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::storage::table_refs;

/// The metadata tables a table name may carry after `$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataTable {
    Snapshots,
    History,
    Refs,
    Files,
}

impl MetadataTable {
    pub const ALL: [MetadataTable; 4] = [Self::Snapshots, Self::History, Self::Refs, Self::Files];

    pub fn suffix(self) -> &'static str {
        match self {
            Self::Snapshots => "snapshots",
            Self::History => "history",
            Self::Refs => "refs",
            Self::Files => "files",
        }
    }

    /// Splits `t$snapshots` into `("t", Snapshots)`; `None` when there is no `$`.
    pub fn split(name: &str) -> Option<Result<(&str, MetadataTable)>> {
        let (table, suffix) = name.rsplit_once('$')?;
        let kind = Self::ALL.into_iter().find(|k| k.suffix() == suffix);
        Some(kind.map(|k| (table, k)).ok_or_else(|| {
            let known: Vec<String> = Self::ALL
                .iter()
                .map(|k| format!("${}", k.suffix()))
                .collect();
            Error::Invalid(format!(
                "unknown metadata table ${suffix} of {table} (known: {})",
                known.join(", ")
            ))
        }))
    }

    /// Builds the metadata table of `table` as it is now.
    pub async fn build(self, table: &Table) -> Result<MemTable> {
        let batch = match self {
            Self::Snapshots => snapshots(table)?,
            Self::History => history(table)?,
            Self::Refs => refs(table)?,
            Self::Files => files(table).await?,
        };
        MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(Error::from)
    }
}

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns)
        .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))
}

/// `$snapshots`: every snapshot, oldest first.
fn snapshots(table: &Table) -> Result<RecordBatch> {
    let mut snaps: Vec<_> = table.metadata().snapshots().cloned().collect();
    snaps.sort_by_key(|s| (s.timestamp_ms(), s.sequence_number()));

    let mut summary = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for s in &snaps {
        let sorted: BTreeMap<_, _> = s.summary().additional_properties.iter().collect();
        for (k, v) in sorted {
            summary.keys().append_value(k);
            summary.values().append_value(v);
        }
        summary
            .append(true)
            .map_err(|e| Error::from(datafusion::error::DataFusionError::from(e)))?;
    }
    let summary = Arc::new(summary.finish()) as ArrayRef;
    let summary_field = Field::new("summary", summary.data_type().clone(), true);
    batch(
        vec![
            Field::new("committed_at", utc_millis(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("operation", DataType::Utf8, true),
            Field::new("manifest_list", DataType::Utf8, true),
            summary_field,
            Field::new("sequence_number", DataType::Int64, false),
        ],
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(snaps.iter().map(|s| s.timestamp_ms()))
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                snaps.iter().map(|s| s.snapshot_id()),
            )),
            Arc::new(Int64Array::from_iter(
                snaps.iter().map(|s| s.parent_snapshot_id()),
            )),
            Arc::new(StringArray::from_iter_values(
                snaps.iter().map(|s| s.summary().operation.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                snaps.iter().map(|s| s.manifest_list()),
            )),
            summary,
            Arc::new(Int64Array::from_iter_values(
                snaps.iter().map(|s| s.sequence_number()),
            )),
        ],
    )
}

/// `$history`: when each snapshot became current, and whether it is an ancestor
/// of the current snapshot (a rollback leaves non-ancestors behind).
fn history(table: &Table) -> Result<RecordBatch> {
    let metadata = table.metadata();
    let mut ancestors = HashSet::new();
    let mut cursor = metadata.current_snapshot_id();
    while let Some(id) = cursor {
        if !ancestors.insert(id) {
            break;
        }
        cursor = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    let log = metadata.history();
    let parent = |id: i64| {
        metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id())
    };
    batch(
        vec![
            Field::new("made_current_at", utc_millis(), false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("parent_id", DataType::Int64, true),
            Field::new("is_current_ancestor", DataType::Boolean, false),
        ],
        vec![
            Arc::new(
                TimestampMillisecondArray::from_iter_values(log.iter().map(|e| e.timestamp_ms))
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                log.iter().map(|e| e.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter(
                log.iter().map(|e| parent(e.snapshot_id)),
            )),
            Arc::new(BooleanArray::from_iter(
                log.iter().map(|e| Some(ancestors.contains(&e.snapshot_id))),
            )),
        ],
    )
}

/// `$refs`: branches and tags.
fn refs(table: &Table) -> Result<RecordBatch> {
    struct Ref {
        name: String,
        kind: String,
        snapshot_id: i64,
        max_ref_age: Option<i64>,
        min_snapshots: Option<i32>,
        max_snapshot_age: Option<i64>,
    }
    let rows: Vec<Ref> = table_refs(table)?
        .into_iter()
        .map(|r| Ref {
            kind: if r.is_branch { "BRANCH" } else { "TAG" }.to_string(),
            name: r.name,
            snapshot_id: r.snapshot_id,
            max_ref_age: r.max_ref_age_ms,
            min_snapshots: r.min_snapshots_to_keep,
            max_snapshot_age: r.max_snapshot_age_ms,
        })
        .collect();
    batch(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("snapshot_id", DataType::Int64, false),
            Field::new("max_reference_age_in_ms", DataType::Int64, true),
            Field::new("min_snapshots_to_keep", DataType::Int32, true),
            Field::new("max_snapshot_age_in_ms", DataType::Int64, true),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.kind.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.snapshot_id),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.max_ref_age))),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.min_snapshots))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.max_snapshot_age),
            )),
        ],
    )
}

/// `$files`: the live data and delete files of the current snapshot.
async fn files(table: &Table) -> Result<RecordBatch> {
    let mut content = Vec::new();
    let mut path = Vec::new();
    let mut format = Vec::new();
    let mut records = Vec::new();
    let mut size = Vec::new();
    if let Some(snapshot) = table.metadata().current_snapshot() {
        let context = format!("cannot read the manifests of {}", table.identifier());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(Error::iceberg(context.clone()))?;
        for manifest_file in list.entries() {
            let manifest = manifest_file
                .load_manifest(table.file_io())
                .await
                .map_err(Error::iceberg(context.clone()))?;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let file = entry.data_file();
                content.push(file.content_type() as i32);
                path.push(file.file_path().to_string());
                format.push(file.file_format().to_string().to_uppercase());
                records.push(i64::try_from(file.record_count()).unwrap_or(i64::MAX));
                size.push(i64::try_from(file.file_size_in_bytes()).unwrap_or(i64::MAX));
            }
        }
    }
    batch(
        vec![
            Field::new("content", DataType::Int32, false),
            Field::new("file_path", DataType::Utf8, false),
            Field::new("file_format", DataType::Utf8, false),
            Field::new("record_count", DataType::Int64, false),
            Field::new("file_size_in_bytes", DataType::Int64, false),
        ],
        vec![
            Arc::new(Int32Array::from(content)),
            Arc::new(StringArray::from(path)),
            Arc::new(StringArray::from(format)),
            Arc::new(Int64Array::from(records)),
            Arc::new(Int64Array::from(size)),
        ],
    )
}
