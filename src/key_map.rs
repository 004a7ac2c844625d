//! A hash map keyed by the values of one or more key columns, row by row.
//!
//! A single BIGINT key (the common entity id) is hashed as the integer
//! itself; any other key is row-encoded into bytes. The integer map has no
//! per-key allocation and compares keys without a pointer chase, which
//! matters where every row of a stream or of a join's right side probes it.
//! Rows with a NULL in any key column are never keys.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

/// Key columns' values → `V`.
pub enum KeyMap<V> {
    Int {
        map: HashMap<i64, V, ahash::RandomState>,
        what: &'static str,
    },
    Encoded {
        converter: RowConverter,
        map: HashMap<Box<[u8]>, V, ahash::RandomState>,
        what: &'static str,
    },
}

impl<V> std::fmt::Debug for KeyMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMap").field("keys", &self.len()).finish()
    }
}

impl<V> KeyMap<V> {
    /// An empty map for keys of `types`; `what` names its user in errors.
    pub fn new(types: &[DataType], what: &'static str) -> Result<Self> {
        if let [DataType::Int64] = types {
            return Ok(KeyMap::Int {
                map: HashMap::default(),
                what,
            });
        }
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        let converter =
            RowConverter::new(fields).map_err(Error::arrow(format!("{what}: key encoding")))?;
        Ok(KeyMap::Encoded {
            converter,
            map: HashMap::default(),
            what,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            KeyMap::Int { map, .. } => map.len(),
            KeyMap::Encoded { map, .. } => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the map and its keys.
    pub fn memory_bytes(&self) -> usize {
        match self {
            KeyMap::Int { map, .. } => map.capacity() * (std::mem::size_of::<(i64, V)>() + 1),
            KeyMap::Encoded { map, .. } => {
                map.keys().map(|k| k.len()).sum::<usize>()
                    + map.capacity() * (std::mem::size_of::<(Box<[u8]>, V)>() + 1)
            }
        }
    }

    /// Calls `visit(row, value)` for each row whose key has no NULL, in row
    /// order, with the key's value if it has one; what `visit` returns for a
    /// key without one becomes its value.
    pub fn upsert(
        &mut self,
        keys: &[ArrayRef],
        mut visit: impl FnMut(usize, Option<&mut V>) -> Option<V>,
    ) -> Result<()> {
        match self {
            KeyMap::Int { map, what } => {
                let ids = int_keys(keys, what)?;
                map.reserve(ids.len().min(1 << 16));
                for row in (0..ids.len()).filter(|&r| !ids.is_null(r)) {
                    let id = ids.value(row);
                    if let Some(new) = visit(row, map.get_mut(&id)) {
                        map.insert(id, new);
                    }
                }
            }
            KeyMap::Encoded {
                converter,
                map,
                what,
            } => {
                let rows = encode(converter, keys, what)?;
                for row in (0..rows.num_rows()).filter(|&r| !has_null(keys, r)) {
                    let key = rows.row(row);
                    if let Some(new) = visit(row, map.get_mut(key.as_ref())) {
                        map.insert(key.as_ref().into(), new);
                    }
                }
            }
        }
        Ok(())
    }

    /// The value of each row's key (one array per key column), in row order.
    pub fn find(&self, keys: &[ArrayRef]) -> Result<Vec<Option<&V>>> {
        match self {
            KeyMap::Int { map, what } => {
                let ids = int_keys(keys, what)?;
                Ok((0..ids.len())
                    .map(|i| (!ids.is_null(i)).then(|| map.get(&ids.value(i))).flatten())
                    .collect())
            }
            KeyMap::Encoded {
                converter,
                map,
                what,
            } => {
                let rows = encode(converter, keys, what)?;
                Ok((0..rows.num_rows())
                    .map(|i| {
                        (!has_null(keys, i))
                            .then(|| map.get(rows.row(i).as_ref()))
                            .flatten()
                    })
                    .collect())
            }
        }
    }

    /// The integer keys and their values, for a map keyed by one BIGINT.
    pub fn int_entries(&self) -> Option<impl Iterator<Item = (i64, &V)> + '_> {
        match self {
            KeyMap::Int { map, .. } => Some(map.iter().map(|(k, v)| (*k, v))),
            KeyMap::Encoded { .. } => None,
        }
    }

    /// Like [`Self::int_entries`], with the values to rewrite.
    pub fn int_entries_mut(&mut self) -> Option<impl Iterator<Item = (i64, &mut V)> + '_> {
        match self {
            KeyMap::Int { map, .. } => Some(map.iter_mut().map(|(k, v)| (*k, v))),
            KeyMap::Encoded { .. } => None,
        }
    }

    pub fn values(&self) -> Box<dyn Iterator<Item = &V> + '_> {
        match self {
            KeyMap::Int { map, .. } => Box::new(map.values()),
            KeyMap::Encoded { map, .. } => Box::new(map.values()),
        }
    }

    pub fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut V> + '_> {
        match self {
            KeyMap::Int { map, .. } => Box::new(map.values_mut()),
            KeyMap::Encoded { map, .. } => Box::new(map.values_mut()),
        }
    }
}

fn encode(converter: &RowConverter, keys: &[ArrayRef], what: &str) -> Result<Rows> {
    converter
        .convert_columns(keys)
        .map_err(Error::arrow(format!("{what}: key encoding")))
}

fn has_null(keys: &[ArrayRef], row: usize) -> bool {
    keys.iter().any(|k| k.is_null(row))
}

fn int_keys<'a>(keys: &'a [ArrayRef], what: &str) -> Result<&'a arrow::array::Int64Array> {
    match keys {
        [k] if k.data_type() == &DataType::Int64 => Ok(k.as_primitive::<Int64Type>()),
        _ => Err(Error::Internal(format!(
            "{what}: expected one BIGINT key column, got {:?}",
            keys.iter().map(|k| k.data_type()).collect::<Vec<_>>()
        ))),
    }
}
