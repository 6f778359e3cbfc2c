/*
 * admin/cli/data.c — the data commands of `strata`: load (CSV and JSON
 * Lines into a table), scan (rows) and query (aggregates computed in the
 * daemon); PROTOCOL.md §3 types 20-24, 30-32 and 40, §4 loads and cursors.
 *
 * load asks DESCRIBE for the table's columns, reads the input in batches
 * (admin/reader.h) and streams them: an input that fits one short batch
 * goes as one WRITE; anything else opens a load (LOAD_BEGIN, LOAD_DATA in
 * order, LOAD_COMMIT), one per --batch-rows rows when given. A batch above
 * the daemon's message limit is halved until it fits. Any failure aborts
 * the open load, so nothing of a failed commit is visible; the client's
 * memory is one batch whatever the input's size.
 *
 * scan prints pages as they come and closes its cursor when it stops early,
 * so the daemon unpins the snapshot at once instead of at cursor_timeout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/cli/cli.h"
#include "admin/reader.h"
#include "admin/text.h"

/* ---- load ------------------------------------------------------------------ */

struct loader {
	sc_client *c;              /* the connection (owned) */
	const char *table;         /* the table loaded into (argv) */
	int mode;                  /* 0 append, 1 overwrite */
	bool merge;                /* --merge-schema */
	const char *replace_where; /* --replace-where, or NULL */
	bool source;               /* a merge source (PROTOCOL.md §4): never committed */
	const char *app_id;        /* --app-id, or NULL */
	uint64_t app_version;      /* of the next commit */
	uint64_t load_id;          /* open load, or 0 */
	uint64_t batch_no;         /* next batch number of the open load */
	uint64_t rows_done;        /* rows committed */
	uint32_t *idx;             /* identity selection (owned) */
	uint32_t idx_cap;          /* its entries */
	bool show;                 /* draw a progress line on stderr */
	bool on_line;              /* a progress line is drawn and not ended */
	struct wire_error e;       /* the last request's error */
};

static void pack_write_opts(const struct loader *l, msgpack_packer *pk)
{
	uint32_t n = 3 + (l->replace_where != NULL) + 2 * (l->app_id != NULL);
	/* The same key in WRITE and LOAD_BEGIN. */
	_Static_assert((int)WIRE_WRITE_Q_OPTIONS == (int)WIRE_LOAD_BEGIN_Q_OPTIONS, "write options key");
	msgpack_pack_uint32(pk, WIRE_WRITE_Q_OPTIONS);
	if (l->source) {
		msgpack_pack_map(pk, 1);
		wire_key_u64(pk, WIRE_WOPT_MODE, WIRE_WRITE_MERGE_SOURCE);
		return;
	}
	msgpack_pack_map(pk, n);
	wire_key_u64(pk, WIRE_WOPT_MODE, (uint64_t)l->mode);
	wire_key_bool(pk, WIRE_WOPT_MERGE_SCHEMA, l->merge);
	wire_key_bool(pk, WIRE_WOPT_OVERWRITE_SCHEMA, false);
	if (l->replace_where)
		wire_key_str(pk, WIRE_WOPT_REPLACE_WHERE, l->replace_where);
	if (l->app_id) {
		wire_key_str(pk, WIRE_WOPT_APP_ID, l->app_id);
		wire_key_u64(pk, WIRE_WOPT_APP_VERSION, l->app_version);
	}
}

/* Rows from .. from + n as a selection vector (NULL: out of memory). */
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

/* The largest batch a request may carry: the daemon's limit less room for
 * the envelope and the write options. */
static size_t batch_limit(const struct loader *l)
{
	return sc_server(l->c)->max_message_size - 4096;
}

static void column_names(const struct st_schema *fs, const char **names)
{
	for (uint32_t i = 0; i < fs->nfields; i++)
		names[i] = fs->fields[i].name;
}

/* Send rows [from, from + n) of the batch as one request of `type`
 * (WRITE, LOAD_BEGIN with 0 rows, or LOAD_DATA), halving until it fits. */
static int send_rows(struct loader *l, int type, const struct st_schema *fs,
		     const struct st_vec *cols, uint32_t from, uint32_t n, const msgpack_object **b)
{
	const char *names[ST_MAX_COLUMNS];
	column_names(fs, names);
	const uint32_t *sel = selection(l, from, n);
	if (!sel) {
		wire_error_set(&l->e, ST_ENOMEM, "out of memory for a batch's row selection");
		return ST_ENOMEM;
	}
	if (n > 1 && type == WIRE_LOAD_DATA &&
	    wire_batch_bytes(fs->nfields, names, cols, sel, n) > batch_limit(l)) {
		int rc = send_rows(l, type, fs, cols, from, n / 2, b);
		return rc ? rc : send_rows(l, type, fs, cols, from + n / 2, n - n / 2, b);
	}
	msgpack_packer *pk = sc_begin(l->c, type, 3);
	if (type == WIRE_LOAD_DATA) {
		wire_key_u64(pk, WIRE_LOAD_DATA_Q_ID, l->load_id);
		wire_key_u64(pk, WIRE_LOAD_DATA_Q_NUMBER, l->batch_no++);
		msgpack_pack_uint32(pk, WIRE_LOAD_DATA_Q_BATCH);
	} else { /* WRITE and LOAD_BEGIN share their keys */
		_Static_assert((int)WIRE_WRITE_Q_TABLE == (int)WIRE_LOAD_BEGIN_Q_TABLE &&
				       (int)WIRE_WRITE_Q_BATCH == (int)WIRE_LOAD_BEGIN_Q_HEADER,
			       "WRITE and LOAD_BEGIN keys");
		wire_key_str(pk, WIRE_WRITE_Q_TABLE, l->table);
		pack_write_opts(l, pk);
		msgpack_pack_uint32(pk, WIRE_WRITE_Q_BATCH);
	}
	wire_pack_batch(sc_out(l->c), fs->nfields, names, cols, sel, n);
	return sc_call(l->c, b, &l->e);
}

/* True when the n rows fit one WRITE (else they go through a load, whose
 * LOAD_DATA requests are split to fit). */
static bool fits_one_write(const struct loader *l, const struct st_schema *fs,
			   const struct st_vec *cols, uint32_t n)
{
	const char *names[ST_MAX_COLUMNS];
	column_names(fs, names);
	return wire_batch_bytes(fs->nfields, names, cols, NULL, n) <= batch_limit(l);
}

/* End a progress line before anything else is printed. */
static void end_line(struct loader *l)
{
	if (l->on_line)
		fputc('\n', stderr);
	l->on_line = false;
}

/* Commit the open load. Returns 0 or 1 (printed). */
static int load_commit(struct loader *l)
{
	const msgpack_object *b;
	msgpack_packer *pk = sc_begin(l->c, WIRE_LOAD_COMMIT, 1);
	wire_key_u64(pk, WIRE_LOAD_END_Q_ID, l->load_id);
	l->load_id = 0; /* committed or, on an error, aborted by the daemon */
	end_line(l);
	if (sc_call(l->c, &b, &l->e) != 0)
		return cli_fail_wire(l->c, &l->e);
	l->app_version++; /* committed, even if its result cannot be read */
	return cli_print_result(WIRE_LOAD_COMMIT, "loaded", l->table, b, &l->rows_done);
}

/* Abort the open load, if any (best effort: the daemon also aborts a load
 * left idle for cursor_timeout). */
static void load_abort(struct loader *l)
{
	const msgpack_object *b;
	struct wire_error e;
	if (!l->load_id)
		return;
	msgpack_packer *pk = sc_begin(l->c, WIRE_LOAD_ABORT, 1);
	wire_key_u64(pk, WIRE_LOAD_END_Q_ID, l->load_id);
	sc_call(l->c, &b, &e);
	l->load_id = 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(struct loader *l, const rd_reader *r, uint64_t total, double t0, bool final)
{
	uint64_t rows = rd_rows(r), bytes = rd_bytes(r);
	double dt = now_s() - t0;
	double mbs = dt > 0 ? bytes / dt / 1e6 : 0;
	fprintf(stderr, "\r  %" PRIu64 " rows  %.1f MB  %.1f MB/s", rows, bytes / 1e6, mbs);
	if (total && bytes <= total && mbs > 0 && !final) {
		int eta = (int)((total - bytes) / 1e6 / mbs);
		fprintf(stderr, "  %3d%%  ETA %d:%02d", (int)(100.0 * bytes / total), eta / 60, eta % 60);
	}
	fprintf(stderr, final ? "\n" : "   ");
	l->on_line = !final;
}

/* The table's columns (DESCRIBE), which tell the reader how to convert the
 * text, into *fields (malloc'ed, *nf entries). Returns 0 or 1 (printed). */
static int table_columns(struct loader *l, struct st_field **fields, uint32_t *nf)
{
	const msgpack_object *b;
	msgpack_packer *pk = sc_begin(l->c, WIRE_DESCRIBE, 1);
	wire_key_str(pk, WIRE_DESCRIBE_Q_TABLE, l->table);
	if (sc_call(l->c, &b, &l->e) != 0)
		return cli_fail_wire(l->c, &l->e);
	const struct cli_reply r = {WIRE_DESCRIBE, NULL};
	const msgpack_object *cols = NULL;
	if (cli_reply_array(&r, b, WIRE_DESCRIBE_R_COLUMNS, "columns", CLI_REQUIRED, &cols) < 0)
		return 1;
	uint32_t n = cols->via.array.size;
	if (n == 0 || n > ST_MAX_COLUMNS)
		return cli_fail_msg("the daemon described table '%s' with %u columns (1 to %u "
				    "expected): is it a stratad of this version?", l->table, n,
				    ST_MAX_COLUMNS);
	if (!(*fields = calloc(n, sizeof **fields)))
		return cli_fail_msg("out of memory for the %u columns of table '%s'", n, l->table);
	for (uint32_t i = 0; i < n; i++)
		if (!cli_column(&cols->via.array.ptr[i], &(*fields)[i]))
			return cli_fail_msg("the daemon described column %u of table '%s' in a form "
					    "this client does not read: is it a stratad of this "
					    "version?", i + 1, l->table);
	*nf = n;
	return 0;
}

/* Open a load with the input's columns fs (LOAD_BEGIN, no rows). Returns 0
 * or 1 (printed). */
static int load_open(struct loader *l, const struct st_schema *fs, const struct st_vec *vecs)
{
	const msgpack_object *b;
	if (send_rows(l, WIRE_LOAD_BEGIN, fs, vecs, 0, 0, &b) != 0) {
		end_line(l);
		return cli_fail_wire(l->c, &l->e);
	}
	const struct cli_reply rb = {WIRE_LOAD_BEGIN, NULL};
	if (cli_reply_u64(&rb, b, WIRE_LOAD_BEGIN_R_ID, "load id", CLI_REQUIRED, &l->load_id) < 0)
		return 1;
	if (!l->load_id)
		return cli_fail_msg("the daemon's LOAD_BEGIN reply for table '%s' has no load id",
				    l->table);
	l->batch_no = 0;
	return 0;
}

/* Read the input to its end and send it (see the top of this file).
 * Returns 0 or 1 (printed); an open load is left for the caller to abort. */
static int load_stream(struct loader *l, rd_reader *r, uint32_t batch_rows,
		       uint64_t commit_rows, uint64_t total)
{
	const struct st_schema *fs = rd_schema(r);
	const msgpack_object *b;
	struct st_err err;
	double t0 = now_s(), last = 0;
	uint64_t in_commit = 0; /* rows sent in the open commit */
	bool first = true;
	if (fs->nfields > ST_MAX_COLUMNS)
		return cli_fail_msg("the input has %u columns; at most %u go into one table",
				    fs->nfields, ST_MAX_COLUMNS);
	for (;;) {
		const struct st_vec *vecs;
		uint32_t nrows;
		int rc = rd_next(r, &vecs, &nrows, &err);
		if (rc < 0) {
			end_line(l);
			return cli_fail_msg("%s; nothing of this commit was written", err.msg);
		}
		if (rc == 0)
			break;
		/* A whole input in one short batch: one WRITE (small writes can
		 * go inline in the daemon's log: one fsync). */
		if (first && !l->source && nrows < batch_rows && (!commit_rows || nrows <= commit_rows) &&
		    fits_one_write(l, fs, vecs, nrows)) {
			first = false;
			if (send_rows(l, WIRE_WRITE, fs, vecs, 0, nrows, &b) != 0)
				return cli_fail_wire(l->c, &l->e);
			l->rows_done += nrows;
			if (cli_print_result(WIRE_WRITE, "loaded", l->table, b, NULL))
				return 1;
			continue;
		}
		first = false;
		for (uint32_t at = 0; at < nrows;) {
			if (!l->load_id) {
				if (load_open(l, fs, vecs))
					return 1;
				in_commit = 0;
			}
			uint32_t n = nrows - at;
			if (commit_rows && in_commit + n > commit_rows)
				n = (uint32_t)(commit_rows - in_commit);
			if (send_rows(l, WIRE_LOAD_DATA, fs, vecs, at, n, &b) != 0) {
				end_line(l);
				l->load_id = 0; /* the daemon aborted it */
				return cli_fail_wire(l->c, &l->e);
			}
			at += n;
			in_commit += n;
			if (commit_rows && in_commit == commit_rows && load_commit(l) != 0)
				return 1;
		}
		if (l->show && now_s() - last > 0.2) {
			progress(l, r, total, t0, false);
			last = now_s();
		}
	}
	if (l->show && rd_rows(r) > 0)
		progress(l, r, total, t0, true);
	if (l->source) { /* left open for its MERGE, even with no rows */
		struct st_vec none[ST_MAX_COLUMNS];
		for (uint32_t i = 0; i < fs->nfields; i++)
			none[i] = (struct st_vec){.type = fs->fields[i].type};
		return l->load_id ? 0 : load_open(l, fs, none);
	}
	if (l->load_id && load_commit(l) != 0)
		return 1;
	if (rd_rows(r) == 0)
		printf("table '%s': the input has no rows; nothing written\n", l->table);
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n > k && !strcmp(s + n - k, suffix);
}

/* Send the file at path ("-": standard input) into l's table through
 * l->c, as load_stream says. Returns 0 or 1 (printed); an open load is left
 * for the caller to abort (or, for a merge source, to merge). */
static int load_file(struct loader *l, const char *path, struct rd_opts *ro,
		     uint64_t commit_rows, bool quiet)
{
	int status;
	rd_reader *r = NULL;
	struct st_field *fields = NULL;
	uint32_t nf = 0;
	FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!in)
		return cli_fail_msg("cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	uint64_t total = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
	l->show = !quiet && isatty(2);
	if (!(status = table_columns(l, &fields, &nf))) {
		struct st_schema schema = {nf, fields};
		struct st_err err;
		uint32_t wire_rows = sc_server(l->c)->max_batch_rows;
		ro->batch_rows = wire_rows < 65536 ? wire_rows : 65536;
		ro->name = strcmp(path, "-") ? path : "<stdin>";
		ro->infer_unknown = l->merge;
		if (rd_open(in, &schema, ro, &r, &err) != ST_OK)
			status = cli_fail_msg("%s", err.msg);
		else
			status = load_stream(l, r, ro->batch_rows, commit_rows, total);
	}
	rd_close(r);
	free(fields);
	free(l->idx);
	l->idx = NULL;
	if (in != stdin)
		fclose(in);
	return status;
}

int cli_cmd_load(int argc, char **argv, struct cli_global *g)
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
		CLI_COMMON_OPTS};
	struct loader l = {0};
	struct rd_opts ro = {.format = 0};
	uint64_t commit_rows = 0;
	const char *appver = NULL;
	bool quiet = false;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'f':
			if (!strcmp(optarg, "csv"))
				ro.format = RD_CSV;
			else if (!strcmp(optarg, "jsonl"))
				ro.format = RD_JSONL;
			else
				return cli_usage_error("--format is csv or jsonl, not '%s'", optarg);
			break;
		case 'd':
			if (strlen(optarg) != 1 && strcmp(optarg, "\\t"))
				return cli_usage_error("--delimiter takes one character, not '%s'",
						       optarg);
			ro.delim = strcmp(optarg, "\\t") ? optarg[0] : '\t';
			break;
		case 'm':
			if (!strcmp(optarg, "append"))
				l.mode = 0;
			else if (!strcmp(optarg, "overwrite"))
				l.mode = 1;
			else if (!strcmp(optarg, "upsert"))
				l.mode = 2;
			else
				return cli_usage_error("--mode is append, overwrite or upsert, not '%s'",
						       optarg);
			break;
		case 'w':
			l.replace_where = optarg;
			break;
		case 'M':
			l.merge = true;
			break;
		case 'b':
			if (!cli_parse_u64(optarg, &commit_rows) || commit_rows == 0)
				return cli_usage_error("--batch-rows takes a positive number of rows, "
						       "not '%s'", optarg);
			break;
		case 'a':
			l.app_id = optarg;
			break;
		case 'A':
			appver = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 2 != argc)
		return cli_usage_error("give a table and a file (or - for standard input)");
	if (l.mode == 2) {
		/* By the table's declared key: a MERGE of the file. */
		if (l.replace_where || l.merge || commit_rows || !strcmp(argv[optind + 1], "-"))
			return cli_usage_error("--mode upsert takes a file, and none of --replace-where, "
					       "--merge-schema, --batch-rows");
		return cli_upsert(argv[optind], argv[optind + 1],
				  ro.format == RD_JSONL ? "jsonl" : ro.format == RD_CSV ? "csv" : NULL,
				  l.app_id, appver, g);
	}
	if (!l.app_id != !appver)
		return cli_usage_error("--app-id and --app-version go together");
	if (appver && !cli_parse_u64(appver, &l.app_version))
		return cli_usage_error("--app-version takes a number, not '%s'", appver);
	if (l.replace_where && l.mode == 1)
		return cli_usage_error("--replace-where goes with --mode append");
	l.table = argv[optind];
	const char *path = argv[optind + 1];
	if (!ro.format)
		ro.format = ends_with(path, ".jsonl") || ends_with(path, ".json") ? RD_JSONL : RD_CSV;

	if (!(l.c = cli_connect(g, &status)))
		return status;
	status = load_file(&l, path, &ro, commit_rows, quiet);
	load_abort(&l);
	sc_close(l.c);
	return status;
}

int cli_merge_source(sc_client *c, const char *table, const char *path, const char *format,
		     uint64_t *load_id)
{
	struct loader l = {.c = c, .table = table, .source = true};
	struct rd_opts ro = {.format = format ? (!strcmp(format, "jsonl") ? RD_JSONL : RD_CSV) : 0,
			     .unknown_hint = "a MERGE source has only the target's columns; add it "
					     "with alter add-column first"};
	if (!ro.format)
		ro.format = ends_with(path, ".jsonl") || ends_with(path, ".json") ? RD_JSONL : RD_CSV;
	int status = load_file(&l, path, &ro, 0, true);
	if (status)
		load_abort(&l);
	*load_id = status ? 0 : l.load_id;
	return status;
}

/* ---- scan / query ------------------------------------------------------------ */

/* A printer and the columns of the first batch it printed. */
struct page_printer {
	struct tx_printer *p; /* NULL until the first batch */
	uint32_t ncols;       /* that batch's columns */
};

/* Print a reply's batch, starting the printer on the first one. Returns 0
 * or 1 (printed). */
static int print_batch(struct page_printer *pp, FILE *out, enum tx_format f,
		       const msgpack_object *o)
{
	struct wire_batch wb;
	struct st_err err;
	int status = 0;
	if (wire_batch_decode(o, UINT32_MAX, &wb, &err) != ST_OK) {
		status = cli_fail_msg("the daemon sent a batch this client cannot read: %s", err.msg);
		goto out;
	}
	if (pp->p && wb.ncols != pp->ncols) { /* the printer reads ncols vectors */
		status = cli_fail_msg("the daemon sent a page of %u columns after one of %u",
				      wb.ncols, pp->ncols);
		goto out;
	}
	if (!pp->p) {
		if (!(pp->p = tx_printer_new(out, f, wb.ncols, (const char *const *)wb.names))) {
			status = cli_fail_msg("out of memory for printing %u columns", wb.ncols);
			goto out;
		}
		pp->ncols = wb.ncols;
	}
	tx_printer_rows(pp->p, wb.cols, wb.nrows);
out:
	wire_batch_fini(&wb); /* also after a failed decode: it frees what it had */
	return status;
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
		return cli_usage_error("--format is table, csv or jsonl, not '%s'", s);
	return 0;
}

/* A column list "a, b,c" (of option opt) split in place into parts
 * (ST_MAX_COLUMNS entries); empty names are skipped. Returns 0 or a usage
 * error's status. */
static int split_list(const char *opt, char *list, char **parts, uint32_t *n)
{
	*n = 0;
	for (char *s = strtok(list, ","); s; s = strtok(NULL, ",")) {
		while (*s == ' ')
			s++;
		size_t len = strlen(s);
		while (len && s[len - 1] == ' ')
			s[--len] = '\0';
		if (!*s)
			continue;
		if (*n == ST_MAX_COLUMNS)
			return cli_usage_error("%s: at most %u columns", opt, ST_MAX_COLUMNS);
		parts[(*n)++] = s;
	}
	return 0;
}

static void pack_list(msgpack_packer *pk, char *const *parts, uint32_t n)
{
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++)
		wire_pack_str(pk, parts[i]);
}

/* scan, or changes (the change feed: SCAN with keys 5 and 6). */
static int scan_rows(int argc, char **argv, struct cli_global *g, bool changes)
{
	static const struct option scan_longs[] = {
		{"columns", required_argument, NULL, 'c'},
		{"where", required_argument, NULL, 'w'},
		{"version", required_argument, NULL, 'v'},
		{"as-of", required_argument, NULL, 'a'},
		{"limit", required_argument, NULL, 'l'},
		{"format", required_argument, NULL, 'f'},
		CLI_COMMON_OPTS};
	static const struct option change_longs[] = {
		{"columns", required_argument, NULL, 'c'},
		{"where", required_argument, NULL, 'w'},
		{"from-version", required_argument, NULL, 'F'},
		{"from-time", required_argument, NULL, 'T'},
		{"to-version", required_argument, NULL, 'G'},
		{"to-time", required_argument, NULL, 'U'},
		{"limit", required_argument, NULL, 'l'},
		{"format", required_argument, NULL, 'f'},
		CLI_COMMON_OPTS};
	const struct option *longs = changes ? change_longs : scan_longs;
	const char *fver = NULL, *ftime = NULL, *tver = NULL, *ttime = NULL;
	static char *cols[ST_MAX_COLUMNS];
	char *columns = NULL;
	const char *where = NULL, *ver = NULL, *asof = NULL;
	uint64_t limit = 0;
	uint32_t ncols = 0;
	bool limited = false;
	enum tx_format f = TX_TABLE;
	int status = 0, kind, o;
	int64_t value;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'c':
			columns = optarg;
			break;
		case 'w':
			where = optarg;
			break;
		case 'v':
			ver = optarg;
			break;
		case 'a':
			asof = optarg;
			break;
		case 'l':
			if (!cli_parse_u64(optarg, &limit))
				return cli_usage_error("--limit takes a number of rows, not '%s'", optarg);
			limited = true;
			break;
		case 'f':
			if ((status = parse_format(optarg, &f)))
				return status;
			break;
		case 'F':
			fver = optarg;
			break;
		case 'T':
			ftime = optarg;
			break;
		case 'G':
			tver = optarg;
			break;
		case 'U':
			ttime = optarg;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	int fkind = 0, tkind = 0;
	int64_t fvalue = 0, tvalue = 0;
	if (changes) {
		if (!fver && !ftime)
			return cli_usage_error("give --from-version N or --from-time TIMESTAMP");
		if ((status = cli_parse_at(fver, ftime, &fkind, &fvalue)) ||
		    (status = cli_parse_at(tver, ttime, &tkind, &tvalue)))
			return status;
	}
	if ((status = cli_parse_at(ver, asof, &kind, &value)))
		return status;
	if (columns && (status = split_list("--columns", columns, cols, &ncols)))
		return status;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_SCAN, 2 + !!columns + !!where + limited + 2 * changes);
	wire_key_str(pk, WIRE_SCAN_Q_TABLE, argv[optind]);
	if (columns) {
		msgpack_pack_uint32(pk, WIRE_SCAN_Q_COLUMNS);
		pack_list(pk, cols, ncols);
	}
	if (where)
		wire_key_str(pk, WIRE_SCAN_Q_PREDICATE, where);
	cli_pack_at(pk, WIRE_SCAN_Q_AT, kind, value);
	if (limited)
		wire_key_u64(pk, WIRE_SCAN_Q_LIMIT, limit);
	if (changes) {
		cli_pack_at(pk, WIRE_SCAN_Q_CHANGES_FROM, fkind, fvalue);
		cli_pack_at(pk, WIRE_SCAN_Q_CHANGES_TO, tkind, tvalue);
	}
	const msgpack_object *b;
	struct wire_error e;
	struct page_printer pp = {NULL, 0};
	uint64_t cursor = 0;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
		goto out;
	}
	cli_report_served(c);
	/* The first page is SCAN's reply, the others SCAN_NEXT's: same keys. */
	_Static_assert((int)WIRE_SCAN_R_CURSOR == (int)WIRE_SCAN_NEXT_R_CURSOR &&
			       (int)WIRE_SCAN_R_BATCH == (int)WIRE_SCAN_NEXT_R_BATCH,
		       "SCAN and SCAN_NEXT reply keys");
	struct cli_reply r = {WIRE_SCAN, NULL};
	for (;;) {
		/* The cursor first: a page that cannot be printed still leaves a
		 * cursor to close. */
		const msgpack_object *batch = NULL;
		cursor = 0;
		if (cli_reply_u64(&r, b, WIRE_SCAN_R_CURSOR, "cursor id", CLI_REQUIRED, &cursor) < 0) {
			status = 1;
			cursor = 0; /* none to close that this client knows of */
			break;
		}
		if (cli_reply_map(&r, b, WIRE_SCAN_R_BATCH, "batch", CLI_REQUIRED, &batch) < 0) {
			status = 1;
			break;
		}
		if ((status = print_batch(&pp, stdout, f, batch)) || !cursor)
			break;
		pk = sc_begin(c, WIRE_SCAN_NEXT, 1);
		wire_key_u64(pk, WIRE_SCAN_NEXT_Q_CURSOR, cursor);
		r.type = WIRE_SCAN_NEXT;
		if (sc_call(c, &b, &e) != 0) {
			status = cli_fail_wire(c, &e);
			cursor = 0; /* a failed page has freed its cursor */
			break;
		}
	}
	if (cursor) { /* stopped early: let the daemon free the cursor now */
		pk = sc_begin(c, WIRE_SCAN_CLOSE, 1);
		wire_key_u64(pk, WIRE_SCAN_NEXT_Q_CURSOR, cursor);
		sc_call(c, &b, &e);
	}
out:
	if (pp.p)
		tx_printer_end(pp.p);
	sc_close(c);
	return status;
}

/* --agg "sum(v), count(*)" split in place at top-level commas into
 * functions and columns (256 entries each). Returns 0 or a usage error's
 * status. */
static int split_aggs(char *agg, char **fns, char **args, uint32_t *na)
{
	*na = 0;
	for (char *s = agg; s && *s;) {
		while (*s == ' ' || *s == ',')
			s++;
		if (!*s)
			break;
		char *open = strchr(s, '('), *close = open ? strchr(open, ')') : NULL;
		if (!open || !close)
			return cli_usage_error("--agg: '%s' is not FUNCTION(COLUMN)", s);
		if (*na == 256)
			return cli_usage_error("--agg: at most 256 aggregates");
		*open = *close = '\0';
		fns[*na] = s;
		args[*na] = open + 1;
		for (char *t = s + strlen(s); t > s && t[-1] == ' ';)
			*--t = '\0';
		while (*args[*na] == ' ')
			args[*na]++;
		for (char *t = args[*na] + strlen(args[*na]); t > args[*na] && t[-1] == ' ';)
			*--t = '\0';
		(*na)++;
		s = close + 1;
	}
	return 0;
}

int cli_cmd_query(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {
		{"group-by", required_argument, NULL, 'g'},
		{"agg", required_argument, NULL, 'A'},
		{"where", required_argument, NULL, 'w'},
		{"version", required_argument, NULL, 'v'},
		{"as-of", required_argument, NULL, 'a'},
		{"format", required_argument, NULL, 'f'},
		CLI_COMMON_OPTS};
	static char *groups[ST_MAX_COLUMNS];
	char *group = NULL, *agg = NULL, *fns[256], *args[256];
	const char *where = NULL, *ver = NULL, *asof = NULL;
	enum tx_format f = TX_TABLE;
	uint32_t na = 0, ng = 0;
	int status = 0, kind, o;
	int64_t value;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 'g':
			group = optarg;
			break;
		case 'A':
			agg = optarg;
			break;
		case 'w':
			where = optarg;
			break;
		case 'v':
			ver = optarg;
			break;
		case 'a':
			asof = optarg;
			break;
		case 'f':
			if ((status = parse_format(optarg, &f)))
				return status;
			break;
		}
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (!group && !agg)
		return cli_usage_error("give --group-by COLS, --agg \"sum(value),count(*)\", or both");
	if ((status = cli_parse_at(ver, asof, &kind, &value)))
		return status;
	if (agg && (status = split_aggs(agg, fns, args, &na)))
		return status;
	if (group && (status = split_list("--group-by", group, groups, &ng)))
		return status;
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_QUERY, 4 + !!where);
	wire_key_str(pk, WIRE_QUERY_Q_TABLE, argv[optind]);
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_GROUP_BY);
	pack_list(pk, groups, ng);
	msgpack_pack_uint32(pk, WIRE_QUERY_Q_AGGREGATES);
	msgpack_pack_array(pk, na);
	for (uint32_t i = 0; i < na; i++) {
		msgpack_pack_array(pk, 2);
		wire_pack_str(pk, fns[i]);
		wire_pack_str(pk, args[i]);
	}
	if (where)
		wire_key_str(pk, WIRE_QUERY_Q_PREDICATE, where);
	cli_pack_at(pk, WIRE_QUERY_Q_AT, kind, value);
	const msgpack_object *b, *batch = NULL;
	struct wire_error e;
	struct page_printer pp = {NULL, 0};
	const struct cli_reply r = {WIRE_QUERY, NULL};
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
	} else {
		cli_report_served(c);
		if (cli_reply_map(&r, b, WIRE_QUERY_R_BATCH, "batch", CLI_REQUIRED, &batch) < 0)
			status = 1;
		else
			status = print_batch(&pp, stdout, f, batch);
	}
	if (pp.p)
		tx_printer_end(pp.p);
	sc_close(c);
	return status;
}

int cli_cmd_scan(int argc, char **argv, struct cli_global *g)
{
	return scan_rows(argc, argv, g, false);
}

int cli_cmd_changes(int argc, char **argv, struct cli_global *g)
{
	return scan_rows(argc, argv, g, true);
}
