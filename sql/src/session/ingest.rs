//! Bulk ingest of Arrow record batches into a table (Arrow Flight SQL's
//! `CommandStatementIngest`): the same semantics as `COPY FROM` (every row a new
//! version, one atomic write for the whole ingest, or part of the open transaction).
//!
//! Columns are matched by name (exactly, then case-folded); a table column the data
//! lacks is NULL (so a NOT NULL one is 23502), a data column the table lacks is
//! 42703. Types must match or widen without guessing: integers to wider integers
//! or floats (narrowing checked for overflow), floats to floats, any string,
//! binary or timestamp encoding to the table's, lists element-wise; anything else
//! (a float into a BIGINT, a string into a DOUBLE) is 42804.
//!
//! Invariant: nothing is written until [`Session::finish_ingest`]; dropping an
//! [`Ingest`] (a client that disconnected mid-stream) leaves no trace.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType as ArrowType, Schema, SchemaRef};
use hindsight_storage::{TableDef, WriteBatch};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};

/// An ingest in progress: rows converted to the table's types, not yet written.
#[derive(Debug)]
pub struct Ingest {
    def: Arc<TableDef>,
    /// The table's columns, all nullable (NOT NULL is checked by the write).
    schema: SchemaRef,
    batch: WriteBatch,
    rows: u64,
}

impl Session {
    /// Open an ingest into the table named by `table` (its normalized name parts,
    /// resolved by the search path).
    pub fn ingest(&self, table: &[String]) -> Result<Ingest> {
        self.check_not_failed()?;
        self.check_writable("INSERT")?;
        let def = self.names().table(table)?;
        let schema = def.arrow_schema(None);
        let schema = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Ingest {
            def,
            schema,
            batch: WriteBatch::new(),
            rows: 0,
        })
    }

    /// Write every row of an ingest as one batch (or add it to the open
    /// transaction); the number of rows.
    pub fn finish_ingest(&mut self, ingest: Ingest) -> Result<u64> {
        let rows = ingest.rows;
        let result = self.write(ingest.batch);
        if result.is_err() {
            self.mark_failed();
        }
        result.map(|()| rows)
    }

    /// The entity key columns of the table named by `table` (normalized name parts,
    /// resolved by the search path), in key order; empty for an append-only table.
    pub fn primary_key(&self, table: &[String]) -> Result<Vec<String>> {
        Ok(self.names().table(table)?.key_names())
    }
}

impl Ingest {
    /// The table's columns as Arrow fields.
    pub fn table_schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows added so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Convert `data` to the table's columns and add its rows.
    pub fn push(&mut self, data: &RecordBatch) -> Result<()> {
        let rows = data.num_rows();
        let targets = self.targets(data.schema_ref())?;
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (field, source) in self.schema.fields().iter().zip(targets) {
            columns.push(match source {
                Some(i) => convert(data.column(i), field.data_type(), field.name())?,
                None => new_null_array(field.data_type(), rows),
            });
        }
        let typed = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        self.batch.put_arrow(&self.def, &typed)?;
        self.rows += rows as u64;
        Ok(())
    }

    /// For each table column, the index of the data column that fills it.
    fn targets(&self, data: &SchemaRef) -> Result<Vec<Option<usize>>> {
        let mut targets = vec![None; self.schema.fields().len()];
        for (i, f) in data.fields().iter().enumerate() {
            let at = self
                .def
                .column_index(f.name())
                .or_else(|| self.def.column_index(&f.name().to_lowercase()))
                .ok_or_else(|| {
                    SqlError::new(
                        ErrorKind::UndefinedColumn,
                        format!(
                            "column \"{}\" of relation \"{}\" does not exist",
                            f.name(),
                            self.def.bare_name()
                        ),
                    )
                })?;
            match targets.get_mut(at) {
                Some(slot @ None) => *slot = Some(i),
                _ => {
                    return Err(SqlError::new(
                        ErrorKind::DuplicateColumn,
                        format!("column \"{}\" specified more than once", f.name()),
                    ));
                }
            }
        }
        Ok(targets)
    }
}

/// `array` as the table column's type `to`, when the conversion cannot guess.
fn convert(array: &ArrayRef, to: &ArrowType, column: &str) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    if !widens(array.data_type(), to) {
        return Err(SqlError::new(
            ErrorKind::DatatypeMismatch,
            format!(
                "column \"{column}\" is of type {} but the data is {}",
                crate::types::arrow_pg_type_name(to),
                array.data_type()
            ),
        ));
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, to, &options).map_err(|e| {
        SqlError::new(
            ErrorKind::NumericValueOutOfRange,
            format!("column \"{column}\": {e}"),
        )
    })
}

/// Whether data of type `from` goes into a column of type `to` without guessing.
fn widens(from: &ArrowType, to: &ArrowType) -> bool {
    use ArrowType as T;
    let string = |t: &T| matches!(t, T::Utf8 | T::LargeUtf8 | T::Utf8View);
    let binary = |t: &T| {
        matches!(
            t,
            T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_)
        )
    };
    match (from, to) {
        (T::Null, _) => true,
        (T::Dictionary(_, values), _) => widens(values, to),
        (f, t) if f.is_integer() => t.is_integer() || t.is_floating(),
        (f, t) if f.is_floating() => t.is_floating(),
        (T::Decimal128(..) | T::Decimal256(..), t) => t.is_floating(),
        (T::Date64, T::Date32) => true,
        (f, t) if string(f) => string(t),
        (f, t) if binary(f) => binary(t),
        (T::Timestamp(..) | T::Date32 | T::Date64, T::Timestamp(..)) => true,
        (
            T::List(f) | T::LargeList(f) | T::FixedSizeList(f, _) | T::ListView(f),
            T::List(t) | T::LargeList(t),
        ) => widens(f.data_type(), t.data_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_rules() {
        use ArrowType as T;
        assert!(widens(&T::Int32, &T::Int64));
        assert!(widens(&T::Int64, &T::Int32), "narrowing is checked at cast");
        assert!(widens(&T::Int64, &T::Float64));
        assert!(!widens(&T::Float64, &T::Int64));
        assert!(!widens(&T::Utf8, &T::Float64));
        assert!(widens(&T::LargeUtf8, &T::Utf8));
        assert!(widens(
            &T::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
            &T::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                Some("+00:00".into())
            )
        ));
        let list = |t: T| {
            T::List(Arc::new(datafusion::arrow::datatypes::Field::new(
                "item", t, true,
            )))
        };
        assert!(widens(&list(T::Float64), &list(T::Float32)));
        assert!(!widens(&list(T::Utf8), &list(T::Float32)));
    }

    #[test]
    fn narrowing_overflow_is_an_error() {
        let a: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![
            1,
            i64::MAX,
        ]));
        let e = convert(&a, &ArrowType::Int32, "c").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericValueOutOfRange);
        let ok: ArrayRef = Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2]));
        assert_eq!(convert(&ok, &ArrowType::Int32, "c").unwrap().len(), 2);
    }
}
