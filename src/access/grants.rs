//! Privileges on schemas and tables (feature groups are tables), and who
//! owns what, stored beside the principals (`pitlake_grants`,
//! `pitlake_owners`). The decision is [`Access::may`]: the `admin` role may
//! do everything, an owner everything on what they own, anyone else what a
//! grant to them or one of their roles allows, on the table or its schema.

use std::collections::HashSet;

use sqlx::{Row, SqlitePool};

use super::principals::Principal;
use crate::error::{Error, Result};
use crate::shared::TableName;

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// Read rows (plain, time travel, ASOF JOIN, metadata tables, online).
    Select,
    /// Add rows (INSERT, COPY FROM, Flight ingest, streams).
    Insert,
    /// Make tables, views and feature groups in a schema.
    Create,
    /// Everything, granting and dropping included.
    All,
}

impl Privilege {
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Create => "CREATE",
            Privilege::All => "ALL",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "SELECT" => Some(Privilege::Select),
            "INSERT" => Some(Privilege::Insert),
            "CREATE" => Some(Privilege::Create),
            "ALL" => Some(Privilege::All),
            _ => None,
        }
    }
}

/// What a grant is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Securable {
    Schema(String),
    Table(TableName),
}

impl Securable {
    fn kind(&self) -> &'static str {
        match self {
            Securable::Schema(_) => "schema",
            Securable::Table(_) => "table",
        }
    }

    fn name(&self) -> String {
        match self {
            Securable::Schema(s) => s.clone(),
            Securable::Table(t) => t.to_string(),
        }
    }
}

impl std::fmt::Display for Securable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// Who a grant is to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    User(String),
    Role(String),
}

impl Grantee {
    pub fn kind(&self) -> &'static str {
        match self {
            Grantee::User(_) => "user",
            Grantee::Role(_) => "role",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Grantee::User(n) | Grantee::Role(n) => n,
        }
    }
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// One stored grant, as `SHOW GRANTS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub object_kind: String,
    pub object: String,
    pub privilege: String,
    pub grantee_kind: String,
    pub grantee: String,
    pub granted_by: String,
}

/// What one principal may do, read once and asked many times.
#[derive(Debug, Clone)]
pub struct Access {
    /// The user asked about (for messages).
    user: String,
    admin: bool,
    /// The user's roles.
    roles: HashSet<String>,
    /// (kind, object, privilege) granted to the user or one of their roles.
    granted: HashSet<(String, String, Privilege)>,
    /// (kind, object) the user owns.
    owned: HashSet<(String, String)>,
}

impl Access {
    /// Everything allowed (the local admin).
    pub fn everything() -> Self {
        Access {
            user: String::new(),
            admin: true,
            roles: HashSet::new(),
            granted: HashSet::new(),
            owned: HashSet::new(),
        }
    }

    /// Nothing allowed (a principal whose grants are not read yet).
    pub fn nothing() -> Self {
        Access {
            user: String::new(),
            admin: false,
            roles: HashSet::new(),
            granted: HashSet::new(),
            owned: HashSet::new(),
        }
    }

    /// The user these rights are of (empty for the local admin).
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the user is a member of `role`.
    pub fn is_member(&self, role: &str) -> bool {
        self.admin && role == super::ADMIN_ROLE || self.roles.contains(role)
    }

    fn has(&self, object: &Securable, privilege: Privilege) -> bool {
        let (kind, name) = (object.kind().to_string(), object.name());
        self.owned.contains(&(kind.clone(), name.clone()))
            || self
                .granted
                .contains(&(kind.clone(), name.clone(), Privilege::All))
            || self.granted.contains(&(kind, name, privilege))
    }

    /// Whether the principal may use `privilege` on `table` (a grant on its
    /// schema counts; ownership of either counts as everything).
    pub fn may(&self, privilege: Privilege, table: &TableName) -> bool {
        self.admin
            || self.has(&Securable::Table(table.clone()), privilege)
            || self.has(&Securable::Schema(table.schema.clone()), privilege)
    }

    /// Whether the principal may make objects in `schema`.
    pub fn may_create_in(&self, schema: &str) -> bool {
        self.admin || self.has(&Securable::Schema(schema.to_string()), Privilege::Create)
    }

    /// Whether the principal may drop, alter or grant on `object`: an admin,
    /// its owner, or one granted ALL on it.
    pub fn may_manage(&self, object: &Securable) -> bool {
        self.admin || self.has(object, Privilege::All)
    }
}

/// Stores one grant (a grant already there stays as it is), through
/// `executor`: the pool, or a transaction that does more.
pub(super) async fn insert_grant<'e, E>(
    executor: E,
    privilege: Privilege,
    object: &Securable,
    grantee: &Grantee,
    by: &str,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT OR IGNORE INTO pitlake_grants
         (object_kind, object, privilege, grantee_kind, grantee, granted_by)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(object.kind())
    .bind(object.name())
    .bind(privilege.as_str())
    .bind(grantee.kind())
    .bind(grantee.name())
    .bind(by)
    .execute(executor)
    .await
    .map_err(db_error(format!("cannot grant on {object}")))?;
    Ok(())
}

/// The grants and owners of one warehouse.
#[derive(Debug, Clone)]
pub struct Grants {
    pool: SqlitePool,
}

fn db_error(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let what = what.into();
    move |e| Error::unavailable(what)(e)
}

impl Grants {
    /// The grants of the catalog database behind `pool`, making their
    /// tables on first use.
    pub async fn open(pool: SqlitePool) -> Result<Self> {
        for ddl in [
            "CREATE TABLE IF NOT EXISTS pitlake_grants (
                object_kind TEXT NOT NULL, object TEXT NOT NULL, privilege TEXT NOT NULL,
                grantee_kind TEXT NOT NULL, grantee TEXT NOT NULL, granted_by TEXT NOT NULL,
                PRIMARY KEY (object_kind, object, privilege, grantee_kind, grantee))",
            "CREATE TABLE IF NOT EXISTS pitlake_owners (
                object_kind TEXT NOT NULL, object TEXT NOT NULL, owner TEXT NOT NULL,
                PRIMARY KEY (object_kind, object))",
        ] {
            sqlx::query(ddl)
                .execute(&pool)
                .await
                .map_err(db_error("cannot make the grant tables"))?;
        }
        Ok(Grants { pool })
    }

    /// What `principal` may do now.
    pub async fn access(&self, principal: &Principal) -> Result<Access> {
        if principal.is_admin() {
            return Ok(Access::everything());
        }
        let mut granted = HashSet::new();
        let rows = sqlx::query(
            "SELECT object_kind, object, privilege, grantee_kind, grantee FROM pitlake_grants",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot read the grants"))?;
        for row in rows {
            let get = |i: usize| row.try_get::<String, _>(i).unwrap_or_default();
            let (kind, object, privilege) = (get(0), get(1), get(2));
            let to_me = match get(3).as_str() {
                "user" => get(4) == principal.user,
                "role" => principal.is_member(&get(4)),
                _ => false,
            };
            if let (true, Some(privilege)) = (to_me, Privilege::parse(&privilege)) {
                granted.insert((kind, object, privilege));
            }
        }
        let rows = sqlx::query("SELECT object_kind, object FROM pitlake_owners WHERE owner = ?")
            .bind(&principal.user)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error("cannot read the owners"))?;
        let owned = rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect();
        Ok(Access {
            user: principal.user.clone(),
            admin: false,
            roles: principal.roles.iter().cloned().collect(),
            granted,
            owned,
        })
    }

    pub async fn grant(
        &self,
        privileges: &[Privilege],
        object: &Securable,
        grantee: &Grantee,
        by: &str,
    ) -> Result<()> {
        for privilege in privileges {
            insert_grant(&self.pool, *privilege, object, grantee, by).await?;
        }
        Ok(())
    }

    /// Removes the grants; `ALL` removes every privilege of the grantee on
    /// the object.
    pub async fn revoke(
        &self,
        privileges: &[Privilege],
        object: &Securable,
        grantee: &Grantee,
    ) -> Result<()> {
        for privilege in privileges {
            let all = *privilege == Privilege::All;
            sqlx::query(
                "DELETE FROM pitlake_grants WHERE object_kind = ? AND object = ?
                 AND grantee_kind = ? AND grantee = ? AND (privilege = ? OR ?)",
            )
            .bind(object.kind())
            .bind(object.name())
            .bind(grantee.kind())
            .bind(grantee.name())
            .bind(privilege.as_str())
            .bind(all)
            .execute(&self.pool)
            .await
            .map_err(db_error(format!("cannot revoke on {object}")))?;
        }
        Ok(())
    }

    /// Records who made `object`.
    pub async fn set_owner(&self, object: &Securable, owner: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pitlake_owners (object_kind, object, owner) VALUES (?, ?, ?)
             ON CONFLICT (object_kind, object) DO UPDATE SET owner = excluded.owner",
        )
        .bind(object.kind())
        .bind(object.name())
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(db_error(format!("cannot record the owner of {object}")))?;
        Ok(())
    }

    /// Forgets the grants and owner of a dropped object.
    pub async fn forget(&self, object: &Securable) -> Result<()> {
        for table in ["pitlake_grants", "pitlake_owners"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE object_kind = ? AND object = ?"
            ))
            .bind(object.kind())
            .bind(object.name())
            .execute(&self.pool)
            .await
            .map_err(db_error(format!("cannot forget the grants of {object}")))?;
        }
        Ok(())
    }

    /// Forgets the grants to a dropped user or role, and hands what a
    /// dropped user owned to `heir`: a user or role made later under the
    /// same name starts with nothing.
    pub async fn forget_grantee(&self, grantee: &Grantee, heir: &str) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db_error("cannot forget the grants of a dropped principal"))?;
        sqlx::query("DELETE FROM pitlake_grants WHERE grantee_kind = ? AND grantee = ?")
            .bind(grantee.kind())
            .bind(grantee.name())
            .execute(&mut *tx)
            .await
            .map_err(db_error("cannot forget the grants of a dropped principal"))?;
        if let Grantee::User(user) = grantee {
            sqlx::query("UPDATE pitlake_owners SET owner = ? WHERE owner = ?")
                .bind(heir)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(db_error("cannot hand over what a dropped user owned"))?;
        }
        tx.commit()
            .await
            .map_err(db_error("cannot forget the grants of a dropped principal"))
    }

    /// Every grant, optionally on one object or to one grantee.
    pub async fn list(
        &self,
        object: Option<&Securable>,
        grantee: Option<&Grantee>,
    ) -> Result<Vec<GrantRow>> {
        let rows = sqlx::query(
            "SELECT object_kind, object, privilege, grantee_kind, grantee, granted_by
             FROM pitlake_grants ORDER BY object_kind, object, grantee_kind, grantee, privilege",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error("cannot list the grants"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let get = |i: usize| r.try_get::<String, _>(i).unwrap_or_default();
                GrantRow {
                    object_kind: get(0),
                    object: get(1),
                    privilege: get(2),
                    grantee_kind: get(3),
                    grantee: get(4),
                    granted_by: get(5),
                }
            })
            .filter(|g| {
                object.is_none_or(|o| g.object_kind == o.kind() && g.object == o.name())
                    && grantee.is_none_or(|t| g.grantee_kind == t.kind() && g.grantee == t.name())
            })
            .collect())
    }
}
