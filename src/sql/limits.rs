//! How deep a statement may nest, checked on its tokens before it is parsed.
//!
//! The parser builds `a OR b OR c …`, `1 + 1 + …` and `SELECT … UNION SELECT …`
//! in a loop, but as a tree one level deeper per term, and everything after it
//! walks that tree recursively: dropping it, pitlake's rewrites, DataFusion's
//! planners and optimizer, expression evaluation. A long enough chain
//! overflowed a worker's stack and aborted the whole server. Checking the tree
//! after parsing would be too late (a chain that ends in a syntax error is
//! dropped, recursively, inside the parser), so the tokens are scanned first:
//! along any path from a statement to a leaf, the operators in a row (and set
//! operations) bound the tree's depth from above; nesting by parentheses,
//! which the parser does recurse for, is bounded by the parser itself. The
//! threads that plan and run statements get a stack sized for what the limit
//! admits ([`STACK_BYTES`]).

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Error, Result};

/// The most operators (and set operations) a statement may chain along one
/// path from its root: `a = 1 OR b = 2` counts 3.
pub const MAX_CHAINED_OPERATORS: usize = 1024;

/// Stack of every thread that parses, plans or runs statements: what a
/// statement at the limit above needs, with room to spare.
pub const STACK_BYTES: usize = 64 << 20;

/// Refuses tokens whose statements chain more operators than
/// [`MAX_CHAINED_OPERATORS`].
pub fn check_depth(tokens: &[TokenWithSpan]) -> Result<()> {
    // One entry per open parenthesis or bracket, the statement's at the bottom.
    let mut levels = vec![Level::default()];
    for token in tokens {
        let top = levels.len() - 1;
        match &token.token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                let base = levels[top].depth();
                levels.push(Level {
                    base,
                    ..Level::default()
                });
            }
            Token::RParen | Token::RBracket | Token::RBrace if top > 0 => {
                levels.pop();
            }
            Token::SemiColon => levels = vec![Level::default()],
            // A list's items are separate expressions.
            Token::Comma => levels[top].operators = 0,
            Token::Word(word) => match word.keyword {
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    levels[top].set_operations += 1;
                }
                // A new clause starts a new expression.
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::QUALIFY
                | Keyword::WINDOW
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::VALUES
                | Keyword::SET
                | Keyword::JOIN
                | Keyword::ON => levels[top].operators = 0,
                Keyword::AND
                | Keyword::OR
                | Keyword::XOR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::DIV
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::OVERLAPS => levels[top].operators += 1,
                _ => {}
            },
            Token::Whitespace(_)
            | Token::EOF
            | Token::Number(..)
            | Token::Char(_)
            | Token::Period
            | Token::Colon
            | Token::RParen
            | Token::RBracket
            | Token::RBrace
            | Token::Placeholder(_) => {}
            token if is_literal(token) => {}
            _ => levels[top].operators += 1,
        }
        if levels[levels.len() - 1].depth() > MAX_CHAINED_OPERATORS {
            return Err(Error::TooComplex(format!(
                "more than {MAX_CHAINED_OPERATORS} operators or set operations are chained in one \
                 expression (at line {}, column {}); write long lists of alternatives as \
                 `x IN (…)`, or join a table of values",
                token.span.start.line, token.span.start.column
            )));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Level {
    /// Operators chained above this parenthesis.
    base: usize,
    /// Operators since this level's expression started.
    operators: usize,
    /// UNION, EXCEPT, INTERSECT at this level: they chain across clauses.
    set_operations: usize,
}

impl Level {
    fn depth(&self) -> usize {
        self.base + self.operators + self.set_operations
    }
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse_sql;

    fn or_chain(terms: usize) -> String {
        let terms: Vec<String> = (0..terms).map(|i| format!("id = {i}")).collect();
        format!("SELECT 1 FROM t WHERE {}", terms.join(" OR "))
    }

    fn too_complex(sql: &str) -> bool {
        matches!(parse_sql(sql), Err(Error::TooComplex(_)))
    }

    #[test]
    fn chains_within_the_limit_pass_and_longer_ones_fail() {
        assert!(parse_sql(&or_chain(MAX_CHAINED_OPERATORS / 2 - 1)).is_ok());
        assert!(too_complex(&or_chain(MAX_CHAINED_OPERATORS / 2 + 1)));
        let err = parse_sql(&or_chain(2000))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("IN ("), "{err}");
        let and = (0..2000).map(|i| format!("id <> {i}")).collect::<Vec<_>>();
        assert!(too_complex(&format!(
            "SELECT 1 WHERE {}",
            and.join(" AND ")
        )));
        let unions = vec!["SELECT 1"; 2000].join(" UNION ALL ");
        assert!(too_complex(&unions));
    }

    #[test]
    fn parentheses_do_not_hide_a_chain() {
        // Each term in parentheses: the chain around them still counts.
        let terms = vec!["(1 + 1)"; 2000].join(" + ");
        assert!(too_complex(&format!("SELECT {terms}")));
        let nested = format!(
            "SELECT {}",
            vec!["1 + (1"; 20].join(" + ") + &")".repeat(20)
        );
        assert!(parse_sql(&nested).is_ok());
    }

    #[test]
    fn chains_refused_even_when_they_end_in_a_syntax_error() {
        // A million-term chain the parser would drop, recursively, on its
        // own error: refused before the parser runs.
        let sum = format!("SELECT {} +", vec!["1"; 1_000_000].join(" + "));
        assert!(too_complex(&sum));
    }

    #[test]
    fn wide_but_flat_statements_pass() {
        let list: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
        assert!(
            parse_sql(&format!(
                "SELECT 1 FROM t WHERE id IN ({})",
                list.join(", ")
            ))
            .is_ok()
        );
        let rows: Vec<String> = (0..20_000)
            .map(|i| format!("({i}, -{i}, 'x' || 'y', TIMESTAMP '2024-01-01' + INTERVAL '1' DAY)"))
            .collect();
        assert!(parse_sql(&format!("INSERT INTO t VALUES {}", rows.join(", "))).is_ok());
        let columns: Vec<String> = (0..5_000).map(|i| format!("a{i} + b{i} * 2")).collect();
        assert!(parse_sql(&format!("SELECT {} FROM t", columns.join(", "))).is_ok());
        let clauses = (0..300).map(|i| format!("c{i} = {i}")).collect::<Vec<_>>();
        let sql = format!("SELECT 1 FROM t WHERE {}", clauses.join(" AND "));
        assert!(parse_sql(&sql).is_ok());
    }
}
