//! The data of `../shared/bench/gen.py`, generated in Rust with the same formulas
//! (splitmix64 of entity, version and column), so Hindsight's benchmarks and the peer
//! scripts see identical values and checksums. Shared by the storage and SQL benches
//! (`#[path]`-included).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use hindsight_storage::*;

pub const BASE: i64 = 1_704_067_200; // 2024-01-01 00:00:00 UTC
pub const DAY: i64 = 86_400;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const SEED: u64 = 42;

#[path = "../../tests/common/splitmix.rs"]
mod splitmix;
pub use splitmix::{GOLD, mix64};

pub fn u(ma: u64, b: u64, k: u64) -> u64 {
    mix64(ma ^ b.wrapping_mul(GOLD) ^ k.wrapping_mul(K2) ^ SEED)
}

pub fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn entities() -> i64 {
    env("HINDSIGHT_BENCH_ENTITIES", 1_000_000)
}
pub fn versions() -> i64 {
    env("HINDSIGHT_BENCH_VERSIONS", 10)
}

/// One generated version: (entity, event time in microseconds, f1..f8, c1, c2).
pub struct Gen {
    pub e: Vec<i64>,
    pub ts: Vec<i64>,
    pub f: [Vec<f64>; 8],
    pub c1: Vec<i64>,
    pub c2: Vec<i64>,
}

impl Gen {
    pub fn new(cap: usize) -> Gen {
        Gen {
            e: Vec::with_capacity(cap),
            ts: Vec::with_capacity(cap),
            f: std::array::from_fn(|_| Vec::with_capacity(cap)),
            c1: Vec::with_capacity(cap),
            c2: Vec::with_capacity(cap),
        }
    }

    pub fn push(&mut self, e: i64, v: i64, nv: i64) {
        let slot = (30 * DAY) / nv;
        let me = mix64(e as u64);
        let vv = v as u64;
        let ts = BASE + v * slot + (u(me, vv, 0) % slot as u64) as i64;
        self.e.push(e);
        self.ts.push(ts * 1_000_000);
        for j in 0..8 {
            self.f[j]
                .push((u(me, vv, j as u64 + 1) >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0));
        }
        self.c1.push((u(me, vv, 9) % 1000) as i64);
        self.c2.push((u(me, vv, 10) % 1_000_000_000) as i64);
    }

    pub fn batch(self) -> RecordBatch {
        let mut cols: Vec<(&str, ArrayRef)> = vec![
            ("entity_id", Arc::new(Int64Array::from(self.e))),
            (
                "event_ts",
                Arc::new(TimestampMicrosecondArray::from(self.ts).with_timezone("+00:00")),
            ),
        ];
        let names = ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8"];
        for (name, f) in names.iter().zip(self.f) {
            cols.push((name, Arc::new(Float64Array::from(f))));
        }
        cols.push(("c1", Arc::new(Int64Array::from(self.c1))));
        cols.push(("c2", Arc::new(Int64Array::from(self.c2))));
        RecordBatch::try_from_iter(cols).unwrap()
    }
}

pub fn features_table(ts_type: ScalarType) -> TableDef {
    let mut cols = vec![
        ColumnDef::new("entity_id", DataType::Scalar(ScalarType::Int64)).not_null(),
        ColumnDef::new("event_ts", DataType::Scalar(ts_type)).not_null(),
    ];
    for j in 1..=8 {
        cols.push(ColumnDef::new(
            format!("f{j}"),
            DataType::Scalar(ScalarType::Float64),
        ));
    }
    cols.push(ColumnDef::new("c1", DataType::Scalar(ScalarType::Int64)));
    cols.push(ColumnDef::new("c2", DataType::Scalar(ScalarType::Int64)));
    TableDef::new("features", cols, vec![0], Some(1), TableOptions::default())
}

/// Spine row `i` of `s`: (entity, time in microseconds), as gen.py's `gen_spine`.
pub fn spine_row(i: u64, e: i64) -> (i64, i64) {
    let ma = mix64(i + (1 << 40));
    let entity = 1 + (u(ma, 0, 0) % e as u64) as i64;
    let ts = BASE - 3 * DAY + (u(ma, 0, 1) % (33 * DAY as u64)) as i64;
    (entity, ts * 1_000_000)
}

/// A batch of spine rows `from..to` (entity_id BIGINT, ts TIMESTAMP).
pub fn spine_batch(from: u64, to: u64, e: i64) -> RecordBatch {
    let (ids, ts): (Vec<i64>, Vec<i64>) = (from..to).map(|i| spine_row(i, e)).unzip();
    RecordBatch::try_from_iter(vec![
        ("entity_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(ts)) as ArrayRef,
        ),
    ])
    .unwrap()
}

/// Where built data sets are cached between runs: `HINDSIGHT_BENCH_DIR`, else
/// `$CARGO_TARGET_DIR/bench-data`, else the system temp directory.
pub fn bench_dir(name: &str) -> PathBuf {
    let base = std::env::var("HINDSIGHT_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("bench-data")))
        .unwrap_or_else(|_| std::env::temp_dir().join("hindsight-bench-data"));
    base.join(name)
}

/// Rows in "event log" order: version-major, entities interleaved.
pub fn ingest_rows(db: &Db, table: &TableDef, e_count: i64, v_count: i64, batch_rows: usize) {
    let mut g = Gen::new(batch_rows);
    for v in 0..v_count {
        for e in 1..=e_count {
            g.push(e, v, v_count);
            if g.e.len() == batch_rows {
                let mut wb = WriteBatch::new();
                wb.put_arrow(
                    table,
                    &std::mem::replace(&mut g, Gen::new(batch_rows)).batch(),
                )
                .unwrap();
                db.write(wb).unwrap();
            }
        }
    }
    if !g.e.is_empty() {
        let mut wb = WriteBatch::new();
        wb.put_arrow(table, &g.batch()).unwrap();
        db.write(wb).unwrap();
    }
}
