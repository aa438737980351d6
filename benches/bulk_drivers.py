"""Bulk load and bulk read through the Python drivers, one server at a time.

  python3 benches/bulk_drivers.py URI ROWS   (prints one JSON object of seconds)

Measures, on a fresh table `bulk_<n>` per step:
- asyncpg_text_in:   asyncpg copy_to_table of the rows as COPY text (one COPY);
- asyncpg_binary_in: asyncpg copy_records_to_table of the same rows (binary COPY;
                     asyncpg encodes each record in Python, on the clock);
- binary_bytes_in:   asyncpg copy_to_table of the same rows pre-encoded as a binary
                     COPY stream (the server's side of binary COPY, against
                     asyncpg_text_in's of text);
- adbc_ingest:       ADBC adbc_ingest of the rows as an Arrow table (binary COPY);
- adbc_fetch_arrow:  ADBC fetch_arrow_table of SELECT * (binary COPY out);
- polars_cx_read:    polars read_database_uri with connectorx (binary COPY out).
Row generation and Arrow/text preparation happen before the clock starts. The
table's DDL is Hindsight's (event_time option) or PostgreSQL's, by `--pg`.
"""
import asyncio
import datetime
import io
import json
import struct
import sys
import time

import adbc_driver_postgresql.dbapi as adbc
import asyncpg
import polars as pl
import pyarrow as pa

uri, n = sys.argv[1], int(sys.argv[2])
pg = "--pg" in sys.argv
utc = datetime.timezone.utc
t0 = datetime.datetime(2026, 1, 1, tzinfo=utc)
ids = list(range(n))
ts = [t0 + datetime.timedelta(seconds=i % 86400) for i in ids]
score = [i * 0.001 for i in ids]
trips = [i % 1000 for i in ids]
label = [f"label-{i % 5000}" for i in ids]


def ddl(name):
    cols = "id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, score DOUBLE PRECISION, trips BIGINT, label TEXT"
    if pg:
        return f"CREATE TABLE {name} ({cols}, PRIMARY KEY (id, ts))"
    return f"CREATE TABLE {name} ({cols}, PRIMARY KEY (id)) WITH (event_time = 'ts')"


out = {"rows": n}
PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=utc)


def binary_stream():
    """The rows as a binary COPY stream: header, tuples, end marker."""
    tuple_head = struct.Struct("!hiqiqiqiqi")
    parts = [b"PGCOPY\n\xff\r\n\0", struct.pack("!ii", 0, 0)]
    for i, t, s, tr, lb in zip(ids, ts, score, trips, label):
        us = (t - PG_EPOCH) // datetime.timedelta(microseconds=1)
        text = lb.encode()
        parts.append(tuple_head.pack(5, 8, i, 8, us, 8, struct.unpack("!q", struct.pack("!d", s))[0], 8, tr, len(text)))
        parts.append(text)
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)



async def asyncpg_steps():
    conn = await asyncpg.connect(uri)
    await conn.execute(ddl("bulk_text"))
    text = "".join(
        f"{i}\t{t.isoformat()}\t{s}\t{tr}\t{lb}\n" for i, t, s, tr, lb in zip(ids, ts, score, trips, label)
    ).encode()
    started = time.perf_counter()
    await conn.copy_to_table("bulk_text", source=io.BytesIO(text))
    out["asyncpg_text_in"] = time.perf_counter() - started
    del text
    await conn.execute(ddl("bulk_bytes"))
    stream = binary_stream()
    started = time.perf_counter()
    await conn.copy_to_table("bulk_bytes", source=io.BytesIO(stream), format="binary")
    out["binary_bytes_in"] = time.perf_counter() - started
    del stream
    await conn.execute(ddl("bulk_binary"))
    records = list(zip(ids, ts, score, trips, label))
    started = time.perf_counter()
    await conn.copy_records_to_table("bulk_binary", records=records)
    out["asyncpg_binary_in"] = time.perf_counter() - started
    await conn.close()


asyncio.run(asyncpg_steps())

table = pa.table(
    {
        "id": pa.array(ids, pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "score": pa.array(score, pa.float64()),
        "trips": pa.array(trips, pa.int64()),
        "label": pa.array(label, pa.string()),
    }
)
with adbc.connect(uri) as conn:
    with conn.cursor() as cur:
        cur.execute(ddl("bulk_adbc"))
        conn.commit()
        started = time.perf_counter()
        cur.adbc_ingest("bulk_adbc", table, mode="append")
        conn.commit()
        out["adbc_ingest"] = time.perf_counter() - started
        started = time.perf_counter()
        cur.execute("SELECT * FROM bulk_binary")
        got = cur.fetch_arrow_table()
        out["adbc_fetch_arrow"] = time.perf_counter() - started
        assert got.num_rows == n, got.num_rows
started = time.perf_counter()
df = pl.read_database_uri("SELECT * FROM bulk_binary", uri, engine="connectorx")
out["polars_cx_read"] = time.perf_counter() - started
assert df.height == n
print(json.dumps(out))
