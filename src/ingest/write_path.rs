//! The one way rows reach a table: a verified snapshot commit, then the
//! online store told, so a lookup right after the statement sees the rows.
//! INSERT, COPY FROM, CREATE TABLE AS SELECT, Flight bulk ingest and the
//! streamed INSERT into an online group all end here; the session only turns
//! their SQL into a stream of batches.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use futures::{Stream, StreamExt};
use iceberg::table::Table;

use super::conform::by_name;
use super::stream::Streams;
use super::writer::{WriteOutcome, target_of, write_snapshot};
use crate::catalog::{self, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::online::OnlineStore;

/// Key of the snapshot-summary property that names the statement kind.
const OPERATION: &str = "pitlake.operation";

/// Writes into a warehouse's tables, keeping its online store in step.
#[derive(Debug, Clone)]
pub struct WritePath {
    warehouse: Warehouse,
    online: Arc<OnlineStore>,
    streams: Arc<Streams>,
}

/// How a bulk ingest treats the table (Flight SQL's table-definition options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestMode {
    /// Create a missing table from the first batch's columns.
    pub create: bool,
    /// Append to an existing table (else an existing table is an error).
    pub append: bool,
}

impl WritePath {
    pub fn new(warehouse: Warehouse, online: Arc<OnlineStore>, streams: Arc<Streams>) -> Self {
        WritePath {
            warehouse,
            online,
            streams,
        }
    }

    /// Appends `input` (conformed to the table) as one snapshot whose summary
    /// says `operation` (plus `properties`), then brings the online store up
    /// to it.
    pub async fn append(
        &self,
        name: &TableName,
        table: &Table,
        input: impl Stream<Item = Result<RecordBatch>> + Send,
        operation: &str,
        properties: HashMap<String, String>,
    ) -> Result<WriteOutcome> {
        let mut properties = properties;
        properties.insert(OPERATION.into(), operation.into());
        let outcome = write_snapshot(&self.warehouse, name, table, input, properties).await?;
        self.committed(name).await?;
        Ok(outcome)
    }

    /// Rows of `INSERT ... VALUES` into an online feature group go through its
    /// stream (write-ahead log, online at once, committed to Iceberg in the
    /// background), like PutRecord. Returns the rows written.
    pub async fn append_streamed(
        &self,
        name: &TableName,
        table: &Table,
        batch: RecordBatch,
    ) -> Result<u64> {
        match self.streams.append_in_table_order(name, &batch).await {
            Ok(ack) => Ok(ack.rows),
            // Another process (a running server) owns the group's log: commit
            // the rows directly; that process's online store follows.
            Err(Error::Locked { .. }) => {
                let input = futures::stream::iter([Ok(batch)]);
                let outcome = self
                    .append(name, table, input, "insert", HashMap::new())
                    .await?;
                Ok(outcome.rows)
            }
            Err(e) => Err(e),
        }
    }

    /// `CREATE TABLE ... AS SELECT`: creates the table and writes its first
    /// snapshot; a failed write drops the table again, so nothing is half
    /// made. `None` when the table existed and `if_not_exists` was given.
    pub async fn create_as(
        &self,
        name: &TableName,
        schema: iceberg::spec::Schema,
        if_not_exists: bool,
        input: impl Stream<Item = Result<RecordBatch>> + Send,
    ) -> Result<Option<WriteOutcome>> {
        let Some(table) =
            catalog::create_table(&self.warehouse, name, schema, HashMap::new(), if_not_exists)
                .await?
        else {
            return Ok(None);
        };
        // Dropped again if the statement is cancelled while it writes.
        let mut undo = DropUnlessKept {
            warehouse: self.warehouse.clone(),
            name: Some(name.clone()),
        };
        let written = self
            .append(
                name,
                &table,
                input,
                "create table as select",
                HashMap::new(),
            )
            .await;
        undo.name = None;
        match written {
            Ok(outcome) => Ok(Some(outcome)),
            Err(e) => {
                let _ = catalog::drop_table(&self.warehouse, name, true, false).await;
                Err(e)
            }
        }
    }

    /// Flight SQL bulk ingest: a stream of batches (columns matched by name)
    /// into `name` as one snapshot. Returns the rows written.
    pub async fn ingest(
        &self,
        name: &TableName,
        mode: IngestMode,
        input: impl Stream<Item = Result<RecordBatch>> + Send,
    ) -> Result<u64> {
        let mut input = Box::pin(input.peekable());
        let existing = self
            .warehouse
            .try_load_table(&name.schema, &name.table)
            .await?;
        let table = match existing {
            Some(table) if mode.append => table,
            Some(_) => {
                return Err(Error::AlreadyExists {
                    kind: "table",
                    name: name.to_string(),
                });
            }
            None if mode.create => {
                let first_schema = match input.as_mut().peek().await {
                    Some(Ok(batch)) => batch.schema(),
                    Some(Err(_)) => match input.next().await {
                        Some(Err(e)) => return Err(e),
                        _ => {
                            return Err(Error::Internal("ingest stream changed under peek".into()));
                        }
                    },
                    None => {
                        return Err(Error::BadInput {
                            table: name.to_string(),
                            reason: "no data to create the table from".into(),
                        });
                    }
                };
                let schema = catalog::types::schema_from_arrow(&name.to_string(), &first_schema)?;
                catalog::create_table(&self.warehouse, name, schema, HashMap::new(), false)
                    .await?
                    .ok_or_else(|| Error::AlreadyExists {
                        kind: "table",
                        name: name.to_string(),
                    })?
            }
            None => {
                return Err(Error::TableNotFound {
                    table: name.to_string(),
                });
            }
        };
        let target = target_of(&name.to_string(), &table)?;
        let what = "ingested data".to_string();
        let conformed = input.map(move |batch| by_name(&target, &batch?, &what));
        let outcome = self
            .append(name, &table, conformed, "ingest", HashMap::new())
            .await?;
        Ok(outcome.rows)
    }

    /// After a change to `name` other than through [`Self::append`] (ALTER):
    /// the online store catches up at once.
    pub async fn committed(&self, name: &TableName) -> Result<()> {
        // On a task of its own: a caller that goes away after the commit (a
        // cancelled statement, a client that hung up) cannot leave the online
        // store behind the table.
        let online = self.online.clone();
        let name = name.to_string();
        tokio::spawn(async move { online.refresh(&name).await })
            .await
            .map_err(|e| Error::Internal(format!("online refresh after a commit: {e}")))?
    }

    /// A dropped table leaves neither online rows nor a stream log behind.
    pub fn forget(&self, name: &TableName) {
        self.online.forget(&name.to_string());
        self.streams.drop_table(name);
    }

    /// `VACUUM [t]`: removes the data files of `table` (every table when
    /// `None`) that no snapshot references and no running write claims; one
    /// row per removed file (`table`, `removed_file`, `bytes`).
    pub async fn vacuum(&self, table: Option<TableName>) -> Result<RecordBatch> {
        let names = match table {
            Some(name) => vec![name],
            None => {
                let mut names = Vec::new();
                for schema in self.warehouse.list_schemas().await? {
                    for table in self.warehouse.list_tables(&schema).await? {
                        // Names made by other engines that pitlake would not
                        // make are skipped, never turned into paths.
                        if let Ok(name) = TableName::new(schema.clone(), table) {
                            names.push(name);
                        }
                    }
                }
                names
            }
        };
        let (mut tables, mut paths, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        for name in names {
            let table = self.warehouse.load_table(&name.schema, &name.table).await?;
            let Some(dir) = super::vacuum::data_dir(&table) else {
                continue;
            };
            let load = || self.warehouse.load_table(&name.schema, &name.table);
            for removed in super::vacuum::vacuum(&name.to_string(), &dir, load).await? {
                tables.push(name.to_string());
                paths.push(removed.path.display().to_string());
                sizes.push(removed.bytes);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("removed_file", DataType::Utf8, false),
            Field::new("bytes", DataType::UInt64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(tables)),
                Arc::new(StringArray::from(paths)),
                Arc::new(UInt64Array::from(sizes)),
            ],
        )
        .map_err(|e| Error::Internal(format!("VACUUM result: {e}")))
    }
}

/// Drops a table that its creating statement did not finish, on error or
/// when the statement's future is dropped (Ctrl-C, a client hanging up).
struct DropUnlessKept {
    warehouse: Warehouse,
    name: Option<TableName>,
}

impl Drop for DropUnlessKept {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else {
            return;
        };
        let warehouse = self.warehouse.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(table = %name, "table of an unfinished CREATE TABLE AS left in place");
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = catalog::drop_table(&warehouse, &name, true, false).await {
                tracing::warn!(table = %name, "cannot drop the table of an unfinished CREATE TABLE AS: {e}");
            }
        });
    }
}
