//! Flight fast paths beside Flight SQL: online lookups and streaming ingest.
//!
//! ```text
//!  DoAction "lookup"  body {"group": "s.g", "keys": [k | [k1, k2], ...], "columns": [..]}
//!                     ─► one Result: Arrow IPC stream, one row per key, in request order
//!  DoAction "ping"    ─► one empty Result (the round trip with nothing in it)
//!  DoPut  descriptor path ["stream", "s.g"], batches ─► one PutResult per batch,
//!                     {"lsn": n, "rows": r}, once the batch is durable in the log
//! ```
//!
//! From Python: `client.do_action(flight.Action("lookup", json))`, and
//! `client.do_put(flight.FlightDescriptor.for_path("stream", "s.g"), schema)`.

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::ipc::writer::StreamWriter;
use arrow_flight::PutResult;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::Value;
use std::sync::Arc;

use crate::access::Privilege;
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::ingest::stream::{Ack, Prepared, Streams, acknowledged};

/// A queued record's acknowledgement, running whether or not its client waits.
type AckTask = tokio::task::JoinHandle<Result<Ack>>;
use crate::session::Session;

/// Action type of an online lookup.
pub const LOOKUP_ACTION: &str = "lookup";
/// Action type of the empty round trip.
pub const PING_ACTION: &str = "ping";
/// First path element of a streaming-ingest `DoPut` descriptor.
pub const STREAM_PATH: &str = "stream";

/// Answers one lookup request; the result is an Arrow IPC stream.
pub async fn lookup(session: &Session, body: &[u8]) -> Result<Vec<u8>> {
    let request: Value =
        serde_json::from_slice(body).map_err(Error::invalid_input("lookup request is not JSON"))?;
    let group = request
        .get("group")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Invalid("lookup request needs \"group\": \"schema.group\"".into()))?;
    let rows = request
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Invalid("lookup request needs \"keys\": [...]".into()))?;
    let columns: Option<Vec<String>> = match request.get("columns") {
        None | Some(Value::Null) => None,
        Some(Value::Array(names)) => Some(
            names
                .iter()
                .map(|n| {
                    n.as_str().map(str::to_string).ok_or_else(|| {
                        Error::Invalid("lookup \"columns\" must be a list of names".into())
                    })
                })
                .collect::<Result<_>>()?,
        ),
        Some(_) => {
            return Err(Error::Invalid(
                "lookup \"columns\" must be a list of names".into(),
            ));
        }
    };
    let name = group_name(session, group)?;
    session.authorize(Privilege::Select, &name).await?;
    let online = session.store().online();
    let group = match online.loaded(&name.to_string()) {
        Some(group) => group,
        None => online.group(&name).await?,
    };
    let keys = key_arrays(rows, group.key_columns().len())?;
    let batch = session.lookup(&name, &keys, columns.as_deref()).await?;
    ipc_bytes(&batch)
}

/// Streams a `DoPut` into a table: each batch is acknowledged once logged.
/// Batches that arrive together share one log record. Records are validated
/// and encoded in parallel on blocking threads, queued in order, and the next
/// ones are queued while earlier ones wait for their fsync, so they share
/// fsyncs too. Acknowledgements keep the order of the batches.
/// The table a `DoPut` stream writes to, once the caller may insert into it.
pub async fn stream_target(session: &Session, table: &str) -> Result<TableName> {
    let name = group_name(session, table)?;
    session.authorize(Privilege::Insert, &name).await?;
    // Its records commit later, by the batch: the log records who opened it.
    session.audit_stream(&name).await;
    Ok(name)
}

pub fn stream_into(
    session: Session,
    table: String,
    data: impl Stream<Item = std::result::Result<arrow_flight::FlightData, tonic::Status>>
    + Send
    + 'static,
) -> Result<impl Stream<Item = std::result::Result<PutResult, tonic::Status>> + Send + 'static> {
    /// Records of one stream waiting for their fsync at once.
    const IN_FLIGHT: usize = 32;
    /// Records of one stream being prepared (validated, encoded) at once, so
    /// that work can use more than one core: done on the stream's own task it
    /// kept that task busy two thirds of an ingest.
    const PREPARING: usize = 4;
    /// Batches that arrive together are copied into records of at most this
    /// many: larger ones (tens of MB) fall outside malloc's reusable heap, and
    /// every page of a fresh mapping is faulted in and zeroed, a tenth of an
    /// ingest's CPU when records took up to 256 batches.
    const RECORD_BATCHES: usize = 16;
    let name = group_name(&session, &table)?;
    let streams = session.store().streams().clone();
    let queueing = streams.clone();
    let batches = FlightRecordBatchStream::new_from_flight_data(data.map_err(FlightError::from));
    let acks = batches
        .map_err(move |e| Error::invalid_input(format!("stream into {table}"))(e))
        .ready_chunks(RECORD_BATCHES)
        // Concurrently, keeping order: validate and encode each run of batches.
        .map(move |chunk| {
            let streams = streams.clone();
            let name = name.clone();
            async move { prepare_chunk(&streams, &name, chunk).await }
        })
        .buffered(PREPARING)
        // Nothing is queued after a batch that fails validation: the stream
        // ends here, before the queueing stage could take a later chunk (a
        // queued record is acknowledged and committed whatever happens next).
        .scan(false, |failed, prepared| {
            if *failed {
                return futures::future::ready(None);
            }
            *failed = prepared.is_err();
            futures::future::ready(Some(prepared))
        })
        // In order: queue the records in the log.
        .then(move |prepared: Result<Vec<(Vec<usize>, Prepared)>>| {
            let streams = queueing.clone();
            async move {
                let mut queued = Vec::new();
                for (sizes, record) in prepared? {
                    let acked = streams.queue(record).await?;
                    queued.push((sizes, acked));
                }
                Ok::<_, Error>(queued)
            }
        })
        // Concurrently, keeping order: wait until durable and acknowledged
        // (pending for commit, online); a record queued is acknowledged even
        // if this client goes away.
        .map(|queued: Result<Vec<(Vec<usize>, AckTask)>>| async move {
            let mut acked = Vec::new();
            for (sizes, task) in queued? {
                acked.push((sizes, acknowledged(task).await?));
            }
            Ok::<_, Error>(acked)
        })
        .buffered(IN_FLIGHT)
        // In order: answer.
        .map(move |acked: Result<Vec<(Vec<usize>, Ack)>>| {
            let mut results = Vec::new();
            for (sizes, ack) in acked? {
                results.extend(sizes.into_iter().map(|rows| {
                    PutResult {
                        app_metadata: serde_json::json!({ "lsn": ack.lsn, "rows": rows })
                            .to_string()
                            .into_bytes()
                            .into(),
                    }
                }));
            }
            Ok(results)
        })
        .flat_map(|acks: Result<Vec<PutResult>>| match acks {
            Ok(acks) => futures::stream::iter(acks.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::iter(vec![Err(super::to_status(e))]).right_stream(),
        });
    // Stop at the first error: later batches are not taken.
    Ok(acks.scan(false, |failed, item| {
        if *failed {
            return futures::future::ready(None);
        }
        *failed = item.is_err();
        futures::future::ready(Some(item))
    }))
}

/// Prepares the batches that arrived together: one record when they share a
/// schema, else one each. Each record carries the sizes of its batches.
async fn prepare_chunk(
    streams: &Streams,
    name: &TableName,
    chunk: Vec<Result<RecordBatch>>,
) -> Result<Vec<(Vec<usize>, Prepared)>> {
    let batches: Vec<RecordBatch> = chunk.into_iter().collect::<Result<_>>()?;
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    if batches.iter().all(|b| b.schema() == schema) {
        let sizes = batches.iter().map(RecordBatch::num_rows).collect();
        let record = streams.prepare(name, batches).await?;
        return Ok(vec![(sizes, record)]);
    }
    let mut prepared = Vec::with_capacity(batches.len());
    for batch in batches {
        let rows = batch.num_rows();
        let record = streams.prepare(name, vec![batch]).await?;
        prepared.push((vec![rows], record));
    }
    Ok(prepared)
}

/// `schema.group` or `group` (in the session's schema).
fn group_name(session: &Session, text: &str) -> Result<TableName> {
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [table] => TableName::new(session.current_schema(), table.to_lowercase()),
        [schema, table] => TableName::new(schema.to_lowercase(), table.to_lowercase()),
        _ => Err(Error::Invalid(format!(
            "{text} is not a feature group name (schema.group)"
        ))),
    }
}

/// Key rows (a value for a one-column key, a list for composite keys) as one
/// array per key column; the group casts them to its key types.
fn key_arrays(rows: &[Value], width: usize) -> Result<Vec<ArrayRef>> {
    let mut columns: Vec<Vec<&Value>> = vec![Vec::with_capacity(rows.len()); width];
    for (i, row) in rows.iter().enumerate() {
        match row {
            Value::Array(values) if values.len() == width => {
                for (k, v) in values.iter().enumerate() {
                    columns[k].push(v);
                }
            }
            Value::Array(values) => {
                return Err(Error::Invalid(format!(
                    "lookup key {i} has {} values; the group's key has {width} columns",
                    values.len()
                )));
            }
            value if width == 1 => columns[0].push(value),
            _ => {
                return Err(Error::Invalid(format!(
                    "lookup key {i} must be a list of {width} values"
                )));
            }
        }
    }
    columns.iter().map(|values| json_array(values)).collect()
}

fn json_array(values: &[&Value]) -> Result<ArrayRef> {
    if values.iter().all(|v| v.is_i64() || v.is_null()) {
        return Ok(Arc::new(Int64Array::from_iter(
            values.iter().map(|v| v.as_i64()),
        )));
    }
    if values.iter().all(|v| v.is_number() || v.is_null()) {
        return Ok(Arc::new(Float64Array::from_iter(
            values.iter().map(|v| v.as_f64()),
        )));
    }
    if values.iter().all(|v| v.is_boolean() || v.is_null()) {
        return Ok(Arc::new(BooleanArray::from_iter(
            values.iter().map(|v| v.as_bool()),
        )));
    }
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(Error::Invalid(format!(
                "lookup key value {other} is not a string or number"
            ))),
        })
        .collect::<Result<StringArray>>()
        .map(|a| Arc::new(a) as ArrayRef)
}

/// A batch as an Arrow IPC stream.
pub fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    // Not `get_array_memory_size`: a 1-row lookup is a slice of a chunk whose
    // buffers hold every entity, and sizing by them allocated hundreds of MB.
    let width: usize = batch
        .columns()
        .iter()
        .map(|c| c.data_type().primitive_width().unwrap_or(16) + 1)
        .sum();
    let mut out = Vec::with_capacity(1024 + 96 * batch.num_columns() + width * batch.num_rows());
    let mut writer =
        StreamWriter::try_new(&mut out, &batch.schema()).map_err(Error::arrow("lookup result"))?;
    writer.write(batch).map_err(Error::arrow("lookup result"))?;
    writer.finish().map_err(Error::arrow("lookup result"))?;
    drop(writer);
    Ok(out)
}
