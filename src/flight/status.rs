//! Every pitlake error as the gRPC status a client should see, by its
//! [`Cause`]: the user's mistakes are InvalidArgument, NotFound,
//! AlreadyExists…, never Internal, and carry the same message the CLI prints
//! followed by its causes. Problems of the server's own (corrupt data, a
//! failed disk or catalog, a bug) are also logged as errors, denials and
//! exhausted limits as warnings, the client's other mistakes at debug level.

use std::error::Error as _;

use datafusion::error::DataFusionError;
use tonic::{Code, Status};

use crate::error::{Cause, Error};

/// The longest message a status carries: an error quoting a huge statement
/// or value must not make a huge reply (or log line).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// The gRPC code of each cause.
pub fn code_of(cause: Cause) -> Code {
    match cause {
        Cause::Mistake => Code::InvalidArgument,
        Cause::NotFound => Code::NotFound,
        Cause::AlreadyExists => Code::AlreadyExists,
        Cause::Denied => Code::PermissionDenied,
        Cause::Unsupported => Code::Unimplemented,
        // The conventional code for "a concurrent change won: try again".
        Cause::Conflict => Code::Aborted,
        Cause::Exhausted => Code::ResourceExhausted,
        Cause::Corrupt => Code::DataLoss,
        Cause::Unavailable => Code::Unavailable,
        Cause::Internal => Code::Internal,
    }
}

/// Maps an error to its gRPC status (and logs it by its cause).
pub fn to_status(err: Error) -> Status {
    let cause = err.cause();
    let message = capped(message_with_causes(&err));
    // Debug-quoted: messages quote client text (names, paths), whose line
    // breaks must not forge log lines.
    match cause {
        _ if cause.is_operators() => tracing::error!(cause = ?cause, error = ?message),
        // Worth an operator's glance: a probe of what is allowed, a server
        // or stream at its limits.
        Cause::Denied | Cause::Exhausted => tracing::warn!(cause = ?cause, error = ?message),
        _ => tracing::debug!(cause = ?cause, error = ?message),
    }
    Status::new(code_of(cause), message)
}

/// The error's message, then each source it wraps whose text the message
/// does not already include.
pub fn message_with_causes(err: &Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// At most [`MAX_MESSAGE_BYTES`], cut at a character boundary, saying so.
fn capped(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} more bytes)", total - end));
    message
}

/// A DataFusion error as a status, unwrapping pitlake errors inside it.
pub fn df_status(err: DataFusionError) -> Status {
    to_status(Error::from(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_mistakes_are_not_internal() {
        let cases = [
            (
                Error::TableNotFound {
                    table: "s.t".into(),
                },
                Code::NotFound,
            ),
            (
                Error::AlreadyExists {
                    kind: "table",
                    name: "s.t".into(),
                },
                Code::AlreadyExists,
            ),
            (Error::Syntax("x".into()), Code::InvalidArgument),
            (Error::NotSupported("x".into()), Code::Unimplemented),
            (Error::Corrupt("segment 3".into()), Code::DataLoss),
            (Error::Internal("writer gone".into()), Code::Internal),
            (
                Error::CommitConflict {
                    table: "s.t".into(),
                    attempts: 8,
                },
                Code::Aborted,
            ),
            (
                Error::ResourceExhausted("stream behind".into()),
                Code::ResourceExhausted,
            ),
            (
                Error::Io {
                    path: "/w/t".into(),
                    source: std::io::Error::other("disk gone"),
                },
                Code::Unavailable,
            ),
            (
                Error::from(DataFusionError::Plan("table 'x' not found".into())),
                Code::InvalidArgument,
            ),
            (
                Error::from(DataFusionError::ResourcesExhausted("pool".into())),
                Code::ResourceExhausted,
            ),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let status = to_status(err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    /// Errors that used to be flattened into `Error::Invalid(e.to_string())`
    /// (INVALID_ARGUMENT, the client's fault) now keep their cause: an Arrow
    /// failure on pitlake's own arrays is INTERNAL, also after travelling
    /// through DataFusion from inside an operator; unreadable client input
    /// stays INVALID_ARGUMENT and names its source once; a failed dependency
    /// is UNAVAILABLE.
    #[test]
    fn flattened_errors_keep_their_cause() {
        use std::sync::Arc;

        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};

        let schema = Arc::new(Schema::new(vec![Field::new(
            "count",
            DataType::Utf8,
            false,
        )]));
        let broken = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))])
            .map_err(Error::arrow("the count of rows written"))
            .expect_err("a Utf8 field with Int64 values");
        let arrow_text = broken.to_string();
        let status = to_status(broken);
        assert_eq!(status.code(), Code::Internal, "{}", status.message());
        assert_eq!(status.message(), arrow_text);

        let in_operator = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .map_err(Error::arrow("ASOF JOIN right rows"))
        .map_err(DataFusionError::from)
        .expect_err("a Utf8 field with Int64 values");
        let status = df_status(in_operator);
        assert_eq!(status.code(), Code::Internal, "{}", status.message());
        assert!(
            status.message().starts_with("ASOF JOIN right rows: "),
            "{}",
            status.message()
        );

        let not_json = serde_json::from_str::<serde_json::Value>("{nope")
            .map_err(Error::invalid_input("lookup request is not JSON"))
            .expect_err("not JSON");
        assert!(std::error::Error::source(&not_json).is_some());
        let status = to_status(not_json);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("lookup request is not JSON: key must be a string"),
            "{}",
            status.message()
        );

        let gone: std::result::Result<(), _> = Err(std::io::Error::other("terminal gone"));
        let status = to_status(
            gone.map_err(Error::unavailable("shell"))
                .expect_err("an error"),
        );
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "shell: terminal gone");
    }

    #[test]
    fn a_status_names_the_causes_and_stays_short() {
        let wrapped = Error::Arrow {
            context: "encoding the result".into(),
            source: Box::new(arrow::error::ArrowError::ExternalError(Box::new(
                std::io::Error::other("pipe closed"),
            ))),
        };
        let status = to_status(wrapped);
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().starts_with("encoding the result: ")
                && status.message().contains("pipe closed"),
            "{}",
            status.message()
        );

        let huge = Error::Invalid(format!("bad value {}", "é".repeat(100_000)));
        let status = to_status(huge);
        assert!(status.message().len() <= MAX_MESSAGE_BYTES + 32);
        assert!(
            status.message().ends_with("more bytes)"),
            "{}",
            &status.message()[8000..]
        );
    }
}
