//! The SQL examples (`sql_examples/*.slt`): the specification, the docs and
//! the tests. The test suite runs them with sqllogictest; the quickstart runs
//! the same files and prints each statement with its result.

use std::io::Write;
use std::path::Path;

use async_trait::async_trait;
use sqllogictest::{DBOutput, DefaultColumnType, Record};

use crate::error::{Error, Result};
use crate::output::{Format, cells, render};
use crate::session::Session;

/// The example files, embedded so the quickstart needs nothing on disk.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "feature_groups.slt",
        include_str!("../sql_examples/feature_groups.slt"),
    ),
    ("writes.slt", include_str!("../sql_examples/writes.slt")),
    (
        "governance.slt",
        include_str!("../sql_examples/governance.slt"),
    ),
    ("sharing.slt", include_str!("../sql_examples/sharing.slt")),
    ("views.slt", include_str!("../sql_examples/views.slt")),
    (
        "lifecycle.slt",
        include_str!("../sql_examples/lifecycle.slt"),
    ),
    (
        "rich_types.slt",
        include_str!("../sql_examples/rich_types.slt"),
    ),
    (
        "schema_evolution.slt",
        include_str!("../sql_examples/schema_evolution.slt"),
    ),
    (
        "temporary_tables.slt",
        include_str!("../sql_examples/temporary_tables.slt"),
    ),
    (
        "time_travel.slt",
        include_str!("../sql_examples/time_travel.slt"),
    ),
    (
        "metadata_tables.slt",
        include_str!("../sql_examples/metadata_tables.slt"),
    ),
    (
        "asof_join.slt",
        include_str!("../sql_examples/asof_join.slt"),
    ),
    (
        "online_store.slt",
        include_str!("../sql_examples/online_store.slt"),
    ),
];

/// A [`Session`] as a sqllogictest database.
#[derive(Debug)]
pub struct SltDatabase {
    session: Session,
}

impl SltDatabase {
    pub fn new(session: Session) -> Self {
        SltDatabase { session }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for SltDatabase {
    type Error = Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>> {
        let mut results = self.session.sql(sql).await?;
        let Some(last) = results.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        if last.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = last
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.data_type().is_integer() {
                    DefaultColumnType::Integer
                } else if f.data_type().is_floating() {
                    DefaultColumnType::FloatingPoint
                } else {
                    DefaultColumnType::Text
                }
            })
            .collect();
        // A multi-line cell (a plan) continues on rows of its own, one per line,
        // as the files show it.
        let mut rows = Vec::new();
        for row in cells(&last.batches)? {
            let mut continuation = Vec::new();
            let first: Vec<String> = row
                .into_iter()
                .map(|cell| {
                    let mut lines = cell.trim_end().lines().map(str::to_string);
                    let head = lines.next().unwrap_or_default();
                    continuation.extend(lines.map(|l| vec![l]));
                    head
                })
                .collect();
            rows.push(first);
            rows.extend(continuation);
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "pitlake"
    }
}

/// Runs one example in `session` and prints its comments, statements and
/// results to `out`. `test_dir` replaces `$__TEST_DIR__` as in the test runner.
pub async fn print_example(
    session: &Session,
    name: &str,
    text: &str,
    test_dir: &Path,
    out: &mut dyn Write,
) -> Result<()> {
    let records = sqllogictest::parse::<DefaultColumnType>(text)
        .map_err(|e| Error::Internal(format!("{name}: {e}")))?;
    let io = |e: std::io::Error| Error::Io {
        path: "stdout".into(),
        source: e,
    };
    writeln!(out, "\n=== {name} ===").map_err(io)?;
    let dir = test_dir.display().to_string();
    for record in records {
        let (sql, expect_error) = match record {
            Record::Comment(lines) => {
                for line in lines {
                    writeln!(out, "--{line}").map_err(io)?;
                }
                continue;
            }
            Record::Statement { sql, expected, .. } => {
                let fails = matches!(expected, sqllogictest::StatementExpect::Error(_));
                (sql, fails)
            }
            Record::Query { sql, expected, .. } => {
                let fails = matches!(expected, sqllogictest::QueryExpect::Error(_));
                (sql, fails)
            }
            _ => continue,
        };
        // As the test runner substitutes: `$__TEST_DIR__`, and `\$` for a literal `$`.
        let sql = sql.replace("$__TEST_DIR__", &dir).replace("\\$", "$");
        writeln!(out, "\n{sql};").map_err(io)?;
        match session.sql(&sql).await {
            Ok(results) => {
                for result in results {
                    out.write_all(&render(&result, Format::Table)?)
                        .map_err(io)?;
                }
            }
            Err(e) if expect_error => writeln!(out, "error (as expected): {e}").map_err(io)?,
            Err(e) => return Err(Error::Internal(format!("{name}: {sql}: {e}"))),
        }
    }
    Ok(())
}
