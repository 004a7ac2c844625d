//! The interactive shell of `pitlake sql`: line editing, history, statements
//! ended by `;`, errors printed without leaving the shell.

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::error::{Error, Result};
use crate::output::{Format, render};
use crate::session::Session;

/// Reads statements until end of input (Ctrl-D) or `\q`.
pub async fn run(session: &Session, format: Format) -> Result<()> {
    let mut editor = DefaultEditor::new().map_err(Error::unavailable("cannot start the shell"))?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".pitlake_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "pitlake {} — warehouse {}; end statements with ';', \\q to quit",
        env!("CARGO_PKG_VERSION"),
        session.warehouse().root().display()
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            format!("pitlake:{}> ", session.current_schema())
        } else {
            "     ...> ".to_string()
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
                match session.sql(&sql).await {
                    Ok(results) => {
                        for result in results {
                            match render(&result, format) {
                                Ok(text) => print!("{text}"),
                                Err(e) => eprintln!("error: {e}"),
                            }
                        }
                    }
                    Err(e) => eprintln!("error: {e}"),
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
    Ok(())
}
