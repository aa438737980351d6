// node-postgres (the npm `pg` package) against a running Hindsight server: simple and
// parameterized queries, named prepared statements, type parsing, a transaction, an
// as-of join, errors with SQLSTATEs, and a pool of concurrent clients.
//
// Usage: node node_pg_session.js PORT   (prints "node-postgres session ok" or exits 1)
'use strict';

const assert = require('assert');
const { Client, Pool } = require('pg');

async function main() {
  const port = Number(process.argv[2]);
  const config = { host: '127.0.0.1', port, user: 'node', database: 'hindsight' };
  const client = new Client(config);
  await client.connect();

  await client.query(
    "CREATE TABLE nfeats (user_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, score DOUBLE PRECISION, " +
      "tags TEXT[], PRIMARY KEY (user_id)) WITH (event_time = 'ts')");

  // Parameterized inserts (extended protocol, text parameters).
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  for (let v = 0; v < 3; v++) {
    for (let id = 0; id < 20; id++) {
      const r = await client.query('INSERT INTO nfeats VALUES ($1, $2, $3, $4)', [
        id, new Date(t0 + v * 3600 * 1000), id + v / 10, ['a', String(v)]]);
      assert.strictEqual(r.rowCount, 1);
    }
  }

  // A named prepared statement, executed repeatedly.
  for (let id = 0; id < 5; id++) {
    const r = await client.query({
      name: 'latest',
      text: 'SELECT user_id, ts, score, tags FROM nfeats WHERE user_id = $1',
      values: [id],
    });
    assert.strictEqual(r.rows.length, 1);
    const row = r.rows[0];
    assert.strictEqual(row.user_id, String(id)); // int8 arrives as a string in pg
    assert.strictEqual(row.ts.getTime(), t0 + 2 * 3600 * 1000);
    assert.strictEqual(row.score, id + 0.2);
    assert.deepStrictEqual(row.tags, ['a', '2']);
    assert.deepStrictEqual(r.fields.map((f) => f.dataTypeID), [20, 1184, 701, 1009]);
  }

  // = ANY with an array parameter.
  const any = await client.query(
    'SELECT user_id FROM nfeats WHERE user_id = ANY($1) ORDER BY user_id', [[3, 1, 999]]);
  assert.deepStrictEqual(any.rows.map((r) => r.user_id), ['1', '3']);

  // A transaction: rolled back writes are not visible.
  await client.query('BEGIN');
  await client.query('INSERT INTO nfeats VALUES ($1, $2, $3, $4)', [500, new Date(t0), 1.5, null]);
  const inside = await client.query('SELECT count(*) AS n FROM nfeats WHERE user_id = 500');
  assert.strictEqual(inside.rows[0].n, '1');
  await client.query('ROLLBACK');
  const after = await client.query('SELECT count(*) AS n FROM nfeats WHERE user_id = 500');
  assert.strictEqual(after.rows[0].n, '0');

  // A point-in-time join.
  await client.query('CREATE TABLE nspine (user_id BIGINT, ts TIMESTAMPTZ)');
  await client.query(
    "INSERT INTO nspine VALUES (1, '2026-01-01 00:30:00+00'), (2, '2025-12-31 00:00:00+00')");
  const pit = await client.query(
    'SELECT s.user_id, f.score FROM nspine s ASOF JOIN nfeats f ' +
      'MATCH_CONDITION (s.ts >= f.ts) ON s.user_id = f.user_id ORDER BY s.user_id');
  assert.deepStrictEqual(pit.rows, [{ user_id: '1', score: 1 }, { user_id: '2', score: null }]);

  // Errors carry SQLSTATEs; the connection stays usable.
  await assert.rejects(client.query('SELECT * FROM nope'), (e) => e.code === '42P01');
  await assert.rejects(client.query('SELEC 1'), (e) => e.code === '42601');
  const one = await client.query('SELECT 1::int4 AS one');
  assert.strictEqual(one.rows[0].one, 1);
  const version = await client.query('SELECT version() AS v');
  assert.match(version.rows[0].v, /^PostgreSQL \d+\.\d+/);
  await client.end();

  // A pool of concurrent clients.
  const pool = new Pool({ ...config, max: 8 });
  const results = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      pool.query('SELECT score FROM nfeats WHERE user_id = $1', [i % 20])));
  results.forEach((r, i) => assert.strictEqual(r.rows[0].score, (i % 20) + 0.2));
  await pool.end();

  console.log('node-postgres session ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
