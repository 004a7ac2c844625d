//! A running write's claim on the data files it is making.
//!
//! Every write names its data files with a prefix of its own. Before it makes
//! the first, it creates `data/.writing-<prefix>` and holds an exclusive lock
//! on it until it has committed or deleted its files. A process that dies
//! (killed during a COPY, a full disk) drops its lock with it, so `VACUUM` can
//! tell the files of a write still running, in this process or another, from
//! the leftovers of one that will never commit: it removes a file only when no
//! snapshot references it and no live claim covers it.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name prefix of a claim.
pub const CLAIM_PREFIX: &str = ".writing-";

/// A held claim; dropping it releases the lock and removes the file.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    _file: File,
}

impl Claim {
    /// Claims the files named `<prefix>-…` in `data_dir` (created if needed).
    pub fn take(data_dir: &Path, prefix: &str) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        // Locked under a temporary name, then renamed: a claim is never seen
        // under its real name unlocked, where VACUUM would take it for dead.
        let pending = data_dir.join(format!(".claiming-{prefix}"));
        let file = File::create(&pending).map_err(io(&pending))?;
        file.lock().map_err(io(&pending))?;
        let path = data_dir.join(format!("{CLAIM_PREFIX}{prefix}"));
        std::fs::rename(&pending, &path).map_err(io(&path))?;
        Ok(Claim { path, _file: file })
    }

    /// Whether the claim file at `path` is held by a running write; a dead
    /// one is removed. Errors count as alive: nothing is deleted on a doubt.
    pub fn is_alive(path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            // Gone: its write finished (committed, or cleaned up after itself).
            return false;
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = std::fs::remove_file(path);
                false
            }
            Err(_) => true,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_claim_is_alive_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let claim = Claim::take(dir.path(), "abc").expect("claim");
        let path = dir.path().join(".writing-abc");
        assert!(Claim::is_alive(&path));
        drop(claim);
        assert!(!path.exists());
        // A claim left by a process that died: a file nobody locks.
        std::fs::write(&path, "").expect("stale claim");
        assert!(!Claim::is_alive(&path));
        assert!(!path.exists(), "a dead claim is removed");
    }
}
