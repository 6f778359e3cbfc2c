/*
 * daemon/server/config.h — stratad's configuration: a YAML file read with libyaml.
 *
 * Every key is described once, in the table of config.c (name, type,
 * default, range, doc); defaults, validation, `--check-config` output and
 * the reference in configs/README.md all come from that table. The file is
 * one YAML mapping of scalars, the `listen` list and the nested `cluster:`
 * section (its own key table; `peers` a list of {id, peer, client}); unknown
 * keys, duplicate keys and bad values are refused with
 * "FILE:LINE:COLUMN: key 'k': reason" (nested: 'cluster.peers[0].id', items
 * numbered from 0).
 */
#ifndef STRATA_DAEMON_CONFIG_H
#define STRATA_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "format/error.h"

/* `fsync:` (formerly `durability: sync|nosync`, still accepted with a warning). */
enum sd_fsync { SD_FSYNC_ON = 0, SD_FSYNC_OFF = 1 };
/* `cluster.durability`: the default of writes that name none (REPLICATION.md §7);
 * numbered as enum wire_durability. */
enum sd_cluster_durability { SD_DUR_LOCAL = 1, SD_DUR_QUORUM = 2, SD_DUR_ALL = 3 };

#define SD_CONFIG_MAX_LISTEN 16
#define SD_CONFIG_MAX_PEERS 15   /* peers besides this node (RAFT_MAX_NODES - 1) */
#define SD_CONFIG_MAX_WARN 8     /* warnings one load can collect */

/* One other member of the cluster (`cluster.peers` list item). */
struct sd_peer {
	uint64_t id;                 /* node id, >= 1, unique, != cluster.node_id */
	char *peer;                  /* its peer address, tcp://HOST:PORT (`peer`) */
	char *client;                /* its client address, tcp://HOST:PORT (`client`) */
};

/* The `cluster:` section (REPLICATION.md §11); enabled = the section is present. */
struct sd_cluster {
	int enabled;                 /* 0: single node, no replication */
	uint64_t node_id;            /* this node's id, >= 1 */
	uint8_t cluster_id[16];      /* `cluster_id`: 32 hex digits */
	char *peer_listen;           /* this node's peer address, tcp://HOST:PORT */
	struct sd_peer peers[SD_CONFIG_MAX_PEERS];
	uint32_t npeers;             /* 0 .. SD_CONFIG_MAX_PEERS */
	int64_t heartbeat_us;        /* `heartbeat`, default 100ms */
	int64_t election_timeout_us; /* `election_timeout`, default 1s, >= 3 x heartbeat */
	uint32_t durability;         /* enum sd_cluster_durability, default quorum */
	int64_t write_timeout_us;    /* `write_timeout`: a write waits this long for its quorum (5s) */
	int64_t max_staleness_us;    /* `max_staleness`: bound of default follower reads (5s) */
	uint64_t max_lag;            /* `max_lag`: entries behind before `cluster status` says lagging (10000) */
	char *key_file;              /* `key_file`: the cluster key's file (NULL: unauthenticated) */
	uint32_t join;               /* `join`: start as a learner of the peers' cluster (0/1) */
	uint64_t promote_lag;        /* `promote_lag`: entries a learner may lag to be promoted (1000) */
	uint32_t auto_promote;       /* `auto_promote`: the leader promotes caught-up learners (0/1) */
};

/* The effective configuration. Strings are owned (sd_config_fini frees). */
struct sd_config {
	char *listen[SD_CONFIG_MAX_LISTEN]; /* nanomsg addresses to bind */
	uint32_t nlisten;                   /* their count, >= 1 */
	char *data_dir;                     /* the data directory */
	uint64_t map_size;                  /* LMDB map size in bytes */
	uint32_t workers;                   /* request worker threads */
	uint32_t log_level;                 /* enum sd_log_level */
	uint32_t log_target;                /* enum sd_log_target */
	uint64_t max_message_size;          /* largest wire message, bytes */
	uint32_t max_batch_rows;            /* largest batch in one message */
	int64_t cursor_timeout_us;          /* idle loads and cursors expire after this */
	int64_t log_retention_us;           /* default log_retention of tables */
	int64_t file_retention_us;          /* default file_retention of tables */
	uint32_t fsync;                     /* enum sd_fsync */
	char *auth_file;                    /* client tokens (NULL: no client authentication) */
	uint32_t allow_unauthenticated;     /* 1: a non-loopback listen without auth_file is served */
	int64_t scrub_interval_us;          /* a background scrub pass this often (0: off) */
	uint32_t scrub_rate_mb_s;           /* the scrub reads at most this many MB/s */
	int64_t auto_optimize_interval_us;  /* automatic compaction (0: off) */
	uint32_t auto_optimize_files;
	uint32_t auto_optimize_deleted_pct;
	uint32_t auto_optimize_target_mb;
	uint32_t auto_optimize_rate_mb_s;
	struct sd_cluster cluster;          /* the `cluster:` section */
	char *warnings[SD_CONFIG_MAX_WARN]; /* "FILE:LINE:COLUMN: ..." for deprecated keys */
	uint32_t nwarnings;                 /* their count; stratad logs them at start */
};

/* Fill c with the defaults of every key. Returns ST_OK or ST_ENOMEM. */
int sd_config_defaults(struct sd_config *c);

/* Read path over the defaults. On error c is left empty (nothing to fini)
 * and err says FILE:LINE:COLUMN, the key and the reason.
 * Errors: ST_EINVAL (unknown key, bad value, not a mapping, YAML syntax),
 * errno (cannot read the file), ST_ENOMEM. */
int sd_config_load(const char *path, struct sd_config *c, struct st_err *err);

/* Same, from a string; name stands for the file in messages. */
int sd_config_parse(const char *text, size_t len, const char *name, struct sd_config *c,
		    struct st_err *err);

/* Write c as a YAML file that sd_config_load reads back to the same values. */
void sd_config_print(FILE *out, const struct sd_config *c);

/* Write the reference of every key (markdown table rows: key, type,
 * default, range, meaning). */
void sd_config_reference(FILE *out);

/* Number of keys and the name of key i, for tests. */
unsigned sd_config_nkeys(void);
const char *sd_config_key(unsigned i);
/* Whether key i is an optional string, absent by default (strata.yaml
 * shows it in a comment only). */
bool sd_config_key_optional(unsigned i);

void sd_config_fini(struct sd_config *c);

#endif
