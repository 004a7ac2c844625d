//! What happens to rows after they are written: DELETE rewrites the files
//! that hold them into a new snapshot (history keeps them); ERASE takes them
//! out of every snapshot and off the disk. Every change commits through
//! `catalog::commit`.

mod delete;
mod erase;
mod matching;

pub use delete::{Removed, delete_rows};
pub use erase::{Erased, erase_rows};
