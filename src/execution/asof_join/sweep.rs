//! The ASOF JOIN with the left side held and the right side streamed past it.
//!
//! When a partition's whole left side is buffered (the usual training set:
//! labels against a much longer feature history), right rows need not be
//! kept or sorted. Left rows are grouped by key and ordered by match value
//! ([`Grouped`]). Each right row falls into one *bucket*: the left position
//! nearest to it on the side where it can match. A bucket keeps only its best
//! right row so far. Once the right side is done, a sweep over each group
//! gives every left row the nearest non-empty bucket on its side.
//!
//! ```text
//! backward (l.t >= r.t), key a     left values:   2      5      9
//!                                  bucket holds: (…,2]  (2,5]  (5,9]    (r.t > 9 matches no left row)
//! right a@1 → bucket 0; a@4 → bucket 1; a@3 → bucket 1, loses to a@4
//! sweep forward: left 2 → a@1, 5 → a@4, 9 → a@4 (bucket 2 is empty: carried)
//! ```
//!
//! Forward operators (`<=`, `<`) mirror it: the bucket is the last left
//! position at or before the right value, and the sweep runs backwards.
//! Non-empty buckets of a group hold disjoint, increasing value ranges, so the
//! nearest bucket holds the nearest row. A maximum age is checked on that
//! row: a match too old is no match, never a fall-back to an older one.
//!
//! Memory, however long the right side: about 40 bytes per left row and
//! arm, plus the right rows that are winning a bucket (at most one per left
//! row and arm; superseded ones are dropped by compaction) and a chunk of
//! right rows waiting to be swept (at most 64 MiB of values, however wide
//! the rows; it is swept early when the memory pool is short).
//! Time: a key lookup per right row, and a binary search per right row and
//! arm; no sort of the right side.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Int64Type, SchemaRef};

use super::groups::{Grouped, KeyGroups, batch_offsets};
use super::rows::{BatchRows, take_rows};
use super::tie_break::{cmp_rows, ingest_order_column};
use super::values::ordered_i64;
use crate::error::{Error, Result};
use crate::shared::MatchOp;

/// No right row.
const NONE: u32 = u32::MAX;
/// Marks a row id as a row of the batch being pushed, not yet retained.
const PENDING: u32 = 1 << 31;
/// Superseded right rows held before a compaction, beyond one per live row,
/// and at most this many bytes of them (wide feature rows); divided among
/// the arms. Each compaction copies every live row, so a small slack copied
/// them over and over (at 5M labels x 50M rows, 16Mi rows and 128 MiB took
/// 5% less CPU than a quarter of that, at the same peak memory; a memory
/// pool that runs short compacts early, see `shrink`).
const SLACK_ROWS: usize = 1 << 24;
const SLACK_BYTES: usize = 128 << 20;
/// Right rows gathered before they are swept: at least this many, and
/// about four per left key group, up to the most (each sweep of a chunk
/// reads every group's labels and buckets once: at M, 50 MB a pass); and
/// at most this many
/// bytes, so a chunk of wide rows (hundreds of features) stays small.
const CHUNK_ROWS: u32 = 1 << 19;
const CHUNK_ROWS_PER_GROUP: usize = 4;
const MAX_CHUNK_ROWS: u32 = 1 << 22;
const MAX_CHUNK_BYTES: usize = 64 << 20;
/// A chunk is held whole before it is swept when at least this share
/// (1 / DIRECT_SHARE) of the last chunk's rows won a bucket.
const DIRECT_SHARE: usize = 4;

/// The best right row of a bucket (16 bytes: the sweep reads one per right
/// row, from an array as long as the labels).
#[derive(Clone, Copy)]
struct Best {
    value: i64,
    row: u32,
}

const EMPTY: Best = Best {
    value: 0,
    row: NONE,
};

/// One arm's left side: its match values and maximum-age bounds per held
/// left batch (see [`LeftSweep::new`]).
pub struct LeftArm {
    pub op: MatchOp,
    pub matches: Vec<ArrayRef>,
    /// Maximum-age bounds, and whether they are strict.
    pub bounds: Option<(Vec<ArrayRef>, bool)>,
}

/// The held left side of one partition and, per arm and left row, the best
/// right row seen so far.
///
/// Arms (see `AsOfJoinExec`) with the same right match value and right
/// columns share one sweep: the key lookup, the chunk of waiting right rows
/// and its sort by key group are done once per right row for all of them;
/// only the bucket search and the best rows are each arm's own.
pub struct LeftSweep {
    groups: KeyGroups,
    arms: Vec<ArmSweep>,
    /// Whether `columns` has the ingestion order column only for the
    /// tie-break (the output does not take it: [`LeftSweep::take`] drops it).
    tie_only: bool,
    /// The right columns held for the matches (the output's); the others
    /// are dropped as rows arrive.
    columns: Vec<usize>,
    /// Right rows not swept yet, and how many to gather before a sweep.
    chunk: Chunk,
    chunk_rows: u32,
    /// Buffers of `sweep_chunk`, kept between chunks: allocated afresh, each
    /// chunk faulted in and zeroed megabytes of new pages.
    scratch: Scratch,
    fixed_bytes: usize,
}

/// One arm's part of a [`LeftSweep`].
struct ArmSweep {
    op: MatchOp,
    grouped: Grouped,
    /// Left row id → its position in `grouped`; `NONE` for a row that cannot
    /// match (NULL key or match value).
    position: Vec<u32>,
    /// Per left row id, its maximum-age bound (`None`: NULL, no match), and
    /// whether the bound is strict.
    bounds: Option<(Vec<Option<i64>>, bool)>,
    /// Per position, its bucket's best right row; after `finish`, the match.
    best: Vec<Best>,
    /// Where the held rows keep their ingestion order, when the right side
    /// has one. Read only when two rows tie on the value: kept per bucket
    /// instead, it was one more cache miss per right row (at 1M labels x
    /// 10M rows, most of the sweep's extra time on feature groups); held in
    /// the rows' own batches, it is shared with them, not copied.
    tie_column: Option<usize>,
    /// Whether many rows of the last chunk won a bucket: then the next one
    /// is held whole before it is swept (see `sweep`).
    direct: bool,
    /// Buckets holding a row.
    live: usize,
    /// Right rows that won a bucket when they arrived (some since beaten).
    retained: BatchRows,
    /// Superseded rows held before a compaction, beyond one per live row,
    /// and at most this many bytes of them.
    slack: usize,
    slack_bytes: usize,
    fixed_bytes: usize,
}

/// The chunk's rows are sorted by group in blocks of groups, at most this
/// many (see [`sort_by_group`]).
const MAX_BLOCKS: usize = 1024;

/// A right row of the chunk, to be swept: its match value, its row in the
/// chunk and its left key group (16 bytes, as a pair of value and row
/// would be).
#[derive(Clone, Copy, Default)]
struct Visit {
    value: i64,
    row: u32,
    group: u32,
}

#[derive(Default)]
struct Scratch {
    /// Per block of key groups, where its rows start in `sorted`.
    starts: Vec<u32>,
    cursor: Vec<u32>,
    /// The chunk's rows, by key group.
    sorted: Vec<Visit>,
    /// One block's rows, while they are sorted by group, and where each
    /// group's start.
    block: Vec<Visit>,
    block_starts: Vec<u32>,
    /// Positions whose bucket got a row of the chunk, each once.
    touched: Vec<u32>,
    /// Per chunk row: whether it still wins, and its retained id.
    wins: Vec<bool>,
    new_id: Vec<u32>,
}

impl Scratch {
    fn bytes(&self) -> usize {
        (self.starts.capacity()
            + self.cursor.capacity()
            + self.block_starts.capacity()
            + self.touched.capacity())
            * 4
            + (self.sorted.capacity() + self.block.capacity()) * 16
            + self.wins.capacity()
            + self.new_id.capacity() * 4
    }
}

impl LeftSweep {
    /// Indexes the left side: its batches' key columns `keys[b]` and, per
    /// arm, match and maximum-age columns. Of right rows (`right_schema`),
    /// `columns` are held for the matches.
    pub fn new(
        keys: &[Vec<ArrayRef>],
        arms: Vec<LeftArm>,
        right_schema: SchemaRef,
        columns: &[usize],
    ) -> Result<Self> {
        // The ingestion order is held with the rows, for their ties.
        let mut columns = columns.to_vec();
        let ingest = ingest_order_column(&right_schema);
        let tie_only = ingest.is_some_and(|c| !columns.contains(&c));
        if let (Some(c), true) = (ingest, tie_only) {
            columns.push(c);
        }
        let tie_column = ingest.and_then(|c| columns.iter().position(|&h| h == c));
        let held = right_schema
            .project(&columns)
            .map_err(Error::arrow("ASOF JOIN right columns"))?;
        let held = Arc::new(held);
        let mut groups = KeyGroups::for_keys(keys)?;
        let first = arms
            .first()
            .ok_or_else(|| Error::Internal("ASOF JOIN: a sweep without arms".into()))?;
        let offsets = batch_offsets(first.matches.iter().map(|m| m.len()))?;
        let group_of = groups.assign_rows(keys, &offsets)?;
        let share = arms.len();
        let arms = arms
            .into_iter()
            .map(|arm| {
                ArmSweep::new(
                    arm,
                    &group_of,
                    groups.len(),
                    &offsets,
                    tie_column,
                    held.clone(),
                    share,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        drop(group_of);
        // A chunk spread thinner than a row or two per key group reads a
        // cache line of left values and one of buckets per row; with a few
        // rows per group they share them.
        let chunk_rows = u32::try_from(groups.len() * CHUNK_ROWS_PER_GROUP)
            .unwrap_or(MAX_CHUNK_ROWS)
            .clamp(CHUNK_ROWS, MAX_CHUNK_ROWS);
        Ok(LeftSweep {
            fixed_bytes: groups.memory_bytes(),
            groups,
            arms,
            tie_only,
            columns,
            chunk: Chunk::new(held),
            chunk_rows,
            scratch: Scratch::default(),
        })
    }

    /// Heap size, for memory accounting.
    pub fn size(&self) -> usize {
        self.fixed_bytes
            + self.arms.iter().map(ArmSweep::size).sum::<usize>()
            + self.chunk.bytes()
            + self.scratch.bytes()
    }

    /// What the matches hold at most once superseded rows are dropped: one
    /// right row per bucket, each as wide as `batch`'s held columns (a
    /// sample of the right side).
    pub fn matches_bound(&self, batch: &RecordBatch) -> Result<usize> {
        let held = batch
            .project(&self.columns)
            .map_err(Error::arrow("ASOF JOIN right columns"))?;
        let width = data_bytes(&held).div_ceil(batch.num_rows().max(1));
        Ok(self.arms.iter().map(|arm| arm.best.len() * width).sum())
    }

    /// Whether no right row can match (no left row has a key and value).
    pub fn is_empty(&self) -> bool {
        self.arms.iter().all(|arm| arm.best.is_empty())
    }

    /// Takes one right batch (`keys`, `matches`: its key and match columns).
    /// Rows are swept in chunks of about `chunk_rows`.
    pub fn push(
        &mut self,
        batch: &RecordBatch,
        keys: &[ArrayRef],
        matches: &ArrayRef,
    ) -> Result<()> {
        let n = batch.num_rows();
        if self.is_empty() || n == 0 {
            return Ok(());
        }
        let groups = self.groups.find(keys, n)?;
        let values = ordered_i64(matches)?;
        // Only rows with a left key and a match value wait in the chunk: with
        // few labels that is a small part of the right side, and most
        // batches have none.
        let usable = |i: usize| Some((groups[i]?, values.get(i)?));
        if !(0..n).any(|i| usable(i).is_some()) {
            return Ok(());
        }
        let chunk = &mut self.chunk;
        let before = chunk.groups.len();
        for i in 0..n {
            if let Some((group, value)) = usable(i) {
                chunk.groups.push(group);
                chunk.values.push(value);
            }
        }
        let kept = chunk.groups.len() - before;
        let batch = batch
            .project(&self.columns)
            .map_err(Error::arrow("ASOF JOIN right columns"))?;
        let batch = if kept == n {
            batch
        } else {
            let rows = (0..n).filter(|&i| usable(i).is_some()).map(|i| i as u32);
            take_rows(&batch, &UInt32Array::from_iter_values(rows))?
        };
        chunk.data_bytes += data_bytes(&batch);
        chunk.rows.push(batch);
        if chunk.rows() >= self.chunk_rows || chunk.data_bytes >= MAX_CHUNK_BYTES {
            self.sweep_chunk()?;
        }
        Ok(())
    }

    /// Sweeps the waiting right rows past the left side, each arm keeping
    /// those that win one of its buckets.
    ///
    /// Rows are visited by key group (sorted once for all arms): left
    /// groups are laid out by group number, so the sweep reads left values
    /// and buckets in order, from cache, instead of one cache miss per row
    /// at random. The order of visits does not change the result: a
    /// bucket's winner is decided by value and tie-break alone.
    fn sweep_chunk(&mut self) -> Result<()> {
        if self.chunk.rows() == 0 {
            return Ok(());
        }
        let width = self.chunk.data_bytes / self.chunk.rows() as usize;
        let empty = Chunk::new(self.chunk.rows.schema());
        let chunk = std::mem::replace(&mut self.chunk, empty);
        let mut scratch = std::mem::take(&mut self.scratch);
        sort_by_group(&chunk, self.groups.len(), &mut scratch);
        for arm in &mut self.arms {
            arm.row_bytes_seen(width);
            arm.sweep(&chunk, &mut scratch)?;
        }
        // The buffers, emptied, serve the next chunk.
        let mut chunk = chunk;
        chunk.clear();
        self.chunk = chunk;
        self.scratch = scratch;
        Ok(())
    }

    /// Frees what it can when memory is short: sweeps the waiting rows now
    /// instead of at the chunk's size, drops superseded rows, and lets go of
    /// the buffers kept between chunks.
    pub fn shrink(&mut self) -> Result<()> {
        self.sweep_chunk()?;
        for arm in &mut self.arms {
            if arm.retained.rows() as usize > arm.live {
                arm.compact(&mut self.scratch.new_id)?;
            }
        }
        self.scratch = Scratch::default();
        self.chunk.groups = Vec::new();
        self.chunk.values = Vec::new();
        Ok(())
    }

    /// Ends the right side: gives every left position the nearest non-empty
    /// bucket on its side. The held rows are not compacted once more: the
    /// matches are gathered from them anyway, and a compaction would copy
    /// every winner only to be gathered again.
    pub fn finish(&mut self) -> Result<()> {
        self.sweep_chunk()?;
        for arm in &mut self.arms {
            arm.finish(self.groups.len() as u32);
        }
        Ok(())
    }

    /// After `finish`: the matched right row of left rows `first..first +
    /// rows`, in `arm`.
    pub fn matches(&self, arm: usize, first: u32, rows: usize) -> Vec<Option<u32>> {
        self.arms[arm].matches(first, rows)
    }

    /// The right columns of `arm`'s `matches` (NULLs where `None`).
    pub fn take(&self, arm: usize, matches: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
        let mut columns = self.arms[arm].retained.gather(matches)?;
        if self.tie_only {
            columns.pop();
        }
        Ok(columns)
    }
}

/// The chunk's rows by key group, in `scratch.sorted`; within a group, in
/// arrival order.
///
/// A radix sort of two passes: by block of adjacent groups into `sorted`,
/// then each block by group through a buffer as large as the block. Sorted
/// by group in one pass, each row was a store to one of as many places as
/// there are groups (50k at 1M labels of 100k keys), nearly every one a
/// cache miss: a quarter of the sweep's time. Each pass writes to at most
/// [`MAX_BLOCKS`] places, and a second buffer as large as the chunk (the
/// usual second pass) is not needed. Sorted by block alone, the sweep read
/// a block's groups at random and missed the cache there instead.
fn sort_by_group(chunk: &Chunk, groups: usize, scratch: &mut Scratch) {
    let Scratch {
        starts,
        cursor,
        sorted,
        block,
        block_starts,
        ..
    } = scratch;
    let shift = groups
        .div_ceil(MAX_BLOCKS)
        .next_power_of_two()
        .trailing_zeros();
    let rows = chunk.groups.iter().zip(&chunk.values).enumerate();
    let visits = rows.map(|(row, (&group, &value))| Visit {
        value,
        row: row as u32,
        group,
    });
    let blocks = (groups >> shift) + 1;
    counting_sort(
        visits,
        |v| (v.group >> shift) as usize,
        blocks,
        starts,
        cursor,
        sorted,
    );
    if shift == 0 {
        return;
    }
    for b in 0..blocks {
        let rows = &mut sorted[starts[b] as usize..starts[b + 1] as usize];
        if rows.len() < 2 {
            continue;
        }
        let first = (b << shift) as u32;
        let by_group = |v: &Visit| (v.group - first) as usize;
        counting_sort(
            rows.iter().copied(),
            by_group,
            1 << shift,
            block_starts,
            cursor,
            block,
        );
        rows.copy_from_slice(&block[..rows.len()]);
    }
}

/// A stable counting sort of `items` by `key` (below `keys`) into `out`;
/// `starts[k]` is where key `k`'s items start (and the last, their number);
/// `cursor` is working space. `out` only grows: every slot up to the items'
/// number is written (zeroing the chunk's buffer per chunk was 1.5% of a
/// large join).
fn counting_sort<T: Copy + Default>(
    items: impl Iterator<Item = T> + Clone,
    key: impl Fn(&T) -> usize,
    keys: usize,
    starts: &mut Vec<u32>,
    cursor: &mut Vec<u32>,
    out: &mut Vec<T>,
) {
    starts.clear();
    starts.resize(keys + 1, 0);
    for item in items.clone() {
        starts[key(&item) + 1] += 1;
    }
    for k in 1..starts.len() {
        starts[k] += starts[k - 1];
    }
    cursor.clear();
    cursor.extend_from_slice(starts);
    let n = starts[keys] as usize;
    if out.len() < n {
        out.resize(n, T::default());
    }
    for item in items {
        let slot = &mut cursor[key(&item)];
        out[*slot as usize] = item;
        *slot += 1;
    }
}

impl ArmSweep {
    /// `share`: how many arms divide the slack.
    fn new(
        arm: LeftArm,
        group_of: &[u32],
        groups: usize,
        offsets: &[u32],
        tie_column: Option<usize>,
        held: SchemaRef,
        share: usize,
    ) -> Result<Self> {
        let grouped = Grouped::by_group(group_of, groups, &arm.matches, offsets)?;
        let mut position = vec![NONE; *offsets.last().unwrap_or(&0) as usize];
        for (p, id) in grouped.order.iter().enumerate() {
            position[*id as usize] = p as u32;
        }
        let bounds = match arm.bounds {
            Some((arrays, strict)) => {
                let mut all = Vec::with_capacity(position.len());
                for array in &arrays {
                    all.extend(ordered_i64(array)?.iter());
                }
                Some((all, strict))
            }
            None => None,
        };
        let best = vec![EMPTY; grouped.order.len()];
        let fixed_bytes = grouped.memory_bytes()
            + position.capacity() * 4
            + bounds.as_ref().map_or(0, |(b, _)| b.capacity() * 16)
            + best.capacity() * std::mem::size_of::<Best>();
        Ok(ArmSweep {
            op: arm.op,
            grouped,
            position,
            bounds,
            best,
            tie_column,
            direct: false,
            live: 0,
            retained: BatchRows::new(held),
            slack: SLACK_ROWS / share,
            slack_bytes: SLACK_BYTES / share,
            fixed_bytes,
        })
    }

    fn size(&self) -> usize {
        self.fixed_bytes + self.retained.bytes()
    }

    /// Fewer superseded rows are tolerated as rows get wider: at most
    /// `slack_bytes` of them.
    fn row_bytes_seen(&mut self, width: usize) {
        self.slack = self.slack.min(self.slack_bytes / width.max(1));
    }

    /// Sweeps the chunk, sorted by group in `scratch`, past this arm's left
    /// side, keeping the rows that win a bucket.
    fn sweep(&mut self, chunk: &Chunk, scratch: &mut Scratch) -> Result<()> {
        if self.best.is_empty() {
            return Ok(());
        }
        let n = chunk.rows() as usize;
        let Scratch {
            sorted,
            touched,
            wins,
            new_id,
            ..
        } = scratch;
        // Direct, when many rows of the last chunk won a bucket (time-ordered
        // appends): the chunk is held whole first, so a winner's id is final
        // at once and no second pass over the buckets is needed. Otherwise
        // winners are marked pending and only they are held afterwards (rows
        // clustered by key: few of them win).
        let base = self.retained.rows();
        let direct = self.direct && (base as usize + n) < PENDING as usize;
        if direct {
            for batch in chunk.rows.batches() {
                self.retained.push(batch.clone());
            }
        }
        touched.clear();
        let mut won = 0usize;
        // The group and cut of the last row (see `bucket`).
        let mut last = (NONE, 0);
        for &Visit { value, row, group } in &sorted[..n] {
            let range = self.grouped.range(group);
            let left = &self.grouped.values[range.clone()];
            let hint = (group == last.0).then_some(last.1);
            let (pos, cut) = bucket(self.op, left, value, hint);
            last = (group, cut);
            let Some(pos) = pos else {
                continue;
            };
            let pos = range.start + pos;
            let candidate = Best {
                value,
                row: if direct { base + row } else { PENDING | row },
            };
            let current = self.best[pos];
            if self.beats(candidate, current, chunk) {
                self.live += usize::from(current.row == NONE);
                self.best[pos] = candidate;
                // A bucket's first row of this chunk: later ones beat only
                // rows of this chunk.
                let fresh = current.row == NONE
                    || if direct {
                        current.row < base
                    } else {
                        current.row & PENDING == 0
                    };
                if fresh {
                    won += 1;
                    if !direct {
                        touched.push(pos as u32);
                    }
                }
            }
        }
        self.direct = won * DIRECT_SHARE >= n;
        if !direct {
            self.retain_pending(chunk, touched, wins, new_id)?;
        }
        if self.retained.rows() as usize > 2 * self.live + self.slack {
            self.compact(new_id)?;
        }
        Ok(())
    }

    /// Retains the chunk's rows that still win (a later row may have beaten
    /// an earlier one), batch by batch, numbered as retained rows.
    fn retain_pending(
        &mut self,
        chunk: &Chunk,
        touched: &[u32],
        wins: &mut Vec<bool>,
        new_id: &mut Vec<u32>,
    ) -> Result<()> {
        let n = chunk.rows() as usize;
        wins.clear();
        wins.resize(n, false);
        for &pos in touched.iter() {
            let row = self.best[pos as usize].row;
            if row != NONE && row & PENDING != 0 {
                wins[(row & !PENDING) as usize] = true;
            }
        }
        new_id.clear();
        new_id.resize(n, NONE);
        let offsets = chunk.rows.offsets();
        for (b, batch) in chunk.rows.batches().iter().enumerate() {
            let (lo, hi) = (offsets[b], offsets[b + 1]);
            let kept: Vec<u32> = (lo..hi).filter(|&r| wins[r as usize]).collect();
            if kept.is_empty() {
                continue;
            }
            // Most rows winning (time-ordered appends): hold the whole batch,
            // its other rows dead until the next compaction, not a copy.
            let whole = kept.len() * 2 >= (hi - lo) as usize;
            let base = self.retained.rows();
            for (rank, &r) in kept.iter().enumerate() {
                new_id[r as usize] = base + if whole { r - lo } else { rank as u32 };
            }
            let retained = if whole {
                batch.clone()
            } else {
                let rows = UInt32Array::from_iter_values(kept.iter().map(|r| r - lo));
                take_rows(batch, &rows)?
            };
            self.retained.push(retained);
        }
        for &pos in touched.iter() {
            let best = &mut self.best[pos as usize];
            if best.row != NONE && best.row & PENDING != 0 {
                best.row = new_id[(best.row & !PENDING) as usize];
            }
        }
        Ok(())
    }

    /// Whether `candidate`, a row of `chunk`, beats `current`, the best of
    /// its bucket: nearer, or tied and later by the tie-break (ingestion
    /// order, else the held columns, else arrival).
    fn beats(&self, candidate: Best, current: Best, chunk: &Chunk) -> bool {
        if current.row == NONE {
            return true;
        }
        let nearer = if self.op.is_backward() {
            candidate.value.cmp(&current.value)
        } else {
            current.value.cmp(&candidate.value)
        };
        let nearer = match nearer {
            Ordering::Equal if self.tie_column.is_some() => self
                .tie(candidate.row, chunk)
                .cmp(&self.tie(current.row, chunk)),
            other => other,
        };
        match nearer {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal if self.tie_column.is_some() => true,
            Ordering::Equal => {
                let (batch, mine) = self.row(candidate.row, chunk);
                let (other, row) = self.row(current.row, chunk);
                cmp_rows(batch.columns().iter().zip(other.columns()), mine, row) != Ordering::Less
            }
        }
    }

    /// The ingestion order of a right row by id: a pending row of `chunk`,
    /// or a held one.
    fn tie(&self, id: u32, chunk: &Chunk) -> i64 {
        let Some(column) = self.tie_column else {
            return 0;
        };
        let (batch, row) = self.row(id, chunk);
        batch
            .column(column)
            .as_primitive_opt::<Int64Type>()
            .filter(|order| order.is_valid(row))
            .map_or(0, |order| order.value(row))
    }

    /// A right row by id: a pending row of `chunk`, or a held one.
    fn row<'a>(&'a self, id: u32, chunk: &'a Chunk) -> (&'a RecordBatch, usize) {
        if id & PENDING != 0 {
            chunk.row(id & !PENDING)
        } else {
            self.retained.row(id)
        }
    }

    /// Rewrites the retained rows to those still winning a bucket. They are
    /// copied in the order they are held, so the copy reads each batch
    /// front to back; gathering them in bucket order read them at random
    /// and was a fifth of a large join's time.
    fn compact(&mut self, new_id: &mut Vec<u32>) -> Result<()> {
        new_id.clear();
        new_id.resize(self.retained.rows() as usize, NONE);
        for best in self.best.iter().filter(|b| b.row != NONE) {
            new_id[best.row as usize] = 0;
        }
        let mut indices = Vec::with_capacity(self.live);
        let offsets = self.retained.offsets();
        for (b, bounds) in offsets.windows(2).enumerate() {
            for id in bounds[0]..bounds[1] {
                let slot = &mut new_id[id as usize];
                if *slot != NONE {
                    *slot = indices.len() as u32;
                    indices.push((b, (id - bounds[0]) as usize));
                }
            }
        }
        for best in self.best.iter_mut().filter(|b| b.row != NONE) {
            best.row = new_id[best.row as usize];
        }
        self.retained.replace(&indices)
    }

    /// Gives every left position the nearest non-empty bucket on its side.
    fn finish(&mut self, groups: u32) {
        let backward = self.op.is_backward();
        for g in 0..groups {
            let range = self.grouped.range(g);
            let group = &mut self.best[range];
            let mut carry = EMPTY;
            let mut fill = |best: &mut Best| {
                if best.row == NONE {
                    *best = carry;
                } else {
                    carry = *best;
                }
            };
            if backward {
                group.iter_mut().for_each(&mut fill);
            } else {
                group.iter_mut().rev().for_each(&mut fill);
            }
        }
    }

    fn matches(&self, first: u32, rows: usize) -> Vec<Option<u32>> {
        (first as usize..first as usize + rows)
            .map(|id| {
                let pos = *self.position.get(id)?;
                let best = self.best.get(pos as usize)?;
                if best.row == NONE {
                    return None;
                }
                if let Some((bounds, strict)) = &self.bounds {
                    let limit = bounds[id]?;
                    if !self.op.within_bound(best.value, limit, *strict) {
                        return None;
                    }
                }
                Some(best.row)
            })
            .collect()
    }
}

/// The bucket of a right row with match value `value` among a key group's
/// ascending `left` values: the left position it is nearest to on the side
/// where it can match; and the row's cut, the number of left values it is
/// past. `hint`: the cut of the group's last row swept. Rows in time order
/// are cut at or just after it, found in two comparisons or three instead
/// of a binary search.
fn bucket(op: MatchOp, left: &[i64], value: i64, hint: Option<usize>) -> (Option<usize>, usize) {
    let past = |l: i64| match op {
        MatchOp::GtEq | MatchOp::Lt => l < value,
        MatchOp::Gt | MatchOp::LtEq => l <= value,
    };
    let cut_at = |c: usize| (c == 0 || past(left[c - 1])) && (c == left.len() || !past(left[c]));
    let cut = match hint {
        Some(c) if c <= left.len() && cut_at(c) => c,
        Some(c) if c < left.len() && cut_at(c + 1) => c + 1,
        _ => left.partition_point(|l| past(*l)),
    };
    let pos = match op {
        MatchOp::GtEq | MatchOp::Gt => Some(cut),
        MatchOp::LtEq | MatchOp::Lt => cut.checked_sub(1),
    };
    (pos.filter(|p| *p < left.len()), cut)
}

/// Bytes of a batch's values: a batch that slices bigger buffers counts only
/// its own part.
fn data_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            data.get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Right rows waiting to be swept, in arrival order.
struct Chunk {
    rows: BatchRows,
    /// Bytes of the rows' values (not of the buffers they may be slices of).
    data_bytes: usize,
    /// Per row, its left key group.
    groups: Vec<u32>,
    values: Vec<i64>,
}

impl Chunk {
    fn new(schema: SchemaRef) -> Self {
        Chunk {
            rows: BatchRows::new(schema),
            data_bytes: 0,
            groups: Vec::new(),
            values: Vec::new(),
        }
    }

    fn rows(&self) -> u32 {
        self.rows.rows()
    }

    /// Drops the rows, keeping the buffers' capacity.
    fn clear(&mut self) {
        self.rows = BatchRows::new(self.rows.schema());
        self.data_bytes = 0;
        self.groups.clear();
        self.values.clear();
    }

    fn row(&self, row: u32) -> (&RecordBatch, usize) {
        self.rows.row(row)
    }

    fn bytes(&self) -> usize {
        self.rows.bytes() + self.groups.capacity() * 4 + self.values.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;
    use crate::execution::ingest_order::INGEST_ORDER_COLUMN;

    /// A hint, right or wrong or out of range, never changes the bucket.
    #[test]
    fn hints_find_the_bucket_a_search_finds() {
        let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
        let lefts: [&[i64]; 4] = [&[], &[5], &[1, 3, 3, 3, 8, 9], &[2, 4, 6, 8, 10, 12, 14]];
        for op in ops {
            for left in lefts {
                for value in -1..16 {
                    let want = bucket(op, left, value, None);
                    for hint in 0..left.len() + 3 {
                        assert_eq!(
                            bucket(op, left, value, Some(hint)),
                            want,
                            "{op:?} {left:?} value {value} hint {hint}"
                        );
                    }
                }
            }
        }
    }

    /// Chunks held whole (most rows winning) or by their winners, compacted
    /// after every chunk (no slack) or seldom, with ties broken by the held
    /// columns or by ingestion order, with few key groups or more than
    /// `MAX_BLOCKS` (swept by blocks of several): every answer is the
    /// reference's.
    #[test]
    fn chunks_and_compaction_keep_the_winners() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as i64
        };
        for (ingest, keys) in [(false, 7), (true, 7), (false, 5000), (true, 5000)] {
            let mut fields = vec![
                Field::new("k", DataType::Int64, true),
                Field::new("t", DataType::Int64, true),
                Field::new("id", DataType::Int64, false),
            ];
            if ingest {
                fields.push(Field::new(INGEST_ORDER_COLUMN, DataType::Int64, false));
            }
            let schema = Arc::new(Schema::new(fields));
            let ops = [MatchOp::GtEq, MatchOp::Gt, MatchOp::LtEq, MatchOp::Lt];
            for (o, op) in ops.into_iter().enumerate() {
                for (chunk_rows, slack) in [(100, 0), (100, 700), (1000, 0)] {
                    let left: Vec<(i64, i64)> =
                        (0..2000).map(|_| (next(keys), next(500))).collect();
                    // Right rows in time order, sparser than the labels (most
                    // win a bucket: chunks held whole), then shuffled (few
                    // win: held by their winners); ties on (k, t).
                    let mut right: Vec<(i64, i64, i64)> = (0..1500)
                        .map(|i| (next(keys), i / 3, next(1 << 20)))
                        .collect();
                    right.extend((0..1500).map(|_| (next(keys), next(500), next(1 << 20))));
                    let array = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
                    let lk = array(left.iter().map(|l| l.0).collect());
                    let lt = array(left.iter().map(|l| l.1).collect());
                    // Two arms in one sweep: this operator and the next one,
                    // over the same right rows.
                    let arm_ops = [op, ops[(o + 1) % 4]];
                    let arms = arm_ops
                        .iter()
                        .map(|&op| LeftArm {
                            op,
                            matches: vec![lt.clone()],
                            bounds: None,
                        })
                        .collect();
                    let mut sweep =
                        LeftSweep::new(&[vec![lk]], arms, schema.clone(), &[2]).expect("left");
                    for arm in &mut sweep.arms {
                        arm.slack = slack;
                    }
                    sweep.chunk_rows = chunk_rows;
                    for (c, part) in right.chunks(37).enumerate() {
                        let k = array(part.iter().map(|r| r.0).collect());
                        let t = array(part.iter().map(|r| r.1).collect());
                        let id = array((0..part.len() as i64).map(|i| c as i64 * 37 + i).collect());
                        let mut columns = vec![k.clone(), t.clone(), id];
                        if ingest {
                            columns.push(array(part.iter().map(|r| r.2).collect()));
                        }
                        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
                        sweep.push(&batch, &[k], &t).expect("push");
                    }
                    sweep.finish().expect("finish");
                    for (arm, op) in arm_ops.into_iter().enumerate() {
                        let found = sweep.matches(arm, 0, left.len());
                        let ids = sweep.take(arm, &found).expect("take");
                        let ids = ids[0].as_primitive::<Int64Type>();
                        for (i, (k, t)) in left.iter().enumerate() {
                            // Nearest value; among ties the last by ingestion
                            // order, else by the held column (the id).
                            let want = right
                                .iter()
                                .enumerate()
                                .filter(|(_, r)| {
                                    r.0 == *k
                                        && match op {
                                            MatchOp::GtEq => *t >= r.1,
                                            MatchOp::Gt => *t > r.1,
                                            MatchOp::LtEq => *t <= r.1,
                                            MatchOp::Lt => *t < r.1,
                                        }
                                })
                                .max_by_key(|(id, r)| {
                                    let near = if op.is_backward() { r.1 } else { -r.1 };
                                    (near, if ingest { r.2 } else { 0 }, *id)
                                })
                                .map(|(id, _)| id as i64);
                            assert_eq!(
                                ids.is_valid(i).then(|| ids.value(i)),
                                want,
                                "arm {arm} {op:?}, ingest {ingest}, keys {keys}, chunks {chunk_rows}, slack {slack}, left row {i}"
                            );
                        }
                    }
                }
            }
        }
    }
}
