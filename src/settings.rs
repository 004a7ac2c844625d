//! What `SET name = value` may change in a session.
//!
//! DataFusion lets a session set anything in its configuration, and some of
//! it reaches past the session: `datafusion.runtime.temp_directory` made the
//! server create a folder anywhere a client named and spill there, and a
//! million target partitions held 4 GB for a ten-row query. So a value that
//! sizes work is bounded for every session, and the runtime (memory pool,
//! temporary files, caches), which belongs to whoever runs the process, can
//! be changed only by a local user, never by a client of the server.

use sqlparser::ast::{Expr, Set, Statement, Value};

use crate::error::{Error, Result};
use crate::file_access::FileAccess;

/// The most partitions, or concurrent planning and metadata tasks, a session
/// may ask for.
pub const MAX_PARALLELISM: u64 = 1024;

/// The most rows per batch a session may ask for.
pub const MAX_BATCH_ROWS: u64 = 1 << 20;

/// Refuses a `SET` this session may not make.
pub fn check_set(statement: &Statement, files: &FileAccess) -> Result<()> {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement
    else {
        return Ok(());
    };
    let name = variable.to_string().to_lowercase();
    let refuse = |reason: String| Error::Setting {
        name: name.clone(),
        reason,
    };
    if name.starts_with("datafusion.runtime.") && *files != FileAccess::Local {
        return Err(refuse(
            "the runtime (memory, temporary files, caches) is set by the server's operator".into(),
        ));
    }
    let range = match name.as_str() {
        "datafusion.execution.target_partitions"
        | "datafusion.execution.planning_concurrency"
        | "datafusion.execution.meta_fetch_concurrency" => 1..=MAX_PARALLELISM,
        "datafusion.execution.batch_size" => 1..=MAX_BATCH_ROWS,
        _ => return Ok(()),
    };
    let value = match values.as_slice() {
        [Expr::Value(v)] => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok(),
            Value::SingleQuotedString(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        },
        _ => None,
    };
    match value {
        Some(v) if range.contains(&v) => Ok(()),
        _ => Err(refuse(format!(
            "it takes a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Statement as Parsed, parse_sql};

    fn check(sql: &str, files: &FileAccess) -> Result<()> {
        match parse_sql(sql).expect("parses").pop() {
            Some(Parsed::Sql(statement)) => check_set(&statement, files),
            _ => panic!("not SQL"),
        }
    }

    #[test]
    fn sizes_are_bounded_and_the_runtime_is_the_operators() {
        let local = FileAccess::Local;
        let server = FileAccess::Folders {
            import: None,
            export: None,
        };
        assert!(check("SET datafusion.execution.target_partitions = 8", &server).is_ok());
        assert!(check("SET datafusion.execution.batch_size = '8192'", &server).is_ok());
        for sql in [
            "SET datafusion.execution.target_partitions = 1000000",
            "SET datafusion.execution.target_partitions = 0",
            "SET datafusion.execution.batch_size = 0",
            "SET datafusion.execution.planning_concurrency = 'many'",
        ] {
            let err = check(sql, &local).expect_err(sql).to_string();
            assert!(err.contains("whole number from 1"), "{sql}: {err}");
        }
        let temp = "SET datafusion.runtime.temp_directory = '/etc'";
        assert!(check(temp, &local).is_ok());
        let err = check(temp, &server).expect_err("server").to_string();
        assert!(err.contains("server's operator"), "{err}");
        assert!(check("SET pitlake.asof_join_strategy = 'sweep'", &server).is_ok());
    }
}
