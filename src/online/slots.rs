//! Entity key → where its live row is.
//!
//! A single BIGINT key (the common entity id) is hashed as the integer
//! itself; any other key is row-encoded into bytes. The integer map has no
//! per-entity allocation and compares keys without a pointer chase, which
//! matters on the ack path of a stream (every streamed row probes it) and on
//! every lookup.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};

/// Where the live row of a key is, and its event time (physical units).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub chunk: u32,
    pub row: u32,
    pub time: i64,
}

/// Entity key → [`Slot`].
pub enum Slots {
    Int(HashMap<i64, Slot, ahash::RandomState>),
    Encoded {
        converter: RowConverter,
        map: HashMap<Box<[u8]>, Slot, ahash::RandomState>,
    },
}

impl Slots {
    /// An empty map for keys of `types`.
    pub fn new(types: &[DataType]) -> Result<Self> {
        if let [DataType::Int64] = types {
            return Ok(Slots::Int(HashMap::default()));
        }
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter = RowConverter::new(fields)
            .map_err(|e| Error::Invalid(format!("online store key encoding: {e}")))?;
        Ok(Slots::Encoded {
            converter,
            map: HashMap::default(),
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Slots::Int(map) => map.len(),
            Slots::Encoded { map, .. } => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the map and its keys.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Slots::Int(map) => map.capacity() * (std::mem::size_of::<(i64, Slot)>() + 1),
            Slots::Encoded { map, .. } => {
                let keys: usize = map.keys().map(|k| k.len()).sum();
                keys + map.capacity() * (std::mem::size_of::<(Box<[u8]>, Slot)>() + 1)
            }
        }
    }

    /// Points each row's key at `(chunk, row)` unless the key already has a
    /// later time; rows with a NULL key or time are skipped. True when any
    /// row was taken.
    pub fn upsert(&mut self, keys: &[ArrayRef], times: &Int64Array, chunk: u32) -> Result<bool> {
        let mut taken = false;
        let usable = |row: usize| !times.is_null(row) && keys.iter().all(|k| !k.is_null(row));
        let mut put = |existing: Option<&mut Slot>, slot: Slot| -> Option<Slot> {
            match existing {
                Some(e) if e.time > slot.time => None,
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
        };
        match self {
            Slots::Int(map) => {
                let ids = int_keys(keys)?;
                map.reserve(ids.len().min(1 << 16));
                for row in (0..ids.len()).filter(|&r| usable(r)) {
                    let slot = slot_at(chunk, row, times);
                    let id = ids.value(row);
                    if let Some(new) = put(map.get_mut(&id), slot) {
                        map.insert(id, new);
                    }
                }
            }
            Slots::Encoded { converter, map } => {
                let rows = converter
                    .convert_columns(keys)
                    .map_err(|e| Error::Invalid(format!("online store key encoding: {e}")))?;
                for row in (0..rows.num_rows()).filter(|&r| usable(r)) {
                    let slot = slot_at(chunk, row, times);
                    let key = rows.row(row);
                    if let Some(new) = put(map.get_mut(key.as_ref()), slot) {
                        map.insert(key.as_ref().into(), new);
                    }
                }
            }
        }
        Ok(taken)
    }

    /// The slot of each requested key (one array per key column), in order.
    pub fn find(&self, keys: &[ArrayRef]) -> Result<Vec<Option<Slot>>> {
        match self {
            Slots::Int(map) => {
                let ids = int_keys(keys)?;
                Ok((0..ids.len())
                    .map(|i| {
                        if ids.is_null(i) {
                            None
                        } else {
                            map.get(&ids.value(i)).copied()
                        }
                    })
                    .collect())
            }
            Slots::Encoded { converter, map } => {
                let rows = converter
                    .convert_columns(keys)
                    .map_err(|e| Error::Invalid(format!("online lookup keys: {e}")))?;
                Ok((0..rows.num_rows())
                    .map(|i| map.get(rows.row(i).as_ref()).copied())
                    .collect())
            }
        }
    }

    pub fn values(&self) -> Box<dyn Iterator<Item = &Slot> + '_> {
        match self {
            Slots::Int(map) => Box::new(map.values()),
            Slots::Encoded { map, .. } => Box::new(map.values()),
        }
    }

    pub fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut Slot> + '_> {
        match self {
            Slots::Int(map) => Box::new(map.values_mut()),
            Slots::Encoded { map, .. } => Box::new(map.values_mut()),
        }
    }
}

fn slot_at(chunk: u32, row: usize, times: &Int64Array) -> Slot {
    Slot {
        chunk,
        row: row as u32,
        time: times.value(row),
    }
}

fn int_keys(keys: &[ArrayRef]) -> Result<&Int64Array> {
    match keys {
        [k] if k.data_type() == &DataType::Int64 => Ok(k.as_primitive::<Int64Type>()),
        _ => Err(Error::Invalid(format!(
            "online store: expected one BIGINT key column, got {:?}",
            keys.iter().map(|k| k.data_type()).collect::<Vec<_>>()
        ))),
    }
}
