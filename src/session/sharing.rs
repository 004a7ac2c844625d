//! Publishing feature groups, asking for access and deciding (see
//! `access::sharing`): who may run each statement, and what it returns.
//!
//! - `PUBLISH`/`UNPUBLISH FEATURE GROUP`: who may manage the group.
//! - `REQUEST ACCESS`: anyone who can see the group (it is published, or they
//!   hold a grant on it) and may not read it yet; for a role only a member.
//!   Returns the request's number and status (`approved` at once when the
//!   group was published with `auto_approve`).
//! - `APPROVE`/`REJECT ACCESS REQUEST n`: who may manage the request's group.
//! - `SHOW ACCESS REQUESTS`: the requests the principal made, those for them
//!   or their roles, and those on groups they manage.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::SendableRecordBatchStream;
use sqlparser::ast::{Ident, ObjectName};

use super::Session;
use super::results::{done, one_batch};
use crate::access::{
    AccessRequest, Grantee, MAX_REASON_CHARS, Principal, Privilege, RequestStatus, Securable,
};
use crate::catalog::types::normalize;
use crate::catalog::{FeatureGroup, TableName};
use crate::error::{Error, Result};
use crate::sql::SharingStatement;

impl Session {
    pub(super) async fn execute_sharing(
        &self,
        statement: SharingStatement,
    ) -> Result<SendableRecordBatchStream> {
        match statement {
            SharingStatement::Publish {
                group,
                auto_approve,
            } => {
                let name = self.feature_group(&group).await?;
                self.require_manage_to(&name, || {
                    format!("publish feature group {name} (its owner or an admin may)")
                })
                .await?;
                let by = self.principal().await?.user;
                self.store
                    .sharing()
                    .publish(&name, auto_approve, &by)
                    .await?;
                // Checked again after the write: a DROP and a CREATE of the
                // name by someone else in between must not find the new group
                // published by who may not manage it.
                let still = match self.feature_group(&group).await {
                    Ok(_) => self
                        .access()
                        .await?
                        .may_manage(&Securable::Table(name.clone())),
                    Err(_) => false,
                };
                if !still {
                    let _ = self.store.sharing().unpublish(&name).await;
                    return Err(Error::Invalid(format!(
                        "feature group {name} was dropped while it was being published"
                    )));
                }
                self.refresh_policies().await?;
                done()
            }
            SharingStatement::Unpublish { group } => {
                let name = self.feature_group(&group).await?;
                self.require_manage_to(&name, || {
                    format!("unpublish feature group {name} (its owner or an admin may)")
                })
                .await?;
                self.store.sharing().unpublish(&name).await?;
                self.refresh_policies().await?;
                done()
            }
            SharingStatement::Request {
                group,
                role,
                reason,
            } => self.request_access(&group, role.as_ref(), &reason).await,
            SharingStatement::ShowRequests => {
                let access = self.access().await?;
                one_batch(self.store.sharing().requests_table(&access).await?)
            }
            SharingStatement::Approve { id } => {
                let request = self.decidable(id).await?;
                let by = self.principal().await?.user;
                self.store.sharing().approve(&request, &by).await?;
                self.store.principals().touch();
                done()
            }
            SharingStatement::Reject { id, reason } => {
                let reason = reason
                    .map(|r| checked_reason(&r, "why the request is rejected"))
                    .transpose()?;
                let request = self.decidable(id).await?;
                let by = self.principal().await?.user;
                self.store
                    .sharing()
                    .reject(request.id, &by, reason.as_deref())
                    .await?;
                done()
            }
        }
    }

    /// The feature group `name` names, which must exist and be one (not a
    /// plain table) and which the principal must be able to see.
    async fn feature_group(&self, name: &ObjectName) -> Result<TableName> {
        let name = self.resolve_name(name)?;
        let not_found = || Error::TableNotFound {
            table: name.to_string(),
        };
        self.require_seen(&name).await?;
        let Some(table) = self
            .warehouse()
            .try_load_table(&name.schema, &name.table)
            .await?
        else {
            return Err(not_found());
        };
        if FeatureGroup::from_properties(table.metadata().properties())?.is_none() {
            return Err(Error::Invalid(format!(
                "{name} is a table, not a feature group: only feature groups are published \
                 and requested (GRANT gives access to a table)"
            )));
        }
        Ok(name)
    }

    async fn request_access(
        &self,
        group: &ObjectName,
        role: Option<&Ident>,
        reason: &str,
    ) -> Result<SendableRecordBatchStream> {
        let reason = checked_reason(reason, "why access is needed")?;
        let name = self.feature_group(group).await?;
        let principal = self.principal().await?;
        let grantee = match role {
            Some(role) => {
                let role = normalize(role);
                if !principal.is_member(&role) {
                    return Err(Error::Denied {
                        user: principal.user,
                        action: format!("request access for role {role} (only its members may)"),
                    });
                }
                if self.role_may_read(&role, &name).await? {
                    return Err(Error::Invalid(format!(
                        "role {role} may already read feature group {name}"
                    )));
                }
                Grantee::Role(role)
            }
            None => {
                if self.access().await?.may(Privilege::Select, &name) {
                    return Err(Error::Invalid(format!(
                        "{} may already read feature group {name}",
                        principal.user
                    )));
                }
                Grantee::User(principal.user.clone())
            }
        };
        let published = self.catalog.published();
        let Some(publication) = published.get(&name.to_string()) else {
            return Err(Error::Invalid(format!(
                "feature group {name} is not published: its owner may GRANT SELECT on it, \
                 or PUBLISH it so that access can be requested"
            )));
        };
        let sharing = self.store.sharing();
        let id = sharing
            .request(&name, &grantee, &principal.user, &reason)
            .await?;
        let mut status = RequestStatus::Pending;
        if publication.auto_approve
            && self.still_manages(&publication.published_by, &name).await?
            && let Some(request) = sharing.get(id).await?
        {
            sharing.approve(&request, &publication.published_by).await?;
            self.store.principals().touch();
            status = RequestStatus::Approved;
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![id])),
                Arc::new(StringArray::from(vec![status.as_str()])),
            ],
        )
        .map_err(Error::arrow("the access request"))?;
        one_batch(batch)
    }

    /// Whether `user` (who published with auto_approve) still exists and may
    /// manage `group`: a publisher who lost the group approves nothing.
    async fn still_manages(&self, user: &str, group: &TableName) -> Result<bool> {
        let Ok(publisher) = self.store.principals().principal(user).await else {
            // The embedded admin (`pitlake sql`) is no stored user.
            return Ok(user == Principal::local_admin().user);
        };
        let access = self.store.grants().access(&publisher).await?;
        Ok(access.may_manage(&Securable::Table(group.clone())))
    }

    /// Whether a grant to `role` (on the group or its schema) lets it read.
    async fn role_may_read(&self, role: &str, group: &TableName) -> Result<bool> {
        let grantee = Grantee::Role(role.to_string());
        let grants = self.store.grants();
        for object in [
            Securable::Table(group.clone()),
            Securable::Schema(group.schema.clone()),
        ] {
            let rows = grants.list(Some(&object), Some(&grantee)).await?;
            if rows
                .iter()
                .any(|g| g.privilege == "SELECT" || g.privilege == "ALL")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Request `id`, which the principal may decide: one they cannot see is
    /// not there for them; one they can see but not decide is denied.
    async fn decidable(&self, id: i64) -> Result<AccessRequest> {
        let access = self.access().await?;
        let missing = || Error::RequestNotFound { id };
        let request = self
            .store
            .sharing()
            .get(id)
            .await?
            .filter(|r| r.visible_to(&access))
            .ok_or_else(missing)?;
        let table = request.table().ok_or_else(missing)?;
        self.require(access.may_manage(&Securable::Table(table.clone())), || {
            format!(
                "decide access request {id} (the owner of feature group {table} or an admin may)"
            )
        })
        .await?;
        if request.status != RequestStatus::Pending {
            return Err(Error::Invalid(format!(
                "access request {id} is already {}",
                request.status.as_str()
            )));
        }
        // A user or role dropped since: the grant would go to whoever takes
        // the name next.
        let principals = self.store.principals();
        match &request.grantee {
            Grantee::User(user) => principals.expect_user(user).await?,
            Grantee::Role(role) => principals.expect_role(role).await?,
        }
        if self
            .warehouse()
            .try_load_table(&table.schema, &table.table)
            .await?
            .is_none()
        {
            return Err(Error::TableNotFound {
                table: table.to_string(),
            });
        }
        Ok(request)
    }
}

/// A request's or rejection's reason (`what` it must say): not blank, not
/// longer than [`MAX_REASON_CHARS`], without control or bidirectional
/// formatting characters (which would show an approver other text than is
/// stored).
fn checked_reason(reason: &str, what: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Invalid(format!(
            "a reason must say {what} (REASON '...')"
        )));
    }
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if let Some(c) = reason.chars().find(|c| hidden(*c)) {
        return Err(Error::Invalid(format!(
            "a reason may not hold the control or text-direction character U+{:04X}",
            u32::from(c)
        )));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::Invalid(format!(
            "a reason is at most {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(reason.to_string())
}
