//! Reading a feature group's rows back from Iceberg in ingestion order: files
//! by data sequence number (commit order), then in the order each commit
//! listed them; rows within a file as written.

use std::collections::{HashMap, HashSet};

use arrow::array::{Int64Array, RecordBatch};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::{Bind, Predicate};

use super::piece_reader::{RowTest, read_tested};
use super::read_at::{ReadAt, fill, for_reader, plan_tasks, read_schema};
use iceberg::scan::FileScanTask;
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
    /// Anything else (a delete, a rollback, a schema change): read it all.
    Everything,
}

/// The snapshots committed after `from` up to the current one.
pub fn changes_since(table: &Table, from: Option<i64>, schema_id: i32) -> Changes {
    let metadata = table.metadata();
    let current = metadata.current_snapshot_id();
    // A change of columns commits no snapshot.
    if metadata.current_schema_id() != schema_id {
        return Changes::Everything;
    }
    if current == from {
        return Changes::None;
    }
    let mut appended = Vec::new();
    let mut compacted = false;
    let mut cursor = current;
    while cursor != from {
        let Some(id) = cursor else {
            // `from` is not an ancestor of the current snapshot.
            return Changes::Everything;
        };
        let Some(snapshot) = metadata.snapshot_by_id(id) else {
            return Changes::Everything;
        };
        match snapshot.summary().operation {
            // An append before a compaction: its files may be gone into
            // the compaction's, whose rows are not told apart.
            Operation::Append if compacted => return Changes::Everything,
            Operation::Append => appended.push(id),
            // The same rows in other files (a compaction): nothing to read.
            Operation::Replace => compacted = true,
            _ => return Changes::Everything,
        }
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
/// given snapshots added, in ingestion order, with the current schema.
pub async fn read_rows(
    name: &str,
    table: &Table,
    added_by: Option<&HashSet<i64>>,
) -> Result<Vec<RecordBatch>> {
    let Some(at) = ReadAt::current(table) else {
        return Ok(Vec::new());
    };
    read_in_order(name, table, &at, None, added_by)
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
/// columns of `at`'s schema by name (all when `None`).
pub async fn read_in_order(
    name: &str,
    table: &Table,
    at: &ReadAt,
    columns: Option<&[String]>,
    added_by: Option<&HashSet<i64>>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let context = || format!("cannot read {name} in ingestion order");
    let order = file_ranks(name, table, at.snapshot_id, added_by).await?;
    if order.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    let mut tasks = plan_tasks(name, table, at, columns, None).await?;
    tasks.retain(|t| order.contains_key(&t.data_file_path));
    tasks.sort_by_key(|t| (order[&t.data_file_path], t.start));
    let schema = read_schema(name, at, columns)?;
    read_tasks(table, tasks, schema, context())
}

/// Streams the rows `tasks` read, one file after another, each batch with
/// `schema`'s columns (see [`fill`]); errors say `context`.
fn read_tasks(
    table: &Table,
    tasks: Vec<FileScanTask>,
    schema: arrow::datatypes::SchemaRef,
    context: String,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let reader = table
        .reader_builder()
        .with_data_file_concurrency_limit(1)
        .build();
    let stream = reader
        .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
        .map_err(Error::iceberg(context.clone()))?
        .stream();
    Ok(stream
        .map_err(move |e| Error::iceberg(context.clone())(e))
        .map(move |batch| batch.and_then(|b| fill(b, &schema)))
        .boxed())
}

/// Streams the rows of the data files `paths` of `at`'s snapshot, file
/// after file in the order given, with `at`'s schema.
pub async fn read_files(
    name: &str,
    table: &Table,
    at: &ReadAt,
    paths: &[String],
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let context = || format!("cannot read data files of {name}");
    let order: HashMap<&str, usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let mut tasks = plan_tasks(name, table, at, None, None).await?;
    tasks.retain(|t| order.contains_key(t.data_file_path.as_str()));
    if tasks.len() != paths.len() {
        return Err(Error::Changed {
            table: name.to_string(),
            statement: "a rewrite of data files",
            reason: "a file to read is no longer in the snapshot".into(),
        });
    }
    tasks.sort_by_key(|t| (order[t.data_file_path.as_str()], t.start));
    let schema = read_schema(name, at, None)?;
    read_tasks(table, tasks, schema, context())
}

/// One piece of a snapshot's scan: a whole data file, or a run of row groups
/// of a large one, with the place in ingestion order of its first row.
#[derive(Debug, Clone)]
pub struct ScanPiece {
    task: FileScanTask,
    /// `(rank of the file << 32) + rows of the file before this piece`.
    first: i64,
}

/// A snapshot's scan split into `partitions` shares of about equal bytes,
/// each a list of [`ScanPiece`]s: the files (those a `filter` does not rule
/// out by their statistics) ranked in ingestion order (data sequence number,
/// then position in their commit) and, with more than one partition, files
/// of several row groups cut at row-group boundaries (read from the file's
/// footer), so one large file is read by every partition.
///
/// Each row keeps its exact place in ingestion order however the pieces are
/// shared: `(rank of its file << 32) + row within the file`, counted from the
/// piece's first row (see [`read_pieces`]).
///
/// The Parquet reader of each piece gets `reading` instead of `filter` (a
/// predicate no narrower, cheaper row by row; None: it filters nothing).
pub async fn plan_pieces(
    name: &str,
    table: &Table,
    at: &ReadAt,
    columns: &[String],
    (filter, reading): (Option<Predicate>, Option<Predicate>),
    partitions: usize,
) -> Result<Vec<Vec<ScanPiece>>> {
    let partitions = partitions.max(1);
    let rank = file_ranks(name, table, at.snapshot_id, None).await?;
    let mut tasks: Vec<(i64, FileScanTask)> = plan_tasks(name, table, at, Some(columns), filter)
        .await?
        .into_iter()
        .map(|task| match rank.get(&task.data_file_path) {
            Some(r) => Ok((*r, task)),
            None => Err(Error::Internal(format!(
                "{name}: {} is not in the snapshot",
                task.data_file_path
            ))),
        })
        .collect::<Result<_>>()?;
    tasks.sort_by_key(|(rank, task)| (*rank, task.start));
    // Bound to the schema the rows are read with; a predicate that does not
    // bind filters nothing here (whoever pushed it applies it).
    let reading = reading
        .as_ref()
        .and_then(|r| for_reader(table, &at.schema, r))
        .and_then(|r| r.bind(at.schema.clone(), true).ok());
    let mut pieces = Vec::new();
    for (rank, mut task) in tasks {
        task.predicate = reading.clone();
        if partitions > 1 && task.length >= 2 * MIN_PIECE_BYTES {
            pieces.extend(split_by_row_groups(name, table, rank, task).await?);
        } else {
            pieces.push(ScanPiece {
                first: rank << 32,
                task,
            });
        }
    }
    // Each piece to the share with the fewest bytes so far: every partition
    // reads about as much, and each reads its pieces in ingestion order.
    let mut shares: Vec<(u64, Vec<ScanPiece>)> = vec![(0, Vec::new()); partitions];
    for piece in pieces {
        let (bytes, share) = shares
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one partition");
        *bytes += piece.task.length;
        share.push(piece);
    }
    Ok(shares.into_iter().map(|(_, share)| share).collect())
}

/// A piece of a file holds row groups of at least this many bytes together
/// (each piece opens the file and reads its footer again).
const MIN_PIECE_BYTES: u64 = 1 << 20;

/// The pieces of `task`'s file: runs of whole row groups of at least
/// [`MIN_PIECE_BYTES`] (the last may be smaller). The Iceberg reader takes a
/// row group into a piece when its middle lies in the piece's byte range,
/// reckoning row groups as laid end to end after the 4-byte magic number by
/// their compressed sizes; the ranges here are reckoned the same way.
async fn split_by_row_groups(
    name: &str,
    table: &Table,
    rank: i64,
    task: FileScanTask,
) -> Result<Vec<ScanPiece>> {
    let context = || format!("cannot read the footer of a data file of {name}");
    let metadata = parquet_footer(table, &task.data_file_path, task.file_size_in_bytes)
        .await
        .map_err(Error::unavailable(context()))?;
    let groups = metadata.row_groups();
    if groups.len() < 2 {
        return Ok(vec![ScanPiece {
            first: rank << 32,
            task,
        }]);
    }
    let mut pieces = Vec::new();
    // The piece being gathered: its first byte and row, and its bytes so far.
    let (mut start, mut first, mut bytes) = (4u64, 0i64, 0u64);
    let mut rows = 0i64;
    for (i, group) in groups.iter().enumerate() {
        bytes += u64::try_from(group.compressed_size()).unwrap_or(0);
        rows += group.num_rows();
        if bytes >= MIN_PIECE_BYTES || i + 1 == groups.len() {
            let mut piece = task.clone();
            piece.start = start;
            piece.length = bytes;
            piece.record_count = None;
            pieces.push(ScanPiece {
                task: piece,
                first: (rank << 32) + first,
            });
            (start, first, bytes) = (start + bytes, rows, 0);
        }
    }
    Ok(pieces)
}

/// The Parquet footer of a data file.
pub(super) async fn parquet_footer(
    table: &Table,
    path: &str,
    size: u64,
) -> std::result::Result<parquet::file::metadata::ParquetMetaData, String> {
    use parquet::file::metadata::ParquetMetaDataReader;
    let input = table.file_io().new_input(path).map_err(|e| e.to_string())?;
    let reader = input.reader().await.map_err(|e| e.to_string())?;
    if size < 12 {
        return Err(format!("{path} is too short for a Parquet file"));
    }
    let tail = reader
        .read(size - 8..size)
        .await
        .map_err(|e| e.to_string())?;
    let tail: [u8; 8] = tail
        .as_ref()
        .try_into()
        .map_err(|_| format!("{path}: short read"))?;
    let length = parquet::file::metadata::FooterTail::try_from(tail)
        .map_err(|e| e.to_string())?
        .metadata_length() as u64;
    if length + 8 > size {
        return Err(format!("{path}: footer longer than the file"));
    }
    let footer = reader
        .read(size - 8 - length..size - 8)
        .await
        .map_err(|e| e.to_string())?;
    ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| e.to_string())
}

/// Streams the rows of `pieces` (one partition's share of [`plan_pieces`]),
/// one piece after another, batches of up to `batch_size` rows, each row
/// with its place in ingestion order. The filter the pieces were planned
/// with skips row groups and drops the rows it rejects (a superset of its
/// rows is read); the places of the rows kept still order them as their
/// ingestion did. With a `test`, pieces that can be are read with it as
/// their row filter (see [`RowTest`]); it only ever drops rows.
///
/// A file deleted while it is read (by ERASE, expiry or VACUUM of the
/// snapshot the query pinned) is said to be so: the query can run again.
pub fn read_pieces(
    name: &str,
    table: &Table,
    (pieces, schema): (Vec<ScanPiece>, arrow::datatypes::SchemaRef),
    test: Option<RowTest>,
    batch_size: usize,
) -> BoxStream<'static, Result<(RecordBatch, Int64Array)>> {
    let reader = table
        .reader_builder()
        .with_data_file_concurrency_limit(1)
        .with_batch_size(batch_size)
        .build();
    let label = name.to_string();
    let table = table.clone();
    futures::stream::iter(pieces)
        .then(move |piece| {
            let (reader, label, schema) = (reader.clone(), label.clone(), schema.clone());
            let (table, test) = (table.clone(), test.clone());
            let path = piece.task.data_file_path.clone();
            async move {
                let own = test.is_some();
                let tested = match own {
                    true => read_tested(
                        &label,
                        &table,
                        &piece.task,
                        &schema,
                        test.as_ref(),
                        batch_size,
                    )
                    .await
                    .map_err(|e| failed_read(&label, &path, e))?,
                    false => None,
                };
                let batches = match tested {
                    Some(batches) => batches,
                    None => {
                        let (label, path) = (label.clone(), path.clone());
                        let schema = schema.clone();
                        reader
                            .read(futures::stream::iter([Ok(piece.task)]).boxed())
                            .map_err(|e| read_error(&label, &path, e))?
                            .stream()
                            .map(move |batch| {
                                fill(batch.map_err(|e| read_error(&label, &path, e))?, &schema)
                            })
                            .boxed()
                    }
                };
                let mut next = piece.first;
                Ok::<_, Error>(batches.map(move |batch| {
                    let batch = batch?;
                    let n = batch.num_rows() as i64;
                    let order = Int64Array::from_iter_values(next..next + n);
                    next += n;
                    Ok((batch, order))
                }))
            }
        })
        .try_flatten()
        .boxed()
}

/// What to tell when the data file at `path` of `table` was deleted while
/// a query read it (by ERASE, expiry or VACUUM of the snapshot it pinned).
fn deleted_while_read(table: &str, path: &str) -> Option<String> {
    let gone = super::files::local_path(path).is_some_and(|local| !local.exists());
    gone.then(|| {
        format!(
            "cannot read {table}: its data file {path} was deleted while the query read it \
             (by ERASE, expire_snapshots or VACUUM); run the query again"
        )
    })
}

/// The error of a failed read of the data file at `path` of `table` by
/// [`read_tested`].
pub(super) fn failed_read(
    table: &str,
    path: &str,
    source: impl Into<crate::error::BoxError>,
) -> Error {
    Error::Unavailable {
        context: deleted_while_read(table, path)
            .unwrap_or_else(|| format!("cannot read {table}: its data file {path}")),
        source: source.into(),
    }
}

/// The error of a failed read of the data file at `path` of `table` by
/// Iceberg's reader.
fn read_error(table: &str, path: &str, source: iceberg::Error) -> Error {
    match deleted_while_read(table, path) {
        Some(context) => Error::Unavailable {
            context,
            source: Box::new(source),
        },
        None => Error::iceberg(format!("cannot read {table}"))(source),
    }
}
