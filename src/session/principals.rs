//! Who runs this session's statements, the statements about users and roles
//! (only the `admin` role's members may run them, but anyone may change their
//! own password), and the SQL functions `current_user()` and
//! `is_member('role')`.

use std::sync::{Arc, RwLock};

use arrow::array::{Array, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

use super::Session;
use super::results::{done, one_batch};
use crate::access::{Access, GrantRow, Grantee, Principal, Principals, Privilege, Securable};
use crate::catalog::types::normalize;
use crate::catalog::{CatalogVersion, TableName};
use crate::error::{Error, Result};
use crate::sql::{GrantObject, GrantTarget, PrincipalStatement};

/// The session's principal and what it may do.
pub(super) type Identity = Arc<RwLock<IdentityState>>;

#[derive(Debug, Clone)]
pub(super) struct IdentityState {
    principal: Principal,
    /// A stored user (read again when the catalog changes), rather than the
    /// local admin.
    stored: bool,
    /// The catalog version the principal was read at: roles, grants and
    /// users are rows of the catalog database, so any change moves it.
    read_at: Option<CatalogVersion>,
    /// What the principal may do, once asked.
    access: Option<Access>,
    /// Who signed in, while `SET SESSION AUTHORIZATION` acts as another user.
    session_user: Option<Box<IdentityState>>,
}

impl IdentityState {
    pub(super) fn local_admin() -> Self {
        IdentityState {
            principal: Principal::local_admin(),
            stored: false,
            read_at: None,
            access: None,
            session_user: None,
        }
    }
}

impl Session {
    /// This session acting as `principal` (a signed-in Flight client).
    pub fn with_principal(self, principal: Principal) -> Self {
        if let Ok(mut identity) = self.identity.write() {
            *identity = IdentityState {
                principal,
                stored: true,
                read_at: None,
                access: None,
                session_user: None,
            };
        }
        // Until its grants are read, the principal sees nothing.
        self.catalog.set_access(Access::nothing());
        self
    }

    /// `SET SESSION AUTHORIZATION user`: statements run as `user` (with
    /// their roles, grants, row filters and masks) until `SET SESSION
    /// AUTHORIZATION DEFAULT`. Only an admin who signed in may, as in
    /// PostgreSQL; it is how tests and admins see what a user sees.
    pub(super) async fn set_session_authorization(
        &self,
        user: Option<&sqlparser::ast::Ident>,
    ) -> Result<SendableRecordBatchStream> {
        let current = self.identity()?;
        let signed_in = match current.session_user.clone() {
            Some(original) => *original,
            None => current,
        };
        let admin = match signed_in.stored {
            true => self
                .store
                .principals()
                .principal(&signed_in.principal.user)
                .await?
                .is_admin(),
            false => signed_in.principal.is_admin(),
        };
        if !admin {
            return Err(Error::Denied {
                user: signed_in.principal.user.clone(),
                action: "set the session authorization: only members of the admin role may".into(),
            });
        }
        let next = match user {
            None => signed_in,
            Some(user) => {
                let user = normalize(user);
                self.store.principals().expect_user(&user).await?;
                let principal = self.store.principals().principal(&user).await?;
                IdentityState {
                    principal,
                    stored: true,
                    read_at: None,
                    access: None,
                    session_user: Some(Box::new(signed_in)),
                }
            }
        };
        if let Ok(mut identity) = self.identity.write() {
            *identity = IdentityState {
                access: None,
                read_at: None,
                ..next
            };
        }
        self.catalog.set_access(Access::nothing());
        self.refresh_gate().await?;
        done()
    }

    /// Brings the catalog's gate up to the principal's current grants: every
    /// statement and every plan passes here first.
    pub(super) async fn refresh_gate(&self) -> Result<()> {
        self.catalog.set_access(self.access().await?);
        self.refresh_policies().await
    }

    fn identity(&self) -> Result<IdentityState> {
        self.identity
            .read()
            .map(|i| i.clone())
            .map_err(|_| Error::Internal("session identity poisoned".into()))
    }

    /// Who runs this session's statements, with their roles as stored now
    /// (changed by this process or another: read again whenever the catalog
    /// database changed). A user dropped since they signed in is refused.
    pub async fn principal(&self) -> Result<Principal> {
        let current = self.identity()?;
        // A local admin session is not a stored user: it stays admin.
        if !current.stored {
            return Ok(current.principal);
        }
        let version = self.store.warehouse().version().await;
        if version.is_some() && version == current.read_at {
            return Ok(current.principal);
        }
        let fresh = self
            .store
            .principals()
            .principal(&current.principal.user)
            .await?;
        if let Ok(mut identity) = self.identity.write() {
            identity.principal = fresh.clone();
            identity.read_at = version;
            identity.access = None;
        }
        Ok(fresh)
    }

    /// What this session's principal may do (see [`Access`]).
    pub async fn access(&self) -> Result<Access> {
        let principal = self.principal().await?;
        if let Some(access) = self.identity()?.access {
            return Ok(access);
        }
        let access = self.store.grants().access(&principal).await?;
        if let Ok(mut identity) = self.identity.write() {
            identity.access = Some(access.clone());
        }
        Ok(access)
    }

    /// An error unless `allowed`: permission denied to the principal.
    pub(super) async fn require(
        &self,
        allowed: bool,
        action: impl FnOnce() -> String,
    ) -> Result<()> {
        if allowed {
            return Ok(());
        }
        Err(Error::Denied {
            user: self.principal().await?.user,
            action: action(),
        })
    }

    /// Checks that the principal may read (`Select`) or add rows to
    /// (`Insert`) `table`, for paths outside SQL (Flight lookups and streams).
    pub async fn authorize(&self, privilege: Privilege, table: &TableName) -> Result<()> {
        match privilege {
            Privilege::Insert => self.require_insert(table).await,
            Privilege::Select => self.require_read(table).await,
            Privilege::Create => self.require_create_in(table).await,
            Privilege::All => self.require_manage(table).await,
        }
    }

    /// Not found unless the principal may read `table` (what it may not read
    /// does not exist for it), denied when it is a published feature group.
    pub(super) async fn require_read(&self, table: &TableName) -> Result<()> {
        if self.access().await?.may(Privilege::Select, table) {
            return Ok(());
        }
        // Whether it is published, as of now.
        self.refresh_policies().await?;
        Err(self.catalog.unreadable(table))
    }

    /// Rows may be added to `table`: not found when the principal cannot see
    /// it, denied when it can but may not insert.
    pub(super) async fn require_insert(&self, table: &TableName) -> Result<()> {
        self.require_seen(table).await?;
        let access = self.access().await?;
        self.require(access.may(Privilege::Insert, table), || {
            format!("insert into {table}")
        })
        .await
    }

    /// Not found unless `table` is there for the principal: they hold a
    /// privilege on it (or its schema), or it is a published feature group.
    pub(super) async fn require_seen(&self, table: &TableName) -> Result<()> {
        let access = self.access().await?;
        let granted = access.may(Privilege::Select, table)
            || access.may(Privilege::Insert, table)
            || access.may_manage(&Securable::Table(table.clone()));
        if granted {
            return Ok(());
        }
        // Whether it is published, as of now.
        self.refresh_policies().await?;
        if self.catalog.is_published(table) {
            return Ok(());
        }
        Err(Error::TableNotFound {
            table: table.to_string(),
        })
    }

    /// `table` may be dropped or altered: by its owner, one granted ALL on
    /// it, or an admin.
    pub(super) async fn require_manage(&self, table: &TableName) -> Result<()> {
        self.require_manage_to(table, || {
            format!("drop or alter {table} (its owner or an admin may)")
        })
        .await
    }

    /// As [`Session::require_manage`], denied as `action`. A published
    /// feature group is there for everyone.
    pub(super) async fn require_manage_to(
        &self,
        table: &TableName,
        action: impl FnOnce() -> String,
    ) -> Result<()> {
        self.require_seen(table).await?;
        let access = self.access().await?;
        self.require(access.may_manage(&Securable::Table(table.clone())), action)
            .await
    }

    /// Something may be made as `name`: CREATE on its schema, or an admin.
    pub(super) async fn require_create_in(&self, name: &TableName) -> Result<()> {
        let access = self.access().await?;
        self.require(access.may_create_in(&name.schema), || {
            format!("create {name} (needs CREATE on schema {})", name.schema)
        })
        .await
    }

    /// Records the principal as the owner of what it just made, which starts
    /// with no grant, policy, publication or request: a drop that raced a
    /// GRANT, PUBLISH or APPROVE of an older object of the name may have
    /// left one.
    pub(super) async fn record_owner(&self, object: Securable) -> Result<()> {
        let user = self.principal().await?.user;
        if let Securable::Table(table) = &object {
            self.store.sharing().forget(table).await?;
            self.store.policies().forget(table).await?;
        }
        self.store.grants().forget(&object).await?;
        self.store.grants().set_owner(&object, &user).await?;
        self.store.principals().touch();
        Ok(())
    }

    /// Forgets the grants and owner of a dropped object.
    pub(super) async fn forget_grants(&self, object: Securable) -> Result<()> {
        // Requests first: an APPROVE racing the drop then either granted
        // before the grants are forgotten, or finds its request gone.
        if let Securable::Table(table) = &object {
            self.store.sharing().forget(table).await?;
            self.store.policies().forget(table).await?;
        }
        self.store.grants().forget(&object).await?;
        self.store.principals().touch();
        Ok(())
    }

    /// The object a GRANT names, which must exist.
    async fn securable(&self, object: &GrantObject) -> Result<Securable> {
        match object {
            GrantObject::Table(name) => {
                let table = self.resolve_name(name)?;
                let exists = self
                    .warehouse()
                    .try_load_table(&table.schema, &table.table)
                    .await?
                    .is_some()
                    || self.warehouse().views().kind_of(&table).await?.is_some();
                if !exists {
                    return Err(Error::TableNotFound {
                        table: table.to_string(),
                    });
                }
                Ok(Securable::Table(table))
            }
            GrantObject::Schema(name) => {
                let schema = super::names::schema_of(name)?;
                if !self.warehouse().schema_exists(&schema).await? {
                    return Err(Error::SchemaNotFound { schema });
                }
                Ok(Securable::Schema(schema))
            }
        }
    }

    async fn grantee(&self, grantee: &GrantTarget) -> Result<Grantee> {
        let principals = self.store.principals();
        Ok(match grantee {
            GrantTarget::Role(role) => {
                let role = normalize(role);
                principals.expect_role(&role).await?;
                Grantee::Role(role)
            }
            GrantTarget::User(user) => {
                let user = normalize(user);
                principals.expect_user(&user).await?;
                Grantee::User(user)
            }
        })
    }

    async fn grant_or_revoke(
        &self,
        grant: bool,
        privileges: &[String],
        object: &GrantObject,
        grantee: &GrantTarget,
    ) -> Result<()> {
        let privileges: Vec<Privilege> = privileges
            .iter()
            .filter_map(|p| Privilege::parse(p))
            .collect();
        let object = self.securable(object).await?;
        if privileges.contains(&Privilege::Create) && !matches!(object, Securable::Schema(_)) {
            return Err(Error::Invalid(format!(
                "CREATE is granted on a schema, not on {object}"
            )));
        }
        let grantee = self.grantee(grantee).await?;
        let access = self.access().await?;
        self.require(access.may_manage(&object), || {
            format!("grant or revoke on {object} (its owner or an admin may)")
        })
        .await?;
        let grants = self.store.grants();
        if grant {
            let me = self.principal().await?.user;
            grants.grant(&privileges, &object, &grantee, &me).await?;
        } else {
            grants.revoke(&privileges, &object, &grantee).await?;
        }
        self.store.principals().touch();
        Ok(())
    }

    pub(super) async fn require_admin(&self, action: impl FnOnce() -> String) -> Result<Principal> {
        let principal = self.principal().await?;
        if !principal.is_admin() {
            return Err(Error::Denied {
                user: principal.user,
                action: action(),
            });
        }
        Ok(principal)
    }

    pub(super) async fn execute_principal(
        &self,
        statement: PrincipalStatement,
    ) -> Result<SendableRecordBatchStream> {
        let principals: &Principals = self.store.principals();
        match statement {
            PrincipalStatement::CreateUser {
                name,
                password,
                roles,
                if_not_exists,
            } => {
                let name = normalize(&name);
                self.require_admin(|| format!("create user {name}")).await?;
                let roles: Vec<String> = roles.iter().map(normalize).collect();
                match principals.create_user(&name, &password, &roles).await {
                    Err(Error::AlreadyExists { .. }) if if_not_exists => {}
                    other => other?,
                }
            }
            PrincipalStatement::AlterUser { name, password } => {
                let name = normalize(&name);
                let me = self.principal().await?;
                if me.user != name {
                    self.require_admin(|| format!("change the password of {name}"))
                        .await?;
                }
                principals.set_password(&name, &password).await?;
            }
            PrincipalStatement::DropUser { name, if_exists } => {
                let name = normalize(&name);
                self.require_admin(|| format!("drop user {name}")).await?;
                if !principals.drop_user(&name).await? && !if_exists {
                    return Err(Error::PrincipalNotFound {
                        kind: "user".into(),
                        name,
                    });
                }
                let grantee = Grantee::User(name);
                let heir = self.principal().await?.user;
                self.store.grants().forget_grantee(&grantee, &heir).await?;
                self.store.sharing().forget_grantee(&grantee).await?;
            }
            PrincipalStatement::CreateRole {
                name,
                if_not_exists,
            } => {
                let name = normalize(&name);
                self.require_admin(|| format!("create role {name}")).await?;
                match principals.create_role(&name).await {
                    Err(Error::AlreadyExists { .. }) if if_not_exists => {}
                    other => other?,
                }
            }
            PrincipalStatement::DropRole { name, if_exists } => {
                let name = normalize(&name);
                self.require_admin(|| format!("drop role {name}")).await?;
                if !principals.drop_role(&name).await? && !if_exists {
                    return Err(Error::PrincipalNotFound {
                        kind: "role".into(),
                        name,
                    });
                }
                let grantee = Grantee::Role(name);
                let heir = self.principal().await?.user;
                self.store.grants().forget_grantee(&grantee, &heir).await?;
                self.store.sharing().forget_grantee(&grantee).await?;
            }
            PrincipalStatement::GrantRole { role, user } => {
                let (role, user) = (normalize(&role), normalize(&user));
                self.require_admin(|| format!("grant role {role}")).await?;
                principals.grant_role(&role, &user).await?;
            }
            PrincipalStatement::RevokeRole { role, user } => {
                let (role, user) = (normalize(&role), normalize(&user));
                self.require_admin(|| format!("revoke role {role}")).await?;
                principals.revoke_role(&role, &user).await?;
            }
            PrincipalStatement::ShowUsers => {
                self.require_admin(|| "list the users".into()).await?;
                return listing("user", "roles", principals.users().await?);
            }
            PrincipalStatement::ShowRoles => {
                self.require_admin(|| "list the roles".into()).await?;
                return listing("role", "members", principals.roles().await?);
            }
            PrincipalStatement::Grant {
                privileges,
                object,
                grantee,
            } => {
                self.grant_or_revoke(true, &privileges, &object, &grantee)
                    .await?
            }
            PrincipalStatement::Revoke {
                privileges,
                object,
                grantee,
            } => {
                self.grant_or_revoke(false, &privileges, &object, &grantee)
                    .await?
            }
            PrincipalStatement::ShowGrants { object, grantee } => {
                let object = match &object {
                    Some(o) => Some(self.securable(o).await?),
                    None => None,
                };
                // A table the principal cannot see does not exist here either.
                if let Some(Securable::Table(table)) = &object {
                    self.require_seen(table).await?;
                }
                let grantee = match &grantee {
                    Some(g) => Some(self.grantee(g).await?),
                    None => None,
                };
                let me = self.principal().await?;
                let rows: Vec<GrantRow> = self
                    .store
                    .grants()
                    .list(object.as_ref(), grantee.as_ref())
                    .await?
                    .into_iter()
                    // Users see the grants made to them and their roles.
                    .filter(|g| {
                        me.is_admin()
                            || (g.grantee_kind == "user" && g.grantee == me.user)
                            || (g.grantee_kind == "role" && me.is_member(&g.grantee))
                    })
                    .collect();
                return grant_listing(rows);
            }
        }
        done()
    }
}

fn grant_listing(rows: Vec<GrantRow>) -> Result<SendableRecordBatchStream> {
    let names = [
        "object_kind",
        "object",
        "privilege",
        "grantee_kind",
        "grantee",
        "granted_by",
    ];
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let column = |f: fn(&GrantRow) -> &str| -> arrow::array::ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let batch = arrow::array::RecordBatch::try_new(
        schema,
        vec![
            column(|g| &g.object_kind),
            column(|g| &g.object),
            column(|g| &g.privilege),
            column(|g| &g.grantee_kind),
            column(|g| &g.grantee),
            column(|g| &g.granted_by),
        ],
    )
    .map_err(Error::arrow("the grant listing"))?;
    one_batch(batch)
}

fn listing(
    first: &str,
    second: &str,
    rows: Vec<(String, String)>,
) -> Result<SendableRecordBatchStream> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(first, DataType::Utf8, false),
        Field::new(second, DataType::Utf8, false),
    ]));
    let (a, b): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    let batch = arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(a)),
            Arc::new(StringArray::from(b)),
        ],
    )
    .map_err(Error::arrow("the principal listing"))?;
    one_batch(batch)
}

/// `current_user()` and `is_member('role')` of a session's identity.
pub(super) fn identity_functions(identity: &Identity) -> [datafusion::logical_expr::ScalarUDF; 2] {
    let who = identity.clone();
    let current_user = create_udf(
        "current_user",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            let user = who
                .read()
                .map(|i| i.principal.user.clone())
                .unwrap_or_default();
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(user))))
        }),
    );
    let who = identity.clone();
    let is_member = create_udf(
        "is_member",
        vec![DataType::Utf8],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let principal = who.read().map(|i| i.principal.clone()).ok();
            let member = |role: Option<&str>| {
                role.map(|r| principal.as_ref().is_some_and(|p| p.is_member(r)))
            };
            Ok(match args.first() {
                Some(ColumnarValue::Scalar(ScalarValue::Utf8(role))) => {
                    ColumnarValue::Scalar(ScalarValue::Boolean(member(role.as_deref())))
                }
                Some(ColumnarValue::Array(roles)) => {
                    let roles = roles
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| {
                            datafusion::error::DataFusionError::Execution(
                                "is_member takes a role name".into(),
                            )
                        })?;
                    let out: BooleanArray = roles.iter().map(member).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
                _ => ColumnarValue::Scalar(ScalarValue::Boolean(None)),
            })
        }),
    );
    [current_user, is_member]
}
