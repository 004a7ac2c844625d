//! Entity key → where its live row is (see [`crate::key_map`]).

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::datatypes::DataType;

use crate::error::Result;
use crate::key_map::KeyMap;

/// Where the live row of a key is, its event time (physical units) and its
/// place in ingestion order.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// The id of the batch the row arrived in: an index into the table's
    /// `locations`, which say where that batch's rows are now.
    pub chunk: u32,
    /// The row within that batch.
    pub row: u32,
    pub time: i64,
    /// The position its batch was applied at: breaks ties on `time`, since
    /// batches need not be applied in ingestion order.
    pub pos: u64,
}

/// Entity key → [`Slot`].
#[derive(Debug)]
pub struct Slots(KeyMap<Slot>);

impl Slots {
    /// An empty map for keys of `types`.
    pub fn new(types: &[DataType]) -> Result<Self> {
        Ok(Slots(KeyMap::new(types, "online store")?))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of the map and its keys.
    pub fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }

    /// Points each row's key at `(chunk, row)` unless the key already has a
    /// later `(time, pos)`; rows with a NULL key or time are skipped. True
    /// when any row was taken.
    pub fn upsert(
        &mut self,
        keys: &[ArrayRef],
        times: &Int64Array,
        chunk: u32,
        pos: u64,
    ) -> Result<bool> {
        let mut taken = false;
        self.0.upsert(keys, |row, existing| {
            if times.is_null(row) {
                return None;
            }
            let slot = Slot {
                chunk,
                row: row as u32,
                time: times.value(row),
                pos,
            };
            match existing {
                // Equal: the same position, applied again or later in its batch.
                Some(e) if (e.time, e.pos) > (slot.time, slot.pos) => None,
                Some(e) => {
                    *e = slot;
                    taken = true;
                    None
                }
                None => {
                    taken = true;
                    Some(slot)
                }
            }
        })?;
        Ok(taken)
    }

    /// The slot of each requested key (one array per key column), in order.
    pub fn find(&self, keys: &[ArrayRef]) -> Result<Vec<Option<Slot>>> {
        Ok(self.0.find(keys)?.into_iter().map(|s| s.copied()).collect())
    }

    pub fn values(&self) -> Box<dyn Iterator<Item = &Slot> + '_> {
        self.0.values()
    }

    pub fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut Slot> + '_> {
        self.0.values_mut()
    }
}
