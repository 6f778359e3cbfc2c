/*
 * tests/unit/test_link.c — the replication transport (replication/link.h):
 * the codec on every message type and on hostile bytes (every truncation,
 * random flips, crafted messages with a valid CRC), then real links on
 * loopback (ports 7600-7699): three nodes talking, drops that are counted
 * and never returned, link_wake, and segment fetches with their checks.
 */
#include "replication/link.h"
#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/pair.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

#include "format/crc32c.h"
#include "format/wire.h"

static const uint8_t CLUSTER[LINK_CLUSTER_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                  9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t OTHER[LINK_CLUSTER_LEN] = {9};

/* ---- helpers ------------------------------------------------------------- */

/* Entry bytes "from the store": lsn repeated, lsn * 10 bytes. */
static int store_entry(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err)
{
	int *calls = ctx;
	(void)err;
	if (calls)
		(*calls)++;
	for (uint64_t i = 0; i < lsn * 10; i++)
		st_buf_u8(out, (uint8_t)lsn);
	return ST_OK;
}

static int failing_entry(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err)
{
	(void)ctx;
	(void)out;
	return st_seterr(err, ST_ENOTFOUND, "no entry %llu", (unsigned long long)lsn);
}

static const char PAYLOAD[] = "the commit record of LSN 12";

/* An APPEND 1 -> 2 in epoch 7 after LSN 10: a no-op, literal bytes, bytes
 * from store_entry (LSN 13, 130 bytes). */
static struct raft_entry ents[3];
static struct raft_msg make_append(void)
{
	memset(ents, 0, sizeof ents);
	for (int i = 0; i < 3; i++) {
		ents[i].lsn = 11 + (uint64_t)i;
		ents[i].epoch = i == 0 ? 6 : 7;
		memset(ents[i].hash, 0xa0 + i, RAFT_HASH_LEN);
	}
	ents[1].data = PAYLOAD;
	ents[1].len = sizeof PAYLOAD;
	ents[2].len = 130; /* data NULL: store_entry */
	struct raft_msg m = {
	    .type = RAFT_MSG_APPEND,
	    .epoch = 7,
	    .from = 1,
	    .to = 2,
	    .prev_lsn = 10,
	    .prev_epoch = 5,
	    .entries = ents,
	    .n_entries = 3,
	    .commit = 9,
	};
	memset(m.prev_hash, 0x5c, RAFT_HASH_LEN);
	return m;
}

static bool same_append(const struct raft_msg *a, const struct raft_msg *b)
{
	if (a->type != b->type || a->epoch != b->epoch || a->from != b->from || a->to != b->to ||
	    a->prev_lsn != b->prev_lsn || a->prev_epoch != b->prev_epoch ||
	    a->commit != b->commit || memcmp(a->prev_hash, b->prev_hash, RAFT_HASH_LEN) ||
	    a->n_entries != b->n_entries)
		return false;
	for (size_t i = 0; i < a->n_entries; i++) {
		const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
		struct st_buf want = {0};
		const void *wd = x->data;
		size_t wl = x->len;
		if (!wd && wl) {
			store_entry(NULL, x->lsn, &want, NULL);
			wd = want.data;
		}
		bool ok = x->lsn == y->lsn && x->epoch == y->epoch &&
		          !memcmp(x->hash, y->hash, RAFT_HASH_LEN) && wl == y->len &&
		          (wl == 0 ? y->data == NULL : !memcmp(wd, y->data, wl));
		st_buf_free(&want);
		if (!ok)
			return false;
	}
	return true;
}

/* Recompute a message's CRC pair in place (for crafted bodies). */
static void recrc(struct st_buf *b)
{
	uint8_t h = (uint8_t)(b->data[0] - 1);
	uint32_t c = st_crc32c(st_crc32c(0, &h, 1), b->data + 1, b->len - 7);
	st_put_be(b->data + b->len - 4, 4, c);
}

static int pk_write(void *data, const char *p, size_t n)
{
	st_buf_append(data, p, n);
	return 0;
}

/*
 * A crafted message: the envelope (type, epoch 3, 2 -> 1), then a body
 * packed by body(pk) (which opens its own map), then a valid CRC pair.
 * With hash_len != 32 the body gets an APPEND with that prev-hash length.
 */
enum craft {
	CRAFT_TYPE42,
	CRAFT_NO_BODY_KEY,
	CRAFT_SHORT_HASH,
	CRAFT_GAP,
	CRAFT_BODY_ARRAY,
	CRAFT_STR_FROM,
	CRAFT_VERSION2
};
static void craft(struct st_buf *b, enum craft what)
{
	msgpack_packer pk;
	uint8_t hash[RAFT_HASH_LEN] = {0};
	b->len = 0;
	msgpack_packer_init(&pk, b, pk_write);
	msgpack_pack_map(&pk, 8);
	wire_key_u64(&pk, 0, what == CRAFT_VERSION2 ? 2 : 1);
	wire_key_bin(&pk, 1, CLUSTER, LINK_CLUSTER_LEN);
	if (what == CRAFT_STR_FROM)
		wire_key_str(&pk, 2, "two");
	else
		wire_key_u64(&pk, 2, 2);
	wire_key_u64(&pk, 3, 1);
	wire_key_u64(&pk, 4, 3);
	wire_key_u64(&pk, 5, what == CRAFT_TYPE42 ? 42 : RAFT_MSG_APPEND);
	msgpack_pack_uint32(&pk, 6);
	if (what == CRAFT_BODY_ARRAY) {
		msgpack_pack_array(&pk, 0);
	} else {
		msgpack_pack_map(&pk, what == CRAFT_NO_BODY_KEY ? 4 : 5);
		wire_key_u64(&pk, 0, 1);
		wire_key_u64(&pk, 1, 1);
		wire_key_bin(&pk, 2, hash, what == CRAFT_SHORT_HASH ? 31 : 32);
		if (what != CRAFT_NO_BODY_KEY)
			wire_key_u64(&pk, 4, 0);
		msgpack_pack_uint32(&pk, 3);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 3);
		wire_key_u64(&pk, 0, what == CRAFT_GAP ? 3 : 2);
		wire_key_u64(&pk, 1, 2);
		wire_key_bin(&pk, 2, hash, 32);
	}
	uint8_t t[6] = {7, 0xce};
	st_buf_append(b, t, 6);
	recrc(b);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_link(void *l)
{
	link_close(l);
}

static const uint8_t *open_key; /* the next open_node's cluster key (NULL: none) */

static struct link *open_node(uint64_t self, unsigned port, const uint64_t *ids,
                              const unsigned *ports, size_t n)
{
	struct link_config c = {.self = self, .n_peers = n, .fetch_timeout_ms = 2000};
	if (open_key) {
		c.auth = true;
		memcpy(c.key, open_key, sizeof c.key);
	}
	memcpy(c.cluster, CLUSTER, sizeof c.cluster);
	snprintf(c.self_address, sizeof c.self_address, "tcp://127.0.0.1:%u", port);
	for (size_t i = 0; i < n; i++) {
		c.peers[i].id = ids[i];
		snprintf(c.peers[i].address, sizeof c.peers[i].address, "tcp://127.0.0.1:%u",
		         ports[i]);
	}
	struct link *l = NULL;
	struct st_err err;
	int rc = link_open(&c, &l, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  link_open %llu: %s\n", (unsigned long long)self, err.msg);
	else
		test_defer(close_link, l);
	return l;
}

/* Send m until `to` receives it (connections come up in the background,
 * so earlier copies may be queued or lost; copies of earlier messages are
 * skipped) or 5 s pass; the received message in *got. */
static int deliver(struct link *from, struct link *to, const struct raft_msg *m,
                   struct raft_msg *got)
{
	int64_t end = mono_ms() + 5000;
	while (mono_ms() < end) {
		size_t n = 0;
		int rc = link_send(from, m, store_entry, NULL, &n);
		if (rc != ST_OK)
			return rc;
		while ((rc = link_recv(to, 100, got)) == 1)
			if (got->type == m->type && got->epoch == m->epoch &&
			    got->from == m->from && got->n_entries == m->n_entries)
				return 1;
		if (rc < 0)
			return rc;
		link_recv(from, 0, got); /* the sender's queue goes out in its poll */
	}
	return 0;
}

/* ---- codec --------------------------------------------------------------- */

static void t_roundtrip_every_type(void)
{
	struct st_buf b = {0};
	struct link_decoded d;
	struct st_err err;
	struct raft_msg got;
	link_decoded_init(&d);
	for (int t = RAFT_MSG_APPEND; t <= RAFT_MSG_TIMEOUT_NOW; t++) {
		struct raft_msg m = make_append();
		m.type = (enum raft_msg_type)t;
		if (t != RAFT_MSG_APPEND) {
			struct raft_msg o = {.type = m.type, .epoch = 9, .from = 1, .to = 2};
			o.success = t == RAFT_MSG_APPEND_RESP || t == RAFT_MSG_VOTE_RESP;
			o.match_lsn = t == RAFT_MSG_APPEND_RESP ? 44 : 0;
			o.hint_lsn = t == RAFT_MSG_APPEND_RESP ? 40 : 0;
			o.hint_epoch = t == RAFT_MSG_APPEND_RESP ? 8 : 0;
			o.last_lsn = t == RAFT_MSG_VOTE || t == RAFT_MSG_PREVOTE ? 77 : 0;
			o.last_epoch = t == RAFT_MSG_VOTE || t == RAFT_MSG_PREVOTE ? 8 : 0;
			o.force = t == RAFT_MSG_VOTE;
			o.commit = t == RAFT_MSG_HEARTBEAT ? 31 : 0;
			o.ctx = t == RAFT_MSG_HEARTBEAT		? 0x123456789abcULL
				: t == RAFT_MSG_HEARTBEAT_RESP ? 0x1234567ULL
							       : 0;
			m = o;
		}
		int calls = 0;
		size_t n = 99;
		int rc = link_encode(CLUSTER, &m, store_entry, &calls, 1u << 20, &b, &n, &err);
		CHECK(rc == ST_OK);
		CHECK(n == m.n_entries);
		CHECK(calls == (t == RAFT_MSG_APPEND ? 1 : 0));
		rc = link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  type %d: %s\n", t, err.msg);
		CHECK(rc == ST_OK);
		if (t == RAFT_MSG_APPEND) {
			CHECK(same_append(&m, &got));
			CHECK(got.entries[0].data == NULL && got.entries[0].len == 0);
		} else {
			CHECK(got.type == m.type && got.epoch == m.epoch && got.from == 1 &&
			      got.to == 2);
			CHECK(got.success == m.success && got.match_lsn == m.match_lsn &&
			      got.hint_lsn == m.hint_lsn && got.hint_epoch == m.hint_epoch);
			CHECK(got.last_lsn == m.last_lsn && got.last_epoch == m.last_epoch &&
			      got.force == m.force && got.commit == m.commit && got.n_entries == 0);
			CHECK(got.ctx == m.ctx);
		}
	}
	/* an APPEND without entries (a probe) */
	struct raft_msg m = make_append();
	m.n_entries = 0;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_OK);
	CHECK(same_append(&m, &got) && got.entries == NULL);
	/* the entry function's error is the send's */
	m = make_append();
	CHECK(link_encode(CLUSTER, &m, failing_entry, NULL, 1u << 20, &b, NULL, &err) ==
	      ST_ENOTFOUND);
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_EINVAL);
	m.type = (enum raft_msg_type)12;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_EINVAL);
	st_buf_free(&b);
	link_decoded_fini(&d);
}

static void t_prefix_within_max(void)
{
	struct st_buf b = {0};
	struct link_decoded d;
	struct st_err err;
	struct raft_msg got;
	struct raft_entry big[10];
	static uint8_t data[1000];
	link_decoded_init(&d);
	memset(big, 0, sizeof big);
	for (int i = 0; i < 10; i++) {
		big[i].lsn = 1 + (uint64_t)i;
		big[i].epoch = 1;
		big[i].data = data;
		big[i].len = sizeof data;
	}
	struct raft_msg m = {.type = RAFT_MSG_APPEND,
	                     .epoch = 1,
	                     .from = 1,
	                     .to = 2,
	                     .entries = big,
	                     .n_entries = 10};
	size_t n = 0;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 3500, &b, &n, &err) == ST_OK);
	CHECK(n == 3);
	CHECK(b.len <= 3500);
	CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_OK);
	CHECK(got.n_entries == 3 && got.entries[2].lsn == 3 && got.entries[2].len == 1000);
	/* exactly at the limit: the same bytes fit a max of b.len */
	size_t exact = b.len;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, exact, &b, &n, &err) == ST_OK && n == 3);
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, exact - 1, &b, &n, &err) == ST_OK && n == 2);
	/* the first entry alone is too big */
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 900, &b, &n, &err) == ST_ETOOBIG);
	CHECK(n == 0);
	CHECK(strstr(err.msg, "entry 1") != NULL);
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 20, &b, &n, &err) == ST_ETOOBIG);
	/* Entries 2-4 are one atomic unit: a cut after 3 entries backs off to
	 * the last whole unit (1 entry); the flag crosses the wire. */
	big[1].more = big[2].more = true;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 3500, &b, &n, &err) == ST_OK);
	CHECK(n == 1);
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 4600, &b, &n, &err) == ST_OK);
	CHECK(n == 4);
	CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_OK);
	CHECK(got.n_entries == 4 && !got.entries[0].more && got.entries[1].more &&
	      got.entries[2].more && !got.entries[3].more);
	/* A unit from the first entry on that does not fit: refused whole. */
	big[0].more = true;
	CHECK(link_encode(CLUSTER, &m, NULL, NULL, 3500, &b, &n, &err) == ST_ETOOBIG);
	CHECK(strstr(err.msg, "atomic unit") != NULL);
	st_buf_free(&b);
	link_decoded_fini(&d);
}

static void t_crc_cluster_to(void)
{
	struct st_buf b = {0};
	struct link_decoded d;
	struct st_err err;
	struct raft_msg got, m = make_append();
	link_decoded_init(&d);
	REQUIRE(link_encode(CLUSTER, &m, store_entry, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	for (size_t i = 0; i < b.len; i += 7) {
		b.data[i] ^= 0x10;
		CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_ECORRUPT);
		b.data[i] ^= 0x10;
	}
	CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_OK);
	CHECK(link_decode(b.data, b.len, OTHER, 2, &got, &d, &err) == ST_EINVAL);
	CHECK(strstr(err.msg, "cluster") != NULL);
	CHECK(link_decode(b.data, b.len, CLUSTER, 3, &got, &d, &err) == ST_EINVAL);
	CHECK(strstr(err.msg, "for node 2") != NULL);
	/* another cluster's encoding is refused by this one */
	REQUIRE(link_encode(OTHER, &m, store_entry, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(link_decode(b.data, b.len, CLUSTER, 2, &got, &d, &err) == ST_EINVAL);
	st_buf_free(&b);
	link_decoded_fini(&d);
}

static void t_crafted_invalid(void)
{
	struct st_buf b = {0};
	struct link_decoded d;
	struct st_err err;
	struct raft_msg got;
	link_decoded_init(&d);
	static const struct {
		enum craft what;
		int rc;
		const char *msg;
	} cases[] = {
	    {CRAFT_TYPE42, ST_EPROTO, "type 42"},
	    {CRAFT_NO_BODY_KEY, ST_EPROTO, "commit LSN"},
	    {CRAFT_SHORT_HASH, ST_EPROTO, "31 bytes"},
	    {CRAFT_GAP, ST_EPROTO, "expected 2"},
	    {CRAFT_BODY_ARRAY, ST_EPROTO, "body"},
	    {CRAFT_STR_FROM, ST_EPROTO, "from"},
	    {CRAFT_VERSION2, ST_EVERSION, "version 2"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		craft(&b, cases[i].what);
		int rc = link_decode(b.data, b.len, CLUSTER, 1, &got, &d, &err);
		CHECK(rc == cases[i].rc);
		if (rc != cases[i].rc || !strstr(err.msg, cases[i].msg))
			fprintf(stderr, "  case %zu: rc %d: %s\n", i, rc, err.msg);
		CHECK(strstr(err.msg, cases[i].msg) != NULL);
	}
	/* control: the crafted shape itself is valid */
	craft(&b, (enum craft)99);
	CHECK(link_decode(b.data, b.len, CLUSTER, 1, &got, &d, &err) == ST_OK);
	CHECK(got.n_entries == 1 && got.entries[0].lsn == 2 && got.from == 2);
	st_buf_free(&b);
	link_decoded_fini(&d);
}

static void t_truncated_and_garbage(void)
{
	struct st_buf b = {0}, c = {0};
	struct link_decoded d;
	struct st_err err;
	struct raft_msg got, m = make_append();
	link_decoded_init(&d);
	REQUIRE(link_encode(CLUSTER, &m, store_entry, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	int bad = 0;
	for (size_t len = 0; len < b.len; len++)
		bad += link_decode(b.data, len, CLUSTER, 2, &got, &d, &err) != ST_OK;
	CHECK(bad == (int)b.len);
	/* truncations with a CRC that matches what is left: still refused */
	bad = 0;
	for (size_t len = 7; len < b.len - 6; len++) {
		c.len = 0;
		st_buf_append(&c, b.data, len);
		uint8_t t[6] = {7, 0xce};
		st_buf_append(&c, t, 6);
		recrc(&c);
		bad += link_decode(c.data, c.len, CLUSTER, 2, &got, &d, &err) != ST_OK;
	}
	CHECK(bad == (int)(b.len - 13));
	/* random flips, raw (CRC fails) and re-CRCed (the validation must hold) */
	srand(7);
	int ok = 0, refused = 0;
	for (int i = 0; i < 4000; i++) {
		c.len = 0;
		st_buf_append(&c, b.data, b.len);
		int flips = 1 + rand() % 4;
		for (int k = 0; k < flips; k++)
			c.data[rand() % (c.len - 6)] ^= (uint8_t)(1u << (rand() % 8));
		if (i % 2 && c.data[0] >= 0x81 && c.data[0] <= 0x8f)
			recrc(&c);
		int rc = link_decode(c.data, c.len, CLUSTER, 2, &got, &d, &err);
		if (rc == ST_OK) {
			ok++;
			for (size_t e = 0; e < got.n_entries; e++) /* borrowed bytes are in range */
				CHECK(got.entries[e].len == 0 ||
				      ((const uint8_t *)got.entries[e].data >= c.data &&
				       (const uint8_t *)got.entries[e].data + got.entries[e].len <=
				           c.data + c.len));
			if (got.n_entries)
				CHECK(got.entries[0].lsn == got.prev_lsn + 1);
		} else {
			refused++;
		}
	}
	CHECK(refused > 2000);
	CHECK(ok + refused == 4000);
	/* pure garbage of every small length */
	for (int i = 0; i < 2000; i++) {
		uint8_t g[64];
		size_t len = (size_t)(rand() % 64);
		for (size_t k = 0; k < len; k++)
			g[k] = (uint8_t)rand();
		CHECK(link_decode(g, len, CLUSTER, 2, &got, &d, &err) != ST_OK);
	}
	/* a huge declared array behind a valid CRC must not allocate it */
	c.len = 0;
	uint8_t huge[] = {0x81, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff, 7, 0xce, 0, 0, 0, 0};
	st_buf_append(&c, huge, sizeof huge);
	recrc(&c);
	CHECK(link_decode(c.data, c.len, CLUSTER, 2, &got, &d, &err) == ST_EPROTO);
	st_buf_free(&b);
	st_buf_free(&c);
	link_decoded_fini(&d);
}

/* A real three-node core (raft.h) whose every message goes through
 * link_encode and link_decode: the codec accepts all the core produces, and
 * the cluster elects a leader and commits through it. */
#define RC_QMAX 512
static void t_core_through_codec(void)
{
	struct raft *r[4] = {0};
	const uint64_t voters[] = {1, 2, 3};
	struct st_buf q[RC_QMAX];
	uint64_t qto[RC_QMAX];
	size_t nq = 0, encoded = 0, refused = 0;
	uint64_t committed[4] = {0};
	struct link_decoded d;
	struct st_err err;
	memset(q, 0, sizeof q);
	link_decoded_init(&d);
	for (uint64_t id = 1; id <= 3; id++) {
		struct raft_config cfg = {.self = id,
		                          .voters = voters,
		                          .n_voters = 3,
		                          .election_ticks = 10,
		                          .heartbeat_ticks = 1,
		                          .seed = id * 77};
		REQUIRE(raft_new(&cfg, &r[id], &err) == ST_OK);
	}
	uint64_t leader = 0;
	int proposed = 0;
	for (int step = 0; step < 400; step++) {
		for (uint64_t id = 1; id <= 3; id++) {
			struct raft_ready rd;
			if (step % 2 == 0)
				raft_tick(r[id]);
			while (raft_ready(r[id], &rd)) {
				for (size_t i = 0; i < rd.n_msgs && nq < RC_QMAX; i++) {
					size_t n = 0;
					int rc = link_encode(CLUSTER, &rd.msgs[i], NULL, NULL,
					                     1u << 20, &q[nq], &n, &err);
					CHECK(rc == ST_OK && n == rd.msgs[i].n_entries);
					if (rc == ST_OK) {
						qto[nq++] = rd.msgs[i].to;
						encoded++;
					}
				}
				committed[id] += rd.n_committed;
				raft_advance(r[id]);
			}
		}
		for (size_t i = 0; i < nq; i++) {
			struct raft_msg m;
			if (link_decode(q[i].data, q[i].len, CLUSTER, qto[i], &m, &d, &err) !=
			    ST_OK) {
				fprintf(stderr, "  refused: %s\n", err.msg);
				refused++;
				continue;
			}
			raft_step(r[qto[i]], &m);
		}
		nq = 0;
		for (uint64_t id = 1; id <= 3; id++) {
			struct raft_status st;
			raft_status(r[id], &st);
			if (st.role == RAFT_LEADER)
				leader = id;
		}
		if (leader && proposed < 20) {
			uint8_t h[RAFT_HASH_LEN];
			char data[32];
			int len = snprintf(data, sizeof data, "commit %d", proposed);
			memset(h, proposed + 1, sizeof h);
			if (raft_propose(r[leader], data, (size_t)len, h, NULL) == ST_OK)
				proposed++;
		}
	}
	CHECK(leader != 0);
	CHECK(proposed == 20);
	CHECK(encoded > 50);
	CHECK(refused == 0);
	for (uint64_t id = 1; id <= 3; id++) {
		CHECK(committed[id] >= 21); /* the leader's no-op and the 20 proposals */
		raft_free(r[id]);
	}
	for (size_t i = 0; i < RC_QMAX; i++)
		st_buf_free(&q[i]);
	link_decoded_fini(&d);
}

/* ---- links on loopback --------------------------------------------------- */

static void t_three_nodes(void)
{
	const uint64_t ids[] = {1, 2, 3};
	const unsigned ports[] = {7600, 7617, 7634};
	struct link *l[4] = {0};
	for (int i = 0; i < 3; i++) {
		uint64_t pid[2];
		unsigned pp[2];
		size_t n = 0;
		for (int k = 0; k < 3; k++)
			if (k != i) {
				pid[n] = ids[k];
				pp[n++] = ports[k];
			}
		l[i + 1] = open_node(ids[i], ports[i], pid, pp, n);
		REQUIRE(l[i + 1] != NULL);
	}
	struct raft_msg got, m = make_append();
	CHECK(deliver(l[1], l[2], &m, &got) == 1);
	CHECK(same_append(&m, &got));
	/* every other direction: 2 -> 1 (connector to binder), 3 -> 1, 1 -> 3, 2 -> 3, 3 -> 2 */
	static const int dirs[][2] = {{2, 1}, {3, 1}, {1, 3}, {2, 3}, {3, 2}};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		struct raft_msg v = {.type = RAFT_MSG_VOTE,
		                     .epoch = 4 + i,
		                     .from = (uint64_t)dirs[i][0],
		                     .to = (uint64_t)dirs[i][1],
		                     .last_lsn = 8,
		                     .last_epoch = 3,
		                     .force = true};
		CHECK(deliver(l[dirs[i][0]], l[dirs[i][1]], &v, &got) == 1);
		CHECK(got.type == RAFT_MSG_VOTE && got.from == v.from && got.to == v.to &&
		      got.epoch == v.epoch && got.last_lsn == 8 && got.force);
	}
	/* a big APPEND (a 3 MiB entry) over an established link */
	size_t bigl = 3u << 20;
	uint8_t *big = malloc(bigl);
	REQUIRE(big != NULL);
	for (size_t i = 0; i < bigl; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	struct raft_entry be = {.lsn = 11, .epoch = 7, .data = big, .len = bigl};
	m.entries = &be;
	m.n_entries = 1;
	CHECK(deliver(l[1], l[2], &m, &got) == 1);
	CHECK(got.n_entries == 1 && got.entries[0].len == bigl &&
	      !memcmp(got.entries[0].data, big, bigl));
	free(big);
	/* a burst of 200 APPENDs of 100 KB: what nanomsg cannot take at once waits
	 * in the link's queue (64 messages) and goes out in order */
	while (link_recv(l[2], 50, &got) == 1)
		;
	struct link_stats s0, s1;
	link_stats(l[1], &s0);
	static uint8_t hundred[100 * 1000];
	struct raft_entry he = {.lsn = 11, .epoch = 7, .data = hundred, .len = sizeof hundred};
	m.entries = &he;
	m.n_entries = 1;
	for (int i = 0; i < 200; i++) {
		m.commit = 1000 + (uint64_t)i;
		CHECK(link_send(l[1], &m, NULL, NULL, NULL) == ST_OK);
	}
	uint64_t burst = 0, last_commit = 0;
	bool in_order = true;
	int64_t end = mono_ms() + 5000;
	for (;;) {
		link_stats(l[1], &s1);
		uint64_t gone = (s1.sent - s0.sent) + (s1.dropped_send - s0.dropped_send);
		if (gone == 200 && burst == s1.sent - s0.sent)
			break;
		if (mono_ms() > end)
			break;
		link_recv(l[1], 0, &got); /* flushes node 1's queue */
		if (link_recv(l[2], 20, &got) == 1 && got.type == RAFT_MSG_APPEND) {
			in_order &= got.commit > last_commit;
			last_commit = got.commit;
			burst++;
		}
	}
	CHECK(s1.sent - s0.sent + s1.dropped_send - s0.dropped_send == 200);
	CHECK(burst == s1.sent - s0.sent);
	CHECK(burst >= 65); /* the first, the queue, and whatever flushed meanwhile */
	CHECK(in_order);
	/* a peer that is not configured, and a message from self */
	struct raft_msg bad = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 9};
	CHECK(link_send(l[1], &bad, NULL, NULL, NULL) == ST_EINVAL);
	bad.to = 2;
	bad.from = 3;
	CHECK(link_send(l[1], &bad, NULL, NULL, NULL) == ST_EINVAL);
	struct link_stats st;
	link_stats(l[1], &st);
	CHECK(st.sent >= 3 && st.bytes_sent[2 - 1] > bigl); /* to node 2 */
	link_stats(l[2], &st);
	CHECK(st.received >= 3 && st.dropped_recv == 0);
	CHECK(link_recv(l[2], 0, &got) == 0 || got.type != RAFT_MSG_APPEND || got.from == 1);
}

/* Node 2 alone, its link to node 1 taken by a raw PAIR socket of the test:
 * what the raw socket sends that is wrong is counted and never returned. */
static void t_drops_counted(void)
{
	const uint64_t id1 = 1;
	const unsigned p1 = 7686;
	struct link *l = open_node(2, 7685, &id1, &p1, 1);
	REQUIRE(l != NULL);
	int raw = nn_socket(AF_SP, NN_PAIR);
	REQUIRE(raw >= 0);
	REQUIRE(nn_bind(raw, "tcp://127.0.0.1:7688") >= 0); /* P_1 + 2 */
	struct st_buf b = {0};
	struct st_err err;
	struct raft_msg got,
	    m = {.type = RAFT_MSG_HEARTBEAT, .epoch = 2, .from = 1, .to = 2, .commit = 5};
	/* wait for the connection: a valid heartbeat gets through */
	REQUIRE(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	int64_t end = mono_ms() + 5000;
	int rc = 0;
	while (rc == 0 && mono_ms() < end) {
		nn_send(raw, b.data, b.len, NN_DONTWAIT);
		rc = link_recv(l, 100, &got);
	}
	REQUIRE(rc == 1);
	CHECK(got.type == RAFT_MSG_HEARTBEAT && got.commit == 5);
	while (link_recv(l, 50, &got) == 1) /* extra copies of the probe */
		;
	struct link_stats before;
	link_stats(l, &before);
	/* 1: CRC flipped; 2: another cluster; 3: to node 3; 4: from node 3 on node 1's
	 * socket; 5: garbage; then a valid one */
	b.data[b.len / 2] ^= 1;
	CHECK(nn_send(raw, b.data, b.len, 0) == (int)b.len);
	REQUIRE(link_encode(OTHER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(nn_send(raw, b.data, b.len, 0) == (int)b.len);
	m.to = 3;
	REQUIRE(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(nn_send(raw, b.data, b.len, 0) == (int)b.len);
	m.to = 2;
	m.from = 3;
	REQUIRE(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(nn_send(raw, b.data, b.len, 0) == (int)b.len);
	CHECK(nn_send(raw, "\xc1garbage", 8, 0) == 8);
	m.from = 1;
	m.commit = 6;
	REQUIRE(link_encode(CLUSTER, &m, NULL, NULL, 1u << 20, &b, NULL, &err) == ST_OK);
	CHECK(nn_send(raw, b.data, b.len, 0) == (int)b.len);
	CHECK(link_recv(l, 3000, &got) == 1);
	CHECK(got.type == RAFT_MSG_HEARTBEAT && got.commit == 6 && got.from == 1);
	struct link_stats after;
	link_stats(l, &after);
	CHECK(after.dropped_recv - before.dropped_recv == 5);
	CHECK(after.received - before.received == 1);
	nn_close(raw);
	st_buf_free(&b);
}

static void *waker(void *arg)
{
	sleep_ms(150);
	link_wake(arg);
	return NULL;
}

static void t_wake(void)
{
	struct link *l = open_node(5, 7690, NULL, NULL, 0);
	REQUIRE(l != NULL);
	struct raft_msg got;
	int64_t t0 = mono_ms();
	CHECK(link_recv(l, 100, &got) == 0); /* a timeout */
	CHECK(mono_ms() - t0 >= 90);
	link_wake(l); /* before: the next recv returns at once */
	t0 = mono_ms();
	CHECK(link_recv(l, 5000, &got) == 0);
	CHECK(mono_ms() - t0 < 1000);
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, waker, l) == 0);
	t0 = mono_ms();
	CHECK(link_recv(l, -1, &got) == 0); /* forever, but woken */
	int64_t took = mono_ms() - t0;
	pthread_join(th, NULL);
	CHECK(took >= 100 && took < 3000);
	/* bad configs */
	struct link_config c = {.self = 17};
	struct link *x = NULL;
	struct st_err err;
	snprintf(c.self_address, sizeof c.self_address, "tcp://127.0.0.1:7691");
	CHECK(link_open(&c, &x, &err) == ST_EINVAL && x == NULL);
	c.self = 1;
	snprintf(c.self_address, sizeof c.self_address, "127.0.0.1:7691");
	CHECK(link_open(&c, &x, &err) == ST_EINVAL);
	CHECK(strstr(err.msg, "tcp://HOST:PORT") != NULL);
	snprintf(c.self_address, sizeof c.self_address, "tcp://127.0.0.1:65530");
	CHECK(link_open(&c, &x, &err) == ST_EINVAL);
	snprintf(c.self_address, sizeof c.self_address, "tcp://127.0.0.1:7691");
	c.n_peers = 2;
	c.peers[0].id = 2;
	c.peers[1].id = 2;
	snprintf(c.peers[0].address, sizeof c.peers[0].address, "tcp://127.0.0.1:7692");
	snprintf(c.peers[1].address, sizeof c.peers[1].address, "tcp://127.0.0.1:7693");
	CHECK(link_open(&c, &x, &err) == ST_EINVAL);
	CHECK(strstr(err.msg, "distinct") != NULL);
	c.n_peers = 0;
	snprintf(c.self_address, sizeof c.self_address, "tcp://127.0.0.1:7690"); /* in use */
	CHECK(link_open(&c, &x, &err) == EADDRINUSE && x == NULL);
}

/* ---- segments ------------------------------------------------------------ */

struct seg_server {
	struct link *l;      /* the serving link */
	const uint8_t *data; /* the one file, table 4 file 9 */
	size_t len;          /* its size */
	uint32_t crc;        /* its CRC32C */
	int stop;            /* set by the test (atomic builtins) */
};

static int seg_read(void *ctx, uint64_t table, uint64_t file, uint64_t off, void *buf, size_t len,
                    size_t *got, uint64_t *file_size, uint32_t *file_crc, struct st_err *err)
{
	struct seg_server *s = ctx;
	if (table == 4 && file == 8) { /* an empty file */
		*got = 0;
		*file_size = 0;
		*file_crc = 0;
		return ST_OK;
	}
	if (table != 4 || file != 9)
		return st_seterr(err, ST_ENOTFOUND, "no segment %llu/%llu",
		                 (unsigned long long)table, (unsigned long long)file);
	*got = off >= s->len ? 0 : (s->len - off < len ? s->len - off : len);
	memcpy(buf, s->data + off, *got);
	*file_size = s->len;
	*file_crc = s->crc;
	return ST_OK;
}

static void *serve(void *arg)
{
	struct seg_server *s = arg;
	struct raft_msg m;
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
		link_recv(s->l, 50, &m);
	return NULL;
}

static bool file_is(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	uint8_t *b = malloc(len + 1);
	size_t n = b ? fread(b, 1, len + 1, f) : 0;
	fclose(f);
	bool ok = b && n == len && !memcmp(b, data, len);
	free(b);
	return ok;
}

static void t_segment_fetch(void)
{
	const uint64_t id1 = 1, id2 = 2;
	const unsigned p1 = 7651, p2 = 7668;
	struct link *a = open_node(1, p1, &id2, &p2, 1);
	struct link *b = open_node(2, p2, &id1, &p1, 1);
	REQUIRE(a && b);
	struct seg_server s = {.l = b, .len = 3 * 1024 * 1024 + 12345};
	uint8_t *data = malloc(s.len);
	REQUIRE(data != NULL);
	for (size_t i = 0; i < s.len; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	s.data = data;
	s.crc = st_crc32c(0, data, s.len);
	link_serve_segments(b, seg_read, &s);
	pthread_t th;
	REQUIRE(pthread_create(&th, NULL, serve, &s) == 0);
	const char *dir = test_new_dir("link");
	char dest[256], tmp[300];
	struct st_err err;
	struct stat st;
	REQUIRE(mkdir(dir, 0755) == 0);
	snprintf(dest, sizeof dest, "%s/9.seg", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", dest);

	/* a wrong CRC: refused, nothing left */
	int rc = link_fetch_segment(a, 2, 4, 9, s.len, s.crc ^ 1, dest, &err);
	CHECK(rc == ST_ECORRUPT);
	CHECK(strstr(err.msg, "refused") != NULL);
	CHECK(stat(dest, &st) < 0 && errno == ENOENT);
	CHECK(stat(tmp, &st) < 0 && errno == ENOENT);
	/* a wrong size likewise */
	CHECK(link_fetch_segment(a, 2, 4, 9, s.len - 1, s.crc, dest, &err) == ST_ECORRUPT);
	CHECK(stat(dest, &st) < 0 && stat(tmp, &st) < 0);
	/* a file the peer does not have: its error comes back */
	rc = link_fetch_segment(a, 2, 4, 10, s.len, s.crc, dest, &err);
	CHECK(rc == ST_ENOTFOUND);
	CHECK(strstr(err.msg, "no segment 4/10") != NULL);
	CHECK(stat(dest, &st) < 0 && stat(tmp, &st) < 0);
	/* an unknown peer */
	CHECK(link_fetch_segment(a, 7, 4, 9, s.len, s.crc, dest, &err) == ST_EINVAL);

	/* the whole file */
	rc = link_fetch_segment(a, 2, 4, 9, s.len, s.crc, dest, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  fetch: %s\n", err.msg);
	CHECK(rc == ST_OK);
	CHECK(file_is(dest, data, s.len));
	CHECK(stat(tmp, &st) < 0 && errno == ENOENT);

	/* an empty file */
	char dest0[256];
	snprintf(dest0, sizeof dest0, "%s/8.seg", dir);
	CHECK(link_fetch_segment(a, 2, 4, 8, 0, 0, dest0, &err) == ST_OK);
	CHECK(stat(dest0, &st) == 0 && st.st_size == 0);

	/* resume: a .tmp holding the first 1.5 MiB */
	char dest2[256];
	snprintf(dest2, sizeof dest2, "%s/9b.seg", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", dest2);
	FILE *f = fopen(tmp, "wb");
	REQUIRE(f != NULL);
	CHECK(fwrite(data, 1, 1536 * 1024, f) == 1536 * 1024);
	fclose(f);
	struct link_stats before, after;
	link_stats(b, &before);
	CHECK(link_fetch_segment(a, 2, 4, 9, s.len, s.crc, dest2, &err) == ST_OK);
	link_stats(b, &after);
	CHECK(file_is(dest2, data, s.len));
	CHECK(after.segments_served - before.segments_served == 2); /* 1.5 MiB + 12345 left */

	/* a peer that does not answer: ST_EUNAVAIL within the timeout */
	__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	char dest3[256];
	snprintf(dest3, sizeof dest3, "%s/9c.seg", dir);
	int64_t t0 = mono_ms();
	CHECK(link_fetch_segment(a, 2, 4, 9, s.len, s.crc, dest3, &err) == ST_EUNAVAIL);
	CHECK(mono_ms() - t0 < 4000);
	CHECK(stat(dest3, &st) < 0);
	free(data);
}

/* With a cluster key, nodes that share it talk (entries included); a node
 * with another key, or none, is refused: nothing it sends is returned, and
 * the refusals are counted. */
static void t_authenticated(void)
{
	static const uint8_t K[32] = {1, 2, 3}, K2[32] = {4, 5, 6};
	const uint64_t id1 = 1, id2 = 2;
	const unsigned p1 = 7720, p2 = 7740;
	open_key = K;
	struct link *a = open_node(1, p1, &id2, &p2, 1), *b = open_node(2, p2, &id1, &p1, 1);
	REQUIRE(a && b);
	struct raft_msg got, m = make_append();
	CHECK_EQ(deliver(a, b, &m, &got), 1);
	CHECK(same_append(&m, &got));
	struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .epoch = 2, .from = 2, .to = 1, .commit = 5};
	CHECK_EQ(deliver(b, a, &hb, &got), 1);
	struct link_stats st;
	link_stats(b, &st);
	CHECK_EQ(st.unauthenticated, 0);

	/* Another key (node 3 to node 4), then no key at all (node 5 to node 6). */
	for (int k = 0; k < 2; k++) {
		const uint64_t x = 3 + 2 * (uint64_t)k, y = x + 1;
		const unsigned px = 7760 + 40 * (unsigned)k, py = px + 20;
		open_key = k == 0 ? K2 : NULL;
		struct link *bad = open_node(x, px, &y, &py, 1);
		open_key = K;
		struct link *good = open_node(y, py, &x, &px, 1);
		REQUIRE(bad && good);
		struct raft_msg h = {.type = RAFT_MSG_HEARTBEAT, .epoch = 2, .from = x, .to = y,
		                     .commit = 7};
		CHECK_EQ(deliver(bad, good, &h, &got), 0); /* 5 s of tries: never returned */
		link_stats(good, &st);
		CHECK(st.unauthenticated > 0);
		CHECK(st.dropped_recv >= st.unauthenticated);
	}
	open_key = NULL;
}

static const struct test_case tests[] = {
    {"roundtrip_every_type", t_roundtrip_every_type},
    {"prefix_within_max", t_prefix_within_max},
    {"crc_cluster_to", t_crc_cluster_to},
    {"crafted_invalid", t_crafted_invalid},
    {"truncated_and_garbage", t_truncated_and_garbage},
    {"core_through_codec", t_core_through_codec},
    {"three_nodes", t_three_nodes},
    {"drops_counted", t_drops_counted},
    {"wake", t_wake},
    {"segment_fetch", t_segment_fetch},
    {"authenticated", t_authenticated},
};

TEST_MAIN(tests)
