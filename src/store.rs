//! A warehouse opened for use: its catalog, its principals, its online store
//! and its stream logs, wired together once. Every session of a process shares one.
//!
//! ```text
//! Store ─┬─ Warehouse (catalog/)      the Iceberg catalog and the folder
//!        ├─ OnlineStore (online/)     reads tables through the Warehouse,
//!        │                            pending records through a trait
//!        └─ Streams (ingest/)         writes through the Warehouse, tells
//!                                     the OnlineStore of every record
//! ```
//!
//! The parts know each other only downwards (streams → online → catalog); the
//! online store reads the streams' pending records through
//! [`crate::online::PendingRecords`], held weakly, so nothing keeps itself alive.

use std::path::Path;
use std::sync::Arc;

use crate::access::{AuditLog, Grants, Policies, Principals, Sharing};
use crate::catalog::Warehouse;
use crate::error::Result;
use crate::ingest::WritePath;
use crate::ingest::stream::Streams;
use crate::online::OnlineStore;

/// The folder of the warehouse queries spill into (a name no schema can have).
pub const SPILL_DIR: &str = ".spill";

/// A warehouse with its online store and stream logs. Cheap to clone; the
/// committers and the online follower stop when the last clone goes.
#[derive(Debug, Clone)]
pub struct Store {
    warehouse: Warehouse,
    principals: Principals,
    grants: Grants,
    policies: Policies,
    sharing: Sharing,
    audit: AuditLog,
    online: Arc<OnlineStore>,
    streams: Arc<Streams>,
}

impl Store {
    /// Opens (creating if needed) the warehouse in `dir`.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::new(Warehouse::open(dir).await?).await
    }

    /// Opens the warehouse in `dir`, failing with
    /// [`crate::Error::WarehouseNotFound`] when there is none.
    pub async fn open_existing(dir: impl AsRef<Path>) -> Result<Self> {
        Self::new(Warehouse::open_existing(dir).await?).await
    }

    /// The online store and stream logs of an opened warehouse. Open one
    /// `Store` per warehouse and process: the stream logs are locked by it.
    pub async fn new(warehouse: Warehouse) -> Result<Self> {
        let principals = Principals::open(warehouse.db().clone()).await?;
        let grants = Grants::open(warehouse.db().clone()).await?;
        let policies = Policies::open(warehouse.db().clone()).await?;
        let sharing = Sharing::open(warehouse.db().clone()).await?;
        let audit = AuditLog::open(warehouse.root()).await?;
        let online = OnlineStore::new(warehouse.clone());
        let streams = Streams::new(warehouse.clone(), online.clone());
        Ok(Store {
            warehouse,
            principals,
            grants,
            policies,
            sharing,
            audit,
            online,
            streams,
        })
    }

    /// Who may do what on the warehouse's schemas and tables.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The row filters and column masks of the warehouse's tables.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Where queries spill: inside the warehouse folder, so whatever
    /// protects the warehouse (an encrypted volume, its mode) protects the
    /// rows spilled too. Made when first asked for.
    pub fn spill_dir(&self) -> Result<std::path::PathBuf> {
        let dir = self.warehouse.root().join(SPILL_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| crate::Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(dir)
    }

    /// Published feature groups and requests for access to them.
    pub fn sharing(&self) -> &Sharing {
        &self.sharing
    }

    /// Who did what (see [`AuditLog`]).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The warehouse's users and roles.
    pub fn principals(&self) -> &Principals {
        &self.principals
    }

    /// The catalog and folder.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The warehouse folder.
    pub fn root(&self) -> &Path {
        self.warehouse.root()
    }

    /// The online store (shared by every session on this store).
    pub fn online(&self) -> &Arc<OnlineStore> {
        &self.online
    }

    /// Writes into the tables (each a snapshot, then the online store told).
    pub fn writes(&self) -> WritePath {
        WritePath::new(
            self.warehouse.clone(),
            self.online.clone(),
            self.streams.clone(),
        )
    }

    /// The streaming-ingest logs and committers.
    pub fn streams(&self) -> &Arc<Streams> {
        &self.streams
    }
}
