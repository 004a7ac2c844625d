//! Batches on disk, for an ASOF JOIN neither of whose sides fits in memory:
//! the right side of a partition, read back once per pass over the left, and
//! the left rows read before memory ran out (see `exec::in_passes`). Arrow
//! IPC in a temporary file of the session's disk manager.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::{DiskManager, RefCountedTempFile};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt};

/// Batches read ahead of the sweep per pass.
const READ_AHEAD: usize = 2;

/// Spilled batches: the file (removed when the last reader is done) and
/// what it holds.
pub struct Spilled {
    file: RefCountedTempFile,
    schema: SchemaRef,
    /// Bytes written, and rows.
    pub bytes: usize,
    pub rows: usize,
}

impl Spilled {
    /// Writes `held` (batches read before memory ran out), then the rest of
    /// `input`, calling `read` with each batch taken from `input`; `what`
    /// names the file for the disk manager.
    pub async fn write(
        disk: &Arc<DiskManager>,
        what: &str,
        held: Vec<RecordBatch>,
        mut input: impl Stream<Item = DFResult<RecordBatch>> + Unpin,
        schema: SchemaRef,
        mut read: impl FnMut(&RecordBatch),
    ) -> DFResult<Self> {
        let cannot = |e: DataFusionError| {
            e.context(
                "ASOF JOIN: neither side of a partition fits in memory and it cannot spill to disk",
            )
        };
        let mut file = disk.create_tmp_file(what).map_err(cannot)?;
        let out = File::create(file.path()).map_err(|e| cannot(e.into()))?;
        let mut writer = StreamWriter::try_new(BufWriter::new(out), &schema)?;
        let mut rows = 0usize;
        for batch in held {
            rows += batch.num_rows();
            writer.write(&batch)?;
        }
        while let Some(batch) = input.next().await {
            let batch = batch?;
            read(&batch);
            rows += batch.num_rows();
            writer.write(&batch)?;
        }
        writer.finish()?;
        writer
            .into_inner()?
            .into_inner()
            .map_err(|e| cannot(e.into_error().into()))?;
        // Counts the file against the disk manager's limit (errors past it).
        file.update_disk_usage().map_err(cannot)?;
        let bytes = file.current_disk_usage() as usize;
        Ok(Spilled {
            file,
            schema,
            bytes,
            rows,
        })
    }

    /// The spilled batches in the order written, read on a blocking thread.
    pub fn read(&self) -> DFResult<SendableRecordBatchStream> {
        let input = BufReader::new(File::open(self.file.path())?);
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        // The reader holds the file (it is deleted when the last holder drops).
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let _file = file;
            let reader = match StreamReader::try_new(input, None) {
                Ok(reader) => reader,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e.into()));
                    return;
                }
            };
            for batch in reader {
                // A closed channel: the pass stopped early (its labels were done).
                if tx
                    .blocking_send(batch.map_err(DataFusionError::from))
                    .is_err()
                {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream.boxed(),
        )))
    }
}
