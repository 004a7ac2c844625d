//! The bytes of a segment: record frames (length, checksum, LSN, Arrow IPC
//! payload), their encoding, and walking them back with every checksum
//! checked (see the layout in [`super`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};

/// First bytes of every segment file.
pub(super) const MAGIC: &[u8; 8] = b"PLWAL001";
/// Bytes before the payload of a record: length, crc, lsn.
pub(super) const HEADER_LEN: usize = 16;
/// Segment file names are `{first_lsn:020}.wal`.
const SEGMENT_SUFFIX: &str = ".wal";

/// A record encoded for a log, not queued yet.
pub struct Encoded {
    /// The whole record: header (length filled in; crc and lsn are patched by the
    /// writer, which is the one that knows the lsn) followed by the payload.
    pub(super) frame: Vec<u8>,
    /// crc32 state over the payload alone, combined with the lsn by the writer so
    /// the writer thread never walks the payload bytes.
    pub(super) payload_crc: crc32fast::Hasher,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("bytes", &self.frame.len())
            .finish()
    }
}

/// Encodes `batch` as a record frame with a zeroed crc and lsn, plus the crc
/// state of its payload.
pub(super) fn encode_frame(dir: &Path, batch: &RecordBatch) -> Result<Encoded> {
    let encode_error = |e: arrow::error::ArrowError| Error::Arrow {
        context: format!(
            "write-ahead log {}: cannot encode batch as Arrow IPC",
            dir.display()
        ),
        source: Box::new(e),
    };
    // Room for the header up front so the frame is one buffer, written with no copy.
    let hint = batch.get_array_memory_size().min(64 << 20) + 1024;
    let mut frame = Vec::with_capacity(HEADER_LEN + hint);
    frame.resize(HEADER_LEN, 0);
    let mut writer = StreamWriter::try_new(frame, &batch.schema()).map_err(encode_error)?;
    writer.write(batch).map_err(encode_error)?;
    let mut frame = writer.into_inner().map_err(encode_error)?;

    let payload = &frame[HEADER_LEN..];
    let len = u32::try_from(payload.len()).map_err(|_| {
        Error::Invalid(format!(
            "write-ahead log {}: batch encodes to {} bytes, more than a record can hold (4 GiB); \
             split it",
            dir.display(),
            payload.len()
        ))
    })?;
    let mut payload_crc = crc32fast::Hasher::new();
    payload_crc.update(payload);
    frame[0..4].copy_from_slice(&len.to_le_bytes());
    Ok(Encoded { frame, payload_crc })
}

/// crc of a record: over its lsn bytes, then its payload.
pub(super) fn record_crc(lsn: u64, payload_crc: &crc32fast::Hasher) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.combine(payload_crc);
    crc.finalize()
}

pub(super) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// The first LSN encoded in a segment file name, or None for other files.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where scanning a segment stopped before its end, and why.
#[derive(Debug)]
pub(super) enum Damage {
    /// The file is shorter than the magic or does not start with it.
    Header,
    /// A record at `offset` is incomplete, fails its crc or has the wrong lsn.
    Record { offset: u64, reason: String },
}

/// A record located in a segment's bytes.
pub(super) struct Located {
    pub(super) lsn: u64,
    pub(super) offset: usize,
    pub(super) payload: std::ops::Range<usize>,
}

/// Result of walking one segment's bytes.
pub(super) struct Scan {
    pub(super) records: Vec<Located>,
    /// Bytes up to the end of the last intact record (or the magic).
    pub(super) valid_len: u64,
    pub(super) damage: Option<Damage>,
}

/// Walks the records of a segment whose first record must have `first_lsn`.
pub(super) fn scan_segment(data: &[u8], first_lsn: u64) -> Scan {
    let mut scan = Scan {
        records: Vec::new(),
        valid_len: 0,
        damage: None,
    };
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        scan.damage = Some(Damage::Header);
        return scan;
    }
    let mut pos = MAGIC.len();
    let mut expected = first_lsn;
    while pos < data.len() {
        let bad = |reason: String| Damage::Record {
            offset: pos as u64,
            reason,
        };
        let rest = &data[pos..];
        if rest.len() < HEADER_LEN {
            scan.damage = Some(bad(format!(
                "record header cut short ({} of {HEADER_LEN} bytes)",
                rest.len()
            )));
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let mut lsn_bytes = [0u8; 8];
        lsn_bytes.copy_from_slice(&rest[8..16]);
        let lsn = u64::from_le_bytes(lsn_bytes);
        if rest.len() - HEADER_LEN < len {
            scan.damage = Some(bad(format!(
                "record payload cut short ({} of {len} bytes)",
                rest.len() - HEADER_LEN
            )));
            break;
        }
        let payload = &rest[HEADER_LEN..HEADER_LEN + len];
        let mut payload_crc = crc32fast::Hasher::new();
        payload_crc.update(payload);
        let actual = record_crc(lsn, &payload_crc);
        if actual != crc {
            scan.damage = Some(bad(format!(
                "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
            )));
            break;
        }
        if lsn != expected {
            scan.damage = Some(bad(format!("lsn {lsn} where {expected} was expected")));
            break;
        }
        let start = pos + HEADER_LEN;
        scan.records.push(Located {
            lsn,
            offset: pos,
            payload: start..start + len,
        });
        pos = start + len;
        expected = lsn.saturating_add(1);
    }
    scan.valid_len = if scan.damage.is_some() {
        scan.records.last().map_or(MAGIC.len(), |r| r.payload.end) as u64
    } else {
        data.len() as u64
    };
    scan
}

/// True for bytes a crash can leave in a segment created but never written: an
/// empty file, part of the magic, or zeros from a size update without data.
pub(super) fn never_written(data: &[u8]) -> bool {
    (data.len() < MAGIC.len() && MAGIC.starts_with(data)) || data.iter().all(|b| *b == 0)
}

/// Decodes a record payload: an IPC stream with exactly one batch.
pub(super) fn decode_payload(payload: &[u8]) -> std::result::Result<RecordBatch, String> {
    let mut reader =
        StreamReader::try_new(Cursor::new(payload), None).map_err(|e| e.to_string())?;
    let batch = match reader.next() {
        Some(batch) => batch.map_err(|e| e.to_string())?,
        None => return Err("the IPC stream holds no batch".to_string()),
    };
    if reader.next().is_some() {
        return Err("the IPC stream holds more than one batch".to_string());
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use arrow::array::RecordBatch;
    use arrow::ipc::reader::StreamReader;

    use super::super::testing::*;
    use super::*;

    #[tokio::test]
    async fn on_disk_format_matches_the_documented_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(dir.path(), 0);
        let b = batch(9, 3);
        wal.append(&b).await.expect("append");
        wal.append(&b).await.expect("append");
        let data = fs::read(segment_path(dir.path(), 1)).expect("segment 1");
        assert_eq!(&data[..8], b"PLWAL001");
        let mut pos = 8;
        for lsn in 1..=2u64 {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("len")) as usize;
            let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("crc"));
            assert_eq!(&data[pos + 8..pos + 16], &lsn.to_le_bytes());
            let payload = &data[pos + 16..pos + 16 + len];
            assert_eq!(
                crc,
                crc32fast::hash(&[&lsn.to_le_bytes()[..], payload].concat())
            );
            // A plain Arrow IPC stream: any reader can decode it.
            let batches: Vec<RecordBatch> = StreamReader::try_new(payload, None)
                .expect("ipc stream")
                .collect::<std::result::Result<_, _>>()
                .expect("batches");
            assert_eq!(batches, vec![b.clone()]);
            pos += 16 + len;
        }
        assert_eq!(pos, data.len());
    }
}
