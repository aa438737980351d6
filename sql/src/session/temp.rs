//! Temporary tables: `CREATE TEMP[ORARY] TABLE t (...)` makes a table only its
//! session sees, dropped when the session ends (PostgreSQL's semantics).
//!
//! A temporary table is an ordinary table (same storage, same time travel) in the
//! session's own schema `pg_temp_N`, which the session searches before its
//! `search_path` (so `t` names the temporary table first) and which `pg_temp.t`
//! names explicitly. The schema is created, committed on its own, at the session's
//! first temporary table; when the session ends its relations and the schema are
//! dropped. Invariants: N is unique among the sessions of this process; a
//! `pg_temp_N` left by a crashed process is dropped when the engine starts (and,
//! should a new session draw the same N first, when that session takes it over),
//! so no session ever sees another's temporary tables.

use std::sync::atomic::{AtomicU32, Ordering};

use hindsight_storage::{Catalog, CatalogOp, Db, SchemaDef, WriteBatch, split_relation_key};

use super::state::Session;
use crate::error::Result;
use crate::offload;
use crate::plan::names::TEMP_PREFIX;

/// The numbers of temporary schemas (one per session that makes temporary tables).
#[derive(Debug, Default)]
pub(crate) struct TempIds(AtomicU32);

impl TempIds {
    fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Catalog changes that drop every relation of `schema`, then, with `drop_schema`,
/// the schema itself.
fn clear_schema(catalog: &Catalog, schema: &str, drop_schema: bool) -> WriteBatch {
    let in_schema = |key: &str| split_relation_key(key).0 == schema;
    let mut wb = WriteBatch::new();
    for v in catalog.views().filter(|v| in_schema(&v.name)) {
        wb.extend(&WriteBatch::catalog_only(CatalogOp::DropView {
            name: v.name.clone(),
        }));
    }
    for t in catalog.tables().filter(|t| in_schema(&t.name)) {
        wb.extend(&WriteBatch::catalog_only(CatalogOp::DropTable { id: t.id }));
    }
    if drop_schema {
        wb.extend(&WriteBatch::catalog_only(CatalogOp::DropSchema {
            name: schema.to_string(),
        }));
    }
    wb
}

/// Drop the temporary schemas a previous process left (it crashed, or its sessions
/// could not clean up). Only on a node that takes writes.
pub(crate) fn drop_stale_temp_schemas(db: &Db) -> Result<()> {
    if !db.role().takes_writes() {
        return Ok(());
    }
    let catalog = db.catalog();
    let mut wb = WriteBatch::new();
    for s in catalog
        .schemas()
        .filter(|s| s.name.starts_with(TEMP_PREFIX))
    {
        wb.extend(&clear_schema(&catalog, &s.name, true));
    }
    if !wb.is_empty() {
        tracing::info!("dropping temporary schemas left by an earlier run");
        db.write(wb)?;
    }
    Ok(())
}

impl Session {
    /// The session's temporary schema, made on first use (committed at once, even
    /// inside a transaction block, as its name is the session's for its lifetime).
    pub(super) fn temp_schema(&mut self) -> Result<String> {
        if let Some(s) = self.stmt.temp_schema() {
            return Ok(s);
        }
        let name = format!("{TEMP_PREFIX}{}", self.engine.temp_ids.next());
        let committed = self.engine.db.catalog();
        let wb = match committed.schema(&name) {
            Some(_) => clear_schema(&committed, &name, false),
            None => WriteBatch::catalog_only(CatalogOp::CreateSchema(SchemaDef {
                name: name.clone(),
                owner: None,
            })),
        };
        if !wb.is_empty() {
            offload::blocking(|| self.engine.db.write(wb))?;
        }
        self.stmt.set_temp_schema(Some(name.clone()));
        Ok(name)
    }

    /// Drop the session's temporary relations and schema (the session ends).
    fn drop_temp_schema(&mut self) -> Result<()> {
        let Some(name) = self.stmt.temp_schema() else {
            return Ok(());
        };
        self.stmt.set_temp_schema(None);
        let committed = self.engine.db.catalog();
        if committed.schema(&name).is_none() {
            return Ok(());
        }
        let wb = clear_schema(&committed, &name, true);
        offload::blocking(|| self.engine.db.write(wb))?;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.drop_temp_schema() {
            tracing::warn!(error = %e, "could not drop a session's temporary tables; they go when the server restarts");
        }
    }
}
