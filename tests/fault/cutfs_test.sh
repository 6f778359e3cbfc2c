#!/bin/sh
# tests/fault/cutfs_test.sh — the power-cut filesystem (tests/fault/cutfs.c)
# against its spec.
#
#   sh tests/fault/cutfs_test.sh BUILD/tests/cutfs
#
# Mounts cutfs on a temp directory (backing $T/back, mount $T/mnt; its
# stderr in $T/log) and cuts the power: kill -9 cutfs, fusermount3 -u -z,
# start it again on the same backing directory. Covers un-synced writes
# (visible, not in the backing dir, lost by the cut), fsync'd and O_DSYNC
# data (kept byte for byte), an un-synced overwrite and append of a synced
# file (undone), rename/unlink (durable at once), an overlay following a
# rename and shared by a hard link, RENAME_EXCHANGE/NOREPLACE, truncate
# (shrink, grow, of dirty data), a sparse write's hole, mmap reads of un-synced pwrite data, LMDB with
# default flags (every printed commit survives a kill -9 and the cut) and
# with MDB_NOSYNC|MDB_NOMETASYNC (the negative control: commits are lost),
# clean unmount (drops un-synced data; --flush-on-exit keeps it), the
# SIGUSR1 report, two concurrent writers, random ops against a model, metadata pass-through (readdir,
# symlink, chmod, utimens, rmdir, statfs) before and after a cut, the I/O-error mode (SIGUSR2: EIO,
# short writes, a failed fsync dropping the data) and stratad under it (fail-stop, nothing acked lost). The
# helpers (mmap, renameat2, model, LMDB) are C written into $T and built with cc. Needs root, /dev/fuse, fusermount3,
# liblmdb-dev. Closes with "N passed, N failed".
set -u
BIN=${1:?usage: cutfs_test.sh CUTFS_BINARY}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
T=$(mktemp -d /tmp/strata-cutfs.XXXXXX)
BK=$T/back
MNT=$T/mnt
PASS=0
FAIL=0
CPID= HPID= W1= W2=
mkdir "$BK" "$MNT"

cleanup() {
	for p in $HPID $W1 $W2 $CPID; do kill -9 "$p" 2>/dev/null; done
	fusermount3 -u -z "$MNT" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() {
	FAIL=$((FAIL + 1))
	echo "FAIL $1"
	[ -s "$T/out" ] && sed 's/^/     | /' "$T/out" | head -20
	[ -s "$T/log" ] && { echo "     -- cutfs log (tail):"; tail -n 8 "$T/log" | sed 's/^/     | /'; }
}
# check NAME CMD...: ok when CMD succeeds.
check() { _n=$1; shift; if "$@" >"$T/out" 2>&1; then ok "$_n"; else bad "$_n"; fi; }

mounted() { grep -q " $MNT fuse" /proc/mounts; }
# waitfor CMD...: polls CMD for up to 10 s.
waitfor() {
	_i=0
	while ! "$@" 2>/dev/null; do
		_i=$((_i + 1))
		[ "$_i" -gt 100 ] && return 1
		sleep 0.1
	done
}
# up [OPTS...]: cutfs on $BK at $MNT, in the background.
up() {
	"$BIN" "$BK" "$MNT" -f "$@" 2>>"$T/log" &
	CPID=$!
	waitfor mounted && return
	echo "cutfs did not mount" >"$T/out"
	bad "mount"
	echo "$PASS passed, $FAIL failed"
	exit 1
}
# power_cut: kill -9 cutfs, detach the dead mount, start cutfs again.
power_cut() {
	kill -9 "$CPID"
	wait "$CPID" 2>/dev/null
	CPID=
	fusermount3 -u -z "$MNT"
	up "$@"
}
# is FILE TEXT: FILE holds exactly TEXT.
is() { [ "$(cat "$1")" = "$2" ]; }
# last_commit FILE: N of the last complete "committed N" line.
last_commit() { sed -n 's/^committed \([0-9]*\)$/\1/p' "$1" | tail -n 1; }
# has_line FILE LINE: FILE has LINE (else FILE is printed).
has_line() { grep -qx "$2" "$1" || { cat "$1"; return 1; }; }
# report: a SIGUSR1 report, the line cutfs printed for it (up to 5 s).
report() {
	_n=$(grep -c '^cutfs: ' "$T/log")
	kill -USR1 "$CPID"
	_j=0
	while [ "$(grep -c '^cutfs: ' "$T/log")" -le "$_n" ]; do
		_j=$((_j + 1))
		[ "$_j" -gt 50 ] && return 1
		sleep 0.1
	done
	grep '^cutfs: ' "$T/log" | tail -n 1
}
# report_is LINE: the report is LINE (asked for again for up to 10 s: a
# release reaches cutfs after close(2) returns).
report_is() { [ "$(report)" = "$1" ]; }
committed_at_least() { _c=$(last_commit "$1"); [ -n "$_c" ] && [ "$_c" -ge "$2" ]; }

# ---- helpers ----
cat >"$T/mm.c" <<'EOF'
/* mm FILE: pwrite three pages and a bit, read them through a shared
 * read-only map, pwrite again while mapped, see it in the map. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	enum { LEN = 3 * 4096 + 100 };
	static char buf[LEN];
	for (int i = 0; i < LEN; i++)
		buf[i] = (char)(i * 7 + 3);
	int fd = argc == 2 ? open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644) : -1;
	if (fd < 0 || pwrite(fd, buf, LEN, 0) != LEN)
		return perror("open/pwrite"), 1;
	const char *m = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return perror("mmap"), 1;
	if (memcmp(m, buf, LEN) != 0)
		return fprintf(stderr, "map differs from the pwrite data\n"), 1;
	if (pwrite(fd, "ZZZZZZZZZZ", 10, 5000) != 10)
		return perror("pwrite"), 1;
	if (memcmp(m + 5000, "ZZZZZZZZZZ", 10) != 0)
		return fprintf(stderr, "map misses the second pwrite\n"), 1;
	puts("mmap ok");
	return 0;
}
EOF
cat >"$T/rx.c" <<'EOF'
/* rx x|n A B: renameat2(A, B, RENAME_EXCHANGE or RENAME_NOREPLACE); on a
 * failure prints strerror. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	unsigned flags = argv[1][0] == 'x' ? RENAME_EXCHANGE : RENAME_NOREPLACE;
	if (renameat2(AT_FDCWD, argv[2], AT_FDCWD, argv[3], flags) != 0)
		return printf("%s\n", strerror(errno)), 1;
	return 0;
}
EOF
cat >"$T/fz.c" <<'EOF'
/* fz FILE LIVE DURABLE SEED OPS: random pwrite/ftruncate/fsync on FILE (in
 * the mount), the same on the local LIVE model; truncates also on DURABLE,
 * and DURABLE := LIVE at an fsync. Every op is followed by a read of a
 * random range and sometimes of the whole file, compared with LIVE. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
enum { MAX = 70000 };
static char a[MAX + 20000], b[MAX + 20000];
static int same(int f, int l, off_t off, size_t len)
{
	ssize_t x = pread(f, a, len, off), y = pread(l, b, len, off);
	return x == y && x >= 0 && memcmp(a, b, (size_t)x) == 0;
}
static off_t size_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? st.st_size : -1;
}
int main(int argc, char **argv)
{
	if (argc != 6)
		return 2;
	int f = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	int l = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0644);
	int d = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || l < 0 || d < 0)
		return perror("open"), 1;
	srand((unsigned)atoi(argv[4]));
	for (int i = 0, n = atoi(argv[5]); i < n; i++) {
		int op = rand() % 20;
		off_t off = rand() % MAX;
		size_t len = 1 + (size_t)(rand() % (rand() % 4 ? 300 : 20000));
		if (op < 14) {
			for (size_t k = 0; k < len; k++)
				a[k] = (char)rand();
			if (pwrite(f, a, len, off) != (ssize_t)len || pwrite(l, a, len, off) != (ssize_t)len)
				return fprintf(stderr, "op %d: pwrite\n", i), 1;
		} else if (op < 17) {
			if (ftruncate(f, off) || ftruncate(l, off) || ftruncate(d, off))
				return fprintf(stderr, "op %d: ftruncate\n", i), 1;
		} else {
			off_t sz = size_of(l);
			if (fsync(f) || sz < 0 || ftruncate(d, sz) || pread(l, a, (size_t)sz, 0) != sz || pwrite(d, a, (size_t)sz, 0) != sz)
				return fprintf(stderr, "op %d: fsync\n", i), 1;
		}
		if (size_of(f) != size_of(l) || !same(f, l, rand() % MAX, (size_t)(rand() % 10000)) ||
		    (i % 50 == 0 && !same(f, l, 0, sizeof a)))
			return fprintf(stderr, "op %d: the mount differs from the model\n", i), 1;
	}
	puts("fuzz ok");
	return 0;
}
EOF
cat >"$T/lm.c" <<'EOF'
/* lm put DIR sync|nosync FROM TO PAUSE: one transaction per key FROM..TO-1,
 *   "committed N" after each; then pause() forever if PAUSE is 1.
 * lm check DIR: opens DIR (default flags), prints "keys N txn T"; fails
 *   unless the keys are exactly 0..N-1. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void die(const char *what, int rc)
{
	fprintf(stderr, "lm: %s: %s\n", what, mdb_strerror(rc));
	exit(1);
}
static MDB_env *env_open(const char *dir, unsigned flags)
{
	MDB_env *env;
	int rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, 64 << 20);
	if (rc == 0)
		rc = mdb_env_open(env, dir, flags, 0644);
	if (rc != 0)
		die("open", rc);
	return env;
}
static void put(MDB_env *env, int i)
{
	char k[32], v[300];
	MDB_txn *txn;
	MDB_dbi dbi;
	snprintf(k, sizeof k, "k%08d", i);
	memset(v, 'a' + i % 26, sizeof v);
	MDB_val key = { strlen(k), k }, val = { sizeof v, v };
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, NULL, 0, &dbi);
	if (rc == 0)
		rc = mdb_put(txn, dbi, &key, &val, 0);
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	if (rc != 0)
		die("commit", rc);
}
static int check(const char *dir)
{
	MDB_env *env = env_open(dir, 0);
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	MDB_envinfo info;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, NULL, 0, &dbi);
	if (rc == 0)
		rc = mdb_stat(txn, dbi, &st);
	if (rc != 0)
		die("stat", rc);
	for (size_t i = 0; i < st.ms_entries; i++) {
		char k[32];
		snprintf(k, sizeof k, "k%08zu", i);
		MDB_val key = { strlen(k), k }, val;
		if ((rc = mdb_get(txn, dbi, &key, &val)) != 0)
			die(k, rc);
	}
	mdb_env_info(env, &info);
	printf("keys %zu txn %zu\n", st.ms_entries, info.me_last_txnid);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return 0;
}
int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "check") == 0)
		return check(argv[2]);
	if (argc != 7 || strcmp(argv[1], "put") != 0)
		return fprintf(stderr, "usage: see lm.c\n"), 2;
	unsigned flags = strcmp(argv[3], "nosync") == 0 ?
		MDB_NOSYNC | MDB_NOMETASYNC : 0;
	MDB_env *env = env_open(argv[2], flags);
	for (int i = atoi(argv[4]); i < atoi(argv[5]); i++) {
		put(env, i);
		printf("committed %d\n", i + 1);
		fflush(stdout);
	}
	if (atoi(argv[6]))
		for (;;)
			pause();
	mdb_env_close(env);
	return 0;
}
EOF
cc -std=c11 -D_GNU_SOURCE -O1 -o "$T/mm" "$T/mm.c" >"$T/out" 2>&1 &&
	cc -std=c11 -D_GNU_SOURCE -O1 -o "$T/rx" "$T/rx.c" >"$T/out" 2>&1 &&
	cc -std=c11 -D_GNU_SOURCE -O1 -o "$T/fz" "$T/fz.c" >"$T/out" 2>&1 &&
	cc -std=c11 -D_GNU_SOURCE -O1 $(pkg-config --cflags lmdb) -o "$T/lm" "$T/lm.c" \
		$(pkg-config --libs lmdb) >"$T/out" 2>&1 ||
	{ bad "build the helpers"; echo "$PASS passed, $FAIL failed"; exit 1; }
LM=$T/lm

head -c 300001 /dev/urandom >"$T/r1"
head -c 123457 /dev/urandom >"$T/r2"
head -c 20000 /dev/urandom >"$T/r3"
head -c 9999 /dev/urandom >"$T/r4"
head -c 2097152 /dev/urandom >"$T/r5"
head -c 2097153 /dev/urandom >"$T/r6"

check "--help prints the usage" sh -c '"$1" --help | grep -q "^usage: cutfs BACKING_DIR MOUNTPOINT"' sh "$BIN"
up

# 1-3: un-synced, fsync'd, O_DSYNC
printf 'not synced\n' >"$MNT/a"
check "un-synced write read back through the mount" \
	sh -c '[ "$(cat "$1")" = "not synced" ] && [ "$(stat -c %s "$1")" = 11 ]' sh "$MNT/a"
check "un-synced write absent from the backing dir (file there, size 0)" \
	sh -c '[ -f "$1" ] && [ "$(stat -c %s "$1")" = 0 ]' sh "$BK/a"
dd if="$T/r1" of="$MNT/b" bs=64k conv=fsync 2>"$T/out"
dd if="$T/r2" of="$MNT/c" bs=4096 oflag=dsync 2>"$T/out"
dd if="$T/r3" of="$MNT/c2" bs=1000 oflag=sync 2>"$T/out"
check "O_DSYNC/O_SYNC writes in the backing dir at once" \
	sh -c 'cmp "$1/c" "$2/r2" && cmp "$1/c2" "$2/r3"' sh "$BK" "$T"
power_cut
check "after the cut: the created file is there, its data lost (size 0)" \
	sh -c '[ -f "$1" ] && [ "$(stat -c %s "$1")" = 0 ]' sh "$MNT/a"
check "fsync'd data survives the cut byte for byte" cmp "$MNT/b" "$T/r1"
check "O_DSYNC (dd oflag=dsync) writes survive the cut" cmp "$MNT/c" "$T/r2"
check "O_SYNC (dd oflag=sync) writes survive the cut" cmp "$MNT/c2" "$T/r3"

# 4: an un-synced overwrite and append of a synced file
printf 'XXXXXXXX' | dd of="$MNT/b" bs=1 seek=1000 conv=notrunc 2>"$T/out"
printf 'tail' >>"$MNT/b"
check "overwrite+append visible in the mount, backing unchanged" sh -c '
	[ "$(dd if="$1" bs=1 skip=1000 count=8 2>/dev/null)" = XXXXXXXX ] &&
	[ "$(stat -c %s "$1")" = 300005 ] && [ "$(tail -c 4 "$1")" = tail ] &&
	cmp "$2" "$3"' sh "$MNT/b" "$BK/b" "$T/r1"
power_cut
check "un-synced overwrite+append of a synced file undone by the cut" cmp "$MNT/b" "$T/r1"

# 5: rename, unlink, an overlay following a rename, hard links
mv "$MNT/b" "$MNT/b2"
rm "$MNT/c"
cat "$T/r3" >"$MNT/d"
mv "$MNT/d" "$MNT/d2"
check "the overlay follows a rename (un-synced data under the new name)" cmp "$MNT/d2" "$T/r3"
sync "$MNT/d2"
cat "$T/r4" >"$MNT/e"
ln "$MNT/e" "$MNT/e2"
check "a hard link shares the un-synced data" cmp "$MNT/e2" "$T/r4"
sync "$MNT/e2"
power_cut
check "rename and unlink survive the cut" \
	sh -c 'cmp "$1/b2" "$2/r1" && [ ! -e "$1/b" ] && [ ! -e "$1/c" ] && [ ! -e "$1/d" ]' sh "$MNT" "$T"
check "write, rename, fsync by the new name: survives the cut" cmp "$MNT/d2" "$T/r3"
check "write, link, fsync by the other name: both names survive" \
	sh -c 'cmp "$1/e" "$2/r4" && cmp "$1/e2" "$2/r4"' sh "$MNT" "$T"

# rename flags: RENAME_EXCHANGE swaps the overlays, RENAME_NOREPLACE refuses
printf one >"$MNT/x1"
printf two >"$MNT/x2"
check "RENAME_EXCHANGE swaps two files with un-synced data" \
	sh -c '"$1" x "$2/x1" "$2/x2" && [ "$(cat "$2/x1")" = two ] && [ "$(cat "$2/x2")" = one ]' sh "$T/rx" "$MNT"
check "RENAME_NOREPLACE onto an existing name: EEXIST, nothing moved" \
	sh -c '[ "$("$1" n "$2/x1" "$2/x2")" = "File exists" ] && [ "$(cat "$2/x1")" = two ]' sh "$T/rx" "$MNT"
sync "$MNT/x1"
power_cut
check "after the cut: the exchanged, fsync'd file kept, the other's data lost" \
	sh -c '[ "$(cat "$1/x1")" = two ] && [ "$(stat -c %s "$1/x2")" = 0 ]' sh "$MNT"

# 6: truncate, sparse writes
truncate -s 100 "$MNT/b2"
head -c 100 "$T/r1" >"$T/x100"
check "truncate shrinks" cmp "$MNT/b2" "$T/x100"
truncate -s 10000 "$MNT/b2"
{ head -c 100 "$T/r1"; head -c 9900 /dev/zero; } >"$T/x10000"
check "truncate grows with zeros" cmp "$MNT/b2" "$T/x10000"
printf 'ZZ' | dd of="$MNT/s" bs=1 seek=50000 conv=notrunc 2>"$T/out"
{ head -c 50000 /dev/zero; printf 'ZZ'; } >"$T/sparse"
check "a sparse write past the end reads zeros in the hole" cmp "$MNT/s" "$T/sparse"
cat "$T/r3" >"$MNT/t"
truncate -s 5000 "$MNT/t"
truncate -s 9000 "$MNT/t"
{ head -c 5000 "$T/r3"; head -c 4000 /dev/zero; } >"$T/trim"
check "truncate of un-synced data drops it past the new end" cmp "$MNT/t" "$T/trim"
sync "$MNT/t"
power_cut
check "truncates survive the cut (metadata)" cmp "$MNT/b2" "$T/x10000"
check "the un-synced sparse write is lost (size 0)" sh -c '[ "$(stat -c %s "$1")" = 0 ]' sh "$MNT/s"
check "truncated, then fsync'd data survives the cut" cmp "$MNT/t" "$T/trim"

# metadata pass-through: readdir, symlink, chmod, utimens, rmdir, statfs
mkdir "$MNT/dir" "$MNT/dir/sub" "$MNT/gone"
i=0
while [ "$i" -lt 300 ]; do : >"$MNT/dir/f$i"; i=$((i + 1)); done
ln -s f7 "$MNT/dir/l7"
chmod 600 "$MNT/dir/f1"
touch -d "2001-02-03 04:05:06 UTC" "$MNT/dir/f2"
rmdir "$MNT/gone"
meta_ok() {
	[ "$(ls "$1/dir" | wc -l)" = 302 ] && [ "$(readlink "$1/dir/l7")" = f7 ] &&
	[ "$(stat -c %a "$1/dir/f1")" = 600 ] && [ "$(stat -c %Y "$1/dir/f2")" = 981173106 ] &&
	[ -d "$1/dir/sub" ] && [ ! -e "$1/gone" ] && df "$1" >/dev/null && [ -r "$1/dir/f3" ]
}
check "metadata ops pass through (readdir of 302, symlink, chmod, utimens, rmdir, statfs)" meta_ok "$MNT"
power_cut
check "metadata ops survive the cut" meta_ok "$MNT"

# 7: mmap
check "mmap of a file in the mount sees un-synced pwrite data" "$T/mm" "$MNT/mm"

# random pwrite/ftruncate/fsync against a model, then a cut
for seed in 1 2 3; do
	check "random ops against a model (seed $seed): the mount reads as the model" \
		"$T/fz" "$MNT/fz$seed" "$T/fz$seed.live" "$T/fz$seed.durable" "$seed" 2000
done
power_cut
check "random ops: after the cut each file is its model at the last fsync (truncates kept)" \
	sh -c 'for s in 1 2 3; do cmp "$1/fz$s" "$2/fz$s.durable" || exit 1; done' sh "$MNT" "$T"

# 8: LMDB, default flags: kill -9 mid-run, cut, every printed commit is there
mkdir "$MNT/db"
"$LM" put "$MNT/db" sync 0 1000000 0 >"$T/lm1" 2>&1 &
HPID=$!
waitfor committed_at_least "$T/lm1" 50
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=
N=$(last_commit "$T/lm1")
power_cut
"$LM" check "$MNT/db" >"$T/out" 2>&1
K=$(sed -n 's/^keys \([0-9]*\) .*/\1/p' "$T/out")
[ -n "$N" ] && [ -n "$K" ] && [ "$K" -ge "$N" ] && [ "$K" -le $((N + 1)) ] &&
	ok "LMDB: kill -9 after \"committed $N\" and a cut: opens, $K keys" ||
	{ echo "committed ${N:-?}" >>"$T/out"; bad "LMDB: every printed commit survives kill -9 and a cut"; }
# the same with 100 commits and a kill -9 once all are printed
mkdir "$MNT/db1"
"$LM" put "$MNT/db1" sync 0 100 1 >"$T/lm1" 2>&1 &
HPID=$!
waitfor committed_at_least "$T/lm1" 100
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=
power_cut
"$LM" check "$MNT/db1" >"$T/lmc" 2>&1
check "LMDB: 100 commits, kill -9, cut: all 100 keys" has_line "$T/lmc" "keys 100 txn 100"
# negative control: 10 synced commits, then 100 with MDB_NOSYNC|MDB_NOMETASYNC
mkdir "$MNT/db2"
"$LM" put "$MNT/db2" sync 0 10 0 >"$T/lm2" 2>&1
"$LM" put "$MNT/db2" nosync 10 110 1 >"$T/lm2" 2>&1 &
HPID=$!
waitfor committed_at_least "$T/lm2" 110
"$LM" check "$MNT/db2" >"$T/lmc" 2>&1
check "LMDB NOSYNC: all 110 keys there before the cut" has_line "$T/lmc" "keys 110 txn 110"
kill -9 "$HPID"
wait "$HPID" 2>/dev/null
HPID=
power_cut
"$LM" check "$MNT/db2" >"$T/lmc" 2>&1
check "LMDB NOSYNC (negative control): the cut loses the un-synced commits, the store opens at the synced 10" \
	has_line "$T/lmc" "keys 10 txn 10"

# 9: SIGUSR1, clean unmount
power_cut
printf 'gone' >"$MNT/u"
check "SIGUSR1 reports the dirty pages" waitfor report_is "cutfs: 1 dirty pages in 1 files"
cat "$T/r3" >"$MNT/v"
rm "$MNT/v"
check "unlink of a closed file with un-synced data frees its overlay" \
	waitfor report_is "cutfs: 1 dirty pages in 1 files"
exec 3>"$MNT/w"
printf 'open while unlinked' >&3
rm "$MNT/w"
check "an unlinked, open file keeps its un-synced data" \
	waitfor report_is "cutfs: 2 dirty pages in 2 files"
exec 3>&-
check "an unlinked file's overlay is freed at the last close" \
	waitfor report_is "cutfs: 1 dirty pages in 1 files"
kill -TERM "$CPID"
wait "$CPID" 2>/dev/null
CPID=
check "SIGTERM unmounts" sh -c '! grep -q " $1 fuse" /proc/mounts' sh "$MNT"
up
check "clean unmount (SIGTERM) drops un-synced data" sh -c '[ "$(stat -c %s "$1")" = 0 ]' sh "$MNT/u"
fusermount3 -u "$MNT"
wait "$CPID" 2>/dev/null
up --flush-on-exit
printf 'kept' >"$MNT/u2"
fusermount3 -u "$MNT"
wait "$CPID" 2>/dev/null
up
check "--flush-on-exit: clean unmount keeps un-synced data" is "$MNT/u2" kept

# 10: two writers at once, then fsync both, cut
dd if="$T/r5" of="$MNT/p1" bs=4k 2>/dev/null &
W1=$!
dd if="$T/r6" of="$MNT/p2" bs=3000 2>/dev/null &
W2=$!
wait "$W1"
wait "$W2"
W1= W2=
check "two concurrent writers: both files right through the mount" \
	sh -c 'cmp "$1/p1" "$2/r5" && cmp "$1/p2" "$2/r6"' sh "$MNT" "$T"
sync "$MNT/p1" "$MNT/p2"
power_cut
check "two concurrent writers, fsync both, cut: both intact" \
	sh -c 'cmp "$1/p1" "$2/r5" && cmp "$1/p2" "$2/r6"' sh "$MNT" "$T"

# 11: the I/O-error mode (SIGUSR2): writes EIO and short in turn, fsync
# EIO dropping the dirty data (Linux after a failed writeback)
# eio_toggle: SIGUSR2, then wait for cutfs to say it.
eio_toggle() {
	_n=$(grep -c "^cutfs: I/O errors" "$T/log")
	kill -USR2 "$CPID"
	waitfor sh -c '[ "$(grep -c "^cutfs: I/O errors" "$1")" -gt "$2" ]' sh "$T/log" "$_n"
}
printf 'synced' >"$MNT/e3"
sync "$MNT/e3"
printf '+lost' >>"$MNT/e3"
eio_toggle
check "I/O errors on: a write fails with EIO" sh -c \
	'! printf x 2>/dev/null >"$1/e1" && ! [ -s "$1/e1" ]' sh "$MNT"
check "I/O errors on: the next write is short (4 of 8 bytes)" sh -c \
	'dd if=/dev/zero of="$1/e2" bs=8 count=1 2>&1 | grep -q "^4 bytes" && [ "$(stat -c %s "$1/e2")" = 4 ]' sh "$MNT"
check "I/O errors on: fsync fails" sh -c '! sync "$1/e3"' sh "$MNT"
check "I/O errors on: reads work" sh -c '[ "$(head -c 6 "$1/e3")" = synced ]' sh "$MNT"
eio_toggle
check "after a failed fsync the un-synced data is gone, the synced data kept" is "$MNT/e3" synced
printf 'again' >"$MNT/e4"
check "I/O errors off: writes and fsync work again" sync "$MNT/e4"
power_cut
check "I/O errors off: fsync'd data survives a cut" is "$MNT/e4" again

# 12: stratad on cutfs under I/O errors (when the build has it): the store
# fails stop (writes refused with the reason, said once in the log, reads go
# on), nothing acknowledged is lost, and a restart recovers
SD=$(dirname "$(dirname "$BIN")")
if [ -x "$SD/stratad" ] && [ -x "$SD/strata" ]; then
	# An ipc socket beside the log: no port to collide with another test's.
	printf 'listen:\n  - "ipc://%s"\ndata_dir: "%s"\nfsync: on\n' "$T/sd.sock" "$MNT/sd" >"$T/sd.yaml"
	# sd_up: start stratad, wait for one more "ready" line in its log.
	sd_up() {
		_r=$(grep -c " ready: " "$T/sd.log" 2>/dev/null)
		"$SD/stratad" -c "$T/sd.yaml" >>"$T/sd.log" 2>&1 &
		HPID=$!
		waitfor sh -c '[ "$(grep -c " ready: " "$1")" -gt "${2:-0}" ]' sh "$T/sd.log" "$_r"
	}
	sd_down() { kill -TERM "$HPID"; wait "$HPID" 2>/dev/null; HPID=; }
	st() { "$SD/strata" --host "ipc://$T/sd.sock" --timeout 10 "$@"; }
	ld() { { echo id; seq "$1" "$2"; } | st load t - --format csv; }
	n_rows() { st query t --agg "count(*)" --format csv | tail -n 1; }
	sd_up
	st create t --schema "id int64 not null" >"$T/out" 2>&1 && ld 1 100 >>"$T/out" 2>&1
	r=$(n_rows 2>&1)
	check "stratad on cutfs: 100 rows acknowledged" test "$r" = 100
	eio_toggle
	for i in 1 2 3; do ld $((1000 + i)) $((1000 + i)) >"$T/err$i" 2>&1 && echo "load $i acknowledged" >>"$T/acked"; done
	cat "$T/err1" "$T/err2" "$T/err3" >"$T/out"
	cp "$T/out" "$T/errs"
	check "I/O errors: every load fails with the I/O error named" sh -c \
		'! [ -e "$1/acked" ] && [ "$(grep -c "Input/output error" "$1/errs")" = 3 ]' sh "$T"
	eio_toggle
	ld 2000 2000 >"$T/err4" 2>&1
	check "after the error the store refuses writes until a restart (fail-stop: no write retried after a lost fsync)" \
		grep -q "reopen" "$T/err4"
	check "stratad logs the failure once, at error level" sh -c \
		'[ "$(grep -c "stratad error: store failed" "$1")" = 1 ]' sh "$T/sd.log"
	st status >"$T/status" 2>&1
	check "strata status says the store failed, and why" \
		grep -q "^store: *FAILED, writes refused until stratad is restarted: .*Input/output error" "$T/status"
	r=$(n_rows 2>&1)
	check "reads go on: the 100 acknowledged rows" test "$r" = 100
	sd_down
	power_cut
	sd_up
	ld 200 299 >"$T/out" 2>&1
	r=$(n_rows 2>&1)
	check "after a restart (and a cut) writes work: 100 + 100 rows, no failed load visible" test "$r" = 200
	st status >"$T/status" 2>&1
	check "after the restart strata status shows no failure" sh -c \
		'grep -q "^uptime:" "$1" && ! grep -q "FAILED" "$1"' sh "$T/status"
	sd_down
else
	echo "skip stratad under I/O errors: no $SD/stratad"
fi

grep -v -e '^cutfs: [0-9]* dirty pages in [0-9]* files$' -e '^cutfs: I/O errors o[nf]f*$' "$T/log" >"$T/out"
check "cutfs printed nothing else" sh -c '! [ -s "$1" ]' sh "$T/out"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
