#!/bin/sh
# tests/fault/fault.sh — the fault-injection harness: a real 3-node stratad
# cluster, a concurrent 1-row-per-write workload with a recorded history,
# nemeses (kill -9, SIGSTOP, flipped segment bytes, power cuts, network
# partitions) and a checker of the history against every node's table after
# each heal. tests/fault/README.md describes it.
#
#   sh tests/fault/fault.sh BUILD_DIR [--short | --runs N] [--nemesis NAME[,NAME...]]
#                           [--seed S] [--keep]
#
# Prints one line per check (ok / FAIL), JSON figure lines, and last
# "N passed, M failed" (exit 1 on any failure). POSIX sh, no python.
set -u
LC_ALL=C
export LC_ALL

usage() {
	echo "usage: sh tests/fault/fault.sh BUILD_DIR [--short | --runs N] [--nemesis NAME[,NAME...]] [--seed S] [--keep]" >&2
	echo "nemeses: kill_leader kill_random kill_all pause flip powercut eio partition diskfull control" >&2
	exit 2
}
[ $# -ge 1 ] || usage
case $1 in -*) usage ;; esac
B=$(cd "$1" && pwd) || usage
shift
MODE=default RUNS=10 NEMS= SEED= KEEP=0
while [ $# -gt 0 ]; do
	case $1 in
	--short) MODE=short ;;
	--runs) [ $# -ge 2 ] || usage; MODE=runs RUNS=$2; shift ;;
	--nemesis) [ $# -ge 2 ] || usage; NEMS=$(echo "$2" | tr ',' ' '); shift ;;
	--seed) [ $# -ge 2 ] || usage; SEED=$2; shift ;;
	--keep) KEEP=1 ;;
	*) usage ;;
	esac
	shift
done
case $RUNS in '' | *[!0-9]*) usage ;; esac
for n in $NEMS; do
	case $n in kill_leader | kill_random | kill_all | pause | flip | powercut | eio | partition | diskfull | control) ;;
	*) echo "unknown nemesis '$n'" >&2; usage ;;
	esac
done
[ -n "$SEED" ] || SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
case $SEED in '' | *[!0-9]*) usage ;; esac

STRATA="$B/strata"
STRATAD="$B/stratad"
CUTFS="$B/tests/cutfs"
[ -x "$STRATA" ] && [ -x "$STRATAD" ] || { echo "no $STRATA or $STRATAD: build first"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d /tmp/strata-fault.XXXXXX)
PASS=0 FAIL=0
P1= P2= P3= C1= C2= C3= CP= WP1= WP2=
MOUNTS= NSLIST= LINKS= BRS=
PD=$T/none NETNS=0 CUT=0 DISK=0 FSYNC=on TMPFS=
T_START=$(date +%s%3N)

ms() { date +%s%3N; }
msleep() { sleep "$(($1 / 1000)).$(printf %03d $(($1 % 1000)))"; }
# rnd N: R = a pseudo-random number in 0..N-1 (an LCG seeded by --seed:
# one seed, one sequence of choices; call it in this shell, not in $(...)).
RS=$SEED
rnd() {
	RS=$(((RS * 1103515245 + 12345) % 2147483648))
	_hi=$((RS / 65536))
	RS=$(((RS * 1103515245 + 12345) % 2147483648))
	R=$(((_hi * 32768 + RS / 65536) % $1))
}

cleanup() {
	[ -d "$T" ] && touch "$T/wstop" 2>/dev/null
	for p in $WP1 $WP2 $P1 $P2 $P3; do kill -9 "$p" 2>/dev/null; done
	for p in $C1 $C2 $C3 $CP; do kill -9 "$p" 2>/dev/null; done
	for m in $MOUNTS; do fusermount3 -u -z "$m" 2>/dev/null; done
	for m in $TMPFS; do umount -l "$m" 2>/dev/null; done
	for ns in $NSLIST; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	for l in $LINKS $BRS; do ip link del "$l" 2>/dev/null; done
	[ $KEEP = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
logs() {
	for n in 1 2 3; do
		[ -f "$PD/log$n" ] || continue
		echo "     -- node $n log (tail):"
		tail -n 8 "$PD/log$n" | sed 's/^/     | /'
	done
}
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1"; [ -f "$T/out" ] && sed 's/^/     | /' "$T/out" | head -20; logs; }
skip() { echo "skip $1"; }

# ---- the cluster --------------------------------------------------------
# Ports: a base drawn per cluster in 40000..59900 (other tests use 27xxx and
# 37xxx); clients BASE+1..3, node N's peer ports BASE+20N .. BASE+20N+16.
new_base() { BASE=$((40000 + 100 * ($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 200))); }
hostip() { if [ $NETNS = 1 ]; then echo "$NET.$1"; else echo 127.0.0.1; fi; }
addr() { echo "tcp://$(hostip "$1"):$((BASE + $1))"; }
on() { _h=$1; shift; "$STRATA" --host "$(addr "$_h")" "$@"; }
pid() { eval echo "\${P$1}"; }
datadir() {
	if [ $CUT = 1 ]; then echo "$PD/mnt$1/data"
	elif [ $DISK = 1 ]; then echo "$PD/tmp$1/data"
	else echo "$PD/data$1"; fi
}
# A small tmpfs per node for the disk-full nemesis (DISK=1).
tmpfs_up() {
	mkdir -p "$PD/tmp$1" && mount -t tmpfs -o size=${DISK_MB}m tmpfs "$PD/tmp$1" || return 1
	TMPFS="$TMPFS $PD/tmp$1"
}
DISK_MB=96
others() { for m in 1 2 3; do [ "$m" = "$1" ] || printf '%s ' "$m"; done; }

node_config() {
	{
		printf 'listen: ["%s"]\ndata_dir: "%s"\nfsync: %s\nlog_level: info\n' \
			"$(addr "$1")" "$(datadir "$1")" "$FSYNC"
		printf 'cluster:\n  node_id: %s\n  cluster_id: "%s"\n' "$1" "$CID"
		printf '  peer_listen: "tcp://%s:%s"\n  peers:\n' "$(hostip "$1")" $((BASE + 20 * $1))
		for m in 1 2 3; do
			[ "$m" = "$1" ] && continue
			printf '    - {id: %s, peer: "tcp://%s:%s", client: "%s"}\n' \
				"$m" "$(hostip "$m")" $((BASE + 20 * m)) "$(addr "$m")"
		done
		printf '  heartbeat: 50ms\n  election_timeout: 500ms\n  write_timeout: 2s\n'
		printf '  key_file: "%s"\n' "$T/cluster.key"
		printf 'auth_file: "%s"\n' "$T/tokens"
	} >"$PD/n$1.yaml"
}

# start N: stratad for node N; wait (15 s at most) until it answers ping.
start() {
	if [ $NETNS = 1 ]; then
		ip netns exec "$NSP$1" "$STRATAD" -c "$PD/n$1.yaml" >>"$PD/log$1" 2>&1 &
	else
		"$STRATAD" -c "$PD/n$1.yaml" >>"$PD/log$1" 2>&1 &
	fi
	eval "P$1=$!"
	dl=$(($(ms) + 15000))
	while ! on "$1" --timeout 1 ping >/dev/null 2>&1; do
		if [ "$(ms)" -gt $dl ] || ! kill -0 "$(pid "$1")" 2>/dev/null; then
			echo "stratad node $1 did not become ready:" >"$T/out"
			tail -n 20 "$PD/log$1" >>"$T/out"
			return 1
		fi
		sleep 0.05
	done
}
# start_bg N...: start several at once (each waits for its own ping).
start_many() {
	for n in "$@"; do
		if [ $NETNS = 1 ]; then
			ip netns exec "$NSP$n" "$STRATAD" -c "$PD/n$n.yaml" >>"$PD/log$n" 2>&1 &
		else
			"$STRATAD" -c "$PD/n$n.yaml" >>"$PD/log$n" 2>&1 &
		fi
		eval "P$n=$!"
	done
	dl=$(($(ms) + 15000))
	for n in "$@"; do
		while ! on "$n" --timeout 1 ping >/dev/null 2>&1; do
			if [ "$(ms)" -gt $dl ] || ! kill -0 "$(pid "$n")" 2>/dev/null; then
				echo "stratad node $n did not become ready:" >"$T/out"
				tail -n 20 "$PD/log$n" >>"$T/out"
				return 1
			fi
			sleep 0.05
		done
	done
}
# kill9 N: kill -9 (an empty pid would be kill 0: the whole group).
kill9() {
	p=$(pid "$1")
	[ -n "$p" ] || return 0
	kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; eval "P$1="
}
stop() {
	p=$(pid "$1")
	[ -n "$p" ] || return 0
	kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null
	dl=$(($(ms) + 10000))
	while kill -0 "$p" 2>/dev/null && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
	kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; eval "P$1="
}

status_field() { sed -n "s/^$1: *//p" "$2"; }
# wait_leader DEADLINE_MS NODES...: exactly one leader, the others followers,
# one epoch: sets LEADER and EPOCH.
wait_leader() {
	dl=$(($(ms) + $1))
	shift
	while :; do
		nl=0 nf=0 ep= same=1 LEADER= EPOCH=
		: >"$T/out"
		for n in "$@"; do
			on "$n" --timeout 1 status >"$T/st" 2>&1
			sed "s/^/node $n: /" "$T/st" >>"$T/out"
			r=$(status_field role "$T/st")
			e=$(status_field epoch "$T/st")
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
head_of() { on "$1" --timeout 1 status 2>/dev/null | sed -n 's/^chain head: *//p'; }
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
		sleep 0.1
	done
}

# wait_caught_up DEADLINE_MS NODES...: while writes go on, every node's chain
# head reaches the LSN the leader ($LEADER) had when this began (equal heads
# at one instant are checked once the writers stop). Sets HEAD.
wait_caught_up() {
	dl=$(($(ms) + $1))
	shift
	HEAD=$(head_of "$LEADER")
	want=$(echo "$HEAD" | awk '{print $2}')
	while :; do
		behind=0
		: >"$T/out"
		for n in "$@"; do
			h=$(head_of "$n")
			echo "node $n: chain head $h (the leader had LSN $want)" >>"$T/out"
			lsn=$(echo "$h" | awk '{print $2}')
			[ -n "$lsn" ] && [ -n "$want" ] && [ "$lsn" -ge "$want" ] 2>/dev/null || behind=1
		done
		[ $behind = 0 ] && return 0
		[ "$(ms)" -gt $dl ] && return 1
		sleep 0.1
	done
}

# ---- cutfs (the power-cut filesystem) ------------------------------------
cut_pid() { eval echo "\${C$1}"; }
cutfs_up() { # N: mount node N's cutfs (backing $PD/back$N on $PD/mnt$N)
	mkdir -p "$PD/back$1" "$PD/mnt$1"
	"$CUTFS" "$PD/back$1" "$PD/mnt$1" -f >>"$PD/cutfs$1.log" 2>&1 &
	eval "C$1=$!"
	case " $MOUNTS " in *" $PD/mnt$1 "*) ;; *) MOUNTS="$MOUNTS $PD/mnt$1" ;; esac
	dl=$(($(ms) + 10000))
	until mountpoint -q "$PD/mnt$1"; do
		if [ "$(ms)" -gt $dl ] || ! kill -0 "$(cut_pid "$1")" 2>/dev/null; then
			{ echo "cutfs for node $1 did not mount:"; tail -n 10 "$PD/cutfs$1.log"; } >"$T/out"
			return 1
		fi
		sleep 0.02
	done
}
cutfs_kill() { # N: SIGKILL node N's cutfs (its un-synced data is gone) and detach the mount
	p=$(cut_pid "$1")
	[ -n "$p" ] && { kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; }
	eval "C$1="
	fusermount3 -u -z "$PD/mnt$1" 2>/dev/null
}
cutfs_stop() { # N: a clean unmount (at the end of a phase)
	p=$(cut_pid "$1")
	fusermount3 -u -z "$PD/mnt$1" 2>/dev/null
	if [ -n "$p" ]; then
		dl=$(($(ms) + 5000))
		while kill -0 "$p" 2>/dev/null && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
		kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
	fi
	eval "C$1="
}

# ---- network namespaces (the partition nemesis) ---------------------------
netns_usable() {
	[ "$(id -u)" = 0 ] && ip netns list >/dev/null 2>&1 && command -v ip >/dev/null
}
netns_up() {
	TAG=$(($$ % 10000))
	NET="10.77.$(($(od -An -N1 -tu1 /dev/urandom | tr -d ' ') % 250 + 1))"
	NSP="sf$TAG-"
	BR="sfb$TAG"
	ip link add "$BR" type bridge 2>"$T/out" || return 1
	BRS="$BRS $BR"
	ip link set "$BR" up && ip addr add "$NET.100/24" dev "$BR" || return 1
	for n in 1 2 3; do
		ns="$NSP$n" veth="sfv$TAG$n"
		ip netns add "$ns" || return 1
		NSLIST="$NSLIST $ns"
		ip link add "$veth" type veth peer name eth0 netns "$ns" || return 1
		LINKS="$LINKS $veth"
		ip link set "$veth" master "$BR" && ip link set "$veth" up &&
			ip netns exec "$ns" ip addr add "$NET.$n/24" dev eth0 &&
			ip netns exec "$ns" ip link set eth0 up &&
			ip netns exec "$ns" ip link set lo up || return 1
	done
}
netns_down() {
	for ns in $NSLIST; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	for l in $LINKS $BRS; do ip link del "$l" 2>/dev/null; done
	NSLIST= LINKS= BRS=
}

# ---- phases: one cluster each ---------------------------------------------
# cluster_up NAME: a fresh cluster with the current CUT/NETNS/FSYNC in $T/NAME.
cluster_up() {
	PD=$T/$1
	mkdir -p "$PD/h"
	new_base
	CID=$(od -An -N16 -tx1 /dev/urandom | tr -d " \n")
	printf 'ops admin %s\n' "$CID" >"$T/tokens" && chmod 600 "$T/tokens"
	export STRATA_TOKEN="ops:$CID"
	for n in 1 2 3; do
		if [ $CUT = 1 ]; then cutfs_up "$n" || return 1; fi
		if [ $DISK = 1 ]; then tmpfs_up "$n" || return 1; fi
		node_config "$n"
	done
	start_many 1 2 3 || return 1
	wait_leader 15000 1 2 3 || return 1
	TBL= TBLN=-1
}
cluster_down() {
	for n in 1 2 3; do stop "$n"; done
	if [ $CUT = 1 ]; then for n in 1 2 3; do cutfs_stop "$n"; done; fi
	if [ $DISK = 1 ]; then for n in 1 2 3; do umount -l "$PD/tmp$n" 2>/dev/null; done; fi
	if [ $NETNS = 1 ]; then netns_down; fi
}

# ---- the workload ---------------------------------------------------------
# writer W RUN TABLE: one new id per attempt (never retried), one row per
# load, to a random node; the history in $PD/h/TABLE.RUN.wW:
#   invoke ID / ok ID / fail ID / unknown ID
# and the version an ok load made in $PD/h/TABLE.RUN.vW ("ID VERSION").
writer() {
	w=$1 run=$2 tbl=$3
	h=$PD/h/$tbl.$run.w$w
	r=$((SEED % 100000 * 31 + run * 7 + w))
	i=0
	: >"$h"
	while [ ! -e "$T/wstop" ]; do
		i=$((i + 1))
		id=$(((run * 10 + w) * 100000 + i))
		r=$(((r * 1103515245 + 12345) % 2147483648))
		n=$((r / 65536 % 3 + 1))
		echo "invoke $id" >>"$h"
		printf 'id,w\n%d,%d\n' "$id" "$w" | "$STRATA" --host "$(addr "$n")" --timeout 2 \
			load "$tbl" - --format csv --quiet --durability quorum >"$PD/wout$w" 2>&1
		st=$?
		if [ $st = 0 ]; then
			echo "ok $id" >>"$h"
			v=$(sed -n "s/^table '[^']*' version \([0-9]*\).*/\1/p" "$PD/wout$w")
			[ -n "$v" ] && echo "$id $v" >>"$PD/h/$tbl.$run.v$w"
		else
			# Definite: refused before anything was proposed ("not the
			# leader", the leader not heard from, HELLO unanswered, the
			# leader unreachable after a redirect, a node that stopped
			# replicating) or lost to another leader's committed entry ("was not applied").
			# Anything else (timeouts, "no quorum ... may still commit",
			# lost connections) may have committed: unknown.
			if grep -qE "was not applied|is stratad running there|cannot reach the leader|not the leader|no leader is known|knows no live leader|has not been heard from|stopped replicating: .*it serves nothing" "$PD/wout$w" &&
				! grep -qE "may still commit" "$PD/wout$w"; then
				echo "fail $id" >>"$h"
			else
				echo "unknown $id" >>"$h"
			fi
			{ printf '%s node %s exit %s at %s: ' "$id" "$n" "$st" "$(date -u +%H:%M:%S.%3N)"; tr '\n' ' ' <"$PD/wout$w"; echo; } >>"$PD/werr$w"
		fi
	done
}
acks() { cat "$PD/h/$TBL.$RUNNO".w* 2>/dev/null | grep -c '^ok'; }
writers_start() {
	rm -f "$T/wstop"
	writer 1 "$RUNNO" "$TBL" &
	WP1=$!
	writer 2 "$RUNNO" "$TBL" &
	WP2=$!
}
writers_stop() {
	touch "$T/wstop"
	[ -n "$WP1" ] && wait "$WP1" 2>/dev/null
	[ -n "$WP2" ] && wait "$WP2" 2>/dev/null
	WP1= WP2=
}
wait_acks() { # N DEADLINE_MS: N more acks in this run, or the deadline
	want=$(($(acks) + $1))
	dl=$(($(ms) + $2))
	while [ "$(acks)" -lt $want ] && [ "$(ms)" -lt $dl ]; do sleep 0.05; done
}

# ---- the checker ----------------------------------------------------------
ACKED_TOTAL=0 UNKNOWN_TOTAL=0 FAIL_TOTAL=0
# check_table LABEL: the whole history of table $TBL against every node.
# Sets LOST (ok ids missing or doubled on some node) and VIOL (other
# violations: a fail id present, an unknown id twice, an id never invoked,
# one version acknowledged to two loads).
check_table() {
	cat "$PD/h/$TBL".*.w[12] >"$PD/hist" 2>/dev/null
	awk -v d="$PD" '
		$1 == "invoke" { inv[$2] = 1 }
		$1 == "ok" { res[$2] = "ok" }
		$1 == "fail" { res[$2] = "fail" }
		$1 == "unknown" { res[$2] = "unknown" }
		END {
			for (i in inv) {
				print i > (d "/c.inv")
				r = (i in res) ? res[i] : "unknown"
				print i > (d "/c." r)
			}
		}' "$PD/hist"
	for k in inv ok fail unknown; do
		touch "$PD/c.$k"
		sort -o "$PD/c.$k" "$PD/c.$k"
	done
	: >"$PD/c.lost"
	: >"$T/out"
	VIOL=0
	for n in 1 2 3; do
		got=0
		for try in 1 2 3 4 5; do
			if on "$n" --timeout 10 scan "$TBL" --columns id --format csv >"$PD/scan$n" 2>"$PD/scanerr$n"; then
				got=1
				break
			fi
			sleep 0.5
		done
		if [ $got = 0 ]; then
			echo "node $n: scan failed: $(head -c 300 "$PD/scanerr$n")" >>"$T/out"
			VIOL=$((VIOL + 1))
			: >"$PD/scan$n"
		fi
		tail -n +2 "$PD/scan$n" | sort >"$PD/ids$n"
		uniq -d "$PD/ids$n" >"$PD/dups$n"
		sort -u "$PD/ids$n" >"$PD/set$n"
		comm -23 "$PD/c.ok" "$PD/set$n" >"$PD/miss$n"
		comm -12 "$PD/c.ok" "$PD/dups$n" >"$PD/okdup$n"
		comm -12 "$PD/c.fail" "$PD/set$n" >"$PD/failp$n"
		comm -12 "$PD/c.unknown" "$PD/dups$n" >"$PD/unkdup$n"
		comm -23 "$PD/set$n" "$PD/c.inv" >"$PD/phantom$n"
		cat "$PD/miss$n" "$PD/okdup$n" >>"$PD/c.lost"
		for k in miss okdup failp unkdup phantom; do
			if [ -s "$PD/$k$n" ]; then
				echo "node $n: $k: $(wc -l <"$PD/$k$n") ids, e.g. $(head -n 5 "$PD/$k$n" | tr '\n' ' ')" >>"$T/out"
				case $k in failp | unkdup | phantom) VIOL=$((VIOL + 1)) ;; esac
			fi
		done
	done
	# Two acknowledged loads that report the same table version: one of
	# them was told of a commit that is not its own.
	cat "$PD/h/$TBL".*.v[12] 2>/dev/null | awk '{print $2}' | sort -n | uniq -d >"$PD/vdup"
	if [ -s "$PD/vdup" ]; then
		echo "versions acknowledged to two loads: $(wc -l <"$PD/vdup"), e.g. $(head -n 3 "$PD/vdup" | tr '\n' ' ')" >>"$T/out"
		VIOL=$((VIOL + 1))
	fi
	LOST=$(sort -u "$PD/c.lost" | wc -l)
	NOK=$(wc -l <"$PD/c.ok") NFAIL=$(wc -l <"$PD/c.fail") NUNK=$(wc -l <"$PD/c.unknown")
	if [ "${EXPECT_LOSS:-0}" = 1 ]; then
		ok "$1: table $TBL (negative control: fsync off, all cut): $LOST ok ids lost or doubled, $VIOL other findings"
	elif [ "$LOST" = 0 ] && [ $VIOL = 0 ]; then
		ok "$1: table $TBL: $NOK ok ids once on all 3 nodes; $NFAIL fail ids absent; $NUNK unknown at most once; no id never invoked"
	else
		for id in $(sort -u "$PD/c.lost" | head -n 3); do
			echo "history of $id: $(grep -h " $id\$" "$PD/hist" | tr '\n' ' ')" >>"$T/out"
			grep -h "^$id " "$PD"/werr[12] 2>/dev/null | head -n 2 >>"$T/out"
		done
		bad "$1: table $TBL: $LOST ok ids lost or doubled, $VIOL other violations (seed $SEED)"
	fi
}
# check_version LABEL: a read at a version of this run that every node has
# (acknowledged, and the chain heads are equal) is byte-identical everywhere.
check_version() {
	V=$(cat "$PD/h/$TBL.$RUNNO".v* 2>/dev/null | awk '{print $2}' | sort -n | head -n 1)
	[ -n "$V" ] || return 0
	same=1
	: >"$T/out"
	for n in 1 2 3; do
		on "$n" --timeout 10 scan "$TBL" --version "$V" --format csv >"$PD/vscan$n" 2>>"$T/out" || same=0
	done
	cmp "$PD/vscan1" "$PD/vscan2" >>"$T/out" 2>&1 && cmp "$PD/vscan1" "$PD/vscan3" >>"$T/out" 2>&1 || same=0
	[ $same = 1 ] && ok "$1: scan $TBL --version $V byte-identical on all 3 ($(($(wc -l <"$PD/vscan1") - 1)) rows)" ||
		bad "$1: scan $TBL --version $V byte-identical on all 3"
}

# heal LABEL: every node running (a node that died by itself is a FAIL and is
# restarted), one leader, every node caught up to the leader (writes go on).
heal() {
	for n in 1 2 3; do
		p=$(pid "$n")
		if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then
			if [ -n "$p" ]; then
				wait "$p" 2>/dev/null
				echo "node $n (pid $p) exited by itself" >"$T/out"
				bad "$1: node $n is still running"
			fi
			eval "P$n="
			if [ $CUT = 1 ] && ! mountpoint -q "$PD/mnt$n"; then cutfs_up "$n"; fi
			start "$n" || bad "$1: restart node $n"
		fi
	done
	if wait_leader 20000 1 2 3; then
		if wait_caught_up 20000 1 2 3; then
			ok "$1: healed: node $LEADER leads epoch $EPOCH, every node caught up to its LSN ($HEAD)"
			return 0
		fi
		bad "$1: healed: every node caught up to the leader"
		return 1
	fi
	bad "$1: healed: one leader"
	return 1
}

# ---- nemeses --------------------------------------------------------------
FAILOVERS=
nem_kill_leader() {
	wait_leader 10000 1 2 3 || { bad "$1: a leader before the kill"; return; }
	L=$LEADER E0=$EPOCH
	kill9 "$L"
	t0=$(ms)
	nl=
	while [ -z "$nl" ] && [ $(($(ms) - t0)) -lt 15000 ]; do
		for n in $(others "$L"); do
			on "$n" --timeout 1 status >"$T/st" 2>&1
			if [ "$(status_field role "$T/st")" = leader ] && [ "$(status_field epoch "$T/st")" -gt "$E0" ] 2>/dev/null; then
				nl=$n
			fi
		done
		[ -n "$nl" ] || sleep 0.02
	done
	if [ -n "$nl" ]; then
		el=$(($(ms) - t0))
		FAILOVERS="$FAILOVERS $el"
		ok "$1: kill -9 leader $L: node $nl leads after $el ms"
	else
		bad "$1: kill -9 leader $L: a new leader within 15 s"
	fi
	wait_acks 5 3000
	start "$L" || bad "$1: restart node $L"
}
nem_kill_random() {
	rnd 3
	n=$((R + 1))
	kill9 "$n"
	rnd 801
	echo "     ($1: kill -9 node $n, restarted after $((200 + R)) ms)"
	msleep $((200 + R))
	start "$n" || bad "$1: restart node $n"
}
nem_kill_all() {
	kill9 1; kill9 2; kill9 3
	start_many 1 2 3 || bad "$1: restart all three"
	wait_leader 20000 1 2 3 || bad "$1: a leader after kill -9 of all three"
}
# diskfull: fill the tmpfs of the leader (half the runs) or of a follower
# until ENOSPC, let the writers run 2 s against it (a full follower stops
# replicating, role failed; a full leader fails its writes and is deposed),
# free the space, restart the node (REPLICATION.md §9: it serves again after
# space is freed and it is restarted).
# pick_node: n = the leader (half the runs) or a random node; what = which.
pick_node() {
	rnd 2
	if [ $R = 0 ] && wait_leader 5000 1 2 3; then n=$LEADER what=leader; else rnd 3; n=$((R + 1)) what=node; fi
}
nem_diskfull() {
	pick_node
	dd if=/dev/zero of="$PD/tmp$n/filler" bs=1M >/dev/null 2>&1
	msleep 2000
	r=$(on "$n" --timeout 1 status 2>/dev/null | sed -n 's/^role: *//p')
	rm -f "$PD/tmp$n/filler"
	kill9 "$n"
	start "$n" || bad "$1: restart node $n after the disk was freed"
	echo "     ($1: $what $n's disk filled for 2 s (its role then: ${r:-no answer}), freed, restarted)"
}
nem_pause() {
	pick_node
	p=$(pid "$n")
	kill -STOP "$p"
	msleep 750
	kill -CONT "$p"
	echo "     ($1: SIGSTOP $what $n for 750 ms)"
}
FLIPS_INJECTED=0 FLIPS_REPAIRED=0
repaired_of() { # N: node N's repaired counter from cluster status
	on "$1" --timeout 3 cluster status --format jsonl 2>/dev/null |
		sed -n "s/^{\"id\":$1,.*\"repaired\":\([0-9]*\),\"repairs_pending\":\([0-9]*\)}$/\1 \2/p"
}
nem_flip() {
	[ -f "$T/g.csv" ] || "$B/bench-gencsv" --rows 60000 --out "$T/g.csv" >/dev/null
	wait_leader 10000 1 2 3 || { bad "$1: a leader before the flip"; return; }
	L=$LEADER
	if [ ! -e "$PD/g.created" ]; then
		on "$L" --timeout 10 create g --schema "id int64 not null, ts timestamp, sensor string, value float64" >"$T/out" 2>&1 &&
			touch "$PD/g.created" || { bad "$1: create g"; return; }
	fi
	(cd "$(datadir "$L")" && find tables -name '*.seg' | sort) >"$PD/segs.before"
	on "$L" --timeout 30 load g "$T/g.csv" --quiet --mode overwrite >"$T/out" 2>&1 || { bad "$1: load 60000 rows into g"; return; }
	LEADER=$L
	wait_caught_up 20000 1 2 3 || { bad "$1: every node has the load into g"; return; }
	(cd "$(datadir "$L")" && find tables -name '*.seg' | sort) >"$PD/segs.after"
	SEG=$(comm -13 "$PD/segs.before" "$PD/segs.after" | head -n 1)
	[ -n "$SEG" ] || { echo "no new segment file" >"$T/out"; bad "$1: the load wrote a segment file"; return; }
	set -- "$1" $(others "$L")
	rnd 2
	if [ $R = 0 ]; then F=$2; else F=$3; fi
	FILE=$(datadir "$F")/$SEG
	[ -f "$FILE" ] || { echo "no $FILE" >"$T/out"; bad "$1: follower $F holds $SEG"; return; }
	before=$(repaired_of "$F" | cut -d' ' -f1)
	size=$(wc -c <"$FILE")
	rnd "$size"
	off=$R
	v=$(od -An -tu1 -j "$off" -N1 "$FILE" | tr -d ' ')
	nv=$(((v ^ (1 << (off % 8))) & 255))
	printf "\\$(printf %o "$nv")" | dd of="$FILE" bs=1 seek="$off" conv=notrunc 2>/dev/null
	FLIPS_INJECTED=$((FLIPS_INJECTED + 1))
	if cmp -s "$(datadir "$L")/$SEG" "$FILE"; then bad "$1: the flip changed node $F's copy"; return; fi
	on "$F" --timeout 30 scrub g --wait --rate 0 >"$T/out" 2>&1
	dl=$(($(ms) + 20000))
	done=0
	while [ "$(ms)" -lt $dl ]; do
		rp=$(repaired_of "$F")
		if [ -n "$rp" ] && [ "${rp% *}" -gt "${before:-0}" ] && [ "${rp#* }" = 0 ] &&
			cmp -s "$(datadir "$L")/$SEG" "$FILE"; then
			done=1
			break
		fi
		sleep 0.1
	done
	if [ $done = 1 ]; then
		FLIPS_REPAIRED=$((FLIPS_REPAIRED + 1))
		ok "$1: bit $((off % 8)) of byte $off of $SEG flipped at follower $F: found and repaired from a peer (repaired ${before:-0} -> ${rp% *})"
	else
		echo "cluster status at $F: $(repaired_of "$F")" >>"$T/out"
		bad "$1: flipped byte $off of $SEG at follower $F repaired"
	fi
	# Keep g's old files from piling up over a long campaign.
	[ $((FLIPS_INJECTED % 10)) = 0 ] && on "$L" --timeout 30 vacuum g --retain 0s --force >/dev/null 2>&1
}
PC_ROT=0
# powercut N...: node N's stratad and cutfs killed at once (its un-synced
# data gone), the mount detached and remounted on the same backing dir.
powercut() {
	for n in "$@"; do kill9 "$n"; done
	for n in "$@"; do cutfs_kill "$n"; done
	for n in "$@"; do cutfs_up "$n" || { bad "power cut: remount node $n"; return 1; }; done
	start_many "$@" || { bad "power cut: restart node(s) $*"; return 1; }
}
nem_powercut() {
	k=$((PC_ROT % 3 + 1))
	PC_ROT=$((PC_ROT + 1))
	rnd 3
	a=$((R + 1))
	case $k in
	1) set -- "$1" $a ;;
	2) set -- "$1" $a $((a % 3 + 1)) ;;
	3) set -- "$1" 1 2 3 ;;
	esac
	l=$1
	shift
	echo "     ($l: power cut of node(s) $*)"
	powercut "$@"
}
# eio: I/O errors (cutfs's SIGUSR2 mode: writes fail with EIO or short in
# turn, fsync fails and drops the dirty data) on the leader (half the runs)
# or a random node for 2 s while the writers run. The node's store fails
# stop, its replication driver stops (role failed), a leader is replaced;
# then the errors end and the node is restarted: it recovers from what it
# had synced and catches up (REPLICATION.md §9).
nem_eio() {
	pick_node
	c=$(cut_pid "$n")
	kill -USR2 "$c"
	msleep 2000
	r=$(on "$n" --timeout 1 status 2>/dev/null | sed -n 's/^role: *//p')
	kill -USR2 "$c"
	kill9 "$n"
	start "$n" || bad "$1: restart node $n after the I/O errors"
	echo "     ($1: I/O errors on $what $n for 2 s (its role then: ${r:-no answer}), off, restarted)"
}
nem_control() {
	wait_acks 20 10000
	powercut 1 2 3
}
nem_partition() {
	wait_leader 10000 1 2 3 || { bad "$1: a leader before the partition"; return; }
	rnd 2
	if [ $R = 0 ]; then n=$LEADER what=leader; else set -- "$1" $(others "$LEADER"); rnd 2; [ $R = 0 ] && n=$2 || n=$3; what=follower; fi
	ip link set "sfv$TAG$n" down
	echo "     ($1: $what $n isolated for 2 s)"
	msleep 2000
	ip link set "sfv$TAG$n" up
}

# ---- runs -----------------------------------------------------------------
RUNNO=0
for k in kill_leader kill_random kill_all pause flip powercut eio partition diskfull control; do
	eval "RUNS_$k=0 LOST_$k=0"
done
# use_table: a new table every 50 runs keeps each check's scan small.
use_table() {
	want=$(((RUNNO - 1) / 50))
	[ "$want" = "$TBLN" ] && return 0
	TBLN=$want
	if [ "$want" = 0 ]; then TBL=f; else TBL=f$want; fi
	for try in 1 2 3 4 5; do
		wait_leader 10000 1 2 3
		on "${LEADER:-1}" --timeout 10 create "$TBL" --schema "id int64 not null, w int64" >"$T/out" 2>&1 && return 0
		on 1 --timeout 5 tables 2>/dev/null | grep -qw "$TBL" && return 0
		sleep 0.5
	done
	bad "create table $TBL"
	return 1
}
# one_run NEMESIS: workload on, the nemesis, heal, workload off, check.
one_run() {
	RUNNO=$((RUNNO + 1))
	label="run $RUNNO $1"
	EXPECT_LOSS=0
	[ "$1" = control ] && EXPECT_LOSS=1
	use_table || return
	writers_start
	wait_acks 10 5000
	"nem_$1" "$label"
	heal "$label"
	wait_acks 5 4000
	writers_stop
	wait_heads 20000 1 2 3 || bad "$label: chain heads equal after the writes"
	check_table "$label"
	[ $EXPECT_LOSS = 1 ] || check_version "$label"
	eval "RUNS_$1=\$((RUNS_$1 + 1)) LOST_$1=\$((LOST_$1 + LOST))"
	if [ "$1" = control ] && [ "$LOST" -gt 0 ]; then CONTROL_DETECTED=1; fi
	n_ok=$(cat "$PD/h/$TBL.$RUNNO".w* | grep -c '^ok')
	n_unk=$(cat "$PD/h/$TBL.$RUNNO".w* | grep -c '^unknown')
	n_fail=$(cat "$PD/h/$TBL.$RUNNO".w* | grep -c '^fail')
	ACKED_TOTAL=$((ACKED_TOTAL + n_ok)) UNKNOWN_TOTAL=$((UNKNOWN_TOTAL + n_unk)) FAIL_TOTAL=$((FAIL_TOTAL + n_fail))
	echo "     ($label: $n_ok ok, $n_fail fail, $n_unk unknown writes)"
}
# The leaders of each epoch in one cluster's logs (each phase is its own
# cluster, with its own epochs).
MAXLEAD=0
epoch_check() {
	for n in 1 2 3; do
		[ -f "$PD/log$n" ] && sed -n "s/.*replication: leader in epoch \([0-9]*\)$/\1 $n/p" "$PD/log$n"
	done | sort -u >"$PD/leaders"
	m=$(cut -d' ' -f1 "$PD/leaders" | sort | uniq -c | awk 'BEGIN{m=0} $1>m{m=$1} END{print m}')
	twice=$(cut -d' ' -f1 "$PD/leaders" | uniq -d | head -n 3 | tr '\n' ' ')
	if [ "$1" = control ]; then
		# fsync off loses the persisted epoch and vote with the data: the
		# restarted nodes start again from epoch 0, so an epoch led twice
		# is expected here (and shows the epoch check can see one).
		ok "$1: leaders per epoch in the logs at most $m (expected with fsync off: epochs led twice: ${twice:-none})"
		return 0
	fi
	[ "$m" -gt $MAXLEAD ] && MAXLEAD=$m
	if [ "$m" -le 1 ]; then
		ok "$1: at most one leader per epoch in the logs ($(wc -l <"$PD/leaders") epochs led)"
	else
		grep -E "^($(echo "$twice" | sed 's/ *$//; s/ /|/g')) " "$PD/leaders" >"$T/out"
		bad "$1: epochs led by two nodes: $twice(seed $SEED)"
	fi
}
# phase NAME NEMESIS...: a cluster for NAME, the runs, the epoch check, down.
phase() {
	name=$1
	shift
	if ! cluster_up "$name"; then
		bad "$name: a 3-node cluster comes up"
		cluster_down
		return 1
	fi
	ok "$name: a 3-node cluster (ports $BASE+, fsync $FSYNC$([ $CUT = 1 ] && echo ', data on cutfs')$([ $NETNS = 1 ] && echo ', in network namespaces')$([ $DISK = 1 ] && echo ", data on ${DISK_MB} MB tmpfs")): node $LEADER leads"
	for nem in "$@"; do
		if [ "$nem" = control ] && [ "${CONTROL_DETECTED:-0}" = 1 ]; then continue; fi
		one_run "$nem"
	done
	epoch_check "$name"
	cluster_down
}
# mixed COUNT NEMESIS...: COUNT runs, each of a nemesis drawn at random.
mixed_list() {
	cnt=$1
	shift
	MIX=
	i=0
	while [ $i -lt "$cnt" ]; do
		rnd $#
		j=0
		for x in "$@"; do [ $j = $R ] && MIX="$MIX $x"; j=$((j + 1)); done
		i=$((i + 1))
	done
}
repeat() { _n=$1 _x=$2; _o=; while [ "$_n" -gt 0 ]; do _o="$_o $_x"; _n=$((_n - 1)); done; echo "$_o"; }

head -c 32 /dev/urandom >"$T/cluster.key" && chmod 600 "$T/cluster.key"
echo "     (seed $SEED, mode $MODE, build $B)"

have_cutfs=0
[ -x "$CUTFS" ] && [ -e /dev/fuse ] && command -v fusermount3 >/dev/null && have_cutfs=1
# A mount that cannot be made here (no FUSE rights in a container) is a skip too.
if [ $have_cutfs = 1 ]; then
	mkdir -p "$T/probe/b" "$T/probe/m"
	MOUNTS="$MOUNTS $T/probe/m"
	"$CUTFS" "$T/probe/b" "$T/probe/m" -f >"$T/probe/log" 2>&1 &
	CP=$!
	dl=$(($(ms) + 5000))
	until mountpoint -q "$T/probe/m" || [ "$(ms)" -gt $dl ] || ! kill -0 $CP 2>/dev/null; do sleep 0.02; done
	if ! mountpoint -q "$T/probe/m"; then
		have_cutfs=0
		echo "     (cutfs cannot mount here: $(head -c 200 "$T/probe/log" | tr "\n" " "))"
	fi
	fusermount3 -u -z "$T/probe/m" 2>/dev/null
	kill -9 $CP 2>/dev/null
	wait $CP 2>/dev/null
	CP=
fi
CONTROL_DETECTED=0
CONTROL_RAN=0
case $MODE in
short) N=1 ;;
*) N=$RUNS ;;
esac

if [ -n "$NEMS" ]; then
	# Mixed: one cluster with what the drawn nemeses need; control apart.
	plain= want_cut=0 want_ns=0 want_ctl=0 want_disk=0
	for x in $NEMS; do
		case $x in
		powercut | eio) want_cut=1; plain="$plain $x" ;;
		partition) want_ns=1; plain="$plain $x" ;;
		diskfull) want_disk=1; plain="$plain $x" ;;
		control) want_ctl=1 ;;
		*) plain="$plain $x" ;;
		esac
	done
	if [ $want_cut = 1 ] && [ $have_cutfs = 0 ]; then
		skip "powercut, eio: no cutfs ($CUTFS)"
		plain=$(echo "$plain" | tr ' ' '\n' | grep -v -e '^powercut$' -e '^eio$' | tr '\n' ' ')
		want_cut=0
	fi
	if [ $want_ns = 1 ] && ! netns_usable; then
		skip "partition: ip netns is not usable here (needs root)"
		plain=$(echo "$plain" | tr ' ' '\n' | grep -v '^partition$' | tr '\n' ' ')
		want_ns=0
	fi
	if [ -n "$(echo $plain)" ]; then
		mixed_list "$N" $plain
		if [ $want_disk = 1 ] && [ $want_cut = 1 ]; then
			skip "diskfull: not with powercut in one mixed cluster (cutfs or tmpfs): run it alone"
			MIX=$(echo "$MIX" | tr ' ' '\n' | grep -v '^diskfull$' | tr '\n' ' ')
			want_disk=0
		fi
		CUT=$want_cut NETNS=$want_ns DISK=$want_disk FSYNC=on
		if [ $NETNS = 1 ] && ! netns_up; then bad "network namespaces"; NETNS=0; netns_down; fi
		phase mixed $MIX
		CUT=0 NETNS=0 DISK=0
	fi
	if [ $want_ctl = 1 ]; then
		if [ $have_cutfs = 1 ]; then
			CUT=1 FSYNC=off CONTROL_RAN=1
			phase control $(repeat 3 control)
			CUT=0 FSYNC=on
		else
			skip "control: no cutfs ($CUTFS): the negative control cannot run"
		fi
	fi
else
	if [ $MODE = short ]; then
		CUT=0 NETNS=0 FSYNC=on
		phase kills kill_leader kill_leader kill_leader kill_all pause flip
	else
		CUT=0 NETNS=0 FSYNC=on
		phase kills $(repeat "$N" kill_leader) $(repeat "$N" kill_random) $(repeat "$N" kill_all) \
			$(repeat "$N" pause) $(repeat "$N" flip)
	fi
	if [ $have_cutfs = 1 ]; then
		CUT=1 FSYNC=on
		if [ $MODE = short ]; then phase powercut powercut powercut; else phase powercut $(repeat "$N" powercut); fi
		if [ $MODE = short ]; then phase eio eio eio; else phase eio $(repeat "$N" eio); fi
		CUT=1 FSYNC=off CONTROL_RAN=1
		phase control $(repeat 3 control)
		CUT=0 FSYNC=on
	else
		skip "powercut, eio: no cutfs ($CUTFS)"
		skip "control: no cutfs ($CUTFS): the negative control cannot run"
	fi
	CUT=0 NETNS=0 DISK=1 FSYNC=on
	if [ $MODE = short ]; then phase diskfull diskfull; else phase diskfull $(repeat "$N" diskfull); fi
	DISK=0
	if netns_usable; then
		CUT=0 NETNS=1 FSYNC=on
		if netns_up; then
			phase partition $(repeat "$N" partition)
		else
			bad "partition: network namespaces"
			netns_down
		fi
		NETNS=0
	else
		skip "partition: ip netns is not usable here (needs root)"
	fi
fi

if [ $CONTROL_RAN = 1 ]; then
	if [ $CONTROL_DETECTED = 1 ]; then
		ok "negative control: with fsync off and all three cut, the checker saw acknowledged writes lost"
	else
		bad "negative control: with fsync off and all three cut, the checker saw no loss ($RUNS_control runs)"
	fi
fi
# The control's losses are expected: not counted against the cluster.
[ $RUNS_kill_leader -gt 0 ] || [ $RUNS_kill_all -gt 0 ] || [ $RUNS_pause -gt 0 ] || [ $RUNS_powercut -gt 0 ] ||
	[ $RUNS_kill_random -gt 0 ] || [ $RUNS_partition -gt 0 ] || [ $RUNS_flip -gt 0 ] ||
	[ $RUNS_diskfull -gt 0 ] || [ $RUNS_eio -gt 0 ]
[ $FLIPS_REPAIRED -ge $FLIPS_INJECTED ] || bad "every flipped byte repaired ($FLIPS_REPAIRED of $FLIPS_INJECTED)"
for k in kill_leader kill_random kill_all pause flip powercut eio partition diskfull; do
	eval "l=\$LOST_$k"
	[ "$l" = 0 ] || bad "$k: $l acknowledged writes lost or doubled"
done
[ $MAXLEAD -le 1 ] || bad "max leaders per epoch $MAXLEAD"

P99=0
if [ -n "$FAILOVERS" ]; then
	P99=$(echo $FAILOVERS | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END{i=int(NR*0.99); if (i<NR*0.99) i++; if (i<1) i=1; print a[i]}')
fi
fig() { printf '{"bench":"fault","metric":"%s","value":%s}\n' "$1" "$2"; }
fig kill_leader_runs "$RUNS_kill_leader"
fig kill_leader_acked_lost "$LOST_kill_leader"
fig kill_random_runs "$RUNS_kill_random"
fig kill_random_acked_lost "$LOST_kill_random"
fig diskfull_runs "$RUNS_diskfull"
fig diskfull_acked_lost "$LOST_diskfull"
fig kill_all_runs "$RUNS_kill_all"
fig kill_all_acked_lost "$LOST_kill_all"
fig partition_runs "$RUNS_partition"
fig partition_acked_lost "$LOST_partition"
fig powercut_runs "$RUNS_powercut"
fig powercut_acked_lost "$LOST_powercut"
fig eio_runs "$RUNS_eio"
fig eio_acked_lost "$LOST_eio"
fig pause_runs "$RUNS_pause"
fig pause_acked_lost "$LOST_pause"
fig flip_runs "$RUNS_flip"
fig max_leaders_per_epoch "$MAXLEAD"
fig flips_injected "$FLIPS_INJECTED"
fig flips_repaired "$FLIPS_REPAIRED"
fig negative_control_detected "$CONTROL_DETECTED"
fig control_runs "$RUNS_control"
fig control_acked_lost "$LOST_control"
fig failover_p99_ms "$P99"
fig acked_total "$ACKED_TOTAL"
fig unknown_total "$UNKNOWN_TOTAL"
fig fail_total "$FAIL_TOTAL"
WALL=$(($(ms) - T_START))
fig wall_ms "$WALL"
[ $CONTROL_DETECTED = 1 ] && echo "negative_control_detected 1"
echo "     (wall time $((WALL / 1000)).$(printf %03d $((WALL % 1000))) s, seed $SEED)"
[ $KEEP = 1 ] && echo "     (kept $T)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
