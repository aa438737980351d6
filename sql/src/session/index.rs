//! `CREATE [UNIQUE] INDEX [IF NOT EXISTS] [name] ON t [USING btree] (cols)` and
//! `DROP INDEX [IF EXISTS] name [, ...]`.
//!
//! Invariants: Hindsight keeps no secondary index structure, and never accepts an
//! index it would silently ignore. An index is recorded in the catalog (so
//! `pg_indexes`, psql `\di` and ORMs' reflection see it) only when the table's key
//! order serves it: its columns are a prefix of the entity key, or the whole key
//! followed by the event-time column; a UNIQUE one covers exactly the key (unique
//! by construction). Any other column list, method, expression, partial index or
//! INCLUDE list is refused with 0A000 and the reason.

use hindsight_storage::{CatalogOp, IndexDef, relation_key, split_relation_key};
use sqlparser::ast::{CreateIndex, Expr, IndexType, ObjectName};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::plan::names::name_parts;

impl Session {
    pub(super) fn create_index(&mut self, ci: CreateIndex) -> Result<Output> {
        let def = self.table_named(&ci.table_name)?;
        let (schema, table) = split_relation_key(&def.name);
        if let Some(using) = &ci.using
            && !matches!(using, IndexType::BTree)
        {
            return Err(SqlError::unsupported(format!(
                "access method \"{}\" is not supported",
                using.to_string().to_ascii_lowercase()
            ))
            .with_hint("Hindsight's indexes are the table's key order: USING btree"));
        }
        if ci.predicate.is_some() || !ci.include.is_empty() {
            return Err(SqlError::unsupported(
                "partial indexes and INCLUDE columns are not supported",
            ));
        }
        let mut columns = Vec::with_capacity(ci.columns.len());
        let mut names = Vec::with_capacity(ci.columns.len());
        for c in &ci.columns {
            let Expr::Identifier(ident) = &c.column.expr else {
                return Err(SqlError::unsupported(format!(
                    "index expressions are not supported: {}",
                    c.column.expr
                )));
            };
            let col = normalize(ident);
            let i = def.column_index(&col).ok_or_else(|| {
                SqlError::new(
                    ErrorKind::UndefinedColumn,
                    format!("column \"{col}\" does not exist"),
                )
            })?;
            columns.push(i);
            names.push(col);
        }
        if let Err(why) = def.index_shape(&columns, ci.unique) {
            return Err(SqlError::unsupported(format!(
                "cannot create this index on \"{table}\": {why}"
            ))
            .with_hint("index a prefix of the table's PRIMARY KEY (lookups by key are already served by its order)"));
        }
        let bare = match &ci.name {
            Some(n) => match name_parts(n)?.as_slice() {
                [one] => one.clone(),
                _ => {
                    return Err(SqlError::syntax(format!(
                        "index name {n} may not be schema-qualified: an index is created in its table's schema"
                    )));
                }
            },
            None => format!("{table}_{}_idx", names.join("_")),
        };
        let name = relation_key(schema, &bare);
        if ci.if_not_exists && self.catalog().relation_exists(&name) {
            return Ok(Output::command("CREATE INDEX"));
        }
        self.change_catalog(CatalogOp::CreateIndex {
            id: def.id,
            index: IndexDef {
                name,
                columns,
                unique: ci.unique,
            },
        })?;
        Ok(Output::command("CREATE INDEX"))
    }

    pub(super) fn drop_indexes(&mut self, names: &[ObjectName], if_exists: bool) -> Result<Output> {
        for n in names {
            let parts = name_parts(n)?;
            let resolver = self.names();
            let catalog = resolver.catalog();
            let found = resolver.find(&parts, |k| catalog.index(k).is_some());
            match found.and_then(|k| catalog.index(&k).map(|(t, _)| (t.id, k))) {
                Some((id, name)) => self.change_catalog(CatalogOp::DropIndex { id, name })?,
                None if if_exists => {}
                None => return Err(hindsight_storage::Error::NoSuchIndex(parts.join(".")).into()),
            }
        }
        Ok(Output::command("DROP INDEX"))
    }
}
