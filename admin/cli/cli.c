/*
 * admin/cli/cli.c — what every `strata` command uses (cli.h): option
 * parsing with the common options, usage and error messages prefixed with
 * the command's name, connecting, and checked readers of reply fields.
 *
 * Replies follow format/PROTOCOL.md; every field is type-checked before it
 * is read (a newer or broken daemon may send something else), and an
 * optional field that is absent or malformed is left out of the output.
 * One command per process, one thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "admin/cli/cli.h"
#include "admin/text.h"

const struct cli_command *cli_current;

/* ---- messages ------------------------------------------------------------- */

void cli_cmd_usage(FILE *out)
{
	fprintf(out, "usage: strata %s %s\n\n%s\n", cli_current->name, cli_current->usage,
		cli_current->help);
	fprintf(out, "\ncommon options:\n"
		     "  --host ADDR      daemon address (default $STRATA_HOST, else %s)\n"
		     "  --timeout SECS   wait at most this long for each reply (default %d)\n"
		     "  --token-file F   authenticate with the token in F (NAME:TOKEN on its first\n"
		     "                   line); default $STRATA_TOKEN (NAME:TOKEN), else none\n"
		     "  -h, --help       this help\n",
		SC_DEFAULT_HOST, SC_DEFAULT_TIMEOUT_MS / 1000);
	if (cli_current->opts & (CLI_WRITES | CLI_READS))
		fprintf(out, "\ncluster options (ignored by a single node; any node may be --host:\n"
			     "a follower's 'not the leader' reply is followed to the leader once):\n");
	if (cli_current->opts & CLI_WRITES)
		fprintf(out,
			"  --durability local|quorum|all\n"
			"                   answered once the leader (local), a majority (quorum) or\n"
			"                   every voter (all) holds the write; default: the cluster's\n");
	if (cli_current->opts & CLI_READS)
		fprintf(out,
			"  --min-version N  wait until the serving node has applied the table's version N\n"
			"  --max-staleness DURATION\n"
			"                   refuse when the serving node last heard from a leader longer\n"
			"                   ago (e.g. 500ms, 2s)\n"
			"  --consistency leader|bounded|any\n"
			"                   leader: only the leader answers; bounded: within max staleness\n"
			"                   (the cluster default); any: whatever the node has\n"
			"  --verbose        one line on stderr (stdout unchanged): the node that served\n"
			"                   the read, the LSN it read at and its staleness\n");
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "strata %s: ", cli_current->name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see strata %s --help)\n", cli_current->name);
	return CLI_EXIT_USAGE;
}

int cli_fail_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "strata %s: ", cli_current->name);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int cli_fail_wire(const sc_client *c, const struct wire_error *e)
{
	char msg[ST_ERR_MSG_MAX + 256];
	sc_error_format(e, msg, sizeof msg);
	/* The transport's timeout message does not say where it waited. */
	if (e->code == ETIMEDOUT && c && !strstr(msg, sc_host(c)))
		return cli_fail_msg("%s (waiting on %s; --timeout sets how long)", msg, sc_host(c));
	return cli_fail_msg("%s", msg);
}

/* ---- options -------------------------------------------------------------- */

bool cli_parse_timeout(const char *s, int *ms)
{
	char *end;
	double v = strtod(s, &end);
	if (!*s || *end || !(v > 0 && v <= 86400)) /* also refuses nan */
		return false;
	*ms = (int)(v * 1000);
	if (*ms < 1) /* 0 would mean the default */
		*ms = 1;
	return true;
}

/* getopt_long's '?': an unknown option, or a value given to a flag. */
static int bad_option(const char *arg, const struct option *longs)
{
	if (strncmp(arg, "--", 2) != 0)
		return optopt ? cli_usage_error("unknown option '-%c'", optopt)
			      : cli_usage_error("unknown option '%s'", arg);
	size_t n = strcspn(arg + 2, "=");
	for (const struct option *l = longs; l->name; l++)
		if (strlen(l->name) == n && !strncmp(l->name, arg + 2, n) && arg[2 + n] == '=')
			return cli_usage_error("option '--%s' takes no value", l->name);
	return cli_usage_error("unknown option '%.*s'", (int)n + 2, arg);
}

bool cli_parse_ms(const char *s, uint64_t *ms)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!(*s >= '0' && *s <= '9') || errno)
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (!strcmp(end, units[i].suffix)) {
			if (v > UINT64_MAX / units[i].mult)
				return false;
			*ms = v * units[i].mult;
			return true;
		}
	return false;
}

static bool verbose_reads; /* --verbose of this command (one per process) */

/* A cluster option into g; false after a usage error was printed. */
static bool cluster_option(int o, struct cli_global *g, int *status)
{
	static const char *const durs[] = {"local", "quorum", "all", NULL};
	static const char *const conss[] = {"leader", "bounded", "any", NULL};
	uint64_t v;
	switch (o) {
	case CLI_OPT_DURABILITY:
	case CLI_OPT_CONSISTENCY: {
		const char *const *names = o == CLI_OPT_DURABILITY ? durs : conss;
		for (uint32_t i = 0; names[i]; i++)
			if (!strcmp(optarg, names[i])) {
				/* wire numbers 1, 2, 3 in this order (PROTOCOL.md §2) */
				if (o == CLI_OPT_DURABILITY)
					g->env.durability = i + 1;
				else
					g->env.consistency = i + 1;
				return true;
			}
		*status = cli_usage_error("%s takes %s, not '%s'",
					  o == CLI_OPT_DURABILITY ? "--durability" : "--consistency",
					  o == CLI_OPT_DURABILITY ? "local, quorum or all"
								  : "leader, bounded or any",
					  optarg);
		return false;
	}
	case CLI_OPT_MIN_VERSION:
		if (!cli_parse_u64(optarg, &v) || v == 0) {
			*status = cli_usage_error("--min-version takes a version number >= 1, not '%s'",
						  optarg);
			return false;
		}
		g->env.min_version = v;
		return true;
	case CLI_OPT_MAX_STALENESS:
		if (!cli_parse_ms(optarg, &v)) {
			*status = cli_usage_error("--max-staleness takes a duration (e.g. 500ms, 2s, "
						  "1m), not '%s'", optarg);
			return false;
		}
		g->env.has_max_staleness = true;
		g->env.max_staleness_ms = v;
		return true;
	default: /* CLI_OPT_VERBOSE */
		g->verbose = verbose_reads = true;
		return true;
	}
}

/* The command's options plus the cluster options its opts name. */
static const struct option *with_cluster_options(const struct option *longs)
{
	static const struct option writes[] = {
		{"durability", required_argument, NULL, CLI_OPT_DURABILITY}};
	static const struct option reads[] = {
		{"min-version", required_argument, NULL, CLI_OPT_MIN_VERSION},
		{"max-staleness", required_argument, NULL, CLI_OPT_MAX_STALENESS},
		{"consistency", required_argument, NULL, CLI_OPT_CONSISTENCY},
		{"verbose", no_argument, NULL, CLI_OPT_VERBOSE}};
	static struct option merged[64];
	static const struct option *merged_from;
	unsigned opts = cli_current ? cli_current->opts : 0;
	if (!opts)
		return longs;
	if (merged_from == longs)
		return merged;
	size_t n = 0;
	for (; longs[n].name; n++)
		;
	if (n + 6 > sizeof merged / sizeof merged[0])
		return longs; /* not reached: commands have a dozen options */
	memcpy(merged, longs, n * sizeof *longs);
	if (opts & CLI_WRITES)
		for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
			merged[n++] = writes[i];
	if (opts & CLI_READS)
		for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
			merged[n++] = reads[i];
	memset(&merged[n], 0, sizeof merged[n]);
	merged_from = longs;
	return merged;
}

int cli_getopt(int argc, char **argv, const struct option *longs_in, struct cli_global *g,
	       int *status)
{
	const struct option *longs = with_cluster_options(longs_in);
	/* A leading ':' makes getopt report a missing value as ':' and print
	 * nothing itself: the messages below name the option. */
	for (;;) {
		int o = getopt_long(argc, argv, ":h", longs, NULL);
		const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
		switch (o) {
		case -1:
			return CLI_OPT_END;
		case CLI_OPT_HOST:
			g->host = optarg;
			continue;
		case CLI_OPT_TOKEN_FILE:
			g->token_file = optarg;
			continue;
		case CLI_OPT_TIMEOUT:
			if (!cli_parse_timeout(optarg, &g->timeout_ms)) {
				*status = cli_usage_error("--timeout takes seconds (0 < N <= 86400), "
							  "not '%s'", optarg);
				return CLI_OPT_STOP;
			}
			continue;
		case CLI_OPT_DURABILITY:
		case CLI_OPT_MIN_VERSION:
		case CLI_OPT_MAX_STALENESS:
		case CLI_OPT_CONSISTENCY:
		case CLI_OPT_VERBOSE:
			if (!cluster_option(o, g, status))
				return CLI_OPT_STOP;
			continue;
		case 'h':
			cli_cmd_usage(stdout);
			*status = 0;
			return CLI_OPT_STOP;
		case ':':
			*status = cli_usage_error("option '%s' needs a value", arg);
			return CLI_OPT_STOP;
		case '?':
			*status = bad_option(arg, longs);
			return CLI_OPT_STOP;
		default:
			return o;
		}
	}
}

int cli_no_options(int argc, char **argv, struct cli_global *g, int *status)
{
	static const struct option longs[] = {CLI_COMMON_OPTS};
	int o;
	while ((o = cli_getopt(argc, argv, longs, g, status)) > 0)
		; /* no option of its own */
	return o;
}

bool cli_parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		return false;
	*v = x;
	return true;
}

int cli_parse_at(const char *version, const char *asof, int *kind, int64_t *value)
{
	uint64_t v;
	*kind = 0;
	*value = 0;
	if (version && asof)
		return cli_usage_error("--version and --as-of exclude each other");
	if (version) {
		if (!cli_parse_u64(version, &v) || v > INT64_MAX)
			return cli_usage_error("--version takes a version number, not '%s'", version);
		*kind = 1;
		*value = (int64_t)v;
	} else if (asof) {
		if (!tx_parse_time(asof, value))
			return cli_usage_error("--as-of takes 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC) or "
					       "microseconds since the epoch, not '%s'", asof);
		*kind = 2;
	}
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool cli_parse_hash(const char *hex, uint8_t out[CLI_HASH_LEN])
{
	if (strlen(hex) != 2 * CLI_HASH_LEN)
		return false;
	for (int i = 0; i < CLI_HASH_LEN; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* ---- the daemon ------------------------------------------------------------- */

int cli_auth(sc_client *c, const struct cli_global *g, bool quiet)
{
	char line[512] = "";
	if (g->token_file) {
		FILE *f = fopen(g->token_file, "r");
		if (!f || !fgets(line, sizeof line, f)) {
			if (f)
				fclose(f);
			return quiet ? 1 : cli_fail_msg("cannot read --token-file %s", g->token_file);
		}
		fclose(f);
	} else if (getenv("STRATA_TOKEN")) {
		snprintf(line, sizeof line, "%s", getenv("STRATA_TOKEN"));
	} else {
		return 0;
	}
	line[strcspn(line, "\r\n")] = 0;
	char *colon = strchr(line, ':');
	if (!colon || colon == line || !colon[1])
		return quiet ? 1 : cli_fail_msg("a token is NAME:TOKEN (%s)",
						 g->token_file ? g->token_file : "$STRATA_TOKEN");
	*colon = 0;
	struct wire_error e;
	int rc = sc_authenticate(c, line, colon + 1, &e);
	memset(line, 0, sizeof line);
	if (rc != 0)
		return quiet ? 1 : cli_fail_wire(c, &e);
	return 0;
}

int cli_call(sc_client *c, const msgpack_object **body)
{
	struct wire_error e;
	return sc_call(c, body, &e) != 0 ? cli_fail_wire(c, &e) : 0;
}

sc_client *cli_connect(const struct cli_global *g, int *status)
{
	sc_client *c;
	struct wire_error e;
	if (sc_connect(g->host, g->timeout_ms, &c, &e) != 0) {
		*status = cli_fail_wire(NULL, &e);
		return NULL;
	}
	if ((*status = cli_auth(c, g, false)) != 0) {
		sc_close(c);
		return NULL;
	}
	sc_set_env(c, &g->env);
	return c;
}

void cli_report_served(const sc_client *c)
{
	struct sc_served s;
	if (verbose_reads && sc_served_by(c, &s))
		fprintf(stderr, "strata %s: served by node %" PRIu64 " at LSN %" PRIu64
				", staleness %" PRIu64 " ms\n",
			cli_current->name, s.node, s.read_lsn, s.staleness_ms);
}

int cli_simple_call(const struct cli_global *g, int type, const char *table, sc_client **cp,
		    const msgpack_object **body)
{
	int status = 0;
	struct wire_error e;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, type, table ? 1 : 0);
	/* The table has the same key in every request that names one. */
	_Static_assert((int)WIRE_DROP_Q_TABLE == (int)WIRE_COMPACT_Q_TABLE &&
			       (int)WIRE_DROP_Q_TABLE == (int)WIRE_DESCRIBE_Q_TABLE,
		       "table key");
	if (table)
		wire_key_str(pk, WIRE_DROP_Q_TABLE, table);
	if (sc_call(c, body, &e) != 0) {
		status = cli_fail_wire(c, &e);
		sc_close(c);
		return status;
	}
	*cp = c;
	return 0;
}

void cli_pack_at(msgpack_packer *pk, uint32_t key, int kind, int64_t value)
{
	msgpack_pack_uint32(pk, key);
	msgpack_pack_map(pk, 2);
	wire_key_u64(pk, WIRE_AT_KIND, (uint64_t)kind);
	wire_key_i64(pk, WIRE_AT_VALUE, value);
}

/* ---- reading replies --------------------------------------------------------- */

bool cli_str(const msgpack_object *o, const char **s, int *len)
{
	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size > INT_MAX)
		return false;
	/* msgpack-c leaves ptr NULL for an empty string. */
	*s = o->via.str.size ? o->via.str.ptr : "";
	*len = (int)o->via.str.size;
	return true;
}

/* The getter's rc as cli_reply_* return it: a required key's absence and
 * a wire_field_* error (err) are printed as a malformed reply. */
static int reply_rc(const struct cli_reply *r, uint32_t key, const char *name, enum cli_need need,
		    const char *want, int rc, const struct st_err *err)
{
	const char *part = r->part ? r->part : "", *sep = r->part ? ": " : "";
	if (rc == 0 && need == CLI_REQUIRED) {
		cli_fail_msg("the daemon's %s reply is malformed: %s%skey %u (%s) is missing, "
			     "expected %s", wire_type_name(r->type), part, sep, key, name, want);
		return -1;
	}
	if (rc < 0) {
		cli_fail_msg("the daemon's %s reply is malformed: %s%s%s", wire_type_name(r->type),
			     part, sep, err->msg);
		return -1;
	}
	return rc;
}

int cli_reply_u64(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, uint64_t *v)
{
	struct st_err err;
	int rc = wire_field_u64(map, NULL, key, name, v, &err);
	return reply_rc(r, key, name, need, "uint", rc, &err);
}

int cli_reply_i64(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, int64_t *v)
{
	struct st_err err;
	int rc = wire_field_i64(map, NULL, key, name, v, &err);
	return reply_rc(r, key, name, need, "int", rc, &err);
}

int cli_reply_bool(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		   const char *name, enum cli_need need, bool *v)
{
	struct st_err err;
	int rc = wire_field_bool(map, NULL, key, name, v, &err);
	return reply_rc(r, key, name, need, "bool", rc, &err);
}

int cli_reply_strbuf(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		     const char *name, enum cli_need need, char *buf, size_t len)
{
	struct st_err err;
	int rc = wire_field_strbuf(map, NULL, key, name, buf, len, &err);
	return reply_rc(r, key, name, need, "str", rc, &err);
}

int cli_reply_map(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		  const char *name, enum cli_need need, const msgpack_object **o)
{
	struct st_err err;
	const msgpack_object *x = NULL;
	int rc = wire_field_map(map, NULL, key, name, &x, &err);
	if (rc == 1)
		*o = x;
	return reply_rc(r, key, name, need, "map", rc, &err);
}

int cli_reply_array(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		    const char *name, enum cli_need need, const msgpack_object **o)
{
	struct st_err err;
	const msgpack_object *x = NULL;
	int rc = wire_field_array(map, NULL, key, name, &x, &err);
	if (rc == 1)
		*o = x;
	return reply_rc(r, key, name, need, "array", rc, &err);
}

int cli_reply_hash(const struct cli_reply *r, const msgpack_object *map, uint32_t key,
		   const char *name, enum cli_need need, const uint8_t **hash)
{
	struct st_err err = {0};
	const msgpack_object *o = wire_get(map, key);
	int rc = o ? 1 : 0;
	if (o && o->type != MSGPACK_OBJECT_BIN)
		rc = st_seterr(&err, ST_EPROTO, "key %u (%s) is a%s %s, expected bin", key, name,
			       o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
			       o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_EXT
				       ? "n" : "",
			       wire_obj_type_name(o));
	else if (o && o->via.bin.size != CLI_HASH_LEN)
		rc = st_seterr(&err, ST_EPROTO, "key %u (%s) is a bin of %u bytes, expected %d",
			       key, name, o->via.bin.size, CLI_HASH_LEN);
	if (rc == 1)
		*hash = (const uint8_t *)o->via.bin.ptr;
	return reply_rc(r, key, name, need, "bin", rc, &err);
}

void cli_hex(const uint8_t *hash, int ndigits, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < ndigits / 2 && i < CLI_HASH_LEN; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[ndigits] = '\0';
}

bool cli_column(const msgpack_object *o, struct st_field *f)
{
	if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 4)
		return false;
	const msgpack_object *a = o->via.array.ptr;
	const char *name;
	int len;
	if (!cli_str(&a[0], &name, &len) || len == 0 || (size_t)len >= sizeof f->name ||
	    memchr(name, 0, (size_t)len) ||
	    a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > 255 ||
	    !st_type_is_supported((int)a[1].via.u64) || a[2].type != MSGPACK_OBJECT_BOOLEAN ||
	    a[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[3].via.u64 > UINT32_MAX)
		return false;
	memcpy(f->name, name, (size_t)len);
	f->name[len] = '\0';
	f->type = (uint8_t)a[1].via.u64;
	f->nullable = a[2].via.boolean;
	f->id = (uint32_t)a[3].via.u64;
	return true;
}

/* ---- output ---------------------------------------------------------------- */

void cli_print_time(FILE *out, int64_t us)
{
	struct st_buf b = {0};
	struct st_vec v = {.type = ST_TYPE_TIMESTAMP, .n = 1, .data = &us};
	tx_value(&b, &v, 0);
	fprintf(out, "%.*s", (int)b.len, b.len ? (const char *)b.data : "");
	st_buf_free(&b);
}

int cli_print_result(int type, const char *what, const char *table, const msgpack_object *b,
		     uint64_t *nrows)
{
	const struct cli_reply r = {type, NULL};
	uint64_t version = 0, lsn = 0, rows = 0;
	bool noop = false;
	if (cli_reply_u64(&r, b, WIRE_RESULT_VERSION, "version", CLI_REQUIRED, &version) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_LSN, "lsn", CLI_REQUIRED, &lsn) < 0 ||
	    cli_reply_u64(&r, b, WIRE_RESULT_ROWS, "rows", CLI_REQUIRED, &rows) < 0 ||
	    cli_reply_bool(&r, b, WIRE_RESULT_NOOP, "noop", CLI_REQUIRED, &noop) < 0)
		return 1;
	if (nrows)
		*nrows += rows;
	if (noop)
		printf("table '%s': already done earlier with this app id and version: nothing "
		       "written (table at version %" PRIu64 ")\n", table, version);
	else
		printf("table '%s' version %" PRIu64 " (lsn %" PRIu64 "): %s%s%" PRIu64 " rows\n",
		       table, version, lsn, what, *what ? ", " : "", rows);
	return 0;
}
