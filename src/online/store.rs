//! The online store of a warehouse: one [`OnlineGroup`] per online feature
//! group, built from its Iceberg table on first use and kept in step with it.
//!
//! ```text
//!  Iceberg table ──(first use: every row, in ingestion order)──► OnlineGroup
//!        │ commits by this process ──► refresh right after the commit
//!        │ commits by anyone else  ──► follower, once a second
//!  stream records ──(at acknowledgement)──────────────────────────► OnlineGroup
//! ```
//!
//! Catching up reads only the files that appends added since the snapshot the
//! group reflects; anything else (rewrites, rollbacks, schema changes) rebuilds
//! it. Commits of streamed records are skipped: their rows were applied when
//! they were acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;

use super::source::{Changes, changes_since, committed_lsn, read_rows, wal_last_lsn};
use super::table::OnlineTable;
use crate::catalog::{FeatureGroup, TableName, Warehouse};
use crate::error::{Error, Result};

/// How often the follower looks for commits made by other processes.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The online store of one warehouse.
#[derive(Debug, Default)]
pub struct OnlineStore {
    groups: RwLock<HashMap<String, Arc<OnlineGroup>>>,
    /// One build or catch-up at a time, so two never apply the same rows.
    syncing: tokio::sync::Mutex<()>,
    following: std::sync::atomic::AtomicBool,
}

/// The latest row per entity of one online feature group.
#[derive(Debug)]
pub struct OnlineGroup {
    name: String,
    schema: SchemaRef,
    feature_group: FeatureGroup,
    key_columns: Vec<usize>,
    time_column: usize,
    /// Nanoseconds per unit of the event-time column's physical value.
    time_unit_nanos: i64,
    max_age_nanos: Option<i64>,
    state: RwLock<GroupState>,
}

#[derive(Debug)]
struct GroupState {
    table: OnlineTable,
    /// The Iceberg snapshot whose rows are applied.
    snapshot_id: Option<i64>,
    schema_id: i32,
    /// The last streamed record applied.
    wal_lsn: u64,
}

impl OnlineStore {
    /// The online group `name`, built from its table if this is its first use.
    pub async fn group(&self, warehouse: &Warehouse, name: &TableName) -> Result<Arc<OnlineGroup>> {
        let key = name.to_string();
        if let Some(group) = self.loaded(&key) {
            return Ok(group);
        }
        let _one = self.syncing.lock().await;
        if let Some(group) = self.loaded(&key) {
            return Ok(group);
        }
        let table = warehouse.load_table(&name.schema, &name.table).await?;
        let group = Arc::new(OnlineGroup::build(&key, &table, warehouse).await?);
        self.write_groups().insert(key, group.clone());
        self.follow(warehouse);
        Ok(group)
    }

    /// The group if it is loaded (no I/O).
    pub fn loaded(&self, name: &str) -> Option<Arc<OnlineGroup>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Names of the loaded groups.
    pub fn loaded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Brings a loaded group up to its table's current snapshot (after a
    /// commit); drops it if the table is gone or no longer online.
    pub async fn refresh(&self, warehouse: &Warehouse, name: &str) -> Result<()> {
        if self.loaded(name).is_none() {
            return Ok(());
        }
        let _one = self.syncing.lock().await;
        let Some(group) = self.loaded(name) else {
            return Ok(());
        };
        let (schema, table) = name.split_once('.').unwrap_or(("", name));
        let current = warehouse.try_load_table(schema, table).await?;
        let still_online = current.as_ref().is_some_and(|t| {
            FeatureGroup::from_properties(t.metadata().properties())
                .ok()
                .flatten()
                .is_some_and(|fg| fg.online)
        });
        match current {
            Some(table) if still_online => {
                if let Some(rebuilt) = group.catch_up(&table, warehouse).await? {
                    self.write_groups()
                        .insert(name.to_string(), Arc::new(rebuilt));
                }
            }
            _ => {
                self.write_groups().remove(name);
            }
        }
        Ok(())
    }

    /// Forgets a group (dropped, or switched offline).
    pub fn forget(&self, name: &str) {
        self.write_groups().remove(name);
    }

    fn write_groups(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<OnlineGroup>>> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the follower once: it refreshes every loaded group a second,
    /// picking up commits of other processes, and stops with the warehouse.
    fn follow(&self, warehouse: &Warehouse) {
        use std::sync::atomic::Ordering;
        if self.following.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = warehouse.downgrade();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                let Some(warehouse) = weak.upgrade() else {
                    break;
                };
                let store = warehouse.online().clone();
                for name in store.loaded_names() {
                    if let Err(e) = store.refresh(&warehouse, &name).await {
                        eprintln!("online store: cannot catch up {name}: {e}");
                    }
                }
            }
        });
    }
}

impl OnlineGroup {
    /// Reads every row of the table (and the streamed records not yet
    /// committed to it) into a new group.
    async fn build(name: &str, table: &Table, warehouse: &Warehouse) -> Result<Self> {
        let metadata = table.metadata();
        let feature_group = FeatureGroup::from_properties(metadata.properties())?
            .filter(|fg| fg.online)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{name} is not an online feature group: create it with ONLINE, or run ALTER FEATURE GROUP {name} SET ONLINE"
                ))
            })?;
        let table_schema = schema_to_arrow_schema(metadata.current_schema())
            .map_err(Error::iceberg(format!("cannot read the schema of {name}")))?;
        let column = |c: &str| {
            table_schema
                .index_of(c)
                .map_err(|_| Error::Invalid(format!("feature group {name} has no column {c}")))
        };
        let key_columns = feature_group
            .entity_key
            .iter()
            .map(|k| column(k))
            .collect::<Result<Vec<_>>>()?;
        let time_column = column(&feature_group.event_time)?;
        // Entities without a (fresh enough) value read as NULLs.
        let schema = Arc::new(arrow::datatypes::Schema::new(
            table_schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| f.as_ref().clone().with_nullable(!key_columns.contains(&i)))
                .collect::<Vec<_>>(),
        ));
        let time_unit_nanos = match schema.field(time_column).data_type() {
            DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
            DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
            DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
            DataType::Timestamp(TimeUnit::Nanosecond, _) => 1,
            DataType::Date32 => 86_400_000_000_000,
            DataType::Date64 => 1_000_000,
            other => {
                return Err(Error::Invalid(format!(
                    "event time of {name} is {other}, not a time"
                )));
            }
        };
        let max_age_nanos = feature_group.max_age_nanos()?;
        let mut online = OnlineTable::new(schema.clone(), key_columns.clone(), time_column)?;
        for batch in read_rows(name, table, None).await? {
            online.apply(&batch, 0)?;
        }
        online.settle()?;
        let mut wal_lsn = committed_lsn(table);
        for (lsn, batch) in warehouse.streams().pending(name, wal_lsn) {
            online.apply(&batch, 0)?;
            wal_lsn = lsn;
        }
        Ok(OnlineGroup {
            name: name.to_string(),
            schema,
            feature_group,
            key_columns,
            time_column,
            time_unit_nanos,
            max_age_nanos,
            state: RwLock::new(GroupState {
                table: online,
                snapshot_id: metadata.current_snapshot_id(),
                schema_id: metadata.current_schema_id(),
                wal_lsn,
            }),
        })
    }

    /// Applies the appends since the reflected snapshot; returns a rebuilt
    /// group instead when the table changed in any other way.
    async fn catch_up(&self, table: &Table, warehouse: &Warehouse) -> Result<Option<Self>> {
        let (from, schema_id) = {
            let state = self.read_state();
            (state.snapshot_id, state.schema_id)
        };
        let current_fg = FeatureGroup::from_properties(table.metadata().properties())?;
        if current_fg.as_ref() != Some(&self.feature_group) {
            return Ok(Some(Self::build(&self.name, table, warehouse).await?));
        }
        let appended = match changes_since(table, from, schema_id) {
            Changes::None => return Ok(None),
            Changes::Everything => {
                return Ok(Some(Self::build(&self.name, table, warehouse).await?));
            }
            Changes::Appends(ids) => ids,
        };
        let applied_lsn = self.read_state().wal_lsn;
        // Commits of streamed records were applied at acknowledgement.
        let wanted: HashSet<i64> = appended
            .iter()
            .copied()
            .filter(|id| wal_last_lsn(table, *id).is_none_or(|lsn| lsn > applied_lsn))
            .collect();
        let batches = if wanted.is_empty() {
            Vec::new()
        } else {
            read_rows(&self.name, table, Some(&wanted)).await?
        };
        let mut state = self.write_state();
        for batch in &batches {
            state.table.apply(batch, 0)?;
        }
        if batches.len() > 8 {
            state.table.settle()?;
        }
        state.snapshot_id = table.metadata().current_snapshot_id();
        Ok(None)
    }

    /// Applies streamed records at their acknowledgement.
    pub fn apply_streamed(&self, lsn: u64, batch: &RecordBatch) -> Result<()> {
        let mut state = self.write_state();
        if lsn <= state.wal_lsn {
            return Ok(());
        }
        state.table.apply(batch, 0)?;
        state.wal_lsn = lsn;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// All columns of the group, keys included.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn feature_group(&self) -> &FeatureGroup {
        &self.feature_group
    }

    /// Indices of the entity key columns, in key order.
    pub fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }

    pub fn time_column(&self) -> usize {
        self.time_column
    }

    /// Entities held, and bytes of memory they take.
    pub fn stats(&self) -> (usize, usize) {
        let state = self.read_state();
        (state.table.len(), state.table.memory_bytes())
    }

    /// The rows of the entities in `keys` (one array per key column, in key
    /// order, cast to the key types), in request order, with the columns in
    /// `projection` (indices into [`Self::schema`]). Missing entities, and
    /// values older than the group's maximum age, give NULLs.
    pub fn lookup(&self, keys: &[ArrayRef], projection: &[usize]) -> Result<RecordBatch> {
        let keys = self.cast_keys(keys)?;
        let min_time = self.min_time();
        self.read_state().table.lookup(&keys, projection, min_time)
    }

    /// Every entity's row (values past the maximum age left out).
    pub fn scan(&self, projection: &[usize]) -> Result<RecordBatch> {
        let min_time = self.min_time();
        self.read_state().table.scan(projection, min_time)
    }

    /// Indices of the columns named (all columns when `None`), keys first.
    pub fn projection(&self, columns: Option<&[String]>) -> Result<Vec<usize>> {
        let mut projection = self.key_columns.clone();
        match columns {
            None => projection
                .extend((0..self.schema.fields().len()).filter(|i| !self.key_columns.contains(i))),
            Some(names) => {
                for name in names {
                    let i = self.schema.index_of(name).map_err(|_| {
                        Error::Invalid(format!(
                            "online feature group {} has no column {name}",
                            self.name
                        ))
                    })?;
                    if !projection.contains(&i) {
                        projection.push(i);
                    }
                }
            }
        }
        Ok(projection)
    }

    fn cast_keys(&self, keys: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
        if keys.len() != self.key_columns.len() {
            return Err(Error::Invalid(format!(
                "online feature group {} is keyed by ({}): give {} key values per entity, not {}",
                self.name,
                self.feature_group.entity_key.join(", "),
                self.key_columns.len(),
                keys.len()
            )));
        }
        keys.iter()
            .zip(&self.key_columns)
            .map(|(k, &c)| {
                let field = self.schema.field(c);
                cast(k, field.data_type()).map_err(|e| {
                    Error::Invalid(format!(
                        "key {} of {} is {}: cannot use {} values ({e})",
                        field.name(),
                        self.name,
                        field.data_type(),
                        k.data_type()
                    ))
                })
            })
            .collect()
    }

    /// The oldest event time (physical units) a value may have to be served.
    fn min_time(&self) -> Option<i64> {
        let max_age = self.max_age_nanos?;
        let now = chrono::Utc::now().timestamp_nanos_opt()?;
        Some(now.saturating_sub(max_age) / self.time_unit_nanos)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, GroupState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, GroupState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}
