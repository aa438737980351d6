//! Helpers shared by the storage integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType as AT;
use hindsight_storage::*;

mod splitmix;
#[allow(unused_imports)] // not every test target draws random data
pub use splitmix::Rng;

/// A clock the test moves by hand.
#[derive(Clone, Debug)]
pub struct ManualClock(pub Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start)))
    }
    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, d: i64) -> i64 {
        self.0.fetch_add(d, Ordering::SeqCst) + d
    }
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn clock(&self) -> Clock {
        let a = self.0.clone();
        Clock::new(move || a.load(Ordering::SeqCst))
    }
}

/// Options that exercise every moving part with little data.
pub fn tiny_options(clock: Clock) -> Options {
    Options {
        sync: SyncPolicy::Never,
        memtable_bytes: 8 << 10,
        max_sealed_memtables: 2,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 6,
        l0_stop_trigger: 10,
        level1_bytes: 16 << 10,
        level_multiplier: 4,
        target_file_bytes: 8 << 10,
        block_rows: 7,
        block_bytes: 1 << 10,
        bloom_bits_per_key: 10,
        background_threads: true,
        clock,
    }
}

pub fn i64c(name: &str) -> ColumnDef {
    ColumnDef::new(name, DataType::Scalar(ScalarType::Int64))
}
pub fn f64c(name: &str) -> ColumnDef {
    ColumnDef::new(name, DataType::Scalar(ScalarType::Float64))
}
pub fn textc(name: &str) -> ColumnDef {
    ColumnDef::new(name, DataType::Scalar(ScalarType::Text))
}
pub fn tsc(name: &str) -> ColumnDef {
    ColumnDef::new(name, DataType::Scalar(ScalarType::TimestampTz))
}

/// `driver_stats(driver_id BIGINT key, event_ts TIMESTAMPTZ event time, conv_rate DOUBLE, note TEXT)`.
pub fn driver_stats(options: TableOptions) -> TableDef {
    TableDef::new(
        "driver_stats",
        vec![
            i64c("driver_id").not_null(),
            tsc("event_ts").not_null(),
            f64c("conv_rate"),
            textc("note"),
        ],
        vec![0],
        Some(1),
        options,
    )
}

/// Every row of every batch as values.
pub fn rows(batches: impl IntoIterator<Item = Result<RecordBatch>>) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for b in batches {
        let b = b.expect("scan batch");
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| value_at(c.as_ref(), r))
                    .collect(),
            );
        }
    }
    out
}

/// One cell of an Arrow array as a storage value.
pub fn value_at(a: &dyn Array, r: usize) -> Value {
    if a.is_null(r) {
        return Value::Null;
    }
    match a.data_type() {
        AT::Boolean => Value::Bool(a.as_boolean().value(r)),
        AT::Int16 => Value::Int16(a.as_primitive::<Int16Type>().value(r)),
        AT::Int32 => Value::Int32(a.as_primitive::<Int32Type>().value(r)),
        AT::Int64 => Value::Int64(a.as_primitive::<Int64Type>().value(r)),
        AT::UInt64 => {
            Value::Int64(a.as_primitive::<arrow_array::types::UInt64Type>().value(r) as i64)
        }
        AT::Float32 => Value::Float32(a.as_primitive::<Float32Type>().value(r)),
        AT::Float64 => Value::Float64(a.as_primitive::<Float64Type>().value(r)),
        AT::Utf8 => Value::Text(a.as_string::<i32>().value(r).to_string()),
        AT::Binary => Value::Bytes(a.as_binary::<i32>().value(r).to_vec()),
        AT::Date32 => Value::Date(a.as_primitive::<arrow_array::types::Date32Type>().value(r)),
        AT::Timestamp(_, _) => {
            Value::Timestamp(a.as_primitive::<TimestampMicrosecondType>().value(r))
        }
        AT::List(_) => {
            let l = a.as_list::<i32>();
            let v = l.value(r);
            Value::List((0..v.len()).map(|i| value_at(v.as_ref(), i)).collect())
        }
        other => panic!("unexpected type {other}"),
    }
}
