//! Per-statement state that DataFusion plans read at execution time.
//!
//! A session installs one [`StatementContext`] as a DataFusion config extension. Before
//! each statement runs, the session stores the snapshot it reads (with the open
//! transaction's overlay), the bound parameter values, and any stashed batches; table
//! providers and operators read them when the physical plan is created. Invariant: a
//! statement's scans all use the same snapshot, so a statement sees one consistent
//! state of the database.
//!
//! It also carries the catalog changes of the session's open transaction, so that
//! planning (which may happen before a statement's snapshot is taken, e.g. at Parse)
//! sees the committed catalog as of now plus the transaction's own DDL.

use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session as DfSession;
use datafusion::common::ScalarValue;
use hindsight_storage::{Catalog, CatalogOp, Db, Snapshot};

use crate::error::{Result, SqlError};
use crate::plan::names::Names;

struct Inner {
    snapshot: Option<Snapshot>,
    params: Vec<ScalarValue>,
    stash: Vec<Vec<RecordBatch>>,
    /// Catalog changes of the open transaction, not yet committed.
    pending_catalog: Vec<CatalogOp>,
    /// The schemas unqualified names are looked up in (`search_path`), the
    /// session's temporary schema first once it has one.
    search_path: Vec<String>,
    /// The session's temporary schema (`pg_temp_N`), once it created a temporary table.
    temp_schema: Option<String>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            snapshot: None,
            params: Vec::new(),
            stash: Vec::new(),
            pending_catalog: Vec::new(),
            search_path: crate::plan::names::default_search_path(),
            temp_schema: None,
        }
    }
}

/// The state of the statement being planned and executed in a session.
#[derive(Default)]
pub struct StatementContext {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for StatementContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatementContext")
    }
}

impl StatementContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a statement reading `snapshot` with parameter values `params`.
    pub(crate) fn begin(&self, snapshot: Snapshot, params: Vec<ScalarValue>) {
        let mut g = self.lock();
        g.snapshot = Some(snapshot);
        g.params = params;
        g.stash.clear();
    }

    /// The snapshot of the running statement.
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        self.lock()
            .snapshot
            .clone()
            .ok_or_else(|| SqlError::internal("no statement is running in this session"))
    }

    /// Record the open transaction's catalog changes (empty when none is open).
    pub(crate) fn set_pending_catalog(&self, ops: &[CatalogOp]) {
        let mut g = self.lock();
        if g.pending_catalog.as_slice() != ops {
            g.pending_catalog = ops.to_vec();
        }
    }

    /// The catalog this session plans against: the committed one plus its open
    /// transaction's changes. Changes that no longer apply (another session
    /// committed a conflicting one) are left out here; the commit will refuse them.
    pub(crate) fn catalog(&self, db: &Db) -> Arc<Catalog> {
        let committed = db.catalog();
        let g = self.lock();
        if g.pending_catalog.is_empty() {
            return committed;
        }
        committed
            .with_pending(&g.pending_catalog)
            .map_or(committed, Arc::new)
    }

    /// Set the schemas unqualified names are looked up in, in order.
    pub(crate) fn set_search_path(&self, path: Vec<String>) {
        self.lock().search_path = path;
    }

    /// Record the session's temporary schema (searched before `search_path`).
    pub(crate) fn set_temp_schema(&self, schema: Option<String>) {
        self.lock().temp_schema = schema;
    }

    /// The session's temporary schema, if it has one.
    pub(crate) fn temp_schema(&self) -> Option<String> {
        self.lock().temp_schema.clone()
    }

    /// The search path as `pg_table_is_visible`'s second argument.
    pub(crate) fn visibility_path(&self) -> String {
        let g = self.lock();
        crate::pg::visibility::path_argument(g.temp_schema.as_deref(), &g.search_path)
    }

    /// Name resolution as this session plans: its catalog and search path (its
    /// temporary schema first).
    pub(crate) fn names(&self, db: &Db) -> Names {
        let (temp, path) = {
            let g = self.lock();
            (g.temp_schema.clone(), g.search_path.clone())
        };
        Names::new(self.catalog(db), temp, path)
    }

    /// Parameter values of the running statement.
    pub(crate) fn params(&self) -> Vec<ScalarValue> {
        self.lock().params.clone()
    }

    /// Stash batches for `__hindsight_stash(n)`; returns `n`.
    pub(crate) fn stash(&self, batches: Vec<RecordBatch>) -> usize {
        let mut g = self.lock();
        g.stash.push(batches);
        g.stash.len() - 1
    }

    /// Stashed batches number `n`.
    pub(crate) fn stashed(&self, n: usize) -> Option<Vec<RecordBatch>> {
        self.lock().stash.get(n).cloned()
    }
}

/// The statement context installed in a DataFusion session.
pub(crate) fn of(state: &dyn DfSession) -> Result<Arc<StatementContext>> {
    state
        .config()
        .get_extension::<StatementContext>()
        .ok_or_else(|| {
            SqlError::internal("this DataFusion session has no Hindsight statement context")
        })
}
