//! The DataFusion catalog over the storage catalog: database `hindsight`, schema
//! `public`, one table provider per storage table (current-state reads).
//!
//! Invariant: the storage catalog is the only source of truth for user tables; these
//! providers hold no table state of their own, so DDL is visible to the next statement
//! of every session. Other schemas (`pg_catalog`) are registered once per engine and
//! are read-only views derived from the catalog.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use hindsight_storage::Db;

use crate::plan::provider::{HsTable, ReadSpec};

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
            schema: Arc::new(HsSchema { db }),
            system: RwLock::new(BTreeMap::new()),
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
}

#[async_trait]
impl SchemaProvider for HsSchema {
    fn table_names(&self) -> Vec<String> {
        self.db.catalog().tables().map(|t| t.name.clone()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = crate::plan::system::view(name, &self.db) {
            return Ok(Some(view));
        }
        Ok(self.db.catalog().table(name).map(|def| {
            Arc::new(HsTable::new(def.clone(), ReadSpec::Current, false)) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.catalog().table(name).is_some()
            || crate::plan::system::view(name, &self.db).is_some()
    }
}
