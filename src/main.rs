//! The `pitlake` command: quickstart, embedded SQL.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pitlake::Result;
use pitlake::log_writer::LogWriter;
use pitlake::output::Format;
use pitlake::sql::limits::STACK_BYTES;

/// pitlake's binaries run on mimalloc (see Cargo.toml), without transparent
/// huge pages (see `pitlake::allocator`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "pitlake",
    version,
    about = "A feature store you talk to in SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a sample warehouse (synthetic airline delays) and run the SQL examples.
    Quickstart {
        /// Warehouse folder.
        #[arg(long, env = "PITLAKE_WAREHOUSE", default_value = "warehouse")]
        warehouse: PathBuf,
    },
    /// Serve the warehouse over Arrow Flight SQL (ADBC, JDBC, BI tools).
    Serve(ServeArgs),
    /// Run SQL on the embedded warehouse: -c SQL, -f FILE, or an interactive shell.
    Sql {
        /// Warehouse folder.
        #[arg(long, env = "PITLAKE_WAREHOUSE", default_value = "warehouse")]
        warehouse: PathBuf,
        /// SQL to run (several statements separated by `;`).
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// File of SQL statements to run.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// How results are printed.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Memory a query may hold, in MiB (default: half the machine's); past
        /// it, operators spill to disk or the query fails with "Resources exhausted".
        #[arg(long)]
        memory_limit_mb: Option<usize>,
    },
}

/// Options of `pitlake serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Warehouse folder.
    #[arg(long, env = "PITLAKE_WAREHOUSE", default_value = "warehouse")]
    warehouse: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// A user allowed in, as NAME:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// A file of NAME:PASSWORD lines.
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// Accept every client without credentials (local play only).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Signed-in tokens kept at once; past it a sign-in evicts the least
    /// recently used token of the user holding the most.
    #[arg(long, default_value_t = 4096)]
    max_tokens: usize,
    /// Seconds a token may go unused before it expires (it expires after
    /// 12 h however much it is used).
    #[arg(long, default_value_t = 1800)]
    token_idle_timeout_secs: u64,
    /// Queries running at once; more wait, then get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 16)]
    max_concurrent_queries: usize,
    /// Memory one query may hold, in MiB (default: a fifth of the machine's);
    /// past it, operators spill or the query fails with RESOURCE_EXHAUSTED.
    #[arg(long)]
    query_memory_limit_mb: Option<usize>,
    /// Seconds a query may run before it is cancelled.
    #[arg(long, default_value_t = 3600)]
    query_timeout_secs: u64,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Streamed records are committed to Iceberg at most this long after
    /// their acknowledgement (milliseconds).
    #[arg(long, default_value_t = 2000)]
    commit_interval_ms: u64,
    /// ... or as soon as this many streamed rows wait.
    #[arg(long, default_value_t = 500_000)]
    commit_rows: usize,
    /// After this many commits of a group's stream, its small files and
    /// manifests are compacted (0: never).
    #[arg(long, default_value_t = 100)]
    compact_every: u64,
    /// The one folder clients may COPY ... FROM (none by default).
    #[arg(long)]
    import_dir: Option<PathBuf>,
    /// The one folder clients may COPY ... TO (none by default).
    #[arg(long)]
    export_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
    /// Arrow IPC streams, one per statement that returns columns.
    Arrow,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Json => Format::Json,
            OutputFormat::Arrow => Format::Arrow,
        }
    }
}

fn main() -> ExitCode {
    pitlake::allocator::disable_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    // Every thread that plans or runs statements, this one included, has the
    // stack the statement depth limit was sized for.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let main = std::thread::Builder::new()
        .name("pitlake-main".into())
        .stack_size(STACK_BYTES)
        .spawn(move || runtime.block_on(run(cli)));
    let outcome = main.map(std::thread::JoinHandle::join);
    flush_logs();
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: cannot start the main thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr, filtered by `RUST_LOG` (targets and levels, e.g.
/// `RUST_LOG=debug` or `RUST_LOG=info,pitlake::request=off`). By default a server logs one line per
/// request and what it recovers, written by a thread of its own (see
/// `log_writer`); the CLI only warnings, written at once, so that its stderr
/// stays the one-line error a script reads.
fn init_logging(server: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if server { "info" } else { "warn" };
    let filter: tracing_subscriber::filter::Targets = match std::env::var("RUST_LOG") {
        Ok(text) => text.parse().unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={text} ignored: {e}");
            default.parse().unwrap_or_default()
        }),
        Err(_) => default.parse().unwrap_or_default(),
    };
    let layer = tracing_subscriber::fmt::layer().with_ansi(false);
    let _ = match server {
        true => {
            let writer: &'static LogWriter = SERVER_LOG.get_or_init(LogWriter::stderr);
            tracing_subscriber::registry()
                .with(filter)
                .with(layer.with_writer(move || writer.line()))
                .try_init()
        }
        false => tracing_subscriber::registry()
            .with(filter)
            .with(layer.with_writer(std::io::stderr))
            .try_init(),
    };
}

/// The server's log writer, flushed before the process exits.
static SERVER_LOG: std::sync::OnceLock<LogWriter> = std::sync::OnceLock::new();

/// Waits for the server's log lines still on their way to stderr.
fn flush_logs() {
    if let Some(writer) = SERVER_LOG.get() {
        writer.flush(std::time::Duration::from_secs(2));
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart { warehouse } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            pitlake::quickstart::run(&warehouse, &mut out).await
        }
        Command::Serve(args) => serve(args).await,
        Command::Sql {
            warehouse,
            command,
            file,
            format,
            memory_limit_mb,
        } => {
            let opener = pitlake::repl::Opener {
                warehouse,
                query_memory: memory_limit_mb
                    .map(|mb| mb * 1024 * 1024)
                    .or_else(|| pitlake::session::machine_memory().map(|bytes| bytes / 2)),
            };
            let format = Format::from(format);
            if format.is_binary() && std::io::stdout().is_terminal() {
                return Err(pitlake::Error::Invalid(
                    "--format arrow writes binary Arrow IPC streams: redirect standard output to a file or a pipe".into(),
                ));
            }
            let sql = match (command, file) {
                (Some(sql), _) => sql,
                (None, Some(path)) => {
                    read_text(&path.display().to_string(), std::fs::File::open(&path))?
                }
                // Piped input is a script, not a shell: no banner, and an
                // error ends the run with a failure.
                (None, None) if !std::io::stdin().is_terminal() => {
                    read_text("standard input", Ok(std::io::stdin()))?
                }
                // The shell writes its banner and prompts to standard output.
                (None, None) if format.is_binary() => {
                    return Err(pitlake::Error::Invalid(
                        "--format arrow takes its SQL from -c, -f or piped input, not the interactive shell".into(),
                    ));
                }
                (None, None) => return pitlake::repl::run(opener, format).await,
            };
            pitlake::repl::run_script(&opener, &sql, format).await
        }
    }
}

/// All of `source`'s text, or an error naming `what`.
fn read_text(what: &str, source: std::io::Result<impl std::io::Read>) -> Result<String> {
    let mut text = String::new();
    source
        .and_then(|mut r| r.read_to_string(&mut text))
        .map_err(|source| pitlake::Error::Io {
            path: what.to_string(),
            source,
        })?;
    Ok(text)
}

async fn serve(args: ServeArgs) -> Result<()> {
    use pitlake::flight::{Limits, ServerConfig, TokenPolicy, Users};
    let users = if args.insecure_no_auth {
        eprintln!("warning: --insecure-no-auth: every client gets in without credentials");
        Users::Anyone
    } else if let Some(path) = &args.users_file {
        Users::from_file(path)?
    } else if !args.users.is_empty() {
        let mut map = std::collections::HashMap::new();
        for entry in &args.users {
            let (user, password) = entry
                .split_once(':')
                .ok_or_else(|| pitlake::Error::Invalid("--user takes NAME:PASSWORD".into()))?;
            map.insert(user.to_string(), password.to_string());
        }
        Users::Passwords(map)
    } else {
        Users::Passwords(std::collections::HashMap::new())
    };
    let store = pitlake::Store::open(&args.warehouse).await?;
    let no_users = matches!(&users, Users::Passwords(seeds) if seeds.is_empty());
    if no_users && store.principals().user_count().await? == 0 {
        // The first start: an admin to sign in with, told once.
        let password = pitlake::flight::random_secret();
        store
            .principals()
            .create_user(
                "pitlake",
                &password,
                &[pitlake::access::ADMIN_ROLE.to_string()],
            )
            .await?;
        eprintln!(
            "created user pitlake (role admin), password {password}: shown this once; \
             change it with ALTER USER pitlake PASSWORD '...', add users with CREATE USER"
        );
    }
    store
        .streams()
        .set_policy(pitlake::ingest::stream::CommitPolicy {
            interval: std::time::Duration::from_millis(args.commit_interval_ms.max(1)),
            rows: args.commit_rows.max(1),
            compact_every: args.compact_every,
            ..Default::default()
        });
    let (listener, addr) = pitlake::flight::bind(&args.listen).await?;
    let scheme = if args.tls_cert.is_some() {
        "grpc+tls"
    } else {
        "grpc"
    };
    eprintln!(
        "pitlake Flight SQL listening on {scheme}://{addr} (warehouse {})",
        store.root().display()
    );
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(pitlake::flight::TlsFiles { cert, key }),
        _ => None,
    };
    let config = ServerConfig {
        users,
        limits: Limits {
            max_concurrent_queries: args.max_concurrent_queries,
            query_timeout: std::time::Duration::from_secs(args.query_timeout_secs),
            query_memory_bytes: args
                .query_memory_limit_mb
                .map(|mb| mb.saturating_mul(1 << 20))
                .or(Limits::default().query_memory_bytes),
            ..Limits::default()
        },
        tls,
        import_dir: args.import_dir,
        export_dir: args.export_dir,
        tokens: TokenPolicy {
            max_tokens: args.max_tokens.max(1),
            idle_timeout: std::time::Duration::from_secs(args.token_idle_timeout_secs.max(1)),
            ..TokenPolicy::default()
        },
        ..ServerConfig::default()
    };
    pitlake::flight::serve(store, listener, config, shutdown_signal()).await?;
    eprintln!("pitlake Flight SQL stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("shutting down: finishing running calls");
}
