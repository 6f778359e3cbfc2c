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
		CLI_COMMON_OPTS};
	const char *schema = NULL;
	char *parts[64], *props[256];
	int nparts = 0, nprops = 0, mode = 0, status = 0, o;
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
			mode = 1;
			break;
		case 'r':
			mode = 2;
			break;
		}
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
			status = cli_fail_wire(c, &e);
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

int cli_cmd_tables(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {CLI_COMMON_OPTS};
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		; /* only the common options */
	if (o == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("takes no arguments");
	sc_client *c;
	const msgpack_object *b;
	if ((status = cli_simple_call(g, WIRE_TABLES, NULL, &c, &b)))
		return status;
	const msgpack_object *a = wire_get(b, 0);
	for (uint32_t i = 0; a && a->type == MSGPACK_OBJECT_ARRAY && i < a->via.array.size; i++) {
		const char *s;
		int len;
		if (cli_str(&a->via.array.ptr[i], &s, &len))
			printf("%.*s\n", len, s);
	}
	sc_close(c);
	return 0;
}

/* The partitioning, properties and constraints of a DESCRIBE reply. */
static void print_layout(const msgpack_object *b)
{
	const msgpack_object *parts = wire_get(b, 3), *props = wire_get(b, 4), *cons = wire_get(b, 5);
	const char *s, *t;
	int len, tlen;
	if (parts && parts->type == MSGPACK_OBJECT_ARRAY && parts->via.array.size) {
		printf("partitioned by:");
		for (uint32_t i = 0; i < parts->via.array.size; i++)
			if (cli_str(&parts->via.array.ptr[i], &s, &len))
				printf(" %.*s", len, s);
		printf("\n");
	}
	if (props && props->type == MSGPACK_OBJECT_MAP && props->via.map.size) {
		printf("properties:\n");
		for (uint32_t i = 0; i < props->via.map.size; i++) {
			const msgpack_object_kv *kv = &props->via.map.ptr[i];
			if (cli_str(&kv->key, &s, &len) && cli_str(&kv->val, &t, &tlen))
				printf("  %.*s = %.*s\n", len, s, tlen, t);
		}
	}
	if (cons && cons->type == MSGPACK_OBJECT_ARRAY && cons->via.array.size) {
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
	wire_key_str(pk, 0, argv[optind]);
	if (ver)
		wire_key_u64(pk, 1, v);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
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
	const msgpack_object *cols = wire_get(b, 2);
	printf("columns:\n");
	for (uint32_t i = 0; cols && cols->type == MSGPACK_OBJECT_ARRAY && i < cols->via.array.size;
	     i++) {
		struct st_field f;
		if (!cli_column(&cols->via.array.ptr[i], &f)) {
			printf("  (column %u: not in a form this client reads)\n", i + 1);
			continue;
		}
		printf("  %-24s %-10s%s  (field id %" PRIu32 ")\n", f.name, st_type_name(f.type),
		       f.nullable ? "" : " not null", f.id);
	}
	print_layout(b);
	sc_close(c);
	return 0;
}

int cli_cmd_drop(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {CLI_COMMON_OPTS};
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		; /* only the common options */
	if (o == CLI_OPT_STOP)
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

/* alter's operations: name, ST_ALTER_* value (daemon/store/strata.h; the
 * CLI may not include it), operands. */
static const struct {
	const char *name; /* on the command line */
	int op;           /* ST_ALTER_* */
	int nargs;        /* operands after the name */
} alter_ops[] = {
	{"add-column", 0, 2},    {"rename-column", 1, 2},  {"drop-column", 2, 1},
	{"set-property", 3, 1},  {"unset-property", 4, 1}, {"set-not-null", 5, 1},
	{"drop-not-null", 6, 1}, {"add-constraint", 7, 2}, {"drop-constraint", 8, 1},
};

int cli_cmd_alter(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {CLI_COMMON_OPTS};
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		; /* only the common options */
	if (o == CLI_OPT_STOP)
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
	if (alter_ops[k].op == 3) { /* set-property KEY=VALUE */
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
	if (alter_ops[k].op == 0 && !(type = st_type_from_name(a2, strlen(a2))))
		return cli_usage_error("add-column: unknown type '%s' (bool, int32, int64, float64, "
				       "string, binary, date, timestamp)", a2);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_ALTER, 5);
	wire_key_str(pk, 0, table);
	wire_key_u64(pk, 1, (uint64_t)alter_ops[k].op);
	wire_key_str(pk, 2, a1);
	wire_key_str(pk, 3, alter_ops[k].op == 0 ? "" : a2);
	wire_key_u64(pk, 4, (uint64_t)type);
	const msgpack_object *b;
	struct wire_error e;
	uint64_t v = 0;
	if (sc_call(c, &b, &e) != 0) {
		status = cli_fail_wire(c, &e);
	} else {
		wire_get_u64(b, 0, &v);
		printf("table '%s' version %" PRIu64 ": %s done\n", table, v, opname);
	}
	sc_close(c);
	return status;
}
