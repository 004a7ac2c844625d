//! What tickets and prepared-statement handles carry, so the server keeps no
//! per-query state: a query's SQL (and bound parameters) to run at `DoGet`, or
//! the small result of a statement already executed (DDL, INSERT: a count).

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The contents of a ticket or a prepared-statement handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Handle {
    /// A query, run when the ticket is redeemed.
    Query {
        sql: String,
        /// Bound parameter values: one row.
        params: Option<RecordBatch>,
    },
    /// The result of a statement that ran when its FlightInfo was requested.
    Done { result: RecordBatch },
}

impl Handle {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let value = match self {
            Handle::Query { sql, params } => json!({
                "query": sql,
                "params": params.as_ref().map(ipc_encode).transpose()?,
            }),
            Handle::Done { result } => json!({ "done": ipc_encode(result)? }),
        };
        Ok(value.to_string().into_bytes())
    }

    /// The handle as a ticket: with an id of its own, so one run of a query
    /// can be told from another run of the same query (to cancel it).
    pub fn ticket(&self) -> Result<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(&self.encode()?)
            .map_err(|e| Error::Invalid(format!("ticket: {e}")))?;
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "id".into(),
                Value::String(uuid::Uuid::new_v4().simple().to_string()),
            );
        }
        Ok(value.to_string().into_bytes())
    }

    /// A new prepared statement's handle: its query, plus an id of its own,
    /// so parameters bound to it can be found by clients that keep using it
    /// after binding (instead of the handle the binding returned).
    pub fn prepared(sql: &str) -> Vec<u8> {
        json!({
            "query": sql,
            "params": null,
            "id": uuid::Uuid::new_v4().simple().to_string(),
        })
        .to_string()
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || Error::Invalid("malformed ticket or statement handle".into());
        let value: Value = serde_json::from_slice(bytes).map_err(|_| bad())?;
        if let Some(sql) = value.get("query").and_then(Value::as_str) {
            let params = match value.get("params").and_then(Value::as_str) {
                Some(p) => Some(ipc_decode(p)?),
                None => None,
            };
            return Ok(Handle::Query {
                sql: sql.to_string(),
                params,
            });
        }
        let done = value.get("done").and_then(Value::as_str).ok_or_else(bad)?;
        Ok(Handle::Done {
            result: ipc_decode(done)?,
        })
    }
}

fn ipc_encode(batch: &RecordBatch) -> Result<String> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        writer
            .write(batch)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        writer.finish().map_err(|e| Error::Invalid(e.to_string()))?;
    }
    Ok(BASE64_STANDARD.encode(bytes))
}

fn ipc_decode(text: &str) -> Result<RecordBatch> {
    let bad = |e: String| Error::Invalid(format!("malformed ticket: {e}"));
    let bytes = BASE64_STANDARD
        .decode(text)
        .map_err(|e| bad(e.to_string()))?;
    let mut reader =
        StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(e.to_string()))?;
    let schema = reader.schema();
    match reader.next() {
        Some(batch) => batch.map_err(|e| bad(e.to_string())),
        None => Ok(RecordBatch::new_empty(Arc::clone(&schema))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn handles_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![5]))]).expect("batch");
        for handle in [
            Handle::Query {
                sql: "SELECT $1".into(),
                params: Some(batch.clone()),
            },
            Handle::Query {
                sql: "SELECT 1".into(),
                params: None,
            },
            Handle::Done { result: batch },
        ] {
            let back = Handle::decode(&handle.encode().expect("encode")).expect("decode");
            assert_eq!(back, handle);
        }
    }
}
