//! The physical ASOF JOIN: [`AsOfJoinExec`] and its two strategies per
//! partition, [`LeftSweep`] (hold the left, stream the right) and
//! [`RightIndex`] (index the right, stream the left).
//!
//! - `exec`: the plan node (properties, children, projection embedding,
//!   arms absorbed from a chain, filter pushdown)
//! - `stream`: one partition's path from its inputs to its output stream;
//!   `probe` (the left side) and `build` (the right side: swept or indexed)
//! - `passes`: a partition neither of whose sides fits, joined in passes
//!   over the right side spilled to disk (`spill`); `memory_wait`: a
//!   chunk waiting for memory other partitions release
//! - `metrics`: what `EXPLAIN ANALYZE` shows, per partition
//! - the kernels: `sweep`, `index` (with `groups`, `rows`, `values`,
//!   `tie_break`), `output`; the filter pushed into the right input:
//!   `right_filter`, `right_scan`

mod build;
mod exec;
mod groups;
mod index;
mod memory_wait;
mod metrics;
mod output;
mod passes;
mod probe;
mod right_filter;
mod right_scan;
mod rows;
mod spill;
mod stream;
mod sweep;
mod tie_break;
mod values;

pub use exec::AsOfJoinExec;
pub use index::RightIndex;
pub use right_scan::{filter_rows_while_decoding, worth_filtering_rows};
pub use sweep::LeftSweep;
pub use values::ordered_i64;
