//! Names of schemas and tables, and the paths pitlake derives from them.
//!
//! A schema or table name becomes a folder of the warehouse (`<schema>/<table>/`,
//! `_streams/<schema>/<table>/`), so a name is checked once, where it enters,
//! against the one rule below; and every path built from names goes through
//! [`warehouse_path`], which checks each part again, so a name that slipped past
//! (an old catalog, a hand-made folder) can never reach outside the warehouse.
//!
//! The rule: 1 to [`MAX_NAME_CHARS`] characters, each a letter, a digit, `_` or
//! `-`; schema names do not start with `_` (pitlake's own folders beside the
//! schemas do). Dots would be read as namespace separators by the Iceberg
//! catalog and by other engines, `$` names a metadata table (`t$snapshots`),
//! and separators, `.`/`..` and control characters would leave the folder.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The schema of pitlake's system tables (`system.ingest_status`): no
/// warehouse schema may take its name.
pub const SYSTEM_SCHEMA: &str = "system";

/// The schema of a session's temporary tables (`temp.labels`): no warehouse
/// schema may take its name.
pub const TEMP_SCHEMA: &str = "temp";

/// The longest schema or table name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// What a name names, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Schema,
    Table,
}

impl NameKind {
    fn as_str(self) -> &'static str {
        match self {
            NameKind::Schema => "schema",
            NameKind::Table => "table",
        }
    }
}

/// Checks a schema or table name against the rule of this module.
pub fn check_name(kind: NameKind, name: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidName {
        kind: kind.as_str(),
        name: printable(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("a name needs at least one character".into()));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(bad(format!(
            "it has {chars} characters, more than the {MAX_NAME_CHARS} allowed"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(bad(format!(
            "{} is not allowed: names hold letters, digits, _ and -",
            describe_char(c)
        )));
    }
    if kind == NameKind::Schema && name.starts_with('_') {
        return Err(bad(
            "schema names starting with _ are reserved for pitlake's own folders".into(),
        ));
    }
    Ok(())
}

/// A table name resolved to its schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    /// A checked name: both parts follow the rule of this module.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Result<Self> {
        let (schema, table) = (schema.into(), table.into());
        check_name(NameKind::Schema, &schema)?;
        check_name(NameKind::Table, &table)?;
        Ok(TableName { schema, table })
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// `root/part/part/…`, where every part must be one plain path component
/// (no separator, not `.` or `..`, not absolute, not empty): the result is
/// always inside `root`.
pub fn warehouse_path(root: &Path, parts: &[&str]) -> Result<PathBuf> {
    let mut path = root.to_path_buf();
    for part in parts {
        let mut components = Path::new(part).components();
        let plain = matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(c)), None) if c == std::ffi::OsStr::new(part)
        );
        if !plain || part.chars().any(char::is_control) {
            return Err(Error::InvalidName {
                kind: "path part",
                name: printable(part),
                reason: format!("it would lead outside {}", root.display()),
            });
        }
        path.push(part);
    }
    Ok(path)
}

/// The name as it can be shown in one line of an error.
fn printable(name: &str) -> String {
    let shown: String = name.chars().take(MAX_NAME_CHARS).collect();
    let shown = shown.escape_debug().to_string();
    if name.chars().count() > MAX_NAME_CHARS {
        format!("{shown}…")
    } else {
        shown
    }
}

fn describe_char(c: char) -> String {
    match c {
        '/' | '\\' => format!("the path separator {c:?}"),
        '.' => "'.' (a namespace separator to Iceberg catalogs)".into(),
        '$' => "'$' (it names metadata tables, as in t$snapshots)".into(),
        c if c.is_control() => format!("the control character {:?}", c),
        c => format!("{c:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in [
            "t",
            "airline_features",
            "Fg-2",
            "données",
            "x".repeat(128).as_str(),
        ] {
            assert!(check_name(NameKind::Table, name).is_ok(), "{name}");
        }
        assert!(check_name(NameKind::Schema, "default").is_ok());
    }

    #[test]
    fn names_that_leave_the_folder_or_confuse_catalogs_fail() {
        let long = "x".repeat(129);
        for name in [
            "", ".", "..", "../..", "a/b", "/etc", "a\\b", "a.b", "t$files", "a\0b", "a\nb", " ",
            &long,
        ] {
            let err = check_name(NameKind::Table, name)
                .expect_err("must fail")
                .to_string();
            assert!(err.starts_with("invalid table name"), "{name:?}: {err}");
        }
        assert!(check_name(NameKind::Schema, "_streams").is_err());
        assert!(check_name(NameKind::Table, "_staging").is_ok());
    }

    #[test]
    fn warehouse_paths_stay_under_the_root() {
        let root = Path::new("/w");
        assert_eq!(
            warehouse_path(root, &["_streams", "s", "t"]).expect("must work"),
            Path::new("/w/_streams/s/t")
        );
        for part in ["..", ".", "", "/", "/etc", "a/b", "a/../b", "a\nb"] {
            assert!(warehouse_path(root, &["s", part]).is_err(), "{part:?}");
        }
    }
}
