//! Unqualified names find a session's temporary tables first, as in other
//! databases: `labels` means `temp.labels` while the session has one, and
//! the current schema's `labels` otherwise (write `default.labels` to reach
//! it). A name a WITH clause of the statement defines stays the CTE.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Query, Statement, Visit, Visitor};

use crate::catalog::types::normalize;
use crate::shared::TEMP_SCHEMA;

/// Rewrites every unqualified relation of `statement` for which `is_temporary`
/// holds to `temp.<name>`.
pub fn qualify_temporary(statement: &mut Statement, is_temporary: impl Fn(&str) -> bool) {
    let ctes = cte_names(statement);
    let _ = sqlparser::ast::visit_relations_mut(statement, |name| {
        if let Some(table) = temporary_of(name, &ctes, &is_temporary) {
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::new(TEMP_SCHEMA)),
                ObjectNamePart::Identifier(Ident::with_quote('"', table)),
            ]);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// The temporary table an unqualified `name` means, if any.
pub fn temporary_of(
    name: &ObjectName,
    ctes: &HashSet<String>,
    is_temporary: impl Fn(&str) -> bool,
) -> Option<String> {
    let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
        return None;
    };
    let table = normalize(ident);
    (!ctes.contains(&table) && is_temporary(&table)).then_some(table)
}

/// The names every WITH clause of `statement` defines.
pub fn cte_names(statement: &Statement) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(normalize(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = statement.visit(&mut ctes);
    ctes.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let dialect = sqlparser::dialect::GenericDialect {};
        let Some(mut statement) = sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .expect("parses")
            .pop()
        else {
            panic!("no statement");
        };
        qualify_temporary(&mut statement, |t| t == "labels");
        statement.to_string()
    }

    #[test]
    fn unqualified_temporary_names_move_to_temp() {
        assert_eq!(
            rewritten("SELECT * FROM labels JOIN default.labels USING (k)"),
            r#"SELECT * FROM temp."labels" JOIN default.labels USING(k)"#
        );
        assert_eq!(
            rewritten("INSERT INTO labels SELECT * FROM features"),
            r#"INSERT INTO temp."labels" SELECT * FROM features"#
        );
        assert_eq!(
            rewritten("WITH labels AS (SELECT 1) SELECT * FROM labels"),
            "WITH labels AS (SELECT 1) SELECT * FROM labels"
        );
    }
}
