"""The bulk and Arrow paths of the Python drivers ML engineers use, against a running
Hindsight server, called the way their users call them:

- asyncpg: type introspection, prepared statements, copy_records_to_table (binary COPY
  in), copy_from_query and copy_from_table (COPY out);
- psycopg 3: binary COPY in (write_row) and out (rows with set_types), text COPY out read
  row by row (one row per CopyData message);
- ADBC PostgreSQL driver: connect (its pg_type query), adbc_ingest (binary COPY in),
  fetch_arrow_table (binary COPY out);
- polars: read_database_uri with connectorx (binary COPY out) and adbc, write_database
  with adbc;
- named cursors: a psycopg server-side cursor (DECLARE/FETCH/CLOSE, pg_cursors) and
  pandas read_sql with chunksize over SQLAlchemy stream_results.

Every value is checked exactly: timestamps with time zone, NULLs, floats, bytea, arrays.

Usage: python3 bulk_drivers.py PORT   (exits non-zero on the first failure)
"""
import asyncio
import datetime
import io
import sys

import adbc_driver_postgresql.dbapi as adbc
import asyncpg
import polars as pl
import psycopg
import pyarrow as pa

port = int(sys.argv[1])
uri = f"postgresql://ml@127.0.0.1:{port}/hindsight"
utc = datetime.timezone.utc
t0 = datetime.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=utc)


def expected_row(i):
    """Row i of the feature table every client below writes and reads."""
    return (
        i,
        t0 + datetime.timedelta(minutes=i),
        None if i % 7 == 0 else i * 0.25 - 3.0,
        bytes([i % 256, 0, 255]) if i % 5 else None,
        f"name-{i}" if i % 3 else None,
        [float(i), 0.5] if i % 4 else None,
    )


N = 2500
ROWS = [expected_row(i) for i in range(N)]
DDL = (
    "CREATE TABLE {name} (id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, score DOUBLE PRECISION,"
    " payload BYTEA, label TEXT, emb REAL[], PRIMARY KEY (id)) WITH (event_time = 'ts')"
)


async def asyncpg_session():
    conn = await asyncpg.connect(uri)
    await conn.execute(DDL.format(name="pg_async"))
    # copy_records_to_table: binary COPY FROM STDIN, types introspected from the table.
    status = await conn.copy_records_to_table(
        "pg_async", records=ROWS, columns=["id", "ts", "score", "payload", "label", "emb"]
    )
    assert status == f"COPY {N}", status
    # Prepared statement with a parameter; results decoded in binary by type OID.
    stmt = await conn.prepare("SELECT id, ts, score, payload, label, emb FROM pg_async WHERE id = $1")
    for i in (1, 7, 10, 12, 2499):
        rec = await stmt.fetchrow(i)
        assert tuple(rec) == expected_row(i), (tuple(rec), expected_row(i))
    got = await conn.fetch("SELECT id, ts, score, payload, label, emb FROM pg_async ORDER BY id")
    assert [tuple(r) for r in got] == ROWS
    # COPY out through asyncpg (text format, into a file-like object).
    buf = io.BytesIO()
    status = await conn.copy_from_query("SELECT id, label FROM pg_async WHERE id < 4 ORDER BY id", output=buf)
    assert status == "COPY 4", status
    assert buf.getvalue() == b"0\t\\N\n1\tname-1\n2\tname-2\n3\t\\N\n", buf.getvalue()
    buf = io.BytesIO()
    status = await conn.copy_from_table("pg_async", columns=["id"], output=buf, format="csv")
    assert status == f"COPY {N}", status
    assert sorted(int(x) for x in buf.getvalue().split()) == list(range(N))
    await conn.close()


def psycopg_session():
    with psycopg.connect(f"host=127.0.0.1 port={port} user=ml dbname=hindsight", autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(DDL.format(name="pg_psy"))
        types = ["int8", "timestamptz", "float8", "bytea", "text", "float4[]"]
        with cur.copy("COPY pg_psy (id, ts, score, payload, label, emb) FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(types)
            for r in ROWS:
                cp.write_row(r)
        assert cur.rowcount == N, cur.rowcount
        with cur.copy("COPY (SELECT id, ts, score, payload, label, emb FROM pg_psy ORDER BY id) TO STDOUT (FORMAT binary)") as cp:
            cp.set_types(types)
            got = list(cp.rows())
        assert got == ROWS, (got[:3], ROWS[:3])
        # Text COPY read row by row: psycopg takes each CopyData message as one row.
        with cur.copy("COPY (SELECT id, score FROM pg_psy WHERE id < 100 ORDER BY id) TO STDOUT") as cp:
            got = list(cp.rows())
        assert len(got) == 100, len(got)
        assert got[8] == ("8", "-1"), got[8]
        assert got[7] == ("7", None), got[7]


def adbc_session():
    with adbc.connect(uri) as conn:
        with conn.cursor() as cur:
            table = pa.table(
                {
                    "id": pa.array(range(N), pa.int64()),
                    "ts": pa.array([r[1] for r in ROWS], pa.timestamp("us", tz="UTC")),
                    "score": pa.array([r[2] for r in ROWS], pa.float64()),
                    "payload": pa.array([r[3] for r in ROWS], pa.binary()),
                    "label": pa.array([r[4] for r in ROWS], pa.string()),
                }
            )
            # adbc_ingest creates the table and loads it with binary COPY.
            assert cur.adbc_ingest("adbc_feats", table, mode="create") == N
            conn.commit()
            cur.execute("SELECT id, ts, score, payload, label FROM adbc_feats ORDER BY id")
            got = cur.fetch_arrow_table()
            assert got.num_rows == N, got.num_rows
            assert got.column("id").to_pylist() == list(range(N))
            assert got.column("ts").to_pylist() == [r[1] for r in ROWS]
            assert got.column("score").to_pylist() == [r[2] for r in ROWS]
            assert got.column("payload").to_pylist() == [r[3] for r in ROWS]
            assert got.column("label").to_pylist() == [r[4] for r in ROWS]
            # Appending to an existing table: an Arrow int32 goes into the BIGINT column.
            more = pa.table({"id": pa.array([N], pa.int32()), "ts": pa.array([t0], pa.timestamp("us", tz="UTC"))})
            assert cur.adbc_ingest("adbc_feats", more, mode="append") == 1
            conn.commit()
            cur.execute("SELECT count(*) FROM adbc_feats")
            assert cur.fetchone() == (N + 1,)


def polars_session():
    query = "SELECT id, ts, score, payload, label FROM pg_async ORDER BY id"
    for engine in ("connectorx", "adbc"):
        df = pl.read_database_uri(query, uri, engine=engine)
        assert df.height == N, (engine, df.height)
        assert df["id"].to_list() == list(range(N)), engine
        assert df["score"].to_list() == [r[2] for r in ROWS], engine
        assert df["payload"].to_list() == [r[3] for r in ROWS], engine
        assert df["label"].to_list() == [r[4] for r in ROWS], engine
        ts = [t.replace(tzinfo=utc) if t.tzinfo is None else t for t in df["ts"].to_list()]
        assert ts == [r[1] for r in ROWS], engine
    out = pl.DataFrame({"id": [1, 2, 3], "ts": [t0, t0, t0], "score": [0.5, None, -2.25]})
    out.write_database("pl_out", uri, engine="adbc", if_table_exists="replace")
    back = pl.read_database_uri("SELECT id, score FROM pl_out ORDER BY id", uri, engine="adbc")
    assert back.rows() == [(1, 0.5), (2, None), (3, -2.25)], back.rows()


def cursor_session():
    import pandas as pd
    import sqlalchemy

    with psycopg.connect(f"host=127.0.0.1 port={port} user=ml dbname=hindsight") as conn:
        with conn.cursor(name="feats") as cur:
            cur.itersize = 300
            cur.execute("SELECT id, ts, score, payload, label, emb FROM pg_async WHERE id >= %s ORDER BY id", (5,))
            assert cur.fetchmany(2) == [expected_row(5), expected_row(6)]
            assert cur.fetchone() == expected_row(7)
            assert list(cur) == ROWS[8:]
        conn.commit()
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://ml@127.0.0.1:{port}/hindsight")
    with engine.connect().execution_options(stream_results=True) as conn:
        chunks = list(pd.read_sql("SELECT id, score FROM pg_async ORDER BY id", conn, chunksize=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500], [len(c) for c in chunks]
    assert pd.concat(chunks)["id"].tolist() == list(range(N))


asyncio.run(asyncpg_session())
psycopg_session()
adbc_session()
polars_session()
cursor_session()
print("bulk drivers ok")
