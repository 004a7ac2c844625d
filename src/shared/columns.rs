//! Names of the hidden columns pitlake adds to what it reads.

/// A feature group's rows in ingestion order (file, then row within the
/// file): the tie-break of equal event times, online and in ASOF JOIN.
pub const INGEST_ORDER_COLUMN: &str = "__pitlake_ingest_order";
