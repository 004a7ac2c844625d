//! The crate error: one variant per thing a user (or the machine) can get wrong,
//! each carrying the context needed to print a message that names the problem.

use datafusion::error::DataFusionError;

/// Result alias used across pitlake.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pitlake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),

    /// A table or feature group that does not exist.
    #[error("table {table} does not exist")]
    TableNotFound { table: String },

    /// A schema (namespace) that does not exist.
    #[error("schema {schema} does not exist")]
    SchemaNotFound { schema: String },

    /// Creating something that is already there.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },

    /// A time-travel clause naming a snapshot id the table never had.
    #[error("snapshot {snapshot_id} does not exist in table {table}")]
    SnapshotNotFound { table: String, snapshot_id: i64 },

    /// A time-travel clause naming a tag or branch the table does not have.
    #[error("table {table} has no tag or branch named '{reference}'")]
    RefNotFound { table: String, reference: String },

    /// A timestamp earlier than the first snapshot of a table.
    #[error(
        "table {table} has no snapshot at or before {timestamp}: its first snapshot was committed at {first}"
    )]
    TimestampBeforeFirstSnapshot {
        table: String,
        timestamp: String,
        first: String,
    },

    /// Time travel on a table that has never been written to.
    #[error("table {table} has no snapshots yet: there is no version to travel to")]
    NoSnapshots { table: String },

    /// Time travel on something that is not an Iceberg table (a view, a CTE, a file).
    #[error("{table} is not an Iceberg table: time travel (AS OF) needs Iceberg snapshots")]
    NotIceberg { table: String },

    /// A row that does not fit the table it is written to.
    #[error("cannot write to {table}: column {column}, row {row}: {reason}")]
    BadRow {
        table: String,
        column: String,
        row: usize,
        reason: String,
    },

    /// Input whose shape does not fit the target (missing or extra columns, bad file).
    #[error("cannot write to {table}: {reason}")]
    BadInput { table: String, reason: String },

    /// Stored data that is not what pitlake wrote (a damaged log segment):
    /// nothing the client can fix; the operator must look.
    #[error("data corruption: {0}")]
    Corrupt(String),

    /// A broken invariant of pitlake itself (a worker gone, a counter run out).
    #[error("internal error: {0}")]
    Internal(String),

    /// A statement that is well formed SQL but makes no sense for pitlake.
    #[error("{0}")]
    Invalid(String),

    /// A resource another pitlake process holds (a stream's write-ahead log).
    #[error("{what} is locked: another pitlake process owns it")]
    Locked { what: String },

    /// A schema or table name that breaks the naming rule (`names.rs`).
    #[error("invalid {kind} name \"{name}\": {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },

    /// A commit that kept losing to concurrent commits to the same table.
    #[error(
        "cannot commit to {table}: {attempts} attempts lost to concurrent commits; nothing was written, try again"
    )]
    CommitConflict { table: String, attempts: u32 },

    /// A `SET` the session may not make (`settings.rs`).
    #[error("cannot set {name}: {reason}")]
    Setting { name: String, reason: String },

    /// A file a COPY may not read or write (`file_access.rs`).
    #[error("cannot use the file {path}: {reason}")]
    FileDenied { path: String, reason: String },

    /// A statement larger or deeper than pitlake plans (`sql/limits.rs`).
    #[error("statement too complex: {0}")]
    TooComplex(String),

    /// A feature pitlake does not have (yet), named so the user knows.
    #[error("not supported: {0}")]
    NotSupported(String),

    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// An error from the Iceberg library, with what we were doing.
    #[error("{context}: {source}")]
    Iceberg {
        context: String,
        #[source]
        source: Box<iceberg::Error>,
    },

    /// An error from DataFusion planning or execution.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
}

impl Error {
    /// Wraps an Iceberg error with what pitlake was doing when it happened.
    pub fn iceberg(context: impl Into<String>) -> impl FnOnce(iceberg::Error) -> Error {
        let context = context.into();
        move |source| Error::Iceberg {
            context,
            source: Box::new(source),
        }
    }

    /// True when the error is the user's mistake rather than the system's.
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            Error::Io { .. } | Error::Iceberg { .. } | Error::Corrupt(_) | Error::Internal(_)
        )
    }
}

impl From<DataFusionError> for Error {
    /// Unwraps pitlake errors that travelled through DataFusion (raised inside a
    /// table provider or sink), so the user sees our message, not a wrapper's.
    fn from(err: DataFusionError) -> Self {
        match err {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(Box::new(DataFusionError::External(other))),
            },
            DataFusionError::Context(ctx, inner) => match Error::from(*inner) {
                Error::DataFusion(df) => {
                    Error::DataFusion(Box::new(DataFusionError::Context(ctx, df)))
                }
                ours => ours,
            },
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from(inner),
                Err(shared) => Error::DataFusion(Box::new(DataFusionError::Shared(shared))),
            },
            other => Error::DataFusion(Box::new(other)),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        match err {
            Error::DataFusion(df) => *df,
            ours => DataFusionError::External(Box::new(ours)),
        }
    }
}

impl From<sqlparser::tokenizer::TokenizerError> for Error {
    fn from(err: sqlparser::tokenizer::TokenizerError) -> Self {
        Error::Syntax(err.to_string())
    }
}

impl From<sqlparser::parser::ParserError> for Error {
    fn from(err: sqlparser::parser::ParserError) -> Self {
        let text = err.to_string();
        Error::Syntax(
            text.strip_prefix("sql parser error: ")
                .unwrap_or(&text)
                .to_string(),
        )
    }
}
