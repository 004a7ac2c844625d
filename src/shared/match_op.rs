//! The comparison of an ASOF JOIN's match condition, shared by the planner
//! that reads it from SQL and the operators that execute it.

/// The comparison in `MATCH_CONDITION (left <op> right)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum MatchOp {
    /// `l >= r`: the latest right value at or before the left value.
    GtEq,
    /// `l > r`: the latest right value strictly before.
    Gt,
    /// `l <= r`: the earliest right value at or after.
    LtEq,
    /// `l < r`: the earliest right value strictly after.
    Lt,
}

impl MatchOp {
    /// True when the match looks backwards (right values at or before the left value).
    pub fn is_backward(self) -> bool {
        matches!(self, MatchOp::GtEq | MatchOp::Gt)
    }

    /// The operator with sides swapped (`r <= l` is `l >= r`).
    pub fn flip(self) -> Self {
        match self {
            MatchOp::GtEq => MatchOp::LtEq,
            MatchOp::Gt => MatchOp::Lt,
            MatchOp::LtEq => MatchOp::GtEq,
            MatchOp::Lt => MatchOp::Gt,
        }
    }

    /// How the right value compares with a maximum-age bound: `>=` (or `>`
    /// when strict) for backward matches, `<=` (or `<`) for forward ones.
    pub fn bound_symbol(self, strict: bool) -> &'static str {
        match (self.is_backward(), strict) {
            (true, false) => ">=",
            (true, true) => ">",
            (false, false) => "<=",
            (false, true) => "<",
        }
    }

    /// Whether a right value `found` is within the bound `limit`.
    pub fn within_bound(self, found: i64, limit: i64, strict: bool) -> bool {
        match (self.is_backward(), strict) {
            (true, false) => found >= limit,
            (true, true) => found > limit,
            (false, false) => found <= limit,
            (false, true) => found < limit,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            MatchOp::GtEq => ">=",
            MatchOp::Gt => ">",
            MatchOp::LtEq => "<=",
            MatchOp::Lt => "<",
        }
    }
}
