/*
 * format/wire.h — encoding and decoding of the wire protocol
 * (format/PROTOCOL.md): envelopes, errors and column batches, as msgpack.
 *
 * Writing: wire_out holds a growable buffer and a msgpack packer writing
 * into it. wire_begin packs the envelope and opens the body map; the caller
 * then packs exactly the announced number of key/value pairs with the
 * msgpack_pack_* functions or the wire_key_* helpers. A whole error reply is
 * wire_error_reply.
 *
 * Reading: wire_parse decodes one message into a msgpack object tree that
 * references the message bytes (keep them alive until wire_msg_fini). The
 * wire_get_* helpers look up integer keys of a map and check types; they
 * return false when the key is absent or of another type.
 *
 * Thread safety: none of these functions share state.
 */
#ifndef STRATA_FORMAT_WIRE_H
#define STRATA_FORMAT_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "format/types.h"

#define WIRE_VERSION 1
#define WIRE_CLIENT_ID_LEN 16

/* Request types (PROTOCOL.md §3). */
enum wire_type {
	WIRE_HELLO = 1,
	WIRE_PING = 2,
	WIRE_STATUS = 3,
	WIRE_CREATE = 10,
	WIRE_TABLES = 11,
	WIRE_DESCRIBE = 12,
	WIRE_DROP = 13,
	WIRE_ALTER = 14,
	WIRE_WRITE = 20,
	WIRE_LOAD_BEGIN = 21,
	WIRE_LOAD_DATA = 22,
	WIRE_LOAD_COMMIT = 23,
	WIRE_LOAD_ABORT = 24,
	WIRE_SCAN = 30,
	WIRE_SCAN_NEXT = 31,
	WIRE_SCAN_CLOSE = 32,
	WIRE_QUERY = 40,
	WIRE_HISTORY = 50,
	WIRE_RESTORE = 51,
	WIRE_VACUUM = 52,
	WIRE_VERIFY = 53,
	WIRE_COMPACT = 54,
};

/* Name of a request type ("LOAD_DATA"), or "?" */
const char *wire_type_name(int type);
/* True for requests that must carry (client, seq) and are deduplicated. */
bool wire_changes_state(int type);

/* An error as carried on the wire (PROTOCOL.md §2.1). */
struct wire_error {
	int code;                     /* ST_E* or errno */
	char msg[ST_ERR_MSG_MAX];     /* human message */
	char table[ST_NAME_MAX + 1];  /* "" when none */
	char column[ST_NAME_MAX + 1]; /* "" when none */
	int64_t row;                  /* -1 when none */
	int64_t offset;               /* -1 when none */
	char token[64];               /* "" when none */
};

/* ---- writing ---------------------------------------------------------- */

struct wire_out {
	struct st_buf buf;   /* the message so far */
	msgpack_packer pk;   /* packs into buf */
};

void wire_out_init(struct wire_out *o);
/* Empty the buffer for the next message (keeps its memory). */
void wire_out_reset(struct wire_out *o);
void wire_out_fini(struct wire_out *o);

/* Pack the envelope of a message (request or successful reply) and the
 * header of a body map of nbody pairs. client (16 bytes) and seq are packed
 * when client is not NULL. */
void wire_begin(struct wire_out *o, uint64_t id, int type, const uint8_t *client, uint64_t seq,
		uint32_t nbody);
/* A whole error reply. */
void wire_error_reply(struct wire_out *o, uint64_t id, int type, const struct wire_error *e);

void wire_pack_str(msgpack_packer *pk, const char *s);
void wire_pack_strn(msgpack_packer *pk, const char *s, size_t n);
void wire_key_u64(msgpack_packer *pk, uint32_t key, uint64_t v);
void wire_key_i64(msgpack_packer *pk, uint32_t key, int64_t v);
void wire_key_str(msgpack_packer *pk, uint32_t key, const char *s);
void wire_key_bool(msgpack_packer *pk, uint32_t key, bool v);

/*
 * Pack a batch (PROTOCOL.md §3.2) of ncols columns named names, taking
 * rows sel[0..nsel) of each vector (sel NULL: rows 0..nsel). Vectors may
 * be in any st_vec form; the batch is always plain.
 */
void wire_pack_batch(struct wire_out *o, uint32_t ncols, const char *const *names,
		     const struct st_vec *cols, const uint32_t *sel, uint32_t nsel);
/* Bytes wire_pack_batch would add, within a few bytes per column. */
size_t wire_batch_bytes(uint32_t ncols, const char *const *names, const struct st_vec *cols,
			const uint32_t *sel, uint32_t nsel);

/* ---- reading ---------------------------------------------------------- */

/* Most msgpack objects one message may hold (bounds the memory of decoding
 * it; batches are a few objects per column, so real messages stay far
 * below). */
#define WIRE_MAX_OBJECTS (1u << 22)

struct wire_msg {
	msgpack_unpacked up;           /* the object tree (references the bytes) */
	uint32_t version;              /* key 0 */
	uint64_t id;                   /* key 1 */
	int type;                      /* key 2 */
	const msgpack_object *body;    /* key 3, a map, or NULL */
	const msgpack_object *error;   /* key 4, a map, or NULL */
	bool has_client;               /* keys 5 and 6 present */
	uint8_t client[WIRE_CLIENT_ID_LEN]; /* key 5 */
	uint64_t seq;                  /* key 6 */
};

/*
 * Decode one message of len bytes. Errors (ST_EPROTO, with a message that
 * says what is wrong): not msgpack, trailing bytes, not a map, envelope keys
 * missing or of the wrong type. A version above WIRE_VERSION is not an
 * error here (m->version tells). m needs wire_msg_fini even on error.
 */
int wire_parse(const void *buf, size_t len, struct wire_msg *m, struct st_err *err);
void wire_msg_fini(struct wire_msg *m);

/* The value of integer key `key` in map (NULL if map is not a map or the key is absent). */
const msgpack_object *wire_get(const msgpack_object *map, uint32_t key);
bool wire_get_u64(const msgpack_object *map, uint32_t key, uint64_t *v);
bool wire_get_i64(const msgpack_object *map, uint32_t key, int64_t *v);
bool wire_get_bool(const msgpack_object *map, uint32_t key, bool *v);
/* A string value (not NUL-terminated; points into the message). */
bool wire_get_str(const msgpack_object *map, uint32_t key, const char **s, uint32_t *len);
/* Copy a string value into buf (NUL-terminated); false if absent, not a
 * string, longer than len - 1 or holding a NUL byte. */
bool wire_get_strbuf(const msgpack_object *map, uint32_t key, char *buf, size_t len);
/* A string value as a malloc'ed NUL-terminated copy, or NULL. */
char *wire_get_strdup(const msgpack_object *map, uint32_t key);
/* Copy a msgpack string object into buf (as wire_get_strbuf). */
bool wire_obj_strbuf(const msgpack_object *o, char *buf, size_t len);

/* Decode the error map of a reply. */
void wire_error_decode(const msgpack_object *e, struct wire_error *out);
/* Fill a wire_error from a code and an st_err message. */
void wire_error_set(struct wire_error *e, int code, const char *msg);

/* A decoded batch. Vectors point into the message where the bytes are
 * aligned, else into copies owned by the batch. */
struct wire_batch {
	uint32_t nrows;              /* rows */
	uint32_t ncols;              /* columns */
	char **names;                /* ncols NUL-terminated names (owned) */
	struct st_vec *cols;         /* ncols plain vectors */
	void **owned;                /* copies to free */
	uint32_t nowned;             /* their count */
};

/* Decode and check a batch (PROTOCOL.md §3.2): every length exactly, type
 * ids known, offsets non-decreasing and within the bytes, at most max_rows
 * rows. Errors: ST_EPROTO, ST_ETOOBIG (rows), ST_ENOMEM. */
int wire_batch_decode(const msgpack_object *o, uint32_t max_rows, struct wire_batch *b,
		      struct st_err *err);
void wire_batch_fini(struct wire_batch *b);

#endif
