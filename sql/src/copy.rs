//! COPY FROM: rows arriving as text fields (already split and unescaped by the wire
//! layer) become versions of a table.
//!
//! Invariants: values are parsed with PostgreSQL's text input rules for the column
//! type (arrays `{...}`, bytea `\x..`, timestamps with offsets); columns not listed
//! are NULL; the whole COPY is one write batch, committed by [`Session::finish_copy`]
//! only after the last row arrived, so a failed or abandoned COPY leaves nothing
//! visible. Inside a transaction block the rows join the transaction's batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryBuilder, ListArray, RecordBatch, RecordBatchOptions,
    StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::FormatOptions;
use hindsight_storage::{TableDef, WriteBatch};

use crate::error::{ErrorKind, Result, SqlError};
use crate::literals::{parse_pg_array, parse_pg_bytea};
use crate::offload;
use crate::session::Session;

/// Rows buffered before they are converted to Arrow and added to the batch.
const CHUNK_ROWS: usize = 8192;

/// An open COPY FROM into one table.
pub struct CopyIn {
    def: Arc<TableDef>,
    /// Table column index of each incoming field.
    targets: Vec<usize>,
    /// Buffered text fields, one column per incoming field (no allocation per value).
    fields: Vec<StringBuilder>,
    /// Per incoming field: trim surrounding whitespace (numbers, times and booleans
    /// are parsed from trimmed text, as PostgreSQL's input functions do; text keeps
    /// its spaces; bytea and arrays have their own syntax).
    trim: Vec<bool>,
    /// Rows buffered in `fields`.
    buffered: usize,
    batch: WriteBatch,
    rows: u64,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("table", &self.def.name)
            .field("rows", &self.rows)
            .finish()
    }
}

impl CopyIn {
    /// Number of fields each row must have.
    pub fn width(&self) -> usize {
        self.targets.len()
    }

    /// Rows accepted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes held in memory for this COPY.
    pub fn approximate_bytes(&self) -> usize {
        self.batch.approximate_bytes()
    }

    /// Add one row (`None`: NULL). `line` numbers errors.
    pub fn push<'a>(
        &mut self,
        row: impl ExactSizeIterator<Item = Option<&'a str>>,
        line: u64,
    ) -> Result<()> {
        if row.len() != self.targets.len() {
            let what = if row.len() < self.targets.len() {
                "missing data for column"
            } else {
                "extra data after last expected column"
            };
            return Err(SqlError::new(
                ErrorKind::InvalidTextRepresentation,
                format!("{what} (COPY {}, line {line})", self.def.name),
            ));
        }
        for ((col, &trim), v) in self.fields.iter_mut().zip(&self.trim).zip(row) {
            match v {
                Some(v) if trim => col.append_value(v.trim()),
                Some(v) => col.append_value(v),
                None => col.append_null(),
            }
        }
        self.rows += 1;
        self.buffered += 1;
        if self.buffered >= CHUNK_ROWS {
            // Milliseconds of parsing: off the connection worker.
            offload::blocking(|| self.convert(line))?;
        }
        Ok(())
    }

    /// Convert buffered text rows to a typed batch and add them to the write batch.
    fn convert(&mut self, line: u64) -> Result<()> {
        let n = std::mem::take(&mut self.buffered);
        if n == 0 {
            return Ok(());
        }
        let schema = self.def.arrow_schema(None);
        let mut columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        for (text, &target) in self.fields.iter_mut().zip(&self.targets) {
            let values = text.finish();
            let (Some(slot), Some(field), Some(def)) = (
                columns.get_mut(target),
                schema.fields().get(target),
                self.def.columns.get(target),
            ) else {
                continue;
            };
            let type_name = crate::types::pg_type_name(def.data_type);
            *slot = parse_column(&values, field.data_type(), &type_name).map_err(|e| {
                SqlError::new(
                    e.kind,
                    format!(
                        "{} (COPY {}, column {}, lines up to {line})",
                        e.message,
                        self.def.name,
                        field.name()
                    ),
                )
            })?;
        }
        let nullable = Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new_with_options(
            Arc::new(nullable),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        self.batch.put_arrow(&self.def, &batch)?;
        Ok(())
    }
}

/// Parse text values as a column of `ty`.
fn parse_column(values: &StringArray, ty: &DataType, type_name: &str) -> Result<ArrayRef> {
    let invalid = |v: &str| {
        SqlError::new(
            ErrorKind::InvalidTextRepresentation,
            format!("invalid input syntax for type {type_name}: \"{v}\""),
        )
    };
    match ty {
        DataType::Binary => {
            let mut b = BinaryBuilder::new();
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(s) => b.append_value(parse_pg_bytea(s).ok_or_else(|| invalid(s))?),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::List(elem) => {
            let mut offsets = vec![0i32];
            let mut items = StringBuilder::new();
            let mut valid = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    None => valid.push(false),
                    Some(s) => {
                        for item in parse_pg_array(s).ok_or_else(|| invalid(s))? {
                            match item {
                                Some(i) => items.append_value(i.trim()),
                                None => items.append_null(),
                            }
                        }
                        valid.push(true);
                    }
                }
                offsets.push(i32::try_from(items.len()).map_err(|_| invalid("array"))?);
            }
            let inner = parse_column(
                &items.finish(),
                elem.data_type(),
                type_name.trim_end_matches("[]"),
            )?;
            Ok(Arc::new(ListArray::try_new(
                Arc::new(Field::new_list_field(elem.data_type().clone(), true)),
                datafusion::arrow::buffer::OffsetBuffer::new(offsets.into()),
                inner,
                Some(valid.into()),
            )?))
        }
        DataType::Boolean => {
            let parsed: Vec<Option<bool>> = values
                .iter()
                .map(|v| match v.map(|s| s.trim().to_ascii_lowercase()) {
                    None => Ok(None),
                    Some(s) => match s.as_str() {
                        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(Some(true)),
                        "f" | "false" | "n" | "no" | "off" | "0" => Ok(Some(false)),
                        _ => Err(invalid(&s)),
                    },
                })
                .collect::<Result<_>>()?;
            Ok(Arc::new(datafusion::arrow::array::BooleanArray::from(
                parsed,
            )))
        }
        other => {
            let options = CastOptions {
                safe: false,
                format_options: FormatOptions::default(),
            };
            cast_with_options(values, other, &options).map_err(|e| {
                let msg = e.to_string();
                // Name the offending value where arrow's message carries it.
                let value = msg.split('\'').nth(1).unwrap_or(&msg).to_string();
                invalid(&value)
            })
        }
    }
}

impl Session {
    /// Open a COPY FROM into `table`; `columns` empty means all, in table order.
    pub fn copy_in(&self, table: &str, columns: &[String]) -> Result<CopyIn> {
        self.check_not_failed()?;
        let def = self.engine.db().table(table)?;
        let targets = if columns.is_empty() {
            (0..def.columns.len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    def.column_index(c).ok_or_else(|| {
                        SqlError::new(
                            ErrorKind::UndefinedColumn,
                            format!("column \"{c}\" of relation \"{table}\" does not exist"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let trim = targets
            .iter()
            .map(|&t| {
                def.columns.get(t).is_some_and(|c| {
                    !matches!(
                        c.data_type,
                        hindsight_storage::DataType::List(_)
                            | hindsight_storage::DataType::Scalar(
                                hindsight_storage::ScalarType::Bytes
                                    | hindsight_storage::ScalarType::Text
                            )
                    )
                })
            })
            .collect();
        Ok(CopyIn {
            fields: targets.iter().map(|_| StringBuilder::new()).collect(),
            trim,
            buffered: 0,
            targets,
            def,
            batch: WriteBatch::new(),
            rows: 0,
        })
    }

    /// Write every row of a COPY as one batch (or add it to the open transaction).
    pub fn finish_copy(&mut self, mut copy: CopyIn, line: u64) -> Result<u64> {
        let rows = copy.rows;
        let result = offload::blocking(|| copy.convert(line)).and_then(|()| self.write(copy.batch));
        if result.is_err() {
            self.mark_failed();
        }
        result.map(|()| rows)
    }
}
