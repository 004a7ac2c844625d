//! `VACUUM [table]`: removes the data files no snapshot references and no
//! running write claims: what a process killed during a write, or a write
//! whose clean-up failed, left behind.
//!
//! The order of the steps makes a race with a concurrent write harmless: the
//! files are listed first, then the live claims, and only then the snapshots.
//! A file listed in the first step belongs to a write that had already taken
//! its claim; if that claim is gone by the second step, the write has either
//! committed (so the snapshots read in the third step reference the file) or
//! deleted its own files (so removing one again changes nothing).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use iceberg::table::Table;

use super::claim::{CLAIM_PREFIX, Claim};
use crate::error::{Error, Result};
use crate::storage::{local_path, snapshot_files};

/// A file VACUUM removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The folder a table's data files are written to, where that is local.
pub fn data_dir(table: &Table) -> Option<PathBuf> {
    let metadata = table.metadata();
    let properties = metadata.properties();
    let location = properties
        .get("write.data.path")
        .or(properties.get("write.folder-storage.path"))
        .cloned()
        .unwrap_or_else(|| format!("{}/data", metadata.location()));
    local_path(&location)
}

/// Removes the unreferenced, unclaimed data files of `table`; `load` reads
/// the table's current metadata (called after the folder has been listed).
pub async fn vacuum<F, Fut>(table_name: &str, dir: &Path, load: F) -> Result<Vec<Removed>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Table>>,
{
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut files = Vec::new();
    let mut claims = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.file_type().map_err(io)?.is_file() {
            continue;
        }
        match name.strip_prefix(CLAIM_PREFIX) {
            Some(prefix) => claims.push((prefix.to_string(), entry.path())),
            None if name.starts_with('.') => {}
            None => files.push((name, entry.path())),
        }
    }
    let live: Vec<String> = claims
        .into_iter()
        .filter(|(_, path)| Claim::is_alive(path))
        .map(|(prefix, _)| format!("{prefix}-"))
        .collect();
    let referenced = referenced_files(table_name, &load().await?).await?;
    let mut removed = Vec::new();
    for (name, path) in files {
        let claimed = live.iter().any(|prefix| name.starts_with(prefix.as_str()));
        if claimed || referenced.contains(&path) {
            continue;
        }
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(Removed { path, bytes }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    Ok(removed)
}

/// Every data file any snapshot of `table` references (time travel reads
/// them all), as local paths.
async fn referenced_files(name: &str, table: &Table) -> Result<HashSet<PathBuf>> {
    let files = snapshot_files(name, table, |_| true).await?;
    Ok(files
        .data
        .iter()
        .map(|path| local_path(path).unwrap_or_else(|| PathBuf::from(path)))
        .collect())
}
