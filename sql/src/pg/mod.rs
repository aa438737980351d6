//! Postgres compatibility: PostgreSQL's text output of values, literal parsing
//! (arrays, bytea), the functions clients call (`version()`, `current_setting`,
//! `pg_get_*`), and the `pg_catalog` / `information_schema` shims with the query
//! rewrites psql, JDBC and SQLAlchemy need. Builds on `plan`; `session` builds on it.

pub mod binary;
pub(crate) mod catalog;
pub(crate) mod functions;
pub(crate) mod indexes;
pub(crate) mod information_schema;
pub(crate) mod introspection;
pub(crate) mod like;
pub mod literals;
pub(crate) mod sizes;
pub mod text;
pub(crate) mod textcast;
pub(crate) mod untyped;
pub(crate) mod views;
pub(crate) mod visibility;
