//! The physical ASOF JOIN: [`AsOfJoinExec`] and its two strategies per
//! partition, [`LeftSweep`] (hold the left, stream the right) and
//! [`RightIndex`] (index the right, stream the left).

mod exec;
mod groups;
mod index;
mod output;
mod right_filter;
mod right_scan;
mod rows;
mod spill;
mod sweep;
mod tie_break;
mod values;

pub use exec::AsOfJoinExec;
pub use index::RightIndex;
pub use right_scan::{filter_rows_while_decoding, worth_filtering_rows};
pub use sweep::LeftSweep;
pub use values::ordered_i64;
