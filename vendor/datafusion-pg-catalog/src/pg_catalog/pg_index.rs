//! `pg_index` and `pg_constraint` over the indexes [`CatalogInfo::table_indexes`]
//! reports: one `pg_index` row per index, one `pg_constraint` row (`contype = 'p'`)
//! per primary key. OIDs come from the shared cache ([`resolve_index_oids`]), so they
//! join with `pg_class`. (Hindsight addition; the release served both empty.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int16Builder, Int32Array, ListBuilder, PrimitiveBuilder,
    RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Int16Type, Int32Type, Schema, SchemaRef,
};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use postgres_types::Oid;
use tokio::sync::RwLock;

use super::{OidCacheKey, ResolvedIndex, oid_field, resolve_index_oids, resolve_oid};
use crate::pg_catalog::catalog_info::CatalogInfo;

/// Which of the two catalog tables a [`PgIndexTable`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexCatalog {
    Index,
    Constraint,
}

/// One index with its table and namespace OIDs.
struct Row {
    table: Oid,
    namespace: Oid,
    index: ResolvedIndex,
}

#[derive(Debug, Clone)]
pub(crate) struct PgIndexTable<C> {
    schema: SchemaRef,
    which: IndexCatalog,
    catalog_list: C,
    oid_counter: Arc<AtomicU32>,
    oid_cache: Arc<RwLock<HashMap<OidCacheKey, Oid>>>,
}

fn int2_list(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Int16, true))),
        true,
    )
}

fn oid_list(name: &str) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
        true,
    )
}

/// Marks a list column as PostgreSQL's `int2vector` / `oidvector` (field metadata
/// `pg.type`; sent as that type, text form `1 2`).
fn vector(field: Field, pg_type: &str) -> Field {
    field.with_metadata(HashMap::from([("pg.type".to_string(), pg_type.to_string())]))
}

/// One list of `len(columns)` zeros per row (default collation, opclass, options).
fn zero_lists<T: ArrowPrimitiveType>(rows: &[Row]) -> ArrayRef
where
    T::Native: Default,
{
    let mut b = ListBuilder::new(PrimitiveBuilder::<T>::new());
    for r in rows {
        for _ in &r.index.info.columns {
            b.values().append_value(T::Native::default());
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn index_schema() -> SchemaRef {
    let b = |n: &str| Field::new(n, DataType::Boolean, false);
    let mut fields = vec![
        oid_field::oid_field("indexrelid", oid_field::kind::OID, false),
        oid_field::oid_field("indrelid", oid_field::kind::OID, false),
        Field::new("indnatts", DataType::Int16, false),
        Field::new("indnkeyatts", DataType::Int16, false),
    ];
    for n in [
        "indisunique",
        "indnullsnotdistinct",
        "indisprimary",
        "indisexclusion",
        "indimmediate",
        "indisclustered",
        "indisvalid",
        "indcheckxmin",
        "indisready",
        "indislive",
        "indisreplident",
    ] {
        fields.push(b(n));
    }
    fields.push(vector(int2_list("indkey"), "int2vector"));
    fields.push(vector(oid_list("indcollation"), "oidvector"));
    fields.push(vector(oid_list("indclass"), "oidvector"));
    fields.push(vector(int2_list("indoption"), "int2vector"));
    for n in ["indexprs", "indpred"] {
        fields.push(Field::new(n, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

fn constraint_schema() -> SchemaRef {
    let oid = |n: &str| oid_field::oid_field(n, oid_field::kind::OID, false);
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let b = |n: &str| Field::new(n, DataType::Boolean, false);
    Arc::new(Schema::new(vec![
        oid("oid"),
        Field::new("conname", DataType::Utf8, false),
        oid("connamespace"),
        Field::new("contype", DataType::Utf8, false),
        b("condeferrable"),
        b("condeferred"),
        b("convalidated"),
        oid("conrelid"),
        oid("contypid"),
        oid("conindid"),
        oid("conparentid"),
        oid("confrelid"),
        text("confupdtype"),
        text("confdeltype"),
        text("confmatchtype"),
        b("conislocal"),
        Field::new("coninhcount", DataType::Int16, false),
        b("connoinherit"),
        int2_list("conkey"),
        int2_list("confkey"),
        text("conpfeqop"),
        text("conppeqop"),
        text("conffeqop"),
        text("confdelsetcols"),
        text("conexclop"),
        text("conbin"),
    ]))
}

fn int2_lists<'a>(rows: impl Iterator<Item = Option<&'a [i16]>>) -> ArrayRef {
    let mut b = ListBuilder::new(Int16Builder::new());
    for r in rows {
        match r {
            Some(cols) => {
                for c in cols {
                    b.values().append_value(*c);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

impl<C: CatalogInfo> PgIndexTable<C> {
    pub(crate) fn new(
        which: IndexCatalog,
        catalog_list: C,
        oid_counter: Arc<AtomicU32>,
        oid_cache: Arc<RwLock<HashMap<OidCacheKey, Oid>>>,
    ) -> Self {
        let schema = match which {
            IndexCatalog::Index => index_schema(),
            IndexCatalog::Constraint => constraint_schema(),
        };
        Self {
            schema,
            which,
            catalog_list,
            oid_counter,
            oid_cache,
        }
    }

    /// Every table's indexes, their OIDs recorded in the shared cache.
    async fn rows(&self) -> Result<Vec<Row>> {
        let mut oid_cache = self.oid_cache.write().await;
        let mut seen = HashMap::new();
        let mut rows = Vec::new();
        for catalog in self.catalog_list.catalog_names().await? {
            let Some(schemas) = self.catalog_list.schema_names(&catalog).await? else {
                continue;
            };
            for schema in schemas {
                let key = OidCacheKey::Schema(catalog.clone(), schema.clone());
                let namespace = resolve_oid(&key, &oid_cache, &self.oid_counter);
                seen.insert(key, namespace);
                let Some(tables) = self.catalog_list.table_names(&catalog, &schema).await? else {
                    continue;
                };
                for table in tables {
                    let indexes = resolve_index_oids(
                        &self.catalog_list,
                        (&catalog, &schema, &table),
                        &oid_cache,
                        &self.oid_counter,
                        &mut seen,
                    )
                    .await?;
                    if indexes.is_empty() {
                        continue;
                    }
                    let key = OidCacheKey::Table(catalog.clone(), schema.clone(), table.clone());
                    let table = resolve_oid(&key, &oid_cache, &self.oid_counter);
                    seen.insert(key, table);
                    rows.extend(indexes.into_iter().map(|index| Row {
                        table,
                        namespace,
                        index,
                    }));
                }
            }
        }
        oid_cache.extend(seen);
        Ok(rows)
    }

    fn index_batch(&self, rows: &[Row]) -> Result<RecordBatch> {
        let n = rows.len();
        let oids = |f: &dyn Fn(&Row) -> Oid| -> ArrayRef {
            Arc::new(rows.iter().map(|r| f(r) as i32).collect::<Int32Array>())
        };
        let natts: ArrayRef = Arc::new(
            rows.iter()
                .map(|r| r.index.info.columns.len() as i16)
                .collect::<Int16Array>(),
        );
        let flag = |f: &dyn Fn(&Row) -> bool| -> ArrayRef {
            Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
        };
        let null_text: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>; n]));
        let columns = vec![
            oids(&|r| r.index.oid),
            oids(&|r| r.table),
            natts.clone(),
            natts,
            flag(&|r| r.index.info.unique),
            flag(&|_| false),
            flag(&|r| r.index.info.primary),
            flag(&|_| false),
            flag(&|_| true),
            flag(&|_| false),
            flag(&|_| true),
            flag(&|_| false),
            flag(&|_| true),
            flag(&|_| true),
            flag(&|_| false),
            int2_lists(rows.iter().map(|r| Some(r.index.info.columns.as_slice()))),
            zero_lists::<Int32Type>(rows),
            zero_lists::<Int32Type>(rows),
            zero_lists::<Int16Type>(rows),
            null_text.clone(),
            null_text,
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    fn constraint_batch(&self, rows: &[Row]) -> Result<RecordBatch> {
        let keys: Vec<&Row> = rows.iter().filter(|r| r.index.constraint.is_some()).collect();
        let n = keys.len();
        let oids = |f: &dyn Fn(&Row) -> Oid| -> ArrayRef {
            Arc::new(keys.iter().map(|r| f(r) as i32).collect::<Int32Array>())
        };
        let text = |v: Option<&str>| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
        let flag = |v: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![v; n])) };
        let columns = vec![
            oids(&|r| r.index.constraint.unwrap_or(0)),
            Arc::new(
                keys.iter()
                    .map(|r| Some(r.index.info.name.clone()))
                    .collect::<StringArray>(),
            ) as ArrayRef,
            oids(&|r| r.namespace),
            text(Some("p")),
            flag(false),
            flag(false),
            flag(true),
            oids(&|r| r.table),
            oids(&|_| 0),
            oids(&|r| r.index.oid),
            oids(&|_| 0),
            oids(&|_| 0),
            text(Some(" ")),
            text(Some(" ")),
            text(Some(" ")),
            flag(true),
            Arc::new(Int16Array::from(vec![0i16; n])),
            flag(true),
            int2_lists(keys.iter().map(|r| Some(r.index.info.columns.as_slice()))),
            int2_lists(keys.iter().map(|_| None)),
            text(None),
            text(None),
            text(None),
            text(None),
            text(None),
            text(None),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    async fn get_data(this: Self) -> Result<RecordBatch> {
        let rows = this.rows().await?;
        match this.which {
            IndexCatalog::Index => this.index_batch(&rows),
            IndexCatalog::Constraint => this.constraint_batch(&rows),
        }
    }
}

impl<C: CatalogInfo> PartitionStream for PgIndexTable<C> {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let this = self.clone();
        Box::pin(RecordBatchStreamAdapter::new(
            this.schema.clone(),
            futures::stream::once(async move { PgIndexTable::get_data(this).await }),
        ))
    }
}
