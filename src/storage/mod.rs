//! Reading an Iceberg table's data below any engine: what changed between
//! snapshots, rows in the order they were ingested (file, then row), and the
//! commit protocol that ties a snapshot to the stream log records it holds.
//! The online store, the ingestion-order scan and the stream committer all
//! build on it, and every commit writes its snapshot's manifests with it; it
//! depends on nothing of pitlake but its errors.

mod files;
mod history_writer;
mod piece_reader;
mod read_at;
mod refs;
mod snapshot_writer;
mod snapshots;

pub use files::{SnapshotFiles, delete_files, local_path, snapshot_files};
pub use history_writer::{HISTORY_PROPERTY, History, rewrite_history};
pub use piece_reader::RowTest;
pub use read_at::{
    ReadAt, as_declared, file_schema, plan_tasks, read_schema, with_schema_of, without_nested_ids,
};
pub use refs::{TableRef, table_refs};
pub use snapshot_writer::{Rewritten, SnapshotWriter, current_manifests};
pub use snapshots::{
    Changes, ScanPiece, WAL_FIRST_LSN, WAL_LAST_LSN, changes_since, committed_lsn, plan_pieces,
    read_files, read_pieces, read_rows, wal_lsn_range,
};
