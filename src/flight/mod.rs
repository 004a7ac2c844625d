//! `pitlake serve`: the Flight SQL endpoint (ADBC, JDBC, BI tools).
//!
//! ```text
//! client ──gRPC──► tonic (I/O runtime) ──► PitlakeFlightSql ──► Session per token
//!                                               │ plans, DDL, writes, query streams
//!                                               ▼
//!                                     execution runtime (DataFusion)
//! ```

mod auth;
mod guard;
mod handle;
mod ingest;
mod metadata;
pub mod online;
mod parameters;
mod query;
mod service;
mod session_actions;
mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;

pub use auth::{Authenticator, Caller, SignInDelay, TokenPolicy, Users, random_secret};

pub use service::{Limits, PitlakeFlightSql};
pub use status::to_status;

use crate::error::{Error, Result};
use crate::file_access::FileAccess;
use crate::session::Session;
use crate::store::Store;

/// HTTP/2 receive window of one call: how much of an upload (DoPut) may be
/// on its way before the server has taken it in.
const STREAM_WINDOW_BYTES: u32 = 8 << 20;
/// HTTP/2 receive window of a connection, shared by its calls.
const CONNECTION_WINDOW_BYTES: u32 = 16 << 20;

/// How the endpoint runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub users: Users,
    /// How long bearer tokens live and how many may at once.
    pub tokens: TokenPolicy,
    /// How failed sign-ins slow down the next ones.
    pub sign_in_delay: SignInDelay,
    pub limits: Limits,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// PEM certificate chain and private key: serve TLS (`grpc+tls://`).
    pub tls: Option<TlsFiles>,
    /// The host folders clients may `COPY … FROM` and `COPY … TO`.
    pub import_dir: Option<std::path::PathBuf>,
    pub export_dir: Option<std::path::PathBuf>,
}

/// Where the server's certificate and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[cfg(feature = "tls")]
impl TlsFiles {
    fn identity(&self) -> Result<tonic::transport::Identity> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })
        };
        Ok(tonic::transport::Identity::from_pem(
            read(&self.cert)?,
            read(&self.key)?,
        ))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            users: Users::Anyone,
            tokens: TokenPolicy::default(),
            sign_in_delay: SignInDelay::default(),
            limits: Limits::default(),
            max_message_bytes: 64 << 20,
            tls: None,
            import_dir: None,
            export_dir: None,
        }
    }
}

/// A runtime for query execution, apart from the one serving gRPC.
struct Executor(Option<tokio::runtime::Runtime>);

impl Executor {
    fn new(workers: usize) -> Result<Self> {
        // A CPU-bound operator (a cross join feeding an aggregate) can run for
        // seconds without yielding, holding its worker. With more workers than
        // running query tasks, a new query always finds a free worker and the
        // OS shares the cores between all of them, so short queries stay fast.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("pitlake-exec")
            .thread_stack_size(crate::sql::limits::STACK_BYTES)
            .worker_threads(workers)
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "execution runtime".into(),
                source,
            })?;
        Ok(Executor(Some(runtime)))
    }

    fn handle(&self) -> Result<tokio::runtime::Handle> {
        self.0
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| Error::Internal("execution runtime is gone".into()))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime may block; from async code it must not.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Serves Flight SQL on `listener` until `shutdown` completes; then stops
/// taking calls and lets running ones finish.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let workers = (config.limits.max_concurrent_queries * (cores + 1)).clamp(cores, 256);
    let executor = Executor::new(workers)?;
    let files = FileAccess::folders(config.import_dir.as_deref(), config.export_dir.as_deref())?;
    let shared = Session::with_store(store.clone())
        .await?
        .with_query_memory_limit(config.limits.query_memory_bytes)
        .with_file_access(files);
    // Records logged before a crash are committed (and served) again.
    let recovered = store.streams().recover().await?;
    if !recovered.is_empty() {
        // Committed before serving: once the server answers, every record
        // acknowledged before a crash is in Iceberg, readable by any engine.
        match store.streams().flush(None).await {
            Ok(()) => tracing::info!("recovered the stream logs of {}", recovered.join(", ")),
            // Serve anyway: the records stay logged and the committer retries.
            Err(e) => tracing::warn!("recovered stream records not committed yet: {e}"),
        }
    }
    config.users.seed(store.principals()).await?;
    let auth = Arc::new(Authenticator::new(
        config.users.clone(),
        config.tokens.clone(),
        config.sign_in_delay.clone(),
        shared,
    ));
    let service = PitlakeFlightSql::new(auth, executor.handle()?, config.limits.clone())?;
    let server = FlightServiceServer::new(guard::Guarded(service))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut builder = tonic::transport::Server::builder()
        // HTTP/2's default 64 KiB receive windows let a DoPut client send one
        // window, then wait for the server to take it: uploads crawled in
        // lock-step with the stream's processing.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
    if let Some(tls) = &config.tls {
        #[cfg(feature = "tls")]
        {
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(tls.identity()?))
                .map_err(Error::invalid_input("TLS certificate or key"))?;
        }
        #[cfg(not(feature = "tls"))]
        return Err(Error::NotSupported(format!(
            "TLS ({}): this pitlake was built without it; build with the default `tls` feature",
            tls.cert.display()
        )));
    }
    builder
        .add_service(server)
        .serve_with_incoming_shutdown(
            // No Nagle: small replies (one row, a count) leave at once instead
            // of waiting out the client's delayed ACK (~40 ms a round trip).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(Error::unavailable("Flight SQL server"))?;
    // Every acknowledged record is committed before the process ends, and
    // before the execution runtime goes: a stream first written by a SQL
    // statement has its committer there (shutdown waited 30 s, then failed).
    let closed = store.streams().close().await;
    drop(executor);
    closed
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with the
/// address it got.
pub async fn bind(addr: &str) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
        path: format!("listen address {addr}"),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Io {
        path: format!("listen address {addr}"),
        source,
    })?;
    Ok((listener, local))
}
