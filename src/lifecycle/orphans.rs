//! `CALL system.remove_orphan_files(table => …, older_than => …, dry_run => …)`:
//! files in a table's folder that no snapshot and no metadata file names
//! (left by killed writers, failed commits, other engines), deleted once
//! older than a time (by default 3 days: a commit under way has written
//! files it has not committed yet, and must not lose them).
//!
//! Names starting with `.` (commit lock, write claims, erase journals) are
//! pitlake's own bookkeeping and never candidates.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use iceberg::table::Table;

use crate::catalog::{TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::{local_path, snapshot_files};

/// Finds (and unless `dry_run`, deletes) the orphan files of `name` last
/// modified before `older_than_ms`; returns their paths, sorted.
pub async fn remove_orphan_files(
    warehouse: &Warehouse,
    name: &TableName,
    older_than_ms: i64,
    dry_run: bool,
) -> Result<Vec<PathBuf>> {
    let table = warehouse.load_table(&name.schema, &name.table).await?;
    let Some(root) = local_path(table.metadata().location()) else {
        return Err(Error::NotSupported(format!(
            "remove_orphan_files on {name}: its files are not in a local folder"
        )));
    };
    // Listed before the references are read: a file committed meanwhile is
    // then referenced, never taken for an orphan.
    let cutoff = SystemTime::UNIX_EPOCH + Duration::from_millis(older_than_ms.max(0) as u64);
    let mut listed = Vec::new();
    list_files(&root, &mut listed);
    let ident = iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(name.schema.clone()),
        name.table.clone(),
    );
    let table = iceberg::Catalog::load_table(warehouse.catalog().as_ref(), &ident)
        .await
        .map_err(Error::iceberg(format!("cannot load {name}")))?;
    let referenced = referenced(&name.to_string(), &table).await?;
    let mut orphans: Vec<PathBuf> = listed
        .into_iter()
        .filter(|(path, modified)| {
            *modified < cutoff && !referenced.contains(&path.display().to_string())
        })
        .map(|(path, _)| path)
        .collect();
    orphans.sort();
    if !dry_run {
        for path in &orphans {
            std::fs::remove_file(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    Ok(orphans)
}

/// Every file under `dir` (not under a `.` name), with its modification time.
fn list_files(dir: &Path, found: &mut Vec<(PathBuf, SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            list_files(&path, found);
        } else if meta.is_file()
            && let Ok(modified) = meta.modified()
        {
            found.push((path, modified));
        }
    }
}

/// The local paths of every file `table`'s metadata names: the metadata
/// files, each snapshot's manifest list, their manifests and data files,
/// statistics files.
async fn referenced(name: &str, table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let files = snapshot_files(name, table, |_| true).await?;
    let named = table
        .metadata_location()
        .into_iter()
        .chain(
            metadata
                .metadata_log()
                .iter()
                .map(|e| e.metadata_file.as_str()),
        )
        .chain(
            metadata
                .statistics_iter()
                .map(|s| s.statistics_path.as_str()),
        )
        .chain(files.manifest_lists.iter().map(String::as_str))
        .chain(files.manifests.iter().map(String::as_str))
        .chain(files.data.iter().map(String::as_str));
    Ok(named
        .map(|location| {
            local_path(location)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| location.to_string())
        })
        .collect())
}
