/*
 * replication/link.h — the replication transport (REPLICATION.md §5, §6):
 * peer messages over nanomsg PAIR sockets, segment files over REQ/REP. The
 * only module of replication/ that knows nanomsg; the core (raft.h) never
 * sees a socket.
 *
 * PORT SCHEME. Every node has one peer address tcp://HOST:P (its config).
 *   - P itself is the node's REP socket, answering SEGMENT_FETCH (§6).
 *   - The PAIR link between nodes a < b is bound by a at tcp://A_HOST:(P_a + b)
 *     and connected to by b.
 * So node ids are 1..LINK_MAX_ID (16) and a node uses ports P .. P+16 of its
 * peer address. HOST must be something nanomsg can bind to on the node
 * itself (an IP literal or an interface name) and that its peers can dial.
 *
 * WIRE. Each message is one msgpack map (§5.1): keys 0 version, 1 cluster
 * (bin 16), 2 from, 3 to, 4 epoch, 5 type, 6 body (map), 7 crc. Key 7 is the
 * map's LAST pair, packed as the fixint 0x07 and a msgpack uint32 (0xce and
 * 4 bytes big-endian), and the map header is a fixmap (0x81..0x8f): the CRC
 * is the CRC32C of the message encoded with key 7 absent, which is the
 * header byte minus one followed by every byte between the header and the
 * final 6 bytes. A message whose last 6 bytes are not that pair is dropped.
 * Bodies per §5.2, entries per §5.3 (map {0 LSN, 1 epoch, 2 chain hash bin
 * 32, 3 data bin, absent for a no-op}). Segment requests and replies use the
 * same envelope with types LINK_SEG_FETCH and LINK_SEG_DATA (§6).
 *
 * THREADS. A struct link is driven by one thread that calls link_recv (which
 * also answers segment requests, inside its poll). link_send may be called
 * from that thread or one other; link_wake and link_stats from any thread;
 * link_fetch_segment from any thread (it opens its own REQ socket).
 * link_open and link_close are not concurrent with anything else.
 */
#ifndef STRATA_REPLICATION_LINK_H
#define STRATA_REPLICATION_LINK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format/bytes.h"
#include "format/error.h"
#include "replication/raft.h"

#define LINK_VERSION             1                /* §5.1 key 0 */
#define LINK_CLUSTER_LEN         16               /* bytes of a cluster id */
#define LINK_MAX_PEERS           (RAFT_MAX_NODES) /* peers of one node */
#define LINK_MAX_ID              (RAFT_MAX_NODES) /* node ids are 1..16 (port scheme) */
#define LINK_ADDR_MAX            128              /* bytes of an address, NUL included */
#define LINK_DEFAULT_MAX_MESSAGE (64u << 20)      /* max_message when 0 */
#define LINK_SEG_CHUNK           (1u << 20)       /* bytes per SEGMENT_FETCH, at most */
#define LINK_SIZE_ANY            UINT64_MAX       /* link_fetch_segment: size not known */
/* SEGMENT_FETCH of table LINK_SNAPSHOT_TABLE asks for file `file` of the
 * peer's snapshot (REPLICATION.md §14): 0 its MANIFEST, k its k-th file. */
#define LINK_SNAPSHOT_TABLE      UINT64_MAX

/* Envelope types of §6 (after the §5.2 types, fixed numbers). */
enum link_seg_type {
	LINK_SEG_FETCH = 10, /* body {0 table, 1 file, 2 offset, 3 length <= 1 MiB} */
	LINK_SEG_DATA = 11,  /* body {0 bytes, 1 file size, 2 file crc32c} or {3 code, 4 msg} */
	LINK_KEEPALIVE = 12, /* body {}: a link with nothing else to say (never returned) */
};

struct link_peer {
	uint64_t id;                 /* node id, 1..LINK_MAX_ID, != self */
	char address[LINK_ADDR_MAX]; /* its peer address tcp://HOST:PORT */
};

struct link_config {
	uint64_t self;                          /* this node's id, 1..LINK_MAX_ID */
	uint8_t cluster[LINK_CLUSTER_LEN];      /* cluster id, in every message */
	char self_address[LINK_ADDR_MAX];       /* this node's tcp://HOST:PORT */
	struct link_peer peers[LINK_MAX_PEERS]; /* the other nodes */
	size_t n_peers;                         /* count of peers */
	size_t max_message;                     /* NN_RCVMAXSIZE and largest sent; 0 = 64 MiB */
	int fetch_timeout_ms;                   /* per SEGMENT_FETCH chunk; 0 = 5000 */
	bool auth;                              /* seal and check every message with key (§5.1) */
	uint8_t key[32];                        /* the cluster key (auth) */
};

struct link_stats {
	uint64_t sent;                       /* messages handed to nanomsg */
	uint64_t received;                   /* messages returned by link_recv */
	uint64_t dropped_send;               /* not sent: queue full or no connection */
	uint64_t dropped_recv;               /* received and dropped (CRC, cluster, ...) */
	uint64_t segments_served;            /* SEGMENT_FETCH requests answered */
	uint64_t unauthenticated;            /* dropped (also in dropped_recv): no valid MAC with
	                                      * the cluster key, or a replayed sequence number */
	uint64_t reopened;                   /* links reopened after 2 s of silence (a stale pipe) */
	uint64_t bytes_sent[LINK_MAX_ID];    /* per node id (index id - 1): messages and segment
	                                      * chunks served */
};

struct link;

/*
 * The bytes of entry lsn when a message's entry has data NULL and len > 0:
 * the caller's store appends them to *out (an empty st_buf the link frees).
 * Returns ST_OK or an error (then the send fails with it).
 */
typedef int (*link_entry_fn)(void *ctx, uint64_t lsn, struct st_buf *out, struct st_err *err);

/*
 * Read up to len bytes of segment file (table, file) at off into buf for a
 * peer's SEGMENT_FETCH: sets *got (less than len only at the end of the
 * file), *file_size and *file_crc (CRC32C of the whole file). Returns ST_OK,
 * ST_ENOTFOUND or an I/O error; the error (code and message) goes back to
 * the fetching peer. Called on the thread inside link_recv.
 */
typedef int (*link_seg_read_fn)(void *ctx, uint64_t table, uint64_t file, uint64_t off, void *buf,
                                size_t len, size_t *got, uint64_t *file_size, uint32_t *file_crc,
                                struct st_err *err);

/*
 * Open the link: bind the REP socket on self_address, bind or connect one
 * PAIR socket per peer (port scheme above; connections come up in the
 * background, with reconnection every 50 ms backing off to 1 s). c is
 * copied. Returns ST_OK and *out (free with link_close), ST_EINVAL for a bad
 * config (ids out of range or repeated, an address not tcp://HOST:PORT, a
 * port above 65535 - 16), an errno from nanomsg (EADDRINUSE, ENODEV, ...)
 * naming the address, ST_ENOMEM.
 */
int link_open(const struct link_config *c, struct link **out, struct st_err *err);

/*
 * Membership changes (REPLICATION.md §13), on the thread that calls
 * link_recv: link_add_peer opens the link to a new peer (port scheme
 * above; ST_EINVAL for an id out of range, self, already a peer or ever
 * removed: ids are never reused); link_remove_peer closes the link to id
 * for good (its messages are dropped, sends and fetches to it fail with
 * ST_EINVAL). Other threads' link_send and link_fetch_segment see either
 * the old or the new peer set.
 */
int link_add_peer(struct link *l, const struct link_peer *p, struct st_err *err);
void link_remove_peer(struct link *l, uint64_t id);

/* Close every socket and free the link (NULL is allowed). */
void link_close(struct link *l);

/*
 * Send m (to m->to, a peer) without blocking. Entries go as a prefix that
 * keeps the message within max_message: *n_sent (may be NULL) is how many of
 * m->n_entries went (at least one when there are any). nanomsg's TCP pipe
 * holds one message in flight, so what it cannot take at once waits in the
 * link's queue for that peer (at most 64 messages and max_message bytes;
 * flushed in order by later link_send calls and inside link_recv's poll);
 * when that is full too the message is dropped and counted: Raft retries.
 * Returns ST_OK (sent, queued or dropped), ST_EINVAL (m->to
 * not a peer, m->from not self), ST_ETOOBIG (the first entry alone exceeds
 * max_message), ST_ENOMEM, or the entry function's error.
 */
int link_send(struct link *l, const struct raft_msg *m, link_entry_fn fn, void *ctx,
              size_t *n_sent);

/*
 * Wait up to timeout_ms (-1 = forever, 0 = poll) for one message from a
 * peer and decode it into *m. Its entries (and their data) are borrowed
 * from the link until the next link_recv or link_close. Segment requests
 * that arrive meanwhile are answered (link_serve_segments). Messages that
 * fail the CRC, are of another version or cluster, are not for self, come
 * from an unknown id or on another peer's socket, or are malformed are
 * dropped and counted, never returned. The poll also flushes the send
 * queues (link_send). A segment reply may block it up to 2 s (a slow
 * fetcher). Returns 1 with a message, 0 on
 * timeout or link_wake, or a negative error (ST_ENOMEM, a nanomsg errno as
 * negative: -EBADF... only on a bug or after close).
 */
int link_recv(struct link *l, int timeout_ms, struct raft_msg *m);

/* From any thread: a blocked (or the next) link_recv returns 0. */
void link_wake(struct link *l);

/* Serve SEGMENT_FETCH with fn (NULL: answer ST_ENOTFOUND). Set before the
 * link_recv loop starts (not concurrently with it). */
void link_serve_segments(struct link *l, link_seg_read_fn fn, void *ctx);

/*
 * Fetch segment file (table, file) from peer into dest_path (§6): chunks of
 * at most LINK_SEG_CHUNK, each reply checked (envelope CRC, the peer's file
 * size and CRC equal want_size and want_crc), written to dest_path.tmp,
 * then the whole file's size and CRC32C checked, fsynced, renamed to
 * dest_path and the directory fsynced. Resumes a dest_path.tmp left by an
 * interrupted fetch (its bytes are re-read for the CRC). Blocks, each chunk
 * bounded by fetch_timeout_ms. On failure no dest_path is created and the
 * .tmp is removed, except after a timeout or a lost connection (kept to
 * resume). Returns ST_OK, ST_EINVAL (unknown peer, path too long),
 * ST_ECORRUPT (size or CRC mismatch, bad reply), ST_EUNAVAIL (no reply in
 * time), the peer's error (e.g. ST_ENOTFOUND), an errno of the file system.
 * want_size LINK_SIZE_ANY takes the size and CRC of the peer's first reply
 * (a file the caller knows nothing of: a snapshot's MANIFEST); no resume.
 */
int link_fetch_segment(struct link *l, uint64_t peer, uint64_t table, uint64_t file,
                       uint64_t want_size, uint32_t want_crc, const char *dest_path,
                       struct st_err *err);

/* A snapshot of the counters (each read atomically, not all at one instant). */
void link_stats(const struct link *l, struct link_stats *out);

/* ---- the codec (pure; exposed for tests and fuzzing) --------------------- */

/*
 * Encode m for cluster into *out (reset first; the caller frees it with
 * st_buf_free), keeping it within max bytes by sending a prefix of the
 * entries: *n_sent (may be NULL) gets their count. Entry bytes come from
 * entries[i].data, or from fn when data is NULL and len > 0. Errors:
 * ST_EINVAL (unknown type, fn needed but NULL), ST_ETOOBIG (the message
 * without entries, or with its first entry, exceeds max), ST_ENOMEM, fn's.
 */
int link_encode(const uint8_t cluster[LINK_CLUSTER_LEN], const struct raft_msg *m, link_entry_fn fn,
                void *ctx, size_t max, struct st_buf *out, size_t *n_sent, struct st_err *err);

/* What a decoded message borrows besides the bytes: init before the first
 * link_decode, fini when done. One decode at a time; each decode replaces
 * what the previous one held. */
struct link_decoded {
	msgpack_unpacked up;        /* the object tree (references the bytes) */
	struct raft_entry *entries; /* the message's entries (owned array) */
	size_t cap;                 /* room in entries */
};
void link_decoded_init(struct link_decoded *d);
void link_decoded_fini(struct link_decoded *d);

/*
 * Decode and validate one message of len bytes addressed to self in
 * cluster. *m's entries point into d, their data into buf: both must
 * outlive the use of *m. Errors: ST_ECORRUPT (CRC mismatch or no CRC pair),
 * ST_EVERSION (version != 1), ST_EPROTO (not msgpack, a required key absent
 * or mistyped, unknown type, a hash not 32 bytes, entries not consecutive
 * after prev_lsn, epochs out of order), ST_EINVAL (another cluster, not to
 * self), ST_ENOMEM. err says which.
 */
int link_decode(const void *buf, size_t len, const uint8_t cluster[LINK_CLUSTER_LEN], uint64_t self,
                struct raft_msg *m, struct link_decoded *d, struct st_err *err);

#endif
