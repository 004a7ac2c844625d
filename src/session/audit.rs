//! What the session tells the audit log (see `access::audit`): each
//! statement's outcome once it is known, and the tables (with snapshots) each
//! query reads.

use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::LogicalPlan;
use sqlparser::ast;

use super::Session;
use crate::access::{AuditAction, AuditEvent};
use crate::catalog::TableName;
use crate::error::{Error, Result};
use crate::sql::{SharingStatement, Statement};
use crate::tables::versioned;

/// How a statement ended, as the audit log tells it.
pub(super) enum Outcome {
    Done,
    /// Refused: what the principal may not do.
    Denied(String),
    /// Failed otherwise (not recorded).
    Failed,
}

impl Outcome {
    pub(super) fn of<T>(result: &Result<T>) -> Self {
        match result {
            Ok(_) => Outcome::Done,
            Err(Error::Denied { action, .. }) => Outcome::Denied(action.clone()),
            Err(_) => Outcome::Failed,
        }
    }
}

/// Where a session's statements come from when no server said.
pub(super) const LOCAL_CLIENT: &str = "local";

impl Session {
    /// This session's statements come from `client` (a Flight client's
    /// address), as the audit log records it.
    pub fn with_client(mut self, client: &str) -> Self {
        self.client = Arc::from(client);
        self
    }

    pub(super) async fn audit(
        &self,
        action: AuditAction,
        object: String,
        detail: String,
        allowed: bool,
    ) {
        let user = match self.principal().await {
            Ok(principal) => principal.user,
            Err(_) => return,
        };
        let event = AuditEvent {
            user,
            client: self.client.to_string(),
            action,
            object,
            detail,
            allowed,
        };
        if let Err(e) = self.store.audit().record(event).await {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }

    /// Records a write to `table` (`what`: the statement, or the Flight
    /// call), with the snapshot it left current.
    pub(super) async fn audit_write(&self, table: &TableName, what: &str) {
        let mut detail = what.to_string();
        if let Ok(Some(loaded)) = self
            .warehouse()
            .try_load_table(&table.schema, &table.table)
            .await
            && let Some(id) = loaded.metadata().current_snapshot_id()
        {
            detail = format!("{detail} (snapshot {id})");
        }
        self.audit(AuditAction::Write, table.to_string(), detail, true)
            .await;
    }

    /// Records a stream of records opened into `table` (Flight DoPut): its
    /// records commit in batches after, with no statement to record.
    pub async fn audit_stream(&self, table: &TableName) {
        self.audit(
            AuditAction::Write,
            table.to_string(),
            "stream opened".into(),
            true,
        )
        .await;
    }

    /// Records a query refused for want of a privilege (its reads are
    /// recorded as it runs). Its text is not kept: queries are not printed
    /// on the path that runs them.
    pub(super) async fn audit_query_denial(&self, error: Option<&Error>) {
        if let Some(Error::Denied { action, .. }) = error {
            let detail = format!("a query: may not {action}");
            self.audit(AuditAction::Denied, String::new(), detail, false)
                .await;
        }
    }

    /// Records a statement other than a query once it finished: what it
    /// changed, or that it was refused. Queries record their reads instead.
    pub(super) async fn audit_statement(
        &self,
        statement: &Statement,
        text: &str,
        outcome: Outcome,
    ) {
        match outcome {
            Outcome::Done => {}
            Outcome::Failed => return,
            Outcome::Denied(action) => {
                let detail = format!("{text}: may not {action}");
                self.audit(AuditAction::Denied, String::new(), detail, false)
                    .await;
                return;
            }
        }
        // A decision names a request: the log names its group.
        if let Statement::Sharing(
            SharingStatement::Approve { id } | SharingStatement::Reject { id, .. },
        ) = statement
        {
            let group = match self.store.sharing().get(*id).await {
                Ok(Some(request)) => request.group,
                _ => String::new(),
            };
            self.audit(AuditAction::Sharing, group, text.to_string(), true)
                .await;
            return;
        }
        let Some((action, object)) = self.audited(statement) else {
            return;
        };
        if action == AuditAction::Write
            && let Ok(name) = self.resolve_name(&object)
        {
            self.audit_write(&name, text).await;
            return;
        }
        let detail = text.to_string();
        let object = self
            .resolve_name(&object)
            .map(|n| n.to_string())
            .unwrap_or_else(|_| object.to_string());
        self.audit(action, object, detail, true).await;
    }

    /// The kind of change `statement` makes and the object it names, for
    /// statements the log keeps.
    fn audited(&self, statement: &Statement) -> Option<(AuditAction, ast::ObjectName)> {
        let none = ast::ObjectName(vec![]);
        Some(match statement {
            Statement::Principal(_) => (AuditAction::Grant, none),
            Statement::Policy(p) => (AuditAction::Policy, p.table.clone()),
            Statement::Sharing(s) => match s {
                SharingStatement::ShowRequests => return None,
                SharingStatement::Publish { group, .. }
                | SharingStatement::Unpublish { group }
                | SharingStatement::Request { group, .. } => (AuditAction::Sharing, group.clone()),
                SharingStatement::Approve { .. } | SharingStatement::Reject { .. } => {
                    (AuditAction::Sharing, none)
                }
            },
            Statement::CreateFeatureGroup(c) => (AuditAction::Ddl, c.name.clone()),
            Statement::DropFeatureGroup { name, .. }
            | Statement::AlterFeatureGroup { name, .. } => (AuditAction::Ddl, name.clone()),
            Statement::CopyFrom { table, .. } => (AuditAction::Write, table.clone()),
            Statement::Vacuum { .. } => (AuditAction::Ddl, none),
            // Recorded by the erase itself, with what it did.
            Statement::Erase(_) => return None,
            Statement::Ref(r) => (AuditAction::Ddl, r.table().clone()),
            Statement::Columns(c) => (AuditAction::Ddl, c.table.clone()),
            Statement::ShowFeatureGroups { .. } | Statement::DescribeFeatureGroup { .. } => {
                return None;
            }
            Statement::Sql(sql) => match &**sql {
                ast::Statement::Insert(insert) => match &insert.table {
                    ast::TableObject::TableName(name) => (AuditAction::Write, name.clone()),
                    _ => (AuditAction::Write, none),
                },
                ast::Statement::Delete(delete) => match &delete.from {
                    ast::FromTable::WithFromKeyword(from)
                    | ast::FromTable::WithoutKeyword(from) => {
                        match from.first().map(|t| &t.relation) {
                            Some(ast::TableFactor::Table { name, .. }) => {
                                (AuditAction::Write, name.clone())
                            }
                            _ => (AuditAction::Write, none),
                        }
                    }
                },
                ast::Statement::CreateTable(create) if create.query.is_some() => {
                    (AuditAction::Write, create.name.clone())
                }
                ast::Statement::CreateTable(create) => (AuditAction::Ddl, create.name.clone()),
                ast::Statement::CreateView(create) => (AuditAction::Ddl, create.name.clone()),
                ast::Statement::Call(_) => (AuditAction::Ddl, none),
                ast::Statement::CreateSchema { .. } | ast::Statement::Drop { .. } => {
                    (AuditAction::Ddl, none)
                }
                ast::Statement::Set(ast::Set::SetSessionAuthorization(_)) => {
                    (AuditAction::SwitchUser, none)
                }
                _ => return None,
            },
        })
    }

    /// Records each warehouse table `plan` reads, with the snapshot read.
    pub(super) async fn audit_reads(&self, plan: &LogicalPlan) {
        let mut reads: Vec<(String, Option<i64>)> = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(provider) = source_as_provider(&scan.source)
                && let Some(table) = versioned(provider.as_ref())
            {
                let read = (table.name().to_string(), table.snapshot_id());
                if !reads.contains(&read) {
                    reads.push(read);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        for (table, snapshot) in reads {
            let detail = match snapshot {
                Some(id) => format!("snapshot {id}"),
                None => "no snapshot yet".to_string(),
            };
            self.audit(AuditAction::Read, table, detail, true).await;
        }
    }
}
