/*
 * admin/strata_main.c — `strata`, the command line client of stratad.
 *
 * Every command takes --host (default $STRATA_HOST, else
 * tcp://127.0.0.1:7420), --timeout (seconds) and --help. Exit status: 0
 * success, 1 error (the daemon's or a local one, printed to stderr), 2
 * usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/client.h"
#include "admin/reader.h"
#include "admin/text.h"
#include "format/inspect.h"

#define EXIT_USAGE 2

struct global {
	const char *host;   /* --host */
	int timeout_ms;     /* --timeout */
};

struct command {
	const char *name;
	int (*fn)(int argc, char **argv, struct global *g);
	const char *usage;  /* arguments after the command name */
	const char *help;   /* what it does, and its options */
};

static const struct command *current;

static void cmd_usage(FILE *out)
{
	fprintf(out, "usage: strata %s %s\n\n%s\n", current->name, current->usage, current->help);
	fprintf(out, "\ncommon options:\n"
		     "  --host ADDR      daemon address (default $STRATA_HOST, else %s)\n"
		     "  --timeout SECS   wait at most this long for each reply (default %d)\n"
		     "  -h, --help       this help\n",
		SC_DEFAULT_HOST, SC_DEFAULT_TIMEOUT_MS / 1000);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "strata %s: ", current->name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see strata %s --help)\n", current->name);
	return EXIT_USAGE;
}

static int fail_wire(const struct wire_error *e)
{
	char msg[ST_ERR_MSG_MAX + 256];
	sc_error_format(e, msg, sizeof msg);
	fprintf(stderr, "strata %s: %s\n", current->name, msg);
	return 1;
}

static int fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "strata %s: ", current->name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Options every command has; COMMON_OPTS ends each command's table. */
enum { OPT_HOST = 1000, OPT_TIMEOUT, OPT_HELP };
#define COMMON_OPTS                                                                        \
	{"host", required_argument, NULL, OPT_HOST},                                       \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                                 \
	{"help", no_argument, NULL, 'h'},                                                  \
	{NULL, 0, NULL, 0}

/* Handle a common option; returns -1 when o is not one, else 0 or an
 * exit status (> 0, or EXIT_SUCCESS via *done for --help). */
static int common_opt(int o, struct global *g, bool *done)
{
	char *end;
	switch (o) {
	case OPT_HOST:
		g->host = optarg;
		return 0;
	case OPT_TIMEOUT: {
		double s = strtod(optarg, &end);
		if (*end || s <= 0 || s > 86400)
			return usage_error("--timeout takes seconds (0 < N <= 86400), not '%s'", optarg);
		g->timeout_ms = (int)(s * 1000);
		return 0;
	}
	case 'h':
		cmd_usage(stdout);
		*done = true;
		return 0;
	case '?':
		return usage_error("unknown option");
	default:
		return -1;
	}
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		return false;
	*v = x;
	return true;
}

static sc_client *connect_or_fail(struct global *g, int *status)
{
	sc_client *c;
	struct wire_error e;
	if (sc_connect(g->host, g->timeout_ms, &c, &e) != 0) {
		*status = fail_wire(&e);
		return NULL;
	}
	return c;
}

#define PARSE_OPTS(shortopts, table, ...)                                                  \
	do {                                                                               \
		int o_;                                                                    \
		bool done_ = false;                                                        \
		optind = 1;                                                                \
		while ((o_ = getopt_long(argc, argv, shortopts "h", table, NULL)) != -1) { \
			int r_ = common_opt(o_, g, &done_);                                \
			if (done_)                                                         \
				return 0;                                                  \
			if (r_ > 0)                                                        \
				return r_;                                                 \
			if (r_ == 0)                                                       \
				continue;                                                  \
			switch (o_) {                                                      \
				__VA_ARGS__                                                \
			}                                                                  \
		}                                                                          \
	} while (0)

static void pack_at(msgpack_packer *pk, uint32_t key, int kind, int64_t value)
{
	msgpack_pack_uint32(pk, key);
	msgpack_pack_map(pk, 2);
	wire_key_u64(pk, 0, (uint64_t)kind);
	wire_key_i64(pk, 1, value);
}

/* --version N / --as-of TS into (kind, value); kind 0 when neither. */
static int parse_at(const char *version, const char *asof, int *kind, int64_t *value)
{
	uint64_t v;
	*kind = 0;
	*value = 0;
	if (version && asof)
		return usage_error("--version and --as-of exclude each other");
	if (version) {
		if (!parse_u64(version, &v) || v > INT64_MAX)
			return usage_error("--version takes a version number, not '%s'", version);
		*kind = 1;
		*value = (int64_t)v;
	} else if (asof) {
		if (!tx_parse_time(asof, value))
			return usage_error("--as-of takes 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC) or "
					   "microseconds since the epoch, not '%s'", asof);
		*kind = 2;
	}
	return 0;
}

static void print_time(FILE *out, int64_t us)
{
	struct st_buf b = {0};
	struct st_vec v = {.type = ST_TYPE_TIMESTAMP, .n = 1, .data = &us};
	tx_value(&b, &v, 0);
	fprintf(out, "%.*s", (int)b.len, (const char *)b.data);
	st_buf_free(&b);
}

/* Print a commit result: "table 't' version 3 (lsn 17): 1000 rows". */
static void print_result(const char *what, const char *table, const msgpack_object *b)
{
	uint64_t version = 0, lsn = 0, rows = 0;
	bool noop = false;
	wire_get_u64(b, 0, &version);
	wire_get_u64(b, 1, &lsn);
	wire_get_u64(b, 3, &rows);
	wire_get_bool(b, 4, &noop);
	if (noop)
		printf("table '%s': already done earlier with this app id and version: nothing "
		       "written (table at version %" PRIu64 ")\n", table, version);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): %s%s%" PRIu64 " rows\n",
		       table, version, lsn, what, *what ? ", " : "", rows);
}

/* ---- create / tables / describe / drop / alter ----------------------------- */

static int cmd_create(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {
		{"schema", required_argument, NULL, 's'},
		{"partition-by", required_argument, NULL, 'p'},
		{"property", required_argument, NULL, 'P'},
		{"if-not-exists", no_argument, NULL, 'i'},
		{"replace", no_argument, NULL, 'r'},
		COMMON_OPTS};
	const char *schema = NULL;
	char *parts[64], *props[256];
	int nparts = 0, nprops = 0, mode = 0, status = 0;
	PARSE_OPTS("", longs,
		   case 's': schema = optarg; break;
		   case 'p':
			if (nparts == 64)
				return usage_error("at most 64 --partition-by columns");
			parts[nparts++] = optarg;
			break;
		   case 'P':
			if (nprops == 256)
				return usage_error("at most 256 --property options");
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return usage_error("--property takes KEY=VALUE, not '%s'", optarg);
			props[nprops++] = optarg;
			break;
		   case 'i': mode = 1; break;
		   case 'r': mode = 2; break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if (!schema)
		return usage_error("--schema \"col type [not null], ...\" is required");
	char **names, err[512];
	int *types, n;
	bool *nullable;
	if ((n = tx_parse_schema(schema, &names, &types, &nullable, err, sizeof err)) < 0)
		return usage_error("--schema: %s", err);
	sc_client *c = connect_or_fail(g, &status);
	if (c) {
		msgpack_packer *pk = sc_begin(c, WIRE_CREATE, 5);
		wire_key_str(pk, 0, argv[optind]);
		msgpack_pack_uint32(pk, 1);
		msgpack_pack_array(pk, (uint32_t)n);
		for (int i = 0; i < n; i++) {
			msgpack_pack_array(pk, 3);
			wire_pack_str(pk, names[i]);
			msgpack_pack_uint32(pk, (uint32_t)types[i]);
			nullable[i] ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		}
		msgpack_pack_uint32(pk, 2);
		msgpack_pack_array(pk, (uint32_t)nparts);
		for (int i = 0; i < nparts; i++)
			wire_pack_str(pk, parts[i]);
		msgpack_pack_uint32(pk, 3);
		msgpack_pack_map(pk, (uint32_t)nprops);
		for (int i = 0; i < nprops; i++) {
			char *eq = strchr(props[i], '=');
			wire_pack_strn(pk, props[i], (size_t)(eq - props[i]));
			wire_pack_str(pk, eq + 1);
		}
		wire_key_u64(pk, 4, (uint64_t)mode);
		const msgpack_object *b;
		struct wire_error e;
		uint64_t v = 0;
		if (sc_call(c, &b, &e) != 0) {
			status = fail_wire(&e);
		} else {
			wire_get_u64(b, 0, &v);
			printf(v == 0 ? "created table '%s' (version 0)\n"
				      : "table '%s' exists (version %" PRIu64 "): left as it is\n",
			       argv[optind], v);
		}
		sc_close(c);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(types);
	free(nullable);
	return status;
}

/* Send a request whose body is just the table name (and nothing else). */
static int simple_call(struct global *g, int type, const char *table, sc_client **cp,
		       const msgpack_object **body)
{
	int status = 0;
	struct wire_error e;
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, type, table ? 1 : 0);
	if (table)
		wire_key_str(pk, 0, table);
	if (sc_call(c, body, &e) != 0) {
		status = fail_wire(&e);
		sc_close(c);
		return status;
	}
	*cp = c;
	return 0;
}

static int cmd_tables(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {COMMON_OPTS};
	PARSE_OPTS("", longs, default: break;);
	if (optind != argc)
		return usage_error("takes no arguments");
	sc_client *c;
	const msgpack_object *b;
	int status = simple_call(g, WIRE_TABLES, NULL, &c, &b);
	if (status)
		return status;
	const msgpack_object *a = wire_get(b, 0);
	for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size; i++) {
		const msgpack_object *s = &a->via.array.ptr[i];
		if (s->type == MSGPACK_OBJECT_STR)
			printf("%.*s\n", (int)s->via.str.size, s->via.str.ptr);
	}
	sc_close(c);
	return 0;
}

static int cmd_describe(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"version", required_argument, NULL, 'v'}, COMMON_OPTS};
	const char *ver = NULL;
	uint64_t v = 0;
	int status = 0;
	PARSE_OPTS("", longs, case 'v': ver = optarg; break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if (ver && !parse_u64(ver, &v))
		return usage_error("--version takes a version number, not '%s'", ver);
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, ver ? 2 : 1);
	wire_key_str(pk, 0, argv[optind]);
	if (ver)
		wire_key_u64(pk, 1, v);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = fail_wire(&e);
		sc_close(c);
		return status;
	}
	uint64_t version = 0, files = 0, rows = 0, bytes = 0;
	wire_get_u64(b, 1, &version);
	wire_get_u64(b, 6, &files);
	wire_get_u64(b, 7, &rows);
	wire_get_u64(b, 8, &bytes);
	printf("table %s, version %" PRIu64 ": %" PRIu64 " rows in %" PRIu64 " files, %" PRIu64
	       " bytes\n", argv[optind], version, rows, files, bytes);
	const msgpack_object *cols = wire_get(b, 2), *parts = wire_get(b, 3), *props = wire_get(b, 4),
			     *cons = wire_get(b, 5);
	printf("columns:\n");
	for (uint32_t i = 0; cols && cols->type == MSGPACK_OBJECT_ARRAY && i < cols->via.array.size; i++) {
		const msgpack_object *f = &cols->via.array.ptr[i];
		char name[ST_NAME_MAX + 1] = "?";
		if (f->type != MSGPACK_OBJECT_ARRAY || f->via.array.size < 4)
			continue;
		wire_obj_strbuf(&f->via.array.ptr[0], name, sizeof name);
		printf("  %-24s %-10s%s  (field id %" PRIu64 ")\n", name,
		       st_type_name((int)f->via.array.ptr[1].via.u64),
		       f->via.array.ptr[2].via.boolean ? "" : " not null", f->via.array.ptr[3].via.u64);
	}
	if (parts && parts->type == MSGPACK_OBJECT_ARRAY && parts->via.array.size) {
		printf("partitioned by:");
		for (uint32_t i = 0; i < parts->via.array.size; i++)
			printf(" %.*s", (int)parts->via.array.ptr[i].via.str.size,
			       parts->via.array.ptr[i].via.str.ptr);
		printf("\n");
	}
	if (props && props->type == MSGPACK_OBJECT_MAP && props->via.map.size) {
		printf("properties:\n");
		for (uint32_t i = 0; i < props->via.map.size; i++) {
			const msgpack_object_kv *kv = &props->via.map.ptr[i];
			printf("  %.*s = %.*s\n", (int)kv->key.via.str.size, kv->key.via.str.ptr,
			       (int)kv->val.via.str.size, kv->val.via.str.ptr);
		}
	}
	if (cons && cons->type == MSGPACK_OBJECT_ARRAY && cons->via.array.size) {
		printf("constraints:\n");
		for (uint32_t i = 0; i < cons->via.array.size; i++) {
			const msgpack_object *k = &cons->via.array.ptr[i];
			if (k->type == MSGPACK_OBJECT_ARRAY && k->via.array.size == 2)
				printf("  %.*s CHECK (%.*s)\n", (int)k->via.array.ptr[0].via.str.size,
				       k->via.array.ptr[0].via.str.ptr, (int)k->via.array.ptr[1].via.str.size,
				       k->via.array.ptr[1].via.str.ptr);
		}
	}
	sc_close(c);
	return 0;
}

static int cmd_drop(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {COMMON_OPTS};
	PARSE_OPTS("", longs, default: break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	sc_client *c;
	const msgpack_object *b;
	int status = simple_call(g, WIRE_DROP, argv[optind], &c, &b);
	if (status)
		return status;
	printf("dropped table '%s' (its files stay until vacuum)\n", argv[optind]);
	sc_close(c);
	return 0;
}

static int cmd_alter(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {COMMON_OPTS};
	static const struct {
		const char *name;
		int op, nargs;
	} ops[] = {
		{"add-column", 0, 2},      {"rename-column", 1, 2},  {"drop-column", 2, 1},
		{"set-property", 3, 1},    {"unset-property", 4, 1}, {"set-not-null", 5, 1},
		{"drop-not-null", 6, 1},   {"add-constraint", 7, 2}, {"drop-constraint", 8, 1},
	};
	int status = 0;
	PARSE_OPTS("", longs, default: break;);
	if (argc - optind < 3)
		return usage_error("give a table, an operation and its arguments");
	const char *table = argv[optind], *opname = argv[optind + 1];
	int k = -1;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (!strcmp(opname, ops[i].name))
			k = (int)i;
	if (k < 0)
		return usage_error("unknown operation '%s'", opname);
	if (argc - optind - 2 != ops[k].nargs)
		return usage_error("%s takes %d argument%s", opname, ops[k].nargs,
				   ops[k].nargs == 1 ? "" : "s");
	const char *a1 = argv[optind + 2], *a2 = ops[k].nargs > 1 ? argv[optind + 3] : "";
	char key[1024];
	int type = 0;
	if (ops[k].op == 3) { /* set-property KEY=VALUE */
		const char *eq = strchr(a1, '=');
		if (!eq || eq == a1 || (size_t)(eq - a1) >= sizeof key)
			return usage_error("set-property takes KEY=VALUE");
		snprintf(key, sizeof key, "%.*s", (int)(eq - a1), a1);
		a2 = eq + 1;
		a1 = key;
	}
	if (ops[k].op == 0 && !(type = st_type_from_name(a2, strlen(a2))))
		return usage_error("add-column: unknown type '%s'", a2);
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_ALTER, 5);
	wire_key_str(pk, 0, table);
	wire_key_u64(pk, 1, (uint64_t)ops[k].op);
	wire_key_str(pk, 2, a1);
	wire_key_str(pk, 3, ops[k].op == 0 ? "" : a2);
	wire_key_u64(pk, 4, (uint64_t)type);
	const msgpack_object *b;
	struct wire_error e;
	uint64_t v = 0;
	if (sc_call(c, &b, &e) != 0) {
		status = fail_wire(&e);
	} else {
		wire_get_u64(b, 0, &v);
		printf("table '%s' version %" PRIu64 ": %s done\n", table, v, opname);
	}
	sc_close(c);
	return status;
}

/* ---- load ------------------------------------------------------------------ */

struct loader {
	sc_client *c;
	const char *table;
	const struct rd_opts *ro;
	int mode;               /* 0 append, 1 overwrite */
	bool merge;
	const char *replace_where;
	const char *app_id;
	uint64_t app_version;   /* of the next commit */
	uint64_t load_id;       /* open load, or 0 */
	uint64_t batch_no;      /* next batch number of the open load */
	uint64_t rows_done;     /* rows committed */
	uint32_t *idx;          /* identity selection */
	uint32_t idx_cap;
	struct wire_error e;
};

static void pack_write_opts(struct loader *l, msgpack_packer *pk)
{
	uint32_t n = 3 + (l->replace_where != NULL) + 2 * (l->app_id != NULL);
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_map(pk, n);
	wire_key_u64(pk, 0, (uint64_t)l->mode);
	wire_key_bool(pk, 1, l->merge);
	wire_key_bool(pk, 2, false);
	if (l->replace_where)
		wire_key_str(pk, 3, l->replace_where);
	if (l->app_id) {
		wire_key_str(pk, 4, l->app_id);
		wire_key_u64(pk, 5, l->app_version);
	}
}

static const uint32_t *selection(struct loader *l, uint32_t from, uint32_t n)
{
	static const uint32_t none[1];
	if (n == 0)
		return none;
	if (from + n > l->idx_cap) {
		free(l->idx);
		l->idx_cap = from + n;
		if (!(l->idx = malloc(l->idx_cap * sizeof *l->idx))) {
			l->idx_cap = 0;
			return NULL;
		}
		for (uint32_t i = 0; i < l->idx_cap; i++)
			l->idx[i] = i;
	}
	return l->idx + from;
}

/* Send rows [from, from + n) of the batch as one request of `type`
 * (WRITE, LOAD_BEGIN with 0 rows, or LOAD_DATA), halving until it fits. */
static int send_rows(struct loader *l, int type, const struct st_schema *fs,
		     const struct st_vec *cols, uint32_t from, uint32_t n, const msgpack_object **b)
{
	const char *names[ST_MAX_COLUMNS];
	for (uint32_t i = 0; i < fs->nfields; i++)
		names[i] = fs->fields[i].name;
	const uint32_t *sel = selection(l, from, n);
	if (!sel) {
		wire_error_set(&l->e, ST_ENOMEM, "out of memory");
		return ST_ENOMEM;
	}
	size_t limit = sc_server(l->c)->max_message_size - 4096;
	if (n > 1 && type == WIRE_LOAD_DATA &&
	    wire_batch_bytes(fs->nfields, names, cols, sel, n) > limit) {
		int rc = send_rows(l, type, fs, cols, from, n / 2, b);
		return rc ? rc : send_rows(l, type, fs, cols, from + n / 2, n - n / 2, b);
	}
	msgpack_packer *pk = sc_begin(l->c, type, 3);
	if (type == WIRE_LOAD_DATA) {
		wire_key_u64(pk, 0, l->load_id);
		wire_key_u64(pk, 2, l->batch_no++);
		msgpack_pack_uint32(pk, 1);
	} else {
		wire_key_str(pk, 0, l->table);
		pack_write_opts(l, pk);
		msgpack_pack_uint32(pk, 2);
	}
	wire_pack_batch(sc_out(l->c), fs->nfields, names, cols, sel, n);
	return sc_call(l->c, b, &l->e);
}

static int load_commit(struct loader *l)
{
	const msgpack_object *b;
	msgpack_packer *pk = sc_begin(l->c, WIRE_LOAD_COMMIT, 1);
	wire_key_u64(pk, 0, l->load_id);
	l->load_id = 0;
	int rc = sc_call(l->c, &b, &l->e);
	if (rc == 0) {
		uint64_t rows = 0;
		wire_get_u64(b, 3, &rows);
		l->rows_done += rows;
		print_result("loaded", l->table, b);
		l->app_version++;
	}
	return rc;
}

static void load_abort(struct loader *l)
{
	const msgpack_object *b;
	struct wire_error e;
	if (!l->load_id)
		return;
	msgpack_packer *pk = sc_begin(l->c, WIRE_LOAD_ABORT, 1);
	wire_key_u64(pk, 0, l->load_id);
	sc_call(l->c, &b, &e);
	l->load_id = 0;
}

static void progress(uint64_t rows, uint64_t bytes, uint64_t total, double t0, bool final)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double dt = ts.tv_sec + ts.tv_nsec * 1e-9 - t0;
	double mbs = dt > 0 ? bytes / dt / 1e6 : 0;
	fprintf(stderr, "\r  %" PRIu64 " rows  %.1f MB  %.1f MB/s", rows, bytes / 1e6, mbs);
	if (total && bytes <= total && mbs > 0 && !final) {
		int eta = (int)((total - bytes) / 1e6 / mbs);
		fprintf(stderr, "  %3d%%  ETA %d:%02d", (int)(100.0 * bytes / total), eta / 60, eta % 60);
	}
	fprintf(stderr, final ? "\n" : "   ");
}

static int cmd_load(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {
		{"format", required_argument, NULL, 'f'},
		{"delimiter", required_argument, NULL, 'd'},
		{"mode", required_argument, NULL, 'm'},
		{"replace-where", required_argument, NULL, 'w'},
		{"merge-schema", no_argument, NULL, 'M'},
		{"batch-rows", required_argument, NULL, 'b'},
		{"app-id", required_argument, NULL, 'a'},
		{"app-version", required_argument, NULL, 'A'},
		{"quiet", no_argument, NULL, 'q'},
		COMMON_OPTS};
	struct loader l = {0};
	struct rd_opts ro = {.format = 0};
	uint64_t commit_rows = 0;
	const char *appver = NULL;
	bool quiet = false, have_version = false;
	int status = 0;
	PARSE_OPTS("", longs,
		   case 'f':
			if (!strcmp(optarg, "csv"))
				ro.format = RD_CSV;
			else if (!strcmp(optarg, "jsonl"))
				ro.format = RD_JSONL;
			else
				return usage_error("--format is csv or jsonl, not '%s'", optarg);
			break;
		   case 'd':
			if (strlen(optarg) != 1 && strcmp(optarg, "\\t"))
				return usage_error("--delimiter takes one character");
			ro.delim = strcmp(optarg, "\\t") ? optarg[0] : '\t';
			break;
		   case 'm':
			if (!strcmp(optarg, "append"))
				l.mode = 0;
			else if (!strcmp(optarg, "overwrite"))
				l.mode = 1;
			else
				return usage_error("--mode is append or overwrite, not '%s'", optarg);
			break;
		   case 'w': l.replace_where = optarg; break;
		   case 'M': l.merge = true; break;
		   case 'b':
			if (!parse_u64(optarg, &commit_rows) || commit_rows == 0)
				return usage_error("--batch-rows takes a positive number of rows");
			break;
		   case 'a': l.app_id = optarg; break;
		   case 'A': appver = optarg; have_version = true; break;
		   case 'q': quiet = true; break;);
	if (optind + 2 != argc)
		return usage_error("give a table and a file (or - for standard input)");
	if (!!l.app_id != have_version)
		return usage_error("--app-id and --app-version go together");
	if (appver && !parse_u64(appver, &l.app_version))
		return usage_error("--app-version takes a number");
	if (l.replace_where && l.mode == 1)
		return usage_error("--replace-where goes with --mode append");
	l.table = argv[optind];
	const char *path = argv[optind + 1];
	if (!ro.format) {
		size_t n = strlen(path);
		ro.format = n > 6 && (!strcmp(path + n - 6, ".jsonl") || !strcmp(path + n - 5, ".json"))
				    ? RD_JSONL : RD_CSV;
	}
	FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!in)
		return fail_msg("cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	uint64_t total = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	bool show = !quiet && isatty(2);

	/* The table's columns tell the reader how to convert the text. */
	rd_reader *r = NULL;
	struct st_field *fields = NULL;
	const msgpack_object *b;
	l.c = connect_or_fail(g, &status);
	if (!l.c)
		goto out;
	msgpack_packer *pk = sc_begin(l.c, WIRE_DESCRIBE, 1);
	wire_key_str(pk, 0, l.table);
	if (sc_call(l.c, &b, &l.e) != 0) {
		status = fail_wire(&l.e);
		goto out;
	}
	const msgpack_object *cols = wire_get(b, 2);
	uint32_t nf = cols && cols->type == MSGPACK_OBJECT_ARRAY ? cols->via.array.size : 0;
	fields = calloc(nf + 1, sizeof *fields);
	if (!fields) {
		status = fail_msg("out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nf; i++) {
		const msgpack_object *f = &cols->via.array.ptr[i];
		if (f->type != MSGPACK_OBJECT_ARRAY || f->via.array.size < 4 ||
		    !wire_obj_strbuf(&f->via.array.ptr[0], fields[i].name, sizeof fields[i].name)) {
			status = fail_msg("the daemon described table '%s' in a form this client does "
					  "not read", l.table);
			goto out;
		}
		fields[i].type = (uint8_t)f->via.array.ptr[1].via.u64;
		fields[i].nullable = f->via.array.ptr[2].via.boolean;
		fields[i].id = (uint32_t)f->via.array.ptr[3].via.u64;
	}
	struct st_schema schema = {nf, fields};
	struct st_err err;
	uint32_t wire_rows = sc_server(l.c)->max_batch_rows;
	ro.batch_rows = wire_rows < 65536 ? wire_rows : 65536;
	ro.name = strcmp(path, "-") ? path : "<stdin>";
	ro.infer_unknown = l.merge;
	if (rd_open(in, &schema, &ro, &r, &err) != ST_OK) {
		status = fail_msg("%s", err.msg);
		goto out;
	}
	const struct st_schema *fs = rd_schema(r);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double t0 = ts.tv_sec + ts.tv_nsec * 1e-9, last = 0;
	uint64_t in_commit = 0; /* rows sent in the open commit */
	bool first = true;
	for (;;) {
		const struct st_vec *vecs;
		uint32_t nrows;
		int rc = rd_next(r, &vecs, &nrows, &err);
		if (rc < 0) {
			if (show)
				fputc('\n', stderr);
			load_abort(&l);
			status = fail_msg("%s; nothing of this commit was written", err.msg);
			goto out;
		}
		if (rc == 0)
			break;
		/* A whole input in one short batch: one WRITE (small writes can
		 * go inline in the daemon's log: one fsync). */
		if (first && nrows < ro.batch_rows && (!commit_rows || nrows <= commit_rows)) {
			first = false;
			if (send_rows(&l, WIRE_WRITE, fs, vecs, 0, nrows, &b) != 0) {
				status = fail_wire(&l.e);
				goto out;
			}
			l.rows_done += nrows;
			print_result("loaded", l.table, b);
			continue;
		}
		first = false;
		for (uint32_t at = 0; at < nrows;) {
			if (!l.load_id) {
				if (send_rows(&l, WIRE_LOAD_BEGIN, fs, vecs, 0, 0, &b) != 0) {
					status = fail_wire(&l.e);
					goto out;
				}
				wire_get_u64(b, 0, &l.load_id);
				l.batch_no = 0;
				in_commit = 0;
			}
			uint32_t n = nrows - at;
			if (commit_rows && in_commit + n > commit_rows)
				n = (uint32_t)(commit_rows - in_commit);
			if (send_rows(&l, WIRE_LOAD_DATA, fs, vecs, at, n, &b) != 0) {
				if (show)
					fputc('\n', stderr);
				status = fail_wire(&l.e);
				l.load_id = 0; /* the daemon aborted it */
				goto out;
			}
			at += n;
			in_commit += n;
			if (commit_rows && in_commit == commit_rows) {
				if (show)
					fputc('\n', stderr);
				if (load_commit(&l) != 0) {
					status = fail_wire(&l.e);
					goto out;
				}
			}
		}
		if (show) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			double t = ts.tv_sec + ts.tv_nsec * 1e-9;
			if (t - last > 0.2) {
				progress(rd_rows(r), rd_bytes(r), total, t0, false);
				last = t;
			}
		}
	}
	if (show && rd_rows(r) > 0)
		progress(rd_rows(r), rd_bytes(r), total, t0, true);
	if (l.load_id && load_commit(&l) != 0) {
		status = fail_wire(&l.e);
		goto out;
	}
	if (rd_rows(r) == 0)
		printf("table '%s': the input has no rows; nothing written\n", l.table);
out:
	load_abort(&l);
	rd_close(r);
	free(fields);
	free(l.idx);
	sc_close(l.c);
	if (in && in != stdin)
		fclose(in);
	return status;
}

/* ---- scan / query ------------------------------------------------------------ */

static int print_batch(struct tx_printer **p, FILE *out, enum tx_format f, const msgpack_object *o,
		       uint64_t *limit_left)
{
	struct wire_batch wb;
	struct st_err err;
	if (wire_batch_decode(o, UINT32_MAX, &wb, &err) != ST_OK)
		return fail_msg("the daemon sent a batch this client cannot read: %s", err.msg);
	if (!*p && !(*p = tx_printer_new(out, f, wb.ncols, (const char *const *)wb.names))) {
		wire_batch_fini(&wb);
		return fail_msg("out of memory");
	}
	uint32_t n = wb.nrows;
	if (limit_left && n > *limit_left)
		n = (uint32_t)*limit_left;
	tx_printer_rows(*p, wb.cols, n);
	if (limit_left)
		*limit_left -= n;
	wire_batch_fini(&wb);
	return 0;
}

static int parse_format(const char *s, enum tx_format *f)
{
	if (!strcmp(s, "table"))
		*f = TX_TABLE;
	else if (!strcmp(s, "csv"))
		*f = TX_CSV;
	else if (!strcmp(s, "jsonl"))
		*f = TX_JSONL;
	else
		return usage_error("--format is table, csv or jsonl, not '%s'", s);
	return 0;
}

/* Split "a,b,c" into a packed array of strings on pk. */
static void pack_list(msgpack_packer *pk, char *list)
{
	char *parts[ST_MAX_COLUMNS];
	uint32_t n = 0;
	for (char *s = strtok(list, ","); s && n < ST_MAX_COLUMNS; s = strtok(NULL, ",")) {
		while (*s == ' ')
			s++;
		size_t len = strlen(s);
		while (len && s[len - 1] == ' ')
			s[--len] = '\0';
		if (*s)
			parts[n++] = s;
	}
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		wire_pack_str(pk, parts[i]);
}

static int cmd_scan(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {
		{"columns", required_argument, NULL, 'c'},
		{"where", required_argument, NULL, 'w'},
		{"version", required_argument, NULL, 'v'},
		{"as-of", required_argument, NULL, 'a'},
		{"limit", required_argument, NULL, 'l'},
		{"format", required_argument, NULL, 'f'},
		COMMON_OPTS};
	char *columns = NULL;
	const char *where = NULL, *ver = NULL, *asof = NULL;
	uint64_t limit = 0;
	bool limited = false;
	enum tx_format f = TX_TABLE;
	int status = 0, kind;
	int64_t value;
	PARSE_OPTS("", longs,
		   case 'c': columns = optarg; break;
		   case 'w': where = optarg; break;
		   case 'v': ver = optarg; break;
		   case 'a': asof = optarg; break;
		   case 'l':
			if (!parse_u64(optarg, &limit))
				return usage_error("--limit takes a number of rows");
			limited = true;
			break;
		   case 'f':
			if ((status = parse_format(optarg, &f)))
				return status;
			break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if ((status = parse_at(ver, asof, &kind, &value)))
		return status;
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_SCAN, 2 + !!columns + !!where + limited);
	wire_key_str(pk, 0, argv[optind]);
	if (columns) {
		msgpack_pack_uint32(pk, 1);
		pack_list(pk, columns);
	}
	if (where)
		wire_key_str(pk, 2, where);
	pack_at(pk, 3, kind, value);
	if (limited)
		wire_key_u64(pk, 4, limit);
	const msgpack_object *b;
	struct wire_error e;
	struct tx_printer *p = NULL;
	uint64_t cursor = 0;
	if (sc_call(c, &b, &e) != 0) {
		status = fail_wire(&e);
		goto out;
	}
	for (;;) {
		if ((status = print_batch(&p, stdout, f, wire_get(b, 1), NULL)))
			break;
		cursor = 0;
		wire_get_u64(b, 0, &cursor);
		if (!cursor)
			break;
		pk = sc_begin(c, WIRE_SCAN_NEXT, 1);
		wire_key_u64(pk, 0, cursor);
		if (sc_call(c, &b, &e) != 0) {
			status = fail_wire(&e);
			cursor = 0;
			break;
		}
	}
	if (cursor) { /* stopped early: let the daemon free the cursor now */
		pk = sc_begin(c, WIRE_SCAN_CLOSE, 1);
		wire_key_u64(pk, 0, cursor);
		sc_call(c, &b, &e);
	}
out:
	if (p)
		tx_printer_end(p);
	sc_close(c);
	return status;
}

static int cmd_query(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {
		{"group-by", required_argument, NULL, 'g'},
		{"agg", required_argument, NULL, 'A'},
		{"where", required_argument, NULL, 'w'},
		{"version", required_argument, NULL, 'v'},
		{"as-of", required_argument, NULL, 'a'},
		{"format", required_argument, NULL, 'f'},
		COMMON_OPTS};
	char *group = NULL, *agg = NULL;
	const char *where = NULL, *ver = NULL, *asof = NULL;
	enum tx_format f = TX_TABLE;
	int status = 0, kind;
	int64_t value;
	PARSE_OPTS("", longs,
		   case 'g': group = optarg; break;
		   case 'A': agg = optarg; break;
		   case 'w': where = optarg; break;
		   case 'v': ver = optarg; break;
		   case 'a': asof = optarg; break;
		   case 'f':
			if ((status = parse_format(optarg, &f)))
				return status;
			break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if (!group && !agg)
		return usage_error("give --group-by COLS, --agg \"sum(value),count(*)\", or both");
	if ((status = parse_at(ver, asof, &kind, &value)))
		return status;
	/* Aggregates: split at top-level commas into [function, column]. */
	char *fns[256], *args[256];
	uint32_t na = 0;
	for (char *s = agg; s && *s;) {
		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		char *open = strchr(s, '('), *close = open ? strchr(open, ')') : NULL;
		if (!open || !close || na == 256)
			return usage_error("--agg: '%s' is not FUNCTION(COLUMN)", s);
		*open = *close = '\0';
		fns[na] = s;
		args[na] = open + 1;
		for (char *t = s + strlen(s); t > s && t[-1] == ' ';)
			*--t = '\0';
		while (*args[na] == ' ')
			args[na]++;
		for (char *t = args[na] + strlen(args[na]); t > args[na] && t[-1] == ' ';)
			*--t = '\0';
		na++;
		s = close + 1;
	}
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_QUERY, 4 + !!where);
	wire_key_str(pk, 0, argv[optind]);
	msgpack_pack_uint32(pk, 1);
	if (group)
		pack_list(pk, group);
	else
		msgpack_pack_array(pk, 0);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_array(pk, na);
	for (uint32_t i = 0; i < na; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, fns[i]);
		wire_pack_str(pk, args[i]);
	}
	if (where)
		wire_key_str(pk, 3, where);
	pack_at(pk, 4, kind, value);
	const msgpack_object *b;
	struct wire_error e;
	struct tx_printer *p = NULL;
	if (sc_call(c, &b, &e) != 0)
		status = fail_wire(&e);
	else
		status = print_batch(&p, stdout, f, wire_get(b, 0), NULL);
	if (p)
		tx_printer_end(p);
	sc_close(c);
	return status;
}

/* ---- history / restore / vacuum ---------------------------------------------- */

static int cmd_history(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"limit", required_argument, NULL, 'l'}, COMMON_OPTS};
	uint64_t limit = 0;
	int status = 0;
	PARSE_OPTS("", longs,
		   case 'l':
			if (!parse_u64(optarg, &limit))
				return usage_error("--limit takes a number of commits");
			break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_HISTORY, 2);
	wire_key_str(pk, 0, argv[optind]);
	wire_key_u64(pk, 1, limit);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = fail_wire(&e);
		sc_close(c);
		return status;
	}
	const msgpack_object *a = wire_get(b, 0);
	printf("%7s  %-26s  %-14s  %10s  %10s  %6s  %6s  %8s  %s\n", "version", "time (UTC)",
	       "operation", "+rows", "-rows", "+files", "-files", "ms", "parameters");
	for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size; i++) {
		const msgpack_object *h = &a->via.array.ptr[i];
		uint64_t v = 0, ra = 0, rr = 0, fa = 0, fr = 0, dur = 0;
		int64_t t = 0;
		char op[64] = "", params[1024] = "";
		wire_get_u64(h, 0, &v);
		wire_get_i64(h, 1, &t);
		wire_get_strbuf(h, 2, op, sizeof op);
		wire_get_u64(h, 6, &ra);
		wire_get_u64(h, 7, &rr);
		wire_get_u64(h, 8, &fa);
		wire_get_u64(h, 9, &fr);
		wire_get_u64(h, 11, &dur);
		const msgpack_object *pm = wire_get(h, 3);
		size_t n = 0;
		for (uint32_t j = 0; pm && pm->type == MSGPACK_OBJECT_MAP && j < pm->via.map.size; j++) {
			const msgpack_object_kv *kv = &pm->via.map.ptr[j];
			if (kv->val.via.str.size == 0 || n >= sizeof params)
				continue;
			n += (size_t)snprintf(params + n, sizeof params - n, "%s%.*s=%.*s", n ? " " : "",
					      (int)kv->key.via.str.size, kv->key.via.str.ptr,
					      (int)kv->val.via.str.size, kv->val.via.str.ptr);
		}
		printf("%7" PRIu64 "  ", v);
		print_time(stdout, t);
		printf("%*s  %-14s  %10" PRIu64 "  %10" PRIu64 "  %6" PRIu64 "  %6" PRIu64 "  %8.1f  %s\n",
		       t % 1000000 ? 0 : 7, "", op, ra, rr, fa, fr, dur / 1000.0, params);
	}
	sc_close(c);
	return 0;
}

static int cmd_restore(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"version", required_argument, NULL, 'v'},
					      {"as-of", required_argument, NULL, 'a'},
					      COMMON_OPTS};
	const char *ver = NULL, *asof = NULL;
	int status = 0, kind;
	int64_t value;
	PARSE_OPTS("", longs,
		   case 'v': ver = optarg; break;
		   case 'a': asof = optarg; break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if (!ver && !asof)
		return usage_error("give --version N or --as-of TIMESTAMP");
	if ((status = parse_at(ver, asof, &kind, &value)))
		return status;
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_RESTORE, 2);
	wire_key_str(pk, 0, argv[optind]);
	pack_at(pk, 1, kind, value);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0)
		status = fail_wire(&e);
	else
		print_result("restored", argv[optind], b);
	sc_close(c);
	return status;
}

static int cmd_vacuum(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"retain", required_argument, NULL, 'r'},
					      {"dry-run", no_argument, NULL, 'n'},
					      {"force", no_argument, NULL, 'F'},
					      COMMON_OPTS};
	int64_t retain = -1;
	bool dry = false, force = false;
	int status = 0;
	PARSE_OPTS("", longs,
		   case 'r':
			if (st_parse_duration(optarg, &retain) != ST_OK)
				return usage_error("--retain takes a duration such as 7d, 12h, 30m or 90s");
			break;
		   case 'n': dry = true; break;
		   case 'F': force = true; break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one table name");
	if (retain == 0 && !force)
		return usage_error("--retain 0 deletes every removed file at once: add --force");
	sc_client *c = connect_or_fail(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_VACUUM, 3 + (retain >= 0));
	wire_key_str(pk, 0, argv[optind]);
	if (retain >= 0)
		wire_key_i64(pk, 1, retain ? retain : 1);
	wire_key_bool(pk, 2, dry);
	wire_key_bool(pk, 3, force);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = fail_wire(&e);
		sc_close(c);
		return status;
	}
	uint64_t files = 0, bytes = 0, pinned = 0, oldest = 0, pruned = 0;
	wire_get_u64(b, 0, &files);
	wire_get_u64(b, 1, &bytes);
	wire_get_u64(b, 3, &pinned);
	wire_get_u64(b, 4, &oldest);
	wire_get_u64(b, 5, &pruned);
	const msgpack_object *paths = wire_get(b, 2);
	if (dry)
		for (uint32_t i = 0; paths && paths->type == MSGPACK_OBJECT_ARRAY && i < paths->via.array.size; i++)
			printf("would delete %.*s\n", (int)paths->via.array.ptr[i].via.str.size,
			       paths->via.array.ptr[i].via.str.ptr);
	printf("%s %" PRIu64 " files (%" PRIu64 " bytes); %" PRIu64 " kept for open readers; %"
	       PRIu64 " old commits pruned; oldest readable version %" PRIu64 "\n",
	       dry ? "would delete" : "deleted", files, bytes, pinned, pruned, oldest);
	sc_close(c);
	return 0;
}

/* ---- status / ping / inspect / verify ------------------------------------------ */

static int cmd_status(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {COMMON_OPTS};
	PARSE_OPTS("", longs, default: break;);
	if (optind != argc)
		return usage_error("takes no arguments");
	sc_client *c = NULL;
	const msgpack_object *b;
	int status = simple_call(g, WIRE_STATUS, NULL, &c, &b);
	if (status)
		return status;
	char ver[64] = "?", dir[4096] = "?";
	uint64_t up = 0, tables = 0, lsn = 0, disk = 0, pid = 0, loads = 0, cursors = 0;
	wire_get_strbuf(b, 0, ver, sizeof ver);
	wire_get_u64(b, 1, &up);
	wire_get_strbuf(b, 2, dir, sizeof dir);
	wire_get_u64(b, 3, &tables);
	wire_get_u64(b, 4, &lsn);
	wire_get_u64(b, 5, &disk);
	wire_get_u64(b, 6, &pid);
	wire_get_u64(b, 7, &loads);
	wire_get_u64(b, 8, &cursors);
	printf("address:        %s\nversion:        stratad %s (pid %" PRIu64 ")\n", sc_host(c), ver,
	       pid);
	printf("uptime:         %" PRIu64 "d %02" PRIu64 ":%02" PRIu64 ":%02" PRIu64 "\n",
	       up / UINT64_C(86400000000), up / UINT64_C(3600000000) % 24,
	       up / UINT64_C(60000000) % 60, up / UINT64_C(1000000) % 60);
	printf("data directory: %s\ntables:         %" PRIu64 "\nlast LSN:       %" PRIu64 "\n", dir,
	       tables, lsn);
	printf("disk use:       %.1f MB\nopen loads:     %" PRIu64 "\nopen cursors:   %" PRIu64 "\n",
	       disk / 1e6, loads, cursors);
	sc_close(c);
	return 0;
}

static int cmd_ping(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {COMMON_OPTS};
	PARSE_OPTS("", longs, default: break;);
	if (optind != argc)
		return usage_error("takes no arguments");
	struct timespec a, z;
	clock_gettime(CLOCK_MONOTONIC, &a);
	sc_client *c;
	const msgpack_object *b;
	int status = simple_call(g, WIRE_PING, NULL, &c, &b);
	if (status)
		return status;
	clock_gettime(CLOCK_MONOTONIC, &z);
	printf("pong from %s (stratad %s) in %.3f ms\n", sc_host(c), sc_server(c)->version,
	       (z.tv_sec - a.tv_sec) * 1e3 + (z.tv_nsec - a.tv_nsec) / 1e6);
	sc_close(c);
	return 0;
}

static int cmd_inspect(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"chunks", no_argument, NULL, 'C'}, COMMON_OPTS};
	bool chunks = false;
	PARSE_OPTS("", longs, case 'C': chunks = true; break;);
	if (optind + 1 != argc)
		return usage_error("give exactly one segment file");
	struct st_err err;
	if (seg_inspect(argv[optind], stdout, chunks, &err) != ST_OK)
		return fail_msg("%s", err.msg);
	return 0;
}

/* Offline verification is stratad's (it owns the store library): run
 * `stratad --verify DIR`, found next to this program or on PATH. */
static int verify_offline(const char *dir)
{
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	const char *prog = "stratad";
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof path, "%s/stratad", self);
			if (access(path, X_OK) == 0)
				prog = path;
		}
	}
	fflush(stdout);
	execlp(prog, "stratad", "--verify", dir, (char *)NULL);
	return fail_msg("cannot run stratad for an offline check: %s", strerror(errno));
}

static int cmd_verify(int argc, char **argv, struct global *g)
{
	static const struct option longs[] = {{"data-dir", required_argument, NULL, 'D'}, COMMON_OPTS};
	const char *dir = NULL;
	PARSE_OPTS("", longs, case 'D': dir = optarg; break;);
	if (optind != argc)
		return usage_error("takes no arguments");
	if (dir)
		return verify_offline(dir);
	sc_client *c;
	const msgpack_object *b;
	int status = simple_call(g, WIRE_VERIFY, NULL, &c, &b);
	if (status)
		return status;
	uint64_t segs = 0, commits = 0;
	wire_get_u64(b, 0, &segs);
	wire_get_u64(b, 1, &commits);
	const msgpack_object *p = wire_get(b, 2);
	uint32_t np = p && p->type == MSGPACK_OBJECT_ARRAY ? p->via.array.size : 0;
	for (uint32_t i = 0; i < np; i++)
		printf("DAMAGED: %.*s\n", (int)p->via.array.ptr[i].via.str.size,
		       p->via.array.ptr[i].via.str.ptr);
	printf("%s: %" PRIu64 " segments and %" PRIu64 " commits checked, %u problem%s\n",
	       np ? "FAILED" : "ok", segs, commits, np, np == 1 ? "" : "s");
	sc_close(c);
	return np ? 1 : 0;
}

/* ---- main ---------------------------------------------------------------------- */

static const struct command commands[] = {
	{"create", cmd_create, "TABLE --schema \"COL TYPE [not null], ...\" [options]",
	 "Create a table (its version 0).\n"
	 "  --schema TEXT         columns: name, type (bool int32 int64 float64 string binary date\n"
	 "                        timestamp), optional 'not null'; comma-separated\n"
	 "  --partition-by COL    a partition column (repeatable)\n"
	 "  --property K=V        a table property, e.g. file_retention=7d, log_retention=30d,\n"
	 "                        isolation=WriteSerializable (repeatable)\n"
	 "  --if-not-exists       succeed without change when the table exists\n"
	 "  --replace             drop an existing table of that name first"},
	{"tables", cmd_tables, "", "List the tables."},
	{"describe", cmd_describe, "TABLE [--version N]",
	 "Show a table's columns, partitioning, properties, constraints and size, at the\n"
	 "latest version or at version N."},
	{"drop", cmd_drop, "TABLE", "Drop a table (a commit; its files stay until vacuum)."},
	{"alter", cmd_alter, "TABLE OPERATION ARGS...",
	 "Change a table's schema or properties (a commit). Operations:\n"
	 "  add-column NAME TYPE        a nullable column\n"
	 "  rename-column OLD NEW\n"
	 "  drop-column NAME            metadata only: old files keep their bytes\n"
	 "  set-property KEY=VALUE      unset-property KEY\n"
	 "  set-not-null COL            refused while the column holds NULLs\n"
	 "  drop-not-null COL\n"
	 "  add-constraint NAME PRED    CHECK constraint; existing rows are checked first\n"
	 "  drop-constraint NAME"},
	{"load", cmd_load, "TABLE FILE|- [options]",
	 "Load CSV (with a header line) or JSON Lines into a table as one commit: nothing of a\n"
	 "failed load is visible. Empty CSV fields are NULL; \"\" is an empty string. Rows stream\n"
	 "to the daemon in batches; its memory stays bounded whatever the file's size.\n"
	 "  --format csv|jsonl    default: by file name (.jsonl/.json), else csv\n"
	 "  --delimiter C         CSV field delimiter (default ','; '\\t' for tab)\n"
	 "  --mode append|overwrite\n"
	 "  --replace-where PRED  atomically replace the rows matching PRED with the file's rows\n"
	 "  --merge-schema        add new columns, widen types (int32->int64->float64, date->timestamp)\n"
	 "  --batch-rows N        commit every N rows (one commit per N rows instead of one in all)\n"
	 "  --app-id ID --app-version N\n"
	 "                        idempotent load: skipped when this app id already committed\n"
	 "                        version N or later (with --batch-rows, commit i uses N+i)\n"
	 "  --quiet               no progress bar (it is shown only on a terminal anyway)"},
	{"scan", cmd_scan, "TABLE [options]",
	 "Print rows of a table.\n"
	 "  --columns a,b         which columns (default all)\n"
	 "  --where PRED          e.g. \"value > 10 AND sensor = 'sensor-0001'\"\n"
	 "  --version N | --as-of TIMESTAMP\n"
	 "                        time travel: a version, or the table as of a UTC time\n"
	 "                        ('2026-11-24 10:00:00' or microseconds since the epoch)\n"
	 "  --limit N             at most N rows\n"
	 "  --format table|csv|jsonl  (jsonl: one JSON object per row, nothing else on stdout)"},
	{"query", cmd_query, "TABLE --group-by COLS --agg AGGS [options]",
	 "Aggregate in the daemon, next to the data.\n"
	 "  --group-by a,b        group columns (optional)\n"
	 "  --agg LIST            count(*), count(col), sum(col), min(col), max(col), avg(col)\n"
	 "  --where PRED, --version N | --as-of TIMESTAMP, --format table|csv|jsonl"},
	{"history", cmd_history, "TABLE [--limit N]", "Show a table's commits, newest first."},
	{"restore", cmd_restore, "TABLE (--version N | --as-of TIMESTAMP)",
	 "Make an old version the latest again (a new commit; history stays)."},
	{"vacuum", cmd_vacuum, "TABLE [--retain DURATION] [--dry-run] [--force]",
	 "Delete data files removed longer ago than the table's file_retention (or --retain,\n"
	 "e.g. 7d, 12h) and not read by any open scan; prune history older than log_retention.\n"
	 "A retention below the table's needs --force; --dry-run lists the files only."},
	{"status", cmd_status, "", "Show the daemon's version, uptime, data directory, tables, LSN and disk use."},
	{"ping", cmd_ping, "", "Check that the daemon answers."},
	{"inspect", cmd_inspect, "FILE [--chunks]",
	 "Describe a segment file (schema, row groups, encodings, statistics) and verify its\n"
	 "checksums. Works on the file directly; no daemon needed."},
	{"verify", cmd_verify, "[--data-dir DIR]",
	 "Verify every live segment's checksums and every table's commit chain: through the\n"
	 "daemon, or with --data-dir on a stopped data directory (runs stratad --verify)."},
};

static void main_usage(FILE *out)
{
	fprintf(out, "usage: strata [--host ADDR] [--timeout SECS] COMMAND [ARGS]\n\n"
		     "The strata command line: tables, loads, scans, queries, time travel and\n"
		     "maintenance on a running stratad.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		/* The first sentence of the command's help, on one line. */
		const char *h = commands[i].help, *end = h;
		while (*end && !(end[0] == '.' && (end[1] == ' ' || end[1] == '\n' || !end[1]) &&
				 !(end - h >= 3 && !strncmp(end - 3, "e.g", 3))) &&
		       !(end[0] == ':' && (end[1] == ' ' || end[1] == '\n')))
			end++;
		fprintf(out, "  %-10s ", commands[i].name);
		for (const char *p = h; p < end; p++)
			fputc(*p == '\n' ? ' ' : *p, out);
		fputc('\n', out);
	}
	fprintf(out, "\n'strata COMMAND --help' tells more. Exit status: 0 ok, 1 error, 2 usage.\n"
		     "The daemon address is --host, else $STRATA_HOST, else %s.\n", SC_DEFAULT_HOST);
}

int main(int argc, char **argv)
{
	struct global g = {NULL, 0};
	int i = 1;
	/* Global options before the command. */
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			main_usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("strata (protocol %d)\n", WIRE_VERSION);
			return 0;
		}
		if ((!strcmp(argv[i], "--host") || !strcmp(argv[i], "--timeout")) && i + 1 < argc) {
			if (argv[i][2] == 'h') {
				g.host = argv[++i];
			} else {
				char *end;
				double s = strtod(argv[++i], &end);
				if (*end || s <= 0 || s > 86400) {
					fprintf(stderr, "strata: --timeout takes seconds\n");
					return EXIT_USAGE;
				}
				g.timeout_ms = (int)(s * 1000);
			}
			continue;
		}
		fprintf(stderr, "strata: unknown option '%s'\n", argv[i]);
		main_usage(stderr);
		return EXIT_USAGE;
	}
	if (i == argc) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
		if (!strcmp(argv[i], commands[k].name)) {
			current = &commands[k];
			return commands[k].fn(argc - i, argv + i, &g);
		}
	fprintf(stderr, "strata: unknown command '%s'\n", argv[i]);
	main_usage(stderr);
	return EXIT_USAGE;
}
