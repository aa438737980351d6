//! COPY FROM: rows arriving as fields (already split, and unescaped, by the wire
//! layer) become versions of a table. Fields are text (COPY's text and CSV formats)
//! or PostgreSQL binary values (`FORMAT binary`), one kind per COPY.
//!
//! Invariants: text values are parsed with PostgreSQL's text input rules for the
//! column type (arrays `{...}`, bytea `\x..`, timestamps with offsets), binary values
//! with its binary receive rules ([`crate::pg::binary`]); columns not listed
//! are NULL; the whole COPY is one write batch, committed by [`Session::finish_copy`]
//! only after the last row arrived, so a failed or abandoned COPY leaves nothing
//! visible. Inside a transaction block the rows join the transaction's batch.
//!
//! Pipelining: the connection splits records and buffers their text fields; each
//! full chunk of [`CHUNK_ROWS`] rows goes to the COPY's converter thread, which
//! parses it to typed columns and encodes it into the write batch while the
//! connection splits the next one. Chunks are converted in arrival order, at most
//! [`CHUNKS_IN_FLIGHT`] wait, and a conversion error ends the converter: the
//! connection sees it at its next hand-over or at the end, naming the lines of the
//! failed chunk.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, ListArray, RecordBatch,
    RecordBatchOptions, StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::FormatOptions;
use hindsight_storage::{TableDef, WriteBatch};

use super::state::Session;
use crate::error::{ErrorKind, Result, SqlError};
use crate::offload;
use crate::pg::binary;
use crate::pg::literals::{parse_pg_array, parse_pg_bytea};

/// Rows buffered before they go to the converter as one chunk.
const CHUNK_ROWS: usize = 8192;

/// Full chunks that may wait for the converter (bounds a COPY's text in memory).
const CHUNKS_IN_FLIGHT: usize = 2;

/// An open COPY FROM into one table.
pub struct CopyIn {
    def: Arc<TableDef>,
    /// Table column index of each incoming field.
    targets: Arc<[usize]>,
    /// Buffered fields, one column per incoming field (no allocation per value).
    fields: FieldBuffers,
    /// Per incoming field: trim surrounding whitespace (numbers, times and booleans
    /// are parsed from trimmed text, as PostgreSQL's input functions do; text keeps
    /// its spaces; bytea and arrays have their own syntax).
    trim: Vec<bool>,
    /// Rows buffered in `fields`.
    buffered: usize,
    rows: u64,
    /// Started at the first full chunk (a small COPY converts on the connection).
    converter: Option<Converter>,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("table", &self.def.name)
            .field("rows", &self.rows)
            .finish()
    }
}

/// The fields of the rows buffered so far, one builder per incoming field.
enum FieldBuffers {
    Text(Vec<StringBuilder>),
    Binary(Vec<BinaryBuilder>),
}

impl FieldBuffers {
    fn take(&mut self) -> ChunkFields {
        match self {
            FieldBuffers::Text(b) => {
                ChunkFields::Text(b.iter_mut().map(StringBuilder::finish).collect())
            }
            FieldBuffers::Binary(b) => {
                ChunkFields::Binary(b.iter_mut().map(BinaryBuilder::finish).collect())
            }
        }
    }
}

/// A chunk's fields, one array per incoming field.
enum ChunkFields {
    Text(Vec<StringArray>),
    Binary(Vec<BinaryArray>),
}

impl ChunkFields {
    /// Field `i` decoded as a column of `ty` (named `type_name` in errors).
    fn column(&self, i: usize, ty: &DataType, type_name: &str) -> Result<ArrayRef> {
        let missing = || SqlError::internal("a COPY chunk lacks a field");
        match self {
            ChunkFields::Text(f) => parse_column(f.get(i).ok_or_else(missing)?, ty, type_name),
            ChunkFields::Binary(f) => {
                binary::decode_column(f.get(i).ok_or_else(missing)?, ty, type_name)
            }
        }
    }
}

/// Buffered rows on their way to the write batch.
struct Chunk {
    fields: ChunkFields,
    rows: usize,
    /// Line of the chunk's last row, for error messages.
    line: u64,
}

/// The thread that converts a COPY's chunks, in order, into its write batch.
struct Converter {
    chunks: SyncSender<Chunk>,
    thread: JoinHandle<Result<WriteBatch>>,
}

impl Converter {
    fn start(def: Arc<TableDef>, targets: Arc<[usize]>) -> Result<Converter> {
        let (chunks, rx) = sync_channel(CHUNKS_IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name("hindsight-copy".into())
            .spawn(move || convert_all(&def, &targets, rx))
            .map_err(|e| SqlError::internal(format!("cannot start a COPY converter: {e}")))?;
        Ok(Converter { chunks, thread })
    }

    /// Hand a chunk over; waits (off the connection worker) while the converter is
    /// [`CHUNKS_IN_FLIGHT`] chunks behind. A converter that stopped on an error
    /// returns it here.
    fn send(self, chunk: Chunk) -> Result<Converter> {
        match offload::blocking(|| self.chunks.send(chunk)) {
            Ok(()) => Ok(self),
            Err(_) => Err(self.finish().err().unwrap_or_else(|| {
                SqlError::internal("the COPY converter stopped without an error")
            })),
        }
    }

    /// Wait for the chunks sent so far and take the write batch.
    fn finish(self) -> Result<WriteBatch> {
        drop(self.chunks);
        offload::blocking(|| self.thread.join())
            .unwrap_or_else(|_| Err(SqlError::internal("the COPY converter panicked")))
    }
}

/// The converter thread's loop: every chunk, in order, until the sender is gone.
fn convert_all(def: &TableDef, targets: &[usize], chunks: Receiver<Chunk>) -> Result<WriteBatch> {
    let mut batch = WriteBatch::new();
    for chunk in chunks {
        convert(def, targets, chunk, &mut batch)?;
    }
    Ok(batch)
}

/// Parse a chunk's text rows to typed columns and add them to `batch`.
fn convert(def: &TableDef, targets: &[usize], chunk: Chunk, batch: &mut WriteBatch) -> Result<()> {
    let Chunk { fields, rows, line } = chunk;
    if rows == 0 {
        return Ok(());
    }
    let schema = def.arrow_schema(None);
    let mut columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), rows))
        .collect();
    for (i, &target) in targets.iter().enumerate() {
        let (Some(slot), Some(field), Some(col)) = (
            columns.get_mut(target),
            schema.fields().get(target),
            def.columns.get(target),
        ) else {
            continue;
        };
        let type_name = crate::types::pg_type_name(col.data_type);
        *slot = fields
            .column(i, field.data_type(), &type_name)
            .map_err(|e| {
                SqlError::new(
                    e.kind,
                    format!(
                        "{} (COPY {}, column {}, lines up to {line})",
                        e.message,
                        def.name,
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
    let typed = RecordBatch::try_new_with_options(
        Arc::new(nullable),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )?;
    batch.put_arrow(def, &typed)?;
    Ok(())
}

impl CopyIn {
    /// Number of fields each row must have.
    pub fn width(&self) -> usize {
        self.targets.len()
    }

    /// Add one row of text fields (`None`: NULL). `line` numbers errors.
    pub fn push<'a>(
        &mut self,
        row: impl ExactSizeIterator<Item = Option<&'a str>>,
        line: u64,
    ) -> Result<()> {
        self.check_width(row.len(), line, ErrorKind::InvalidTextRepresentation)?;
        let FieldBuffers::Text(fields) = &mut self.fields else {
            return Err(SqlError::internal("a text row pushed into a binary COPY"));
        };
        for ((col, &trim), v) in fields.iter_mut().zip(&self.trim).zip(row) {
            match v {
                Some(v) if trim => col.append_value(v.trim()),
                Some(v) => col.append_value(v),
                None => col.append_null(),
            }
        }
        self.row_added(line)
    }

    /// Add one row of binary-format fields (`None`: NULL) to a COPY opened with
    /// `binary`. `tuple` numbers errors.
    pub fn push_binary<'a>(
        &mut self,
        row: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
        tuple: u64,
    ) -> Result<()> {
        self.check_width(row.len(), tuple, ErrorKind::BadCopyFormat)?;
        let FieldBuffers::Binary(fields) = &mut self.fields else {
            return Err(SqlError::internal("a binary row pushed into a text COPY"));
        };
        for (col, v) in fields.iter_mut().zip(row) {
            col.append_option(v);
        }
        self.row_added(tuple)
    }

    fn check_width(&self, got: usize, line: u64, kind: ErrorKind) -> Result<()> {
        if got == self.targets.len() {
            return Ok(());
        }
        let what = if got < self.targets.len() {
            "missing data for column"
        } else {
            "extra data after last expected column"
        };
        Err(SqlError::new(
            kind,
            format!(
                "{what}: row field count is {got}, expected {} (COPY {}, line {line})",
                self.targets.len(),
                self.def.name
            ),
        ))
    }

    /// Count a pushed row; hand a full chunk to the converter.
    fn row_added(&mut self, line: u64) -> Result<()> {
        self.rows += 1;
        self.buffered += 1;
        if self.buffered >= CHUNK_ROWS {
            let chunk = self.take_chunk(line);
            let converter = match self.converter.take() {
                Some(c) => c,
                None => Converter::start(self.def.clone(), self.targets.clone())?,
            };
            self.converter = Some(converter.send(chunk)?);
        }
        Ok(())
    }

    /// The buffered rows as a chunk; the buffers start over.
    fn take_chunk(&mut self, line: u64) -> Chunk {
        Chunk {
            fields: self.fields.take(),
            rows: std::mem::take(&mut self.buffered),
            line,
        }
    }

    /// Every row as one write batch: the converter's, and the last chunk's.
    fn into_batch(mut self, line: u64) -> Result<WriteBatch> {
        let last = self.take_chunk(line);
        let mut batch = match self.converter.take() {
            Some(c) => c.finish()?,
            None => WriteBatch::new(),
        };
        // Milliseconds of parsing at most: off the connection worker.
        offload::blocking(|| convert(&self.def, &self.targets, last, &mut batch))?;
        Ok(batch)
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
    /// Open a COPY FROM into the table named by `table` (its name's normalized
    /// parts, resolved by the search path); `columns` empty means all, in table
    /// order. `binary`: its rows come in PostgreSQL's binary format
    /// ([`CopyIn::push_binary`]).
    pub fn copy_in(&self, table: &[String], columns: &[String], binary: bool) -> Result<CopyIn> {
        self.check_not_failed()?;
        self.check_writable("COPY FROM")?;
        let def = self.names().table(table)?;
        let table = def.bare_name();
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
            fields: if binary {
                FieldBuffers::Binary(targets.iter().map(|_| BinaryBuilder::new()).collect())
            } else {
                FieldBuffers::Text(targets.iter().map(|_| StringBuilder::new()).collect())
            },
            trim,
            buffered: 0,
            targets: targets.into(),
            def,
            rows: 0,
            converter: None,
        })
    }

    /// Write every row of a COPY as one batch (or add it to the open transaction).
    pub fn finish_copy(&mut self, copy: CopyIn, line: u64) -> Result<u64> {
        let rows = copy.rows;
        let result = copy.into_batch(line).and_then(|batch| self.write(batch));
        if result.is_err() {
            self.mark_failed();
        }
        result.map(|()| rows)
    }
}
