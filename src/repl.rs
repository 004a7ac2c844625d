//! `pitlake sql`: statements from `-c`, a file or piped input run like a
//! script (no banner, the first error ends the run with a failure); a
//! terminal gets the interactive shell (line editing, history, every
//! statement's result or error printed in order, Ctrl-C cancels the running
//! statement and keeps the shell).
//!
//! Only a statement that creates something may create the warehouse: a
//! mistyped `--warehouse` is an error that names the folder, not a new,
//! empty warehouse.

use std::io::{BufWriter, StdoutLock, Write};
use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::catalog::Warehouse;
use crate::error::{Error, Result};
use crate::output::{self, Format};
use crate::session::Session;
use crate::sql::{Statement, parse_sql};

/// Where `pitlake sql` finds its warehouse, and how its sessions are limited.
#[derive(Debug, Clone)]
pub struct Opener {
    pub warehouse: PathBuf,
    /// Memory one query may hold (see [`Session::with_query_memory_limit`]).
    pub query_memory: Option<usize>,
}

impl Opener {
    /// Opens the warehouse for `statements`: an existing one always, a new
    /// one only when one of them creates something.
    pub async fn open_for(&self, statements: &[Statement]) -> Result<Session> {
        self.open(statements.iter().any(Statement::creates_something))
            .await
    }

    async fn open(&self, may_create: bool) -> Result<Session> {
        let existed = Warehouse::exists(&self.warehouse);
        let session = if may_create {
            Session::open(&self.warehouse).await?
        } else {
            Session::open_existing(&self.warehouse).await?
        };
        if !existed {
            eprintln!(
                "created a new warehouse at {}",
                session.store().root().display()
            );
        }
        let session = session.with_query_memory_limit(self.query_memory);
        // Records a crashed server logged but never committed get committed.
        session.store().streams().recover().await?;
        if let Err(e) = session.store().streams().flush(None).await {
            tracing::warn!("recovered stream records not committed yet: {e}");
        }
        Ok(session)
    }
}

/// Commits streamed INSERTs before the process ends.
pub async fn close(session: &Session) -> Result<()> {
    session.store().streams().close().await
}

/// Runs `sql` as a script: prints each statement's result as it finishes and
/// stops at the first error, which is returned.
pub async fn run_script(opener: &Opener, sql: &str, format: Format) -> Result<()> {
    let statements = parse_sql(sql)?;
    let session = opener.open_for(&statements).await?;
    let mut ran = Ok(());
    for statement in statements {
        ran = if format.is_binary() {
            stream_result(&session, statement).await
        } else {
            match session.execute(statement).await {
                Ok(result) => print_result(&result, format),
                Err(e) => Err(e),
            }
        };
        if ran.is_err() {
            break;
        }
    }
    ran.and(close(&session).await)
}

/// Runs a statement and writes its batches to stdout as they come.
async fn stream_result(session: &Session, statement: Statement) -> Result<()> {
    let batches = session.execute_stream(statement).await?;
    let mut out = stdout();
    output::write_arrow_stream(batches, &mut out).await?;
    flush(out)
}

fn print_result(result: &crate::session::StatementResult, format: Format) -> Result<()> {
    let mut out = stdout();
    output::write(result, format, &mut out)?;
    flush(out)
}

fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::new(std::io::stdout().lock())
}

fn flush(mut out: BufWriter<StdoutLock<'static>>) -> Result<()> {
    out.flush().map_err(|source| Error::Io {
        path: "stdout".into(),
        source,
    })
}

/// The interactive shell: reads statements until end of input (Ctrl-D) or `\q`.
pub async fn run(opener: Opener, format: Format) -> Result<()> {
    let mut editor = DefaultEditor::new().map_err(Error::unavailable("cannot start the shell"))?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".pitlake_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut session = None;
    if Warehouse::exists(&opener.warehouse) {
        session = Some(opener.open(false).await?);
    }
    let place = match &session {
        Some(s) => format!("warehouse {}", s.store().root().display()),
        None => format!(
            "no warehouse at {} yet: the first statement that creates something makes it",
            std::path::absolute(&opener.warehouse)
                .unwrap_or_else(|_| opener.warehouse.clone())
                .display()
        ),
    };
    println!(
        "pitlake {} — {place}; end statements with ';', Ctrl-C cancels, \\q quits",
        env!("CARGO_PKG_VERSION"),
    );
    let mut buffer = String::new();
    loop {
        let prompt = if !buffer.is_empty() {
            "     ...> ".to_string()
        } else if let Some(s) = &session {
            format!("pitlake:{}> ", s.current_schema())
        } else {
            "pitlake> ".to_string()
        };
        match editor.readline(&prompt) {
            Ok(line) => {
                if buffer.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !line.trim_end().ends_with(';') {
                    continue;
                }
                let _ = editor.add_history_entry(buffer.trim());
                let sql = std::mem::take(&mut buffer);
                if let Err(e) = run_line(&mut session, &opener, &sql, format).await {
                    eprintln!("error: {e}");
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::unavailable("shell")(e)),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    match &session {
        Some(s) => close(s).await,
        None => Ok(()),
    }
}

/// Runs the statements of one input, printing each result before the next
/// statement starts; the first error or a Ctrl-C ends the input.
async fn run_line(
    session: &mut Option<Session>,
    opener: &Opener,
    sql: &str,
    format: Format,
) -> Result<()> {
    for statement in parse_sql(sql)? {
        let current = match session {
            Some(s) => s,
            None => session.insert(opener.open(statement.creates_something()).await?),
        };
        let result = tokio::select! {
            result = current.execute(statement) => result?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("cancelled");
                return Ok(());
            }
        };
        if let Err(e) = print_result(&result, format) {
            eprintln!("error: {e}");
        }
    }
    Ok(())
}
