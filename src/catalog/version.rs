//! Whether the catalog changed since a statement last looked, for the price
//! of one SQLite pragma instead of a listing.
//!
//! SQLite's `PRAGMA data_version`, asked again on the same connection,
//! returns another value exactly when some *other* connection committed to
//! the database in between: this process's catalog pool (our own DDL and
//! commits) or another process (a `pitlake sql`, pyiceberg, a second server).
//! Every change to what the warehouse holds is such a commit: a schema or
//! table created or dropped, or a table's new metadata (each Iceberg commit
//! moves the table's metadata pointer in the catalog). So two equal
//! [`CatalogVersion`]s mean the same names and the same current metadata of
//! every table, and what was read at the first may be reused at the second.
//!
//! Asking SQLite means a round trip to its connection's worker thread, two
//! thread switches that cost more than the rest of a `SELECT 1`. So in the
//! rollback-journal mode the catalog is kept in (iceberg-catalog-sql and
//! pyiceberg leave it there) the watch reads the same fact from the file:
//! the database header's change counter, which every write transaction
//! increments (sqlite.org/fileformat.html, offset 24), with the file's
//! identity, size and modification time. While a write is under way (a
//! non-empty `catalog.db-journal`) the header says nothing: the version is
//! unknown, as it is in WAL mode (header bytes 18-19), where the watch asks
//! `PRAGMA data_version` on a read-only connection of its own instead.
//!
//! When neither can answer it says so (`None`) and callers read the catalog
//! as if it had changed.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::SystemTime;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// The database file `db` as this process reads its header: opened once
/// and never closed. Closing any descriptor of a file drops every POSIX
/// lock the process holds on it, SQLite's own included
/// (sqlite.org/howtocorrupt.html, 2.2): a header read that opened and closed
/// the file let another process take a write under way here for a crash,
/// roll it back and delete its journal, and the catalog row then named a
/// metadata file this process had deleted. A file replaced at the same path
/// (another inode) gets a descriptor of its own; the old one stays open.
///
/// Also returns the file's metadata as its path has it now (one `stat`:
/// each descriptor is kept with its inode, not asked for it again).
fn kept_open(db: &std::path::Path) -> Option<(std::sync::Arc<std::fs::File>, std::fs::Metadata)> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Kept = HashMap<PathBuf, Vec<(u64, Arc<std::fs::File>)>>;
    static OPEN: OnceLock<Mutex<Kept>> = OnceLock::new();
    let meta = std::fs::metadata(db).ok()?;
    let inode = meta.ino();
    let mut open = OPEN
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let files = open.entry(db.to_path_buf()).or_default();
    if let Some((_, file)) = files.iter().find(|(ino, _)| *ino == inode) {
        return Some((file.clone(), meta));
    }
    let file = Arc::new(std::fs::File::open(db).ok()?);
    // The file opened is the one stat saw unless it was replaced meanwhile.
    let opened = file.metadata().ok()?;
    files.push((opened.ino(), file.clone()));
    (opened.ino() == inode).then_some((file, meta))
}

/// A point in the catalog's history: equal versions, equal catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogVersion {
    /// Read from the database file (rollback-journal mode).
    File {
        inode: u64,
        len: u64,
        modified: Option<SystemTime>,
        /// The header's file change counter and its version-valid-for copy.
        counter: u32,
        valid_for: u32,
    },
    /// Asked of SQLite (WAL mode).
    DataVersion {
        /// Which connection of the watch answered (values of two
        /// connections do not compare).
        connection: u64,
        data_version: i64,
    },
}

/// Asks the catalog database for its [`CatalogVersion`].
#[derive(Debug)]
pub struct VersionWatch {
    db: PathBuf,
    state: tokio::sync::Mutex<Watch>,
}

#[derive(Debug, Default)]
struct Watch {
    connection: Option<SqliteConnection>,
    /// Connections opened so far.
    opened: u64,
}

impl VersionWatch {
    /// A watch of the SQLite database `db` (opened at first use).
    pub fn new(db: PathBuf) -> Self {
        VersionWatch {
            db,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// The catalog's version now; `None` when the database cannot tell.
    pub async fn current(&self) -> Option<CatalogVersion> {
        match self.read_header() {
            Some(Header::Version(version)) => Some(version),
            Some(Header::Writing) => None,
            None => self.ask().await,
        }
    }

    /// The version as the database file's header has it; `None` where the
    /// header does not keep it (WAL mode, or not a file SQLite wrote).
    fn read_header(&self) -> Option<Header> {
        let (file, meta) = kept_open(&self.db)?;
        let mut header = [0u8; 100];
        file.read_exact_at(&mut header, 0).ok()?;
        // Format 3, read and write versions 1: the rollback journal.
        if &header[..16] != b"SQLite format 3\0" || header[18] != 1 || header[19] != 1 {
            return None;
        }
        let mut journal = self.db.clone().into_os_string();
        journal.push("-journal");
        if std::fs::metadata(&journal).is_ok_and(|j| j.len() > 0) {
            return Some(Header::Writing);
        }
        let word = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        Some(Header::Version(CatalogVersion::File {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            counter: word(24),
            valid_for: word(92),
        }))
    }

    /// `PRAGMA data_version` on the watch's own connection.
    async fn ask(&self) -> Option<CatalogVersion> {
        let mut watch = self.state.lock().await;
        if watch.connection.is_none() {
            watch.opened += 1;
            let options = SqliteConnectOptions::new()
                .filename(&self.db)
                .read_only(true);
            match SqliteConnection::connect_with(&options).await {
                Ok(connection) => watch.connection = Some(connection),
                Err(e) => {
                    tracing::warn!("cannot watch the catalog for changes: {e}");
                    return None;
                }
            }
        }
        let connection = watch.connection.as_mut()?;
        match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(connection)
            .await
        {
            Ok(data_version) => Some(CatalogVersion::DataVersion {
                connection: watch.opened,
                data_version,
            }),
            Err(e) => {
                tracing::warn!("cannot watch the catalog for changes: {e}");
                watch.connection = None;
                None
            }
        }
    }
}

/// What the database file's header tells.
enum Header {
    Version(CatalogVersion),
    /// A write is under way (its journal is there): wait for it to end.
    Writing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteJournalMode;

    /// A writer on its own connection, as another process would be.
    async fn writer(db: &std::path::Path, mode: SqliteJournalMode) -> SqliteConnection {
        let options = SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(true)
            .journal_mode(mode);
        SqliteConnection::connect_with(&options)
            .await
            .expect("connect")
    }

    async fn write(connection: &mut SqliteConnection, sql: &str) {
        sqlx::query(sql)
            .execute(&mut *connection)
            .await
            .expect("write");
    }

    #[tokio::test]
    async fn every_commit_moves_the_version_in_both_journal_modes() {
        for (mode, from_file) in [
            (SqliteJournalMode::Delete, true),
            (SqliteJournalMode::Wal, false),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = dir.path().join("catalog.db");
            let mut other = writer(&db, mode).await;
            write(&mut other, "CREATE TABLE t (x INTEGER)").await;
            let watch = VersionWatch::new(db.clone());
            let first = watch.current().await.expect("a version");
            assert_eq!(
                matches!(first, CatalogVersion::File { .. }),
                from_file,
                "{mode:?}: {first:?}"
            );
            assert_eq!(watch.current().await, Some(first), "{mode:?}: no change");
            let mut seen = vec![first];
            for i in 0..3 {
                write(&mut other, &format!("INSERT INTO t VALUES ({i})")).await;
                let now = watch.current().await.expect("a version");
                assert!(!seen.contains(&now), "{mode:?}: commit {i} not seen");
                seen.push(now);
            }
            // A read changes nothing.
            sqlx::query("SELECT count(*) FROM t")
                .fetch_one(&mut other)
                .await
                .expect("read");
            assert_eq!(watch.current().await, seen.last().copied(), "{mode:?}");
        }
    }
}
