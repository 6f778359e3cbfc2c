/*
 * tests/integration/wire_abuse.c — hostile and careless clients against a
 * running stratad (started by tests/integration/cli.sh).
 *
 *   wire_abuse HOST TABLE
 *
 * garbage bytes, msgpack that is not a map, an envelope of a newer protocol
 * version, a state-changing request without a client id, a message above
 * the daemon's NN_RCVMAXSIZE, a batch whose lengths lie, and a client that
 * vanishes in the middle of a load (TABLE must be an existing table with
 * the benchmark schema; the load must never show up). After each, a new
 * client must still be served.
 *
 * Then every request type of PROTOCOL.md §3 with an empty body, a
 * truncated body and, key by key, a body whose one key has the wrong type
 * (the others valid): the reply must be ST_EPROTO naming the key (or, for
 * an empty body, the first required key; success for types that have
 * none), and the daemon must still answer PING after each. Also: the
 * requests that once killed the daemon (WRITE {0: table} and
 * {0: table, 1: "x"}), mistyped keys of nested maps, and wire_end refusing
 * a body of fewer pairs than announced; malformed DML bodies and misused
 * merge-source loads refused with the table unchanged. Closes with
 * "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/client.h"
#include "format/transport.h"
#include "format/wire.h"

static int passed, failed;
static const char *host;

static void check(bool cond, const char *name)
{
	printf("%s %s\n", cond ? "ok  " : "FAIL", name);
	if (cond)
		passed++;
	else
		failed++;
}

/* Send raw bytes on a fresh REQ socket; return the error code of the
 * reply (its error in *e when e is not NULL), 0 if it was no error, or -1
 * when no reply came. */
static int raw_err(const void *buf, size_t len, size_t max_msg, struct wire_error *e)
{
	int sock, code = -1;
	struct st_err err;
	void *rep;
	size_t rlen;
	struct wire_error dummy;
	if (!e)
		e = &dummy;
	wire_error_set(e, 0, "");
	if (tp_connect(host, 2000, max_msg, &sock, &err) != ST_OK)
		return -1;
	if (tp_call(sock, buf, len, max_msg, &rep, &rlen, &err) == ST_OK) {
		struct wire_msg m;
		if (wire_parse(rep, rlen, &m, &err) == ST_OK) {
			if (m.error)
				wire_error_decode(m.error, e);
			code = m.error ? e->code : 0;
		}
		wire_msg_fini(&m);
		tp_free(rep);
	}
	tp_close(sock);
	return code;
}

static int raw(const void *buf, size_t len, size_t max_msg)
{
	return raw_err(buf, len, max_msg, NULL);
}

static bool still_serves(void)
{
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) != 0)
		return false;
	sc_begin(c, WIRE_PING, 0);
	bool ok = sc_call(c, &b, &e) == 0;
	sc_close(c);
	return ok;
}

/* An envelope {0 version, 1 id, 2 type, 3 body} with an empty body. */
static size_t envelope(msgpack_sbuffer *sb, uint32_t version, int type, bool client)
{
	msgpack_packer pk;
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, client ? 6 : 4);
	wire_key_u64(&pk, 0, version);
	wire_key_u64(&pk, 1, 1);
	wire_key_u64(&pk, 2, (uint64_t)type);
	msgpack_pack_uint32(&pk, 3);
	msgpack_pack_map(&pk, 0);
	if (client) {
		msgpack_pack_uint32(&pk, 5);
		msgpack_pack_bin(&pk, WIRE_CLIENT_ID_LEN);
		msgpack_pack_bin_body(&pk, "0123456789abcdef", WIRE_CLIENT_ID_LEN);
		wire_key_u64(&pk, 6, 1);
	}
	return sb->size;
}

/* ---- every request type, empty, truncated and mistyped ---------------------- */

/* The keys of a request body (PROTOCOL.md §3) and their types: s str,
 * u uint, i int, b bool, m map, a array, h chain hash (bin of 32 bytes). */
static const struct req_spec {
	int type;
	const char *keys; /* types of keys 0, 1, ... */
	bool required;    /* key 0 is required (else no key is) */
} specs[] = {
	{WIRE_HELLO, "su", false},  {WIRE_PING, "", false},        {WIRE_STATUS, "", false},
	{WIRE_CREATE, "saamu", true}, {WIRE_TABLES, "", false},     {WIRE_DESCRIBE, "su", true},
	{WIRE_DROP, "s", true},     {WIRE_ALTER, "sussu", true},   {WIRE_WRITE, "smm", true},
	{WIRE_LOAD_BEGIN, "smm", true}, {WIRE_LOAD_DATA, "umu", true}, {WIRE_LOAD_COMMIT, "u", true},
	{WIRE_LOAD_ABORT, "u", true}, {WIRE_SCAN, "sasmu", true},  {WIRE_SCAN_NEXT, "u", true},
	{WIRE_SCAN_CLOSE, "u", true}, {WIRE_QUERY, "saasm", true}, {WIRE_HISTORY, "su", true},
	{WIRE_RESTORE, "sm", true}, {WIRE_VACUUM, "sibb", true},  {WIRE_VERIFY, "h", false},
	{WIRE_COMPACT, "s", true},  {WIRE_DELETE, "sssu", true},  {WIRE_UPDATE, "ssssu", true},
	{WIRE_MERGE, "sssuuusu", true}, {WIRE_OPTIMIZE, "ssus", true},
};

static uint8_t abuse_client[WIRE_CLIENT_ID_LEN] = "wire-abuse-spec!";
static uint64_t abuse_seq;

/* A value of type t: valid (the table name for a str key 0, "x" for other
 * strings, 1, true, {} or []), or of another type when wrong. */
static void pack_typed(msgpack_packer *pk, char t, bool wrong, const char *table, uint32_t key)
{
	static const uint8_t hash32[32] = {1}; /* in no store's chain */
	if (wrong) {
		switch (t) {
		case 's': msgpack_pack_uint64(pk, 7); break;
		case 'm': msgpack_pack_array(pk, 0); break;
		case 'a': msgpack_pack_uint64(pk, 3); break;
		case 'h': msgpack_pack_bin(pk, 31); msgpack_pack_bin_body(pk, hash32, 31); break;
		default: wire_pack_str(pk, "7"); break; /* u, i, b */
		}
		return;
	}
	switch (t) {
	case 's': wire_pack_str(pk, key == 0 ? table : "x"); break;
	case 'u': msgpack_pack_uint64(pk, 1); break;
	case 'i': msgpack_pack_int64(pk, 1); break;
	case 'b': msgpack_pack_true(pk); break;
	case 'm': msgpack_pack_map(pk, 0); break;
	case 'h': msgpack_pack_bin(pk, 32); msgpack_pack_bin_body(pk, hash32, 32); break;
	default: msgpack_pack_array(pk, 0); break;
	}
}

/* A request of spec's type whose body has every key, key `bad` (or none
 * when bad < 0) of the wrong type; or an empty body when nkeys is 0. */
static void build(struct wire_out *o, const struct req_spec *sp, uint32_t nkeys, int bad,
		  const char *table)
{
	bool dedupe = wire_changes_state(sp->type);
	wire_out_reset(o);
	wire_begin(o, 42, sp->type, dedupe ? abuse_client : NULL, dedupe ? ++abuse_seq : 0, nkeys);
	for (uint32_t k = 0; k < nkeys; k++) {
		msgpack_pack_uint32(&o->pk, k);
		pack_typed(&o->pk, sp->keys[k], (int)k == bad, table, k);
	}
}

static void every_type(const char *table)
{
	struct wire_out o;
	struct wire_error e;
	char name[160], want[64];
	wire_out_init(&o);
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
		const struct req_spec *sp = &specs[i];
		const char *tn = wire_type_name(sp->type);
		uint32_t nkeys = (uint32_t)strlen(sp->keys);
		int code;

		/* Empty body: the first required key is named; else success. */
		build(&o, sp, 0, -1, table);
		code = raw_err(o.buf.data, o.buf.len, 1 << 20, &e);
		snprintf(name, sizeof name, "%s, empty body: %s", tn,
			 sp->required ? "ST_EPROTO naming key 0" : "answered");
		if (sp->required)
			check(code == ST_EPROTO && strstr(e.msg, "needs key 0 ("), name);
		else
			check(code == 0, name);
		snprintf(name, sizeof name, "%s, empty body: PING still answered", tn);
		check(still_serves(), name);

		/* Truncated body: the message ends inside the body map. */
		build(&o, sp, nkeys, -1, table);
		size_t cut = nkeys ? o.buf.len - 1 : o.buf.len - 1; /* last byte of the body */
		code = raw_err(o.buf.data, cut, 1 << 20, &e);
		snprintf(name, sizeof name, "%s, truncated body: ST_EPROTO", tn);
		check(code == ST_EPROTO, name);
		snprintf(name, sizeof name, "%s, truncated body: PING still answered", tn);
		check(still_serves(), name);

		/* Each key mistyped, the others valid. */
		for (uint32_t k = 0; k < nkeys; k++) {
			build(&o, sp, nkeys, (int)k, table);
			code = raw_err(o.buf.data, o.buf.len, 1 << 20, &e);
			snprintf(want, sizeof want, "key %u (", k);
			snprintf(name, sizeof name, "%s, key %u of the wrong type: ST_EPROTO naming it",
				 tn, k);
			check(code == ST_EPROTO && strstr(e.msg, want) && strstr(e.msg, tn), name);
			if (code != ST_EPROTO || !strstr(e.msg, want))
				printf("     | %d: %s\n", code, e.msg);
			snprintf(name, sizeof name, "%s, key %u of the wrong type: PING still answered",
				 tn, k);
			check(still_serves(), name);
		}
	}
	wire_out_fini(&o);
}

/* A request built by hand: body pairs given as packing steps. */
static int nested(int type, const char *table, int what, struct wire_error *e)
{
	struct wire_out o;
	wire_out_init(&o);
	msgpack_packer *pk = &o.pk;
	wire_begin(&o, 7, type, wire_changes_state(type) ? abuse_client : NULL, ++abuse_seq,
		   what == 2 ? 1 : 2);
	wire_key_str(pk, 0, table);
	if (what == 0) { /* WRITE, write options with a str mode */
		msgpack_pack_uint32(pk, WIRE_WRITE_Q_OPTIONS);
		msgpack_pack_map(pk, 1);
		wire_key_str(pk, WIRE_WOPT_MODE, "append");
	} else if (what == 1) { /* SCAN, at with a str kind */
		msgpack_pack_uint32(pk, WIRE_SCAN_Q_AT);
		msgpack_pack_map(pk, 1);
		wire_key_str(pk, WIRE_AT_KIND, "latest");
	} else if (what == 3) { /* WRITE {0: table, 1: "x"} */
		wire_key_str(pk, 1, "x");
	} else if (what == 4) { /* ALTER with an unknown operation number */
		wire_key_u64(pk, WIRE_ALTER_Q_OP, 9);
	}
	int code = raw_err(o.buf.data, o.buf.len, 1 << 20, e);
	wire_out_fini(&o);
	return code;
}

static void regressions(const char *table)
{
	struct wire_error e;
	int code = nested(WIRE_WRITE, table, 2, &e);
	check(code == ST_EPROTO && strstr(e.msg, "needs key 2 (batch)"),
	      "WRITE {0: table}: ST_EPROTO naming key 2 (once a crash)");
	check(still_serves(), "WRITE {0: table}: PING still answered");
	code = nested(WIRE_WRITE, table, 3, &e);
	check(code == ST_EPROTO && strstr(e.msg, "key 1 (write options) of WRITE is a str, "
					  "expected map"),
	      "WRITE {0: table, 1: \"x\"}: ST_EPROTO naming key 1 (once a crash)");
	check(still_serves(), "WRITE {0: table, 1: \"x\"}: PING still answered");
	code = nested(WIRE_LOAD_BEGIN, table, 2, &e);
	check(code == ST_EPROTO && strstr(e.msg, "needs key 2 (header batch)"),
	      "LOAD_BEGIN {0: table}: ST_EPROTO naming key 2 (once a crash)");
	check(still_serves(), "LOAD_BEGIN {0: table}: PING still answered");
	code = nested(WIRE_WRITE, table, 0, &e);
	check(code == ST_EPROTO && strstr(e.msg, "key 0 (mode) of write options (key 1) of WRITE "
					  "is a str, expected uint"),
	      "WRITE, write options' mode a str: ST_EPROTO naming it");
	code = nested(WIRE_SCAN, table, 1, &e);
	check(code == ST_EPROTO && strstr(e.msg, "key 0 (kind) of key 3 (at) of SCAN is a str"),
	      "SCAN, at's kind a str: ST_EPROTO naming it");
	code = nested(WIRE_ALTER, table, 4, &e);
	check(code == ST_EPROTO && strstr(e.msg, "key 1 (operation) of ALTER is 9"),
	      "ALTER operation 9: ST_EPROTO");
	check(still_serves(), "PING still answered after the nested cases");

	/* wire_end: a body of fewer pairs than announced is caught before sending. */
	struct wire_out o;
	struct st_err err;
	wire_out_init(&o);
	wire_begin(&o, 1, WIRE_DROP, NULL, 0, 2);
	wire_key_str(&o.pk, 0, table);
	check(wire_end(&o, &err) == ST_EINVAL, "wire_end: one pair of two announced is refused");
	wire_key_u64(&o.pk, 1, 1);
	check(wire_end(&o, &err) == ST_OK, "wire_end: two pairs of two announced pass");
	wire_key_u64(&o.pk, 2, 1);
	check(wire_end(&o, &err) == ST_EINVAL, "wire_end: three pairs of two announced are refused");
	wire_out_fini(&o);
	sc_client *c;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) == 0) {
		msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, 2);
		wire_key_str(pk, 0, table);
		check(sc_call(c, &b, &e) == ST_EINVAL && strstr(e.msg, "not sent"),
		      "sc_call: a body short of its announced pairs is not sent");
		sc_close(c);
	} else {
		check(false, "connect for sc_call");
	}
}

/* The table's version by DESCRIBE (UINT64_MAX when it cannot be read). */
static uint64_t table_version(const char *table)
{
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	uint64_t v = UINT64_MAX;
	if (sc_connect(host, 5000, &c, &e) != 0)
		return v;
	msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, 1);
	wire_key_str(pk, WIRE_DESCRIBE_Q_TABLE, table);
	if (sc_call(c, &b, &e) != 0 ||
	    wire_field_u64(b, NULL, WIRE_DESCRIBE_R_VERSION, "version", &v, NULL) != 1)
		v = UINT64_MAX;
	sc_close(c);
	return v;
}

/* One DML request of pairs packed by fn: its error code and message. */
static int dml_call(int type, uint32_t npairs, void (*fn)(msgpack_packer *, const char *),
		    const char *table, struct wire_error *e)
{
	struct wire_out o;
	wire_out_init(&o);
	wire_begin(&o, 9, type, abuse_client, ++abuse_seq, npairs);
	fn(&o.pk, table);
	int code = raw_err(o.buf.data, o.buf.len, 1 << 20, e);
	wire_out_fini(&o);
	return code;
}

static void merge_bad_clause(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_MERGE_Q_TABLE, table);
	wire_key_str(pk, WIRE_MERGE_Q_SOURCE, table);
	wire_key_str(pk, WIRE_MERGE_Q_ON, "t.id = s.id");
	wire_key_u64(pk, WIRE_MERGE_Q_MATCHED, 9);
}

static void merge_set_without_update(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_MERGE_Q_TABLE, table);
	wire_key_str(pk, WIRE_MERGE_Q_SOURCE, table);
	wire_key_str(pk, WIRE_MERGE_Q_ON, "t.id = s.id");
	wire_key_str(pk, WIRE_MERGE_Q_SET, "value = 1");
}

static void merge_no_on(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_MERGE_Q_TABLE, table);
	wire_key_str(pk, WIRE_MERGE_Q_SOURCE, table);
}

static void delete_bad_pred(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_DELETE_Q_TABLE, table);
	wire_key_str(pk, WIRE_DELETE_Q_PREDICATE, "id >>> 3");
}

static void delete_no_pred(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_DELETE_Q_TABLE, table);
	wire_key_str(pk, WIRE_DELETE_Q_PREDICATE, "");
}

static void update_bad_set(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_UPDATE_Q_TABLE, table);
	wire_key_str(pk, WIRE_UPDATE_Q_SET, "nosuchcolumn = 1");
	wire_key_str(pk, WIRE_UPDATE_Q_PREDICATE, "true");
}

static void optimize_five_cols(msgpack_packer *pk, const char *table)
{
	wire_key_str(pk, WIRE_OPTIMIZE_Q_TABLE, table);
	wire_key_str(pk, WIRE_OPTIMIZE_Q_CLUSTER_BY, "id,ts,sensor,value,id");
}

/* Malformed and invalid DELETE / UPDATE / MERGE / OPTIMIZE bodies: each
 * refused with its code and a message naming what is wrong, and the
 * table (with every request before it here) left at its version. */
static void dml_bodies(const char *table, uint64_t v0)
{
	static const struct {
		int type;
		uint32_t npairs;
		void (*fn)(msgpack_packer *, const char *);
		int code;
		const char *says, *name;
	} cases[] = {
		{WIRE_MERGE, 4, merge_bad_clause, ST_EPROTO, "keys 3-5 are 0..3",
		 "MERGE with matched = 9"},
		{WIRE_MERGE, 4, merge_set_without_update, ST_EPROTO, "key 8 (set) goes with key 3 = 3",
		 "MERGE with a SET list but no update clause"},
		{WIRE_MERGE, 2, merge_no_on, ST_EPROTO, "key 2 (on)", "MERGE without ON"},
		{WIRE_DELETE, 2, delete_bad_pred, ST_ESYNTAX, "at offset 4", "DELETE with a broken predicate"},
		{WIRE_DELETE, 2, delete_no_pred, ST_EPROTO, "DELETE needs key 1 (predicate)",
		 "DELETE with an empty predicate"},
		{WIRE_UPDATE, 3, update_bad_set, 0, "near 'nosuchcolumn': unknown column",
		 "UPDATE of a missing column"},
		{WIRE_OPTIMIZE, 2, optimize_five_cols, ST_EINVAL, "at most 4 columns",
		 "OPTIMIZE clustering 5 columns"},
	};
	char name[200];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct wire_error e;
		int code = dml_call(cases[i].type, cases[i].npairs, cases[i].fn, table, &e);
		snprintf(name, sizeof name, "%s: refused (%s), naming what is wrong", cases[i].name,
			 cases[i].code ? st_strerror(cases[i].code) : "an error");
		check((cases[i].code ? code == cases[i].code : code != 0) &&
			      strstr(e.msg, cases[i].says), name);
		if (!strstr(e.msg, cases[i].says) || (cases[i].code ? code != cases[i].code : !code))
			printf("     | %d: %s\n", code, e.msg);
		snprintf(name, sizeof name, "%s: the table is unchanged", cases[i].name);
		check(table_version(table) == v0, name);
	}
}

/* LOAD_BEGIN of one int64 column "id" in write mode `mode` (merge_schema
 * set when ms): the load id, or 0 with the error in *e. */
static uint64_t begin_load(sc_client *c, const char *table, uint64_t mode, bool ms,
			   struct wire_error *e)
{
	const msgpack_object *b;
	const char *names[1] = {"id"};
	struct st_vec col = {.type = ST_TYPE_INT64, .n = 0};
	msgpack_packer *pk = sc_begin(c, WIRE_LOAD_BEGIN, 3);
	wire_key_str(pk, WIRE_LOAD_BEGIN_Q_TABLE, table);
	msgpack_pack_uint32(pk, WIRE_LOAD_BEGIN_Q_OPTIONS);
	msgpack_pack_map(pk, ms ? 2 : 1);
	wire_key_u64(pk, WIRE_WOPT_MODE, mode);
	if (ms)
		wire_key_bool(pk, WIRE_WOPT_MERGE_SCHEMA, true);
	msgpack_pack_uint32(pk, WIRE_LOAD_BEGIN_Q_HEADER);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 0);
	uint64_t id = 0;
	if (sc_call(c, &b, e) != 0 ||
	    wire_field_u64(b, NULL, WIRE_LOAD_BEGIN_R_ID, "load id", &id, NULL) != 1)
		return 0;
	return id;
}

/* LOAD_DATA batch num of ids 1..5 to load id: the reply's code. */
static int load_ids(sc_client *c, uint64_t id, uint64_t num, struct wire_error *e)
{
	const msgpack_object *b;
	int64_t ids[5] = {1, 2, 3, 4, 5};
	const char *names[1] = {"id"};
	struct st_vec col = {.type = ST_TYPE_INT64, .n = 5, .data = ids};
	msgpack_packer *pk = sc_begin(c, WIRE_LOAD_DATA, 3);
	wire_key_u64(pk, WIRE_LOAD_DATA_Q_ID, id);
	wire_key_u64(pk, WIRE_LOAD_DATA_Q_NUMBER, num);
	msgpack_pack_uint32(pk, WIRE_LOAD_DATA_Q_BATCH);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 5);
	return sc_call(c, &b, e);
}

/* MERGE of table from merge-source load id that changes nothing (every
 * clause ignore): the reply's code. */
static int merge_load(sc_client *c, const char *table, uint64_t id, struct wire_error *e)
{
	const msgpack_object *b;
	msgpack_packer *pk = sc_begin(c, WIRE_MERGE, 4);
	wire_key_str(pk, WIRE_MERGE_Q_TABLE, table);
	wire_key_str(pk, WIRE_MERGE_Q_SOURCE, "ids.csv");
	wire_key_str(pk, WIRE_MERGE_Q_ON, "t.id = s.id");
	wire_key_u64(pk, WIRE_MERGE_Q_SOURCE_LOAD, id);
	return sc_call(c, &b, e);
}

/* Merge-source loads (PROTOCOL.md §4): LOAD_COMMIT refused and the load
 * kept, a MERGE consumes it, mode 2 only alone and only for LOAD_BEGIN, a
 * MERGE of a plain load or of no load refused; the table unchanged. */
static void merge_sources(const char *table, uint64_t v0)
{
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) != 0) {
		check(false, "merge sources: connect");
		return;
	}
	uint64_t id = begin_load(c, table, WIRE_WRITE_MERGE_SOURCE, false, &e);
	check(id != 0, "LOAD_BEGIN in merge-source mode");
	check(load_ids(c, id, 0, &e) == 0, "LOAD_DATA into a merge source");
	msgpack_packer *pk = sc_begin(c, WIRE_LOAD_COMMIT, 1);
	wire_key_u64(pk, WIRE_LOAD_END_Q_ID, id);
	int code = sc_call(c, &b, &e);
	check(code == ST_EINVAL && strstr(e.msg, "is a merge source: send MERGE with key 9"),
	      "LOAD_COMMIT of a merge source: refused, naming MERGE key 9");
	check(load_ids(c, id, 1, &e) == 0, "... and the load stays open");
	check(merge_load(c, table, id, &e) == 0, "MERGE from the merge source");
	check(load_ids(c, id, 2, &e) == ST_ENOTFOUND, "... consumes the load");
	check(merge_load(c, table, 999999, &e) == ST_ENOTFOUND && strstr(e.msg, "no open load 999999"),
	      "MERGE from a load that does not exist: ST_ENOTFOUND");
	check(!begin_load(c, table, WIRE_WRITE_MERGE_SOURCE, true, &e) && e.code == ST_EINVAL &&
		      strstr(e.msg, "takes no other write option"),
	      "merge-source mode with merge_schema: refused");
	uint64_t plain = begin_load(c, table, WIRE_WRITE_APPEND, false, &e);
	check(plain && merge_load(c, table, plain, &e) == ST_EINVAL &&
		      strstr(e.msg, "is not a merge source"),
	      "MERGE from a plain load: refused");
	pk = sc_begin(c, WIRE_LOAD_ABORT, 1);
	wire_key_u64(pk, WIRE_LOAD_END_Q_ID, plain);
	check(sc_call(c, &b, &e) == 0, "... which can still be aborted");
	const char *names[1] = {"id"};
	int64_t one = 7;
	struct st_vec col = {.type = ST_TYPE_INT64, .n = 1, .data = &one};
	pk = sc_begin(c, WIRE_WRITE, 3);
	wire_key_str(pk, WIRE_WRITE_Q_TABLE, table);
	msgpack_pack_uint32(pk, WIRE_WRITE_Q_OPTIONS);
	msgpack_pack_map(pk, 1);
	wire_key_u64(pk, WIRE_WOPT_MODE, WIRE_WRITE_MERGE_SOURCE);
	msgpack_pack_uint32(pk, WIRE_WRITE_Q_BATCH);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 1);
	check(sc_call(c, &b, &e) == ST_EINVAL && strstr(e.msg, "is for LOAD_BEGIN only"),
	      "WRITE in merge-source mode: refused");
	sc_close(c);
	check(table_version(table) == v0, "merge sources: the table is unchanged");
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: wire_abuse HOST TABLE\n");
		return 2;
	}
	host = argv[1];
	const char *table = argv[2];
	msgpack_sbuffer sb;

	check(raw("\xc1garbage\xff\x00", 10, 1 << 20) == ST_EPROTO, "garbage bytes: ST_EPROTO reply");
	check(still_serves(), "served after garbage");
	check(raw("\x93\x01\x02\x03", 4, 1 << 20) == ST_EPROTO, "msgpack array: ST_EPROTO reply");
	check(raw("", 0, 1 << 20) == ST_EPROTO, "empty message: ST_EPROTO reply");
	envelope(&sb, 99, WIRE_PING, false);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EVERSION, "protocol version 99: ST_EVERSION");
	msgpack_sbuffer_destroy(&sb);
	envelope(&sb, 1, WIRE_DROP, false);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EPROTO, "DROP without client id: ST_EPROTO");
	msgpack_sbuffer_destroy(&sb);
	envelope(&sb, 1, 77, true);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EPROTO, "unknown type: ST_EPROTO");
	msgpack_sbuffer_destroy(&sb);

	/* Above the daemon's limit: nanomsg drops it; no reply, no harm. */
	char *huge = calloc(1, 20u << 20);
	check(huge && raw(huge, 20u << 20, 64u << 20) == -1, "20 MiB message: dropped, no reply");
	free(huge);
	check(still_serves(), "served after an oversized message");

	/* A batch whose lengths lie. */
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) != 0) {
		check(false, "connect");
		goto out;
	}
	msgpack_packer *pk = sc_begin(c, WIRE_WRITE, 2);
	wire_key_str(pk, 0, table);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_map(pk, 2);
	wire_key_u64(pk, 0, 5); /* 5 rows ... */
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	wire_key_str(pk, 0, "id");
	wire_key_u64(pk, 1, 3);
	msgpack_pack_uint32(pk, 3);
	msgpack_pack_bin(pk, 8); /* ... but the bytes of one */
	msgpack_pack_bin_body(pk, "\1\0\0\0\0\0\0\0", 8);
	check(sc_call(c, &b, &e) == ST_EPROTO, "batch with lying lengths: ST_EPROTO");

	/* Vanish in the middle of a load: begin, send a batch, close. */
	int64_t ids[100];
	for (int i = 0; i < 100; i++)
		ids[i] = 1000000 + i;
	struct st_vec col = {.type = 3, .n = 100, .data = ids};
	const char *names[1] = {"id"};
	pk = sc_begin(c, WIRE_LOAD_BEGIN, 3);
	wire_key_str(pk, 0, table);
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_map(pk, 0);
	msgpack_pack_uint32(pk, 2);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 0);
	uint64_t load = 0;
	bool began = sc_call(c, &b, &e) == 0 && wire_field_u64(b, NULL, WIRE_LOAD_BEGIN_R_ID, "load id", &load, NULL) == 1;
	check(began, "LOAD_BEGIN");
	pk = sc_begin(c, WIRE_LOAD_DATA, 3);
	wire_key_u64(pk, 0, load);
	wire_key_u64(pk, 2, 0);
	msgpack_pack_uint32(pk, 1);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 100);
	check(sc_call(c, &b, &e) == 0, "LOAD_DATA");
	sc_close(c); /* gone without LOAD_COMMIT or LOAD_ABORT */

	/* The daemon expires it (cursor_timeout, 2 s in the test config). */
	bool expired = false;
	for (int i = 0; i < 100 && !expired; i++) {
		usleep(100000);
		if (sc_connect(host, 5000, &c, &e) != 0)
			break;
		sc_begin(c, WIRE_STATUS, 0);
		uint64_t loads = 1;
		if (sc_call(c, &b, &e) == 0)
			wire_field_u64(b, NULL, WIRE_STATUS_R_LOADS, "open loads", &loads, NULL);
		expired = loads == 0;
		sc_close(c);
	}
	check(expired, "the vanished client's load expired");
	check(still_serves(), "served after the vanished client");
	uint64_t v0 = table_version(table);
	check(v0 != UINT64_MAX, "DESCRIBE gives the table's version");
	every_type(table);
	check(table_version(table) == v0, "every mistyped, empty or truncated request left the "
	      "table at its version");
	dml_bodies(table, v0);
	merge_sources(table, v0);
	regressions(table);
out:
	tp_shutdown();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
