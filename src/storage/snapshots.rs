//! Reading a feature group's rows back from Iceberg in ingestion order: files
//! by data sequence number (commit order), then in the order each commit
//! listed them; rows within a file as written.

use std::collections::{HashMap, HashSet};

use arrow::array::{Int64Array, RecordBatch};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
use iceberg::spec::{ManifestStatus, Operation};
use iceberg::table::Table;

use crate::error::{Error, Result};

/// Summary property with the last write-ahead-log record a commit covers.
pub const WAL_LAST_LSN: &str = "pitlake.wal.last-lsn";
/// Summary property with the first write-ahead-log record a commit covers.
pub const WAL_FIRST_LSN: &str = "pitlake.wal.first-lsn";

/// What changed between the snapshot the online store reflects and the
/// table's current one.
#[derive(Debug)]
pub enum Changes {
    /// Nothing.
    None,
    /// Only appends: these snapshots, oldest first.
    Appends(Vec<i64>),
    /// Anything else (a rewrite, a rollback, a schema change): read it all.
    Everything,
}

/// The snapshots committed after `from` up to the current one.
pub fn changes_since(table: &Table, from: Option<i64>, schema_id: i32) -> Changes {
    let metadata = table.metadata();
    let current = metadata.current_snapshot_id();
    if current == from {
        return Changes::None;
    }
    if metadata.current_schema_id() != schema_id {
        return Changes::Everything;
    }
    let mut appended = Vec::new();
    let mut cursor = current;
    while cursor != from {
        let Some(id) = cursor else {
            // `from` is not an ancestor of the current snapshot.
            return Changes::Everything;
        };
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            return Changes::Everything;
        };
        if snapshot.summary().operation != Operation::Append {
            return Changes::Everything;
        }
        appended.push(id);
        cursor = snapshot.parent_snapshot_id();
    }
    appended.reverse();
    Changes::Appends(appended)
}

/// The last write-ahead-log record a snapshot's commit covers, if any.
pub fn wal_last_lsn(table: &Table, snapshot_id: i64) -> Option<u64> {
    summary_lsn(table, snapshot_id, WAL_LAST_LSN)
}

/// The first and last write-ahead-log records a snapshot's commit covers, if
/// it is a commit of streamed records (the first is 1 if not recorded).
pub fn wal_lsn_range(table: &Table, snapshot_id: i64) -> Option<(u64, u64)> {
    let last = wal_last_lsn(table, snapshot_id)?;
    let first = summary_lsn(table, snapshot_id, WAL_FIRST_LSN).unwrap_or(1);
    Some((first, last))
}

fn summary_lsn(table: &Table, snapshot_id: i64, property: &str) -> Option<u64> {
    table
        .metadata()
        .snapshot_by_id(snapshot_id)?
        .summary()
        .additional_properties
        .get(property)?
        .parse()
        .ok()
}

/// The highest write-ahead-log record committed in the current snapshot's
/// history (0 when none is).
pub fn committed_lsn(table: &Table) -> u64 {
    let metadata = table.metadata();
    let mut cursor = metadata.current_snapshot_id();
    while let Some(id) = cursor {
        if let Some(lsn) = wal_last_lsn(table, id) {
            return lsn;
        }
        cursor = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    0
}

/// The rows of the current snapshot (`added_by` = `None`) or only those the
/// given snapshots added, in ingestion order.
pub async fn read_rows(
    name: &str,
    table: &Table,
    added_by: Option<&HashSet<i64>>,
) -> Result<Vec<RecordBatch>> {
    let Some(snapshot_id) = table.metadata().current_snapshot_id() else {
        return Ok(Vec::new());
    };
    read_in_order(name, table, snapshot_id, None, added_by)
        .await?
        .try_collect()
        .await
}

/// The live data files of a snapshot (or only those `added_by` the given
/// snapshots), ranked in ingestion order: by data sequence number (commit
/// order), then in the order their commit listed them.
async fn file_ranks(
    name: &str,
    table: &Table,
    snapshot_id: i64,
    added_by: Option<&HashSet<i64>>,
) -> Result<HashMap<String, i64>> {
    let context = || format!("cannot read {name} in ingestion order");
    let snapshot = table
        .metadata()
        .snapshot_by_id(snapshot_id)
        .ok_or_else(|| Error::SnapshotNotFound {
            table: name.to_string(),
            snapshot_id,
        })?;
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(Error::iceberg(context()))?;
    let mut files: Vec<((i64, usize), String)> = Vec::new();
    for manifest_file in list.entries() {
        let manifest = manifest_file
            .load_manifest(table.file_io())
            .await
            .map_err(Error::iceberg(context()))?;
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            if let Some(wanted) = added_by
                && !(entry.status() == ManifestStatus::Added
                    && entry.snapshot_id().is_some_and(|id| wanted.contains(&id)))
            {
                continue;
            }
            let position = files.len();
            files.push((
                (entry.sequence_number().unwrap_or(0), position),
                entry.data_file().file_path().to_string(),
            ));
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(rank, (_, path))| (path, rank as i64))
        .collect())
}

/// Streams the rows of a snapshot (all of them, or those `added_by` the
/// given snapshots) in ingestion order: files by data sequence number, then
/// as their commit listed them, one file at a time. `columns` selects
/// columns by name (all when `None`).
pub async fn read_in_order(
    name: &str,
    table: &Table,
    snapshot_id: i64,
    columns: Option<&[String]>,
    added_by: Option<&HashSet<i64>>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let context = || format!("cannot read {name} in ingestion order");
    let order = file_ranks(name, table, snapshot_id, added_by).await?;
    if order.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    let builder = table.scan().snapshot_id(snapshot_id);
    let builder = match columns {
        Some(columns) => builder.select(columns.iter()),
        None => builder.select_all(),
    };
    let scan = builder.build().map_err(Error::iceberg(context()))?;
    let mut tasks: Vec<_> = scan
        .plan_files()
        .await
        .map_err(Error::iceberg(context()))?
        .try_filter(|t| futures::future::ready(order.contains_key(&t.data_file_path)))
        .try_collect()
        .await
        .map_err(Error::iceberg(context()))?;
    tasks.sort_by_key(|t| (order[&t.data_file_path], t.start));
    let reader = table
        .reader_builder()
        .with_data_file_concurrency_limit(1)
        .build();
    let stream = reader
        .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
        .map_err(Error::iceberg(context()))?
        .stream();
    let label = name.to_string();
    Ok(stream
        .map_err(move |e| Error::iceberg(format!("cannot read {label} in ingestion order"))(e))
        .boxed())
}

/// Streams the rows of a snapshot, files read in parallel, each row with its
/// place in ingestion order: `(rank of its file << 32) + row within the
/// file`, files ranked by (data sequence number, position in their commit).
/// Within a file rows arrive in order (one task reads it); across files they
/// interleave, and the ordinal says which came first.
///
/// With a `filter`, Iceberg skips files and row groups it rules out and drops
/// rows it rejects (a superset of its rows is read); the ordinals of the rows
/// kept still order them as their ingestion did.
pub async fn read_with_ingest_order(
    name: &str,
    table: &Table,
    snapshot_id: i64,
    columns: &[String],
    filter: Option<Predicate>,
) -> Result<BoxStream<'static, Result<(RecordBatch, Int64Array)>>> {
    use iceberg::metadata_columns::RESERVED_COL_NAME_FILE;
    let context = || format!("cannot read {name} in ingestion order");
    let rank = file_ranks(name, table, snapshot_id, None).await?;
    let mut selected: Vec<&str> = columns.iter().map(String::as_str).collect();
    selected.push(RESERVED_COL_NAME_FILE);
    let scan = table.scan().snapshot_id(snapshot_id).select(selected);
    let scan = match filter {
        Some(filter) => scan.with_filter(filter),
        None => scan,
    };
    let scan = scan.build().map_err(Error::iceberg(context()))?;
    let stream = scan.to_arrow().await.map_err(Error::iceberg(context()))?;
    let label = name.to_string();
    let mut seen: HashMap<i64, i64> = HashMap::new();
    Ok(stream
        .map(move |batch| {
            let batch = batch.map_err(|e| {
                Error::iceberg(format!("cannot read {label} in ingestion order"))(e)
            })?;
            let file_index = batch.num_columns() - 1;
            let path = constant_text(batch.column(file_index)).ok_or_else(|| {
                Error::Internal(format!("{label}: a batch without its data file"))
            })?;
            let file_rank = *rank.get(&path).ok_or_else(|| {
                Error::Internal(format!("{label}: {path} is not in the snapshot"))
            })?;
            let offset = seen.entry(file_rank).or_insert(0);
            let n = batch.num_rows() as i64;
            let base = (file_rank << 32) + *offset;
            *offset += n;
            let mut batch = batch;
            batch.remove_column(file_index);
            Ok((batch, Int64Array::from_iter_values(base..base + n)))
        })
        .boxed())
}

/// The value of a constant text column (`_file`: plain or run-end encoded).
fn constant_text(array: &arrow::array::ArrayRef) -> Option<String> {
    use arrow::array::{Array, AsArray, RunArray};
    use arrow::datatypes::Int32Type;
    if array.is_empty() {
        return Some(String::new());
    }
    if let Some(run) = array.as_any().downcast_ref::<RunArray<Int32Type>>() {
        let values = run.values().as_string_opt::<i32>()?;
        return Some(values.value(0).to_string());
    }
    array.as_string_opt::<i32>().map(|s| s.value(0).to_string())
}
