/*
 * admin/client.h — the strata client library: talks to stratad over the
 * wire protocol (format/PROTOCOL.md). Used by the `strata` CLI, the
 * integration tests and the end-to-end benchmark.
 *
 * A client is one connection (one nanomsg REQ socket) and is not
 * thread-safe: use one per thread. Every call waits at most the timeout
 * given to sc_connect.
 *
 * Making a request: sc_begin packs the envelope and opens a body map of
 * nbody pairs; the caller packs exactly those pairs on the returned
 * packer (format/wire.h helpers, or wire_pack_batch on sc_out(c)), then
 * sc_call sends it and waits. The reply body it returns points into the
 * reply and stays valid until the next sc_begin or sc_close.
 *
 * Cluster options (sc_set_env) add envelope keys 7-10 to the requests
 * they concern (PROTOCOL.md §2). A request answered ST_ENOTLEADER with the
 * leader's address is sent again, once, to that address, with the same
 * client id and sequence number (the daemon deduplicates it); the client
 * then stays connected there (sc_host tells).
 *
 * Errors come back as a struct wire_error: the daemon's (stable code,
 * message, table/column/row/token) or the client's own (errno codes such
 * as ETIMEDOUT when no reply came; ST_EPROTO for a reply that breaks the
 * protocol). Functions return 0 or that code.
 */
#ifndef STRATA_ADMIN_CLIENT_H
#define STRATA_ADMIN_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "format/wire.h"

#define SC_DEFAULT_HOST "tcp://127.0.0.1:7420"
#define SC_DEFAULT_TIMEOUT_MS 30000
#define SC_HELLO_TIMEOUT_MS 5000 /* the handshake waits at most this long */

typedef struct sc_client sc_client;

/* What HELLO told about the server. */
struct sc_server_info {
	char version[64];          /* server version */
	uint32_t protocol;         /* protocol version it speaks */
	uint64_t max_message_size; /* largest message it accepts */
	uint32_t max_batch_rows;   /* largest batch it accepts */
};

/* Connect to host (NULL: $STRATA_HOST, else SC_DEFAULT_HOST) and say
 * HELLO. timeout_ms <= 0 means SC_DEFAULT_TIMEOUT_MS. */
int sc_connect(const char *host, int timeout_ms, sc_client **out, struct wire_error *e);
/* Authenticate c with token name and secret (PROTOCOL.md §2.2): every later
 * request is sealed with the session (and a redirect to the leader
 * authenticates there too). ST_EPERM for a wrong token. */
int sc_authenticate(sc_client *c, const char *name, const char *token, struct wire_error *e);
void sc_close(sc_client *c);
/* The address connected to, and the server's limits. */
const char *sc_host(const sc_client *c);
const struct sc_server_info *sc_server(const sc_client *c);

/* Envelope keys of the requests that follow (PROTOCOL.md §2, keys 7-10).
 * Zero fields are left out (the node's default). */
struct sc_env {
	uint32_t durability;      /* enum wire_durability: state-changing requests */
	uint64_t min_version;     /* reads of one table: wait for this version (0: none) */
	bool has_max_staleness;   /* max_staleness_ms is sent */
	uint64_t max_staleness_ms; /* reads: refused when the node is staler */
	uint32_t consistency;     /* enum wire_consistency: reads */
};
/* Set them (copied). Reads are SCAN, QUERY, DESCRIBE and HISTORY. */
void sc_set_env(sc_client *c, const struct sc_env *env);

/* Where the last read was served (reply envelope keys 11-13). */
struct sc_served {
	uint64_t node;         /* node id that served it */
	uint64_t read_lsn;     /* its applied LSN when it read */
	uint64_t staleness_ms; /* since its last contact with a leader */
};
/* True and *s filled when the last reply carried key 11 (a read in a
 * cluster); keys 12 and 13 absent or mistyped read as 0. */
bool sc_served_by(const sc_client *c, struct sc_served *s);

/* Start a request of `type` with a body of nbody pairs. */
msgpack_packer *sc_begin(sc_client *c, int type, uint32_t nbody);
/* The message being built (for wire_pack_batch). */
struct wire_out *sc_out(sc_client *c);
/* Bytes of the message so far (to keep batches under the limit). */
size_t sc_pending(const sc_client *c);
/* Send it and wait; *body = the reply body (NULL when it had none).
 * Before sending, wire_end checks the body got exactly the nbody pairs
 * sc_begin announced (ST_EINVAL naming the request otherwise, nothing
 * sent). */
int sc_call(sc_client *c, const msgpack_object **body, struct wire_error *e);

/* Format an error for people: "message" plus where it happened. */
void sc_error_format(const struct wire_error *e, char *buf, size_t len);

#endif
