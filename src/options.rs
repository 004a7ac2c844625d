//! pitlake's settings, in DataFusion's session configuration under the
//! `pitlake.` prefix: `SET pitlake.asof_join_strategy = 'index'`.

use std::fmt;
use std::str::FromStr;

use datafusion::common::config::ConfigExtension;
use datafusion::common::{config_field, extensions_options};
use datafusion::error::DataFusionError;

/// How `AsOfJoinExec` joins a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AsOfJoinStrategy {
    /// `sweep` when the left side is held and the right side is not known
    /// to be smaller than it, else `index`.
    #[default]
    Auto,
    /// Hold the left side (when it fits the left buffer) and stream the
    /// right side past it, keeping only winning rows.
    Sweep,
    /// Index the whole right side and probe it with left rows.
    Index,
}

impl FromStr for AsOfJoinStrategy {
    type Err = DataFusionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AsOfJoinStrategy::Auto),
            "sweep" => Ok(AsOfJoinStrategy::Sweep),
            "index" => Ok(AsOfJoinStrategy::Index),
            other => Err(DataFusionError::Configuration(format!(
                "pitlake.asof_join_strategy: '{other}' is not one of 'auto', 'sweep', 'index'"
            ))),
        }
    }
}

impl fmt::Display for AsOfJoinStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AsOfJoinStrategy::Auto => "auto",
            AsOfJoinStrategy::Sweep => "sweep",
            AsOfJoinStrategy::Index => "index",
        })
    }
}

config_field!(AsOfJoinStrategy);

extensions_options! {
    /// pitlake's session settings.
    pub struct PitlakeOptions {
        /// How ASOF JOIN works per partition: 'auto', 'sweep' or 'index'.
        pub asof_join_strategy: AsOfJoinStrategy, default = AsOfJoinStrategy::Auto
        /// Whether ASOF JOINs of one left side against the same right
        /// relation on the same keys share one read of it (one join with
        /// an arm each).
        pub asof_join_shared_scan: bool, default = true
    }
}

impl ConfigExtension for PitlakeOptions {
    const PREFIX: &'static str = "pitlake";
}
