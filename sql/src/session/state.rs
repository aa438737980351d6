//! The session's state: the [`Session`] struct (its engine, DataFusion state,
//! statement context, transaction, savepoints and settings) and how one starts.
//! A leaf of the session: every other room adds methods to `Session` and imports
//! it from here.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProviderList};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use hindsight_storage::WriteBatch;

use super::engine::{Engine, session_config};
use crate::error::{ErrorKind, Result, SqlError};
use crate::pg::information_schema::{INFORMATION_SCHEMA, InformationSchema};
use crate::plan::catalog::CATALOG;
use crate::plan::context::StatementContext;
use crate::plan::relation::HsRelationPlanner;
use crate::settings::DEFAULT_SETTINGS;

/// One client's session.
pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) state: SessionState,
    pub(crate) stmt: Arc<StatementContext>,
    pub(crate) txn: Txn,
    /// Savepoints of the open transaction block: name and the writes before it.
    pub(super) savepoints: Vec<(String, WriteBatch)>,
    /// Open named cursors by name (`DECLARE`).
    pub(super) cursors: std::collections::HashMap<String, super::cursor::Cursor>,
    /// What `pg_cursors` shows of `cursors` (kept in step by the cursor module).
    pub(super) cursor_list: Arc<crate::pg::views::OpenCursors>,
    pub(super) settings: BTreeMap<String, String>,
    /// `statement_timeout` parsed, kept in step with `settings` by
    /// [`Session::store_setting`]: every Execute reads it.
    pub(super) statement_timeout_ms: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// The transaction state of a session.
pub(crate) enum Txn {
    Idle,
    Open(WriteBatch),
    Failed,
}

impl Engine {
    /// A new session (one per connection).
    pub fn session(self: &Arc<Self>) -> Result<Session> {
        Session::new(self.clone())
    }
}

impl Session {
    pub(super) fn new(engine: Arc<Engine>) -> Result<Session> {
        let stmt = Arc::new(StatementContext::default());
        let mut config = session_config(&engine.options);
        config.set_extension(stmt.clone());
        let cursor_list = Arc::new(crate::pg::views::OpenCursors::default());
        config.set_extension(cursor_list.clone());
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(
                engine.options.query_memory_limit,
            )))
            .build_arc()?;
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        let catalog = engine.catalog.for_session(stmt.clone());
        let list: Arc<dyn CatalogProviderList> = catalogs.clone();
        catalog.register_schema(
            INFORMATION_SCHEMA,
            Arc::new(InformationSchema::new(list, engine.db.clone())),
        )?;
        catalogs.register_catalog(CATALOG.to_string(), Arc::new(catalog));
        let state = SessionStateBuilder::new_from_existing(engine.template.clone())
            .with_catalog_list(catalogs)
            .with_config(config)
            .with_runtime_env(runtime)
            .with_relation_planners(vec![Arc::new(HsRelationPlanner::new(
                engine.db.clone(),
                stmt.clone(),
            ))])
            .build();
        let settings = DEFAULT_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Session {
            engine,
            state,
            stmt,
            txn: Txn::Idle,
            savepoints: Vec::new(),
            cursors: std::collections::HashMap::new(),
            cursor_list,
            settings,
            statement_timeout_ms: 0,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

/// A statement timeout setting: plain milliseconds or with a unit ('5s', '100ms', '1min').
pub(super) fn parse_timeout_ms(v: &str) -> Result<u64> {
    let v = v.trim().trim_matches('\'');
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(ms);
    }
    crate::types::parse_interval_micros(v)
        .map(|us| (us / 1000) as u64)
        .map_err(|_| {
            SqlError::new(
                ErrorKind::InvalidParameterValue,
                format!("invalid value for statement_timeout: \"{v}\""),
            )
        })
}
