#!/bin/sh
# tests/integration/dml.sh — row-level DELETE and UPDATE through real
# stratad processes and the strata CLI:
#
#   sh tests/integration/dml.sh BUILD_DIR
#
# 1. The commands from the CLI: counts, time travel, history, describe,
#    errors that name what failed (bad predicate, bad SET list, NOT NULL,
#    CHECK, int32 range), idempotent DML with an app id, verify clean.
# 2. kill -9 of the daemon in the middle of DELETEs, UPDATEs, MERGEs and
#    OPTIMIZEs of a table in segment files: after a restart every statement
#    is all or nothing
#    (the count is one a sequence of whole statements gives), nothing is
#    left over and verify is clean.
# 3. A 3-node cluster on loopback (random base port): DELETE, UPDATE, MERGE
#    and OPTIMIZE commits replicate; every node answers the same at every version; followers
#    hard-link a deletion vector's segment instead of fetching it again.
# 4. The same cluster, its leader killed (-9) in the middle of a stream of
#    DELETEs, UPDATEs and MERGEs on a keyed table: every statement whole,
#    every acknowledged one kept, the nodes identical, verify clean.
#
# Closes with "N passed, N failed".
set -u
B=${1:-build}
B=$(cd "$B" && pwd)
STRATA="$B/strata"
STRATAD="$B/stratad"
T=$(mktemp -d /tmp/strata-dml.XXXXXX)
PASS=0
FAIL=0
PIDS=

cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

# eq NAME GOT WANT
eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else echo "     got '$2', wanted '$3'" >"$T/out"; bad "$1"; fi
}

wait_ping() { # HOST: up to 10 s
	i=0
	while [ $i -lt 100 ]; do
		"$STRATA" --host "$1" --timeout 1 ping >/dev/null 2>&1 && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# count HOST TABLE [--version N]: count(*) as a bare number
count() {
	h=$1 t=$2
	shift 2
	"$STRATA" --host "$h" query "$t" --agg "count(*),sum(v)" --format csv "$@" 2>/dev/null |
		tail -n 1
}

gen() { # FROM N FILE: rows id,v,s,k
	python3 -c "
import sys
a, n = int(sys.argv[1]), int(sys.argv[2])
print('id,v,s,k')
for i in range(a, a + n):
    print(f'{i},{i % 1000 * 0.5},s{i % 7},{i % 5}')" "$1" "$2" >"$3"
}

# ---- 1. the commands ---------------------------------------------------------
# (The expected figures are SQLite's for the same statements on the same rows.)
H="ipc://$T/s.sock"
mkdir -p "$T/d1"
printf 'listen: ["%s"]\ndata_dir: "%s/d1/data"\n' "$H" "$T" >"$T/d1.yaml"
"$STRATAD" -c "$T/d1.yaml" >"$T/d1.log" 2>&1 &
D1=$!
PIDS="$PIDS $D1"
wait_ping "$H" || { echo "stratad did not start"; cat "$T/d1.log"; exit 1; }
S() { "$STRATA" --host "$H" "$@"; }
S create t --schema "id int64 not null, v float64, s string, k int32" >/dev/null
gen 0 20000 "$T/a.csv"
gen 100000 50 "$T/small.csv"
S load t "$T/a.csv" >/dev/null
S load t "$T/small.csv" >/dev/null
run "delete by a scattered predicate" 0 "deleted 201 rows" S delete t --where "id % 100 = 7"
run "delete of the same rows again: nothing matches" 0 "no row matches: nothing deleted" \
	S delete t --where "id % 100 = 7"
run "delete prunes by statistics" 0 "1 skipped by statistics" S delete t --where "id >= 100040"
eq "rows after the deletes" "$(count "$H" t)" "19839,4949686.5"
eq "time travel before the deletes" "$(count "$H" t --version 2)" "20050,4995612.5"
run "update computes from the old row" 0 "updated 2000 rows" \
	S update t --set "v = v + 1, k = k * 10" --where "id % 10 = 1 and id < 100000"
eq "rows after the update" "$(count "$H" t)" "19839,4951686.5"
run "update swaps two columns" 0 "updated 1 rows" S update t --set "v = k, k = CAST(v AS int32)" --where "id = 12"
eq "the swap" "$(S scan t --where "id = 12" --columns v,k --format csv | tail -n 1)" "2,6"
run "history names DELETE and UPDATE" 0 "UPDATE" S history t
run "history keeps the SET list" 0 'set="v" = ("v" + 1)' S history t
run "describe counts the vectors" 0 "by deletion vectors" S describe t
run "a bad predicate names its token" 1 "near 'nosuch'" S delete t --where "nosuch = 1"
run "a bad SET list names the column" 1 "column 'k' is int32; the value is float64" \
	S update t --set "k = v" --where "id = 1"
run "NOT NULL is refused" 1 "column 'id' is NOT NULL" S update t --set "id = NULL" --where "id = 1"
run "an int32 overflow is refused whole" 1 "out of the int32 range" \
	S update t --set "k = k + 3000000000" --where "id < 10"
S alter t add-constraint nonneg "v >= 0" >/dev/null
run "a CHECK constraint refuses the update" 1 "violates constraint 'nonneg'" \
	S update t --set "v = -1" --where "id = 5"
eq "nothing changed by the refused updates" "$(count "$H" t)" "19839,4951682.5"
run "delete needs --where" 2 "give --where" S delete t
run "update needs --set" 2 "give --set" S update t --where "id = 1"
run "merge needs --on" 2 "give --on" S merge t "$T/small.csv"
run "a bad --when-matched is refused" 2 "--when-matched takes update-all" \
	S merge t "$T/small.csv" --on "t.id = s.id" --when-matched nope
run "a bad --when-not-matched is refused" 2 "--when-not-matched takes insert-all or ignore, not 'nope'" \
	S merge t "$T/small.csv" --on "t.id = s.id" --when-not-matched nope
run "a bad --when-not-matched-by-source is refused" 2 \
	"--when-not-matched-by-source takes delete or ignore, not 'nope'" \
	S merge t "$T/small.csv" --on "t.id = s.id" --when-not-matched-by-source nope
printf 'id,bogus\n1,2\n' >"$T/bogus.csv"
run "a merge source's column the table lacks is named" 1 \
	"column 'bogus' is not in the table (a MERGE source has only the target's columns" \
	S merge t "$T/bogus.csv" --on "t.id = s.id"
run "a merge from a file leaves no table behind" 0 "" sh -c "! \"$STRATA\" --host $H tables | grep -q merge_source"
eq "nothing changed by the refused commands" "$(count "$H" t)" "19839,4951682.5"
run "idempotent delete" 0 "deleted 1 rows" S delete t --where "id = 3" --app-id job --app-version 1
run "idempotent delete, again" 0 "already done earlier" S delete t --where "id = 4" --app-id job --app-version 1
run "restore brings deleted rows back" 0 "restored" S restore t --version 2
eq "rows after the restore" "$(count "$H" t)" "20050,4995612.5"
gen 100040 20 "$T/up.csv"
run "an upsert reports each kind of row" 0 "merged: 10 rows updated, 0 deleted, 10 inserted" \
	S merge t "$T/up.csv" --on "t.id = s.id"
eq "rows after the upsert" "$(count "$H" t | cut -d, -f1)" "20060"
run "verify after DML" 0 "0 problems" S verify
kill "$D1"
wait "$D1" 2>/dev/null

# ---- 2. kill -9 in the middle -------------------------------------------------
# The table: 4 segment files of 200,000 rows (inline_max 1: every write is a file); each
# statement deletes or updates rows of all of them. After a kill the count
# must be one that whole statements give: the deletes are nested (each a
# subset of the next), so the counts form a known ladder.
mkdir -p "$T/d2"
printf 'listen: ["%s"]\ndata_dir: "%s/d2/data"\n' "$H" "$T" >"$T/d2.yaml"
start2() {
	"$STRATAD" -c "$T/d2.yaml" >>"$T/d2.log" 2>&1 &
	D2=$!
	PIDS="$PIDS $D2"
	wait_ping "$H"
}
start2 || { echo "stratad did not start"; cat "$T/d2.log"; exit 1; }
S create c --schema "id int64 not null, v float64, s string, k int32" >/dev/null
for i in 0 1 2 3; do gen $((i * 200000)) 200000 "$T/c$i.csv"; S load c "$T/c$i.csv" >/dev/null; done
total=$(count "$H" c | cut -d, -f1)
eq "crash table loaded" "$total" "800000"
torn=0 kills=0 landed=0 lost=0 acked=0
for r in 1 2 3 4 5 6 7 8; do
	before=$(count "$H" c | cut -d, -f1)
	sum63=$(count "$H" c --where "id % 64 = 63" | cut -d, -f2)
	rm -f "$T/ack_d" "$T/ack_u"
	# delete one more residue of 64, and update the rows of another; the
	# exit statuses say which of the two were acknowledged
	( S --timeout 1 delete c --where "id % 64 < $r" >/dev/null 2>&1; echo $? >"$T/ack_d"
	  S --timeout 1 update c --set "v = v + 1" --where "id % 64 = 63" >/dev/null 2>&1
	  echo $? >"$T/ack_u" ) &
	W=$!
	sleep "0.0$(($(od -An -N1 -tu1 /dev/urandom | tr -d ' ') % 40 + 10))"
	kill -9 "$D2" 2>/dev/null
	wait "$D2" 2>/dev/null
	wait "$W" 2>/dev/null
	kills=$((kills + 1))
	start2 || { echo "stratad did not restart"; tail -20 "$T/d2.log"; break; }
	after=$(count "$H" c | cut -d, -f1)
	want=$((800000 - 800000 / 64 * r))
	# either the delete committed (want) or it did not (before)
	[ "$after" = "$want" ] && [ "$before" != "$want" ] && landed=$((landed + 1))
	if [ "$after" != "$want" ] && [ "$after" != "$before" ]; then
		torn=$((torn + 1))
		echo "     round $r: $after rows, wanted $before or $want" >>"$T/torn"
	fi
	# an acknowledged DELETE or UPDATE survives the kill (12,500 rows of residue 63)
	for a in "$T/ack_d" "$T/ack_u"; do [ "$(cat "$a" 2>/dev/null)" = 0 ] && acked=$((acked + 1)); done
	if [ "$(cat "$T/ack_d" 2>/dev/null)" = 0 ] && [ "$after" != "$want" ]; then
		lost=$((lost + 1))
		echo "     round $r: the acknowledged delete is gone ($after rows)" >>"$T/torn"
	fi
	new63=$(count "$H" c --where "id % 64 = 63" | cut -d, -f2)
	if [ "$(cat "$T/ack_u" 2>/dev/null)" = 0 ] &&
	   ! awk -v a="$sum63" -v b="$new63" 'BEGIN { exit !(a + 12500 == b) }'; then
		lost=$((lost + 1))
		echo "     round $r: the acknowledged update is gone (sum $sum63 -> $new63)" >>"$T/torn"
	fi
	# finish the round so the next one starts from its ladder step
	S delete c --where "id % 64 < $r" >/dev/null 2>&1
done
if [ "$torn" = 0 ]; then ok "kill -9 during DELETE/UPDATE: $kills kills ($landed after the delete committed), every statement whole"
else cp "$T/torn" "$T/out"; bad "kill -9 during DELETE/UPDATE: $torn torn of $kills"; fi
if [ "$lost" = 0 ]; then ok "kill -9 during DELETE/UPDATE: none of the $acked acknowledged statements lost"
else cp "$T/torn" "$T/out"; bad "kill -9 during DELETE/UPDATE: $lost acknowledged statements lost"; fi
eq "the ladder's last step" "$(count "$H" c | cut -d, -f1)" "$((800000 - 800000 / 64 * 8))"
# The id % 64 = 63 rows are updated together: all hold the same increment.
inc=$(S scan c --where "id = 63" --columns v --format csv | tail -n 1 | awk '{print $1 - 31.5}')
odd=$(S query c --agg "count(*)" --where "id % 64 = 63 and v - (id % 1000) * 0.5 <> $inc" --format csv | tail -n 1)
eq "updated rows hold one and the same increment ($inc)" "$odd" "0"
run "verify after the kills" 0 "0 problems" S verify
# kill -9 during MERGE and OPTIMIZE: the row count is the one before or
# after each (a MERGE of 3750 new ids and 3750 existing ones adds 3750
# rows; OPTIMIZE adds none).
python3 -c "
print('id,v,s,k')
for i in range(3750):
    print(f'{1000000 + i},1.5,n,1')    # new ids
    print(f'{64 * i + 10},2.5,o,2')    # ids the table holds (residue 10 is never deleted)
" >"$T/src.csv"
torn=0 lost=0 acked=0
for r in 1 2 3 4; do
	before=$(count "$H" c | cut -d, -f1)
	rm -f "$T/ack_m"
	( S --timeout 1 merge c "$T/src.csv" --on "t.id = s.id" >/dev/null 2>&1; echo $? >"$T/ack_m"
	  S --timeout 1 optimize c >/dev/null 2>&1 ) &
	W=$!
	# rounds 1-2 kill early (mid-MERGE), rounds 3-4 late (after it, mid-OPTIMIZE)
	rnd=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
	if [ "$r" -le 2 ]; then sleep "0.0$((rnd % 60 + 10))"; else sleep "1.$((rnd % 10))"; fi
	kill -9 "$D2" 2>/dev/null
	wait "$D2" 2>/dev/null
	wait "$W" 2>/dev/null
	start2 || { echo "stratad did not restart"; tail -20 "$T/d2.log"; break; }
	after=$(count "$H" c | cut -d, -f1)
	# the new ids land once at most, whatever the rounds did
	[ "$after" = "$before" ] || [ "$after" = $((before + 3750)) ] || [ "$after" = 800000 ] ||
		{ torn=$((torn + 1)); echo "     round $r: $after rows, before $before" >>"$T/torn"; }
	dup=$(S query c --agg "count(*)" --where "id >= 1000000" --format csv | tail -n 1)
	[ "$dup" -le 3750 ] || { torn=$((torn + 1)); echo "     round $r: $dup new ids" >>"$T/torn"; }
	[ "$(cat "$T/ack_m" 2>/dev/null)" = 0 ] && acked=$((acked + 1))
	[ "$(cat "$T/ack_m" 2>/dev/null)" != 0 ] || [ "$dup" = 3750 ] ||
		{ lost=$((lost + 1)); echo "     round $r: acknowledged MERGE, $dup new ids" >>"$T/torn"; }
	S delete c --where "id >= 1000000" >/dev/null 2>&1
done
if [ "$torn" = 0 ]; then ok "kill -9 during MERGE/OPTIMIZE: every statement whole"
else cp "$T/torn" "$T/out"; bad "kill -9 during MERGE/OPTIMIZE: $torn torn"; fi
if [ "$lost" = 0 ]; then ok "kill -9 during MERGE: none of the $acked acknowledged MERGEs lost"
else cp "$T/torn" "$T/out"; bad "kill -9 during MERGE: $lost acknowledged MERGEs lost"; fi
run "verify after the MERGE/OPTIMIZE kills" 0 "0 problems" S verify
n=$(ls "$T/d2/data/tables/"*/ | grep -c 'seg$')
live=$(S describe c | head -n 1 | sed 's/.* in \([0-9]*\) files.*/\1/')
if [ "$n" -ge "$live" ]; then ok "segment files on disk ($n) cover the live files ($live)"; else bad "segment files"; fi
kill "$D2"
wait "$D2" 2>/dev/null

# ---- 3. a cluster ---------------------------------------------------------------
BASE=$((40000 + 100 * ($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 200)))
CID=5374726174614c6f6f706261636b3032
caddr() { echo "tcp://127.0.0.1:$((BASE + $1))"; }
for n in 1 2 3; do
	mkdir -p "$T/n$n"
	{
		printf 'listen: ["%s"]\ndata_dir: "%s/n%s/data"\n' "$(caddr $n)" "$T" "$n"
		printf 'cluster:\n  node_id: %s\n  cluster_id: "%s"\n' "$n" "$CID"
		printf '  peer_listen: "tcp://127.0.0.1:%s"\n  peers:\n' $((BASE + 20 * n))
		for m in 1 2 3; do
			[ "$m" = "$n" ] && continue
			printf '    - {id: %s, peer: "tcp://127.0.0.1:%s", client: "%s"}\n' \
				"$m" $((BASE + 20 * m)) "$(caddr $m)"
		done
		printf '  heartbeat: 50ms\n  election_timeout: 500ms\n  write_timeout: 5s\n'
	} >"$T/n$n.yaml"
	"$STRATAD" -c "$T/n$n.yaml" >"$T/n$n.log" 2>&1 &
	PIDS="$PIDS $!"
	eval "NP$n=$!"
done
for n in 1 2 3; do wait_ping "$(caddr $n)" || echo "node $n did not start"; done
C() { "$STRATA" --host "$(caddr 1)" --timeout 10 "$@"; }
i=0
until C create r --schema "id int64 not null, v float64, s string, k int32" >/dev/null 2>&1 ||
	[ $i -ge 50 ]; do sleep 0.2; i=$((i + 1)); done
C load r "$T/a.csv" >/dev/null
C load r "$T/small.csv" >/dev/null
C delete r --where "id % 100 = 7" >/dev/null
C update r --set "v = v * 2" --where "id % 10 = 1" >/dev/null
C delete r --where "id >= 100040" >/dev/null
C update r --set "s = 'z'" --where "k = 4" >/dev/null
C merge r "$T/small.csv" --on "t.id = s.id" >/dev/null
C optimize r >/dev/null
sleep 1
for v in 2 3 4 5 6 7 8; do
	a=$("$STRATA" --host "$(caddr 1)" query r --agg "count(*),sum(v)" --version $v --format csv --consistency any | tail -n 1)
	same=1
	for n in 2 3; do
		b=$("$STRATA" --host "$(caddr $n)" query r --agg "count(*),sum(v)" --version $v --format csv --consistency any | tail -n 1)
		[ "$a" = "$b" ] || same=0
	done
	if [ $same = 1 ]; then ok "cluster: every node the same at version $v ($a)"; else
		echo "     node 1: $a" >"$T/out"; bad "cluster: nodes differ at version $v"; fi
done
links=$(stat -c %h "$T"/n2/data/tables/*/0000000000000001.seg 2>/dev/null | head -n 1)
if [ "${links:-1}" -gt 1 ]; then ok "cluster: a follower hard-links the vector's segment ($links names)"
else bad "cluster: a follower copied the vector's segment"; fi
for n in 1 2 3; do
	run "cluster: verify on node $n" 0 "0 problems" "$STRATA" --host "$(caddr $n)" verify
done

# ---- 4. kill -9 of the leader in the middle of DML ------------------------------
# A table with a declared key (so its key index replicates too), 30,000 rows
# with v = 0. Statement i works on ids [100 i, 100 i + 100) alone: i % 3 = 0
# deletes them, 1 sets v = i, 2 merges a file setting v = -i and adding the
# ids 1000000 + 100 i + 0..99. The statements go to the nodes in turn
# (redirected to the leader), each one's exit status recorded; the leader is
# killed mid-stream, a new one takes over, the statements go on, the old
# leader comes back. Then on every node: each statement whole or absent, every
# acknowledged one present, the same rows, and verify clean.
leader() {
	for n in 1 2 3; do
		"$STRATA" --host "$(caddr $n)" --timeout 1 status 2>/dev/null | grep -q '^role: *leader' &&
			{ echo "$n"; return 0; }
	done
	return 1
}
python3 -c "
print('id,v,s,k')
for i in range(30000):
    print(f'{i},0,x,1')
" >"$T/q.csv"
C create q --schema "id int64 not null, v float64, s string, k int32" --key id >/dev/null
C load q "$T/q.csv" >/dev/null
: >"$T/qack"
(
	i=1
	while [ ! -e "$T/qstop" ] && [ $i -lt 300 ]; do
		n=$((i % 3 + 1))
		# the killed node is skipped once it is known (its requests only time out)
		[ "$n" = "$(cat "$T/qdead" 2>/dev/null)" ] && n=$((n % 3 + 1))
		h=$(caddr $n)
		a=$((100 * i))
		case $((i % 3)) in
		0) "$STRATA" --host "$h" --timeout 3 delete q --where "id >= $a AND id < $((a + 100))" ;;
		1) "$STRATA" --host "$h" --timeout 3 update q --set "v = $i" --where "id >= $a AND id < $((a + 100))" ;;
		2) awk -v a=$a -v i=$i 'BEGIN { print "id,v,s,k"; for (j = 0; j < 100; j++) {
			print a + j "," -i ",m,2"; print 1000000 + a + j "," -i ",n,3" } }' >"$T/qm.csv"
		   "$STRATA" --host "$h" --timeout 3 merge q "$T/qm.csv" --on "t.id = s.id" ;;
		esac >/dev/null 2>&1
		echo "$i $?" >>"$T/qack"
		i=$((i + 1))
	done
) &
QW=$!
i=0
while [ "$(grep -c ' 0$' "$T/qack")" -lt 15 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
QL=$(leader || echo 1)
echo "$QL" >"$T/qdead"
eval "kill -9 \$NP$QL"
eval "wait \$NP$QL" 2>/dev/null
k0=$(wc -l <"$T/qack")
i=0
while [ "$(tail -n +$((k0 + 1)) "$T/qack" | grep -c ' 0$')" -lt 10 ] && [ $i -lt 1200 ]; do
	sleep 0.05
	i=$((i + 1))
done
touch "$T/qstop"
wait "$QW"
"$STRATAD" -c "$T/n$QL.yaml" >>"$T/n$QL.log" 2>&1 &
PIDS="$PIDS $!"
wait_ping "$(caddr $QL)" || echo "node $QL did not restart"
after=$(tail -n +$((k0 + 1)) "$T/qack" | grep -c ' 0$')
acked=$(grep -c ' 0$' "$T/qack")
if [ "$k0" -ge 15 ] && [ "$after" -ge 5 ]; then
	ok "cluster: DML statements acknowledged before ($((acked - after))) and after ($after) the leader (node $QL) was killed"
else
	bad "cluster: DML statements acknowledged before ($((acked - after))) and after ($after) the leader (node $QL) was killed"
fi
# Every node caught up to the new leader's version (polled), then each one's rows.
NL=$(leader || echo 1)
hv=$("$STRATA" --host "$(caddr "$NL")" describe q 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -n 1)
for n in 1 2 3; do
	i=0
	until "$STRATA" --host "$(caddr $n)" --timeout 2 query q --agg "count(*)" --min-version "${hv:-0}" \
		--consistency any >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
	"$STRATA" --host "$(caddr $n)" scan q --columns id,v --format csv --consistency any --version "${hv:-0}" \
		2>"$T/out" | tail -n +2 | sort -n >"$T/q$n"
done
if cmp -s "$T/q1" "$T/q2" && cmp -s "$T/q1" "$T/q3" && [ -s "$T/q1" ]; then
	ok "cluster: the three nodes hold the same rows at version ${hv:-?} after the kill"
else
	bad "cluster: the three nodes differ after the kill"
fi
python3 - "$T/q1" "$T/qack" >"$T/out" 2>&1 <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    i, v = line.strip().split(",")
    rows[int(i)] = float(v)
acked = {int(a): s == "0" for a, s in (l.split() for l in open(sys.argv[2]))}
bad = []
for i, ok in sorted(acked.items()):
    r = range(100 * i, 100 * i + 100)
    if i % 3 == 0:
        n = sum(x in rows for x in r)
        done, whole = n == 0, n in (0, 100)
    elif i % 3 == 1:
        n = sum(rows.get(x) == i for x in r)
        done, whole = n == 100, n in (0, 100)
    else:
        n = sum(rows.get(x) == -i for x in r) + sum(rows.get(1000000 + x) == -i for x in r)
        done, whole = n == 200, n in (0, 200)
    if not whole or (ok and not done):
        bad.append((i, ok, n))
untouched = [x for x in range(30000) if x // 100 not in acked and rows.get(x) != 0]
print("statements", len(acked), "acknowledged", sum(acked.values()), "bad", bad[:5],
      "untouched changed", untouched[:5])
sys.exit(1 if bad or untouched else 0)
PY
if [ $? = 0 ]; then ok "cluster: every DML statement whole, every acknowledged one ($acked) kept"
else bad "cluster: DML statements torn or lost across the kill"; fi
for n in 1 2 3; do
	run "cluster: verify on node $n after the kill (key index included)" 0 "0 problems" \
		"$STRATA" --host "$(caddr $n)" verify
done

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
