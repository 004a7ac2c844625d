//! A new snapshot's manifests and manifest list, written against the table
//! as loaded: the files an append adds, the manifests a copy-on-write delete
//! rewrites, the ones it keeps. The result is the updates that add the
//! snapshot and move `main` to it, for the commit path in `catalog/`.
//!
//! ```text
//!  current snapshot's manifest list ─► kept manifests ─────────────┐
//!                                   └► rewritten: a file dropped,  ├─► new manifest list ─► AddSnapshot
//!                                      or replaced in its place    │                        SetSnapshotRef(main)
//!  added data files ─► one new manifest ───────────────────────────┘
//! ```
//!
//! A replacement file keeps the data sequence number of the file it
//! replaces and its place in the manifest, so rows keep their ingestion
//! order (ASOF JOIN's tie-break) through a delete. A compaction merges every
//! manifest into one and gives each new file the data sequence number of
//! the newest commit it holds rows of.

use std::collections::{HashMap, HashSet};

use iceberg::TableUpdate;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestEntry, ManifestFile, ManifestListWriter,
    ManifestStatus, ManifestWriter, ManifestWriterBuilder, Operation, PartitionSpec, SchemaRef,
    Snapshot, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary,
};
use iceberg::table::Table;

use crate::error::{Error, Result};

/// The branch every pitlake commit moves.
const MAIN: &str = "main";

/// Summary totals carried from snapshot to snapshot.
const TOTALS: [&str; 3] = ["total-records", "total-data-files", "total-files-size"];

/// A snapshot being written; [`SnapshotWriter::finish`] gives its updates.
pub struct SnapshotWriter<'a> {
    name: &'a str,
    table: &'a Table,
    snapshot_id: i64,
    sequence_number: i64,
    commit_id: uuid::Uuid,
    manifests: Vec<ManifestFile>,
    /// Every file this writer made, deleted by the commit path if the
    /// snapshot does not land.
    written: Vec<String>,
    summary: SnapshotSummaryCollector,
    /// Added minus removed, for each of [`TOTALS`].
    delta: [i128; 3],
}

/// What one manifest rewrite did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rewritten {
    /// Files of the manifest that were dropped or replaced.
    pub files: usize,
}

impl<'a> SnapshotWriter<'a> {
    /// A snapshot to follow `table`'s current one. Tables of format v3 are
    /// refused (their row lineage is not kept yet).
    pub fn new(name: &'a str, table: &'a Table) -> Result<Self> {
        let metadata = table.metadata();
        if metadata.format_version() == FormatVersion::V3 {
            return Err(Error::NotSupported(format!(
                "{name} is an Iceberg format v3 table: pitlake writes to v1 and v2 tables"
            )));
        }
        Ok(SnapshotWriter {
            name,
            table,
            snapshot_id: unused_snapshot_id(table),
            sequence_number: metadata.next_sequence_number(),
            commit_id: uuid::Uuid::new_v4(),
            manifests: Vec::new(),
            written: Vec::new(),
            summary: SnapshotSummaryCollector::default(),
            delta: [0; 3],
        })
    }

    /// The id the snapshot will have.
    pub fn snapshot_id(&self) -> i64 {
        self.snapshot_id
    }

    /// The files written so far.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// Adds `files` as new data in one manifest of their own.
    pub async fn add_files(&mut self, files: Vec<DataFile>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let metadata = self.table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().as_ref().clone();
        let mut writer = self.manifest_writer(schema, spec)?;
        for file in files {
            self.count_added(&file);
            // A negative number: the entry inherits the snapshot's.
            writer
                .add_file(file, -1)
                .map_err(Error::iceberg(self.context()))?;
        }
        let manifest = writer
            .write_manifest_file()
            .await
            .map_err(Error::iceberg(self.context()))?;
        self.manifests.push(manifest);
        Ok(())
    }

    /// Carries a manifest of the current snapshot over unchanged.
    pub fn keep(&mut self, manifest: ManifestFile) {
        self.manifests.push(manifest);
    }

    /// Carries `manifest` over: unchanged when it lists none of the live
    /// files named in `replace`, else rewritten with them marked deleted
    /// and their replacements (if any) in their place, with their data
    /// sequence number. Entries deleted by earlier snapshots are left out of
    /// a rewritten manifest, as Iceberg's writers do.
    pub async fn carry(
        &mut self,
        manifest: ManifestFile,
        replace: &HashMap<String, Vec<DataFile>>,
    ) -> Result<Rewritten> {
        let loaded = manifest
            .load_manifest(self.table.file_io())
            .await
            .map_err(Error::iceberg(self.context()))?;
        let touched = loaded
            .entries()
            .iter()
            .any(|e| e.is_alive() && replace.contains_key(e.file_path()));
        if !touched {
            self.keep(manifest);
            return Ok(Rewritten::default());
        }
        let (entries, meta) = loaded.into_parts();
        let mut writer =
            self.manifest_writer(meta.schema().clone(), meta.partition_spec().clone())?;
        let mut done = Rewritten::default();
        let context = self.context();
        for entry in entries {
            if entry.status == ManifestStatus::Deleted {
                continue;
            }
            let (sequence, file_sequence) = self.sequences(&manifest, &entry)?;
            let file = entry.data_file.clone();
            match replace.get(file.file_path()) {
                None => {
                    let added_by = entry.snapshot_id.unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(file, added_by, sequence, file_sequence)
                        .map_err(Error::iceberg(context.clone()))?;
                }
                Some(replacements) => {
                    done.files += 1;
                    self.count_removed(&file);
                    writer
                        .add_delete_file(file, sequence, file_sequence)
                        .map_err(Error::iceberg(context.clone()))?;
                    for new in replacements {
                        self.count_added(new);
                        writer
                            .add_file(new.clone(), sequence)
                            .map_err(Error::iceberg(context.clone()))?;
                    }
                }
            }
        }
        let written = writer
            .write_manifest_file()
            .await
            .map_err(Error::iceberg(context))?;
        self.manifests.push(written);
        Ok(done)
    }

    /// Carries every live file of `manifests` into one manifest per
    /// partition spec and schema (merging them), the files named in `remove` marked
    /// deleted, and adds `add` after them, each file with the data sequence
    /// number it is to have.
    pub async fn merge(
        &mut self,
        manifests: Vec<ManifestFile>,
        remove: &HashSet<String>,
        add: Vec<(DataFile, i64)>,
    ) -> Result<()> {
        let context = self.context();
        // One manifest per partition spec and schema: a file's bounds are
        // encoded with the types of the schema its manifest names (a column
        // widened since reads its old bounds wrongly under the new type).
        let mut writers: Vec<((i32, i32), ManifestWriter)> = Vec::new();
        for manifest in manifests {
            let loaded = manifest
                .load_manifest(self.table.file_io())
                .await
                .map_err(Error::iceberg(context.clone()))?;
            let (entries, meta) = loaded.into_parts();
            let key = (meta.partition_spec().spec_id(), meta.schema().schema_id());
            let at = match writers.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    let writer =
                        self.manifest_writer(meta.schema().clone(), meta.partition_spec().clone())?;
                    writers.push((key, writer));
                    writers.len() - 1
                }
            };
            for entry in entries {
                if entry.status == ManifestStatus::Deleted {
                    continue;
                }
                let (sequence, file_sequence) = self.sequences(&manifest, &entry)?;
                let file = entry.data_file.clone();
                let writer = &mut writers[at].1;
                if remove.contains(file.file_path()) {
                    self.count_removed(&file);
                    writer
                        .add_delete_file(file, sequence, file_sequence)
                        .map_err(Error::iceberg(context.clone()))?;
                } else {
                    let added_by = entry.snapshot_id.unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(file, added_by, sequence, file_sequence)
                        .map_err(Error::iceberg(context.clone()))?;
                }
            }
        }
        let metadata = self.table.metadata();
        let default = metadata.default_partition_spec().as_ref().clone();
        let key = (default.spec_id(), metadata.current_schema_id());
        let at = match writers.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                let schema = metadata.current_schema().clone();
                let writer = self.manifest_writer(schema, default.clone())?;
                writers.push((key, writer));
                writers.len() - 1
            }
        };
        for (file, sequence) in add {
            self.count_added(&file);
            writers[at]
                .1
                .add_file(file, sequence)
                .map_err(Error::iceberg(context.clone()))?;
        }
        for (_, writer) in writers {
            let written = writer
                .write_manifest_file()
                .await
                .map_err(Error::iceberg(context.clone()))?;
            self.manifests.push(written);
        }
        Ok(())
    }

    /// Writes the manifest list; returns the updates that add the snapshot,
    /// summarised as `operation` with `properties`, and make it current.
    pub async fn finish(
        mut self,
        operation: Operation,
        properties: HashMap<String, String>,
    ) -> Result<(Vec<TableUpdate>, Vec<String>)> {
        let metadata = self.table.metadata();
        let parent = metadata.current_snapshot_id();
        let path = format!(
            "{}/metadata/snap-{}-{}.avro",
            metadata.location(),
            self.snapshot_id,
            self.commit_id
        );
        let output = self
            .table
            .file_io()
            .new_output(&path)
            .map_err(Error::iceberg(self.context()))?;
        let sink = output
            .writer()
            .await
            .map_err(Error::iceberg(self.context()))?;
        self.written.push(path.clone());
        let mut list = match metadata.format_version() {
            FormatVersion::V1 => ManifestListWriter::v1(sink, self.snapshot_id, parent),
            _ => ManifestListWriter::v2(sink, self.snapshot_id, parent, self.sequence_number),
        };
        list.add_manifests(std::mem::take(&mut self.manifests).into_iter())
            .map_err(Error::iceberg(self.context()))?;
        list.close().await.map_err(Error::iceberg(self.context()))?;

        let mut summary = properties;
        summary.extend(self.summary.build());
        let previous = metadata.current_snapshot().map(|s| s.summary());
        for (key, delta) in TOTALS.iter().zip(self.delta) {
            let before = previous
                .and_then(|s| s.additional_properties.get(*key))
                .and_then(|v| v.parse::<i128>().ok())
                .unwrap_or(0);
            summary.insert((*key).to_string(), (before + delta).max(0).to_string());
        }
        let snapshot = Snapshot::builder()
            .with_manifest_list(path)
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(self.sequence_number)
            .with_summary(Summary {
                operation,
                additional_properties: summary,
            })
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN.to_string(),
                reference: SnapshotReference::new(
                    self.snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            },
        ];
        Ok((updates, self.written))
    }

    fn manifest_writer(
        &mut self,
        schema: SchemaRef,
        spec: PartitionSpec,
    ) -> Result<ManifestWriter> {
        let path = format!(
            "{}/metadata/{}-m{}.avro",
            self.table.metadata().location(),
            self.commit_id,
            self.written.len()
        );
        let output = self
            .table
            .file_io()
            .new_output(&path)
            .map_err(Error::iceberg(self.context()))?;
        self.written.push(path);
        let builder = ManifestWriterBuilder::new(output, Some(self.snapshot_id), schema, spec);
        Ok(match self.table.metadata().format_version() {
            FormatVersion::V1 => builder.build_v1(),
            _ => builder.build_v2_data(),
        })
    }

    /// The data and file sequence numbers a live entry of `manifest` keeps
    /// when it is carried into a new manifest.
    fn sequences(
        &self,
        manifest: &ManifestFile,
        entry: &ManifestEntry,
    ) -> Result<(i64, Option<i64>)> {
        let sequence = entry.sequence_number.ok_or_else(|| {
            Error::Corrupt(format!(
                "{}: manifest {} lists {} without a sequence number",
                self.name,
                manifest.manifest_path,
                entry.data_file.file_path()
            ))
        })?;
        Ok((sequence, entry.file_sequence_number.or(Some(sequence))))
    }

    fn count_added(&mut self, file: &DataFile) {
        let metadata = self.table.metadata();
        self.summary.add_file(
            file,
            metadata.current_schema().clone(),
            metadata.default_partition_spec().clone(),
        );
        self.delta[0] += i128::from(file.record_count());
        self.delta[1] += 1;
        self.delta[2] += i128::from(file.file_size_in_bytes());
    }

    fn count_removed(&mut self, file: &DataFile) {
        let metadata = self.table.metadata();
        self.summary.remove_file(
            file,
            metadata.current_schema().clone(),
            metadata.default_partition_spec().clone(),
        );
        self.delta[0] -= i128::from(file.record_count());
        self.delta[1] -= 1;
        self.delta[2] -= i128::from(file.file_size_in_bytes());
    }

    fn context(&self) -> String {
        format!("cannot write a snapshot of {}", self.name)
    }
}

/// A positive snapshot id no snapshot of `table` has.
fn unused_snapshot_id(table: &Table) -> i64 {
    loop {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) >> 1) as i64;
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// The data manifests of `table`'s current snapshot (none without one).
pub async fn current_manifests(name: &str, table: &Table) -> Result<Vec<ManifestFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(Error::iceberg(format!(
            "cannot read the manifests of {name}"
        )))?;
    let manifests = list.entries().to_vec();
    if let Some(deletes) = manifests
        .iter()
        .find(|m| m.content == ManifestContentType::Deletes)
    {
        return Err(Error::NotSupported(format!(
            "{name} has delete files (manifest {}): pitlake reads and writes tables without them",
            deletes.manifest_path
        )));
    }
    Ok(manifests)
}
