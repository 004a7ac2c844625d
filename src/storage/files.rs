//! The files of a table's snapshots, where they live, and deleting them.

use std::collections::HashSet;
use std::path::PathBuf;

use iceberg::table::Table;

use crate::error::{Error, Result};

/// The local path of a `file://` location; `None` for any other storage.
pub fn local_path(location: &str) -> Option<PathBuf> {
    location.strip_prefix("file://").map(PathBuf::from)
}

/// The files some snapshots of a table use, as their metadata names them.
#[derive(Debug, Default)]
pub struct SnapshotFiles {
    pub manifest_lists: HashSet<String>,
    pub manifests: HashSet<String>,
    /// Data files of any entry, live or marked deleted.
    pub data: HashSet<String>,
}

/// The files of the snapshots of `table` that `include` picks (by id); each
/// manifest is read once however many snapshots list it.
pub async fn snapshot_files(
    name: &str,
    table: &Table,
    include: impl Fn(i64) -> bool,
) -> Result<SnapshotFiles> {
    let context = || format!("cannot read the manifests of {name}");
    let mut files = SnapshotFiles::default();
    for snapshot in table.metadata().snapshots() {
        if !include(snapshot.snapshot_id()) {
            continue;
        }
        files
            .manifest_lists
            .insert(snapshot.manifest_list().to_string());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(Error::iceberg(context()))?;
        for manifest in list.entries() {
            if !files.manifests.insert(manifest.manifest_path.clone()) {
                continue;
            }
            let loaded = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(Error::iceberg(context()))?;
            for entry in loaded.entries() {
                files.data.insert(entry.file_path().to_string());
            }
        }
    }
    Ok(files)
}

/// Best effort: deletes `paths` (locations) through the table's file IO;
/// returns how many went.
pub async fn delete_files<'p>(table: &Table, paths: impl IntoIterator<Item = &'p String>) -> usize {
    let mut deleted = 0;
    for path in paths {
        if table.file_io().delete(path).await.is_ok() {
            deleted += 1;
        }
    }
    deleted
}
