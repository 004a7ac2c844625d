//! What tickets and prepared-statement handles carry, so the server keeps no
//! per-query state: a query's SQL (and bound parameters) to run at `DoGet`, or
//! the small result of a statement already executed (DDL, INSERT: a count).
//!
//! A client could rewrite what it holds, so every ticket and handle is sealed:
//! it names the user it was issued to and ends with an HMAC-SHA256 under a key
//! the server draws at start. A sealed handle is redeemed only by its user,
//! and nothing a client made up is ever decoded (Arrow IPC included).

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use datafusion::common::ScalarValue;
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use serde_json::{Value, json};
use tonic::Status;

use super::auth::constant_time_eq;
use crate::error::{Error, Result};

/// The contents of a ticket or a prepared-statement handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Handle {
    /// A query, run when the ticket is redeemed.
    Query {
        sql: String,
        /// Bound parameter values: one row.
        params: Option<RecordBatch>,
        /// A prepared statement's parameter types, `$1` first (`None` where
        /// the statement does not tell): what bound values must convert to.
        /// Absent from tickets, whose parameters were converted already.
        types: Option<Vec<Option<DataType>>>,
    },
    /// The result of a statement that ran when its FlightInfo was requested.
    Done { result: RecordBatch },
}

impl Handle {
    fn to_json(&self) -> Result<Value> {
        Ok(match self {
            Handle::Query { sql, params, types } => json!({
                "query": sql,
                "params": params.as_ref().map(ipc_encode).transpose()?,
                "types": types.as_ref().map(|types| {
                    types
                        .iter()
                        .map(|t| t.as_ref().map(ToString::to_string))
                        .collect::<Vec<_>>()
                }),
            }),
            Handle::Done { result } => json!({ "done": ipc_encode(result)? }),
        })
    }

    fn from_json(value: &Value) -> Result<Self> {
        let bad = || Error::Invalid("malformed ticket or statement handle".into());
        if let Some(sql) = value.get("query").and_then(Value::as_str) {
            let params = match value.get("params").and_then(Value::as_str) {
                Some(p) => Some(ipc_decode(p)?),
                None => None,
            };
            let types = match value.get("types").and_then(Value::as_array) {
                Some(types) => Some(
                    types
                        .iter()
                        .map(|t| match t.as_str() {
                            Some(name) => name.parse::<DataType>().map(Some).map_err(|_| bad()),
                            None => Ok(None),
                        })
                        .collect::<Result<Vec<_>>>()?,
                ),
                None => None,
            };
            return Ok(Handle::Query {
                sql: sql.to_string(),
                params,
                types,
            });
        }
        let done = value.get("done").and_then(Value::as_str).ok_or_else(bad)?;
        Ok(Handle::Done {
            result: ipc_decode(done)?,
        })
    }
}

/// Length of the HMAC-SHA256 that ends a sealed handle.
const TAG_BYTES: usize = 32;
/// SHA-256's block: HMAC pads its key to this.
const BLOCK_BYTES: usize = 64;

/// Seals and opens tickets and handles (see the module's comment).
pub struct Sealer {
    key: [u8; 32],
    sha256: Arc<ScalarUDF>,
    config: Arc<ConfigOptions>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Default for Sealer {
    fn default() -> Self {
        Self::new()
    }
}

impl Sealer {
    /// A sealer with a fresh random key: what it sealed does not outlive it.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Sealer {
            key,
            // DataFusion's SHA-256 (its `sha256()` SQL function): the one
            // digest among pitlake's dependencies.
            sha256: datafusion::functions::crypto::sha256(),
            config: Arc::new(ConfigOptions::default()),
        }
    }

    /// `handle` as bytes only `user` can redeem (`None`: the unauthenticated
    /// server's anonymous client), with an id of its own so that one run of a
    /// query can be told from another (to cancel it) and one preparation of
    /// a statement from another (for the parameters bound to it).
    pub fn seal(&self, handle: &Handle, user: Option<&str>) -> Result<Vec<u8>> {
        let mut value = handle.to_json()?;
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "id".into(),
                Value::String(uuid::Uuid::new_v4().simple().to_string()),
            );
            object.insert("user".into(), user.map_or(Value::Null, Value::from));
        }
        let mut bytes = value.to_string().into_bytes();
        let tag = self.tag(&bytes)?;
        bytes.extend_from_slice(&tag);
        Ok(bytes)
    }

    /// What a sealed ticket or handle carries, for `user` only.
    pub fn open(&self, bytes: &[u8], user: Option<&str>) -> std::result::Result<Handle, Status> {
        let foreign = || {
            Status::invalid_argument(
                "malformed ticket or statement handle: not one this server issued (or issued before it restarted); plan the query or prepare the statement again",
            )
        };
        if bytes.len() <= TAG_BYTES {
            return Err(foreign());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
        let expected = self.tag(payload).map_err(super::status::to_status)?;
        if !constant_time_eq(&expected, tag) {
            return Err(foreign());
        }
        // Sealed by this server: what follows only fails on a bug.
        let value: Value = serde_json::from_slice(payload).map_err(|_| foreign())?;
        let owner = value.get("user").and_then(Value::as_str);
        if owner != user {
            return Err(Status::permission_denied(
                "this ticket or statement handle was issued to another user: plan the query or prepare the statement with your own sign-in",
            ));
        }
        Handle::from_json(&value).map_err(super::status::to_status)
    }

    /// HMAC-SHA256 (RFC 2104) of `message` under the server's key.
    fn tag(&self, message: &[u8]) -> Result<[u8; 32]> {
        let mut inner_pad = [0x36u8; BLOCK_BYTES];
        let mut outer_pad = [0x5cu8; BLOCK_BYTES];
        for (i, k) in self.key.iter().enumerate() {
            inner_pad[i] ^= k;
            outer_pad[i] ^= k;
        }
        let mut inner = Vec::with_capacity(BLOCK_BYTES + message.len());
        inner.extend_from_slice(&inner_pad);
        inner.extend_from_slice(message);
        let inner = self.digest(inner)?;
        let mut outer = Vec::with_capacity(BLOCK_BYTES + inner.len());
        outer.extend_from_slice(&outer_pad);
        outer.extend_from_slice(&inner);
        self.digest(outer)
    }

    fn digest(&self, data: Vec<u8>) -> Result<[u8; 32]> {
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Scalar(ScalarValue::Binary(Some(data)))],
            arg_fields: vec![Arc::new(Field::new("data", DataType::Binary, true))],
            number_rows: 1,
            return_field: Arc::new(Field::new("digest", DataType::Binary, true)),
            config_options: Arc::clone(&self.config),
        };
        match self.sha256.invoke_with_args(args)? {
            ColumnarValue::Scalar(ScalarValue::Binary(Some(digest))) => digest
                .try_into()
                .map_err(|_| Error::Internal("SHA-256 gave a digest of another length".into())),
            other => Err(Error::Internal(format!(
                "SHA-256 gave {} instead of a digest",
                other.data_type()
            ))),
        }
    }
}

fn ipc_encode(batch: &RecordBatch) -> Result<String> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())
            .map_err(Error::arrow("encoding a ticket"))?;
        writer
            .write(batch)
            .map_err(Error::arrow("encoding a ticket"))?;
        writer.finish().map_err(Error::arrow("encoding a ticket"))?;
    }
    Ok(BASE64_STANDARD.encode(bytes))
}

fn ipc_decode(text: &str) -> Result<RecordBatch> {
    let bytes = BASE64_STANDARD
        .decode(text)
        .map_err(Error::invalid_input("malformed ticket"))?;
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(Error::invalid_input("malformed ticket"))?;
    let schema = reader.schema();
    match reader.next() {
        Some(batch) => batch.map_err(Error::invalid_input("malformed ticket")),
        None => Ok(RecordBatch::new_empty(Arc::clone(&schema))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Schema;
    use tonic::Code;

    fn handles() -> Vec<Handle> {
        let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![5]))]).expect("batch");
        vec![
            Handle::Query {
                sql: "SELECT $1".into(),
                params: Some(batch.clone()),
                types: None,
            },
            Handle::Query {
                sql: "SELECT $1, $2".into(),
                params: None,
                types: Some(vec![
                    Some(DataType::Int64),
                    None,
                    Some(DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        None,
                    )),
                    Some(DataType::Utf8View),
                    Some(DataType::Decimal128(10, 2)),
                ]),
            },
            Handle::Done { result: batch },
        ]
    }

    #[test]
    fn sealed_handles_round_trip_for_their_user() {
        let sealer = Sealer::new();
        for handle in handles() {
            for user in [Some("alice"), None] {
                let sealed = sealer.seal(&handle, user).expect("seal");
                assert_eq!(sealer.open(&sealed, user).expect("open"), handle);
            }
        }
    }

    #[test]
    fn another_user_is_refused() {
        let sealer = Sealer::new();
        let sealed = sealer.seal(&handles()[0], Some("alice")).expect("seal");
        for user in [Some("bob"), None] {
            let err = sealer.open(&sealed, user).expect_err("not alice");
            assert_eq!(err.code(), Code::PermissionDenied, "{err}");
            assert!(err.message().contains("another user"), "{err}");
        }
    }

    #[test]
    fn tampered_and_foreign_handles_are_invalid() {
        let sealer = Sealer::new();
        let sealed = sealer.seal(&handles()[0], Some("alice")).expect("seal");
        let text = String::from_utf8_lossy(&sealed[..sealed.len() - TAG_BYTES]).to_string();
        // Claiming to be bob's: the tag no longer matches.
        let mut forged = text.replace("\"alice\"", "\"bob\"").into_bytes();
        forged.extend_from_slice(&sealed[sealed.len() - TAG_BYTES..]);
        let other_server = Sealer::new()
            .seal(&handles()[0], Some("bob"))
            .expect("seal");
        for bytes in [
            forged,
            other_server,
            Vec::new(),
            b"{}".to_vec(),
            sealed[..sealed.len() - 1].to_vec(),
            vec![0xff; 100],
        ] {
            let err = sealer.open(&bytes, Some("bob")).expect_err("forged");
            assert_eq!(err.code(), Code::InvalidArgument, "{err}");
            assert!(err.message().contains("malformed ticket"), "{err}");
        }
    }

    #[test]
    fn tags_are_hmac_sha256() {
        // RFC 4231, test case 2: key "Jefe", padded with zeros as HMAC does.
        let mut sealer = Sealer::new();
        sealer.key = [0; 32];
        sealer.key[..4].copy_from_slice(b"Jefe");
        let tag = sealer.tag(b"what do ya want for nothing?").expect("tag");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
