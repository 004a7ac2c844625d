//! What happens to rows after they are written: DELETE rewrites the files
//! that hold them into a new snapshot (history keeps them); ERASE takes them
//! out of every snapshot and off the disk. Every change commits through
//! `catalog::commit`.

mod delete;
mod erase;
mod expire;
mod matching;
mod orphans;
mod rollback;
mod tags;

pub use delete::{Removed, delete_rows};
pub use erase::{Erased, Erasure, erase_rows, finish_journals};
pub use expire::{Expired, expire_snapshots};
pub use orphans::remove_orphan_files;
pub use rollback::rollback_to_snapshot;
pub use tags::{NewTag, create_tag, drop_tag};
