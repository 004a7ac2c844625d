//! Writing rows into a table as one Iceberg snapshot, or not at all.
//!
//! ```text
//!  batches ─► conform (cast, check) ─► Parquet data files ─► fast append ─► one snapshot
//!                 │ error                    │ error                 │ error
//!                 └──────────────► delete the files written ◄────────┘
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::{Stream, StreamExt};
use iceberg::Catalog;
use iceberg::arrow::{FieldMatchMode, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::file::properties::WriterProperties;

use super::conform::{Target, conform};
use crate::catalog::FeatureGroup;
use crate::error::{Error, Result};

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
    catalog: &dyn Catalog,
    name: &str,
    table: &Table,
    input: S,
    properties: HashMap<String, String>,
) -> Result<WriteOutcome>
where
    S: Stream<Item = Result<RecordBatch>> + Send,
{
    let target = target_of(name, table)?;
    let mut writer = open_writer(name, table).await?;
    let written = write_all(&target, &mut writer, input).await;
    let files = writer.close().await.map_err(Error::iceberg(format!(
        "cannot finish writing data files of {name}"
    )));
    let (rows, files) = match (written, files) {
        (Ok(rows), Ok(files)) => (rows, files),
        (Err(e), Ok(files)) => {
            delete_files(table, &files).await;
            return Err(e);
        }
        (Ok(_), Err(e)) | (Err(_), Err(e)) => return Err(e),
    };
    if rows == 0 {
        return Ok(WriteOutcome {
            rows,
            snapshot_id: None,
        });
    }
    match commit(catalog, name, table, files.clone(), properties).await {
        Ok(snapshot_id) => Ok(WriteOutcome {
            rows,
            snapshot_id: Some(snapshot_id),
        }),
        Err(e) => {
            delete_files(table, &files).await;
            Err(e)
        }
    }
}

async fn open_writer(name: &str, table: &Table) -> Result<ParquetDataFileWriter> {
    let metadata = table.metadata();
    let context = || format!("cannot start writing to {name}");
    let locations = DefaultLocationGenerator::new(metadata).map_err(Error::iceberg(context()))?;
    // A unique prefix per write: the generator's counter restarts at zero.
    let names = DefaultFileNameGenerator::new(
        uuid::Uuid::new_v4().to_string(),
        None,
        DataFileFormat::Parquet,
    );
    let parquet = ParquetWriterBuilder::new(
        writer_properties(name, table)?,
        metadata.current_schema().clone(),
    )
    .with_match_mode(FieldMatchMode::Name);
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

/// Parquet settings: row groups of [`row_group_bytes`]; no dictionary for
/// floating-point columns, whose values rarely repeat (features): building
/// the dictionary cost a fifth of the CPU of a streaming ingest and then fell
/// back to plain encoding anyway.
fn writer_properties(name: &str, table: &Table) -> Result<WriterProperties> {
    let schema = schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
    let mut builder =
        WriterProperties::builder().set_max_row_group_bytes(Some(row_group_bytes(name, table)?));
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

async fn commit(
    catalog: &dyn Catalog,
    name: &str,
    table: &Table,
    files: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<i64> {
    let context = || format!("cannot commit to {name}");
    let tx = Transaction::new(table);
    let append = tx
        .fast_append()
        .add_data_files(files)
        .set_snapshot_properties(properties);
    let tx = append.apply(tx).map_err(Error::iceberg(context()))?;
    let committed = tx
        .commit(catalog)
        .await
        .map_err(Error::iceberg(context()))?;
    committed
        .metadata()
        .current_snapshot_id()
        .ok_or_else(|| Error::Invalid(format!("{name}: the commit left no current snapshot")))
}

/// Best effort: files of a failed write are never referenced, so a file that
/// cannot be deleted is garbage, not corruption.
async fn delete_files(table: &Table, files: &[DataFile]) {
    for file in files {
        let _ = table.file_io().delete(file.file_path()).await;
    }
}
