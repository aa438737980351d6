//! The read API: a [`Snapshot`] pins one published view and one visible sequence,
//! and answers point lookups (single, batched, per-request read points) and scans.
//!
//! Invariants: a snapshot never changes once taken (later commits, flushes and
//! compactions publish new views; this one keeps its files readable through their
//! mmaps); a read at a past system time is resolved to a sequence inside retained
//! history or refused (never silently answered from the present); a transaction's
//! overlay is visible to current-time reads only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::arrowutil::ColumnBuilder;
use crate::batch::{self, WriteBatch};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::keycodec::encode_key;
use crate::memtable::{MemTable, Payload};
use crate::scan::{ScanIter, ScanOptions, arrow_err};
use crate::timefmt::fmt_micros;
use crate::types::{TableDef, TableId, Value};
use crate::view::{OVERLAY_SEQ, Projection, ReadAt, Row, SystemAt, View};

/// A consistent, read-only view of the database at one sequence number.
#[derive(Clone)]
pub struct Snapshot {
    view: Arc<View>,
    /// The same view plus a transaction's uncommitted writes (current-state reads).
    overlay: Option<Arc<View>>,
    seq: u64,
    now: i64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seq", &self.seq).finish()
    }
}
impl Snapshot {
    /// A snapshot of `view` at sequence `seq`, taken at wall-clock time `now`.
    pub(crate) fn new(view: Arc<View>, seq: u64, now: i64) -> Snapshot {
        Snapshot {
            view,
            overlay: None,
            seq,
            now,
        }
    }

    /// This snapshot plus the writes of `batch`, as if committed now on top of it:
    /// read-your-writes for an open transaction. The overlay is seen by reads of the
    /// current system time only (time travel never sees uncommitted writes), and it
    /// wins ties with committed versions of the same (key, event time).
    pub fn with_overlay(&self, batch: &WriteBatch) -> Result<Snapshot> {
        if batch.is_empty() {
            return Ok(Snapshot {
                overlay: None,
                ..self.clone()
            });
        }
        let catalog = match batch.catalog_ops() {
            [] => self.view.catalog.clone(),
            ops => Arc::new(self.view.catalog.with_pending(ops)?),
        };
        let mem = MemTable::new(0, self.seq, catalog.clone());
        let mut payload = Vec::with_capacity(batch.approximate_bytes() + 32);
        batch.encode(OVERLAY_SEQ, self.now, &mut payload)?;
        let payload: Payload = Arc::new(payload);
        let decoded = batch::decode(&payload)
            .map_err(|e| Error::corruption("<overlay>", e.offset as u64, e.detail))?;
        mem.apply(&payload, &decoded, &catalog);
        Ok(Snapshot {
            overlay: Some(Arc::new(View {
                overlay: Some(Arc::new(mem)),
                catalog,
                ..(*self.view).clone()
            })),
            ..self.clone()
        })
    }

    /// The view a read at `system` uses.
    fn view_at(&self, system: SystemAt) -> &View {
        match (&self.overlay, system) {
            (Some(v), SystemAt::Current) => v,
            _ => &self.view,
        }
    }

    /// Number of versions (including tombstones) of `table` in this snapshot's files
    /// and memtables: an upper bound of what a history scan returns.
    pub fn version_count(&self, table: TableId) -> u64 {
        let view = self.view_at(SystemAt::Current);
        let mem: u64 = view
            .memtables()
            .filter_map(|m| m.table(table))
            .map(|t| t.rows.load(Ordering::Relaxed))
            .sum();
        let files: u64 = view
            .files
            .table(table)
            .map_or(0, |f| f.all().map(|f| f.meta.rows).sum());
        mem + files
    }

    /// The sequence this snapshot reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Wall-clock time when the snapshot was taken (the "now" of TTL).
    pub fn now_micros(&self) -> i64 {
        self.now
    }

    /// The catalog as of the snapshot, with the overlay's uncommitted changes.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.view_at(SystemAt::Current).catalog
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.catalog()
            .table(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchTable(name.to_string()))
    }

    /// The sequence a read at `system` sees for `table`, checking that the time lies
    /// inside retained history and not in the future.
    pub fn resolve(&self, table: &TableDef, system: SystemAt) -> Result<u64> {
        match system {
            SystemAt::Current => Ok(self.seq),
            SystemAt::Seq(s) => Ok(s.min(self.seq)),
            SystemAt::Micros(t) => {
                if t > self.now {
                    return Err(Error::OutsideRetention(format!(
                        "system time {} is in the future (now is {})",
                        fmt_micros(t),
                        fmt_micros(self.now)
                    )));
                }
                if t < table.created_micros {
                    return Err(Error::OutsideRetention(format!(
                        "table \"{}\" did not exist at system time {} (created {})",
                        table.name,
                        fmt_micros(t),
                        fmt_micros(table.created_micros)
                    )));
                }
                if let Some(r) = table.options.retention_micros
                    && t < self.now.saturating_sub(r)
                {
                    return Err(Error::OutsideRetention(format!(
                        "system time {} is older than the retained history of table \"{}\" (retention {} s)",
                        fmt_micros(t),
                        table.name,
                        r / 1_000_000
                    )));
                }
                Ok(self.seq_at_or_before(table.id, t)?.min(self.seq))
            }
        }
    }

    /// The largest sequence holding versions of `table` committed at or before `t`.
    fn seq_at_or_before(&self, table: TableId, t: i64) -> Result<u64> {
        let mut best = 0;
        for m in self.view.memtables() {
            if m.table(table).is_some()
                && let Some(s) = m.last_seq_at_or_before(t)
            {
                best = best.max(s);
            }
        }
        if let Some(files) = self.view.files.table(table) {
            for f in files.all() {
                if let Some(s) = f.reader.last_seq_at_or_before(t)? {
                    best = best.max(s);
                }
            }
        }
        Ok(best)
    }

    /// The newest version of `key` (key columns in key order) visible at `at`, with
    /// tombstones and TTL applied; `None` if the entity is absent.
    pub fn get(
        &self,
        table: &TableDef,
        key: &[Value],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Option<Row>> {
        let k = encode_key(key, &table.key_types(), &table.key_names())?;
        self.get_encoded(table, &k, at, proj)
    }

    /// [`Snapshot::get`] with an already-encoded key.
    pub fn get_encoded(
        &self,
        table: &TableDef,
        key: &[u8],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Option<Row>> {
        let seq = self.resolve(table, at.system)?;
        self.view_at(at.system).get(table, key, at, seq, proj)
    }

    /// Point lookups of many keys; results in the order of `keys`.
    pub fn multi_get(
        &self,
        table: &TableDef,
        keys: &[Vec<Value>],
        at: &ReadAt,
        proj: &Projection,
    ) -> Result<Vec<Option<Row>>> {
        let seq = self.resolve(table, at.system)?;
        let types = table.key_types();
        let names = table.key_names();
        let view = self.view_at(at.system);
        keys.iter()
            .map(|k| {
                let enc = encode_key(k, &types, &names)?;
                view.get(table, &enc, at, seq, proj)
            })
            .collect()
    }

    /// Point lookups of already-encoded keys as one Arrow batch of `columns` (all if
    /// `None`), in the order of `keys`; absent entities are omitted.
    pub fn lookup_batch(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        columns: Option<&[usize]>,
    ) -> Result<arrow_array::RecordBatch> {
        let proj = Projection::new(table, columns)?;
        let schema = Arc::new(table.arrow_schema(columns));
        self.lookup_projected(table, keys, at, &proj, schema)
    }

    /// [`Snapshot::lookup_batch`] with the projection and the output schema resolved
    /// by the caller (a prepared lookup resolves them once). `schema` must have the
    /// projection's column types; its names and nullability are the caller's.
    pub fn lookup_projected(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        proj: &Projection,
        schema: arrow_schema::SchemaRef,
    ) -> Result<arrow_array::RecordBatch> {
        let mut builders: Vec<ColumnBuilder> = proj
            .types()
            .iter()
            .map(|&ty| ColumnBuilder::new(ty, keys.len()))
            .collect();
        let n = self.lookup_rows(table, keys, at, proj, |row| {
            for (b, v) in builders.iter_mut().zip(row) {
                b.append_value(v);
            }
        })?;
        let arrays = builders.into_iter().map(|b| b.finish()).collect();
        arrow_array::RecordBatch::try_new_with_options(
            schema,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(arrow_err)
    }

    /// Point lookups of already-encoded keys, row by row: `row` is called with the
    /// projected values of each present entity, in the order of `keys` (absent
    /// entities are skipped), from one reused buffer. Returns the number of rows.
    /// This is the online path: nothing is allocated per row for fixed-width values.
    pub fn lookup_rows(
        &self,
        table: &TableDef,
        keys: &[Vec<u8>],
        at: &ReadAt,
        proj: &Projection,
        mut row: impl FnMut(&[Value]),
    ) -> Result<usize> {
        let seq = self.resolve(table, at.system)?;
        let view = self.view_at(at.system);
        let mut values = Vec::with_capacity(proj.types().len());
        let mut n = 0;
        for k in keys {
            if view
                .get_into(table, k, at, seq, proj, &mut values)?
                .is_some()
            {
                row(&values);
                n += 1;
            }
        }
        Ok(n)
    }

    /// One point lookup per request, each at its own read point: a batch with one row
    /// per request, all-NULL where the entity is absent (left-join style). All
    /// requests must read the same system time (`SystemAt`).
    pub fn lookup_each(
        &self,
        table: &TableDef,
        requests: &[(Vec<u8>, ReadAt)],
        columns: Option<&[usize]>,
    ) -> Result<arrow_array::RecordBatch> {
        let system = requests
            .first()
            .map_or(SystemAt::Current, |(_, at)| at.system);
        if requests.iter().any(|(_, at)| at.system != system) {
            return Err(Error::InvalidArgument(
                "lookup_each needs one system time".into(),
            ));
        }
        let seq = self.resolve(table, system)?;
        let proj = Projection::new(table, columns)?;
        let view = self.view_at(system);
        let schema = Arc::new(table.arrow_schema(columns));
        let mut builders: Vec<ColumnBuilder> = proj
            .types()
            .iter()
            .map(|&ty| ColumnBuilder::new(ty, requests.len()))
            .collect();
        for (k, at) in requests {
            match view.get(table, k, at, seq, &proj)? {
                Some(row) => {
                    for (b, v) in builders.iter_mut().zip(&row.values) {
                        b.append_value(v);
                    }
                }
                None => builders.iter_mut().for_each(|b| b.append_null()),
            }
        }
        let nullable = Arc::new(arrow_schema::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let arrays = builders.into_iter().map(|b| b.finish()).collect();
        arrow_array::RecordBatch::try_new_with_options(
            nullable,
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(requests.len())),
        )
        .map_err(arrow_err)
    }

    /// Stream versions of `table` as Arrow batches.
    pub fn scan(&self, table: &TableDef, opts: &ScanOptions) -> Result<ScanIter> {
        let seq = self.resolve(table, opts.at.system)?;
        crate::scan::scan(self.view_at(opts.at.system), table, opts, seq)
    }
}
