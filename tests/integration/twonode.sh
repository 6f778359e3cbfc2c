#!/bin/sh
# tests/integration/twonode.sh — a two-node cluster loses a node for good
# (README "Two nodes cannot fail over by themselves"; REPLICATION.md §13.1).
#
#   sh tests/integration/twonode.sh BUILD_DIR
#
# Two stratad on loopback (clients 37611-37612, peers 37640/37660, cluster
# key, heartbeat 50ms, election_timeout 500ms, write_timeout 2s). Writes at
# quorum; kill -9 of the leader: the survivor cannot elect itself; cluster
# force-promote without --accept-data-loss is refused; with it the
# survivor leads in a new epoch, says what may be lost, keeps every
# acknowledged row and takes writes; the old node comes back as a learner,
# catches up and is promoted again. Closes with "N passed, N failed".
set -u
B=${1:-build}
B=$(cd "$B" && pwd)
STRATA="$B/strata"
STRATAD="$B/stratad"
T=$(mktemp -d /tmp/strata-2n.XXXXXX)
PASS=0
FAIL=0
P1= P2=
CID=$(od -An -N16 -tx1 /dev/urandom | tr -d " \n")

cleanup() {
	for p in $P1 $P2; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() {
	FAIL=$((FAIL + 1)); echo "FAIL $1"
	[ -f "$T/out" ] && sed 's/^/     | /' "$T/out" | head -20
	for n in 1 2; do echo "     -- node $n log (tail):"; tail -n 8 "$T/log$n" 2>/dev/null | sed 's/^/     | /'; done
}
run() {
	name=$1 want=$2 text=$3
	shift 3
	"$@" >"$T/out" 2>&1
	st=$?
	if [ "$st" != "$want" ]; then echo "     (exit $st, wanted $want)" >>"$T/out"; bad "$name"
	elif [ -n "$text" ] && ! grep -qF -- "$text" "$T/out"; then echo "     (no \"$text\")" >>"$T/out"; bad "$name"
	else ok "$name"; fi
}
ms() { date +%s%3N; }
addr() { echo "tcp://127.0.0.1:$((37610 + $1))"; }
on() { _h=$1; shift; "$STRATA" --host "$(addr "$_h")" "$@"; }
pid() { eval echo "\${P$1}"; }
role() { on "$1" --timeout 1 status 2>/dev/null | sed -n 's/^role: *//p'; }
head_of() { on "$1" --timeout 1 status 2>/dev/null | sed -n 's/^chain head: *//p'; }

node_config() {
	o=$((3 - $1))
	{
		printf 'listen: ["%s"]\ndata_dir: "%s/data%s"\nfsync: on\nlog_level: debug\n' "$(addr "$1")" "$T" "$1"
		printf 'cluster:\n  node_id: %s\n  cluster_id: "%s"\n' "$1" "$CID"
		printf '  peer_listen: "tcp://127.0.0.1:%s"\n  peers:\n' $((37620 + 20 * $1))
		printf '    - {id: %s, peer: "tcp://127.0.0.1:%s", client: "%s"}\n' "$o" $((37620 + 20 * o)) "$(addr "$o")"
		printf '  heartbeat: 50ms\n  election_timeout: 500ms\n  write_timeout: 2s\n'
		printf '  key_file: "%s"\n' "$T/cluster.key"
	} >"$T/n$1.yaml"
}
start() {
	"$STRATAD" -c "$T/n$1.yaml" >>"$T/log$1" 2>&1 &
	eval "P$1=$!"
	dl=$(($(ms) + 10000))
	while ! on "$1" --timeout 1 ping >/dev/null 2>&1; do
		if [ "$(ms)" -gt $dl ] || ! kill -0 "$(pid "$1")" 2>/dev/null; then
			echo "node $1 did not start:"; tail -n 20 "$T/log$1"; return 1
		fi
		sleep 0.05
	done
}
# wait_role N ROLE DEADLINE_MS
wait_role() {
	dl=$(($(ms) + $3))
	while [ "$(role "$1")" != "$2" ]; do [ "$(ms)" -gt $dl ] && return 1; sleep 0.05; done
}

head -c 32 /dev/urandom >"$T/cluster.key" && chmod 600 "$T/cluster.key"
node_config 1 && node_config 2
start 1 && start 2 || exit 1
L=
dl=$(($(ms) + 5000))
while [ -z "$L" ] && [ "$(ms)" -lt $dl ]; do
	for n in 1 2; do [ "$(role "$n")" = leader ] && L=$n; done
	sleep 0.05
done
[ -n "$L" ] && ok "two nodes elect a leader: node $L" || { bad "two nodes elect a leader"; exit 1; }
S=$((3 - L))
run "create" 0 "created" on "$S" create t --schema "id int64 not null"
: >"$T/acked"
for i in $(seq 1 20); do
	printf 'id\n%d\n' "$i" | on "$S" --timeout 3 load t - --format csv --quiet >/dev/null 2>&1 && echo "$i" >>"$T/acked"
done
[ "$(wc -l <"$T/acked")" = 20 ] && ok "20 writes acknowledged at quorum (both nodes)" || bad "20 writes acknowledged at quorum"

kill -9 "$(pid "$L")"; wait "$(pid "$L")" 2>/dev/null; eval "P$L="
sleep 2
r=$(role "$S")
[ "$r" != leader ] && ok "the survivor alone does not elect itself (role $r)" || bad "the survivor alone does not elect itself"
run "a write fails without the other node" 1 "" on "$S" --timeout 4 load t "$T/acked" --format csv
run "force-promote without --accept-data-loss is refused" 2 "accept-data-loss" on "$S" cluster force-promote
run "force-promote --accept-data-loss: says what may be lost" 0 "is lost when that node rejoins" on "$S" cluster force-promote --accept-data-loss

if wait_role "$S" leader 5000; then ok "the survivor leads in a new epoch"; else bad "the survivor leads in a new epoch"; fi
dl=$(($(ms) + 5000))
while ! printf 'id\n%d\n' 100 | on "$S" --timeout 3 load t - --format csv --quiet >"$T/out" 2>&1; do
	[ "$(ms)" -gt $dl ] && break
	sleep 0.1
done
[ "$(ms)" -le $dl ] && ok "a write at the survivor alone" || bad "a write at the survivor alone"
on "$S" scan t --format csv 2>/dev/null | tail -n +2 | sort >"$T/have"
missing=$(sort "$T/acked" | comm -23 - "$T/have" | wc -l)
[ "$missing" = 0 ] && ok "every write acknowledged before is there" || bad "every write acknowledged before is there ($missing missing)"
run "force-promote on a leader is refused" 1 "leads already" on "$S" cluster force-promote --accept-data-loss

start "$L" || exit 1
if wait_role "$L" learner 10000; then ok "the old leader rejoins as a learner"; else role "$L" >"$T/out"; bad "the old leader rejoins as a learner"; fi
dl=$(($(ms) + 10000))
while [ "$(head_of "$L")" != "$(head_of "$S")" ] && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
[ "$(head_of "$L")" = "$(head_of "$S")" ] && ok "it caught up: same chain head" || bad "it caught up: same chain head"
run "promote it again" 0 "promoted to voter" on "$S" cluster promote "$L"
if wait_role "$L" follower 5000; then ok "two voters again"; else bad "two voters again"; fi
run "a write at quorum of two" 0 "1 rows" sh -c "printf 'id\n101\n' | '$STRATA' --host '$(addr "$L")' load t - --format csv"
for n in 1 2; do kill -TERM "$(pid "$n")"; wait "$(pid "$n")"; eval "P$n="; done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
