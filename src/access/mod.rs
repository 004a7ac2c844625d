//! Who may do what: the warehouse's users and roles (and, as they arrive,
//! grants, row filters and the audit log). Stored in the catalog database,
//! so every process on the warehouse sees the same; the session asks here
//! before it runs a statement.

mod audit;
mod grants;
mod password;
mod policies;
mod principals;
mod sharing;

pub use audit::{AUDIT_DB, AuditAction, AuditEvent, AuditLog};
pub use grants::{Access, GrantRow, Grantee, Grants, Privilege, Securable};
pub use password::MAX_PASSWORD_BYTES;
pub use policies::{Policies, PolicyChange, PolicySet, TablePolicy};
pub use principals::{ADMIN_ROLE, Principal, Principals};
pub use sharing::{
    AccessRequest, MAX_REASON_CHARS, Publication, Published, RequestStatus, Sharing,
};
