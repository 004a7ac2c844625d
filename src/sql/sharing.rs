//! Publishing feature groups and asking for access to them:
//!
//! ```sql
//! PUBLISH FEATURE GROUP fg [WITH (auto_approve = true)];   UNPUBLISH FEATURE GROUP fg;
//! REQUEST ACCESS ON FEATURE GROUP fg [FOR ROLE ml_team] REASON 'delay model';
//! SHOW ACCESS REQUESTS;
//! APPROVE ACCESS REQUEST 7;   REJECT ACCESS REQUEST 7 [REASON 'not for this project'];
//! ```

use std::fmt;

use sqlparser::ast::{Ident, ObjectName, Value};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use super::words::{expect_words, take_words};

/// One statement about publishing and access requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharingStatement {
    Publish {
        group: ObjectName,
        auto_approve: bool,
    },
    Unpublish {
        group: ObjectName,
    },
    Request {
        group: ObjectName,
        /// For a role the requester is a member of (else for the requester).
        role: Option<Ident>,
        reason: String,
    },
    ShowRequests,
    Approve {
        id: i64,
    },
    Reject {
        id: i64,
        reason: Option<String>,
    },
}

fn string(parser: &mut Parser, what: &str) -> Result<String, ParserError> {
    match parser.next_token().token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(ParserError::ParserError(format!(
            "expected {what} as a quoted string, found: {other}"
        ))),
    }
}

fn request_id(parser: &mut Parser) -> Result<i64, ParserError> {
    let token = parser.next_token();
    match &token.token {
        Token::Number(n, _) => n
            .parse()
            .map_err(|_| ParserError::ParserError(format!("{n} is not a request number"))),
        _ => parser.expected("a request number", token),
    }
}

/// A publishing or access-request statement, if the tokens ahead are one;
/// the parser is left where it was when they are not.
pub fn parse_sharing(parser: &mut Parser) -> Result<Option<SharingStatement>, ParserError> {
    if take_words(parser, &["PUBLISH", "FEATURE", "GROUP"]) {
        let group = parser.parse_object_name(false)?;
        let mut auto_approve = None;
        if parser.parse_keyword(Keyword::WITH) {
            parser.expect_token(&Token::LParen)?;
            loop {
                let key = parser.parse_identifier()?;
                parser.expect_token(&Token::Eq)?;
                let value = parser.parse_value()?.value;
                if !key.value.eq_ignore_ascii_case("auto_approve") {
                    return Err(ParserError::ParserError(format!(
                        "PUBLISH takes the option auto_approve, not {key}"
                    )));
                }
                if auto_approve.is_some() {
                    return Err(ParserError::ParserError(
                        "PUBLISH takes auto_approve once".into(),
                    ));
                }
                auto_approve = Some(match value {
                    Value::Boolean(b) => b,
                    Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("true") => true,
                    Value::SingleQuotedString(s) if s.eq_ignore_ascii_case("false") => false,
                    other => {
                        return Err(ParserError::ParserError(format!(
                            "auto_approve is true or false, not {other}"
                        )));
                    }
                });
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen)?;
        }
        return Ok(Some(SharingStatement::Publish {
            group,
            auto_approve: auto_approve.unwrap_or(false),
        }));
    }
    if take_words(parser, &["UNPUBLISH", "FEATURE", "GROUP"]) {
        let group = parser.parse_object_name(false)?;
        return Ok(Some(SharingStatement::Unpublish { group }));
    }
    if take_words(parser, &["REQUEST", "ACCESS"]) {
        expect_words(parser, &["ON", "FEATURE", "GROUP"])?;
        let group = parser.parse_object_name(false)?;
        let role = match parser.parse_keyword(Keyword::FOR) {
            true => {
                parser.expect_keyword(Keyword::ROLE)?;
                Some(parser.parse_identifier()?)
            }
            false => None,
        };
        expect_words(parser, &["REASON"])?;
        let reason = string(parser, "the reason")?;
        return Ok(Some(SharingStatement::Request {
            group,
            role,
            reason,
        }));
    }
    if take_words(parser, &["SHOW", "ACCESS", "REQUESTS"]) {
        return Ok(Some(SharingStatement::ShowRequests));
    }
    if take_words(parser, &["APPROVE", "ACCESS", "REQUEST"]) {
        let id = request_id(parser)?;
        return Ok(Some(SharingStatement::Approve { id }));
    }
    if take_words(parser, &["REJECT", "ACCESS", "REQUEST"]) {
        let id = request_id(parser)?;
        let reason = match take_words(parser, &["REASON"]) {
            true => Some(string(parser, "the reason")?),
            false => None,
        };
        return Ok(Some(SharingStatement::Reject { id, reason }));
    }
    Ok(None)
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl fmt::Display for SharingStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharingStatement::Publish {
                group,
                auto_approve,
            } => {
                write!(f, "PUBLISH FEATURE GROUP {group}")?;
                if *auto_approve {
                    write!(f, " WITH (auto_approve = true)")?;
                }
                Ok(())
            }
            SharingStatement::Unpublish { group } => write!(f, "UNPUBLISH FEATURE GROUP {group}"),
            SharingStatement::Request {
                group,
                role,
                reason,
            } => {
                write!(f, "REQUEST ACCESS ON FEATURE GROUP {group}")?;
                if let Some(role) = role {
                    write!(f, " FOR ROLE {role}")?;
                }
                write!(f, " REASON {}", quoted(reason))
            }
            SharingStatement::ShowRequests => write!(f, "SHOW ACCESS REQUESTS"),
            SharingStatement::Approve { id } => write!(f, "APPROVE ACCESS REQUEST {id}"),
            SharingStatement::Reject { id, reason } => {
                write!(f, "REJECT ACCESS REQUEST {id}")?;
                if let Some(reason) = reason {
                    write!(f, " REASON {}", quoted(reason))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::{Statement, parse_sql};

    use super::SharingStatement;

    fn one(sql: &str) -> SharingStatement {
        match parse_sql(sql).expect("parses").remove(0) {
            Statement::Sharing(s) => s,
            other => panic!("{sql} parsed as {other:?}"),
        }
    }

    #[test]
    fn statements_parse_and_print_back() {
        for sql in [
            "PUBLISH FEATURE GROUP airlines.fg",
            "PUBLISH FEATURE GROUP fg WITH (auto_approve = true)",
            "UNPUBLISH FEATURE GROUP fg",
            "REQUEST ACCESS ON FEATURE GROUP airlines.fg REASON 'delay model'",
            "REQUEST ACCESS ON FEATURE GROUP fg FOR ROLE ml_team REASON 'it''s for the model'",
            "SHOW ACCESS REQUESTS",
            "APPROVE ACCESS REQUEST 7",
            "REJECT ACCESS REQUEST 7",
            "REJECT ACCESS REQUEST 7 REASON 'not this quarter'",
        ] {
            assert_eq!(one(sql).to_string(), sql);
        }
        assert_eq!(
            one("publish feature group fg with (AUTO_APPROVE = 'false')"),
            SharingStatement::Publish {
                group: sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new("fg")]),
                auto_approve: false
            }
        );
    }

    #[test]
    fn malformed_statements_say_what_is_missing() {
        for (sql, expected) in [
            ("REQUEST ACCESS ON FEATURE GROUP fg", "REASON"),
            (
                "REQUEST ACCESS ON FEATURE GROUP fg REASON delay",
                "quoted string",
            ),
            ("APPROVE ACCESS REQUEST seven", "request number"),
            (
                "APPROVE ACCESS REQUEST 99999999999999999999",
                "not a request number",
            ),
            (
                "PUBLISH FEATURE GROUP fg WITH (owner = 'x')",
                "auto_approve",
            ),
            (
                "PUBLISH FEATURE GROUP fg WITH (auto_approve = 3)",
                "true or false",
            ),
        ] {
            let error = parse_sql(sql).expect_err(sql).to_string();
            assert!(error.contains(expected), "{sql}: {error}");
        }
    }
}
