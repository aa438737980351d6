//! End-to-end: the Arrow Flight SQL listener, driven by arrow-flight's own
//! `FlightSqlServiceClient` against the real server: statements (DDL and DML sent
//! as queries, as ADBC does), every time-travel form, prepared statements with
//! parameters, metadata, bulk ingest (and what it refuses), authentication, bad
//! tickets, and a client that hangs up mid-ingest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use arrow_flight::FlightInfo;
use arrow_flight::Ticket;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandStatementIngest, SqlInfo,
    TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use common::TestServer;
use datafusion::arrow::array::{
    Array, AsArray, Float32Array, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema, TimeUnit};
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

type Client = FlightSqlServiceClient<Channel>;

async fn client(server: &TestServer) -> Client {
    let port = server
        .flight_port
        .expect("the server was started with --flight-listen");
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

fn start(extra: &[&str]) -> TestServer {
    let mut args = vec!["--flight-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

/// Every batch of every endpoint of `info`.
async fn fetch(c: &mut Client, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let batches: Vec<RecordBatch> =
            c.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        out.extend(batches);
    }
    out
}

async fn query(c: &mut Client, sql: &str) -> Vec<RecordBatch> {
    let info = c
        .execute(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    fetch(c, info).await
}

/// The error of a statement that fails, whether at GetFlightInfo or while streaming.
async fn query_error(c: &mut Client, sql: &str) -> String {
    let info = match c.execute(sql.to_string(), None).await {
        Err(e) => return e.to_string(),
        Ok(info) => info,
    };
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    match c.do_get(ticket).await {
        Err(e) => e.to_string(),
        Ok(s) => match s.try_collect::<Vec<_>>().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{sql} did not fail"),
        },
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn int64s(batches: &[RecordBatch], col: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(col)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn seed(c: &mut Client) {
    query(
        c,
        "CREATE TABLE drivers (id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, rate DOUBLE PRECISION, \
         emb REAL[], note TEXT, PRIMARY KEY (id)) WITH (event_time = 'ts')",
    )
    .await;
    let n = c
        .execute_update(
            "INSERT INTO drivers VALUES \
             (1, '2026-01-01 00:00:00+00', 0.5, ARRAY[1.0, 2.5]::REAL[], 'a'), \
             (1, '2026-01-03 00:00:00+00', 0.7, NULL, NULL), \
             (2, '2026-01-02 00:00:00+00', NULL, ARRAY[]::REAL[], 'b')"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn statements_time_travel_and_exact_types() {
    let server = start(&[]);
    let mut c = client(&server).await;
    seed(&mut c).await;

    let now = query(
        &mut c,
        "SELECT id, ts, rate, emb, note FROM drivers ORDER BY id",
    )
    .await;
    assert_eq!(rows(&now), 2);
    let b = &now[0];
    assert_eq!(
        b.schema().field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    );
    assert_eq!(
        b.column(2)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
            .value(0),
        0.7
    );
    assert!(b.column(2).is_null(1), "a NULL double stays NULL");
    assert!(b.column(3).is_null(0), "a NULL REAL[] stays NULL");
    let emb = b.column(3).as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(emb.value(1).len(), 0, "an empty REAL[] is empty, not NULL");
    assert_eq!(b.column(4).as_string::<i32>().value(1), "b");

    let as_of = query(
        &mut c,
        "SELECT id, rate, emb FROM as_of(drivers, TIMESTAMPTZ '2026-01-02 12:00:00+00') ORDER BY id",
    )
    .await;
    assert_eq!(int64s(&as_of, 0), vec![Some(1), Some(2)]);
    let emb = as_of[0]
        .column(2)
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let first = emb.value(0);
    let first = first.as_any().downcast_ref::<Float32Array>().unwrap();
    assert_eq!(first.values().to_vec(), vec![1.0f32, 2.5]);

    let history = query(&mut c, "SELECT id FROM history(drivers)").await;
    assert_eq!(rows(&history), 3);
    let e = query_error(
        &mut c,
        "SELECT count(*) FROM drivers FOR SYSTEM_TIME AS OF TIMESTAMPTZ '2000-01-01 00:00:00+00'",
    )
    .await;
    assert!(e.contains("22008"), "before the table existed: {e}");
    let now_again = query(
        &mut c,
        "SELECT count(*) FROM drivers FOR SYSTEM_TIME AS OF now()",
    )
    .await;
    assert_eq!(int64s(&now_again, 0), vec![Some(2)]);

    query(&mut c, "CREATE TABLE labels (id BIGINT, at TIMESTAMPTZ)").await;
    c.execute_update(
        "INSERT INTO labels VALUES (1, '2026-01-02 00:00:00+00'), (1, '2026-01-04 00:00:00+00'), (3, '2026-01-04 00:00:00+00')"
            .into(),
        None,
    )
    .await
    .unwrap();
    let joined = query(
        &mut c,
        "SELECT s.id, s.at, f.rate FROM labels AS s ASOF JOIN drivers AS f \
         MATCH_CONDITION (s.at >= f.ts) ON s.id = f.id ORDER BY s.at, s.id",
    )
    .await;
    let rates: Vec<Option<f64>> = joined
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        rates,
        vec![Some(0.5), Some(0.7), None],
        "point-in-time correct, spine kept"
    );

    // Errors carry the SQLSTATE and leave the server serving.
    assert!(
        query_error(&mut c, "SELECT * FROM nope")
            .await
            .contains("42P01")
    );
    assert!(query_error(&mut c, "SELEC 1").await.contains("42601"));
    assert_eq!(rows(&query(&mut c, "SELECT 1 AS one").await), 1);
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let server = start(&[]);
    let mut c = client(&server).await;
    seed(&mut c).await;
    let mut p = c
        .prepare("SELECT id, rate FROM drivers WHERE id = $1".into(), None)
        .await
        .unwrap();
    assert_eq!(p.dataset_schema().unwrap().fields().len(), 2);
    assert_eq!(
        p.parameter_schema().unwrap().field(0).data_type(),
        &DataType::Int64
    );
    let params = |v: i64| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int32, false)])),
            vec![Arc::new(datafusion::arrow::array::Int32Array::from(vec![
                v as i32,
            ]))],
        )
        .unwrap()
    };
    p.set_parameters(params(2)).unwrap();
    let info = p.execute().await.unwrap();
    let got = fetch(&mut c, info).await;
    assert_eq!(int64s(&got, 0), vec![Some(2)]);
    p.set_parameters(params(1)).unwrap();
    let info = p.execute().await.unwrap();
    let got = fetch(&mut c, info).await;
    assert_eq!(
        got[0]
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
            .value(0),
        0.7
    );
    p.close().await.unwrap();

    let mut ins = c
        .prepare(
            "INSERT INTO drivers (id, ts, rate) VALUES ($1, $2, $3)".into(),
            None,
        )
        .await
        .unwrap();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, false),
            Field::new(
                "$2",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("$3", DataType::Float64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![10, 11])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_767_225_600_000_000, 1_767_225_600_000_000])
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(vec![Some(1.5), None])),
        ],
    )
    .unwrap();
    ins.set_parameters(batch).unwrap();
    assert_eq!(
        ins.execute_update().await.unwrap(),
        2,
        "one execution per parameter row"
    );
    let n = query(&mut c, "SELECT count(*) FROM drivers WHERE id >= 10").await;
    assert_eq!(int64s(&n, 0), vec![Some(2)]);

    // A prepared command runs when its FlightInfo is asked for, as ADBC's DB-API
    // `execute` relies on (it prepares, gets the info, and reads in the background):
    // the table exists and the rows are there before any DoGet.
    let mut ddl = c
        .prepare("CREATE TABLE made_by_prepare (id BIGINT)".into(), None)
        .await
        .unwrap();
    ddl.execute().await.unwrap();
    let mut ins = c
        .prepare("INSERT INTO made_by_prepare VALUES ($1)".into(), None)
        .await
        .unwrap();
    ins.set_parameters(
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap(),
    )
    .unwrap();
    let info = ins.execute().await.unwrap();
    assert_eq!(info.total_records, 3, "the affected rows");
    let n = query(&mut c, "SELECT count(*) FROM made_by_prepare").await;
    assert_eq!(int64s(&n, 0), vec![Some(3)]);
}

#[tokio::test]
async fn metadata_commands() {
    let server = start(&[]);
    let mut c = client(&server).await;
    seed(&mut c).await;
    let info = c
        .get_sql_info(vec![SqlInfo::FlightSqlServerName])
        .await
        .unwrap();
    assert_eq!(rows(&fetch(&mut c, info).await), 1);
    let info = c.get_catalogs().await.unwrap();
    let catalogs = fetch(&mut c, info).await;
    assert_eq!(
        catalogs[0].column(0).as_string::<i32>().value(0),
        "hindsight"
    );
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let schemas = fetch(&mut c, info).await;
    assert_eq!(rows(&schemas), 1);
    assert_eq!(schemas[0].column(1).as_string::<i32>().value(0), "public");
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("driv%".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut c, info).await;
    assert_eq!(rows(&tables), 1);
    assert_eq!(tables[0].column(2).as_string::<i32>().value(0), "drivers");
    let ipc = tables[0].column(4).as_binary::<i32>().value(0);
    let schema =
        Schema::try_from(arrow_flight::IpcMessage(bytes::Bytes::copy_from_slice(ipc))).unwrap();
    assert_eq!(schema.fields().len(), 5);
    assert_eq!(
        schema.field(3).data_type(),
        &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
    );
    let info = c.get_table_types().await.unwrap();
    assert!(rows(&fetch(&mut c, info).await) >= 2);
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("public".into()),
            table: "drivers".into(),
        })
        .await
        .unwrap();
    let keys = fetch(&mut c, info).await;
    assert_eq!(keys[0].column(3).as_string::<i32>().value(0), "id");
}

fn ingest_cmd(
    table: &str,
    if_not_exist: TableNotExistOption,
    if_exists: TableExistsOption,
) -> CommandStatementIngest {
    CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: if_not_exist.into(),
            if_exists: if_exists.into(),
        }),
        table: table.into(),
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    }
}

fn spine(ids: Vec<i64>) -> RecordBatch {
    let n = ids.len();
    let emb = ListArray::from_iter_primitive::<Float32Type, _, _>(
        (0..n).map(|i| Some(vec![Some(i as f32), Some(0.5)])),
    );
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("emb", emb.data_type().clone(), true),
            Field::new("who", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(
                datafusion::arrow::array::TimestampNanosecondArray::from(
                    vec![1_767_225_600_000_000_000; n],
                )
                .with_timezone("UTC"),
            ),
            Arc::new(emb),
            Arc::new(StringArray::from(vec![Some("x"); n])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn bulk_ingest_creates_appends_and_refuses_bad_input() {
    let server = start(&[]);
    let mut c = client(&server).await;
    let batches = vec![Ok(spine(vec![1, 2, 3])), Ok(spine(vec![4, 5]))];
    let n = c
        .execute_ingest(
            ingest_cmd(
                "spine",
                TableNotExistOption::Create,
                TableExistsOption::Append,
            ),
            futures::stream::iter(batches),
        )
        .await
        .unwrap();
    assert_eq!(n, 5);
    let got = query(&mut c, "SELECT id, at, emb FROM spine ORDER BY id").await;
    assert_eq!(int64s(&got, 0), (1..=5).map(Some).collect::<Vec<_>>());
    let emb = got[0]
        .column(2)
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap();
    let second = emb.value(1);
    let second = second.as_any().downcast_ref::<Float32Array>().unwrap();
    assert_eq!(second.values().to_vec(), vec![1.0f32, 0.5]);

    // Append with the columns in another order and one missing (NULL).
    let reordered = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("id", DataType::Int32, false),
        ])),
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![0])),
            Arc::new(datafusion::arrow::array::Int32Array::from(vec![6])),
        ],
    )
    .unwrap();
    let n = c
        .execute_ingest(
            ingest_cmd(
                "spine",
                TableNotExistOption::Fail,
                TableExistsOption::Append,
            ),
            futures::stream::iter(vec![Ok(reordered)]),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);

    // A schema that does not fit (a float into BIGINT), an unknown column, a
    // missing table, and replace (a feature table keeps its history).
    let one = |name: &str, t: DataType, v: Arc<dyn Array>| {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(name, t, false)])),
            vec![v],
        )
        .unwrap()
    };
    let float = one(
        "id",
        DataType::Float64,
        Arc::new(Float64Array::from(vec![1.5])),
    );
    let unknown = one("nope", DataType::Int64, Arc::new(Int64Array::from(vec![1])));
    let append = TableExistsOption::Append;
    for (table, exists, batch, code) in [
        ("spine", append, float, "42804"),
        ("spine", append, unknown, "42703"),
        ("missing", append, spine(vec![1]), "42P01"),
        ("spine", TableExistsOption::Replace, spine(vec![1]), "0A000"),
    ] {
        let e = c
            .execute_ingest(
                ingest_cmd(table, TableNotExistOption::Fail, exists),
                futures::stream::iter(vec![Ok(batch)]),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains(code), "{table}: {e}");
    }

    // A client that goes away mid-stream (its call canceled after two batches were
    // sent): nothing of it is written.
    let mut leaving = client(&server).await;
    let hang = futures::stream::iter(vec![Ok(spine(vec![100, 101])), Ok(spine(vec![102]))])
        .chain(futures::stream::pending());
    let call = tokio::spawn(async move {
        leaving
            .execute_ingest(
                ingest_cmd(
                    "spine",
                    TableNotExistOption::Fail,
                    TableExistsOption::Append,
                ),
                hang,
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    call.abort();
    assert!(call.await.is_err(), "the call was canceled");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let count = query(&mut c, "SELECT count(*) FROM spine").await;
    assert_eq!(
        int64s(&count, 0),
        vec![Some(6)],
        "failed ingests wrote nothing"
    );
}

#[tokio::test]
async fn authentication_and_malformed_tickets() {
    // Loopback not trusted: every call must authenticate.
    let server = start(&["--no-loopback-trust", "--user", "alice:s3cret"]);
    let mut c = client(&server).await;
    let e = c.execute("SELECT 1".into(), None).await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("authenticat"), "{e}");
    assert!(c.handshake("alice", "wrong").await.is_err());
    assert!(c.handshake("mallory", "s3cret").await.is_err());
    c.handshake("alice", "s3cret").await.unwrap();
    assert_eq!(rows(&query(&mut c, "SELECT 1 AS one").await), 1);

    for junk in [&b"garbage"[..], b"", b"HSFT\x01\x07"] {
        let r = c.do_get(Ticket::new(junk.to_vec())).await;
        let e = match r {
            Err(e) => e.to_string(),
            Ok(s) => s.try_collect::<Vec<_>>().await.unwrap_err().to_string(),
        };
        assert!(
            e.contains("InvalidArgument")
                || e.contains("invalid")
                || e.contains("malformed")
                || e.contains("decode"),
            "{e}"
        );
    }
    // A ticket of this server's format with a bad body, wrapped as Flight SQL does.
    let info = c.execute("SELECT 1 AS one".into(), None).await.unwrap();
    let good = info.endpoint[0].ticket.clone().unwrap();
    let mut bad = good.ticket.to_vec();
    let last = bad.len() - 1;
    bad[last] = 0xff;
    let r = c.do_get(Ticket::new(bad)).await;
    assert!(match r {
        Err(_) => true,
        Ok(s) => s.try_collect::<Vec<_>>().await.is_err(),
    });
    assert_eq!(
        rows(&query(&mut c, "SELECT 2 AS two").await),
        1,
        "still serving"
    );
}

#[tokio::test]
async fn memory_limit_and_timeout_end_the_statement_not_the_server() {
    let server = start(&["--query-memory-limit", "4MiB", "--statement-timeout", "2s"]);
    let mut c = client(&server).await;
    let failed = query_error(
        &mut c,
        "SELECT array_agg(value) FROM generate_series(1, 5000000)",
    )
    .await;
    assert!(
        failed.contains("53200") || failed.contains("57014"),
        "{failed}"
    );
    assert_eq!(
        rows(&query(&mut c, "SELECT 1 AS one").await),
        1,
        "still serving"
    );
}
