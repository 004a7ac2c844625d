//! Naming versions: tags on a table's snapshots (Spark's syntax).
//!
//! ```sql
//! ALTER FEATURE GROUP fg CREATE [OR REPLACE] TAG [IF NOT EXISTS] q1 [AS OF VERSION 123] [RETAIN 30 DAYS];
//! ALTER TABLE t DROP TAG [IF EXISTS] q1;
//! SELECT * FROM fg FOR VERSION AS OF 'q1';
//! ```

use std::fmt;

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::words::{after_name, expect_words, peek_words, take_words, words_at};

/// A statement about a table's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefStatement {
    CreateTag {
        table: ObjectName,
        tag: Ident,
        /// The snapshot tagged; the current one when `None`.
        snapshot: Option<i64>,
        /// How long the tag outlives its snapshot's commit, at most
        /// (`expire_snapshots` drops it after); forever when `None`.
        retain_ms: Option<i64>,
        replace: bool,
        if_not_exists: bool,
    },
    DropTag {
        table: ObjectName,
        tag: Ident,
        if_exists: bool,
    },
}

impl RefStatement {
    pub fn table(&self) -> &ObjectName {
        match self {
            RefStatement::CreateTag { table, .. } | RefStatement::DropTag { table, .. } => table,
        }
    }
}

/// Parses a tag statement when one is next; the parser does not move
/// otherwise.
pub fn parse_ref(parser: &mut Parser) -> Result<Option<RefStatement>, ParserError> {
    let prefix = if peek_words(parser, &["ALTER", "FEATURE", "GROUP"]) {
        3
    } else if peek_words(parser, &["ALTER", "TABLE"]) {
        2
    } else {
        return Ok(None);
    };
    if !tag_after_name(parser, prefix) {
        return Ok(None);
    }
    for _ in 0..prefix {
        parser.next_token();
    }
    let table = parser.parse_object_name(false)?;
    if take_words(parser, &["DROP"]) {
        expect_words(parser, &["TAG"])?;
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let tag = parser.parse_identifier()?;
        return Ok(Some(RefStatement::DropTag {
            table,
            tag,
            if_exists,
        }));
    }
    expect_words(parser, &["CREATE"])?;
    let replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    expect_words(parser, &["TAG"])?;
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let tag = parser.parse_identifier()?;
    let mut snapshot = None;
    if parser.parse_keywords(&[Keyword::AS, Keyword::OF]) {
        expect_words(parser, &["VERSION"])?;
        snapshot = Some(parse_number(parser, "a snapshot id")?);
    }
    let mut retain_ms = None;
    if take_words(parser, &["RETAIN"]) {
        let amount = parse_number(parser, "a number of days, hours or minutes")?;
        let unit: i64 = if take_words(parser, &["DAYS"]) || take_words(parser, &["DAY"]) {
            86_400_000
        } else if take_words(parser, &["HOURS"]) || take_words(parser, &["HOUR"]) {
            3_600_000
        } else if take_words(parser, &["MINUTES"]) || take_words(parser, &["MINUTE"]) {
            60_000
        } else {
            return parser.expected("DAYS, HOURS or MINUTES", parser.peek_token());
        };
        if amount <= 0 {
            return Err(ParserError::ParserError(format!(
                "RETAIN {amount}: a tag is retained for a positive time"
            )));
        }
        retain_ms = Some(
            amount
                .checked_mul(unit)
                .ok_or_else(|| ParserError::ParserError(format!("RETAIN {amount}: too long")))?,
        );
    }
    if replace && if_not_exists {
        return Err(ParserError::ParserError(
            "CREATE OR REPLACE TAG and IF NOT EXISTS exclude each other".into(),
        ));
    }
    Ok(Some(RefStatement::CreateTag {
        table,
        tag,
        snapshot,
        retain_ms,
        replace,
        if_not_exists,
    }))
}

/// True when `CREATE [OR REPLACE] TAG` or `DROP TAG` follows the object
/// name that starts `prefix` tokens ahead.
fn tag_after_name(parser: &Parser, prefix: usize) -> bool {
    let Some(n) = after_name(parser, prefix) else {
        return false;
    };
    let is = |words: &[&str]| words_at(parser, n, words);
    is(&["DROP", "TAG"]) || is(&["CREATE", "TAG"]) || is(&["CREATE", "OR", "REPLACE", "TAG"])
}

fn parse_number(parser: &mut Parser, what: &str) -> Result<i64, ParserError> {
    let negative = parser.consume_token(&Token::Minus);
    match parser.next_token().token {
        Token::Number(text, _) => text
            .parse::<i64>()
            .map(|n| if negative { -n } else { n })
            .map_err(|_| ParserError::ParserError(format!("{text} is not {what}"))),
        other => Err(ParserError::ParserError(format!(
            "expected {what}, found {other}"
        ))),
    }
}

impl fmt::Display for RefStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefStatement::CreateTag {
                table,
                tag,
                snapshot,
                retain_ms,
                replace,
                if_not_exists,
            } => {
                write!(f, "ALTER TABLE {table} CREATE ")?;
                if *replace {
                    write!(f, "OR REPLACE ")?;
                }
                write!(f, "TAG ")?;
                if *if_not_exists {
                    write!(f, "IF NOT EXISTS ")?;
                }
                write!(f, "{tag}")?;
                if let Some(id) = snapshot {
                    write!(f, " AS OF VERSION {id}")?;
                }
                if let Some(ms) = retain_ms {
                    write!(f, " RETAIN {} MINUTES", ms / 60_000)?;
                }
                Ok(())
            }
            RefStatement::DropTag {
                table,
                tag,
                if_exists,
            } => {
                write!(f, "ALTER TABLE {table} DROP TAG ")?;
                if *if_exists {
                    write!(f, "IF EXISTS ")?;
                }
                write!(f, "{tag}")
            }
        }
    }
}
