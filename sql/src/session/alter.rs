//! DROP TABLE / VIEW / INDEX and ALTER TABLE: ADD COLUMN, SET (ttl, retention),
//! RENAME TO, RENAME COLUMN (`ALTER TABLE v RENAME TO` also renames a view, as in
//! PostgreSQL).
//!
//! Every change is a catalog operation of the session's transaction (or committed
//! at once outside one), so ROLLBACK undoes it. A rename changes names only: files
//! and rows know tables by id and columns by position.
//!
//! Views bind by name when they are used (late binding, as Redshift's late-binding
//! views): renaming a table leaves the views that read its old name reading that
//! name, so the swap `ALTER TABLE t RENAME TO t_old; ALTER TABLE t_new RENAME TO t`
//! (dbt's) keeps them working on the new table. Dropping a relation that views name
//! needs CASCADE (which drops those views too; 2BP01 without), and renaming a
//! column that a view reads is refused, so no DROP or column rename leaves a view
//! broken.

use std::sync::Arc;

use hindsight_storage::{CatalogOp, ColumnDef, ViewDef, relation_key, split_relation_key};
use sqlparser::ast::{
    AlterTable, AlterTableOperation, ColumnOption, ObjectName, ObjectType, RenameTableNameKind,
    Statement,
};

use super::ddl::parse_options;
use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::ident::normalize;
use crate::output::Output;
use crate::plan::names::name_parts;
use crate::plan::views::dependencies;
use crate::types::storage_type;

const ALTER_HINT: &str =
    "supported: ADD COLUMN, SET (ttl = '...', retention = '...'), RENAME TO, RENAME COLUMN";

/// 42809: a DROP or ALTER of the wrong kind of relation.
fn wrong_kind(name: &str, is: &str, hint: &str) -> SqlError {
    SqlError::new(
        ErrorKind::WrongObjectType,
        format!("\"{name}\" is not {is}"),
    )
    .with_hint(hint)
}

impl Session {
    pub(crate) fn drop(&mut self, stmt: Statement) -> Result<Output> {
        let Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } = stmt
        else {
            return Err(SqlError::internal("not a DROP"));
        };
        match object_type {
            ObjectType::Index => self.drop_indexes(&names, if_exists),
            ObjectType::Table => self.drop_relations(&names, false, if_exists, cascade),
            ObjectType::View => self.drop_relations(&names, true, if_exists, cascade),
            ObjectType::Schema => self.drop_schemas(&names, if_exists, cascade),
            other => Err(SqlError::unsupported(format!(
                "DROP {other} is not supported"
            ))),
        }
    }

    /// The views that read relation `name` (a relation key).
    fn dependents(&self, name: &str) -> Result<Vec<Arc<ViewDef>>> {
        let mut out = Vec::new();
        let names = self.names();
        for v in names.catalog().views() {
            if v.name != name && dependencies(v, &names)?.iter().any(|d| d == name) {
                out.push(v.clone());
            }
        }
        Ok(out)
    }

    /// Before relation `name` (a `kind`) is dropped: drop the views that read it
    /// (CASCADE), or refuse with 2BP01 when there are any.
    fn drop_dependents(&mut self, name: &str, kind: &str, cascade: bool) -> Result<()> {
        let deps = self.dependents(name)?;
        if let Some(first) = deps.first()
            && !cascade
        {
            return Err(SqlError::new(
                ErrorKind::DependentObjectsStillExist,
                format!("cannot drop {kind} {name} because other objects depend on it"),
            )
            .with_hint(format!(
                "view {} depends on {kind} {name}; use DROP ... CASCADE to drop the dependent objects too",
                first.name
            )));
        }
        for d in deps {
            self.drop_dependents(&d.name, "view", true)?;
            if self.catalog().view(&d.name).is_some() {
                self.change_catalog(CatalogOp::DropView {
                    name: d.name.clone(),
                })?;
            }
        }
        Ok(())
    }

    /// Drop the table (or view) with relation key `key` and, with `cascade`, the views
    /// that read it (2BP01 if there are some and no `cascade`). A relation already
    /// gone (an earlier cascade dropped it) is skipped.
    pub(super) fn drop_relation_key(&mut self, key: &str, view: bool, cascade: bool) -> Result<()> {
        let catalog = self.catalog();
        let op = match (view, catalog.table(key)) {
            (false, Some(t)) => CatalogOp::DropTable { id: t.id },
            (true, _) if catalog.view(key).is_some() => CatalogOp::DropView {
                name: key.to_string(),
            },
            _ => return Ok(()),
        };
        self.drop_dependents(key, if view { "view" } else { "table" }, cascade)?;
        self.change_catalog(op)
    }

    /// DROP TABLE (`view == false`) or DROP VIEW of each name; dropping the other
    /// kind is 42809, a missing one 42P01 unless IF EXISTS.
    fn drop_relations(
        &mut self,
        names: &[ObjectName],
        view: bool,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Output> {
        let (other, hint) = if view {
            ("a view", "Use DROP TABLE to remove a table.")
        } else {
            ("a table", "Use DROP VIEW to remove a view.")
        };
        for n in names {
            let parts = name_parts(n)?;
            let resolver = self.names();
            let catalog = resolver.catalog();
            let found = resolver.find(&parts, |k| catalog.relation_exists(k));
            let (table, is_view) = match &found {
                Some(k) => (catalog.table(k).is_some(), catalog.view(k).is_some()),
                None => (false, false),
            };
            let name = parts.join(".");
            match (found, view) {
                (Some(key), false) if table => self.drop_relation_key(&key, false, cascade)?,
                (Some(key), true) if is_view => self.drop_relation_key(&key, true, cascade)?,
                (Some(_), _) if table || is_view => return Err(wrong_kind(&name, other, hint)),
                _ if if_exists => continue,
                _ if view => {
                    return Err(SqlError::new(
                        ErrorKind::UndefinedTable,
                        format!("view \"{name}\" does not exist"),
                    ));
                }
                _ => return Err(hindsight_storage::Error::NoSuchTable(name).into()),
            }
        }
        Ok(Output::command(if view {
            "DROP VIEW"
        } else {
            "DROP TABLE"
        }))
    }

    pub(crate) fn alter_table(&mut self, at: AlterTable) -> Result<Output> {
        let parts = name_parts(&at.name)?;
        let resolver = self.names();
        let catalog = resolver.catalog().clone();
        let name = resolver
            .find(&parts, |k| catalog.relation_exists(k))
            .unwrap_or_else(|| parts.join("."));
        if catalog.view(&name).is_some() {
            return self.alter_view(&name, at.operations);
        }
        let id = match catalog.table(&name) {
            Some(d) => d.id,
            None if at.if_exists => return Ok(Output::command("ALTER TABLE")),
            None => return Err(hindsight_storage::Error::NoSuchTable(name).into()),
        };
        let mut current = name;
        for op in at.operations {
            match self.table_change(id, &current, op)? {
                Some(CatalogOp::RenameTable { id, name: to }) => {
                    self.change_catalog(CatalogOp::RenameTable {
                        id,
                        name: to.clone(),
                    })?;
                    current = to;
                }
                Some(change @ CatalogOp::RenameColumn { .. }) => {
                    if let Some(v) = self.dependents(&current)?.first() {
                        return Err(SqlError::unsupported(format!(
                            "cannot rename a column of \"{current}\": view \"{}\" reads the table by column name",
                            v.name
                        ))
                        .with_hint("drop the view, rename the column, then create the view again"));
                    }
                    self.change_catalog(change)?;
                }
                Some(change) => self.change_catalog(change)?,
                None => {}
            }
        }
        Ok(Output::command("ALTER TABLE"))
    }

    /// The catalog change one ALTER TABLE operation makes (`None`: nothing to do).
    fn table_change(
        &self,
        id: hindsight_storage::TableId,
        name: &str,
        op: AlterTableOperation,
    ) -> Result<Option<CatalogOp>> {
        let def = self.table_def(name)?;
        Ok(Some(match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                ..
            } => {
                let cname = normalize(&column_def.name);
                if def.column_index(&cname).is_some() && if_not_exists {
                    return Ok(None);
                }
                let mut col = ColumnDef::new(cname, storage_type(&column_def.data_type)?);
                for o in &column_def.options {
                    match &o.option {
                        ColumnOption::Null => {}
                        ColumnOption::NotNull => col.nullable = false,
                        other => {
                            return Err(SqlError::unsupported(format!(
                                "column option {other} is not supported"
                            )));
                        }
                    }
                }
                if !col.nullable {
                    return Err(SqlError::unsupported(format!(
                        "column \"{}\" added to an existing table must be nullable: older versions have no value",
                        col.name
                    )));
                }
                CatalogOp::AddColumn { id, column: col }
            }
            AlterTableOperation::SetOptionsParens { options } => {
                let parsed = parse_options(&options)?;
                if parsed.event_time.is_some() {
                    return Err(SqlError::unsupported(
                        "the event-time column cannot be changed",
                    ));
                }
                let mut o = def.options.clone();
                if parsed.ttl.is_some() {
                    o.ttl_micros = parsed.ttl;
                }
                if parsed.retention.is_some() {
                    o.retention_micros = parsed.retention;
                }
                CatalogOp::SetOptions { id, options: o }
            }
            AlterTableOperation::RenameTable { table_name } => CatalogOp::RenameTable {
                id,
                name: new_name(&table_name, name)?,
            },
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => CatalogOp::RenameColumn {
                id,
                from: normalize(&old_column_name),
                to: normalize(&new_column_name),
            },
            other => {
                return Err(
                    SqlError::unsupported(format!("ALTER TABLE {other} is not supported"))
                        .with_hint(ALTER_HINT),
                );
            }
        }))
    }

    /// `ALTER TABLE v RENAME TO w` on a view (the only change a view takes).
    fn alter_view(&mut self, name: &str, ops: Vec<AlterTableOperation>) -> Result<Output> {
        for op in ops {
            let AlterTableOperation::RenameTable { table_name } = op else {
                return Err(wrong_kind(name, "a table", "a view can only be renamed"));
            };
            self.change_catalog(CatalogOp::RenameView {
                from: name.to_string(),
                to: new_name(&table_name, name)?,
            })?;
        }
        Ok(Output::command("ALTER TABLE"))
    }
}

/// The key a relation renamed from key `from` takes: the new name stays in its schema.
fn new_name(kind: &RenameTableNameKind, from: &str) -> Result<String> {
    let (RenameTableNameKind::As(n) | RenameTableNameKind::To(n)) = kind;
    let schema = split_relation_key(from).0;
    match name_parts(n)?.as_slice() {
        [bare] => Ok(relation_key(schema, bare)),
        [s, bare] if s == schema => Ok(relation_key(schema, bare)),
        _ => Err(SqlError::syntax(format!(
            "RENAME TO {n}: a relation is renamed within its schema; give the new name without one"
        ))),
    }
}
