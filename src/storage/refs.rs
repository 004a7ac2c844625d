//! A table's refs (branches and tags), read from the metadata's JSON form:
//! iceberg-rust keeps the map to itself.

use iceberg::table::Table;

use crate::error::{Error, Result};

/// One branch or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub name: String,
    pub is_branch: bool,
    pub snapshot_id: i64,
    pub max_ref_age_ms: Option<i64>,
    pub min_snapshots_to_keep: Option<i32>,
    pub max_snapshot_age_ms: Option<i64>,
}

/// Every ref of `table`, by name.
pub fn table_refs(table: &Table) -> Result<Vec<TableRef>> {
    let json = serde_json::to_value(table.metadata())
        .map_err(|e| Error::Internal(format!("cannot serialize table metadata: {e}")))?;
    let mut found = Vec::new();
    if let Some(refs) = json.get("refs").and_then(|r| r.as_object()) {
        for (name, r) in refs {
            let int = |k: &str| r.get(k).and_then(serde_json::Value::as_i64);
            found.push(TableRef {
                name: name.clone(),
                is_branch: r.get("type").and_then(|t| t.as_str()) != Some("tag"),
                snapshot_id: int("snapshot-id").unwrap_or_default(),
                max_ref_age_ms: int("max-ref-age-ms"),
                min_snapshots_to_keep: int("min-snapshots-to-keep")
                    .and_then(|v| i32::try_from(v).ok()),
                max_snapshot_age_ms: int("max-snapshot-age-ms"),
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}
