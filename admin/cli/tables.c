/*
 * admin/cli/tables.c — the table commands of `strata`: create, tables,
 * describe, drop and alter (PROTOCOL.md §3, types 10-14).
 *
 * Each command parses its arguments completely before it connects, so a
 * usage error never reaches the daemon; state-changing requests carry the
 * client's (id, seq) through sc_begin, so a resent request is applied once.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "admin/cli/cli.h"
#include "admin/text.h"

int cli_cmd_create(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {
		{"schema", required_argument, NULL, 's'},
		{"partition-by", required_argument, NULL, 'p'},
		{"property", required_argument, NULL, 'P'},
		{"if-not-exists", no_argument, NULL, 'i'},
		{"replace", no_argument, NULL, 'r'},
		{"key", required_argument, NULL, 'k'},
		CLI_COMMON_OPTS};
	const char *schema = NULL, *keytext = NULL;
	char *parts[64], *props[256];
	int nparts = 0, nprops = 0, mode = WIRE_CREATE_ERROR, status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		switch (o) {
		case 's':
			schema = optarg;
			break;
		case 'p':
			if (nparts == 64)
				return cli_usage_error("at most 64 --partition-by columns");
			parts[nparts++] = optarg;
			break;
		case 'P':
			if (nprops == 256)
				return cli_usage_error("at most 256 --property options");
			if (!strchr(optarg, '=') || optarg[0] == '=')
				return cli_usage_error("--property takes KEY=VALUE, not '%s'", optarg);
			props[nprops++] = optarg;
			break;
		case 'i':
			mode = WIRE_CREATE_IGNORE;
			break;
		case 'r':
			mode = WIRE_CREATE_REPLACE;
			break;
		case 'k':
			keytext = optarg;
			break;
		}
	}
	char keybuf[4096] = "", *keys[32];
	int nkeys = 0;
	if (keytext) {
		snprintf(keybuf, sizeof keybuf, "%s", keytext);
		for (char *t = strtok(keybuf, ", "); t; t = strtok(NULL, ", ")) {
			if (nkeys == 32)
				return cli_usage_error("--key names at most 32 columns");
			keys[nkeys++] = t;
		}
		if (!nkeys)
			return cli_usage_error("--key takes column names: --key id or --key a,b");
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (!schema)
		return cli_usage_error("--schema \"col type [not null], ...\" is required");
	char **names = NULL, err[512];
	int *types = NULL, n;
	bool *nullable = NULL;
	/* tx_parse_schema frees what it allocated when it fails. */
	if ((n = tx_parse_schema(schema, &names, &types, &nullable, err, sizeof err)) < 0)
		return cli_usage_error("--schema: %s", err);
	sc_client *c = cli_connect(g, &status);
	if (c) {
		msgpack_packer *pk = sc_begin(c, WIRE_CREATE, 5 + (nkeys > 0));
		wire_key_str(pk, WIRE_CREATE_Q_TABLE, argv[optind]);
		msgpack_pack_uint32(pk, WIRE_CREATE_Q_COLUMNS);
		msgpack_pack_array(pk, (uint32_t)n);
		for (int i = 0; i < n; i++) {
			msgpack_pack_array(pk, 3);
			wire_pack_str(pk, names[i]);
			msgpack_pack_uint32(pk, (uint32_t)types[i]);
			nullable[i] ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
		}
		msgpack_pack_uint32(pk, WIRE_CREATE_Q_PARTITION);
		msgpack_pack_array(pk, (uint32_t)nparts);
		for (int i = 0; i < nparts; i++)
			wire_pack_str(pk, parts[i]);
		msgpack_pack_uint32(pk, WIRE_CREATE_Q_PROPERTIES);
		msgpack_pack_map(pk, (uint32_t)nprops);
		for (int i = 0; i < nprops; i++) {
			char *eq = strchr(props[i], '=');
			wire_pack_strn(pk, props[i], (size_t)(eq - props[i]));
			wire_pack_str(pk, eq + 1);
		}
		wire_key_u64(pk, WIRE_CREATE_Q_MODE, (uint64_t)mode);
		if (nkeys) {
			msgpack_pack_uint32(pk, WIRE_CREATE_Q_KEY);
			msgpack_pack_array(pk, (uint32_t)nkeys);
			for (int i = 0; i < nkeys; i++)
				wire_pack_str(pk, keys[i]);
		}
		const msgpack_object *b;
		struct wire_error e;
		uint64_t v = 0;
		const struct cli_reply r = {WIRE_CREATE, NULL};
		if (sc_call(c, &b, &e) != 0) {
			status = cli_fail_wire(c, &e);
		} else if (cli_reply_u64(&r, b, WIRE_CREATE_R_VERSION, "version", CLI_REQUIRED, &v) <
			   0) {
			status = 1;
		} else {
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

int cli_cmd_tables(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("takes no arguments");
	sc_client *c;
	const msgpack_object *b;
	if ((status = cli_simple_call(g, WIRE_TABLES, NULL, &c, &b)))
		return status;
	const struct cli_reply r = {WIRE_TABLES, NULL};
	const msgpack_object *a = NULL;
	if (cli_reply_array(&r, b, WIRE_TABLES_R_NAMES, "names", CLI_REQUIRED, &a) < 0) {
		sc_close(c);
		return 1;
	}
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		const char *s;
		int len;
		if (cli_str(&a->via.array.ptr[i], &s, &len))
			printf("%.*s\n", len, s);
	}
	sc_close(c);
	return 0;
}

/* The partitioning (an array), properties (a map) and constraints (an
 * array) of a DESCRIBE reply. */
static void print_layout(const msgpack_object *parts, const msgpack_object *props,
			 const msgpack_object *cons)
{
	const char *s, *t;
	int len, tlen;
	if (parts->via.array.size) {
		printf("partitioned by:");
		for (uint32_t i = 0; i < parts->via.array.size; i++)
			if (cli_str(&parts->via.array.ptr[i], &s, &len))
				printf(" %.*s", len, s);
		printf("\n");
	}
	if (props->via.map.size) {
		printf("properties:\n");
		for (uint32_t i = 0; i < props->via.map.size; i++) {
			const msgpack_object_kv *kv = &props->via.map.ptr[i];
			if (cli_str(&kv->key, &s, &len) && cli_str(&kv->val, &t, &tlen))
				printf("  %.*s = %.*s\n", len, s, tlen, t);
		}
	}
	if (cons->via.array.size) {
		printf("constraints:\n");
		for (uint32_t i = 0; i < cons->via.array.size; i++) {
			const msgpack_object *k = &cons->via.array.ptr[i];
			if (k->type == MSGPACK_OBJECT_ARRAY && k->via.array.size == 2 &&
			    cli_str(&k->via.array.ptr[0], &s, &len) &&
			    cli_str(&k->via.array.ptr[1], &t, &tlen))
				printf("  %.*s CHECK (%.*s)\n", len, s, tlen, t);
		}
	}
}

int cli_cmd_describe(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"version", required_argument, NULL, 'v'},
					      CLI_COMMON_OPTS};
	const char *ver = NULL;
	uint64_t v = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		if (o == 'v')
			ver = optarg;
	if (o == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	if (ver && !cli_parse_u64(ver, &v))
		return cli_usage_error("--version takes a version number, not '%s'", ver);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, ver ? 2 : 1);
	wire_key_str(pk, WIRE_DESCRIBE_Q_TABLE, argv[optind]);
	if (ver)
		wire_key_u64(pk, WIRE_DESCRIBE_Q_VERSION, v);
	const msgpack_object *b;
	if ((status = cli_call(c, &b)) != 0) {
		sc_close(c);
		return status;
	}
	cli_report_served(c);
	uint64_t version = 0, files = 0, rows = 0, bytes = 0, oldest = UINT64_MAX, deleted = 0, dvs = 0;
	int64_t time_us = INT64_MIN;
	const msgpack_object *cols = NULL, *parts = NULL, *props = NULL, *cons = NULL;
	const struct cli_reply r = {WIRE_DESCRIBE, NULL};
	if (cli_reply_u64(&r, b, WIRE_DESCRIBE_R_VERSION, "version", CLI_REQUIRED, &version) < 0 ||
	    cli_reply_array(&r, b, WIRE_DESCRIBE_R_COLUMNS, "columns", CLI_REQUIRED, &cols) < 0 ||
	    cli_reply_array(&r, b, WIRE_DESCRIBE_R_PARTITION, "partition columns", CLI_REQUIRED,
			    &parts) < 0 ||
	    cli_reply_map(&r, b, WIRE_DESCRIBE_R_PROPERTIES, "properties", CLI_REQUIRED, &props) <
		    0 ||
	    cli_reply_array(&r, b, WIRE_DESCRIBE_R_CONSTRAINTS, "constraints", CLI_REQUIRED,
			    &cons) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_FILES, "live files", CLI_REQUIRED, &files) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_ROWS, "rows", CLI_REQUIRED, &rows) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_BYTES, "bytes", CLI_REQUIRED, &bytes) < 0 ||
	    /* keys 9 and 10 came with strata 0.5: optional for older daemons */
	    cli_reply_i64(&r, b, WIRE_DESCRIBE_R_TIME, "commit time", CLI_OPTIONAL, &time_us) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_OLDEST, "oldest version", CLI_OPTIONAL, &oldest) <
		    0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_DELETED, "deleted rows", CLI_OPTIONAL, &deleted) < 0 ||
	    cli_reply_u64(&r, b, WIRE_DESCRIBE_R_DVS, "deletion vectors", CLI_OPTIONAL, &dvs) < 0) {
		sc_close(c);
		return 1;
	}
	printf("table %s, version %" PRIu64 ": %" PRIu64 " rows in %" PRIu64 " files, %" PRIu64
	       " bytes\n", argv[optind], version, rows, files, bytes);
	if (time_us != INT64_MIN) {
		printf("committed:    ");
		cli_print_time(stdout, time_us);
		printf(" UTC\n");
	}
	if (oldest != UINT64_MAX)
		printf("retained:     versions %" PRIu64 " and later\n", oldest);
	if (dvs)
		printf("deleted:      %" PRIu64 " rows by deletion vectors in %" PRIu64 " of the files "
		       "(compaction purges them)\n", deleted, dvs);
	printf("columns:\n");
	for (uint32_t i = 0; i < cols->via.array.size; i++) {
		struct st_field f;
		if (!cli_column(&cols->via.array.ptr[i], &f)) {
			printf("  (column %u: not in a form this client reads)\n", i + 1);
			continue;
		}
		printf("  %-24s %-10s%s  (field id %" PRIu32 ")\n", f.name, st_type_name(f.type),
		       f.nullable ? "" : " not null", f.id);
	}
	print_layout(parts, props, cons);
	sc_close(c);
	return 0;
}

int cli_cmd_drop(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (optind + 1 != argc)
		return cli_usage_error("give exactly one table name");
	sc_client *c;
	const msgpack_object *b;
	if ((status = cli_simple_call(g, WIRE_DROP, argv[optind], &c, &b)))
		return status;
	printf("dropped table '%s' (its files stay until vacuum)\n", argv[optind]);
	sc_close(c);
	return 0;
}

/* alter's operations: name, wire number (PROTOCOL.md §3.3), operands. */
static const struct {
	const char *name; /* on the command line */
	int op;           /* enum wire_alter_op */
	int nargs;        /* operands after the name */
} alter_ops[] = {
	{"add-column", WIRE_ALTER_ADD_COLUMN, 2},
	{"rename-column", WIRE_ALTER_RENAME_COLUMN, 2},
	{"drop-column", WIRE_ALTER_DROP_COLUMN, 1},
	{"set-property", WIRE_ALTER_SET_PROPERTY, 1},
	{"unset-property", WIRE_ALTER_UNSET_PROPERTY, 1},
	{"set-not-null", WIRE_ALTER_SET_NOT_NULL, 1},
	{"drop-not-null", WIRE_ALTER_DROP_NOT_NULL, 1},
	{"add-constraint", WIRE_ALTER_ADD_CONSTRAINT, 2},
	{"drop-constraint", WIRE_ALTER_DROP_CONSTRAINT, 1},
};

int cli_cmd_alter(int argc, char **argv, struct cli_global *g)
{
	int status = 0;
	if (cli_no_options(argc, argv, g, &status) == CLI_OPT_STOP)
		return status;
	if (argc - optind < 2)
		return cli_usage_error("give a table, an operation and its arguments");
	const char *table = argv[optind], *opname = argv[optind + 1];
	int k = -1;
	for (size_t i = 0; i < sizeof alter_ops / sizeof alter_ops[0]; i++)
		if (!strcmp(opname, alter_ops[i].name))
			k = (int)i;
	if (k < 0)
		return cli_usage_error("unknown operation '%s'", opname);
	if (argc - optind - 2 != alter_ops[k].nargs)
		return cli_usage_error("%s takes %d argument%s", opname, alter_ops[k].nargs,
				       alter_ops[k].nargs == 1 ? "" : "s");
	const char *a1 = argv[optind + 2], *a2 = alter_ops[k].nargs > 1 ? argv[optind + 3] : "";
	char key[1024];
	int type = 0;
	if (alter_ops[k].op == WIRE_ALTER_SET_PROPERTY) { /* KEY=VALUE */
		const char *eq = strchr(a1, '=');
		if (!eq || eq == a1)
			return cli_usage_error("set-property takes KEY=VALUE, not '%s'", a1);
		if ((size_t)(eq - a1) >= sizeof key)
			return cli_usage_error("set-property: the key is longer than %zu bytes",
					       sizeof key - 1);
		snprintf(key, sizeof key, "%.*s", (int)(eq - a1), a1);
		a2 = eq + 1;
		a1 = key;
	}
	if (alter_ops[k].op == WIRE_ALTER_ADD_COLUMN && !(type = st_type_from_name(a2, strlen(a2))))
		return cli_usage_error("add-column: unknown type '%s' (bool, int32, int64, float64, "
				       "string, binary, date, timestamp)", a2);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_ALTER, 5);
	wire_key_str(pk, WIRE_ALTER_Q_TABLE, table);
	wire_key_u64(pk, WIRE_ALTER_Q_OP, (uint64_t)alter_ops[k].op);
	wire_key_str(pk, WIRE_ALTER_Q_ARG1, a1);
	wire_key_str(pk, WIRE_ALTER_Q_ARG2, alter_ops[k].op == WIRE_ALTER_ADD_COLUMN ? "" : a2);
	wire_key_u64(pk, WIRE_ALTER_Q_TYPE, (uint64_t)type);
	const msgpack_object *b;
	struct wire_error e;
	uint64_t v = 0;
	const struct cli_reply r = {WIRE_ALTER, NULL};
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
	} else if (cli_reply_u64(&r, b, WIRE_ALTER_R_VERSION, "version", CLI_REQUIRED, &v) < 0) {
		status = 1;
	} else {
		printf("table '%s' version %" PRIu64 ": %s done\n", table, v, opname);
	}
	sc_close(c);
	return status;
}
