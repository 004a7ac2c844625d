//! Writes: rows from INSERT, COPY and other paths into Iceberg snapshots
//! ([`WritePath`]: one commit, then the online store told); stream logs;
//! VACUUM.

mod claim;
pub mod compact;
mod conform;
pub mod stream;
pub mod vacuum;
pub mod wal;
mod write_path;
mod writer;

pub use conform::{Target, by_name, conform};
pub use write_path::{IngestMode, WritePath};
pub use writer::{PendingFiles, WriteOutcome, target_of, write_snapshot};
