//! The audit log: who did what to which object, and whether they were let.
//!
//! Sign-ins and failed ones, DDL, grants and revokes, row filters and masks,
//! publications, access requests and their decisions,
//! user switches, reads of tables (with the snapshot read), writes (with the
//! snapshot after), and denials. Read as `system.audit_log`: admins read every
//! row, other users their own.
//!
//! It lives in `audit.db` beside the catalog database, not in it: every
//! write to `catalog.db` moves the catalog's version, which would make each
//! audited read invalidate every session's plans and listings. Rows are only
//! ever inserted; triggers refuse updates and deletes. Each event is written
//! (in SQLite's WAL, synchronous = NORMAL) before the statement's result is
//! returned, so an acknowledged statement's event survives a killed process.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use crate::catalog::sqlite_pool;
use crate::error::{Error, Result};

/// The file of the audit log, in the warehouse folder.
pub const AUDIT_DB: &str = "audit.db";

/// Longest statement text kept per event (longer ones are cut, marked `…`).
const MAX_DETAIL_CHARS: usize = 4096;
/// Longest user, client or object name kept: a failed sign-in records
/// whatever name a client sent.
const MAX_NAME_CHARS: usize = 256;

/// `text` cut to `max` characters, marked `…` when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    SignIn,
    SignInFailed,
    /// Schemas, tables, feature groups, views made, changed or dropped.
    Ddl,
    /// Users, roles, grants and revokes.
    Grant,
    /// Row filters and masks set or dropped.
    Policy,
    /// Feature groups published, access requested, requests decided.
    Sharing,
    /// `SET SESSION AUTHORIZATION`.
    SwitchUser,
    Read,
    Write,
    /// A statement refused for want of a privilege.
    Denied,
    /// Rows erased from every snapshot (ERASE).
    Erase,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign_in",
            AuditAction::SignInFailed => "sign_in_failed",
            AuditAction::Ddl => "ddl",
            AuditAction::Grant => "grant",
            AuditAction::Policy => "policy",
            AuditAction::Sharing => "sharing",
            AuditAction::SwitchUser => "switch_user",
            AuditAction::Read => "read",
            AuditAction::Write => "write",
            AuditAction::Erase => "erase",
            AuditAction::Denied => "denied",
        }
    }
}

/// One event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who (as signed in, or as switched to).
    pub user: String,
    /// Where from: a client address, or `local`.
    pub client: String,
    pub action: AuditAction,
    /// `schema.table`, a user or role name; empty when none.
    pub object: String,
    /// The statement (passwords never appear: statements print them as
    /// `***`), with the snapshot read or written.
    pub detail: String,
    /// False when refused.
    pub allowed: bool,
}

/// The audit log of one warehouse.
#[derive(Debug, Clone)]
pub struct AuditLog {
    pool: SqlitePool,
}

fn db_error(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::unavailable(what)(e)
}

impl AuditLog {
    /// Opens (creating if needed) the audit log of the warehouse in `root`.
    pub async fn open(root: &Path) -> Result<Self> {
        let path = root.join(AUDIT_DB);
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))
            .map_err(db_error("cannot name the audit log"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        let pool = sqlite_pool(options, "the audit log").await?;
        for ddl in [
            "CREATE TABLE IF NOT EXISTS audit_log (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_time INTEGER NOT NULL, user_name TEXT NOT NULL, client TEXT NOT NULL,
                action TEXT NOT NULL, object TEXT NOT NULL, detail TEXT NOT NULL,
                allowed INTEGER NOT NULL)",
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
             BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
             BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        ] {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(db_error("cannot make the audit log"))?;
        }
        Ok(AuditLog { pool })
    }

    /// Appends `event`; returns once it is written.
    pub async fn record(&self, event: AuditEvent) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO audit_log (event_time, user_name, client, action, object, detail, allowed)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(now)
        .bind(cut(&event.user, MAX_NAME_CHARS))
        .bind(cut(&event.client, MAX_NAME_CHARS))
        .bind(event.action.as_str())
        .bind(cut(&event.object, MAX_NAME_CHARS))
        .bind(cut(&event.detail, MAX_DETAIL_CHARS))
        .bind(event.allowed)
        .execute(&self.pool)
        .await
        .map_err(db_error("cannot write the audit log"))?;
        Ok(())
    }

    /// The log as `system.audit_log` shows it: every event, or only
    /// `user`'s, oldest first.
    pub async fn read(&self, user: Option<&str>) -> Result<RecordBatch> {
        let rows = match user {
            None => {
                sqlx::query(
                    "SELECT event_time, user_name, client, action, object, detail, allowed
                     FROM audit_log ORDER BY seq",
                )
                .fetch_all(&self.pool)
                .await
            }
            Some(user) => {
                sqlx::query(
                    "SELECT event_time, user_name, client, action, object, detail, allowed
                     FROM audit_log WHERE user_name = ? ORDER BY seq",
                )
                .bind(user)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db_error("cannot read the audit log"))?;
        let mut times = Vec::with_capacity(rows.len());
        let mut texts: [Vec<String>; 5] = Default::default();
        let mut allowed = Vec::with_capacity(rows.len());
        for row in &rows {
            times.push(row.try_get::<i64, _>(0).unwrap_or_default());
            for (i, column) in texts.iter_mut().enumerate() {
                column.push(row.try_get::<String, _>(i + 1).unwrap_or_default());
            }
            allowed.push(row.try_get::<bool, _>(6).unwrap_or_default());
        }
        let [users, clients, actions, objects, details] = texts;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("user_name", DataType::Utf8, false),
            Field::new("client", DataType::Utf8, false),
            Field::new("action", DataType::Utf8, false),
            Field::new("object", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("allowed", DataType::Boolean, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            Arc::new(StringArray::from(users)),
            Arc::new(StringArray::from(clients)),
            Arc::new(StringArray::from(actions)),
            Arc::new(StringArray::from(objects)),
            Arc::new(StringArray::from(details)),
            Arc::new(BooleanArray::from(allowed)),
        ];
        RecordBatch::try_new(schema, columns).map_err(Error::arrow("the audit log as a table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_name_or_statement_is_cut_and_nothing_can_be_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path()).await.expect("open");
        log.record(AuditEvent {
            user: "u".repeat(100_000),
            client: "local".into(),
            action: AuditAction::SignInFailed,
            object: String::new(),
            detail: "d".repeat(100_000),
            allowed: false,
        })
        .await
        .expect("record");
        let batch = log.read(None).await.expect("read");
        let text = |i: usize| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("text")
                .value(0)
                .chars()
                .count()
        };
        assert_eq!(text(1), MAX_NAME_CHARS + 1);
        assert_eq!(text(5), MAX_DETAIL_CHARS + 1);
        let refused = sqlx::query("DELETE FROM audit_log")
            .execute(&log.pool)
            .await
            .expect_err("append-only");
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
}
