//! Names pitlake adds to what it reads: hidden columns, and the function a
//! tag's time-travel clause is rewritten to.

/// A feature group's rows in ingestion order (file, then row within the
/// file): the tie-break of equal event times, online and in ASOF JOIN.
pub const INGEST_ORDER_COLUMN: &str = "__pitlake_ingest_order";

/// Name of the table-version function the SQL token pass produces for tag and
/// branch names (`FOR VERSION AS OF 'main'` → `VERSION AS OF AT('main')`).
pub const REF_VERSION_FUNCTION: &str = "AT";
