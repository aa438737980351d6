"""psycopg 3 against a Hindsight cluster, the way its users connect to a
PostgreSQL primary/standby set: one multi-host URL with
target_session_attrs=read-write reaches the leader (retrying while an election
runs), writes there, and reports which port it reached; on a standby
(target_session_attrs=standby) writes fail with 25006 (ReadOnlySqlTransaction)
naming the leader, and COPY FROM too.

Usage: python3 psycopg_cluster.py URL_HOSTS ID   (URL_HOSTS: h1:p1,h2:p2,h3:p3;
ID: a fresh key to insert). Prints "leader PORT" and "psycopg cluster ok".
"""
import sys
import time

import psycopg
from psycopg import errors

hosts, key = sys.argv[1], int(sys.argv[2])
base = f"postgresql://py@{hosts}/hindsight?connect_timeout=2"


def connect(attrs):
    deadline = time.monotonic() + 30
    while True:
        try:
            return psycopg.connect(f"{base}&target_session_attrs={attrs}", autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def write(conn, k):
    conn.execute("INSERT INTO pyc (id, v) VALUES (%s, %s)", (k, k * 2))


deadline = time.monotonic() + 30
while True:
    # Right after a failover the old leader's sessions end (57P01) and the new
    # leader may still be applying its log: a fresh connection retries.
    conn = connect("read-write")
    try:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        conn.execute("CREATE TABLE IF NOT EXISTS pyc (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))")
        write(conn, key)
        break
    except (psycopg.OperationalError, errors.ReadOnlySqlTransaction):
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
leader_port = conn.info.port
assert conn.execute("SELECT v FROM pyc WHERE id = %s", (key,)).fetchone()[0] == key * 2

standby = connect("standby")
assert standby.info.port != leader_port
assert standby.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
assert standby.execute("SHOW transaction_read_only").fetchone()[0] == "on"
# Right after a failover a standby may not have heard the new leader's address yet
# (it polls its peers); the message then says so, and names it a moment later.
deadline = time.monotonic() + 10
while True:
    try:
        write(standby, 10_000 + key)
        raise AssertionError("a standby took a write")
    except errors.ReadOnlySqlTransaction as e:
        assert e.sqlstate == "25006", e.sqlstate
        if f":{leader_port}" in str(e):
            break
        assert "address not yet known" in str(e) and time.monotonic() < deadline, str(e)
        time.sleep(0.1)
try:
    with standby.cursor().copy("COPY pyc (id, v) FROM STDIN") as cp:
        cp.write_row((20_000 + key, 1))
    raise AssertionError("a standby took a COPY")
except errors.ReadOnlySqlTransaction as e:
    assert e.sqlstate == "25006", e.sqlstate

print(f"leader {leader_port}")
print("psycopg cluster ok")
