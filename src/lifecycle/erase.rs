//! `ERASE FROM t WHERE …`: the matching rows leave every snapshot, and the
//! files that held them leave the disk.
//!
//! ```text
//!  every snapshot ─► files whose statistics allow a match ─► each file once:
//!    rows matched? ─► rewritten without them (same order)
//!  commit (catalog/commit): history rewritten (storage/history_writer):
//!    same snapshot ids, parents, sequence numbers, timestamps; manifests
//!    and manifest lists that listed a rewritten file written anew
//!  then deleted: the old data files, manifests, manifest lists and every
//!    earlier metadata file
//! ```
//!
//! A commit that lands during the erase makes it look again: files it has
//! already judged are not read twice, new ones are, and the history is
//! rewritten on the newer table, so a row written meanwhile is erased too or
//! was never there to erase.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::physical_expr::PhysicalExpr;
use futures::FutureExt;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::matching::{Matching, candidates, count_matches, rewrite_without};
use crate::catalog::{self, Change, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::ingest::PendingFiles;
use crate::storage::rewrite_history;

/// What an ERASE did (no values: this is what the audit log keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Distinct rows removed: each matching row of each file, once.
    pub rows: u64,
    /// Data files rewritten (or dropped when nothing of them was left).
    pub files: usize,
    /// Snapshots whose manifest list was rewritten, oldest first.
    pub snapshots: Vec<i64>,
    /// Files deleted from the disk.
    pub deleted_files: usize,
}

/// Times the erase looks again after commits landed meanwhile.
const ROUNDS: u32 = 5;

/// Erases the rows `predicate` (over the table's columns as `schema`)
/// matches from every snapshot of `name`.
pub async fn erase_rows(
    warehouse: &Warehouse,
    name: &TableName,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Erased> {
    let label = name.to_string();
    let table = warehouse.load_table(&name.schema, &name.table).await?;
    let pending = PendingFiles::start(&label, &table)?;
    let mut judged = Judged::default();
    let mut round = 1;
    let outcome = loop {
        let table = warehouse.load_table(&name.schema, &name.table).await?;
        let attempt = async {
            judged
                .look(&label, &table, predicate, schema, &pending)
                .await?;
            if judged.replace.is_empty() {
                return Ok(None);
            }
            commit_history(warehouse, name, &table, &judged)
                .await
                .map(Some)
        }
        .await;
        match attempt {
            Err(Error::Changed { .. }) if round < ROUNDS => round += 1,
            other => break other,
        }
    };
    let committed = match outcome {
        Ok(Some(committed)) => committed,
        Ok(None) => {
            pending.discard();
            return Ok(Erased {
                rows: 0,
                files: 0,
                snapshots: Vec::new(),
                deleted_files: 0,
            });
        }
        Err(e) => {
            pending.discard();
            return Err(e);
        }
    };
    // Committed: what the old history held is garbage now, and must go.
    let old = &committed.before;
    let mut obsolete: Vec<String> = judged.replace.keys().cloned().collect();
    obsolete.extend(committed.replaced.iter().cloned());
    obsolete.extend(
        old.metadata()
            .metadata_log()
            .iter()
            .map(|entry| entry.metadata_file.clone()),
    );
    obsolete.extend(old.metadata_location().map(str::to_string));
    let mut deleted_files = 0;
    for path in &obsolete {
        if old.file_io().delete(path).await.is_ok() {
            deleted_files += 1;
        }
    }
    Ok(Erased {
        rows: judged.rows,
        files: judged.replace.len(),
        snapshots: committed.snapshots,
        deleted_files,
    })
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
        let metadata = table.metadata();
        let current_schema = metadata.current_schema_id();
        let snapshots: Vec<(i64, Option<i32>)> = metadata
            .snapshots()
            .map(|s| (s.snapshot_id(), s.schema_id()))
            .filter(|(id, _)| !self.seen.contains(id))
            .collect();
        for (snapshot_id, schema_id) in snapshots {
            if schema_id.is_some_and(|id| id != current_schema) {
                return Err(Error::NotSupported(format!(
                    "ERASE from {name}: snapshot {snapshot_id} has an older schema; erasing \
                     across schema changes is not supported yet"
                )));
            }
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
                                rewrite_without(name, table, &file, predicate, pending).await?;
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

/// The old history's files a rewrite replaced, and the snapshots it rewrote.
type Rewrote = (Vec<String>, Vec<i64>);

/// A rewritten history, committed.
struct Committed {
    /// The table as it was.
    before: Table,
    /// Manifests and manifest lists of the old history.
    replaced: Vec<String>,
    /// Snapshots rewritten, oldest first.
    snapshots: Vec<i64>,
}

/// Commits `table`'s history with the judged files replaced. A commit that landed after `table` was loaded
/// sends the erase round again ([`Error::Changed`]).
async fn commit_history(
    warehouse: &Warehouse,
    name: &TableName,
    table: &Table,
    judged: &Judged,
) -> Result<Committed> {
    let label = name.to_string();
    let expected = table.metadata_location().map(str::to_string);
    // What the attempt that landed replaced and rewrote.
    let outcome = std::sync::Mutex::new(None::<Rewrote>);
    let (label_ref, expected_ref, outcome_ref) = (&label, &expected, &outcome);
    catalog::commit(warehouse, name, |fresh: Table| {
        async move {
            if fresh.metadata_location().map(str::to_string) != *expected_ref {
                return Err(Error::Changed {
                    table: label_ref.clone(),
                    statement: "ERASE",
                    reason: "another commit landed".into(),
                });
            }
            let history =
                rewrite_history(label_ref, &fresh, &judged.replace, &judged.per_snapshot).await?;
            *outcome_ref.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((history.replaced, history.snapshots));
            Ok(Staged {
                change: Change::Replace(Box::new(history.metadata)),
                written: history.written,
            })
        }
        .boxed()
    })
    .await?;
    let (replaced, snapshots) = outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| Error::Internal(format!("{label}: the erase committed nothing")))?;
    Ok(Committed {
        before: table.clone(),
        replaced,
        snapshots,
    })
}
