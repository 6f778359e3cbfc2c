#!/bin/sh
# tests/integration/partition.sh — a 3-node stratad cluster in three network
# namespaces joined by a bridge, and a partition that isolates the leader.
#
#   sh tests/integration/partition.sh BUILD_DIR
#
# Each node runs in its own namespace (ip netns; needs root) on its own
# address of a subnet drawn per run, so nothing collides with another run or
# with the loopback tests. The leader is cut off by setting its veth down:
# the majority elects a new leader within a bound and keeps taking writes;
# the isolated old leader steps down (CheckQuorum), refuses writes, and
# does not raise its epoch (PreVote); after healing it rejoins as a follower
# with the same chain head, and every acknowledged write is there once.
# Without root or ip netns the script says so and passes nothing.
# Closes with "N passed, N failed".

B=${1:-build}
STRATA=$PWD/$B/strata
STRATAD=$PWD/$B/stratad
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() {
	FAIL=$((FAIL + 1))
	echo "FAIL $1"
	[ -f "$T/out" ] && sed 's/^/     | /' "$T/out"
	for n in 1 2 3; do
		echo "     -- node $n log (tail):"
		tail -n 5 "$T/log$n" 2>/dev/null | sed 's/^/     | /'
	done
}

if [ "$(id -u)" != 0 ] || ! ip netns list >/dev/null 2>&1; then
	echo "skip: network namespaces need root and ip netns"
	echo "0 passed, 0 failed"
	exit 0
fi

T=$(mktemp -d /tmp/strata-pt.XXXXXX)
TAG=$$
NET="10.$((TAG % 200 + 20)).$((TAG / 200 % 250))"
BR="stb$TAG"
cleanup() {
	for n in 1 2 3; do
		ip netns pids "sp$TAG-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "sp$TAG-$n" 2>/dev/null
		ip link del "sv$TAG$n" 2>/dev/null
	done
	ip link del "$BR" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT INT TERM

ip link add "$BR" type bridge && ip link set "$BR" up && ip addr add "$NET.100/24" dev "$BR" || {
	echo "FAIL cannot make a bridge"
	echo "0 passed, 1 failed"
	exit 1
}
for n in 1 2 3; do
	ns="sp$TAG-$n"
	ip netns add "$ns" &&
		ip link add "sv$TAG$n" type veth peer name eth0 netns "$ns" &&
		ip link set "sv$TAG$n" master "$BR" && ip link set "sv$TAG$n" up &&
		ip netns exec "$ns" ip addr add "$NET.$n/24" dev eth0 &&
		ip netns exec "$ns" ip link set eth0 up && ip netns exec "$ns" ip link set lo up || {
		echo "FAIL cannot make namespace $ns"
		echo "0 passed, 1 failed"
		exit 1
	}
done

CID=$(od -An -N16 -tx1 /dev/urandom | tr -d " \n")
for n in 1 2 3; do
	{
		# the namespaces' private network: no client tokens needed
		printf 'listen: ["tcp://%s.%s:7421"]\ndata_dir: "%s/data%s"\nfsync: on\nallow_unauthenticated: true\n' \
			"$NET" "$n" "$T" "$n"
		printf 'log_level: info\ncluster:\n  node_id: %s\n  cluster_id: "%s"\n' "$n" "$CID"
		printf '  peer_listen: "tcp://%s.%s:7600"\n  peers:\n' "$NET" "$n"
		for m in 1 2 3; do
			[ $m = $n ] && continue
			printf '    - {id: %s, peer: "tcp://%s.%s:7600", client: "tcp://%s.%s:7421"}\n' \
				"$m" "$NET" "$m" "$NET" "$m"
		done
		printf '  heartbeat: 50ms\n  election_timeout: 500ms\n  write_timeout: 2s\n'
	} >"$T/n$n.yaml"
	ip netns exec "sp$TAG-$n" "$STRATAD" -c "$T/n$n.yaml" 2>"$T/log$n" &
done

ms() { date +%s%3N; }
on() { _h=$1; shift; "$STRATA" --host "tcp://$NET.$_h:7421" --timeout 2 "$@"; }
# inside N CMD...: strata from node N's own namespace.
inside() { _h=$1; shift; ip netns exec "sp$TAG-$_h" "$STRATA" --host "tcp://$NET.$_h:7421" --timeout 3 "$@"; }
field() { on "$1" status 2>/dev/null | awk -v k="$2" '$1 == k":" {print $2; exit}'; }
leader_among() { # NODES...: the one node that says leader, or nothing
	for n in "$@"; do [ "$(field "$n" role)" = leader ] && echo "$n"; done
}
wait_leader() { # DEADLINE_MS NODES...
	end=$(($(ms) + $1))
	shift
	while [ "$(ms)" -lt $end ]; do
		l=$(leader_among "$@")
		[ -n "$l" ] && [ "$(echo "$l" | wc -w)" = 1 ] && { LEADER=$l; return 0; }
		sleep 0.05
	done
	return 1
}

if wait_leader 10000 1 2 3; then ok "a leader is elected in three namespaces (node $LEADER)"; else bad "a leader is elected"; exit 1; fi
L=$LEADER
E0=$(field "$L" epoch)
on "$L" create p --schema "id int64" >"$T/out" 2>&1 && ok "create at the leader" || bad "create at the leader"
printf 'id\n' >"$T/ids.csv"
ACKED=0
write() { # NODE ID: a 1-row load, counted when acknowledged
	printf 'id\n%s\n' "$2" >"$T/w.csv"
	if on "$1" load p "$T/w.csv" --quiet >"$T/out" 2>&1; then ACKED=$((ACKED + 1)); echo "$2" >>"$T/acked"; return 0; fi
	return 1
}
: >"$T/acked"
for i in 1 2 3; do write "$L" $i; done
[ $ACKED = 3 ] && ok "three writes before the partition" || bad "three writes before the partition"

# ---- isolate the leader -------------------------------------------------------------------
ip link set "sv$TAG$L" down
t0=$(ms)
REST=""
for n in 1 2 3; do [ $n != "$L" ] && REST="$REST $n"; done
# shellcheck disable=SC2086
if wait_leader 5000 $REST; then
	ok "the majority elects a new leader (node $LEADER) within 5 s ($(($(ms) - t0)) ms)"
else
	bad "the majority elects a new leader within 5 s"
fi
N=$LEADER
for i in 4 5 6 7 8; do write "$N" $i; done
[ $ACKED = 8 ] && ok "the majority takes writes" || bad "the majority takes writes ($ACKED acknowledged of 8)"
# The old leader, seen from inside its own namespace.
end=$(($(ms) + 3000))
while [ "$(ms)" -lt $end ]; do
	r=$(inside "$L" status 2>/dev/null | awk '$1 == "role:" {print $2}')
	[ "$r" != leader ] && break
	sleep 0.05
done
[ "$r" != leader ] && ok "the isolated old leader steps down (role $r)" || bad "the isolated old leader steps down"
printf 'id\n99\n' >"$T/w99.csv"
if inside "$L" load p "$T/w99.csv" --quiet >"$T/out" 2>&1; then
	bad "the isolated old leader refuses a write"
else
	grep -Eq "no live leader|no leader|no quorum|not the leader" "$T/out" &&
		ok "the isolated old leader refuses a write, clearly" || bad "the isolated old leader refuses a write, clearly"
fi
EL=$(inside "$L" status 2>/dev/null | awk '$1 == "epoch:" {print $2}')
[ "$EL" = "$E0" ] && ok "the isolated node's epoch stays $E0 (PreVote)" || bad "the isolated node's epoch stays $E0 (it is $EL)"

# ---- heal ---------------------------------------------------------------------------------
ip link set "sv$TAG$L" up
end=$(($(ms) + 10000))
same=0
while [ "$(ms)" -lt $end ]; do
	h1=$(on 1 status 2>/dev/null | grep "chain head")
	h2=$(on 2 status 2>/dev/null | grep "chain head")
	h3=$(on 3 status 2>/dev/null | grep "chain head")
	[ -n "$h1" ] && [ "$h1" = "$h2" ] && [ "$h1" = "$h3" ] && { same=1; break; }
	sleep 0.1
done
[ $same = 1 ] && ok "after healing the chain heads are equal" || bad "after healing the chain heads are equal"
[ "$(field "$L" role)" = follower ] && ok "the old leader rejoins as a follower" || bad "the old leader rejoins as a follower"
[ "$(field "$N" role)" = leader ] && ok "the majority's leader keeps leading (no disruption)" || bad "the majority's leader keeps leading"
sort -n "$T/acked" >"$T/want"
for n in 1 2 3; do
	on "$n" scan p --format csv --consistency any 2>/dev/null | tail -n +2 | sort -n >"$T/have$n"
	missing=$(comm -23 "$T/want" "$T/have$n" | wc -l)
	dups=$(uniq -d "$T/have$n" | wc -l)
	[ "$missing" = 0 ] && [ "$dups" = 0 ] && ok "node $n: every acknowledged write there once ($ACKED)" ||
		bad "node $n: every acknowledged write there once ($missing missing, $dups twice)"
done
grep -qx 99 "$T/have1" "$T/have2" "$T/have3" && bad "the refused write is nowhere" || ok "the refused write is nowhere"
echo "$PASS passed, $FAIL failed"
[ $FAIL = 0 ]
