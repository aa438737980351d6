//! Column types, values and table definitions.
//!
//! A table's columns are split into three roles: the entity key (zero or more
//! columns, in key order), the event-time column (zero or one), and the feature
//! columns (all the others, in declaration order). Feature columns are identified on
//! disk by their *feature index*; columns are only ever appended (ADD COLUMN), so a
//! feature index never changes meaning and older rows simply have fewer features.

use std::fmt;

use arrow_schema::{DataType as ArrowType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Identifier of a table, never reused after a drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId(pub u32);

impl TableId {
    /// The first provisional id: a table created in an uncommitted batch is named by
    /// one until the commit gives it its real id (real ids stay far below).
    pub const PROVISIONAL: u32 = 1 << 31;

    /// True for an id not yet resolved by a commit.
    pub fn is_provisional(self) -> bool {
        self.0 >= Self::PROVISIONAL
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The scalar types a column (or a list element) can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScalarType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Bytes,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since the epoch, a naive timestamp read as UTC.
    Timestamp,
    /// Microseconds since the epoch, UTC.
    TimestampTz,
}

impl ScalarType {
    /// Width in bytes of a fixed-width value, `None` for variable-width types.
    pub fn fixed_width(self) -> Option<usize> {
        match self {
            ScalarType::Bool => Some(1),
            ScalarType::Int16 => Some(2),
            ScalarType::Int32 | ScalarType::Date | ScalarType::Float32 => Some(4),
            ScalarType::Int64
            | ScalarType::Float64
            | ScalarType::Timestamp
            | ScalarType::TimestampTz => Some(8),
            ScalarType::Text | ScalarType::Bytes => None,
        }
    }

    /// True for types stored as integers (frame-of-reference encodable).
    pub fn is_integer_like(self) -> bool {
        matches!(
            self,
            ScalarType::Int16
                | ScalarType::Int32
                | ScalarType::Int64
                | ScalarType::Date
                | ScalarType::Timestamp
                | ScalarType::TimestampTz
        )
    }

    /// One byte naming the type on disk (FORMAT.md).
    pub fn tag(self) -> u8 {
        match self {
            ScalarType::Bool => 1,
            ScalarType::Int16 => 2,
            ScalarType::Int32 => 3,
            ScalarType::Int64 => 4,
            ScalarType::Float32 => 5,
            ScalarType::Float64 => 6,
            ScalarType::Text => 7,
            ScalarType::Bytes => 8,
            ScalarType::Date => 9,
            ScalarType::Timestamp => 10,
            ScalarType::TimestampTz => 11,
        }
    }

    /// Inverse of [`ScalarType::tag`].
    pub fn from_tag(tag: u8) -> Option<ScalarType> {
        Some(match tag {
            1 => ScalarType::Bool,
            2 => ScalarType::Int16,
            3 => ScalarType::Int32,
            4 => ScalarType::Int64,
            5 => ScalarType::Float32,
            6 => ScalarType::Float64,
            7 => ScalarType::Text,
            8 => ScalarType::Bytes,
            9 => ScalarType::Date,
            10 => ScalarType::Timestamp,
            11 => ScalarType::TimestampTz,
            _ => return None,
        })
    }

    /// The Arrow type values of this type decode into.
    pub fn arrow_type(self) -> ArrowType {
        match self {
            ScalarType::Bool => ArrowType::Boolean,
            ScalarType::Int16 => ArrowType::Int16,
            ScalarType::Int32 => ArrowType::Int32,
            ScalarType::Int64 => ArrowType::Int64,
            ScalarType::Float32 => ArrowType::Float32,
            ScalarType::Float64 => ArrowType::Float64,
            ScalarType::Text => ArrowType::Utf8,
            ScalarType::Bytes => ArrowType::Binary,
            ScalarType::Date => ArrowType::Date32,
            ScalarType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            ScalarType::TimestampTz => {
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
        }
    }
}

/// A column type: a scalar or a list of scalars (embeddings, tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Scalar(ScalarType),
    /// A list whose elements are never NULL.
    List(ScalarType),
}

impl DataType {
    /// The Arrow type values of this column decode into.
    pub fn arrow_type(self) -> ArrowType {
        match self {
            DataType::Scalar(s) => s.arrow_type(),
            DataType::List(s) => ArrowType::List(list_item_field(s).into()),
        }
    }

    /// The scalar type, or the element type of a list.
    pub fn scalar(self) -> ScalarType {
        match self {
            DataType::Scalar(s) | DataType::List(s) => s,
        }
    }

    /// True for list types.
    pub fn is_list(self) -> bool {
        matches!(self, DataType::List(_))
    }
}

/// The Arrow child field used for list columns.
pub fn list_item_field(s: ScalarType) -> Field {
    Field::new("item", s.arrow_type(), true)
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Scalar(s) => write!(f, "{s:?}"),
            DataType::List(s) => write!(f, "{s:?}[]"),
        }
    }
}

/// One value of a column. `Timestamp` carries microseconds for both timestamp types.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Text(String),
    Bytes(Vec<u8>),
    Date(i32),
    Timestamp(i64),
    /// Elements of a list column; never contains `Null`.
    List(Vec<Value>),
}

impl Value {
    /// True for `Value::Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Integer view used by integer-like encodings (`None` if not integer-like).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int16(v) => Some(v as i64),
            Value::Int32(v) | Value::Date(v) => Some(v as i64),
            Value::Int64(v) | Value::Timestamp(v) => Some(v),
            _ => None,
        }
    }

    /// Check that the value can be stored in a column of type `ty`.
    pub fn check_type(&self, ty: DataType, column: &str) -> Result<()> {
        let ok = match (ty, self) {
            (_, Value::Null) => true,
            (DataType::List(elem), Value::List(items)) => {
                for item in items {
                    if item.is_null() {
                        return Err(Error::InvalidValue {
                            column: column.to_string(),
                            detail: "list elements must not be NULL".into(),
                        });
                    }
                    item.check_type(DataType::Scalar(elem), column)?;
                }
                true
            }
            (DataType::Scalar(s), v) => scalar_matches(s, v),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidValue {
                column: column.to_string(),
                detail: format!("expected {ty}, got {self:?}"),
            })
        }
    }
}

fn scalar_matches(s: ScalarType, v: &Value) -> bool {
    matches!(
        (s, v),
        (ScalarType::Bool, Value::Bool(_))
            | (ScalarType::Int16, Value::Int16(_))
            | (ScalarType::Int32, Value::Int32(_))
            | (ScalarType::Int64, Value::Int64(_))
            | (ScalarType::Float32, Value::Float32(_))
            | (ScalarType::Float64, Value::Float64(_))
            | (ScalarType::Text, Value::Text(_))
            | (ScalarType::Bytes, Value::Bytes(_))
            | (ScalarType::Date, Value::Date(_))
            | (ScalarType::Timestamp, Value::Timestamp(_))
            | (ScalarType::TimestampTz, Value::Timestamp(_))
    )
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
}

impl ColumnDef {
    /// A nullable column.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        ColumnDef {
            name: name.into(),
            data_type,
            nullable: true,
        }
    }

    /// The same column declared NOT NULL.
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
}

/// Per-table options (`WITH (...)` in SQL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// Serving freshness in microseconds: a version older than the reference time minus
    /// `ttl` is not a candidate (the reference is now for current reads, the as-of time
    /// otherwise). Inclusive: a version exactly `ttl` old is served.
    pub ttl_micros: Option<i64>,
    /// History retention in microseconds, on both time axes: versions whose event time
    /// is older than now minus `retention` may be dropped (the newest one at or below
    /// that horizon is always kept), and system-time travel further back is an error.
    /// `None` keeps all history.
    pub retention_micros: Option<i64>,
}

/// Most columns a table may have (PostgreSQL's limit). SST blocks and metadata store
/// column counts as `u16`, so every count the engine writes fits.
pub const MAX_COLUMNS: usize = 1600;

/// A table definition as stored in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column indices of the entity key, in key order. Empty: an append-only log.
    pub key: Vec<usize>,
    /// Column index of the event-time column. `None`: commit time is the event time.
    pub event_time: Option<usize>,
    pub options: TableOptions,
    /// Commit (system) time of the batch that created the table.
    pub created_micros: i64,
    /// Indexes declared with CREATE INDEX (the entity key's own order serves them).
    /// Absent from the catalog JSON while empty, so older catalogs read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// A declared index: a name and the columns it orders by. Hindsight keeps no
/// separate index structure: a declared index's columns are a prefix of the entity
/// key (optionally followed by the event-time column), which the key order serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// Column indices, in index order.
    pub columns: Vec<usize>,
    /// Declared UNIQUE (only over the whole key, which is unique by construction).
    pub unique: bool,
}

/// A view: a named query, stored as SQL text and planned when used. The storage
/// engine only keeps it; the SQL layer validated the text when it was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The query (`SELECT ...`) as written, normalised by the SQL layer.
    pub sql: String,
    /// Output column names (the view's own column list, or the query's names).
    pub columns: Vec<String>,
    /// The Arrow type of each column when the view was created (its `Display`
    /// form), for catalog listings; the query is planned again at each use.
    #[serde(default)]
    pub types: Vec<String>,
}

/// The role a column plays in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnRole {
    /// Position in the entity key.
    Key(usize),
    EventTime,
    /// Feature index.
    Feature(usize),
}

impl TableDef {
    /// The table's name within its schema (its relation key without the schema).
    pub fn bare_name(&self) -> &str {
        crate::catalog::split_relation_key(&self.name).1
    }

    /// Build a definition; `id` and `created_micros` are assigned by the engine.
    pub fn new(
        name: impl Into<String>,
        columns: Vec<ColumnDef>,
        key: Vec<usize>,
        event_time: Option<usize>,
        options: TableOptions,
    ) -> Self {
        TableDef {
            id: TableId(0),
            name: name.into(),
            columns,
            key,
            event_time,
            options,
            created_micros: 0,
            indexes: Vec::new(),
        }
    }

    /// Check the declared indexes: names unique in the table, columns in range and a
    /// prefix of the key (then optionally the event time), UNIQUE only over the key.
    fn validate_indexes(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSchema(m));
        for (i, ix) in self.indexes.iter().enumerate() {
            if ix.name.is_empty() {
                return bad("index name must not be empty".into());
            }
            if self.indexes[..i].iter().any(|o| o.name == ix.name) {
                return bad(format!("index \"{}\" specified more than once", ix.name));
            }
            if let Err(why) = self.index_shape(&ix.columns, ix.unique) {
                return bad(format!("index \"{}\": {why}", ix.name));
            }
        }
        Ok(())
    }

    /// Whether an index over `columns` is one the key order serves: a non-empty
    /// prefix of the key, or the whole key followed by the event-time column; a
    /// unique one covers exactly the whole key. `Err` says why not.
    pub fn index_shape(&self, columns: &[usize], unique: bool) -> std::result::Result<(), String> {
        let name = |i: usize| self.columns.get(i).map_or("?", |c| c.name.as_str());
        if columns.is_empty() {
            return Err("an index needs at least one column".into());
        }
        if let Some(&i) = columns.iter().find(|&&i| i >= self.columns.len()) {
            return Err(format!("column index {i} out of range"));
        }
        let key_part = columns.len().min(self.key.len());
        let prefix = columns.get(..key_part) == self.key.get(..key_part);
        let rest = columns.get(key_part..).unwrap_or_default();
        let served = prefix
            && (rest.is_empty()
                || (key_part == self.key.len()
                    && rest.len() == 1
                    && self.event_time.is_some_and(|e| rest.first() == Some(&e))));
        if !served {
            let key: Vec<&str> = self.key.iter().map(|&k| name(k)).collect();
            return Err(format!(
                "its columns ({}) are not a prefix of the entity key ({}): Hindsight orders a \
                 table by its key only and keeps no secondary indexes",
                columns
                    .iter()
                    .map(|&c| name(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                key.join(", ")
            ));
        }
        if unique && columns != self.key.as_slice() {
            return Err(
                "a UNIQUE index must cover exactly the entity key (unique by construction); \
                 other unique constraints are not enforced, so they are refused"
                    .into(),
            );
        }
        Ok(())
    }

    /// Check the definition is storable: unique names, valid key and event time.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSchema(m));
        if self.name.is_empty() {
            return bad("table name must not be empty".into());
        }
        if self.columns.is_empty() {
            return bad(format!("table \"{}\" has no columns", self.name));
        }
        if self.columns.len() > MAX_COLUMNS {
            return bad(format!(
                "table \"{}\" has {} columns: tables can have at most {MAX_COLUMNS} columns",
                self.name,
                self.columns.len()
            ));
        }
        for (i, c) in self.columns.iter().enumerate() {
            if c.name.is_empty() {
                return bad("column name must not be empty".into());
            }
            if self.columns[..i].iter().any(|o| o.name == c.name) {
                return bad(format!("column \"{}\" specified more than once", c.name));
            }
        }
        for (pos, &k) in self.key.iter().enumerate() {
            let Some(col) = self.columns.get(k) else {
                return bad(format!("key column index {k} out of range"));
            };
            if self.key[..pos].contains(&k) {
                return bad(format!("column \"{}\" appears twice in the key", col.name));
            }
            if col.data_type.is_list() {
                return bad(format!(
                    "key column \"{}\" has type {}: array columns cannot be part of a key",
                    col.name, col.data_type
                ));
            }
            if col.nullable {
                return bad(format!("key column \"{}\" must be NOT NULL", col.name));
            }
        }
        if let Some(e) = self.event_time {
            let Some(col) = self.columns.get(e) else {
                return bad(format!("event-time column index {e} out of range"));
            };
            if !matches!(
                col.data_type,
                DataType::Scalar(ScalarType::Timestamp | ScalarType::TimestampTz)
            ) {
                return bad(format!(
                    "event-time column \"{}\" must be TIMESTAMP or TIMESTAMPTZ, not {}",
                    col.name, col.data_type
                ));
            }
            if self.key.contains(&e) {
                return bad(format!(
                    "event-time column \"{}\" cannot also be a key column",
                    col.name
                ));
            }
            if col.nullable {
                return bad(format!(
                    "event-time column \"{}\" must be NOT NULL",
                    col.name
                ));
            }
        }
        for (label, v) in [
            ("ttl", self.options.ttl_micros),
            ("retention", self.options.retention_micros),
        ] {
            if let Some(v) = v
                && v <= 0
            {
                return bad(format!("{label} must be a positive interval"));
            }
        }
        self.validate_indexes()
    }

    /// Role of every column, in column order.
    pub fn roles(&self) -> Vec<ColumnRole> {
        let mut next_feature = 0;
        (0..self.columns.len())
            .map(|i| {
                if let Some(pos) = self.key.iter().position(|&k| k == i) {
                    ColumnRole::Key(pos)
                } else if self.event_time == Some(i) {
                    ColumnRole::EventTime
                } else {
                    next_feature += 1;
                    ColumnRole::Feature(next_feature - 1)
                }
            })
            .collect()
    }

    /// Column indices of the feature columns, in feature order.
    pub fn feature_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|i| !self.key.contains(i) && self.event_time != Some(*i))
            .collect()
    }

    /// Types of the feature columns, in feature order.
    pub fn feature_types(&self) -> Vec<DataType> {
        self.feature_columns()
            .into_iter()
            .filter_map(|i| self.columns.get(i).map(|c| c.data_type))
            .collect()
    }

    /// Types of the key columns, in key order.
    pub fn key_types(&self) -> Vec<ScalarType> {
        self.key
            .iter()
            .filter_map(|&i| self.columns.get(i).map(|c| c.data_type.scalar()))
            .collect()
    }

    /// Names of the key columns, in key order.
    pub fn key_names(&self) -> Vec<String> {
        self.key
            .iter()
            .filter_map(|&i| self.columns.get(i).map(|c| c.name.clone()))
            .collect()
    }

    /// Column index by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The Arrow schema of `columns` (all columns if `None`), as scans return them.
    pub fn arrow_schema(&self, columns: Option<&[usize]>) -> arrow_schema::Schema {
        let all: Vec<usize> = (0..self.columns.len()).collect();
        let cols = columns.unwrap_or(&all);
        arrow_schema::Schema::new(
            cols.iter()
                .filter_map(|&i| self.columns.get(i))
                .map(|c| Field::new(&c.name, c.data_type.arrow_type(), c.nullable))
                .collect::<Vec<_>>(),
        )
    }

    /// True if the table has no entity key (an append-only log).
    pub fn is_log(&self) -> bool {
        self.key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(n: usize) -> TableDef {
        let mut cols = vec![ColumnDef::new("id", DataType::Scalar(ScalarType::Int64)).not_null()];
        cols.extend(
            (1..n).map(|i| ColumnDef::new(format!("f{i}"), DataType::Scalar(ScalarType::Int64))),
        );
        TableDef::new("wide", cols, vec![0], None, TableOptions::default())
    }

    #[test]
    fn a_table_over_the_column_limit_is_refused_with_a_clear_error() {
        assert!(wide(MAX_COLUMNS).validate().is_ok());
        let err = wide(MAX_COLUMNS + 1).validate().unwrap_err();
        assert!(matches!(err, Error::InvalidSchema(_)));
        assert!(err.to_string().contains("at most 1600 columns"), "{err}");
    }
}
