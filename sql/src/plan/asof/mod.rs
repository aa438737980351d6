//! Point-in-time-correct ASOF JOIN: planning (`plan`), the logical node and its
//! extension planner (`node`), the physical operator (`exec`), the spine (`spine`)
//! and the matching strategies (`strategy`).
//!
//! `FROM s ASOF JOIN f MATCH_CONDITION (s.ts >= f.event_ts) ON s.k = f.k` keeps every
//! row of the spine `s` and attaches the columns of the version of `f` that matches
//! it, from `f`'s history (NULLs when none does):
//! - `>=` / `>`: the newest version with event time <= / < the spine time;
//!   `<=` / `<`: the oldest version with event time >= / > the spine time;
//! - ties on event time go to the newest write; a matching tombstone means no match;
//! - NULL keys or times never match;
//! - `f`'s TTL applies to backward matches (a version older than spine time minus TTL
//!   is not a candidate, the same rule online serving uses), and `ON` may add one
//!   explicit bound such as `s.ts - f.event_ts <= INTERVAL '1 day'`;
//! - `f FOR SYSTEM_TIME AS OF x` restricts `f` to what the database knew at `x`.
//!
//! The operator reads the spine, then picks a strategy: per-row point lookups when the
//! spine is small relative to `f`'s history, otherwise a streaming merge of the spine
//! sorted by (key, time) with `f`'s history, which storage returns already sorted by
//! (key, event time descending). Memory is bounded by the spine (its rows and sort
//! index) plus one entity's versions, never by the size of `f`.
//!
//! A right side that is not a Hindsight table (subquery, CTE, view) is planned as the
//! equivalent `LEFT JOIN LATERAL (... ORDER BY time LIMIT 1)` (`general`), run per
//! spine row.

mod contract;
mod exec;
mod general;
mod node;
mod plan;
mod spine;
mod strategy;

pub use contract::{MARKER, MatchOp};
pub use exec::AsofJoinExec;
pub use node::{AsofJoinNode, AsofPlanner};
pub(crate) use plan::plan;
