//! The physical ASOF JOIN: [`AsOfJoinExec`], its right-side index and the
//! ordering of match values.

mod exec;
mod index;
mod values;

pub use exec::AsOfJoinExec;
pub use index::RightIndex;
pub use values::ordered_i64;
