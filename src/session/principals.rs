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

use super::{Session, done, one_batch};
use crate::access::{Principal, Principals};
use crate::catalog::types::normalize;
use crate::error::{Error, Result};
use crate::sql::PrincipalStatement;

/// The session's principal, and whether it is a stored user (read again
/// before each statement) rather than the local admin.
pub(super) type Identity = Arc<RwLock<(Principal, bool)>>;

impl Session {
    /// This session acting as `principal` (a signed-in Flight client).
    pub fn with_principal(self, principal: Principal) -> Self {
        if let Ok(mut identity) = self.identity.write() {
            *identity = (principal, true);
        }
        self
    }

    /// Who runs this session's statements, with their roles as stored now
    /// (changed by this process or another). A user dropped since they
    /// signed in is refused.
    pub async fn principal(&self) -> Result<Principal> {
        let (current, stored) = self
            .identity
            .read()
            .map(|i| i.clone())
            .map_err(|_| Error::Internal("session identity poisoned".into()))?;
        // A local admin session is not a stored user: it stays admin.
        if !stored {
            return Ok(current);
        }
        let fresh = self.store.principals().principal(&current.user).await?;
        if let Ok(mut identity) = self.identity.write() {
            *identity = (fresh.clone(), true);
        }
        Ok(fresh)
    }

    async fn require_admin(&self, action: impl FnOnce() -> String) -> Result<Principal> {
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
        }
        done()
    }
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
            let user = who.read().map(|i| i.0.user.clone()).unwrap_or_default();
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
            let principal = who.read().map(|i| i.0.clone()).ok();
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
