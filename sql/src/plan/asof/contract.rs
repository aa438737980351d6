//! The ASOF JOIN contract shared by planning and execution: the match operators,
//! the marker alias `rewrite` uses, and the errors (with hints) for what the
//! contract refuses.

use datafusion::error::DataFusionError;

use crate::error::{ErrorKind, SqlError};

/// Alias of the nested join `rewrite` produces for each ASOF JOIN.
pub const MARKER: &str = "__hindsight_asof";

/// How the spine time relates to the matched event time (`spine OP event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd)]
pub enum MatchOp {
    Ge,
    Gt,
    Le,
    Lt,
}

impl MatchOp {
    pub(super) fn backward(self) -> bool {
        matches!(self, MatchOp::Ge | MatchOp::Gt)
    }

    pub(super) fn symbol(self) -> &'static str {
        match self {
            MatchOp::Ge => ">=",
            MatchOp::Gt => ">",
            MatchOp::Le => "<=",
            MatchOp::Lt => "<",
        }
    }
}

pub(super) const MATCH_HINT: &str = "write MATCH_CONDITION (s.ts >= f.event_ts) with f's event-time column on one side \
                          (>=, >, <=, < are supported)";
pub(super) const ON_HINT: &str = "ON may hold only equalities between spine expressions and every key column of the \
                       right table, plus at most one bound such as s.ts - f.event_ts <= INTERVAL '1 day'";

pub(super) fn contract_error(message: impl Into<String>, hint: &str) -> DataFusionError {
    SqlError::new(ErrorKind::FeatureNotSupported, message)
        .with_hint(hint)
        .into_datafusion()
}
