//! hindsight-storage: an event-time versioned LSM storage engine.
//!
//! Every write is a new *version* of an entity, ordered by (entity key ascending,
//! event time descending, commit sequence descending). Nothing is overwritten in
//! place: the engine answers "the newest version of each entity with event time
//! <= T, as known at sequence S" for point lookups and Arrow scans, and keeps every
//! version for history scans and time travel.
//!
//! The crate has no SQL, no network and no async runtime in its API. See
//! ARCHITECTURE.md for how a write and a read flow through the modules, and FORMAT.md
//! for every byte layout on disk.
//!
//! ```no_run
//! use hindsight_storage::*;
//! # fn main() -> Result<()> {
//! let db = Db::open("/tmp/example", Options::default())?;
//! let table = db.create_table(TableDef::new(
//!     "driver_stats",
//!     vec![
//!         ColumnDef::new("driver_id", DataType::Scalar(ScalarType::Int64)).not_null(),
//!         ColumnDef::new("event_ts", DataType::Scalar(ScalarType::TimestampTz)).not_null(),
//!         ColumnDef::new("conv_rate", DataType::Scalar(ScalarType::Float64)),
//!     ],
//!     vec![0],
//!     Some(1),
//!     TableOptions::default(),
//! ))?;
//! let mut batch = WriteBatch::new();
//! batch.put(&table, &[Value::Int64(7), Value::Timestamp(1_700_000_000_000_000), Value::Float64(0.5)])?;
//! db.write(batch)?;
//! let latest = db.get(&table, &[Value::Int64(7)], &ReadAt::latest(db.now_micros()))?;
//! # let _ = latest;
//! # Ok(()) }
//! ```

mod arrowutil;
mod batch;
mod bounds;
mod catalog;
mod codec;
mod compaction;
mod engine;
mod error;
mod fileset;
mod fsutil;
mod keycodec;
mod manifest;
mod memtable;
mod merge;
pub mod raftlog;
mod rowcodec;
mod scan;
mod snapshot;
mod sst;
mod timefmt;
mod types;
mod version_run;
mod view;
mod wal;

pub use arrowutil::value_array;
pub use batch::{WriteBatch, encode_batch_keys};
pub use catalog::{Catalog, CatalogOp, PUBLIC_SCHEMA, SchemaDef, relation_key, split_relation_key};
pub use engine::{
    CheckpointInfo, Clock, CommitInfo, Db, LevelStats, Member, MemberChange, Options, Outcome,
    Replicate, Role, RoleKind, Stamp, Stats, SyncPolicy, read_checkpoint,
};
pub use error::{Error, Result};
pub use keycodec::{
    decode_key_bytes, encode_key, encode_key_arrays, encode_key_prefix, key_eq, key_head,
    prefix_successor,
};
pub use merge::KeyRange;
pub use scan::{
    DELETED_COLUMN, KEY_COLUMN, SEQ_COLUMN, SYSTEM_TIME_COLUMN, ScanIter, ScanMode, ScanOptions,
};
pub use snapshot::Snapshot;
pub use timefmt::{civil_from_days, fmt_micros};
pub use types::{
    ColumnDef, ColumnRole, DataType, IndexDef, MAX_COLUMNS, ScalarType, TableDef, TableId,
    TableOptions, Value, ViewDef,
};
pub use view::{Projection, ReadAt, Row, SystemAt};
