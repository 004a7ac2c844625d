//! Rewriting a table's history in place: every snapshot keeps its id,
//! parent, sequence number, timestamp and summary, while the data files
//! named in a replacement map give way, in every manifest that lists them,
//! to their rewrites (or to nothing). Used by ERASE.
//!
//! ```text
//!  each snapshot's manifest list ─► manifests listing a replaced file
//!      rewritten (same entries, statuses, snapshot ids and sequence numbers;
//!      the file swapped) ─► manifest lists holding one rewritten, same
//!      snapshot, new path ─► metadata: same snapshots pointing at the new
//!      lists, no metadata log (older metadata files point at the old lists)
//! ```

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    DataFile, FormatVersion, ManifestFile, ManifestListWriter, ManifestStatus,
    ManifestWriterBuilder, TableMetadata,
};
use iceberg::table::Table;

use super::files::delete_files;
use crate::error::{Error, Result};

/// Table property that changes whenever history is rewritten: whoever
/// remembers rows by snapshot id (the online store) reads them again.
pub const HISTORY_PROPERTY: &str = "pitlake.history";

/// A table's history with files replaced, not yet committed.
#[derive(Debug)]
pub struct History {
    pub metadata: TableMetadata,
    /// Manifests and manifest lists written for it.
    pub written: Vec<String>,
    /// Manifests and manifest lists of the old history that it no longer
    /// references.
    pub replaced: Vec<String>,
    /// The snapshots whose manifest list was rewritten, oldest first.
    pub snapshots: Vec<i64>,
    /// The new [`HISTORY_PROPERTY`] value.
    pub mark: String,
}

/// `table`'s history with the files keyed in `replace` swapped for their
/// values; `removed_rows` lowers each snapshot's `total-records`. Files
/// written are deleted again on error.
pub async fn rewrite_history(
    name: &str,
    table: &Table,
    replace: &HashMap<String, Vec<DataFile>>,
    removed_rows: &HashMap<i64, u64>,
) -> Result<History> {
    let mut written = Vec::new();
    let result = rewrite(name, table, replace, removed_rows, &mut written).await;
    if result.is_err() {
        delete_files(table, &written).await;
    }
    result
}

async fn rewrite(
    name: &str,
    table: &Table,
    replace: &HashMap<String, Vec<DataFile>>,
    removed_rows: &HashMap<i64, u64>,
    written: &mut Vec<String>,
) -> Result<History> {
    let context = || format!("cannot rewrite the history of {name}");
    let metadata = table.metadata();
    let commit_id = uuid::Uuid::new_v4();
    let mut snapshots: Vec<_> = metadata.snapshots().cloned().collect();
    snapshots.sort_by_key(|s| s.sequence_number());

    // Each manifest once, however many snapshots list it.
    let mut manifests: HashMap<String, Option<ManifestFile>> = HashMap::new();
    let mut lists: Vec<(i64, Vec<ManifestFile>)> = Vec::new();
    for snapshot in &snapshots {
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(Error::iceberg(context()))?;
        let entries = list.entries().to_vec();
        for manifest in &entries {
            if manifests.contains_key(&manifest.manifest_path) {
                continue;
            }
            let path = format!(
                "{}/metadata/{commit_id}-m{}.avro",
                metadata.location(),
                manifests.len()
            );
            let new = rewrite_manifest(name, table, manifest, replace, &path).await?;
            if new.is_some() {
                written.push(path);
            }
            manifests.insert(manifest.manifest_path.clone(), new);
        }
        lists.push((snapshot.snapshot_id(), entries));
    }

    let mut new_lists: HashMap<i64, String> = HashMap::new();
    let mut replaced: HashSet<String> = HashSet::new();
    for (snapshot_id, entries) in lists {
        if !entries
            .iter()
            .any(|m| manifests[&m.manifest_path].is_some())
        {
            continue;
        }
        let snapshot = metadata
            .snapshot_by_id(snapshot_id)
            .ok_or_else(|| Error::Internal(format!("{name}: snapshot {snapshot_id} vanished")))?;
        let path = format!(
            "{}/metadata/snap-{snapshot_id}-{commit_id}.avro",
            metadata.location()
        );
        let sink = table
            .file_io()
            .new_output(&path)
            .map_err(Error::iceberg(context()))?
            .writer()
            .await
            .map_err(Error::iceberg(context()))?;
        written.push(path.clone());
        let parent = snapshot.parent_snapshot_id();
        let mut writer = match metadata.format_version() {
            FormatVersion::V1 => ManifestListWriter::v1(sink, snapshot_id, parent),
            _ => ManifestListWriter::v2(sink, snapshot_id, parent, snapshot.sequence_number()),
        };
        let substituted = entries
            .into_iter()
            .map(|m| match &manifests[&m.manifest_path] {
                Some(new) => {
                    replaced.insert(m.manifest_path.clone());
                    new.clone()
                }
                None => m,
            });
        writer
            .add_manifests(substituted)
            .map_err(Error::iceberg(context()))?;
        writer.close().await.map_err(Error::iceberg(context()))?;
        replaced.insert(snapshot.manifest_list().to_string());
        new_lists.insert(snapshot_id, path);
    }

    let metadata = with_lists(name, metadata, &new_lists, removed_rows, commit_id)?;
    let mut rewritten: Vec<i64> = new_lists.keys().copied().collect();
    rewritten.sort_by_key(|id| {
        table
            .metadata()
            .snapshot_by_id(*id)
            .map_or(0, |s| s.sequence_number())
    });
    Ok(History {
        metadata,
        written: std::mem::take(written),
        replaced: replaced.into_iter().collect(),
        snapshots: rewritten,
        mark: commit_id.to_string(),
    })
}

/// `manifest` written again at `path` with the files of `replace` swapped,
/// keeping every entry's status, snapshot and sequence numbers; `None`
/// when it lists none of them.
async fn rewrite_manifest(
    name: &str,
    table: &Table,
    manifest: &ManifestFile,
    replace: &HashMap<String, Vec<DataFile>>,
    path: &str,
) -> Result<Option<ManifestFile>> {
    let context = || {
        format!(
            "cannot rewrite manifest {} of {name}",
            manifest.manifest_path
        )
    };
    let loaded = manifest
        .load_manifest(table.file_io())
        .await
        .map_err(Error::iceberg(context()))?;
    if !loaded
        .entries()
        .iter()
        .any(|e| replace.contains_key(e.file_path()))
    {
        return Ok(None);
    }
    let (entries, meta) = loaded.into_parts();
    let output = table
        .file_io()
        .new_output(path)
        .map_err(Error::iceberg(context()))?;
    let builder = ManifestWriterBuilder::new(
        output,
        Some(manifest.added_snapshot_id),
        meta.schema().clone(),
        meta.partition_spec().clone(),
    );
    let mut writer = match table.metadata().format_version() {
        FormatVersion::V1 => builder.build_v1(),
        _ => builder.build_v2_data(),
    };
    for entry in entries {
        let sequence = entry.sequence_number.unwrap_or(manifest.sequence_number);
        let file_sequence = entry.file_sequence_number.or(Some(sequence));
        let files = match replace.get(entry.data_file.file_path()) {
            Some(files) => files.clone(),
            None => vec![entry.data_file.clone()],
        };
        for file in files {
            match entry.status {
                ManifestStatus::Added => writer.add_file(file, sequence),
                ManifestStatus::Existing => writer.add_existing_file(
                    file,
                    entry.snapshot_id.unwrap_or(manifest.added_snapshot_id),
                    sequence,
                    file_sequence,
                ),
                ManifestStatus::Deleted => writer.add_delete_file(file, sequence, file_sequence),
            }
            .map_err(Error::iceberg(context()))?;
        }
    }
    let mut new = writer
        .write_manifest_file()
        .await
        .map_err(Error::iceberg(context()))?;
    // The manifest belongs to the snapshot that first wrote it.
    new.sequence_number = manifest.sequence_number;
    new.min_sequence_number = manifest.min_sequence_number;
    new.added_snapshot_id = manifest.added_snapshot_id;
    Ok(Some(new))
}

/// `metadata` with the snapshots of `lists` pointing at their new manifest
/// lists and their `total-records` lowered by `removed_rows`, marked with a
/// new [`HISTORY_PROPERTY`]; without a
/// metadata log (the files it names point at the old lists) or statistics
/// files (they may hold values).
fn with_lists(
    name: &str,
    metadata: &TableMetadata,
    lists: &HashMap<i64, String>,
    removed_rows: &HashMap<i64, u64>,
    mark: uuid::Uuid,
) -> Result<TableMetadata> {
    let corrupt = |e: serde_json::Error| {
        Error::Internal(format!("{name}: cannot rewrite the table metadata: {e}"))
    };
    let mut json = serde_json::to_value(metadata).map_err(corrupt)?;
    if let Some(snapshots) = json.get_mut("snapshots").and_then(|s| s.as_array_mut()) {
        for snapshot in snapshots {
            let Some(id) = snapshot.get("snapshot-id").and_then(|v| v.as_i64()) else {
                continue;
            };
            if let Some(list) = lists.get(&id) {
                snapshot["manifest-list"] = serde_json::Value::String(list.clone());
            }
            let removed = removed_rows.get(&id).copied().unwrap_or(0);
            if removed > 0
                && let Some(total) = snapshot
                    .get_mut("summary")
                    .and_then(|s| s.get_mut("total-records"))
                && let Some(before) = total.as_str().and_then(|t| t.parse::<u64>().ok())
            {
                *total = serde_json::Value::String(before.saturating_sub(removed).to_string());
            }
        }
    }
    json["metadata-log"] = serde_json::Value::Array(Vec::new());
    if let Some(properties) = json.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.insert(
            HISTORY_PROPERTY.to_string(),
            serde_json::Value::String(mark.to_string()),
        );
    } else {
        json["properties"] = serde_json::json!({ HISTORY_PROPERTY: mark.to_string() });
    }
    for statistics in ["statistics", "partition-statistics"] {
        if json.get(statistics).is_some() {
            json[statistics] = serde_json::Value::Array(Vec::new());
        }
    }
    json["last-updated-ms"] = serde_json::Value::from(chrono::Utc::now().timestamp_millis());
    serde_json::from_value(json).map_err(corrupt)
}
