/*
 * daemon/server/server.h — stratad's request server: the wire protocol
 * (format/PROTOCOL.md) over format/transport.h, served from a pool of
 * worker threads on top of an open store.
 *
 * Workers share one raw REP socket; each takes a request, decodes it,
 * runs it against the store and replies. Loads and scan cursors are
 * sessions that live between requests and expire when idle. Replies of
 * state-changing requests are remembered per client for deduplication.
 */
#ifndef STRATA_DAEMON_SERVER_H
#define STRATA_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/store/strata.h"

struct sd_server_opts {
	const char *const *listen;   /* nanomsg addresses */
	unsigned nlisten;            /* their count */
	uint32_t workers;            /* worker threads, >= 1 */
	size_t max_message_size;     /* NN_RCVMAXSIZE and the reply limit */
	uint32_t max_batch_rows;     /* largest batch accepted */
	int64_t cursor_timeout_us;   /* idle loads and cursors expire after this */
	const char *data_dir;        /* for STATUS */
	const char *version;         /* for HELLO and STATUS */
	struct sd_node *node;        /* the replication driver (cluster.h), NULL on a single node */
	int64_t scrub_interval_us;   /* a background scrub pass this often (0: none) */
	uint32_t scrub_rate_mb_s;    /* its rate, and the default of SCRUB's */
	int64_t auto_optimize_interval_us; /* automatic compaction looks this often (0: off) */
	uint32_t auto_optimize_files;      /* at a table with this many live files */
	double auto_optimize_deleted;      /* or this share of its rows deleted */
	uint64_t auto_optimize_target;     /* bytes per file it writes */
	uint32_t auto_optimize_rate_mb_s;  /* its average write rate at most (0: no limit) */
	const char *auth_file;       /* tokens and roles (NULL: no client authentication) */
};

typedef struct sd_server sd_server;
struct sd_node;

/* Bind the addresses and start the workers. The store must stay open
 * until sd_server_stop returns. */
int sd_server_start(st_store *s, const struct sd_server_opts *o, sd_server **out,
		    struct st_err *err);
/* Stop accepting requests, let every worker finish the request it is
 * running (its reply is sent), abort open loads, close cursors, free. */
void sd_server_stop(sd_server *srv);

#endif
