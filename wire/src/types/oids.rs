//! Which PostgreSQL type each Arrow type is sent as, and back: the OIDs, their
//! sizes, their names for messages. A leaf of `types`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

pub(super) use hindsight_sql::pg::binary::{PG_EPOCH_DAYS, PG_EPOCH_US};

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const INT2VECTOR: u32 = 22;
    pub const OIDVECTOR: u32 = 30;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const OID_ARRAY: u32 = 1028;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const JSON: u32 = 114;
}

/// How a column is described in RowDescription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    /// pg_type.typlen: fixed width in bytes, or -1 for variable length.
    pub size: i16,
}

const fn t(oid: u32, size: i16) -> PgType {
    PgType { oid, size }
}

/// The PostgreSQL type an Arrow column is sent as.
pub fn pg_type(dt: &DataType) -> PgType {
    match dt {
        DataType::Boolean => t(oid::BOOL, 1),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => t(oid::INT2, 2),
        DataType::Int32 | DataType::UInt16 => t(oid::INT4, 4),
        DataType::Int64 => t(oid::INT8, 8),
        // PostgreSQL's oid is an unsigned 32-bit integer.
        DataType::UInt32 => t(oid::OID, 4),
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            t(oid::NUMERIC, -1)
        }
        DataType::Float16 | DataType::Float32 => t(oid::FLOAT4, 4),
        DataType::Float64 => t(oid::FLOAT8, 8),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => t(oid::BYTEA, -1),
        DataType::Date32 | DataType::Date64 => t(oid::DATE, 4),
        DataType::Time32(_) | DataType::Time64(_) => t(oid::TIME, 8),
        DataType::Timestamp(_, None) => t(oid::TIMESTAMP, 8),
        DataType::Timestamp(_, Some(_)) => t(oid::TIMESTAMPTZ, 8),
        DataType::Interval(_) | DataType::Duration(_) => t(oid::INTERVAL, 16),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            t(array_oid(pg_type(f.data_type()).oid), -1)
        }
        _ => t(oid::TEXT, -1),
    }
}

/// The field metadata key naming a PostgreSQL type an Arrow list stands for
/// (`int2vector`, `oidvector`: catalog columns such as `pg_index.indkey`).
pub const PG_TYPE_KEY: &str = "pg.type";

/// True if the column is a PostgreSQL vector type (`int2vector`, `oidvector`): a
/// list sent as that type, whose text form is its elements separated by spaces.
pub fn is_vector(f: &Field) -> bool {
    matches!(
        f.metadata().get(PG_TYPE_KEY).map(String::as_str),
        Some("int2vector" | "oidvector")
    )
}

/// The PostgreSQL type a result column is sent as: [`pg_type`] of its Arrow type,
/// or the vector type its metadata names.
pub fn pg_type_of_field(f: &Field) -> PgType {
    match f.metadata().get(PG_TYPE_KEY).map(String::as_str) {
        Some("int2vector") => t(oid::INT2VECTOR, -1),
        Some("oidvector") => t(oid::OIDVECTOR, -1),
        _ => pg_type(f.data_type()),
    }
}

/// The array type of an element type.
fn array_oid(elem: u32) -> u32 {
    match elem {
        oid::BOOL => oid::BOOL_ARRAY,
        oid::BYTEA => oid::BYTEA_ARRAY,
        oid::INT2 => oid::INT2_ARRAY,
        oid::INT4 => oid::INT4_ARRAY,
        oid::INT8 => oid::INT8_ARRAY,
        oid::FLOAT4 => oid::FLOAT4_ARRAY,
        oid::FLOAT8 => oid::FLOAT8_ARRAY,
        oid::DATE => oid::DATE_ARRAY,
        oid::TIMESTAMP => oid::TIMESTAMP_ARRAY,
        oid::TIMESTAMPTZ => oid::TIMESTAMPTZ_ARRAY,
        oid::OID => oid::OID_ARRAY,
        _ => oid::TEXT_ARRAY,
    }
}

/// The Arrow type a client-declared parameter OID stands for (None: infer it).
pub fn arrow_type_of_oid(o: u32) -> Option<DataType> {
    let list = |dt: DataType| Some(DataType::List(Arc::new(Field::new_list_field(dt, true))));
    match o {
        oid::BOOL => Some(DataType::Boolean),
        oid::INT2 => Some(DataType::Int16),
        oid::INT4 | oid::OID => Some(DataType::Int32),
        oid::INT8 => Some(DataType::Int64),
        oid::FLOAT4 => Some(DataType::Float32),
        oid::FLOAT8 | oid::NUMERIC => Some(DataType::Float64),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => Some(DataType::Utf8),
        oid::BYTEA => Some(DataType::Binary),
        oid::DATE => Some(DataType::Date32),
        oid::TIMESTAMP => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        oid::TIMESTAMPTZ => Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        )),
        oid::BOOL_ARRAY => list(DataType::Boolean),
        oid::INT2_ARRAY => list(DataType::Int16),
        oid::INT4_ARRAY => list(DataType::Int32),
        oid::OID_ARRAY => list(DataType::UInt32),
        oid::INT8_ARRAY => list(DataType::Int64),
        oid::FLOAT4_ARRAY => list(DataType::Float32),
        oid::FLOAT8_ARRAY => list(DataType::Float64),
        oid::TEXT_ARRAY | oid::VARCHAR_ARRAY => list(DataType::Utf8),
        oid::TIMESTAMPTZ_ARRAY => list(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        )),
        _ => None,
    }
}

/// PostgreSQL's name of the type an Arrow type is sent as (for messages).
pub fn type_name(ty: &DataType) -> &'static str {
    match pg_type(ty).oid {
        oid::BOOL => "boolean",
        oid::INT2 => "smallint",
        oid::INT4 => "integer",
        oid::INT8 => "bigint",
        oid::FLOAT4 => "real",
        oid::FLOAT8 => "double precision",
        oid::NUMERIC => "numeric",
        oid::BYTEA => "bytea",
        oid::DATE => "date",
        oid::TIME => "time",
        oid::TIMESTAMP => "timestamp without time zone",
        oid::TIMESTAMPTZ => "timestamp with time zone",
        oid::INTERVAL => "interval",
        oid::TEXT => "text",
        oid::OID => "oid",
        _ => "array",
    }
}
