//! Row encoding shared by both protocols: RowDescription from an Arrow schema,
//! per-column result formats, DataRows from Arrow batches or looked-up rows, and
//! command tags.

use bytes::BytesMut;
use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use hindsight_sql::TransactionStatus;
use hindsight_storage::{DataType as StorageType, Value};
use pgwire::messages::data::{FieldDescription, RowDescription};

use crate::codec::{Codes, RowWriter, begin_row, finish_row};
use crate::sqlstate::ProtocolError;
use crate::types::{encode_cell, encode_value, encode_vector_cell, is_vector, pg_type_of_field};

/// Flush rows to the socket once this many bytes are buffered.
pub(super) const ROW_FLUSH_BYTES: usize = 256 << 10;

/// The command tag of a completed statement (INSERT carries the legacy OID 0).
pub(super) fn command_tag(tag: &str, rows: Option<u64>) -> String {
    match (tag, rows) {
        ("INSERT", Some(n)) => format!("INSERT 0 {n}"),
        (t, Some(n)) => format!("{t} {n}"),
        (t, None) => t.to_string(),
    }
}

/// The transaction status byte of ReadyForQuery.
pub(super) fn status_byte(s: TransactionStatus) -> u8 {
    match s {
        TransactionStatus::Idle => b'I',
        TransactionStatus::InBlock => b'T',
        TransactionStatus::Failed => b'E',
    }
}

/// RowDescription of a result schema with per-column formats.
pub(crate) fn row_description(schema: &SchemaRef, binary: &Formats) -> RowDescription {
    RowDescription::new(
        schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let t = pg_type_of_field(f);
                FieldDescription::new(
                    f.name().clone(),
                    0,
                    0,
                    t.oid,
                    t.size,
                    -1,
                    i16::from(binary.binary(i)),
                )
            })
            .collect(),
    )
}

/// Text or binary, per parameter or result column, as Bind chose. The common
/// choices (no codes: all text; one code: all alike) keep no per-column vector.
#[derive(Clone, Debug)]
pub(crate) enum Formats {
    All(bool),
    Each(Vec<bool>),
}

impl Formats {
    pub(crate) const TEXT: Formats = Formats::All(false);

    /// Resolve Bind's format codes for `n` values.
    pub(super) fn resolve(codes: Codes<'_>, n: usize) -> Result<Formats, ProtocolError> {
        let mut it = codes.iter();
        match codes.len() {
            0 => Ok(Formats::TEXT),
            1 => Ok(Formats::All(it.next() == Some(1))),
            m if m == n => Ok(Formats::Each(it.map(|c| c == 1).collect())),
            m => Err(ProtocolError::Violation(format!(
                "bind message has {m} format codes but {n} values"
            ))),
        }
    }

    /// Whether value `i` is in binary format.
    pub(crate) fn binary(&self, i: usize) -> bool {
        match self {
            Formats::All(b) => *b,
            Formats::Each(v) => v.get(i).copied().unwrap_or(false),
        }
    }

    pub(super) fn any_binary(&self) -> bool {
        match self {
            Formats::All(b) => *b,
            Formats::Each(v) => v.contains(&true),
        }
    }
}

/// Encode one row of a point lookup (storage values) as a DataRow into `buf`.
pub(super) fn encode_lookup_row(
    buf: &mut BytesMut,
    row: &[Value],
    types: &[(StorageType, ArrowType)],
    binary: &Formats,
) {
    let start = begin_row(buf, row.len() as i16);
    for (c, (v, (ty, arrow))) in row.iter().zip(types).enumerate() {
        encode_value(v, *ty, arrow, binary.binary(c), buf);
    }
    finish_row(buf, start);
}

/// Encode `rows` of `batch` as DataRows into `out`, stopping early once the buffer
/// reaches [`ROW_FLUSH_BYTES`]; returns the number of rows encoded (at least one of
/// a non-empty range).
pub(super) fn encode_rows(
    out: &mut RowWriter,
    batch: &RecordBatch,
    rows: std::ops::Range<usize>,
    binary: &Formats,
) -> usize {
    let columns = batch.columns();
    let schema = batch.schema();
    let vectors: Vec<bool> = schema.fields().iter().map(|f| is_vector(f)).collect();
    let end = rows.end.min(batch.num_rows());
    let mut row = rows.start;
    while row < end {
        out.begin(columns.len() as i16);
        for (c, col) in columns.iter().enumerate() {
            if vectors.get(c).copied().unwrap_or(false) {
                encode_vector_cell(col.as_ref(), row, binary.binary(c), &mut out.buf);
            } else {
                encode_cell(col.as_ref(), row, binary.binary(c), &mut out.buf);
            }
        }
        out.finish();
        row += 1;
        if out.len() >= ROW_FLUSH_BYTES {
            break;
        }
    }
    row - rows.start
}
