//! ASOF JOIN against a naive oracle on random data: every operator, with and without
//! the table's TTL and an explicit bound, through both the per-row lookup path (small
//! spines) and the merge path (large spines), on one thread and split across
//! several. Ties, late writes, tombstones, NULL keys
//! and times, and duplicate spine rows all occur.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use hindsight_sql::{Collected, Engine, EngineOptions};
use hindsight_storage::{Db, Options, Value, WriteBatch};

const SEC: i64 = 1_000_000;

#[path = "../../storage/tests/common/splitmix.rs"]
mod splitmix;
use splitmix::Rng;

/// One version: (event time, commit sequence, value or tombstone).
type Versions = HashMap<i64, Vec<(i64, u64, Option<i64>)>>;

#[derive(Clone, Copy, Debug)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
        }
    }
    fn backward(self) -> bool {
        matches!(self, Op::Ge | Op::Gt)
    }
}

/// The contract of DESIGN.md, written the obvious way.
fn oracle(
    versions: &Versions,
    key: Option<i64>,
    t: Option<i64>,
    op: Op,
    ttl: Option<i64>,
    bound: Option<i64>,
) -> Option<i64> {
    let (key, t) = (key?, t?);
    let vs = versions.get(&key)?;
    let candidates = vs.iter().filter(|(et, _, _)| match op {
        Op::Ge => *et <= t,
        Op::Gt => *et < t,
        Op::Le => *et >= t,
        Op::Lt => *et > t,
    });
    let chosen = if op.backward() {
        candidates.max_by_key(|(et, seq, _)| (*et, *seq))?
    } else {
        let min_et = candidates.clone().map(|(et, _, _)| *et).min()?;
        candidates
            .filter(|(et, _, _)| *et == min_et)
            .max_by_key(|(_, seq, _)| *seq)?
    };
    let (et, _, val) = *chosen;
    if op.backward() {
        if ttl.is_some_and(|ttl| et < t - ttl) || bound.is_some_and(|b| et < t - b) {
            return None;
        }
    } else if bound.is_some_and(|b| et > t + b) {
        return None;
    }
    val
}

#[tokio::test]
async fn asof_join_matches_the_oracle_on_random_data() {
    for seed in 0..6u64 {
        run_seed(seed).await;
    }
}

async fn run_seed(seed: u64) {
    let mut r = Rng(seed * 7919 + 1);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            memtable_bytes: 32 << 10,
            ..Options::default()
        },
    )
    .unwrap();
    // Even seeds split every join across three threads, odd seeds use one.
    let options = if seed.is_multiple_of(2) {
        EngineOptions {
            target_partitions: 3,
            asof_rows_per_thread: 8,
            ..EngineOptions::default()
        }
    } else {
        EngineOptions::default()
    };
    let engine = Engine::new(db.clone(), options).unwrap();
    let mut s = engine.session().unwrap();
    // Short enough that the TTL and the bound decide many matches.
    let ttl = 4 * SEC;
    s.run(&format!(
        "CREATE TABLE f (id BIGINT PRIMARY KEY, et TIMESTAMPTZ, val BIGINT) WITH (event_time = 'et');
         CREATE TABLE g (id BIGINT PRIMARY KEY, et TIMESTAMPTZ, val BIGINT) WITH (event_time = 'et', ttl = '{} seconds');
         CREATE TABLE spine (id BIGINT, t TIMESTAMPTZ, label BIGINT);",
        ttl / SEC
    ))
    .await
    .unwrap();
    let f = db.table("f").unwrap();
    let g = db.table("g").unwrap();
    let keys = 1 + r.below(40) as i64;
    let mut versions: Versions = HashMap::new();
    // ~3000 versions in small batches: ties on event time, late writes, tombstones.
    for _ in 0..600 {
        let mut wb = WriteBatch::new();
        let mut pending = Vec::new();
        for _ in 0..5 {
            let key = r.below(keys as u64) as i64;
            let et = (r.below(300) as i64) * SEC;
            if r.below(12) == 0 {
                wb.delete(&f, &[Value::Int64(key)], Some(et)).unwrap();
                wb.delete(&g, &[Value::Int64(key)], Some(et)).unwrap();
                pending.push((key, et, None));
            } else {
                let v = r.below(1_000_000) as i64;
                for t in [&f, &g] {
                    wb.put(
                        t,
                        &[Value::Int64(key), Value::Timestamp(et), Value::Int64(v)],
                    )
                    .unwrap();
                }
                pending.push((key, et, Some(v)));
            }
        }
        let info = db.write(wb).unwrap();
        // within a batch the later write of a (key, event time) replaces the earlier
        for (key, et, v) in pending {
            let vs = versions.entry(key).or_default();
            vs.retain(|(e, s, _)| !(*e == et && *s == info.seq));
            vs.push((et, info.seq, v));
        }
    }
    let total: usize = versions.values().map(Vec::len).sum();
    for (spine_rows, path) in [(total / 100, "lookup"), (total, "merge")] {
        s.run("DELETE FROM spine").await.unwrap();
        let mut spine = Vec::new();
        let mut values = Vec::new();
        for label in 0..spine_rows as i64 {
            let id = if r.below(20) == 0 {
                None
            } else {
                Some(r.below(keys as u64 + 3) as i64)
            };
            let t = if r.below(25) == 0 {
                None
            } else {
                Some((r.below(320) as i64 - 10) * SEC + r.below(3) as i64 - 1)
            };
            spine.push((label, id, t));
            let sql_id = id.map_or("NULL".to_string(), |v| v.to_string());
            let sql_t = t.map_or("NULL".to_string(), |v| {
                format!("to_timestamp_micros({v})::timestamptz")
            });
            values.push(format!("({sql_id}, {sql_t}, {label})"));
            // duplicate spine rows
            if r.below(10) == 0 {
                spine.push((label + 1_000_000, id, t));
                values.push(format!("({sql_id}, {sql_t}, {})", label + 1_000_000));
            }
        }
        s.run(&format!("INSERT INTO spine VALUES {}", values.join(", ")))
            .await
            .unwrap();
        for op in [Op::Ge, Op::Gt, Op::Le, Op::Lt] {
            for (table, table_ttl) in [("f", None), ("g", Some(ttl))] {
                for bound in [None, Some(3 * SEC)] {
                    let bound_sql = match (bound, op.backward()) {
                        (None, _) => String::new(),
                        (Some(b), true) => {
                            format!(" AND s.t - x.et <= INTERVAL '{} seconds'", b / SEC)
                        }
                        (Some(b), false) => {
                            format!(" AND x.et - s.t <= INTERVAL '{} seconds'", b / SEC)
                        }
                    };
                    let sql = format!(
                        "SELECT s.label, x.val FROM spine s ASOF JOIN {table} x MATCH_CONDITION (s.t {} x.et) ON s.id = x.id{bound_sql}",
                        op.sql()
                    );
                    let out = s
                        .run(&sql)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {}", e.message));
                    let Some(Collected::Rows(_, batches)) = out.into_iter().next() else {
                        panic!()
                    };
                    let mut got: HashMap<i64, Option<i64>> = HashMap::new();
                    for b in &batches {
                        let labels = b.column(0).as_primitive::<Int64Type>();
                        let vals = b.column(1).as_primitive::<Int64Type>();
                        for i in 0..b.num_rows() {
                            let prev = got
                                .insert(labels.value(i), (!vals.is_null(i)).then(|| vals.value(i)));
                            assert!(
                                prev.is_none(),
                                "spine row {} returned twice",
                                labels.value(i)
                            );
                        }
                    }
                    assert_eq!(
                        got.len(),
                        spine.len(),
                        "{sql}: one output row per spine row"
                    );
                    let table_ttl = if op.backward() { table_ttl } else { None };
                    for (label, id, t) in &spine {
                        let want = oracle(&versions, *id, *t, op, table_ttl, bound);
                        assert_eq!(
                            got.get(label).copied().flatten(),
                            want,
                            "seed {seed} {path} path, {sql}: spine row {label} (id {id:?}, t {t:?})"
                        );
                    }
                }
            }
        }
    }
}

/// The plan text of `sql` (EXPLAIN's second column, all rows).
async fn explain(s: &mut hindsight_sql::Session, sql: &str) -> String {
    let out = s.run(&format!("EXPLAIN {sql}")).await.unwrap();
    let Some(Collected::Rows(_, batches)) = out.into_iter().next() else {
        panic!("EXPLAIN returned no rows")
    };
    let mut text = String::new();
    for b in &batches {
        let plans = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            text.push_str(plans.value(i));
            text.push('\n');
        }
    }
    text
}

/// A projection above the join is absorbed into it: the join reads only the table
/// columns the query uses, and the answers are those of the full join.
#[tokio::test]
async fn the_join_reads_only_the_columns_the_query_uses() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let engine = Engine::new(db, EngineOptions::default()).unwrap();
    let mut s = engine.session().unwrap();
    s.run(
        "CREATE TABLE f (id BIGINT PRIMARY KEY, et TIMESTAMPTZ, a BIGINT, b BIGINT) WITH (event_time = 'et');
         CREATE TABLE spine (id BIGINT, t TIMESTAMPTZ);
         INSERT INTO f VALUES (1, '2026-01-01', 10, 100), (1, '2026-01-03', 11, 101), (2, '2026-01-01', 20, 200);
         INSERT INTO spine VALUES (1, '2026-01-02'), (1, '2026-01-04'), (2, '2026-01-02'), (3, '2026-01-02');",
    )
    .await
    .unwrap();
    let join = "FROM spine s ASOF JOIN f MATCH_CONDITION (s.t >= f.et) ON s.id = f.id";
    let plan = explain(&mut s, &format!("SELECT s.id, f.b {join}")).await;
    assert!(plan.contains("columns=[b]"), "{plan}");
    let plan = explain(&mut s, &format!("SELECT count(*) {join}")).await;
    assert!(plan.contains("columns=[]"), "{plan}");
    let plan = explain(&mut s, &format!("SELECT * {join}")).await;
    assert!(plan.contains("columns=[id, et, a, b]"), "{plan}");
    let out = s
        .run(&format!(
            "SELECT sum(f.b), count(f.b), count(*) {join}; SELECT sum(b), count(b), count(*) FROM (SELECT * {join}) j"
        ))
        .await
        .unwrap();
    let sums: Vec<(i64, i64, i64)> = out
        .into_iter()
        .map(|o| {
            let Collected::Rows(_, batches) = o else {
                panic!()
            };
            let b = &batches[0];
            (
                b.column(0).as_primitive::<Int64Type>().value(0),
                b.column(1).as_primitive::<Int64Type>().value(0),
                b.column(2).as_primitive::<Int64Type>().value(0),
            )
        })
        .collect();
    assert_eq!(sums, vec![(401, 3, 4), (401, 3, 4)]);
}
