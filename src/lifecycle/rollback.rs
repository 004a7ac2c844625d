//! `CALL system.rollback_to_snapshot('t', id)`: the table's current
//! snapshot becomes an earlier one of its ancestry again (Iceberg's
//! rollback: no new snapshot; the later ones stay in history, readable by
//! time travel, until expired).

use futures::FutureExt;
use iceberg::TableUpdate;
use iceberg::spec::{SnapshotReference, SnapshotRetention};
use iceberg::table::Table;

use crate::catalog::{self, Change, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::wal_lsn_range;

/// Makes `snapshot_id` current again; returns the snapshot that was.
pub async fn rollback_to_snapshot(
    warehouse: &Warehouse,
    name: &TableName,
    snapshot_id: i64,
) -> Result<Option<i64>> {
    let label = name.to_string();
    let previous = std::sync::Mutex::new(None);
    let (label_ref, previous_ref) = (&label, &previous);
    catalog::commit(warehouse, name, |table: Table| {
        async move {
            let metadata = table.metadata();
            let current = metadata.current_snapshot_id();
            if metadata.snapshot_by_id(snapshot_id).is_none() {
                return Err(Error::SnapshotNotFound {
                    table: label_ref.clone(),
                    snapshot_id,
                });
            }
            // Walk back from the current snapshot to the target: it must be
            // an ancestor, and no stream commit may lie in between (a
            // restarted stream log would commit its records again).
            let mut cursor = current;
            loop {
                match cursor {
                    Some(id) if id == snapshot_id => break,
                    Some(id) => {
                        if wal_lsn_range(&table, id).is_some() {
                            return Err(Error::NotSupported(format!(
                                "rolling {label_ref} back over snapshot {id}, which committed \
                                 streamed records: write the rows to keep again instead"
                            )));
                        }
                        cursor = metadata
                            .snapshot_by_id(id)
                            .and_then(|s| s.parent_snapshot_id());
                    }
                    None => {
                        return Err(Error::Invalid(format!(
                            "snapshot {snapshot_id} is not an ancestor of {label_ref}'s current \
                             snapshot: only a version the table went through can be rolled back to"
                        )));
                    }
                }
            }
            *previous_ref.lock().unwrap_or_else(|e| e.into_inner()) = current;
            Ok(Staged {
                change: Change::Updates(vec![TableUpdate::SetSnapshotRef {
                    ref_name: "main".to_string(),
                    reference: SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                }]),
                written: Vec::new(),
            })
        }
        .boxed()
    })
    .await?;
    Ok(previous.into_inner().unwrap_or_else(|e| e.into_inner()))
}
