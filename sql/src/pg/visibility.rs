//! `pg_table_is_visible(oid)`: whether a relation can be named without its schema,
//! PostgreSQL's rule: its schema is on the search path and no relation of the same
//! name sits in a schema earlier on it (`pg_catalog` comes first, implicitly, then
//! the session's temporary schema, then `search_path`).
//!
//! A function cannot see the session, so before planning each call gets the
//! session's search path as a second, literal argument (`session::set`, with the
//! settings' functions); OIDs are mapped back to relations through the OIDs
//! `pg_class` assigned (`datafusion_pg_catalog`'s shared [`OidCache`]).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_pg_catalog::pg_catalog::{OidCache, OidCacheKey};
use hindsight_storage::{Catalog, Db, relation_key};

/// The name of the function.
pub(crate) const NAME: &str = "pg_table_is_visible";

/// The search path as the function's second argument: schema names, comma-separated.
pub(crate) fn path_argument(temp: Option<&str>, path: &[String]) -> String {
    std::iter::once("pg_catalog")
        .chain(temp)
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

/// `pg_table_is_visible(oid [, search_path])`.
#[derive(Debug)]
pub(crate) struct TableIsVisible {
    signature: Signature,
    db: Db,
    oids: OidCache,
}

impl PartialEq for TableIsVisible {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for TableIsVisible {}

impl std::hash::Hash for TableIsVisible {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        NAME.hash(state);
    }
}

impl TableIsVisible {
    pub(crate) fn udf(db: Db, oids: OidCache) -> ScalarUDF {
        ScalarUDF::from(TableIsVisible {
            signature: Signature::variadic_any(Volatility::Stable),
            db,
            oids,
        })
    }

    fn relations(&self) -> Option<HashMap<i32, (String, String)>> {
        relations_by_oid(&self.oids)
    }
}

/// Relation (schema, name) by OID, as `pg_class` numbered them last. `None` if the
/// OIDs are being renumbered right now.
pub(crate) fn relations_by_oid(oids: &OidCache) -> Option<HashMap<i32, (String, String)>> {
    let cache = oids.try_read().ok()?;
    Some(
        cache
            .iter()
            .filter_map(|(k, oid)| match k {
                OidCacheKey::Table(_, schema, name) => {
                    Some((*oid as i32, (schema.clone(), name.clone())))
                }
                _ => None,
            })
            .collect(),
    )
}

/// Whether relation `name` of `schema` is the first of its name on `path`.
fn visible(catalog: &Catalog, path: &[&str], schema: &str, name: &str) -> bool {
    if schema == "pg_catalog" {
        return true;
    }
    path.iter()
        .find(|s| {
            let key = relation_key(s, name);
            catalog.relation_exists(&key) || crate::pg::indexes::index_exists(catalog, &key)
        })
        .is_some_and(|s| *s == schema)
}

impl ScalarUDFImpl for TableIsVisible {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let path = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(p)))) => p.clone(),
            _ => path_argument(None, &crate::plan::names::default_search_path()),
        };
        let path: Vec<&str> = path.split(',').collect();
        let oids = match args.args.first() {
            Some(v) => v.to_array(args.number_rows)?,
            None => return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None))),
        };
        let oids = cast(&oids, &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let relations = self.relations();
        let catalog = self.db.catalog();
        let out: BooleanArray = (0..oids.len())
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                Some(match relations.as_ref().map(|r| r.get(&oids.value(i))) {
                    Some(Some((schema, name))) => visible(&catalog, &path, schema, name),
                    // not a relation Hindsight numbered (a static system row)
                    Some(None) | None => true,
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}
