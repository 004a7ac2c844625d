//! Resolving a time-travel clause to one snapshot of one table.
//!
//! System time is the time a snapshot was committed (made current on `main`);
//! a timestamp chooses the snapshot that was current at that instant.

use chrono::{DateTime, TimeZone, Utc};
use iceberg::spec::TableMetadata;

use crate::error::{Error, Result};

/// What a time-travel clause asks for, once its expression is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// `VERSION AS OF <snapshot id>`
    Snapshot(i64),
    /// `VERSION AS OF '<tag or branch>'`
    Ref(String),
    /// `TIMESTAMP AS OF <instant>` / `FOR SYSTEM_TIME AS OF <instant>`
    Timestamp(DateTime<Utc>),
}

/// The snapshot id a clause selects in `table`, or an error naming why none does.
pub fn resolve_snapshot(table: &str, metadata: &TableMetadata, as_of: &AsOf) -> Result<i64> {
    if metadata.snapshots().len() == 0 {
        return Err(Error::NoSnapshots {
            table: table.to_string(),
        });
    }
    match as_of {
        AsOf::Snapshot(id) => metadata
            .snapshot_by_id(*id)
            .map(|s| s.snapshot_id())
            .ok_or_else(|| Error::SnapshotNotFound {
                table: table.to_string(),
                snapshot_id: *id,
            }),
        AsOf::Ref(name) => metadata
            .snapshot_for_ref(name)
            .map(|s| s.snapshot_id())
            .ok_or_else(|| Error::RefNotFound {
                table: table.to_string(),
                reference: name.clone(),
            }),
        AsOf::Timestamp(ts) => {
            let millis = ts.timestamp_millis();
            // The snapshot log lists what `main` pointed to, in commit order.
            let log = metadata.history();
            let chosen = log
                .iter()
                .filter(|entry| entry.timestamp_ms <= millis)
                .max_by_key(|entry| entry.timestamp_ms);
            match chosen {
                Some(entry) => Ok(entry.snapshot_id),
                None => {
                    let first = log
                        .iter()
                        .map(|e| e.timestamp_ms)
                        .min()
                        .or_else(|| metadata.snapshots().map(|s| s.timestamp_ms()).min())
                        .unwrap_or_default();
                    Err(Error::TimestampBeforeFirstSnapshot {
                        table: table.to_string(),
                        timestamp: format_millis(millis),
                        first: format_millis(first),
                    })
                }
            }
        }
    }
}

/// An instant as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn format_millis(millis: i64) -> String {
    match Utc.timestamp_millis_opt(millis).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        None => format!("{millis} ms since the epoch"),
    }
}
