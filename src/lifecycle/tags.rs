//! Tags: names for snapshots, kept in the table's metadata as Iceberg
//! refs, so pyiceberg, Spark and Trino see them too, and `FOR VERSION AS OF
//! 'name'` reads them.

use futures::FutureExt;
use iceberg::TableUpdate;
use iceberg::spec::{SnapshotReference, SnapshotRetention};
use iceberg::table::Table;

use crate::catalog::{self, Change, Staged, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::table_refs;

/// The branch every commit moves: not a tag name.
const MAIN: &str = "main";

/// A new tag, or one replaced.
#[derive(Debug, Clone)]
pub struct NewTag {
    pub name: String,
    /// The current snapshot when `None`.
    pub snapshot: Option<i64>,
    pub retain_ms: Option<i64>,
    pub replace: bool,
    pub if_not_exists: bool,
}

/// Tags a snapshot of `table`; returns the snapshot tagged (`None` when the
/// tag existed and `if_not_exists` was given).
pub async fn create_tag(
    warehouse: &Warehouse,
    table: &TableName,
    tag: &NewTag,
) -> Result<Option<i64>> {
    check_tag_name(&tag.name)?;
    let label = table.to_string();
    let tagged = std::sync::Mutex::new(None);
    let (label_ref, tagged_ref) = (&label, &tagged);
    catalog::commit(warehouse, table, |current: Table| {
        async move {
            let metadata = current.metadata();
            let refs = table_refs(&current)?;
            let existing = refs.iter().find(|r| r.name == tag.name);
            if let Some(existing) = existing {
                if !existing.is_branch && tag.if_not_exists {
                    *tagged_ref.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(Staged {
                        change: Change::Updates(Vec::new()),
                        written: Vec::new(),
                    });
                }
                if existing.is_branch || !tag.replace {
                    return Err(Error::AlreadyExists {
                        kind: if existing.is_branch { "branch" } else { "tag" },
                        name: format!("{} of {label_ref}", tag.name),
                    });
                }
            }
            let snapshot = match tag.snapshot {
                Some(id) => {
                    if metadata.snapshot_by_id(id).is_none() {
                        return Err(Error::SnapshotNotFound {
                            table: label_ref.clone(),
                            snapshot_id: id,
                        });
                    }
                    id
                }
                None => metadata.current_snapshot_id().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{label_ref} has no snapshot to tag yet: write to it first"
                    ))
                })?,
            };
            *tagged_ref.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
            Ok(Staged {
                change: Change::Updates(vec![TableUpdate::SetSnapshotRef {
                    ref_name: tag.name.clone(),
                    reference: SnapshotReference::new(
                        snapshot,
                        SnapshotRetention::Tag {
                            max_ref_age_ms: tag.retain_ms,
                        },
                    ),
                }]),
                written: Vec::new(),
            })
        }
        .boxed()
    })
    .await?;
    Ok(tagged.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Drops a tag of `table`; false when there was none and `if_exists` said
/// that is fine.
pub async fn drop_tag(
    warehouse: &Warehouse,
    table: &TableName,
    name: &str,
    if_exists: bool,
) -> Result<bool> {
    let label = table.to_string();
    let dropped = std::sync::Mutex::new(false);
    let (label_ref, dropped_ref) = (&label, &dropped);
    catalog::commit(warehouse, table, |current: Table| {
        async move {
            let refs = table_refs(&current)?;
            let updates = match refs.iter().find(|r| r.name == name) {
                Some(existing) if existing.is_branch => {
                    return Err(Error::Invalid(format!(
                        "{name} is a branch of {label_ref}, not a tag"
                    )));
                }
                Some(_) => vec![TableUpdate::RemoveSnapshotRef {
                    ref_name: name.to_string(),
                }],
                None if if_exists => Vec::new(),
                None => {
                    return Err(Error::Invalid(format!("{label_ref} has no tag {name}")));
                }
            };
            *dropped_ref.lock().unwrap_or_else(|e| e.into_inner()) = !updates.is_empty();
            Ok(Staged {
                change: Change::Updates(updates),
                written: Vec::new(),
            })
        }
        .boxed()
    })
    .await?;
    Ok(dropped.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// A tag name: not `main`, not empty, not a number (`FOR VERSION AS OF
/// 123` means a snapshot id), printable.
fn check_tag_name(name: &str) -> Result<()> {
    let reason = if name.eq_ignore_ascii_case(MAIN) {
        Some("main is the table's branch")
    } else if name.is_empty() || name.len() > 255 {
        Some("a tag name has 1 to 255 characters")
    } else if name.parse::<i64>().is_ok() {
        Some("a number would read as a snapshot id")
    } else if name.chars().any(char::is_control) {
        Some("control characters are not allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::Invalid(format!("tag name {name:?}: {reason}"))),
        None => Ok(()),
    }
}
