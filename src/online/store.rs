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
//! it. Commits of streamed records are skipped when every record in them was
//! applied at its acknowledgement.
//!
//! Records of one group commit become durable together and their
//! acknowledgements finish in any order, so records are applied out of log
//! order, and a catch-up may race with them. Two things keep the result what
//! applying every row in ingestion order would give:
//!
//! - every row is applied at a position in ingestion order ([`record_pos`],
//!   [`committed_pos`]) that settles ties on event time, so the order of
//!   application does not matter;
//! - the group remembers which records it holds ([`Applied`]): a record is
//!   applied once, whether its acknowledgement, the build or a catch-up
//!   gets there first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;

use super::applied::Applied;
use super::table::OnlineTable;
use crate::catalog::{FeatureGroup, TableName, Warehouse};
use crate::error::{Error, Result};
use crate::storage::{
    Changes, HISTORY_PROPERTY, changes_since, committed_lsn, read_rows, wal_lsn_range,
    with_schema_of,
};

/// How often the follower looks for commits made by other processes.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Records acknowledged but not yet committed to Iceberg: the online store
/// applies them on top of a table's rows. The stream logs, a layer above,
/// provide them.
pub trait PendingRecords: Send + Sync + std::fmt::Debug {
    /// `table`'s pending records with log position above `after`, in log order.
    fn pending(&self, table: &str, after: u64) -> Vec<(u64, RecordBatch)>;
}

/// The online store of one warehouse.
#[derive(Debug)]
pub struct OnlineStore {
    warehouse: Warehouse,
    /// Where pending records come from, once attached.
    pending: OnceLock<Weak<dyn PendingRecords>>,
    /// This store, for the follower task, which must not keep it alive.
    me: Weak<OnlineStore>,
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
    /// The table's history mark at the build: an ERASE rewrites history
    /// under the same snapshot ids and changes it.
    history: Option<String>,
    state: RwLock<GroupState>,
}

#[derive(Debug)]
struct GroupState {
    table: OnlineTable,
    /// The Iceberg snapshot whose rows are applied.
    snapshot_id: Option<i64>,
    schema_id: i32,
    /// The last log record committed in that snapshot's history.
    committed_lsn: u64,
    /// The streamed records applied.
    applied: Applied,
}

/// The position in ingestion order of the streamed record at log position
/// `lsn`. Between each two, [`committed_pos`] leaves room for the commits
/// made in between by other writers.
fn record_pos(lsn: u64) -> u64 {
    lsn.saturating_mul(2)
}

/// The position of rows committed to Iceberg other than by the stream, once
/// the stream has committed its records through `committed_lsn`: after every
/// record in the table already, before every one committed after them (all
/// that are still pending).
fn committed_pos(committed_lsn: u64) -> u64 {
    record_pos(committed_lsn).saturating_add(1)
}

impl OnlineStore {
    /// An empty store over `warehouse`'s tables.
    pub fn new(warehouse: Warehouse) -> Arc<Self> {
        Arc::new_cyclic(|me| OnlineStore {
            warehouse,
            pending: OnceLock::new(),
            me: me.clone(),
            groups: RwLock::default(),
            syncing: tokio::sync::Mutex::default(),
            following: std::sync::atomic::AtomicBool::default(),
        })
    }

    /// Sets where pending records come from (once; later calls are ignored).
    pub fn attach(&self, pending: Weak<dyn PendingRecords>) {
        let _ = self.pending.set(pending);
    }

    fn pending(&self, table: &str, after: u64) -> Vec<(u64, RecordBatch)> {
        match self.pending.get().and_then(Weak::upgrade) {
            Some(source) => source.pending(table, after),
            None => Vec::new(),
        }
    }

    /// The online group `name`, built from its table if this is its first use.
    pub async fn group(&self, name: &TableName) -> Result<Arc<OnlineGroup>> {
        let key = name.to_string();
        if let Some(group) = self.loaded(&key) {
            return Ok(group);
        }
        let _one = self.syncing.lock().await;
        if let Some(group) = self.loaded(&key) {
            return Ok(group);
        }
        let table = self.warehouse.load_table(&name.schema, &name.table).await?;
        let group = Arc::new(OnlineGroup::build(&key, &table, self).await?);
        self.write_groups().insert(key, group.clone());
        group.apply_pending(self)?;
        self.follow();
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
    pub async fn refresh(&self, name: &str) -> Result<()> {
        if self.loaded(name).is_none() {
            return Ok(());
        }
        let _one = self.syncing.lock().await;
        let Some(group) = self.loaded(name) else {
            return Ok(());
        };
        let (schema, table) = name.split_once('.').unwrap_or(("", name));
        let current = self.warehouse.try_load_table(schema, table).await?;
        let still_online = current.as_ref().is_some_and(|t| {
            FeatureGroup::from_properties(t.metadata().properties())
                .ok()
                .flatten()
                .is_some_and(|fg| fg.online)
        });
        match current {
            Some(table) if still_online => {
                if let Some(rebuilt) = group.catch_up(&table, self).await? {
                    let rebuilt = Arc::new(rebuilt);
                    self.write_groups()
                        .insert(name.to_string(), rebuilt.clone());
                    rebuilt.apply_pending(self)?;
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
    /// picking up commits of other processes, and stops with the store.
    fn follow(&self) {
        use std::sync::atomic::Ordering;
        if self.following.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = self.me.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                let Some(store) = weak.upgrade() else {
                    break;
                };
                for name in store.loaded_names() {
                    if let Err(e) = store.refresh(&name).await {
                        tracing::warn!("online store: cannot catch up {name}: {e}");
                    }
                }
            }
        });
    }
}

impl GroupState {
    fn new(
        table: OnlineTable,
        snapshot_id: Option<i64>,
        schema_id: i32,
        committed_lsn: u64,
    ) -> Self {
        GroupState {
            table,
            snapshot_id,
            schema_id,
            committed_lsn,
            // Every record committed is in the snapshot.
            applied: Applied::through(committed_lsn),
        }
    }

    /// Applies the streamed record at log position `lsn` unless it is applied.
    fn apply_record(&mut self, lsn: u64, batch: &RecordBatch) -> Result<()> {
        if self.applied.contains(lsn) {
            return Ok(());
        }
        // A record logged before a change of the table's columns.
        let batch = with_schema_of(batch, self.table.schema())?;
        self.table.apply(&batch, record_pos(lsn))?;
        self.applied.insert(lsn);
        Ok(())
    }

    /// Applies rows read from Iceberg, in ingestion order, at `pos`.
    fn apply_read(&mut self, batches: &[RecordBatch], pos: u64) -> Result<()> {
        for batch in batches {
            self.table.apply(batch, pos)?;
        }
        Ok(())
    }

    /// Which of the snapshots appended since the reflected one (oldest first,
    /// each with the log records it commits, if any) to read, grouped by the
    /// position to apply their rows at (reads in order); and the last log
    /// record committed once they are.
    ///
    /// A commit of streamed records is read only if the group lacks one of
    /// its records; its rows are then applied at its last record's position.
    /// That is exact: what was committed before it is applied already, and
    /// what comes after it is at greater positions; the copies of its records
    /// the group holds are at smaller positions, so they lose ties to the
    /// rows after them in the commit, as in log order; and its records are
    /// then marked applied, so none comes again at a smaller position.
    fn plan_reads(
        &self,
        appended: &[(i64, Option<(u64, u64)>)],
    ) -> (Vec<(u64, HashSet<i64>)>, u64) {
        let mut committed = self.committed_lsn;
        let mut reads: Vec<(u64, HashSet<i64>)> = Vec::new();
        for &(id, lsns) in appended {
            let pos = match lsns {
                Some((first, last)) => {
                    committed = committed.max(last);
                    if self.applied.covers(first, last) {
                        continue;
                    }
                    record_pos(last)
                }
                None => committed_pos(committed),
            };
            match reads.last_mut() {
                Some((at, ids)) if *at == pos => {
                    ids.insert(id);
                }
                _ => reads.push((pos, HashSet::from([id]))),
            }
        }
        (reads, committed)
    }

    /// The appends read are applied: every record through `committed_lsn`
    /// is in the group.
    fn committed(&mut self, committed_lsn: u64) {
        self.committed_lsn = self.committed_lsn.max(committed_lsn);
        self.applied.insert_through(committed_lsn);
    }
}

impl OnlineGroup {
    /// Reads every row of the table (and the streamed records not yet
    /// committed to it) into a new group.
    async fn build(name: &str, table: &Table, store: &OnlineStore) -> Result<Self> {
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
        let online = OnlineTable::new(schema.clone(), key_columns.clone(), time_column)?;
        let committed = committed_lsn(table);
        let mut state = GroupState::new(
            online,
            metadata.current_snapshot_id(),
            metadata.current_schema_id(),
            committed,
        );
        // One position for the table's rows: they are applied in ingestion
        // order, and every record still pending comes after them.
        state.apply_read(
            &read_rows(name, table, None).await?,
            committed_pos(committed),
        )?;
        state.table.settle()?;
        for (lsn, batch) in store.pending(name, committed) {
            state.apply_record(lsn, &batch)?;
        }
        Ok(OnlineGroup {
            name: name.to_string(),
            schema,
            feature_group,
            key_columns,
            time_column,
            time_unit_nanos,
            max_age_nanos,
            history: metadata.properties().get(HISTORY_PROPERTY).cloned(),
            state: RwLock::new(state),
        })
    }

    /// Applies the records acknowledged but not committed that the group
    /// lacks: those acknowledged between its build reading them and its
    /// registration, whose acknowledgements found no group (or the one it
    /// replaces) to apply them to.
    fn apply_pending(&self, store: &OnlineStore) -> Result<()> {
        let after = self.read_state().applied.watermark();
        let pending = store.pending(&self.name, after);
        if pending.is_empty() {
            return Ok(());
        }
        let mut state = self.write_state();
        for (lsn, batch) in &pending {
            state.apply_record(*lsn, batch)?;
        }
        Ok(())
    }

    /// Applies the appends since the reflected snapshot; returns a rebuilt
    /// group instead when the table changed in any other way.
    async fn catch_up(&self, table: &Table, store: &OnlineStore) -> Result<Option<Self>> {
        let (from, schema_id) = {
            let state = self.read_state();
            (state.snapshot_id, state.schema_id)
        };
        let current_fg = FeatureGroup::from_properties(table.metadata().properties())?;
        if current_fg.as_ref() != Some(&self.feature_group)
            || table.metadata().properties().get(HISTORY_PROPERTY) != self.history.as_ref()
        {
            return Ok(Some(Self::build(&self.name, table, store).await?));
        }
        let appended = match changes_since(table, from, schema_id) {
            Changes::None => return Ok(None),
            Changes::Everything => {
                return Ok(Some(Self::build(&self.name, table, store).await?));
            }
            Changes::Appends(ids) => ids,
        };
        let appended: Vec<(i64, Option<(u64, u64)>)> = appended
            .into_iter()
            .map(|id| (id, wal_lsn_range(table, id)))
            .collect();
        // Records acknowledged meanwhile only add to what is applied, so
        // reading what this says is missing can read too much, never too little.
        let (reads, committed) = self.read_state().plan_reads(&appended);
        let mut read = Vec::with_capacity(reads.len());
        for (pos, ids) in reads {
            read.push((pos, read_rows(&self.name, table, Some(&ids)).await?));
        }
        let mut state = self.write_state();
        let mut batches = 0;
        for (pos, rows) in &read {
            state.apply_read(rows, *pos)?;
            batches += rows.len();
        }
        if batches > 8 {
            state.table.settle()?;
        }
        state.committed(committed);
        state.snapshot_id = table.metadata().current_snapshot_id();
        Ok(None)
    }

    /// Applies a streamed record at its acknowledgement, unless the group
    /// already has it (applied at its build, or read back from its commit).
    pub fn apply_streamed(&self, lsn: u64, batch: &RecordBatch) -> Result<()> {
        self.write_state().apply_record(lsn, batch)
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
                    Error::invalid_input(format!(
                        "key {} of {} is {}: cannot use {} values",
                        field.name(),
                        self.name,
                        field.data_type(),
                        k.data_type()
                    ))(e)
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use arrow::array::{
        Array, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Float64Type, Schema};

    use super::*;

    type Row = (i64, i64, f64);
    /// A snapshot of the table: its id, the log records it commits, its rows.
    type Snapshot = (i64, Option<(u64, u64)>, Vec<Row>);

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    fn batch(rows: &[Row]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    /// A group as a build at `committed_lsn` leaves it, from `table_rows`.
    fn built(table_rows: &[Row], committed_lsn: u64) -> GroupState {
        let table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        let mut state = GroupState::new(table, None, 0, committed_lsn);
        state
            .apply_read(&[batch(table_rows)], committed_pos(committed_lsn))
            .expect("apply");
        state
    }

    /// What a catch-up over `appended` does, the rows of each snapshot given.
    fn catch_up(
        state: &mut GroupState,
        appended: &[(i64, Option<(u64, u64)>)],
        rows_of: &HashMap<i64, Vec<Row>>,
    ) {
        let (reads, committed) = state.plan_reads(appended);
        for (pos, ids) in reads {
            // In snapshot order, like a read of Iceberg.
            let rows: Vec<Row> = appended
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .flat_map(|(id, _)| rows_of[id].clone())
                .collect();
            state.apply_read(&[batch(&rows)], pos).expect("apply");
        }
        state.committed(committed);
    }

    /// The reference: every row in ingestion order, the last of the greatest
    /// event time winning.
    fn in_order(rows: impl IntoIterator<Item = Row>) -> BTreeMap<i64, f64> {
        let mut latest: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        for (k, t, v) in rows {
            let e = latest.entry(k).or_insert((t, v));
            if t >= e.0 {
                *e = (t, v);
            }
        }
        latest.into_iter().map(|(k, (_, v))| (k, v)).collect()
    }

    fn values(state: &GroupState, keys: impl IntoIterator<Item = i64>) -> BTreeMap<i64, f64> {
        let keys: Vec<i64> = keys.into_iter().collect();
        let array: ArrayRef = Arc::new(Int64Array::from(keys.clone()));
        let out = state.table.lookup(&[array], &[2], None).expect("lookup");
        let v = out.column(0).as_primitive::<Float64Type>();
        keys.into_iter()
            .enumerate()
            .filter(|(i, _)| v.is_valid(*i))
            .map(|(i, k)| (k, v.value(i)))
            .collect()
    }

    /// The rows of records `lsns`, in log order.
    fn rows(records: &BTreeMap<u64, Vec<Row>>, lsns: std::ops::RangeInclusive<u64>) -> Vec<Row> {
        records.range(lsns).flat_map(|(_, r)| r.clone()).collect()
    }

    #[test]
    fn records_applied_out_of_log_order_give_what_log_order_gives() {
        let table_rows = [(1, 10, 0.5), (2, 4, 0.6)];
        let records: BTreeMap<u64, Vec<Row>> = BTreeMap::from([
            (1, vec![(1, 10, 1.0), (2, 5, 1.1), (5, 1, 1.2)]),
            (2, vec![(1, 10, 2.0)]),
            (3, vec![(1, 10, 3.0), (1, 10, 3.5)]),
            (4, vec![(2, 5, 4.0)]),
            (5, vec![(1, 9, 5.0), (3, 2, 5.1)]),
            (6, vec![(3, 2, 6.0), (4, 1, 6.1)]),
        ]);
        // An INSERT ... SELECT committed after records 1 to 3, while 4 and 5
        // are acknowledged: in the table it comes before them.
        let direct = vec![(1, 10, 7.0), (2, 5, 7.5), (3, 2, 7.6)];
        let ack = |state: &mut GroupState, lsn: u64| {
            state
                .apply_record(lsn, &batch(&records[&lsn]))
                .expect("apply");
        };

        let mut state = built(&table_rows, 0);
        // One group commit: its acknowledgements finish in any order.
        for lsn in [3, 1, 2, 5, 4] {
            ack(&mut state, lsn);
        }
        let acknowledged = in_order(table_rows.into_iter().chain(rows(&records, 1..=5)));
        assert_eq!(values(&state, 1..=6), acknowledged);
        catch_up(
            &mut state,
            &[(10, Some((1, 3))), (11, None), (12, Some((4, 5)))],
            &HashMap::from([
                (10, rows(&records, 1..=3)),
                (11, direct.clone()),
                (12, rows(&records, 4..=5)),
            ]),
        );
        // Record 6 is committed before its acknowledgement reaches the group:
        // the catch-up reads its commit back, and the late acknowledgement
        // (like a second one of record 2) finds it applied.
        catch_up(
            &mut state,
            &[(13, Some((6, 6)))],
            &HashMap::from([(13, rows(&records, 6..=6))]),
        );
        let held = state.table.memory_bytes();
        ack(&mut state, 6);
        ack(&mut state, 2);
        assert_eq!(state.table.memory_bytes(), held, "a record applied twice");

        let truth = in_order(
            table_rows
                .into_iter()
                .chain(rows(&records, 1..=3))
                .chain(direct)
                .chain(rows(&records, 4..=6)),
        );
        assert_eq!(
            truth,
            BTreeMap::from([(1, 7.0), (2, 4.0), (3, 6.0), (4, 6.1), (5, 1.2)])
        );
        assert_eq!(values(&state, 1..=6), truth);
    }

    /// A small deterministic generator.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Random interleavings of what the stream and the store do concurrently:
    /// group commits, acknowledgements (pending first, applied later),
    /// commits of the stream, other commits, catch-ups, and a build whose
    /// registration lags its read; the group always ends as applying every
    /// row in ingestion order does.
    #[test]
    fn any_interleaving_of_acknowledgements_and_catch_ups_gives_ingestion_order() {
        let mut rng = Lcg(3);
        const RECORDS: u64 = 24;
        const KEYS: i64 = 6;
        for round in 0..400 {
            let mut value = round as f64 * 1000.0;
            let mut new_rows = |rng: &mut Lcg, n: u64| -> Vec<Row> {
                (0..n)
                    .map(|_| {
                        value += 1.0;
                        (rng.next(KEYS as u64) as i64, rng.next(3) as i64, value)
                    })
                    .collect()
            };
            let records: BTreeMap<u64, Vec<Row>> = (1..=RECORDS)
                .map(|lsn| {
                    let n = 1 + rng.next(3);
                    (lsn, new_rows(&mut rng, n))
                })
                .collect();
            let mut durable = 0u64;
            // Acknowledged: pending for the committer; then applied.
            let mut pending: Vec<u64> = Vec::new();
            let mut acked: Vec<u64> = Vec::new();
            let mut unapplied: Vec<u64> = Vec::new();
            let mut committed = 0u64;
            let mut snapshots: Vec<Snapshot> = Vec::new();
            // The group and how many snapshots it reflects.
            let mut group: Option<(GroupState, usize)> = None;
            // A build: the table loaded, then the group built from it and
            // the pending records, then registered.
            enum Build {
                Loaded(Vec<Row>, u64, usize),
                Built(Box<GroupState>, usize),
            }
            let mut building: Option<Build> = None;
            // A catch-up that has planned its reads but not applied them.
            type Reads = Vec<(u64, Vec<Row>)>;
            let mut catching_up: Option<(Reads, u64, usize)> = None;
            let mut steps = 0;
            loop {
                let caught_up = group
                    .as_ref()
                    .is_some_and(|(_, seen)| *seen == snapshots.len());
                if committed == RECORDS && unapplied.is_empty() && caught_up {
                    break;
                }
                steps += 1;
                assert!(steps < 10_000);
                let last_steps = acked.len() == RECORDS as usize && unapplied.is_empty();
                match rng.next(8) {
                    // A group commit makes a few records durable at once.
                    0 => durable = (durable + 1 + rng.next(4)).min(RECORDS),
                    // Acknowledgements of durable records finish in any order.
                    1 | 2 => {
                        let ready: Vec<u64> =
                            (1..=durable).filter(|l| !acked.contains(l)).collect();
                        if !ready.is_empty() {
                            let lsn = ready[rng.next(ready.len() as u64) as usize];
                            acked.push(lsn);
                            pending.push(lsn);
                            unapplied.push(lsn);
                        }
                    }
                    3 | 4 if !unapplied.is_empty() => {
                        let lsn = unapplied.swap_remove(rng.next(unapplied.len() as u64) as usize);
                        if let Some((state, _)) = &mut group {
                            state
                                .apply_record(lsn, &batch(&records[&lsn]))
                                .expect("apply");
                        }
                    }
                    // The committer: the contiguous run after the last commit.
                    5 => {
                        let run: Vec<u64> = (committed + 1..)
                            .take_while(|l| pending.contains(l))
                            .collect();
                        if let (Some(&first), Some(&last)) = (run.first(), run.last()) {
                            let id = snapshots.len() as i64;
                            snapshots.push((id, Some((first, last)), rows(&records, first..=last)));
                            pending.retain(|l| *l > last);
                            committed = last;
                        }
                    }
                    6 if !last_steps => {
                        let n = 1 + rng.next(2);
                        let rows = new_rows(&mut rng, n);
                        snapshots.push((snapshots.len() as i64, None, rows));
                    }
                    // Builds and catch-ups (one at a time), each in two steps
                    // with anything else in between.
                    _ => {
                        match (building.take(), &mut group) {
                            (Some(Build::Loaded(table_rows, lsn, seen)), _) => {
                                let mut state = built(&table_rows, lsn);
                                let mut read: Vec<u64> =
                                    pending.iter().copied().filter(|l| *l > lsn).collect();
                                read.sort();
                                for lsn in read {
                                    state
                                        .apply_record(lsn, &batch(&records[&lsn]))
                                        .expect("apply");
                                }
                                building = Some(Build::Built(Box::new(state), seen));
                            }
                            (Some(Build::Built(mut state, seen)), _) => {
                                // Registered; then what is pending is applied.
                                let after = state.applied.watermark();
                                for &lsn in pending.iter().filter(|l| **l > after) {
                                    state
                                        .apply_record(lsn, &batch(&records[&lsn]))
                                        .expect("apply");
                                }
                                group = Some((*state, seen));
                            }
                            (None, Some((state, seen))) => {
                                if let Some((reads, lsn, upto)) = catching_up.take() {
                                    for (pos, rows) in reads {
                                        state.apply_read(&[batch(&rows)], pos).expect("apply");
                                    }
                                    state.committed(lsn);
                                    *seen = upto;
                                } else {
                                    let appended: Vec<(i64, Option<(u64, u64)>)> =
                                        snapshots[*seen..].iter().map(|s| (s.0, s.1)).collect();
                                    let (reads, lsn) = state.plan_reads(&appended);
                                    let reads = reads
                                        .into_iter()
                                        .map(|(pos, ids)| {
                                            let rows = snapshots
                                                .iter()
                                                .filter(|s| ids.contains(&s.0))
                                                .flat_map(|s| s.2.clone())
                                                .collect();
                                            (pos, rows)
                                        })
                                        .collect();
                                    catching_up = Some((reads, lsn, snapshots.len()));
                                }
                            }
                            (None, None) => {
                                let table_rows =
                                    snapshots.iter().flat_map(|s| s.2.clone()).collect();
                                building =
                                    Some(Build::Loaded(table_rows, committed, snapshots.len()));
                            }
                        }
                    }
                }
                // Settled (nothing in flight, every commit caught up): the
                // group holds the table's rows, then the pending records.
                if let Some((state, seen)) = &group
                    && unapplied.is_empty()
                    && *seen == snapshots.len()
                {
                    let mut waiting = pending.clone();
                    waiting.sort();
                    let truth = in_order(
                        snapshots
                            .iter()
                            .flat_map(|s| s.2.clone())
                            .chain(waiting.iter().flat_map(|l| records[l].clone())),
                    );
                    assert_eq!(values(state, 0..KEYS), truth, "round {round}, step {steps}");
                }
            }
        }
    }
}
