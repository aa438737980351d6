//! Relation sizes for `psql`'s `\dt+` / `\di+` and monitoring queries:
//! `pg_table_size(oid)`, `pg_relation_size(oid [, fork])` and
//! `pg_total_relation_size(oid)` answer the bytes of a table's data files on disk
//! (the memtable is not counted until flushed); `pg_indexes_size(oid)` is 0, and
//! so is every size of an index or view: Hindsight's indexes are the tables' key
//! order, not separate files.
//!
//! OIDs are mapped back to relations through the OIDs `pg_class` assigned (the
//! shared OID cache, as `pg_table_is_visible` does); an OID Hindsight did not
//! number (a system relation) has size 0, a NULL OID a NULL size.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion_pg_catalog::pg_catalog::OidCache;
use hindsight_storage::{Db, relation_key};

use super::visibility::relations_by_oid;

/// Which size a function reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    /// The table's data files (tables; 0 for other relations).
    Data,
    /// Separate index files: none.
    Indexes,
}

/// One of the size functions.
#[derive(Debug)]
pub(crate) struct RelationSize {
    name: &'static str,
    measure: Measure,
    signature: Signature,
    db: Db,
    oids: OidCache,
}

impl PartialEq for RelationSize {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RelationSize {}

impl std::hash::Hash for RelationSize {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// Every size function, ready to register.
pub(crate) fn udfs(db: &Db, oids: &OidCache) -> Vec<ScalarUDF> {
    [
        ("pg_table_size", Measure::Data),
        ("pg_relation_size", Measure::Data),
        ("pg_total_relation_size", Measure::Data),
        ("pg_indexes_size", Measure::Indexes),
    ]
    .into_iter()
    .map(|(name, measure)| {
        ScalarUDF::from(RelationSize {
            name,
            measure,
            signature: Signature::variadic_any(Volatility::Volatile),
            db: db.clone(),
            oids: oids.clone(),
        })
    })
    .collect()
}

impl RelationSize {
    /// The size of the relation with `oid`.
    fn size_of(
        &self,
        oid: i32,
        names: &Option<std::collections::HashMap<i32, (String, String)>>,
    ) -> i64 {
        if self.measure == Measure::Indexes {
            return 0;
        }
        let Some(Some((schema, name))) = names.as_ref().map(|n| n.get(&oid)) else {
            return 0;
        };
        match self.db.catalog().table(&relation_key(schema, name)) {
            Some(t) => i64::try_from(self.db.table_bytes(t.id)).unwrap_or(i64::MAX),
            None => 0, // a view or an index
        }
    }
}

impl ScalarUDFImpl for RelationSize {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let oids = match args.args.first() {
            Some(v) => v.to_array(args.number_rows)?,
            None => return Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
        };
        let oids = cast(&oids, &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let names = relations_by_oid(&self.oids);
        let out: Int64Array = (0..oids.len())
            .map(|i| (!oids.is_null(i)).then(|| self.size_of(oids.value(i), &names)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}
