//! PostgreSQL functions clients call that DataFusion and `datafusion-pg-catalog` do
//! not provide (or provide in a form drivers cannot parse): `version()`,
//! `to_regtype(text)`, `pg_get_serial_sequence(table, column)`,
//! `pg_collation_is_visible(oid)`, `pg_size_pretty(bigint)`, `pg_is_in_recovery()`,
//! `json_build_object(k, v, ...)` and the comment lookups (`obj_description` and
//! siblings, always NULL).
//!
//! Invariant: each answers what PostgreSQL would for Hindsight's database (for example
//! `pg_get_serial_sequence` is NULL because no column owns a sequence).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int32Array, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};

use hindsight_storage::Db;

use crate::settings::DEFAULT_SETTINGS;

/// Every function of this module, ready to register; `pg_type` is PostgreSQL's type
/// catalog (for `to_regtype`).
pub(crate) fn functions(pg_type: &[RecordBatch], db: &Db) -> Vec<ScalarUDF> {
    vec![
        version_udf(),
        in_recovery_udf(db.clone()),
        to_regtype_udf(type_oids(pg_type)),
        no_serial_sequence_udf(),
        collation_is_visible_udf(),
        size_pretty_udf(),
        ScalarUDF::from(JsonBuildObject::new()),
        ScalarUDF::from(PgTypeof::new()),
        quote_literal_udf("quote_literal"),
        quote_literal_udf("quote_nullable"),
        super::like::like_escape_udf(),
        ScalarUDF::from(NoDescription::new("obj_description")),
        ScalarUDF::from(NoDescription::new("col_description")),
        ScalarUDF::from(NoDescription::new("shobj_description")),
    ]
}

/// `obj_description(oid [, catalog])`, `col_description(oid, column)`,
/// `shobj_description(oid, catalog)`: NULL, since Hindsight stores no comments
/// (`COMMENT ON` is not supported); psql's `\dt+` and `\d+` show an empty
/// Description column.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoDescription {
    name: &'static str,
    signature: Signature,
}

impl NoDescription {
    fn new(name: &'static str) -> Self {
        NoDescription {
            name,
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for NoDescription {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))
    }
}

/// `pg_typeof(any)`: the name of its argument's type, as PostgreSQL spells it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl PgTypeof {
    fn new() -> Self {
        PgTypeof {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ty = args
            .args
            .first()
            .map(|a| crate::types::arrow_pg_type_name(&a.data_type()))
            .unwrap_or_else(|| "unknown".to_string());
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(ty))))
    }
}

/// PostgreSQL's `quote_literal(text)`: the text as a string literal, quotes
/// doubled, and with backslashes doubled in an `E'...'` literal when it has any.
fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `quote_literal` (NULL for NULL) or `quote_nullable` (the word NULL for NULL).
fn quote_literal_udf(name: &'static str) -> ScalarUDF {
    let nullable = name == "quote_nullable";
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let texts = arrays
                .first()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| DataFusionError::Plan(format!("{name} expects text")))?;
            let out: StringArray = texts
                .iter()
                .map(|v| match v {
                    Some(s) => Some(quote_literal(s)),
                    None if nullable => Some("NULL".to_string()),
                    None => None,
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `version()` in the form drivers parse (`PostgreSQL <major>.<minor> ...`).
pub fn version_string() -> String {
    let server_version = DEFAULT_SETTINGS
        .iter()
        .find(|(k, _)| *k == "server_version")
        .map(|(_, v)| *v)
        .unwrap_or("16.0");
    let number = server_version.split_whitespace().next().unwrap_or("16.0");
    format!(
        "PostgreSQL {number} (Hindsight {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// SQL spellings of types that are not their `pg_type.typname`.
const TYPE_ALIASES: &[(&str, &str)] = &[
    ("integer", "int4"),
    ("int", "int4"),
    ("bigint", "int8"),
    ("smallint", "int2"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("float", "float8"),
    ("boolean", "bool"),
    ("decimal", "numeric"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("char", "bpchar"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("time without time zone", "time"),
    ("time with time zone", "timetz"),
];

/// `typname -> oid` of PostgreSQL's `pg_type`.
fn type_oids(pg_type: &[RecordBatch]) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for b in pg_type {
        let (Some(names), Some(oids)) = (b.column_by_name("typname"), b.column_by_name("oid"))
        else {
            continue;
        };
        let (Some(names), Some(oids)) = (
            names.as_any().downcast_ref::<StringArray>(),
            oids.as_any().downcast_ref::<Int32Array>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            out.insert(names.value(i).to_string(), oids.value(i));
        }
    }
    out
}

/// The oid of a type name as `to_regtype` resolves it: SQL spellings, an optional
/// `pg_catalog.` prefix, `[]` for arrays, type modifiers ignored; unknown -> `None`.
fn resolve_type(oids: &HashMap<String, i32>, name: &str) -> Option<i32> {
    let name = name.trim();
    let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.to_string(),
        None => name.to_ascii_lowercase(),
    };
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let (base, array) = match name.strip_suffix("[]") {
        Some(b) => (b.trim_end(), true),
        None => (name, false),
    };
    let base = base.split('(').next().unwrap_or(base).trim();
    let typname = TYPE_ALIASES
        .iter()
        .find(|(alias, _)| *alias == base)
        .map_or(base, |(_, t)| *t);
    if array {
        oids.get(&format!("_{typname}")).copied()
    } else {
        oids.get(typname).copied()
    }
}

/// `to_regtype(text)`: the type's oid, or NULL when no such type exists.
fn to_regtype_udf(oids: HashMap<String, i32>) -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays
                .first()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| DataFusionError::Plan("to_regtype expects text".into()))?;
            let out: Int32Array = names
                .iter()
                .map(|n| n.and_then(|n| resolve_type(&oids, n)))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `pg_get_serial_sequence(table, column)`: Hindsight has no sequences, so no column
/// owns one: always NULL (what PostgreSQL answers for a column without a sequence).
fn no_serial_sequence_udf() -> ScalarUDF {
    create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    )
}

/// `pg_collation_is_visible(oid)`: every collation lives in `pg_catalog`, which is
/// always on the search path, so every collation is visible.
fn collation_is_visible_udf() -> ScalarUDF {
    create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let out: datafusion::arrow::array::BooleanArray = match arrays.first() {
                Some(a) => (0..a.len())
                    .map(|i| a.is_valid(i).then_some(true))
                    .collect(),
                None => vec![Some(true)].into_iter().collect(),
            };
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, GB, TB, PB, each
/// rounded half away from zero, switching unit at 10 (rounded) of the next.
fn size_pretty(bytes: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if bytes.abs() < LIMIT {
        return format!("{bytes} bytes");
    }
    // Division, not shifts, so negative sizes round like positive ones (as PostgreSQL).
    let mut size = bytes / (1 << 9); // half-kB units
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size /= 1 << 10;
    }
    format!("{} PB", half_rounded(size))
}

fn size_pretty_udf() -> ScalarUDF {
    create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let sizes = arrays
                .first()
                .and_then(|a| {
                    a.as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                })
                .ok_or_else(|| DataFusionError::Plan("pg_size_pretty expects bigint".into()))?;
            let out: StringArray = sizes.iter().map(|v| v.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `pg_is_in_recovery()`: true on a cluster follower (a hot standby), false on
/// the leader and on a single node. Volatile: the role changes at failover.
fn in_recovery_udf(db: Db) -> ScalarUDF {
    create_udf(
        "pg_is_in_recovery",
        vec![],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(move |_args: &[ColumnarValue]| {
            let standby = !db.role().takes_writes();
            Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(standby))))
        }),
    )
}

fn version_udf() -> ScalarUDF {
    let version = version_string();
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    )
}

/// `json_build_object(key, value, ...)`: a JSON object text; keys as text, values as
/// JSON numbers, booleans, strings or null (other types by their text form).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_value(out: &mut String, v: &ScalarValue) {
    if v.is_null() {
        out.push_str("null");
        return;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
        v if v.data_type().is_numeric() => {
            let text = v.to_string();
            if text.parse::<f64>().is_ok_and(f64::is_finite) {
                out.push_str(&text)
            } else {
                json_string(out, &text)
            }
        }
        v => json_string(out, &v.to_string()),
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "argument list must have even number of elements".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<DfResult<_>>()?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut text = String::from("{");
            for (i, pair) in arrays.chunks(2).enumerate() {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Execution(
                        "null value not allowed for object key".into(),
                    ));
                }
                if i > 0 {
                    text.push_str(", ");
                }
                json_string(&mut text, &key.to_string());
                text.push_str(" : ");
                json_value(&mut text, &ScalarValue::try_from_array(&pair[1], row)?);
            }
            text.push('}');
            out.append_value(text);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;

    #[test]
    fn to_regtype_resolves_sql_spellings_and_arrays() {
        let tables = PgCatalogStaticTables::try_new().unwrap();
        let oids = type_oids(tables.pg_type.data());
        for (name, oid) in [
            ("int8", Some(20)),
            ("bigint", Some(20)),
            ("double precision", Some(701)),
            ("pg_catalog.timestamptz", Some(1184)),
            ("timestamp with time zone", Some(1184)),
            ("text[]", Some(1009)),
            ("character varying(10)", Some(1043)),
            ("hstore", None),
        ] {
            assert_eq!(resolve_type(&oids, name), oid, "{name}");
        }
    }

    #[test]
    fn version_is_what_drivers_parse() {
        let v = version_string();
        assert!(v.starts_with("PostgreSQL 16.0 (Hindsight "), "{v}");
    }

    #[test]
    fn quote_literal_matches_postgres() {
        assert_eq!(quote_literal("O'Reilly"), "'O''Reilly'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn size_pretty_matches_postgres() {
        for (bytes, text) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (1_000_000, "977 kB"),
            (20_000_000, "19 MB"),
            (8_192_000_000, "7813 MB"),
            (-20_000_000, "-19 MB"),
        ] {
            assert_eq!(size_pretty(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn json_values_are_escaped_and_typed() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\n""#);
        let mut s = String::new();
        json_value(&mut s, &ScalarValue::Int64(Some(5)));
        json_value(&mut s, &ScalarValue::Boolean(Some(true)));
        json_value(&mut s, &ScalarValue::Utf8(None));
        json_value(&mut s, &ScalarValue::Float64(Some(f64::NAN)));
        assert_eq!(s, "5truenull\"NaN\"");
    }
}
