//! `ERASE FROM t WHERE …`: the matching rows leave every snapshot, and the
//! files that held them leave the disk.
//!
//! ```text
//!  every snapshot ─► files whose statistics allow a match ─► each file once:
//!    rows matched? ─► rewritten without them (same order)
//!  commit (catalog/commit), under the table's commit lock: snapshots that
//!    landed meanwhile looked at the same way, then history rewritten
//!    (storage/history_writer): same snapshot ids, parents, sequence numbers,
//!    timestamps; manifests and manifest lists that listed a rewritten file
//!    written anew; a journal of the files the old history used
//!  then (after the caller's audit record) deleted: those files (old data
//!    files, manifests, manifest lists, every older metadata file), then the
//!    journal
//! ```
//!
//! A process killed between the commit and the deletions leaves the journal:
//! the next ERASE of the table, or VACUUM, finishes the deletions. A
//! commit that lands during the erase is looked at inside the commit, so a
//! row written meanwhile is erased too; the erase never fails for it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::physical_expr::PhysicalExpr;
use futures::FutureExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::matching::{Matching, candidates, count_matches, rewrite_without};
use crate::catalog::{self, Change, Staged, TableName, Warehouse, metadata_dir};
use crate::error::{Error, Result};
use crate::ingest::PendingFiles;
use crate::storage::{HISTORY_PROPERTY, delete_files, rewrite_history};

/// What an ERASE did (no values: this is what the audit log keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Distinct rows removed: each matching row of each file, once.
    pub rows: u64,
    /// Data files rewritten (or dropped when nothing of them was left).
    pub files: usize,
    /// Snapshots whose manifest list was rewritten, oldest first.
    pub snapshots: Vec<i64>,
    /// Files of the old history to delete (see [`Erasure::finish`]).
    pub obsolete: usize,
}

/// A committed erasure whose old files are still on disk.
#[derive(Debug)]
pub struct Erasure {
    pub erased: Erased,
    table: Option<Table>,
    journal: Option<PathBuf>,
    obsolete: Vec<String>,
}

impl Erasure {
    /// Deletes the old history's files, then the journal; returns how many
    /// files went.
    pub async fn finish(self) -> usize {
        let Some(table) = self.table else {
            return 0;
        };
        let deleted = delete_files(&table, &self.obsolete).await;
        if let Some(journal) = self.journal {
            let _ = std::fs::remove_file(journal);
        }
        deleted
    }
}

/// Erases the rows `predicate` (over the table's columns as `schema`)
/// matches from every snapshot of `name`. The old files stay until
/// [`Erasure::finish`].
pub async fn erase_rows(
    warehouse: &Warehouse,
    name: &TableName,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Erasure> {
    let label = name.to_string();
    let table = warehouse.load_table(&name.schema, &name.table).await?;
    finish_journals(&table).await;
    let pending = PendingFiles::start(&label, &table)?;
    let judged = tokio::sync::Mutex::new(Judged::default());
    let looked = judged
        .lock()
        .await
        .look(&label, &table, predicate, schema, &pending)
        .await;
    if let Err(e) = looked {
        pending.discard();
        return Err(e);
    }
    if judged.lock().await.replace.is_empty() {
        pending.discard();
        return Ok(Erasure {
            erased: Erased {
                rows: 0,
                files: 0,
                snapshots: Vec::new(),
                obsolete: 0,
            },
            table: None,
            journal: None,
            obsolete: Vec::new(),
        });
    }
    let outcome = std::sync::Mutex::new(None::<(History, Table)>);
    let (label_ref, judged_ref, outcome_ref, pending_ref) = (&label, &judged, &outcome, &pending);
    let committed = catalog::commit(warehouse, name, |fresh: Table| {
        async move {
            let mut judged = judged_ref.lock().await;
            // Commits that landed since: their files judged too.
            judged
                .look(label_ref, &fresh, predicate, schema, pending_ref)
                .await?;
            let history =
                rewrite_history(label_ref, &fresh, &judged.replace, &judged.per_snapshot).await?;
            let mut obsolete: Vec<String> = judged.replace.keys().cloned().collect();
            obsolete.extend(history.replaced.iter().cloned());
            obsolete.extend(older_metadata(&fresh));
            let mut written = history.written.clone();
            let journal = write_journal(&fresh, &history.mark, &obsolete)?;
            if let Some(journal) = &journal {
                written.push(format!("file://{}", journal.display()));
            }
            let done = History {
                obsolete,
                snapshots: history.snapshots.clone(),
                journal,
            };
            *outcome_ref.lock().unwrap_or_else(|e| e.into_inner()) = Some((done, fresh));
            Ok(Staged {
                change: Change::Replace(Box::new(history.metadata)),
                written,
            })
        }
        .boxed()
    })
    .await;
    if let Err(e) = committed {
        pending.discard();
        return Err(e);
    }
    let (done, _before) = outcome
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or_else(|| Error::Internal(format!("{label}: the erase committed nothing")))?;
    let judged = judged.into_inner();
    Ok(Erasure {
        erased: Erased {
            rows: judged.rows,
            files: judged.replace.len(),
            snapshots: done.snapshots,
            obsolete: done.obsolete.len(),
        },
        table: Some(table),
        journal: done.journal,
        obsolete: done.obsolete,
    })
}

/// What the landed attempt rewrote and left to delete.
struct History {
    obsolete: Vec<String>,
    snapshots: Vec<i64>,
    journal: Option<PathBuf>,
}

/// What the erase knows of the files it has looked at.
#[derive(Default)]
struct Judged {
    /// Every file read, with its matching rows.
    matches: HashMap<String, u64>,
    /// The files with matches, and what replaces them.
    replace: HashMap<String, Vec<DataFile>>,
    /// Matching rows live in each snapshot (for its `total-records`).
    per_snapshot: HashMap<i64, u64>,
    /// Distinct matching rows.
    rows: u64,
    /// The snapshots looked at.
    seen: HashSet<i64>,
}

impl Judged {
    /// Looks at every snapshot of `table` not seen yet.
    async fn look(
        &mut self,
        name: &str,
        table: &Table,
        predicate: &Arc<dyn PhysicalExpr>,
        schema: &Schema,
        pending: &PendingFiles,
    ) -> Result<()> {
        let snapshots: Vec<i64> = table
            .metadata()
            .snapshots()
            .map(|s| s.snapshot_id())
            .filter(|id| !self.seen.contains(id))
            .collect();
        for snapshot_id in snapshots {
            let mut live = 0;
            for task in candidates(name, table, snapshot_id, predicate, schema).await? {
                let path = task.data_file_path.clone();
                let rows = match self.matches.get(&path) {
                    Some(rows) => *rows,
                    None => {
                        let rows = count_matches(name, table, &task, predicate, schema).await?;
                        if rows > 0 {
                            let file = Matching { task, rows };
                            let files =
                                rewrite_without(name, table, &file, (predicate, schema), pending)
                                    .await?;
                            self.replace.insert(path.clone(), files);
                            self.rows += rows;
                        }
                        self.matches.insert(path, rows);
                        rows
                    }
                };
                live += rows;
            }
            self.per_snapshot.insert(snapshot_id, live);
            self.seen.insert(snapshot_id);
        }
        Ok(())
    }
}

/// File name prefix of an erase's journal, in the table's metadata folder.
const JOURNAL_PREFIX: &str = ".erase-";

/// Writes (durably) the journal of an erase about to commit: its history
/// mark and the files to delete once it has. `None` for a table whose
/// metadata is not in a local folder (its old files are then deleted only
/// by the erase itself).
fn write_journal(table: &Table, mark: &str, obsolete: &[String]) -> Result<Option<PathBuf>> {
    let Some(dir) = metadata_dir(table) else {
        return Ok(None);
    };
    let path = dir.join(format!("{JOURNAL_PREFIX}{mark}.json"));
    let text = serde_json::json!({ "mark": mark, "obsolete": obsolete }).to_string();
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::create(&path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Some(path))
}

/// Finishes the erasures of `table` a killed process left: a journal whose
/// mark the table carries committed, and its files go; any other never
/// committed, and only the journal goes.
pub async fn finish_journals(table: &Table) -> usize {
    let Some(dir) = metadata_dir(table) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let current = table.metadata().properties().get(HISTORY_PROPERTY).cloned();
    let mut deleted = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().to_string();
        if !file_name.starts_with(JOURNAL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(journal) = serde_json::from_str::<serde_json::Value>(&text) else {
            // Torn: written before its commit could start, so never committed.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let mark = journal.get("mark").and_then(|m| m.as_str());
        if mark.is_some() && mark == current.as_deref() {
            let obsolete: Vec<String> = journal
                .get("obsolete")
                .and_then(|o| o.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            deleted += delete_files(table, &obsolete).await;
        }
        let _ = std::fs::remove_file(&path);
    }
    deleted
}

/// The metadata files of `table` up to its current one: after an erase
/// commits, every one of them names files (and row counts) of the old
/// history.
fn older_metadata(table: &Table) -> Vec<String> {
    let Some(current) = table.metadata_location() else {
        return Vec::new();
    };
    let Some(version) = metadata_version(current) else {
        return vec![current.to_string()];
    };
    let Some(dir) = metadata_dir(table) else {
        let mut old: Vec<String> = table
            .metadata()
            .metadata_log()
            .iter()
            .map(|entry| entry.metadata_file.clone())
            .collect();
        old.push(current.to_string());
        return old;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![current.to_string()];
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| metadata_version(&path.to_string_lossy()).is_some_and(|v| v <= version))
        .map(|path| format!("file://{}", path.display()))
        .collect()
}

/// The version number of a metadata file (`00042-<uuid>.metadata.json`).
fn metadata_version(location: &str) -> Option<u64> {
    let file = Path::new(location).file_name()?.to_str()?;
    if !file.contains(".metadata.json") {
        return None;
    }
    let (digits, _) = file.split_once('-')?;
    digits.parse().ok()
}
