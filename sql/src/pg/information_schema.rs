//! `information_schema` as PostgreSQL shows it: DataFusion's own (tables, views,
//! schemata, ...) except `columns`, which lists user tables' and views' columns
//! with PostgreSQL's type names (`bigint`, `timestamp with time zone`, `ARRAY` with
//! `udt_name` `_float4`), 1-based positions and the declared nullability. dbt reads
//! it to learn a relation's columns (and builds DDL from those types), SQL clients
//! to describe tables.
//!
//! Invariant: one session's listing is its own catalog (its open transaction's DDL
//! included), as for every other relation it reads.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{
    CatalogProviderList, SchemaProvider, Session as DfSession, TableProvider,
};
use datafusion::error::Result as DfResult;
use hindsight_storage::{Catalog, DataType, Db, ScalarType, split_relation_key};

use crate::plan::catalog::CATALOG;
use crate::plan::system::ComputedView;

/// The schema's name.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";

/// DataFusion's `information_schema` with PostgreSQL's `columns`.
#[derive(Debug)]
pub(crate) struct InformationSchema {
    inner: InformationSchemaProvider,
    db: Db,
}

impl InformationSchema {
    pub(crate) fn new(list: Arc<dyn CatalogProviderList>, db: Db) -> Self {
        InformationSchema {
            inner: InformationSchemaProvider::new(list),
            db,
        }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("columns") {
            return Ok(Some(Arc::new(columns_view(self.db.clone()))));
        }
        self.inner.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// How PostgreSQL describes one column's type in `information_schema.columns`.
struct TypeInfo {
    /// `data_type` (`ARRAY` for arrays).
    data_type: String,
    /// `udt_name`: the `pg_type` name (`int8`, `_float4`).
    udt_name: String,
    /// (precision, radix, scale) of numbers.
    numeric: Option<(i32, i32, Option<i32>)>,
    datetime_precision: Option<i32>,
    octet_length: Option<i32>,
}

/// `pg_type.typname` of a scalar type (its array type is `_` + this).
fn udt_name(s: ScalarType) -> &'static str {
    match s {
        ScalarType::Bool => "bool",
        ScalarType::Int16 => "int2",
        ScalarType::Int32 => "int4",
        ScalarType::Int64 => "int8",
        ScalarType::Float32 => "float4",
        ScalarType::Float64 => "float8",
        ScalarType::Text => "text",
        ScalarType::Bytes => "bytea",
        ScalarType::Date => "date",
        ScalarType::Timestamp => "timestamp",
        ScalarType::TimestampTz => "timestamptz",
    }
}

fn type_info(t: &DataType) -> TypeInfo {
    let (scalar, list) = match t {
        DataType::Scalar(s) => (*s, false),
        DataType::List(s) => (*s, true),
    };
    if list {
        return TypeInfo {
            data_type: "ARRAY".into(),
            udt_name: format!("_{}", udt_name(scalar)),
            numeric: None,
            datetime_precision: None,
            octet_length: None,
        };
    }
    let numeric = match scalar {
        ScalarType::Int16 => Some((16, 2, Some(0))),
        ScalarType::Int32 => Some((32, 2, Some(0))),
        ScalarType::Int64 => Some((64, 2, Some(0))),
        ScalarType::Float32 => Some((24, 2, None)),
        ScalarType::Float64 => Some((53, 2, None)),
        _ => None,
    };
    let datetime_precision = match scalar {
        ScalarType::Date => Some(0),
        ScalarType::Timestamp | ScalarType::TimestampTz => Some(6),
        _ => None,
    };
    TypeInfo {
        data_type: crate::types::pg_type_name(*t),
        udt_name: udt_name(scalar).to_string(),
        numeric,
        datetime_precision,
        octet_length: (scalar == ScalarType::Text).then_some(1_073_741_824),
    }
}

/// A view column's type as recorded at creation (Arrow's form), as a storage type
/// where there is one.
fn view_column_type(arrow: &str) -> Option<DataType> {
    let t: ArrowType = arrow.parse().ok()?;
    crate::types::storage_type_of_arrow(&t)
}

/// One row of `information_schema.columns`.
struct ColumnRow {
    schema: String,
    table: String,
    column: String,
    position: i32,
    nullable: bool,
    info: Option<TypeInfo>,
}

fn rows(catalog: &Catalog) -> Vec<ColumnRow> {
    let mut out = Vec::new();
    for t in catalog.tables() {
        let (schema, table) = split_relation_key(&t.name);
        for (i, c) in t.columns.iter().enumerate() {
            out.push(ColumnRow {
                schema: schema.to_string(),
                table: table.to_string(),
                column: c.name.clone(),
                position: i as i32 + 1,
                nullable: c.nullable,
                info: Some(type_info(&c.data_type)),
            });
        }
    }
    for v in catalog.views() {
        let (schema, view) = split_relation_key(&v.name);
        for (i, c) in v.columns.iter().enumerate() {
            let ty = v.types.get(i).and_then(|t| view_column_type(t));
            out.push(ColumnRow {
                schema: schema.to_string(),
                table: view.to_string(),
                column: c.clone(),
                position: i as i32 + 1,
                nullable: true,
                info: ty.as_ref().map(type_info),
            });
        }
    }
    out
}

/// `information_schema.columns`.
fn columns_view(db: Db) -> ComputedView {
    let text = |n: &str| Field::new(n, ArrowType::Utf8, true);
    let int = |n: &str| Field::new(n, ArrowType::Int32, true);
    let schema = Arc::new(Schema::new(vec![
        text("table_catalog"),
        text("table_schema"),
        text("table_name"),
        text("column_name"),
        int("ordinal_position"),
        text("column_default"),
        text("is_nullable"),
        text("data_type"),
        int("character_maximum_length"),
        int("character_octet_length"),
        int("numeric_precision"),
        int("numeric_precision_radix"),
        int("numeric_scale"),
        int("datetime_precision"),
        text("interval_type"),
        text("udt_catalog"),
        text("udt_schema"),
        text("udt_name"),
        text("is_identity"),
        text("is_generated"),
        text("is_updatable"),
    ]));
    ComputedView::new(schema, move |state: &dyn DfSession| {
        let catalog = match crate::plan::context::of(state) {
            Ok(stmt) => stmt.catalog(&db),
            Err(_) => db.catalog(),
        };
        let rows = rows(&catalog);
        let s = |f: &dyn Fn(&ColumnRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let i = |f: &dyn Fn(&ColumnRow) -> Option<i32>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<Int32Array>())
        };
        let num = |r: &ColumnRow| r.info.as_ref().and_then(|t| t.numeric);
        vec![
            s(&|_| Some(CATALOG.to_string())),
            s(&|r| Some(r.schema.clone())),
            s(&|r| Some(r.table.clone())),
            s(&|r| Some(r.column.clone())),
            i(&|r| Some(r.position)),
            s(&|_| None),
            s(&|r| Some(if r.nullable { "YES" } else { "NO" }.to_string())),
            s(&|r| {
                Some(
                    r.info
                        .as_ref()
                        .map_or("text".into(), |t| t.data_type.clone()),
                )
            }),
            i(&|_| None),
            i(&|r| r.info.as_ref().and_then(|t| t.octet_length)),
            i(&|r| num(r).map(|n| n.0)),
            i(&|r| num(r).map(|n| n.1)),
            i(&|r| num(r).and_then(|n| n.2)),
            i(&|r| r.info.as_ref().and_then(|t| t.datetime_precision)),
            s(&|_| None),
            s(&|_| Some(CATALOG.to_string())),
            s(&|_| Some("pg_catalog".to_string())),
            s(&|r| {
                Some(
                    r.info
                        .as_ref()
                        .map_or("text".into(), |t| t.udt_name.clone()),
                )
            }),
            s(&|_| Some("NO".to_string())),
            s(&|_| Some("NEVER".to_string())),
            s(&|_| Some("YES".to_string())),
        ]
    })
}
