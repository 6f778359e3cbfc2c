#!/bin/sh
# tests/integration/cluster.sh — a real 3-node stratad cluster on loopback,
# driven by the strata CLI.
#
#   sh tests/integration/cluster.sh BUILD_DIR
#
# Three stratad processes, their peer messages authenticated with a cluster
# key file, with configs written into a temp directory (client
# ports 37421-37423, peer_listen 37500/37520/37540, fsync on, heartbeat 50ms,
# election_timeout 500ms, write_timeout 3s), each waited for by polling with a
# deadline and each one's stderr in $T/logN (the tails are printed on a
# failure). Covers the election, loads sent to a follower (redirect), identical
# scans, segment files and chain heads on every node, kill -9 of the leader
# during 1-row writes (no acknowledged write lost or doubled), vacuum keeping
# a file a stopped follower may still fetch and replicating, a restarted
# follower and old leader catching up, a follower with another cluster key
# refused, a flipped segment at a follower
# repaired from a peer, --min-version on a follower, writes
# without a quorum, cluster status --format jsonl and a single node's status.
# Closes with "N passed, N failed".
set -u
B=${1:-build}
B=$(cd "$B" && pwd)
STRATA="$B/strata"
STRATAD="$B/stratad"
T=$(mktemp -d /tmp/strata-cl.XXXXXX)
PASS=0
FAIL=0
P1= P2= P3= P4= PS= WPID=
CID=$(od -An -N16 -tx1 /dev/urandom | tr -d " \n") # per run: two runs on one machine never mix
SCHEMA="id int64 not null, ts timestamp, sensor string, value float64"

cleanup() {
	for p in $P1 $P2 $P3 $P4 $PS $WPID; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

logs() {
	for n in 1 2 3 4; do
		[ -f "$T/log$n" ] || continue
		p=$(pid "$n")
		[ -n "$p" ] && ! kill -0 "$p" 2>/dev/null && echo "     -- node $n (pid $p) is not running"
		echo "     -- node $n log (tail):"
		tail -n 12 "$T/log$n" | sed 's/^/     | /'
	done
}
ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1"; [ -f "$T/out" ] && sed 's/^/     | /' "$T/out" | head -20; logs; }

# run NAME WANT_STATUS WANT_TEXT CMD...: CMD's status and combined output.
run() {
	name=$1 want=$2 text=$3
	shift 3
	"$@" >"$T/out" 2>&1
	st=$?
	if [ "$st" != "$want" ]; then
		echo "     (exit $st, wanted $want)" >>"$T/out"
		bad "$name"
	elif [ -n "$text" ] && ! grep -qF -- "$text" "$T/out"; then
		echo "     (no \"$text\" in the output)" >>"$T/out"
		bad "$name"
	else
		ok "$name"
	fi
}

ms() { date +%s%3N; }
addr() { echo "tcp://127.0.0.1:$((37420 + $1))"; }
# on N CMD...: strata at node N.
on() { _h=$1; shift; "$STRATA" --host "$(addr "$_h")" "$@"; }
pid() { eval echo "\${P$1}"; }

# The one number in the output of a count(*) query at node $1.
count() {
	n=$1; shift
	on "$n" query "$@" --agg "count(*)" --format csv 2>/dev/null | tail -n 1
}

# node_config N: node N's config, with the other two as peers.
node_config() {
	{
		printf 'listen: ["%s"]\ndata_dir: "%s/data%s"\nfsync: on\nlog_level: debug\n' \
			"$(addr "$1")" "$T" "$1"
		printf 'cluster:\n  node_id: %s\n  cluster_id: "%s"\n' "$1" "$CID"
		printf '  peer_listen: "tcp://127.0.0.1:%s"\n  peers:\n' $((37480 + 20 * $1))
		for m in 1 2 3; do
			[ "$m" = "$1" ] && continue
			printf '    - {id: %s, peer: "tcp://127.0.0.1:%s", client: "%s"}\n' \
				"$m" $((37480 + 20 * m)) "$(addr "$m")"
		done
		printf '  heartbeat: 50ms\n  election_timeout: 500ms\n  write_timeout: 3s\n'
		printf '  key_file: "%s"\n' "${KEY:-$T/cluster.key}"
		printf 'auth_file: "%s"\n' "$T/tokens"
	} >"$T/n$1.yaml"
}

# start N: stratad for node N; wait (10 s at most) until it answers ping.
start() {
	"$STRATAD" -c "$T/n$1.yaml" >>"$T/log$1" 2>&1 &
	eval "P$1=$!"
	dl=$(($(ms) + 10000))
	while ! on "$1" --timeout 1 ping >/dev/null 2>&1; do
		if [ "$(ms)" -gt $dl ] || ! kill -0 "$(pid "$1")" 2>/dev/null; then
			echo "stratad node $1 did not become ready:"; tail -n 30 "$T/log$1"
			return 1
		fi
		sleep 0.05
	done
}

# kill9 N / stop N: kill -9, or SIGTERM and wait for the exit.
# An empty pid would be kill 0: the whole process group.
kill9() {
	p=$(pid "$1")
	[ -n "$p" ] || { echo "node $1: no pid to kill"; return 1; }
	kill -9 "$p"; wait "$p" 2>/dev/null; eval "P$1="
}
stop() {
	p=$(pid "$1")
	[ -n "$p" ] || { echo "node $1: no pid to stop"; return 1; }
	kill -TERM "$p"; wait "$p"; st=$?; eval "P$1="; return $st
}

# wait_leader DEADLINE_MS NODES...: exactly one of NODES says role leader, the
# others follower, all in one epoch: sets LEADER and EPOCH. Status 1 when not
# so by the deadline ($T/out then has the last status of each node).
wait_leader() {
	dl=$(($(ms) + $1))
	shift
	while :; do
		nl=0 nf=0 ep= same=1 LEADER= EPOCH=
		: >"$T/out"
		for n in "$@"; do
			on "$n" --timeout 1 status >"$T/st" 2>&1
			sed "s/^/node $n: /" "$T/st" >>"$T/out"
			r=$(sed -n 's/^role: *//p' "$T/st")
			e=$(sed -n 's/^epoch: *//p' "$T/st")
			[ -z "$ep" ] && ep=$e
			[ "$e" = "$ep" ] || same=0
			case $r in
			leader) nl=$((nl + 1)); LEADER=$n ;;
			follower) nf=$((nf + 1)) ;;
			esac
		done
		if [ $nl = 1 ] && [ $((nl + nf)) = $# ] && [ $same = 1 ] && [ -n "$ep" ]; then
			EPOCH=$ep
			return 0
		fi
		[ "$(ms)" -gt $dl ] && return 1
		sleep 0.05
	done
}

# head_of N: "LSN n HASH", node N's chain head from status.
head_of() { on "$1" --timeout 1 status 2>/dev/null | sed -n 's/^chain head: *//p'; }

# wait_heads DEADLINE_MS NODES...: the chain heads of NODES are all equal
# (and known); sets HEAD. Status 1 at the deadline ($T/out: the heads).
wait_heads() {
	dl=$(($(ms) + $1))
	shift
	while :; do
		HEAD= same=1
		: >"$T/out"
		for n in "$@"; do
			h=$(head_of "$n")
			echo "node $n: chain head $h" >>"$T/out"
			[ -z "$HEAD" ] && HEAD=$h
			[ -n "$h" ] && [ "$h" = "$HEAD" ] || same=0
		done
		[ $same = 1 ] && return 0
		[ "$(ms)" -gt $dl ] && return 1
		sleep 0.05
	done
}

# others N: the two nodes that are not N.
others() { for m in 1 2 3; do [ "$m" = "$1" ] || printf '%s ' "$m"; done; }

"$B/bench-gencsv" --rows 3000 --out "$T/small.csv" >/dev/null || exit 1
"$B/bench-gencsv" --rows 300000 --out "$T/big.csv" >/dev/null || exit 1

# ---- election ---------------------------------------------------------------------
head -c 32 /dev/urandom >"$T/cluster.key" && chmod 600 "$T/cluster.key"
# Clients authenticate too (PROTOCOL.md §2.2): every request below, redirects
# to the leader and cluster status's questions to each node included.
printf 'ops admin %s\n' "$CID" >"$T/tokens" && chmod 600 "$T/tokens"
export STRATA_TOKEN="ops:$CID"
head -c 32 /dev/urandom >"$T/other.key" && chmod 600 "$T/other.key"
for n in 1 2 3; do node_config "$n"; done
run "check-config of a cluster node" 0 "valid" "$STRATAD" --check-config -c "$T/n1.yaml"
for n in 1 2 3; do start "$n" || exit 1; done
if wait_leader 5000 1 2 3; then ok "a leader is elected: node $LEADER, epoch $EPOCH, two followers"; else bad "a leader is elected"; exit 1; fi
L=$LEADER
set -- $(others "$L")
F1=$1 F2=$2

# ---- loads through a follower ------------------------------------------------------------
run "create at a follower (redirected)" 0 "created table 't'" on "$F1" create t --schema "$SCHEMA"
run "load 3000 rows at a follower (redirected)" 0 "3000 rows" on "$F1" load t "$T/small.csv" --quiet
run "load 300000 rows at the other follower (redirected)" 0 "300000 rows" on "$F2" load t "$T/big.csv" --quiet
TROWS=303000
if wait_heads 5000 1 2 3; then ok "same chain head on all three ($HEAD)"; else bad "same chain head on all three"; fi
for n in 1 2 3; do on "$n" scan t --format csv >"$T/scan$n" 2>"$T/out" || bad "scan at node $n"; done
[ "$(wc -l <"$T/scan$L")" = $((TROWS + 1)) ] && ok "the leader scans $TROWS rows" || bad "the leader scans $TROWS rows"
cmp "$T/scan$L" "$T/scan$F1" >"$T/out" 2>&1 && cmp "$T/scan$L" "$T/scan$F2" >>"$T/out" 2>&1 &&
	ok "scan --format csv is byte-identical on all three" || bad "scan --format csv is byte-identical on all three"
# The 300000-row segment is a file: the followers hold the same files, byte for byte.
(cd "$T/data$L" && find tables -name '*.seg' | sort) >"$T/segs"
nseg=$(wc -l <"$T/segs")
same=1
: >"$T/out"
while read -r f; do
	for n in $F1 $F2; do cmp "$T/data$L/$f" "$T/data$n/$f" >>"$T/out" 2>&1 || same=0; done
done <"$T/segs"
[ "$nseg" -ge 1 ] && [ $same = 1 ] && ok "the segment files ($nseg) are byte-identical on all three" ||
	bad "the segment files ($nseg) are byte-identical on all three"

# ---- cluster status ------------------------------------------------------------------------------
on "$F1" cluster status --format jsonl >"$T/out" 2>"$T/err"
st=$?
good=$(grep -c '^{"id":[123],"role":"[a-z]*","epoch":[0-9]*,"commit_lsn":[0-9]*,"applied_lsn":[0-9]*,"lag_entries":[0-9]*,"last_contact_ms":[0-9]*,"repaired":0,"repairs_pending":0}$' "$T/out")
[ $st = 0 ] && [ "$good" = 3 ] && [ "$(wc -l <"$T/out")" = 3 ] &&
	ok "cluster status --format jsonl: three nodes with every key" || bad "cluster status --format jsonl: three nodes with every key"
[ "$(grep -c '"role":"leader"' "$T/out")" = 1 ] && grep -q "^{\"id\":$L,\"role\":\"leader\"" "$T/out" &&
	ok "cluster status: node $L is the one leader" || bad "cluster status: node $L is the one leader"

# ---- repair from peers ------------------------------------------------------------------------------
# A byte flipped in a follower's copy of a segment: its scrub finds it, the
# table is refused there, and the node replaces the file with a peer's good
# copy (checked against the size and CRC its commit recorded) by itself.
SEG=$(head -n 1 "$T/segs")
printf '\377' | dd of="$T/data$F1/$SEG" bs=1 seek=5000 conv=notrunc 2>/dev/null
cmp -s "$T/data$L/$SEG" "$T/data$F1/$SEG" && bad "the flip changed node $F1's $SEG"
run "scrub at a follower finds the flipped segment" 1 "DAMAGED: table 't': file segment" \
	on "$F1" scrub --wait --rate 0
dl=$(($(ms) + 15000))
until [ "$(count "$F1" t)" = $TROWS ] || [ "$(ms)" -gt $dl ]; do sleep 0.1; done
[ "$(count "$F1" t)" = $TROWS ] && ok "the follower serves the table again: repaired from a peer" ||
	bad "the follower serves the table again: repaired from a peer"
cmp "$T/data$L/$SEG" "$T/data$F1/$SEG" >"$T/out" 2>&1 && ok "the repaired file is the leader's, byte for byte" ||
	bad "the repaired file is the leader's, byte for byte"
grep -q "repair: segment [0-9]* of table id [0-9]* was damaged here; replaced with node [0-9]*'s copy" "$T/log$F1" &&
	ok "the follower's log names the repair" || bad "the follower's log names the repair"
on "$F1" cluster status --format jsonl >"$T/out" 2>&1
grep -q "^{\"id\":$F1,.*\"repaired\":1,\"repairs_pending\":0}$" "$T/out" &&
	ok "cluster status counts the repair" || bad "cluster status counts the repair"
run "verify at the repaired follower" 0 "ok:" on "$F1" verify --quick

# ---- --min-version on a follower ---------------------------------------------------------------------
on "$L" load t "$T/small.csv" --quiet >"$T/out" 2>&1 || bad "load at the leader"
TROWS=$((TROWS + 3000))
V=$(sed -n "s/^table 't' version \([0-9]*\) .*/\1/p" "$T/out")
N=$(count "$F1" t --min-version "$V")
[ "$N" = $TROWS ] && ok "query --min-version $V at a follower right after the write sees it" ||
	bad "query --min-version $V at a follower right after the write sees it ($N rows)"
on "$F2" scan t --min-version "$V" --format csv >"$T/out" 2>"$T/err" && [ "$(wc -l <"$T/out")" = $((TROWS + 1)) ] &&
	ok "scan --min-version $V at the other follower" || bad "scan --min-version $V at the other follower"
t0=$(ms)
run "scan --min-version far ahead fails clearly" 1 "strata scan: table 't' version 999999 is not applied on node $F1 within 3000 ms" \
	on "$F1" scan t --min-version 999999 --limit 1
el=$(($(ms) - t0))
[ $el -ge 2900 ] && [ $el -lt 5000 ] && ok "... after the 3 s write_timeout (${el} ms)" || bad "... after the 3 s write_timeout (${el} ms)"

# ---- a follower restarts and catches up ------------------------------------------------------------------
# Table v's first segment is a file; it is replaced while the follower is
# down, and vacuum (sent to a follower: run on the leader) keeps it until
# that follower has caught up past the replacement.
run "create v" 0 "created table 'v'" on "$L" create v --schema "$SCHEMA"
run "load v" 0 "300000 rows" on "$L" load v "$T/big.csv" --quiet
if stop "$F2"; then ok "SIGTERM a follower: clean exit"; else bad "SIGTERM a follower: clean exit"; fi
run "load with a follower down (quorum of two)" 0 "3000 rows" on "$F1" load t "$T/small.csv" --quiet
run "load again" 0 "3000 rows" on "$L" load t "$T/small.csv" --quiet
run "overwrite v with a follower down" 0 "3000 rows" on "$L" load v "$T/small.csv" --mode overwrite --quiet
TROWS=$((TROWS + 6000))
run "vacuum keeps the file a follower behind may still fetch" 0 "1 files kept for followers" \
	on "$F1" vacuum v --retain 0s --force
# With another cluster key it is refused: it cannot catch up, and the others log why.
KEY="$T/other.key" node_config "$F2"
start "$F2" || exit 1
sleep 2
if wait_heads 1000 1 2 3; then bad "a follower with another cluster key does not catch up"
else ok "a follower with another cluster key does not catch up"; fi
grep -q "peer messages refused since start: not authenticated with this cluster's key" "$T/log$L" &&
	ok "the leader logs the unauthenticated peer" || bad "the leader logs the unauthenticated peer"
stop "$F2"
node_config "$F2"
start "$F2" || exit 1
if wait_heads 10000 1 2 3; then ok "the restarted follower caught up: same chain head"; else bad "the restarted follower caught up: same chain head"; fi
# (The leader learns the follower's match from its acknowledgement, which may
# trail the follower's own apply a little: poll.)
end=$(($(ms) + 5000))
while on "$F1" vacuum v --retain 0s --force >"$T/out" 2>&1 && ! grep -q "deleted 1 files" "$T/out" &&
	[ "$(ms)" -lt $end ]; do sleep 0.1; done
if grep -q "deleted 1 files" "$T/out"; then ok "vacuum deletes it once the follower caught up"
else bad "vacuum deletes it once the follower caught up"; fi
# Vacuum is a log entry: every node applies it and removes the file too.
segs() { (cd "$T/data$1" && find tables -name '*.seg' | sort); }
if wait_heads 10000 1 2 3 && [ "$(segs 1)" = "$(segs 2)" ] && [ "$(segs 1)" = "$(segs 3)" ]; then
	ok "the vacuum replicated: same chain head and the same segment files on all three"
else
	bad "the vacuum replicated: same chain head and the same segment files on all three"
fi
N=$(count "$F2" t)
[ "$N" = $TROWS ] && ok "the restarted follower has every row ($TROWS)" || bad "the restarted follower has every row ($N, not $TROWS)"

# ---- kill -9 of the leader during 1-row writes ----------------------------------------------------------
run "create w" 0 "created" on "$L" create w --schema "id int64 not null"
# The writer: one new id per attempt (a retried id could commit twice), sent
# to the followers in turn (redirected to the leader); acknowledged ids in
# $T/acked.
: >"$T/acked"
(
	i=0
	while [ ! -e "$T/wstop" ]; do
		i=$((i + 1))
		if [ $((i % 2)) = 0 ]; then h=$F1; else h=$F2; fi
		printf 'id\n%d\n' "$i" | "$STRATA" --host "$(addr "$h")" --timeout 2 load w - --format csv --quiet \
			>>"$T/wlog" 2>&1 && echo "$i" >>"$T/acked"
	done
) &
WPID=$!
dl=$(($(ms) + 10000))
while [ "$(wc -l <"$T/acked")" -lt 20 ] && [ "$(ms)" -lt $dl ]; do sleep 0.02; done
A0=$(wc -l <"$T/acked")
kill9 "$L"
t0=$(ms)
if wait_leader 5000 "$F1" "$F2"; then
	ok "a new leader within 5 s of kill -9: node $LEADER, epoch $EPOCH ($(($(ms) - t0)) ms)"
else
	bad "a new leader within 5 s of kill -9"
fi
NL=${LEADER:-$F1}
A1=$(wc -l <"$T/acked")
dl=$(($(ms) + 8000))
while [ "$(wc -l <"$T/acked")" -lt $((A1 + 10)) ] && [ "$(ms)" -lt $dl ]; do sleep 0.02; done
touch "$T/wstop"
wait "$WPID"
WPID=
A2=$(wc -l <"$T/acked")
cp "$T/wlog" "$T/out"
[ "$A0" -ge 20 ] && [ "$A2" -ge $((A1 + 10)) ] && ok "writes acknowledged before ($A0) and after ($((A2 - A1))) the failover" ||
	bad "writes acknowledged before ($A0) and after ($((A2 - A1))) the failover"
# check_w N: every acknowledged id exactly once at node N, no id twice.
check_w() {
	on "$1" scan w --format csv >"$T/w$1" 2>"$T/out"
	tail -n +2 "$T/w$1" | sort >"$T/present"
	uniq -d "$T/present" >"$T/dups"
	sort -u "$T/acked" >"$T/ack.sorted"
	sort -u "$T/present" | comm -23 "$T/ack.sorted" - >"$T/missing"
	{ echo "missing:"; head -n 5 "$T/missing"; echo "twice:"; head -n 5 "$T/dups"; } >>"$T/out"
	[ -s "$T/ack.sorted" ] && [ ! -s "$T/missing" ] && [ ! -s "$T/dups" ]
}
check_w "$NL" && ok "every acknowledged id ($A2) once on the new leader" || bad "every acknowledged id ($A2) once on the new leader"
start "$L" || exit 1
if wait_heads 10000 1 2 3; then ok "the old leader rejoined and caught up: same chain head"; else bad "the old leader rejoined and caught up: same chain head"; fi
r=$(on "$L" status | sed -n 's/^role: *//p')
[ "$r" = follower ] && ok "the old leader is a follower" || bad "the old leader is a follower (role $r)"
check_w "$L" && ok "every acknowledged id once on the old leader" || bad "every acknowledged id once on the old leader"
N=$(count "$L" t)
[ "$N" = $TROWS ] && ok "the old leader has every row of t ($TROWS)" || bad "the old leader has every row of t ($N, not $TROWS)"
cp "$T/w$NL" "$T/wbefore"

# ---- a paused leader serves no stale read ----------------------------------------------------------------
# SIGSTOP the leader past an election timeout; the others elect a leader and
# commit a row. Reads sent to the paused node meanwhile wait in its socket
# and run the moment it resumes, before it hears of the new epoch: each must
# see that row or be refused, never be served under the lease it held
# before the pause (REPLICATION.md §8: the lease counts from when the
# answered heartbeat was sent, and is judged when read).
if wait_leader 5000 1 2 3; then PL=$LEADER; else bad "a leader before the pause"; PL=1; fi
run "create p" 0 "created" on "$PL" create p --schema "id int64 not null"
run "load p (1)" 0 "" sh -c "printf 'id\n1\n' | \"$STRATA\" --host $(addr "$PL") load p - --format csv --quiet"
kill -STOP "$(pid "$PL")"
if wait_leader 5000 $(others "$PL"); then
	ok "a new leader while node $PL is paused: node $LEADER"
else
	bad "a new leader while node $PL is paused"
fi
NL2=${LEADER:-$(others "$PL" | cut -d' ' -f1)}
run "load p (2) at the new leader" 0 "" sh -c "printf 'id\n2\n' | \"$STRATA\" --host $(addr "$NL2") load p - --format csv --quiet"
for k in 1 2 3 4 5 6; do
	on "$PL" --timeout 8 scan p --consistency leader --format csv >"$T/pr$k" 2>&1 &
	eval "RP$k=$!"
done
sleep 0.3
kill -CONT "$(pid "$PL")"
served=0 stale=0 refused=0 why=
: >"$T/out"
for k in 1 2 3 4 5 6; do
	if eval "wait \$RP$k"; then
		if grep -qx 2 "$T/pr$k"; then served=$((served + 1)); else stale=$((stale + 1)); cat "$T/pr$k" >>"$T/out"; fi
	else
		refused=$((refused + 1))
		why=$(head -n 1 "$T/pr$k")
	fi
done
[ $stale = 0 ] && ok "reads queued at the paused leader: none stale ($served served with the new row, $refused refused${why:+: $why})" ||
	bad "reads queued at the paused leader: $stale served without the row committed meanwhile"
wait_leader 5000 1 2 3 >/dev/null

# ---- no quorum -------------------------------------------------------------------------------------------
wait_leader 5000 1 2 3 || bad "one leader before the quorum loss"
L=${LEADER:-$NL}
set -- $(others "$L")
F1=$1 F2=$2
kill9 "$F1"
kill9 "$F2"
printf 'id\n1000000\n' >"$T/one.csv"
t0=$(ms)
on "$L" load w "$T/one.csv" >"$T/out" 2>&1
st=$?
el=$(($(ms) - t0))
[ $st = 1 ] && grep -qE "no quorum|no leader" "$T/out" && [ $el -lt 5000 ] &&
	ok "2 of 3 down: a write at the leader fails with no quorum (${el} ms)" ||
	bad "2 of 3 down: a write at the leader fails with no quorum (exit $st, ${el} ms)"
# Now the node has stepped down. strata load first reads the table's schema
# (DESCRIBE, a bounded read): that read's refusal is what the user sees, and
# it must still say there is no leader (it said "last heard from a leader
# never ago, more than the staleness bound ...: read at the leader").
t0=$(ms)
on "$L" load w "$T/one.csv" >"$T/out" 2>&1
st=$?
el=$(($(ms) - t0))
[ $st = 1 ] && grep -qE "no quorum|no leader" "$T/out" && [ $el -lt 5000 ] &&
	ok "2 of 3 down, no leader: a direct write says so clearly (${el} ms)" ||
	bad "2 of 3 down, no leader: a direct write says so clearly (exit $st, ${el} ms)"
# create is a write and nothing else (load first reads the table's schema).
run "2 of 3 down, no leader: create says so" 1 "no leader is known" on "$L" create nl --schema "x int64"
start "$F1" || exit 1
start "$F2" || exit 1
if wait_leader 5000 1 2 3; then ok "after the restarts a leader again: node $LEADER"; else bad "after the restarts a leader again"; fi
if wait_heads 10000 1 2 3; then ok "after the restarts the same chain head"; else bad "after the restarts the same chain head"; fi
for n in 1 2 3; do
	check_w "$n" && ok "node $n: every acknowledged id once" || bad "node $n: every acknowledged id once"
done
N=$(count "${LEADER:-1}" t)
[ "$N" = $TROWS ] && ok "nothing of t lost ($TROWS rows)" || bad "nothing of t lost ($N, not $TROWS)"
run "a write via a follower after the restarts" 0 "1 rows" on "$(others "${LEADER:-1}" | cut -d' ' -f1)" load w "$T/one.csv"

# ---- membership: 3 -> 4 nodes, then one removed ------------------------------------------------------------
L=${LEADER:-1}
node_config 4 # peers 1-3; it joins as a learner of their cluster
sed -i '/^  key_file:/a\  join: true' "$T/n4.yaml"
F=$(others "$L" | cut -d' ' -f1)
run "cluster add --id 4 at a follower (followed to the leader)" 0 "node 4 added as a learner" \
	on "$F" cluster add --id 4 --address "tcp://127.0.0.1:$((37480 + 80))" --client "$(addr 4)"
# The vacuum above removed files the log's early entries name: node 4
# cannot replay the log from LSN 1; it starts from a peer's snapshot.
# kill -9 during the bootstrap, three times at random moments: each restart
# resumes or starts over, and never serves a half-installed directory.
for k in 1 2 3; do
	"$STRATAD" -c "$T/n4.yaml" >>"$T/log4" 2>&1 &
	p4=$!
	n0=$(grep -c "bootstrap: fetching" "$T/log4")
	dl=$(($(ms) + 5000)) # kill it once it fetches, within 0-90 ms
	while [ "$(grep -c "bootstrap: fetching" "$T/log4")" = "$n0" ] && [ "$(ms)" -lt $dl ]; do sleep 0.01; done
	sleep "0.0$(od -An -N1 -tu1 /dev/urandom | tr -d ' ' | cut -c1)"
	kill -9 "$p4" 2>/dev/null
	wait "$p4" 2>/dev/null
	if [ -d "$T/data4/store" ] && ! [ -f "$T/data4/store/data.mdb" ]; then bad "kill -9 $k during the bootstrap leaves no half state"; fi
done
start 4 || exit 1
na=$(grep -c "bootstrap: fetching" "$T/log4")
grep -q "bootstrap: the snapshot is installed" "$T/log4" && ok "node 4 bootstrapped from a peer's snapshot ($na fetches begun)" ||
	{ cp "$T/log4" "$T/out"; bad "node 4 bootstrapped from a peer's snapshot"; }
on 4 status >"$T/out" 2>&1
grep -Eq '^role: +learner$' "$T/out" && ok "node 4 (join: true) is a learner" || bad "node 4 (join: true) is a learner"
run "cluster add of a member's id is refused" 1 "a member already" \
	on "$L" cluster add --id 2 --address "tcp://127.0.0.1:9"
run "cluster promote of a non-member is refused" 1 "not a member" on "$L" cluster promote 9
if wait_heads 20000 1 2 3 4; then ok "the learner caught up from the log: same chain head on four nodes"; else bad "the learner caught up from the log: same chain head on four nodes"; fi
# Equal heads need no contact with the leader (node 4 may hold the
# snapshot's LSN and no write followed): until it hears from the leader, a
# read there is refused ("has never heard from a leader", the staleness
# bound), rightly. Give it 10 s to hear.
dl=$(($(ms) + 10000))
until on 4 scan t --format csv >"$T/scan4" 2>"$T/err4" || [ "$(ms)" -gt $dl ]; do sleep 0.1; done
on "$L" scan t --format csv >"$T/scan$L" 2>"$T/errL"
{ cmp "$T/scan$L" "$T/scan4"; cat "$T/err4" "$T/errL"; } >"$T/out" 2>&1
! [ -s "$T/err4" ] && cmp -s "$T/scan$L" "$T/scan4" && ok "the learner scans what the leader scans" || bad "the learner scans what the leader scans"
on "$L" cluster status --format jsonl >"$T/out" 2>&1
grep -q '^{"id":4,"role":"learner"' "$T/out" && [ "$(wc -l <"$T/out")" = 4 ] &&
	ok "cluster status: four members, node 4 a learner" || bad "cluster status: four members, node 4 a learner"
run "cluster promote 4" 0 "node 4 promoted to voter" on "$F" cluster promote 4
run "cluster promote 4 again is refused" 1 "a voter already" on "$L" cluster promote 4
dl=$(($(ms) + 5000)) # node 4 applies the change when it hears the commit
while ! on 4 status 2>/dev/null | grep -Eq '^role: +follower$' && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
on 4 status >"$T/out" 2>&1
grep -Eq '^role: +follower$' "$T/out" && ok "node 4 is a voting follower" || bad "node 4 is a voting follower"
# Remove a follower: three voters again (L, F and 4).
R=$(others "$L" | cut -d' ' -f2)
run "cluster remove of the leader is refused" 1 "move leadership first" on "$L" cluster remove "$L"
run "cluster remove $R" 0 "node $R removed" on "$L" cluster remove "$R"
dl=$(($(ms) + 5000))
while ! on "$R" status 2>/dev/null | grep -Eq '^role: +removed$' && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
on "$R" status >"$T/out" 2>&1
grep -Eq '^role: +removed$' "$T/out" && ok "node $R learns it was removed (role removed)" || bad "node $R learns it was removed (role removed)"
run "cluster add of a removed id is refused (ids are never reused)" 1 "never reused" \
	on "$L" cluster add --id "$R" --address "tcp://127.0.0.1:9"
stop "$R"
run "a write with node $R stopped (voters $L, $F, 4)" 0 "1 rows" on "$F" load w "$T/one.csv"
stop 4 && start 4 || exit 1
if wait_heads 10000 "$L" "$F" 4; then ok "node 4 restarted: its membership from the log, caught up"; else bad "node 4 restarted: its membership from the log, caught up"; fi
on "$L" cluster status --format jsonl >"$T/out" 2>&1
[ "$(wc -l <"$T/out")" = 3 ] && ! grep -q "^{\"id\":$R," "$T/out" &&
	ok "cluster status: three members, node $R gone" || bad "cluster status: three members, node $R gone"
stop "$F"
run "a write with node $F stopped too: $L and 4 are two of three voters" 0 "1 rows" on "$L" load w "$T/one.csv"
start "$F" || exit 1
start "$R" || exit 1
sleep 1
on "$R" status >"$T/out" 2>&1
grep -Eq '^role: +removed$' "$T/out" && ok "node $R restarted: still removed, never campaigns" || bad "node $R restarted: still removed, never campaigns"

# ---- a follower behind the vacuum starts again from a snapshot, same id ------------------------------------
# With a lag budget of 2 entries, a follower stopped while 6 entries and a
# vacuum go by cannot fetch the files its missing entries name: it marks
# itself for a snapshot and stops (role failed); restarted, it bootstraps
# from a peer's snapshot under the same id, keeping its epoch and vote, and
# catches up (REPLICATION.md §14).
for n in "$L" "$F" 4; do
	sed -i '/^  write_timeout:/a\  max_lag: 2' "$T/n$n.yaml"
	stop "$n" && start "$n" || exit 1
	wait_leader 10000 "$L" "$F" 4 >/dev/null
done
if wait_leader 10000 "$L" "$F" 4; then ok "the voters restarted with a lag budget of 2: node $LEADER leads"; else bad "the voters restarted with a lag budget of 2"; fi
VL=${LEADER:-$L}
B=$L
[ "$B" = "$VL" ] && B=$F
stop "$B"
run "create y with node $B stopped" 0 "created" on "$VL" create y --schema "$SCHEMA"
for k in 1 2 3 4; do
	on "$VL" load y "$T/small.csv" --quiet >"$T/out" 2>&1 || bad "load $k of y with node $B stopped"
done
run "overwrite y" 0 "3000 rows" on "$VL" load y "$T/small.csv" --mode overwrite --quiet
run "vacuum y: node $B is past the lag budget, nothing kept for it" 0 "deleted 4 files" \
	on "$VL" vacuum y --retain 0s --force
start "$B" || exit 1
dl=$(($(ms) + 20000))
while ! grep -q "this node needs a snapshot" "$T/log$B" && [ "$(ms)" -lt $dl ]; do sleep 0.1; done
on "$B" status >"$T/out" 2>&1
grep -Eq '^role: +failed$' "$T/out" && grep -q "this node needs a snapshot" "$T/log$B" && [ -f "$T/data$B/RESNAPSHOT" ] &&
	ok "node $B finds the leader's files vacuumed: marked for a snapshot, role failed" ||
	{ tail -n 20 "$T/log$B" >>"$T/out"; bad "node $B finds the leader's files vacuumed: marked for a snapshot, role failed"; }
ep0=$(sed -n 's/^epoch \([0-9]*\) .*/\1/p' "$T/data$B/RESNAPSHOT")
stop "$B"
start "$B" || exit 1
grep -q "bootstrap: node $B fell behind the leader's vacuum" "$T/log$B" && grep -q "bootstrap: the snapshot is installed" "$T/log$B" &&
	! [ -e "$T/data$B/RESNAPSHOT" ] && ! [ -e "$T/data$B.strata-replaced" ] &&
	ok "restarted, node $B bootstraps from a peer's snapshot under its own id" ||
	{ tail -n 20 "$T/log$B" >"$T/out"; bad "restarted, node $B bootstraps from a peer's snapshot under its own id"; }
if wait_heads 20000 "$L" "$F" 4; then ok "node $B caught up: same chain head on the three voters"; else bad "node $B caught up: same chain head on the three voters"; fi
on "$B" status >"$T/out" 2>&1
ep1=$(sed -n 's/^epoch: *//p' "$T/out")
grep -Eq '^role: +follower$' "$T/out" && [ -n "$ep0" ] && [ "${ep1:-0}" -ge "$ep0" ] &&
	ok "node $B is a follower again, epoch $ep1 (marked in $ep0)" || bad "node $B is a follower again (epoch ${ep1:-?}, marked in ${ep0:-?})"
NY=$(count "$VL" y)
dl=$(($(ms) + 10000)) # a read there waits for contact with the leader (see node 4 above)
until NB=$(count "$B" y) && [ -n "$NB" ] || [ "$(ms)" -gt $dl ]; do sleep 0.1; done
[ "$NY" = 3000 ] && [ "$NB" = "$NY" ] && ok "node $B has y's rows ($NB)" || bad "node $B has y's rows ($NB, the leader $NY)"
# A kill -9 between the install's two renames (the old directory moved
# aside, the READY snapshot not yet in place): the next start finishes it.
stop "$B"
cp -a "$T/data$B" "$T/data$B.bootstrap" && : >"$T/data$B.bootstrap/READY" && mv "$T/data$B" "$T/data$B.strata-replaced"
start "$B" || exit 1
[ -d "$T/data$B/store" ] && ! [ -e "$T/data$B.strata-replaced" ] && ! [ -e "$T/data$B.bootstrap" ] && wait_heads 10000 "$L" "$F" 4 &&
	ok "an install cut between its two renames is finished at the next start" ||
	bad "an install cut between its two renames is finished at the next start"

# ---- a single node ------------------------------------------------------------------------------------------
printf 'listen: ["ipc://%s/single.sock"]\ndata_dir: "%s/single"\n' "$T" "$T" >"$T/single.yaml"
"$STRATAD" -c "$T/single.yaml" >>"$T/logsingle" 2>&1 &
PS=$!
dl=$(($(ms) + 10000))
while ! "$STRATA" --host "ipc://$T/single.sock" --timeout 1 ping >/dev/null 2>&1 && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
"$STRATA" --host "ipc://$T/single.sock" status >"$T/out" 2>&1
grep -Eq '^role: +single node$' "$T/out" && ok "a single node's status: role single node" || bad "a single node's status: role single node"
kill -TERM "$PS"
wait "$PS"
PS=

for n in 1 2 3 4; do
	if stop "$n"; then ok "node $n: SIGTERM, clean exit"; else cp "$T/log$n" "$T/out"; bad "node $n: SIGTERM, clean exit"; fi
done

# Election safety from the nodes' own logs: each logs "leader in epoch N"
# when it leads; no epoch may have two leaders over the whole run.
for n in 1 2 3 4; do sed -n "s/.*replication: leader in epoch \([0-9]*\)$/\1 $n/p" "$T/log$n"; done |
	sort -u >"$T/leaders"
nlead=$(wc -l <"$T/leaders")
twice=$(cut -d' ' -f1 "$T/leaders" | uniq -d | head -n 3)
[ "$nlead" -ge 3 ] && [ -z "$twice" ] && ok "one leader per epoch in the logs ($nlead epochs led)" ||
	{ cp "$T/leaders" "$T/out"; bad "one leader per epoch in the logs (epochs led twice: ${twice:-none}; $nlead led)"; }

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
