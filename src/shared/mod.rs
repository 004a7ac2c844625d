//! The vocabulary every layer shares, and nothing else: names of schemas and
//! tables (and the paths made from them), the match operators of ASOF JOIN,
//! hidden column names. It depends on no other module of pitlake.

mod columns;
mod match_op;
pub mod names;

pub use columns::{INGEST_ORDER_COLUMN, REF_VERSION_FUNCTION};
pub use match_op::MatchOp;
pub use names::{NameKind, SYSTEM_SCHEMA, TEMP_SCHEMA, TableName, check_name, warehouse_path};
