/*
 * daemon/server/config.c — stratad's YAML configuration (see config.h).
 *
 * One table, keys[], describes every key: its name, type, where it lives
 * in struct sd_config, its default (as the text a user would write), its
 * range and its meaning. Defaults are applied by parsing that text with the
 * same code that parses the file, so a default can never be a value the
 * file would refuse. The file is read with libyaml's event parser; only a
 * flat mapping of scalars (and one list, `listen`) is accepted.
 *
 * Pure functions over caller storage; thread-safe.
 */
#include "daemon/server/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "format/types.h"

enum key_type {
	K_STRING,   /* one non-empty string */
	K_LIST,     /* a YAML sequence of strings (or one string) */
	K_UINT,     /* a decimal integer in [min, max] */
	K_SIZE,     /* bytes: N, NKiB, NMiB, NGiB, NTiB (also K, M, G, T) */
	K_DURATION, /* N, Ns, Nm, Nh, Nd */
	K_ENUM,     /* one of choices[], stored as its index + min (a uint32_t) */
	K_U64,      /* a decimal integer in [min, max], stored as uint64_t */
	K_HEX16,    /* exactly 32 hex digits, stored as 16 bytes */
	K_TCP,      /* one string of the form tcp://HOST:PORT */
	K_PEERS,    /* cluster.peers: a sequence of {id, peer, client} mappings */
};

struct key {
	const char *name;            /* the YAML key */
	enum key_type type;          /* how its value is parsed */
	size_t off;                  /* offset of the field in struct sd_config */
	const char *def;             /* default, as written in a file (lists: space-separated) */
	uint64_t min, max;           /* range of K_UINT, K_U64, K_SIZE (bytes), K_DURATION (µs);
					K_ENUM: min is the value of choices[0] */
	const char *const *choices;  /* K_ENUM values, NULL-terminated */
	const char *doc;             /* one-line meaning */
};

#define KB 1024ULL
#define MB (1024 * KB)
#define GB (1024 * MB)
#define TB (1024 * GB)
#define SEC 1000000ULL
#define DAY (86400 * SEC)
#define F(f) offsetof(struct sd_config, f)
#define STR_(x) #x
#define ST_STR(x) STR_(x)

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const targets[] = {"stderr", "syslog", NULL};
static const char *const onoff[] = {"on", "off", NULL};
static const char *const durabilities[] = {"sync", "nosync", NULL}; /* deprecated key */
static const char *const levels_dur[] = {"local", "quorum", "all", NULL};
static const char *const falsetrue[] = {"false", "true", NULL};

static const struct key keys[] = {
	{"listen", K_LIST, F(listen), "tcp://127.0.0.1:7420 ipc://data/stratad.sock", 1,
	 SD_CONFIG_MAX_LISTEN, NULL,
	 "nanomsg addresses the daemon serves (tcp://HOST:PORT, ipc://PATH)"},
	{"data_dir", K_STRING, F(data_dir), "./data", 0, 0, NULL,
	 "directory of the tables and the LMDB environment (created if missing)"},
	{"map_size", K_SIZE, F(map_size), "16GiB", 1 * MB, 64 * TB, NULL,
	 "LMDB map size: the most the commit log, inline segments and key indexes can hold "
	 "(address space: the file grows only as it is used)"},
	{"workers", K_UINT, F(workers), "4", 1, 256, NULL,
	 "request worker threads: a long scan holds one, commits use the others"},
	{"log_level", K_ENUM, F(log_level), "info", 0, 0, levels,
	 "least important log lines written (SIGHUP re-reads it)"},
	{"log_target", K_ENUM, F(log_target), "stderr", 0, 0, targets,
	 "where log lines go"},
	{"max_message_size", K_SIZE, F(max_message_size), "16MiB", 64 * KB, 1 * GB, NULL,
	 "largest wire message accepted or sent (NN_RCVMAXSIZE)"},
	{"max_batch_rows", K_UINT, F(max_batch_rows), "65536", 1, 1048576, NULL,
	 "most rows in one batch of a load or scan message"},
	{"cursor_timeout", K_DURATION, F(cursor_timeout_us), "60s", 1 * SEC, 1 * DAY, NULL,
	 "an idle scan cursor or unfinished load is dropped after this"},
	{"log_retention", K_DURATION, F(log_retention_us), "30d", 1 * SEC, 36500 * DAY, NULL,
	 "default history kept per table (table property log_retention overrides)"},
	{"file_retention", K_DURATION, F(file_retention_us), "7d", 1 * SEC, 36500 * DAY, NULL,
	 "default age before vacuum deletes removed files (property file_retention overrides)"},
	{"fsync", K_ENUM, F(fsync), "on", 0, 0, onoff,
	 "on: a commit is on disk when acknowledged; off: faster, the last commits "
	 "can be lost on power failure (never corrupted). Formerly `durability: sync|nosync`"},
	{"auth_file", K_STRING, F(auth_file), "", 0, 0, NULL,
	 "client tokens: a file of lines NAME ROLE TOKEN (role read, write or admin; chmod 600); "
	 "every client then authenticates (PROTOCOL.md §2.2). Absent: no client authentication"},
	{"allow_unauthenticated", K_ENUM, F(allow_unauthenticated), "false", 0, 0, falsetrue,
	 "true: serve a listen address that is not loopback (or ipc) without auth_file; false "
	 "refuses to start so"},
	{"scrub_interval", K_DURATION, F(scrub_interval_us), "1d", 0, 36500 * DAY, NULL,
	 "a background scrub pass (every record and live segment checked) this often, the first "
	 "at most 10 minutes after start; 0 = only on demand (strata scrub)"},
	{"scrub_rate_mb_s", K_UINT, F(scrub_rate_mb_s), "4", 1, 100000, NULL,
	 "the scrub reads at most this many MB (10^6 bytes) per second on average"},
	{"auto_optimize_interval", K_DURATION, F(auto_optimize_interval_us), "10m", 0, 365 * DAY,
	 NULL, "automatic compaction looks at every table this often and runs OPTIMIZE (bin "
	 "packing) on those past a threshold below, at low priority; 0 = off"},
	{"auto_optimize_files", K_UINT, F(auto_optimize_files), "32", 2, 10000000, NULL,
	 "a table with this many live files or more is compacted"},
	{"auto_optimize_deleted_pct", K_UINT, F(auto_optimize_deleted_pct), "20", 1, 100, NULL,
	 "a table whose deletion vectors delete this percentage of its rows or more is compacted"},
	{"auto_optimize_target_mb", K_UINT, F(auto_optimize_target_mb), "64", 1, 65536, NULL,
	 "files automatic compaction writes are about this many MiB"},
	{"auto_optimize_rate_mb_s", K_UINT, F(auto_optimize_rate_mb_s), "20", 0, 100000, NULL,
	 "automatic compaction writes at most this many MB (10^6 bytes) per second on average "
	 "(it pauses after each table); 0 = no limit"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* The keys of the `cluster:` section (REPLICATION.md §11). A NULL default
 * marks a key the section requires. `peers` is parsed by parse_peers. */
static const struct key ckeys[] = {
	{"node_id", K_U64, F(cluster.node_id), NULL, 1, UINT64_MAX, NULL,
	 "this node's id (>= 1), unique in the cluster"},
	{"cluster_id", K_HEX16, F(cluster.cluster_id), NULL, 0, 0, NULL,
	 "32 hex digits naming the cluster, the same on every node (a node refuses peers of "
	 "another cluster)"},
	{"peer_listen", K_TCP, F(cluster.peer_listen), NULL, 0, 0, NULL,
	 "this node's peer address, tcp://HOST:PORT; the node uses ports PORT..PORT+16"},
	{"peers", K_PEERS, F(cluster.peers), "[]", 0, SD_CONFIG_MAX_PEERS, NULL,
	 "the other members: a list of {id, peer: tcp://HOST:PORT, client: tcp://HOST:PORT}; "
	 "empty = a one-node cluster"},
	{"heartbeat", K_DURATION, F(cluster.heartbeat_us), "100ms", 1000, 60 * SEC, NULL,
	 "the leader's heartbeat interval"},
	{"election_timeout", K_DURATION, F(cluster.election_timeout_us), "1s", 3000, 600 * SEC,
	 NULL, "a follower without a heartbeat this long stands for election (randomized up to "
	 "2x); at least 3 x heartbeat"},
	{"durability", K_ENUM, F(cluster.durability), "quorum", SD_DUR_LOCAL, 0, levels_dur,
	 "default durability of writes that name none (REPLICATION.md §7)"},
	{"write_timeout", K_DURATION, F(cluster.write_timeout_us), "5s", 1000, 1 * DAY, NULL,
	 "a write waits this long for its durability level, then fails with ST_EUNAVAIL"},
	{"max_staleness", K_DURATION, F(cluster.max_staleness_us), "5s", 1000, 1 * DAY, NULL,
	 "a follower refuses default (bounded) reads when its last leader contact is older"},
	{"max_lag", K_U64, F(cluster.max_lag), "10000", 1, UINT64_MAX, NULL,
	 "the lag budget: vacuum keeps the files a follower this many entries behind may still fetch"},
	{"join", K_ENUM, F(cluster.join), "false", 0, 0, falsetrue,
	 "true on a node being added to a running cluster (strata cluster add): it starts as a "
	 "learner of the cluster its peers form and votes only once promoted; ignored once the "
	 "node holds the cluster's membership"},
	{"promote_lag", K_U64, F(cluster.promote_lag), "1000", 0, UINT64_MAX, NULL,
	 "strata cluster promote refuses a learner more than this many entries behind the leader"},
	{"auto_promote", K_ENUM, F(cluster.auto_promote), "false", 0, 0, falsetrue,
	 "true: the leader promotes a learner to voter by itself once it is within promote_lag"},
	{"key_file", K_STRING, F(cluster.key_file), "", 0, 0, NULL,
	 "the cluster key: a file of 32 bytes (or 64 hex digits), the same on every node; every "
	 "peer message is then authenticated with it (HMAC-SHA512-256) and a node without it "
	 "refused. Empty: unauthenticated (loopback or a trusted network only)"},
};
#define NCKEYS (sizeof ckeys / sizeof ckeys[0])

static const char *type_name(enum key_type t)
{
	static const char *const n[] = {"string", "list of strings", "integer", "size",
					"duration", "one of", "integer", "32 hex digits",
					"tcp://HOST:PORT", "list of {id, peer, client}"};
	return n[t];
}

/* ---- values ---- */

static bool parse_u64(const char *s, uint64_t *v, char **end)
{
	if (!(*s >= '0' && *s <= '9'))
		return false;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno != ERANGE;
}

static bool parse_size(const char *s, uint64_t *v)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {{"", 1},       {"B", 1},        {"K", KB},  {"KiB", KB}, {"KB", KB},
		     {"M", MB},     {"MiB", MB},     {"MB", MB}, {"G", GB},   {"GiB", GB},
		     {"GB", GB},    {"T", TB},       {"TiB", TB}, {"TB", TB}};
	char *end;
	uint64_t n;
	if (!parse_u64(s, &n, &end))
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (!strcmp(end, units[i].suffix)) {
			if (n > UINT64_MAX / units[i].mult)
				return false;
			*v = n * units[i].mult;
			return true;
		}
	return false;
}

static void *field(struct sd_config *c, const struct key *k)
{
	return (char *)c + k->off;
}

static const void *cfield(const struct sd_config *c, const struct key *k)
{
	return (const char *)c + k->off;
}

static void clear_list(struct sd_config *c)
{
	for (uint32_t i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	c->nlisten = 0;
}

/* A duration: st_parse_duration's forms (N, Ns, Nm, Nh, Nd) or Nms. */
static bool parse_duration(const char *s, int64_t *us)
{
	size_t n = strlen(s);
	if (n > 2 && !strcmp(s + n - 2, "ms")) {
		char num[32];
		uint64_t v;
		char *end;
		if (n - 2 >= sizeof num)
			return false;
		memcpy(num, s, n - 2);
		num[n - 2] = '\0';
		if (!parse_u64(num, &v, &end) || *end || v > INT64_MAX / 1000)
			return false;
		*us = (int64_t)v * 1000;
		return true;
	}
	return st_parse_duration(s, us) == ST_OK;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* tcp://HOST:PORT with a non-empty host and a port 1..65535. */
static bool is_tcp_address(const char *s)
{
	if (strncmp(s, "tcp://", 6))
		return false;
	const char *host = s + 6, *colon = strrchr(host, ':');
	if (!colon || colon == host || !colon[1])
		return false;
	uint64_t port;
	char *end;
	return parse_u64(colon + 1, &port, &end) && !*end && port >= 1 && port <= 65535;
}

/* Set key k from text. Returns NULL, or the reason it is refused (reason
 * may be written into buf). */
static const char *set_value(struct sd_config *c, const struct key *k, const char *text,
			     char *buf, size_t buflen)
{
	uint64_t v = 0;
	char *end;
	int64_t us;
	switch (k->type) {
	case K_PEERS:
		return "expected a list of {id, peer, client} mappings";
	case K_TCP:
		if (!is_tcp_address(text))
			return "not an address of the form tcp://HOST:PORT";
		/* fall through */
	case K_STRING:
	case K_LIST: {
		if (!*text)
			return "the value is empty";
		char *dup = strdup(text);
		if (!dup)
			return "out of memory";
		if (k->type != K_LIST) {
			char **p = field(c, k);
			free(*p);
			*p = dup;
			return NULL;
		}
		if (c->nlisten >= k->max) {
			free(dup);
			snprintf(buf, buflen, "at most %" PRIu64 " entries", k->max);
			return buf;
		}
		c->listen[c->nlisten++] = dup;
		return NULL;
	}
	case K_HEX16: {
		uint8_t *out = field(c, k);
		if (strlen(text) != 32)
			return "not 32 hex digits";
		for (int i = 0; i < 16; i++) {
			int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
			if (hi < 0 || lo < 0)
				return "not 32 hex digits";
			out[i] = (uint8_t)(hi << 4 | lo);
		}
		return NULL;
	}
	case K_UINT:
	case K_U64:
		if (!parse_u64(text, &v, &end) || *end)
			return "not a whole number";
		break;
	case K_SIZE:
		if (!parse_size(text, &v))
			return "not a size (examples: 1048576, 64KiB, 16MiB, 1GiB)";
		break;
	case K_DURATION:
		if (!parse_duration(text, &us))
			return "not a duration (examples: 100ms, 90s, 30m, 12h, 7d)";
		v = (uint64_t)us;
		break;
	case K_ENUM:
		for (uint32_t i = 0; k->choices[i]; i++)
			if (!strcasecmp(text, k->choices[i])) {
				*(uint32_t *)field(c, k) = i + (uint32_t)k->min;
				return NULL;
			}
		snprintf(buf, buflen, "not one of:");
		for (uint32_t i = 0; k->choices[i]; i++)
			snprintf(buf + strlen(buf), buflen - strlen(buf), " %s", k->choices[i]);
		return buf;
	}
	if (v < k->min || v > k->max) {
		snprintf(buf, buflen, "out of range [%" PRIu64 ", %" PRIu64 "]%s", k->min, k->max,
			 k->type == K_DURATION ? " microseconds" : k->type == K_SIZE ? " bytes" : "");
		return buf;
	}
	void *p = field(c, k);
	if (k->type == K_UINT)
		*(uint32_t *)p = (uint32_t)v;
	else if (k->type == K_SIZE || k->type == K_U64)
		*(uint64_t *)p = v;
	else
		*(int64_t *)p = (int64_t)v;
	return NULL;
}

static void clear_cluster(struct sd_cluster *cl)
{
	free(cl->peer_listen);
	free(cl->key_file);
	for (uint32_t i = 0; i < cl->npeers; i++) {
		free(cl->peers[i].peer);
		free(cl->peers[i].client);
	}
	memset(cl, 0, sizeof *cl);
}

void sd_config_fini(struct sd_config *c)
{
	clear_list(c);
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == K_STRING) {
			char **p = field(c, &keys[i]);
			free(*p);
			*p = NULL;
		}
	clear_cluster(&c->cluster);
	for (uint32_t i = 0; i < c->nwarnings; i++)
		free(c->warnings[i]);
	c->nwarnings = 0;
}

int sd_config_defaults(struct sd_config *c)
{
	char buf[256];
	memset(c, 0, sizeof *c);
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		if (k->type != K_LIST) {
			if (k->def[0] && set_value(c, k, k->def, buf, sizeof buf))
				goto fail; /* "": an optional string, absent by default */
			continue;
		}
		for (const char *p = k->def; *p;) {
			size_t n = strcspn(p, " ");
			char item[256];
			snprintf(item, sizeof item, "%.*s", (int)n, p);
			if (set_value(c, k, item, buf, sizeof buf))
				goto fail;
			p += n + (p[n] == ' ');
		}
	}
	for (size_t i = 0; i < NCKEYS; i++) /* "": an optional string, absent by default */
		if (ckeys[i].def && ckeys[i].def[0] && ckeys[i].type != K_PEERS &&
		    set_value(c, &ckeys[i], ckeys[i].def, buf, sizeof buf))
			goto fail;
	return ST_OK;
fail:
	sd_config_fini(c);
	return ST_ENOMEM;
}

/* ---- the YAML file ---- */

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

static int at(struct st_err *err, const char *name, yaml_mark_t m, const char *key,
	      const char *reason)
{
	if (key)
		return st_seterr(err, ST_EINVAL, "%s:%zu:%zu: key '%s': %s", name, m.line + 1,
				 m.column + 1, key, reason);
	return st_seterr(err, ST_EINVAL, "%s:%zu:%zu: %s", name, m.line + 1, m.column + 1, reason);
}

/* The next event; a YAML syntax error becomes a positioned message. */
static int next(yaml_parser_t *p, yaml_event_t *ev, const char *name, struct st_err *err)
{
	if (yaml_parser_parse(p, ev))
		return ST_OK;
	char reason[300];
	snprintf(reason, sizeof reason, "YAML syntax: %s%s%s", p->problem ? p->problem : "error",
		 p->context ? " " : "", p->context ? p->context : "");
	return at(err, name, p->problem_mark, NULL, reason);
}

/* The deprecated top-level `durability: sync|nosync`: sets fsync. */
static const struct key old_durability = {
	"durability", K_ENUM, F(fsync), "sync", 0, 0, durabilities, "deprecated: fsync"};

static int warn(struct sd_config *c, const char *name, yaml_mark_t m, const char *msg)
{
	char buf[512];
	if (c->nwarnings >= SD_CONFIG_MAX_WARN)
		return ST_OK;
	snprintf(buf, sizeof buf, "%s:%zu:%zu: %s", name, m.line + 1, m.column + 1, msg);
	if (!(c->warnings[c->nwarnings] = strdup(buf)))
		return ST_ENOMEM;
	c->nwarnings++;
	return ST_OK;
}

/* The event after ev: ev is deleted first (when *have) and refilled. */
static int step(yaml_parser_t *p, yaml_event_t *ev, bool *have, const char *name,
		struct st_err *err)
{
	if (*have)
		yaml_event_delete(ev);
	*have = false;
	int rc = next(p, ev, name, err);
	if (rc == ST_OK)
		*have = true;
	return rc;
}

static const struct key *find_ckey(const char *name)
{
	for (size_t i = 0; i < NCKEYS; i++)
		if (!strcmp(ckeys[i].name, name))
			return &ckeys[i];
	return NULL;
}

/* One item of cluster.peers, after its MAPPING_START (at m). */
static int parse_peer(yaml_parser_t *p, yaml_event_t *ev, bool *have, const char *name,
		      struct sd_config *c, uint32_t i, yaml_mark_t m, struct st_err *err)
{
	struct sd_peer *pe = &c->cluster.peers[i];
	char key[160], sub[64];
	bool seen_id = false;
	int rc;
	for (;;) {
		if ((rc = step(p, ev, have, name, err)) != ST_OK)
			return rc;
		if (ev->type == YAML_MAPPING_END_EVENT)
			break;
		if (ev->type != YAML_SCALAR_EVENT) {
			snprintf(key, sizeof key, "cluster.peers[%u]", i);
			return at(err, name, ev->start_mark, key,
				  "expected a mapping {id, peer, client}");
		}
		snprintf(sub, sizeof sub, "%s", (const char *)ev->data.scalar.value);
		snprintf(key, sizeof key, "cluster.peers[%u].%s", i, sub);
		bool is_id = !strcmp(sub, "id"), is_peer = !strcmp(sub, "peer"),
		     is_client = !strcmp(sub, "client");
		if (!is_id && !is_peer && !is_client)
			return at(err, name, ev->start_mark, key,
				  "unknown key (a peer has id, peer and client)");
		if ((is_id && seen_id) || (is_peer && pe->peer) || (is_client && pe->client))
			return at(err, name, ev->start_mark, key, "given twice");
		if ((rc = step(p, ev, have, name, err)) != ST_OK)
			return rc;
		yaml_mark_t vm = ev->start_mark;
		if (ev->type != YAML_SCALAR_EVENT)
			return at(err, name, vm, key, "expected a single value");
		const char *v = (const char *)ev->data.scalar.value;
		if (is_id) {
			uint64_t id;
			char *end;
			if (!parse_u64(v, &id, &end) || *end)
				return at(err, name, vm, key, "not a whole number");
			if (id < 1)
				return at(err, name, vm, key, "node ids start at 1");
			for (uint32_t j = 0; j < i; j++)
				if (c->cluster.peers[j].id == id) {
					char why[96];
					snprintf(why, sizeof why, "id %" PRIu64 " is also cluster.peers[%u]",
						 id, j);
					return at(err, name, vm, key, why);
				}
			pe->id = id;
			seen_id = true;
		} else {
			if (!is_tcp_address(v))
				return at(err, name, vm, key,
					  "not an address of the form tcp://HOST:PORT");
			char *dup = strdup(v);
			if (!dup)
				return st_seterr(err, ST_ENOMEM, "out of memory");
			*(is_peer ? &pe->peer : &pe->client) = dup;
		}
	}
	const char *missing = !seen_id ? "id" : !pe->peer ? "peer" : !pe->client ? "client" : NULL;
	if (missing) {
		snprintf(key, sizeof key, "cluster.peers[%u].%s", i, missing);
		return at(err, name, m, key, "required (a peer has id, peer and client)");
	}
	return ST_OK;
}

/* cluster.peers, after its key; marks[i] is where peers[i]'s mapping starts. */
static int parse_peers(yaml_parser_t *p, yaml_event_t *ev, bool *have, const char *name,
		       struct sd_config *c, yaml_mark_t *marks, struct st_err *err)
{
	int rc;
	if ((rc = step(p, ev, have, name, err)) != ST_OK)
		return rc;
	if (ev->type != YAML_SEQUENCE_START_EVENT)
		return at(err, name, ev->start_mark, "cluster.peers",
			  "expected a list of {id, peer, client} mappings");
	for (;;) {
		if ((rc = step(p, ev, have, name, err)) != ST_OK)
			return rc;
		yaml_mark_t m = ev->start_mark;
		if (ev->type == YAML_SEQUENCE_END_EVENT)
			return ST_OK;
		if (ev->type != YAML_MAPPING_START_EVENT)
			return at(err, name, m, "cluster.peers",
				  "expected a list of {id, peer, client} mappings");
		if (c->cluster.npeers >= SD_CONFIG_MAX_PEERS)
			return at(err, name, m, "cluster.peers",
				  "at most " ST_STR(SD_CONFIG_MAX_PEERS) " peers (16 nodes)");
		uint32_t i = c->cluster.npeers++; /* from here fini frees its strings */
		marks[i] = m;
		if ((rc = parse_peer(p, ev, have, name, c, i, m, err)) != ST_OK)
			return rc;
	}
}

/* The `cluster:` section, after its key (at km): a mapping of ckeys. */
static int parse_cluster(yaml_parser_t *p, yaml_event_t *ev, bool *have, const char *name,
			 yaml_mark_t km, struct sd_config *c, struct st_err *err)
{
	struct sd_cluster *cl = &c->cluster;
	bool seen[NCKEYS] = {0};
	yaml_mark_t marks[NCKEYS], peer_marks[SD_CONFIG_MAX_PEERS];
	char key[160], buf[256];
	int rc;
	if ((rc = step(p, ev, have, name, err)) != ST_OK)
		return rc;
	if (ev->type != YAML_MAPPING_START_EVENT)
		return at(err, name, ev->start_mark, "cluster",
			  "expected a mapping of cluster keys (node_id, cluster_id, peer_listen, "
			  "peers, ...)");
	cl->enabled = 1;
	for (;;) {
		if ((rc = step(p, ev, have, name, err)) != ST_OK)
			return rc;
		yaml_mark_t m = ev->start_mark;
		if (ev->type == YAML_MAPPING_END_EVENT)
			break;
		if (ev->type != YAML_SCALAR_EVENT)
			return at(err, name, m, "cluster", "expected a mapping of keys to values");
		snprintf(key, sizeof key, "cluster.%s", (const char *)ev->data.scalar.value);
		const struct key *k = find_ckey((const char *)ev->data.scalar.value);
		if (!k)
			return at(err, name, m, key, "unknown key (configs/README.md lists every key)");
		if (seen[k - ckeys])
			return at(err, name, m, key, "given twice");
		seen[k - ckeys] = true;
		marks[k - ckeys] = m;
		if (k->type == K_PEERS) {
			if ((rc = parse_peers(p, ev, have, name, c, peer_marks, err)) != ST_OK)
				return rc;
			continue;
		}
		if ((rc = step(p, ev, have, name, err)) != ST_OK)
			return rc;
		if (ev->type != YAML_SCALAR_EVENT)
			return at(err, name, ev->start_mark, key, "expected a single value");
		const char *why =
			set_value(c, k, (const char *)ev->data.scalar.value, buf, sizeof buf);
		if (why)
			return at(err, name, ev->start_mark, key, why);
	}
	for (size_t i = 0; i < NCKEYS; i++)
		if (!ckeys[i].def && !seen[i]) {
			snprintf(key, sizeof key, "cluster.%s", ckeys[i].name);
			return at(err, name, km, key, "required in the cluster section");
		}
	for (uint32_t i = 0; i < cl->npeers; i++)
		if (cl->peers[i].id == cl->node_id) {
			snprintf(key, sizeof key, "cluster.peers[%u].id", i);
			return at(err, name, peer_marks[i], key,
				  "is this node's own node_id (peers lists the other nodes)");
		}
	if (cl->election_timeout_us < 3 * cl->heartbeat_us) {
		size_t e = (size_t)(find_ckey("election_timeout") - ckeys),
		       h = (size_t)(find_ckey("heartbeat") - ckeys);
		snprintf(buf, sizeof buf, "must be at least 3 x heartbeat (%" PRId64 "ms)",
			 3 * cl->heartbeat_us / 1000);
		return at(err, name, seen[e] ? marks[e] : seen[h] ? marks[h] : km,
			  "cluster.election_timeout", buf);
	}
	return ST_OK;
}

int sd_config_parse(const char *text, size_t len, const char *name, struct sd_config *c,
		    struct st_err *err)
{
	yaml_parser_t p;
	yaml_event_t ev;
	bool have_ev = false, seen_cluster = false, seen[NKEYS] = {0};
	char key[128], buf[256];
	int rc = sd_config_defaults(c);
	if (rc != ST_OK)
		return st_seterr(err, rc, "out of memory");
	if (!yaml_parser_initialize(&p)) {
		sd_config_fini(c);
		return st_seterr(err, ST_ENOMEM, "out of memory");
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);

	/* stream-start, then either stream-end (empty file: all defaults) or
	 * document-start mapping-start. */
	enum { TOP, IN_MAP, DONE } state = TOP;
	while (state != DONE) {
		if (have_ev)
			yaml_event_delete(&ev);
		if ((rc = next(&p, &ev, name, err)) != ST_OK)
			goto out;
		have_ev = true;
		yaml_mark_t m = ev.start_mark;
		switch (ev.type) {
		case YAML_STREAM_START_EVENT:
		case YAML_DOCUMENT_START_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			break;
		case YAML_STREAM_END_EVENT:
			state = DONE;
			break;
		case YAML_MAPPING_START_EVENT:
			if (state != TOP) {
				rc = at(err, name, m, NULL, "nested mappings are not used by any key");
				goto out;
			}
			state = IN_MAP;
			break;
		case YAML_MAPPING_END_EVENT:
			state = TOP;
			break;
		case YAML_SCALAR_EVENT: {
			if (state != IN_MAP) {
				rc = at(err, name, m, NULL,
					"the config must be a mapping of keys to values (key: value)");
				goto out;
			}
			snprintf(key, sizeof key, "%s", (const char *)ev.data.scalar.value);
			if (!strcmp(key, "cluster")) {
				if (seen_cluster) {
					rc = at(err, name, m, key, "given twice");
					goto out;
				}
				seen_cluster = true;
				if ((rc = parse_cluster(&p, &ev, &have_ev, name, m, c, err)) != ST_OK)
					goto out;
				break;
			}
			const struct key *k = find_key(key), *set = k;
			if (!k && !strcmp(key, "durability")) {
				/* The old name of fsync: same slot in seen[], a warning. */
				k = find_key("fsync");
				set = &old_durability;
				if ((rc = warn(c, name, m,
					       "key 'durability' is deprecated: use 'fsync: on|off' "
					       "(durability now means the replication level of a "
					       "write)")) != ST_OK) {
					rc = st_seterr(err, rc, "out of memory");
					goto out;
				}
			}
			if (!k) {
				rc = at(err, name, m, key,
					"unknown key (configs/README.md lists every key)");
				goto out;
			}
			if (seen[k - keys]) {
				rc = at(err, name, m, key, "given twice");
				goto out;
			}
			seen[k - keys] = true;
			yaml_event_delete(&ev);
			have_ev = false;
			if ((rc = next(&p, &ev, name, err)) != ST_OK)
				goto out;
			have_ev = true;
			m = ev.start_mark;
			if (k->type == K_LIST)
				clear_list(c);
			if (ev.type == YAML_SCALAR_EVENT) {
				const char *why = set_value(c, set, (const char *)ev.data.scalar.value,
							    buf, sizeof buf);
				if (why) {
					rc = at(err, name, m, key, why);
					goto out;
				}
				break;
			}
			if (ev.type != YAML_SEQUENCE_START_EVENT || k->type != K_LIST) {
				rc = at(err, name, m, key,
					k->type == K_LIST ? "expected a list of strings"
							  : "expected a single value");
				goto out;
			}
			for (;;) {
				yaml_event_delete(&ev);
				have_ev = false;
				if ((rc = next(&p, &ev, name, err)) != ST_OK)
					goto out;
				have_ev = true;
				m = ev.start_mark;
				if (ev.type == YAML_SEQUENCE_END_EVENT)
					break;
				const char *why = ev.type != YAML_SCALAR_EVENT
							  ? "expected a list of strings"
							  : set_value(c, k, (const char *)ev.data.scalar.value,
								      buf, sizeof buf);
				if (why) {
					rc = at(err, name, m, key, why);
					goto out;
				}
			}
			if (c->nlisten == 0) {
				rc = at(err, name, m, key, "needs at least one address");
				goto out;
			}
			break;
		}
		case YAML_ALIAS_EVENT:
			rc = at(err, name, m, NULL, "YAML aliases are not supported in the config");
			goto out;
		default:
			rc = at(err, name, m, NULL,
				"the config must be a mapping of keys to values (key: value)");
			goto out;
		}
	}
out:
	if (have_ev)
		yaml_event_delete(&ev);
	yaml_parser_delete(&p);
	if (rc != ST_OK)
		sd_config_fini(c);
	return rc;
}

int sd_config_load(const char *path, struct sd_config *c, struct st_err *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return st_seterr(err, errno, "cannot open config '%s': %s", path, strerror(errno));
	char *text = NULL;
	size_t len = 0, cap = 0;
	int rc = ST_OK;
	for (;;) {
		if (len + 4096 > cap) {
			char *n = realloc(text, cap = cap ? cap * 2 : 8192);
			if (!n) {
				rc = st_seterr(err, ST_ENOMEM, "out of memory reading '%s'", path);
				goto out;
			}
			text = n;
		}
		size_t got = fread(text + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
		if (len > 1 << 20) {
			rc = st_seterr(err, ST_ETOOBIG, "config '%s' is larger than 1 MiB", path);
			goto out;
		}
	}
	if (ferror(f)) {
		rc = st_seterr(err, EIO, "cannot read config '%s'", path);
		goto out;
	}
	rc = sd_config_parse(text, len, path, c, err);
out:
	free(text);
	fclose(f);
	return rc;
}

/* ---- printing ---- */

static void print_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

static void print_size(FILE *out, uint64_t v)
{
	static const char *const u[] = {"TiB", "GiB", "MiB", "KiB"};
	static const uint64_t m[] = {TB, GB, MB, KB};
	for (int i = 0; i < 4; i++)
		if (v >= m[i] && v % m[i] == 0) {
			fprintf(out, "%" PRIu64 "%s", v / m[i], u[i]);
			return;
		}
	fprintf(out, "%" PRIu64, v);
}

static void print_duration(FILE *out, int64_t us)
{
	static const char u[] = {'d', 'h', 'm'};
	static const int64_t m[] = {(int64_t)DAY, 3600 * (int64_t)SEC, 60 * (int64_t)SEC};
	for (int i = 0; i < 3; i++)
		if (us >= m[i] && us % m[i] == 0) {
			fprintf(out, "%" PRId64 "%c", us / m[i], u[i]);
			return;
		}
	if (us % (int64_t)SEC)
		fprintf(out, "%" PRId64 "ms", us / 1000);
	else
		fprintf(out, "%" PRId64 "s", us / (int64_t)SEC);
}

static void print_value(FILE *out, const struct sd_config *c, const struct key *k)
{
	const void *p = cfield(c, k);
	switch (k->type) {
	case K_STRING: print_string(out, *(char *const *)p); break;
	case K_LIST:
		for (uint32_t i = 0; i < c->nlisten; i++) {
			fputs("\n  - ", out);
			print_string(out, c->listen[i]);
		}
		break;
	case K_UINT: fprintf(out, "%" PRIu32, *(const uint32_t *)p); break;
	case K_SIZE: print_size(out, *(const uint64_t *)p); break;
	case K_DURATION: print_duration(out, *(const int64_t *)p); break;
	case K_ENUM: fputs(k->choices[*(const uint32_t *)p - k->min], out); break;
	case K_U64: fprintf(out, "%" PRIu64, *(const uint64_t *)p); break;
	case K_HEX16:
		fputc('"', out);
		for (int i = 0; i < 16; i++)
			fprintf(out, "%02x", ((const uint8_t *)p)[i]);
		fputc('"', out);
		break;
	case K_TCP: print_string(out, *(char *const *)p); break;
	case K_PEERS:
		if (!c->cluster.npeers)
			fputs(" []", out);
		for (uint32_t i = 0; i < c->cluster.npeers; i++) {
			const struct sd_peer *pe = &c->cluster.peers[i];
			fprintf(out, "\n    - {id: %" PRIu64 ", peer: ", pe->id);
			print_string(out, pe->peer);
			fputs(", client: ", out);
			print_string(out, pe->client);
			fputc('}', out);
		}
		break;
	}
}

void sd_config_print(FILE *out, const struct sd_config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].type == K_STRING && !*(char *const *)cfield(c, &keys[i]))
			continue; /* an optional string not given */
		fprintf(out, "%s:%s", keys[i].name, keys[i].type == K_LIST ? "" : " ");
		print_value(out, c, &keys[i]);
		fputc('\n', out);
	}
	if (!c->cluster.enabled)
		return;
	fputs("cluster:\n", out);
	for (size_t i = 0; i < NCKEYS; i++) {
		if (ckeys[i].type == K_STRING && !*(char *const *)cfield(c,
									 &ckeys[i]))
			continue; /* an optional string not given */
		fprintf(out, "  %s:%s", ckeys[i].name, ckeys[i].type == K_PEERS ? "" : " ");
		print_value(out, c, &ckeys[i]);
		fputc('\n', out);
	}
}

static void reference_row(FILE *out, const char *prefix, const struct key *k)
{
	char buf[64];
	fprintf(out, "| `%s%s` | %s", prefix, k->name, type_name(k->type));
	if (k->type == K_ENUM)
		for (uint32_t j = 0; k->choices[j]; j++)
			fprintf(out, "%s%s", j ? ", " : " ", k->choices[j]);
	if (k->def && !k->def[0])
		fputs(" | absent | ", out);
	else if (k->def)
		fprintf(out, " | `%s` | ", k->def);
	else
		fputs(" | required | ", out);
	if (k->type == K_UINT || (k->type == K_U64 && k->max != UINT64_MAX))
		fprintf(out, "%" PRIu64 "–%" PRIu64, k->min, k->max);
	else if (k->type == K_U64)
		fprintf(out, ">= %" PRIu64, k->min);
	else if (k->type == K_LIST || k->type == K_PEERS)
		fprintf(out, "%" PRIu64 "–%" PRIu64 " entries", k->type == K_LIST ? 1 : k->min,
			k->max);
	else if (k->type == K_SIZE || k->type == K_DURATION) {
		FILE *m = fmemopen(buf, sizeof buf, "w");
		if (m) {
			if (k->type == K_SIZE) {
				print_size(m, k->min);
				fputs("–", m);
				print_size(m, k->max);
			} else {
				print_duration(m, (int64_t)k->min);
				fputs("–", m);
				print_duration(m, (int64_t)k->max);
			}
			fclose(m);
			fputs(buf, out);
		}
	}
	fprintf(out, " | %s |\n", k->doc);
}

void sd_config_reference(FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++)
		reference_row(out, "", &keys[i]);
	fputs("| `cluster` | mapping | absent (single node) |  | the replication section: the "
	      "keys `cluster.*` below; absent = a single node, no replication |\n", out);
	for (size_t i = 0; i < NCKEYS; i++)
		reference_row(out, "cluster.", &ckeys[i]);
}

unsigned sd_config_nkeys(void)
{
	return (unsigned)NKEYS;
}

bool sd_config_key_optional(unsigned i)
{
	return i < NKEYS && keys[i].def && !keys[i].def[0];
}

const char *sd_config_key(unsigned i)
{
	return i < NKEYS ? keys[i].name : NULL;
}
