/*
 * replication/link.c — the replication transport of REPLICATION.md §5 and
 * §6 over nanomsg: one PAIR socket per peer (TCP), one REP socket serving
 * segment chunks, a REQ socket per segment fetch, and an inproc PAIR for
 * link_wake. link.h is its manual (port scheme, wire layout, threads).
 *
 * Invariants:
 *   - Every message that leaves is at most max_message bytes and ends in the
 *     CRC pair (key 7, uint32); every message returned by link_recv passed
 *     the CRC, the cluster and address checks and the §5.2 validation.
 *   - Before msgpack-c sees a buffer, wire_walk() has bounded every declared
 *     length and count by the bytes present, so a hostile 6-byte message
 *     cannot make it allocate gigabytes.
 *   - The buffer of the last message returned by link_recv is held (its
 *     entries point into it) until the next link_recv or link_close.
 *
 * Threading: see link.h. Counters are updated with atomic builtins; the
 * sockets are nanomsg's (thread-safe); the held buffer and decode storage
 * belong to the link_recv thread.
 */
#include "replication/link.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <nanomsg/reqrep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "format/crc32c.h"
#include "format/wire.h"

/* §5.1 envelope keys. */
enum link_env_key {
	LINK_ENV_VERSION = 0,
	LINK_ENV_CLUSTER = 1,
	LINK_ENV_FROM = 2,
	LINK_ENV_TO = 3,
	LINK_ENV_EPOCH = 4,
	LINK_ENV_TYPE = 5,
	LINK_ENV_BODY = 6,
	LINK_ENV_CRC = 7,
	LINK_ENV_NKEYS = 8,
	LINK_ENV_MAC = 8, /* sealed messages only (seal) */
	LINK_ENV_SEQ = 9,
};

/* §5.2 body keys, one enum per type. */
enum link_append_key {
	LINK_APPEND_PREV_LSN = 0,
	LINK_APPEND_PREV_EPOCH = 1,
	LINK_APPEND_PREV_HASH = 2,
	LINK_APPEND_ENTRIES = 3,
	LINK_APPEND_COMMIT = 4,
};
enum link_append_resp_key {
	LINK_ARESP_SUCCESS = 0,
	LINK_ARESP_MATCH = 1,
	LINK_ARESP_HINT_LSN = 2,
	LINK_ARESP_HINT_EPOCH = 3,
};
enum link_vote_key { LINK_VOTE_LAST_LSN = 0, LINK_VOTE_LAST_EPOCH = 1, LINK_VOTE_FORCE = 2 };
enum link_vote_resp_key { LINK_VRESP_GRANTED = 0 };
enum link_heartbeat_key { LINK_HB_COMMIT = 0, LINK_HB_CTX = 1 };
enum link_heartbeat_resp_key { LINK_HBRESP_CTX = 0 };
/* §5.3 entry keys. */
enum link_entry_key {
	LINK_ENT_LSN = 0,
	LINK_ENT_EPOCH = 1,
	LINK_ENT_HASH = 2,
	LINK_ENT_DATA = 3,
	LINK_ENT_MORE = 4,
};
/* §6 segment bodies. */
enum link_fetch_key {
	LINK_FETCH_TABLE = 0,
	LINK_FETCH_FILE = 1,
	LINK_FETCH_OFF = 2,
	LINK_FETCH_LEN = 3
};
enum link_data_key {
	LINK_DATA_BYTES = 0,
	LINK_DATA_SIZE = 1,
	LINK_DATA_CRC = 2,
	LINK_DATA_CODE = 3,
	LINK_DATA_MSG = 4,
};

#define CRC_PAIR_LEN     6  /* 0x07, 0xce, 4 bytes */
#define SEQ_PAIR_LEN     10 /* 0x09, 0xcf, 8 bytes: the sender's sequence number */
#define MAC_PAIR_LEN     35 /* 0x08, 0xc4, 0x20, 32 bytes: HMAC-SHA512-256 */
#define SEAL_LEN         (SEQ_PAIR_LEN + MAC_PAIR_LEN)
#define LINK_QMAX        64 /* messages queued per peer while its pipe is busy */
#define REPLY_TIMEOUT_MS 2000

/*
 * Messages to one peer that nanomsg could not take at once. nanomsg's TCP
 * pipe holds one message in flight, so a burst (Raft pipelines APPENDs)
 * would lose all but the first: they wait here, at most LINK_QMAX messages
 * and max_message bytes, and go out as the pipe frees (link_send flushes
 * first; link_recv polls NN_POLLOUT for peers with a queue). Beyond that a
 * message is dropped.
 */
struct link_queue {
	struct st_buf msg[LINK_QMAX]; /* ring of encoded messages (owned) */
	size_t head;                  /* oldest */
	size_t n;                     /* queued */
	size_t bytes;                 /* their total size */
};

/* Liveness of a peer link: each side sends a keepalive when it has sent
 * nothing for LINK_KEEPALIVE_MS, and a link that has received nothing for
 * LINK_DEAD_MS is closed and opened again. A PAIR socket takes one pipe: a
 * stale one (a peer that restarted while its old connection was still
 * attached on the bound side) would otherwise leave the link silent for
 * good, its new connection accepted and ignored. */
#define LINK_KEEPALIVE_MS 250
#define LINK_DEAD_MS 2000

struct link {
	struct link_config c;                /* the config, copied */
	int64_t last_rx[LINK_MAX_PEERS];     /* ms: anything received from the peer */
	int64_t last_tx[LINK_MAX_PEERS];     /* ms: anything handed to nanomsg for it */
	int64_t opened[LINK_MAX_PEERS];      /* ms: its socket was (re)opened */
	uint64_t n_reopened;                 /* silent links reopened */
	char host[LINK_ADDR_MAX];            /* self_address's HOST */
	unsigned port;                       /* self_address's PORT */
	int pair[LINK_MAX_PEERS];            /* PAIR socket per config.peers index */
	int rep;                             /* REP socket on self_address */
	int wake_rx;                         /* inproc PAIR polled by link_recv */
	int wake_tx;                         /* inproc PAIR link_wake sends on */
	link_seg_read_fn seg_fn;             /* serves SEGMENT_FETCH, or NULL */
	void *seg_ctx;                       /* passed to seg_fn */
	uint8_t *seg_buf;                    /* LINK_SEG_CHUNK bytes for serving */
	void *held;                          /* nn buffer of the last returned message */
	struct link_decoded dec;             /* its decoded form */
	uint64_t n_sent;                     /* counters, atomic builtins: link_stats */
	uint64_t n_received;                 /* returned by link_recv */
	uint64_t n_dropped_send;             /* queue full */
	uint64_t n_dropped_recv;             /* failed a check */
	uint64_t n_served;                   /* SEGMENT_FETCH answered */
	uint64_t n_unauth;                   /* dropped: no valid MAC, or replayed */
	uint64_t send_seq;                   /* atomic: the last sequence number sealed */
	uint64_t last_seq[LINK_MAX_PEERS];   /* per config.peers index: the last one accepted */
	uint64_t bytes_sent[LINK_MAX_PEERS]; /* per config.peers index */
	bool gone[LINK_MAX_PEERS];           /* atomic: removed by link_remove_peer */
	pthread_mutex_t qmu;                 /* guards q */
	struct link_queue q[LINK_MAX_PEERS]; /* per config.peers index */
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* ---- encoding ------------------------------------------------------------
 * msgpack-c packs into an st_buf through buf_write. The envelope is a fixmap
 * of 8 pairs; the CRC pair is appended last, over the message as it would
 * be with key 7 absent (header byte - 1, then everything after it).
 */

static int buf_write(void *data, const char *p, size_t n)
{
	st_buf_append(data, p, n);
	return 0;
}

static void pack_envelope(msgpack_packer *pk, const uint8_t cluster[LINK_CLUSTER_LEN],
                          uint64_t from, uint64_t to, uint64_t epoch, int type)
{
	msgpack_pack_map(pk, LINK_ENV_NKEYS);
	wire_key_u64(pk, LINK_ENV_VERSION, LINK_VERSION);
	wire_key_bin(pk, LINK_ENV_CLUSTER, cluster, LINK_CLUSTER_LEN);
	wire_key_u64(pk, LINK_ENV_FROM, from);
	wire_key_u64(pk, LINK_ENV_TO, to);
	wire_key_u64(pk, LINK_ENV_EPOCH, epoch);
	wire_key_u64(pk, LINK_ENV_TYPE, (uint64_t)type);
	msgpack_pack_uint32(pk, LINK_ENV_BODY); /* the body map follows */
}

static uint32_t message_crc(const uint8_t *p, size_t len_without_pair)
{
	uint8_t hdr = (uint8_t)(p[0] - 1); /* the fixmap without key 7 */
	uint32_t crc = st_crc32c(0, &hdr, 1);
	return st_crc32c(crc, p + 1, len_without_pair - 1);
}

static void append_crc(struct st_buf *b)
{
	if (b->oom || b->len == 0)
		return;
	uint32_t crc = message_crc(b->data, b->len);
	uint8_t t[CRC_PAIR_LEN] = {LINK_ENV_CRC, 0xce};
	st_put_be(t + 2, 4, crc);
	st_buf_append(b, t, sizeof t);
}

/*
 * Authentication (§5.1 keys 8, 9): with a cluster key, a message ending in
 * its CRC pair is sealed: the CRC pair comes off, key 9 (the sender's
 * sequence number, uint64) and key 8 (HMAC-SHA512-256 over the message as
 * it is with keys 8 and 7 absent: header byte - 2, then every byte before
 * key 8) go on, and a new CRC pair. unseal checks that shape and the MAC.
 */
static void seal(struct link *l, struct st_buf *b)
{
	if (!l->c.auth || b->oom || b->len < 1 + CRC_PAIR_LEN)
		return;
	b->len -= CRC_PAIR_LEN;
	uint64_t seq = __atomic_add_fetch(&l->send_seq, 1, __ATOMIC_RELAXED);
	uint8_t t[SEQ_PAIR_LEN] = {LINK_ENV_SEQ, 0xcf};
	st_put_be(t + 2, 8, seq);
	st_buf_append(b, t, sizeof t);
	if (b->oom)
		return;
	uint8_t hdr = b->data[0]; /* 8 pairs: 7 and the CRC; now + seq */
	crypto_auth_hmacsha512256_state st;
	uint8_t mac[MAC_PAIR_LEN] = {LINK_ENV_MAC, 0xc4, 32};
	crypto_auth_hmacsha512256_init(&st, l->c.key, sizeof l->c.key);
	crypto_auth_hmacsha512256_update(&st, &hdr, 1); /* pairs before 8: n - 1 + seq */
	crypto_auth_hmacsha512256_update(&st, b->data + 1, b->len - 1);
	crypto_auth_hmacsha512256_final(&st, mac + 3);
	st_buf_append(b, mac, sizeof mac);
	if (!b->oom)
		b->data[0] = (uint8_t)(hdr + 2);
	append_crc(b);
}

/* Whether message p (its CRC already checked) is sealed with this cluster's
 * key; *seq gets its sequence number. */
static bool unseal(const struct link *l, const uint8_t *p, size_t len, uint64_t *seq)
{
	if (len < 1 + SEAL_LEN + CRC_PAIR_LEN || (p[0] & 0x0f) < 3)
		return false;
	const uint8_t *m = p + len - CRC_PAIR_LEN - MAC_PAIR_LEN, *q = m - SEQ_PAIR_LEN;
	if (m[0] != LINK_ENV_MAC || m[1] != 0xc4 || m[2] != 32 || q[0] != LINK_ENV_SEQ ||
	    q[1] != 0xcf)
		return false;
	uint8_t hdr = (uint8_t)(p[0] - 2), mac[32];
	crypto_auth_hmacsha512256_state st;
	crypto_auth_hmacsha512256_init(&st, l->c.key, sizeof l->c.key);
	crypto_auth_hmacsha512256_update(&st, &hdr, 1);
	crypto_auth_hmacsha512256_update(&st, p + 1, (size_t)(m - p) - 1);
	crypto_auth_hmacsha512256_final(&st, mac);
	*seq = st_get_be(q + 2, 8);
	return sodium_memcmp(mac, m + 3, 32) == 0;
}

/* The authentication check of a received message (CRC checked or not:
 * unseal needs only its shape). Unauthenticated links accept everything. */
static bool authentic(struct link *l, const void *msg, size_t len, int peer, bool in_order)
{
	uint64_t seq = 0;
	if (!l->c.auth)
		return true;
	if (!unseal(l, msg, len, &seq) ||
	    (in_order && peer >= 0 && seq <= l->last_seq[peer])) {
		count(&l->n_unauth, 1);
		return false;
	}
	if (in_order && peer >= 0)
		l->last_seq[peer] = seq;
	return true;
}

/* Bytes of the msgpack header of an array of n elements. */
static size_t array_hdr_len(size_t n)
{
	return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

static bool type_is_known(int t)
{
	return t >= RAFT_MSG_APPEND && t <= RAFT_MSG_TIMEOUT_NOW;
}

/* Pack one §5.3 entry into b (its data from e or fn). */
static int pack_entry(struct st_buf *b, const struct raft_entry *e, link_entry_fn fn, void *ctx,
                      struct st_err *err)
{
	int rc = ST_OK;
	struct st_buf fetched = {0};
	const void *data = e->data;
	size_t len = e->len;
	if (!data && len > 0) {
		if (!fn) {
			rc = st_seterr(err, ST_EINVAL,
			               "entry %llu has no bytes and no entry function",
			               (unsigned long long)e->lsn);
			goto out;
		}
		rc = fn(ctx, e->lsn, &fetched, err);
		if (rc != ST_OK)
			goto out;
		if (fetched.oom) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory reading entry %llu",
			               (unsigned long long)e->lsn);
			goto out;
		}
		data = fetched.data;
		len = fetched.len;
	}
	msgpack_packer pk;
	msgpack_packer_init(&pk, b, buf_write);
	msgpack_pack_map(&pk, 3 + (len > 0) + e->more);
	wire_key_u64(&pk, LINK_ENT_LSN, e->lsn);
	wire_key_u64(&pk, LINK_ENT_EPOCH, e->epoch);
	wire_key_bin(&pk, LINK_ENT_HASH, e->hash, RAFT_HASH_LEN);
	if (e->more)
		wire_key_bool(&pk, LINK_ENT_MORE, true);
	if (len > 0)
		wire_key_bin(&pk, LINK_ENT_DATA, data, len);
out:
	st_buf_free(&fetched);
	return rc;
}

int link_encode(const uint8_t cluster[LINK_CLUSTER_LEN], const struct raft_msg *m, link_entry_fn fn,
                void *ctx, size_t max, struct st_buf *out, size_t *n_sent, struct st_err *err)
{
	int rc = ST_OK;
	size_t n = 0;
	struct st_buf ents = {0};
	msgpack_packer pk;
	out->len = 0;
	out->oom = false;
	msgpack_packer_init(&pk, out, buf_write);
	if (!type_is_known((int)m->type)) {
		rc = st_seterr(err, ST_EINVAL, "message type %d is not a replication message",
		               (int)m->type);
		goto out;
	}
	pack_envelope(&pk, cluster, m->from, m->to, m->epoch, (int)m->type);
	switch (m->type) {
	case RAFT_MSG_APPEND: {
		msgpack_pack_map(&pk, 5);
		wire_key_u64(&pk, LINK_APPEND_PREV_LSN, m->prev_lsn);
		wire_key_u64(&pk, LINK_APPEND_PREV_EPOCH, m->prev_epoch);
		wire_key_bin(&pk, LINK_APPEND_PREV_HASH, m->prev_hash, RAFT_HASH_LEN);
		wire_key_u64(&pk, LINK_APPEND_COMMIT, m->commit);
		msgpack_pack_uint32(&pk, LINK_APPEND_ENTRIES); /* the array comes last */
		size_t overhead = out->len + CRC_PAIR_LEN;     /* + the array header */
		if (overhead + array_hdr_len(0) > max) {
			rc = st_seterr(err, ST_ETOOBIG,
			               "an APPEND without entries is %zu bytes, above "
			               "the %zu-byte message limit",
			               overhead + array_hdr_len(0), max);
			goto out;
		}
		size_t unit_n = 0, unit_len = 0; /* entries up to the last whole unit */
		for (size_t i = 0; i < m->n_entries; i++) {
			rc = pack_entry(&ents, &m->entries[i], fn, ctx, err);
			if (rc != ST_OK)
				goto out;
			if (ents.oom) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory encoding an APPEND");
				goto out;
			}
			if (overhead + array_hdr_len(i + 1) + ents.len > max) {
				/* Cut after the last whole atomic unit (never inside one). */
				if (unit_n == 0) {
					rc = st_seterr(err, ST_ETOOBIG,
					               "entry %llu%s makes a %zu-byte APPEND, above "
					               "the %zu-byte message limit (max_message_size)",
					               (unsigned long long)m->entries[0].lsn,
					               i == 0 ? " alone" : " and its atomic unit",
					               overhead + array_hdr_len(i + 1) + ents.len, max);
					goto out;
				}
				n = unit_n;
				ents.len = unit_len;
				break;
			}
			n++;
			if (!m->entries[i].more) {
				unit_n = n;
				unit_len = ents.len;
			}
		}
		msgpack_pack_array(&pk, (uint32_t)n);
		st_buf_append(out, ents.data, ents.len);
		break;
	}
	case RAFT_MSG_APPEND_RESP:
		msgpack_pack_map(&pk, 4);
		wire_key_bool(&pk, LINK_ARESP_SUCCESS, m->success);
		wire_key_u64(&pk, LINK_ARESP_MATCH, m->match_lsn);
		wire_key_u64(&pk, LINK_ARESP_HINT_LSN, m->hint_lsn);
		wire_key_u64(&pk, LINK_ARESP_HINT_EPOCH, m->hint_epoch);
		break;
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		msgpack_pack_map(&pk, m->type == RAFT_MSG_VOTE ? 3 : 2);
		wire_key_u64(&pk, LINK_VOTE_LAST_LSN, m->last_lsn);
		wire_key_u64(&pk, LINK_VOTE_LAST_EPOCH, m->last_epoch);
		if (m->type == RAFT_MSG_VOTE)
			wire_key_bool(&pk, LINK_VOTE_FORCE, m->force);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		msgpack_pack_map(&pk, 1);
		wire_key_bool(&pk, LINK_VRESP_GRANTED, m->success);
		break;
	case RAFT_MSG_HEARTBEAT:
		msgpack_pack_map(&pk, 2);
		wire_key_u64(&pk, LINK_HB_COMMIT, m->commit);
		wire_key_u64(&pk, LINK_HB_CTX, m->ctx);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		msgpack_pack_map(&pk, 1);
		wire_key_u64(&pk, LINK_HBRESP_CTX, m->ctx);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		msgpack_pack_map(&pk, 0);
		break;
	}
	append_crc(out);
	if (out->oom) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory encoding a message");
		goto out;
	}
	if (out->len > max) {
		rc = st_seterr(err, ST_ETOOBIG, "a %zu-byte message is above the %zu-byte limit",
		               out->len, max);
		goto out;
	}
out:
	st_buf_free(&ents);
	if (n_sent)
		*n_sent = rc == ST_OK ? n : 0;
	return rc;
}

/* ---- decoding ------------------------------------------------------------ */


void link_decoded_init(struct link_decoded *d)
{
	memset(d, 0, sizeof *d);
	msgpack_unpacked_init(&d->up);
}

void link_decoded_fini(struct link_decoded *d)
{
	msgpack_unpacked_destroy(&d->up);
	free(d->entries);
	memset(d, 0, sizeof *d);
}

static const char *type_name(uint64_t t)
{
	static const char *const names[] = {"?",           "APPEND",        "APPEND_RESP",
	                                    "PREVOTE",     "PREVOTE_RESP",  "VOTE",
	                                    "VOTE_RESP",   "HEARTBEAT",     "HEARTBEAT_RESP",
	                                    "TIMEOUT_NOW", "SEGMENT_FETCH", "SEGMENT_DATA"};
	return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* Required fields: absent is ST_EPROTO too. */
static int need_u64(const msgpack_object *map, const char *in, uint32_t key, const char *name,
                    uint64_t *v, struct st_err *err)
{
	int rc = wire_field_u64(map, in, key, name, v, err);
	if (rc == 0)
		return st_seterr(err, ST_EPROTO, "key %u (%s) of %s is missing", key, name, in);
	return rc < 0 ? rc : ST_OK;
}

static int need_bool(const msgpack_object *map, const char *in, uint32_t key, const char *name,
                     bool *v, struct st_err *err)
{
	int rc = wire_field_bool(map, in, key, name, v, err);
	if (rc == 0)
		return st_seterr(err, ST_EPROTO, "key %u (%s) of %s is missing", key, name, in);
	return rc < 0 ? rc : ST_OK;
}

/* A bin of exactly want bytes (want 0: any length); absent -> 0 when optional. */
static int get_bin(const msgpack_object *map, const char *in, uint32_t key, const char *name,
                   size_t want, bool required, const void **p, size_t *len, struct st_err *err)
{
	const msgpack_object *o = wire_get(map, key);
	if (!o) {
		if (required)
			return st_seterr(err, ST_EPROTO, "key %u (%s) of %s is missing", key, name,
			                 in);
		return 0;
	}
	if (o->type != MSGPACK_OBJECT_BIN)
		return st_seterr(err, ST_EPROTO, "key %u (%s) of %s is a %s, expected bin", key,
		                 name, in, wire_obj_type_name(o));
	if (want && o->via.bin.size != want)
		return st_seterr(err, ST_EPROTO, "key %u (%s) of %s is %u bytes, expected %zu", key,
		                 name, in, o->via.bin.size, want);
	*p = o->via.bin.ptr;
	*len = o->via.bin.size;
	return 1;
}

/* The envelope of a decoded message. */
struct env {
	uint64_t from;              /* key 2 */
	uint64_t epoch;             /* key 4 */
	uint64_t type;              /* key 5 */
	const msgpack_object *body; /* key 6, a map */
};

/*
 * Check the CRC, parse buf into d->up and check the envelope: version 1,
 * cluster, to == self, a known type. The body is left to the caller.
 */
static int parse_envelope(const uint8_t *p, size_t len, const uint8_t cluster[LINK_CLUSTER_LEN],
                          uint64_t self, struct link_decoded *d, struct env *e, struct st_err *err)
{
	size_t off = 0, end = 0;
	uint64_t version = 0, to = 0;
	const void *cl = NULL;
	size_t cl_len = 0;
	int rc;
	if (len < 1 + CRC_PAIR_LEN || p[0] < 0x81 || p[0] > 0x8f || p[len - 6] != LINK_ENV_CRC ||
	    p[len - 5] != 0xce)
		return st_seterr(err, ST_ECORRUPT,
		                 "message of %zu bytes does not end in its CRC "
		                 "(key 7, uint32)",
		                 len);
	uint32_t want = (uint32_t)st_get_be(p + len - 4, 4);
	uint32_t got = message_crc(p, len - CRC_PAIR_LEN);
	if (want != got)
		return st_seterr(err, ST_ECORRUPT,
		                 "message of %zu bytes fails its CRC32C "
		                 "(carried %08x, computed %08x)",
		                 len, want, got);
	if (!wire_walk(p, len, &end) || end != len)
		return st_seterr(err, ST_EPROTO, "message of %zu bytes is not one msgpack value",
		                 len);
	msgpack_unpacked_destroy(&d->up);
	msgpack_unpacked_init(&d->up);
	if (msgpack_unpack_next(&d->up, (const char *)p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    off != len)
		return st_seterr(err, ST_EPROTO, "message of %zu bytes is not msgpack", len);
	const msgpack_object *root = &d->up.data;
	if (root->type != MSGPACK_OBJECT_MAP)
		return st_seterr(err, ST_EPROTO, "message is not a map");
	if ((rc = need_u64(root, "the envelope", LINK_ENV_VERSION, "version", &version, err)))
		return rc;
	if (version != LINK_VERSION)
		return st_seterr(err, ST_EVERSION,
		                 "replication protocol version %llu, this node "
		                 "speaks %d",
		                 (unsigned long long)version, LINK_VERSION);
	rc = get_bin(root, "the envelope", LINK_ENV_CLUSTER, "cluster", LINK_CLUSTER_LEN, true, &cl,
	             &cl_len, err);
	if (rc < 0)
		return rc;
	if (memcmp(cl, cluster, LINK_CLUSTER_LEN) != 0)
		return st_seterr(err, ST_EINVAL, "message of another cluster");
	if ((rc = need_u64(root, "the envelope", LINK_ENV_FROM, "from", &e->from, err)) ||
	    (rc = need_u64(root, "the envelope", LINK_ENV_TO, "to", &to, err)) ||
	    (rc = need_u64(root, "the envelope", LINK_ENV_EPOCH, "epoch", &e->epoch, err)) ||
	    (rc = need_u64(root, "the envelope", LINK_ENV_TYPE, "type", &e->type, err)))
		return rc;
	if (to != self)
		return st_seterr(err, ST_EINVAL, "message for node %llu, this is node %llu",
		                 (unsigned long long)to, (unsigned long long)self);
	if (e->from == 0 || e->from == self)
		return st_seterr(err, ST_EPROTO, "message from node %llu to node %llu",
		                 (unsigned long long)e->from, (unsigned long long)self);
	if (!type_is_known((int)e->type) && e->type != LINK_SEG_FETCH && e->type != LINK_SEG_DATA &&
	    e->type != LINK_KEEPALIVE)
		return st_seterr(err, ST_EPROTO, "unknown message type %llu",
		                 (unsigned long long)e->type);
	e->body = wire_get(root, LINK_ENV_BODY);
	if (!e->body || e->body->type != MSGPACK_OBJECT_MAP)
		return st_seterr(err, ST_EPROTO, "message body (key 6) is %s, expected a map",
		                 wire_obj_type_name(e->body));
	return ST_OK;
}

static int decode_entries(const msgpack_object *arr, struct raft_msg *m, struct link_decoded *d,
                          struct st_err *err)
{
	uint32_t n = arr->via.array.size;
	uint64_t prev_epoch = m->prev_epoch;
	int rc;
	if (n > d->cap) {
		struct raft_entry *e = realloc(d->entries, n * sizeof *e);
		if (!e)
			return st_seterr(err, ST_ENOMEM, "out of memory decoding %u entries", n);
		d->entries = e;
		d->cap = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *o = &arr->via.array.ptr[i];
		struct raft_entry *e = &d->entries[i];
		const void *h = NULL;
		size_t hl = 0;
		memset(e, 0, sizeof *e);
		if (o->type != MSGPACK_OBJECT_MAP)
			return st_seterr(err, ST_EPROTO,
			                 "entry %u of APPEND is a %s, expected a map", i,
			                 wire_obj_type_name(o));
		if ((rc = need_u64(o, "an entry", LINK_ENT_LSN, "LSN", &e->lsn, err)) ||
		    (rc = need_u64(o, "an entry", LINK_ENT_EPOCH, "epoch", &e->epoch, err)))
			return rc;
		rc = get_bin(o, "an entry", LINK_ENT_HASH, "chain hash", RAFT_HASH_LEN, true, &h,
		             &hl, err);
		if (rc < 0)
			return rc;
		memcpy(e->hash, h, RAFT_HASH_LEN);
		rc =
		    get_bin(o, "an entry", LINK_ENT_DATA, "data", 0, false, &e->data, &e->len, err);
		if (rc < 0)
			return rc;
		if (e->len == 0)
			e->data = NULL; /* an empty bin is a no-op, as an absent one */
		if ((rc = wire_field_bool(o, "an entry", LINK_ENT_MORE, "more", &e->more, err)) < 0)
			return rc;
		if (e->lsn != m->prev_lsn + 1 + i)
			return st_seterr(
			    err, ST_EPROTO, "entry %u of APPEND has LSN %llu, expected %llu", i,
			    (unsigned long long)e->lsn, (unsigned long long)(m->prev_lsn + 1 + i));
		if (e->epoch < prev_epoch || e->epoch > m->epoch || e->epoch == 0)
			return st_seterr(err, ST_EPROTO,
			                 "entry %llu of APPEND has epoch %llu, out of "
			                 "order (previous %llu, message %llu)",
			                 (unsigned long long)e->lsn, (unsigned long long)e->epoch,
			                 (unsigned long long)prev_epoch,
			                 (unsigned long long)m->epoch);
		prev_epoch = e->epoch;
	}
	m->entries = n ? d->entries : NULL;
	m->n_entries = n;
	return ST_OK;
}

int link_decode(const void *buf, size_t len, const uint8_t cluster[LINK_CLUSTER_LEN], uint64_t self,
                struct raft_msg *m, struct link_decoded *d, struct st_err *err)
{
	struct env e = {0};
	int rc;
	memset(m, 0, sizeof *m);
	if ((rc = parse_envelope(buf, len, cluster, self, d, &e, err)) != ST_OK)
		return rc;
	if (e.type == LINK_KEEPALIVE) {
		m->from = e.from; /* type 0: not a message of the core */
		m->to = self;
		return ST_OK;
	}
	if (!type_is_known((int)e.type))
		return st_seterr(err, ST_EPROTO, "message type %llu (%s) on a peer link",
		                 (unsigned long long)e.type, type_name(e.type));
	const char *in = type_name(e.type);
	const msgpack_object *b = e.body;
	m->type = (enum raft_msg_type)e.type;
	m->from = e.from;
	m->to = self;
	m->epoch = e.epoch;
	switch (m->type) {
	case RAFT_MSG_APPEND: {
		const void *h = NULL;
		size_t hl = 0;
		const msgpack_object *arr = NULL;
		if ((rc = need_u64(b, in, LINK_APPEND_PREV_LSN, "prev LSN", &m->prev_lsn, err)) ||
		    (rc = need_u64(b, in, LINK_APPEND_PREV_EPOCH, "prev epoch", &m->prev_epoch,
		                   err)) ||
		    (rc = need_u64(b, in, LINK_APPEND_COMMIT, "commit LSN", &m->commit, err)))
			return rc;
		rc = get_bin(b, in, LINK_APPEND_PREV_HASH, "prev hash", RAFT_HASH_LEN, true, &h,
		             &hl, err);
		if (rc < 0)
			return rc;
		memcpy(m->prev_hash, h, RAFT_HASH_LEN);
		rc = wire_field_array(b, in, LINK_APPEND_ENTRIES, "entries", &arr, err);
		if (rc == 0)
			return st_seterr(err, ST_EPROTO, "key 3 (entries) of APPEND is missing");
		if (rc < 0)
			return rc;
		if (m->prev_epoch > m->epoch || (m->prev_lsn == 0 && m->prev_epoch != 0))
			return st_seterr(err, ST_EPROTO,
			                 "APPEND's prev epoch %llu at LSN %llu is not "
			                 "possible in epoch %llu",
			                 (unsigned long long)m->prev_epoch,
			                 (unsigned long long)m->prev_lsn,
			                 (unsigned long long)m->epoch);
		if (m->prev_lsn > UINT64_MAX - arr->via.array.size)
			return st_seterr(err, ST_EPROTO, "APPEND's LSNs overflow");
		if ((rc = decode_entries(arr, m, d, err)) != ST_OK)
			return rc;
		break;
	}
	case RAFT_MSG_APPEND_RESP:
		if ((rc = need_bool(b, in, LINK_ARESP_SUCCESS, "success", &m->success, err)) ||
		    (rc = need_u64(b, in, LINK_ARESP_MATCH, "match LSN", &m->match_lsn, err)) ||
		    (rc = need_u64(b, in, LINK_ARESP_HINT_LSN, "hint LSN", &m->hint_lsn, err)) ||
		    (rc =
		         need_u64(b, in, LINK_ARESP_HINT_EPOCH, "hint epoch", &m->hint_epoch, err)))
			return rc;
		if (m->hint_epoch > m->epoch)
			return st_seterr(err, ST_EPROTO,
			                 "APPEND_RESP's hint epoch %llu is above its "
			                 "epoch %llu",
			                 (unsigned long long)m->hint_epoch,
			                 (unsigned long long)m->epoch);
		break;
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		if ((rc = need_u64(b, in, LINK_VOTE_LAST_LSN, "last LSN", &m->last_lsn, err)) ||
		    (rc = need_u64(b, in, LINK_VOTE_LAST_EPOCH, "last epoch", &m->last_epoch, err)))
			return rc;
		if (m->type == RAFT_MSG_VOTE &&
		    (rc = wire_field_bool(b, in, LINK_VOTE_FORCE, "force", &m->force, err)) < 0)
			return rc;
		if (m->last_epoch > m->epoch || (m->last_lsn == 0 && m->last_epoch != 0))
			return st_seterr(err, ST_EPROTO,
			                 "%s's last epoch %llu at LSN %llu is not "
			                 "possible in epoch %llu",
			                 in, (unsigned long long)m->last_epoch,
			                 (unsigned long long)m->last_lsn,
			                 (unsigned long long)m->epoch);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		if ((rc = need_bool(b, in, LINK_VRESP_GRANTED, "granted", &m->success, err)))
			return rc;
		break;
	case RAFT_MSG_HEARTBEAT:
		if ((rc = need_u64(b, in, LINK_HB_COMMIT, "commit LSN", &m->commit, err)) ||
		    (rc = wire_field_u64(b, in, LINK_HB_CTX, "read context", &m->ctx, err)) < 0)
			return rc;
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if ((rc = wire_field_u64(b, in, LINK_HBRESP_CTX, "read context", &m->ctx, err)) < 0)
			return rc;
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		break;
	}
	return ST_OK;
}

/* ---- sockets ------------------------------------------------------------- */

/* Split tcp://HOST:PORT; the port must leave room for P .. P + 16. */
static int parse_addr(const char *a, char *host, size_t hostlen, unsigned *port, struct st_err *err)
{
	const char *colon;
	char *end;
	if (strncmp(a, "tcp://", 6) != 0 || !(colon = strrchr(a + 6, ':')) || colon == a + 6 ||
	    (size_t)(colon - (a + 6)) >= hostlen)
		return st_seterr(err, ST_EINVAL, "peer address \"%s\" is not tcp://HOST:PORT", a);
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p == 0 || p > 65535 - LINK_MAX_ID)
		return st_seterr(err, ST_EINVAL,
		                 "peer address \"%s\": the port must be 1..%d (the "
		                 "node also uses the next %d ports)",
		                 a, 65535 - LINK_MAX_ID, LINK_MAX_ID);
	memcpy(host, a + 6, (size_t)(colon - (a + 6)));
	host[colon - (a + 6)] = '\0';
	*port = (unsigned)p;
	return ST_OK;
}

static int nn_err(struct st_err *err, const char *what, const char *addr)
{
	int e = errno ? errno : EIO;
	return st_seterr(err, e, "%s %s: %s", what, addr, nn_strerror(e));
}

static void set_int(int s, int level, int opt, int v)
{
	(void)nn_setsockopt(s, level, opt, &v, sizeof v);
}

static void set_common(int s, size_t max)
{
	set_int(s, NN_SOL_SOCKET, NN_RCVMAXSIZE, max > INT_MAX ? INT_MAX : (int)max);
	set_int(s, NN_SOL_SOCKET, NN_RECONNECT_IVL, 50);
	set_int(s, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, 1000);
	set_int(s, NN_SOL_SOCKET, NN_LINGER, 100);
}

/* The index of peer id, -1 when it is not one (or was removed). n_peers
 * grows under other threads' feet (link_add_peer): a slot is filled before
 * it is counted. */
static int peer_index(const struct link *l, uint64_t id)
{
	size_t n = __atomic_load_n(&l->c.n_peers, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++)
		if (l->c.peers[i].id == id && !__atomic_load_n(&l->gone[i], __ATOMIC_ACQUIRE))
			return (int)i;
	return -1;
}

static int open_peer(struct link *l, size_t i, struct st_err *err);

int link_open(const struct link_config *c, struct link **out, struct st_err *err)
{
	int rc = ST_OK;
	char addr[LINK_ADDR_MAX + 16];
	struct link *l = calloc(1, sizeof *l);
	*out = NULL;
	if (!l)
		return st_seterr(err, ST_ENOMEM, "out of memory opening the peer links");
	l->c = *c;
	l->rep = l->wake_rx = l->wake_tx = -1;
	for (size_t i = 0; i < LINK_MAX_PEERS; i++)
		l->pair[i] = -1;
	link_decoded_init(&l->dec);
	pthread_mutex_init(&l->qmu, NULL);
	if (!l->c.max_message)
		l->c.max_message = LINK_DEFAULT_MAX_MESSAGE;
	if (!l->c.fetch_timeout_ms)
		l->c.fetch_timeout_ms = 5000;
	{ /* sequence numbers grow across restarts: they start at the wall clock's µs */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		l->send_seq = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	}
	l->c.self_address[LINK_ADDR_MAX - 1] = '\0';
	if (c->self == 0 || c->self > LINK_MAX_ID || c->n_peers > LINK_MAX_PEERS) {
		rc = st_seterr(err, ST_EINVAL, "node id %llu or %zu peers out of range (ids 1..%d)",
		               (unsigned long long)c->self, c->n_peers, LINK_MAX_ID);
		goto out;
	}
	if ((rc = parse_addr(l->c.self_address, l->host, sizeof l->host, &l->port, err)))
		goto out;
	for (size_t i = 0; i < c->n_peers; i++) {
		uint64_t id = c->peers[i].id;
		l->c.peers[i].address[LINK_ADDR_MAX - 1] = '\0';
		if (id == 0 || id > LINK_MAX_ID || id == c->self || peer_index(l, id) != (int)i) {
			rc = st_seterr(err, ST_EINVAL,
			               "peer %zu has id %llu: ids are 1..%d, distinct "
			               "and not this node's (%llu)",
			               i, (unsigned long long)id, LINK_MAX_ID,
			               (unsigned long long)c->self);
			goto out;
		}
	}
	if (!(l->seg_buf = malloc(LINK_SEG_CHUNK))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory opening the peer links");
		goto out;
	}
	/* wake: an inproc PAIR pair unique to this link */
	snprintf(addr, sizeof addr, "inproc://strata-link-%p", (void *)l);
	if ((l->wake_rx = nn_socket(AF_SP, NN_PAIR)) < 0 || nn_bind(l->wake_rx, addr) < 0 ||
	    (l->wake_tx = nn_socket(AF_SP, NN_PAIR)) < 0 || nn_connect(l->wake_tx, addr) < 0) {
		rc = nn_err(err, "cannot open the wake socket", addr);
		goto out;
	}
	set_int(l->wake_tx, NN_SOL_SOCKET, NN_LINGER, 0);
	/* segments: REP on P */
	snprintf(addr, sizeof addr, "tcp://%s:%u", l->host, l->port);
	if ((l->rep = nn_socket(AF_SP, NN_REP)) < 0) {
		rc = nn_err(err, "cannot open the segment socket for", addr);
		goto out;
	}
	set_common(l->rep, LINK_SEG_CHUNK);
	set_int(l->rep, NN_SOL_SOCKET, NN_SNDTIMEO, REPLY_TIMEOUT_MS);
	if (nn_bind(l->rep, addr) < 0) {
		rc = nn_err(err, "cannot listen for segment fetches on", addr);
		goto out;
	}
	for (size_t i = 0; i < c->n_peers; i++)
		if ((rc = open_peer(l, i, err)) != ST_OK)
			goto out;
	*out = l;
	l = NULL; /* the caller's from here on */
out:
	link_close(l);
	return rc;
}

/* Open the PAIR socket of peer i: a < b, a binds P_a + b, b connects. */
static int open_peer(struct link *l, size_t i, struct st_err *err)
{
	const struct link_peer *p = &l->c.peers[i];
	char phost[LINK_ADDR_MAX], addr[LINK_ADDR_MAX + 16];
	unsigned pport;
	bool bind = l->c.self < p->id;
	int rc;
	if ((rc = parse_addr(p->address, phost, sizeof phost, &pport, err)))
		return rc;
	if (bind)
		snprintf(addr, sizeof addr, "tcp://%s:%u", l->host, l->port + (unsigned)p->id);
	else
		snprintf(addr, sizeof addr, "tcp://%s:%u", phost, pport + (unsigned)l->c.self);
	if ((l->pair[i] = nn_socket(AF_SP, NN_PAIR)) < 0)
		return nn_err(err, "cannot open the peer socket for", addr);
	set_common(l->pair[i], l->c.max_message);
	set_int(l->pair[i], NN_SOL_SOCKET, NN_SNDTIMEO, 100);
	set_int(l->pair[i], NN_SOL_SOCKET, NN_SNDBUF, 128 << 20);
	if ((bind ? nn_bind(l->pair[i], addr) : nn_connect(l->pair[i], addr)) < 0) {
		rc = nn_err(err, bind ? "cannot listen for the peer link on"
				      : "cannot connect the peer link to",
			    addr);
		nn_close(l->pair[i]);
		l->pair[i] = -1;
		return rc;
	}
	l->opened[i] = l->last_rx[i] = now_ms();
	return ST_OK;
}

int link_add_peer(struct link *l, const struct link_peer *p, struct st_err *err)
{
	size_t n = l->c.n_peers;
	for (size_t i = 0; i < n; i++)
		if (l->c.peers[i].id == p->id)
			return st_seterr(err, ST_EINVAL, "node %llu is %s", (unsigned long long)p->id,
					 l->gone[i] ? "a removed peer (ids are never reused)"
						    : "a peer already");
	if (p->id == 0 || p->id > LINK_MAX_ID || p->id == l->c.self || n == LINK_MAX_PEERS)
		return st_seterr(err, ST_EINVAL, "node id %llu: ids are 1..%d and not this node's, "
				 "%d peers at most", (unsigned long long)p->id, LINK_MAX_ID,
				 LINK_MAX_PEERS);
	l->c.peers[n] = *p;
	l->c.peers[n].address[LINK_ADDR_MAX - 1] = '\0';
	pthread_mutex_lock(&l->qmu);
	int rc = open_peer(l, n, err);
	pthread_mutex_unlock(&l->qmu);
	if (rc == ST_OK)
		__atomic_store_n(&l->c.n_peers, n + 1, __ATOMIC_RELEASE);
	return rc;
}

void link_remove_peer(struct link *l, uint64_t id)
{
	int i = peer_index(l, id);
	if (i < 0)
		return;
	__atomic_store_n(&l->gone[i], true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&l->qmu);
	if (l->pair[i] >= 0)
		nn_close(l->pair[i]);
	l->pair[i] = -1;
	pthread_mutex_unlock(&l->qmu);
}

void link_close(struct link *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < LINK_MAX_PEERS; i++)
		if (l->pair[i] >= 0)
			nn_close(l->pair[i]);
	if (l->rep >= 0)
		nn_close(l->rep);
	if (l->wake_tx >= 0)
		nn_close(l->wake_tx);
	if (l->wake_rx >= 0)
		nn_close(l->wake_rx);
	if (l->held)
		nn_freemsg(l->held);
	for (size_t i = 0; i < LINK_MAX_PEERS; i++)
		for (size_t k = 0; k < LINK_QMAX; k++)
			st_buf_free(&l->q[i].msg[k]);
	pthread_mutex_destroy(&l->qmu);
	link_decoded_fini(&l->dec);
	free(l->seg_buf);
	free(l);
}

/* Hand queued messages of peer i to nanomsg while it takes them; qmu held. */
static void flush_locked(struct link *l, size_t i)
{
	struct link_queue *q = &l->q[i];
	while (q->n > 0) {
		struct st_buf *b = &q->msg[q->head];
		if (nn_send(l->pair[i], b->data, b->len, NN_DONTWAIT) < 0)
			break;
		count(&l->n_sent, 1);
		count(&l->bytes_sent[i], b->len);
		l->last_tx[i] = now_ms();
		q->bytes -= b->len;
		b->len = 0; /* keeps its memory for the next message */
		q->head = (q->head + 1) % LINK_QMAX;
		q->n--;
	}
}

int link_send(struct link *l, const struct raft_msg *m, link_entry_fn fn, void *ctx, size_t *n_sent)
{
	int rc = ST_OK;
	struct st_buf b = {0};
	struct st_err e;
	size_t n = 0;
	bool kick = false;
	int i = peer_index(l, m->to);
	if (i < 0 || m->from != l->c.self) {
		rc = ST_EINVAL; /* a bug of the caller: nothing to tell a user */
		goto out;
	}
	if ((rc = link_encode(l->c.cluster, m, fn, ctx,
	                      l->c.max_message - (l->c.auth ? SEAL_LEN : 0), &b, &n, &e)) != ST_OK)
		goto out;
	seal(l, &b);
	pthread_mutex_lock(&l->qmu);
	struct link_queue *q = &l->q[i];
	flush_locked(l, (size_t)i);
	if (q->n == 0 && nn_send(l->pair[i], b.data, b.len, NN_DONTWAIT) >= 0) {
		count(&l->n_sent, 1);
		count(&l->bytes_sent[i], b.len);
		l->last_tx[i] = now_ms();
	} else if (q->n < LINK_QMAX && q->bytes + b.len <= l->c.max_message) {
		struct st_buf *slot = &q->msg[(q->head + q->n) % LINK_QMAX];
		st_buf_free(slot);
		*slot = b; /* the queue's from here on */
		b = (struct st_buf){0};
		q->bytes += slot->len;
		q->n++;
		kick = true;
	} else {
		count(&l->n_dropped_send, 1);
	}
	pthread_mutex_unlock(&l->qmu);
	if (kick) /* a link_recv blocked elsewhere starts polling this peer for POLLOUT */
		(void)nn_send(l->wake_tx, "k", 1, NN_DONTWAIT);
out:
	st_buf_free(&b);
	if (n_sent)
		*n_sent = rc == ST_OK ? n : 0;
	return rc;
}

void link_wake(struct link *l)
{
	(void)nn_send(l->wake_tx, "w", 1, NN_DONTWAIT); /* a full queue wakes too */
}

void link_serve_segments(struct link *l, link_seg_read_fn fn, void *ctx)
{
	l->seg_fn = fn;
	l->seg_ctx = ctx;
}

void link_stats(const struct link *l, struct link_stats *out)
{
	memset(out, 0, sizeof *out);
	out->sent = __atomic_load_n(&l->n_sent, __ATOMIC_RELAXED);
	out->received = __atomic_load_n(&l->n_received, __ATOMIC_RELAXED);
	out->dropped_send = __atomic_load_n(&l->n_dropped_send, __ATOMIC_RELAXED);
	out->dropped_recv = __atomic_load_n(&l->n_dropped_recv, __ATOMIC_RELAXED);
	out->segments_served = __atomic_load_n(&l->n_served, __ATOMIC_RELAXED);
	out->unauthenticated = __atomic_load_n(&l->n_unauth, __ATOMIC_RELAXED);
	out->reopened = __atomic_load_n(&l->n_reopened, __ATOMIC_RELAXED);
	size_t n = __atomic_load_n(&l->c.n_peers, __ATOMIC_ACQUIRE);
	for (size_t i = 0; i < n; i++)
		out->bytes_sent[l->c.peers[i].id - 1] =
		    __atomic_load_n(&l->bytes_sent[i], __ATOMIC_RELAXED);
}

/* ---- segment transfer (§6) ------------------------------------------------ */

/* Answer one SEGMENT_FETCH on the REP socket (a bad request is dropped: the
 * requester times out). */
static void serve_one(struct link *l)
{
	void *req = NULL;
	struct link_decoded d;
	struct env e = {0};
	struct st_err err;
	struct st_buf out = {0};
	uint64_t table = 0, file = 0, off = 0, want = 0, size = 0;
	uint32_t crc = 0;
	size_t got = 0;
	int rc;
	link_decoded_init(&d);
	int n = nn_recv(l->rep, &req, NN_MSG, NN_DONTWAIT);
	if (n < 0)
		goto out;
	if (parse_envelope(req, (size_t)n, l->c.cluster, l->c.self, &d, &e, &err) != ST_OK ||
	    !authentic(l, req, (size_t)n, -1, false) ||
	    e.type != LINK_SEG_FETCH || peer_index(l, e.from) < 0 ||
	    need_u64(e.body, "SEGMENT_FETCH", LINK_FETCH_TABLE, "table", &table, &err) ||
	    need_u64(e.body, "SEGMENT_FETCH", LINK_FETCH_FILE, "file", &file, &err) ||
	    need_u64(e.body, "SEGMENT_FETCH", LINK_FETCH_OFF, "offset", &off, &err) ||
	    need_u64(e.body, "SEGMENT_FETCH", LINK_FETCH_LEN, "length", &want, &err)) {
		count(&l->n_dropped_recv, 1);
		goto out;
	}
	if (want > LINK_SEG_CHUNK)
		want = LINK_SEG_CHUNK;
	st_clearerr(&err);
	if (!l->seg_fn)
		rc = st_seterr(&err, ST_ENOTFOUND, "node %llu serves no segments",
		               (unsigned long long)l->c.self);
	else
		rc = l->seg_fn(l->seg_ctx, table, file, off, l->seg_buf, (size_t)want, &got, &size,
		               &crc, &err);
	if (rc == ST_OK && got > want)
		rc = st_seterr(&err, ST_EINVAL, "segment reader returned %zu bytes for %llu", got,
		               (unsigned long long)want);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &out, buf_write);
	pack_envelope(&pk, l->c.cluster, l->c.self, e.from, 0, LINK_SEG_DATA);
	if (rc == ST_OK) {
		msgpack_pack_map(&pk, 3);
		wire_key_bin(&pk, LINK_DATA_BYTES, l->seg_buf, got);
		wire_key_u64(&pk, LINK_DATA_SIZE, size);
		wire_key_u64(&pk, LINK_DATA_CRC, crc);
	} else {
		msgpack_pack_map(&pk, 2);
		wire_key_i64(&pk, LINK_DATA_CODE, rc);
		wire_key_str(&pk, LINK_DATA_MSG, err.msg[0] ? err.msg : st_strerror(rc));
	}
	append_crc(&out);
	seal(l, &out);
	if (!out.oom && nn_send(l->rep, out.data, out.len, 0) >= 0) {
		count(&l->n_served, 1);
		count(&l->bytes_sent[peer_index(l, e.from)], out.len); /* segments count too */
	}
out:
	if (req)
		nn_freemsg(req);
	st_buf_free(&out);
	link_decoded_fini(&d);
}

static int fsync_dir_of(const char *path, struct st_err *err)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return st_seterr(err, errno, "cannot open directory %s: %s", dir, strerror(errno));
	int rc = fsync(fd) == 0
	             ? ST_OK
	             : st_seterr(err, errno, "cannot fsync directory %s: %s", dir, strerror(errno));
	close(fd);
	return rc;
}

/* The CRC of the first *len bytes of fd (what a previous fetch left). */
static int crc_of_prefix(int fd, uint8_t *buf, uint64_t len, uint32_t *crc, const char *path,
                         struct st_err *err)
{
	uint64_t off = 0;
	*crc = 0;
	while (off < len) {
		size_t want = len - off < LINK_SEG_CHUNK ? (size_t)(len - off) : LINK_SEG_CHUNK;
		ssize_t n = pread(fd, buf, want, (off_t)off);
		if (n <= 0)
			return st_seterr(err, n < 0 ? errno : EIO, "cannot read %s at %llu: %s",
			                 path, (unsigned long long)off,
			                 n < 0 ? strerror(errno) : "short file");
		*crc = st_crc32c(*crc, buf, (size_t)n);
		off += (uint64_t)n;
	}
	return ST_OK;
}

int link_fetch_segment(struct link *l, uint64_t peer, uint64_t table, uint64_t file,
                       uint64_t want_size, uint32_t want_crc, const char *dest_path,
                       struct st_err *err)
{
	int rc = ST_OK, fd = -1, s = -1;
	bool keep_tmp = false;
	char tmp[PATH_MAX];
	uint8_t *buf = NULL;
	void *reply = NULL;
	struct st_buf req = {0};
	struct link_decoded d;
	uint64_t off = 0;
	uint32_t crc = 0;
	struct stat st;
	link_decoded_init(&d);
	int i = peer_index(l, peer);
	if (i < 0) {
		rc = st_seterr(err, ST_EINVAL, "node %llu is not a peer", (unsigned long long)peer);
		goto out;
	}
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dest_path) >= sizeof tmp) {
		rc = st_seterr(err, ST_EINVAL, "segment path %s is too long", dest_path);
		goto out;
	}
	if (!(buf = malloc(LINK_SEG_CHUNK))) {
		rc = st_seterr(err, ST_ENOMEM, "out of memory fetching a segment");
		goto out;
	}
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || fstat(fd, &st) < 0) {
		rc = st_seterr(err, errno, "cannot open %s: %s", tmp, strerror(errno));
		goto out;
	}
	off = (uint64_t)st.st_size;
	bool any = want_size == LINK_SIZE_ANY; /* learnt from the first reply */
	if (off > want_size || any) {
		if (ftruncate(fd, 0) < 0) {
			rc = st_seterr(err, errno, "cannot truncate %s: %s", tmp, strerror(errno));
			goto out;
		}
		off = 0;
	}
	if ((rc = crc_of_prefix(fd, buf, off, &crc, tmp, err)) != ST_OK)
		goto out;
	/* the REQ socket: the peer's REP is its address's port itself */
	if ((s = nn_socket(AF_SP, NN_REQ)) < 0) {
		rc = nn_err(err, "cannot open a segment socket for", l->c.peers[i].address);
		goto out;
	}
	/* a reply is a chunk and its envelope, whatever max_message says */
	set_common(s, l->c.max_message > LINK_SEG_CHUNK + 4096 ? l->c.max_message
	                                                       : LINK_SEG_CHUNK + 4096);
	set_int(s, NN_SOL_SOCKET, NN_RCVTIMEO, l->c.fetch_timeout_ms);
	set_int(s, NN_SOL_SOCKET, NN_SNDTIMEO, l->c.fetch_timeout_ms);
	set_int(s, NN_SOL_SOCKET, NN_LINGER, 0);
	if (nn_connect(s, l->c.peers[i].address) < 0) {
		rc = nn_err(err, "cannot connect for segments to", l->c.peers[i].address);
		goto out;
	}
	do {
		msgpack_packer pk;
		struct env e = {0};
		const void *bytes = NULL;
		size_t nbytes = 0;
		uint64_t psize = 0, pcrc = 0;
		int64_t code = 0;
		struct st_err pe = {0};
		uint64_t ask = want_size - off < LINK_SEG_CHUNK ? want_size - off : LINK_SEG_CHUNK;
		req.len = 0;
		msgpack_packer_init(&pk, &req, buf_write);
		pack_envelope(&pk, l->c.cluster, l->c.self, peer, 0, LINK_SEG_FETCH);
		msgpack_pack_map(&pk, 4);
		wire_key_u64(&pk, LINK_FETCH_TABLE, table);
		wire_key_u64(&pk, LINK_FETCH_FILE, file);
		wire_key_u64(&pk, LINK_FETCH_OFF, off);
		wire_key_u64(&pk, LINK_FETCH_LEN, ask);
		append_crc(&req);
		seal(l, &req);
		if (req.oom) {
			rc = st_seterr(err, ST_ENOMEM, "out of memory fetching a segment");
			goto out;
		}
		int n;
		if (nn_send(s, req.data, req.len, 0) < 0 ||
		    (n = nn_recv(s, &reply, NN_MSG, 0)) < 0) {
			keep_tmp = true;
			rc = st_seterr(err, ST_EUNAVAIL,
			               "segment %llu/%llu: no reply from node %llu "
			               "(%s) within %d ms at offset %llu: %s",
			               (unsigned long long)table, (unsigned long long)file,
			               (unsigned long long)peer, l->c.peers[i].address,
			               l->c.fetch_timeout_ms, (unsigned long long)off,
			               nn_strerror(errno));
			goto out;
		}
		rc = parse_envelope(reply, (size_t)n, l->c.cluster, l->c.self, &d, &e, &pe);
		if (rc == ST_OK && !authentic(l, reply, (size_t)n, -1, false))
			rc = st_seterr(&pe, ST_ECORRUPT, "segment reply from node %llu is not "
			               "authenticated with this cluster's key", (unsigned long long)peer);
		if (rc == ST_OK && (e.type != LINK_SEG_DATA || e.from != peer))
			rc = st_seterr(&pe, ST_EPROTO, "segment reply of type %llu from node %llu",
			               (unsigned long long)e.type, (unsigned long long)e.from);
		if (rc != ST_OK)
			goto bad_reply;
		if ((rc = wire_field_i64(e.body, "SEGMENT_DATA", LINK_DATA_CODE, "code", &code,
		                         &pe)) < 0)
			goto bad_reply;
		if (rc == 1) {
			const char *msg = "";
			uint32_t mlen = 0;
			(void)wire_field_str(e.body, "SEGMENT_DATA", LINK_DATA_MSG, "msg", &msg,
			                     &mlen, NULL);
			rc = st_seterr(err, code == ST_OK ? ST_EPROTO : (int)code,
			               "node %llu cannot send segment %llu/%llu: %.*s",
			               (unsigned long long)peer, (unsigned long long)table,
			               (unsigned long long)file, (int)mlen, msg);
			goto out;
		}
		if ((rc = get_bin(e.body, "SEGMENT_DATA", LINK_DATA_BYTES, "bytes", 0, false,
		                  &bytes, &nbytes, &pe)) < 0 ||
		    (rc = need_u64(e.body, "SEGMENT_DATA", LINK_DATA_SIZE, "file size", &psize,
		                   &pe)) ||
		    (rc = need_u64(e.body, "SEGMENT_DATA", LINK_DATA_CRC, "file crc", &pcrc, &pe)))
			goto bad_reply;
		if (any) {
			want_size = psize;
			want_crc = (uint32_t)pcrc;
			ask = want_size - off < LINK_SEG_CHUNK ? want_size - off : LINK_SEG_CHUNK;
			any = false;
		}
		if (psize != want_size || pcrc != want_crc) {
			rc = st_seterr(
			    err, ST_ECORRUPT,
			    "node %llu has segment %llu/%llu as %llu bytes "
			    "with CRC32C %08llx; the log expects %llu bytes with %08x: refused",
			    (unsigned long long)peer, (unsigned long long)table,
			    (unsigned long long)file, (unsigned long long)psize,
			    (unsigned long long)pcrc, (unsigned long long)want_size, want_crc);
			goto out;
		}
		if (nbytes != ask) {
			rc = st_seterr(err, ST_ECORRUPT,
			               "node %llu sent %zu bytes of segment %llu/%llu "
			               "at offset %llu, expected %llu",
			               (unsigned long long)peer, nbytes, (unsigned long long)table,
			               (unsigned long long)file, (unsigned long long)off,
			               (unsigned long long)ask);
			goto out;
		}
		if (nbytes && pwrite(fd, bytes, nbytes, (off_t)off) != (ssize_t)nbytes) {
			rc = st_seterr(err, errno ? errno : EIO, "cannot write %s at %llu: %s", tmp,
			               (unsigned long long)off, strerror(errno ? errno : EIO));
			goto out;
		}
		crc = st_crc32c(crc, bytes, nbytes);
		off += nbytes;
		nn_freemsg(reply);
		reply = NULL;
		continue;
	bad_reply:
		rc = st_seterr(err, rc == ST_ECORRUPT ? ST_ECORRUPT : ST_EPROTO,
		               "bad segment reply from node %llu: %s", (unsigned long long)peer,
		               pe.msg);
		goto out;
	} while (off < want_size);
	if (crc != want_crc) {
		rc = st_seterr(err, ST_ECORRUPT,
		               "segment %llu/%llu from node %llu has CRC32C %08x, "
		               "expected %08x: refused",
		               (unsigned long long)table, (unsigned long long)file,
		               (unsigned long long)peer, crc, want_crc);
		goto out;
	}
	if (fsync(fd) < 0) {
		rc = st_seterr(err, errno, "cannot fsync %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (rename(tmp, dest_path) < 0) {
		rc = st_seterr(err, errno, "cannot rename %s to %s: %s", tmp, dest_path,
		               strerror(errno));
		goto out;
	}
	keep_tmp = true; /* renamed: nothing to remove */
	rc = fsync_dir_of(dest_path, err);
out:
	if (fd >= 0)
		close(fd);
	if (fd >= 0 && rc != ST_OK && !keep_tmp)
		unlink(tmp);
	if (s >= 0)
		nn_close(s);
	if (reply)
		nn_freemsg(reply);
	st_buf_free(&req);
	link_decoded_fini(&d);
	free(buf);
	return rc;
}

/* ---- receiving ------------------------------------------------------------ */


/* Keepalives for links that have been quiet, and a fresh socket for a
 * link that has heard nothing for LINK_DEAD_MS (see LINK_DEAD_MS). */
static void check_liveness(struct link *l)
{
	int64_t now = now_ms();
	for (size_t i = 0; i < l->c.n_peers; i++) {
		if (l->gone[i])
			continue;
		if (now - l->last_rx[i] >= LINK_DEAD_MS && now - l->opened[i] >= LINK_DEAD_MS) {
			pthread_mutex_lock(&l->qmu);
			if (l->pair[i] >= 0)
				nn_close(l->pair[i]);
			l->pair[i] = -1;
			struct st_err err;
			if (open_peer(l, i, &err) != ST_OK)
				l->opened[i] = now; /* try again later */
			else
				count(&l->n_reopened, 1);
			pthread_mutex_unlock(&l->qmu);
		}
		if (l->pair[i] >= 0 && now - l->last_tx[i] >= LINK_KEEPALIVE_MS) {
			struct st_buf b = {0};
			msgpack_packer pk;
			msgpack_packer_init(&pk, &b, buf_write);
			pack_envelope(&pk, l->c.cluster, l->c.self, l->c.peers[i].id, 0, LINK_KEEPALIVE);
			msgpack_pack_map(&pk, 0);
			append_crc(&b);
			seal(l, &b);
			pthread_mutex_lock(&l->qmu);
			/* Sent or not (a busy or absent pipe): the next one in an interval. */
			if (!b.oom && l->q[i].n == 0)
				(void)nn_send(l->pair[i], b.data, b.len, NN_DONTWAIT);
			l->last_tx[i] = now;
			pthread_mutex_unlock(&l->qmu);
			st_buf_free(&b);
		}
	}
}

int link_recv(struct link *l, int timeout_ms, struct raft_msg *m)
{
	struct nn_pollfd fds[2 + LINK_MAX_PEERS];
	int nfds = 2 + (int)l->c.n_peers;
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	if (l->held) {
		nn_freemsg(l->held);
		l->held = NULL;
	}
	fds[0] = (struct nn_pollfd){.fd = l->wake_rx, .events = NN_POLLIN};
	fds[1] = (struct nn_pollfd){.fd = l->rep, .events = NN_POLLIN};
	for (;;) {
		check_liveness(l);
		pthread_mutex_lock(&l->qmu);
		for (size_t i = 0; i < l->c.n_peers; i++) {
			flush_locked(l, i);
			/* A link being reopened (its socket -1) is not polled. */
			fds[2 + i] = (struct nn_pollfd){
			    .fd = l->pair[i] >= 0 ? l->pair[i] : l->wake_rx,
			    .events = l->pair[i] >= 0
					  ? (short)(NN_POLLIN | (l->q[i].n ? NN_POLLOUT : 0))
					  : 0};
		}
		pthread_mutex_unlock(&l->qmu);
		int wait = timeout_ms < 0 ? -1 : 0;
		if (timeout_ms > 0) {
			int64_t left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		int n = nn_poll(fds, nfds, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		if (fds[0].revents & NN_POLLIN) {
			/* "w" from link_wake returns; "k" from link_send only re-polls */
			void *w = NULL;
			bool woken = false;
			int len;
			while ((len = nn_recv(l->wake_rx, &w, NN_MSG, NN_DONTWAIT)) >= 0) {
				woken |= len > 0 && *(const char *)w == 'w';
				nn_freemsg(w);
			}
			if (woken)
				return 0;
		}
		if (fds[1].revents & NN_POLLIN)
			serve_one(l);
		for (int k = 2; k < nfds; k++) {
			if (!(fds[k].revents & NN_POLLIN))
				continue;
			void *msg = NULL;
			struct st_err err;
			int len = nn_recv(fds[k].fd, &msg, NN_MSG, NN_DONTWAIT);
			if (len < 0)
				continue;
			if (link_decode(msg, (size_t)len, l->c.cluster, l->c.self, m, &l->dec,
			                &err) != ST_OK ||
			    m->from != l->c.peers[k - 2].id ||
			    !authentic(l, msg, (size_t)len, k - 2, true)) {
				count(&l->n_dropped_recv, 1);
				nn_freemsg(msg);
				continue;
			}
			l->last_rx[k - 2] = now_ms();
			if (m->type == 0) { /* a keepalive */
				nn_freemsg(msg);
				continue;
			}
			l->held = msg;
			count(&l->n_received, 1);
			return 1;
		}
		if (timeout_ms == 0)
			return 0;
	}
}
