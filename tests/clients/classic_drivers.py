"""psycopg2, pg8000 and SQLAlchemy 2 (over psycopg2, pg8000 and psycopg 3) against a
running Hindsight server, called the way their users call them:

- psycopg2: execute_values, copy_expert in and out, a named (server-side) cursor,
  bytea / timestamptz / float / array values, rollback of DDL, a LATERAL
  point-in-time join written by hand;
- pg8000: the native API and the DB-API with parameters;
- SQLAlchemy: create_all with an index the key serves (and in a schema of its
  own), Core insert and an UPDATE
  that sets every column (the key to its own value, as the ORM does), ORM session
  add/update, reflection (get_table_names, get_columns, get_schema_names,
  get_view_names, has_table, get_pk_constraint, get_indexes),
  pandas to_sql / read_sql.

Every value is checked exactly. Usage: python3 classic_drivers.py PORT
"""
import datetime
import io
import sys

import pandas as pd
import pg8000.dbapi
import pg8000.native
import psycopg2
import psycopg2.extras
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

port = int(sys.argv[1])
utc = datetime.timezone.utc
t1 = datetime.datetime(2026, 1, 1, tzinfo=utc)
t2 = datetime.datetime(2026, 1, 2, 12, 30, tzinfo=utc)


def psycopg2_session():
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="ml", dbname="hindsight")
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE feats (id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, x DOUBLE PRECISION,"
        " b BYTEA, s TEXT, e REAL[], PRIMARY KEY (id)) WITH (event_time = 'ts')"
    )
    conn.commit()
    psycopg2.extras.execute_values(
        cur,
        "INSERT INTO feats (id, ts, x, b, s, e) VALUES %s",
        [(1, t1, 0.5, b"\x00\x01\xff", "a", [1.5, 2.5]), (2, t2, None, None, None, None)],
    )
    conn.commit()
    cur.execute("SELECT id, ts, x, b, s, e FROM feats ORDER BY id")
    rows = cur.fetchall()
    assert rows[0][:3] == (1, t1, 0.5) and bytes(rows[0][3]) == b"\x00\x01\xff", rows
    assert rows[0][4:] == ("a", [1.5, 2.5]), rows
    assert rows[1] == (2, t2, None, None, None, None), rows
    cur.copy_expert(
        "COPY feats (id, ts, x) FROM STDIN WITH (FORMAT csv)",
        io.StringIO("3,2026-01-03 00:00:00+00,1.25\n"),
    )
    conn.commit()
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, x FROM feats ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", out)
    assert out.getvalue() == "id,x\n1,0.5\n2,\n3,1.25\n", out.getvalue()
    named = conn.cursor(name="big")
    named.itersize = 1
    named.execute("SELECT id FROM feats ORDER BY id")
    assert [r[0] for r in named] == [1, 2, 3]
    named.close()
    conn.commit()
    cur.execute("CREATE TABLE scratch (id BIGINT PRIMARY KEY)")
    conn.rollback()
    cur.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'")
    assert cur.fetchone() == (0,)
    # the point-in-time join many users write before they learn ASOF JOIN
    cur.execute(
        "INSERT INTO feats (id, ts, x) VALUES (1, '2026-01-05 00:00:00+00', 5.0)"
    )
    cur.execute(
        "SELECT l.id, l.at, f.x FROM (VALUES (1::bigint, TIMESTAMPTZ '2026-01-04 00:00:00+00'),"
        " (1, TIMESTAMPTZ '2026-01-06 00:00:00+00'), (9, TIMESTAMPTZ '2026-01-06 00:00:00+00')) AS l(id, at)"
        " LEFT JOIN LATERAL (SELECT h.x FROM history(feats) h WHERE h.id = l.id AND h.ts <= l.at"
        " ORDER BY h.ts DESC LIMIT 1) f ON true ORDER BY l.id, l.at"
    )
    assert cur.fetchall() == [
        (1, datetime.datetime(2026, 1, 4, tzinfo=utc), 0.5),
        (1, datetime.datetime(2026, 1, 6, tzinfo=utc), 5.0),
        (9, datetime.datetime(2026, 1, 6, tzinfo=utc), None),
    ]
    conn.commit()
    conn.close()


def pg8000_session():
    con = pg8000.native.Connection("ml", host="127.0.0.1", port=port, database="hindsight")
    rows = con.run("SELECT id, ts, b FROM feats WHERE id = :id", id=1)
    assert rows == [[1, datetime.datetime(2026, 1, 5, tzinfo=utc), None]], rows
    con.run(
        "INSERT INTO feats (id, ts, x, b) VALUES (:i, :t, :x, :b)",
        i=4, t=t2, x=2.5, b=b"\x10\x00",
    )
    assert con.run("SELECT b, x, ts FROM feats WHERE id = 4") == [[b"\x10\x00", 2.5, t2]]
    con.close()
    dbapi = pg8000.dbapi.connect("ml", host="127.0.0.1", port=port, database="hindsight")
    cur = dbapi.cursor()
    cur.execute("SELECT id FROM feats WHERE x > %s ORDER BY id", (1.0,))
    assert [r[0] for r in cur.fetchall()] == [1, 3, 4]
    dbapi.rollback()
    dbapi.close()


class Base(DeclarativeBase):
    pass


class Driver(Base):
    __tablename__ = "drivers_orm"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    rating: Mapped[float] = mapped_column(sa.Float, nullable=True)
    name: Mapped[str] = mapped_column(sa.Text, nullable=True)


def sqlalchemy_session(url, suffix):
    eng = sa.create_engine(url)
    md = sa.MetaData()
    name = f"orm_{suffix}"
    t = sa.Table(
        name, md,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("v", sa.Float),
        sa.Column("label", sa.Text),
        sa.Index(f"{name}_by_id", "id"),
    )
    md.create_all(eng)
    md.create_all(eng)  # checkfirst: a second run creates nothing
    with eng.begin() as c:
        c.execute(t.insert(), [{"id": 1, "v": 0.5, "label": "a"}, {"id": 2, "v": None, "label": None}])
        c.execute(t.update().where(t.c.id == 1).values(id=1, v=0.75, label="b"))
        assert c.execute(sa.select(t).order_by(t.c.id)).all() == [(1, 0.75, "b"), (2, None, None)]
    insp = sa.inspect(eng)
    assert name in insp.get_table_names(), insp.get_table_names()
    assert "public" in insp.get_schema_names()
    assert insp.get_view_names() == []
    assert insp.has_table(name) and not insp.has_table("nope")
    pk = insp.get_pk_constraint(name)
    assert (pk["name"], pk["constrained_columns"]) == (f"{name}_pkey", ["id"]), pk
    ixs = [(i["name"], i["column_names"], i["unique"]) for i in insp.get_indexes(name)]
    assert ixs == [(f"{name}_by_id", ["id"], False)], ixs
    cols = [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(name)]
    assert cols == [("id", "BIGINT", False), ("v", "DOUBLE PRECISION", True), ("label", "TEXT", True)], cols
    schema_session(eng, f"feat_{suffix}")
    return eng


def schema_session(eng, schema):
    """create_all of tables in a schema of their own, reflection by schema, DROP SCHEMA."""
    with eng.begin() as c:
        c.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
    md = sa.MetaData(schema=schema)
    t = sa.Table(
        "scores", md,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("s", sa.Float),
        sa.Index("scores_by_id", "id"),
    )
    md.create_all(eng)
    md.create_all(eng)
    with eng.begin() as c:
        c.execute(t.insert(), [{"id": 1, "s": 0.5}, {"id": 2, "s": 1.5}])
        c.execute(t.update().where(t.c.id == 2).values(s=2.5))
        assert c.execute(sa.select(t).order_by(t.c.id)).all() == [(1, 0.5), (2, 2.5)]
        # the same name unqualified is another (absent) table: search_path is public
        assert c.execute(sa.text(f"SELECT count(*) FROM {schema}.scores")).scalar() == 2
    insp = sa.inspect(eng)
    assert schema in insp.get_schema_names(), insp.get_schema_names()
    assert insp.get_table_names(schema=schema) == ["scores"], insp.get_table_names(schema=schema)
    assert insp.has_table("scores", schema=schema) and not insp.has_table("scores")
    pd.DataFrame({"id": [3], "s": [3.5]}).to_sql("scores", eng, schema=schema, if_exists="append", index=False)
    back = pd.read_sql(sa.select(t).order_by(t.c.id), eng)
    assert back["s"].tolist() == [0.5, 2.5, 3.5], back
    with eng.begin() as c:
        c.execute(sa.schema.DropSchema(schema, cascade=True))
    assert schema not in sa.inspect(eng).get_schema_names()


def orm_session(eng):
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        s.add_all([Driver(id=1, rating=4.5, name="ann"), Driver(id=2, rating=None, name="bob")])
        s.commit()
        d = s.get(Driver, 1)
        d.rating = 4.75
        s.commit()
    with Session(eng) as s:
        got = [(d.id, d.rating, d.name) for d in s.scalars(sa.select(Driver).order_by(Driver.id))]
        assert got == [(1, 4.75, "ann"), (2, None, "bob")], got


def pandas_session(eng):
    df = pd.DataFrame({"id": [1, 2], "score": [0.25, None], "ts": [t1, t2]})
    df.to_sql("pd_feats", eng, index=False)
    back = pd.read_sql("SELECT id, score, ts FROM pd_feats ORDER BY id", eng)
    assert back["id"].tolist() == [1, 2]
    assert back["score"].tolist()[0] == 0.25 and pd.isna(back["score"].tolist()[1])
    assert [t.to_pydatetime() for t in back["ts"]] == [t1, t2], back["ts"].tolist()


psycopg2_session()
pg8000_session()
for suffix, url in [
    ("psycopg2", f"postgresql+psycopg2://ml@127.0.0.1:{port}/hindsight"),
    ("pg8000", f"postgresql+pg8000://ml@127.0.0.1:{port}/hindsight"),
    ("psycopg", f"postgresql+psycopg://ml@127.0.0.1:{port}/hindsight"),
]:
    engine = sqlalchemy_session(url, suffix)
orm_session(engine)
pandas_session(engine)
print("classic drivers ok")
