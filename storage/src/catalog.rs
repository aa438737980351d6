//! The catalog: table definitions, changed only by catalog operations in the WAL.
//!
//! Invariants: a catalog operation is validated against the current catalog before
//! its batch is written, and applying the same operations in WAL order always gives
//! the same catalog (replay and replicas agree). Table ids are never reused. The
//! manifest stores a JSON snapshot of the catalog as of the WAL position it covers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{ColumnDef, IndexDef, TableDef, TableId, TableOptions};

/// A change to the catalog, carried in a WAL batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CatalogOp {
    CreateTable(TableDef),
    DropTable { id: TableId },
    AddColumn { id: TableId, column: ColumnDef },
    SetOptions { id: TableId, options: TableOptions },
    CreateIndex { id: TableId, index: IndexDef },
    DropIndex { id: TableId, name: String },
}

/// All live tables.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_id: BTreeMap<TableId, Arc<TableDef>>,
    by_name: HashMap<String, TableId>,
    next_id: u32,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    next_table_id: u32,
    tables: Vec<TableDef>,
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

    /// The id the next created table gets.
    pub(crate) fn next_table_id(&self) -> TableId {
        TableId(self.next_id.max(1))
    }

    /// Check that `op` can be applied.
    pub(crate) fn validate(&self, op: &CatalogOp) -> Result<()> {
        match op {
            CatalogOp::CreateTable(def) => {
                def.validate()?;
                // Tables and indexes share one namespace of relation names.
                if self.by_name.contains_key(&def.name) || self.index(&def.name).is_some() {
                    return Err(Error::TableExists(def.name.clone()));
                }
                if def.id.0 < self.next_id || self.by_id.contains_key(&def.id) {
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
                // Tables and indexes share one namespace of relation names.
                if self.by_name.contains_key(&index.name) || self.index(&index.name).is_some() {
                    return Err(Error::TableExists(index.name.clone()));
                }
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
        }
        Ok(())
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

    /// Validate and apply `op`.
    pub(crate) fn apply(&mut self, op: &CatalogOp) -> Result<()> {
        self.validate(op)?;
        match op {
            CatalogOp::CreateTable(def) => {
                self.next_id = def.id.0 + 1;
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
        }
        Ok(())
    }

    /// JSON snapshot for the manifest.
    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        let snap = Snapshot {
            next_table_id: self.next_id,
            tables: self.by_id.values().map(|t| (**t).clone()).collect(),
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
        for t in snap.tables {
            t.validate().map_err(|e| e.to_string())?;
            if c.by_name.insert(t.name.clone(), t.id).is_some() {
                return Err(format!("table name {} appears twice", t.name));
            }
            c.by_id.insert(t.id, Arc::new(t));
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
}
