/*
 * tests/unit/test_config.c — stratad's YAML config (daemon/config.h):
 * configs/strata.yaml equals the built-in defaults and documents every
 * key; bad files are refused with FILE:LINE:COLUMN, the key and the reason.
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
	       a->file_retention_us == b->file_retention_us && a->durability == b->durability;
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
	CHECK_EQ(d.map_size, 1ULL << 30);
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
		CHECK_CONTAINS(copy, line);    /* set in strata.yaml */
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
			   "durability: nosync\nlog_level: debug\ndata_dir: 'a \"b\"'\n";
	REQUIRE(sd_config_parse(text, strlen(text), "t.yaml", &a, &err) == ST_OK);
	CHECK_EQ(a.workers, 7);
	CHECK_EQ(a.map_size, 3 << 20);
	CHECK_EQ(a.cursor_timeout_us, 90000000);
	CHECK_EQ(a.durability, SD_DURABILITY_NOSYNC);
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

static const struct test_case tests[] = {
	{"strata_yaml_is_the_defaults", t_strata_yaml_is_the_defaults},
	{"every_key_documented", t_every_key_documented},
	{"print_reads_back", t_print_reads_back},
	{"appliance_yaml_loads", t_appliance_yaml_loads},
	{"bad_files_are_positioned", t_bad_files_are_positioned},
	{"empty_file_is_defaults", t_empty_file_is_defaults},
	{"missing_file", t_missing_file},
	{"reference_lists_every_key", t_reference_lists_every_key},
};
TEST_MAIN(tests)
