//! The `pitlake` command: quickstart, embedded SQL.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use pitlake::output::{Format, render};
use pitlake::{Result, Session};

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
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Json => Format::Json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart { warehouse } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            pitlake::quickstart::run(&warehouse, &mut out).await
        }
        Command::Sql {
            warehouse,
            command,
            file,
            format,
        } => {
            let session = Session::open(&warehouse).await?;
            let sql = match (command, file) {
                (Some(sql), _) => sql,
                (None, Some(path)) => {
                    std::fs::read_to_string(&path).map_err(|source| pitlake::Error::Io {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                (None, None) => return pitlake::repl::run(&session, format.into()).await,
            };
            run_and_print(&session, &sql, format.into()).await
        }
    }
}

async fn run_and_print(session: &Session, sql: &str, format: Format) -> Result<()> {
    let stdout = std::io::stdout();
    for statement in pitlake::sql::parse_sql(sql)? {
        let result = session.execute(statement).await?;
        let mut out = stdout.lock();
        write!(out, "{}", render(&result, format)?).map_err(|source| pitlake::Error::Io {
            path: "stdout".into(),
            source,
        })?;
    }
    Ok(())
}
