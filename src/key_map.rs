//! A hash map keyed by the values of one or more key columns, row by row.
//!
//! A single integer key (the common entity id: BIGINT, or INT as Iceberg's
//! `int` columns are) is hashed as a BIGINT; a single string or binary key
//! by its bytes; any other key is row-encoded into bytes. The integer map
//! has no per-key allocation and compares keys without a pointer chase, which matters where every row of a
//! stream or of a join's right side probes it. A string key looked up
//! without row encoding is neither copied nor padded to the encoding's
//! blocks: at 10M right rows of 100k string ids, encoding and comparing the
//! encoded keys was the larger part of an ASOF JOIN's time.
//! Rows with a NULL in any key column are never keys.

use std::borrow::Cow;
use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, Rows, SortField};

use crate::error::{Error, Result};

/// Key columns' values → `V`. String and row-encoded keys of up to `INLINE`
/// bytes are held in the table itself (see [`ShortKey`]).
pub enum KeyMap<V, const INLINE: usize = 22> {
    Int {
        map: HashMap<i64, V, ahash::RandomState>,
        what: &'static str,
    },
    /// One string or binary key (any of Arrow's layouts), by its bytes.
    Bytes {
        map: HashMap<ShortKey<INLINE>, V, ahash::RandomState>,
        what: &'static str,
    },
    Encoded {
        converter: RowConverter,
        map: HashMap<ShortKey<INLINE>, V, ahash::RandomState>,
        what: &'static str,
    },
}

impl<V, const INLINE: usize> std::fmt::Debug for KeyMap<V, INLINE> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMap").field("keys", &self.len()).finish()
    }
}

impl<V, const INLINE: usize> KeyMap<V, INLINE> {
    /// An empty map for keys of `types`; `what` names its user in errors.
    pub fn new(types: &[DataType], what: &'static str) -> Result<Self> {
        if let [t] = types
            && is_int(t)
        {
            return Ok(KeyMap::Int {
                map: HashMap::default(),
                what,
            });
        }
        if let [t] = types
            && is_bytes(t)
        {
            return Ok(KeyMap::Bytes {
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
            KeyMap::Bytes { map, .. } => map.len(),
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
            KeyMap::Bytes { map, .. } => {
                map.keys().map(ShortKey::heap_bytes).sum::<usize>()
                    + map.capacity() * (std::mem::size_of::<(ShortKey<INLINE>, V)>() + 1)
            }
            KeyMap::Encoded { map, .. } => {
                map.keys().map(ShortKey::heap_bytes).sum::<usize>()
                    + map.capacity() * (std::mem::size_of::<(ShortKey<INLINE>, V)>() + 1)
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
            KeyMap::Bytes { map, what } => {
                let bytes = KeyBytes::of(keys, what)?;
                for row in 0..bytes.len() {
                    let Some(key) = bytes.get(row) else {
                        continue;
                    };
                    if let Some(new) = visit(row, map.get_mut(key)) {
                        map.insert(ShortKey::new(key), new);
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
                        map.insert(ShortKey::new(key.as_ref()), new);
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
            KeyMap::Bytes { map, what } => {
                let bytes = KeyBytes::of(keys, what)?;
                Ok((0..bytes.len())
                    .map(|i| bytes.get(i).and_then(|key| map.get(key)))
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

    /// The integer keys and their values, for a map keyed by one integer.
    pub fn int_entries(&self) -> Option<impl Iterator<Item = (i64, &V)> + '_> {
        match self {
            KeyMap::Int { map, .. } => Some(map.iter().map(|(k, v)| (*k, v))),
            KeyMap::Bytes { .. } | KeyMap::Encoded { .. } => None,
        }
    }

    /// Like [`Self::int_entries`], with the values to rewrite.
    pub fn int_entries_mut(&mut self) -> Option<impl Iterator<Item = (i64, &mut V)> + '_> {
        match self {
            KeyMap::Int { map, .. } => Some(map.iter_mut().map(|(k, v)| (*k, v))),
            KeyMap::Bytes { .. } | KeyMap::Encoded { .. } => None,
        }
    }

    pub fn values(&self) -> Box<dyn Iterator<Item = &V> + '_> {
        match self {
            KeyMap::Int { map, .. } => Box::new(map.values()),
            KeyMap::Bytes { map, .. } => Box::new(map.values()),
            KeyMap::Encoded { map, .. } => Box::new(map.values()),
        }
    }

    pub fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut V> + '_> {
        match self {
            KeyMap::Int { map, .. } => Box::new(map.values_mut()),
            KeyMap::Bytes { map, .. } => Box::new(map.values_mut()),
            KeyMap::Encoded { map, .. } => Box::new(map.values_mut()),
        }
    }
}

/// A key's bytes (a string key's, or a row-encoded key's), held in the
/// table itself when at most `N` long (entity ids usually are), so that a
/// lookup compares them without a cache miss on an allocation of their own.
/// The key is as large as `N` plus 2, rounded up to 8 (and at least a boxed
/// slice's 16): a map that lives long with many keys (the online store)
/// holds 22, one that a join probes with every right row holds more.
#[derive(Clone)]
pub enum ShortKey<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> ShortKey<N> {
    fn new(key: &[u8]) -> Self {
        if key.len() > N {
            return ShortKey::Heap(key.into());
        }
        let mut bytes = [0; N];
        bytes[..key.len()].copy_from_slice(key);
        ShortKey::Inline {
            len: key.len() as u8,
            bytes,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            ShortKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortKey::Heap(b) => b,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            ShortKey::Inline { .. } => 0,
            ShortKey::Heap(b) => b.len(),
        }
    }
}

// Hashed and compared as its bytes, so that a `&[u8]` finds it.
impl<const N: usize> std::hash::Hash for ShortKey<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<const N: usize> PartialEq for ShortKey<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for ShortKey<N> {}

impl<const N: usize> std::borrow::Borrow<[u8]> for ShortKey<N> {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

fn is_bytes(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// A single string or binary key column, read row by row as bytes.
enum KeyBytes<'a> {
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Utf8View(&'a arrow::array::StringViewArray),
    Binary(&'a arrow::array::BinaryArray),
    LargeBinary(&'a arrow::array::LargeBinaryArray),
    BinaryView(&'a arrow::array::BinaryViewArray),
}

impl<'a> KeyBytes<'a> {
    fn of(keys: &'a [ArrayRef], what: &str) -> Result<Self> {
        Ok(match keys {
            [k] => match k.data_type() {
                DataType::Utf8 => KeyBytes::Utf8(k.as_string()),
                DataType::LargeUtf8 => KeyBytes::LargeUtf8(k.as_string()),
                DataType::Utf8View => KeyBytes::Utf8View(k.as_string_view()),
                DataType::Binary => KeyBytes::Binary(k.as_binary()),
                DataType::LargeBinary => KeyBytes::LargeBinary(k.as_binary()),
                DataType::BinaryView => KeyBytes::BinaryView(k.as_binary_view()),
                other => {
                    return Err(Error::Internal(format!(
                        "{what}: expected one string key column, got {other:?}"
                    )));
                }
            },
            _ => {
                return Err(Error::Internal(format!(
                    "{what}: expected one string key column, got {} columns",
                    keys.len()
                )));
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            KeyBytes::Utf8(a) => a.len(),
            KeyBytes::LargeUtf8(a) => a.len(),
            KeyBytes::Utf8View(a) => a.len(),
            KeyBytes::Binary(a) => a.len(),
            KeyBytes::LargeBinary(a) => a.len(),
            KeyBytes::BinaryView(a) => a.len(),
        }
    }

    /// Row `i`'s bytes; None when it is NULL.
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        match self {
            KeyBytes::Utf8(a) => a.is_valid(i).then(|| a.value(i).as_bytes()),
            KeyBytes::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i).as_bytes()),
            KeyBytes::Utf8View(a) => a.is_valid(i).then(|| a.value(i).as_bytes()),
            KeyBytes::Binary(a) => a.is_valid(i).then(|| a.value(i)),
            KeyBytes::LargeBinary(a) => a.is_valid(i).then(|| a.value(i)),
            KeyBytes::BinaryView(a) => a.is_valid(i).then(|| a.value(i)),
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

/// Integer types whose every value is a BIGINT one: keys of these are
/// looked up as BIGINTs. An INT key row-encoded was a heap allocation per
/// key and a pointer chase per lookup: twice a BIGINT key's join time.
fn is_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// One integer key column (BIGINT, INT, SMALLINT, TINYINT, unsigned up to
/// 32 bits) as BIGINTs: the column itself, or converted. `None` for any
/// other key.
pub fn as_int64(keys: &[ArrayRef]) -> Option<Cow<'_, Int64Array>> {
    let [k] = keys else {
        return None;
    };
    match k.data_type() {
        DataType::Int64 => Some(Cow::Borrowed(k.as_primitive::<Int64Type>())),
        t if is_int(t) => arrow::compute::cast(k, &DataType::Int64)
            .ok()
            .map(|a| Cow::Owned(a.as_primitive::<Int64Type>().clone())),
        _ => None,
    }
}

fn int_keys<'a>(keys: &'a [ArrayRef], what: &str) -> Result<Cow<'a, Int64Array>> {
    as_int64(keys).ok_or_else(|| {
        Error::Internal(format!(
            "{what}: expected one integer key column, got {:?}",
            keys.iter().map(|k| k.data_type()).collect::<Vec<_>>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{LargeStringArray, StringArray, StringViewArray};

    use super::*;

    fn groups(map: &KeyMap<u32>, keys: ArrayRef) -> Vec<Option<u32>> {
        map.find(&[keys])
            .expect("find")
            .into_iter()
            .map(|v| v.copied())
            .collect()
    }

    /// A string key is found by its bytes whatever the layout of the batch
    /// that asks; NULL is never a key; an empty string is one.
    #[test]
    fn string_keys_are_found_by_their_bytes_in_any_layout() {
        let mut map: KeyMap<u32> = KeyMap::new(&[DataType::Utf8], "test").expect("map");
        assert!(matches!(map, KeyMap::Bytes { .. }));
        let build: ArrayRef = Arc::new(StringArray::from(vec![
            Some("user_1"),
            None,
            Some(""),
            Some("user_1"),
            Some("user_22"),
        ]));
        let mut next = 0;
        let mut seen = Vec::new();
        map.upsert(&[build], |row, existing| {
            let existing = existing.map(|v| *v);
            seen.push((row, existing));
            (existing.is_none()).then(|| {
                next += 1;
                next - 1
            })
        })
        .expect("upsert");
        assert_eq!(
            seen,
            vec![(0, None), (2, None), (3, Some(0)), (4, None)],
            "the NULL row is skipped, a repeated key finds its value"
        );
        assert_eq!(map.len(), 3);
        let probe = vec![
            Some("user_22"),
            Some("user_2"),
            None,
            Some(""),
            Some("user_1"),
        ];
        let expected = vec![Some(2), None, None, Some(1), Some(0)];
        assert_eq!(
            groups(&map, Arc::new(StringArray::from(probe.clone()))),
            expected
        );
        assert_eq!(
            groups(&map, Arc::new(LargeStringArray::from(probe.clone()))),
            expected
        );
        assert_eq!(
            groups(&map, Arc::new(StringViewArray::from(probe))),
            expected
        );
        // Keys longer than the inline bytes are held apart, found alike.
        let long = "x".repeat(23);
        let longer: ArrayRef = Arc::new(StringArray::from(vec![long.as_str(), &long[1..]]));
        map.upsert(std::slice::from_ref(&longer), |_, existing| {
            existing.is_none().then_some(9)
        })
        .expect("upsert");
        assert_eq!(groups(&map, longer), vec![Some(9), Some(9)]);
        assert!(matches!(
            ShortKey::<22>::new(long.as_bytes()),
            ShortKey::Heap(_)
        ));
        assert!(matches!(
            ShortKey::<22>::new(&long.as_bytes()[1..]),
            ShortKey::Inline { .. }
        ));
        let wrong: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![1]));
        assert!(map.find(&[wrong]).is_err());
    }

    /// With 38 bytes inline (an ASOF JOIN's groups), keys of a BIGINT and a
    /// short string, and UUIDs as text, are held in the table itself, and
    /// found.
    #[test]
    fn composite_and_uuid_keys_are_held_inline() {
        use arrow::array::Int64Array;
        let mut map: KeyMap<u32, 38> =
            KeyMap::new(&[DataType::Int64, DataType::Utf8], "test").expect("map");
        let region: ArrayRef = Arc::new(Int64Array::from(vec![7, 7, 8, 7]));
        let user: ArrayRef = Arc::new(StringArray::from(vec![
            "user_1234567890",
            "user_2",
            "user_1234567890",
            "user_1234567890",
        ]));
        let keys = [region, user];
        let mut next = 0;
        map.upsert(&keys, |_, existing| {
            existing.is_none().then(|| {
                next += 1;
                next - 1
            })
        })
        .expect("upsert");
        let KeyMap::Encoded { map: held, .. } = &map else {
            panic!("a composite key is row-encoded");
        };
        assert!(held.keys().all(|k| matches!(k, ShortKey::Inline { .. })));
        let found: Vec<Option<u32>> = map
            .find(&keys)
            .expect("find")
            .into_iter()
            .map(|v| v.copied())
            .collect();
        assert_eq!(found, vec![Some(0), Some(1), Some(2), Some(0)]);
        let uuid = "0b5c9a4e-3f1d-4c2a-9e7b-8d6f5a4c3b2a";
        assert!(matches!(
            ShortKey::<38>::new(uuid.as_bytes()),
            ShortKey::Inline { .. }
        ));
        assert_eq!(std::mem::size_of::<ShortKey<38>>(), 40);
        // The online store's keys stay as small as before.
        assert_eq!(std::mem::size_of::<ShortKey<22>>(), 24);
    }
}
