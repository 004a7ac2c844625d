//! Writes: rows from INSERT, COPY and other paths into Iceberg snapshots.

mod claim;
mod conform;
pub mod stream;
pub mod vacuum;
pub mod wal;
mod writer;

pub use conform::{Target, by_name, conform};
pub use writer::{WriteOutcome, target_of, write_snapshot};
