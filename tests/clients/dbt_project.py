"""dbt-postgres against a running Hindsight server, the way a dbt user works: a small
project with a table model built from history(), a view model over it, a view over
an as-of join (point-in-time training rows), schema tests and a singular test.

`dbt run` runs three times: the first creates the relations, the later ones take
dbt's rebuild path (create __dbt_tmp, rename the old relation to __dbt_backup,
rename the new one in, drop the backup with CASCADE) inside transactions, which
needs transactional DDL, views, ALTER TABLE ... RENAME and DROP ... CASCADE. `dbt
test` must pass, and a deliberately failing test must fail. Values are checked
exactly with psycopg afterwards.

Usage: python3 dbt_project.py PORT   (exits non-zero on the first failure)
"""
import datetime
import os
import shutil
import subprocess
import sys
import tempfile

import psycopg

port = int(sys.argv[1])
utc = datetime.timezone.utc

PROJECT = """
name: hs_features
version: "1.0"
config-version: 2
profile: hindsight
model-paths: ["models"]
test-paths: ["tests"]
"""

PROFILES = f"""
hindsight:
  target: dev
  outputs:
    dev:
      type: postgres
      host: 127.0.0.1
      port: {port}
      user: ml
      password: ""
      dbname: hindsight
      schema: public
      threads: 1
"""

MODELS = {
    "driver_features.sql": """
{{ config(materialized='table') }}
select driver_id, avg(conv_rate) as avg_conv, count(*) as n_versions
from history(driver_stats)
group by driver_id
""",
    "active_drivers.sql": """
{{ config(materialized='view') }}
select driver_id, avg_conv from {{ ref('driver_features') }} where n_versions > 1
""",
    "training_rows.sql": """
{{ config(materialized='view') }}
select l.driver_id, l.label_ts, l.churned, f.conv_rate
from labels l
asof join driver_stats f
  match_condition (l.label_ts >= f.event_ts)
  on l.driver_id = f.driver_id
""",
    "schema.yml": """
version: 2
models:
  - name: driver_features
    columns:
      - name: driver_id
        tests: [unique, not_null]
  - name: active_drivers
    columns:
      - name: driver_id
        tests: [unique, not_null]
  - name: training_rows
    columns:
      - name: conv_rate
        tests: [not_null]
""",
}

FAILING_TEST = """
-- fails: driver 2 has a single version
select driver_id from {{ ref('driver_features') }} where n_versions < 2
"""


def dbt(project, *args):
    exe = shutil.which("dbt")
    assert exe, "dbt is not on PATH"
    env = dict(os.environ, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DO_NOT_TRACK="1")
    cmd = [exe, *args, "--profiles-dir", project, "--project-dir", project]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def must(result, what):
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-2000:])
        raise SystemExit(f"{what} failed with exit code {result.returncode}")


def seed(conn):
    conn.execute(
        "CREATE TABLE driver_stats (driver_id BIGINT NOT NULL, event_ts TIMESTAMPTZ NOT NULL,"
        " conv_rate DOUBLE PRECISION, PRIMARY KEY (driver_id)) WITH (event_time = 'event_ts')"
    )
    conn.execute(
        "INSERT INTO driver_stats VALUES (1, '2026-03-01 00:00:00+00', 0.5),"
        " (1, '2026-03-02 00:00:00+00', 0.75), (2, '2026-03-01 12:00:00+00', 0.125)"
    )
    conn.execute(
        "CREATE TABLE labels (driver_id BIGINT NOT NULL, label_ts TIMESTAMPTZ NOT NULL,"
        " churned BOOLEAN) WITH (event_time = 'label_ts')"
    )
    conn.execute(
        "INSERT INTO labels VALUES (1, '2026-03-01 06:00:00+00', false),"
        " (1, '2026-03-03 00:00:00+00', true), (2, '2026-03-02 00:00:00+00', false)"
    )


def check(conn):
    rows = conn.execute("SELECT * FROM driver_features ORDER BY driver_id").fetchall()
    assert rows == [(1, 0.625, 2), (2, 0.125, 1)], rows
    rows = conn.execute("SELECT * FROM active_drivers").fetchall()
    assert rows == [(1, 0.625)], rows
    rows = conn.execute("SELECT * FROM training_rows ORDER BY driver_id, label_ts").fetchall()
    assert rows == [
        (1, datetime.datetime(2026, 3, 1, 6, tzinfo=utc), False, 0.5),
        (1, datetime.datetime(2026, 3, 3, tzinfo=utc), True, 0.75),
        (2, datetime.datetime(2026, 3, 2, tzinfo=utc), False, 0.125),
    ], rows
    kinds = conn.execute(
        "SELECT table_name, table_type FROM information_schema.tables"
        " WHERE table_schema = 'public' ORDER BY table_name"
    ).fetchall()
    assert kinds == [
        ("active_drivers", "VIEW"),
        ("driver_features", "BASE TABLE"),
        ("driver_stats", "BASE TABLE"),
        ("labels", "BASE TABLE"),
        ("training_rows", "VIEW"),
    ], kinds
    views = conn.execute("SELECT viewname FROM pg_views ORDER BY 1").fetchall()
    assert views == [("active_drivers",), ("training_rows",)], views


def main():
    with psycopg.connect(f"postgresql://ml@127.0.0.1:{port}/hindsight", autocommit=True) as conn:
        seed(conn)
        project = tempfile.mkdtemp(prefix="hs_dbt_")
        try:
            os.makedirs(f"{project}/models")
            os.makedirs(f"{project}/tests")
            with open(f"{project}/dbt_project.yml", "w") as f:
                f.write(PROJECT)
            with open(f"{project}/profiles.yml", "w") as f:
                f.write(PROFILES)
            for name, text in MODELS.items():
                with open(f"{project}/models/{name}", "w") as f:
                    f.write(text)
            for attempt in range(3):
                must(dbt(project, "run"), f"dbt run #{attempt + 1}")
                check(conn)
            must(dbt(project, "test"), "dbt test")
            with open(f"{project}/tests/single_version_drivers.sql", "w") as f:
                f.write(FAILING_TEST)
            failed = dbt(project, "test", "--select", "single_version_drivers")
            assert failed.returncode == 1, (failed.returncode, failed.stdout[-2000:])
            assert "FAIL 1" in failed.stdout, failed.stdout[-2000:]
        finally:
            shutil.rmtree(project, ignore_errors=True)
    print("dbt project ok")


main()
