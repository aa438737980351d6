//! End-to-end: the real server with tokio-postgres (simple and extended protocol,
//! binary formats, pipelining, COPY, cancel, limits, shutdown).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use futures::{SinkExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

const SCHEMA: &str = "CREATE TABLE driver_stats (
    driver_id BIGINT NOT NULL,
    event_ts TIMESTAMPTZ NOT NULL,
    conv_rate DOUBLE PRECISION,
    trips BIGINT,
    name TEXT,
    active BOOLEAN,
    emb REAL[],
    PRIMARY KEY (driver_id)
) WITH (event_time = 'event_ts')";

async fn seeded(server: &TestServer) -> tokio_postgres::Client {
    let c = server.connect().await;
    c.batch_execute(SCHEMA).await.unwrap();
    c.batch_execute(
        "INSERT INTO driver_stats VALUES
           (1, '2026-01-01 00:00:00+00', 0.5, 10, 'ann', true, ARRAY[1.5, 2.5]),
           (1, '2026-01-02 00:00:00+00', 0.7, 12, 'ann', false, ARRAY[3.5]),
           (2, '2026-01-01 12:00:00+00', 0.1, 3, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    c
}

/// The single bigint of a one-row query (a count).
async fn bigint(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_lookup_prepared_with_binary_results() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let stmt = c
        .prepare("SELECT driver_id, event_ts, conv_rate, trips, name, active, emb FROM driver_stats WHERE driver_id = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT8]);
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::INT8,
            Type::TIMESTAMPTZ,
            Type::FLOAT8,
            Type::INT8,
            Type::TEXT,
            Type::BOOL,
            Type::FLOAT4_ARRAY
        ]
    );
    let row = c.query_one(&stmt, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    let ts: std::time::SystemTime = row.get(1);
    assert_eq!(
        ts.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        1_767_312_000
    );
    assert_eq!(row.get::<_, f64>(2), 0.7);
    assert_eq!(row.get::<_, i64>(3), 12);
    assert_eq!(row.get::<_, &str>(4), "ann");
    assert!(!row.get::<_, bool>(5));
    assert_eq!(row.get::<_, Vec<f32>>(6), vec![3.5]);
    let row = c.query_one(&stmt, &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, Option<&str>>(4), None);
    assert_eq!(row.get::<_, Option<Vec<f32>>>(6), None);
    assert!(c.query_opt(&stmt, &[&3i64]).await.unwrap().is_none());
    let metrics = server.metrics();
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    for name in [
        "hindsight_statements_total",
        "hindsight_statement_duration_seconds_bucket",
        "hindsight_connections_open 1",
        "hindsight_storage_wal_syncs_total",
        "hindsight_storage_level_files{level=\"0\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // A request split across packets is one request (the old one-read server
    // answered 404 to the first piece).
    let split = server.http(&[
        b"GET /met",
        b"rics HTTP/1.1\r\nHost: x\r\n",
        b"Connection: close\r\n\r\n",
    ]);
    assert!(split.starts_with("HTTP/1.1 200 OK"), "{split}");
    assert!(split.contains("hindsight_statements_total"), "{split}");
    let health = server.http(&[b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert!(
        health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok\n"),
        "{health}"
    );
    let missing = server.http(&[b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = server.http(&[
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ]);
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_runs_several_statements_and_reports_tags() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let msgs = c
        .simple_query(
            "SELECT driver_id, trips FROM driver_stats ORDER BY driver_id; SELECT 1 AS one",
        )
        .await
        .unwrap();
    let rows: Vec<(String, String)> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let second = r.try_get(1).ok().flatten().unwrap_or("");
                Some((r.get(0).unwrap().to_string(), second.to_string()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("1".into(), "12".into()),
            ("2".into(), "3".into()),
            ("1".into(), "".into())
        ]
    );
    let n = c
        .execute("INSERT INTO driver_stats (driver_id, event_ts, trips) VALUES (3, now(), 1), (4, now(), 2)", &[])
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_string_of_several_statements_is_one_implicit_transaction() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let other = server.connect().await;
    // The index fails: the table, its rows and the insert before it roll back.
    let e = c
        .batch_execute(
            "CREATE TABLE a (id BIGINT PRIMARY KEY, x DOUBLE PRECISION);
             INSERT INTO a VALUES (1, 1.5);
             INSERT INTO driver_stats (driver_id, event_ts, trips) VALUES (9, now(), 9);
             CREATE INDEX a_x ON a (x)",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    let gone = other.simple_query("SELECT * FROM a").await.unwrap_err();
    assert_eq!(gone.code(), Some(&SqlState::UNDEFINED_TABLE));
    assert_eq!(
        bigint(
            &other,
            "SELECT count(*) FROM driver_stats WHERE driver_id = 9"
        )
        .await,
        0
    );
    // The session is idle again (not in a failed block) and the same string
    // without the bad statement commits as a whole.
    c.batch_execute(
        "CREATE TABLE a (id BIGINT PRIMARY KEY, x DOUBLE PRECISION);
         INSERT INTO a VALUES (1, 1.5);
         ALTER TABLE a RENAME TO a2;
         CREATE VIEW av AS SELECT id, x * 2 AS x2 FROM a2",
    )
    .await
    .unwrap();
    assert_eq!(bigint(&other, "SELECT count(*) FROM av").await, 1);
    assert_eq!(bigint(&other, "SELECT id FROM a2").await, 1);
    // A string that opens its own block runs statement by statement, as PostgreSQL does.
    c.batch_execute("BEGIN; DROP VIEW av; DROP TABLE a2; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(bigint(&other, "SELECT count(*) FROM av").await, 1);
    // A runtime error after DDL rolls the DDL back as well.
    let e = c
        .batch_execute("DROP VIEW av; SELECT 1 / (SELECT count(*) - 1 FROM a2)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
    assert_eq!(bigint(&other, "SELECT count(*) FROM av").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_and_any_array_parameters() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3600);
    let row = c
        .query_one(
            "SELECT conv_rate FROM as_of(driver_stats, $1) WHERE driver_id = 1",
            &[&t],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 0.5);
    let rows = c
        .query(
            "SELECT driver_id FROM driver_stats WHERE driver_id = ANY($1) ORDER BY driver_id",
            &[&vec![1i64, 2, 99]],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_and_errors_keep_the_connection_usable() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let s = c
        .prepare("SELECT trips FROM driver_stats WHERE driver_id = $1")
        .await
        .unwrap();
    let (a, b, e, d) = tokio::join!(
        c.query_one(&s, &[&1i64]),
        c.query_one(&s, &[&2i64]),
        c.query("SELECT * FROM no_such_table", &[]),
        c.query_one(&s, &[&1i64]),
    );
    assert_eq!(a.unwrap().get::<_, i64>(0), 12);
    assert_eq!(b.unwrap().get::<_, i64>(0), 3);
    assert_eq!(e.unwrap_err().code(), Some(&SqlState::UNDEFINED_TABLE));
    assert_eq!(d.unwrap().get::<_, i64>(0), 12);
    let err = c.batch_execute("SELEC 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
    let err = c
        .query("SELECT nope FROM driver_stats", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_COLUMN));
    assert_eq!(bigint(&c, "SELECT 2::BIGINT").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_in_text_and_csv() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let sink = c
        .copy_in("COPY driver_stats (driver_id, event_ts, conv_rate, trips, name, emb) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut data = String::new();
    // More rows than the memtable's bulk-insert threshold; numbers may carry spaces
    // (PostgreSQL's input functions skip them), text keeps its own.
    for i in 10..5010 {
        data.push_str(&format!(
            "{i}\t2026-01-03 00:00:00+00\t 0.25 \t{i}\t name\\t{i} \t{{1,2}}\n"
        ));
    }
    // Split mid-line to exercise records spanning CopyData messages.
    let (a, b) = data.split_at(data.len() / 2 + 3);
    sink.send(Bytes::from(a.to_string())).await.unwrap();
    sink.send(Bytes::from(b.to_string())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 5000);
    let row = c
        .query_one(
            "SELECT count(*), sum(trips) FROM driver_stats WHERE driver_id >= 10",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 5000);
    assert_eq!(row.get::<_, i64>(1), (10..5010).sum::<i64>());
    let row = c
        .query_one(
            "SELECT name, conv_rate FROM driver_stats WHERE driver_id = 10",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), " name\t10 ");
    assert_eq!(row.get::<_, f64>(1), 0.25);

    let out = c
        .copy_out("COPY (SELECT driver_id, name, conv_rate FROM driver_stats WHERE driver_id < 3 ORDER BY driver_id) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    let text: String = chunks
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(text, "driver_id,name,conv_rate\n1,ann,0.7\n2,,0.1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_copy_rows_and_abandoned_copies_leave_nothing_visible() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let sink = c
        .copy_in("COPY driver_stats (driver_id, event_ts) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(
        b"100\t2026-01-01\nnot-a-number\t2026-01-01\n",
    ))
    .await
    .unwrap();
    let err = sink.finish().await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    // A client that disconnects mid-COPY.
    {
        let c2 = server.connect().await;
        let sink = c2
            .copy_in("COPY driver_stats (driver_id, event_ts) FROM STDIN")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"200\t2026-01-01\n"))
            .await
            .unwrap();
        drop(c2);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = bigint(
        &c,
        "SELECT count(*) FROM driver_stats WHERE driver_id IN (100, 200)",
    )
    .await;
    assert_eq!(n, 0);
}

/// `rows` COPY lines for driver_stats (driver_id, event_ts, trips): driver
/// 10_000 + i with trips i, and `bad` (a line number) with a trips value that is not a
/// number.
fn copy_lines(rows: usize, bad: Option<usize>) -> String {
    (1..=rows)
        .map(|line| {
            let trips = if Some(line) == bad {
                "many".to_string()
            } else {
                line.to_string()
            };
            format!("{}\t2026-01-05 00:00:00+00\t{trips}\n", 10_000 + line)
        })
        .collect()
}

/// COPY streams 8,192-row chunks to a converter thread: several chunks must keep
/// their order (the later of two versions with the same event time wins), and a bad
/// value in a middle chunk must fail the whole COPY with the chunk's lines named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_many_chunks_keeps_row_order_and_one_bad_chunk_fails_it_all() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    const ROWS: usize = 30_000;
    let copy = "COPY driver_stats (driver_id, event_ts, trips) FROM STDIN";

    let sink = c.copy_in(copy).await.unwrap();
    futures::pin_mut!(sink);
    let mut data = copy_lines(ROWS, None);
    // Driver 10_005 again in the last chunk, same event time: this version wins.
    data.push_str("10005\t2026-01-05 00:00:00+00\t-1\n");
    for piece in data.as_bytes().chunks(100_000) {
        sink.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), ROWS as u64 + 1);
    let row = c
        .query_one(
            "SELECT count(*), sum(trips) FROM driver_stats WHERE driver_id > 10000",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), ROWS as i64);
    let expected: i64 = (1..=ROWS as i64).sum::<i64>() - 5 - 1;
    assert_eq!(row.get::<_, i64>(1), expected);

    let sink = c.copy_in(copy).await.unwrap();
    futures::pin_mut!(sink);
    let bad = copy_lines(ROWS, Some(12_000)).replace("\t2026-01-05", "\t2026-01-06");
    // The server may answer with the error before the last piece is sent.
    let mut sent = Ok(());
    for piece in bad.as_bytes().chunks(100_000) {
        sent = sink.send(Bytes::copy_from_slice(piece)).await;
        if sent.is_err() {
            break;
        }
    }
    let err = match sent {
        Err(e) => e,
        Ok(()) => sink.finish().await.unwrap_err(),
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));
    let message = err.as_db_error().map(|e| e.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("\"many\"") && m.contains("lines up to 16384")),
        "{message:?}"
    );
    let n = bigint(
        &c,
        "SELECT count(*) FROM driver_stats WHERE event_ts >= '2026-01-06'",
    )
    .await;
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_statement_timeout_stop_a_running_query() {
    let server = TestServer::start(&[]);
    let c = server.connect().await;
    let slow = "SELECT count(*) FROM generate_series(1, 20000000000) AS a(x) WHERE x % 7 = 3";
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let err = c.query(slow, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    canceller.await.unwrap();
    c.batch_execute("SET statement_timeout = 200")
        .await
        .unwrap();
    let err = c.query(slow, &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("statement timeout"), "{message}");
    c.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(bigint(&c, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_53300_and_others_keep_working() {
    let server = TestServer::start(&["--max-connections", "2"]);
    let a = server.connect().await;
    let _b = server.connect().await;
    let err = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("third connection refused");
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    assert_eq!(bigint(&a, "SELECT 1::BIGINT").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_get_errors_and_the_server_keeps_serving() {
    let server = TestServer::start(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    // Garbage instead of a startup packet.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 1, 2, 3, 4]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert_eq!(buf.first(), Some(&b'E'), "an ErrorResponse, got {buf:?}");
    // A startup packet claiming 1 GiB.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[0x40, 0, 0, 0, 0, 3, 0, 0]).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert_eq!(buf.first(), Some(&b'E'));
    // Invalid UTF-8 in a query of an authenticated session: 22021, then ReadyForQuery.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let params = b"user\0test\0\0";
    let mut startup = Vec::new();
    startup.extend_from_slice(&((8 + params.len()) as i32).to_be_bytes());
    startup.extend_from_slice(&196608i32.to_be_bytes());
    startup.extend_from_slice(params);
    s.write_all(&startup).await.unwrap();
    read_until_ready(&mut s).await;
    s.write_all(&[b'Q', 0, 0, 0, 7, 0xff, 0xfe, 0])
        .await
        .unwrap();
    let reply = read_until_ready(&mut s).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("22021"), "{text}");
    // The same in a pipelined Parse: one error, the Bind and Execute behind it are
    // skipped, and Sync's ReadyForQuery is the only one (a stray one would be read
    // as the answer to the next query).
    let mut pipeline = vec![b'P', 0, 0, 0, 10, 0, 0xff, 0xfe, 0, 0, 0];
    pipeline.extend_from_slice(&[b'B', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    pipeline.extend_from_slice(&[b'E', 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    pipeline.extend_from_slice(&[b'S', 0, 0, 0, 4]);
    s.write_all(&pipeline).await.unwrap();
    let reply = read_until_ready(&mut s).await;
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(text.matches("22021").count(), 1, "{text}");
    assert_eq!(reply.first(), Some(&b'E'), "{text}");
    // The session still works.
    s.write_all(b"Q\0\0\0\x0dSELECT 1\0").await.unwrap();
    let reply = read_until_ready(&mut s).await;
    assert_eq!(reply.first(), Some(&b'T'));
    let c = server.connect().await;
    assert_eq!(bigint(&c, "SELECT 3::BIGINT").await, 3);
}

/// Read backend messages until ReadyForQuery; returns everything read.
async fn read_until_ready(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let mut header = [0u8; 5];
        s.read_exact(&mut header).await.unwrap();
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.unwrap();
        all.extend_from_slice(&header);
        all.extend_from_slice(&body);
        if header[0] == b'Z' {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_and_sigterm_keeps_committed_data() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    c.batch_execute(
        "BEGIN; INSERT INTO driver_stats (driver_id, event_ts) VALUES (50, now()); ROLLBACK",
    )
    .await
    .unwrap();
    c.batch_execute(
        "BEGIN; INSERT INTO driver_stats (driver_id, event_ts) VALUES (51, now()); COMMIT",
    )
    .await
    .unwrap();
    drop(c);
    let server = server.restart();
    let c = server.connect().await;
    let ids: Vec<i64> = c
        .query(
            "SELECT driver_id FROM driver_stats WHERE driver_id >= 50",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![51]);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_and_wrong_passwords() {
    let server = TestServer::start(&["--no-loopback-trust", "--user", "alice:s3cret"]);
    let ok = format!(
        "host=127.0.0.1 port={} user=alice password=s3cret",
        server.port
    );
    let (c, conn) = tokio_postgres::connect(&ok, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(bigint(&c, "SELECT 1::BIGINT").await, 1);
    for bad in ["user=alice password=wrong", "user=mallory password=s3cret"] {
        let url = format!("host=127.0.0.1 port={} {bad}", server.port);
        let err = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(
            err.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{bad}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_lookup_answers_larger_than_one_output_buffer_arrive_whole() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    // 3,000 entities with 300-byte names: ~1 MB of DataRows, several times the
    // 256 KiB at which the server flushes its output buffer.
    let name = "n".repeat(300);
    c.batch_execute(&format!(
        "INSERT INTO driver_stats (driver_id, event_ts, name)
         SELECT 100 + x, TIMESTAMPTZ '2026-01-05 00:00:00+00', '{name}' FROM generate_series(0, 2999) AS t(x)"
    ))
    .await
    .unwrap();
    let ids: Vec<i64> = (100..3100).collect();
    let stmt = c
        .prepare("SELECT driver_id, name FROM driver_stats WHERE driver_id = ANY($1)")
        .await
        .unwrap();
    let rows = c.query(&stmt, &[&ids]).await.unwrap();
    assert_eq!(rows.len(), 3000);
    let mut got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    assert!(rows.iter().all(|r| r.get::<_, String>(1) == name));
}

const SLOW: &str = "SELECT count(*) FROM generate_series(1, 20000000000) AS a(x) WHERE x % 7 = 3";

/// A query that runs until it is interrupted; returns its error.
fn run_slow(c: tokio_postgres::Client) -> tokio::task::JoinHandle<tokio_postgres::Error> {
    tokio::spawn(async move {
        let err = c
            .query(SLOW, &[])
            .await
            .expect_err("the slow query ends only when interrupted");
        drop(c);
        err
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_query_does_not_hold_up_other_connections_on_one_worker() {
    // One connection worker: the slow query must run on the query threads, and its
    // connection must hand the worker over, or nothing else is served until it ends.
    let server = TestServer::start(&["--worker-threads", "1"]);
    let b = seeded(&server).await;
    let a = server.connect().await;
    let token = a.cancel_token();
    let slow = run_slow(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let others = async {
        let lookup = b
            .prepare("SELECT trips FROM driver_stats WHERE driver_id = $1")
            .await
            .unwrap();
        for _ in 0..100 {
            let trips: i64 = b.query_one(&lookup, &[&1i64]).await.unwrap().get(0);
            assert_eq!(trips, 12);
        }
        let batch = b
            .prepare("SELECT driver_id FROM driver_stats WHERE driver_id = ANY($1)")
            .await
            .unwrap();
        let keys: Vec<i64> = (0..40).collect();
        assert_eq!(b.query(&batch, &[&keys]).await.unwrap().len(), 2);
        b.batch_execute("INSERT INTO driver_stats (driver_id, event_ts) VALUES (7, now())")
            .await
            .unwrap();
        let n: i64 = b
            .query_one("SELECT count(*) FROM driver_stats", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3);
    };
    tokio::time::timeout(Duration::from_secs(60), others)
        .await
        .expect("other connections are served while a query runs");
    assert!(!slow.is_finished(), "the slow query was running throughout");
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = slow.await.unwrap();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_statement_still_running_after_the_grace_period() {
    let server = TestServer::start(&["--shutdown-grace", "300ms"]);
    let slow = run_slow(server.connect().await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(status.success(), "clean exit, got {status:?}");
    let err = slow.await.unwrap();
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_round_trips_every_type_and_malformed_streams_commit_nothing() {
    use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let types = [
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::FLOAT8,
        Type::INT8,
        Type::TEXT,
        Type::BOOL,
        Type::FLOAT4_ARRAY,
    ];
    let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let sink = c
        .copy_in("COPY driver_stats FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for i in 0..3000i64 {
        let rate = (i % 3 != 0).then_some(i as f64 / 8.0);
        let name = (i % 2 == 0).then(|| format!("n{i}"));
        let emb = vec![i as f32, 0.5];
        writer
            .as_mut()
            .write(&[&(100 + i), &t0, &rate, &i, &name, &(i % 5 == 0), &emb])
            .await
            .unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 3000);
    let stream = c
        .copy_out(
            "COPY (SELECT * FROM driver_stats WHERE driver_id >= 100 ORDER BY driver_id) \
             TO STDOUT (FORMAT binary)",
        )
        .await
        .unwrap();
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &types)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3000);
    for (i, r) in rows.iter().enumerate() {
        let i = i as i64;
        assert_eq!(r.get::<i64>(0), 100 + i);
        assert_eq!(r.get::<std::time::SystemTime>(1), t0);
        assert_eq!(
            r.get::<Option<f64>>(2),
            (i % 3 != 0).then_some(i as f64 / 8.0)
        );
        assert_eq!(
            r.get::<Option<String>>(4),
            (i % 2 == 0).then(|| format!("n{i}"))
        );
        assert_eq!(r.get::<bool>(5), i % 5 == 0);
        assert_eq!(r.get::<Vec<f32>>(6), vec![i as f32, 0.5]);
    }
    // Malformed streams: a wrong signature, a truncated tuple, a field count that
    // does not match, an int8 field of 3 bytes. Each is refused and leaves nothing.
    let header = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
    let tuple = |fields: &[&[u8]]| {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            t.extend((f.len() as i32).to_be_bytes());
            t.extend(*f);
        }
        t
    };
    let ts = 0i64.to_be_bytes();
    let good = tuple(&[&9000i64.to_be_bytes(), &ts]);
    let cases: Vec<(Vec<u8>, SqlState)> = vec![
        (
            b"PGCOPY\n\xff\r\n\x01".to_vec(),
            SqlState::BAD_COPY_FILE_FORMAT,
        ),
        (
            [header.clone(), good.clone(), good[..9].to_vec()].concat(),
            SqlState::BAD_COPY_FILE_FORMAT,
        ),
        (
            [header.clone(), good.clone(), tuple(&[&ts])].concat(),
            SqlState::BAD_COPY_FILE_FORMAT,
        ),
        (
            [header.clone(), good.clone(), tuple(&[&[1, 2, 3], &ts])].concat(),
            SqlState::INVALID_BINARY_REPRESENTATION,
        ),
    ];
    for (stream, code) in cases {
        let sink = c
            .copy_in("COPY driver_stats (driver_id, event_ts) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(Bytes::from(stream)).await.unwrap();
        let err = sink.finish().await.unwrap_err();
        assert_eq!(err.code(), Some(&code), "{err:?}");
    }
    let n = bigint(
        &c,
        "SELECT count(*) FROM driver_stats WHERE driver_id = 9000",
    )
    .await;
    assert_eq!(n, 0);
    // BINARY takes none of the text options.
    let err = c
        .batch_execute("COPY driver_stats TO STDOUT (FORMAT binary, DELIMITER ',')")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_orms_and_drivers_send_bytea_literals_settings_and_key_updates() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let row = c
        .query_one(
            "SELECT '\\x0102'::bytea AS a, E'\\\\x41'::bytea AS b, pg_typeof(now()) AS t, \
             quote_literal('O''Reilly') AS q, current_setting('jit') AS jit, \
             set_config('application_name', 'orm', false) AS app",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), vec![1, 2]);
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![0x41]);
    assert_eq!(row.get::<_, String>(2), "timestamp with time zone");
    assert_eq!(row.get::<_, String>(3), "'O''Reilly'");
    assert_eq!(row.get::<_, String>(4), "off");
    assert_eq!(row.get::<_, String>(5), "orm");
    let app = c.query_one("SHOW application_name", &[]).await.unwrap();
    assert_eq!(app.get::<_, String>(0), "orm");
    // An ORM sets every mapped column, the key and event time to their values.
    let n = c
        .execute(
            "UPDATE driver_stats SET driver_id = $1, event_ts = '2026-01-02 00:00:00+00', \
             trips = 99 WHERE driver_id = $1",
            &[&1i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        bigint(&c, "SELECT trips FROM driver_stats WHERE driver_id = 1").await,
        99
    );
    // Moving a row to another key is still refused, and changes nothing.
    let err = c
        .execute(
            "UPDATE driver_stats SET driver_id = 7, trips = 1 WHERE driver_id = 2",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    assert_eq!(
        bigint(&c, "SELECT trips FROM driver_stats WHERE driver_id = 2").await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_cursors_fetch_forward_and_refuse_what_postgres_refuses() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let code = |r: Result<(), tokio_postgres::Error>| r.unwrap_err().code().cloned();
    // Without HOLD a cursor needs a transaction block.
    assert_eq!(
        code(c.batch_execute("DECLARE c CURSOR FOR SELECT 1").await),
        Some(SqlState::NO_ACTIVE_SQL_TRANSACTION)
    );
    c.batch_execute(
        "BEGIN; DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR \
         SELECT driver_id FROM history(driver_stats) ORDER BY driver_id, event_ts",
    )
    .await
    .unwrap();
    let ids = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        ids(c.simple_query("FETCH 2 FROM c").await.unwrap()),
        ["1", "1"]
    );
    let listed = c
        .query_one("SELECT name, is_holdable FROM pg_catalog.pg_cursors", &[])
        .await
        .unwrap();
    assert_eq!(
        (listed.get::<_, String>(0), listed.get::<_, bool>(1)),
        ("c".into(), false)
    );
    assert_eq!(
        ids(c.simple_query("FETCH NEXT FROM c").await.unwrap()),
        ["2"]
    );
    assert!(ids(c.simple_query("FETCH ALL FROM c").await.unwrap()).is_empty());
    assert_eq!(
        code(c.batch_execute("DECLARE c CURSOR FOR SELECT 1").await),
        Some(SqlState::DUPLICATE_CURSOR)
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    // The transaction's end closed it; WITH HOLD outlives it until CLOSE.
    assert_eq!(
        code(c.batch_execute("FETCH 1 FROM c").await),
        Some(SqlState::INVALID_CURSOR_NAME)
    );
    c.batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT driver_id FROM driver_stats ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(
        ids(c.simple_query("FETCH FORWARD 5 FROM h").await.unwrap()),
        ["1", "2"]
    );
    assert_eq!(
        code(c.batch_execute("FETCH BACKWARD 1 FROM h").await),
        Some(SqlState::FEATURE_NOT_SUPPORTED)
    );
    c.batch_execute("CLOSE h").await.unwrap();
    assert_eq!(
        code(c.batch_execute("CLOSE h").await),
        Some(SqlState::INVALID_CURSOR_NAME)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_the_key_order_serves_are_recorded_and_others_refused() {
    let server = TestServer::start(&[]);
    let c = seeded(&server).await;
    let code = |r: Result<(), tokio_postgres::Error>| r.unwrap_err().code().cloned();
    c.batch_execute(
        "CREATE INDEX ds_driver ON driver_stats (driver_id);
         CREATE INDEX IF NOT EXISTS ds_driver ON driver_stats (driver_id);
         CREATE UNIQUE INDEX ds_key ON driver_stats USING btree (driver_id);
         CREATE INDEX ON driver_stats (driver_id, event_ts);",
    )
    .await
    .unwrap();
    for (sql, want) in [
        (
            "CREATE INDEX ds_driver ON driver_stats (driver_id)",
            SqlState::DUPLICATE_TABLE,
        ),
        (
            "CREATE INDEX ds_name ON driver_stats (name)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "CREATE INDEX ds_h ON driver_stats USING hash (driver_id)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "CREATE UNIQUE INDEX ds_u ON driver_stats (driver_id, event_ts)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "CREATE INDEX ds_x ON driver_stats (nosuch)",
            SqlState::UNDEFINED_COLUMN,
        ),
        ("CREATE INDEX ds_y ON nosuch (a)", SqlState::UNDEFINED_TABLE),
        ("DROP INDEX nosuch", SqlState::UNDEFINED_OBJECT),
    ] {
        assert_eq!(code(c.batch_execute(sql).await), Some(want), "{sql}");
    }
    let rows: Vec<(String, String)> = c
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'driver_stats' \
             ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "driver_stats_driver_id_event_ts_idx",
            "driver_stats_pkey",
            "ds_driver",
            "ds_key"
        ]
    );
    assert_eq!(
        rows[3].1,
        "CREATE UNIQUE INDEX ds_key ON public.driver_stats USING btree (driver_id)"
    );
    c.batch_execute("DROP INDEX ds_driver, ds_key; DROP INDEX IF EXISTS ds_driver")
        .await
        .unwrap();
    let n = bigint(
        &c,
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'driver_stats'",
    )
    .await;
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_belong_to_their_session_and_go_with_it() {
    let server = TestServer::start(&[]);
    let a = server.connect().await;
    let b = server.connect().await;
    a.batch_execute(
        "CREATE SCHEMA feat;
         CREATE TABLE feat.t (id BIGINT PRIMARY KEY, v TEXT);
         CREATE TEMP TABLE scratch (id BIGINT PRIMARY KEY, v TEXT);
         INSERT INTO scratch VALUES (1, 'mine')",
    )
    .await
    .unwrap();
    let v: String = a
        .query_one("SELECT v FROM scratch WHERE id = $1", &[&1i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "mine");
    // another session neither sees it nor collides with its name
    let e = b.query("SELECT * FROM scratch", &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE));
    // not even by its schema's full name
    let a_schema: String = a
        .query_one(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'scratch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(a_schema.starts_with("pg_temp_"), "{a_schema}");
    for sql in [
        format!("SELECT * FROM {a_schema}.scratch"),
        format!("INSERT INTO {a_schema}.scratch VALUES (2, 'theirs')"),
        format!("DELETE FROM {a_schema}.scratch"),
    ] {
        let e = b.execute(sql.as_str(), &[]).await.unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{sql}: {e}");
    }
    b.batch_execute("CREATE TEMP TABLE scratch (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    // a prepared statement over a schema-qualified table
    a.execute("INSERT INTO feat.t VALUES ($1, $2)", &[&5i64, &"five"])
        .await
        .unwrap();
    let v: String = b
        .query_one("SELECT v FROM feat.t WHERE id = $1", &[&5i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "five");
    let temp_schemas = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pg_temp_%'";
    assert_eq!(bigint(&b, temp_schemas).await, 2);
    drop(a);
    // the ended session's schema and table are dropped (when its connection closes)
    let mut left = 2;
    for _ in 0..100 {
        left = bigint(&b, temp_schemas).await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 1);
    let tables = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scratch'";
    assert_eq!(bigint(&b, tables).await, 1);
}
