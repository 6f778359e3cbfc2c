// tests/bench/e2e/duckdb_bench.mjs — DuckDB side of strata's end-to-end
// benchmark (tests/bench/e2e_main.c runs it; `make bench-e2e`).
//
//   node duckdb_bench.mjs --csv FILE --db FILE --threads N --q2-lo TS --q2-hi TS
//
// Ingest: CSV -> durable native table (COPY, then CHECKPOINT), wall time
// from opening the database to the end of the checkpoint. Q1 and Q2: one
// warm-up, then the median of 5 runs. Size: used blocks x block size.
// RSS: the peak resident set of this process. Prints one JSON line.
import { DuckDBInstance } from '@duckdb/node-api';

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`duckdb_bench: --${name} is needed`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const csv = arg('csv'), db = arg('db'), threads = arg('threads');
const lo = arg('q2-lo'), hi = arg('q2-hi');
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function median5(conn, sql) {
  let result;
  await conn.runAndReadAll(sql);
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = now();
    result = (await conn.runAndReadAll(sql)).getRows();
    times.push(now() - t0);
  }
  times.sort((a, b) => a - b);
  return { s: times[2], rows: result };
}

const t0 = now();
const instance = await DuckDBInstance.create(db, { threads });
const conn = await instance.connect();
await conn.run('CREATE TABLE t (id BIGINT NOT NULL, ts TIMESTAMP, sensor VARCHAR, value DOUBLE)');
await conn.run(`COPY t FROM '${csv.replaceAll("'", "''")}' (HEADER true)`);
await conn.run('CHECKPOINT');
const ingest = now() - t0;
const rss_ingest = process.resourceUsage().maxRSS * 1024;

const n = Number((await conn.runAndReadAll('SELECT count(*) FROM t')).getRows()[0][0]);
const q1 = await median5(conn, 'SELECT sensor, sum(value) FROM t GROUP BY sensor');
const q2 = await median5(conn,
  `SELECT count(*), sum(value) FROM t WHERE ts >= TIMESTAMP '${lo}' AND ts < TIMESTAMP '${hi}'`);
const size = (await conn.runAndReadAll(
  'SELECT block_size, used_blocks FROM pragma_database_size()')).getRows()[0];

console.log(JSON.stringify({
  engine: 'duckdb',
  threads: Number(threads),
  rows: n,
  ingest_s: ingest,
  q1_s: q1.s,
  q1_groups: q1.rows.length,
  q2_s: q2.s,
  q2_count: Number(q2.rows[0][0]),
  q2_sum: Number(q2.rows[0][1]),
  size_bytes: Number(size[0]) * Number(size[1]),
  rss_ingest_bytes: rss_ingest,
  rss_peak_bytes: process.resourceUsage().maxRSS * 1024,
}));
