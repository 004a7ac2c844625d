//! Splits SQL text into [`Statement`]s: pitlake's own statements are parsed here
//! with sqlparser's parser primitives, everything else by sqlparser itself.

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

use super::dialect::PitlakeDialect;
use super::limits::{PARSER_RECURSION_LIMIT, check_depth};
use super::statement::{CreateFeatureGroup, Statement};
use super::time_travel_tokens;
use super::words::peek_words;
use crate::error::Result;

/// Parses one or more `;`-separated statements.
pub fn parse_sql(sql: &str) -> Result<Vec<Statement>> {
    let dialect = PitlakeDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()?;
    check_depth(&tokens)?;
    let tokens = time_travel_tokens::rewrite(tokens);
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        statements.push(parse_statement(&mut parser).map_err(with_asof_hint)?);
        let next = parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return Err(ParserError::ParserError(format!(
                "expected end of statement, found: {} at {}",
                next.token, next.span.start
            ))
            .into());
        }
    }
    Ok(statements)
}

/// One SQL expression in pitlake's dialect (a stored row filter or mask).
pub fn parse_expr(sql: &str) -> Result<sqlparser::ast::Expr> {
    let dialect = PitlakeDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()?;
    check_depth(&tokens)?;
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let expr = parser.parse_expr()?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "expected end of expression, found: {} at {}",
            next.token, next.span.start
        ))
        .into());
    }
    Ok(expr)
}

/// A syntax error at an ASOF JOIN written in DuckDB's form (`ASOF LEFT JOIN`,
/// or the inequality in `ON`) says how pitlake spells it.
fn with_asof_hint(error: ParserError) -> ParserError {
    let ParserError::ParserError(message) = &error else {
        return error;
    };
    // sqlparser's messages after `ASOF` (`JOIN` must follow it) and after its
    // right relation (`MATCH_CONDITION` must).
    let duckdb_form = message.starts_with("Expected: MATCH_CONDITION")
        || message.starts_with("Expected: JOIN, found: LEFT");
    if !duckdb_form {
        return error;
    }
    ParserError::ParserError(format!(
        "{message}; pitlake writes ASOF JOIN as Snowflake does: <left> ASOF JOIN <right> \
         MATCH_CONDITION (<left time> >= <right time>) ON <left key> = <right key>, and it keeps \
         every left row (as DuckDB's ASOF LEFT JOIN does)"
    ))
}

fn parse_statement(parser: &mut Parser) -> Result<Statement, ParserError> {
    if let Some(principal) = super::principals::parse_principal(parser)? {
        return Ok(Statement::Principal(principal));
    }
    if let Some(policy) = super::policies::parse_policy(parser)? {
        return Ok(Statement::Policy(Box::new(policy)));
    }
    if let Some(sharing) = super::sharing::parse_sharing(parser)? {
        return Ok(Statement::Sharing(sharing));
    }
    if let Some(tag) = super::refs::parse_ref(parser)? {
        return Ok(Statement::Ref(tag));
    }
    if let Some(columns) = super::columns::parse_columns(parser)? {
        return Ok(Statement::Columns(columns));
    }
    if peek_words(parser, &["CREATE", "FEATURE", "GROUP"]) {
        advance(parser, 3);
        return parse_create_feature_group(parser).map(Statement::CreateFeatureGroup);
    }
    if peek_words(parser, &["DROP", "FEATURE", "GROUP"]) {
        advance(parser, 3);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parser.parse_object_name(false)?;
        return Ok(Statement::DropFeatureGroup { name, if_exists });
    }
    if peek_words(parser, &["SHOW", "FEATURE", "GROUPS"]) {
        advance(parser, 3);
        let schema = if parser
            .parse_one_of_keywords(&[Keyword::IN, Keyword::FROM])
            .is_some()
        {
            Some(parser.parse_identifier()?)
        } else {
            None
        };
        return Ok(Statement::ShowFeatureGroups { schema });
    }
    if peek_words(parser, &["DESCRIBE", "FEATURE", "GROUP"])
        || peek_words(parser, &["DESC", "FEATURE", "GROUP"])
    {
        advance(parser, 3);
        let name = parser.parse_object_name(false)?;
        return Ok(Statement::DescribeFeatureGroup { name });
    }
    if peek_words(parser, &["ALTER", "FEATURE", "GROUP"]) {
        advance(parser, 3);
        let name = parser.parse_object_name(false)?;
        let mut online = None;
        let mut options = Vec::new();
        while parser.parse_keyword(Keyword::SET) {
            if peek_words(parser, &["ONLINE"]) {
                advance(parser, 1);
                online = Some(true);
            } else if peek_words(parser, &["OFFLINE"]) {
                advance(parser, 1);
                online = Some(false);
            } else {
                parser.expect_token(&Token::LParen)?;
                options.extend(parser.parse_comma_separated(parse_option)?);
                parser.expect_token(&Token::RParen)?;
            }
        }
        if online.is_none() && options.is_empty() {
            return Err(ParserError::ParserError(format!(
                "ALTER FEATURE GROUP {name} needs SET ONLINE, SET OFFLINE or SET (option = 'value', ...)"
            )));
        }
        return Ok(Statement::AlterFeatureGroup {
            name,
            online,
            options,
        });
    }
    if peek_words(parser, &["ERASE", "FROM"]) {
        let erase = parser.next_token();
        return match parser.parse_delete(erase)? {
            sqlparser::ast::Statement::Delete(delete) => Ok(Statement::Erase(Box::new(delete))),
            other => Err(ParserError::ParserError(format!(
                "ERASE FROM parsed as {other}"
            ))),
        };
    }
    if peek_words(parser, &["VACUUM"]) {
        advance(parser, 1);
        let table = match parser.peek_token_ref().token {
            Token::EOF | Token::SemiColon => None,
            _ => Some(parser.parse_object_name(false)?),
        };
        return Ok(Statement::Vacuum { table });
    }
    if is_copy_from(parser) {
        parser.expect_keyword(Keyword::COPY)?;
        let table = parser.parse_object_name(false)?;
        parser.expect_keyword(Keyword::FROM)?;
        let path = parser.parse_literal_string()?;
        return Ok(Statement::CopyFrom { table, path });
    }
    let statement = parser.parse_statement()?;
    if let Some(columns) = super::columns::from_alter_table(&statement) {
        return Ok(Statement::Columns(columns));
    }
    Ok(Statement::Sql(Box::new(statement)))
}

fn parse_create_feature_group(parser: &mut Parser) -> Result<CreateFeatureGroup, ParserError> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parser.parse_object_name(false)?;
    parser.expect_token(&Token::LParen)?;
    let columns = parser.parse_comma_separated(Parser::parse_column_def)?;
    parser.expect_token(&Token::RParen)?;

    let mut entity_key = None;
    let mut event_time = None;
    let mut online = false;
    let mut options = Vec::new();
    loop {
        if peek_words(parser, &["ENTITY", "KEY"]) {
            advance(parser, 2);
            let keys = parser
                .parse_parenthesized_column_list(sqlparser::parser::IsOptional::Mandatory, false)?;
            entity_key = Some(keys);
        } else if peek_words(parser, &["EVENT", "TIME"]) {
            advance(parser, 2);
            event_time = Some(parser.parse_identifier()?);
        } else if peek_words(parser, &["ONLINE"]) {
            advance(parser, 1);
            online = true;
        } else if parser.parse_keyword(Keyword::WITH) {
            parser.expect_token(&Token::LParen)?;
            options = parser.parse_comma_separated(parse_option)?;
            parser.expect_token(&Token::RParen)?;
        } else {
            break;
        }
    }
    let entity_key = entity_key.ok_or_else(|| {
        ParserError::ParserError(format!(
            "CREATE FEATURE GROUP {name} needs ENTITY KEY (column, ...)"
        ))
    })?;
    let event_time = event_time.ok_or_else(|| {
        ParserError::ParserError(format!(
            "CREATE FEATURE GROUP {name} needs EVENT TIME column"
        ))
    })?;
    Ok(CreateFeatureGroup {
        name,
        if_not_exists,
        columns,
        entity_key,
        event_time,
        online,
        options,
    })
}

/// `key = 'value'` inside `WITH (...)`.
fn parse_option(parser: &mut Parser) -> Result<(String, String), ParserError> {
    let key: Ident = parser.parse_identifier()?;
    parser.expect_token(&Token::Eq)?;
    let value = parser.parse_literal_string()?;
    Ok((key.value.to_lowercase(), value))
}

/// `COPY <name> FROM ...` (as opposed to DataFusion's `COPY ... TO`).
fn is_copy_from(parser: &Parser) -> bool {
    if !peek_words(parser, &["COPY"]) {
        return false;
    }
    // Skip the (possibly dotted) table name and look for FROM.
    let mut n = 1;
    loop {
        match parser.peek_nth_token_ref(n).token {
            Token::Word(_) => n += 1,
            _ => return false,
        }
        match &parser.peek_nth_token_ref(n).token {
            Token::Period => n += 1,
            Token::Word(w) => return w.keyword == Keyword::FROM && w.quote_style.is_none(),
            _ => return false,
        }
    }
}

fn advance(parser: &mut Parser, n: usize) {
    for _ in 0..n {
        parser.next_token();
    }
}

/// Turns an object name into its identifier parts.
pub fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|part| part.as_ident().map(|i| i.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::{self, SetExpr, TableFactor, TableVersion};

    use super::*;

    fn version_of(sql: &str) -> TableVersion {
        let mut statements = parse_sql(sql).expect("parses");
        let Some(Statement::Sql(statement)) = statements.pop() else {
            panic!("not a query: {sql}");
        };
        let ast::Statement::Query(query) = *statement else {
            panic!("not a query: {sql}");
        };
        let SetExpr::Select(select) = *query.body else {
            panic!("not a select: {sql}");
        };
        match &select.from[0].relation {
            TableFactor::Table {
                version: Some(v), ..
            } => v.clone(),
            other => panic!("no version in {other}"),
        }
    }

    #[test]
    fn every_time_travel_spelling_parses() {
        let cases = [
            ("SELECT * FROM t FOR VERSION AS OF 123", "VERSION AS OF 123"),
            ("SELECT * FROM t VERSION AS OF 123", "VERSION AS OF 123"),
            ("SELECT * FROM t FOR VERSION AS OF -5", "VERSION AS OF -5"),
            ("SELECT * FROM t FOR VERSION AS OF 'v1'", "AT('v1')"),
            (
                "SELECT * FROM t FOR VERSION AS OF (SELECT 1)",
                "AT((SELECT 1))",
            ),
            (
                "SELECT * FROM t FOR TIMESTAMP AS OF TIMESTAMP '2025-01-01 00:00:00'",
                "TIMESTAMP AS OF TIMESTAMP '2025-01-01 00:00:00'",
            ),
            (
                "SELECT * FROM t TIMESTAMP AS OF '2025-01-01'",
                "TIMESTAMP AS OF '2025-01-01'",
            ),
            (
                "SELECT * FROM t FOR SYSTEM_TIME AS OF '2025-01-01'",
                "FOR SYSTEM_TIME AS OF '2025-01-01'",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(version_of(sql).to_string(), expected, "{sql}");
        }
    }

    #[test]
    fn feature_group_ddl_parses() {
        let sql = "CREATE FEATURE GROUP IF NOT EXISTS s.fg (k VARCHAR, t TIMESTAMP, v DOUBLE)
                   ENTITY KEY (k) EVENT TIME t ONLINE WITH (description = 'd', tags = 'a,b');
                   SHOW FEATURE GROUPS IN s; DESCRIBE FEATURE GROUP s.fg;
                   DROP FEATURE GROUP IF EXISTS s.fg; COPY s.fg FROM 'x.parquet'";
        let statements = parse_sql(sql).expect("parses");
        let rendered: Vec<String> = statements.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            vec![
                "CREATE FEATURE GROUP IF NOT EXISTS s.fg (k VARCHAR, t TIMESTAMP, v DOUBLE) ENTITY KEY (k) EVENT TIME t ONLINE WITH (description = 'd', tags = 'a,b')",
                "SHOW FEATURE GROUPS IN s",
                "DESCRIBE FEATURE GROUP s.fg",
                "DROP FEATURE GROUP IF EXISTS s.fg",
                "COPY s.fg FROM 'x.parquet'",
            ]
        );
    }

    #[test]
    fn copy_to_is_left_to_sqlparser() {
        let statements = parse_sql("COPY (SELECT 1) TO 'x.parquet'").expect("parses");
        assert!(matches!(statements[0], Statement::Sql(_)));
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse_sql("SELEC 1").expect_err("bad sql").to_string();
        assert!(err.starts_with("syntax error: "), "{err}");
        let err = parse_sql("CREATE FEATURE GROUP f (k VARCHAR) EVENT TIME t")
            .expect_err("no key")
            .to_string();
        assert!(err.contains("needs ENTITY KEY"), "{err}");
    }
}
