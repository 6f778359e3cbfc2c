/*
 * daemon/store/record.c — record checksums (STORE.md §2, "Record
 * checksums"): every value the store puts in LMDB ends with a CRC32C over
 * its key and the rest of the value; every read checks it and strips it.
 * A mismatch is ST_ECORRUPT naming the table, the record kind and the key,
 * and marks the table damaged: it is refused for reads and writes (the
 * rest of the store keeps serving) until it is dropped or the store is
 * reopened on a repaired copy.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store/store_int.h"
#include "format/crc32c.h"

static uint32_t rec_crc(const MDB_val *k, const void *v, size_t n)
{
	return st_crc32c(st_crc32c(0, k->mv_data, k->mv_size), v, n);
}

int store_rec_put(st_store *s, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, const MDB_val *v,
		  unsigned flags)
{
	MDB_val r = {v->mv_size + STORE_REC_CRC, NULL};
	int mrc = cur ? mdb_cursor_put(cur, k, &r, flags | MDB_RESERVE)
		      : mdb_put(txn, s->dbi, k, &r, flags | MDB_RESERVE);
	if (mrc != 0)
		return mrc;
	uint8_t *p = r.mv_data;
	if (v->mv_size)
		memcpy(p, v->mv_data, v->mv_size);
	st_put_le32(p + v->mv_size, rec_crc(k, v->mv_data, v->mv_size));
	return 0;
}

static const char *kind_name(const MDB_val *k)
{
	const uint8_t *p = k->mv_data;
	if (k->mv_size == 0)
		return "empty-key";
	switch (p[0]) {
	case KEY_RLOG:
		return "log";
	case KEY_META:
		return "meta";
	case KEY_NAME:
		return "name";
	case KEY_LSN:
		return "LSN";
	case KEY_TABLE:
		if (k->mv_size < TABLE_PREFIX_LEN)
			return "table";
		switch (p[9]) {
		case REC_FILE:
			return "file";
		case REC_HEAD:
			return "head";
		case REC_COMMIT:
			return "commit";
		case REC_APP:
			return "app-version";
		case REC_KEY:
			return "key-index";
		}
		return "table";
	}
	return "unknown";
}

/* What a damaged record is, for its error: the table's name when its head
 * is intact, the record kind and the key in hex. */
static void describe(st_store *s, MDB_txn *txn, const MDB_val *k, char *out, size_t len)
{
	char hex[2 * 40 + 4];
	size_t n = k->mv_size < 40 ? k->mv_size : 40;
	for (size_t i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", ((const uint8_t *)k->mv_data)[i]);
	if (k->mv_size > n)
		strcpy(hex + 2 * n, "...");
	const uint8_t *p = k->mv_data;
	if (k->mv_size >= TABLE_PREFIX_LEN && p[0] == KEY_TABLE) {
		uint64_t tid = key_tid(k);
		char name[STORE_NAME_MAX + 3] = "";
		uint8_t hk[HEAD_KEY_LEN];
		table_key(hk, tid, REC_HEAD);
		MDB_val hkv = {sizeof hk, hk}, hv;
		struct act_metadata *m = NULL;
		if (p[9] != REC_HEAD && mdb_get(txn, s->dbi, &hkv, &hv) == 0 &&
		    hv.mv_size >= STORE_HEAD_FIXED + STORE_REC_CRC &&
		    st_get_le32((uint8_t *)hv.mv_data + hv.mv_size - STORE_REC_CRC) ==
			    rec_crc(&hkv, hv.mv_data, hv.mv_size - STORE_REC_CRC) &&
		    act_metadata_decode((uint8_t *)hv.mv_data + STORE_HEAD_FIXED,
					hv.mv_size - STORE_REC_CRC - STORE_HEAD_FIXED, &m,
					NULL) == ST_OK &&
		    m->name)
			snprintf(name, sizeof name, "'%s' ", m->name);
		act_metadata_free(m);
		snprintf(out, len, "table %s(id %llu): its %s record (key %s) fails its checksum",
			 name, (unsigned long long)tid, kind_name(k), hex);
	} else {
		snprintf(out, len, "the %s record (key %s) fails its checksum", kind_name(k), hex);
	}
}

static _Thread_local char bad_rec[ST_ERR_MSG_MAX];

const char *store_rec_last_bad(void)
{
	return bad_rec;
}

/* Whether [p, p + n) is readable: outside LMDB's map (a write txn's own
 * pages) or inside the data file. A damaged node or overflow header makes
 * LMDB hand out a pointer past the file's end, where a read is SIGBUS. */
bool store_readable(st_store *s, const void *p, size_t n)
{
	const uint8_t *b = p;
	if (!s->map_base || b < s->map_base || b >= s->map_base + s->map_size)
		return true;
	uint64_t off = (uint64_t)(b - s->map_base), end = __atomic_load_n(&s->file_size,
									 __ATOMIC_RELAXED);
	if (n <= s->map_size - off && off + n <= end)
		return true;
	struct stat st;
	if (fstat(s->prealloc_fd, &st) != 0)
		return false;
	__atomic_store_n(&s->file_size, (uint64_t)st.st_size, __ATOMIC_RELAXED);
	return n <= s->map_size - off && off + n <= (uint64_t)st.st_size;
}

int store_rec_check(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v)
{
	if (!store_readable(s, k->mv_data, k->mv_size) || !store_readable(s, v->mv_data, v->mv_size)) {
		snprintf(bad_rec, sizeof bad_rec, "a record of %zu bytes lies past the end of LMDB's "
			 "data file: a page of the store is damaged", v->mv_size);
		return STORE_EBADREC;
	}
	if (v->mv_size >= STORE_REC_CRC) {
		size_t n = v->mv_size - STORE_REC_CRC;
		if (s->no_integrity ||
		    st_get_le32((const uint8_t *)v->mv_data + n) == rec_crc(k, v->mv_data, n)) {
			v->mv_size = n;
			return 0;
		}
	}
	describe(s, txn, k, bad_rec, sizeof bad_rec);
	const uint8_t *p = k->mv_data;
	if (k->mv_size >= TABLE_PREFIX_LEN && p[0] == KEY_TABLE)
		store_damage(s, key_tid(k), bad_rec);
	return STORE_EBADREC;
}

/* ---- reads that survive a damaged page --------------------------------
 * LMDB trusts its pages: a damaged node offset, key size or page pointer
 * makes mdb_get / mdb_cursor_get read outside the map (SIGSEGV) or past the
 * file's end (SIGBUS). Reads run under a per-thread guard: the fault handler
 * jumps back to the read, which returns STORE_EFAULT (ST_ECORRUPT). Only
 * reads are guarded: a read touches no shared state of LMDB (a read txn's
 * cursor stack is its own; a write txn's reads do not dirty pages), so the
 * caller aborts its txn as after any other error. A fault outside a guard
 * goes to the handler that was there before (a sanitizer's, or the default
 * action: the process dies as it would have). LMDB's own assertions (a
 * damaged page it notices) call store_on_assert first, which returns from a
 * guarded read the same way instead of letting LMDB abort(). */
static _Thread_local sigjmp_buf *volatile fault_jb;
static struct sigaction old_segv, old_bus;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = fault_jb;
	if (jb) {
		fault_jb = NULL;
		siglongjmp(*jb, 1);
	}
	const struct sigaction *o = sig == SIGSEGV ? &old_segv : &old_bus;
	if ((o->sa_flags & SA_SIGINFO) && o->sa_sigaction) {
		o->sa_sigaction(sig, si, uc);
	} else if (o->sa_handler != SIG_DFL && o->sa_handler != SIG_IGN) {
		o->sa_handler(sig);
	} else {
		/* Returning re-runs the faulting instruction under the default
		 * action. */
		signal(sig, SIG_DFL);
	}
}

static void guard_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER; /* the jump leaves the mask as it was */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
}

void store_guard_init(void)
{
	pthread_once(&guard_once, guard_install);
}

static _Thread_local char assert_msg[200];

void store_on_assert(MDB_env *env, const char *msg)
{
	(void)env;
	sigjmp_buf *jb = fault_jb;
	if (jb) { /* inside a guarded read: return from it instead of abort() */
		snprintf(assert_msg, sizeof assert_msg, "%s", msg);
		fault_jb = NULL;
		siglongjmp(*jb, 2);
	}
}

int store_env_open(MDB_env *env, const char *path, unsigned flags)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0)) {
		snprintf(bad_rec, sizeof bad_rec, "LMDB faulted reading its meta pages: the data file's "
			 "header is damaged");
		return STORE_EFAULT;
	}
	fault_jb = &jb;
	int mrc = mdb_env_open(env, path, flags, 0644);
	fault_jb = NULL;
	return mrc;
}

static int fault(st_store *s, const MDB_val *k)
{
	char hex[2 * 32 + 1] = "";
	bool tkey = false;
	uint64_t tid = 0;
	if (k && k->mv_data && store_readable(s, k->mv_data, k->mv_size)) {
		const uint8_t *p = k->mv_data;
		size_t n = k->mv_size < 32 ? k->mv_size : 32;
		for (size_t i = 0; i < n; i++)
			snprintf(hex + 2 * i, 3, "%02x", p[i]);
		if ((tkey = k->mv_size >= TABLE_PREFIX_LEN && p[0] == KEY_TABLE))
			tid = key_tid(k);
	}
	snprintf(bad_rec, sizeof bad_rec, "LMDB %s%s%s on a damaged page of the store%s%s%s",
		 assert_msg[0] ? "failed its check '" : "faulted", assert_msg,
		 assert_msg[0] ? "'" : "", *hex ? " (reading near key " : "", hex, *hex ? ")" : "");
	assert_msg[0] = 0;
	if (tkey)
		store_damage(s, tid, bad_rec);
	return STORE_EFAULT;
}

int store_mget(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0))
		return fault(s, k);
	fault_jb = &jb;
	int mrc = mdb_get(txn, s->dbi, (MDB_val *)k, v);
	fault_jb = NULL;
	return mrc;
}

int store_mcget(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	sigjmp_buf jb;
	MDB_val at = *k; /* what the fault is described by */
	if (sigsetjmp(jb, 0))
		return fault(s, &at);
	fault_jb = &jb;
	int mrc = mdb_cursor_get(cur, k, v, op);
	fault_jb = NULL;
	return mrc;
}

int store_guard_probe(const volatile uint8_t *p, uint8_t *out)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 0))
		return STORE_EFAULT;
	fault_jb = &jb;
	*out = *p;
	fault_jb = NULL;
	return 0;
}

int store_get(st_store *s, MDB_txn *txn, const MDB_val *k, MDB_val *v)
{
	int mrc = store_mget(s, txn, k, v);
	return mrc ? mrc : store_rec_check(s, txn, k, v);
}

int store_cget(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	int mrc = store_mcget(s, cur, k, v, op);
	return mrc ? mrc : store_rec_check(s, mdb_cursor_txn(cur), k, v);
}

int store_cget_skip(st_store *s, MDB_cursor *cur, MDB_val *k, MDB_val *v, MDB_cursor_op op,
		    void (*problem)(void *arg, const char *line), void *arg)
{
	int mrc = store_cget(s, cur, k, v, op);
	while (mrc == STORE_EBADREC) {
		if (problem)
			problem(arg, store_rec_last_bad());
		mrc = store_cget(s, cur, k, v, MDB_NEXT);
	}
	return mrc;
}

/* ---- damaged tables ---------------------------------------------------- */

/* The damaged-table entry of tid, added with why when new (pin_lock
 * held); NULL when the table is new and there is no room. */
static int damaged_entry(st_store *s, uint64_t tid, const char *why)
{
	uint32_t i;
	for (i = 0; i < s->ndamaged && s->damaged[i].tid != tid; i++)
		;
	if (i == s->ndamaged) {
		if (i == STORE_DAMAGED_MAX)
			return -1;
		s->damaged[i].tid = tid;
		s->damaged[i].other = false;
		snprintf(s->damaged[i].why, sizeof s->damaged[i].why, "%s", why);
		__atomic_store_n(&s->ndamaged, i + 1, __ATOMIC_RELEASE);
	}
	return (int)i;
}

void store_damage(st_store *s, uint64_t tid, const char *why)
{
	pthread_mutex_lock(&s->pin_lock);
	int i = damaged_entry(s, tid, why);
	if (i >= 0)
		s->damaged[i].other = true;
	pthread_mutex_unlock(&s->pin_lock);
}

void store_damage_segment(st_store *s, uint64_t tid, const struct file_rec *f, const char *why)
{
	pthread_mutex_lock(&s->pin_lock);
	int i = damaged_entry(s, tid, why);
	uint32_t j;
	for (j = 0; j < s->nbad_segs && !(s->bad_segs[j].tid == tid && s->bad_segs[j].fid == f->fid);
	     j++)
		;
	if (j == s->nbad_segs && j < STORE_BAD_SEGS_MAX)
		s->bad_segs[s->nbad_segs++] = (struct st_bad_segment){tid, f->fid, f->size, f->crc};
	else if (j == s->nbad_segs && i >= 0)
		s->damaged[i].other = true; /* not remembered: no repair can lift it */
	pthread_mutex_unlock(&s->pin_lock);
}

uint32_t st_bad_segments(st_store *s, struct st_bad_segment *out, uint32_t max)
{
	pthread_mutex_lock(&s->pin_lock);
	uint32_t n = s->nbad_segs;
	for (uint32_t i = 0; i < n && i < max; i++)
		out[i] = s->bad_segs[i];
	pthread_mutex_unlock(&s->pin_lock);
	return n;
}

bool store_forget_segment(st_store *s, uint64_t tid, uint64_t fid)
{
	pthread_mutex_lock(&s->pin_lock);
	bool found = false, more = false;
	for (uint32_t j = 0; j < s->nbad_segs; j++)
		if (s->bad_segs[j].tid == tid && s->bad_segs[j].fid == fid) {
			s->bad_segs[j--] = s->bad_segs[--s->nbad_segs];
			found = true;
		} else if (s->bad_segs[j].tid == tid) {
			more = true;
		}
	for (uint32_t i = 0; found && !more && i < s->ndamaged; i++)
		if (s->damaged[i].tid == tid && !s->damaged[i].other) {
			s->damaged[i] = s->damaged[s->ndamaged - 1];
			__atomic_store_n(&s->ndamaged, s->ndamaged - 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&s->pin_lock);
	return found;
}

int store_damaged(st_store *s, uint64_t tid, struct st_err *err)
{
	if (__atomic_load_n(&s->ndamaged, __ATOMIC_ACQUIRE) == 0)
		return ST_OK;
	int rc = ST_OK;
	pthread_mutex_lock(&s->pin_lock);
	for (uint32_t i = 0; i < s->ndamaged; i++)
		if (s->damaged[i].tid == tid) {
			rc = st_seterr(err, ST_ECORRUPT,
				       "%s; the table is refused for reads and writes until it is "
				       "repaired or dropped (strata verify tells what is damaged)",
				       s->damaged[i].why);
			break;
		}
	pthread_mutex_unlock(&s->pin_lock);
	return rc;
}

uint32_t st_damaged_tables(st_store *s, uint64_t *tids, uint32_t max)
{
	pthread_mutex_lock(&s->pin_lock);
	uint32_t n = s->ndamaged;
	for (uint32_t i = 0; i < n && i < max; i++)
		tids[i] = s->damaged[i].tid;
	pthread_mutex_unlock(&s->pin_lock);
	return n;
}

uint32_t st_damaged_reasons(st_store *s, char **why, uint32_t max)
{
	pthread_mutex_lock(&s->pin_lock);
	uint32_t n = s->ndamaged;
	for (uint32_t i = 0; i < n && i < max; i++)
		why[i] = strdup(s->damaged[i].why);
	pthread_mutex_unlock(&s->pin_lock);
	return n;
}

void store_undamage(st_store *s, uint64_t tid)
{
	pthread_mutex_lock(&s->pin_lock);
	for (uint32_t j = 0; j < s->nbad_segs; j++)
		if (s->bad_segs[j].tid == tid)
			s->bad_segs[j--] = s->bad_segs[--s->nbad_segs];
	for (uint32_t i = 0; i < s->ndamaged; i++)
		if (s->damaged[i].tid == tid) {
			s->damaged[i] = s->damaged[s->ndamaged - 1];
			__atomic_store_n(&s->ndamaged, s->ndamaged - 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&s->pin_lock);
}
