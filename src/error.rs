//! The crate error: one variant per thing a user (or the machine) can get wrong,
//! each carrying the context needed to print a message that names the problem.

use datafusion::error::DataFusionError;

/// Result alias used across pitlake.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error kept as the source of one of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in pitlake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),

    /// A table or feature group that does not exist.
    #[error("table {table} does not exist")]
    TableNotFound { table: String },

    /// A warehouse folder without a catalog, opened by a command that does
    /// not create one (a mistyped `--warehouse`).
    #[error(
        "no warehouse at {path}: the folder has no {file}. Check --warehouse or PITLAKE_WAREHOUSE; a new warehouse is made by `pitlake quickstart`, `pitlake serve` or a statement that creates something"
    )]
    WarehouseNotFound { path: String, file: &'static str },

    /// A user or role that does not exist.
    #[error("{kind} {name} does not exist")]
    PrincipalNotFound { kind: String, name: String },

    /// An access request that does not exist (or that the principal may not
    /// see).
    #[error("there is no access request {id}")]
    RequestNotFound { id: i64 },

    /// A statement its principal may not run.
    #[error("permission denied: {user} may not {action}")]
    Denied { user: String, action: String },

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

    /// Input the client sent that cannot be read as what it should be (a
    /// request that is not JSON, an upload or ticket that does not decode, a
    /// value that does not convert), with the error that says why.
    #[error("{reason}: {source}")]
    InvalidInput {
        reason: String,
        #[source]
        source: BoxError,
    },

    /// A dependency that failed outside pitlake (the network listener, the
    /// terminal, a file written through a library), with its error.
    #[error("{context}: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: BoxError,
    },

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

    /// Rows a statement was rewriting changed under it (another writer
    /// deleted or rewrote their files meanwhile).
    #[error("{table} changed while {statement} ran: {reason}; nothing was changed, run it again")]
    Changed {
        table: String,
        statement: &'static str,
        reason: String,
    },

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

    /// An Arrow operation on pitlake's own arrays that failed (building a
    /// result, encoding IPC): a broken invariant, not the client's input.
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: Box<arrow::error::ArrowError>,
    },

    /// A limit of this server or session was reached (a stream's backlog,
    /// a queue): the client may retry later or ask for less.
    #[error("{0}")]
    ResourceExhausted(String),

    /// An error from DataFusion planning or execution.
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
}

/// Who has to act on an error, which decides its gRPC code and whether the
/// server logs it as a problem of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The statement or its input is wrong: the client must change it.
    Mistake,
    /// Something the statement names does not exist.
    NotFound,
    /// Something the statement creates is already there.
    AlreadyExists,
    /// The client may not do this.
    Denied,
    /// pitlake does not do this (yet).
    Unsupported,
    /// A concurrent change won, or another process holds what is needed:
    /// the same statement may succeed when tried again.
    Conflict,
    /// A limit was reached (memory, a backlog, a queue).
    Exhausted,
    /// Stored data is damaged: the operator must look.
    Corrupt,
    /// A dependency failed (disk, catalog database, object store).
    Unavailable,
    /// A bug in pitlake.
    Internal,
}

impl Cause {
    /// Whether the server should log it as its own problem (not the client's).
    pub fn is_operators(self) -> bool {
        matches!(self, Cause::Corrupt | Cause::Unavailable | Cause::Internal)
    }
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

    /// Wraps an Arrow error on pitlake's own arrays with what it was doing.
    pub fn arrow(context: impl Into<String>) -> impl FnOnce(arrow::error::ArrowError) -> Error {
        let context = context.into();
        move |source| Error::Arrow {
            context,
            source: Box::new(source),
        }
    }

    /// Wraps an error in the client's input (its source) with what was wrong.
    pub fn invalid_input<E: Into<BoxError>>(reason: impl Into<String>) -> impl FnOnce(E) -> Error {
        let reason = reason.into();
        move |source| Error::InvalidInput {
            reason,
            source: source.into(),
        }
    }

    /// Wraps the error of a failed dependency with what pitlake was doing.
    pub fn unavailable<E: Into<BoxError>>(context: impl Into<String>) -> impl FnOnce(E) -> Error {
        let context = context.into();
        move |source| Error::Unavailable {
            context,
            source: source.into(),
        }
    }

    /// True when the error is the user's mistake rather than the system's.
    pub fn is_user_error(&self) -> bool {
        !self.cause().is_operators()
    }

    /// Why this error happened (see [`Cause`]).
    pub fn cause(&self) -> Cause {
        match self {
            Error::TableNotFound { .. }
            | Error::WarehouseNotFound { .. }
            | Error::PrincipalNotFound { .. }
            | Error::RequestNotFound { .. }
            | Error::SchemaNotFound { .. }
            | Error::SnapshotNotFound { .. }
            | Error::RefNotFound { .. } => Cause::NotFound,
            Error::AlreadyExists { .. } => Cause::AlreadyExists,
            Error::Syntax(_)
            | Error::TimestampBeforeFirstSnapshot { .. }
            | Error::NoSnapshots { .. }
            | Error::NotIceberg { .. }
            | Error::BadRow { .. }
            | Error::BadInput { .. }
            | Error::InvalidName { .. }
            | Error::TooComplex(_)
            | Error::Setting { .. }
            | Error::Invalid(_)
            | Error::InvalidInput { .. } => Cause::Mistake,
            Error::FileDenied { .. } | Error::Denied { .. } => Cause::Denied,
            Error::NotSupported(_) => Cause::Unsupported,
            Error::CommitConflict { .. } | Error::Changed { .. } | Error::Locked { .. } => {
                Cause::Conflict
            }
            Error::ResourceExhausted(_) => Cause::Exhausted,
            Error::Corrupt(_) => Cause::Corrupt,
            Error::Io { .. } | Error::Unavailable { .. } => Cause::Unavailable,
            Error::Iceberg { source, .. } => iceberg_cause(source),
            Error::Internal(_) | Error::Arrow { .. } => Cause::Internal,
            Error::DataFusion(df) => datafusion_cause(df),
        }
    }
}

fn iceberg_cause(err: &iceberg::Error) -> Cause {
    use iceberg::ErrorKind;
    match err.kind() {
        ErrorKind::CatalogCommitConflicts | ErrorKind::PreconditionFailed => Cause::Conflict,
        ErrorKind::NamespaceNotFound | ErrorKind::TableNotFound => Cause::NotFound,
        ErrorKind::NamespaceAlreadyExists | ErrorKind::TableAlreadyExists => Cause::AlreadyExists,
        ErrorKind::FeatureUnsupported => Cause::Unsupported,
        // Iceberg says this of metadata it cannot make sense of, and of
        // arguments pitlake passed wrongly: ours to look at either way.
        ErrorKind::DataInvalid => Cause::Internal,
        _ => Cause::Unavailable,
    }
}

fn datafusion_cause(err: &DataFusionError) -> Cause {
    match err.find_root() {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(_, _)
        | DataFusionError::SchemaError(_, _)
        | DataFusionError::Configuration(_) => Cause::Mistake,
        DataFusionError::NotImplemented(_) => Cause::Unsupported,
        DataFusionError::ResourcesExhausted(_) => Cause::Exhausted,
        // Casts and arithmetic on user data fail here: the query's fault.
        DataFusionError::ArrowError(_, _) | DataFusionError::Execution(_) => Cause::Mistake,
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => Cause::Unavailable,
        DataFusionError::ExecutionJoin(_) | DataFusionError::Internal(_) => Cause::Internal,
        // Only ours travel wrapped: `From<DataFusionError>` unwrapped them.
        _ => Cause::Internal,
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
