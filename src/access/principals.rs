//! Users and roles, stored in the warehouse's catalog database beside the
//! Iceberg catalog's tables (`pitlake_users`, `pitlake_roles`,
//! `pitlake_role_members`), so every process on the warehouse sees the same
//! ones. Passwords are kept only as Argon2id hashes.
//!
//! The role `admin` always exists; its members may manage principals (and,
//! with grants, everything else).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Row, SqlitePool};

use super::password;
use crate::error::{Error, Result};
use crate::shared::{NameKind, check_name};

/// The role whose members may do everything.
pub const ADMIN_ROLE: &str = "admin";

/// Who runs a statement: a user and the roles they are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub roles: BTreeSet<String>,
}

impl Principal {
    /// The embedded `pitlake sql` (and a server without sign-in): the local
    /// files are the boundary, so it acts as the warehouse's admin.
    pub fn local_admin() -> Self {
        Principal {
            user: "pitlake".into(),
            roles: BTreeSet::from([ADMIN_ROLE.to_string()]),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(ADMIN_ROLE)
    }

    pub fn is_member(&self, role: &str) -> bool {
        self.roles.contains(role)
    }
}

/// The users and roles of one warehouse.
#[derive(Debug, Clone)]
pub struct Principals {
    pool: SqlitePool,
    /// Bumped by every change this process makes, so sessions know when to
    /// read their roles again.
    generation: Arc<AtomicU64>,
}

fn db_error(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let what = what.into();
    move |e| Error::unavailable(what)(e)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Checks a user or role name: the rule of table names.
fn check_principal(kind: &'static str, name: &str) -> Result<()> {
    check_name(NameKind::Table, name).map_err(|e| match e {
        Error::InvalidName { name, reason, .. } => Error::InvalidName { kind, name, reason },
        other => other,
    })
}

impl Principals {
    /// The principals of the catalog database behind `pool`, making their
    /// tables on first use.
    pub async fn open(pool: SqlitePool) -> Result<Self> {
        for ddl in [
            "CREATE TABLE IF NOT EXISTS pitlake_users (
                name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_ms INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS pitlake_roles (
                name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS pitlake_role_members (
                role TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY (role, member))",
        ] {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(db_error("cannot make the principal tables"))?;
        }
        sqlx::query("INSERT OR IGNORE INTO pitlake_roles (name, created_ms) VALUES (?, ?)")
            .bind(ADMIN_ROLE)
            .bind(now_ms())
            .execute(&pool)
            .await
            .map_err(db_error("cannot make the admin role"))?;
        Ok(Principals {
            pool,
            generation: Arc::default(),
        })
    }

    /// Changes made by this process so far (see [`Principals`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Tells sessions to read their roles and grants again (a grant changed).
    pub fn touch(&self) {
        self.changed();
    }

    pub async fn user_count(&self) -> Result<u64> {
        let row = sqlx::query("SELECT count(*) FROM pitlake_users")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("cannot count users"))?;
        let count: i64 = row.try_get(0).map_err(db_error("cannot count users"))?;
        Ok(count.max(0) as u64)
    }

    /// `CREATE USER name PASSWORD '…' [IN ROLE r, …]`.
    pub async fn create_user(&self, name: &str, password: &str, roles: &[String]) -> Result<()> {
        check_principal("user", name)?;
        for role in roles {
            self.expect_role(role).await?;
        }
        let hash = hash_off_thread(password).await?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error(format!("cannot create user {name}")))?;
        let inserted = sqlx::query(
            "INSERT INTO pitlake_users (name, password_hash, created_ms) VALUES (?, ?, ?)",
        )
        .bind(name)
        .bind(&hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::AlreadyExists {
                    kind: "user",
                    name: name.to_string(),
                });
            }
            other => {
                other.map_err(db_error(format!("cannot create user {name}")))?;
            }
        }
        for role in roles {
            sqlx::query("INSERT OR IGNORE INTO pitlake_role_members (role, member) VALUES (?, ?)")
                .bind(role)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error(format!("cannot put {name} in role {role}")))?;
        }
        tx.commit()
            .await
            .map_err(db_error(format!("cannot create user {name}")))?;
        self.changed();
        Ok(())
    }

    /// Creates `name` or gives it a new password (`--user` at server start).
    pub async fn seed_user(&self, name: &str, password: &str, roles: &[String]) -> Result<()> {
        match self.create_user(name, password, roles).await {
            Err(Error::AlreadyExists { .. }) => {
                self.set_password(name, password).await?;
                for role in roles {
                    self.grant_role(role, name).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// `ALTER USER name PASSWORD '…'`.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = hash_off_thread(password).await?;
        let done = sqlx::query("UPDATE pitlake_users SET password_hash = ? WHERE name = ?")
            .bind(&hash)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error(format!("cannot change the password of {name}")))?;
        if done.rows_affected() == 0 {
            return Err(not_found("user", name));
        }
        self.changed();
        Ok(())
    }

    /// `DROP USER name`; false when there is none. The last member of
    /// `admin` cannot be dropped (nor revoked), or nobody could manage
    /// the principals any more.
    pub async fn drop_user(&self, name: &str) -> Result<bool> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error(format!("cannot drop user {name}")))?;
        let admins: Vec<String> =
            sqlx::query_scalar("SELECT member FROM pitlake_role_members WHERE role = ?")
                .bind(ADMIN_ROLE)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error(format!("cannot drop user {name}")))?;
        if admins == [name.to_string()] {
            return Err(last_admin(name));
        }
        let done = sqlx::query("DELETE FROM pitlake_users WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error(format!("cannot drop user {name}")))?;
        sqlx::query("DELETE FROM pitlake_role_members WHERE member = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error(format!("cannot drop user {name}")))?;
        tx.commit()
            .await
            .map_err(db_error(format!("cannot drop user {name}")))?;
        self.changed();
        Ok(done.rows_affected() > 0)
    }

    /// `CREATE ROLE name`.
    pub async fn create_role(&self, name: &str) -> Result<()> {
        check_principal("role", name)?;
        let inserted = sqlx::query("INSERT INTO pitlake_roles (name, created_ms) VALUES (?, ?)")
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(Error::AlreadyExists {
                kind: "role",
                name: name.to_string(),
            }),
            other => {
                other.map_err(db_error(format!("cannot create role {name}")))?;
                self.changed();
                Ok(())
            }
        }
    }

    /// `DROP ROLE name` (never `admin`); false when there is none.
    pub async fn drop_role(&self, name: &str) -> Result<bool> {
        if name == ADMIN_ROLE {
            return Err(Error::Invalid(format!(
                "the role {ADMIN_ROLE} cannot be dropped"
            )));
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error(format!("cannot drop role {name}")))?;
        let done = sqlx::query("DELETE FROM pitlake_roles WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error(format!("cannot drop role {name}")))?;
        sqlx::query("DELETE FROM pitlake_role_members WHERE role = ?")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error(format!("cannot drop role {name}")))?;
        tx.commit()
            .await
            .map_err(db_error(format!("cannot drop role {name}")))?;
        self.changed();
        Ok(done.rows_affected() > 0)
    }

    /// `GRANT ROLE role TO user`.
    pub async fn grant_role(&self, role: &str, user: &str) -> Result<()> {
        self.expect_role(role).await?;
        self.expect_user(user).await?;
        sqlx::query("INSERT OR IGNORE INTO pitlake_role_members (role, member) VALUES (?, ?)")
            .bind(role)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(db_error(format!("cannot grant role {role} to {user}")))?;
        self.changed();
        Ok(())
    }

    /// `REVOKE ROLE role FROM user`.
    pub async fn revoke_role(&self, role: &str, user: &str) -> Result<()> {
        self.expect_role(role).await?;
        self.expect_user(user).await?;
        // One statement checks and deletes, so two admins revoking each
        // other at once cannot both succeed and leave none.
        let done = sqlx::query(
            "DELETE FROM pitlake_role_members WHERE role = ? AND member = ?
               AND (role <> ? OR EXISTS (SELECT 1 FROM pitlake_role_members
                                         WHERE role = ? AND member <> ?))",
        )
        .bind(role)
        .bind(user)
        .bind(ADMIN_ROLE)
        .bind(ADMIN_ROLE)
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(db_error(format!("cannot revoke role {role} from {user}")))?;
        self.changed();
        if done.rows_affected() == 0
            && role == ADMIN_ROLE
            && self.members(ADMIN_ROLE).await? == [user.to_string()]
        {
            return Err(last_admin(user));
        }
        Ok(())
    }

    /// The user `name` with their roles, if the password is theirs. Takes
    /// the time of one hash whether or not the user exists.
    pub async fn sign_in(&self, name: &str, password: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT password_hash FROM pitlake_users WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("cannot read the users"))?;
        let stored: Option<String> = row.and_then(|r| r.try_get(0).ok());
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || match stored {
            Some(stored) => password::verify(&password, &stored),
            None => {
                password::verify_nothing(&password);
                false
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("password check: {e}")))?;
        if !matches {
            return Ok(None);
        }
        self.principal(name).await.map(Some)
    }

    /// `name` with the roles they are in now; refused when the user no
    /// longer exists (dropped after signing in: their token stops working).
    pub async fn principal(&self, name: &str) -> Result<Principal> {
        let rows = sqlx::query(
            "SELECT m.role FROM pitlake_users u
             LEFT JOIN pitlake_role_members m ON m.member = u.name WHERE u.name = ?",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error(format!("cannot read the roles of {name}")))?;
        if rows.is_empty() {
            return Err(Error::Denied {
                user: name.to_string(),
                action: "run statements: the user was dropped".into(),
            });
        }
        let roles = rows
            .iter()
            .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
            .collect();
        Ok(Principal {
            user: name.to_string(),
            roles,
        })
    }

    /// Every user with their roles: (user, roles joined by ", ").
    pub async fn users(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT u.name, coalesce(group_concat(m.role, ', '), '')
             FROM pitlake_users u LEFT JOIN
                  (SELECT member, role FROM pitlake_role_members ORDER BY role) m
             ON m.member = u.name GROUP BY u.name ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot list the users"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect())
    }

    /// Every role with its members: (role, members joined by ", ").
    pub async fn roles(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT r.name, coalesce(group_concat(m.member, ', '), '')
             FROM pitlake_roles r LEFT JOIN
                  (SELECT role, member FROM pitlake_role_members ORDER BY member) m
             ON m.role = r.name GROUP BY r.name ORDER BY r.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot list the roles"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect())
    }

    async fn members(&self, role: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT member FROM pitlake_role_members WHERE role = ?")
            .bind(role)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error(format!("cannot read the members of {role}")))?;
        Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    }

    pub async fn expect_role(&self, role: &str) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM pitlake_roles WHERE name = ?")
            .bind(role)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("cannot read the roles"))?;
        found.map(|_| ()).ok_or_else(|| not_found("role", role))
    }

    pub async fn expect_user(&self, user: &str) -> Result<()> {
        let found = sqlx::query("SELECT 1 FROM pitlake_users WHERE name = ?")
            .bind(user)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error("cannot read the users"))?;
        found.map(|_| ()).ok_or_else(|| not_found("user", user))
    }
}

fn last_admin(user: &str) -> Error {
    Error::Invalid(format!(
        "{user} is the last member of {ADMIN_ROLE}: grant the role to another user first"
    ))
}

fn not_found(kind: &str, name: &str) -> Error {
    Error::PrincipalNotFound {
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

async fn hash_off_thread(password: &str) -> Result<String> {
    password::check(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hash: {e}")))?
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
