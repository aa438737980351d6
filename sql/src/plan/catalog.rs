//! The DataFusion catalog over the storage catalog: database `hindsight`, schema
//! `public` and every created schema, one table provider per storage table
//! (current-state reads).
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
use hindsight_storage::{Db, relation_key, split_relation_key};

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
    /// `public` (the other user schemas are made on demand, with the same db/stmt).
    schema: Arc<HsSchema>,
    /// System schemas registered at engine start (`pg_catalog`).
    system: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl HsCatalog {
    pub fn new(db: Db) -> Self {
        HsCatalog {
            schema: Arc::new(HsSchema {
                db,
                stmt: None,
                name: SCHEMA.to_string(),
            }),
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
                name: SCHEMA.to_string(),
            }),
            system: RwLock::new(system.clone()),
        }
    }
}

impl CatalogProvider for HsCatalog {
    fn schema_names(&self) -> Vec<String> {
        let system = self.system.read().unwrap_or_else(|e| e.into_inner());
        let catalog = self.schema.catalog();
        std::iter::once(SCHEMA.to_string())
            .chain(catalog.schemas().map(|s| s.name.clone()))
            .chain(system.keys().cloned())
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA {
            return Some(self.schema.clone() as Arc<dyn SchemaProvider>);
        }
        let session_temp = self.schema.stmt.as_ref().map(|s| s.temp_schema());
        if let Some(mine) = &session_temp
            && crate::plan::names::foreign_temp(name, mine.as_deref())
        {
            return None; // another session's temporary tables are not ours to read
        }
        if self.schema.catalog().schema(name).is_some() {
            return Some(Arc::new(HsSchema {
                db: self.schema.db.clone(),
                stmt: self.schema.stmt.clone(),
                name: name.to_string(),
            }));
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

/// A user schema: its storage tables and views; in `public` also the live system
/// views by name (they are not listed, so schema reflection shows only user tables).
#[derive(Debug)]
pub struct HsSchema {
    db: Db,
    /// The session this instance plans for (`None`: the engine's instance).
    stmt: Option<Arc<StatementContext>>,
    /// The schema's name.
    name: String,
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
        let keys = catalog.tables().map(|t| t.name.clone());
        keys.chain(catalog.views().map(|v| v.name.clone()))
            .filter_map(|k| match split_relation_key(&k) {
                (s, n) if s == self.name => Some(n.to_string()),
                _ => None,
            })
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.name == SCHEMA
            && let Some(view) = crate::plan::system::view(name, &self.db)
        {
            return Ok(Some(view));
        }
        let name = &relation_key(&self.name, name);
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
        let key = relation_key(&self.name, name);
        catalog.table(&key).is_some()
            || catalog.view(&key).is_some()
            || (self.name == SCHEMA && crate::plan::system::view(name, &self.db).is_some())
    }
}
