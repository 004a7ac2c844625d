//! `CALL system.<procedure>(…)`: table maintenance with Iceberg's procedure
//! names and arguments (positional, or named with `=>`).
//!
//! ```sql
//! CALL system.rollback_to_snapshot('s.fg', 4348501234567);
//! CALL system.expire_snapshots(table => 's.fg', older_than => TIMESTAMP '2025-01-01', retain_last => 5);
//! CALL system.remove_orphan_files(table => 's.fg', dry_run => true);
//! CALL system.rewrite_data_files(table => 's.fg', target_file_size_bytes => 134217728, min_input_files => 5);
//! ```

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;
use sqlparser::ast::{self, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName};

use super::Session;
use super::results::one_batch;
use crate::error::{Error, Result};
use crate::ingest::compact::{CompactOptions, DEFAULT_MIN_INPUT_FILES, rewrite_data_files};
use crate::lifecycle;

/// Snapshots younger than this stay when `older_than` is not given
/// (Iceberg's default).
const DEFAULT_EXPIRY_MS: i64 = 5 * 86_400_000;

/// Files younger than this are never orphans when `older_than` is not given
/// (Iceberg's default): a commit under way may not have named them yet.
const DEFAULT_ORPHAN_AGE_MS: i64 = 3 * 86_400_000;

impl Session {
    pub(super) async fn call(&self, call: ast::Function) -> Result<SendableRecordBatchStream> {
        let procedure = crate::sql::name_parts(&call.name)
            .join(".")
            .to_ascii_lowercase();
        let params: &[&str] = match procedure.as_str() {
            "system.rollback_to_snapshot" => &["table", "snapshot_id"],
            "system.expire_snapshots" => &["table", "older_than", "retain_last"],
            "system.remove_orphan_files" => &["table", "older_than", "dry_run"],
            "system.rewrite_data_files" => &["table", "target_file_size_bytes", "min_input_files"],
            _ => {
                return Err(Error::NotSupported(format!(
                    "CALL {}: the procedures are system.rollback_to_snapshot(table, snapshot_id), \
                     system.expire_snapshots(table, older_than, retain_last), \
                     system.remove_orphan_files(table, older_than, dry_run) and \
                     system.rewrite_data_files(table, target_file_size_bytes, min_input_files)",
                    call.name
                )));
            }
        };
        let args = self.arguments(&procedure, params, &call.args).await?;
        let table_text = match args.first() {
            Some(Some(ScalarValue::Utf8(Some(text)))) => text.clone(),
            _ => {
                return Err(Error::Invalid(format!(
                    "{procedure}: table is the table's name as a string, as in table => 's.fg'"
                )));
            }
        };
        let name = self.resolve_name(&ObjectName::from(
            table_text.split('.').map(Ident::new).collect::<Vec<_>>(),
        ))?;
        super::lifecycle::read_only(&name)?;
        self.require_manage_to(&name, || {
            format!("run {procedure} on {name} (its owner, one granted ALL on it, or an admin may)")
        })
        .await?;
        if self.is_view(&name) {
            return Err(Error::Invalid(format!("{name} is a view, not a table")));
        }
        self.warehouse()
            .load_table(&name.schema, &name.table)
            .await?;
        match procedure.as_str() {
            "system.rollback_to_snapshot" => {
                let id = integer(&procedure, "snapshot_id", args.get(1))?.ok_or_else(|| {
                    Error::Invalid(format!("{procedure}: snapshot_id is required"))
                })?;
                self.store.streams().flush(Some(&name.to_string())).await?;
                let previous = lifecycle::rollback_to_snapshot(self.warehouse(), &name, id).await?;
                self.store.writes().committed(&name).await?;
                rows(
                    &["previous_snapshot_id", "current_snapshot_id"],
                    vec![previous, Some(id)],
                )
            }
            "system.rewrite_data_files" => {
                let table = self
                    .warehouse()
                    .load_table(&name.schema, &name.table)
                    .await?;
                // An argument given wins: the table's property is read only
                // when it is not.
                let target_bytes = match integer(&procedure, "target_file_size_bytes", args.get(1))?
                {
                    Some(bytes) => u64::try_from(bytes).ok().filter(|b| *b > 0).ok_or_else(
                        || {
                            Error::Invalid(format!(
                                "{procedure}: target_file_size_bytes is a positive number of bytes"
                            ))
                        },
                    )?,
                    None => CompactOptions::target_of(&name.to_string(), &table)?,
                };
                let mut options = CompactOptions {
                    target_bytes,
                    min_input_files: DEFAULT_MIN_INPUT_FILES,
                };
                if let Some(files) = integer(&procedure, "min_input_files", args.get(2))? {
                    options.min_input_files = usize::try_from(files)
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            Error::Invalid(format!("{procedure}: min_input_files is at least 1"))
                        })?;
                }
                // Rows acknowledged to the stream are compacted with the rest.
                self.store.streams().flush(Some(&name.to_string())).await?;
                let done = rewrite_data_files(self.warehouse(), &name, options).await?;
                if done.rewritten_files > 0 {
                    self.store.writes().committed(&name).await?;
                }
                let count = |n: u64| i64::try_from(n).ok();
                rows(
                    &[
                        "rewritten_data_files_count",
                        "added_data_files_count",
                        "rewritten_bytes_count",
                    ],
                    vec![
                        count(done.rewritten_files),
                        count(done.added_files),
                        count(done.rewritten_bytes),
                    ],
                )
            }
            "system.remove_orphan_files" => {
                let older_than = match args.get(1).cloned().flatten() {
                    None => chrono::Utc::now().timestamp_millis() - DEFAULT_ORPHAN_AGE_MS,
                    Some(value) => millis(&procedure, value)?,
                };
                let dry_run = match args.get(2).cloned().flatten() {
                    None => false,
                    Some(ScalarValue::Boolean(Some(b))) => b,
                    Some(other) => {
                        return Err(Error::Invalid(format!(
                            "{procedure}: dry_run is true or false, not {other}"
                        )));
                    }
                };
                let orphans =
                    lifecycle::remove_orphan_files(self.warehouse(), &name, older_than, dry_run)
                        .await?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "orphan_file_location",
                    DataType::Utf8,
                    false,
                )]));
                let paths: Vec<String> = orphans.iter().map(|p| p.display().to_string()).collect();
                let batch = RecordBatch::try_new(
                    schema,
                    vec![Arc::new(arrow::array::StringArray::from(paths))],
                )
                .map_err(Error::arrow("remove_orphan_files' result"))?;
                one_batch(batch)
            }
            _ => {
                let older_than = match args.get(1).cloned().flatten() {
                    None => chrono::Utc::now().timestamp_millis() - DEFAULT_EXPIRY_MS,
                    Some(value) => millis(&procedure, value)?,
                };
                let retain_last = integer(&procedure, "retain_last", args.get(2))?.unwrap_or(1);
                let retain_last = usize::try_from(retain_last).map_err(|_| {
                    Error::Invalid(format!("{procedure}: retain_last is at least 1"))
                })?;
                let expired =
                    lifecycle::expire_snapshots(self.warehouse(), &name, older_than, retain_last)
                        .await?;
                let count = |n: usize| Some(n as i64);
                rows(
                    &[
                        "expired_snapshots_count",
                        "deleted_data_files_count",
                        "deleted_manifest_files_count",
                        "deleted_manifest_lists_count",
                    ],
                    vec![
                        count(expired.snapshots),
                        count(expired.data_files),
                        count(expired.manifests),
                        count(expired.manifest_lists),
                    ],
                )
            }
        }
    }

    /// The procedure's arguments in `params` order (`None` where not
    /// given), each a constant.
    async fn arguments(
        &self,
        procedure: &str,
        params: &[&str],
        args: &FunctionArguments,
    ) -> Result<Vec<Option<ScalarValue>>> {
        let list = match args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(list) => list.args.clone(),
            FunctionArguments::Subquery(_) => {
                return Err(Error::NotSupported(format!("{procedure} with a subquery")));
            }
        };
        let mut values: Vec<Option<ScalarValue>> = vec![None; params.len()];
        for (position, arg) in list.iter().enumerate() {
            let (slot, expr) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => (position, expr),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(expr),
                    ..
                } => {
                    let wanted = name.value.to_ascii_lowercase();
                    let slot = params.iter().position(|p| *p == wanted).ok_or_else(|| {
                        Error::Invalid(format!(
                            "{procedure} has no argument {}; its arguments are {}",
                            name.value,
                            params.join(", ")
                        ))
                    })?;
                    (slot, expr)
                }
                other => {
                    return Err(Error::Invalid(format!("{procedure}: argument {other}")));
                }
            };
            if slot >= params.len() {
                return Err(Error::Invalid(format!(
                    "{procedure} takes at most {} arguments ({})",
                    params.len(),
                    params.join(", ")
                )));
            }
            if values[slot].is_some() {
                return Err(Error::Invalid(format!(
                    "{procedure}: {} is given twice",
                    params[slot]
                )));
            }
            values[slot] = Some(self.constant(procedure, expr).await?);
        }
        Ok(values)
    }

    /// The value of an argument: a constant (`'s.fg'`, `42`,
    /// `TIMESTAMP '2025-01-01'`, `now() - INTERVAL '7 days'`) or a scalar
    /// subquery, evaluated as the query `SELECT <expr>` of this session.
    async fn constant(&self, procedure: &str, expr: &ast::Expr) -> Result<ScalarValue> {
        let fail =
            |reason: String| Error::Invalid(format!("{procedure}: argument {expr}: {reason}"));
        let mut parsed = crate::sql::parse_sql(&format!("SELECT {expr}"))?;
        let (Some(crate::sql::Statement::Sql(query)), true) = (parsed.pop(), parsed.is_empty())
        else {
            return Err(fail("not one expression".into()));
        };
        let stream = self.run_query(*query).await?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
            return Err(fail("no value".into()));
        };
        if rows != 1 {
            return Err(fail(format!("{rows} values, not one")));
        }
        ScalarValue::try_from_array(batch.column(0), 0).map_err(|e| fail(e.to_string()))
    }
}

fn integer(
    procedure: &str,
    param: &str,
    value: Option<&Option<ScalarValue>>,
) -> Result<Option<i64>> {
    let Some(Some(value)) = value else {
        return Ok(None);
    };
    match value.cast_to(&DataType::Int64) {
        Ok(ScalarValue::Int64(Some(n))) if value.data_type().is_integer() => Ok(Some(n)),
        _ => Err(Error::Invalid(format!(
            "{procedure}: {param} is a whole number, not {value}"
        ))),
    }
}

/// Milliseconds since the epoch of a timestamp argument (UTC when it has no
/// zone).
fn millis(procedure: &str, value: ScalarValue) -> Result<i64> {
    // A number is no time (it would read as milliseconds since 1970).
    if value.data_type().is_numeric() {
        return Err(Error::Invalid(format!(
            "{procedure}: older_than is a timestamp, not the number {value}"
        )));
    }
    let as_ms = value
        .cast_to(&DataType::Timestamp(
            arrow::datatypes::TimeUnit::Millisecond,
            None,
        ))
        .ok();
    match as_ms {
        Some(ScalarValue::TimestampMillisecond(Some(ms), _)) => Ok(ms),
        _ => Err(Error::Invalid(format!(
            "{procedure}: older_than is a timestamp, not {value}"
        ))),
    }
}

/// One row of nullable BIGINT columns.
fn rows(names: &[&str], values: Vec<Option<i64>>) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Int64, true))
            .collect::<Vec<_>>(),
    ));
    let columns = values
        .into_iter()
        .map(|v| Arc::new(Int64Array::from(vec![v])) as arrow::array::ArrayRef)
        .collect();
    let batch =
        RecordBatch::try_new(schema, columns).map_err(Error::arrow("a procedure's result"))?;
    one_batch(batch)
}
