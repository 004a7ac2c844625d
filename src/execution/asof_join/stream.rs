//! One partition of an ASOF JOIN, from its inputs to its output stream
//! (see [`super::exec`] for when each path is taken):
//!
//! ```text
//!   read left ─► report it to the right filter ─┬─ sweep ─► joined, or too big ─► passes
//!                                               └─ index ─► joined, or too big ─► passes
//! ```

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::{MemoryPool, MemoryReservation};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::build::{BuildSide, Collected, Swept};
use super::metrics::JoinMetrics;
use super::passes::{Spill, in_passes};
use super::probe::ProbeSide;
use super::right_filter::Report;
use crate::options::AsOfJoinStrategy;

/// What one partition's join starts from (see `AsOfJoinExec::execute`).
pub struct PartitionJoin {
    pub build: BuildSide,
    pub probe: Arc<ProbeSide>,
    pub left: SendableRecordBatchStream,
    pub right: SendableRecordBatchStream,
    /// The partition's, empty: it holds what the partition reads.
    pub reservation: MemoryReservation,
    pub strategy: AsOfJoinStrategy,
    /// What the right side is known to hold, per partition, for `auto`.
    pub right_rows: Option<usize>,
    /// This partition's report to the filter pushed into the right input.
    pub right_filter: Option<Report>,
    pub pool: Arc<dyn MemoryPool>,
    pub disk: Arc<DiskManager>,
    pub metrics: JoinMetrics,
}

impl PartitionJoin {
    /// Joins the partition. The left is read first, up to LEFT_BUFFER_BYTES
    /// (within the memory limit). When that is all of it, the left input is finished and
    /// dropped before the right side is read, so in a chain of joins each
    /// join's state is freed before the next one's is built; and unless
    /// the right side is known to be smaller, the right side streams past
    /// the held left (`LeftSweep`) instead of being indexed.
    pub async fn run(self) -> DFResult<BoxStream<'static, DFResult<RecordBatch>>> {
        let PartitionJoin {
            build,
            probe,
            left,
            right,
            mut reservation,
            strategy,
            right_rows,
            right_filter,
            pool,
            disk,
            metrics,
        } = self;
        let (head, rest) = read_left(left, &mut reservation).await?;
        let head_rows: usize = head.iter().map(RecordBatch::num_rows).sum();
        let sweep = rest.is_none()
            && match strategy {
                AsOfJoinStrategy::Index => false,
                AsOfJoinStrategy::Sweep => true,
                AsOfJoinStrategy::Auto => right_rows.is_none_or(|r| r >= head_rows),
            };
        // The held left side, evaluated once for the sweep and the filter.
        let held = match rest.is_none() && (sweep || right_filter.is_some()) {
            true => {
                let _timer = metrics.build_time.timer();
                Some(probe.evaluate_held(&head)?)
            }
            false => None,
        };
        if let Some(report) = right_filter {
            let spans = match &held {
                Some(held) => Some(held.spans()?),
                None => None,
            };
            report.send(spans).await?;
        }
        if let (true, Some(held)) = (sweep, held) {
            let swept = build
                .clone()
                .sweep(
                    probe.clone(),
                    head,
                    held,
                    right,
                    reservation,
                    metrics.clone(),
                )
                .await?;
            let (head, right, reservation) = match swept {
                Swept::Joined(out) => {
                    metrics.swept_partitions.add(1);
                    return Ok::<_, DataFusionError>(out);
                }
                Swept::TooBig {
                    head,
                    right,
                    reservation,
                } => (head, right, reservation),
            };
            let spill = Spill {
                held: Vec::new(),
                right,
                disk,
            };
            return in_passes(build, probe, head, None, spill, reservation, pool, metrics).await;
        }
        let (indexes, reservation) = match build
            .clone()
            .collect(right, &probe.output, reservation, &metrics)
            .await?
        {
            Collected::Indexed(indexes, reservation) => (indexes, reservation),
            Collected::TooBig {
                held,
                rest: right,
                reservation,
            } => {
                let spill = Spill { held, right, disk };
                return in_passes(build, probe, head, rest, spill, reservation, pool, metrics)
                    .await;
            }
        };
        let rest = rest.unwrap_or_else(|| futures::stream::empty().boxed());
        Ok(futures::stream::iter(head.into_iter().map(Ok))
            .chain(rest)
            .map(move |batch| {
                let _hold = &reservation;
                let _timer = metrics.probe_time.timer();
                let out = probe.join(&indexes, &batch?, &metrics)?;
                metrics.baseline.record_output(out.num_rows());
                Ok(out)
            })
            .boxed())
    }
}

/// Left bytes read before the right side is read (see [`PartitionJoin::run`]).
pub const LEFT_BUFFER_BYTES: usize = 256 << 20;

/// Reads the left input until LEFT_BUFFER_BYTES or the memory limit; the
/// rest of it, if any, is returned unread.
async fn read_left(
    mut left: SendableRecordBatchStream,
    reservation: &mut MemoryReservation,
) -> DFResult<(
    Vec<RecordBatch>,
    Option<BoxStream<'static, DFResult<RecordBatch>>>,
)> {
    let mut head = Vec::new();
    let mut bytes = 0usize;
    loop {
        if bytes > LEFT_BUFFER_BYTES {
            return Ok((head, Some(left.boxed())));
        }
        let Some(batch) = left.next().await else {
            return Ok((head, None));
        };
        let batch = batch?;
        let size = batch.get_array_memory_size();
        bytes += size;
        head.push(batch);
        if reservation.try_grow(size).is_err() {
            return Ok((head, Some(left.boxed())));
        }
    }
}
