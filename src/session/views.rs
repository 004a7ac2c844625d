//! CREATE VIEW, DROP VIEW, and the expansion of views in a statement before
//! it is planned (see [`crate::planning::views`]).

use std::collections::{HashMap, HashSet};

use datafusion::execution::SendableRecordBatchStream;
use sqlparser::ast::{self, CreateView, ObjectName};

use super::Session;
use super::results::done;
use crate::access::Securable;
use crate::catalog::{self, TableName};
use crate::error::{Error, Result};
use crate::planning::views::{
    MAX_VIEW_DEPTH, MAX_VIEW_EXPANSIONS, expand, qualify_for_view, relation_names,
};
use crate::sql::{Statement, parse_sql};

impl Session {
    /// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] v [(columns)] [COMMENT '…'] AS query`.
    pub(super) async fn create_view(
        &self,
        create: CreateView,
    ) -> Result<SendableRecordBatchStream> {
        if create.materialized || create.temporary || create.or_alter || create.to.is_some() {
            return Err(Error::NotSupported(
                "MATERIALIZED, TEMPORARY and OR ALTER views: pitlake stores plain views".into(),
            ));
        }
        let name = self.resolve_name(&create.name)?;
        self.require_create_in(&name).await?;
        // Replacing a view is changing it: for who may manage it, and it
        // keeps its owner and grants.
        let replacing =
            create.or_replace && self.warehouse().views().kind_of(&name).await? == Some("view");
        if replacing {
            self.require_manage(&name).await?;
        }
        if !self.warehouse().schema_exists(&name.schema).await? {
            return Err(Error::SchemaNotFound {
                schema: name.schema.clone(),
            });
        }
        let schema = name.schema.clone();
        let mut query =
            qualify_for_view(*create.query, &schema, |n| self.temporary_name(n).is_some())?;
        if !create.columns.is_empty() {
            // `CREATE VIEW v (a, b) AS …` names the query's columns.
            let columns: Vec<String> = create.columns.iter().map(|c| c.name.to_string()).collect();
            let wrapped = format!(
                "SELECT * FROM ({query}) AS {}({})",
                ast::Ident::with_quote('"', &name.table),
                columns.join(", ")
            );
            query = query_of(&wrapped)?;
        }
        let sql = query.to_string();
        // OR REPLACE could make a view use itself, which no statement could
        // then read: refused while the old definition still stands.
        let mut expanded = ast::Statement::Query(Box::new(query.clone()));
        if self.expand_views(&mut expanded).await?.contains(&name) {
            return Err(Error::Invalid(format!(
                "view {name} would use itself (through the views its query uses)"
            )));
        }
        // Planned now, so a view that cannot run is never stored.
        let (columns, _) = self
            .describe_query(Statement::Sql(Box::new(ast::Statement::Query(Box::new(
                query,
            )))))
            .await?;
        let columns = catalog::types::schema_for_view(&name.to_string(), &columns)?;
        let comment = create.comment.clone();
        let stored = self
            .warehouse()
            .views()
            .create(&name, &sql, columns, comment.as_deref(), create.or_replace)
            .await;
        match stored {
            Err(Error::AlreadyExists { kind: "view", .. }) if create.if_not_exists => {}
            other => {
                other?;
                if !replacing {
                    self.record_owner(Securable::Table(name)).await?;
                }
            }
        }
        self.catalog.refresh().await?;
        done()
    }

    /// `DROP VIEW [IF EXISTS] v, …`.
    pub(super) async fn drop_views(
        &self,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<SendableRecordBatchStream> {
        for name in names {
            let view = self.resolve_name(name)?;
            if self.warehouse().views().kind_of(&view).await? == Some("view") {
                self.require_manage(&view).await?;
            }
            let dropped = self.warehouse().views().drop_view(&view).await?;
            if dropped {
                self.forget_grants(Securable::Table(view.clone())).await?;
            }
            if !dropped && !if_exists {
                if self.warehouse().views().kind_of(&view).await?.is_some() {
                    return Err(Error::Invalid(format!("{view} is a table: use DROP TABLE")));
                }
                return Err(Error::TableNotFound {
                    table: format!("view {view}"),
                });
            }
        }
        self.catalog.refresh().await?;
        done()
    }

    /// Replaces every view of `statement` by its query, views inside views
    /// included. Returns the views it expanded.
    pub(super) async fn expand_views(
        &self,
        statement: &mut ast::Statement,
    ) -> Result<HashSet<TableName>> {
        let mut expanded = HashSet::new();
        let mut occurrences = 0;
        for _ in 0..MAX_VIEW_DEPTH {
            let mut found: HashMap<String, (String, ast::Query)> = HashMap::new();
            for relation in relation_names(statement) {
                let Ok(name) = self.resolve_name(&relation) else {
                    continue;
                };
                if !self.catalog.is_view(&name) {
                    continue;
                }
                // Dropped since the names were read: planning says it is gone.
                let Some(view) = self.warehouse().views().load(&name).await? else {
                    continue;
                };
                found.insert(
                    relation.to_string(),
                    (name.table.clone(), query_of(&view.sql)?),
                );
                expanded.insert(name);
            }
            if found.is_empty() {
                return Ok(expanded);
            }
            // Views that each use another several times grow the statement
            // exponentially with their depth: counted, so that a few small
            // views cannot make one statement hold the server's memory.
            occurrences += expand(statement, |relation| {
                found.get(&relation.to_string()).cloned()
            })?;
            if occurrences > MAX_VIEW_EXPANSIONS {
                return Err(Error::TooComplex(format!(
                    "the statement uses views more than {MAX_VIEW_EXPANSIONS} times, views inside views counted"
                )));
            }
        }
        Err(Error::TooComplex(format!(
            "views use views more than {MAX_VIEW_DEPTH} deep (does a view use itself?)"
        )))
    }

    /// True when `name` is a view (as of this statement).
    pub(super) fn is_view(&self, name: &TableName) -> bool {
        self.catalog.is_view(name)
    }
}

fn query_of(sql: &str) -> Result<ast::Query> {
    match parse_sql(sql)?.pop() {
        Some(Statement::Sql(statement)) => match *statement {
            ast::Statement::Query(query) => Ok(*query),
            other => Err(Error::Corrupt(format!(
                "a view's SQL is not a query: {other}"
            ))),
        },
        _ => Err(Error::Corrupt(format!(
            "a view's SQL is not a query: {sql}"
        ))),
    }
}
