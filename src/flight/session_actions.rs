//! Flight's session actions, which arrow-flight has no types for: the ADBC
//! driver sends `GetSessionOptions` for the current catalog and schema,
//! `SetSessionOptions` to change them, and `CloseSession` when a connection
//! closes. Their messages are Flight's own (`CloseSessionRequest` and
//! `GetSessionOptionsRequest` are empty).

use std::collections::HashMap;

use futures::TryStreamExt;
use prost::Message;
use tonic::Status;

use crate::catalog::{CATALOG_NAME, DEFAULT_SCHEMA};
use crate::session::Session;
use crate::sql::parse_sql;

pub const CLOSE_SESSION: &str = "CloseSession";
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub const SET_SESSION_OPTIONS: &str = "SetSessionOptions";

/// The options a session has: the catalog (only pitlake's) and the schema
/// unqualified names resolve in.
const CATALOG_OPTION: &str = "catalog";
const SCHEMA_OPTION: &str = "schema";

/// `CloseSessionResult`: CLOSED, or NOT_CLOSEABLE for a session that is
/// not the caller's to close.
pub fn close_result(closed: bool) -> Vec<u8> {
    CloseSessionResult {
        status: if closed { CLOSED } else { NOT_CLOSEABLE },
    }
    .encode_to_vec()
}

/// `GetSessionOptionsResult`: the catalog and the session's current schema.
pub fn options_result(schema: String) -> Vec<u8> {
    let text = |value: String| SessionOptionValue {
        option_value: Some(OptionValue::Text(value)),
    };
    GetSessionOptionsResult {
        session_options: HashMap::from([
            (CATALOG_OPTION.to_string(), text(CATALOG_NAME.to_string())),
            (SCHEMA_OPTION.to_string(), text(schema)),
        ]),
    }
    .encode_to_vec()
}

/// What a `SetSessionOptionsRequest` asks of one option.
enum Requested {
    Set(String),
    Unset,
    /// A value of another kind than a string (pitlake's options are strings).
    NotText,
}

/// The options a `SetSessionOptionsRequest` names, in name order.
fn requested_options(body: &[u8]) -> Result<Vec<(String, Requested)>, prost::DecodeError> {
    let request = SetSessionOptionsRequest::decode(body)?;
    let mut options: Vec<_> = request
        .session_options
        .into_iter()
        .map(|(name, value)| {
            let value = match value.option_value {
                None => Requested::Unset,
                Some(OptionValue::Text(text)) => Requested::Set(text),
                Some(_) => Requested::NotText,
            };
            (name, value)
        })
        .collect();
    options.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(options)
}

/// Sets what a `SetSessionOptionsRequest` asks and answers its result: the
/// schema as `USE` would (it must exist; unset, it is `default` again), the
/// catalog only to pitlake's; other names and non-string values are refused
/// option by option.
pub async fn set_options(session: &Session, body: &[u8]) -> Result<Vec<u8>, Status> {
    let requested = requested_options(body)
        .map_err(|e| Status::invalid_argument(format!("{SET_SESSION_OPTIONS}: {e}")))?;
    let mut errors = Vec::new();
    for (name, value) in requested {
        let set = match (name.as_str(), value) {
            (CATALOG_OPTION | SCHEMA_OPTION, Requested::NotText) => Err(OptionError::InvalidValue),
            (CATALOG_OPTION, Requested::Unset) => Ok(()),
            (CATALOG_OPTION, Requested::Set(catalog)) if catalog == CATALOG_NAME => Ok(()),
            (CATALOG_OPTION, Requested::Set(_)) => Err(OptionError::InvalidValue),
            (SCHEMA_OPTION, schema) => {
                let schema = match schema {
                    Requested::Set(schema) => schema,
                    _ => DEFAULT_SCHEMA.to_string(),
                };
                use_schema(session, &schema)
                    .await
                    .map_err(|_| OptionError::InvalidValue)
            }
            _ => Err(OptionError::InvalidName),
        };
        if let Err(error) = set {
            errors.push((name, error));
        }
    }
    Ok(set_result(errors))
}

/// `USE "schema"`, through the statement path (its checks, its audit).
async fn use_schema(session: &Session, schema: &str) -> crate::error::Result<()> {
    let sql = format!("USE \"{}\"", schema.replace('"', "\"\""));
    let mut statements = parse_sql(&sql)?;
    if statements.len() != 1 {
        return Err(crate::error::Error::Invalid(format!(
            "not a schema name: {schema:?}"
        )));
    }
    let statement = statements.remove(0);
    let mut result = session.execute_stream(statement).await?;
    while result.try_next().await?.is_some() {}
    Ok(())
}

/// Why an option was not set (`SetSessionOptionsResult.ErrorValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OptionError {
    InvalidName = 1,
    InvalidValue = 2,
}

/// `SetSessionOptionsResult`: the options that were not set, and why.
fn set_result(errors: Vec<(String, OptionError)>) -> Vec<u8> {
    SetSessionOptionsResult {
        errors: errors
            .into_iter()
            .map(|(name, error)| {
                (
                    name,
                    SetOptionError {
                        value: error as i32,
                    },
                )
            })
            .collect(),
    }
    .encode_to_vec()
}

/// `CloseSessionResult.Status` values.
const CLOSED: i32 = 1;
const NOT_CLOSEABLE: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    option_value: Option<OptionValue>,
}

/// `SessionOptionValue.option_value`.
#[derive(Clone, PartialEq, prost::Oneof)]
enum OptionValue {
    #[prost(string, tag = "1")]
    Text(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sfixed64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    TextList(TextList),
}

#[derive(Clone, PartialEq, prost::Message)]
struct TextList {
    #[prost(string, repeated, tag = "1")]
    values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    errors: HashMap<String, SetOptionError>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SetOptionError {
    #[prost(int32, tag = "1")]
    value: i32,
}
