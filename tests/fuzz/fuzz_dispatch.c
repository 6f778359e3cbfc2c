/*
 * tests/fuzz/fuzz_dispatch.c — libFuzzer target for stratad's whole request
 * path: sd_handle (daemon/server/server_int.h) parses, deduplicates and
 * dispatches to the real handlers, against a real store opened once per
 * process in a temp directory, with tables "t" (id int64, name string,
 * score float64, ok bool) and "p" (partitioned by day) that hold rows.
 *
 * The first byte's top bit picks the server: one without client
 * authentication, or one with tokens (PROTOCOL.md §2.2), where a request
 * without a session meets the authentication check (AUTH_BEGIN and AUTH are
 * among the types). An input is either raw bytes (first byte even: the rest
 * is one message) or a program (first byte odd): up to 6 requests built from PROTOCOL.md's
 * tables, each a request type picked by a byte and a body of keys 0..N whose
 * values are of fuzz-chosen msgpack types (nil, bool, uint, negative int,
 * float, str, bin, map, array; and structured ones: table names, write
 * options, at maps, batches that fit the tables, column definitions,
 * aggregates, predicates, and the last load or cursor id a reply gave).
 *
 * Every reply must parse as a message, echo the request's id and type
 * (unless the request did not parse), and carry a non-zero code when it is
 * an error. Sessions left open are ended after each input; the store is
 * reset when it has grown (every RESET_COMMITS commits).
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"
#include "format/wire.h"

#define RESET_COMMITS 3000

static char dir[64];
static st_store *store;
static sd_server *srv;
static sd_server *plain_srv, *auth_srv; /* srv is one of them per input: no tokens, or some */
static uint64_t next_id = 1, next_seq = 1, last_sid;
static bool trace;
static uint8_t client[WIRE_CLIENT_ID_LEN] = "fuzz-dispatch-01";

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void rm_dir(void)
{
	if (dir[0])
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void seed_tables(void)
{
	struct st_err err;
	uint64_t v;
	static const struct st_column_def tcols[] = {
		{"id", ST_TYPE_INT64, false}, {"name", ST_TYPE_STRING, true},
		{"score", ST_TYPE_FLOAT64, true}, {"ok", ST_TYPE_BOOL, true}};
	static const struct st_column_def pcols[] = {
		{"day", ST_TYPE_DATE, false}, {"k", ST_TYPE_INT32, true}, {"b", ST_TYPE_BINARY, true},
		{"at", ST_TYPE_TIMESTAMP, true}};
	static const char *const part[] = {"day"};
	struct st_table_spec t = {"t", tcols, 4, NULL, 0, NULL, 0, NULL, 0};
	struct st_table_spec p = {"p", pcols, 4, part, 1, NULL, 0, NULL, 0};
	if (st_table_create(store, &t, ST_CREATE_IF_NOT_EXISTS, &v, &err) == ST_OK && v <= 1) {
		int64_t id[8] = {1, 2, 3, 4, 5, 6, 7, 8};
		double sc[8] = {0.5, 1, 2, -3, 4, 5, 6, 7};
		uint8_t ok[8] = {1, 0, 1, 0, 1, 1, 0, 0}, valid[1] = {0x7f};
		uint32_t off[9] = {0, 1, 2, 3, 5, 7, 9, 12, 15};
		struct st_vec cols[4] = {
			{.type = ST_TYPE_INT64, .n = 8, .data = id},
			{.type = ST_TYPE_STRING, .n = 8, .offsets = off,
			 .bytes = (const uint8_t *)"abcdeffgghhiiijjj"},
			{.type = ST_TYPE_FLOAT64, .n = 8, .data = sc, .validity = valid},
			{.type = ST_TYPE_BOOL, .n = 8, .data = ok}};
		const char *names[4] = {"id", "name", "score", "ok"};
		struct st_batch b = {4, names, cols, 8};
		struct st_write_opts w = {0};
		struct st_commit_result r;
		st_write(store, "t", &b, 1, &w, &r, &err);
		st_write(store, "t", &b, 1, &w, &r, &err);
	}
	if (st_table_create(store, &p, ST_CREATE_IF_NOT_EXISTS, &v, &err) == ST_OK && v <= 1) {
		int32_t day[4] = {19000, 19000, 19001, 19002}, k[4] = {1, 2, 3, 4};
		int64_t at[4] = {1, 2, 3, 4};
		uint32_t off[5] = {0, 1, 1, 3, 4};
		struct st_vec cols[4] = {
			{.type = ST_TYPE_DATE, .n = 4, .data = day},
			{.type = ST_TYPE_INT32, .n = 4, .data = k},
			{.type = ST_TYPE_BINARY, .n = 4, .offsets = off, .bytes = (const uint8_t *)"\0\1\2\3"},
			{.type = ST_TYPE_TIMESTAMP, .n = 4, .data = at}};
		const char *names[4] = {"day", "k", "b", "at"};
		struct st_batch b = {4, names, cols, 4};
		struct st_write_opts w = {0};
		struct st_commit_result r;
		st_write(store, "p", &b, 1, &w, &r, &err);
	}
}

static void open_all(void)
{
	struct st_err err;
	struct st_store_opts so = {.nosync = true, .map_size = 256u << 20, .row_group_rows = 4};
	struct sd_server_opts o = {.workers = 1, .max_message_size = 1u << 20,
				   .max_batch_rows = 4096, .cursor_timeout_us = 1000000,
				   .data_dir = dir, .version = "fuzz"};
	/* A second server over the same store with tokens (PROTOCOL.md §2.2):
	 * what it answers without a session is the authentication check. */
	char tokens[128];
	snprintf(tokens, sizeof tokens, "%s.tokens", dir);
	FILE *tf = fopen(tokens, "w");
	if (tf) {
		fputs("fz admin aaaaaaaaaaaaaaaaaaaa\nro read rrrrrrrrrrrrrrrrrrrr\n", tf);
		fclose(tf);
	}
	struct sd_server_opts ao = o;
	ao.auth_file = tokens;
	if (st_store_open(dir, &so, &store, &err) != ST_OK ||
	    sd_server_new(store, &o, &plain_srv, &err) != ST_OK ||
	    sd_server_new(store, &ao, &auth_srv, &err) != ST_OK) {
		fprintf(stderr, "fuzz_dispatch: %s\n", err.msg);
		abort();
	}
	unlink(tokens);
	srv = plain_srv;
	seed_tables();
}

static void close_all(void)
{
	sd_server_free(plain_srv);
	sd_server_free(auth_srv);
	st_store_close(store);
	srv = plain_srv = auth_srv = NULL;
	store = NULL;
}

static void at_exit(void)
{
	close_all();
	rm_dir();
}

/* Once per process (the replay runner calls no LLVMFuzzerInitialize). */
static void init(void)
{
	sd_log_setup(SD_LOG_STDERR, SD_LOG_ERROR); /* expiry warnings are expected here */
	trace = getenv("FUZZ_DISPATCH_TRACE") != NULL;
	snprintf(dir, sizeof dir, "/tmp/fuzz-dispatch.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	open_all();
	atexit(at_exit);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!store)
		init();
	return 0;
}

/* ---- reading the input ---------------------------------------------------- */

struct in {
	const uint8_t *p; /* next byte */
	size_t n;         /* bytes left */
};

static uint8_t u8(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t u64(struct in *in)
{
	uint8_t k = u8(in) % 9; /* 0..8 bytes: small numbers are likely */
	uint64_t v = 0;
	for (uint8_t i = 0; i < k; i++)
		v = v << 8 | u8(in);
	return v;
}

/* n bytes of the input (fewer at its end). */
static const uint8_t *take(struct in *in, size_t *n)
{
	const uint8_t *p = in->p;
	if (*n > in->n)
		*n = in->n;
	in->p += *n;
	in->n -= *n;
	return p;
}

static const char *const words[] = {
	"t", "p", "nosuch", "id", "name", "score", "ok", "day", "k", "b", "at", "*", "count", "sum",
	"min", "max", "avg", "", "file_retention", "log_retention", "id > 3", "name = 'abc'",
	"score >= 1.5 and ok", "day = '2022-01-08'", "id in (1, 2, 3) or name is null",
	"not (k < 2)", "bogus((", "0s", "1h", "WriteSerializable"};

static void pack_word(msgpack_packer *pk, struct in *in)
{
	uint8_t w = u8(in);
	if (w < 200) {
		wire_pack_str(pk, words[w % (sizeof words / sizeof words[0])]);
	} else {
		size_t n = u8(in) % 48;
		const uint8_t *p = take(in, &n);
		wire_pack_strn(pk, (const char *)p, n);
	}
}

/* ---- building values ------------------------------------------------------- */

static void pack_value(struct wire_out *o, struct in *in, int depth);

/* A batch for table t or p (or a mix), rows from the input. */
static void pack_batch(struct wire_out *o, struct in *in)
{
	static int64_t i64[64];
	static double f64[64];
	static int32_t i32[64];
	static uint8_t b8[64], valid[8];
	static uint32_t off[65];
	uint32_t rows = u8(in) % 40;
	for (uint32_t i = 0; i < rows; i++) {
		i64[i] = (int64_t)u64(in);
		f64[i] = (double)(int8_t)u8(in) / 4;
		i32[i] = 19000 + (int8_t)u8(in);
		b8[i] = u8(in) & 1;
		off[i + 1] = off[i] + (u8(in) % 4);
	}
	off[0] = 0;
	for (uint32_t i = 0; i < 8; i++)
		valid[i] = u8(in) | 1;
	static const char bytes[256] = "abc\xc3\xa9\xff\0xyzabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcab"
				       "cabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc"
				       "abcabcabcabcabcabcabcabcabcabcabcabcabcabc";
	bool nulls = u8(in) & 1;
	struct st_vec t[4] = {
		{.type = ST_TYPE_INT64, .n = rows, .data = i64},
		{.type = ST_TYPE_STRING, .n = rows, .offsets = off, .bytes = (const uint8_t *)bytes,
		 .validity = nulls ? valid : NULL},
		{.type = ST_TYPE_FLOAT64, .n = rows, .data = f64, .validity = nulls ? valid : NULL},
		{.type = ST_TYPE_BOOL, .n = rows, .data = b8}};
	struct st_vec p[4] = {
		{.type = ST_TYPE_DATE, .n = rows, .data = i32},
		{.type = ST_TYPE_INT32, .n = rows, .data = i32},
		{.type = ST_TYPE_BINARY, .n = rows, .offsets = off, .bytes = (const uint8_t *)bytes},
		{.type = ST_TYPE_TIMESTAMP, .n = rows, .data = i64}};
	const char *tn[4] = {"id", "name", "score", "ok"}, *pn[4] = {"day", "k", "b", "at"};
	uint8_t pick = u8(in);
	uint32_t nc = 1 + pick % 4;
	bool isp = pick & 0x10;
	if (pick & 0x20) { /* drop or rename a column: schema errors and evolution */
		tn[pick % 4] = "extra";
		pn[pick % 4] = "extra";
	}
	wire_pack_batch(o, nc, isp ? pn : tn, isp ? p : t, NULL, rows);
}

static void pack_map_of(struct wire_out *o, struct in *in, int depth, uint32_t nkeys)
{
	msgpack_pack_map(&o->pk, nkeys);
	for (uint32_t k = 0; k < nkeys; k++) {
		msgpack_pack_uint32(&o->pk, k);
		pack_value(o, in, depth + 1);
	}
}

static void pack_value(struct wire_out *o, struct in *in, int depth)
{
	msgpack_packer *pk = &o->pk;
	uint8_t t = u8(in);
	if (depth > 3)
		t %= 9; /* scalars only below */
	switch (t % 20) {
	case 0: msgpack_pack_nil(pk); break;
	case 1: u8(in) & 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
	case 2: msgpack_pack_uint64(pk, u8(in) % 12); break;
	case 3: msgpack_pack_uint64(pk, u64(in)); break;
	case 4: msgpack_pack_int64(pk, -(int64_t)(u64(in) >> 1) - 1); break;
	case 5: msgpack_pack_double(pk, (double)(int8_t)u8(in) / 3); break;
	case 6:
	case 7: pack_word(pk, in); break;
	case 8: {
		size_t n = u8(in) % 32;
		const uint8_t *p = take(in, &n);
		msgpack_pack_bin(pk, n);
		msgpack_pack_bin_body(pk, p, n);
		break;
	}
	case 9: /* a generic map */
		pack_map_of(o, in, depth, u8(in) % 7);
		break;
	case 10: { /* an array of anything */
		uint32_t n = u8(in) % 5;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++)
			pack_value(o, in, depth + 1);
		break;
	}
	case 11: { /* an array of names */
		uint32_t n = u8(in) % 5;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++)
			pack_word(pk, in);
		break;
	}
	case 12: /* a batch */
		pack_batch(o, in);
		break;
	case 13: /* an at map */
		msgpack_pack_map(pk, 2);
		wire_key_u64(pk, WIRE_AT_KIND, u8(in) % 5);
		wire_key_i64(pk, WIRE_AT_VALUE, (int64_t)(u8(in) % 8) - 1);
		break;
	case 14: /* the last load or cursor id */
		msgpack_pack_uint64(pk, last_sid);
		break;
	case 15: { /* CREATE columns */
		uint32_t n = u8(in) % 5;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++) {
			msgpack_pack_array(pk, 3);
			pack_word(pk, in);
			msgpack_pack_uint64(pk, u8(in) % 12);
			u8(in) & 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		}
		break;
	}
	case 16: { /* aggregates */
		uint32_t n = u8(in) % 4;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++) {
			msgpack_pack_array(pk, 2);
			pack_word(pk, in);
			pack_word(pk, in);
		}
		break;
	}
	case 17: /* write options */
		msgpack_pack_map(pk, 6);
		wire_key_u64(pk, WIRE_WOPT_MODE, u8(in) % 3);
		wire_key_bool(pk, WIRE_WOPT_MERGE_SCHEMA, u8(in) & 1);
		wire_key_bool(pk, WIRE_WOPT_OVERWRITE_SCHEMA, u8(in) & 1);
		msgpack_pack_uint32(pk, WIRE_WOPT_REPLACE_WHERE);
		pack_word(pk, in);
		msgpack_pack_uint32(pk, WIRE_WOPT_APP_ID);
		pack_word(pk, in);
		wire_key_u64(pk, WIRE_WOPT_APP_VERSION, u8(in) % 4);
		break;
	case 18: /* a string map (properties) */
		msgpack_pack_map(pk, 1);
		pack_word(pk, in);
		pack_word(pk, in);
		break;
	default: /* a small int that reads as a valid op, mode, number or limit */
		msgpack_pack_uint64(pk, u8(in) % 4);
		break;
	}
}

/* A value of the kind PROTOCOL.md gives a key: t table name, s word,
 * P predicate, S SET list, u small uint, i int, b bool, N array of names, C column
 * definitions, M properties, W write options, B batch, A at map, I the
 * last session id, G aggregates. */
static void pack_kind(struct wire_out *o, struct in *in, char kind)
{
	msgpack_packer *pk = &o->pk;
	uint8_t b = u8(in);
	switch (kind) {
	case 't': wire_pack_str(pk, b & 1 ? "p" : b & 2 ? "nosuch" : "t"); break;
	case 'P': wire_pack_str(pk, words[20 + b % 7]); break;
	case 'S': {
		static const char *const sets[] = {"score = score * 2", "name = 'x', id = id + 1",
						   "day = '2022-01-09'", "ok = NOT", "id = NULL",
						   "score = CASE WHEN id % 2 = 0 THEN 1.5 ELSE score END"};
		wire_pack_str(pk, sets[b % 6]);
		break;
	}
	case 'u': msgpack_pack_uint64(pk, b % 10); break;
	case 'i': msgpack_pack_int64(pk, (int64_t)(b % 8) - 1); break;
	case 'b': b & 1 ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
	case 'N': {
		uint32_t n = b % 4;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++)
			wire_pack_str(pk, words[3 + u8(in) % 8]);
		break;
	}
	case 'G': {
		uint32_t n = b % 3;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++) {
			msgpack_pack_array(pk, 2);
			wire_pack_str(pk, words[12 + u8(in) % 5]);
			wire_pack_str(pk, words[3 + u8(in) % 9]);
		}
		break;
	}
	case 'I': msgpack_pack_uint64(pk, last_sid); break;
	case 'B': pack_batch(o, in); break;
	case 'A':
		msgpack_pack_map(pk, 2);
		wire_key_u64(pk, WIRE_AT_KIND, b % 4);
		wire_key_i64(pk, WIRE_AT_VALUE, (int64_t)(u8(in) % 6));
		break;
	case 'W': {
		msgpack_pack_map(pk, 3);
		wire_key_u64(pk, WIRE_WOPT_MODE, b & 1);
		wire_key_bool(pk, WIRE_WOPT_MERGE_SCHEMA, b & 2);
		wire_key_bool(pk, WIRE_WOPT_OVERWRITE_SCHEMA, b & 4);
		break;
	}
	case 'C': {
		uint32_t n = 1 + b % 3;
		msgpack_pack_array(pk, n);
		for (uint32_t i = 0; i < n; i++) {
			msgpack_pack_array(pk, 3);
			wire_pack_str(pk, words[3 + (u8(in) + i) % 8]);
			msgpack_pack_uint64(pk, 1 + u8(in) % 10);
			msgpack_pack_true(pk);
		}
		break;
	}
	case 'M':
		msgpack_pack_map(pk, 1);
		wire_pack_str(pk, words[18 + b % 2]);
		wire_pack_str(pk, words[27 + u8(in) % 2]);
		break;
	default: pack_word(pk, in); break;
	}
}

static const struct {
	int type;
	const char *keys; /* kinds of body keys 0, 1, ... (pack_kind) */
} types[] = {
	{WIRE_HELLO, "su"},      {WIRE_PING, ""},          {WIRE_STATUS, ""},
	{WIRE_CREATE, "sCNMu"},  {WIRE_TABLES, ""},        {WIRE_DESCRIBE, "tu"},
	{WIRE_DROP, "t"},        {WIRE_ALTER, "tussu"},    {WIRE_WRITE, "tWB"},
	{WIRE_LOAD_BEGIN, "tWB"}, {WIRE_LOAD_DATA, "IBu"}, {WIRE_LOAD_COMMIT, "I"},
	{WIRE_LOAD_ABORT, "I"},  {WIRE_SCAN, "tNPAu"},     {WIRE_SCAN_NEXT, "I"},
	{WIRE_SCAN_CLOSE, "I"},  {WIRE_QUERY, "tNGPA"},    {WIRE_HISTORY, "tu"},
	{WIRE_RESTORE, "tA"},    {WIRE_VACUUM, "tibb"},    {WIRE_VERIFY, ""},
	{WIRE_COMPACT, "t"},     {WIRE_SCRUB, "tu"},       {WIRE_AUTH_BEGIN, "P"},
	{WIRE_AUTH, "Pxx"},      {WIRE_DELETE, "tPsu"},    {WIRE_UPDATE, "tSPsu"},
	{WIRE_MERGE, "ttsuuusu"}, {WIRE_OPTIMIZE, "tPus"},
	{77, "u"},
};

/* ---- running a request ------------------------------------------------------ */

static void run(const void *req, size_t len, bool built, uint64_t id, int type)
{
	void *rep;
	size_t rlen;
	struct wire_msg m;
	struct st_err err;
	if (sd_handle(srv, req, len, &rep, &rlen) != ST_OK)
		return; /* out of memory: no reply */
	if (wire_parse(rep, rlen, &m, &err) != ST_OK) {
		fprintf(stderr, "reply does not parse: %s\n", err.msg);
		abort();
	}
	if (built && (m.id != id || m.type != type))
		abort();
	if (trace) /* FUZZ_DISPATCH_TRACE=1: what each request got, to see how deep inputs go */
		fprintf(stderr, "%s -> %s\n", wire_type_name(m.type), m.error ? "error" : "ok");
	if (m.error) {
		int64_t code = 0;
		if (wire_field_i64(m.error, NULL, WIRE_ERR_CODE, "code", &code, NULL) != 1 || code == 0)
			abort();
		if (trace) {
			struct wire_error e;
			wire_error_decode(m.error, &e);
			fprintf(stderr, "   %s\n", e.msg);
		}
	} else if (m.body) {
		uint64_t sid = 0;
		if ((type == WIRE_LOAD_BEGIN || type == WIRE_SCAN || type == WIRE_SCAN_NEXT) &&
		    wire_field_u64(m.body, NULL, 0, "id", &sid, NULL) == 1 && sid)
			last_sid = sid;
	}
	wire_msg_fini(&m);
	free(rep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	if (!store)
		init();
	if (!size)
		return 0;
	if (st_store_lsn(store) > RESET_COMMITS) {
		close_all();
		rm_dir();
		if (mkdir(dir, 0700) != 0)
			abort();
		open_all();
	}
	seed_tables(); /* back if an earlier input dropped them */
	if (trace)
		fprintf(stderr, "== input of %zu bytes\n", size);
	uint8_t mode = u8(&in);
	srv = mode & 0x80 ? auth_srv : plain_srv;
	if (!(mode & 1)) {
		run(in.p, in.n, false, 0, 0);
	} else {
		struct wire_out o;
		wire_out_init(&o);
		for (int r = 0; r < 6 && in.n; r++) {
			uint8_t h = u8(&in);
			int type = types[h % (sizeof types / sizeof types[0])].type;
			const char *kinds = types[h % (sizeof types / sizeof types[0])].keys;
			uint8_t shape = u8(&in);
			/* Mostly the keys PROTOCOL.md lists (sometimes fewer, or more). */
			uint32_t nkeys = shape & 0x20 ? shape % 7 : (uint32_t)strlen(kinds);
			bool dedupe = wire_changes_state(type) ? !(shape & 0x80) : (shape & 0x80);
			uint64_t id = next_id++;
			wire_out_reset(&o);
			/* A repeated seq now and then: answered from the first reply. */
			bool again = shape & 0x40 && next_seq > 1;
			uint64_t seq = again ? next_seq - 1 : next_seq++;
			wire_begin(&o, id, type, dedupe ? client : NULL, seq, nkeys);
			for (uint32_t k = 0; k < nkeys; k++) {
				msgpack_pack_uint32(&o.pk, k);
				/* The key's own kind, else any value (a mistyped key). */
				if (k < strlen(kinds) && u8(&in) < 224)
					pack_kind(&o, &in, kinds[k]);
				else
					pack_value(&o, &in, 0);
			}
			if (wire_end(&o, NULL) != ST_OK)
				abort();
			run(o.buf.data, o.buf.len, !(dedupe && again), id, type);
		}
		wire_out_fini(&o);
	}
	sd_sess_expire(srv, true);
	return 0;
}
