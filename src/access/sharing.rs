//! Publishing feature groups and the requests for access to them, stored in
//! the catalog database (`pitlake_published`, `pitlake_access_requests`).
//!
//! A published group's metadata is visible to every user; its rows still need
//! `SELECT`, which an approved request grants. A request is pending until
//! someone who may manage the group approves or rejects it; approving grants
//! `SELECT` in the same transaction that marks the request approved, so a
//! crash leaves either both or neither. A subscription is an approved request
//! whose grant still stands (a `REVOKE` ends it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sqlx::{Row, SqlitePool};

use super::grants::{Access, Grantee, Privilege, Securable, insert_grant};
use crate::error::{Error, Result};
use crate::shared::TableName;

/// Longest reason kept with a request or a rejection.
pub const MAX_REASON_CHARS: usize = 2000;

/// One published feature group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Requests are approved as they arrive, by the publisher.
    pub auto_approve: bool,
    pub published_by: String,
}

/// Every published group (`schema.table` → its publication), as read at one
/// time.
pub type Published = HashMap<String, Publication>;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Approved,
    Rejected,
    /// Its group was unpublished, or its grantee dropped, while it was
    /// pending.
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "pending" => RequestStatus::Pending,
            "approved" => RequestStatus::Approved,
            "rejected" => RequestStatus::Rejected,
            "cancelled" => RequestStatus::Cancelled,
            other => {
                return Err(Error::Corrupt(format!(
                    "pitlake_access_requests holds a request of unknown status {other:?}"
                )));
            }
        })
    }
}

/// One request for access.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub id: i64,
    /// `schema.table` of the feature group.
    pub group: String,
    pub requested_by: String,
    /// Who gets `SELECT` when it is approved.
    pub grantee: Grantee,
    pub reason: String,
    pub status: RequestStatus,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_reason: Option<String>,
}

impl AccessRequest {
    /// Whether `access` may see this request: who made it, who it is for,
    /// and who may manage its group.
    pub fn visible_to(&self, access: &Access) -> bool {
        let for_me = match &self.grantee {
            Grantee::User(u) => u == access.user(),
            Grantee::Role(r) => access.is_member(r),
        };
        for_me
            || self.requested_by == access.user()
            || self
                .table()
                .is_some_and(|t| access.may_manage(&Securable::Table(t)))
    }

    /// The group as a table name (None if the stored text is not one).
    pub fn table(&self) -> Option<TableName> {
        let (schema, table) = self.group.split_once('.')?;
        TableName::new(schema, table).ok()
    }
}

/// Publications and access requests of one warehouse.
#[derive(Debug, Clone)]
pub struct Sharing {
    pool: SqlitePool,
}

fn db_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::unavailable(what)(e)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

const REQUEST_COLUMNS: &str = "id, object, requested_by, grantee_kind, grantee, reason, status, \
     requested_at, decided_by, decided_at, decision_reason";

impl Sharing {
    /// The publications and requests of the catalog database behind `pool`,
    /// making their tables on first use.
    pub async fn open(pool: SqlitePool) -> Result<Self> {
        for ddl in [
            "CREATE TABLE IF NOT EXISTS pitlake_published (
                object TEXT PRIMARY KEY, auto_approve INTEGER NOT NULL,
                published_by TEXT NOT NULL, published_at INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS pitlake_access_requests (
                id INTEGER PRIMARY KEY AUTOINCREMENT, object TEXT NOT NULL,
                requested_by TEXT NOT NULL, grantee_kind TEXT NOT NULL, grantee TEXT NOT NULL,
                reason TEXT NOT NULL, status TEXT NOT NULL, requested_at INTEGER NOT NULL,
                decided_by TEXT, decided_at INTEGER, decision_reason TEXT)",
        ] {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(db_error("cannot make the tables of access requests"))?;
        }
        Ok(Sharing { pool })
    }

    /// Every published group now.
    pub async fn published(&self) -> Result<Published> {
        let rows = sqlx::query("SELECT object, auto_approve, published_by FROM pitlake_published")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("cannot read the published feature groups"))?;
        rows.iter()
            .map(|row| {
                let object: String = row.try_get(0).map_err(db_error("a published group"))?;
                let auto: i64 = row.try_get(1).map_err(db_error("a published group"))?;
                let by: String = row.try_get(2).map_err(db_error("a published group"))?;
                Ok((
                    object,
                    Publication {
                        auto_approve: auto != 0,
                        published_by: by,
                    },
                ))
            })
            .collect()
    }

    /// Publishes `group` (again: with the new `auto_approve`).
    pub async fn publish(&self, group: &TableName, auto_approve: bool, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pitlake_published (object, auto_approve, published_by, published_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (object) DO UPDATE SET auto_approve = excluded.auto_approve,
             published_by = excluded.published_by, published_at = excluded.published_at",
        )
        .bind(group.to_string())
        .bind(i64::from(auto_approve))
        .bind(by)
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(db_error("cannot publish the feature group"))?;
        Ok(())
    }

    /// Unpublishes `group` and cancels its pending requests; an error when it
    /// was not published. Grants made by approvals stay (revoke them to end
    /// the subscriptions).
    pub async fn unpublish(&self, group: &TableName) -> Result<()> {
        let removed = sqlx::query("DELETE FROM pitlake_published WHERE object = ?")
            .bind(group.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error("cannot unpublish the feature group"))?
            .rows_affected();
        if removed == 0 {
            return Err(Error::Invalid(format!(
                "feature group {group} is not published"
            )));
        }
        self.cancel(
            "object = ?",
            &[&group.to_string()],
            "the feature group was unpublished",
        )
        .await
    }

    /// Records a pending request; its number. A second pending request for
    /// the same group and grantee is refused, naming the first. One
    /// statement, so concurrent requesters wait for the write lock instead
    /// of failing to upgrade a read.
    pub async fn request(
        &self,
        group: &TableName,
        grantee: &Grantee,
        by: &str,
        reason: &str,
    ) -> Result<i64> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO pitlake_access_requests
             (object, requested_by, grantee_kind, grantee, reason, status, requested_at)
             SELECT ?1, ?2, ?3, ?4, ?5, 'pending', ?6 WHERE NOT EXISTS (
               SELECT 1 FROM pitlake_access_requests WHERE object = ?1 AND grantee_kind = ?3
               AND grantee = ?4 AND status = 'pending')
             RETURNING id",
        )
        .bind(group.to_string())
        .bind(by)
        .bind(grantee.kind())
        .bind(grantee.name())
        .bind(reason)
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("cannot record the access request"))?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM pitlake_access_requests WHERE object = ? AND grantee_kind = ?
             AND grantee = ? AND status = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(group.to_string())
        .bind(grantee.kind())
        .bind(grantee.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("cannot read the access requests"))?;
        Err(Error::Invalid(match pending {
            Some(id) => format!(
                "access request {id} for {grantee} on feature group {group} is already pending"
            ),
            None => format!("a request for {grantee} on feature group {group} was just decided"),
        }))
    }

    /// Request `id`, if there is one.
    pub async fn get(&self, id: i64) -> Result<Option<AccessRequest>> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM pitlake_access_requests WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("cannot read the access request"))?;
        row.as_ref().map(request_of).transpose()
    }

    /// Every request, oldest first.
    pub async fn list(&self) -> Result<Vec<AccessRequest>> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM pitlake_access_requests ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot read the access requests"))?;
        rows.iter().map(request_of).collect()
    }

    /// Approves pending request `id` and grants `SELECT` on its group to its
    /// grantee, both or neither; an error naming the request's status when
    /// it is no longer pending (another approver was first).
    pub async fn approve(&self, request: &AccessRequest, by: &str) -> Result<()> {
        let Some(table) = request.table() else {
            return Err(Error::Corrupt(format!(
                "access request {} names no table: {:?}",
                request.id, request.group
            )));
        };
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error("cannot approve the access request"))?;
        self.decide(&mut tx, request.id, RequestStatus::Approved, by, None)
            .await?;
        insert_grant(
            &mut *tx,
            Privilege::Select,
            &Securable::Table(table),
            &request.grantee,
            by,
        )
        .await?;
        tx.commit()
            .await
            .map_err(db_error("cannot approve the access request"))
    }

    /// Rejects pending request `id`.
    pub async fn reject(&self, id: i64, by: &str, reason: Option<&str>) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error("cannot reject the access request"))?;
        self.decide(&mut tx, id, RequestStatus::Rejected, by, reason)
            .await?;
        tx.commit()
            .await
            .map_err(db_error("cannot reject the access request"))
    }

    async fn decide(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        id: i64,
        status: RequestStatus,
        by: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE pitlake_access_requests SET status = ?, decided_by = ?, decided_at = ?,
             decision_reason = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(by)
        .bind(now_micros())
        .bind(reason)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db_error("cannot decide the access request"))?
        .rows_affected();
        if changed == 1 {
            return Ok(());
        }
        let now: Option<String> =
            sqlx::query_scalar("SELECT status FROM pitlake_access_requests WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error("cannot read the access request"))?;
        Err(match now {
            Some(status) => Error::Invalid(format!("access request {id} is already {status}")),
            None => Error::RequestNotFound { id },
        })
    }

    /// Forgets the publication and the requests of a dropped group (the
    /// audit log keeps their history), so a group made later under the same
    /// name starts unpublished and without them. Also run when a group is
    /// made, against what a drop racing a PUBLISH or APPROVE left.
    pub async fn forget(&self, group: &TableName) -> Result<()> {
        let object = group.to_string();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error("cannot forget a dropped feature group"))?;
        for sql in [
            "DELETE FROM pitlake_published WHERE object = ?",
            "DELETE FROM pitlake_access_requests WHERE object = ?",
        ] {
            sqlx::query(sql)
                .bind(&object)
                .execute(&mut *tx)
                .await
                .map_err(db_error("cannot forget a dropped feature group"))?;
        }
        tx.commit()
            .await
            .map_err(db_error("cannot forget a dropped feature group"))
    }

    /// Cancels the pending requests for a dropped user or role: approving one
    /// later would grant to whoever takes the name next.
    pub async fn forget_grantee(&self, grantee: &Grantee) -> Result<()> {
        self.cancel(
            "grantee_kind = ? AND grantee = ?",
            &[grantee.kind(), grantee.name()],
            &format!("{grantee} was dropped"),
        )
        .await
    }

    async fn cancel(&self, filter: &str, values: &[&str], why: &str) -> Result<()> {
        let sql = format!(
            "UPDATE pitlake_access_requests SET status = 'cancelled', decided_at = ?,
             decision_reason = ? WHERE status = 'pending' AND {filter}"
        );
        let mut query = sqlx::query(&sql).bind(now_micros()).bind(why);
        for value in values {
            query = query.bind(*value);
        }
        query
            .execute(&self.pool)
            .await
            .map_err(db_error("cannot cancel access requests"))?;
        Ok(())
    }

    /// The requests `access` may see, as `SHOW ACCESS REQUESTS` and
    /// `system.access_requests` show them.
    pub async fn requests_table(&self, access: &Access) -> Result<RecordBatch> {
        let requests: Vec<AccessRequest> = self
            .list()
            .await?
            .into_iter()
            .filter(|r| r.visible_to(access))
            .collect();
        requests_batch(&requests)
    }

    /// The subscriptions `access` may see: approved requests whose grant
    /// still stands.
    pub async fn subscriptions_table(&self, access: &Access) -> Result<RecordBatch> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM pitlake_access_requests r
             WHERE status = 'approved' AND id = (SELECT max(id) FROM pitlake_access_requests l
               WHERE l.object = r.object AND l.grantee_kind = r.grantee_kind
               AND l.grantee = r.grantee AND l.status = 'approved')
             AND EXISTS (SELECT 1 FROM pitlake_grants g
               WHERE g.object_kind = 'table' AND g.object = r.object
               AND g.grantee_kind = r.grantee_kind AND g.grantee = r.grantee
               AND g.privilege IN ('SELECT', 'ALL'))
             ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot read the subscriptions"))?;
        let requests: Vec<AccessRequest> = rows
            .iter()
            .map(request_of)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|r| r.visible_to(access))
            .collect();
        subscriptions_batch(&requests)
    }
}

fn request_of(row: &sqlx::sqlite::SqliteRow) -> Result<AccessRequest> {
    let bad = |e: sqlx::Error| Error::Corrupt(format!("a row of pitlake_access_requests: {e}"));
    let kind: String = row.try_get(3).map_err(bad)?;
    let name: String = row.try_get(4).map_err(bad)?;
    let grantee = match kind.as_str() {
        "user" => Grantee::User(name),
        "role" => Grantee::Role(name),
        other => {
            return Err(Error::Corrupt(format!(
                "pitlake_access_requests holds a grantee of unknown kind {other:?}"
            )));
        }
    };
    let status: String = row.try_get(6).map_err(bad)?;
    Ok(AccessRequest {
        id: row.try_get(0).map_err(bad)?,
        group: row.try_get(1).map_err(bad)?,
        requested_by: row.try_get(2).map_err(bad)?,
        grantee,
        reason: row.try_get(5).map_err(bad)?,
        status: RequestStatus::parse(&status)?,
        requested_at: row.try_get(7).map_err(bad)?,
        decided_by: row.try_get(8).map_err(bad)?,
        decided_at: row.try_get(9).map_err(bad)?,
        decision_reason: row.try_get(10).map_err(bad)?,
    })
}

fn time_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values.collect::<Vec<_>>()).with_timezone("UTC"))
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from(values.collect::<Vec<_>>()))
}

fn requests_batch(requests: &[AccessRequest]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Int64, false),
        Field::new("feature_group", DataType::Utf8, false),
        Field::new("requested_by", DataType::Utf8, false),
        Field::new("grantee_kind", DataType::Utf8, false),
        Field::new("grantee", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        time_field("requested_at", false),
        Field::new("decided_by", DataType::Utf8, true),
        time_field("decided_at", true),
        Field::new("decision_reason", DataType::Utf8, true),
    ]));
    let r = requests;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(r.iter().map(|r| r.id))),
        strings(r.iter().map(|r| Some(r.group.as_str()))),
        strings(r.iter().map(|r| Some(r.requested_by.as_str()))),
        strings(r.iter().map(|r| Some(r.grantee.kind()))),
        strings(r.iter().map(|r| Some(r.grantee.name()))),
        strings(r.iter().map(|r| Some(r.reason.as_str()))),
        strings(r.iter().map(|r| Some(r.status.as_str()))),
        times(r.iter().map(|r| Some(r.requested_at))),
        strings(r.iter().map(|r| r.decided_by.as_deref())),
        times(r.iter().map(|r| r.decided_at)),
        strings(r.iter().map(|r| r.decision_reason.as_deref())),
    ];
    RecordBatch::try_new(schema, columns).map_err(Error::arrow("the access requests"))
}

fn subscriptions_batch(requests: &[AccessRequest]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("feature_group", DataType::Utf8, false),
        Field::new("subscriber_kind", DataType::Utf8, false),
        Field::new("subscriber", DataType::Utf8, false),
        Field::new("request_id", DataType::Int64, false),
        Field::new("requested_by", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("approved_by", DataType::Utf8, true),
        time_field("approved_at", true),
    ]));
    let r = requests;
    let columns: Vec<ArrayRef> = vec![
        strings(r.iter().map(|r| Some(r.group.as_str()))),
        strings(r.iter().map(|r| Some(r.grantee.kind()))),
        strings(r.iter().map(|r| Some(r.grantee.name()))),
        Arc::new(Int64Array::from_iter_values(r.iter().map(|r| r.id))),
        strings(r.iter().map(|r| Some(r.requested_by.as_str()))),
        strings(r.iter().map(|r| Some(r.reason.as_str()))),
        strings(r.iter().map(|r| r.decided_by.as_deref())),
        times(r.iter().map(|r| r.decided_at)),
    ];
    RecordBatch::try_new(schema, columns).map_err(Error::arrow("the subscriptions"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Grants, Principal};
    use crate::catalog::Warehouse;

    /// Two approvers at once: one approves, the other is told it already
    /// was; the grant is made once, and a second pending request for the
    /// same grantee is refused. Dropping the grantee cancels what is pending
    /// for them; dropping the group forgets its requests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_is_decided_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let warehouse = Warehouse::open(dir.path()).await.expect("warehouse");
        let pool = warehouse.db().clone();
        let sharing = Sharing::open(pool.clone()).await.expect("sharing");
        let grants = Grants::open(pool).await.expect("grants");
        let group = TableName::new("s", "fg").expect("name");
        let bob = Grantee::User("bob".into());
        sharing
            .publish(&group, false, "pat")
            .await
            .expect("publish");
        let id = sharing
            .request(&group, &bob, "bob", "a model")
            .await
            .expect("request");
        let again = sharing.request(&group, &bob, "bob", "twice").await;
        assert!(
            again
                .expect_err("second pending request")
                .to_string()
                .contains(&format!("access request {id} for user bob")),
        );
        let request = sharing.get(id).await.expect("get").expect("request");
        let (first, second) = tokio::join!(
            sharing.approve(&request, "pat"),
            sharing.approve(&request, "admin")
        );
        let outcomes = [first, second];
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        let refused = outcomes
            .into_iter()
            .find_map(Result::err)
            .expect("one refused");
        assert!(
            refused.to_string().contains("already approved"),
            "{refused}"
        );
        let granted = grants
            .list(Some(&Securable::Table(group.clone())), Some(&bob))
            .await
            .expect("grants");
        assert_eq!(granted.len(), 1, "{granted:?}");
        let access = grants
            .access(&Principal {
                user: "bob".into(),
                roles: Default::default(),
            })
            .await
            .expect("access");
        assert!(access.may(Privilege::Select, &group));

        let carol = Grantee::User("carol".into());
        let pending = sharing
            .request(&group, &carol, "carol", "a report")
            .await
            .expect("request");
        sharing.forget_grantee(&carol).await.expect("carol dropped");
        let cancelled = sharing.get(pending).await.expect("get").expect("request");
        assert_eq!(cancelled.status, RequestStatus::Cancelled);
        sharing.forget(&group).await.expect("forget");
        assert!(sharing.get(id).await.expect("get").is_none());
        assert!(sharing.published().await.expect("published").is_empty());
    }
}
