//! A table's commit lock, so that the writers of one machine take turns.

use std::fs::File;
use std::path::Path;

/// A table's commit lock: held while one writer commits, so that writers of
/// this machine, in this process or another, take turns instead of racing
/// for the catalog row and retrying. Other engines do not take it; their
/// rare conflicts are what the retries are for.
#[derive(Debug)]
pub struct CommitLock {
    _file: File,
}

impl CommitLock {
    /// Waits (asynchronously) for the lock of the table whose metadata lives
    /// in `metadata_dir`; `None` when the lock file cannot be made (a
    /// read-only folder): the commit then relies on its retries alone.
    pub async fn acquire(metadata_dir: &Path) -> Option<Self> {
        let path = metadata_dir.join(".commit-lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Some(CommitLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(_)) => return None,
            }
        }
    }
}
