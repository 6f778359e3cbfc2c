/*
 * tests/unit/test_config.c — stratad's YAML config (daemon/config.h):
 * configs/strata.yaml equals the built-in defaults and documents every
 * key; bad files are refused with FILE:LINE:COLUMN, the key and the reason;
 * the cluster section, the deprecated `durability` key and the cluster configs.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "daemon/server/config.h"
#include "tests/test.h"

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	static char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static bool same_cluster(const struct sd_cluster *a, const struct sd_cluster *b)
{
	if (a->enabled != b->enabled || a->node_id != b->node_id || a->npeers != b->npeers ||
	    memcmp(a->cluster_id, b->cluster_id, 16) || !a->peer_listen != !b->peer_listen ||
	    (a->peer_listen && strcmp(a->peer_listen, b->peer_listen)))
		return false;
	for (uint32_t i = 0; i < a->npeers; i++)
		if (a->peers[i].id != b->peers[i].id || strcmp(a->peers[i].peer, b->peers[i].peer) ||
		    strcmp(a->peers[i].client, b->peers[i].client))
			return false;
	return a->heartbeat_us == b->heartbeat_us &&
	       a->election_timeout_us == b->election_timeout_us &&
	       a->durability == b->durability && a->write_timeout_us == b->write_timeout_us &&
	       a->max_staleness_us == b->max_staleness_us && a->max_lag == b->max_lag;
}

static bool same(const struct sd_config *a, const struct sd_config *b)
{
	if (a->nlisten != b->nlisten || strcmp(a->data_dir, b->data_dir))
		return false;
	for (uint32_t i = 0; i < a->nlisten; i++)
		if (strcmp(a->listen[i], b->listen[i]))
			return false;
	return a->map_size == b->map_size && a->workers == b->workers &&
	       a->log_level == b->log_level && a->log_target == b->log_target &&
	       a->max_message_size == b->max_message_size &&
	       a->max_batch_rows == b->max_batch_rows &&
	       a->cursor_timeout_us == b->cursor_timeout_us &&
	       a->log_retention_us == b->log_retention_us &&
	       a->file_retention_us == b->file_retention_us && a->fsync == b->fsync &&
	       same_cluster(&a->cluster, &b->cluster);
}

static void t_strata_yaml_is_the_defaults(void)
{
	struct sd_config d, f;
	struct st_err err;
	REQUIRE(sd_config_defaults(&d) == ST_OK);
	int rc = sd_config_load("configs/strata.yaml", &f, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK(same(&d, &f));
	CHECK_EQ(d.map_size, 16ULL << 30);
	CHECK_EQ(d.cursor_timeout_us, 60000000);
	CHECK_EQ(d.log_retention_us, 30LL * 86400 * 1000000);
	CHECK(!strcmp(d.listen[0], "tcp://127.0.0.1:7420"));
	CHECK(!strncmp(d.listen[1], "ipc://", 6));
	sd_config_fini(&d);
	sd_config_fini(&f);
}

static void t_every_key_documented(void)
{
	char *yaml = slurp("configs/strata.yaml");
	REQUIRE(yaml);
	char copy[1 << 16];
	snprintf(copy, sizeof copy, "%s", yaml);
	char *readme = slurp("configs/README.md");
	REQUIRE(readme);
	REQUIRE(sd_config_nkeys() >= 12);
	for (unsigned i = 0; i < sd_config_nkeys(); i++) {
		const char *k = sd_config_key(i);
		char line[128], comment[128], ref[128];
		snprintf(line, sizeof line, "\n%s:", k);
		snprintf(comment, sizeof comment, "\n# %s:", k);
		snprintf(ref, sizeof ref, "`%s`", k);
		if (!sd_config_key_optional(i))
			CHECK_CONTAINS(copy, line); /* set in strata.yaml (an optional one: shown) */
		CHECK_CONTAINS(copy, comment); /* and explained above it */
		CHECK_CONTAINS(readme, ref);   /* and in the reference */
	}
	CHECK(sd_config_key(sd_config_nkeys()) == NULL);
}

static void t_print_reads_back(void)
{
	struct sd_config a, b;
	struct st_err err;
	char buf[4096];
	const char *text = "listen: [\"ipc:///tmp/x y.sock\", \"tcp://127.0.0.1:9\"]\n"
			   "workers: 7\nmap_size: 3MiB\ncursor_timeout: 90s\n"
			   "fsync: off\nlog_level: debug\ndata_dir: 'a \"b\"'\n";
	REQUIRE(sd_config_parse(text, strlen(text), "t.yaml", &a, &err) == ST_OK);
	CHECK_EQ(a.workers, 7);
	CHECK_EQ(a.map_size, 3 << 20);
	CHECK_EQ(a.cursor_timeout_us, 90000000);
	CHECK_EQ(a.fsync, SD_FSYNC_OFF);
	CHECK_EQ(a.nwarnings, 0);
	CHECK(!a.cluster.enabled);
	CHECK_EQ(a.nlisten, 2);
	CHECK(!strcmp(a.data_dir, "a \"b\""));
	FILE *m = fmemopen(buf, sizeof buf, "w");
	sd_config_print(m, &a);
	fclose(m);
	REQUIRE(sd_config_parse(buf, strlen(buf), "printed", &b, &err) == ST_OK);
	CHECK(same(&a, &b));
	sd_config_fini(&a);
	sd_config_fini(&b);
}

static void t_appliance_yaml_loads(void)
{
	struct sd_config c;
	struct st_err err;
	REQUIRE(sd_config_load("configs/appliance.yaml", &c, &err) == ST_OK);
	CHECK_EQ(c.workers, 2);
	CHECK_EQ(c.nlisten, 1);
	sd_config_fini(&c);
}

static void bad(const char *text, const char *want)
{
	struct sd_config c;
	struct st_err err;
	int rc = sd_config_parse(text, strlen(text), "bad.yaml", &c, &err);
	CHECK(rc == ST_EINVAL);
	if (rc == ST_OK)
		sd_config_fini(&c);
	else
		CHECK_CONTAINS(err.msg, want);
}

static void t_bad_files_are_positioned(void)
{
	bad("workers: 4\nbogus: 1\n", "bad.yaml:2:1: key 'bogus': unknown key");
	bad("workers: 0\n", "bad.yaml:1:10: key 'workers': out of range [1, 256]");
	bad("workers: four\n", "key 'workers': not a whole number");
	bad("workers: 99999999999999999999999\n", "key 'workers': not a whole number");
	bad("map_size: 12 GB\n", "bad.yaml:1:11: key 'map_size': not a size");
	bad("map_size: 1KiB\n", "key 'map_size': out of range");
	bad("max_message_size: 2GiB\n", "key 'max_message_size': out of range");
	bad("cursor_timeout: soon\n", "key 'cursor_timeout': not a duration");
	bad("log_level: loud\n", "key 'log_level': not one of: error warn info debug");
	bad("durability: maybe\n", "key 'durability': not one of: sync nosync");
	bad("fsync: maybe\n", "key 'fsync': not one of: on off");
	bad("fsync: on\ndurability: sync\n", "bad.yaml:2:1: key 'durability': given twice");
	bad("workers: 2\nworkers: 3\n", "bad.yaml:2:1: key 'workers': given twice");
	bad("listen: []\n", "key 'listen': needs at least one address");
	bad("listen: [[a]]\n", "key 'listen': expected a list of strings");
	bad("workers: [1, 2]\n", "key 'workers': expected a single value");
	bad("data_dir:\n", "key 'data_dir': the value is empty");
	bad("data_dir: {a: b}\n", "key 'data_dir': expected a single value");
	bad("- a\n- b\n", "bad.yaml:1:1: the config must be a mapping");
	bad("just text\n", "the config must be a mapping");
	bad("workers: 4\nlisten: [\"a\",\n", "bad.yaml:3:1: YAML syntax");
	bad("a: &x 1\nworkers: *x\n", "key 'a': unknown key");
}

static void t_empty_file_is_defaults(void)
{
	struct sd_config a, d;
	struct st_err err;
	REQUIRE(sd_config_parse("", 0, "empty.yaml", &a, &err) == ST_OK);
	REQUIRE(sd_config_defaults(&d) == ST_OK);
	CHECK(same(&a, &d));
	sd_config_fini(&a);
	sd_config_fini(&d);
	REQUIRE(sd_config_parse("# only comments\n", 16, "c.yaml", &a, &err) == ST_OK);
	sd_config_fini(&a);
}

static void t_missing_file(void)
{
	struct sd_config c;
	struct st_err err;
	CHECK_EQ(sd_config_load("/nonexistent/strata.yaml", &c, &err), ENOENT);
	CHECK_CONTAINS(err.msg, "/nonexistent/strata.yaml");
}

static void t_reference_lists_every_key(void)
{
	char buf[8192];
	FILE *m = fmemopen(buf, sizeof buf, "w");
	sd_config_reference(m);
	fclose(m);
	for (unsigned i = 0; i < sd_config_nkeys(); i++) {
		char ref[128];
		snprintf(ref, sizeof ref, "| `%s` |", sd_config_key(i));
		CHECK_CONTAINS(buf, ref);
	}
}


#define CL_ID "00112233445566778899aabbccddeeff"
#define CL_HEAD "cluster:\n  node_id: 1\n  cluster_id: " CL_ID "\n  peer_listen: tcp://127.0.0.1:7500\n"

static void t_deprecated_durability_warns(void)
{
	struct sd_config c;
	struct st_err err;
	const char *text = "workers: 2\ndurability: nosync\n";
	REQUIRE(sd_config_parse(text, strlen(text), "old.yaml", &c, &err) == ST_OK);
	CHECK_EQ(c.fsync, SD_FSYNC_OFF);
	REQUIRE(c.nwarnings == 1);
	CHECK(!strcmp(c.warnings[0], "old.yaml:2:1: key 'durability' is deprecated: use 'fsync: "
				     "on|off' (durability now means the replication level of a "
				     "write)"));
	sd_config_fini(&c);
	CHECK_EQ(c.nwarnings, 0);
	text = "durability: sync\n";
	REQUIRE(sd_config_parse(text, strlen(text), "old.yaml", &c, &err) == ST_OK);
	CHECK_EQ(c.fsync, SD_FSYNC_ON);
	CHECK_EQ(c.nwarnings, 1);
	sd_config_fini(&c);
}

static void t_cluster_parsed(void)
{
	struct sd_config c, b;
	struct st_err err;
	char buf[8192];
	const char *text = CL_HEAD
		"  peers:\n"
		"    - {id: 2, peer: \"tcp://127.0.0.1:7520\", client: \"tcp://127.0.0.1:7422\"}\n"
		"    - id: 3\n      peer: tcp://127.0.0.1:7540\n      client: tcp://127.0.0.1:7423\n"
		"  heartbeat: 50ms\n  election_timeout: 750ms\n  durability: all\n"
		"  write_timeout: 2s\n  max_staleness: 1500ms\n  max_lag: 77\n"
		"fsync: off\n";
	int rc = sd_config_parse(text, strlen(text), "c.yaml", &c, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  %s\n", err.msg);
	REQUIRE(rc == ST_OK);
	CHECK(c.cluster.enabled);
	CHECK_EQ(c.cluster.node_id, 1);
	CHECK_EQ(c.cluster.cluster_id[0], 0x00);
	CHECK_EQ(c.cluster.cluster_id[1], 0x11);
	CHECK_EQ(c.cluster.cluster_id[15], 0xff);
	CHECK(!strcmp(c.cluster.peer_listen, "tcp://127.0.0.1:7500"));
	REQUIRE(c.cluster.npeers == 2);
	CHECK_EQ(c.cluster.peers[0].id, 2);
	CHECK(!strcmp(c.cluster.peers[0].peer, "tcp://127.0.0.1:7520"));
	CHECK(!strcmp(c.cluster.peers[1].client, "tcp://127.0.0.1:7423"));
	CHECK_EQ(c.cluster.heartbeat_us, 50000);
	CHECK_EQ(c.cluster.election_timeout_us, 750000);
	CHECK_EQ(c.cluster.durability, SD_DUR_ALL);
	CHECK_EQ(c.cluster.write_timeout_us, 2000000);
	CHECK_EQ(c.cluster.max_staleness_us, 1500000);
	CHECK_EQ(c.cluster.max_lag, 77);
	CHECK_EQ(c.fsync, SD_FSYNC_OFF);
	/* print -> parse gives the same values */
	FILE *m = fmemopen(buf, sizeof buf, "w");
	sd_config_print(m, &c);
	fclose(m);
	CHECK_CONTAINS(buf, "\ncluster:\n  node_id: 1\n");
	CHECK_CONTAINS(buf, "  heartbeat: 50ms\n");
	rc = sd_config_parse(buf, strlen(buf), "printed", &b, &err);
	if (rc != ST_OK)
		fprintf(stderr, "  %s\n%s", err.msg, buf);
	REQUIRE(rc == ST_OK);
	CHECK(same(&c, &b));
	sd_config_fini(&b);
	sd_config_fini(&c);
}

static void t_cluster_defaults(void)
{
	struct sd_config c, b;
	struct st_err err;
	char buf[8192];
	const char *text = CL_HEAD;
	REQUIRE(sd_config_parse(text, strlen(text), "c.yaml", &c, &err) == ST_OK);
	CHECK(c.cluster.enabled);
	CHECK_EQ(c.cluster.npeers, 0); /* a one-node cluster */
	CHECK_EQ(c.cluster.heartbeat_us, 100000);
	CHECK_EQ(c.cluster.election_timeout_us, 1000000);
	CHECK_EQ(c.cluster.durability, SD_DUR_QUORUM);
	CHECK_EQ(c.cluster.write_timeout_us, 5000000);
	CHECK_EQ(c.cluster.max_staleness_us, 5000000);
	CHECK_EQ(c.cluster.max_lag, 10000);
	FILE *m = fmemopen(buf, sizeof buf, "w");
	sd_config_print(m, &c);
	fclose(m);
	CHECK_CONTAINS(buf, "  peers: []\n");
	REQUIRE(sd_config_parse(buf, strlen(buf), "printed", &b, &err) == ST_OK);
	CHECK(same(&c, &b));
	sd_config_fini(&b);
	sd_config_fini(&c);
	/* a single node prints no cluster section */
	REQUIRE(sd_config_defaults(&c) == ST_OK);
	CHECK(!c.cluster.enabled);
	m = fmemopen(buf, sizeof buf, "w");
	sd_config_print(m, &c);
	fclose(m);
	CHECK(!strstr(buf, "cluster"));
	CHECK_CONTAINS(buf, "\nfsync: on\n");
	sd_config_fini(&c);
}

static void t_cluster_bad(void)
{
	bad("cluster: 1\n", "bad.yaml:1:10: key 'cluster': expected a mapping");
	bad("cluster:\n", "key 'cluster': expected a mapping");
	bad("cluster: {node_id: 1, cluster_id: " CL_ID "}\n",
	    "bad.yaml:1:1: key 'cluster.peer_listen': required in the cluster section");
	bad("cluster: {cluster_id: " CL_ID ", peer_listen: \"tcp://h:1\"}\n",
	    "key 'cluster.node_id': required");
	bad("cluster: {node_id: 1, peer_listen: \"tcp://h:1\"}\n",
	    "key 'cluster.cluster_id': required");
	bad(CL_HEAD "  bogus: 1\n", "bad.yaml:5:3: key 'cluster.bogus': unknown key");
	bad(CL_HEAD "  node_id: 2\n", "bad.yaml:5:3: key 'cluster.node_id': given twice");
	bad(CL_HEAD "cluster: {}\n", "bad.yaml:5:1: key 'cluster': given twice");
	bad("cluster:\n  node_id: 0\n", "bad.yaml:2:12: key 'cluster.node_id': out of range");
	bad("cluster:\n  node_id: x\n", "key 'cluster.node_id': not a whole number");
	bad("cluster:\n  node_id: [1]\n", "key 'cluster.node_id': expected a single value");
	bad("cluster:\n  cluster_id: abc\n", "key 'cluster.cluster_id': not 32 hex digits");
	bad("cluster:\n  cluster_id: 00112233445566778899aabbccddeefg\n",
	    "key 'cluster.cluster_id': not 32 hex digits");
	bad("cluster:\n  peer_listen: ipc://x\n",
	    "key 'cluster.peer_listen': not an address of the form tcp://HOST:PORT");
	bad("cluster:\n  peer_listen: tcp://h:99999\n", "key 'cluster.peer_listen': not an address");
	bad("cluster:\n  peer_listen: tcp://:80\n", "key 'cluster.peer_listen': not an address");
	bad(CL_HEAD "  heartbeat: fast\n", "key 'cluster.heartbeat': not a duration");
	bad(CL_HEAD "  heartbeat: 0ms\n", "key 'cluster.heartbeat': out of range");
	bad(CL_HEAD "  heartbeat: 500ms\n",
	    "bad.yaml:5:3: key 'cluster.election_timeout': must be at least 3 x heartbeat (1500ms)");
	bad(CL_HEAD "  heartbeat: 100ms\n  election_timeout: 250ms\n",
	    "bad.yaml:6:3: key 'cluster.election_timeout': must be at least 3 x heartbeat (300ms)");
	bad(CL_HEAD "  durability: sync\n",
	    "key 'cluster.durability': not one of: local quorum all");
	bad(CL_HEAD "  max_lag: -1\n", "key 'cluster.max_lag': not a whole number");
	bad(CL_HEAD "  peers: tcp://h:1\n", "key 'cluster.peers': expected a list");
	bad(CL_HEAD "  peers: [tcp://h:1]\n", "bad.yaml:5:11: key 'cluster.peers': expected a list");
	bad(CL_HEAD "  peers: [{id: 2, peer: \"tcp://h:1\"}]\n",
	    "bad.yaml:5:11: key 'cluster.peers[0].client': required");
	bad(CL_HEAD "  peers: [{peer: \"tcp://h:1\", client: \"tcp://h:2\"}]\n",
	    "key 'cluster.peers[0].id': required");
	bad(CL_HEAD "  peers: [{id: 2, peer: \"tcp://h:1\", client: \"tcp://h:2\", x: 1}]\n",
	    "key 'cluster.peers[0].x': unknown key");
	bad(CL_HEAD "  peers: [{id: 2, id: 3}]\n", "key 'cluster.peers[0].id': given twice");
	bad(CL_HEAD "  peers: [{id: 0, peer: \"tcp://h:1\", client: \"tcp://h:2\"}]\n",
	    "key 'cluster.peers[0].id': node ids start at 1");
	bad(CL_HEAD "  peers: [{id: two}]\n", "key 'cluster.peers[0].id': not a whole number");
	bad(CL_HEAD "  peers: [{id: 2, peer: \"ipc://x\"}]\n",
	    "key 'cluster.peers[0].peer': not an address of the form tcp://HOST:PORT");
	bad(CL_HEAD "  peers: [{id: 2, client: [a]}]\n",
	    "key 'cluster.peers[0].client': expected a single value");
	bad(CL_HEAD "  peers:\n    - {id: 2, peer: \"tcp://h:1\", client: \"tcp://h:2\"}\n"
		    "    - {id: 2, peer: \"tcp://h:3\", client: \"tcp://h:4\"}\n",
	    "bad.yaml:7:12: key 'cluster.peers[1].id': id 2 is also cluster.peers[0]");
	bad(CL_HEAD "  peers:\n    - {id: 3, peer: \"tcp://h:1\", client: \"tcp://h:2\"}\n"
		    "    - {id: 1, peer: \"tcp://h:3\", client: \"tcp://h:4\"}\n",
	    "bad.yaml:7:7: key 'cluster.peers[1].id': is this node's own node_id");
	char many[4096];
	int n = snprintf(many, sizeof many, "%s  peers:\n", CL_HEAD);
	for (int i = 0; i < 16; i++)
		n += snprintf(many + n, sizeof many - (size_t)n,
			      "    - {id: %d, peer: \"tcp://h:%d\", client: \"tcp://h:%d\"}\n", i + 2,
			      i + 10, i + 100);
	bad(many, "bad.yaml:21:7: key 'cluster.peers': at most 15 peers");
}

static void t_cluster_configs_load(void)
{
	for (int i = 1; i <= 3; i++) {
		char path[64];
		struct sd_config c;
		struct st_err err;
		snprintf(path, sizeof path, "configs/cluster/node%d.yaml", i);
		int rc = sd_config_load(path, &c, &err);
		if (rc != ST_OK)
			fprintf(stderr, "  %s\n", err.msg);
		REQUIRE(rc == ST_OK);
		CHECK_EQ(c.cluster.node_id, (uint64_t)i);
		CHECK_EQ(c.cluster.npeers, 2);
		CHECK_EQ(c.nwarnings, 0);
		char want[64];
		snprintf(want, sizeof want, "tcp://127.0.0.1:742%d", i);
		CHECK(!strcmp(c.listen[0], want));
		snprintf(want, sizeof want, "tcp://127.0.0.1:75%d0", (i - 1) * 2);
		CHECK(!strcmp(c.cluster.peer_listen, want));
		sd_config_fini(&c);
	}
}

static void t_reference_lists_cluster_keys(void)
{
	static const char *const ck[] = {"node_id", "cluster_id", "peer_listen", "peers",
					 "heartbeat", "election_timeout", "durability",
					 "write_timeout", "max_staleness", "max_lag"};
	char buf[16384];
	FILE *m = fmemopen(buf, sizeof buf, "w");
	sd_config_reference(m);
	fclose(m);
	char *readme = slurp("configs/README.md");
	REQUIRE(readme);
	for (size_t i = 0; i < sizeof ck / sizeof ck[0]; i++) {
		char ref[128];
		snprintf(ref, sizeof ref, "| `cluster.%s` |", ck[i]);
		CHECK_CONTAINS(buf, ref);
		CHECK_CONTAINS(readme, ref);
	}
	/* the README's table is the reference, row for row */
	char *line = buf;
	while (*line) {
		char *nl = strchr(line, '\n');
		REQUIRE(nl);
		*nl = '\0';
		CHECK_CONTAINS(readme, line);
		line = nl + 1;
	}
}

static const struct test_case tests[] = {
	{"strata_yaml_is_the_defaults", t_strata_yaml_is_the_defaults},
	{"every_key_documented", t_every_key_documented},
	{"print_reads_back", t_print_reads_back},
	{"appliance_yaml_loads", t_appliance_yaml_loads},
	{"bad_files_are_positioned", t_bad_files_are_positioned},
	{"empty_file_is_defaults", t_empty_file_is_defaults},
	{"missing_file", t_missing_file},
	{"reference_lists_every_key", t_reference_lists_every_key},
	{"deprecated_durability_warns", t_deprecated_durability_warns},
	{"cluster_parsed", t_cluster_parsed},
	{"cluster_defaults", t_cluster_defaults},
	{"cluster_bad", t_cluster_bad},
	{"cluster_configs_load", t_cluster_configs_load},
	{"reference_lists_cluster_keys", t_reference_lists_cluster_keys},
};
TEST_MAIN(tests)
