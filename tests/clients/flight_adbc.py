"""Arrow Flight SQL clients as ML engineers call them: the ADBC Flight SQL driver
(DB-API: execute, parameters, fetch_arrow_table, adbc_ingest, adbc_get_objects,
adbc_get_table_schema), pandas and polars on its Arrow tables, and pyarrow.flight
directly (raw Flight SQL commands, basic-token auth over TLS).

Usage: flight_adbc.py FLIGHT_PORT TLS_FLIGHT_PORT CERT_PEM PG_PORT
  FLIGHT_PORT: a server trusting loopback; TLS_FLIGHT_PORT: a server with TLS,
  loopback not trusted and the user alice/s3cret.
"""

import datetime
import sys

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pandas
import polars
import pyarrow as pa
import pyarrow.flight as fl

flight_port, tls_port, cert_path, _pg_port = sys.argv[1:5]
UTC = datetime.timezone.utc


def ts(day):
    return datetime.datetime(2026, 1, day, tzinfo=UTC)


def expect_error(fn, *codes):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the driver's own error classes vary
        text = str(e)
        assert any(c in text for c in codes), f"expected one of {codes}: {text}"
        return
    raise AssertionError(f"expected an error with one of {codes}")


def adbc_session():
    with flightsql.connect(f"grpc://127.0.0.1:{flight_port}") as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE drivers (id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, "
            "rate DOUBLE PRECISION, emb REAL[], note TEXT, PRIMARY KEY (id)) "
            "WITH (event_time = 'ts')"
        )
        data = pa.table(
            {
                "id": pa.array([1, 1, 2], pa.int64()),
                "ts": pa.array([ts(1), ts(3), ts(2)], pa.timestamp("us", tz="UTC")),
                "rate": pa.array([0.5, 0.7, None], pa.float64()),
                "emb": pa.array([[1.0, 2.5], None, []], pa.list_(pa.float32())),
                "note": pa.array(["a", None, "b"], pa.string()),
            }
        )
        assert cur.adbc_ingest("drivers", data, mode="append") == 3

        cur.execute("SELECT id, ts, rate, emb, note FROM drivers ORDER BY id")
        t = cur.fetch_arrow_table()
        assert t.num_rows == 2, t
        assert pa.types.is_timestamp(t.schema.field("ts").type), t.schema
        assert t.schema.field("ts").type.tz in ("+00:00", "UTC"), t.schema
        assert t.column("ts").to_pylist() == [ts(3), ts(2)], t.column("ts")
        assert t.column("rate").to_pylist() == [0.7, None]
        assert t.schema.field("emb").type == pa.list_(pa.float32()), t.schema
        assert t.column("emb").to_pylist() == [None, []]
        assert t.column("note").to_pylist() == [None, "b"]

        cur.execute(
            "SELECT id, rate, emb FROM as_of(drivers, TIMESTAMPTZ '2026-01-02 12:00:00+00') "
            "ORDER BY id"
        )
        t = cur.fetch_arrow_table()
        assert t.column("emb").to_pylist() == [[1.0, 2.5], []], t
        cur.execute("SELECT count(*) AS n FROM history(drivers)")
        assert cur.fetchone()[0] == 3

        cur.execute("SELECT id, rate FROM drivers WHERE id = $1", parameters=(1,))
        assert cur.fetchall() == [(1, 0.7)]

        # DDL and DML through execute (prepared by the driver, results read in the
        # background): done when execute returns, with the affected-row count.
        for i in range(10):
            cur.execute(f"CREATE TABLE events_{i} (id BIGINT)")
            cur.execute(f"INSERT INTO events_{i} VALUES ($1), ($2)", (i, i + 1))
            assert cur.rowcount == 2, cur.rowcount
            cur.execute(f"SELECT count(*) FROM events_{i}")
            assert cur.fetchone()[0] == 2

        spine = pa.table(
            {
                "id": pa.array([1, 1, 3], pa.int64()),
                "at": pa.array([ts(2), ts(4), ts(4)], pa.timestamp("ns", tz="UTC")),
            }
        )
        assert cur.adbc_ingest("labels", spine, mode="create") == 3
        cur.execute(
            "SELECT s.id, s.at, f.rate FROM labels AS s ASOF JOIN drivers AS f "
            "MATCH_CONDITION (s.at >= f.ts) ON s.id = f.id ORDER BY s.at, s.id"
        )
        training = cur.fetch_arrow_table()
        assert training.column("rate").to_pylist() == [0.5, 0.7, None], training
        df = pandas.DataFrame(training.to_pandas())
        assert list(df["id"]) == [1, 1, 3]
        pl = polars.from_arrow(training)
        assert pl["rate"].null_count() == 1

        cur.execute("SELECT id, rate FROM drivers ORDER BY id")
        assert list(cur.fetch_df()["id"]) == [1, 2]

        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        catalogs = {c["catalog_name"]: c for c in objects}
        assert "hindsight" in catalogs, catalogs.keys()
        public = [s for s in catalogs["hindsight"]["catalog_db_schemas"] if s["db_schema_name"] == "public"]
        tables = {t["table_name"]: t for t in public[0]["db_schema_tables"]}
        assert {"drivers", "labels"} <= set(tables), tables.keys()
        assert [c["column_name"] for c in tables["drivers"]["table_columns"]] == [
            "id", "ts", "rate", "emb", "note"
        ], tables["drivers"]
        schema = conn.adbc_get_table_schema("drivers")
        assert schema.field("emb").type == pa.list_(pa.float32()), schema
        assert schema.field("rate").type == pa.float64(), schema
        assert "TABLE" in conn.adbc_get_table_types()

        expect_error(lambda: cur.execute("SELECT * FROM nope"), "42P01")
        bad = pa.table({"id": pa.array([1.5], pa.float64())})
        expect_error(lambda: cur.adbc_ingest("labels", bad, mode="append"), "42804")
        cur.execute("SELECT count(*) FROM labels")
        assert cur.fetchone()[0] == 3, "the refused ingest wrote nothing"
        cur.close()


def flight_sql_command(sql):
    """Any{CommandStatementQuery{query}}, protobuf-encoded by hand."""

    def varint(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number, payload):
        return bytes([number << 3 | 2]) + varint(len(payload)) + payload

    inner = field(1, sql.encode())
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, url) + field(2, inner)


def read(client, sql, options=None):
    descriptor = fl.FlightDescriptor.for_command(flight_sql_command(sql))
    options = options or fl.FlightCallOptions()
    info = client.get_flight_info(descriptor, options)
    tables = [client.do_get(e.ticket, options).read_all() for e in info.endpoints]
    return pa.concat_tables(tables)


def pyarrow_flight_session():
    plain = fl.FlightClient(f"grpc://127.0.0.1:{flight_port}")
    t = read(plain, "SELECT id, rate FROM drivers ORDER BY id")
    assert t.column("id").to_pylist() == [1, 2], t

    root = open(cert_path, "rb").read()
    secure = fl.FlightClient(f"grpc+tls://localhost:{tls_port}", tls_root_certs=root)
    expect_error(lambda: secure.authenticate_basic_token("alice", "wrong"), "password", "nauthenticated")
    expect_error(lambda: read(secure, "SELECT 1 AS one"), "authenticat")
    header = secure.authenticate_basic_token("alice", "s3cret")
    t = read(secure, "SELECT 40 + 2 AS answer", fl.FlightCallOptions(headers=[header]))
    assert t.column("answer").to_pylist() == [42], t


def adbc_over_tls():
    root = open(cert_path, "rb").read().decode()
    kwargs = {
        "username": "alice",
        "password": "s3cret",
        adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: root,
    }
    with flightsql.connect(f"grpc+tls://localhost:{tls_port}", db_kwargs=kwargs) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 7 AS seven")
            assert cur.fetchone() == (7,)
    bad = dict(kwargs, password="wrong")
    expect_error(
        lambda: flightsql.connect(f"grpc+tls://localhost:{tls_port}", db_kwargs=bad).cursor().execute("SELECT 1"),
        "password",
        "nauthenticated",
        "UNAUTHENTICATED",
    )


adbc_session()
pyarrow_flight_session()
adbc_over_tls()
print("flight clients ok")
