//! Waiting for memory that other ASOF JOIN partitions release.
//!
//! A partition joined in passes whose next chunk's first batch does not fit
//! in the pool waits for other partitions to spill or finish (see
//! `passes::LeftChunks`). DataFusion's memory pool does not tell when memory
//! is freed, so the partitions tell each other: [`released`] once a
//! partition has spilled what it held, and [`releasing`] when a partition's
//! or a pass's output stream ends or is dropped (with it the reservations it
//! held). A waiter is woken by either, tries again, and gives up at its
//! deadline. Memory freed by other operators is not announced: a waiter
//! short of it gives up at the deadline.

use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::error::Result as DFResult;
use datafusion::execution::memory_pool::MemoryReservation;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a chunk waits, in all, for memory held by other partitions
/// before its first batch is halved.
pub const MEMORY_WAIT: Duration = Duration::from_secs(1);

/// Told whenever an ASOF JOIN partition frees memory; shared by every join
/// in the process (a waiter woken for another pool's memory tries again and
/// waits on).
static RELEASED: Notify = Notify::const_new();

/// Wakes every partition waiting for memory.
pub fn released() {
    RELEASED.notify_waiters();
}

/// One chunk's wait for memory: one deadline for all its tries.
#[derive(Debug)]
pub struct MemoryWait {
    patience: Duration,
    deadline: Option<Instant>,
}

impl MemoryWait {
    /// A wait that gives up `patience` after its first try failed.
    pub fn new(patience: Duration) -> Self {
        MemoryWait {
            patience,
            deadline: None,
        }
    }

    /// Grows `memory` by `size`, waiting for other partitions to release
    /// memory until the deadline; false when it still does not fit then
    /// (and at once on later calls).
    pub async fn grow(&mut self, memory: &MemoryReservation, size: usize) -> bool {
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + self.patience);
        loop {
            // Registered before the try, so a release between the try and
            // the wait is not missed.
            let mut freed = pin!(RELEASED.notified());
            freed.as_mut().enable();
            if memory.try_grow(size).is_ok() {
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return memory.try_grow(size).is_ok();
            }
        }
    }
}

/// `stream`, telling the waiting partitions when it ends or is dropped: the
/// reservations it holds are freed by then.
pub fn releasing(
    stream: BoxStream<'static, DFResult<RecordBatch>>,
) -> BoxStream<'static, DFResult<RecordBatch>> {
    Box::pin(Releasing(Some(stream)))
}

struct Releasing(Option<BoxStream<'static, DFResult<RecordBatch>>>);

impl Stream for Releasing {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(inner.poll_next_unpin(cx));
        if next.is_none() {
            self.0 = None;
            released();
        }
        Poll::Ready(next)
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            drop(inner);
            released();
        }
    }
}
