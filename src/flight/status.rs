//! Every pitlake error as the gRPC status a client should see: the user's
//! mistakes are InvalidArgument, NotFound, AlreadyExists…, never Internal, and
//! carry the same message the CLI prints.

use datafusion::error::DataFusionError;
use tonic::Status;

use crate::error::Error;

/// Maps an error to its gRPC status.
pub fn to_status(err: Error) -> Status {
    let message = err.to_string();
    match &err {
        Error::TableNotFound { .. }
        | Error::SchemaNotFound { .. }
        | Error::SnapshotNotFound { .. }
        | Error::RefNotFound { .. } => Status::not_found(message),
        Error::AlreadyExists { .. } => Status::already_exists(message),
        Error::Syntax(_)
        | Error::TimestampBeforeFirstSnapshot { .. }
        | Error::NoSnapshots { .. }
        | Error::NotIceberg { .. }
        | Error::BadRow { .. }
        | Error::BadInput { .. }
        | Error::InvalidName { .. }
        | Error::TooComplex(_)
        | Error::Setting { .. }
        | Error::Invalid(_) => Status::invalid_argument(message),
        Error::FileDenied { .. } => Status::permission_denied(message),
        // The conventional code for "a concurrent change won: try again".
        Error::CommitConflict { .. } => Status::aborted(message),
        Error::NotSupported(_) => Status::unimplemented(message),
        Error::Locked { .. } => Status::failed_precondition(message),
        Error::Io { .. } | Error::Iceberg { .. } | Error::Internal(_) => {
            // The operator's problem, not the client's: it goes to the log too.
            eprintln!("error: {message}");
            Status::internal(message)
        }
        Error::Corrupt(_) => {
            eprintln!("error: {message}");
            Status::data_loss(message)
        }
        Error::DataFusion(df) => datafusion_status(df, message),
    }
}

fn datafusion_status(err: &DataFusionError, message: String) -> Status {
    match err.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(_, _)
        | DataFusionError::SchemaError(_, _)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => Status::invalid_argument(message),
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        DataFusionError::ExecutionJoin(_) => Status::cancelled(message),
        DataFusionError::ArrowError(_, _) | DataFusionError::Execution(_) => {
            // Casts and arithmetic on user data fail here: the query's fault.
            Status::invalid_argument(message)
        }
        _ => Status::internal(message),
    }
}

/// A DataFusion error as a status, unwrapping pitlake errors inside it.
pub fn df_status(err: DataFusionError) -> Status {
    to_status(Error::from(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

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
                Error::from(DataFusionError::Plan("table 'x' not found".into())),
                Code::InvalidArgument,
            ),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let status = to_status(err);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }
}
