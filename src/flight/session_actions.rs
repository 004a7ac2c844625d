//! Flight's session actions, which arrow-flight has no types for: the ADBC
//! driver sends `GetSessionOptions` for the current catalog and schema, and
//! `CloseSession` when a connection closes. Their messages are Flight's own
//! (`CloseSessionRequest` and `GetSessionOptionsRequest` are empty).

use std::collections::HashMap;

use prost::Message;

use crate::catalog::CATALOG_NAME;

pub const CLOSE_SESSION: &str = "CloseSession";
pub const GET_SESSION_OPTIONS: &str = "GetSessionOptions";

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
        string_value: Some(value),
    };
    GetSessionOptionsResult {
        session_options: HashMap::from([
            ("catalog".to_string(), text(CATALOG_NAME.to_string())),
            ("schema".to_string(), text(schema)),
        ]),
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

/// `SessionOptionValue`, of which pitlake sends only strings (the
/// `string_value` member of its `oneof`, the same on the wire).
#[derive(Clone, PartialEq, prost::Message)]
struct SessionOptionValue {
    #[prost(string, optional, tag = "1")]
    string_value: Option<String>,
}
