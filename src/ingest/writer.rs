//! Writing rows into a table as one Iceberg snapshot, or not at all.
//!
//! ```text
//!  batches ─► conform (cast, check) ─► Parquet data files ─► append commit ─► one snapshot
//!                 │ error                    │ error                 │ error
//!                 └──────────────► delete the files written ◄────────┘
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::{FutureExt, Stream, StreamExt};
use iceberg::arrow::{FieldMatchMode, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat, Operation, SchemaRef};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::claim::Claim;
use super::conform::{Target, conform};
use super::vacuum::data_dir;
use crate::catalog::{self, Change, FeatureGroup, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::{SnapshotWriter, current_manifests, delete_files};

type ParquetDataFileWriter =
    DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// What one committed write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    pub rows: u64,
    /// The new snapshot; `None` when there were no rows (nothing is committed).
    pub snapshot_id: Option<i64>,
}

/// The write target derived from a table's current schema and metadata.
pub fn target_of(name: &str, table: &Table) -> Result<Target> {
    let metadata = table.metadata();
    let schema = Arc::new(
        schema_to_arrow_schema(metadata.current_schema())
            .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?,
    );
    let fg = FeatureGroup::from_properties(metadata.properties())?;
    let mut required = Vec::new();
    let mut reasons = Vec::new();
    for field in schema.fields() {
        let (req, reason) = match &fg {
            Some(fg) if fg.entity_key.iter().any(|k| k == field.name()) => {
                (true, "it is part of the entity key")
            }
            Some(fg) if &fg.event_time == field.name() => (true, "it is the event time"),
            _ if !field.is_nullable() => (true, "the column is NOT NULL"),
            _ => (false, ""),
        };
        required.push(req);
        reasons.push(reason);
    }
    Ok(Target {
        table: name.to_string(),
        schema,
        required,
        required_reason: reasons,
    })
}

/// Writes every batch of `input` (columns in table order) into `table` and
/// commits them as one snapshot with `properties` in its summary.
///
/// On any error, in the input, a bad row, the write or the commit, the files
/// already written are deleted and nothing is committed.
pub async fn write_snapshot<S>(
    warehouse: &Warehouse,
    table_name: &TableName,
    table: &Table,
    input: S,
    properties: HashMap<String, String>,
) -> Result<WriteOutcome>
where
    S: Stream<Item = Result<RecordBatch>> + Send,
{
    let name = table_name.to_string();
    let pending = PendingFiles::start(&name, table)?;
    let (rows, files) = match pending.write(input).await {
        Ok(done) => done,
        Err(e) => {
            pending.discard();
            return Err(e);
        }
    };
    if rows == 0 {
        pending.discard();
        return Ok(WriteOutcome {
            rows,
            snapshot_id: None,
        });
    }
    match commit(warehouse, table_name, files, properties).await {
        Ok(snapshot_id) => Ok(WriteOutcome {
            rows,
            snapshot_id: Some(snapshot_id),
        }),
        Err(e) => {
            pending.discard();
            Err(e)
        }
    }
}

/// Data files being written for one commit, not yet in any snapshot.
/// Every file starts with the write's prefix, so that on failure the ones
/// finished and the one in the middle are found by it; the prefix is claimed
/// until this is dropped, so VACUUM leaves them be meanwhile.
#[derive(Debug)]
pub struct PendingFiles {
    name: String,
    table: Table,
    target: Target,
    properties: WriterProperties,
    prefix: String,
    /// Writers opened so far (each names its files `<prefix>-<n>-…`).
    writers: std::sync::atomic::AtomicUsize,
    _claim: Option<Claim>,
}

impl PendingFiles {
    /// Claims a new prefix in `table`'s data folder. A bad codec or
    /// row-group property fails here, before any file exists.
    pub fn start(name: &str, table: &Table) -> Result<Self> {
        // The data file writer here writes one partition (iceberg 0.10.1
        // panics on a partitioned table's files without their partition).
        if !table.metadata().default_partition_spec().is_unpartitioned() {
            return Err(Error::NotSupported(format!(
                "writing to {name}, a partitioned table: pitlake reads partitioned tables \
                 and writes unpartitioned ones"
            )));
        }
        let target = target_of(name, table)?;
        let properties = writer_properties(name, table)?;
        let prefix = uuid::Uuid::new_v4().to_string();
        let claim = match data_dir(table) {
            Some(dir) => Some(Claim::take(&dir, &prefix)?),
            None => None,
        };
        Ok(PendingFiles {
            name: name.to_string(),
            table: table.clone(),
            target,
            properties,
            prefix,
            writers: std::sync::atomic::AtomicUsize::new(0),
            _claim: claim,
        })
    }

    /// Writes `input` (columns in table order, checked against the table)
    /// into new data files of their own; returns the rows and the files.
    pub async fn write<S>(&self, input: S) -> Result<(u64, Vec<DataFile>)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let schema = self.table.metadata().current_schema().clone();
        self.write_with(&self.target, schema, input).await
    }

    /// Writes `input`, rows of a data file written under an older schema
    /// and in its columns, into new files of that same `schema`: a rewrite
    /// of history (an erasure) keeps what each old snapshot reads.
    pub async fn write_as<S>(&self, schema: SchemaRef, input: S) -> Result<(u64, Vec<DataFile>)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let arrow = Arc::new(
            schema_to_arrow_schema(&schema).map_err(Error::iceberg(format!(
                "cannot read a schema of {}",
                self.name
            )))?,
        );
        let required: Vec<bool> = arrow.fields().iter().map(|f| !f.is_nullable()).collect();
        let target = Target {
            table: self.name.clone(),
            required_reason: vec!["the column is NOT NULL"; required.len()],
            required,
            schema: arrow,
        };
        self.write_with(&target, schema, input).await
    }

    async fn write_with<S>(
        &self,
        target: &Target,
        schema: SchemaRef,
        input: S,
    ) -> Result<(u64, Vec<DataFile>)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send,
    {
        let n = self
            .writers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("{}-{n}", self.prefix);
        let mut writer = open_writer(
            &self.name,
            &self.table,
            schema,
            &prefix,
            self.properties.clone(),
        )
        .await?;
        let rows = write_all(target, &mut writer, input).await;
        let files = writer.close().await.map_err(Error::iceberg(format!(
            "cannot finish writing data files of {}",
            self.name
        )));
        Ok((rows?, files?))
    }

    /// Deletes every file written, finished or partial.
    pub fn discard(self) {
        delete_written(&self.table, &self.prefix);
    }
}

async fn open_writer(
    name: &str,
    table: &Table,
    schema: SchemaRef,
    prefix: &str,
    properties: WriterProperties,
) -> Result<ParquetDataFileWriter> {
    let metadata = table.metadata();
    let context = || format!("cannot start writing to {name}");
    let locations = DefaultLocationGenerator::new(metadata).map_err(Error::iceberg(context()))?;
    let names = DefaultFileNameGenerator::new(prefix.to_string(), None, DataFileFormat::Parquet);
    let parquet =
        ParquetWriterBuilder::new(properties, schema).with_match_mode(FieldMatchMode::Name);
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        locations,
        names,
    );
    DataFileWriterBuilder::new(rolling)
        .build(None)
        .await
        .map_err(Error::iceberg(context()))
}

/// Iceberg's table property for the size of a Parquet row group.
const ROW_GROUP_BYTES_PROPERTY: &str = "write.parquet.row-group-size-bytes";
/// Row groups of at most this many bytes when the table does not say.
/// Iceberg's own default is 128 MiB, but the Parquet writer holds a row group
/// in memory and copies it into a buffer that grows by doubling: at 16 MiB a
/// streaming ingest's commits caught up in half the time, and the right side
/// of an ASOF JOIN is pruned in finer steps.
const DEFAULT_ROW_GROUP_BYTES: usize = 16 << 20;

/// The row group size of `table`: its `write.parquet.row-group-size-bytes`,
/// else [`DEFAULT_ROW_GROUP_BYTES`].
fn row_group_bytes(name: &str, table: &Table) -> Result<usize> {
    match table.metadata().properties().get(ROW_GROUP_BYTES_PROPERTY) {
        None => Ok(DEFAULT_ROW_GROUP_BYTES),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|bytes| *bytes > 0)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "table {name}: {ROW_GROUP_BYTES_PROPERTY} is {text:?}, not a positive number of bytes"
                ))
            }),
    }
}

/// Iceberg's table property for the Parquet codec of data files.
const COMPRESSION_CODEC_PROPERTY: &str = "write.parquet.compression-codec";
/// Iceberg's table property for the codec's level (zstd and gzip take one).
const COMPRESSION_LEVEL_PROPERTY: &str = "write.parquet.compression-level";
/// The codecs [`COMPRESSION_CODEC_PROPERTY`] may name, case-insensitively.
const CODECS: &str = "zstd, lz4, snappy, gzip, uncompressed (or none)";
/// The codec when the table does not name one, chosen by measurement (size,
/// scan and ASOF JOIN time of zstd, lz4, snappy and none: see
/// benches/README.md): lz4 decodes fastest of those that compress, and scans
/// are what a feature store repeats. Iceberg's own default is zstd.
const DEFAULT_CODEC: &str = "lz4";
/// zstd's level when the table does not set one: its fastest.
const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// gzip's level when the table does not set one (zlib's default).
const DEFAULT_GZIP_LEVEL: i32 = 6;

/// The Parquet codec of `table`'s data files: its
/// `write.parquet.compression-codec` at its `write.parquet.compression-level`
/// (for zstd and gzip; the other codecs have none and ignore it), else
/// [`DEFAULT_CODEC`]. A name or level that is not one is an error naming the
/// property, before anything is written.
fn compression(name: &str, properties: &HashMap<String, String>) -> Result<Compression> {
    let level = match properties.get(COMPRESSION_LEVEL_PROPERTY) {
        None => None,
        Some(text) => Some(text.trim().parse::<i32>().map_err(|_| {
            Error::Invalid(format!(
                "table {name}: {COMPRESSION_LEVEL_PROPERTY} is {text:?}, not a whole number"
            ))
        })?),
    };
    let codec = properties
        .get(COMPRESSION_CODEC_PROPERTY)
        .map_or(DEFAULT_CODEC, String::as_str);
    match codec.trim().to_ascii_lowercase().as_str() {
        "zstd" => {
            let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
            ZstdLevel::try_new(level)
                .map(Compression::ZSTD)
                .map_err(|_| bad_level(name, "zstd", level, "1 to 22"))
        }
        "gzip" => {
            let level = level.unwrap_or(DEFAULT_GZIP_LEVEL);
            u32::try_from(level)
                .ok()
                .and_then(|l| GzipLevel::try_new(l).ok())
                .map(Compression::GZIP)
                .ok_or_else(|| bad_level(name, "gzip", level, "0 to 9"))
        }
        // Iceberg's "lz4" is the Parquet codec LZ4_RAW: Parquet's older LZ4
        // framing is deprecated and read differently by different readers.
        "lz4" => Ok(Compression::LZ4_RAW),
        "snappy" => Ok(Compression::SNAPPY),
        "uncompressed" | "none" => Ok(Compression::UNCOMPRESSED),
        _ => Err(Error::Invalid(format!(
            "table {name}: {COMPRESSION_CODEC_PROPERTY} is {codec:?}, not one of {CODECS}"
        ))),
    }
}

fn bad_level(name: &str, codec: &str, level: i32, range: &str) -> Error {
    Error::Invalid(format!(
        "table {name}: {COMPRESSION_LEVEL_PROPERTY} is {level}, not a {codec} level ({range})"
    ))
}

/// Parquet settings: row groups of [`row_group_bytes`], the table's
/// [`compression`]; no dictionary for floating-point columns, whose values
/// rarely repeat (features): building the dictionary cost a fifth of the CPU
/// of a streaming ingest and then fell back to plain encoding anyway.
fn writer_properties(name: &str, table: &Table) -> Result<WriterProperties> {
    let schema = schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
    let mut builder = WriterProperties::builder()
        .set_max_row_group_bytes(Some(row_group_bytes(name, table)?))
        .set_compression(compression(name, table.metadata().properties())?);
    for field in schema.fields() {
        if matches!(
            field.data_type(),
            arrow::datatypes::DataType::Float16
                | arrow::datatypes::DataType::Float32
                | arrow::datatypes::DataType::Float64
        ) {
            builder = builder.set_column_dictionary_enabled(
                parquet::schema::types::ColumnPath::from(field.name().as_str()),
                false,
            );
        }
    }
    Ok(builder.build())
}

async fn write_all<S>(target: &Target, writer: &mut ParquetDataFileWriter, input: S) -> Result<u64>
where
    S: Stream<Item = Result<RecordBatch>> + Send,
{
    let mut input = std::pin::pin!(input);
    let mut rows: usize = 0;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let conformed = conform(target, &batch, rows + 1)?;
        rows += batch.num_rows();
        // The Parquet writer closes a row group only between writes: small
        // slices keep row groups near their size in bytes whatever the
        // session's batch size.
        let total = conformed.num_rows();
        for offset in (0..total).step_by(WRITE_SLICE_ROWS) {
            let slice = conformed.slice(offset, WRITE_SLICE_ROWS.min(total - offset));
            writer.write(slice).await.map_err(Error::iceberg(format!(
                "cannot write data files of {}",
                target.table
            )))?;
        }
    }
    Ok(rows as u64)
}

/// Rows handed to the Parquet writer at a time (see `write_all`).
const WRITE_SLICE_ROWS: usize = 8192;

/// Appends `files` as one snapshot through the commit path, which applies
/// it again on the table as it is after losing a race: an append conflicts
/// with no other commit.
async fn commit(
    warehouse: &Warehouse,
    name: &TableName,
    files: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<i64> {
    let label = name.to_string();
    let (label, files, properties) = (&label, &files, &properties);
    let committed = catalog::commit(warehouse, name, |table: Table| {
        async move {
            let mut snapshot = SnapshotWriter::new(label, &table)?;
            let built = async {
                for manifest in current_manifests(label, &table).await? {
                    snapshot.keep(manifest);
                }
                snapshot.add_files(files.clone()).await
            }
            .await;
            if let Err(e) = built {
                delete_files(&table, snapshot.written()).await;
                return Err(e);
            }
            let (updates, written) = snapshot
                .finish(Operation::Append, properties.clone())
                .await?;
            Ok(Staged {
                change: Change::Updates(updates),
                written,
            })
        }
        .boxed()
    })
    .await?;
    committed
        .metadata()
        .current_snapshot_id()
        .ok_or_else(|| Error::Internal(format!("{name}: the commit left no current snapshot")))
}

/// Best effort: deletes every data file of a failed write, finished or
/// partial. The files are never referenced, so one that cannot be deleted is
/// garbage (`VACUUM` removes it), not corruption.
fn delete_written(table: &Table, prefix: &str) {
    let Some(dir) = data_dir(table) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let ours = format!("{prefix}-");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&ours) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
