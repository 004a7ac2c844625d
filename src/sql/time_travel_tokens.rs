//! A token pass that lets sqlparser read every time-travel spelling pitlake accepts.
//!
//! sqlparser (with table versioning on) parses `FOR SYSTEM_TIME AS OF <expr>`,
//! Spark's `TIMESTAMP AS OF <expr>` and `VERSION AS OF <number>`. Trino and Athena
//! write `FOR VERSION AS OF` / `FOR TIMESTAMP AS OF`, and Spark/Trino allow a tag
//! or branch name in quotes after `VERSION AS OF`. This pass rewrites tokens, never
//! text:
//!
//! | written                        | handed to sqlparser           |
//! |--------------------------------|-------------------------------|
//! | `FOR VERSION AS OF 12`         | `VERSION AS OF 12`            |
//! | `FOR VERSION AS OF -12`        | `VERSION AS OF -12` (one number token) |
//! | `[FOR] VERSION AS OF 'tag'`    | `AT('tag')` (a table-version function) |
//! | `[FOR] VERSION AS OF (<query>)`| `AT((<query>))`: a snapshot id computed by a scalar subquery |
//! | `FOR TIMESTAMP AS OF <expr>`   | `TIMESTAMP AS OF <expr>`      |

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

pub use crate::shared::REF_VERSION_FUNCTION;

/// Rewrites Trino-style and ref-name time-travel clauses into forms sqlparser parses.
pub fn rewrite(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let significant = next_significant(&tokens, i, 5);
        let kw = |n: usize| significant.get(n).and_then(|&j| keyword(&tokens[j]));

        // `FOR VERSION|TIMESTAMP AS OF`: drop the `FOR` (and the space after it).
        if kw(0) == Some(Keyword::FOR)
            && matches!(kw(1), Some(Keyword::VERSION | Keyword::TIMESTAMP))
            && kw(2) == Some(Keyword::AS)
            && kw(3) == Some(Keyword::OF)
        {
            i = significant[1];
            continue;
        }

        if kw(0) == Some(Keyword::VERSION)
            && kw(1) == Some(Keyword::AS)
            && kw(2) == Some(Keyword::OF)
        {
            let value_at = significant.get(3).copied();
            match value_at.map(|j| (j, &tokens[j].token)) {
                // `VERSION AS OF 'tag'` becomes `AT('tag')`.
                Some((j, Token::SingleQuotedString(_))) => {
                    let span = tokens[i].span;
                    out.push(TokenWithSpan::new(
                        Token::make_keyword(REF_VERSION_FUNCTION),
                        span,
                    ));
                    out.push(TokenWithSpan::new(Token::LParen, span));
                    out.push(tokens[j].clone());
                    out.push(TokenWithSpan::new(Token::RParen, tokens[j].span));
                    i = j + 1;
                    continue;
                }
                // `VERSION AS OF (subquery)` becomes `AT((subquery))`.
                Some((j, Token::LParen)) => {
                    if let Some(close) = matching_paren(&tokens, j) {
                        let span = tokens[i].span;
                        out.push(TokenWithSpan::new(
                            Token::make_keyword(REF_VERSION_FUNCTION),
                            span,
                        ));
                        out.push(TokenWithSpan::new(Token::LParen, span));
                        out.extend(tokens[j..=close].iter().cloned());
                        out.push(TokenWithSpan::new(Token::RParen, tokens[close].span));
                        i = close + 1;
                        continue;
                    }
                }
                // `VERSION AS OF - 12` becomes `VERSION AS OF -12`: snapshot ids may be negative.
                Some((j, Token::Minus)) => {
                    let after = next_significant(&tokens, j + 1, 1);
                    if let Some(&k) = after.first()
                        && let Token::Number(n, long) = &tokens[k].token
                    {
                        out.extend(tokens[i..j].iter().cloned());
                        out.push(TokenWithSpan::new(
                            Token::Number(format!("-{n}"), *long),
                            tokens[k].span,
                        ));
                        i = k + 1;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// Index of the `)` closing the `(` at `open`.
fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Indices of up to `n` tokens from `start` on that are not whitespace or comments.
fn next_significant(tokens: &[TokenWithSpan], start: usize, n: usize) -> Vec<usize> {
    tokens
        .iter()
        .enumerate()
        .skip(start)
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .take(n)
        .collect()
}

fn keyword(token: &TokenWithSpan) -> Option<Keyword> {
    match &token.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    }
}
