//! Prepared statements, parameter types, the point-lookup fast path, and plan shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use hindsight_sql::{Collected, Engine, EngineOptions, Output, Session, pgtext};
use hindsight_storage::{Db, Options};

fn tstz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn ts(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
        .cast_to(&tstz())
        .unwrap()
}

async fn session() -> (tempfile::TempDir, Session) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let engine = Engine::new(db, EngineOptions::default()).unwrap();
    let mut s = engine.session().unwrap();
    s.run(
        "CREATE TABLE f (id BIGINT PRIMARY KEY, ts TIMESTAMPTZ, x DOUBLE PRECISION, tags TEXT[]) WITH (event_time = 'ts');
         INSERT INTO f VALUES (1, '2026-01-01', 1.0, ARRAY['a']), (1, '2026-01-03', 1.5, NULL), (2, '2026-01-02', 2.0, ARRAY['b', 'c']), (3, '2026-01-02', 3.0, NULL);",
    )
    .await
    .unwrap();
    (dir, s)
}

async fn rows(out: Output) -> Vec<Vec<String>> {
    let Collected::Rows(_, batches) = out.collect().await.unwrap() else {
        panic!("expected rows")
    };
    text(&batches)
}

fn text(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| pgtext::cell(c.as_ref(), r).unwrap_or_else(|| "NULL".into()))
                    .collect(),
            );
        }
    }
    out
}

#[tokio::test]
async fn point_lookup_prepares_to_the_fast_path_with_typed_parameters() {
    let (_d, mut s) = session().await;
    let p = s
        .prepare("SELECT id, x, tags FROM f WHERE id = $1", &[])
        .await
        .unwrap();
    assert_eq!(p.param_types, vec![Some(DataType::Int64)]);
    let schema = p.schema.clone().unwrap();
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        ["id", "x", "tags"]
    );
    for _ in 0..3 {
        let got = rows(
            s.execute_prepared(&p, vec![ScalarValue::Int64(Some(1))])
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, vec![vec!["1", "1.5", "NULL"]]);
    }
    let none = rows(
        s.execute_prepared(&p, vec![ScalarValue::Int64(Some(99))])
            .await
            .unwrap(),
    )
    .await;
    assert!(none.is_empty());
    let null = rows(
        s.execute_prepared(&p, vec![ScalarValue::Int64(None)])
            .await
            .unwrap(),
    )
    .await;
    assert!(null.is_empty(), "key = NULL matches nothing");
}

#[tokio::test]
async fn any_of_an_array_parameter_is_a_multi_get() {
    let (_d, mut s) = session().await;
    let p = s
        .prepare("SELECT id, x FROM f WHERE id = ANY($1)", &[])
        .await
        .unwrap();
    assert_eq!(
        p.param_types,
        vec![Some(DataType::List(Arc::new(Field::new_list_field(
            DataType::Int64,
            true
        ))))]
    );
    let list = ScalarValue::List(ScalarValue::new_list_nullable(
        &[
            ScalarValue::Int64(Some(3)),
            ScalarValue::Int64(Some(1)),
            ScalarValue::Int64(Some(42)),
        ],
        &DataType::Int64,
    ));
    let mut got = rows(s.execute_prepared(&p, vec![list]).await.unwrap()).await;
    got.sort();
    assert_eq!(got, vec![vec!["1", "1.5"], vec!["3", "3"]]);
}

#[tokio::test]
async fn as_of_with_time_arithmetic_and_array_constructors_are_point_lookups() {
    let (_d, mut s) = session().await;
    // pgbench's as-of form: a float factor of an interval.
    let p = s
        .prepare(
            "SELECT id, x FROM as_of(f, TIMESTAMPTZ '2026-01-01 00:00:00+00' + $2 * INTERVAL '1 hour') WHERE id = $1",
            &[],
        )
        .await
        .unwrap();
    assert!(p.is_point_lookup());
    assert_eq!(
        p.param_types,
        vec![Some(DataType::Int64), Some(DataType::Float64)]
    );
    for (hours, want) in [
        (36.0, vec![vec!["1", "1"]]),
        (80.0, vec![vec!["1", "1.5"]]),
        (-1.0, vec![]),
    ] {
        let got = rows(
            s.execute_prepared(
                &p,
                vec![
                    ScalarValue::Int64(Some(1)),
                    ScalarValue::Float64(Some(hours)),
                ],
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(got, want, "{hours} hours");
    }
    // = ANY(ARRAY[$1, $2]::bigint[]): one parameter per key.
    let p = s
        .prepare(
            "SELECT id, x FROM f WHERE id = ANY(ARRAY[$1, $2]::bigint[])",
            &[],
        )
        .await
        .unwrap();
    assert!(p.is_point_lookup());
    assert_eq!(
        p.param_types,
        vec![Some(DataType::Int64), Some(DataType::Int64)]
    );
    let mut got = rows(
        s.execute_prepared(
            &p,
            vec![ScalarValue::Int64(Some(3)), ScalarValue::Int64(Some(2))],
        )
        .await
        .unwrap(),
    )
    .await;
    got.sort();
    assert_eq!(got, vec![vec!["2", "2"], vec!["3", "3"]]);
}

#[tokio::test]
async fn fast_path_and_planned_path_agree() {
    let (_d, mut s) = session().await;
    for sql in [
        "SELECT * FROM f WHERE id = 2",
        "SELECT x, id, x FROM f WHERE id IN (1, 2, 5)",
        "SELECT * FROM f WHERE 3 = id",
        "SELECT id, x FROM f WHERE id = ANY(ARRAY[1, 3]::bigint[])",
        "SELECT id, x FROM as_of(f, TIMESTAMPTZ '2026-01-02 12:00:00+00') WHERE id IN (1, 2)",
        "SELECT a.x FROM as_of(f, '2026-01-01 00:00:00+00', known_at => now()) AS a WHERE a.id = 1",
        "SELECT x FROM f FOR SYSTEM_TIME AS OF now() WHERE id = 1",
    ] {
        let fast = rows(s.execute(s.parse(sql).unwrap().remove(0)).await.unwrap()).await;
        // ORDER BY takes the statement off the fast path
        let planned_sql = format!("{sql} ORDER BY 1");
        let planned = rows(
            s.execute(s.parse(&planned_sql).unwrap().remove(0))
                .await
                .unwrap(),
        )
        .await;
        let mut fast_sorted = fast.clone();
        fast_sorted.sort();
        let mut planned_sorted = planned.clone();
        planned_sorted.sort();
        assert_eq!(fast_sorted, planned_sorted, "{sql}");
    }
}

#[tokio::test]
async fn time_travel_arguments_take_parameters() {
    let (_d, mut s) = session().await;
    let p = s
        .prepare("SELECT id, x FROM as_of(f, $1) WHERE id = $2", &[])
        .await
        .unwrap();
    assert_eq!(p.param_types, vec![Some(tstz()), Some(DataType::Int64)]);
    assert!(p.is_point_lookup());
    let a = rows(
        s.execute_prepared(
            &p,
            vec![ts("2026-01-02 00:00:00+00"), ScalarValue::Int64(Some(1))],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(a, vec![vec!["1", "1"]]);
    let b = rows(
        s.execute_prepared(
            &p,
            vec![ts("2026-01-05 00:00:00+00"), ScalarValue::Int64(Some(1))],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(b, vec![vec!["1", "1.5"]]);

    let p = s
        .prepare("SELECT count(*) FROM f FOR SYSTEM_TIME AS OF $1", &[])
        .await
        .unwrap();
    assert_eq!(p.param_types, vec![Some(tstz())]);
    let past = ScalarValue::TimestampMicrosecond(Some(0), Some("+00:00".into()));
    let err = s.execute_prepared(&p, vec![past]).await;
    let err = match err {
        Ok(out) => out.collect().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind, hindsight_sql::ErrorKind::TimeTravelOutOfRange);

    let p = s
        .prepare("SELECT x FROM history(f, known_at => $1) WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(p.param_types, vec![Some(tstz())]);
}

#[tokio::test]
async fn prepared_insert_update_delete_bind_typed_parameters() {
    let (_d, mut s) = session().await;
    let ins = s
        .prepare("INSERT INTO f (id, ts, x) VALUES ($1, $2, $3)", &[])
        .await
        .unwrap();
    assert_eq!(
        ins.param_types,
        vec![Some(DataType::Int64), Some(tstz()), Some(DataType::Float64)]
    );
    for i in 10..15 {
        let out = s
            .execute_prepared(
                &ins,
                vec![
                    ScalarValue::Int64(Some(i)),
                    ts("2026-02-01 00:00:00+00"),
                    ScalarValue::Float64(Some(i as f64)),
                ],
            )
            .await
            .unwrap();
        assert!(matches!(
            out,
            Output::Command {
                tag: "INSERT",
                rows: Some(1)
            }
        ));
    }
    let upd = s
        .prepare("UPDATE f SET x = x * $1 WHERE id >= $2", &[])
        .await
        .unwrap();
    let out = s
        .execute_prepared(
            &upd,
            vec![
                ScalarValue::Float64(Some(2.0)),
                ScalarValue::Int64(Some(13)),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(
        out,
        Output::Command {
            tag: "UPDATE",
            rows: Some(2)
        }
    ));
    let del = s.prepare("DELETE FROM f WHERE id = $1", &[]).await.unwrap();
    assert_eq!(del.param_types, vec![Some(DataType::Int64)]);
    let out = s
        .execute_prepared(&del, vec![ScalarValue::Int64(Some(10))])
        .await
        .unwrap();
    assert!(matches!(
        out,
        Output::Command {
            tag: "DELETE",
            rows: Some(1)
        }
    ));
    let got = rows(
        s.execute(
            s.parse("SELECT id, x FROM f WHERE id >= 10 ORDER BY id")
                .unwrap()
                .remove(0),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec!["11", "11"],
            vec!["12", "12"],
            vec!["13", "26"],
            vec!["14", "28"]
        ]
    );
}

#[tokio::test]
async fn declared_parameter_types_win() {
    let (_d, mut s) = session().await;
    let p = s
        .prepare(
            "SELECT $1::text, x FROM f WHERE x > $2 ORDER BY x",
            &[None, Some(DataType::Float64)],
        )
        .await
        .unwrap();
    assert_eq!(p.param_types.get(1), Some(&Some(DataType::Float64)));
    let got = rows(
        s.execute_prepared(
            &p,
            vec![
                ScalarValue::Utf8(Some("hi".into())),
                ScalarValue::Float64(Some(1.9)),
            ],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(got, vec![vec!["hi", "2"], vec!["hi", "3"]]);
}

async fn explain(s: &mut Session, sql: &str) -> String {
    let rows = rows(
        s.execute(s.parse(&format!("EXPLAIN {sql}")).unwrap().remove(0))
            .await
            .unwrap(),
    )
    .await;
    rows.into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn key_predicates_become_point_lookups_and_history_prunes_by_time() {
    let (_d, mut s) = session().await;
    let p = explain(&mut s, "SELECT * FROM f WHERE id IN (1, 2) AND x > 1").await;
    assert!(
        p.contains("HindsightScan: table=f mode=latest point_lookups=2"),
        "{p}"
    );
    assert!(
        p.contains("FilterExec"),
        "non-key predicates apply after the latest selection: {p}"
    );
    let p = explain(
        &mut s,
        "SELECT * FROM history(f) WHERE ts >= '2026-01-02' AND ts < '2026-01-03'",
    )
    .await;
    assert!(
        p.contains("mode=history event_time=[1767312000000000, 1767398400000000]"),
        "{p}"
    );
    let p = explain(&mut s, "SELECT * FROM f WHERE id > 1").await;
    assert!(p.contains("key_ranges=1"), "{p}");
    let p = explain(&mut s, "SELECT * FROM f WHERE x = 1").await;
    assert!(
        p.contains("mode=latest") && !p.contains("point_lookups"),
        "{p}"
    );
}

#[tokio::test]
async fn empty_and_multi_statement_inputs() {
    let (_d, mut s) = session().await;
    let p = s.prepare("  -- nothing\n", &[]).await.unwrap();
    assert!(p.is_empty());
    assert!(s.prepare("SELECT 1; SELECT 2", &[]).await.is_err());
    let outs = s.run("SELECT 1 AS a; SELECT 2 AS b").await.unwrap();
    assert_eq!(outs.len(), 2);
}

#[tokio::test]
async fn constant_queries_are_planned_once_and_anything_else_is_not() {
    let (_d, mut s) = session().await;
    let p = s
        .prepare("SELECT 1 + 1 AS two, 'x' AS t", &[])
        .await
        .unwrap();
    assert!(p.is_constant());
    for _ in 0..3 {
        let got = rows(s.execute_prepared(&p, vec![]).await.unwrap()).await;
        assert_eq!(got, vec![vec!["2", "x"]]);
    }
    let v = s.prepare("VALUES (1), (2)", &[]).await.unwrap();
    assert!(v.is_constant());
    assert_eq!(
        rows(s.execute_prepared(&v, vec![]).await.unwrap()).await,
        vec![vec!["1"], vec!["2"]]
    );
    // The answer is computed at prepare; one that fails there fails each execution.
    let z = s.prepare("SELECT 1 / 0 AS x", &[]).await.unwrap();
    assert!(z.is_constant());
    for _ in 0..2 {
        let out = s.execute_prepared(&z, vec![]).await;
        let failed = match out {
            Err(_) => true,
            Ok(o) => o.collect().await.is_err(),
        };
        assert!(failed, "division by zero must fail every execution");
    }
    // A function, a parameter, a cast (may depend on the session's time zone) or a
    // table: planned per execution, as before.
    for sql in [
        "SELECT now()",
        "SELECT random()",
        "SELECT $1::bigint + 1",
        "SELECT CAST('2026-01-01' AS TIMESTAMPTZ)",
        "SELECT count(*) FROM f",
        "EXPLAIN SELECT 1",
    ] {
        let p = s.prepare(sql, &[]).await.unwrap();
        assert!(!p.is_constant(), "{sql}");
    }
    // An aborted transaction block refuses it like any statement.
    s.run("BEGIN").await.unwrap();
    assert!(s.run("SELECT * FROM nosuch").await.is_err());
    assert!(s.execute_prepared(&p, vec![]).await.is_err());
    s.run("ROLLBACK").await.unwrap();
}
