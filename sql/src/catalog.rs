//! The DataFusion catalog over the storage catalog: database `hindsight`, schema
//! `public`, one table provider per storage table (current-state reads).
//!
//! Invariant: the storage catalog is the only source of truth; these providers hold
//! no state of their own, so DDL is visible to the next statement of every session.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;
use hindsight_storage::Db;

use crate::provider::{HsTable, ReadSpec};

/// The catalog name clients see (`current_database()`).
pub const CATALOG: &str = "hindsight";
/// The schema name clients see (`current_schema()`).
pub const SCHEMA: &str = "public";

/// Database `hindsight`.
#[derive(Debug)]
pub struct HsCatalog {
    schema: Arc<HsSchema>,
}

impl HsCatalog {
    pub fn new(db: Db) -> Self {
        HsCatalog {
            schema: Arc::new(HsSchema { db }),
        }
    }
}

impl CatalogProvider for HsCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA).then(|| self.schema.clone() as Arc<dyn SchemaProvider>)
    }
}

/// Schema `public`: the storage tables.
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
        Ok(self.db.catalog().table(name).map(|def| {
            Arc::new(HsTable::new(def.clone(), ReadSpec::Current, false)) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.catalog().table(name).is_some()
    }
}
