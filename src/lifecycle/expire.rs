//! `CALL system.expire_snapshots(table => …, older_than => …, retain_last => …)`:
//! snapshots older than a time leave the table's history, and the files
//! only they needed leave the disk.
//!
//! Kept whatever their age: the current snapshot and the `retain_last` most
//! recent of its ancestry, every snapshot a branch or a live tag names (a
//! tag past its RETAIN time is dropped with its snapshot), and the newest
//! ancestor that records a stream commit (it is where a restarted stream
//! log learns what is committed).

use std::collections::HashSet;

use futures::FutureExt;
use iceberg::TableUpdate;
use iceberg::table::Table;

use crate::catalog::{self, Change, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::{delete_files, snapshot_files, table_refs, wal_lsn_range};

/// What an expiry removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub snapshots: usize,
    pub data_files: usize,
    pub manifests: usize,
    pub manifest_lists: usize,
}

/// Expires the snapshots of `name` committed before `older_than_ms`,
/// keeping at least `retain_last` of the current ancestry.
pub async fn expire_snapshots(
    warehouse: &Warehouse,
    name: &TableName,
    older_than_ms: i64,
    retain_last: usize,
) -> Result<Expired> {
    if retain_last == 0 {
        return Err(Error::Invalid(
            "expire_snapshots: retain_last is at least 1 (the current snapshot stays)".into(),
        ));
    }
    let label = name.to_string();
    let chosen = std::sync::Mutex::new((Vec::<i64>::new(), None::<Table>));
    let chosen_ref = &chosen;
    catalog::commit(warehouse, name, |table: Table| {
        async move {
            let (expire, dropped_tags) = choose(&table, older_than_ms, retain_last, now_ms())?;
            let mut updates: Vec<TableUpdate> = dropped_tags
                .into_iter()
                .map(|ref_name| TableUpdate::RemoveSnapshotRef { ref_name })
                .collect();
            if !expire.is_empty() {
                updates.push(TableUpdate::RemoveSnapshots {
                    snapshot_ids: expire.clone(),
                });
            }
            *chosen_ref.lock().unwrap_or_else(|e| e.into_inner()) = (expire, Some(table));
            Ok(Staged {
                change: Change::Updates(updates),
                written: Vec::new(),
            })
        }
        .boxed()
    })
    .await?;
    let (expired, before) = chosen.into_inner().unwrap_or_else(|e| e.into_inner());
    let Some(before) = before else {
        return Ok(Expired::default());
    };
    if expired.is_empty() {
        return Ok(Expired::default());
    }
    delete_unreferenced(&label, &before, &expired).await
}

/// The snapshots to expire and the tags to drop.
fn choose(
    table: &Table,
    older_than_ms: i64,
    retain_last: usize,
    now_ms: i64,
) -> Result<(Vec<i64>, Vec<String>)> {
    let metadata = table.metadata();
    let mut keep: HashSet<i64> = HashSet::new();
    let mut dropped_tags = Vec::new();
    for r in table_refs(table)? {
        let age = metadata
            .snapshot_by_id(r.snapshot_id)
            .map(|s| now_ms - s.timestamp_ms());
        let expired_tag = !r.is_branch
            && r.max_ref_age_ms
                .zip(age)
                .is_some_and(|(max, age)| age > max);
        if expired_tag {
            dropped_tags.push(r.name);
        } else {
            keep.insert(r.snapshot_id);
        }
    }
    // The current ancestry, newest first.
    let mut cursor = metadata.current_snapshot_id();
    let mut position = 0;
    let mut stream_mark_kept = false;
    while let Some(id) = cursor {
        if position < retain_last {
            keep.insert(id);
        }
        if !stream_mark_kept && wal_lsn_range(table, id).is_some() {
            keep.insert(id);
            stream_mark_kept = true;
        }
        position += 1;
        cursor = metadata
            .snapshot_by_id(id)
            .and_then(|s| s.parent_snapshot_id());
    }
    let mut expire: Vec<i64> = metadata
        .snapshots()
        .filter(|s| s.timestamp_ms() < older_than_ms && !keep.contains(&s.snapshot_id()))
        .map(|s| s.snapshot_id())
        .collect();
    expire.sort_unstable();
    // A tag dropped for its age whose snapshot stays is dropped all the same.
    Ok((expire, dropped_tags))
}

/// Deletes the data files, manifests and manifest lists that the expired
/// snapshots of `before` used and no remaining snapshot does.
async fn delete_unreferenced(name: &str, before: &Table, expired: &[i64]) -> Result<Expired> {
    let expired: HashSet<i64> = expired.iter().copied().collect();
    let gone = snapshot_files(name, before, |id| expired.contains(&id)).await?;
    let kept = snapshot_files(name, before, |id| !expired.contains(&id)).await?;
    Ok(Expired {
        snapshots: expired.len(),
        data_files: delete_files(before, gone.data.difference(&kept.data)).await,
        manifests: delete_files(before, gone.manifests.difference(&kept.manifests)).await,
        manifest_lists: delete_files(before, gone.manifest_lists.difference(&kept.manifest_lists))
            .await,
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
