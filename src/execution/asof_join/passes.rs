//! A partition neither of whose sides fits in memory, joined in passes:
//! the right side spilled to disk, the left swept against it in chunks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, UInt64Array};
use datafusion::common::utils::memory::get_record_batch_memory_size;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::physical_plan::metrics::Count;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use super::build::{BuildSide, Swept};
use super::memory_wait::{MEMORY_WAIT, MemoryWait, released, releasing};
use super::metrics::JoinMetrics;
use super::probe::ProbeSide;
use super::spill::Spilled;
use super::stream::LEFT_BUFFER_BYTES;

/// A right side to spill: the batches read and the rest of the input.
pub struct Spill {
    pub held: Vec<RecordBatch>,
    pub right: SendableRecordBatchStream,
    pub disk: Arc<DiskManager>,
}

/// Joins a partition neither of whose sides fits in memory: the right side
/// and the left rows read so far are written to disk, then the left is read
/// in chunks that fit and each chunk is swept against the spilled right side
/// (a pass per chunk), its rows emitted in their order. Memory: one chunk and
/// its matches; time: the right side read once per chunk.
#[allow(clippy::too_many_arguments)]
pub async fn in_passes(
    build: BuildSide,
    probe: Arc<ProbeSide>,
    head: Vec<RecordBatch>,
    rest: Option<BoxStream<'static, DFResult<RecordBatch>>>,
    spill: Spill,
    reservation: MemoryReservation,
    pool: Arc<dyn MemoryPool>,
    metrics: JoinMetrics,
) -> DFResult<BoxStream<'static, DFResult<RecordBatch>>> {
    let Spill { held, right, disk } = spill;
    // Chunks are sized to the free memory already (see `LeftChunks`).
    let build = BuildSide {
        sharers: 1,
        ..build
    };
    let (right_schema, left_schema) = (right.schema(), head.first().map(RecordBatch::schema));
    let timer = metrics.build_time.timer();
    // The left rows read so far go to disk first, so chunks have the memory.
    let left_spilled = match left_schema {
        Some(schema) => {
            let none = futures::stream::empty();
            Some(Spilled::write(&disk, "ASOF JOIN left side", head, none, schema, |_| {}).await?)
        }
        None => None,
    };
    reservation.free();
    released();
    let rows = metrics.right_rows.clone();
    let right = Spilled::write(
        &disk,
        "ASOF JOIN right side",
        held,
        right,
        right_schema,
        |b| rows.add(b.num_rows()),
    )
    .await?;
    timer.done();
    for spilled in left_spilled.iter().chain([&right]) {
        metrics.spilled_bytes.add(spilled.bytes);
        metrics.spilled_rows.add(spilled.rows);
    }
    let mut source = match &left_spilled {
        Some(spilled) => spilled.read()?.boxed(),
        None => futures::stream::empty().boxed(),
    };
    if let Some(rest) = rest {
        source = source.chain(rest).boxed();
    }
    let left = LeftChunks {
        retry: Default::default(),
        share: 8,
        source: Some(source),
        memory: reservation,
        pool,
        _spilled: left_spilled,
        patience: MEMORY_WAIT,
    };
    let right = Arc::new(right);
    // The right rows were counted as they were spilled, not once per pass.
    let metrics = JoinMetrics {
        right_rows: Count::new(),
        ..metrics
    };
    let passes = futures::stream::try_unfold(left, move |mut left| {
        let (build, probe, metrics) = (build.clone(), probe.clone(), metrics.clone());
        let right = right.clone();
        async move {
            let Some((chunk, reservation)) = left.next_chunk().await? else {
                return Ok::<_, DataFusionError>(None);
            };
            metrics.right_passes.add(1);
            let held = {
                let _timer = metrics.build_time.timer();
                probe.evaluate_held(&chunk)?
            };
            let swept = build
                .sweep(
                    probe,
                    chunk.clone(),
                    held,
                    right.read()?,
                    reservation,
                    metrics,
                )
                .await;
            match swept {
                Ok(Swept::Joined(out)) => {
                    left.share = (left.share / 2).max(8);
                    Ok(Some((releasing(out), left)))
                }
                // The sweep outgrew the memory (partitions share the pool):
                // the right side is on disk, so the chunk is retried in halves.
                Ok(Swept::TooBig { .. }) => {
                    left.retry_in_halves(chunk)?;
                    Ok(Some((futures::stream::empty().boxed(), left)))
                }
                Err(e) if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) => {
                    left.retry_in_halves(chunk).map_err(|_| e)?;
                    Ok(Some((futures::stream::empty().boxed(), left)))
                }
                Err(e) => Err(e),
            }
        }
    });
    Ok(passes.try_flatten().boxed())
}

/// The left side of a partition in chunks that fit in memory beside their
/// sweep (see [`in_passes`]).
struct LeftChunks {
    /// Batches of a chunk to retry, taken before the source's.
    retry: VecDeque<RecordBatch>,
    /// Divides the free memory for a chunk's budget; doubles on each retry.
    share: usize,
    source: Option<BoxStream<'static, DFResult<RecordBatch>>>,
    /// An empty reservation, from which each chunk's is made.
    memory: MemoryReservation,
    pool: Arc<dyn MemoryPool>,
    /// The file the source reads first, kept until it is read.
    _spilled: Option<Spilled>,
    /// How long a chunk waits for memory other partitions hold (see
    /// `memory_wait`) before its first batch is halved.
    patience: Duration,
}

impl LeftChunks {
    /// Left bytes per chunk: an eighth of the pool's free memory, at most
    /// LEFT_BUFFER_BYTES. The sweep holds up to about four times a chunk's
    /// batches beside them (per left row its position, bound, best row and
    /// retained right row), and partitions share the pool.
    fn budget(&self) -> usize {
        match self.pool.memory_limit() {
            MemoryLimit::Finite(limit) => {
                (limit.saturating_sub(self.pool.reserved()) / self.share).min(LEFT_BUFFER_BYTES)
            }
            _ => LEFT_BUFFER_BYTES,
        }
    }

    /// The next chunk (at least one batch) and the reservation holding it;
    /// `None` when the left side is done.
    async fn next_chunk(&mut self) -> DFResult<Option<(Vec<RecordBatch>, MemoryReservation)>> {
        let budget = self.budget();
        let memory = self.memory.new_empty();
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        let mut wait = MemoryWait::new(self.patience);
        while chunk.is_empty() || bytes < budget {
            let batch = match self.retry.pop_front() {
                Some(batch) => batch,
                None => {
                    let Some(source) = self.source.as_mut() else {
                        break;
                    };
                    let Some(batch) = source.next().await else {
                        self.source = None;
                        break;
                    };
                    batch?
                }
            };
            // Read back from a file, a batch's columns share one buffer:
            // counted once, not once per column.
            let size = get_record_batch_memory_size(&batch);
            if memory.try_grow(size).is_err() {
                // Other partitions hold the pool: a smaller chunk; or, for
                // the first batch, a wait for them to spill or finish (one
                // deadline per chunk), then the batch in halves (down to one
                // row that does not fit).
                if !chunk.is_empty() {
                    self.retry.push_front(batch);
                    break;
                }
                if !wait.grow(&memory, size).await {
                    self.retry_in_halves(vec![batch])?;
                    continue;
                }
            }
            bytes += size;
            chunk.push(batch);
        }
        Ok((!chunk.is_empty()).then_some((chunk, memory)))
    }

    /// Puts a chunk whose sweep did not fit back as two halves, each its own
    /// chunk, and halves later budgets. A single row that does not fit is an
    /// error.
    fn retry_in_halves(&mut self, chunk: Vec<RecordBatch>) -> DFResult<()> {
        let rows: usize = chunk.iter().map(RecordBatch::num_rows).sum();
        if rows <= 1 {
            return Err(DataFusionError::ResourcesExhausted(
                "ASOF JOIN: neither side of a partition fits in memory, nor does the sweep of one left row beside the rest of the query (raise the memory limit)".into(),
            ));
        }
        self.share = self.share.saturating_mul(2);
        let schema = chunk[0].schema();
        let all = arrow::compute::concat_batches(&schema, &chunk)?;
        // Copies, so each half is counted for its own rows only (a slice
        // shares the whole buffer, and is counted as all of it).
        let half = |offset: usize, len: usize| {
            let rows = UInt64Array::from_iter_values((offset..offset + len).map(|i| i as u64));
            arrow::compute::take_record_batch(&all, &rows)
        };
        let first = half(0, rows / 2)?;
        let second = half(rows / 2, rows - rows / 2)?;
        self.retry.push_front(second);
        self.retry.push_front(first);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use arrow::array::Int64Array;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer};

    use super::*;

    const POOL: usize = 1 << 20;

    fn batch(rows: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..rows)) as _)])
            .expect("batch")
    }

    /// The left side of a partition as one batch, in a pool of which another
    /// partition holds all but three quarters of that batch.
    fn starved(left: &RecordBatch, patience: Duration) -> (LeftChunks, MemoryReservation) {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(POOL));
        let other = MemoryConsumer::new("another partition").register(&pool);
        other
            .try_grow(POOL - get_record_batch_memory_size(left) * 3 / 4)
            .expect("the other partition's memory");
        let chunks = LeftChunks {
            retry: VecDeque::new(),
            share: 8,
            source: Some(futures::stream::iter([Ok(left.clone())]).boxed()),
            memory: MemoryConsumer::new("left chunks").register(&pool),
            pool,
            _spilled: None,
            patience,
        };
        (chunks, other)
    }

    /// A chunk whose first batch does not fit waits for the partition that
    /// holds the memory, and is woken when that partition's output ends (no
    /// polling: its patience far exceeds the test's timeout).
    #[tokio::test]
    async fn a_chunk_waiting_for_memory_wakes_when_another_partition_frees_it() {
        let left = batch(4096);
        let (mut chunks, other) = starved(&left, Duration::from_secs(3600));
        let output = releasing(
            futures::stream::iter(Vec::<DFResult<RecordBatch>>::new())
                .map(move |b| {
                    let _hold = &other;
                    b
                })
                .boxed(),
        );
        let mut next = pin!(chunks.next_chunk());
        assert!(
            futures::poll!(next.as_mut()).is_pending(),
            "the first batch cannot fit until the other partition is done"
        );
        drop(output);
        let (chunk, _memory) = tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .expect("woken when the other partition freed its memory")
            .expect("a chunk")
            .expect("the left side is not done");
        assert_eq!(chunk, vec![left], "the whole batch, not halves");
    }

    /// Without a release the wait ends at its deadline and the batch is
    /// retried in halves, each of which fits.
    #[tokio::test]
    async fn a_chunk_that_waits_in_vain_halves_its_first_batch() {
        let left = batch(4096);
        let (mut chunks, _other) = starved(&left, Duration::from_millis(50));
        let (chunk, _memory) = chunks
            .next_chunk()
            .await
            .expect("a chunk")
            .expect("the left side is not done");
        let rows: usize = chunk.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 2048, "the first half");
    }
}
