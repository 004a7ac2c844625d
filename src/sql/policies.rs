//! Row filters and column masks:
//!
//! ```sql
//! ALTER FEATURE GROUP fg SET ROW FILTER (region = 'EU' OR is_member('admin'));
//! ALTER FEATURE GROUP fg DROP ROW FILTER;
//! ALTER FEATURE GROUP fg ALTER COLUMN email SET MASK (CASE WHEN is_member('pii') THEN email ELSE '***' END);
//! ALTER FEATURE GROUP fg ALTER COLUMN email DROP MASK;
//! ```
//!
//! `ALTER TABLE t ...` takes the same clauses.

use std::fmt;

use sqlparser::ast::{Expr, Ident, ObjectName};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::words::expect_words;

/// A change to a table's row filter or a column's mask.
#[derive(Debug, Clone)]
pub struct PolicyStatement {
    pub table: ObjectName,
    /// Written as `ALTER FEATURE GROUP` (else `ALTER TABLE`).
    pub feature_group: bool,
    pub clause: PolicyClause,
}

#[derive(Debug, Clone)]
pub enum PolicyClause {
    SetRowFilter(Expr),
    DropRowFilter,
    SetMask { column: Ident, mask: Expr },
    DropMask { column: Ident },
}

/// What the statement would do, without the expression's text.
#[derive(Debug, Clone, Copy)]
enum Head {
    SetRowFilter,
    DropRowFilter,
    SetMask,
    DropMask,
}

/// A row-filter or mask statement, if the tokens ahead are one; the parser
/// is left where it was when they are not.
pub fn parse_policy(parser: &mut Parser) -> Result<Option<PolicyStatement>, ParserError> {
    let head = parser.maybe_parse(|p| {
        p.expect_keyword(Keyword::ALTER)?;
        let feature_group = if p.parse_keyword(Keyword::TABLE) {
            false
        } else {
            expect_words(p, &["FEATURE", "GROUP"])?;
            true
        };
        let table = p.parse_object_name(false)?;
        let (head, column) = if p.parse_keywords(&[Keyword::SET, Keyword::ROW, Keyword::FILTER]) {
            (Head::SetRowFilter, None)
        } else if p.parse_keywords(&[Keyword::DROP, Keyword::ROW, Keyword::FILTER]) {
            (Head::DropRowFilter, None)
        } else {
            p.expect_keywords(&[Keyword::ALTER, Keyword::COLUMN])?;
            let column = p.parse_identifier()?;
            let head = if p.parse_keyword(Keyword::SET) {
                Head::SetMask
            } else {
                p.expect_keyword(Keyword::DROP)?;
                Head::DropMask
            };
            expect_words(p, &["MASK"])?;
            (head, Some(column))
        };
        Ok((table, feature_group, head, column))
    })?;
    let Some((table, feature_group, head, column)) = head else {
        return Ok(None);
    };
    let parenthesized = |p: &mut Parser| -> Result<Expr, ParserError> {
        p.expect_token(&Token::LParen)?;
        let expr = p.parse_expr()?;
        p.expect_token(&Token::RParen)?;
        Ok(expr)
    };
    let column = || column.clone().unwrap_or_else(|| Ident::new(""));
    let clause = match head {
        Head::SetRowFilter => PolicyClause::SetRowFilter(parenthesized(parser)?),
        Head::DropRowFilter => PolicyClause::DropRowFilter,
        Head::SetMask => PolicyClause::SetMask {
            column: column(),
            mask: parenthesized(parser)?,
        },
        Head::DropMask => PolicyClause::DropMask { column: column() },
    };
    Ok(Some(PolicyStatement {
        table,
        feature_group,
        clause,
    }))
}

impl fmt::Display for PolicyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.feature_group {
            "FEATURE GROUP"
        } else {
            "TABLE"
        };
        write!(f, "ALTER {kind} {} ", self.table)?;
        match &self.clause {
            PolicyClause::SetRowFilter(e) => write!(f, "SET ROW FILTER ({e})"),
            PolicyClause::DropRowFilter => write!(f, "DROP ROW FILTER"),
            PolicyClause::SetMask { column, mask } => {
                write!(f, "ALTER COLUMN {column} SET MASK ({mask})")
            }
            PolicyClause::DropMask { column } => write!(f, "ALTER COLUMN {column} DROP MASK"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::{Statement, parse_sql};

    fn round_trip(sql: &str) -> String {
        let statements = parse_sql(sql).expect("parses");
        let [Statement::Policy(p)] = statements.as_slice() else {
            panic!("{sql} is not a policy statement: {statements:?}");
        };
        p.to_string()
    }

    #[test]
    fn parses_each_clause() {
        assert_eq!(
            round_trip(
                "alter feature group s.fg set row filter (region = 'EU' or is_member('admin'))"
            ),
            "ALTER FEATURE GROUP s.fg SET ROW FILTER (region = 'EU' OR is_member('admin'))"
        );
        assert_eq!(
            round_trip("ALTER TABLE t DROP ROW FILTER"),
            "ALTER TABLE t DROP ROW FILTER"
        );
        assert_eq!(
            round_trip("ALTER FEATURE GROUP fg ALTER COLUMN email SET MASK ('***')"),
            "ALTER FEATURE GROUP fg ALTER COLUMN email SET MASK ('***')"
        );
        assert_eq!(
            round_trip("ALTER TABLE t ALTER COLUMN \"E-mail\" DROP MASK"),
            "ALTER TABLE t ALTER COLUMN \"E-mail\" DROP MASK"
        );
    }

    #[test]
    fn other_alters_are_left_alone() {
        let statements = parse_sql("ALTER FEATURE GROUP fg SET ONLINE").expect("parses");
        assert!(matches!(statements[0], Statement::AlterFeatureGroup { .. }));
    }

    #[test]
    fn a_broken_expression_is_a_syntax_error() {
        let error = parse_sql("ALTER TABLE t SET ROW FILTER (a = )").expect_err("no right side");
        assert!(error.to_string().contains("Expected"), "{error}");
        let error = parse_sql("ALTER TABLE t SET ROW FILTER a = 1").expect_err("no parentheses");
        assert!(error.to_string().contains("("), "{error}");
    }
}
