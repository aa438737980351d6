//! The cluster's SQL surface: the admin functions (`hindsight_transfer_leader`,
//! `hindsight_add_learner`, `hindsight_promote`, `hindsight_remove_node`, run on
//! the leader) and system views computed from the engine's live state at each scan:
//! `hindsight_cluster` (every member of a replicated group, as this node knows it)
//! and `pg_catalog.pg_stat_replication` (on the leader, a row per reachable
//! follower, with PostgreSQL 16's column names).
//!
//! Invariants: a view holds no state of its own; each scan reads `Db::members()` and
//! `Db::role()` once, so one statement sees one consistent picture. An LSN is an
//! engine sequence written as `pg_lsn` text (`hi/lo` in hex): differences count
//! commit batches, not bytes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, IntervalMonthDayNanoArray, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{
    DataType as ArrowType, Field, IntervalUnit, Schema, SchemaRef, TimeUnit,
};
use datafusion::catalog::{MemTable, Session as DfSession, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, TableType, Volatility, create_udf};
use datafusion::physical_plan::ExecutionPlan;
use hindsight_storage::{Db, Member, MemberChange, RoleKind};

use crate::error::{ErrorKind, SqlError};

/// The cluster view's name (schema `public`, found before user tables).
pub const CLUSTER_VIEW: &str = "hindsight_cluster";
/// The replication view's name (schema `pg_catalog`, and unqualified).
pub const STAT_REPLICATION_VIEW: &str = "pg_stat_replication";

/// The cluster's admin functions, each run on the leader and blocking the
/// statement until done; each answers a line of text saying what happened.
/// Errors: 22023 on a single node or for a bad node id or address, 25006 on a
/// follower (naming the leader), 55000 when the cluster refuses (a target not
/// caught up, removing the leader), 40003 when a change may or may not have
/// committed.
///
/// - `hindsight_transfer_leader(n)`: hand leadership to voter `n` (about two
///   election timeouts; writes pause meanwhile).
/// - `hindsight_add_learner(n, 'host:port')`: replicate to node `n` (started with
///   `--join`) at that Raft address; it catches up by snapshot and log.
/// - `hindsight_promote(n)`: make caught-up learner `n` a voter.
/// - `hindsight_remove_node(n)`: take voter or learner `n` out of the cluster.
pub(crate) fn admin_udfs(db: &Db) -> Vec<ScalarUDF> {
    let with_db = |f: fn(&Db, &[ColumnarValue]) -> Result<String, SqlError>| {
        let db = db.clone();
        Arc::new(move |args: &[ColumnarValue]| {
            let answer = f(&db, args).map_err(SqlError::into_datafusion)?;
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(answer))))
        })
    };
    let udf = |name: &str, args: Vec<ArrowType>, f| {
        create_udf(
            name,
            args,
            ArrowType::Utf8,
            Volatility::Volatile,
            with_db(f),
        )
    };
    vec![
        udf(
            "hindsight_transfer_leader",
            vec![ArrowType::Int64],
            |db, a| Ok(db.transfer_leader(node_arg(a, "hindsight_transfer_leader")?)?),
        ),
        udf(
            "hindsight_add_learner",
            vec![ArrowType::Int64, ArrowType::Utf8],
            |db, a| {
                let node = node_arg(a, "hindsight_add_learner")?;
                let raft_addr = text_arg(a, 1).ok_or_else(|| {
                    SqlError::new(
                        ErrorKind::InvalidParameterValue,
                        "hindsight_add_learner takes a node id and its Raft address ('host:port')",
                    )
                })?;
                Ok(db.change_members(MemberChange::AddLearner { node, raft_addr })?)
            },
        ),
        udf("hindsight_promote", vec![ArrowType::Int64], |db, a| {
            let node = node_arg(a, "hindsight_promote")?;
            Ok(db.change_members(MemberChange::Promote { node })?)
        }),
        udf("hindsight_remove_node", vec![ArrowType::Int64], |db, a| {
            let node = node_arg(a, "hindsight_remove_node")?;
            Ok(db.change_members(MemberChange::Remove { node })?)
        }),
    ]
}

/// PostgreSQL's WAL position functions, answered with applied sequences as
/// `pg_lsn` text (the same number on every replica):
/// - `pg_current_wal_lsn()`: on the leader (or a single node) the last applied
///   commit; on a standby 55000 "recovery is in progress", as PostgreSQL.
/// - `pg_last_wal_receive_lsn()`, `pg_last_wal_replay_lsn()`: on a standby what
///   it has applied; NULL elsewhere.
/// - `pg_last_xact_replay_timestamp()`: on a standby the commit time of the last
///   applied commit; NULL elsewhere.
pub(crate) fn wal_udfs(db: &Db) -> Vec<ScalarUDF> {
    let standby = |db: &Db| !db.role().takes_writes();
    let text_udf = |name: &'static str, f: fn(&Db) -> Result<Option<String>, SqlError>| {
        let db = db.clone();
        create_udf(
            name,
            vec![],
            ArrowType::Utf8,
            Volatility::Volatile,
            Arc::new(move |_: &[ColumnarValue]| {
                let v = f(&db).map_err(SqlError::into_datafusion)?;
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v)))
            }),
        )
    };
    let replayed = |db: &Db| Ok((!db.role().takes_writes()).then(|| lsn(db.visible_seq())));
    let db2 = db.clone();
    vec![
        text_udf("pg_current_wal_lsn", |db| {
            if !db.role().takes_writes() {
                return Err(SqlError::new(
                    ErrorKind::NotInPrerequisiteState,
                    "recovery is in progress",
                )
                .with_hint("WAL control functions cannot be executed during recovery."));
            }
            Ok(Some(lsn(db.visible_seq())))
        }),
        text_udf("pg_last_wal_receive_lsn", replayed),
        text_udf("pg_last_wal_replay_lsn", replayed),
        create_udf(
            "pg_last_xact_replay_timestamp",
            vec![],
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Volatility::Volatile,
            Arc::new(move |_: &[ColumnarValue]| {
                let at = standby(&db2).then(|| db2.last_commit_micros());
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    at,
                    Some("+00:00".into()),
                )))
            }),
        ),
    ]
}

/// The one value of argument `i` (a literal, or a one-row array).
fn scalar_arg(args: &[ColumnarValue], i: usize) -> Option<ScalarValue> {
    match args.get(i)? {
        ColumnarValue::Scalar(v) => Some(v.clone()),
        ColumnarValue::Array(a) if a.len() == 1 => ScalarValue::try_from_array(a, 0).ok(),
        ColumnarValue::Array(_) => None,
    }
}

/// The node id in the first argument (a positive integer).
fn node_arg(args: &[ColumnarValue], function: &str) -> Result<u64, SqlError> {
    match scalar_arg(args, 0) {
        Some(ScalarValue::Int64(Some(n))) if n > 0 => Ok(n as u64),
        _ => Err(SqlError::new(
            ErrorKind::InvalidParameterValue,
            format!("{function} takes a node id (a positive integer)"),
        )),
    }
}

fn text_arg(args: &[ColumnarValue], i: usize) -> Option<String> {
    match scalar_arg(args, i)? {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

/// The live view called `name`, if it is one.
pub(crate) fn view(name: &str, db: &Db) -> Option<Arc<dyn TableProvider>> {
    let kind = match name.to_ascii_lowercase().as_str() {
        CLUSTER_VIEW => ViewKind::Cluster,
        STAT_REPLICATION_VIEW => ViewKind::StatReplication,
        _ => return None,
    };
    let db = db.clone();
    Some(Arc::new(ComputedView::new(kind.schema(), move |_| {
        kind.columns(&db)
    })))
}

#[derive(Debug, Clone, Copy)]
enum ViewKind {
    Cluster,
    StatReplication,
}

impl ViewKind {
    fn schema(self) -> SchemaRef {
        let text = |n: &str| Field::new(n, ArrowType::Utf8, true);
        let int = |n: &str| Field::new(n, ArrowType::Int64, true);
        let int4 = |n: &str| Field::new(n, ArrowType::Int32, true);
        let ts = |n: &str| {
            Field::new(
                n,
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            )
        };
        let interval =
            |n: &str| Field::new(n, ArrowType::Interval(IntervalUnit::MonthDayNano), true);
        let fields = match self {
            ViewKind::Cluster => vec![
                Field::new("node_id", ArrowType::Int64, false),
                Field::new("role", ArrowType::Utf8, false),
                int("term"),
                text("pg_addr"),
                text("raft_addr"),
                int("last_log_index"),
                int("applied_index"),
                int("applied_seq"),
                text("applied_lsn"),
                int("last_contact_ms"),
                Field::new("is_self", ArrowType::Boolean, false),
            ],
            ViewKind::StatReplication => vec![
                int4("pid"),
                int4("usesysid"),
                text("usename"),
                text("application_name"),
                text("client_addr"),
                text("client_hostname"),
                int4("client_port"),
                ts("backend_start"),
                text("backend_xmin"),
                text("state"),
                text("sent_lsn"),
                text("write_lsn"),
                text("flush_lsn"),
                text("replay_lsn"),
                interval("write_lag"),
                interval("flush_lag"),
                interval("replay_lag"),
                int4("sync_priority"),
                text("sync_state"),
                ts("reply_time"),
            ],
        };
        Arc::new(Schema::new(fields))
    }

    fn columns(self, db: &Db) -> Vec<ArrayRef> {
        match self {
            ViewKind::Cluster => cluster_columns(&cluster_rows(db)),
            ViewKind::StatReplication => replication_columns(db),
        }
    }
}

/// A sequence as `pg_lsn` text.
pub fn lsn(seq: u64) -> String {
    format!("{:X}/{:X}", seq >> 32, seq & 0xFFFF_FFFF)
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|v| i64::try_from(v).ok())
}

/// The members, or on a single node one row for itself.
fn cluster_rows(db: &Db) -> Vec<Member> {
    let members = db.members();
    if !members.is_empty() {
        return members;
    }
    let seq = db.visible_seq();
    vec![Member {
        node: 0,
        role: RoleKind::Single.name().to_string(),
        term: 0,
        pg_addr: None,
        raft_addr: String::new(),
        applied_seq: Some(seq),
        applied_index: None,
        last_log_index: None,
        matched_index: None,
        last_contact_ms: Some(0),
        is_self: true,
    }]
}

fn cluster_columns(rows: &[Member]) -> Vec<ArrayRef> {
    let opt_text = |f: &dyn Fn(&Member) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let opt_int = |f: &dyn Fn(&Member) -> Option<u64>| -> ArrayRef {
        Arc::new(rows.iter().map(|m| to_i64(f(m))).collect::<Int64Array>())
    };
    vec![
        opt_int(&|m| Some(m.node)),
        opt_text(&|m| Some(m.role.clone())),
        opt_int(&|m| Some(m.term)),
        opt_text(&|m| m.pg_addr.clone()),
        opt_text(&|m| Some(m.raft_addr.clone()).filter(|a| !a.is_empty())),
        opt_int(&|m| m.last_log_index),
        opt_int(&|m| m.applied_index),
        opt_int(&|m| m.applied_seq),
        opt_text(&|m| m.applied_seq.map(lsn)),
        opt_int(&|m| m.last_contact_ms),
        Arc::new(
            rows.iter()
                .map(|m| Some(m.is_self))
                .collect::<BooleanArray>(),
        ),
    ]
}

/// One follower as `pg_stat_replication` shows it.
struct Standby {
    node: u64,
    host: Option<String>,
    port: Option<i32>,
    state: &'static str,
    flush_seq: Option<u64>,
    replay_seq: Option<u64>,
    reply_micros: Option<i64>,
}

/// A follower entry's lag past which it is reported as catching up.
const CATCHUP_ENTRIES: u64 = 1000;

/// On the leader, every follower it has heard from recently; elsewhere nothing.
fn standbys(db: &Db) -> Vec<Standby> {
    if db.role().kind != RoleKind::Leader {
        return Vec::new();
    }
    let members = db.members();
    let Some(me) = members.iter().find(|m| m.is_self) else {
        return Vec::new();
    };
    let now = db.now_micros();
    members
        .iter()
        .filter(|m| !m.is_self && m.role != "unreachable")
        .map(|m| {
            let (host, port) = match m.raft_addr.rsplit_once(':') {
                Some((h, p)) => (Some(h.to_string()), p.parse().ok()),
                None => (Some(m.raft_addr.clone()), None),
            };
            // Durable there: everything this leader applied once its match index
            // reaches our applied index, else at least what it applied itself.
            let caught_up = m.matched_index.is_some() && m.matched_index >= me.applied_index;
            let flush_seq = if caught_up {
                me.applied_seq
            } else {
                m.applied_seq
            };
            let behind = me
                .last_log_index
                .zip(m.matched_index)
                .is_none_or(|(l, m)| l.saturating_sub(m) > CATCHUP_ENTRIES);
            Standby {
                node: m.node,
                host,
                port,
                state: if behind { "catchup" } else { "streaming" },
                flush_seq: flush_seq.max(m.applied_seq),
                replay_seq: m.applied_seq,
                reply_micros: to_i64(m.last_contact_ms).map(|ms| now - ms * 1000),
            }
        })
        .collect()
}

fn replication_columns(db: &Db) -> Vec<ArrayRef> {
    let rows = standbys(db);
    let text = |f: &dyn Fn(&Standby) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let int4 = |f: &dyn Fn(&Standby) -> Option<i32>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<Int32Array>())
    };
    let ts = |f: &dyn Fn(&Standby) -> Option<i64>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(f)
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("+00:00"),
        )
    };
    let no_lag = || -> ArrayRef { Arc::new(IntervalMonthDayNanoArray::new_null(rows.len())) };
    vec![
        int4(&|s| i32::try_from(s.node).ok()),
        int4(&|_| Some(10)),
        text(&|_| Some("hindsight".into())),
        text(&|s| Some(format!("hindsight node {}", s.node))),
        text(&|s| s.host.clone()),
        text(&|_| None),
        int4(&|s| s.port),
        ts(&|_| None),
        text(&|_| None),
        text(&|s| Some(s.state.into())),
        text(&|s| s.flush_seq.map(lsn)),
        text(&|s| s.flush_seq.map(lsn)),
        text(&|s| s.flush_seq.map(lsn)),
        text(&|s| s.replay_seq.map(lsn)),
        no_lag(),
        no_lag(),
        no_lag(),
        int4(&|_| Some(1)),
        text(&|_| Some("quorum".into())),
        ts(&|s| s.reply_micros),
    ]
}

/// How a [`ComputedView`] computes its columns.
type ViewColumns = Box<dyn Fn(&dyn DfSession) -> Vec<ArrayRef> + Send + Sync>;

pub struct ComputedView {
    schema: SchemaRef,
    columns: ViewColumns,
}

impl std::fmt::Debug for ComputedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputedView")
            .field("schema", &self.schema)
            .finish()
    }
}

impl ComputedView {
    pub fn new(
        schema: SchemaRef,
        columns: impl Fn(&dyn DfSession) -> Vec<ArrayRef> + Send + Sync + 'static,
    ) -> Self {
        ComputedView {
            schema,
            columns: Box::new(columns),
        }
    }
}

#[async_trait]
impl TableProvider for ComputedView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = RecordBatch::try_new(self.schema.clone(), (self.columns)(state))?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_is_pg_lsn_text() {
        assert_eq!(lsn(0), "0/0");
        assert_eq!(lsn(0x1_0000_002A), "1/2A");
    }
}
