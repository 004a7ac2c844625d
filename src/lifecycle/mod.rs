//! What happens to rows after they are written: DELETE rewrites the files
//! that hold them into a new snapshot (history keeps them). Every change
//! commits through `catalog::commit`.

mod delete;
mod matching;

pub use delete::{Removed, delete_rows};
