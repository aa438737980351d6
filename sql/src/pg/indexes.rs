//! Indexes as PostgreSQL's catalog shows them: every keyed table's primary key
//! (index and constraint `<table>_pkey`) and its declared indexes. Feeds
//! `pg_indexes`, `pg_class`/`pg_index`/`pg_constraint` (through the vendored
//! catalog's `CatalogInfo::table_indexes`), and `pg_get_indexdef(oid)` /
//! `pg_get_constraintdef(oid)` (what psql `\d` and ORMs' reflection print).
//!
//! Invariant: one list ([`table_indexes`]) is the source of every one of them, so
//! they agree; OIDs are mapped back to names through the OIDs `pg_class` assigned.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_pg_catalog::pg_catalog::catalog_info::IndexInfo;
use datafusion_pg_catalog::pg_catalog::{OidCache, OidCacheKey};
use hindsight_storage::{Catalog, Db, TableDef, relation_key, split_relation_key};

use crate::plan::system::ComputedView;

/// One index of a table: the key's (`primary`) or a declared one.
pub(crate) struct TableIndex {
    /// Its name in the table's schema.
    pub name: String,
    /// Column positions (0-based), in index order.
    pub columns: Vec<usize>,
    pub unique: bool,
    pub primary: bool,
}

/// The indexes of a table: its key's first, then the declared ones.
pub(crate) fn table_indexes(t: &TableDef) -> Vec<TableIndex> {
    let key = (!t.key.is_empty()).then(|| TableIndex {
        name: format!("{}_pkey", t.bare_name()),
        columns: t.key.clone(),
        unique: true,
        primary: true,
    });
    key.into_iter()
        .chain(t.indexes.iter().map(|ix| TableIndex {
            name: split_relation_key(&ix.name).1.to_string(),
            columns: ix.columns.clone(),
            unique: ix.unique,
            primary: false,
        }))
        .collect()
}

/// True if an index (declared, or a key's `<table>_pkey`) has relation key `key`.
pub(crate) fn index_exists(catalog: &Catalog, key: &str) -> bool {
    if catalog.index(key).is_some() {
        return true;
    }
    key.strip_suffix("_pkey")
        .and_then(|table| catalog.table(table))
        .is_some_and(|t| !t.key.is_empty())
}

/// What `CatalogInfo::table_indexes` reports for table `name` of `schema`.
pub(crate) fn index_infos(catalog: &Catalog, schema: &str, name: &str) -> Vec<IndexInfo> {
    let Some(t) = catalog.table(&relation_key(schema, name)) else {
        return Vec::new();
    };
    table_indexes(t)
        .into_iter()
        .map(|ix| IndexInfo {
            name: ix.name,
            columns: ix.columns.iter().map(|&c| c as i16 + 1).collect(),
            unique: ix.unique,
            primary: ix.primary,
        })
        .collect()
}

/// An identifier as PostgreSQL prints it: bare when it is lowercase, else quoted.
fn quote_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn column_list(t: &TableDef, columns: &[usize]) -> String {
    columns
        .iter()
        .filter_map(|&i| t.columns.get(i).map(|c| quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE [UNIQUE] INDEX name ON schema.table USING btree (cols)`.
fn indexdef(t: &TableDef, ix: &TableIndex) -> String {
    let (schema, table) = split_relation_key(&t.name);
    format!(
        "CREATE {}INDEX {} ON {}.{} USING btree ({})",
        if ix.unique { "UNIQUE " } else { "" },
        quote_ident(&ix.name),
        quote_ident(schema),
        quote_ident(table),
        column_list(t, &ix.columns)
    )
}

/// The `pg_indexes` view.
pub(crate) fn indexes_view(db: Db) -> ComputedView {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("schemaname"),
        text("tablename"),
        text("indexname"),
        text("tablespace"),
        text("indexdef"),
    ]));
    ComputedView::new(schema, move |_| {
        let catalog = db.catalog();
        let mut rows: Vec<[Option<String>; 5]> = Vec::new();
        for t in catalog.tables() {
            let (schema, table) = split_relation_key(&t.name);
            for ix in table_indexes(t) {
                rows.push([
                    Some(schema.to_string()),
                    Some(table.to_string()),
                    Some(ix.name.clone()),
                    None,
                    Some(indexdef(t, &ix)),
                ]);
            }
        }
        (0..5)
            .map(|c| {
                Arc::new(rows.iter().map(|r| r[c].clone()).collect::<StringArray>()) as ArrayRef
            })
            .collect()
    })
}

/// `pg_get_indexdef(oid [, column, pretty])` or `pg_get_constraintdef(oid [, pretty])`.
#[derive(Debug)]
pub(crate) struct Definition {
    signature: Signature,
    constraint: bool,
    db: Db,
    oids: OidCache,
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.constraint == other.constraint
    }
}

impl Eq for Definition {}

impl std::hash::Hash for Definition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.constraint.hash(state);
    }
}

impl Definition {
    pub(crate) fn udfs(db: &Db, oids: &OidCache) -> Vec<ScalarUDF> {
        [false, true]
            .into_iter()
            .map(|constraint| {
                ScalarUDF::from(Definition {
                    signature: Signature::variadic_any(Volatility::Stable),
                    constraint,
                    db: db.clone(),
                    oids: oids.clone(),
                })
            })
            .collect()
    }

    /// The (schema, name) of the index or constraint with this OID.
    fn lookup(&self, oid: i32) -> Option<(String, String)> {
        let cache = self.oids.try_read().ok()?;
        cache.iter().find_map(|(k, v)| match (k, self.constraint) {
            (OidCacheKey::Table(_, s, n), false) | (OidCacheKey::Constraint(_, s, n), true)
                if *v as i32 == oid =>
            {
                Some((s.clone(), n.clone()))
            }
            _ => None,
        })
    }

    /// The definition of index (or key constraint) `name` of `schema`; with
    /// `column` > 0 only that column of the index (PostgreSQL's form).
    fn define(&self, catalog: &Catalog, schema: &str, name: &str, column: i64) -> Option<String> {
        let (t, ix) = catalog
            .tables()
            .filter(|t| split_relation_key(&t.name).0 == schema)
            .find_map(|t| {
                table_indexes(t)
                    .into_iter()
                    .find(|ix| ix.name == name)
                    .map(|ix| (t, ix))
            })?;
        if self.constraint {
            return ix
                .primary
                .then(|| format!("PRIMARY KEY ({})", column_list(t, &ix.columns)));
        }
        match usize::try_from(column) {
            Ok(c) if c > 0 => ix.columns.get(c - 1).map(|&i| column_list(t, &[i])),
            _ => Some(indexdef(t, &ix)),
        }
    }
}

impl ScalarUDFImpl for Definition {
    fn name(&self) -> &str {
        if self.constraint {
            "pg_get_constraintdef"
        } else {
            "pg_get_indexdef"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arg = |i: usize, t: &DataType| -> DfResult<Option<ArrayRef>> {
            match args.args.get(i) {
                Some(v) => Ok(Some(cast(&v.to_array(n)?, t)?)),
                None => Ok(None),
            }
        };
        let Some(oids) = arg(0, &DataType::Int32)? else {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![
                None::<
                    &str,
                >;
                n
            ]))));
        };
        let oids = oids.as_primitive::<Int32Type>();
        let columns = if self.constraint {
            None
        } else {
            arg(1, &DataType::Int64)?
        };
        let columns = columns.as_ref().map(|c| c.as_primitive::<Int64Type>());
        let catalog = self.db.catalog();
        let out: StringArray = (0..oids.len())
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let (schema, name) = self.lookup(oids.value(i))?;
                let column = columns.map_or(0, |c| if c.is_null(i) { 0 } else { c.value(i) });
                self.define(&catalog, &schema, &name, column)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
