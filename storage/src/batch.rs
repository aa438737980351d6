//! Write batches: the atomic unit of writing, logging and (later) replication.
//!
//! A [`WriteBatch`] collects validated puts and tombstones for any number of tables.
//! At commit the engine gives it one sequence number and one commit time and encodes
//! it as a WAL payload:
//!
//! ```text
//! payload := seq:u64 commit_micros:i64 n_ops:varint op*
//! op      := 1 table:u32 event_micros:i64 key:bytes row:bytes     (put)
//!          | 2 table:u32 event_micros:i64 key:bytes               (tombstone)
//!          | 3 json:bytes                                          (catalog op)
//! bytes   := len:varint byte*
//! ```
//! Invariants: the payload is self-contained (event times and the row ids of
//! append-only logs are resolved before encoding), so applying a payload is the same
//! code live, on recovery, and on a replica.

use std::ops::Range;

use arrow_array::{Array, RecordBatch};

use crate::arrowutil::{ColumnView, timestamp_view};
use crate::catalog::CatalogOp;
use crate::codec::{Put, Reader};
use crate::error::{DecodeError, DecodeResult, Error, Result};
use crate::keycodec::{encode_i64, encode_key, encode_key_arrays, row_id_key};
use crate::rowcodec;
use crate::types::{ColumnRole, ScalarType, TableDef, TableId, Value};

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CATALOG: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    Put,
    Delete,
}

#[derive(Clone, Debug)]
struct PendingOp {
    kind: OpKind,
    table: TableId,
    /// `None`: the commit time is the event time.
    et: Option<i64>,
    /// Empty for puts into append-only logs (a row id is assigned at commit).
    key: Range<usize>,
    row: Range<usize>,
    row_id: bool,
}

/// An atomic set of writes across tables.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    buf: Vec<u8>,
    ops: Vec<PendingOp>,
    /// Catalog changes, in order; applied before the rows at commit (a row of a
    /// table dropped in the same batch is skipped).
    pub(crate) catalog: Vec<CatalogOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of puts and tombstones.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.catalog.is_empty()
    }

    /// Approximate encoded size in bytes.
    pub fn approximate_bytes(&self) -> usize {
        self.buf.len() + self.ops.len() * 24
    }

    /// The tables this batch writes to.
    pub fn tables(&self) -> impl Iterator<Item = TableId> + '_ {
        self.ops.iter().map(|o| o.table)
    }

    /// A batch holding one catalog change.
    pub fn catalog_only(op: CatalogOp) -> Self {
        WriteBatch {
            catalog: vec![op],
            ..Self::default()
        }
    }

    /// The catalog changes of this batch, in order.
    pub fn catalog_ops(&self) -> &[CatalogOp] {
        &self.catalog
    }

    /// Append all writes of `other` (used by transactions that build in pieces).
    pub fn extend(&mut self, other: &WriteBatch) {
        self.catalog.extend(other.catalog.iter().cloned());
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        for op in &other.ops {
            let mut op = op.clone();
            op.key = op.key.start + base..op.key.end + base;
            op.row = op.row.start + base..op.row.end + base;
            self.ops.push(op);
        }
    }

    /// Add a version of a row given in the table's column order.
    pub fn put(&mut self, table: &TableDef, row: &[Value]) -> Result<()> {
        if row.len() != table.columns.len() {
            return Err(Error::InvalidArgument(format!(
                "table \"{}\" has {} columns, row has {}",
                table.name,
                table.columns.len(),
                row.len()
            )));
        }
        let mut key_vals = Vec::with_capacity(table.key.len());
        let mut features = Vec::with_capacity(row.len());
        let mut et = None;
        for ((v, col), role) in row.iter().zip(&table.columns).zip(table.roles()) {
            v.check_type(col.data_type, &col.name)?;
            if v.is_null() && !col.nullable {
                return Err(Error::NullViolation(col.name.clone()));
            }
            match role {
                ColumnRole::Key(pos) => key_vals.push((pos, v.clone())),
                ColumnRole::EventTime => et = v.as_i64(),
                ColumnRole::Feature(_) => features.push(v),
            }
        }
        key_vals.sort_by_key(|(p, _)| *p);
        let key_vals: Vec<Value> = key_vals.into_iter().map(|(_, v)| v).collect();
        let key_start = self.buf.len();
        if !table.is_log() {
            let names = table.key_names();
            let k = encode_key(&key_vals, &table.key_types(), &names)?;
            self.buf.extend_from_slice(&k);
        }
        let key_end = self.buf.len();
        rowcodec::encode_values(&features, &mut self.buf);
        self.ops.push(PendingOp {
            kind: OpKind::Put,
            table: table.id,
            et,
            key: key_start..key_end,
            row: key_end..self.buf.len(),
            row_id: table.is_log(),
        });
        Ok(())
    }

    /// Add one version per row of `batch`, whose columns are the table's columns in
    /// order (names are not checked; types must match, see `ColumnView`).
    pub fn put_arrow(&mut self, table: &TableDef, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != table.columns.len() {
            return Err(Error::InvalidArgument(format!(
                "table \"{}\" has {} columns, batch has {}",
                table.name,
                table.columns.len(),
                batch.num_columns()
            )));
        }
        let mut key_views: Vec<(usize, ColumnView<'_>)> = Vec::new();
        let mut feature_views = Vec::new();
        let mut feature_names = Vec::new();
        let mut et_view = None;
        for (i, (col, role)) in table.columns.iter().zip(table.roles()).enumerate() {
            let array = batch.column(i).as_ref();
            if !col.nullable && array.null_count() > 0 {
                return Err(Error::NullViolation(col.name.clone()));
            }
            match role {
                ColumnRole::Key(pos) => {
                    key_views.push((pos, ColumnView::new(array, col.data_type, &col.name)?))
                }
                ColumnRole::EventTime => et_view = Some(timestamp_view(array, &col.name)?),
                ColumnRole::Feature(_) => {
                    feature_views.push(ColumnView::new(array, col.data_type, &col.name)?);
                    feature_names.push(col.name.as_str());
                }
            }
        }
        key_views.sort_by_key(|(p, _)| *p);
        let key_views: Vec<ColumnView<'_>> = key_views.into_iter().map(|(_, v)| v).collect();
        let (buf_len, ops_len) = (self.buf.len(), self.ops.len());
        let res = self.put_rows(
            table,
            batch.num_rows(),
            &key_views,
            &feature_views,
            &feature_names,
            et_view,
        );
        if res.is_err() {
            // All or nothing: drop the rows of this call that were already added.
            self.buf.truncate(buf_len);
            self.ops.truncate(ops_len);
        }
        res
    }

    fn put_rows(
        &mut self,
        table: &TableDef,
        rows: usize,
        key_views: &[ColumnView<'_>],
        feature_views: &[ColumnView<'_>],
        feature_names: &[&str],
        et_view: Option<&arrow_array::TimestampMicrosecondArray>,
    ) -> Result<()> {
        let key_types = table.key_types();
        let names = table.key_names();
        let int_key = matches!(key_types.as_slice(), [ScalarType::Int64]);
        self.buf.reserve(rows * 16);
        self.ops.reserve(rows);
        for r in 0..rows {
            let key_start = self.buf.len();
            if int_key {
                let v = key_views.first().and_then(|k| k.i64_at(r)).unwrap_or(0);
                self.buf.extend_from_slice(&encode_i64(v));
            } else if !key_views.is_empty() {
                let vals: Vec<Value> = key_views.iter().map(|k| k.value(r)).collect();
                let k = encode_key(&vals, &key_types, &names)?;
                self.buf.extend_from_slice(&k);
            }
            let key_end = self.buf.len();
            rowcodec::encode_views(feature_views, feature_names, r, &mut self.buf)?;
            self.ops.push(PendingOp {
                kind: OpKind::Put,
                table: table.id,
                et: et_view.map(|e| e.value(r)),
                key: key_start..key_end,
                row: key_end..self.buf.len(),
                row_id: table.is_log(),
            });
        }
        Ok(())
    }

    /// Add a tombstone for the entity with this key (key columns in key order). With
    /// `event_time` `None` the tombstone's event time is its commit time.
    pub fn delete(
        &mut self,
        table: &TableDef,
        key: &[Value],
        event_time: Option<i64>,
    ) -> Result<()> {
        if table.is_log() {
            return Err(Error::InvalidArgument(format!(
                "table \"{}\" has no key; delete its rows with delete_encoded",
                table.name
            )));
        }
        let k = encode_key(key, &table.key_types(), &table.key_names())?;
        self.delete_encoded(table, &k, event_time);
        Ok(())
    }

    /// Add a tombstone for an already-encoded entity key (or a log's row id).
    pub fn delete_encoded(&mut self, table: &TableDef, key: &[u8], event_time: Option<i64>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(key);
        self.ops.push(PendingOp {
            kind: OpKind::Delete,
            table: table.id,
            et: event_time,
            key: start..self.buf.len(),
            row: self.buf.len()..self.buf.len(),
            row_id: false,
        });
    }

    /// Encode as a WAL payload committed at (`seq`, `commit_micros`).
    /// Fails only if the catalog change cannot be serialized or an op's byte range
    /// lies outside the batch buffer (both would be bugs); nothing is half written
    /// into a log, since the caller appends `out` only on success.
    pub(crate) fn encode(&self, seq: u64, commit_micros: i64, out: &mut Vec<u8>) -> Result<()> {
        self.encode_resolved(&Resolved::unchanged(self), seq, commit_micros, out)
    }

    /// Encode with the catalog changes and table ids of `resolved` (the commit's
    /// resolution of this batch's provisional ids).
    pub(crate) fn encode_resolved(
        &self,
        resolved: &Resolved,
        seq: u64,
        commit_micros: i64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.put_u64(seq);
        out.put_i64(commit_micros);
        let n = self.ops.len() + resolved.catalog.len();
        out.put_varint(n as u64);
        for op in &resolved.catalog {
            out.put_u8(OP_CATALOG);
            let json = serde_json::to_vec(op).map_err(|e| Error::encode("a catalog change", e))?;
            out.put_bytes_prefixed(&json);
        }
        for (ordinal, op) in self.ops.iter().enumerate() {
            out.put_u8(match op.kind {
                OpKind::Put => OP_PUT,
                OpKind::Delete => OP_DELETE,
            });
            out.put_u32(resolved.table(op.table).0);
            out.put_i64(op.et.unwrap_or(commit_micros));
            if op.row_id {
                out.put_bytes_prefixed(&row_id_key(seq, ordinal as u32));
            } else {
                out.put_bytes_prefixed(self.bytes(&op.key)?);
            }
            if op.kind == OpKind::Put {
                out.put_bytes_prefixed(self.bytes(&op.row)?);
            }
        }
        Ok(())
    }

    /// The bytes of one op's key or row (ranges the batch built itself).
    fn bytes(&self, range: &std::ops::Range<usize>) -> Result<&[u8]> {
        self.buf.get(range.clone()).ok_or_else(|| {
            Error::encode(
                "a write batch",
                format!(
                    "op range {range:?} outside a {}-byte buffer",
                    self.buf.len()
                ),
            )
        })
    }
}

/// The encoded entity key of every row of `batch` (columns in the table's order).
/// A NULL in a key column is an error naming the column.
pub fn encode_batch_keys(table: &TableDef, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    if table.key.is_empty() {
        return Ok(vec![Vec::new(); batch.num_rows()]);
    }
    let key_cols = table.key.iter().map(|&i| {
        batch.columns().get(i).map(|a| a.as_ref()).ok_or_else(|| {
            let name = table.columns.get(i).map_or("?", |c| c.name.as_str());
            Error::InvalidArgument(format!("batch lacks key column \"{name}\""))
        })
    });
    let arrays = key_cols.collect::<Result<Vec<&dyn Array>>>()?;
    let names = table.key_names();
    let keys = encode_key_arrays(&arrays, &table.key_types(), &names)?;
    if keys.null_count() > 0 {
        let null_col = arrays.iter().zip(&names).find(|(a, _)| a.null_count() > 0);
        return Err(Error::NullViolation(
            null_col.map_or_else(|| "key".to_string(), |(_, n)| n.clone()),
        ));
    }
    Ok(keys
        .iter()
        .map(|k| k.unwrap_or_default().to_vec())
        .collect())
}

/// One decoded operation; ranges index into the payload.
#[derive(Clone, Debug)]
pub(crate) struct DecodedOp {
    pub kind: OpKind,
    pub table: TableId,
    pub et: i64,
    pub key: Range<usize>,
    pub row: Range<usize>,
}

/// A batch's catalog changes and table ids as the commit resolved them: provisional
/// ids of created tables replaced by real ones.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub catalog: Vec<CatalogOp>,
    pub ids: Vec<(TableId, TableId)>,
}

impl Resolved {
    fn unchanged(b: &WriteBatch) -> Resolved {
        Resolved {
            catalog: b.catalog.clone(),
            ids: Vec::new(),
        }
    }

    /// The real id of `t`.
    pub fn table(&self, t: TableId) -> TableId {
        self.ids
            .iter()
            .find(|(from, _)| *from == t)
            .map_or(t, |(_, to)| *to)
    }
}

/// A decoded WAL payload.
#[derive(Debug)]
pub(crate) struct DecodedBatch {
    pub seq: u64,
    pub commit_micros: i64,
    pub ops: Vec<DecodedOp>,
    pub catalog: Vec<CatalogOp>,
}

/// The sequence and commit time at the head of a WAL payload, without the ops.
pub(crate) fn header(payload: &[u8]) -> DecodeResult<(u64, i64)> {
    let mut r = Reader::new(payload);
    Ok((r.u64("batch seq")?, r.i64("batch commit time")?))
}

/// Parse a WAL payload.
pub(crate) fn decode(payload: &[u8]) -> DecodeResult<DecodedBatch> {
    let mut r = Reader::new(payload);
    let seq = r.u64("batch seq")?;
    let commit_micros = r.i64("batch commit time")?;
    let n = r.len(payload.len(), "op count")?;
    let mut ops = Vec::with_capacity(n);
    let mut catalog = Vec::new();
    for _ in 0..n {
        let tag = r.u8("op tag")?;
        match tag {
            OP_PUT | OP_DELETE => {
                let table = TableId(r.u32("op table")?);
                let et = r.i64("op event time")?;
                let key = range_of(&mut r, payload, "op key")?;
                let row = if tag == OP_PUT {
                    range_of(&mut r, payload, "op row")?
                } else {
                    key.end..key.end
                };
                ops.push(DecodedOp {
                    kind: if tag == OP_PUT {
                        OpKind::Put
                    } else {
                        OpKind::Delete
                    },
                    table,
                    et,
                    key,
                    row,
                });
            }
            OP_CATALOG => {
                let json = r.bytes_prefixed("catalog op")?;
                let op: CatalogOp = serde_json::from_slice(json)
                    .map_err(|e| r.err(format!("bad catalog op: {e}")))?;
                catalog.push(op);
            }
            other => return Err(r.err(format!("unknown op tag {other}"))),
        }
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after batch"));
    }
    Ok(DecodedBatch {
        seq,
        commit_micros,
        ops,
        catalog,
    })
}

fn range_of(r: &mut Reader<'_>, payload: &[u8], what: &str) -> DecodeResult<Range<usize>> {
    let b = r.bytes_prefixed(what)?;
    let start = b.as_ptr() as usize - payload.as_ptr() as usize;
    if start + b.len() > payload.len() {
        return Err(DecodeError::new(start, "range outside payload"));
    }
    Ok(start..start + b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ColumnDef, DataType, TableOptions};
    use std::sync::Arc;

    fn table() -> TableDef {
        let mut t = TableDef::new(
            "t",
            vec![
                ColumnDef::new("id", DataType::Scalar(ScalarType::Int64)).not_null(),
                ColumnDef::new("ts", DataType::Scalar(ScalarType::TimestampTz)).not_null(),
                ColumnDef::new("x", DataType::Scalar(ScalarType::Float64)),
                ColumnDef::new("tag", DataType::Scalar(ScalarType::Text)),
            ],
            vec![0],
            Some(1),
            TableOptions::default(),
        );
        t.id = TableId(3);
        t
    }

    #[test]
    fn put_and_delete_encode_and_decode() {
        let t = table();
        let mut b = WriteBatch::new();
        b.put(
            &t,
            &[
                Value::Int64(7),
                Value::Timestamp(100),
                Value::Float64(0.5),
                Value::Null,
            ],
        )
        .unwrap();
        b.delete(&t, &[Value::Int64(7)], None).unwrap();
        let mut payload = Vec::new();
        b.encode(42, 999, &mut payload).unwrap();
        let d = decode(&payload).unwrap();
        assert_eq!((d.seq, d.commit_micros), (42, 999));
        assert_eq!(d.ops.len(), 2);
        assert_eq!(d.ops[0].et, 100);
        assert_eq!(d.ops[1].et, 999, "tombstone defaults to commit time");
        assert_eq!(&payload[d.ops[0].key.clone()], &encode_i64(7));
        let row =
            rowcodec::decode_values(&payload[d.ops[0].row.clone()], &t.feature_types()).unwrap();
        assert_eq!(row, vec![Value::Float64(0.5), Value::Null]);
    }

    #[test]
    fn arrow_rows_encode_like_value_rows() {
        use arrow_array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
        let t = table();
        let rb = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as _),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![5, 6]).with_timezone("UTC")) as _,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(1.0), None])) as _,
            ),
            (
                "tag",
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])) as _,
            ),
        ])
        .unwrap();
        let mut a = WriteBatch::new();
        a.put_arrow(&t, &rb).unwrap();
        let mut v = WriteBatch::new();
        v.put(
            &t,
            &[
                Value::Int64(1),
                Value::Timestamp(5),
                Value::Float64(1.0),
                Value::Text("a".into()),
            ],
        )
        .unwrap();
        v.put(
            &t,
            &[
                Value::Int64(2),
                Value::Timestamp(6),
                Value::Null,
                Value::Text("b".into()),
            ],
        )
        .unwrap();
        let (mut pa, mut pv) = (Vec::new(), Vec::new());
        a.encode(1, 1, &mut pa).unwrap();
        v.encode(1, 1, &mut pv).unwrap();
        assert_eq!(pa, pv);
    }

    #[test]
    fn null_key_and_wrong_types_are_rejected() {
        let t = table();
        let mut b = WriteBatch::new();
        let e = b
            .put(
                &t,
                &[Value::Null, Value::Timestamp(1), Value::Null, Value::Null],
            )
            .unwrap_err();
        assert!(matches!(e, Error::NullViolation(_)));
        let e = b
            .put(
                &t,
                &[
                    Value::Int64(1),
                    Value::Timestamp(1),
                    Value::Text("x".into()),
                    Value::Null,
                ],
            )
            .unwrap_err();
        assert!(matches!(e, Error::InvalidValue { .. }));
        assert!(b.is_empty());
    }

    #[test]
    fn damaged_payloads_are_errors() {
        let t = table();
        let mut b = WriteBatch::new();
        b.put(
            &t,
            &[
                Value::Int64(1),
                Value::Timestamp(1),
                Value::Float64(2.0),
                Value::Null,
            ],
        )
        .unwrap();
        let mut p = Vec::new();
        b.encode(1, 1, &mut p).unwrap();
        for cut in 0..p.len() {
            assert!(decode(&p[..cut]).is_err(), "cut at {cut} decoded");
        }
    }
}
