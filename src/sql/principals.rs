//! Statements about users and roles:
//!
//! ```sql
//! CREATE USER [IF NOT EXISTS] alice PASSWORD 's3cret' [IN ROLE producers, …];
//! ALTER USER alice PASSWORD '…';      DROP USER [IF EXISTS] alice;
//! CREATE ROLE [IF NOT EXISTS] producers;   DROP ROLE [IF EXISTS] producers;
//! GRANT ROLE producers TO [USER] alice;    REVOKE ROLE producers FROM [USER] alice;
//! SHOW USERS;   SHOW ROLES;
//! GRANT SELECT, INSERT | ALL [PRIVILEGES] | CREATE
//!     ON TABLE t | FEATURE GROUP g | SCHEMA s TO ROLE r | USER u;
//! REVOKE … ON … FROM ROLE r | USER u;
//! SHOW GRANTS [ON TABLE t | FEATURE GROUP g | SCHEMA s] [TO ROLE r | USER u];
//! ```
//!
//! A statement prints its password as `'***'`, so it never reaches a log.

use std::fmt;

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};

/// One statement about principals.
#[derive(Clone, PartialEq, Eq)]
pub enum PrincipalStatement {
    CreateUser {
        name: Ident,
        password: String,
        roles: Vec<Ident>,
        if_not_exists: bool,
    },
    AlterUser {
        name: Ident,
        password: String,
    },
    DropUser {
        name: Ident,
        if_exists: bool,
    },
    CreateRole {
        name: Ident,
        if_not_exists: bool,
    },
    DropRole {
        name: Ident,
        if_exists: bool,
    },
    GrantRole {
        role: Ident,
        user: Ident,
    },
    RevokeRole {
        role: Ident,
        user: Ident,
    },
    ShowUsers,
    ShowRoles,
    Grant {
        privileges: Vec<String>,
        object: GrantObject,
        grantee: GrantTarget,
    },
    Revoke {
        privileges: Vec<String>,
        object: GrantObject,
        grantee: GrantTarget,
    },
    ShowGrants {
        object: Option<GrantObject>,
        grantee: Option<GrantTarget>,
    },
}

/// What a privilege is granted on, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantObject {
    /// `TABLE t` or `FEATURE GROUP g`.
    Table(ObjectName),
    Schema(ObjectName),
}

/// Who a privilege is granted to, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Role(Ident),
    User(Ident),
}

impl fmt::Display for GrantObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantObject::Table(t) => write!(f, "TABLE {t}"),
            GrantObject::Schema(s) => write!(f, "SCHEMA {s}"),
        }
    }
}

impl fmt::Display for GrantTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantTarget::Role(r) => write!(f, "ROLE {r}"),
            GrantTarget::User(u) => write!(f, "USER {u}"),
        }
    }
}

impl fmt::Debug for PrincipalStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for PrincipalStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exists = |b: bool, text: &'static str| if b { text } else { "" };
        match self {
            PrincipalStatement::CreateUser {
                name,
                roles,
                if_not_exists,
                ..
            } => {
                let ine = exists(*if_not_exists, "IF NOT EXISTS ");
                write!(f, "CREATE USER {ine}{name} PASSWORD '***'")?;
                if !roles.is_empty() {
                    let roles: Vec<String> = roles.iter().map(ToString::to_string).collect();
                    write!(f, " IN ROLE {}", roles.join(", "))?;
                }
                Ok(())
            }
            PrincipalStatement::AlterUser { name, .. } => {
                write!(f, "ALTER USER {name} PASSWORD '***'")
            }
            PrincipalStatement::DropUser { name, if_exists } => {
                write!(f, "DROP USER {}{name}", exists(*if_exists, "IF EXISTS "))
            }
            PrincipalStatement::CreateRole {
                name,
                if_not_exists,
            } => write!(
                f,
                "CREATE ROLE {}{name}",
                exists(*if_not_exists, "IF NOT EXISTS ")
            ),
            PrincipalStatement::DropRole { name, if_exists } => {
                write!(f, "DROP ROLE {}{name}", exists(*if_exists, "IF EXISTS "))
            }
            PrincipalStatement::GrantRole { role, user } => {
                write!(f, "GRANT ROLE {role} TO USER {user}")
            }
            PrincipalStatement::RevokeRole { role, user } => {
                write!(f, "REVOKE ROLE {role} FROM USER {user}")
            }
            PrincipalStatement::ShowUsers => write!(f, "SHOW USERS"),
            PrincipalStatement::ShowRoles => write!(f, "SHOW ROLES"),
            PrincipalStatement::Grant {
                privileges,
                object,
                grantee,
            } => write!(
                f,
                "GRANT {} ON {object} TO {grantee}",
                privileges.join(", ")
            ),
            PrincipalStatement::Revoke {
                privileges,
                object,
                grantee,
            } => write!(
                f,
                "REVOKE {} ON {object} FROM {grantee}",
                privileges.join(", ")
            ),
            PrincipalStatement::ShowGrants { object, grantee } => {
                write!(f, "SHOW GRANTS")?;
                if let Some(object) = object {
                    write!(f, " ON {object}")?;
                }
                if let Some(grantee) = grantee {
                    write!(f, " TO {grantee}")?;
                }
                Ok(())
            }
        }
    }
}

/// True when the next tokens are the given unquoted words.
fn peek(parser: &Parser, words: &[&str]) -> bool {
    words.iter().enumerate().all(|(n, word)| {
        matches!(&parser.peek_nth_token_ref(n).token,
            sqlparser::tokenizer::Token::Word(w)
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    })
}

fn skip(parser: &mut Parser, n: usize) {
    for _ in 0..n {
        parser.next_token();
    }
}

fn expect_word(parser: &mut Parser, word: &str) -> Result<(), ParserError> {
    if peek(parser, &[word]) {
        skip(parser, 1);
        return Ok(());
    }
    parser.expected(word, parser.peek_token())
}

/// The password after `PASSWORD`: a single-quoted string. Anything else
/// (a bare word, a number, a double-quoted name) is
/// refused without quoting it, as it may be the password unquoted (parse
/// errors reach the client and the server log).
fn parse_password(parser: &mut Parser) -> Result<String, ParserError> {
    match parser.next_token().token {
        sqlparser::tokenizer::Token::SingleQuotedString(password) => Ok(password),
        _ => Err(ParserError::ParserError(
            "PASSWORD takes the password as a single-quoted string ('…'); what followed is not \
             shown, as it may be the password"
                .into(),
        )),
    }
}

/// Parses a principal statement if one starts here (else `None`, nothing
/// consumed).
pub fn parse_principal(parser: &mut Parser) -> Result<Option<PrincipalStatement>, ParserError> {
    let statement = if peek(parser, &["CREATE", "USER"]) {
        skip(parser, 2);
        let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = parser.parse_identifier()?;
        expect_word(parser, "PASSWORD")?;
        let password = parse_password(parser)?;
        let roles = if peek(parser, &["IN", "ROLE"]) {
            skip(parser, 2);
            parser.parse_comma_separated(Parser::parse_identifier)?
        } else {
            Vec::new()
        };
        PrincipalStatement::CreateUser {
            name,
            password,
            roles,
            if_not_exists,
        }
    } else if peek(parser, &["ALTER", "USER"]) {
        skip(parser, 2);
        let name = parser.parse_identifier()?;
        expect_word(parser, "PASSWORD")?;
        let password = parse_password(parser)?;
        PrincipalStatement::AlterUser { name, password }
    } else if peek(parser, &["DROP", "USER"]) {
        skip(parser, 2);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parser.parse_identifier()?;
        PrincipalStatement::DropUser { name, if_exists }
    } else if peek(parser, &["CREATE", "ROLE"]) {
        skip(parser, 2);
        let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = parser.parse_identifier()?;
        PrincipalStatement::CreateRole {
            name,
            if_not_exists,
        }
    } else if peek(parser, &["DROP", "ROLE"]) {
        skip(parser, 2);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parser.parse_identifier()?;
        PrincipalStatement::DropRole { name, if_exists }
    } else if peek(parser, &["GRANT", "ROLE"]) {
        skip(parser, 2);
        let role = parser.parse_identifier()?;
        expect_word(parser, "TO")?;
        if peek(parser, &["USER"]) {
            skip(parser, 1);
        }
        let user = parser.parse_identifier()?;
        PrincipalStatement::GrantRole { role, user }
    } else if peek(parser, &["REVOKE", "ROLE"]) {
        skip(parser, 2);
        let role = parser.parse_identifier()?;
        expect_word(parser, "FROM")?;
        if peek(parser, &["USER"]) {
            skip(parser, 1);
        }
        let user = parser.parse_identifier()?;
        PrincipalStatement::RevokeRole { role, user }
    } else if is_privilege_grant(parser, "GRANT") {
        skip(parser, 1);
        let (privileges, object) = parse_privileges_on(parser)?;
        expect_word(parser, "TO")?;
        let grantee = parse_grantee(parser)?;
        PrincipalStatement::Grant {
            privileges,
            object,
            grantee,
        }
    } else if is_privilege_grant(parser, "REVOKE") {
        skip(parser, 1);
        let (privileges, object) = parse_privileges_on(parser)?;
        expect_word(parser, "FROM")?;
        let grantee = parse_grantee(parser)?;
        PrincipalStatement::Revoke {
            privileges,
            object,
            grantee,
        }
    } else if peek(parser, &["SHOW", "GRANTS"]) {
        skip(parser, 2);
        let object = if peek(parser, &["ON"]) {
            skip(parser, 1);
            Some(parse_object(parser)?)
        } else {
            None
        };
        let grantee = if peek(parser, &["TO"]) {
            skip(parser, 1);
            Some(parse_grantee(parser)?)
        } else {
            None
        };
        PrincipalStatement::ShowGrants { object, grantee }
    } else if peek(parser, &["SHOW", "USERS"]) {
        skip(parser, 2);
        PrincipalStatement::ShowUsers
    } else if peek(parser, &["SHOW", "ROLES"]) {
        skip(parser, 2);
        PrincipalStatement::ShowRoles
    } else {
        return Ok(None);
    };
    Ok(Some(statement))
}

const PRIVILEGES: [&str; 4] = ["SELECT", "INSERT", "ALL", "CREATE"];

/// `GRANT`/`REVOKE` followed by a privilege (not `ROLE`).
fn is_privilege_grant(parser: &Parser, verb: &str) -> bool {
    PRIVILEGES.iter().any(|p| peek(parser, &[verb, p]))
}

fn parse_privileges_on(parser: &mut Parser) -> Result<(Vec<String>, GrantObject), ParserError> {
    let mut privileges = Vec::new();
    loop {
        let Some(privilege) = PRIVILEGES.iter().find(|p| peek(parser, &[p])) else {
            return parser.expected("SELECT, INSERT, ALL or CREATE", parser.peek_token());
        };
        skip(parser, 1);
        if *privilege == "ALL" && peek(parser, &["PRIVILEGES"]) {
            skip(parser, 1);
        }
        privileges.push(privilege.to_string());
        if !parser.consume_token(&sqlparser::tokenizer::Token::Comma) {
            break;
        }
    }
    expect_word(parser, "ON")?;
    Ok((privileges, parse_object(parser)?))
}

fn parse_object(parser: &mut Parser) -> Result<GrantObject, ParserError> {
    if peek(parser, &["FEATURE", "GROUP"]) {
        skip(parser, 2);
        return Ok(GrantObject::Table(parser.parse_object_name(false)?));
    }
    if peek(parser, &["TABLE"]) {
        skip(parser, 1);
        return Ok(GrantObject::Table(parser.parse_object_name(false)?));
    }
    if peek(parser, &["SCHEMA"]) {
        skip(parser, 1);
        return Ok(GrantObject::Schema(parser.parse_object_name(false)?));
    }
    parser.expected("TABLE, FEATURE GROUP or SCHEMA", parser.peek_token())
}

fn parse_grantee(parser: &mut Parser) -> Result<GrantTarget, ParserError> {
    if peek(parser, &["ROLE"]) {
        skip(parser, 1);
        return Ok(GrantTarget::Role(parser.parse_identifier()?));
    }
    if peek(parser, &["USER"]) {
        skip(parser, 1);
        return Ok(GrantTarget::User(parser.parse_identifier()?));
    }
    parser.expected("ROLE name or USER name", parser.peek_token())
}

#[cfg(test)]
mod tests {
    use crate::sql::{Statement, parse_sql};

    #[test]
    fn principal_statements_parse_and_hide_passwords() {
        let sql = "CREATE USER IF NOT EXISTS alice PASSWORD 's3cret' IN ROLE producers, pii;
                   ALTER USER alice PASSWORD 'n3w'; DROP USER IF EXISTS bob;
                   CREATE ROLE producers; DROP ROLE IF EXISTS pii;
                   GRANT ROLE producers TO alice; REVOKE ROLE producers FROM USER alice;
                   SHOW USERS; SHOW ROLES;
                   GRANT SELECT, INSERT ON FEATURE GROUP s.fg TO ROLE analysts;
                   GRANT ALL PRIVILEGES ON SCHEMA s TO USER carol;
                   REVOKE INSERT ON TABLE t FROM ROLE analysts;
                   SHOW GRANTS ON SCHEMA s TO USER carol; SHOW GRANTS";
        let printed: Vec<String> = parse_sql(sql)
            .expect("parses")
            .iter()
            .map(|s| {
                assert!(matches!(s, Statement::Principal(_)), "{s}");
                s.to_string()
            })
            .collect();
        assert_eq!(
            printed,
            [
                "CREATE USER IF NOT EXISTS alice PASSWORD '***' IN ROLE producers, pii",
                "ALTER USER alice PASSWORD '***'",
                "DROP USER IF EXISTS bob",
                "CREATE ROLE producers",
                "DROP ROLE IF EXISTS pii",
                "GRANT ROLE producers TO USER alice",
                "REVOKE ROLE producers FROM USER alice",
                "SHOW USERS",
                "SHOW ROLES",
                "GRANT SELECT, INSERT ON TABLE s.fg TO ROLE analysts",
                "GRANT ALL ON SCHEMA s TO USER carol",
                "REVOKE INSERT ON TABLE t FROM ROLE analysts",
                "SHOW GRANTS ON SCHEMA s TO USER carol",
                "SHOW GRANTS",
            ]
        );
        let debug = format!(
            "{:?}",
            parse_sql("CREATE USER a PASSWORD 'hunter2'").expect("parses")
        );
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(parse_sql("CREATE USER alice").is_err());
        // A password not in single quotes is not quoted back.
        for sql in [
            "CREATE USER a PASSWORD hunter2",
            "ALTER USER a PASSWORD \"hunter2\"",
            "CREATE USER a PASSWORD hunter2 IN ROLE r",
            "CREATE USER a PASSWORD 2hunter2",
        ] {
            let err = parse_sql(sql).expect_err(sql).to_string();
            assert!(
                !err.contains("hunter2") && err.contains("single-quoted string"),
                "{sql}: {err}"
            );
        }
    }
}
