/*
 * tests/unit/test_actions.c — the msgpack encoding of commits
 * (format/ACTIONS.md): round trips of every action and statistics type,
 * unknown keys skipped, newer versions refused, truncated and corrupted
 * bytes refused without crashing, lying counts refused before allocating.
 */
#include <msgpack.h>

#include "format/actions.h"
#include "format/crc32c.h"
#include "tests/test.h"

static struct st_field fields[3] = {
	{1, ST_TYPE_INT64, false, "id"}, {2, ST_TYPE_STRING, true, "name"}, {5, ST_TYPE_FLOAT64, true, "v"}};
static struct act_kv props[1] = {{"log_retention", "30d"}};
static struct act_constraint cons[1] = {{"positive", "id > 0"}};
static uint32_t part[1] = {2};

static void sample(struct act_commit *c, struct act_metadata *m, struct act_add *a,
		   struct st_col_stats st[3], uint32_t fid[3])
{
	*m = (struct act_metadata){.name = "t", .schema = {3, fields}, .next_field_id = 6,
				   .npartition = 1, .partition = part, .nprops = 1, .props = props,
				   .nconstraints = 1, .constraints = cons, .created_us = -5};
	memset(st, 0, 3 * sizeof *st);
	st[0] = (struct st_col_stats){.rows = 10, .null_count = 0, .has_minmax = true,
				      .min_exact = true, .max_exact = true};
	st[0].min.type = st[0].max.type = ST_TYPE_INT64;
	st[0].min.v.i64 = INT64_MIN;
	st[0].max.v.i64 = INT64_MAX;
	st[1].null_count = 3;
	st[1].dict_size = 7;
	st[1].has_minmax = true;
	st[1].min_exact = true;
	st[1].min.type = st[1].max.type = ST_TYPE_STRING;
	memcpy(st[1].min_buf, "apple", 5);
	memcpy(st[1].max_buf, "zz\xff", 3);
	st[1].min.v.s.ptr = st[1].min_buf;
	st[1].min.v.s.len = 5;
	st[1].max.v.s.ptr = st[1].max_buf;
	st[1].max.v.s.len = 3;
	st[2].min.type = st[2].max.type = ST_TYPE_FLOAT64; /* has_minmax false (NaN seen) */
	fid[0] = 1;
	fid[1] = 2;
	fid[2] = 5;
	*a = (struct act_add){.file_id = 42, .size = 1000, .rows = 10, .crc = 0xdeadbeef,
			      .data_change = true, .ncols = 3, .field_ids = fid, .stats = st};
	/* Remove 8 carries the positions a MERGE deleted: opaque bytes here
	 * (the decoder checks their length; dv_decode the rest). */
	static uint8_t dels[21] = {1, 0, 0, 0, 1};
	static struct act_remove rm[2] = {{.file_id = 7, .data_change = true},
					  {.file_id = 8, .deletes = dels, .deletes_len = 21}};
	static struct act_txn tx[1] = {{"app", 9}};
	static struct act_kv params[1] = {{"mode", "append"}};
	*c = (struct act_commit){.table_id = 3, .version = 12, .lsn = 99, .epoch = 1,
				 .time_us = 1700000000000000, .prev_checksum = 0x12345678,
				 .metadata = m, .nadd = 1, .adds = a, .nremove = 2, .removes = rm,
				 .ntxn = 1, .txns = tx};
	c->info = (struct act_commit_info){.operation = "WRITE", .nparams = 1, .params = params,
					   .read_version = 11, .isolation = ACT_ISO_SERIALIZABLE,
					   .rows_added = 10, .files_added = 1, .files_removed = 2,
					   .bytes_added = 1000, .duration_us = 5};
}

static void t_roundtrip(void)
{
	struct act_commit c;
	struct act_metadata m;
	struct act_add a;
	struct st_col_stats st[3];
	uint32_t fid[3];
	struct st_err err;
	sample(&c, &m, &a, st, fid);
	struct st_buf b = {0}, b2 = {0};
	REQUIRE(act_encode(&c, &b, NULL, &err) == ST_OK);
	struct act_commit *d;
	REQUIRE(act_decode(b.data, b.len, &d, &err) == ST_OK);
	CHECK_EQ(d->table_id, 3);
	CHECK_EQ(d->version, 12);
	CHECK_EQ(d->lsn, 99);
	CHECK_EQ(d->time_us, 1700000000000000);
	CHECK_EQ(d->prev_checksum, 0x12345678);
	REQUIRE(d->metadata && d->nadd == 1 && d->nremove == 2 && d->ntxn == 1);
	CHECK(!strcmp(d->metadata->name, "t"));
	CHECK_EQ(d->metadata->schema.nfields, 3);
	CHECK_EQ(d->metadata->schema.fields[2].id, 5);
	CHECK(!strcmp(d->metadata->constraints[0].expr, "id > 0"));
	CHECK_EQ(d->metadata->created_us, -5);
	CHECK_EQ(d->adds[0].stats[0].min.v.i64, INT64_MIN);
	CHECK_EQ(d->adds[0].stats[0].max.v.i64, INT64_MAX);
	CHECK(d->adds[0].stats[1].max.v.s.len == 3 && !memcmp(d->adds[0].stats[1].max.v.s.ptr, "zz\xff", 3));
	CHECK(!d->adds[0].stats[1].max_exact && d->adds[0].stats[1].min_exact);
	CHECK(!d->adds[0].stats[2].has_minmax);
	CHECK_EQ(d->adds[0].stats[1].dict_size, 7);
	CHECK(d->removes[0].data_change && !d->removes[1].data_change);
	CHECK(!d->removes[0].deletes && d->removes[1].deletes_len == 21 &&
	      !memcmp(d->removes[1].deletes, "\1\0\0\0\1", 5));
	CHECK(!strcmp(d->txns[0].app_id, "app") && d->txns[0].app_version == 9);
	CHECK(!strcmp(d->info.params[0].val, "append"));
	CHECK_EQ(d->info.read_version, 11);
	/* Re-encoding the decoded commit gives the same bytes. */
	REQUIRE(act_encode(d, &b2, NULL, &err) == ST_OK);
	CHECK(b.len == b2.len && !memcmp(b.data, b2.data, b.len));
	act_commit_free(d);
	/* Standalone metadata. */
	struct st_buf mb = {0};
	REQUIRE(act_metadata_encode(&m, &mb, &err) == ST_OK);
	struct act_metadata *md;
	REQUIRE(act_metadata_decode(mb.data, mb.len, &md, &err) == ST_OK);
	CHECK(!strcmp(md->props[0].key, "log_retention") && md->partition[0] == 2);
	act_metadata_free(md);
	st_buf_free(&mb);
	st_buf_free(&b);
	st_buf_free(&b2);
}

static int buf_write(void *data, const char *p, size_t n)
{
	st_buf_append(data, p, n);
	return 0;
}

static void t_unknown_keys_and_versions(void)
{
	struct st_buf b = {0};
	struct st_err err;
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, buf_write);
	/* A minimal commit with an unknown key 40 holding a nested value. */
	msgpack_pack_map(&pk, 8);
	uint64_t kv[][2] = {{0, 1}, {1, 2}, {2, 0}, {3, 1}, {5, 10}, {6, 0}};
	for (int i = 0; i < 6; i++) {
		msgpack_pack_uint64(&pk, kv[i][0]);
		msgpack_pack_uint64(&pk, kv[i][1]);
	}
	msgpack_pack_uint64(&pk, 40);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_str_with_body(&pk, "future", 6);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_double(&pk, 1.5);
	msgpack_pack_uint64(&pk, 11);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_str_with_body(&pk, "CREATE TABLE", 12);
	struct act_commit *d;
	REQUIRE(act_decode(b.data, b.len, &d, &err) == ST_OK);
	CHECK_EQ(d->table_id, 2);
	CHECK(!strcmp(d->info.operation, "CREATE TABLE"));
	act_commit_free(d);
	/* Version 2: refused as newer. */
	b.data[2] = 2; /* map header, key 0, value 1 -> 2 */
	CHECK_EQ(act_decode(b.data, b.len, &d, &err), ST_EVERSION);
	CHECK_CONTAINS(err.msg, "newer strata");
	st_buf_free(&b);
}

static void t_damage_is_refused(void)
{
	struct act_commit c;
	struct act_metadata m;
	struct act_add a;
	struct st_col_stats st[3];
	uint32_t fid[3];
	struct st_err err;
	sample(&c, &m, &a, st, fid);
	struct st_buf b = {0};
	REQUIRE(act_encode(&c, &b, NULL, &err) == ST_OK);
	struct act_commit *d;
	int accepted = 0;
	for (size_t len = 0; len < b.len; len++)
		if (act_decode(b.data, len, &d, &err) == ST_OK) {
			accepted++;
			act_commit_free(d);
		}
	CHECK_EQ(accepted, 0); /* every truncation is an error */
	CHECK_EQ(act_decode(b.data, b.len - 1, &d, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "at byte");
	/* Every single-byte change: decoded or refused, never a crash or leak. */
	for (size_t i = 0; i < b.len; i++) {
		for (int k = 0; k < 3; k++) {
			uint8_t save = b.data[i];
			b.data[i] = (uint8_t)(k == 0 ? save ^ 0xff : k == 1 ? save + 1 : 0xdd);
			if (act_decode(b.data, b.len, &d, &err) == ST_OK)
				act_commit_free(d);
			b.data[i] = save;
		}
	}
	/* An array claiming 2^32-1 elements in a few bytes. */
	uint8_t lie[] = {0x81, 0x08, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x80};
	CHECK_EQ(act_decode(lie, sizeof lie, &d, &err), ST_ECORRUPT);
	CHECK_CONTAINS(err.msg, "adds");
	st_buf_free(&b);
}

static void t_checksum_chain(void)
{
	uint8_t zero[4] = {0};
	CHECK_EQ(act_checksum(0, (const uint8_t *)"", 0), st_crc32c(0, zero, 4));
	uint8_t a[3] = {1, 2, 3}, b2[3] = {1, 2, 4};
	CHECK(act_checksum(7, a, 3) != act_checksum(7, b2, 3));
	CHECK(act_checksum(7, a, 3) != act_checksum(8, a, 3));
}

/* The value under integer key `key` of msgpack map o, or NULL. */
static const msgpack_object *map_get(const msgpack_object *o, uint64_t key)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < o->via.map.size; i++)
		if (o->via.map.ptr[i].key.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    o->via.map.ptr[i].key.via.u64 == key)
			return &o->via.map.ptr[i].val;
	return NULL;
}

/* Our encoder's bytes, read back by msgpack-c: every integer, string and
 * count width at its boundaries, and the whole value consumed exactly. */
static void t_msgpack_c_reads_it(void)
{
	struct act_commit c;
	struct act_metadata m;
	struct act_add a;
	struct st_col_stats st[3];
	uint32_t fid[3];
	struct st_err err;
	static const int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33,
				       -128, -129, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1,
				       INT64_MIN, INT64_MAX, 4294967295, 4294967296};
	static const uint32_t lens[] = {0, 31, 32, 255, 256, 65535, 65536};
	static const uint32_t counts[] = {0, 15, 16, 65535, 65536};
	char *text = malloc(65537);
	struct act_remove *rm = calloc(65536, sizeof *rm);
	REQUIRE(text && rm);
	memset(text, 'x', 65536);
	int bad = 0, cases = 0;
	for (size_t k = 0; k < sizeof ints / sizeof *ints + sizeof lens / sizeof *lens +
				   sizeof counts / sizeof *counts; k++) {
		sample(&c, &m, &a, st, fid);
		size_t ni = sizeof ints / sizeof *ints, nl = sizeof lens / sizeof *lens;
		if (k < ni) {
			m.created_us = ints[k];
			c.info.rows_added = (uint64_t)ints[k];
		} else if (k < ni + nl) {
			text[lens[k - ni]] = '\0';
			c.info.operation = text;
		} else {
			c.nremove = counts[k - ni - nl];
			c.removes = rm;
		}
		struct st_buf b = {0};
		REQUIRE(act_encode(&c, &b, NULL, &err) == ST_OK);
		msgpack_unpacked u;
		msgpack_unpacked_init(&u);
		size_t off = 0;
		cases++;
		if (msgpack_unpack_next(&u, (const char *)b.data, b.len, &off) != MSGPACK_UNPACK_SUCCESS ||
		    off != b.len) {
			bad++;
		} else {
			const msgpack_object *meta = map_get(&u.data, 7), *info = map_get(&u.data, 11);
			const msgpack_object *cr = meta ? map_get(meta, 7) : NULL,
					     *ra = info ? map_get(info, 5) : NULL,
					     *op = info ? map_get(info, 1) : NULL,
					     *rs = map_get(&u.data, 9), *tm = map_get(&u.data, 5);
			if (k < ni)
				bad += !cr || !ra || cr->via.i64 != ints[k] ||
				       ra->via.u64 != (uint64_t)ints[k] ||
				       (ints[k] < 0) != (cr->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
			else if (k < ni + nl)
				bad += !op || op->type != MSGPACK_OBJECT_STR ||
				       op->via.str.size != lens[k - ni];
			else
				bad += !rs || rs->type != MSGPACK_OBJECT_ARRAY ||
				       rs->via.array.size != counts[k - ni - nl];
			bad += !tm || tm->via.i64 != c.time_us;
		}
		if (k >= ni && k < ni + nl)
			text[lens[k - ni]] = 'x';
		msgpack_unpacked_destroy(&u);
		st_buf_free(&b);
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(cases, 33);
	free(text);
	free(rm);
}

/* A commit encoded with stamps can be filled in later: the same bytes as
 * encoding it with those values. */
static void t_stamps(void)
{
	struct act_commit c;
	struct act_metadata m;
	struct act_add a;
	struct st_col_stats st[3];
	uint32_t fid[3];
	struct st_err err;
	struct act_stamps at;
	sample(&c, &m, &a, st, fid);
	struct st_buf b = {0}, b2 = {0};
	REQUIRE(act_encode(&c, &b, &at, &err) == ST_OK);
	c.version = 1ull << 40;
	c.lsn = 7;
	c.time_us = -3;
	c.prev_checksum = 0xfffffffe;
	c.info.duration_us = 123456789;
	REQUIRE(act_encode(&c, &b2, NULL, &err) == ST_OK);
	CHECK_EQ(b.len, b2.len);
	act_stamp(b.data, &at, c.version, c.lsn, c.time_us, c.prev_checksum, c.info.duration_us);
	CHECK(!memcmp(b.data, b2.data, b.len));
	struct act_commit *d;
	REQUIRE(act_decode(b.data, b.len, &d, &err) == ST_OK);
	CHECK_EQ(d->version, 1ull << 40);
	CHECK_EQ(d->time_us, -3);
	CHECK_EQ(d->prev_checksum, 0xfffffffe);
	CHECK_EQ(d->info.duration_us, 123456789);
	act_commit_free(d);
	st_buf_free(&b);
	st_buf_free(&b2);
}

static const struct test_case tests[] = {
	{"roundtrip", t_roundtrip},
	{"unknown_keys_and_versions", t_unknown_keys_and_versions},
	{"damage_is_refused", t_damage_is_refused},
	{"checksum_chain", t_checksum_chain},
	{"msgpack_c_reads_it", t_msgpack_c_reads_it},
	{"stamps", t_stamps},
};
TEST_MAIN(tests)
