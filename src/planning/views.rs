//! Views are expanded before planning: each relation that names a view
//! becomes the view's query as a derived table under the view's name (or the
//! alias written), so pitlake's own passes (time travel, ASOF JOIN) see the
//! whole statement. A view's stored query has every table name qualified, so
//! it means the same whatever the session's current schema.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, Statement, TableAlias, TableFactor, VisitMut,
    VisitorMut,
};

use super::temporary::cte_names;
use crate::catalog::types::normalize;
use crate::error::{Error, Result};

/// How deep views may use views.
pub const MAX_VIEW_DEPTH: usize = 16;

/// How many relations of one statement may be views, views inside views
/// counted (a view used twice by a view used twice counts four times).
pub const MAX_VIEW_EXPANSIONS: usize = 1024;

/// The relation names of `statement` that could name a view (not CTEs), each
/// once.
pub fn relation_names(statement: &Statement) -> Vec<ObjectName> {
    let ctes = cte_names(statement);
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |name| {
        if !is_cte(name, &ctes) && seen.insert(name.to_string()) {
            names.push(name.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    names
}

fn is_cte(name: &ObjectName, ctes: &HashSet<String>) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(i)] if ctes.contains(&normalize(i)))
}

/// Replaces every relation for which `view_of` gives a view (its name and
/// query) with that query. Returns how many it replaced.
pub fn expand(
    statement: &mut Statement,
    view_of: impl Fn(&ObjectName) -> Option<(String, Query)>,
) -> Result<usize> {
    struct Expand<F> {
        view_of: F,
        ctes: HashSet<String>,
        replaced: usize,
    }
    impl<F: Fn(&ObjectName) -> Option<(String, Query)>> VisitorMut for Expand<F> {
        type Break = Error;
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
            let TableFactor::Table {
                name,
                alias,
                args: None,
                version,
                ..
            } = factor
            else {
                return ControlFlow::Continue(());
            };
            if is_cte(name, &self.ctes) {
                return ControlFlow::Continue(());
            }
            let Some((view, query)) = (self.view_of)(name) else {
                return ControlFlow::Continue(());
            };
            if version.is_some() {
                return ControlFlow::Break(Error::NotIceberg {
                    table: format!("view {name}"),
                });
            }
            let alias = alias.take().unwrap_or(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', view),
                columns: vec![],
            });
            *factor = TableFactor::Derived {
                lateral: false,
                subquery: Box::new(query),
                alias: Some(alias),
                sample: None,
            };
            self.replaced += 1;
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Expand {
        view_of,
        ctes: cte_names(statement),
        replaced: 0,
    };
    match statement.visit(&mut visitor) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(visitor.replaced),
    }
}

/// `query` with every unqualified table name (CTEs excepted) qualified by
/// `schema`, as a view stores it. Errors on a temporary table, which would
/// be gone when the view is next read.
pub fn qualify_for_view(
    query: Query,
    schema: &str,
    is_temporary: impl Fn(&ObjectName) -> bool,
) -> Result<Query> {
    let mut statement = Statement::Query(Box::new(query));
    let ctes = cte_names(&statement);
    let flow = sqlparser::ast::visit_relations_mut(&mut statement, |name| {
        if is_cte(name, &ctes) {
            return ControlFlow::Continue(());
        }
        if is_temporary(name) {
            return ControlFlow::Break(Error::Invalid(format!(
                "a view cannot use temporary table {name}: it is gone when the session ends"
            )));
        }
        if let [ObjectNamePart::Identifier(table)] = name.0.as_slice() {
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
                ObjectNamePart::Identifier(table.clone()),
            ]);
        }
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(e) = flow {
        return Err(e);
    }
    match statement {
        Statement::Query(query) => Ok(*query),
        _ => Err(Error::Internal("a view's query changed kind".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        let dialect = sqlparser::dialect::GenericDialect {};
        sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .expect("parses")
            .pop()
            .expect("a statement")
    }

    fn query(sql: &str) -> Query {
        match parse(sql) {
            Statement::Query(q) => *q,
            other => panic!("not a query: {other}"),
        }
    }

    #[test]
    fn views_become_derived_tables_and_ctes_stay() {
        let mut statement =
            parse("WITH v AS (SELECT 1) SELECT * FROM s.v JOIN v ON true JOIN s.v AS x ON true");
        let replaced = expand(&mut statement, |name| {
            (name.to_string() == "s.v").then(|| ("v".to_string(), query("SELECT 2 AS two")))
        })
        .expect("expands");
        assert_eq!(replaced, 2);
        assert_eq!(
            statement.to_string(),
            r#"WITH v AS (SELECT 1) SELECT * FROM (SELECT 2 AS two) AS "v" JOIN v ON true JOIN (SELECT 2 AS two) AS x ON true"#
        );
    }

    #[test]
    fn stored_queries_name_their_schema() {
        let stored = qualify_for_view(
            query("WITH c AS (SELECT 1) SELECT * FROM t JOIN other.u ON true JOIN c ON true"),
            "s",
            |_| false,
        )
        .expect("qualifies");
        assert_eq!(
            stored.to_string(),
            r#"WITH c AS (SELECT 1) SELECT * FROM "s".t JOIN other.u ON true JOIN c ON true"#
        );
        let err = qualify_for_view(query("SELECT * FROM tmp"), "s", |n| n.to_string() == "tmp")
            .expect_err("temporary");
        assert!(err.to_string().contains("temporary table tmp"), "{err}");
    }
}
