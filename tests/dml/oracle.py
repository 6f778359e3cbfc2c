#!/usr/bin/env python3
"""
tests/dml/oracle.py -- differential test of strata's DML against SQLite.

Starts its own stratad in a temporary directory, then runs random histories
of loads, deletes, updates, restores and optimizes on a table, mirroring
every step in an in-memory SQLite database, and compares after each step: the
rows a scan prints (as multisets, floats rounded to 9 significant digits),
aggregates, the deleted and updated row counts, the versions each commit
reports, time travel to earlier versions, and finally `strata verify`.

UPDATE steps run `strata update t --set LIST --where PRED` and SQLite's
`UPDATE t SET LIST WHERE PRED`: 1-3 assignments of literals, columns, + - * /
% (never % on the float64 v: strata's keeps the fraction), CASE, COALESCE,
CAST(v AS int64|int32), NULL, and swaps (every value comes from the old row).
Where SQLite's new values show that strata must refuse the update (NULL into
id, int64 overflow -- SQLite turns it into a float --, k outside int32), the
harness expects exit 1 and no change; so too for SET lists strata must refuse
to parse (float64 into an integer column without CAST, NULL into id, a
string from a number, a column set twice).

OPTIMIZE steps (`strata optimize t`, `--cluster-by k,v`, `--target-file-size
64KB`) must not change any row; a commit they make must hold the same rows
as the version before, and time travel must still see every version. They
are skipped when `strata optimize --help` fails (a CLI without optimize).

MERGE steps (`strata merge t SRC.csv --on "t.id = s.id"`, the default
update-all + insert-all, or explicit --when-matched update-all|delete|ignore,
--when-not-matched insert-all|ignore, --when-not-matched-by-source
delete|ignore) take a CSV of random rows: ids of t (which may itself hold an
id twice: one source row then matches both), new ids, sometimes one id twice.
The mirror follows Delta: a matched target row is replaced by its source row
(update-all) or deleted, unmatched source rows are inserted, and target rows
no source row matches are deleted under not-matched-by-source delete; the
printed "U rows updated, D deleted, I inserted" must agree. A target row
matched by two or more source rows must make strata refuse (exit 1, "is
matched by N source rows") and change nothing, unless matches are ignored. (No NULL ids in the source:
strata loads it into a table of t's columns, and id is not null.)

The table has change_feed=true, and every 4th step (and at the end) `strata
changes t --from-version A --to-version B --format csv` (B at most A + 8,
sometimes no --to-version when B is the latest) is checked for every version
in the range: the delete + update_preimage rows and the insert +
update_postimage rows must be, as multisets, exactly the rows the commit
removed and added (load: its rows; delete: the rows its predicate matched;
update: the matched rows before and after, as pre/postimages only -- also
when a row keeps its values; merge: the matched and deleted target rows, the
new and inserted source rows, with as many update pre- and post-images as rows
updated, deletes as rows deleted and inserts as rows inserted; optimize and
create: no rows);
for every version, restore included, the net change (inserts minus deletes)
must equal snapshot(v) minus snapshot(v-1) and deletes must come from
snapshot(v-1), inserts be in snapshot(v); one timestamp per version, and no
rows of versions outside the range. Vacuum is never run, so every version's
changes stay readable.

usage: python3 tests/dml/oracle.py BUILD_DIR [--seeds N] [--seed S]
                                   [--steps N] [--no-arith] [--no-empty-strings]
                                   [--keep] [-v]

  --seeds N            run seeds 1..N (default 8)
  --seed S             run only seed S (replay a failure)
  --steps N            steps per seed (default 50)
  --no-arith           no arithmetic in predicates (+ - * / %, CASE, COALESCE:
                       on by default; --arith is accepted and does nothing)
  --no-empty-strings   no '' (the empty string) in the random data (it is there
                       by default; --empty-strings is accepted and does nothing)
  --scan-format F      csv (default) or jsonl: how scans print (CSV prints "" for
                       '' and an empty field for NULL, see the probe)
  --no-restart         do not restart stratad halfway through each seed (by
                       default it is, and the table and its history are checked
                       after)
  --keep               keep the temporary directory
  -v                   print every command

Python 3 standard library only. Exit status 0 when every check passed, 1
otherwise; the last line printed is "N passed, N failed" (before it, a line
"steps: ..." counts what the update and optimize steps did). Set
ORACLE_TRACE=1 to print the traceback of a harness error.
"""
import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

COLS = ("id", "k", "v", "s")
SCHEMA = "id int64 not null, k int32, v float64, s string"
AGGS = "count(*),count(k),sum(k),min(v),max(v)"
SQL_AGGS = "count(*), count(k), sum(k), min(v), max(v)"
AGGS2 = "count(*),count(k),sum(k),min(v),max(v),sum(v),avg(v),avg(k),min(s),max(s)"
SQL_AGGS2 = ("count(*), count(k), sum(k), min(v), max(v), sum(v), avg(v), avg(k), "
             "min(s), max(s)")
AGG2_TYPES = ["int", "int", "int", "float", "float", "approx", "approx", "approx", "str",
              "str"]
COLTYPE = {"id": "int", "k": "int", "v": "float", "s": "str"}
STRINGS = ["a", "ab", "abc", "abd", "b", "B", "ba", "x,y", 'q"t', "zz", "Ab"]
PREFIXES = ["a", "ab", "abc", "b", "B", "x", "q", "z", "A", "c", ""]


class Failed(Exception):
    pass


# ---- value normalisation ---------------------------------------------------

def fround(x):
    if x is None:
        return None
    x = float(x)
    if x == 0.0:
        return 0.0
    return float("%.9g" % x)


def norm_row(row):
    """(id, k, v, s) from SQLite -> canonical tuple."""
    i, k, v, s = row
    return (int(i), None if k is None else int(k), fround(v), s)


def parse_csv(text):
    """A CSV parser that keeps quoted-empty ("") apart from empty (NULL).
    Returns a list of records, each a list of (value, quoted)."""
    recs = []
    i, n = 0, len(text)
    rec, field, quoted, inq, any_ = [], [], False, False, False
    while i < n:
        c = text[i]
        if inq:
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    field.append('"')
                    i += 1
                else:
                    inq = False
            else:
                field.append(c)
        elif c == '"':
            inq, quoted, any_ = True, True, True
        elif c == ",":
            rec.append(("".join(field), quoted))
            field, quoted, any_ = [], False, True
        elif c == "\n" or c == "\r":
            if c == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            rec.append(("".join(field), quoted))
            recs.append(rec)
            rec, field, quoted, any_ = [], [], False, False
        else:
            field.append(c)
            any_ = True
        i += 1
    if any_ or rec or field:
        rec.append(("".join(field), quoted))
        recs.append(rec)
    return recs


def csv_cell(val, quoted, typ):
    if val == "" and not quoted:
        return None
    if typ == "int":
        return int(val)
    if typ == "float":
        return fround(val)
    if typ == "approx":
        return float(val)
    return val


def parse_jsonl(text):
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        o = json.loads(line)
        if sorted(o) != sorted(COLS):
            raise Failed("jsonl row with keys %r" % sorted(o))
        rows.append((o["id"], o["k"], fround(o["v"]), o["s"]))
    return rows


def parse_query(text, fmt, types):
    """query output (csv with a header, or jsonl) -> list of tuples."""
    if fmt == "jsonl":
        rows = []
        for line in text.splitlines():
            if line.strip():
                vals = list(json.loads(line).values())
                if len(vals) != len(types):
                    raise ValueError("row %r" % line)
                rows.append(tuple(None if x is None else fround(x) if t == "float" else
                                  float(x) if t == "approx" else x
                                  for x, t in zip(vals, types)))
        return rows
    recs = parse_csv(text)
    if not recs or len(recs[0]) != len(types):
        raise ValueError("header %r" % (recs[:1],))
    out = []
    for rec in recs[1:]:
        if len(rec) != len(types):
            raise ValueError("row %r" % (rec,))
        out.append(tuple(csv_cell(v, q, t) for (v, q), t in zip(rec, types)))
    return out


def parse_scan(text, fmt="csv"):
    if fmt == "jsonl":
        return parse_jsonl(text)
    recs = parse_csv(text)
    if not recs:
        raise Failed("scan printed nothing (no header)")
    hdr = [v for v, _ in recs[0]]
    if hdr != list(COLS):
        raise Failed("scan header %r, expected %r" % (hdr, list(COLS)))
    rows = []
    types = ("int", "int", "float", "str")
    for r in recs[1:]:
        if len(r) != 4:
            raise Failed("scan row with %d fields: %r" % (len(r), r))
        rows.append(tuple(csv_cell(v, q, t) for (v, q), t in zip(r, types)))
    return rows


def multiset_diff(exp, got):
    """Describe how two lists of tuples differ as multisets ('' if equal)."""
    from collections import Counter
    ce, cg = Counter(exp), Counter(got)
    if ce == cg:
        return ""
    missing = list((ce - cg).elements())
    extra = list((cg - ce).elements())
    key = lambda t: tuple((x is None, str(x)) for x in t)
    missing.sort(key=key)
    extra.sort(key=key)
    return ("expected %d rows, got %d; missing %d %s; unexpected %d %s" %
            (len(exp), len(got), len(missing), missing[:5], len(extra), extra[:5]))


# ---- the daemon and the CLI --------------------------------------------------

class Strata:
    def __init__(self, build, verbose=False, keep=False):
        self.build = build
        self.verbose = verbose
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="strata-oracle-")
        self.host = "ipc://%s/s.sock" % self.dir
        self.proc = None
        self.log = None

    def start(self):
        conf = os.path.join(self.dir, "c.yaml")
        with open(conf, "w") as f:
            f.write('data_dir: %s/data\nlisten: "%s"\n' % (self.dir, self.host))
        self.log = open(os.path.join(self.dir, "stratad.log"), "a")
        self.proc = subprocess.Popen([os.path.join(self.build, "stratad"), "-c", conf],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("stratad exited with status %d (log: %s)" %
                                   (self.proc.returncode, self.log.name))
            rc, _, _ = self.run(["ping"], quiet=True, timeout=2)
            if rc == 0:
                return
            if time.time() > deadline:
                raise RuntimeError("stratad did not answer ping within 10 s")
            time.sleep(0.05)

    def restart(self):
        """Stop stratad cleanly and start it again on the same data directory."""
        self.stop(remove=False)
        self.start()

    def stop(self, remove=True):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if not remove:
            return
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept %s" % self.dir)

    def run(self, args, quiet=False, timeout=60):
        cmd = [os.path.join(self.build, "strata"), "--host", self.host] + args
        if self.verbose and not quiet:
            print("  $ strata " + " ".join(shell_quote(a) for a in args))
        for attempt in range(20):
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                return 124, "", "timed out after %d s" % timeout
            except OSError as e:  # the binary being rebuilt under us: wait for it
                if attempt == 19:
                    return 126, "", "cannot run %s: %s" % (cmd[0], e)
                time.sleep(0.25)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def ok(self, args):
        rc, out, err = self.run(args)
        if rc != 0:
            raise Failed("`strata %s` exited %d: %s" %
                         (" ".join(shell_quote(a) for a in args), rc, (err or out).strip()))
        return out


def shell_quote(a):
    if re.match(r"^[A-Za-z0-9_./:=,-]+$", a):
        return a
    return "'" + a.replace("'", "'\\''") + "'"


# ---- random data -------------------------------------------------------------

class Gen:
    def __init__(self, rnd, arith, empty_strings):
        self.r = rnd
        self.arith = arith
        self.strings = STRINGS + ([""] if empty_strings else [])
        self.next_id = 1

    def rows(self, n):
        r = self.r
        out = []
        # per load: how many NULLs (sometimes a column all NULL), and sometimes
        # a column held constant or the rows sorted (narrow chunk statistics)
        nullp = r.choice([0.0, 0.1, 0.3, 0.3, 1.0] if r.random() < 0.15 else [0.0, 0.1, 0.3])
        const = r.choice(["k", "v", "s"]) if r.random() < 0.15 else None
        ck = r.randint(-5, 20)
        cv = "%.1f" % r.uniform(-100, 100)
        cs = r.choice(self.strings)
        for _ in range(n):
            x = r.random()
            if x < 0.85 or self.next_id < 10:
                i = self.next_id
                self.next_id += 1
            elif x < 0.97:
                i = r.randrange(1, self.next_id)  # a duplicate id
            else:
                # (under --arith the extremes would overflow id * c: strata
                # refuses integer overflow, SQLite turns it into a float)
                i = r.choice([-(2 ** 40), 2 ** 40, -1, 0] if self.arith else
                             [-(2 ** 62), 2 ** 62, -1, 0, 9223372036854775807,
                              -9223372036854775808])
            k = None if r.random() < nullp else (
                r.randint(-5, 20) if r.random() < 0.98 else r.choice([2147483647, -2147483648]))
            if r.random() < nullp:
                v = None
            elif r.random() < 0.01:
                v = r.choice(["-0.0", "0", "1e3"])
            else:
                d = r.choice([1, 2])
                v = "%.*f" % (d, r.uniform(-100, 100))
                if v in ("-0.0", "-0.00"):
                    v = v[1:]
            s = None if r.random() < nullp else r.choice(self.strings)
            if const == "k" and k is not None:
                k = ck
            elif const == "v" and v is not None:
                v = cv
            elif const == "s" and s is not None:
                s = cs
            out.append((i, k, v, s))
        if r.random() < 0.2:
            c = r.randrange(4)
            keyf = (lambda t: (t[c] is None, 0.0 if t[c] is None else float(t[c]))) if c < 3 else \
                (lambda t: (t[3] is None, t[3] or ""))
            out.sort(key=keyf, reverse=r.random() < 0.5)
        return out

    # predicates: each generator returns (strata text, sqlite text)
    def lit(self, col):
        r = self.r
        if col == "id":
            return str(r.randint(-2, self.next_id + 2))
        if col == "k":
            return str(r.randint(-6, 21))
        if col == "v":
            if r.random() < 0.3:
                return str(r.randint(-100, 100))
            return "%.*f" % (r.choice([1, 2]), r.uniform(-100, 100))
        return "'" + r.choice(self.strings + ["c", "aa"]).replace("'", "''") + "'"

    def operand(self, col):
        """A column, or under --arith an arithmetic expression over it."""
        r = self.r
        if not self.arith or col == "s" or r.random() < 0.5:
            return col
        if col == "v":
            op = r.choice(["+", "-", "*"])
            return "%s %s %s" % (col, op, r.choice(["2", "0.5", "3", "-1"]))
        op = r.choice(["+", "-", "*", "/", "%", "%", "/"])
        if op in "/%":
            c = r.choice(["10", "3", "7", "-3", "0", "2"])
        else:
            c = str(r.randint(-3, 5))
        if col == "id" and op == "*":
            c = str(r.randint(-2, 2))
        return "(%s %s %s)" % (col, op, c)

    def atom(self):
        r = self.r
        col = r.choice(COLS)
        x = r.random()
        if self.arith and r.random() < 0.12:
            x = 0.96
        if x < 0.40:
            op = r.choice(["=", "!=", "<>", "<", "<=", ">", ">="])
            a, l = self.operand(col), self.lit(col)
            if r.random() < 0.2:
                mirror = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
                t = "%s %s %s" % (l, mirror.get(op, op), a)
            else:
                t = "%s %s %s" % (a, op, l)
            return t, t
        if x < 0.52:
            a, b = self.lit(col), self.lit(col)
            nt = "NOT " if r.random() < 0.3 else ""
            t = "%s %sBETWEEN %s AND %s" % (self.operand(col), nt, a, b)
            return t, t
        if x < 0.64:
            lits = [self.lit(col) for _ in range(r.randint(1, 4))]
            if r.random() < 0.1:
                lits.append("NULL")
            nt = "NOT " if r.random() < 0.3 else ""
            t = "%s %sIN (%s)" % (self.operand(col), nt, ", ".join(lits))
            return t, t
        if x < 0.74:
            t = "%s IS %sNULL" % (col, "NOT " if r.random() < 0.5 else "")
            return t, t
        if x < 0.90:
            p = r.choice(PREFIXES)
            nt = r.random() < 0.3
            if r.random() < 0.15 and p:
                # no '%': equality
                st = "s %sLIKE '%s'" % ("NOT " if nt else "", p)
                sq = "%s(s = '%s')" % ("NOT " if nt else "", p)
            else:
                st = "s %sLIKE '%s%%'" % ("NOT " if nt else "", p)
                sq = "%s(substr(s, 1, %d) = '%s')" % ("NOT " if nt else "", len(p), p)
            return st, sq
        if x < 0.95:
            t = r.choice(["TRUE", "FALSE", "k = NULL", "NOT (v <> NULL)"])
            return t, t
        if self.arith and (x < 0.975 or x > 0.99):
            # value expressions beyond column-op-constant: two columns, unary
            # minus, COALESCE, CASE (all the same in SQLite)
            c1, c2 = r.sample(["id", "k", "v"], 2)
            op = r.choice(["=", "<>", "<", "<=", ">", ">="])
            t = r.choice([
                "%s %s %s" % (c1, op, c2),
                "-%s %s %s" % (c1, op, self.lit(c1)),
                "(%s + %s) %s %s" % (c1, c2, op, self.lit("k")),
                "COALESCE(k, %s) %s %s" % (self.lit("k"), op, self.lit("k")),
                "COALESCE(v, k, 0) %s %s" % (op, self.lit("v")),
                "CASE WHEN k > %s THEN 1 WHEN v < 0 THEN 2 ELSE 3 END %s 2" %
                (self.lit("k"), op),
                "CASE WHEN s LIKE 'a%%' THEN k END %s %s" % (op, self.lit("k")),
            ])
            # (SQLite has no LIKE-prefix-only rule; its LIKE is case-insensitive)
            return t, t.replace("s LIKE 'a%'", "substr(s, 1, 1) = 'a'")
        t = "%s = %s" % (col, self.lit(col))
        return t, t

    def pred(self, depth=0):
        r = self.r
        x = r.random()
        if depth >= 3 or x < 0.45:
            return self.atom()
        if x < 0.60:
            a = self.pred(depth + 1)
            return "NOT (%s)" % a[0], "NOT (%s)" % a[1]
        a, b = self.pred(depth + 1), self.pred(depth + 1)
        op = "AND" if x < 0.82 else "OR"
        return "(%s) %s (%s)" % (a[0], op, b[0]), "(%s) %s (%s)" % (a[1], op, b[1])


    # ---- UPDATE's SET lists: each expression generator returns
    # (strata text, sqlite text) ----
    def ilit(self):
        return str(self.r.randint(-5, 20))

    def int_expr(self, target, depth=0):
        """An integer-typed expression (for id or k)."""
        r = self.r
        x = r.random()
        cols = ["k", "id"] if target == "k" else ["id", "k"]
        if r.random() < 0.04:
            # near the edge: strata must refuse what overflows int64 (SQLite
            # makes it a float) or leaves the int32 range, and change nothing
            t = r.choice(["k + 2147483640", "k - 2147483640", "k * 100000000",
                          "2147483647 - k"] if target == "k" else
                         ["id + 9223372036854775800", "id * 4611686018427387904",
                          "id - 9223372036854775800", "-9223372036854775807 - id"])
            return t, t
        if x < 0.12:
            t = self.ilit()
            return t, t
        if x < 0.24:
            c = r.choice(cols[:1] * 3 + cols[1:])
            return c, c
        if x < 0.50:
            c = r.choice(cols[:1] * 3 + cols[1:])
            op = r.choice(["+", "-", "*", "/", "%", "+", "-"])
            lit = (r.choice(["2", "3", "-3", "7", "0", "10"]) if op in "/%" else
                   str(r.randint(-3, 5)))
            t = "%s %s %s" % (c, op, lit) if r.random() < 0.8 else "%s %s %s" % (lit, op, c)
            return t, t
        if x < 0.58:
            a, b = r.choice([("k", "id"), ("id", "k"), ("k", "k")])
            t = "%s %s %s" % (a, r.choice(["+", "-", "*"]), b)
            return t, t
        if x < 0.64:
            t = "-%s" % r.choice(cols)
            return t, t
        if x < 0.72:
            t = "COALESCE(k, %s)" % self.ilit()
            if r.random() < 0.5:
                t += " %s %s" % (r.choice(["+", "-", "*"]), r.randint(-3, 5))
            return t, t
        if x < 0.84:
            # (CAST AS int32 only into k: it then fails exactly when k would)
            ty = r.choice(["int64", "int32"]) if target == "k" else "int64"
            if r.random() < 0.3:
                t = "CAST(v AS %s) %s %s" % (ty, r.choice(["+", "-", "/"]),
                                             r.choice(["2", "3", "-1"]))
            else:
                t = "CAST(v AS %s)" % ty
            return t, t.replace("AS %s" % ty, "AS INTEGER")
        if x < 0.94 and depth < 2:
            ps, pq = self.pred(2)
            a = self.int_expr(target, depth + 1)
            if r.random() < 0.3:
                b = ("NULL", "NULL") if target == "k" else (target, target)
            else:
                b = self.int_expr(target, depth + 1)
            return ("CASE WHEN %s THEN %s ELSE %s END" % (ps, a[0], b[0]),
                    "CASE WHEN %s THEN %s ELSE %s END" % (pq, a[1], b[1]))
        if target == "k":
            return "NULL", "NULL"
        t = self.ilit()
        return t, t

    def float_expr(self, depth=0):
        r = self.r
        x = r.random()
        if x < 0.12:
            t = "%.*f" % (r.choice([1, 2]), r.uniform(-100, 100))
            return t, t
        if x < 0.22:
            t = r.choice(["v", "v", "k", "id"])
            return t, t
        if x < 0.45:
            t = "v %s %s" % (r.choice(["+", "-", "*", "*", "/"]),
                             r.choice(["2", "0.5", "3", "-1", "1.5", "0"]))
            return t, t
        if x < 0.55:
            t = r.choice(["v + k", "v - k", "v * k", "k * 0.5", "id * 0.5", "k / 2",
                          "k - 1", "-v"])
            return t, t
        if x < 0.63:
            t = r.choice(["COALESCE(v, k, 0)", "COALESCE(v, 0)", "COALESCE(v, 1.5) * 2"])
            return t, t
        if x < 0.69:
            t = "CAST(k AS float64)"
            return t, "CAST(k AS REAL)"
        if x < 0.84 and depth < 2:
            ps, pq = self.pred(2)
            a = self.float_expr(depth + 1)
            b = ("v", "v") if r.random() < 0.4 else self.float_expr(depth + 1)
            return ("CASE WHEN %s THEN %s ELSE %s END" % (ps, a[0], b[0]),
                    "CASE WHEN %s THEN %s ELSE %s END" % (pq, a[1], b[1]))
        return "NULL", "NULL"

    def str_expr(self, depth=0):
        r = self.r
        x = r.random()
        lit = lambda: "'" + r.choice(self.strings + ["c", "new"]).replace("'", "''") + "'"
        if x < 0.35:
            t = lit()
            return t, t
        if x < 0.45:
            return "s", "s"
        if x < 0.60:
            t = "COALESCE(s, %s)" % lit()
            return t, t
        if x < 0.85 and depth < 2:
            ps, pq = self.pred(2)
            a = (lit(), None) if r.random() < 0.6 else self.str_expr(depth + 1)
            a = (a[0], a[1] if a[1] is not None else a[0])
            b = ("s", "s") if r.random() < 0.5 else self.str_expr(depth + 1)
            return ("CASE WHEN %s THEN %s ELSE %s END" % (ps, a[0], b[0]),
                    "CASE WHEN %s THEN %s ELSE %s END" % (pq, a[1], b[1]))
        return "NULL", "NULL"

    def set_list(self):
        """-> (strata SET list, SQLite SET list, [(col, sqlite expr)], bad):
        bad is True for a list strata must refuse when parsing it (float64
        into an integer column without CAST, NULL into id, a string from a
        number, a column set twice)."""
        r = self.r
        if r.random() < 0.06:
            t = r.choice(["k = v", "id = v * 2", "k = 1.5", "id = NULL", "s = k", "k = s",
                          "k = COALESCE(v, 0)", "v = s", "id = CASE WHEN k > 0 THEN v "
                          "ELSE 1 END", "k = k + 1, k = 2", "id = id, v = 1, id = 2",
                          "s = 'a', k = v + 1", "nosuch = 1"])
            return t, None, [], True
        if r.random() < 0.08:
            # swaps: every value comes from the old row
            t = r.choice([("v = k, k = CAST(v AS int32)", "v = k, k = CAST(v AS INTEGER)"),
                          ("k = CAST(v AS int32), v = k", "k = CAST(v AS INTEGER), v = k"),
                          ("k = id, id = COALESCE(k, 0)", "k = id, id = COALESCE(k, 0)"),
                          ("v = id, id = CAST(v AS int64) + 0",
                           "v = id, id = CAST(v AS INTEGER) + 0"),
                          ("k = id % 7, id = k * 0 + id", "k = id % 7, id = k * 0 + id")])
            specs = [(a.split("=", 1)[0].strip(), a.split("=", 1)[1].strip())
                     for a in re.split(r", (?=[a-z]+ = )", t[1])]
            return t[0], t[1], specs, False
        cols = r.sample(COLS, r.choice([1, 1, 1, 2, 2, 3]))
        ps, pq, specs = [], [], []
        for c in cols:
            if c in ("id", "k"):
                e = self.int_expr(c)
            elif c == "v":
                e = self.float_expr()
            else:
                e = self.str_expr()
            ps.append("%s = %s" % (c, e[0]))
            pq.append("%s = %s" % (c, e[1]))
            specs.append((c, e[1]))
        return ", ".join(ps), ", ".join(pq), specs, False

def write_csv(path, rows):
    def q(x):
        return '"' + x.replace('"', '""') + '"'
    with open(path, "w") as f:
        f.write("id,k,v,s\n")
        for i, k, v, s in rows:
            f.write("%d,%s,%s,%s\n" % (i, "" if k is None else k, "" if v is None else v,
                                       "" if s is None else q(s)))


# ---- one seed ----------------------------------------------------------------

RE_LOAD = re.compile(r"version (\d+) \(lsn \d+\): loaded, (\d+) rows")
RE_DEL = re.compile(r"version (\d+) \(lsn \d+\): deleted (\d+) rows")
RE_NODEL = re.compile(r"no row matches: nothing deleted \(table at version (\d+)\)")
RE_RESTORE = re.compile(r"version (\d+) \(lsn \d+\): restored, (\d+) rows")
RE_UPD = re.compile(r"version (\d+) \(lsn \d+\): updated (\d+) rows")
RE_NOUPD = re.compile(r"no row matches: nothing updated \(table at version (\d+)\)")
RE_OPT = re.compile(r"version (\d+) \(lsn \d+\): optimized (\d+) files \((\d+) bytes\) "
                    r"into (\d+) \((\d+) bytes\), (\d+) rows rewritten, (\d+) deleted rows "
                    r"purged")
RE_NOOPT = re.compile(r"already optimized: nothing to do \(table at version (\d+)\)")
RE_MERGE = re.compile(r"version (\d+) \(lsn \d+\): merged: (\d+) rows updated, (\d+) deleted, "
                      r"(\d+) inserted")
RE_NOMERGE = re.compile(r"nothing to merge \(table at version (\d+)\)")
RE_MDUP = re.compile(r"key \((-?\d+)\) is matched by (\d+) source rows")
CDF_TYPES = ("delete", "insert", "update_preimage", "update_postimage")


class Run:
    def __init__(self, opts):
        self.opts = opts
        self.passed = 0
        self.failed = 0
        self.stats = {}  # what the UPDATE and OPTIMIZE steps did, printed at the end

    def count(self, what):
        self.stats[what] = self.stats.get(what, 0) + 1

    def check(self, ok, what, ctx):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL seed %d step %d: %s\n  after: %s\n  replay: python3 %s %s --seed %d"
                  " --steps %d%s" % (ctx["seed"], ctx["step"], what, ctx["cmd"], sys.argv[0],
                                     self.opts.build, ctx["seed"], self.opts.steps,
                                     self.opts.extra))
        return ok

    # -- the CSV round-trip probe: '' and NULL must stay apart --
    def probe_empty_string(self, st, ctx):
        ctx.update(step=0, cmd="probe: load a '' and a NULL string, scan --format csv")
        st.ok(["create", "probe", "--schema", "id int64 not null, s string"])
        path = os.path.join(st.dir, "probe.csv")
        with open(path, "w") as f:
            f.write('id,s\n1,""\n2,\n3,"a"\n')
        st.ok(["load", "probe", path])
        out = st.ok(["scan", "probe", "--format", "csv"])
        got = sorted((r[0][0], None if (r[1][0] == "" and not r[1][1]) else r[1][0])
                     for r in parse_csv(out)[1:])
        exp = [("1", ""), ("2", None), ("3", "a")]
        self.check(got == exp, "CSV scan must keep '' apart from NULL: loaded "
                   "1,\"\" / 2, / 3,\"a\"; scan printed %r" % out, ctx)
        out = st.ok(["scan", "probe", "--format", "jsonl"])
        self.check('"s":""' in out and '"s":null' in out,
                   "jsonl scan of '' and NULL: %r" % out, ctx)

    def seed(self, seed):
        opts = self.opts
        r = random.Random(seed)
        g = Gen(r, opts.arith, opts.empty_strings)
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (id INTEGER NOT NULL, k INTEGER, v REAL, s TEXT)")
        snaps = {0: []}
        chg = {0: ("create", [], [], None)}  # version -> (what, feed deletes, feed inserts, types)
        cur = [0]
        ctx = {"seed": seed, "step": 0, "cmd": "create"}
        st = Strata(opts.build, opts.verbose, opts.keep)
        try:
            st.start()
            if seed == opts.first_seed:
                self.probe_empty_string(st, dict(ctx))
            out = st.ok(["create", "t", "--schema", SCHEMA, "--property", "change_feed=true"])
            self.check("version 0" in out, "create printed %r" % out, ctx)

            def rows_now():  # normalised, to compare with a scan
                return [norm_row(x) for x in db.execute("SELECT id, k, v, s FROM t")]

            def commit(v, what, dels=None, ins=None, types=None):
                """dels/ins: the rows the change feed of this commit must delete
                (delete, update_preimage) and insert (insert, update_postimage),
                as multisets; None: only the net change (snapshot difference) is
                known (restore). types: the count of each change type, when
                known (merge)."""
                self.check(v == cur[0] + 1, "%s made version %d, expected %d" %
                           (what, v, cur[0] + 1), ctx)
                cur[0] = v
                chg[v] = (what, dels, ins, types)
                # the exact values: a restore puts them back into SQLite (rounded
                # ones would drift, e.g. 2147483647.0 -> 2147483650.0 after v = k)
                snaps[v] = db.execute("SELECT id, k, v, s FROM t").fetchall()

            def check_scan(version=None):
                args = ["scan", "t", "--format", opts.scan_format]
                exp = rows_now() if version is None else [norm_row(x) for x in snaps[version]]
                if version is not None:
                    args += ["--version", str(version)]
                rc, out, err = st.run(args)
                if not self.check(rc == 0, "`%s` exited %d: %s" % (" ".join(args), rc,
                                                                  err.strip()), ctx):
                    return
                try:
                    got = parse_scan(out, opts.scan_format)
                    d = multiset_diff(exp, got)
                except (Failed, ValueError) as e:
                    d = str(e)
                self.check(d == "", "%s: %s" % (" ".join(args), d), ctx)

            def check_agg(version=None):
                args = ["query", "t", "--agg", AGGS, "--format", opts.scan_format]
                if version is not None:
                    args += ["--version", str(version)]
                    e2 = sqlite3.connect(":memory:")
                    e2.execute("CREATE TABLE t (id INTEGER NOT NULL, k INTEGER, v REAL, s TEXT)")
                    e2.executemany("INSERT INTO t VALUES (?,?,?,?)", snaps[version])
                    e = e2.execute("SELECT %s FROM t" % SQL_AGGS).fetchone()
                else:
                    e = db.execute("SELECT %s FROM t" % SQL_AGGS).fetchone()
                exp = (e[0], e[1], e[2], fround(e[3]), fround(e[4]))
                rc, out, err = st.run(args)
                if not self.check(rc == 0, "`%s` exited %d: %s" % (" ".join(args), rc,
                                                                  err.strip()), ctx):
                    return
                try:
                    got = parse_query(out, opts.scan_format,
                                      ["int", "int", "int", "float", "float"])
                    if len(got) != 1:
                        raise ValueError("%d rows, not 1" % len(got))
                    got = got[0]
                except ValueError as ex:
                    got = "unparsable (%s): %r" % (ex, out)
                self.check(got == exp, "%s: expected %s, got %s" % (" ".join(args), exp, got),
                           ctx)

            def check_where():
                """A scan with a predicate (no change): the rows SQLite selects."""
                ps, pq = g.pred()
                ctx["cmd"] = "scan t --where %s" % shell_quote(ps)
                rc, out, err = st.run(["scan", "t", "--where", ps, "--format",
                                       opts.scan_format])
                if not self.check(rc == 0, "scan --where %r exited %d: %s" %
                                  (ps, rc, err.strip()), ctx):
                    return
                exp = [norm_row(x) for x in db.execute(
                    "SELECT id, k, v, s FROM t WHERE %s" % pq)]
                try:
                    d = multiset_diff(exp, parse_scan(out, opts.scan_format))
                except (Failed, ValueError) as e:
                    d = str(e)
                self.check(d == "", "scan --where %r (sqlite: %s): %s" % (ps, pq, d), ctx)
                if r.random() < 0.6:
                    check_group(r.choice([None, "k", "s"]), ps, pq)

            def check_group(gcol, ps=None, pq=None):
                """query with more aggregates (sum/avg of floats: compared within
                1e-9 relative, plus the worst-case rounding error of summing in
                another order, 2 n eps sum(abs(v)): values such as 2147483647.0
                from v = k cancel), optionally grouped and with a predicate."""
                args = ["query", "t", "--agg", AGGS2, "--format", opts.scan_format]
                sql = "SELECT %s%s, sum(abs(v)), count(v) FROM t" % (
                    gcol + ", " if gcol else "", SQL_AGGS2)
                if ps is not None:
                    args += ["--where", ps]
                    sql += " WHERE %s" % pq
                if gcol:
                    args += ["--group-by", gcol]
                    sql += " GROUP BY %s" % gcol
                types = ([COLTYPE[gcol]] if gcol else []) + AGG2_TYPES
                exp, slack = [], {}
                for row in db.execute(sql):
                    e = tuple(fround(x) if t == "float" else x for x, t in zip(row, types))
                    exp.append(e)
                    sa, cv = row[-2] or 0.0, row[-1]
                    slack[e] = 4.5e-16 * cv * sa  # for sum(v); / count(v) for avg(v)
                    slack[e] = (slack[e], slack[e] / max(1, cv))
                sv = types.index("approx")  # sum(v), then avg(v)
                rc, out, err = st.run(args)
                what = " ".join(shell_quote(a) for a in args)
                if not self.check(rc == 0, "`%s` exited %d: %s" % (what, rc, err.strip()),
                                  ctx):
                    return
                try:
                    got = parse_query(out, opts.scan_format, types)
                except ValueError as ex:
                    self.check(False, "%s: unparsable (%s): %r" % (what, ex, out), ctx)
                    return
                ok = len(got) == len(exp)
                if ok:
                    key = lambda t: (t[0] is None, str(t[0]))
                    for a, b in zip(sorted(exp, key=key), sorted(got, key=key)):
                        for i, (x, y, t) in enumerate(zip(a, b, types)):
                            if t == "approx" and x is not None and y is not None:
                                sl = (slack[a][0] if i == sv else slack[a][1] if i == sv + 1
                                      else 0.0)
                                ok = ok and abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y)) + sl
                            elif t == "float":
                                ok = ok and fround(x) == y
                            else:
                                ok = ok and x == y
                self.check(ok, "%s (sqlite: %s): expected %s, got %s" %
                           (what, sql, sorted(exp, key=str)[:8], sorted(got, key=str)[:8]), ctx)

            def time_travel():
                vs = sorted(snaps)
                for v in r.sample(vs, min(3, len(vs))):
                    ctx["cmd"] = "time travel to version %d" % v
                    check_scan(v)
                    if r.random() < 0.5:
                        check_agg(v)

            def delete(ps, pq):
                ctx["cmd"] = "delete t --where %s" % shell_quote(ps)
                rc, out, err = st.run(["delete", "t", "--where", ps])
                if not self.check(rc == 0, "delete --where %r exited %d: %s" %
                                  (ps, rc, err.strip()), ctx):
                    return
                gone = db.execute("SELECT id, k, v, s FROM t WHERE %s" % pq).fetchall()
                n = db.execute("DELETE FROM t WHERE %s" % pq).rowcount
                m, m0 = RE_DEL.search(out), RE_NODEL.search(out)
                if m:
                    self.check(int(m.group(2)) == n, "delete --where %r deleted %s rows, "
                               "SQLite %d (sqlite: %s)" % (ps, m.group(2), n, pq), ctx)
                    commit(int(m.group(1)), "delete", gone, [])
                elif m0:
                    self.check(n == 0, "delete --where %r deleted nothing, SQLite %d rows "
                               "(sqlite: %s)" % (ps, n, pq), ctx)
                    self.check(int(m0.group(1)) == cur[0], "nothing deleted at version %s, "
                               "expected %d" % (m0.group(1), cur[0]), ctx)
                else:
                    self.check(False, "delete printed %r" % out, ctx)

            def update():
                ss, sq, specs, bad = g.set_list()
                y = r.random()
                ps, pq = (g.pred() if y < 0.6 else g.atom() if y < 0.85 else
                          r.choice([("TRUE", "TRUE"), ("k IS NOT NULL", "k IS NOT NULL")]))
                args = ["update", "t", "--set", ss, "--where", ps]
                ctx["cmd"] = "update t --set %s --where %s" % (shell_quote(ss), shell_quote(ps))
                rc, out, err = st.run(args)
                what = "update --set %r --where %r" % (ss, ps)
                if bad:
                    self.count("update refused (parse)")
                    # strata must refuse the SET list itself (and change nothing:
                    # the scan after this step checks that)
                    self.check(rc == 1, "%s must fail to parse (exit 1), exited %d: %s" %
                               (what, rc, (out + err).strip()), ctx)
                    return
                # which new values strata must refuse (nothing changes then):
                # NULL into id, int64 overflow (SQLite makes it a float), int32 range
                conds = []
                for c, e in specs:
                    if c == "id":
                        conds.append("(%s) IS NULL OR typeof(%s) <> 'integer'" % (e, e))
                    elif c == "k":
                        conds.append("typeof(%s) NOT IN ('integer', 'null') OR (%s) NOT BETWEEN "
                                     "-2147483648 AND 2147483647" % (e, e))
                    if "CAST(v AS INTEGER)" in e:
                        conds.append("abs(v) >= 9.0e18")
                sql_fail = ("SELECT count(*) FROM t WHERE (%s) AND ((%s))" %
                            (pq, ") OR (".join(conds))) if conds else None
                nfail = db.execute(sql_fail).fetchone()[0] if conds else 0
                if nfail:
                    self.count("update refused (values)")
                    self.check(rc == 1, "%s: %d matching rows get a value strata must refuse "
                               "(sqlite: %s), but it exited %d: %s" %
                               (what, nfail, sql_fail, rc, (out + err).strip()), ctx)
                    return
                if not self.check(rc == 0, "%s exited %d: %s (sqlite: UPDATE t SET %s WHERE %s)"
                                  % (what, rc, err.strip(), sq, pq), ctx):
                    return
                try:
                    pre = db.execute("SELECT rowid, id, k, v, s FROM t WHERE %s" %
                                     pq).fetchall()
                    n = db.execute("UPDATE t SET %s WHERE %s" % (sq, pq)).rowcount
                    post = [db.execute("SELECT id, k, v, s FROM t WHERE rowid = ?",
                                       (x[0],)).fetchone() for x in pre]
                    pre = [x[1:] for x in pre]
                except sqlite3.Error as ex:
                    raise Failed("harness: SQLite refused UPDATE t SET %s WHERE %s: %s" %
                                 (sq, pq, ex))
                m, m0 = RE_UPD.search(out), RE_NOUPD.search(out)
                if m:
                    self.check(int(m.group(2)) == n, "%s updated %s rows, SQLite %d (sqlite: "
                               "UPDATE t SET %s WHERE %s)" % (what, m.group(2), n, sq, pq), ctx)
                    commit(int(m.group(1)), "update", pre, post)
                    self.count("update")
                elif m0:
                    self.count("update of no row")
                    self.check(n == 0, "%s updated nothing, SQLite %d rows (sqlite: %s)" %
                               (what, n, pq), ctx)
                    self.check(int(m0.group(1)) == cur[0], "nothing updated at version %s, "
                               "expected %d" % (m0.group(1), cur[0]), ctx)
                else:
                    self.check(False, "update printed %r" % out, ctx)

            def optimize():
                args = r.choice([[], [], ["--cluster-by", "k,v"],
                                 ["--target-file-size", "64KB"]])
                ctx["cmd"] = "optimize t%s" % "".join(" " + a for a in args)
                prev = cur[0]
                rc, out, err = st.run(["optimize", "t"] + args)
                if not self.check(rc == 0, "%s exited %d: %s" % (ctx["cmd"], rc, err.strip()),
                                  ctx):
                    return
                m, m0 = RE_OPT.search(out), RE_NOOPT.search(out)
                if m:
                    # a commit with the very same rows
                    commit(int(m.group(1)), "optimize", [], [])
                    self.count("optimize")
                    self.check(int(m.group(6)) <= len(snaps[prev]) + 0,
                               "%s rewrote %s rows, the table has %d: %r" %
                               (ctx["cmd"], m.group(6), len(snaps[prev]), out.strip()), ctx)
                    check_scan(prev)
                elif m0:
                    self.count("optimize (nothing to do)")
                    self.check(int(m0.group(1)) == cur[0], "nothing optimized at version %s, "
                               "expected %d" % (m0.group(1), cur[0]), ctx)
                else:
                    self.check(False, "optimize printed %r" % out, ctx)

            def merge():
                """MERGE a CSV of random rows (ids from t and new ones, sometimes one
                twice) into t, mirrored by Delta's rules."""
                from collections import Counter
                trows = db.execute("SELECT rowid, id, k, v, s FROM t").fetchall()
                tids = sorted({x[1] for x in trows})
                y = r.random()
                n = (r.randint(1, 30) if y < 0.7 else r.randint(31, 400) if y < 0.96 else 0)
                vals = g.rows(n) if n else []
                nold = min(len(tids), int(round(n * r.uniform(0.0, 0.8))))
                ids = r.sample(tids, nold)
                for _ in range(n - nold):
                    if r.random() < 0.03:
                        ids.append(r.choice([-1, 0, 2 ** 40]))  # may be in t or not
                    else:
                        ids.append(g.next_id)
                        g.next_id += 1
                srows = [(i,) + tuple(x[1:]) for i, x in zip(ids, vals)]
                if srows and r.random() < 0.12:
                    # a second source row for a key in t: strata must refuse
                    olds = [x for x in srows if x[0] in set(tids)]
                    if olds:
                        srows.append((r.choice(olds)[0],) + tuple(g.rows(1)[0][1:]))
                if srows and r.random() < 0.15:
                    # a second source row for a new key: both are inserted
                    news = [x for x in srows if x[0] not in set(tids)]
                    if news:
                        srows.append((r.choice(news)[0],) + tuple(g.rows(1)[0][1:]))
                r.shuffle(srows)
                if r.random() < 0.4:
                    wm, wn, wb, clauses = "update-all", "insert-all", "ignore", []
                else:
                    wm = r.choice(["update-all", "delete", "ignore"])
                    wn = r.choice(["insert-all", "ignore"])
                    wb = r.choice(["delete", "ignore", None])
                    clauses = ["--when-matched", wm, "--when-not-matched", wn]
                    if wb is not None:
                        clauses += ["--when-not-matched-by-source", wb]
                    else:
                        wb = "ignore"
                path = os.path.join(st.dir, "m%d_%d.csv" % (seed, ctx["step"]))
                write_csv(path, srows)
                args = ["merge", "t", path, "--on", "t.id = s.id"] + clauses
                ctx["cmd"] = "merge t %s (%d rows)%s" % (path, len(srows), "".join(
                    " " + shell_quote(a) for a in args[3:]))
                rc, out, err = st.run(args)
                if not opts.keep:
                    os.unlink(path)
                what = "merge of %d rows%s" % (len(srows), "".join(" " + a for a in clauses))
                sc = Counter(x[0] for x in srows)
                # Delta's rule: two source rows may not both change one target
                # row; a MERGE that ignores matches changes none.
                dup = {i: sc[i] for i in tids if sc[i] >= 2} if wm != "ignore" else {}
                if dup:
                    self.count("merge refused (key matched twice)")
                    m = RE_MDUP.search(err + out)
                    self.check(rc == 1 and m is not None and int(m.group(1)) in dup and
                               int(m.group(2)) == dup[int(m.group(1))],
                               "%s: the target keys %s are matched by %s source rows: "
                               "expected exit 1 and 'is matched by N source rows', exited "
                               "%d: %s" % (what, sorted(dup)[:5], [dup[i] for i in
                                                                    sorted(dup)[:5]],
                                           rc, (out + err).strip()), ctx)
                    return
                if not self.check(rc == 0, "%s exited %d: %s" % (what, rc,
                                                                 (out + err).strip()), ctx):
                    return
                src_of = {x[0]: x for x in srows}
                tset = set(tids)
                fl = lambda x: (x[0], x[1], None if x[2] is None else float(x[2]), x[3])
                matched = [x for x in trows if x[1] in sc]
                unmatched_t = [x for x in trows if x[1] not in sc]
                new_src = [fl(x) for x in srows if x[0] not in tset]
                gone, ins = [], []
                u = d = 0
                if wm == "update-all":
                    u = len(matched)
                    gone += matched
                    ins += [fl(src_of[x[1]]) for x in matched]
                elif wm == "delete":
                    d += len(matched)
                    gone += matched
                if wb == "delete":
                    d += len(unmatched_t)
                    gone += unmatched_t
                i_ = 0
                if wn == "insert-all":
                    i_ = len(new_src)
                    ins += new_src
                db.executemany("DELETE FROM t WHERE rowid = ?", [(x[0],) for x in gone])
                db.executemany("INSERT INTO t VALUES (?,?,?,?)", ins)
                gone = [x[1:] for x in gone]
                m, m0 = RE_MERGE.search(out), RE_NOMERGE.search(out)
                if m:
                    got = tuple(int(m.group(j)) for j in (2, 3, 4))
                    self.check(got == (u, d, i_), "%s: strata merged (updated, deleted, "
                               "inserted) %s, expected %s: %r" % (what, got, (u, d, i_),
                                                                  out.strip()), ctx)
                    commit(int(m.group(1)), "merge", gone, ins,
                           {"update_preimage": u, "update_postimage": u, "delete": d,
                            "insert": i_})
                    self.count("merge" if u + d + i_ else "merge (empty commit)")
                elif m0:
                    self.count("merge (nothing to merge)")
                    self.check(u + d + i_ == 0, "%s: nothing to merge, expected %d updated, %d "
                               "deleted, %d inserted" % (what, u, d, i_), ctx)
                    self.check(int(m0.group(1)) == cur[0], "nothing merged at version %s, "
                               "expected %d" % (m0.group(1), cur[0]), ctx)
                else:
                    self.check(False, "merge printed %r" % out, ctx)

            def check_changes():
                """`strata changes` for a random range of versions against the
                snapshots and what each commit changed."""
                from collections import Counter
                vs = sorted(snaps)
                a = r.choice(vs)
                b = r.choice([v for v in vs if v >= a and v <= a + 8])
                args = ["changes", "t", "--from-version", str(a), "--format", "csv"]
                if b < cur[0] or r.random() < 0.6:
                    args += ["--to-version", str(b)]
                ctx["cmd"] = "strata " + " ".join(args)
                rc, out, err = st.run(args)
                if not self.check(rc == 0, "`%s` exited %d: %s" % (" ".join(args), rc,
                                                                  (out + err).strip()), ctx):
                    return
                self.count("changes checked")
                recs = parse_csv(out)
                hdr = [x for x, _ in recs[0]] if recs else None
                if not self.check(hdr == list(COLS) + ["_change_type", "_commit_version",
                                                       "_commit_timestamp"],
                                  "changes header %r" % (hdr,), ctx):
                    return
                types = ("int", "int", "float", "str")
                byv, ts = {}, {}
                bad = []
                for rec in recs[1:]:
                    if len(rec) != 7 or rec[4][0] not in CDF_TYPES:
                        bad.append(rec)
                        continue
                    row = tuple(csv_cell(x, q, t) for (x, q), t in zip(rec[:4], types))
                    cv = int(rec[5][0])
                    byv.setdefault(cv, []).append((rec[4][0], row))
                    ts.setdefault(cv, set()).add(rec[6][0])
                self.check(not bad, "changes: malformed rows %r" % bad[:3], ctx)
                outside = sorted(v for v in byv if v < a or v > b)
                self.check(not outside, "changes from %d to %d printed rows of versions %s"
                           % (a, b, outside), ctx)
                self.check(all(len(x) == 1 for x in ts.values()),
                           "changes: a version with several timestamps: %r" %
                           {v: sorted(x) for v, x in ts.items() if len(x) > 1}, ctx)
                nc = lambda rows: Counter(norm_row(x) for x in rows)
                for v in range(a, b + 1):
                    what, edel, eins, etypes = chg[v]
                    got = byv.get(v, [])
                    gt = Counter(t for t, _ in got)
                    gdel = Counter(x for t, x in got if t in ("delete", "update_preimage"))
                    gins = Counter(x for t, x in got if t in ("insert", "update_postimage"))
                    old = nc(snaps[v - 1]) if v > 0 else Counter()
                    new = nc(snaps[v])
                    desc = "changes of version %d (%s)" % (v, what)
                    allowed = {"create": (), "optimize": (), "load": ("insert",),
                               "delete": ("delete",),
                               "update": ("update_preimage", "update_postimage"),
                               "merge": CDF_TYPES, "restore": CDF_TYPES}[what]
                    self.check(all(t in allowed for t in gt), "%s: change types %s, "
                               "expected only %s" % (desc, dict(gt), allowed), ctx)
                    if what == "update":
                        self.check(gt["update_preimage"] == gt["update_postimage"],
                                   "%s: %s" % (desc, dict(gt)), ctx)
                    if etypes is not None:
                        want = {t: n for t, n in etypes.items() if n}
                        self.check(dict(gt) == want, "%s: change types %s, expected %s" %
                                   (desc, dict(gt), want), ctx)
                    # net: what the snapshots say changed
                    self.check(gins - gdel == new - old and gdel - gins == old - new,
                               "%s: the feed's net change differs from the snapshots'"
                               " (deleted: %s; inserted: %s)" % (
                                   desc, multiset_diff(list((old - new).elements()),
                                                       list((gdel - gins).elements())),
                                   multiset_diff(list((new - old).elements()),
                                                 list((gins - gdel).elements()))), ctx)
                    self.check(not (gdel - old) and not (gins - new),
                               "%s: deletes rows not in version %d %s, or inserts rows not "
                               "in version %d %s" % (desc, v - 1, list((gdel - old).elements())[:5],
                                                     v, list((gins - new).elements())[:5]), ctx)
                    if edel is not None:
                        d1 = multiset_diff(list(nc(edel).elements()), list(gdel.elements()))
                        d2 = multiset_diff(list(nc(eins).elements()), list(gins.elements()))
                        self.check(d1 == "" and d2 == "", "%s: deleted/preimage rows: %s; "
                                   "inserted/postimage rows: %s" % (desc, d1 or "same",
                                                                    d2 or "same"), ctx)

            f_start = self.failed
            for step in range(1, opts.steps + 1):
                if self.failed > f_start:
                    # the mirror may have diverged: later steps would only repeat it
                    print("seed %d: stopping after failing step %d" % (seed, step - 1))
                    break
                ctx["step"] = step
                if step == opts.steps // 2 + 1 and not opts.no_restart:
                    # the store must come back the same after a restart
                    ctx["cmd"] = "restart stratad"
                    st.restart()
                    check_scan()
                    time_travel()
                x = r.random()
                if cur[0] > 0 and r.random() < 0.14:
                    merge()
                elif x < 0.28 or cur[0] == 0:
                    y = r.random()
                    n = (r.randint(1, 100) if y < 0.55 else
                         r.randint(101, 3000) if y < 0.85 else r.randint(5000, 8000))
                    rows = g.rows(n)
                    path = os.path.join(st.dir, "l%d_%d.csv" % (seed, step))
                    write_csv(path, rows)
                    ctx["cmd"] = "load t (%d rows: %s)" % (n, path)
                    rc, out, err = st.run(["load", "t", path])
                    os.unlink(path) if not opts.keep else None
                    if self.check(rc == 0, "load of %d rows exited %d: %s" %
                                  (n, rc, err.strip()), ctx):
                        db.executemany("INSERT INTO t VALUES (?,?,?,?)",
                                       [(i, k, None if v is None else float(v), s)
                                        for i, k, v, s in rows])
                        m = RE_LOAD.search(out)
                        if self.check(m is not None, "load printed %r" % out, ctx):
                            self.check(int(m.group(2)) == n, "load of %d rows printed %r" %
                                       (n, out.strip()), ctx)
                            commit(int(m.group(1)), "load", [],
                                   [(i, k, None if v is None else float(v), s)
                                    for i, k, v, s in rows])
                elif x < 0.44:
                    delete(*g.pred())
                elif x < 0.70 or (x < 0.77 and not opts.has_optimize):
                    update()
                elif x < 0.77:
                    optimize()
                elif x < 0.84:
                    v = r.choice(sorted(snaps))
                    ctx["cmd"] = "restore t --version %d" % v
                    rc, out, err = st.run(["restore", "t", "--version", str(v)])
                    if self.check(rc == 0, "restore --version %d exited %d: %s" %
                                  (v, rc, err.strip()), ctx):
                        db.execute("DELETE FROM t")
                        db.executemany("INSERT INTO t VALUES (?,?,?,?)", snaps[v])
                        m = RE_RESTORE.search(out)
                        if self.check(m is not None, "restore printed %r" % out, ctx):
                            # "restored, N rows" counts the rows the commit writes
                            # (files re-added), not the table's rows: at most those
                            self.check(int(m.group(2)) <= len(snaps[v]),
                                       "restore to version %d printed %r, more than its %d "
                                       "rows" % (v, out.strip(), len(snaps[v])), ctx)
                            commit(int(m.group(1)), "restore")
                elif x < 0.87:
                    p = r.choice(["FALSE", "id > %d" % (g.next_id + 10),
                                  "k IS NULL AND k IS NOT NULL", "s LIKE 'nomatch%'",
                                  "v > 1000"])
                    delete(p, p)
                elif x < 0.90:
                    p = r.choice(["TRUE", "true", "id = id" if opts.arith else "TRUE",
                                  "k IS NULL OR k IS NOT NULL"])
                    delete(p, p)
                else:
                    check_where()
                    continue
                check_scan()
                check_agg()
                if r.random() < 0.3:
                    check_group(r.choice([None, "k", "s"]))
                if step % 5 == 0:
                    time_travel()
                if step % 4 == 0:
                    check_changes()
            if self.failed == f_start:
                time_travel()
                check_changes()
            ctx["cmd"] = "verify"
            rc, out, err = st.run(["verify"])
            self.check(rc == 0 and out.rstrip().endswith("0 problems"),
                       "verify exited %d: %s" % (rc, (out + err).strip()), ctx)
        except Failed as e:
            self.check(False, str(e), ctx)
        finally:
            st.stop()
            db.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--no-arith", dest="arith", action="store_false")
    ap.add_argument("--arith", dest="arith", action="store_true")  # the default now
    ap.add_argument("--no-empty-strings", dest="empty_strings", action="store_false")
    ap.add_argument("--empty-strings", dest="empty_strings", action="store_true")  # default
    ap.add_argument("--scan-format", choices=("csv", "jsonl"), default="csv")
    ap.add_argument("--no-restart", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args()
    opts.build = os.path.abspath(opts.build)
    for b in ("stratad", "strata"):
        if not os.access(os.path.join(opts.build, b), os.X_OK):
            print("no executable %s in %s" % (b, opts.build))
            print("0 passed, 1 failed")
            return 1
    seeds = [opts.seed] if opts.seed is not None else list(range(1, opts.seeds + 1))
    opts.first_seed = seeds[0]
    # optimize is new in the CLI: only when `strata optimize --help` answers
    try:
        opts.has_optimize = subprocess.run(
            [os.path.join(opts.build, "strata"), "optimize", "--help"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        opts.has_optimize = False
    if not opts.has_optimize:
        print("(strata has no optimize command: its steps are skipped)")
    opts.extra = (("" if opts.arith else " --no-arith") +
                  ("" if opts.empty_strings else " --no-empty-strings") +
                  (" --scan-format jsonl" if opts.scan_format == "jsonl" else "") +
                  (" --no-restart" if opts.no_restart else ""))
    run = Run(opts)
    t0 = time.time()
    for s in seeds:
        f0 = run.failed
        try:
            run.seed(s)
        except Exception as e:  # a harness or daemon start problem: a failure
            if os.environ.get("ORACLE_TRACE"):
                import traceback
                traceback.print_exc()
            run.failed += 1
            print("FAIL seed %d: %s: %s" % (s, type(e).__name__, e))
        print("seed %d: %s (%.1f s)" % (s, "ok" if run.failed == f0 else
                                         "%d failed" % (run.failed - f0), time.time() - t0))
    if run.stats:
        print("steps: " + ", ".join("%d %s" % (n, w) for w, n in sorted(run.stats.items())))
    print("%d passed, %d failed" % (run.passed, run.failed))
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
