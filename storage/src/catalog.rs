//! The catalog: table definitions, changed only by catalog operations in the WAL.
//!
//! Invariants: a catalog operation is validated against the current catalog before
//! its batch is written, and applying the same operations in WAL order always gives
//! the same catalog (replay and replicas agree). Table ids are never reused. The
//! manifest stores a JSON snapshot of the catalog as of the WAL position it covers.
//!
//! Schemas (namespaces): relations are keyed by one string, their *relation key*.
//! A relation of schema `public` is keyed by its bare name (as before schemas
//! existed); one of another schema `s` by `s.name` ([`relation_key`]). Schema names
//! and relation names in other schemas never contain `.`, so a key splits one way
//! ([`split_relation_key`]). An index lives in its table's schema. A relation can be
//! created only in a schema that exists; a schema can be dropped only when empty.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{ColumnDef, IndexDef, TableDef, TableId, TableOptions, ViewDef};

/// A change to the catalog, carried in a WAL batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CatalogOp {
    CreateTable(TableDef),
    DropTable {
        id: TableId,
    },
    AddColumn {
        id: TableId,
        column: ColumnDef,
    },
    SetOptions {
        id: TableId,
        options: TableOptions,
    },
    CreateIndex {
        id: TableId,
        index: IndexDef,
    },
    DropIndex {
        id: TableId,
        name: String,
    },
    RenameTable {
        id: TableId,
        name: String,
    },
    RenameColumn {
        id: TableId,
        from: String,
        to: String,
    },
    /// Create a view, or replace the one of the same name when `replace`.
    CreateView {
        view: ViewDef,
        replace: bool,
    },
    DropView {
        name: String,
    },
    RenameView {
        from: String,
        to: String,
    },
    CreateSchema(SchemaDef),
    DropSchema {
        name: String,
    },
}

/// A schema (namespace) other than `public`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDef {
    pub name: String,
    /// The role named by `AUTHORIZATION`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The schema every database has, whose relations are keyed by their bare names.
pub const PUBLIC_SCHEMA: &str = "public";

/// The key of relation `name` in `schema`.
pub fn relation_key(schema: &str, name: &str) -> String {
    if schema == PUBLIC_SCHEMA {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

/// The schema and bare name of a relation key.
pub fn split_relation_key(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap_or((PUBLIC_SCHEMA, key))
}

/// Schemas the server provides itself, which cannot be created.
fn is_system_schema(name: &str) -> bool {
    matches!(name, "pg_catalog" | "information_schema") || name.starts_with("pg_toast")
}

impl CatalogOp {
    /// The table this operation changes, if it names one by id.
    fn table_mut(&mut self) -> Option<&mut TableId> {
        match self {
            CatalogOp::CreateTable(def) => Some(&mut def.id),
            CatalogOp::DropTable { id }
            | CatalogOp::AddColumn { id, .. }
            | CatalogOp::SetOptions { id, .. }
            | CatalogOp::CreateIndex { id, .. }
            | CatalogOp::DropIndex { id, .. }
            | CatalogOp::RenameTable { id, .. }
            | CatalogOp::RenameColumn { id, .. } => Some(id),
            CatalogOp::CreateView { .. }
            | CatalogOp::DropView { .. }
            | CatalogOp::RenameView { .. }
            | CatalogOp::CreateSchema(_)
            | CatalogOp::DropSchema { .. } => None,
        }
    }

    /// Replace table ids found in `map` (provisional ids resolved at commit).
    pub(crate) fn remap(&mut self, map: &[(TableId, TableId)]) {
        if let Some(id) = self.table_mut()
            && let Some((_, to)) = map.iter().find(|(from, _)| from == id)
        {
            *id = *to;
        }
    }
}

/// All live tables and views.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_id: BTreeMap<TableId, Arc<TableDef>>,
    by_name: HashMap<String, TableId>,
    views: BTreeMap<String, Arc<ViewDef>>,
    schemas: BTreeMap<String, SchemaDef>,
    next_id: u32,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_table_id: u32,
    tables: Vec<TableDef>,
    /// Absent while there are none, so older catalogs read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    views: Vec<ViewDef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    schemas: Vec<SchemaDef>,
}

impl Catalog {
    /// A table by name.
    pub fn table(&self, name: &str) -> Option<&Arc<TableDef>> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id))
    }

    /// A table by id.
    pub fn table_by_id(&self, id: TableId) -> Option<&Arc<TableDef>> {
        self.by_id.get(&id)
    }

    /// Every table, by id.
    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableDef>> {
        self.by_id.values()
    }

    /// A view by name.
    pub fn view(&self, name: &str) -> Option<&Arc<ViewDef>> {
        self.views.get(name)
    }

    /// Every view, by name.
    pub fn views(&self) -> impl Iterator<Item = &Arc<ViewDef>> {
        self.views.values()
    }

    /// A schema other than `public` by name.
    pub fn schema(&self, name: &str) -> Option<&SchemaDef> {
        self.schemas.get(name)
    }

    /// Every schema other than `public`, by name.
    pub fn schemas(&self) -> impl Iterator<Item = &SchemaDef> {
        self.schemas.values()
    }

    /// True if `name` is `public` or a created schema.
    pub fn schema_exists(&self, name: &str) -> bool {
        name == PUBLIC_SCHEMA || self.schemas.contains_key(name)
    }

    /// The keys of every table, view and index in schema `name`.
    pub fn relations_in(&self, name: &str) -> Vec<String> {
        let tables = self.by_id.values().flat_map(|t| {
            std::iter::once(t.name.clone()).chain(t.indexes.iter().map(|i| i.name.clone()))
        });
        tables
            .chain(self.views.keys().cloned())
            .filter(|k| split_relation_key(k).0 == name)
            .collect()
    }

    /// The id the next created table gets.
    pub(crate) fn next_table_id(&self) -> TableId {
        TableId(self.next_id.max(1))
    }

    /// True if a table, view or index is called `name`.
    pub fn relation_exists(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
            || self.views.contains_key(name)
            || self.index(name).is_some()
    }

    /// Check that a new relation may take key `name`: free, in a schema that exists.
    fn check_free(&self, name: &str) -> Result<()> {
        if self.relation_exists(name) {
            return Err(Error::TableExists(name.to_string()));
        }
        let (schema, bare) = split_relation_key(name);
        if !self.schema_exists(schema) || bare.contains('.') {
            return Err(Error::NoSuchSchema(schema.to_string()));
        }
        Ok(())
    }

    fn check_schema(&self, op: &CatalogOp) -> Result<()> {
        match op {
            CatalogOp::CreateSchema(def) => {
                if self.schema_exists(&def.name) || is_system_schema(&def.name) {
                    return Err(Error::SchemaExists(def.name.clone()));
                }
                if def.name.is_empty() || def.name.contains('.') {
                    return Err(Error::InvalidArgument(format!(
                        "schema name \"{}\" is not valid: it must be non-empty and hold no '.'",
                        def.name
                    )));
                }
            }
            CatalogOp::DropSchema { name } => {
                if !self.schemas.contains_key(name) {
                    return Err(Error::NoSuchSchema(name.clone()));
                }
                if let Some(first) = self.relations_in(name).into_iter().next() {
                    return Err(Error::SchemaNotEmpty {
                        schema: name.clone(),
                        relation: first,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Check that `op` can be applied to the durable catalog (real table ids only).
    pub(crate) fn validate(&self, op: &CatalogOp) -> Result<()> {
        if let CatalogOp::CreateTable(def) = op
            && (def.id.is_provisional() || def.id.0 < self.next_id)
        {
            return Err(Error::InvalidArgument(format!(
                "table id {} reused or not resolved",
                def.id
            )));
        }
        self.check(op)
    }

    /// Check that `op` can be applied, whatever kind of id a new table has.
    fn check(&self, op: &CatalogOp) -> Result<()> {
        match op {
            CatalogOp::CreateTable(def) => {
                def.validate()?;
                self.check_free(&def.name)?;
                if self.by_id.contains_key(&def.id) {
                    return Err(Error::InvalidArgument(format!(
                        "table id {} reused",
                        def.id
                    )));
                }
            }
            CatalogOp::DropTable { id } => {
                self.existing(*id)?;
            }
            CatalogOp::AddColumn { id, column } => {
                let t = self.existing(*id)?;
                if t.column_index(&column.name).is_some() {
                    return Err(Error::ColumnExists {
                        table: t.name.clone(),
                        column: column.name.clone(),
                    });
                }
                if !column.nullable {
                    return Err(Error::InvalidSchema(format!(
                        "column \"{}\" added to an existing table must be nullable",
                        column.name
                    )));
                }
                let mut probe = (**t).clone();
                probe.columns.push(column.clone());
                probe.validate()?;
            }
            CatalogOp::SetOptions { id, options } => {
                let t = self.existing(*id)?;
                let mut probe = (**t).clone();
                probe.options = options.clone();
                probe.validate()?;
            }
            CatalogOp::CreateIndex { id, index } => {
                let t = self.existing(*id)?;
                self.check_free(&index.name)?;
                let mut probe = (**t).clone();
                probe.indexes.push(index.clone());
                probe.validate()?;
            }
            CatalogOp::DropIndex { id, name } => {
                let t = self.existing(*id)?;
                if !t.indexes.iter().any(|i| &i.name == name) {
                    return Err(Error::NoSuchIndex(name.clone()));
                }
            }
            CatalogOp::RenameTable { id, name } => {
                self.existing(*id)?;
                self.check_free(name)?;
            }
            CatalogOp::RenameColumn { id, from, to } => self.check_column_rename(*id, from, to)?,
            CatalogOp::CreateView { .. }
            | CatalogOp::DropView { .. }
            | CatalogOp::RenameView { .. } => {
                self.check_view(op)?;
            }
            CatalogOp::CreateSchema(_) | CatalogOp::DropSchema { .. } => self.check_schema(op)?,
        }
        Ok(())
    }

    fn check_column_rename(&self, id: TableId, from: &str, to: &str) -> Result<()> {
        let t = self.existing(id)?;
        let at = t.column_index(from).ok_or_else(|| Error::NoSuchColumn {
            table: t.name.clone(),
            column: from.to_string(),
        })?;
        if t.column_index(to).is_some() {
            return Err(Error::ColumnExists {
                table: t.name.clone(),
                column: to.to_string(),
            });
        }
        let mut probe = (**t).clone();
        probe.columns[at].name = to.to_string();
        probe.validate()
    }

    fn check_view(&self, op: &CatalogOp) -> Result<()> {
        match op {
            CatalogOp::CreateView { view, replace }
                if !(*replace && self.views.contains_key(&view.name)) =>
            {
                self.check_free(&view.name)?;
            }
            CatalogOp::DropView { name } => {
                self.existing_view(name)?;
            }
            CatalogOp::RenameView { from, to } => {
                self.existing_view(from)?;
                self.check_free(to)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn existing_view(&self, name: &str) -> Result<&Arc<ViewDef>> {
        self.views
            .get(name)
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The table and declaration of the index named `name`.
    pub fn index(&self, name: &str) -> Option<(&Arc<TableDef>, &IndexDef)> {
        self.by_id
            .values()
            .find_map(|t| t.indexes.iter().find(|i| i.name == name).map(|i| (t, i)))
    }

    fn existing(&self, id: TableId) -> Result<&Arc<TableDef>> {
        self.by_id
            .get(&id)
            .ok_or_else(|| Error::NoSuchTable(format!("#{id}")))
    }

    /// Validate and apply `op` to the durable catalog.
    pub(crate) fn apply(&mut self, op: &CatalogOp) -> Result<()> {
        self.validate(op)?;
        self.apply_checked(op);
        Ok(())
    }

    /// This catalog with the uncommitted changes `ops` applied (a transaction's view
    /// of the catalog; new tables keep their provisional ids).
    pub fn with_pending(&self, ops: &[CatalogOp]) -> Result<Catalog> {
        let mut c = self.clone();
        for op in ops {
            c.check(op)?;
            c.apply_checked(op);
        }
        Ok(c)
    }

    fn apply_checked(&mut self, op: &CatalogOp) {
        match op {
            CatalogOp::CreateTable(def) => {
                if !def.id.is_provisional() {
                    self.next_id = def.id.0 + 1;
                }
                self.by_name.insert(def.name.clone(), def.id);
                self.by_id.insert(def.id, Arc::new(def.clone()));
            }
            CatalogOp::DropTable { id } => {
                if let Some(t) = self.by_id.remove(id) {
                    self.by_name.remove(&t.name);
                }
            }
            CatalogOp::AddColumn { id, column } => {
                if let Some(t) = self.by_id.get_mut(id) {
                    Arc::make_mut(t).columns.push(column.clone());
                }
            }
            CatalogOp::SetOptions { id, options } => {
                if let Some(t) = self.by_id.get_mut(id) {
                    Arc::make_mut(t).options = options.clone();
                }
            }
            CatalogOp::CreateIndex { id, index } => {
                if let Some(t) = self.by_id.get_mut(id) {
                    Arc::make_mut(t).indexes.push(index.clone());
                }
            }
            CatalogOp::DropIndex { id, name } => {
                if let Some(t) = self.by_id.get_mut(id) {
                    Arc::make_mut(t).indexes.retain(|i| &i.name != name);
                }
            }
            CatalogOp::RenameTable { id, name } => {
                if let Some(t) = self.by_id.get_mut(id) {
                    self.by_name.remove(&t.name);
                    Arc::make_mut(t).name = name.clone();
                    self.by_name.insert(name.clone(), *id);
                }
            }
            CatalogOp::RenameColumn { id, from, to } => {
                if let Some(t) = self.by_id.get_mut(id)
                    && let Some(at) = t.column_index(from)
                {
                    Arc::make_mut(t).columns[at].name = to.clone();
                }
            }
            CatalogOp::CreateView { view, .. } => {
                self.views.insert(view.name.clone(), Arc::new(view.clone()));
            }
            CatalogOp::DropView { name } => {
                self.views.remove(name);
            }
            CatalogOp::RenameView { from, to } => {
                if let Some(v) = self.views.remove(from) {
                    let mut v = (*v).clone();
                    v.name = to.clone();
                    self.views.insert(to.clone(), Arc::new(v));
                }
            }
            CatalogOp::CreateSchema(def) => {
                self.schemas.insert(def.name.clone(), def.clone());
            }
            CatalogOp::DropSchema { name } => {
                self.schemas.remove(name);
            }
        }
    }

    /// Replace the provisional ids of the tables `batch` creates with the next real
    /// ids, check every change against this catalog in order, and check that every
    /// row goes to a table that exists (or is dropped by the same batch, whose rows
    /// are then skipped). Returns the id map (empty when nothing was renumbered).
    pub(crate) fn resolve(
        &self,
        ops: &mut [CatalogOp],
    ) -> Result<(Catalog, Vec<(TableId, TableId)>)> {
        let mut scratch = self.clone();
        let mut map = Vec::new();
        for op in ops.iter_mut() {
            if let CatalogOp::CreateTable(def) = op
                && def.id.is_provisional()
            {
                let real = scratch.next_table_id();
                map.push((def.id, real));
            }
            op.remap(&map);
            scratch.apply(op)?;
        }
        Ok((scratch, map))
    }

    /// JSON snapshot for the manifest.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        let snap = Snapshot {
            next_table_id: self.next_id,
            tables: self.by_id.values().map(|t| (**t).clone()).collect(),
            views: self.views.values().map(|v| (**v).clone()).collect(),
            schemas: self.schemas.values().cloned().collect(),
        };
        serde_json::to_vec(&snap).map_err(|e| Error::encode("the catalog snapshot", e))
    }

    /// Parse a snapshot written by [`Catalog::to_json`].
    pub(crate) fn from_json(bytes: &[u8]) -> std::result::Result<Catalog, String> {
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut c = Catalog {
            next_id: snap.next_table_id,
            ..Catalog::default()
        };
        for d in snap.schemas {
            c.schemas.insert(d.name.clone(), d);
        }
        for t in snap.tables {
            t.validate().map_err(|e| e.to_string())?;
            if c.by_name.insert(t.name.clone(), t.id).is_some() {
                return Err(format!("table name {} appears twice", t.name));
            }
            c.by_id.insert(t.id, Arc::new(t));
        }
        for v in snap.views {
            if c.relation_exists(&v.name) {
                return Err(format!("relation name {} appears twice", v.name));
            }
            c.views.insert(v.name.clone(), Arc::new(v));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DataType, ScalarType};

    fn def(id: u32, name: &str) -> TableDef {
        let mut d = TableDef::new(
            name,
            vec![
                ColumnDef::new("id", DataType::Scalar(ScalarType::Int64)).not_null(),
                ColumnDef::new("x", DataType::Scalar(ScalarType::Float64)),
            ],
            vec![0],
            None,
            TableOptions::default(),
        );
        d.id = TableId(id);
        d
    }

    #[test]
    fn create_drop_and_add_column_apply_in_order() {
        let mut c = Catalog::default();
        c.apply(&CatalogOp::CreateTable(def(1, "t"))).unwrap();
        assert!(matches!(
            c.apply(&CatalogOp::CreateTable(def(2, "t"))),
            Err(Error::TableExists(_))
        ));
        c.apply(&CatalogOp::AddColumn {
            id: TableId(1),
            column: ColumnDef::new("y", DataType::List(ScalarType::Float32)),
        })
        .unwrap();
        assert_eq!(c.table("t").unwrap().columns.len(), 3);
        c.apply(&CatalogOp::DropTable { id: TableId(1) }).unwrap();
        assert!(c.table("t").is_none());
        // ids are never reused, even after a drop
        assert!(c.apply(&CatalogOp::CreateTable(def(1, "t"))).is_err());
        c.apply(&CatalogOp::CreateTable(def(2, "t"))).unwrap();
    }

    #[test]
    fn snapshot_round_trips() {
        let mut c = Catalog::default();
        c.apply(&CatalogOp::CreateTable(def(1, "a"))).unwrap();
        c.apply(&CatalogOp::CreateTable(def(5, "b"))).unwrap();
        let back = Catalog::from_json(&c.to_json().unwrap()).unwrap();
        assert_eq!(back.table("b").unwrap().id, TableId(5));
        assert_eq!(back.next_table_id(), TableId(6));
        assert!(Catalog::from_json(b"{not json").is_err());
    }

    #[test]
    fn indexes_share_the_relation_namespace_and_round_trip() {
        let mut c = Catalog::default();
        c.apply(&CatalogOp::CreateTable(def(1, "t"))).unwrap();
        let before = c.to_json().unwrap();
        // A table without indexes writes no "indexes" field: older catalogs and
        // newer ones without indexes are byte-identical.
        assert!(!String::from_utf8_lossy(&before).contains("indexes"));
        let index = |name: &str, columns: Vec<usize>, unique: bool| CatalogOp::CreateIndex {
            id: TableId(1),
            index: IndexDef {
                name: name.into(),
                columns,
                unique,
            },
        };
        c.apply(&index("t_id", vec![0], true)).unwrap();
        assert!(matches!(
            c.apply(&index("t_id", vec![0], false)),
            Err(Error::TableExists(_))
        ));
        assert!(matches!(
            c.apply(&index("t", vec![0], false)),
            Err(Error::TableExists(_))
        ));
        // Not a key prefix: refused, never recorded and ignored.
        assert!(matches!(
            c.apply(&index("t_x", vec![1], false)),
            Err(Error::InvalidSchema(_))
        ));
        let back = Catalog::from_json(&c.to_json().unwrap()).unwrap();
        assert_eq!(
            back.index("t_id").map(|(t, i)| (t.id, i.unique)),
            Some((TableId(1), true))
        );
        assert!(matches!(
            c.apply(&CatalogOp::DropIndex {
                id: TableId(1),
                name: "nope".into()
            }),
            Err(Error::NoSuchIndex(_))
        ));
        c.apply(&CatalogOp::DropIndex {
            id: TableId(1),
            name: "t_id".into(),
        })
        .unwrap();
        assert!(c.index("t_id").is_none());
        assert_eq!(c.to_json().unwrap(), before);
    }

    #[test]
    fn views_and_renames_share_the_namespace_and_round_trip() {
        let mut c = Catalog::default();
        c.apply(&CatalogOp::CreateTable(def(1, "t"))).unwrap();
        let before = c.to_json().unwrap();
        assert!(!String::from_utf8_lossy(&before).contains("views"));
        let view = |name: &str, sql: &str| ViewDef {
            name: name.into(),
            sql: sql.into(),
            columns: vec!["id".into()],
            types: vec!["Int64".into()],
        };
        let create = |v: ViewDef, replace| CatalogOp::CreateView { view: v, replace };
        c.apply(&create(view("v", "SELECT id FROM t"), false))
            .unwrap();
        assert!(matches!(
            c.apply(&create(view("t", "SELECT 1"), true)),
            Err(Error::TableExists(_))
        ));
        c.apply(&create(view("v", "SELECT id FROM t WHERE id > 1"), true))
            .unwrap();
        assert!(matches!(
            c.apply(&CatalogOp::RenameTable {
                id: TableId(1),
                name: "v".into()
            }),
            Err(Error::TableExists(_))
        ));
        c.apply(&CatalogOp::RenameTable {
            id: TableId(1),
            name: "t2".into(),
        })
        .unwrap();
        c.apply(&CatalogOp::RenameColumn {
            id: TableId(1),
            from: "x".into(),
            to: "y".into(),
        })
        .unwrap();
        c.apply(&CatalogOp::RenameView {
            from: "v".into(),
            to: "w".into(),
        })
        .unwrap();
        let back = Catalog::from_json(&c.to_json().unwrap()).unwrap();
        assert_eq!(back.view("w").unwrap().sql, "SELECT id FROM t WHERE id > 1");
        assert!(back.view("v").is_none() && back.table("t").is_none());
        assert_eq!(back.table("t2").unwrap().columns[1].name, "y");
        c.apply(&CatalogOp::DropView { name: "w".into() }).unwrap();
        assert!(matches!(
            c.apply(&CatalogOp::DropView { name: "w".into() }),
            Err(Error::NoSuchTable(_))
        ));
    }
}
