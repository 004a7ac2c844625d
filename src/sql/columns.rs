//! Changing a table's columns (schema evolution), on feature groups and
//! tables alike; several changes, comma-separated, are one commit.
//!
//! ```sql
//! ALTER FEATURE GROUP fg ADD COLUMN clicks_7d BIGINT COMMENT 'clicks in the last 7 days';
//! ALTER TABLE t RENAME COLUMN a TO b;
//! ALTER TABLE t ALTER COLUMN n TYPE BIGINT;       -- or SET DATA TYPE
//! ALTER TABLE t ALTER COLUMN n DROP NOT NULL;
//! ALTER TABLE t DROP COLUMN c;
//! ```

use std::fmt;

use sqlparser::ast::{AlterTableOperation, ObjectName};
use sqlparser::parser::{Parser, ParserError};

use super::words::{after_name, peek_words, words_at};

/// `ALTER FEATURE GROUP | TABLE name <column change>, ...`
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnsStatement {
    pub table: ObjectName,
    /// Written as `ALTER FEATURE GROUP` (the table must be one).
    pub feature_group: bool,
    /// As sqlparser reads them; which are supported is the session's call.
    pub changes: Vec<AlterTableOperation>,
}

/// Parses `ALTER FEATURE GROUP name` followed by a column change when one is
/// next; the parser does not move otherwise. (`ALTER TABLE` is sqlparser's,
/// see [`from_alter_table`].)
pub fn parse_columns(parser: &mut Parser) -> Result<Option<ColumnsStatement>, ParserError> {
    if !peek_words(parser, &["ALTER", "FEATURE", "GROUP"]) {
        return Ok(None);
    }
    let Some(n) = after_name(parser, 3) else {
        return Ok(None);
    };
    let changes_columns = ["ADD", "RENAME", "DROP", "ALTER"]
        .iter()
        .any(|word| words_at(parser, n, &[word]));
    if !changes_columns {
        return Ok(None);
    }
    for _ in 0..3 {
        parser.next_token();
    }
    let table = parser.parse_object_name(false)?;
    let changes = parser.parse_comma_separated(Parser::parse_alter_table_operation)?;
    Ok(Some(ColumnsStatement {
        table,
        feature_group: true,
        changes,
    }))
}

/// An `ALTER TABLE` whose every operation changes a column, as a
/// [`ColumnsStatement`]; None for anything else (left to DataFusion, which
/// says what it does not support).
pub fn from_alter_table(statement: &sqlparser::ast::Statement) -> Option<ColumnsStatement> {
    let sqlparser::ast::Statement::AlterTable(alter) = statement else {
        return None;
    };
    let columns_only = alter.operations.iter().all(|op| {
        matches!(
            op,
            AlterTableOperation::AddColumn { .. }
                | AlterTableOperation::RenameColumn { .. }
                | AlterTableOperation::DropColumn { .. }
                | AlterTableOperation::AlterColumn { .. }
        )
    });
    (columns_only && !alter.operations.is_empty() && alter.table_type.is_none()).then(|| {
        ColumnsStatement {
            table: alter.name.clone(),
            feature_group: false,
            changes: alter.operations.clone(),
        }
    })
}

impl fmt::Display for ColumnsStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.feature_group {
            "FEATURE GROUP"
        } else {
            "TABLE"
        };
        let changes: Vec<String> = self.changes.iter().map(ToString::to_string).collect();
        write!(f, "ALTER {kind} {} {}", self.table, changes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::{Statement, parse_sql};

    fn parsed(sql: &str) -> super::ColumnsStatement {
        match parse_sql(sql).expect("parses").remove(0) {
            Statement::Columns(c) => c,
            other => panic!("{sql} parsed as {other:?}"),
        }
    }

    #[test]
    fn both_spellings_read_every_change() {
        let c = parsed(
            "ALTER FEATURE GROUP s.fg ADD COLUMN c BIGINT COMMENT 'x', RENAME COLUMN a TO b",
        );
        assert!(c.feature_group);
        assert_eq!(c.changes.len(), 2);
        assert_eq!(
            c.to_string(),
            "ALTER FEATURE GROUP s.fg ADD COLUMN c BIGINT COMMENT 'x', RENAME COLUMN a TO b"
        );
        let c = parsed("ALTER TABLE t ALTER COLUMN n TYPE BIGINT, DROP COLUMN c");
        assert!(!c.feature_group);
        assert_eq!(c.changes.len(), 2);
    }

    #[test]
    fn other_alter_statements_are_not_column_changes() {
        for sql in [
            "ALTER FEATURE GROUP fg SET ONLINE",
            "ALTER FEATURE GROUP fg DROP TAG q1",
            "ALTER TABLE t DROP ROW FILTER",
            "ALTER TABLE t ALTER COLUMN email DROP MASK",
            "ALTER TABLE t RENAME TO u",
        ] {
            let statement = parse_sql(sql).expect("parses").remove(0);
            assert!(!matches!(statement, Statement::Columns(_)), "{sql}");
        }
    }
}
