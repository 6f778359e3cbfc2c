#!/bin/sh
# tests/integration/cli.sh — real stratad processes driven by the strata CLI.
#
#   sh tests/integration/cli.sh BUILD_DIR
#
# Each daemon runs in its own temp directory, on an ipc:// path there (and
# one loopback tcp port), and is waited for by polling `strata ping` with a
# deadline. Covers every CLI command, time travel, schema enforcement and
# evolution errors, concurrent and idempotent loads, kill -9 during a load,
# a client that vanishes mid-load and hostile bytes on the socket
# (build/tests/wire_abuse); the cluster options and commands (against a
# single node, and against two fake nodes in python3 for what needs a
# cluster). Closes with "N passed, N failed".
set -u
B=${1:-build}
B=$(cd "$B" && pwd)
STRATA="$B/strata"
STRATAD="$B/stratad"
T=$(mktemp -d /tmp/strata-it.XXXXXX)
PASS=0
FAIL=0
DPID=
F1=
F2=

cleanup() {
	[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
	[ -n "$F1$F2" ] && kill $F1 $F2 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

# The one number in the output of a count(*) query.
count() {
	"$STRATA" query "$@" --agg "count(*)" --format csv 2>/dev/null | tail -n 1
}

# The head version of table $1.
head_version() {
	"$STRATA" history "$1" --limit 1 | awk 'NR==2 {print $1}'
}

# Start stratad on $T/$1 with extra config lines $2; wait for ping.
start() {
	D=$T/$1
	mkdir -p "$D"
	HOST="ipc://$D/s.sock"
	export STRATA_HOST="$HOST"
	printf 'listen: ["%s"%s]\ndata_dir: "%s/data"\nlog_level: debug\ncursor_timeout: 2s\n%s\n' \
		"$HOST" "${TCP:+, \"$TCP\"}" "$D" "${2:-}" >"$D/c.yaml"
	"$STRATAD" -c "$D/c.yaml" >>"$D/log" 2>&1 &
	DPID=$!
	i=0
	while ! "$STRATA" ping --timeout 1 >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 200 ] || ! kill -0 "$DPID" 2>/dev/null; then
			echo "stratad did not become ready:"; cat "$D/log"
			return 1
		fi
		sleep 0.05
	done
}

stop() {
	kill -TERM "$DPID"
	wait "$DPID"
	st=$?
	DPID=
	return $st
}

wait_gone() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
}

"$B/bench-gencsv" --rows 200000 --out "$T/big.csv" >/dev/null || exit 1
cat >"$T/small.csv" <<'EOF'
id,ts,sensor,value
1,2024-01-01 00:00:00,a,1.5
2,2024-01-01 00:00:01,b,2.5
3,2024-01-01 00:00:02,a,
EOF
SCHEMA="id int64 not null, ts timestamp, sensor string, value float64"

# ---- config and startup -------------------------------------------------------
run "check-config ok" 0 "valid" "$STRATAD" --check-config -c configs/strata.yaml
printf 'workers: 0\n' >"$T/bad.yaml"
run "check-config refuses a bad value" 1 "bad.yaml:1:10: key 'workers': out of range" \
	"$STRATAD" --check-config -c "$T/bad.yaml"
printf 'wrkers: 2\n' >"$T/bad.yaml"
run "check-config refuses an unknown key" 1 "bad.yaml:1:1: key 'wrkers': unknown key" \
	"$STRATAD" --check-config -c "$T/bad.yaml"
run "stratad without -c is a usage error" 2 "stratad: a config file is needed (-c FILE" "$STRATAD"
run "stratad --help" 0 "usage: stratad" "$STRATAD" --help

PORT=$((20000 + $$ % 20000))
TCP="tcp://127.0.0.1:$PORT"
start main || exit 1
run "ping" 0 "pong" "$STRATA" ping
run "ping over tcp" 0 "pong from $TCP" "$STRATA" --host "$TCP" ping
run "status" 0 "data directory: $T/main/data" "$STRATA" status
run "unknown command is a usage error" 2 "strata: unknown command 'frobnicate'" "$STRATA" frobnicate
for c in create tables describe drop alter load scan query history restore vacuum status ping inspect verify cluster; do
	run "$c --help" 0 "usage: strata $c" "$STRATA" "$c" --help
done
run "no daemon: clear error" 1 "strata ping: no answer from ipc://$T/nobody.sock within 1000 ms: is stratad running there?" \
	"$STRATA" --host "ipc://$T/nobody.sock" --timeout 1 ping

# ---- cluster options and commands (against a single node) ----------------------------
for n in 1 2 3; do
	run "check-config configs/cluster/node$n.yaml" 0 "node_id: $n" "$STRATAD" --check-config -c configs/cluster/node$n.yaml
done
printf 'cluster:\n  node_id: 1\n  cluster_id: abc\n' >"$T/bad.yaml"
run "check-config refuses a bad cluster key" 1 "bad.yaml:3:15: key 'cluster.cluster_id': not 32 hex digits" \
	"$STRATAD" --check-config -c "$T/bad.yaml"
run "cluster status on a single node" 0 "not a cluster: single node" "$STRATA" cluster status
run "cluster status --format jsonl on a single node" 0 "not a cluster: single node" "$STRATA" cluster status --format jsonl
run "cluster transfer on a single node" 1 "strata cluster: not a cluster: single node" "$STRATA" cluster transfer --to 2
run "cluster needs a subcommand" 2 "strata cluster: give a subcommand: status, transfer, add, promote, remove or force-promote" "$STRATA" cluster
run "cluster unknown subcommand" 2 "strata cluster: unknown subcommand 'frob'" "$STRATA" cluster frob
run "cluster status --format xml" 2 "strata cluster: --format takes table or jsonl, not 'xml'" "$STRATA" cluster status --format xml
run "cluster transfer needs --to" 2 "strata cluster: cluster transfer needs --to ID" "$STRATA" cluster transfer
run "cluster transfer --to 0" 2 "strata cluster: --to takes a node id >= 1, not '0'" "$STRATA" cluster transfer --to 0
run "cluster add needs --id and --address" 2 "cluster add needs --id N --address" "$STRATA" cluster add --id 4
run "cluster promote takes one id" 2 "cluster promote takes one node id" "$STRATA" cluster promote
run "cluster remove --id is not its form" 2 "cluster remove takes one node id" "$STRATA" cluster remove --id 3
run "cluster force-promote needs --accept-data-loss" 2 "--accept-data-loss" "$STRATA" cluster force-promote
run "cluster add on a single node" 1 "not a cluster: single node" "$STRATA" cluster add --id 2 --address tcp://127.0.0.1:9
run "cluster force-promote on a single node" 1 "not a cluster: single node" "$STRATA" cluster force-promote --accept-data-loss
run "cluster --help names jsonl keys" 0 "commit_lsn, applied_lsn, lag_entries, last_contact_ms, repaired," "$STRATA" cluster --help
run "--durability bad value" 2 "strata create: --durability takes local, quorum or all, not 'some'" \
	"$STRATA" create d --schema "id int64" --durability some
run "--durability on a read is unknown" 2 "strata scan: unknown option '--durability'" "$STRATA" scan d --durability all
run "--consistency bad value" 2 "strata scan: --consistency takes leader, bounded or any, not 'strong'" \
	"$STRATA" scan d --consistency strong
run "--max-staleness bad value" 2 "strata query: --max-staleness takes a duration (e.g. 500ms, 2s, 1m), not '5x'" \
	"$STRATA" query d --agg "count(*)" --max-staleness 5x
run "--min-version 0" 2 "strata describe: --min-version takes a version number >= 1, not '0'" \
	"$STRATA" describe d --min-version 0
run "--min-version on a write is unknown" 2 "strata drop: unknown option '--min-version'" "$STRATA" drop d --min-version 1
run "load --help lists --durability" 0 "--durability local|quorum|all" "$STRATA" load --help
run "history --help lists the read options" 0 "--consistency leader|bounded|any" "$STRATA" history --help
run "create --durability all (a single node ignores it)" 0 "created table 'd'" \
	"$STRATA" create d --schema "id int64" --durability all
run "drop --durability local" 0 "dropped table 'd'" "$STRATA" drop d --durability local
"$STRATA" create d --schema "id int64" >/dev/null
"$STRATA" scan d --consistency any --max-staleness 500ms --min-version 1 --verbose >"$T/rd.out" 2>"$T/rd.err"
st=$?
if [ "$st" = 0 ] && grep -q "(0 rows)" "$T/rd.out" && [ ! -s "$T/rd.err" ]; then
	ok "scan with read options: same stdout, --verbose silent on a single node"
else
	cat "$T/rd.out" "$T/rd.err" >"$T/out"; bad "scan with read options (exit $st)"
fi
"$STRATA" drop d >/dev/null

# ---- tables -----------------------------------------------------------------------
run "create" 0 "created table 't'" "$STRATA" create t --schema "$SCHEMA" --property a=b
run "create twice fails" 1 "strata create: table 't' already exists" "$STRATA" create t --schema "$SCHEMA"
run "create --if-not-exists" 0 "" "$STRATA" create t --schema "$SCHEMA" --if-not-exists
run "create with a bad schema" 2 "strata create: --schema: column 'x': unknown type 'nosuchtype'" \
	"$STRATA" create u --schema "id int64 not null, x nosuchtype"
run "create needs --schema" 2 "strata create: --schema \"col type [not null], ...\" is required" "$STRATA" create u
run "create a bad table name" 1 "strata create: invalid table name '../evil'" "$STRATA" create "../evil" --schema "$SCHEMA"
run "create partitioned" 0 "created" "$STRATA" create p --schema "$SCHEMA" --partition-by sensor
run "tables" 0 "t" "$STRATA" tables
run "describe" 0 "sensor" "$STRATA" describe t
run "describe unknown table" 1 "strata describe: table 'nope' does not exist" "$STRATA" describe nope

# ---- loads ------------------------------------------------------------------------------
run "load small csv" 0 "3 rows" "$STRATA" load t "$T/small.csv"
sleep 0.01
AFTER1=$(date -u '+%Y-%m-%d %H:%M:%S.%6N')
sleep 0.01
run "load 200k rows" 0 "200000 rows" "$STRATA" load t "$T/big.csv"
[ "$(count t)" = 200003 ] && ok "count after loads" || bad "count after loads"
run "load --batch-rows splits commits" 0 "" "$STRATA" load p "$T/big.csv" --batch-rows 50000
N=$("$STRATA" history p | grep -c WRITE)
[ "$N" = 4 ] && ok "four commits of 50000 rows" || bad "four commits of 50000 rows ($N)"
printf '{"id": 10, "sensor": "j", "value": 1.25}\n{"id": 11, "ts": "2024-02-01 00:00:00"}\n' >"$T/x.jsonl"
run "load jsonl" 0 "2 rows" "$STRATA" load t "$T/x.jsonl"
run "load from stdin" 0 "3 rows" sh -c "'$STRATA' load t - < '$T/small.csv'"
[ "$(count t)" = 200008 ] && ok "count after jsonl and stdin" || bad "count after jsonl and stdin"
V=$("$STRATA" history t --limit 1 | awk 'NR==2 {print $1}')

# ---- bad input: clear error, nothing written -----------------------------------------------
printf 'id,value\n1,2\n2,x\n' >"$T/badnum.csv"
run "malformed number: file:line:column" 1 "strata load: $T/badnum.csv:3:3: column 'value' (float64): 'x' is not a float64; nothing of this commit was written" \
	"$STRATA" load t "$T/badnum.csv"
printf 'id,sensor\n1,"open\n' >"$T/badq.csv"
run "unclosed quote: file:line:column" 1 "strata load: $T/badq.csv:2:3: a quoted field is not closed; nothing of this commit was written" \
	"$STRATA" load t "$T/badq.csv"
printf 'id,sensor\n1,a\n,b\n' >"$T/nulls.csv"
# The message names the table, column and row (of the write; not yet the
# file's line: nulls.csv:3).
run "NULL in a NOT NULL column" 1 "strata load: table 't': column 'id' is NOT NULL (type int64) but row 1 of the write is null" \
	"$STRATA" load t "$T/nulls.csv"
printf 'id,color\n1,red\n' >"$T/newcol.csv"
run "unknown column refused" 1 "strata load: $T/newcol.csv:1:4: column 'color' is not in the table (--merge-schema adds it)" \
	"$STRATA" load t "$T/newcol.csv"
run "load into an unknown table" 1 "strata load: table 'nope' does not exist" "$STRATA" load nope "$T/small.csv"
run "load a missing file" 1 "strata load: cannot open '$T/none.csv': No such file or directory" "$STRATA" load t "$T/none.csv"
[ "$(count t)" = 200008 ] && ok "failed loads wrote nothing" || bad "failed loads wrote nothing"
VB=$("$STRATA" history t --limit 1 | awk 'NR==2 {print $1}')
[ "$V" = "$VB" ] && ok "failed loads made no commit" || bad "failed loads made no commit"
run "merge-schema adds a column" 0 "1 rows" "$STRATA" load t "$T/newcol.csv" --merge-schema
run "describe shows the new column" 0 "color" "$STRATA" describe t
printf 'id,value\n5,1.0\n' >"$T/ovr.csv"

# ---- scan and query ------------------------------------------------------------------------------
run "scan --columns --where --limit" 0 "(2 rows)" "$STRATA" scan t --columns id,sensor --where "id < 5" --limit 2
"$STRATA" scan t --where "id >= 10 and id <= 11" --format jsonl >"$T/out" 2>/dev/null
if [ "$(wc -l <"$T/out")" = 4 ] && ! grep -qv '^{.*}$' "$T/out"; then ok "scan jsonl: objects only"; else bad "scan jsonl: objects only"; fi
run "scan csv" 0 "id,ts,sensor,value" "$STRATA" scan t --format csv --limit 1
run "scan predicate syntax error" 1 "strata scan: at offset 4 near '<': expected a column or a literal" \
	"$STRATA" scan t --where "id <<< 3"
VT=$(head_version t)
run "scan unknown column" 1 "strata scan: table 't' (version $VT) has no column 'nope'" "$STRATA" scan t --columns nope
run "query group-by" 0 "sum(value)" "$STRATA" query t --group-by sensor --agg "sum(value),count(*),min(ts),max(ts),avg(value)"
run "query bad aggregate" 1 "strata query: unknown aggregate median(value): use count, sum, min, max or avg" \
	"$STRATA" query t --agg "median(value)"

# Aggregates over no rows: one row, NULL for min/max/avg/sum (as SQL) and 0
# for count(*); with group-by no rows. The result is typed from the schema:
# it once came back with an untyped column the client could not read.
"$STRATA" create empty --schema "x int64, s string" >/dev/null
"$STRATA" query empty --agg "min(x),max(x),avg(x),count(*)" >"$T/out" 2>&1
if [ $? = 0 ] && grep -Eqx ' *NULL +NULL +NULL +0' "$T/out"; then
	ok "query an empty table: NULL, NULL, NULL, 0"
else
	bad "query an empty table: NULL, NULL, NULL, 0"
fi
run "query an empty table, jsonl" 0 '{"min(x)":null,"max(x)":null,"avg(x)":null,"sum(x)":null,"count(*)":0}' \
	"$STRATA" query empty --agg "min(x),max(x),avg(x),sum(x),count(*)" --format jsonl
run "query an empty table by group: header, no rows" 0 "(0 rows)" \
	"$STRATA" query empty --group-by s --agg "min(x),count(*)"
"$STRATA" query empty --group-by s --agg "min(x),avg(x),count(*)" --format csv >"$T/out" 2>&1
[ $? = 0 ] && [ "$(cat "$T/out")" = "s,min(x),avg(x),count(*)" ] && ok "query an empty table by group, csv" ||
	bad "query an empty table by group, csv"
run "query --version 0 of a loaded table" 0 '{"min(value)":null,"sum(value)":null,"min(ts)":null,"max(sensor)":null,"count(*)":0}' \
	"$STRATA" query t --version 0 --agg "min(value),sum(value),min(ts),max(sensor),count(*)" --format jsonl
run "query a predicate that selects nothing" 0 '{"min(value)":null,"avg(value)":null,"sum(id)":null,"count(*)":0}' \
	"$STRATA" query t --where "id < 0" --agg "min(value),avg(value),sum(id),count(*)" --format jsonl
run "query over no rows still checks the aggregate's type" 1 "strata query: sum(s): column 's' is string" \
	"$STRATA" query empty --agg "sum(s)"

# ---- time travel, history, restore -------------------------------------------------------------------
[ "$(count t --version 1)" = 3 ] && ok "scan --version 1" || bad "scan --version 1"
[ "$(count t --as-of "$AFTER1")" = 3 ] && ok "query --as-of a time between commits" || bad "query --as-of"
run "--as-of before the table existed" 1 "strata scan: table 't': no version at or before that time" \
	"$STRATA" scan t --as-of "2000-01-01 00:00:00"
VT=$(head_version t)
run "--version beyond head" 1 "strata scan: table 't' has versions 0 to $VT; version 999 is not among them" \
	"$STRATA" scan t --version 999
run "history --limit" 0 "WRITE" "$STRATA" history t --limit 2
run "restore --version 1" 0 "restored" "$STRATA" restore t --version 1
[ "$(count t)" = 3 ] && ok "count after restore" || bad "count after restore"
run "load --mode overwrite" 0 "1 rows" "$STRATA" load t "$T/ovr.csv" --mode overwrite
[ "$(count t)" = 1 ] && ok "count after overwrite" || bad "count after overwrite"
run "load --replace-where" 0 "" "$STRATA" load t "$T/small.csv" --replace-where "id >= 1"
[ "$(count t)" = 3 ] && ok "count after replace-where" || bad "count after replace-where"

# ---- idempotent loads --------------------------------------------------------------------------------------
run "load with app id" 0 "3 rows" "$STRATA" load t "$T/small.csv" --app-id etl --app-version 7
run "same app version again: no-op" 0 "" "$STRATA" load t "$T/small.csv" --app-id etl --app-version 7
[ "$(count t)" = 6 ] && ok "idempotent retry added nothing" || bad "idempotent retry added nothing"

# ---- alter ---------------------------------------------------------------------------------------------------
run "alter add-column" 0 "" "$STRATA" alter t add-column note string
run "alter rename-column" 0 "" "$STRATA" alter t rename-column note remark
run "alter drop-column" 0 "" "$STRATA" alter t drop-column remark
run "alter set-property" 0 "" "$STRATA" alter t set-property file_retention=1d
run "alter add-constraint" 0 "" "$STRATA" alter t add-constraint pos "id > 0"
printf 'id\n-1\n' >"$T/neg.csv"
run "constraint enforced on load" 1 "strata load: table 't': row 0 of the write violates constraint 'pos' (id > 0)" \
	"$STRATA" load t "$T/neg.csv"
run "alter drop-constraint" 0 "" "$STRATA" alter t drop-constraint pos
run "alter unknown operation" 2 "strata alter: unknown operation 'explode'" "$STRATA" alter t explode x

# ---- concurrent loads from several clients -------------------------------------------------------------------
"$STRATA" create c --schema "$SCHEMA" >/dev/null
PIDS=
for i in 1 2 3 4; do "$STRATA" load c "$T/big.csv" --quiet >"$T/c$i.out" 2>&1 & PIDS="$PIDS $!"; done
for p in $PIDS; do wait "$p"; done
[ "$(count c)" = 800000 ] && ok "four concurrent loads all committed" || { cat "$T"/c?.out >"$T/out"; bad "four concurrent loads"; }

# ---- vacuum, verify, inspect, drop ------------------------------------------------------------------------------
run "vacuum --dry-run" 0 "" "$STRATA" vacuum t --dry-run
run "vacuum --retain 0 needs --force" 2 "strata vacuum: --retain 0 deletes every removed file at once: add --force" \
	"$STRATA" vacuum t --retain 0s
run "vacuum below file_retention refused" 1 "strata vacuum: table 't': retaining removed files for less than the table's file_retention (86400 s)" \
	"$STRATA" vacuum t --retain 1h
run "vacuum --force" 0 "" "$STRATA" vacuum t --retain 0s --force
run "verify through the daemon" 0 "ok" "$STRATA" verify
SEG=$(find "$T/main/data" -name '*.seg' | head -n 1)
run "inspect a segment" 0 "" "$STRATA" inspect "$SEG"
run "drop" 0 "" "$STRATA" drop p
"$STRATA" tables >"$T/out" 2>&1
grep -qx p "$T/out" && bad "dropped table gone" || ok "dropped table gone"

# ---- the hash chain: status, history, verify --head --------------------------------------------------------------
"$STRATA" load t "$T/small.csv" >/dev/null 2>&1 # t's newest commit is the store's
"$STRATA" status >"$T/out" 2>&1
HEAD0=$(sed -n 's/^chain head: *LSN [0-9]* \([0-9a-f]\{64\}\)$/\1/p' "$T/out")
LSN0=$(sed -n 's/^chain head: *LSN \([0-9]*\) .*/\1/p' "$T/out")
[ -n "$HEAD0" ] && ok "status prints the chain head" || bad "status prints the chain head"
"$STRATA" history t --full-hash --limit 1 >"$T/out" 2>&1
grep -q "$HEAD0" "$T/out" && ok "history: the newest commit's hash is the chain head" ||
	bad "history: the newest commit's hash is the chain head"
"$STRATA" load t "$T/small.csv" >/dev/null 2>&1
run "verify --head: a head recorded earlier is in the chain" 0 "found at LSN $LSN0" \
	"$STRATA" verify --head "$HEAD0"
ZERO=0000000000000000000000000000000000000000000000000000000000000001
run "verify --head: an unknown head is a problem" 1 "is not in the chain" "$STRATA" verify --head "$ZERO"
run "verify --head: not 64 hex digits is a usage error" 2 "64 hex" "$STRATA" verify --head abc
run "describe: the version's commit time" 0 "committed:    20" "$STRATA" describe t
run "describe: the oldest retained version" 0 "retained:     versions 8 and later" "$STRATA" describe t

# ---- hostile clients ---------------------------------------------------------------------------------------------
run "garbage, non-msgpack, oversized, vanished mid-load" 0 "0 failed" "$B/tests/wire_abuse" "$HOST" c
[ "$(count c)" = 800000 ] && ok "nothing of the vanished load" || bad "nothing of the vanished load"
run "daemon still serves" 0 "pong" "$STRATA" ping

# ---- clean stop, offline verify ------------------------------------------------------------------------------------
if stop; then ok "SIGTERM: clean exit"; else sed -n '/ERROR: LeakSanitizer/,$p' "$T/main/log" | head -n 40 >"$T/out"; bad "SIGTERM: clean exit"; fi
grep -q "stopped cleanly" "$T/main/log" && ok "log says stopped cleanly" || bad "log says stopped cleanly"
run "offline verify" 0 "ok" "$STRATA" verify --data-dir "$T/main/data"
run "offline verify --head" 0 "found at LSN $LSN0" "$STRATA" verify --data-dir "$T/main/data" --head "$HEAD0"
run "offline verify --head: an unknown head" 1 "is not in the chain" \
	"$STRATA" verify --data-dir "$T/main/data" --head "$ZERO"
run "offline verify prints the chain head" 0 "chain:" "$STRATA" verify --data-dir "$T/main/data"
run "stratad --verify --head: not 64 hex digits" 2 "stratad --verify: --head takes a chain hash of 64 hex digits, not 'abc'" \
	"$STRATAD" --verify "$T/main/data" --head abc
run "stratad --head without --verify" 2 "stratad: --head and --quick go with --verify DIR" "$STRATAD" --head "$HEAD0"
run "offline verify --quick" 0 "(quick: chains and segments only)" "$STRATA" verify --quick --data-dir "$T/main/data"
run "offline verify counts records" 0 " records, " "$STRATA" verify --data-dir "$T/main/data"

# ---- SIGHUP, --daemonize, closed standard fds ----------------------------------------------------
TCP=
start h || exit 1
sed -i 's/^log_level: debug/log_level: warn/' "$T/h/c.yaml"
kill -HUP "$DPID"
i=0
until grep -q "SIGHUP: log level reloaded" "$T/h/log" || [ $i -gt 100 ]; do sleep 0.05; i=$((i + 1)); done
grep -q "SIGHUP: log level reloaded" "$T/h/log" && ok "SIGHUP reloads the log level" || bad "SIGHUP reloads the log level"
stop
"$STRATAD" -c "$T/h/c.yaml" --daemonize --pidfile "$T/h/pid" <&- >&- 2>&-
i=0
until "$STRATA" ping --timeout 1 >/dev/null 2>&1 || [ $i -gt 100 ]; do sleep 0.05; i=$((i + 1)); done
DPID=$(cat "$T/h/pid" 2>/dev/null)
[ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null && ok "--daemonize writes the pid file" || bad "--daemonize writes the pid file"
"$STRATA" create d --schema "$SCHEMA" >/dev/null 2>&1
run "daemonized with fds 0-2 closed: loads" 0 "3 rows" "$STRATA" load d "$T/small.csv"
run "daemonized: verify" 0 "ok" "$STRATA" verify
kill -TERM "$DPID"
wait_gone "$DPID"
DPID=
[ ! -e "$T/h/pid" ] && ok "pid file removed at exit" || bad "pid file removed at exit"

# ---- kill -9 during a load -------------------------------------------------------------------------------------------
TCP=
start k || exit 1
"$STRATA" create k --schema "$SCHEMA" >/dev/null
"$STRATA" load k "$T/small.csv" >/dev/null
cat "$T/big.csv" "$T/big.csv" "$T/big.csv" "$T/big.csv" "$T/big.csv" "$T/big.csv" "$T/big.csv" "$T/big.csv" | sed '200001,$ {/^id,/d}' >"$T/huge.csv"
"$STRATA" load k "$T/huge.csv" --quiet >"$T/kload.out" 2>&1 &
LPID=$!
i=0
until "$STRATA" status 2>/dev/null | grep -q "open loads:     1"; do
	i=$((i + 1)); [ $i -gt 400 ] && break; sleep 0.01
done
kill -9 "$DPID"
wait "$DPID" 2>/dev/null
wait "$LPID"
LST=$?
DPID=
cp "$T/kload.out" "$T/out"
if [ "$LST" = 0 ]; then
	bad "the interrupted load reports failure (it finished first)"
# Killed while it worked on a chunk (no reply) or between two (no peer).
elif grep -qE "^strata load: (no reply in time \(is stratad running and listening there\?\)|the request could not be sent in time \(is stratad running\?\))" "$T/out"; then
	ok "the interrupted load reports failure: no reply"
else
	bad "the interrupted load reports failure: no reply"
fi
start k || exit 1
[ "$(count k)" = 3 ] && ok "after kill -9: acknowledged commit kept, interrupted load absent" || bad "after kill -9 ($(count k) rows)"
run "after kill -9: verify" 0 "ok" "$STRATA" verify
run "after kill -9: load works" 0 "3 rows" "$STRATA" load k "$T/small.csv"
stop

# ---- scrub: on demand, in the background, a damaged segment ------------------------------------------------------
start sc "scrub_interval: 1s" || exit 1
"$STRATA" create a --schema "$SCHEMA" >/dev/null
"$STRATA" create b --schema "$SCHEMA" >/dev/null
"$STRATA" load a "$T/small.csv" >/dev/null
"$STRATA" load b "$T/big.csv" >/dev/null
i=0
until "$STRATA" status 2>/dev/null | grep -q "^last scrub: *pass"; do
	i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.1
done
run "status: a background scrub pass ran" 0 "segments and" "$STRATA" status
grep -q "store opened: 0 tables; checked the chains" "$T/sc/log" && ok "the log says what open checked" ||
	bad "the log says what open checked"
run "scrub --wait: a clean store" 0 "ok: 2 segments and" "$STRATA" scrub --wait --rate 0
run "scrub of one table" 0 "started: table 'a'" "$STRATA" scrub a
run "scrub: an unknown table" 1 "strata scrub: table 'nope' does not exist" "$STRATA" scrub nope
run "scrub --rate: not a number" 2 "--rate takes MB per second" "$STRATA" scrub --rate x
run "scrub: two tables" 2 "takes at most one table" "$STRATA" scrub a b
SEG=$(find "$T/sc/data" -name '*.seg' | head -n 1)
printf '\377' | dd of="$SEG" bs=1 seek=3000 conv=notrunc 2>/dev/null
i=0
until "$STRATA" scrub --wait --rate 0 >"$T/out" 2>&1; [ $? = 1 ] || [ $i -gt 20 ]; do
	i=$((i + 1)); sleep 0.2 # a background pass may be running: the request is refused
done
grep -q "^DAMAGED: table 'b': file segment" "$T/out" && grep -q "^FAILED: " "$T/out" &&
	ok "scrub --wait: a flipped segment byte is found" || bad "scrub --wait: a flipped segment byte is found"
run "status: the damaged table" 0 "damaged:        table 'b': segment" "$STRATA" status
run "a damaged table is refused" 1 "refused for reads and writes" "$STRATA" query b --agg "count(*)"
[ "$(count a)" = 3 ] && ok "the other table serves" || bad "the other table serves"
grep -q "scrub pass [0-9]*: DAMAGED: table 'b'" "$T/sc/log" && ok "the log names the damage" ||
	bad "the log names the damage"
run "a damaged table can be dropped" 0 "dropped table 'b'" "$STRATA" drop b
stop

# ---- client authentication -------------------------------------------------------------------------------------
printf '# name role token\nreader read rrrrrrrrrrrrrrrrrrrr\nwriter write wwwwwwwwwwwwwwwwwwww\nboss admin aaaaaaaaaaaaaaaaaaaa\n' >"$T/tokens"
chmod 600 "$T/tokens"
start au "auth_file: \"$T/tokens\"" || exit 1
run "auth: no token is refused, naming the role" 1 "STATUS needs an authenticated session (role read)" "$STRATA" status
run "auth: ping needs none" 0 "pong" "$STRATA" ping
export STRATA_TOKEN=reader:rrrrrrrrrrrrrrrrrrrr
run "auth: a read token reads" 0 "role:" "$STRATA" status
run "auth: a read token cannot write" 1 "CREATE needs role write; token 'reader' has role read" \
	"$STRATA" create a --schema "$SCHEMA"
STRATA_TOKEN=writer:wwwwwwwwwwwwwwwwwwww
run "auth: a write token writes" 0 "created table 'a'" "$STRATA" create a --schema "$SCHEMA"
run "auth: a write token loads" 0 "3 rows" "$STRATA" load a "$T/small.csv"
run "auth: a write token cannot vacuum" 1 "VACUUM needs role admin" "$STRATA" vacuum a
STRATA_TOKEN=boss:wrongwrongwrongwrong
run "auth: a wrong token is refused" 1 "authentication as 'boss' failed" "$STRATA" status
unset STRATA_TOKEN
printf 'boss:aaaaaaaaaaaaaaaaaaaa\n' >"$T/boss.tok"
run "auth: --token-file" 0 "deleted 0 files" "$STRATA" vacuum a --token-file "$T/boss.tok"
grep -q "auth: a client failed to authenticate as 'boss'" "$T/au/log" && ok "auth: the log names a failed authentication" ||
	bad "auth: the log names a failed authentication"
STRATA_TOKEN=reader:rrrrrrrrrrrrrrrrrrrr stop
printf 'listen: ["tcp://0.0.0.0:27466"]\ndata_dir: "%s/open/data"\n' "$T" >"$T/open.yaml"
run "a non-loopback listen without auth_file is refused" 1 "is reachable from other machines and the config has no auth_file" \
	"$STRATAD" -c "$T/open.yaml"
mkdir -p "$T/bt"
printf 'reader read short\n' >"$T/badtokens"
printf 'listen: ["ipc://%s/bt.sock"]\ndata_dir: "%s/bt/data"\nauth_file: "%s/badtokens"\n' "$T" "$T" "$T" >"$T/bt.yaml"
run "an auth_file with a short token is refused" 1 "16 at least" "$STRATAD" -c "$T/bt.yaml"

# ---- backup and restore ------------------------------------------------------------------------------------------
start bk || exit 1
"$STRATA" create a --schema "$SCHEMA" >/dev/null
"$STRATA" load a "$T/big.csv" >/dev/null
"$STRATA" load a "$T/small.csv" >/dev/null
run "backup" 0 "files, " "$STRATA" backup "$T/bk/backup"
run "backup into a directory that is not empty" 1 "is not empty" "$STRATA" backup "$T/bk/backup"
run "backup to a relative path" 2 "is not an absolute path" "$STRATA" backup rel/dir
"$STRATA" load a "$T/small.csv" >/dev/null # after the backup: not in it
[ -f "$T/bk/backup/MANIFEST" ] && ok "the backup has its MANIFEST" || bad "the backup has its MANIFEST"
run "verify --data-dir checks a backup and its manifest" 0 "0 differ" "$STRATA" verify --data-dir "$T/bk/backup"
printf 'data_dir: "%s/restored"\nlisten: ["ipc://%s/r.sock"]\n' "$T/bk" "$T/bk" >"$T/bk/r.yaml"
run "restore-from makes a new data directory" 0 "restored $T/bk/restored from the backup" \
	"$STRATAD" -c "$T/bk/r.yaml" --restore-from "$T/bk/backup"
run "restore-from refuses an existing data directory" 1 "exists: a restore makes a new one" \
	"$STRATAD" -c "$T/bk/r.yaml" --restore-from "$T/bk/backup"
run "the restored directory verifies" 0 "ok: " "$STRATA" verify --data-dir "$T/bk/restored"
stop
"$STRATAD" -c "$T/bk/r.yaml" >>"$T/bk/rlog" 2>&1 &
DPID=$!
i=0
until STRATA_HOST="ipc://$T/bk/r.sock" "$STRATA" ping --timeout 1 >/dev/null 2>&1 || [ $i -gt 100 ]; do sleep 0.05; i=$((i + 1)); done
[ "$(STRATA_HOST="ipc://$T/bk/r.sock" "$STRATA" query a --agg "count(*)" --format csv | tail -n 1)" = 200003 ] &&
	ok "the restored store has the rows of the backup's moment" || bad "the restored store has the rows of the backup's moment"
stop
SEG=$(find "$T/bk/backup" -name '*.seg' | head -n 1)
printf '\377' | dd of="$SEG" bs=1 seek=4000 conv=notrunc 2>/dev/null
run "verify --data-dir names a damaged file of a backup" 1 "DAMAGED: backup: tables/" \
	"$STRATA" verify --data-dir "$T/bk/backup"
rm -rf "$T/bk/restored"
run "restore-from refuses a damaged backup" 1 "is damaged: tables/" \
	"$STRATAD" -c "$T/bk/r.yaml" --restore-from "$T/bk/backup"

# ---- the cluster client against fake nodes ----------------------------------------------
# Until stratad serves CLUSTER_STATUS, two fake nodes (python3 with nanomsg
# through ctypes; skipped without them) check `strata cluster status`'s rows,
# the redirect to the leader (same client id and seq) and --durability on
# the wire.
cat >"$T/fake_node.py" <<'PYEOF'
# A fake stratad node for the CLI's cluster code: nanomsg REP via ctypes,
# a minimal msgpack codec. Args: ADDR LOG JSON (node id, leader id, epoch,
# rows, leader address). Serves HELLO, STATUS, CLUSTER_STATUS,
# CLUSTER_TRANSFER, DROP, HISTORY (no commits, with served-by keys); a
# follower answers ST_ENOTLEADER with the leader to TRANSFER/DROP. Logs
# "type seq client durability max-staleness consistency min-version" of
# each request to LOG.
import ctypes, json, struct, sys
ST_ENOTLEADER = -30885
def enc(o):
    if o is None: return b'\xc0'
    if o is True: return b'\xc3'
    if o is False: return b'\xc2'
    if isinstance(o, int):
        return struct.pack('>Bq', 0xd3, o) if o < 0 else struct.pack('>BQ', 0xcf, o)
    if isinstance(o, str):
        b = o.encode(); return struct.pack('>BI', 0xdb, len(b)) + b
    if isinstance(o, bytes): return struct.pack('>BI', 0xc6, len(o)) + o
    if isinstance(o, list): return struct.pack('>BI', 0xdd, len(o)) + b''.join(map(enc, o))
    if isinstance(o, dict):
        return struct.pack('>BI', 0xdf, len(o)) + b''.join(enc(k) + enc(v) for k, v in o.items())
    raise TypeError(o)
def dec(b, i=0):
    t = b[i]
    if t < 0x80: return t, i + 1
    if t >= 0xe0: return t - 256, i + 1
    if 0x80 <= t <= 0x8f: return dmap(b, i + 1, t & 15)
    if 0x90 <= t <= 0x9f: return darr(b, i + 1, t & 15)
    if 0xa0 <= t <= 0xbf: n = t & 31; return b[i+1:i+1+n].decode(), i + 1 + n
    if t == 0xc0: return None, i + 1
    if t in (0xc2, 0xc3): return t == 0xc3, i + 1
    fixed = {0xcc: '>B', 0xcd: '>H', 0xce: '>I', 0xcf: '>Q', 0xd0: '>b', 0xd1: '>h', 0xd2: '>i', 0xd3: '>q'}
    if t in fixed:
        f = fixed[t]; n = struct.calcsize(f); return struct.unpack(f, b[i+1:i+1+n])[0], i + 1 + n
    lens = {0xc4: ('>B', 'bin'), 0xc5: ('>H', 'bin'), 0xc6: ('>I', 'bin'), 0xd9: ('>B', 'str'),
            0xda: ('>H', 'str'), 0xdb: ('>I', 'str'), 0xdc: ('>H', 'arr'), 0xdd: ('>I', 'arr'),
            0xde: ('>H', 'map'), 0xdf: ('>I', 'map')}
    f, kind = lens[t]; m = struct.calcsize(f); n = struct.unpack(f, b[i+1:i+1+m])[0]; j = i + 1 + m
    if kind == 'arr': return darr(b, j, n)
    if kind == 'map': return dmap(b, j, n)
    s = b[j:j+n]; return (s.decode() if kind == 'str' else s), j + n
def dmap(b, i, n):
    d = {}
    for _ in range(n):
        k, i = dec(b, i); v, i = dec(b, i); d[k] = v
    return d, i
def darr(b, i, n):
    a = []
    for _ in range(n):
        v, i = dec(b, i); a.append(v)
    return a, i
addr, log, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
nn = ctypes.CDLL('libnanomsg.so.5')
nn.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
nn.nn_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
nn.nn_freemsg.argtypes = [ctypes.c_void_p]
s = nn.nn_socket(1, 49)
assert s >= 0 and nn.nn_bind(s, addr.encode()) >= 0
open(log + '.ready', 'w').close()
while True:
    p = ctypes.c_void_p()
    n = nn.nn_recv(s, ctypes.byref(p), ctypes.c_size_t(-1), 0)
    if n < 0: continue
    req, _ = dec(ctypes.string_at(p, n)); nn.nn_freemsg(p)
    typ, rid = req[2], req[1]
    with open(log, 'a') as f:
        f.write('%d %s %s %s %s %s %s\n' % (typ, req.get(6, '-'), req[5].hex() if 5 in req else '-',
                                           req.get(7, '-'), req.get(9, '-'), req.get(10, '-'),
                                           req.get(8, '-')))
    env = {0: 1, 1: rid, 2: typ}
    leads = cfg['node'] == cfg['leader']
    if typ == 1:
        env[3] = {0: 'fake', 1: 1, 2: 1 << 24, 3: 65536}
    elif typ == 60:
        env[3] = {0: cfg['node'], 1: cfg['leader'], 2: cfg['epoch'], 4: '00' * 16,
                  3: [{0: r[0], 1: r[1], 2: r[2], 3: r[3], 4: r[4], 5: r[5], 6: r[6], 7: r[7]}
                      for r in cfg['rows']]}
    elif typ in (61, 13) and not leads:
        env[4] = {0: ST_ENOTLEADER, 1: 'node %d is not the leader' % cfg['node'],
                  7: cfg['leader_addr'], 8: cfg['leader']}
    elif typ == 61:
        env[3] = {}
    elif typ == 50:
        env[3] = {0: []}
        env[11], env[12], env[13] = cfg['node'], 118, 35
    elif typ == 3:
        env[3] = {0: 'fake', 1: 5000000, 2: '/fake', 3: 0, 4: 120, 5: 0, 6: 1, 7: 0, 8: 0,
                  10: 'leader' if leads else 'follower', 11: cfg['epoch'], 12: cfg['node'],
                  13: cfg['leader'], 14: 120, 15: 118}
    elif typ == 13:
        env[3] = {0: 7}
    else:
        env[4] = {0: -30887, 1: 'unknown request type %d' % typ}
    out = enc(env)
    nn.nn_send(s, out, len(out), 0)
PYEOF
if python3 -c 'import ctypes; ctypes.CDLL("libnanomsg.so.5")' 2>/dev/null; then
	A1="ipc://$T/n1.sock" A2="ipc://$T/n2.sock" A3="ipc://$T/n3.sock"
	python3 "$T/fake_node.py" "$A1" "$T/n1.log" "{\"node\":1,\"leader\":1,\"epoch\":4,\"leader_addr\":\"$A1\",\"rows\":[[1,\"leader\",\"$A1\",120,0,0,120,120],[2,\"follower\",\"$A2\",100,20,35,100,99],[3,\"follower\",\"$A3\",50,70,-1,50,50]]}" &
	F1=$!
	python3 "$T/fake_node.py" "$A2" "$T/n2.log" "{\"node\":2,\"leader\":1,\"epoch\":4,\"leader_addr\":\"$A1\",\"rows\":[[1,\"unknown\",\"$A1\",0,0,-1,0,0],[2,\"follower\",\"$A2\",0,0,-1,110,105],[3,\"unknown\",\"$A3\",0,0,-1,0,0]]}" &
	F2=$!
	i=0
	while [ ! -e "$T/n1.log.ready" ] || [ ! -e "$T/n2.log.ready" ]; do
		i=$((i + 1)); [ $i -gt 200 ] && break; sleep 0.05
	done
	"$STRATA" --host "$A2" cluster status >"$T/cs.out" 2>&1
	st=$?
	cp "$T/cs.out" "$T/out"
	# own role/epoch/LSNs per node, lag and contact from the leader; node 3 unreachable
	if [ "$st" = 1 ] && grep -Eq '^1 +leader +4 +120 +120 +0 +0 +-$' "$T/cs.out" &&
		grep -Eq '^2 +follower +4 +110 +105 +20 +35 +-$' "$T/cs.out" &&
		grep -Eq '^3 +unreachable +- +- +- +70 +- +-$' "$T/cs.out"; then
		ok "cluster status: a row per node from any node"
	else
		bad "cluster status: a row per node from any node (exit $st)"
	fi
	run "cluster status --format jsonl" 1 '{"id":2,"role":"follower","epoch":4,"commit_lsn":110,"applied_lsn":105,"lag_entries":20,"last_contact_ms":35,"repaired":null,"repairs_pending":null}' \
		"$STRATA" --host "$A2" cluster status --format jsonl
	run "cluster status --format jsonl: unreachable" 1 '{"id":3,"role":"unreachable","epoch":null,"commit_lsn":null,"applied_lsn":null,"lag_entries":70,"last_contact_ms":null,"repaired":null,"repairs_pending":null}' \
		"$STRATA" --host "$A2" cluster status --format jsonl
	run "cluster transfer from a follower goes to the leader" 0 "leadership transfer to node 2 started (by the leader at $A1)" \
		"$STRATA" --host "$A2" cluster transfer --to 2
	f=$(awk '$1 == 61 {print $2, $3}' "$T/n2.log") l=$(awk '$1 == 61 {print $2, $3}' "$T/n1.log")
	[ -n "$f" ] && [ "$f" = "$l" ] && ok "the redirect resends the same client id and seq" ||
		{ echo "follower: $f leader: $l" >"$T/out"; bad "the redirect resends the same client id and seq"; }
	run "drop --durability all via a follower" 0 "dropped table 't'" "$STRATA" --host "$A2" drop t --durability all
	awk '$1 == 13 {print $4}' "$T/n1.log" | grep -qx 3 && ok "--durability all is envelope key 7 = 3" ||
		{ cp "$T/n1.log" "$T/out"; bad "--durability all is envelope key 7 = 3"; }
	"$STRATA" --host "$A2" history t --min-version 5 --max-staleness 2s --consistency bounded --verbose \
		>"$T/h.out" 2>"$T/h.err"
	st=$?
	cat "$T/h.out" "$T/h.err" "$T/n2.log" >"$T/out"
	[ "$st" = 0 ] && [ "$(cat "$T/h.err")" = "strata history: served by node 2 at LSN 118, staleness 35 ms" ] &&
		! grep -q served "$T/h.out" && ok "history --verbose: where it was served, on stderr only" ||
		bad "history --verbose: where it was served, on stderr only (exit $st)"
	awk '$1 == 50 {print $5, $6, $7}' "$T/n2.log" | grep -qx "2000 2 5" &&
		ok "read options are envelope keys 9 (ms), 10 and 8" || bad "read options are envelope keys 9 (ms), 10 and 8"
	"$STRATA" --host "$A2" history t >/dev/null 2>"$T/h.err"
	[ ! -s "$T/h.err" ] && ok "history without --verbose: nothing on stderr" ||
		{ cp "$T/h.err" "$T/out"; bad "history without --verbose: nothing on stderr"; }
	run "status of a follower: role" 0 "role:           follower" "$STRATA" --host "$A2" status
	run "status of a follower: leader id and LSNs" 0 "leader id:      1
commit LSN:     120
applied LSN:    118" "$STRATA" --host "$A2" status
	kill "$F1" "$F2" 2>/dev/null
	F1= F2=
else
	echo "skip cluster client against fake nodes (no python3 or libnanomsg.so.5)"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
