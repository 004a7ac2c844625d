//! pitlake's statements: everything DataFusion plans, plus feature-group DDL,
//! catalog commands and `COPY ... FROM`.

use std::fmt;

use sqlparser::ast::{ColumnDef, Ident, ObjectName};

use super::columns::ColumnsStatement;
use super::policies::PolicyStatement;
use super::principals::PrincipalStatement;
use super::refs::RefStatement;
use super::sharing::SharingStatement;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Users and roles (`CREATE USER`, `GRANT ROLE`, …).
    Principal(PrincipalStatement),
    /// Row filters and column masks (`ALTER ... SET ROW FILTER`, `... SET MASK`).
    Policy(Box<PolicyStatement>),
    /// Publishing feature groups and access requests (`PUBLISH FEATURE GROUP`,
    /// `REQUEST ACCESS`, `APPROVE ACCESS REQUEST`, …).
    Sharing(SharingStatement),
    /// Tags on a table's snapshots (`ALTER TABLE t CREATE TAG q1`, …).
    Ref(RefStatement),
    /// Column changes (`ALTER TABLE t ADD COLUMN c INT`, `RENAME COLUMN`, …).
    Columns(ColumnsStatement),
    /// Standard SQL, planned by DataFusion (with pitlake's relation planners).
    Sql(Box<sqlparser::ast::Statement>),
    /// `CREATE FEATURE GROUP ...`
    CreateFeatureGroup(CreateFeatureGroup),
    /// `DROP FEATURE GROUP [IF EXISTS] name`
    DropFeatureGroup { name: ObjectName, if_exists: bool },
    /// `SHOW FEATURE GROUPS [IN schema]`
    ShowFeatureGroups { schema: Option<Ident> },
    /// `DESCRIBE FEATURE GROUP name`
    DescribeFeatureGroup { name: ObjectName },
    /// `COPY name FROM 'path'`
    CopyFrom { table: ObjectName, path: String },
    /// `ERASE FROM name [WHERE …]`: the rows leave every snapshot and the
    /// disk. Printed with its literals as `?`: the values erased must not
    /// live on in logs.
    Erase(Box<sqlparser::ast::Delete>),
    /// `VACUUM [name]`: removes data files no snapshot references and no
    /// running write claims (of one table, or of every table).
    Vacuum { table: Option<ObjectName> },
    /// `ALTER FEATURE GROUP name SET ONLINE | SET OFFLINE | SET (key = 'value', ...)`
    AlterFeatureGroup {
        name: ObjectName,
        online: Option<bool>,
        options: Vec<(String, String)>,
    },
}

/// `node` with every literal printed as `?`.
fn without_values<T: Clone + sqlparser::ast::VisitMut>(node: &T) -> T {
    let mut masked = node.clone();
    let _ = sqlparser::ast::visit_expressions_mut(&mut masked, |e| {
        match e {
            sqlparser::ast::Expr::Value(value) => {
                value.value = sqlparser::ast::Value::Placeholder("?".into());
            }
            sqlparser::ast::Expr::TypedString(typed) => {
                typed.value.value = sqlparser::ast::Value::Placeholder("?".into());
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    masked
}

impl Statement {
    /// The statement as logs keep it: the literals of statements that
    /// write or remove rows (INSERT, UPDATE, DELETE, MERGE, ERASE) printed
    /// as `?`, since they are data, which an ERASE must be able to take
    /// back; every other statement as written.
    pub fn without_values(&self) -> String {
        use sqlparser::ast::Statement as S;
        match self {
            Statement::Sql(s)
                if matches!(
                    **s,
                    S::Insert(_) | S::Update { .. } | S::Delete(_) | S::Merge { .. }
                ) =>
            {
                without_values(&**s).to_string()
            }
            other => other.to_string(),
        }
    }

    /// True for statements that create a schema, table, view or feature
    /// group: the ones that may also create the warehouse they run in. A
    /// temporary table lives in memory, so it is not one of them.
    pub fn creates_something(&self) -> bool {
        use sqlparser::ast::Statement as S;
        match self {
            Statement::CreateFeatureGroup(_) => true,
            Statement::Sql(s) => match &**s {
                S::CreateTable(create) => !create.temporary,
                S::CreateSchema { .. } | S::CreateView { .. } => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// `CREATE FEATURE GROUP name (columns) ENTITY KEY (..) EVENT TIME col [ONLINE] [WITH (..)]`
#[derive(Debug, Clone)]
pub struct CreateFeatureGroup {
    pub name: ObjectName,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub entity_key: Vec<Ident>,
    pub event_time: Ident,
    pub online: bool,
    /// `WITH (key = 'value', ...)`: description, owner, tags.
    pub options: Vec<(String, String)>,
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Sql(s) => write!(f, "{s}"),
            Statement::Erase(delete) => {
                let text = without_values(&**delete).to_string();
                let rest = text.strip_prefix("DELETE").unwrap_or(&text);
                write!(f, "ERASE{rest}")
            }
            Statement::Principal(p) => write!(f, "{p}"),
            Statement::Policy(p) => write!(f, "{p}"),
            Statement::Sharing(s) => write!(f, "{s}"),
            Statement::Ref(r) => write!(f, "{r}"),
            Statement::Columns(c) => write!(f, "{c}"),
            Statement::CreateFeatureGroup(c) => {
                write!(f, "CREATE FEATURE GROUP ")?;
                if c.if_not_exists {
                    write!(f, "IF NOT EXISTS ")?;
                }
                let columns: Vec<String> = c.columns.iter().map(ToString::to_string).collect();
                let keys: Vec<String> = c.entity_key.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "{} ({}) ENTITY KEY ({}) EVENT TIME {}",
                    c.name,
                    columns.join(", "),
                    keys.join(", "),
                    c.event_time
                )?;
                if c.online {
                    write!(f, " ONLINE")?;
                }
                if !c.options.is_empty() {
                    let opts: Vec<String> = c
                        .options
                        .iter()
                        .map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''")))
                        .collect();
                    write!(f, " WITH ({})", opts.join(", "))?;
                }
                Ok(())
            }
            Statement::DropFeatureGroup { name, if_exists } => {
                let ie = if *if_exists { "IF EXISTS " } else { "" };
                write!(f, "DROP FEATURE GROUP {ie}{name}")
            }
            Statement::ShowFeatureGroups { schema } => match schema {
                Some(s) => write!(f, "SHOW FEATURE GROUPS IN {s}"),
                None => write!(f, "SHOW FEATURE GROUPS"),
            },
            Statement::DescribeFeatureGroup { name } => write!(f, "DESCRIBE FEATURE GROUP {name}"),
            Statement::CopyFrom { table, path } => {
                write!(f, "COPY {table} FROM '{}'", path.replace('\'', "''"))
            }
            Statement::Vacuum { table: Some(table) } => write!(f, "VACUUM {table}"),
            Statement::Vacuum { table: None } => write!(f, "VACUUM"),
            Statement::AlterFeatureGroup {
                name,
                online,
                options,
            } => {
                write!(f, "ALTER FEATURE GROUP {name}")?;
                match online {
                    Some(true) => write!(f, " SET ONLINE")?,
                    Some(false) => write!(f, " SET OFFLINE")?,
                    None => {}
                }
                if !options.is_empty() {
                    let opts: Vec<String> = options
                        .iter()
                        .map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''")))
                        .collect();
                    write!(f, " SET ({})", opts.join(", "))?;
                }
                Ok(())
            }
        }
    }
}
