//! Result batches cut for leaving the process (Flight messages, Arrow IPC
//! streams).
//!
//! A string or binary view array is written with every buffer it points
//! into, however few of their bytes its rows use: a row sliced out of a large
//! batch, or each piece Flight's encoder cuts a batch into, would carry the
//! whole batch's bytes. So batches with view columns are cut here by the
//! bytes their rows use, and each piece's views are copied into buffers of
//! their own when the piece uses little of the ones it points into.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, GenericByteViewArray, RecordBatch};
use arrow::datatypes::{ByteViewType, DataType};
use arrow::error::ArrowError;

/// `batch` as pieces of at most about `max_bytes` each (one piece when it has
/// no view columns, which writers cut well themselves), their views compacted
/// where they waste space.
pub fn outbound_pieces(
    batch: RecordBatch,
    max_bytes: usize,
) -> Result<Vec<RecordBatch>, ArrowError> {
    let has_views = batch
        .columns()
        .iter()
        .any(|c| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView));
    if !has_views || batch.num_rows() == 0 {
        return Ok(vec![batch]);
    }
    let used: usize = batch.columns().iter().map(used_bytes).sum();
    let pieces = used.div_ceil(max_bytes.max(1)).max(1);
    let rows = batch.num_rows().div_ceil(pieces);
    (0..batch.num_rows())
        .step_by(rows)
        .map(|start| {
            let piece = batch.slice(start, rows.min(batch.num_rows() - start));
            compact_views(piece)
        })
        .collect()
}

/// The bytes a column's rows use: a view array's views and the bytes they
/// point at, any other array's buffers.
fn used_bytes(column: &ArrayRef) -> usize {
    match column.data_type() {
        DataType::Utf8View => view_bytes(column.as_string_view()),
        DataType::BinaryView => view_bytes(column.as_binary_view()),
        _ => column.get_buffer_memory_size(),
    }
}

fn view_bytes<T: ByteViewType + ?Sized>(views: &GenericByteViewArray<T>) -> usize {
    views.len() * 16 + views.total_buffer_bytes_used()
}

/// Whether a view array holds more than an eighth beyond what its rows use:
/// copying what they use costs less than sending the rest.
fn wasteful<T: ByteViewType + ?Sized>(views: &GenericByteViewArray<T>) -> bool {
    let held: usize = views.data_buffers().iter().map(|b| b.len()).sum();
    let used = views.total_buffer_bytes_used();
    held > used + used / 8 + 4096
}

fn compact_views(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut columns = batch.columns().to_vec();
    let mut changed = false;
    for column in &mut columns {
        let compacted = match column.data_type() {
            DataType::Utf8View => compacted(column.as_string_view()),
            DataType::BinaryView => compacted(column.as_binary_view()),
            _ => None,
        };
        if let Some(compacted) = compacted {
            *column = compacted;
            changed = true;
        }
    }
    if !changed {
        return Ok(batch);
    }
    RecordBatch::try_new(batch.schema(), columns)
}

/// The views copied into buffers of their own, when they waste space.
fn compacted<T: ByteViewType + ?Sized>(views: &GenericByteViewArray<T>) -> Option<ArrayRef> {
    wasteful(views).then(|| Arc::new(views.gc()) as ArrayRef)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;
    use arrow::datatypes::{Field, Schema};

    fn sent_bytes(pieces: &[RecordBatch]) -> usize {
        pieces
            .iter()
            .flat_map(|b| b.columns())
            .map(|c| c.get_buffer_memory_size())
            .sum()
    }

    #[test]
    fn views_are_cut_and_compacted_by_the_bytes_they_use() {
        let long: Vec<String> = (0..20_000).map(|i| format!("{i:0>200}")).collect();
        let views = StringViewArray::from_iter_values(long.iter());
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(views)]).expect("batch");
        let text = 20_000 * 200;

        // One row of a large batch carries its own bytes only.
        let one = outbound_pieces(batch.slice(7, 1), usize::MAX).expect("pieces");
        assert_eq!(one.len(), 1);
        assert!(sent_bytes(&one) < 4096, "{}", sent_bytes(&one));

        // A whole batch cut for 2 MiB messages: pieces that each hold their
        // own share, not the whole buffer each.
        let pieces = outbound_pieces(batch.clone(), 2 << 20).expect("pieces");
        assert!(pieces.len() >= 2, "{}", pieces.len());
        assert_eq!(pieces.iter().map(|p| p.num_rows()).sum::<usize>(), 20_000);
        assert!(
            sent_bytes(&pieces) < text * 3 / 2,
            "{}",
            sent_bytes(&pieces)
        );
        let rows: Vec<String> = pieces
            .iter()
            .flat_map(|p| {
                let column = p.column(0).as_string_view().clone();
                (0..column.len()).map(move |i| column.value(i).to_string())
            })
            .collect();
        assert_eq!(rows, long);
    }
}
