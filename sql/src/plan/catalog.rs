//! The DataFusion catalog over the storage catalog: database `hindsight`, schema
//! `public`, one table provider per storage table (current-state reads).
//!
//! Invariant: the storage catalog is the only source of truth for user tables; these
//! providers hold no table state of their own, so DDL is visible to the next statement
//! of every session. Each session plans with its own [`HsCatalog`], which adds its
//! open transaction's uncommitted DDL (see [`StatementContext::catalog`]); the
//! engine's own instance (what `pg_catalog` enumerates) sees committed tables only.
//! Other schemas (`pg_catalog`) are registered once per engine and shared.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use hindsight_storage::Db;

use crate::plan::context::StatementContext;
use crate::plan::provider::{HsTable, ReadSpec};
use crate::plan::views::ListedView;

/// The catalog name clients see (`current_database()`).
pub const CATALOG: &str = "hindsight";
/// The schema name clients see (`current_schema()`).
pub const SCHEMA: &str = "public";

/// Database `hindsight`.
#[derive(Debug)]
pub struct HsCatalog {
    schema: Arc<HsSchema>,
    /// System schemas registered at engine start (`pg_catalog`).
    system: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl HsCatalog {
    pub fn new(db: Db) -> Self {
        HsCatalog {
            schema: Arc::new(HsSchema { db, stmt: None }),
            system: RwLock::new(BTreeMap::new()),
        }
    }

    /// The same database as one session plans it: its transaction's DDL included.
    pub(crate) fn for_session(&self, stmt: Arc<StatementContext>) -> Self {
        let system = self.system.read().unwrap_or_else(|e| e.into_inner());
        HsCatalog {
            schema: Arc::new(HsSchema {
                db: self.schema.db.clone(),
                stmt: Some(stmt),
            }),
            system: RwLock::new(system.clone()),
        }
    }
}

impl CatalogProvider for HsCatalog {
    fn schema_names(&self) -> Vec<String> {
        let system = self.system.read().unwrap_or_else(|e| e.into_inner());
        std::iter::once(SCHEMA.to_string())
            .chain(system.keys().cloned())
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA {
            return Some(self.schema.clone() as Arc<dyn SchemaProvider>);
        }
        let system = self.system.read().unwrap_or_else(|e| e.into_inner());
        system.get(name).cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        if name == SCHEMA {
            return Err(DataFusionError::Plan(format!(
                "schema \"{SCHEMA}\" holds the database's tables and cannot be replaced"
            )));
        }
        let mut system = self.system.write().unwrap_or_else(|e| e.into_inner());
        Ok(system.insert(name.to_string(), schema))
    }
}

/// Schema `public`: the storage tables, and the live system views by name (they
/// are not listed, so schema reflection shows only user tables).
#[derive(Debug)]
pub struct HsSchema {
    db: Db,
    /// The session this instance plans for (`None`: the engine's instance).
    stmt: Option<Arc<StatementContext>>,
}

impl HsSchema {
    fn catalog(&self) -> Arc<hindsight_storage::Catalog> {
        match &self.stmt {
            Some(stmt) => stmt.catalog(&self.db),
            None => self.db.catalog(),
        }
    }
}

#[async_trait]
impl SchemaProvider for HsSchema {
    fn table_names(&self) -> Vec<String> {
        let catalog = self.catalog();
        let tables = catalog.tables().map(|t| t.name.clone());
        tables
            .chain(catalog.views().map(|v| v.name.clone()))
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = crate::plan::system::view(name, &self.db) {
            return Ok(Some(view));
        }
        let catalog = self.catalog();
        if let Some(def) = catalog.table(name) {
            return Ok(Some(Arc::new(HsTable::new(
                def.clone(),
                ReadSpec::Current,
                false,
            ))));
        }
        Ok(catalog
            .view(name)
            .map(|v| Arc::new(ListedView::new(v)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        let catalog = self.catalog();
        catalog.table(name).is_some()
            || catalog.view(name).is_some()
            || crate::plan::system::view(name, &self.db).is_some()
    }
}
