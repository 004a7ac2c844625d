//! Compaction: the small data files of consecutive commits (a stream's
//! commits every few seconds, many small INSERTs) rewritten into files of
//! about the target size, a feature group's rows sorted by entity key and
//! event time, and the table's manifests merged into one, as one `replace`
//! snapshot (the rows do not change; the online store knows it).
//!
//! ```text
//!  live files in ingestion order, by commit ─► runs of commits whose files
//!  are all small, up to the target size ─► each run read in ingestion
//!  order, sorted by (key, event time, ingestion order), written
//!  ─► one commit: the run's files out, the new ones in (with the data
//!     sequence number of the run's newest commit), every manifest merged
//! ```
//!
//! Ingestion order, ASOF JOIN's tie-break between rows of one key and event
//! time, is kept: within a run the sort keeps it for such rows, and a run is
//! whole commits with no other file between them, so the new file takes the
//! run's place in commit order exactly.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::{SortColumn, lexsort_to_indices};
use futures::{FutureExt, TryStreamExt};
use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;

use super::writer::PendingFiles;
use crate::catalog::{self, Change, FeatureGroup, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::{ReadAt, SnapshotWriter, current_manifests, delete_files, read_files};

/// Iceberg's table property for the size data files are written to.
pub const TARGET_FILE_SIZE_PROPERTY: &str = "write.target-file-size-bytes";
/// The target size when the table does not say.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 << 20;
/// A run is rewritten when it has at least this many files (Iceberg's
/// `min-input-files`).
pub const DEFAULT_MIN_INPUT_FILES: usize = 5;

/// How a compaction chooses what to rewrite.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Files of at least three quarters of this are left alone; runs are
    /// cut at about this many bytes.
    pub target_bytes: u64,
    pub min_input_files: usize,
}

impl CompactOptions {
    /// The table's target size (its `write.target-file-size-bytes`) and
    /// Iceberg's default minimum of input files.
    pub fn of(name: &str, table: &Table) -> Result<Self> {
        Ok(CompactOptions {
            target_bytes: Self::target_of(name, table)?,
            min_input_files: DEFAULT_MIN_INPUT_FILES,
        })
    }

    /// The table's `write.target-file-size-bytes`, else the default.
    pub fn target_of(name: &str, table: &Table) -> Result<u64> {
        match table.metadata().properties().get(TARGET_FILE_SIZE_PROPERTY) {
            None => Ok(DEFAULT_TARGET_FILE_SIZE),
            Some(text) => text.parse::<u64>().ok().filter(|b| *b > 0).ok_or_else(|| {
                Error::Invalid(format!(
                    "table {name}: {TARGET_FILE_SIZE_PROPERTY} is {text:?}, not a positive number of bytes"
                ))
            }),
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub rewritten_files: u64,
    pub added_files: u64,
    pub rewritten_bytes: u64,
}

/// A live data file of the current snapshot.
#[derive(Debug, Clone)]
struct Live {
    path: String,
    bytes: u64,
    /// Data sequence number: the commit that wrote its rows.
    sequence: i64,
}

/// Compacts the current snapshot of `name` (see the module's doc). Nothing
/// is committed when no run has enough files.
pub async fn rewrite_data_files(
    warehouse: &Warehouse,
    name: &TableName,
    options: CompactOptions,
) -> Result<Compacted> {
    let label = name.to_string();
    let table = warehouse.load_table(&name.schema, &name.table).await?;
    let Some(at) = ReadAt::current(&table) else {
        return Ok(Compacted::default());
    };
    if table
        .metadata()
        .partition_specs_iter()
        .any(|spec| !spec.is_unpartitioned())
    {
        return Err(Error::NotSupported(format!(
            "compacting {label}, a partitioned table (pitlake writes unpartitioned tables)"
        )));
    }
    let live = live_files(&label, &table).await?;
    let runs = runs(&live, options);
    if runs.is_empty() {
        return Ok(Compacted::default());
    }
    let feature_group = FeatureGroup::from_properties(table.metadata().properties())?;
    let pending = PendingFiles::start(&label, &table)?;
    let mut added: Vec<(DataFile, i64)> = Vec::new();
    let mut remove = HashSet::new();
    let mut done = Compacted::default();
    let written = async {
        for run in &runs {
            // A run is read commit by commit, and written out whenever what
            // it holds in memory passes MAX_RUN_MEMORY (rows that compress
            // well take far more memory than their files' bytes).
            let mut part: Vec<Live> = Vec::new();
            let mut rows: Vec<RecordBatch> = Vec::new();
            let mut held = 0usize;
            let commits: Vec<&[Live]> = run.chunk_by(|a, b| a.sequence == b.sequence).collect();
            for (i, commit) in commits.iter().enumerate() {
                let paths: Vec<String> = commit.iter().map(|f| f.path.clone()).collect();
                let read: Vec<RecordBatch> = read_files(&label, &table, &at, &paths)
                    .await?
                    .try_collect()
                    .await?;
                held += read
                    .iter()
                    .map(RecordBatch::get_array_memory_size)
                    .sum::<usize>();
                rows.extend(read);
                part.extend(commit.iter().cloned());
                let last = i + 1 == commits.len();
                if held < MAX_RUN_MEMORY && !last {
                    continue;
                }
                // One file alone is not rewritten (unless asked to be).
                if part.len() >= options.min_input_files.clamp(1, 2) {
                    let sorted = sorted(&label, std::mem::take(&mut rows), feature_group.as_ref())?;
                    let (_, files) = pending
                        .write(futures::stream::iter(sorted.into_iter().map(Ok)))
                        .await?;
                    let sequence = part.iter().map(|f| f.sequence).max().unwrap_or_default();
                    done.added_files += files.len() as u64;
                    added.extend(files.into_iter().map(|f| (f, sequence)));
                    for file in &part {
                        done.rewritten_files += 1;
                        done.rewritten_bytes += file.bytes;
                        remove.insert(file.path.clone());
                    }
                }
                (part, rows, held) = (Vec::new(), Vec::new(), 0);
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = written {
        pending.discard();
        return Err(e);
    }
    let (remove, added) = (&remove, &added);
    let committed = catalog::commit(warehouse, name, |table: Table| {
        let label = label.clone();
        async move {
            // Another writer may have removed a file of a run meanwhile (a
            // DELETE, an ERASE): the rewrite would bring its rows back.
            let now: HashSet<String> = live_files(&label, &table)
                .await?
                .into_iter()
                .map(|f| f.path)
                .collect();
            if !remove.iter().all(|path| now.contains(path)) {
                return Err(Error::Changed {
                    table: label,
                    statement: "rewrite_data_files",
                    reason: "a file it rewrote was removed meanwhile".into(),
                });
            }
            let mut snapshot = SnapshotWriter::new(&label, &table)?;
            let manifests = current_manifests(&label, &table).await?;
            if let Err(e) = snapshot.merge(manifests, remove, added.clone()).await {
                delete_files(&table, snapshot.written()).await;
                return Err(e);
            }
            let properties =
                HashMap::from([("pitlake.operation".to_string(), "compaction".to_string())]);
            let (updates, written) = snapshot.finish(Operation::Replace, properties).await?;
            Ok(Staged {
                change: Change::Updates(updates),
                written,
            })
        }
        .boxed()
    })
    .await;
    match committed {
        Ok(_) => Ok(done),
        Err(e) => {
            pending.discard();
            Err(e)
        }
    }
}

/// The live data files of the current snapshot in ingestion order.
async fn live_files(name: &str, table: &Table) -> Result<Vec<Live>> {
    let context = || format!("cannot list the data files of {name}");
    let mut files: Vec<((i64, usize), Live)> = Vec::new();
    for manifest in current_manifests(name, table).await? {
        let loaded = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(Error::iceberg(context()))?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let sequence = entry.sequence_number().unwrap_or(0);
            let position = files.len();
            files.push((
                (sequence, position),
                Live {
                    path: entry.data_file().file_path().to_string(),
                    bytes: entry.data_file().file_size_in_bytes(),
                    sequence,
                },
            ));
        }
    }
    files.sort_by_key(|(order, _)| *order);
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

/// Runs of consecutive commits whose files are all small, each of about the
/// target size at most, keeping those of at least `min_input_files` files.
fn runs(live: &[Live], options: CompactOptions) -> Vec<Vec<Live>> {
    let small = |f: &Live| f.bytes < options.target_bytes / 4 * 3;
    let mut commits: Vec<Vec<Live>> = Vec::new();
    for file in live {
        match commits.last_mut() {
            Some(commit) if commit[0].sequence == file.sequence => commit.push(file.clone()),
            _ => commits.push(vec![file.clone()]),
        }
    }
    let mut runs: Vec<Vec<Live>> = Vec::new();
    let mut run: Vec<Live> = Vec::new();
    let mut bytes = 0u64;
    for commit in commits {
        let commit_bytes: u64 = commit.iter().map(|f| f.bytes).sum();
        if !commit.iter().all(small) {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
            continue;
        }
        if !run.is_empty() && bytes + commit_bytes > options.target_bytes {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes += commit_bytes;
        run.extend(commit);
    }
    runs.push(run);
    runs.retain(|r| r.len() >= options.min_input_files.max(1));
    runs
}

/// A run's rows, read in ingestion order, sorted by entity key and event
/// time (a feature group's), ties in ingestion order; a plain table's as
/// they were.
fn sorted(
    name: &str,
    rows: Vec<RecordBatch>,
    feature_group: Option<&FeatureGroup>,
) -> Result<Vec<RecordBatch>> {
    let (Some(fg), Some(first)) = (feature_group, rows.first()) else {
        return Ok(rows);
    };
    let schema = first.schema();
    let context = || format!("compacting {name}: sorting a run");
    // Only the sort columns are gathered into one array each; the rows are
    // then taken from the batches as they are, a slice at a time (one array
    // of every value could pass Arrow's 2 GiB per array).
    let mut columns: Vec<SortColumn> = Vec::new();
    for column in fg.entity_key.iter().chain([&fg.event_time]) {
        let at = schema.index_of(column).map_err(|_| {
            Error::Internal(format!("compacting {name}: no column {column} to sort by"))
        })?;
        let parts: Vec<&dyn arrow::array::Array> =
            rows.iter().map(|b| b.column(at).as_ref()).collect();
        columns.push(SortColumn {
            values: arrow::compute::concat(&parts).map_err(Error::arrow(context()))?,
            options: None,
        });
    }
    // Where each row is: (batch, row), in ingestion order.
    let place: Vec<(usize, usize)> = rows
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    let order: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..place.len() as u64));
    columns.push(SortColumn {
        values: order,
        options: None,
    });
    let indices = lexsort_to_indices(&columns, None).map_err(Error::arrow(context()))?;
    let sorted: Vec<(usize, usize)> = indices
        .values()
        .iter()
        .map(|i| place[*i as usize])
        .collect();
    let batches: Vec<&RecordBatch> = rows.iter().collect();
    sorted
        .chunks(SORTED_BATCH_ROWS)
        .map(|chunk| {
            arrow::compute::interleave_record_batch(&batches, chunk)
                .map_err(Error::arrow(context()))
        })
        .collect()
}

/// Rows per batch of a sorted run.
const SORTED_BATCH_ROWS: usize = 8192;

/// What a run may hold in memory before it is written out.
const MAX_RUN_MEMORY: usize = 256 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sequence: i64, bytes: u64) -> Live {
        Live {
            path: format!("f{sequence}-{bytes}"),
            bytes,
            sequence,
        }
    }

    #[test]
    fn runs_are_whole_commits_of_small_files_between_large_ones() {
        let options = CompactOptions {
            target_bytes: 1000,
            min_input_files: 2,
        };
        // Commit 3 has a large file: runs stop before it and start after.
        let live = vec![
            file(1, 10),
            file(2, 10),
            file(2, 20),
            file(3, 10),
            file(3, 900),
            file(4, 10),
            file(5, 10),
            file(6, 10),
        ];
        let runs = runs(&live, options);
        let sequences: Vec<Vec<i64>> = runs
            .iter()
            .map(|r| r.iter().map(|f| f.sequence).collect())
            .collect();
        assert_eq!(sequences, vec![vec![1, 2, 2], vec![4, 5, 6]]);
    }

    #[test]
    fn runs_are_cut_at_the_target_size_and_need_enough_files() {
        let options = CompactOptions {
            target_bytes: 100,
            min_input_files: 3,
        };
        let live: Vec<Live> = (1..=8).map(|s| file(s, 30)).collect();
        let sizes: Vec<usize> = runs(&live, options).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3]);
    }
}
