// tests/bench/e2e/duckdb_dml.mjs — DuckDB side of strata's DML benchmark
// (tests/bench/dml_main.c runs it; `make bench-dml`).
//
//   node duckdb_dml.mjs --csv FILE --src FILE --dir DIR --threads N --copies K
//                       --pred SQL --ts-hi TS
//
// Durable throughout: every table lives in a database file. The bench table
// is loaded once (COPY, CHECKPOINT) into DIR/base.db; each timed DML runs on
// a fresh copy of that file (a file copy, not timed) and its time is the
// statement plus the CHECKPOINT that puts its work on disk. K copies per
// case; the median is printed. Cases:
//   delete_scattered  DELETE FROM t WHERE <pred>
//   delete_ts_range   DELETE FROM t WHERE ts < TIMESTAMP '<ts-hi>'
//   update            UPDATE t SET value = value * 2 WHERE <pred>
//   merge             MERGE INTO t USING read_csv(<src>) s ON t.id = s.id
//                     WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *
//                     (INSERT OR REPLACE on a primary key when MERGE is refused)
// Prints one JSON line: for each case its median ms, all the times and the
// rows it changed.
import { DuckDBInstance } from '@duckdb/node-api';
import fs from 'node:fs';
import path from 'node:path';

function arg(name) {
  const i = process.argv.indexOf('--' + name);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`duckdb_dml: --${name} is needed`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const csv = arg('csv'), src = arg('src'), dir = arg('dir');
const threads = arg('threads'), copies = Number(arg('copies'));
const pred = arg('pred'), tsHi = arg('ts-hi');
const now = () => Number(process.hrtime.bigint()) / 1e9;
const q = (s) => "'" + s.replaceAll("'", "''") + "'";
const COLS = "{'id': 'BIGINT', 'ts': 'TIMESTAMP', 'sensor': 'VARCHAR', 'value': 'DOUBLE'}";

fs.mkdirSync(dir, { recursive: true });

function rm(db) {
  for (const f of [db, db + '.wal'])
    fs.rmSync(f, { force: true });
}

async function open(db) {
  const instance = await DuckDBInstance.create(db, { threads });
  return { instance, conn: await instance.connect() };
}

function close(h) {
  h.conn.closeSync();
  h.instance.closeSync();
}

// The base copy: CSV -> table -> checkpoint -> closed file.
async function makeBase(name, pk) {
  const db = path.join(dir, name);
  rm(db);
  const h = await open(db);
  await h.conn.run(`CREATE TABLE t (id BIGINT NOT NULL${pk ? ' PRIMARY KEY' : ''}, ` +
                   'ts TIMESTAMP, sensor VARCHAR, value DOUBLE)');
  const t0 = now();
  await h.conn.run(`COPY t FROM ${q(csv)} (HEADER true)`);
  await h.conn.run('CHECKPOINT');
  const load = now() - t0;
  const n = Number((await h.conn.runAndReadAll('SELECT count(*) FROM t')).getRows()[0][0]);
  close(h);
  return { db, load, n };
}

// One timed DML on a fresh copy of base: statement + CHECKPOINT.
async function timed(base, sql) {
  const db = path.join(dir, 'case.db');
  rm(db);
  fs.copyFileSync(base.db, db);
  const h = await open(db);
  await h.conn.runAndReadAll('SELECT count(*) FROM t'); // opened and attached
  const t0 = now();
  const r = await h.conn.run(sql);
  await h.conn.run('CHECKPOINT');
  const s = now() - t0;
  const changed = r.rowsChanged;
  const n = Number((await h.conn.runAndReadAll('SELECT count(*) FROM t')).getRows()[0][0]);
  close(h);
  rm(db);
  return { s, changed, n };
}

async function runCase(base, sql) {
  const times = [];
  let last;
  for (let i = 0; i < copies; i++) {
    last = await timed(base, sql);
    times.push(last.s * 1e3);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { ms: sorted[Math.floor(sorted.length / 2)], all_ms: times, changed: last.changed,
           rows_after: last.n };
}

const base = await makeBase('base.db', false);
const out = { engine: 'duckdb', threads: Number(threads), rows: base.n, load_s: base.load };
out.delete_scattered = await runCase(base, `DELETE FROM t WHERE ${pred}`);
out.delete_ts_range = await runCase(base, `DELETE FROM t WHERE ts < TIMESTAMP ${q(tsHi)}`);
out.update = await runCase(base, `UPDATE t SET value = value * 2 WHERE ${pred}`);
const source = `read_csv(${q(src)}, header = true, columns = ${COLS})`;
try {
  out.merge = await runCase(base, `MERGE INTO t USING ${source} AS s ON t.id = s.id ` +
                                  'WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *');
  out.merge.method = 'MERGE INTO';
} catch (e) {
  console.error(`duckdb_dml: MERGE INTO refused (${e.message.split('\n')[0]}); ` +
                'INSERT OR REPLACE on a primary key instead');
  const pkBase = await makeBase('base_pk.db', true);
  out.merge = await runCase(pkBase, `INSERT OR REPLACE INTO t SELECT * FROM ${source}`);
  out.merge.method = 'INSERT OR REPLACE';
  rm(pkBase.db);
}
rm(base.db);
console.log(JSON.stringify(out));
