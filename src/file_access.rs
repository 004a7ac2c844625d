//! Which files of the host `COPY … FROM 'file'` may read and `COPY … TO 'file'`
//! may write.
//!
//! A local user (`pitlake sql`, the Rust API) reads and writes what their own
//! account can, except the warehouse's files: a `COPY … TO` over `catalog.db` or
//! a table's data file would break the warehouse. A client of the server gets
//! only the folders the operator configured (`--import-dir`, `--export-dir`),
//! none by default: the server's account is not the client's. Paths are judged
//! after following symbolic links and `..`, so neither leads out of a folder.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The policy of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// Anything the process can reach, except inside the warehouse.
    Local,
    /// Only under these folders (each canonical), never inside the warehouse.
    Folders {
        import: Option<PathBuf>,
        export: Option<PathBuf>,
    },
}

/// Whether a path is read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl FileAccess {
    /// Folders of a server; each must exist.
    pub fn folders(import: Option<&Path>, export: Option<&Path>) -> Result<Self> {
        let canonical = |dir: Option<&Path>| -> Result<Option<PathBuf>> {
            dir.map(|dir| {
                dir.canonicalize().map_err(|source| Error::Io {
                    path: dir.display().to_string(),
                    source,
                })
            })
            .transpose()
        };
        Ok(FileAccess::Folders {
            import: canonical(import)?,
            export: canonical(export)?,
        })
    }

    /// The path to open for `path`, if this policy lets `access` reach it.
    pub fn check(&self, warehouse: &Path, path: &str, access: Access) -> Result<PathBuf> {
        let denied = |reason: String| Error::FileDenied {
            path: path.to_string(),
            reason,
        };
        if path.contains("://") {
            return Err(denied(
                "only local files are read and written, not URLs".into(),
            ));
        }
        let resolved = resolve(Path::new(path));
        let FileAccess::Folders { import, export } = self else {
            let resolved = resolved.map_err(|e| denied(e.to_string()))?;
            return outside_warehouse(resolved, warehouse).map_err(denied);
        };
        let (folder, flag, verb) = match access {
            Access::Read => (import, "--import-dir", "reads"),
            Access::Write => (export, "--export-dir", "writes"),
        };
        let Some(folder) = folder else {
            return Err(denied(format!(
                "this server {verb} no files for its clients (start it with {flag} to allow a folder)"
            )));
        };
        // A path that does not resolve is refused like one outside the
        // folder: a client learns nothing of what exists elsewhere.
        match resolved {
            Ok(resolved) if resolved.starts_with(folder) => {
                outside_warehouse(resolved, warehouse).map_err(denied)
            }
            _ => Err(denied(format!(
                "this server {verb} files only under {} ({flag})",
                folder.display()
            ))),
        }
    }
}

fn outside_warehouse(resolved: PathBuf, warehouse: &Path) -> std::result::Result<PathBuf, String> {
    if resolved.starts_with(warehouse) {
        return Err("it is inside the warehouse, whose files only pitlake itself writes".into());
    }
    Ok(resolved)
}

/// `path` made absolute with every symbolic link and `..` resolved. The part
/// that does not exist yet (a file, or folders COPY TO will create) is
/// resolved through the deepest folder that does, and may not hold `..`.
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path;
    let mut missing = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut resolved = real;
            for part in missing.iter().rev() {
                resolved.push(part);
            }
            return Ok(resolved);
        }
        match existing.components().next_back() {
            Some(Component::Normal(name)) => missing.push(name.to_owned()),
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a path whose folders do not exist may not go up (..)",
                ));
            }
        }
        existing = match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_access_keeps_out_of_the_warehouse() {
        let dir = tempfile::tempdir().expect("must work");
        let warehouse = dir.path().join("wh");
        std::fs::create_dir_all(warehouse.join("s")).expect("must work");
        let warehouse = warehouse.canonicalize().expect("must work");
        let out = dir.path().join("out.parquet");
        let local = FileAccess::Local;
        assert!(
            local
                .check(&warehouse, out.to_str().expect("must work"), Access::Write)
                .is_ok()
        );
        let inside = warehouse.join("catalog.db");
        let err = local
            .check(
                &warehouse,
                inside.to_str().expect("must work"),
                Access::Write,
            )
            .expect_err("must fail");
        assert!(err.to_string().contains("inside the warehouse"), "{err}");
        // `..` and symbolic links are followed before judging.
        let sneaky = format!("{}/../wh/s/../catalog.db", warehouse.display());
        assert!(local.check(&warehouse, &sneaky, Access::Write).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&warehouse, &link).expect("must work");
        let via_link = link.join("s/x.parquet");
        assert!(
            local
                .check(
                    &warehouse,
                    via_link.to_str().expect("must work"),
                    Access::Write
                )
                .is_err()
        );
        assert!(
            local
                .check(&warehouse, "s3://bucket/x", Access::Read)
                .is_err()
        );
    }

    #[test]
    fn server_access_is_limited_to_its_folders() {
        let dir = tempfile::tempdir().expect("must work");
        let warehouse = dir.path().join("wh");
        let import = dir.path().join("in");
        std::fs::create_dir_all(&warehouse).expect("must work");
        std::fs::create_dir_all(&import).expect("must work");
        let warehouse = warehouse.canonicalize().expect("must work");
        let none = FileAccess::folders(None, None).expect("must work");
        let file = import.join("a.csv");
        let err = none
            .check(&warehouse, file.to_str().expect("must work"), Access::Read)
            .expect_err("must fail");
        assert!(err.to_string().contains("--import-dir"), "{err}");
        let some = FileAccess::folders(Some(&import), None).expect("must work");
        assert!(
            some.check(&warehouse, file.to_str().expect("must work"), Access::Read)
                .is_ok()
        );
        assert!(
            some.check(&warehouse, file.to_str().expect("must work"), Access::Write)
                .is_err()
        );
        let outside = format!("{}/../a.csv", import.display());
        assert!(some.check(&warehouse, &outside, Access::Read).is_err());
        assert!(
            some.check(&warehouse, "/etc/passwd.csv", Access::Read)
                .is_err()
        );
    }
}
