//! SQL text to statements: pitlake's dialect, its time-travel token pass, and
//! the feature-group and principal statements DataFusion does not know.

mod columns;
mod dialect;
pub mod limits;
mod params;
mod parser;
mod policies;
mod principals;
mod refs;
mod sharing;
mod statement;
pub mod time_travel_tokens;
mod words;

pub use columns::ColumnsStatement;
pub use dialect::PitlakeDialect;
pub use params::{bind_parameters, count_parameters, number_placeholders};
pub use parser::{name_parts, parse_expr, parse_sql};
pub use policies::{PolicyClause, PolicyStatement};
pub use principals::{GrantObject, GrantTarget, PrincipalStatement};
pub use refs::RefStatement;
pub use sharing::SharingStatement;
pub use statement::{CreateFeatureGroup, Statement};
