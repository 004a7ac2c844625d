//! Which data files of a snapshot hold rows a predicate matches, and those
//! files rewritten without them.
//!
//! ```text
//!  snapshot's files ─► pruned by the predicate's Iceberg form (statistics)
//!    ─► each left read whole, the predicate evaluated: rows it matches
//!  a file with matches ─► its other rows, in order, into new files
//! ```
//!
//! A row matches where the predicate is TRUE; FALSE and NULL rows stay, as
//! SQL's `DELETE … WHERE` keeps them.
//!
//! The predicate is over the table's columns as they are now; every file,
//! whichever schema it was written under, is judged with them (matched by
//! field id: a column added since is NULL in it) and rewritten with its own
//! columns, so a snapshot of an older schema reads its other rows as before.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::kernels::boolean::not;
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use arrow::datatypes::Schema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::{collect_columns, reassign_expr_columns};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFile;
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::execution::{defaulted_columns, iceberg_predicate};
use crate::ingest::PendingFiles;
use crate::storage::{ReadAt, file_schema, plan_tasks, with_schema_of};

/// A data file with rows that match.
#[derive(Debug)]
pub struct Matching {
    pub task: FileScanTask,
    pub rows: u64,
}

/// The files of `snapshot_id` with rows `predicate` matches (over the
/// table's columns as `schema`), with how many each.
pub async fn matching_files(
    name: &str,
    table: &Table,
    snapshot_id: i64,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Vec<Matching>> {
    let mut found = Vec::new();
    for task in candidates(name, table, snapshot_id, predicate, schema).await? {
        let rows = count_matches(name, table, &task, predicate, schema).await?;
        if rows > 0 {
            found.push(Matching { task, rows });
        }
    }
    Ok(found)
}

/// The files of `snapshot_id` whose statistics do not rule out a row
/// `predicate` matches, each as a task that reads it whole.
pub async fn candidates(
    name: &str,
    table: &Table,
    snapshot_id: i64,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Vec<FileScanTask>> {
    let at = ReadAt {
        snapshot_id,
        schema: table.metadata().current_schema().clone(),
    };
    let defaulted = defaulted_columns(table.metadata().current_schema());
    // Translated as a query's conditions are, floats and defaults alike.
    let pruning = iceberg_predicate(std::slice::from_ref(predicate), schema, &defaulted);
    plan_tasks(name, table, &at, None, pruning).await
}

/// How many rows of the file `task` reads `predicate` (over the table's
/// columns as `schema`) matches. Only the columns it names are read.
pub async fn count_matches(
    name: &str,
    table: &Table,
    task: &FileScanTask,
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<u64> {
    let mut named: Vec<usize> = collect_columns(predicate)
        .iter()
        .map(|c| c.index())
        .collect();
    named.sort_unstable();
    named.dedup();
    let ids: Option<Vec<i32>> = named
        .iter()
        .map(|i| {
            task.schema
                .field_by_name(schema.field(*i).name())
                .map(|f| f.id)
        })
        .collect();
    let projected = schema
        .project(&named)
        .map_err(Error::arrow("the columns of the condition"))?;
    let (mut task, predicate) = match ids {
        Some(ids) if !ids.is_empty() => {
            let mut task = task.clone();
            task.project_field_ids = ids;
            let predicate = reassign_expr_columns(predicate.clone(), &projected)?;
            (task, predicate)
        }
        // No column (a constant condition), or one the schema cannot name:
        // every column.
        _ => (task.clone(), predicate.clone()),
    };
    task.predicate = None;
    let mut rows = 0u64;
    let mut batches = read_file(name, table, task)?;
    while let Some(batch) = batches.next().await {
        rows += matches(&predicate, &batch?)?.true_count() as u64;
    }
    Ok(rows)
}

/// Writes the rows of `file` that `predicate` (over the table's columns as
/// `schema`) does not match into new files of `pending`, in their order and
/// with the file's own columns; no files when none is left.
pub async fn rewrite_without(
    name: &str,
    table: &Table,
    file: &Matching,
    (predicate, schema): (&Arc<dyn PhysicalExpr>, &Schema),
    pending: &PendingFiles,
) -> Result<Vec<DataFile>> {
    let own = file_schema(name, table, &file.task).await?;
    // A column the condition names that the file lacks, and that the table
    // fills with an initial default, is read as the table defines it (so the
    // condition sees the default, as queries do), and not written.
    let current = table.metadata().current_schema();
    let mut added: Vec<iceberg::spec::NestedFieldRef> = Vec::new();
    for column in collect_columns(predicate) {
        if let Some(field) = current.field_by_name(schema.field(column.index()).name())
            && field.initial_default.is_some()
            && own.field_by_id(field.id).is_none()
            && !added.iter().any(|f| f.id == field.id)
        {
            added.push(field.clone());
        }
    }
    // A dropped column of the file named as an added one is read under
    // another name (the reader matches columns by id) and written as it was.
    let mut read = own.as_struct().fields().to_vec();
    for field in read.iter_mut() {
        if added.iter().any(|a| a.name == field.name) {
            let mut renamed = field.as_ref().clone();
            renamed.name = format!("{}#{}", field.name, field.id);
            *field = Arc::new(renamed);
        }
    }
    read.extend(added);
    let own_arrow = Arc::new(schema_to_arrow_schema(&own).map_err(Error::iceberg(format!(
        "the columns of {}",
        file.task.data_file_path
    )))?);
    let written = own.as_struct().fields().len();
    let read = Arc::new(
        iceberg::spec::Schema::builder()
            .with_schema_id(own.schema_id())
            .with_fields(read)
            .build()
            .map_err(Error::iceberg(format!(
                "the columns to read of {}",
                file.task.data_file_path
            )))?,
    );
    let mut task = file.task.clone();
    task.project_field_ids = read.as_struct().fields().iter().map(|f| f.id).collect();
    task.schema = read;
    task.predicate = None;
    let (predicate, judged) = (predicate.clone(), Arc::new(schema.clone()));
    let kept = read_file(name, table, task)?.map(move |batch| {
        let batch = batch?;
        let matched = matches(&predicate, &with_schema_of(&batch, &judged)?)?;
        let batch = RecordBatch::try_new(own_arrow.clone(), batch.columns()[..written].to_vec())
            .map_err(Error::arrow("the file's own columns"))?;
        // NULL counts as not matched (prep_null_mask_filter needs nulls).
        let matched = if matched.null_count() > 0 {
            prep_null_mask_filter(&matched)
        } else {
            matched
        };
        let keep = not(&matched).map_err(Error::arrow("the rows to keep"))?;
        filter_record_batch(&batch, &keep).map_err(Error::arrow("the rows to keep"))
    });
    let (_, files) = pending.write_as(own, kept).await?;
    Ok(files)
}

/// The rows of one data file, in order.
fn read_file(
    name: &str,
    table: &Table,
    task: FileScanTask,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let label = format!("cannot read {} of {name}", task.data_file_path);
    let stream = table
        .reader_builder()
        .with_data_file_concurrency_limit(1)
        .build()
        .read(futures::stream::iter([Ok(task)]).boxed())
        .map_err(Error::iceberg(label.clone()))?
        .stream();
    Ok(stream
        .map_err(move |e| Error::iceberg(label.clone())(e))
        .boxed())
}

/// Where `predicate` is TRUE, FALSE or NULL for each row of `batch`.
fn matches(predicate: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let value = predicate
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(Error::from)?;
    value
        .as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the WHERE condition is a {}, not a boolean",
                value.data_type()
            ))
        })
}
