//! The right side of a partition: streamed past the held left
//! ([`BuildSide::sweep`]) or collected and indexed ([`BuildSide::collect`]);
//! either hands its inputs back when they do not fit in memory.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::index::RightIndex;
use super::metrics::JoinMetrics;
use super::output::Output;
use super::probe::{HeldArm, HeldLeft, ProbeSide, evaluate, evaluate_each};
use super::sweep::{LeftArm, LeftSweep};

#[derive(Clone)]
pub struct BuildSide {
    pub keys: Vec<PhysicalExprRef>,
    /// Per arm, its right match expression.
    pub matches: Vec<PhysicalExprRef>,
    pub pool: Arc<dyn MemoryPool>,
    /// How many sweeps may grow in the pool at once: where the join can
    /// spill, a sweep starts only when its matches' bound fits in this share
    /// of the free memory (see `sweep`).
    pub sharers: usize,
    pub can_spill: bool,
}

impl BuildSide {
    /// Holds the left side (`head`, all of it) and streams the right past it,
    /// each right batch pushed to every arm's sweep; then joins the held
    /// left batches, in their order. When the sweep's state does not fit
    /// beside the held left, or its matches would not (see `fits`), the
    /// inputs are handed back untouched.
    pub async fn sweep(
        self,
        probe: Arc<ProbeSide>,
        head: Vec<RecordBatch>,
        held_left: HeldLeft,
        mut right: SendableRecordBatchStream,
        reservation: MemoryReservation,
        metrics: JoinMetrics,
    ) -> DFResult<Swept> {
        let held = reservation.size();
        // Arms with the same right match value and right columns share one
        // sweep (see `LeftSweep`): `place[a]` is arm a's sweep and its
        // place among that sweep's arms.
        let mut members: Vec<(PhysicalExprRef, &[usize], Vec<usize>)> = Vec::new();
        let mut place = Vec::with_capacity(probe.arms.len());
        for (a, arm) in probe.arms.iter().enumerate() {
            let columns = probe.output.right_columns(a);
            let found = members
                .iter()
                .position(|(m, c, _)| **m == *arm.right_match && *c == columns);
            let s = found.unwrap_or_else(|| {
                members.push((arm.right_match.clone(), columns, Vec::new()));
                members.len() - 1
            });
            place.push((s, members[s].2.len()));
            members[s].2.push(a);
        }
        let (mut sweeps, matches) = {
            let _timer = metrics.build_time.timer();
            let HeldLeft { keys, arms } = held_left;
            let mut arms: Vec<Option<HeldArm>> = arms.into_iter().map(Some).collect();
            let mut sweeps = Vec::with_capacity(members.len());
            let mut matches = Vec::with_capacity(members.len());
            for (right_match, columns, indices) in &members {
                let left_arms = indices
                    .iter()
                    .map(|&a| {
                        let held = arms[a]
                            .take()
                            .unwrap_or_else(|| unreachable!("arm {a} held once"));
                        LeftArm {
                            op: probe.arms[a].op,
                            matches: held.matches,
                            bounds: held.bounds,
                        }
                    })
                    .collect();
                sweeps.push(LeftSweep::new(&keys, left_arms, right.schema(), columns)?);
                matches.push(right_match.clone());
            }
            (sweeps, matches)
        };
        let size = |sweeps: &[LeftSweep]| held + sweeps.iter().map(LeftSweep::size).sum::<usize>();
        let too_big = |e: DataFusionError| {
            e.context("ASOF JOIN: the left side of a partition and its matches do not fit in memory (raise the memory limit, or filter the left side)")
        };
        let mut fits = reservation.try_resize(size(&sweeps)).is_ok();
        let done = |sweeps: &[LeftSweep]| sweeps.iter().all(LeftSweep::is_empty);
        // A left side no row of which can match does not read the right. A
        // repartitioned input hands its channel to a partition on first poll
        // and buffers for it until then: poll once, so dropping the stream
        // closes the channel instead of leaving it to fill with rows nobody
        // reads (the whole right side of a partition without labels).
        if fits && done(&sweeps) {
            let _ = futures::FutureExt::now_or_never(right.next());
        } else if fits && let Some(first) = right.next().await {
            // Rows gone past the sweep cannot be read again: a sweep whose
            // matches could outgrow the pool, judged by the first batch's
            // width, hands back its inputs (to be joined in passes) before
            // it starts rather than fail part-way.
            let first = first?;
            let mut bound = size(&sweeps);
            for sweep in &sweeps {
                bound += sweep.matches_bound(&first)?;
            }
            fits = self.fits(bound, reservation.size());
            let schema = right.schema();
            let first = futures::stream::once(async { Ok(first) });
            right = Box::pin(RecordBatchStreamAdapter::new(schema, first.chain(right)));
        }
        if !fits {
            drop(sweeps);
            reservation.resize(held);
            return Ok(Swept::TooBig {
                head,
                right,
                reservation,
            });
        }
        while !done(&sweeps) {
            let Some(batch) = right.next().await else {
                break;
            };
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            let _timer = metrics.probe_time.timer();
            let keys = evaluate(&self.keys, &batch)?;
            for (sweep, matches) in sweeps.iter_mut().zip(&matches) {
                let matches = matches.evaluate(&batch)?.into_array(batch.num_rows())?;
                sweep.push(&batch, &keys, &matches)?;
            }
            if reservation.try_resize(size(&sweeps)).is_err() {
                // Short of memory: sweep the waiting rows early rather than
                // fail while a smaller chunk would do.
                for sweep in &mut sweeps {
                    sweep.shrink()?;
                }
                reservation.try_resize(size(&sweeps)).map_err(too_big)?;
            }
        }
        drop(right);
        for sweep in &mut sweeps {
            sweep.finish()?;
        }
        reservation.try_resize(size(&sweeps)).map_err(too_big)?;
        let mut first = 0u32;
        let joined = head.into_iter().map(move |batch| {
            let _hold = &reservation;
            let n = batch.num_rows();
            let mut right = Vec::with_capacity(place.len());
            for &(s, arm) in &place {
                let found = sweeps[s].matches(arm, first, n);
                metrics
                    .matched_rows
                    .add(found.iter().filter(|f| f.is_some()).count());
                right.push(sweeps[s].take(arm, &found)?);
            }
            first += n as u32;
            let out = probe.output.batch(&batch, &right)?;
            metrics.baseline.record_output(n);
            Ok(out)
        });
        Ok(Swept::Joined(futures::stream::iter(joined).boxed()))
    }

    /// Whether `bytes` fit in the pool beside what others hold (all but
    /// `own`), shared among `sharers`; always, where the join cannot spill
    /// (the sweep is its only chance).
    fn fits(&self, bytes: usize, own: usize) -> bool {
        if !self.can_spill {
            return true;
        }
        match self.pool.memory_limit() {
            MemoryLimit::Finite(limit) => {
                let others = self.pool.reserved().saturating_sub(own);
                bytes.saturating_mul(self.sharers) <= limit.saturating_sub(others)
            }
            _ => true,
        }
    }

    /// Collects the right partition under the memory reservation and
    /// indexes it, once per arm; or, when it does not fit, what was read of
    /// it and the rest.
    pub async fn collect(
        self,
        mut input: SendableRecordBatchStream,
        output: &Output,
        reservation: MemoryReservation,
        metrics: &JoinMetrics,
    ) -> DFResult<Collected> {
        let schema = input.schema();
        // What the buffered left side holds already.
        let held = reservation.size();
        let mut batches = Vec::new();
        while let Some(batch) = input.next().await {
            let batch = batch?;
            metrics.right_rows.add(batch.num_rows());
            let fits = reservation.try_grow(batch.get_array_memory_size()).is_ok();
            batches.push(batch);
            if !fits {
                reservation.resize(held);
                return Ok(Collected::TooBig {
                    held: batches,
                    rest: input,
                    reservation,
                });
            }
        }
        let _timer = metrics.build_time.timer();
        let keys = batches
            .iter()
            .map(|b| evaluate(&self.keys, b))
            .collect::<DFResult<Vec<_>>>()?;
        let mut indexes = Vec::with_capacity(self.matches.len());
        for (a, expr) in self.matches.iter().enumerate() {
            let matches = evaluate_each(expr, &batches)?;
            let columns = output.right_columns(a);
            indexes.push(RightIndex::build(
                &schema,
                batches.clone(),
                &keys,
                &matches,
                columns,
            )?);
        }
        let size = held + indexes.iter().map(RightIndex::size).sum::<usize>();
        if reservation.try_resize(size).is_err() {
            drop(indexes);
            reservation.resize(held);
            let rest = RecordBatchStreamAdapter::new(schema, futures::stream::empty());
            return Ok(Collected::TooBig {
                held: batches,
                rest: Box::pin(rest),
                reservation,
            });
        }
        Ok(Collected::Indexed(indexes, reservation))
    }
}

/// A partition joined by the sweep; or, when the sweep's state does not fit
/// beside the left side, its inputs.
pub enum Swept {
    Joined(BoxStream<'static, DFResult<RecordBatch>>),
    TooBig {
        head: Vec<RecordBatch>,
        right: SendableRecordBatchStream,
        reservation: MemoryReservation,
    },
}

/// The right side of a partition, indexed; or, when it does not fit in
/// memory, what was read of it (`held`, no longer reserved) and the rest.
/// Either way with the reservation of the left side read before it.
pub enum Collected {
    Indexed(Vec<RightIndex>, MemoryReservation),
    TooBig {
        held: Vec<RecordBatch>,
        rest: SendableRecordBatchStream,
        reservation: MemoryReservation,
    },
}
