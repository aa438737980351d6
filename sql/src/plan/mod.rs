//! Planning and time travel: the catalog DataFusion sees, the table provider over
//! the versioned store, time expressions, the as-of join, relation planning of
//! `as_of`/`history`/`FOR SYSTEM_TIME AS OF`, the AST rewrites, parameter typing and
//! the point-lookup fast path, the live system views, correlated subqueries run per
//! outer row (`apply`). Imports only the leaves (error, ident, dialect,
//! types, offload), never `pg` or `session`.

pub(crate) mod apply;
pub mod asof;
pub(crate) mod catalog;
pub(crate) mod context;
pub(crate) mod fastpath;
pub(crate) mod names;
pub(crate) mod params;
pub(crate) mod placeholders;
pub mod provider;
pub(crate) mod relation;
pub(crate) mod rewrite;
pub(crate) mod scanplan;
pub mod system;
pub(crate) mod timeexpr;
pub(crate) mod views;
