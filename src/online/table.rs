//! The latest row per entity key of one feature group, in memory.
//!
//! ```text
//!  entity key (see key_map) ──► Slot { chunk: batch id, row, time, pos }
//!                                            │
//!                     locations[batch id] = (chunk index, first row)
//!                                            │
//!  chunks: [RecordBatch, RecordBatch, ...] ◄─┘   rows as written, newest last
//! ```
//!
//! Rows are kept in the batches they arrived in; the map points at the live
//! row of each key, by the batch's id: `locations[id]` says which chunk now
//! holds that batch's rows and from which row, so merging chunks updates one
//! entry per merged batch instead of every entity's slot. A lookup gathers
//! the live rows with one `interleave` per column. Superseded rows are
//! garbage until a compaction rewrites the live rows into one batch; runs of
//! small batches (streamed records) are merged so lookups never interleave
//! over thousands of tiny arrays.
//!
//! The winner for a key is the row with the greatest event time; on equal
//! event times the one with the greater position (the caller's place of the
//! batch in ingestion order), then the one applied later. Batches may arrive
//! out of ingestion order (acknowledgements of a group commit race), so the
//! position, not the order of application, decides between batches; each
//! slot keeps its row's position so that holds across compactions too.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, new_null_array};
use arrow::compute::{cast, concat_batches, interleave};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};

use super::slots::{Slot, Slots};
use crate::error::{Error, Result};

/// Small batches merged once this many have piled up after the big ones
/// (a lookup gathers across every chunk, so fewer is faster).
const SMALL_CHUNKS: usize = 32;
/// Chunks of fewer rows are small: merged with the small ones after them.
/// Bigger ones (streamed records of several batches) are left alone: merging
/// them would copy every streamed row once more, for a gather that only
/// multi-key lookups do.
const MERGE_BELOW_ROWS: usize = 4_096;
/// Superseded rows tolerated beyond as many as there are live ones.
const BIG_CHUNK_ROWS: usize = 65_536;

/// The latest row per entity key.
pub struct OnlineTable {
    schema: SchemaRef,
    key_columns: Vec<usize>,
    time_column: usize,
    chunks: Vec<RecordBatch>,
    /// Batch id (a slot's `chunk`) → (index in `chunks`, first row there).
    locations: Vec<(u32, u32)>,
    /// Chunks from here on are small and get merged together.
    small_from: usize,
    slots: Slots,
    /// Rows held in `chunks`, live or superseded.
    held_rows: usize,
    /// One NULL per column: what a missing entity reads as.
    nulls: Vec<ArrayRef>,
}

impl std::fmt::Debug for OnlineTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineTable")
            .field("entities", &self.slots.len())
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl OnlineTable {
    /// An empty table for rows of `schema`, keyed by `key_columns`.
    pub fn new(schema: SchemaRef, key_columns: Vec<usize>, time_column: usize) -> Result<Self> {
        let types: Vec<DataType> = key_columns
            .iter()
            .map(|&i| schema.field(i).data_type().clone())
            .collect();
        let slots = Slots::new(&types)?;
        let nulls = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        Ok(OnlineTable {
            nulls,
            schema,
            key_columns,
            time_column,
            chunks: Vec::new(),
            locations: Vec::new(),
            small_from: 0,
            slots,
            held_rows: 0,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of entities with a row.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held: row data (live and superseded) plus the key map.
    pub fn memory_bytes(&self) -> usize {
        let data: usize = self
            .chunks
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum();
        data + self.slots.memory_bytes()
    }

    /// Applies rows in order, all at position `pos` in ingestion order: each
    /// becomes its key's row unless that key already has a later event time,
    /// or an equal one at a greater position. Rows with a NULL key or time
    /// are skipped.
    pub fn apply(&mut self, batch: &RecordBatch, pos: u64) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.check_schema(batch)?;
        let keys: Vec<ArrayRef> = self
            .key_columns
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let times = physical_times(batch.column(self.time_column))?;
        if self.locations.len() >= u32::MAX as usize / 2 {
            self.compact()?;
        }
        let id = self.locations.len() as u32;
        if self.slots.upsert(&keys, &times, id, pos)? {
            self.locations.push((self.chunks.len() as u32, 0));
            self.chunks.push(batch.clone());
            self.held_rows += batch.num_rows();
            if batch.num_rows() >= MERGE_BELOW_ROWS && self.small_from == self.chunks.len() - 1 {
                self.small_from = self.chunks.len();
            }
            self.tidy()?;
        }
        Ok(())
    }

    /// The rows of the requested keys (`keys`: one array per key column, of
    /// the key columns' types), in request order, with the columns in
    /// `projection`. A key without a row, or whose row is older than
    /// `min_time`, gets NULLs in every non-key column.
    pub fn lookup(
        &self,
        keys: &[ArrayRef],
        projection: &[usize],
        min_time: Option<i64>,
    ) -> Result<RecordBatch> {
        if keys.len() != self.key_columns.len() {
            return Err(Error::Internal(format!(
                "online lookup needs {} key columns, got {}",
                self.key_columns.len(),
                keys.len()
            )));
        }
        let requested = keys.first().map_or(0, |k| k.len());
        let missing = (self.chunks.len(), 0);
        let indices: Vec<(usize, usize)> = self
            .slots
            .find(keys)?
            .into_iter()
            .map(|found| match found {
                Some(slot) if min_time.is_none_or(|m| slot.time >= m) => self.locate(&slot),
                _ => missing,
            })
            .collect();
        let columns = projection
            .iter()
            .map(|&c| match self.key_columns.iter().position(|&k| k == c) {
                Some(k) => Ok(keys[k].clone()),
                None => self.gather(c, &indices),
            })
            .collect::<Result<Vec<_>>>()?;
        let schema = self
            .schema
            .project(projection)
            .map_err(Error::arrow("online lookup columns"))?;
        // Key columns of missing rows come from the request, so may be non-null.
        RecordBatch::try_new_with_options(
            std::sync::Arc::new(schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(requested)),
        )
        .map_err(Error::arrow("online lookup result"))
    }

    /// Every live row (no order), projected, skipping rows older than `min_time`.
    pub fn scan(&self, projection: &[usize], min_time: Option<i64>) -> Result<RecordBatch> {
        let indices: Vec<(usize, usize)> = self
            .slots
            .values()
            .filter(|s| min_time.is_none_or(|m| s.time >= m))
            .map(|s| self.locate(s))
            .collect();
        let columns = projection
            .iter()
            .map(|&c| self.gather(c, &indices))
            .collect::<Result<Vec<_>>>()?;
        let schema = self
            .schema
            .project(projection)
            .map_err(Error::arrow("online scan columns"))?;
        RecordBatch::try_new_with_options(
            std::sync::Arc::new(schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )
        .map_err(Error::arrow("online scan result"))
    }

    /// Column `c` of the rows at `indices`; index `chunks.len()` is a NULL.
    fn gather(&self, c: usize, indices: &[(usize, usize)]) -> Result<ArrayRef> {
        // One entity (the common request): a slice, no copy.
        if let [(chunk, row)] = indices {
            return Ok(match self.chunks.get(*chunk) {
                Some(batch) => batch.column(c).slice(*row, 1),
                None => self.nulls[c].clone(),
            });
        }
        let mut arrays: Vec<&dyn Array> =
            self.chunks.iter().map(|b| b.column(c).as_ref()).collect();
        arrays.push(self.nulls[c].as_ref());
        interleave(&arrays, indices).map_err(Error::arrow("online store gather"))
    }

    /// Rewrites the live rows into one chunk if they are spread over many
    /// (after a bulk load): lookups then gather from one array per column.
    pub fn settle(&mut self) -> Result<()> {
        if self.chunks.len() > 1 {
            self.compact()?;
        }
        Ok(())
    }

    fn check_schema(&self, batch: &RecordBatch) -> Result<()> {
        let expected = self.schema.fields();
        let given = batch.schema();
        let matches = given.fields().len() == expected.len()
            && given
                .fields()
                .iter()
                .zip(expected.iter())
                .all(|(g, e)| g.data_type() == e.data_type());
        if matches {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "online store: rows of schema {given:?} do not fit {:?}",
                self.schema
            )))
        }
    }

    /// Merges runs of small chunks, and rewrites the live rows once superseded
    /// rows outnumber them.
    fn tidy(&mut self) -> Result<()> {
        let live = self.slots.len();
        if self.held_rows > 2 * live + BIG_CHUNK_ROWS {
            return self.collect_garbage();
        }
        if self.chunks.len() - self.small_from < SMALL_CHUNKS {
            return Ok(());
        }
        let from = self.small_from;
        let merged = concat_batches(&self.schema, &self.chunks[from..])
            .map_err(Error::arrow("online store merge"))?;
        let mut offsets = Vec::with_capacity(self.chunks.len() - from);
        let mut offset = 0u32;
        for chunk in &self.chunks[from..] {
            offsets.push(offset);
            offset += chunk.num_rows() as u32;
        }
        let target = from as u32;
        for (chunk, first) in self.locations.iter_mut().rev() {
            let c = *chunk as usize;
            if c < from {
                // Batch ids are given in order, so the rest are earlier chunks
                // (after a compaction ids start over at the chunks kept).
                break;
            }
            *first += offsets[c - from];
            *chunk = target;
        }
        let rows = merged.num_rows();
        self.chunks.truncate(from);
        self.chunks.push(merged);
        if rows >= MERGE_BELOW_ROWS {
            self.small_from = self.chunks.len();
        }
        Ok(())
    }

    /// Drops chunks whose rows are mostly superseded, moving their live rows
    /// into one new chunk; chunks still mostly live stay as they are, so
    /// streamed updates cost a copy of the few rows left behind, not of the
    /// whole table (a chunk every row of which was updated goes for free).
    fn collect_garbage(&mut self) -> Result<()> {
        self.resolve_slots();
        let mut live_rows = vec![0usize; self.chunks.len()];
        for slot in self.slots.values() {
            live_rows[slot.chunk as usize] += 1;
        }
        let victim: Vec<bool> = self
            .chunks
            .iter()
            .zip(&live_rows)
            .map(|(chunk, &live)| 2 * live < chunk.num_rows())
            .collect();
        if !victim.contains(&true) {
            return Ok(());
        }
        // Survivors keep their order (big ones, then the moved rows, then the
        // small ones still waiting to be merged).
        let mut renumber = vec![u32::MAX; self.chunks.len()];
        let mut kept = Vec::new();
        for (i, chunk) in self.chunks.iter().enumerate() {
            if !victim[i] && i < self.small_from {
                renumber[i] = kept.len() as u32;
                kept.push(chunk.clone());
            }
        }
        let moved_at = kept.len() as u32;
        let mut moving: Vec<&mut Slot> = self
            .slots
            .values_mut()
            .filter(|s| victim[s.chunk as usize])
            .collect();
        let indices: Vec<(usize, usize)> = moving
            .iter()
            .map(|s| (s.chunk as usize, s.row as usize))
            .collect();
        let moved = gather_rows(&self.schema, &self.chunks, &indices)?;
        for (row, slot) in moving.iter_mut().enumerate() {
            slot.chunk = moved_at;
            slot.row = row as u32;
        }
        if moved.num_rows() > 0 {
            kept.push(moved);
        }
        let small_from = kept.len();
        for (i, chunk) in self.chunks.iter().enumerate() {
            if !victim[i] && i >= self.small_from {
                renumber[i] = kept.len() as u32;
                kept.push(chunk.clone());
            }
        }
        for slot in self.slots.values_mut() {
            if !victim[slot.chunk as usize] {
                slot.chunk = renumber[slot.chunk as usize];
            }
        }
        self.held_rows = kept.iter().map(RecordBatch::num_rows).sum();
        self.locations = (0..kept.len() as u32).map(|c| (c, 0)).collect();
        self.chunks = kept;
        self.small_from = small_from;
        Ok(())
    }

    /// Rewrites the live rows into one chunk.
    fn compact(&mut self) -> Result<()> {
        self.resolve_slots();
        let mut live: Vec<&mut Slot> = self.slots.values_mut().collect();
        let indices: Vec<(usize, usize)> = live
            .iter()
            .map(|s| (s.chunk as usize, s.row as usize))
            .collect();
        let batch = gather_rows(&self.schema, &self.chunks, &indices)?;
        for (row, slot) in live.iter_mut().enumerate() {
            slot.chunk = 0;
            slot.row = row as u32;
        }
        self.held_rows = batch.num_rows();
        self.chunks = vec![batch];
        self.locations = vec![(0, 0)];
        self.small_from = 1;
        Ok(())
    }

    /// Chunk index and row of a slot's row.
    fn locate(&self, slot: &Slot) -> (usize, usize) {
        let (chunk, first) = self.locations[slot.chunk as usize];
        (chunk as usize, (first + slot.row) as usize)
    }

    /// Points every slot at its chunk index and row directly, with the
    /// locations the identity (before rewriting chunks).
    fn resolve_slots(&mut self) {
        for slot in self.slots.values_mut() {
            let (chunk, first) = self.locations[slot.chunk as usize];
            slot.chunk = chunk;
            slot.row += first;
        }
        self.locations = (0..self.chunks.len() as u32).map(|c| (c, 0)).collect();
    }
}

/// Every column of the rows at `indices` (chunk, row) of `chunks`, as one batch.
fn gather_rows(
    schema: &SchemaRef,
    chunks: &[RecordBatch],
    indices: &[(usize, usize)],
) -> Result<RecordBatch> {
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = chunks.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, indices).map_err(Error::arrow("online store compaction"))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )
    .map_err(Error::arrow("online store compaction"))
}

/// Event times as their physical integers (days for dates, the column's unit
/// for timestamps), which order like the times within one column.
pub fn physical_times(array: &ArrayRef) -> Result<arrow::array::Int64Array> {
    let ints = match array.data_type() {
        DataType::Timestamp(unit, _) => cast(
            &cast(array, &DataType::Timestamp(*unit, None)).map_err(Error::arrow("event time"))?,
            &DataType::Int64,
        ),
        _ => cast(array, &DataType::Int64),
    }
    .map_err(Error::arrow("event time"))?;
    Ok(ints.as_primitive::<Int64Type>().clone())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    fn schema_keyed_by(key: DataType) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", key, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    fn schema() -> SchemaRef {
        schema_keyed_by(DataType::Utf8)
    }

    /// Rows of (key, time, value), the keys given as an array.
    fn batch_with(
        key: ArrayRef,
        times: impl IntoIterator<Item = i64>,
        values: impl IntoIterator<Item = f64>,
    ) -> RecordBatch {
        RecordBatch::try_new(
            schema_keyed_by(key.data_type().clone()),
            vec![
                key,
                Arc::new(TimestampMicrosecondArray::from_iter_values(times)),
                Arc::new(Float64Array::from_iter_values(values)),
            ],
        )
        .expect("batch")
    }

    fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
        batch_with(
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            rows.iter().map(|r| r.1),
            rows.iter().map(|r| r.2),
        )
    }

    fn int_batch(rows: &[(i64, i64, f64)]) -> RecordBatch {
        batch_with(
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            rows.iter().map(|r| r.1),
            rows.iter().map(|r| r.2),
        )
    }

    fn values(table: &OnlineTable, keys: &[&str]) -> Vec<Option<f64>> {
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(keys.iter().copied()));
        let out = table.lookup(&[keys], &[0, 2], None).expect("lookup");
        out.column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn latest_event_time_wins_and_ties_go_to_the_later_row() {
        let mut table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        table
            .apply(&batch(&[("a", 10, 1.0), ("b", 5, 2.0), ("a", 5, 3.0)]), 0)
            .expect("apply");
        table
            .apply(&batch(&[("a", 10, 4.0), ("b", 4, 5.0)]), 0)
            .expect("apply");
        assert_eq!(
            values(&table, &["b", "zz", "a"]),
            vec![Some(2.0), None, Some(4.0)]
        );
    }

    #[test]
    fn ties_go_to_the_greater_position_whatever_the_order_of_application() {
        let mut table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        table
            .apply(&batch(&[("a", 10, 3.0), ("b", 10, 3.0)]), 3)
            .expect("apply");
        table.apply(&batch(&[("a", 10, 2.0)]), 2).expect("apply");
        // Compaction keeps each row's position.
        table.compact().expect("compact");
        table
            .apply(&batch(&[("a", 10, 1.0), ("b", 9, 1.0)]), 1)
            .expect("apply");
        assert_eq!(values(&table, &["a", "b"]), vec![Some(3.0), Some(3.0)]);
        table.apply(&batch(&[("b", 10, 4.0)]), 4).expect("apply");
        // The same position again: the row applied last wins.
        table
            .apply(&batch(&[("a", 10, 5.0), ("a", 10, 6.0)]), 3)
            .expect("apply");
        assert_eq!(values(&table, &["a", "b"]), vec![Some(6.0), Some(4.0)]);
    }

    #[test]
    fn bigint_keys_take_the_same_rules() {
        let schema = schema_keyed_by(DataType::Int64);
        let batch = |ids: Vec<Option<i64>>, times: Vec<i64>, v: Vec<f64>| {
            batch_with(Arc::new(Int64Array::from(ids)), times, v)
        };
        let mut table = OnlineTable::new(schema.clone(), vec![0], 1).expect("table");
        table
            .apply(
                &batch(
                    vec![Some(1), None, Some(2), Some(1)],
                    vec![10, 99, 5, 10],
                    vec![1.0, 2.0, 3.0, 4.0],
                ),
                0,
            )
            .expect("apply");
        table
            .apply(&batch(vec![Some(2)], vec![4], vec![5.0]), 0)
            .expect("apply");
        assert_eq!(table.len(), 2, "the NULL key is skipped");
        let keys: ArrayRef = Arc::new(Int64Array::from(vec![Some(2), None, Some(7), Some(1)]));
        let out = table.lookup(&[keys], &[0, 2], None).expect("lookup");
        let v: Vec<_> = out
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect();
        assert_eq!(v, vec![Some(3.0), None, None, Some(4.0)]);
    }

    #[test]
    fn garbage_collection_keeps_answers_and_bounds_memory() {
        let schema = schema_keyed_by(DataType::Int64);
        let batch = int_batch;
        const KEYS: i64 = 20_000;
        let mut table = OnlineTable::new(schema.clone(), vec![0], 1).expect("table");
        let mut expected: HashMap<i64, (i64, f64)> = HashMap::new();
        let initial: Vec<(i64, i64, f64)> = (0..KEYS).map(|k| (k, 0, -1.0)).collect();
        table.apply(&batch(&initial), 0).expect("apply");
        table.settle().expect("settle");
        expected.extend(initial.iter().map(|r| (r.0, (r.1, r.2))));
        let mut state = 11u64;
        let mut max_held = 0;
        for b in 0..300 {
            // Skewed: half the updates go to the first 1% of keys.
            let rows: Vec<(i64, i64, f64)> = (0..1_000)
                .map(|i| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let r = state >> 33;
                    let key = if r.is_multiple_of(2) {
                        (r / 2) as i64 % (KEYS / 100)
                    } else {
                        (r / 2) as i64 % KEYS
                    };
                    (key, ((r >> 8) % 400) as i64, (b * 1_000 + i) as f64)
                })
                .collect();
            table.apply(&batch(&rows), 0).expect("apply");
            for (k, t, v) in rows {
                let e = expected.entry(k).or_insert((t, v));
                if t >= e.0 {
                    *e = (t, v);
                }
            }
            max_held = max_held.max(table.held_rows);
        }
        assert!(
            max_held <= 2 * KEYS as usize + BIG_CHUNK_ROWS + 1_000,
            "held {max_held} rows for {KEYS} entities"
        );
        let keys: Vec<i64> = (0..KEYS).collect();
        let out = table
            .lookup(&[Arc::new(Int64Array::from(keys.clone()))], &[2], None)
            .expect("lookup");
        let got: Vec<Option<f64>> = out
            .column(0)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect();
        let want: Vec<Option<f64>> = keys.iter().map(|k| Some(expected[k].1)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn missing_keys_keep_their_key_and_request_order() {
        let mut table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        table.apply(&batch(&[("a", 1, 1.0)]), 0).expect("apply");
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["x", "a", "x"]));
        let out = table.lookup(&[keys], &[0, 1, 2], None).expect("lookup");
        let k: Vec<_> = out.column(0).as_string::<i32>().iter().collect();
        assert_eq!(k, vec![Some("x"), Some("a"), Some("x")]);
        assert_eq!(out.column(1).null_count(), 2);
    }

    #[test]
    fn max_age_hides_old_rows() {
        let mut table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        table
            .apply(&batch(&[("a", 100, 1.0), ("b", 10, 2.0)]), 0)
            .expect("apply");
        let keys: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let out = table.lookup(&[keys], &[2], Some(50)).expect("lookup");
        let v: Vec<_> = out
            .column(0)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect();
        assert_eq!(v, vec![Some(1.0), None]);
        assert_eq!(table.scan(&[0], Some(50)).expect("scan").num_rows(), 1);
    }

    #[test]
    fn many_small_batches_and_compaction_keep_answers() {
        let mut table = OnlineTable::new(schema(), vec![0], 1).expect("table");
        let mut expected: HashMap<String, (i64, f64)> = HashMap::new();
        let mut state = 7u64;
        for i in 0..5_000i64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", (state >> 33) % 97);
            let time = ((state >> 13) % 50) as i64;
            let value = i as f64;
            table
                .apply(&batch(&[(key.as_str(), time, value)]), 0)
                .expect("apply");
            let e = expected.entry(key).or_insert((time, value));
            if time >= e.0 {
                *e = (time, value);
            }
        }
        assert!(
            table.chunks.len() < SMALL_CHUNKS + 2,
            "{}",
            table.chunks.len()
        );
        let keys: Vec<&str> = expected.keys().map(String::as_str).collect();
        let got = values(&table, &keys);
        let want: Vec<Option<f64>> = keys.iter().map(|k| Some(expected[*k].1)).collect();
        assert_eq!(got, want);
        table.compact().expect("compact");
        assert_eq!(values(&table, &keys), want);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(table.lookup(&[ints.clone(), ints], &[0], None).is_err());
    }
}
