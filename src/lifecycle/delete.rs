//! `DELETE FROM t WHERE …`: copy-on-write into one new snapshot.
//!
//! ```text
//!  current snapshot ─► files with matching rows ─► each rewritten without them
//!    ─► commit: the manifests listing those files rewritten (the file marked
//!       deleted, its rewrite in its place with its data sequence number),
//!       the others kept ─► snapshot `overwrite` (or `delete` when no row of
//!       a touched file is left)
//! ```
//!
//! Earlier snapshots are untouched: time travel still shows the rows. A
//! commit that lands meanwhile is kept: appends are built upon; if one
//! removed or rewrote a file this delete rewrote, the delete starts again
//! from the newer snapshot (a few times, then it says so).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::physical_expr::PhysicalExpr;
use futures::FutureExt;
use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;

use super::matching::{matching_files, rewrite_without};
use crate::catalog::{self, Change, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::ingest::PendingFiles;
use crate::storage::{SnapshotWriter, current_manifests, delete_files};

/// What a DELETE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub rows: u64,
    /// The new snapshot; `None` when no row matched (nothing committed).
    pub snapshot_id: Option<i64>,
}

/// Times a delete starts again after another writer rewrote its files.
const ROUNDS: u32 = 3;

/// Summary property naming the statement kind (as appends do).
const OPERATION: &str = "pitlake.operation";

/// Deletes the rows of `name`'s current snapshot that `predicate` (over the
/// table's columns as `schema`) matches, as one new snapshot.
pub async fn delete_rows(
    warehouse: &Warehouse,
    name: &TableName,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Removed> {
    let mut round = 1;
    loop {
        let table = warehouse.load_table(&name.schema, &name.table).await?;
        match delete_once(warehouse, name, &table, predicate, schema).await {
            Err(Error::Changed { .. }) if round < ROUNDS => round += 1,
            other => return other,
        }
    }
}

async fn delete_once(
    warehouse: &Warehouse,
    name: &TableName,
    table: &Table,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Removed> {
    let label = name.to_string();
    let Some(snapshot_id) = table.metadata().current_snapshot_id() else {
        return Ok(Removed {
            rows: 0,
            snapshot_id: None,
        });
    };
    let found = matching_files(&label, table, snapshot_id, predicate, schema).await?;
    let rows: u64 = found.iter().map(|f| f.rows).sum();
    if rows == 0 {
        return Ok(Removed {
            rows: 0,
            snapshot_id: None,
        });
    }
    let pending = PendingFiles::start(&label, table)?;
    let rewritten = async {
        let mut replace: HashMap<String, Vec<DataFile>> = HashMap::new();
        for file in &found {
            let files = rewrite_without(&label, table, file, (predicate, schema), &pending).await?;
            replace.insert(file.task.data_file_path.clone(), files);
        }
        Ok::<_, Error>(replace)
    }
    .await;
    let replace = match rewritten {
        Ok(replace) => replace,
        Err(e) => {
            pending.discard();
            return Err(e);
        }
    };
    match commit_rewrite(warehouse, name, &replace).await {
        Ok(committed) => Ok(Removed {
            rows,
            snapshot_id: committed.metadata().current_snapshot_id(),
        }),
        Err(e) => {
            pending.discard();
            Err(e)
        }
    }
}

/// Commits a snapshot in which the files keyed in `replace` give way to
/// their rewrites, on whatever the table is by then.
async fn commit_rewrite(
    warehouse: &Warehouse,
    name: &TableName,
    replace: &HashMap<String, Vec<DataFile>>,
) -> Result<Table> {
    let label = name.to_string();
    let label = &label;
    let operation = if replace.values().all(Vec::is_empty) {
        Operation::Delete
    } else {
        Operation::Overwrite
    };
    catalog::commit(warehouse, name, |table: Table| {
        let operation = operation.clone();
        async move {
            let mut snapshot = SnapshotWriter::new(label, &table)?;
            let built = async {
                let mut rewritten = 0;
                for manifest in current_manifests(label, &table).await? {
                    rewritten += snapshot.carry(manifest, replace).await?.files;
                }
                if rewritten < replace.len() {
                    return Err(Error::Changed {
                        table: label.clone(),
                        statement: "DELETE",
                        reason: format!(
                            "{} of the {} files it rewrote were removed by another commit",
                            replace.len() - rewritten,
                            replace.len()
                        ),
                    });
                }
                Ok(())
            }
            .await;
            if let Err(e) = built {
                delete_files(&table, snapshot.written()).await;
                return Err(e);
            }
            let properties = HashMap::from([(OPERATION.to_string(), "delete".to_string())]);
            let (updates, written) = snapshot.finish(operation, properties).await?;
            Ok(Staged {
                change: Change::Updates(updates),
                written,
            })
        }
        .boxed()
    })
    .await
}
