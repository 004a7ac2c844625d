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

/// The deepest nesting of parentheses, brackets, CASE … END and runs of
/// prefix operators (`NOT`, unary `-`) inside one another. sqlparser gives up
/// at a recursion limit of its own, but where it tries one parse and then
/// another (a CAST, a function call), giving up deep inside made it retry every
/// alternative above: 48 nested CASTs, or 18 NOTs before 32 CASTs, kept a
/// server thread busy for good. Statements are held to this nesting, and the
/// parser's own limit ([`PARSER_RECURSION_LIMIT`]) is set far above what it
/// admits, so the parser never gives up inside a statement that passed.
pub const MAX_NESTING: usize = 32;

/// sqlparser's recursion limit for statements that passed [`check_depth`].
pub const PARSER_RECURSION_LIMIT: usize = 1024;

/// Stack of every thread that parses, plans or runs statements: what a
/// statement at the limit above needs, with room to spare.
pub const STACK_BYTES: usize = 64 << 20;

/// Refuses tokens whose statements chain more operators than
/// [`MAX_CHAINED_OPERATORS`].
pub fn check_depth(tokens: &[TokenWithSpan]) -> Result<()> {
    // One entry per open parenthesis or bracket, the statement's at the bottom.
    let mut levels = vec![Level::default()];
    // Whether the last significant token ended an operand (`x`, `1`, `)`):
    // a `-` or `NOT` after one is binary, otherwise prefix.
    let mut after_operand = false;
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
            Token::Word(word) if word.keyword == Keyword::CASE => {
                let base = levels[top].depth();
                levels.push(Level {
                    base,
                    case: true,
                    ..Level::default()
                });
            }
            Token::Word(word) if word.keyword == Keyword::END && levels[top].case => {
                levels.pop();
            }
            Token::RParen | Token::RBracket | Token::RBrace if top > 0 => {
                // A CASE left open inside the parentheses closes with them.
                while levels.len() > 1 && levels[levels.len() - 1].case {
                    levels.pop();
                }
                if levels.len() > 1 {
                    levels.pop();
                }
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
        let top = levels.len() - 1;
        if matches!(token.token, Token::Whitespace(_)) {
            continue;
        }
        // A prefix operator's operand (a CAST, parentheses) nests inside it,
        // until a binary operator or a list or clause separator at its level.
        let operator_token = matches!(
            &token.token,
            Token::Minus | Token::Plus | Token::Tilde | Token::ExclamationMark
        ) || matches!(&token.token, Token::Word(w) if w.keyword == Keyword::NOT);
        if operator_token && !after_operand {
            levels[top].prefix_run += 1;
        } else if after_operand && !operand_like(&token.token) {
            levels[top].prefix_run = 0;
        }
        if matches!(token.token, Token::Comma) {
            levels[top].prefix_run = 0;
        }
        after_operand = operand_like(&token.token);
        let nesting = (levels.len() - 1) + levels.iter().map(|l| l.prefix_run).sum::<usize>();
        if nesting > MAX_NESTING {
            return Err(Error::TooComplex(format!(
                "parentheses, CASEs and prefix operators (NOT, -) nest more than {MAX_NESTING} \
                 levels deep (at line {}, column {})",
                token.span.start.line, token.span.start.column
            )));
        }
        if levels[top].depth() > MAX_CHAINED_OPERATORS {
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
    /// Opened by CASE (closed by END), not by a parenthesis.
    case: bool,
    /// Prefix operators in a row just before this token (`NOT NOT -x`).
    prefix_run: usize,
}

impl Level {
    fn depth(&self) -> usize {
        self.base + self.operators + self.set_operations
    }
}

fn operand_like(token: &Token) -> bool {
    match token {
        Token::Number(..) | Token::RParen | Token::RBracket | Token::RBrace => true,
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::NoKeyword | Keyword::TRUE | Keyword::FALSE | Keyword::NULL | Keyword::END
        ),
        token => is_literal(token),
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
    fn deep_parentheses_are_refused_before_the_parser_backtracks() {
        let casts = |n: usize| format!("SELECT {}1{}", "CAST(".repeat(n), " AS INT)".repeat(n));
        assert!(parse_sql(&casts(MAX_NESTING)).is_ok());
        let started = std::time::Instant::now();
        let err = parse_sql(&casts(100)).expect_err("too deep").to_string();
        assert!(err.contains("nest more than 32"), "{err}");
        // Prefix operators and CASEs count with the parentheses around them.
        let nots = format!(
            "SELECT {}{}true{}",
            "NOT ".repeat(18),
            "CAST(".repeat(20),
            " AS BOOLEAN)".repeat(20)
        );
        assert!(
            parse_sql(&nots)
                .expect_err("too deep")
                .to_string()
                .contains("nest more than")
        );
        let cases = format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(40),
            " END".repeat(40)
        );
        assert!(
            parse_sql(&cases)
                .expect_err("too deep")
                .to_string()
                .contains("nest more than")
        );
        let fine = format!(
            "SELECT {}1{}",
            "CASE WHEN true THEN ".repeat(10),
            " END".repeat(10)
        );
        assert!(parse_sql(&fine).is_ok());
        assert!(parse_sql("SELECT - - 1, NOT NOT true, (CASE WHEN (1 > 0) THEN 1 END)").is_ok());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
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
