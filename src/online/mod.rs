//! The online store: the latest row per entity of every online feature group,
//! served by point lookups in SQL (`online.<schema>.<group>`), over Flight
//! (the `lookup` action) and from Rust ([`OnlineGroup::lookup`]).
//!
//! ```text
//!  Iceberg table ─┐ build (first use), catch up (own commits at once, others' ≤ 1 s)
//!  stream acks ───┴─► OnlineGroup: key bytes → latest row ─► lookups
//! ```
//!
//! The value of an entity is the row an ASOF JOIN at now() would match: the
//! greatest event time, ties to the row ingested later. A group's maximum age
//! (`max_age`) hides values older than that.

mod provider;
pub mod source;
mod store;
mod table;

pub use provider::{ONLINE_CATALOG, OnlineCatalog, OnlineLookupExec};
pub use store::{OnlineGroup, OnlineStore};
pub use table::OnlineTable;
