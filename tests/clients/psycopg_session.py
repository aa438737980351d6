"""psycopg 3 against a running Hindsight server: parameterized queries, executemany
pipelines, auto-prepared statements after repeats, binary results, pandas read_sql,
SQLAlchemy inspect() (get_table_names, has_table) and pandas to_sql through SQLAlchemy.

Usage: python3 psycopg_session.py PORT   (exits non-zero on the first failure)
"""
import datetime
import sys

import psycopg

port = int(sys.argv[1])
utc = datetime.timezone.utc
conn = psycopg.connect(f"host=127.0.0.1 port={port} user=py dbname=hindsight", autocommit=True)
conn.prepare_threshold = 3

conn.execute(
    "CREATE TABLE user_feats (user_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL,"
    " score DOUBLE PRECISION, tags TEXT[], PRIMARY KEY (user_id)) WITH (event_time = 'ts')"
)

# executemany: psycopg pipelines the inserts (Parse/Bind/Execute per row, one Sync);
# small ints are sent as int2/int4 and must widen to BIGINT.
t0 = datetime.datetime(2026, 1, 1, tzinfo=utc)
rows = [(i, t0 + datetime.timedelta(hours=v), i + v / 10, ["a", str(v)]) for i in range(200) for v in range(3)]
with conn.cursor() as cur:
    cur.executemany("INSERT INTO user_feats VALUES (%s, %s, %s, %s)", rows)
    assert cur.rowcount == len(rows), cur.rowcount

# Latest lookup, repeated past the prepare threshold (server-side prepared statement).
with conn.cursor() as cur:
    for i in range(10):
        cur.execute("SELECT user_id, ts, score, tags FROM user_feats WHERE user_id = %s", (i,))
        got = cur.fetchone()
        assert got == (i, t0 + datetime.timedelta(hours=2), i + 0.2, ["a", "2"]), got

# Binary results and = ANY(array parameter).
with conn.cursor(binary=True) as cur:
    cur.execute("SELECT user_id, score FROM user_feats WHERE user_id = ANY(%s) ORDER BY user_id", ([3, 1, 999],))
    assert cur.fetchall() == [(1, 1.2), (3, 3.2)]

# as_of with a timestamp parameter.
cur = conn.execute(
    "SELECT score FROM as_of(user_feats, %s) WHERE user_id = 7", (t0 + datetime.timedelta(minutes=90),)
)
assert cur.fetchone() == (7.1,)

# Errors carry SQLSTATEs that psycopg maps to exception classes.
try:
    conn.execute("SELECT * FROM nope")
    raise AssertionError("expected UndefinedTable")
except psycopg.errors.UndefinedTable:
    pass

# A training set through pandas.
import pandas as pd  # noqa: E402

conn.execute("CREATE TABLE spine (user_id BIGINT, ts TIMESTAMPTZ)")
with conn.cursor() as cur:
    cur.executemany("INSERT INTO spine VALUES (%s, %s)", [(1, t0 + datetime.timedelta(minutes=30)), (2, t0 - datetime.timedelta(days=1))])
df = pd.read_sql(
    "SELECT s.user_id, f.score FROM spine AS s ASOF JOIN user_feats AS f"
    " MATCH_CONDITION (s.ts >= f.ts) ON s.user_id = f.user_id ORDER BY s.user_id",
    conn,
)
assert list(df["user_id"]) == [1, 2], df
assert df["score"][0] == 1.0 and pd.isna(df["score"][1]), df

# SQLAlchemy: reflection the way ORMs and notebooks use it.
import sqlalchemy as sa  # noqa: E402

engine = sa.create_engine(f"postgresql+psycopg://py@127.0.0.1:{port}/hindsight")
insp = sa.inspect(engine)
assert {"user_feats", "spine"} <= set(insp.get_table_names()), insp.get_table_names()
assert insp.has_table("user_feats") and not insp.has_table("nope")
# (get_columns / get_pk_constraint are not supported yet: SQLAlchemy's reflection
# queries use correlated subqueries inside CASE that DataFusion cannot plan.)

# pandas to_sql (CREATE TABLE from a DataFrame, executemany inserts) and back.
out = pd.DataFrame({"user_id": [1, 2, 3], "score": [0.5, 1.5, None], "name": ["a", "b", "c"]})
out.to_sql("pd_scores", engine, index=False)
back = pd.read_sql("SELECT user_id, score, name FROM pd_scores ORDER BY user_id", engine)
assert list(back["user_id"]) == [1, 2, 3] and list(back["name"]) == ["a", "b", "c"], back
assert back["score"][1] == 1.5 and pd.isna(back["score"][2]), back
engine.dispose()
print("psycopg session ok")
