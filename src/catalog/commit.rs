//! The one way a table's metadata changes: appends, deletes, erasures,
//! property and schema changes, refs and maintenance all commit here.
//!
//! ```text
//!  take the table's commit lock (writers of this machine take turns)
//!  loop ─► load the table as the catalog row has it now
//!       ─► build the change against exactly that (files it needs, updates)
//!       ─► write the new metadata file
//!       ─► swap the catalog row: UPDATE … WHERE metadata_location = <loaded>
//!  the row moved meanwhile (another engine, another process):
//!       delete what the attempt wrote, pause a random while, build again
//! ```
//!
//! iceberg 0.10.1 can make only appends, property, schema and expiry commits
//! (its `TableCommit` cannot be built outside the crate); this path applies
//! the public `TableUpdate`s to the public metadata builder, or takes whole
//! new metadata (an erasure rewrites history), and swaps the row itself in
//! the SQL catalog's own layout, which pyiceberg and DuckDB read.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use futures::future::BoxFuture;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{Catalog, MetadataLocation, TableIdent, TableUpdate};

use super::warehouse::{CATALOG_NAME, Warehouse};
use super::{TableName, commit_lock::CommitLock};
use crate::error::{Error, Result};
use crate::storage::{delete_files, local_path};

/// What one attempt would commit, built against the table as loaded.
#[derive(Debug)]
pub struct Staged {
    pub change: Change,
    /// Files the attempt wrote for the change (manifests, manifest lists,
    /// rewritten data files): deleted when the change does not land.
    pub written: Vec<String>,
}

/// How the metadata changes.
#[derive(Debug)]
pub enum Change {
    /// Updates applied in order to the loaded metadata.
    Updates(Vec<TableUpdate>),
    /// Metadata that replaces the loaded one whole (history rewritten).
    Replace(Box<TableMetadata>),
}

/// Attempts at a commit that keeps losing the swap to other writers.
const COMMIT_ATTEMPTS: u32 = 8;

/// Commits the change `build` makes of the table `name` as it is when the
/// attempt starts; on a lost swap, builds it again on the newer table. An
/// error from `build` ends the commit (after deleting nothing: `build` owns
/// what it wrote until it returns a [`Staged`]). Returns the committed table.
pub async fn commit<'a, F>(warehouse: &Warehouse, name: &TableName, mut build: F) -> Result<Table>
where
    F: FnMut(Table) -> BoxFuture<'a, Result<Staged>>,
{
    let ident = TableIdent::new(
        iceberg::NamespaceIdent::new(name.schema.clone()),
        name.table.clone(),
    );
    let context = || format!("cannot commit to {name}");
    let mut attempt = 1;
    loop {
        // Where the table lives, from the statement's (cached) view of it.
        let lock = match warehouse.try_load_table(&name.schema, &name.table).await? {
            Some(seen) => match metadata_dir(&seen) {
                Some(dir) => CommitLock::acquire(&dir).await,
                None => None,
            },
            None => None,
        };
        // What is committed on, as of now (under the lock): the warehouse
        // reloads it when the catalog changed since it was read (see
        // `Warehouse::try_load_table`); a stale one only loses the swap.
        let table = if attempt == 1 {
            warehouse.load_table(&name.schema, &name.table).await?
        } else {
            warehouse
                .catalog()
                .load_table(&ident)
                .await
                .map_err(Error::iceberg(context()))?
        };
        let staged = build(table.clone()).await?;
        let swapped = swap(warehouse, name, &ident, &table, staged.change).await;
        drop(lock);
        match swapped {
            Ok(committed) => return Ok(committed),
            Err(failure) => {
                delete_files(&table, &staged.written).await;
                match failure {
                    Failure::Lost if attempt < COMMIT_ATTEMPTS => {
                        tracing::debug!(table = %name, attempt, "another commit moved the table first; building again");
                        let pause = 10 + rand_below(20 << attempt.min(6));
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                        attempt += 1;
                    }
                    Failure::Lost => {
                        return Err(Error::CommitConflict {
                            table: name.to_string(),
                            attempts: attempt,
                        });
                    }
                    Failure::Failed(e) => return Err(e),
                }
            }
        }
    }
}

/// Why a swap did not happen.
enum Failure {
    /// The catalog row no longer points at the loaded metadata.
    Lost,
    Failed(Error),
}

/// Writes the new metadata and moves the catalog row to it, if the row
/// still points at `table`'s metadata.
async fn swap(
    warehouse: &Warehouse,
    name: &TableName,
    ident: &TableIdent,
    table: &Table,
    change: Change,
) -> std::result::Result<Table, Failure> {
    let failed = |what: &'static str| {
        move |e: iceberg::Error| Failure::Failed(Error::iceberg(format!("{what} {name}"))(e))
    };
    let current = table
        .metadata_location_result()
        .map_err(failed("cannot commit to"))?
        .to_string();
    let metadata = match change {
        Change::Updates(updates) => {
            let mut builder = table.metadata().clone().into_builder(Some(current.clone()));
            for update in updates {
                builder = update.apply(builder).map_err(failed("cannot change"))?;
            }
            builder.build().map_err(failed("cannot change"))?.metadata
        }
        Change::Replace(metadata) => *metadata,
    };
    let location = MetadataLocation::from_str(&current)
        .map_err(failed("cannot commit to"))?
        .with_next_version()
        .with_new_metadata(&metadata);
    metadata
        .write_to(table.file_io(), &location)
        .await
        .map_err(failed("cannot write the new metadata of"))?;
    let location = location.to_string();
    let moved = sqlx::query(
        "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
         WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
           AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
           AND metadata_location = ?",
    )
    .bind(&location)
    .bind(&current)
    .bind(CATALOG_NAME)
    .bind(&name.schema)
    .bind(&name.table)
    .bind(&current)
    .execute(warehouse.db())
    .await;
    let lost_or_failed = match moved {
        Ok(done) if done.rows_affected() == 1 => None,
        Ok(_) => Some(Failure::Lost),
        // The outcome is unknown: the row may have moved all the same, and
        // then the new metadata must stay.
        Err(_) if row_location(warehouse, name).await.as_deref() == Some(location.as_str()) => None,
        Err(e) => Some(Failure::Failed(Error::Io {
            path: warehouse
                .root()
                .join(super::CATALOG_FILE)
                .display()
                .to_string(),
            source: std::io::Error::other(format!(
                "committing to {name}: the catalog database did not record it ({e}; is the \
                 warehouse's disk full or read-only?)"
            )),
        })),
    };
    if let Some(failure) = lost_or_failed {
        let _ = table.file_io().delete(&location).await;
        return Err(failure);
    }
    forget_old_metadata(table, &current, &metadata, &location).await;
    let runtime = iceberg::Runtime::try_current().map_err(failed("cannot open the committed"))?;
    Table::builder()
        .runtime(runtime)
        .metadata(Arc::new(metadata))
        .metadata_location(location)
        .identifier(ident.clone())
        .file_io(table.file_io().clone())
        .build()
        .map_err(failed("cannot open the committed"))
}

/// Where the catalog row of `name` points now; None when it cannot be read.
async fn row_location(warehouse: &Warehouse, name: &TableName) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT metadata_location FROM iceberg_tables \
         WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
           AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
    )
    .bind(CATALOG_NAME)
    .bind(&name.schema)
    .bind(&name.table)
    .fetch_optional(warehouse.db())
    .await
    .ok()
    .flatten()
}

/// Iceberg's table property: delete the metadata files that fall out of
/// the metadata log (which keeps `write.metadata.previous-versions-max`).
const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";

/// Deletes the metadata files the committed `metadata` (at `location`) no
/// longer lists in its log, unless the table says not to. pitlake deletes
/// them by default, unlike Iceberg: every commit writes the whole history
/// of snapshots, and a stream commits every few seconds, so keeping every
/// file grew a warehouse by gigabytes a day. Time travel needs only the
/// current file.
async fn forget_old_metadata(
    table: &Table,
    previous: &str,
    metadata: &TableMetadata,
    location: &str,
) {
    let enabled = metadata
        .properties()
        .get(DELETE_AFTER_COMMIT)
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    if !enabled {
        return;
    }
    let kept: std::collections::HashSet<&str> = metadata
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .chain([location])
        .collect();
    let dropped: Vec<String> = table
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .chain([previous.to_string()])
        .filter(|f| !kept.contains(f.as_str()))
        .collect();
    delete_files(table, &dropped).await;
}

/// The folder of a table's metadata files, where that is local.
pub fn metadata_dir(table: &Table) -> Option<PathBuf> {
    local_path(table.metadata().location()).map(|dir| dir.join("metadata"))
}

/// A number in `0..bound` that differs between processes and calls.
fn rand_below(bound: u64) -> u64 {
    u64::from(uuid::Uuid::new_v4().as_fields().0) % bound.max(1)
}
