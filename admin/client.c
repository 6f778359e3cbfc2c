/*
 * admin/client.c — the client side of the wire protocol (client.h): the
 * envelope with the cluster keys, and the one redirect to a leader.
 */
#include "admin/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "format/transport.h"

/* Replies are never larger than the server's limit, at most 1 GiB. */
#define SC_RECV_MAX (1u << 30)

struct sc_client {
	int sock;                       /* REQ socket */
	char host[512];                 /* address */
	uint8_t id[WIRE_CLIENT_ID_LEN]; /* client id for deduplication */
	uint64_t seq;                   /* last sequence number used */
	uint64_t next_id;               /* next request id */
	int type;                       /* type of the request being built */
	struct wire_out out;            /* the request being built */
	void *rep;                      /* last reply (nanomsg-owned) */
	struct wire_msg msg;            /* it, parsed */
	bool have_msg;                  /* msg needs wire_msg_fini */
	struct sc_server_info info;     /* from HELLO */
	int timeout_ms;                 /* each reply waits this long */
	struct sc_env env;              /* envelope keys 7-10 (sc_set_env) */
	bool authed;                    /* requests are sealed with the session (§2.2) */
	uint8_t session[16], skey[32];  /* the session's id and key */
	char tname[65];                 /* the token's name, */
	char tsecret[257];              /* its secret */
	size_t tlen;                    /* and its length (0: no token) */
};

static void client_id(uint8_t *id)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, id, WIRE_CLIENT_ID_LEN) : -1;
	if (fd >= 0)
		close(fd);
	if (n != WIRE_CLIENT_ID_LEN) { /* no urandom: time and pid still differ per process */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t a = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		uint64_t b = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ (uintptr_t)id;
		memcpy(id, &a, 8);
		memcpy(id + 8, &b, 8);
	}
}

static void drop_reply(sc_client *c)
{
	if (c->have_msg)
		wire_msg_fini(&c->msg);
	c->have_msg = false;
	tp_free(c->rep);
	c->rep = NULL;
}

static int local_error(struct wire_error *e, int code, const char *msg)
{
	wire_error_set(e, code, msg);
	return code;
}

int sc_connect(const char *host, int timeout_ms, sc_client **out, struct wire_error *e)
{
	struct st_err err;
	*out = NULL;
	if (!host || !*host)
		host = getenv("STRATA_HOST");
	if (!host || !*host)
		host = SC_DEFAULT_HOST;
	if (timeout_ms <= 0)
		timeout_ms = SC_DEFAULT_TIMEOUT_MS;
	sc_client *c = calloc(1, sizeof *c);
	if (!c)
		return local_error(e, ST_ENOMEM, "out of memory");
	snprintf(c->host, sizeof c->host, "%s", host);
	client_id(c->id);
	c->next_id = 1;
	c->timeout_ms = timeout_ms;
	wire_out_init(&c->out);
	int rc = tp_connect(host, timeout_ms, SC_RECV_MAX, &c->sock, &err);
	if (rc != ST_OK) {
		free(c);
		return local_error(e, rc, err.msg);
	}
	c->info.max_message_size = 1u << 20; /* nanomsg's default until HELLO says more */
	c->info.max_batch_rows = 65536;
	msgpack_packer *pk = sc_begin(c, WIRE_HELLO, 2);
	wire_key_str(pk, WIRE_HELLO_Q_CLIENT, "strata-client");
	wire_key_u64(pk, WIRE_HELLO_Q_PROTOCOL, WIRE_VERSION);
	const msgpack_object *b;
	/* HELLO is cheap for a live daemon: a missing one is reported within
	 * SC_HELLO_TIMEOUT_MS, not after a long request timeout. */
	int hello_ms = timeout_ms < SC_HELLO_TIMEOUT_MS ? timeout_ms : SC_HELLO_TIMEOUT_MS;
	tp_set_timeout(c->sock, hello_ms);
	rc = sc_call(c, &b, e);
	tp_set_timeout(c->sock, timeout_ms);
	if (rc != 0) {
		if (rc == ETIMEDOUT)
			snprintf(e->msg, sizeof e->msg,
				 "no answer from %s within %d ms: is stratad running there? (set "
				 "--host or STRATA_HOST)", host, hello_ms);
		sc_close(c);
		return rc;
	}
	/* A reply key of the wrong type breaks the protocol; an absent one keeps
	 * the default (an older daemon). */
	uint64_t proto = WIRE_VERSION, maxmsg = c->info.max_message_size,
		 maxrows = c->info.max_batch_rows;
	if ((rc = wire_field_strbuf(b, NULL, WIRE_HELLO_R_VERSION, "server version",
				    c->info.version, sizeof c->info.version, &err)) < 0 ||
	    (rc = wire_field_u64(b, NULL, WIRE_HELLO_R_PROTOCOL, "protocol version", &proto,
				 &err)) < 0 ||
	    (rc = wire_field_u64(b, NULL, WIRE_HELLO_R_MAX_MESSAGE, "max_message_size", &maxmsg,
				 &err)) < 0 ||
	    (rc = wire_field_u64(b, NULL, WIRE_HELLO_R_MAX_ROWS, "max_batch_rows", &maxrows,
				 &err)) < 0) {
		char m[ST_ERR_MSG_MAX];
		snprintf(m, sizeof m, "the daemon's HELLO reply is malformed: %s", err.msg);
		rc = local_error(e, ST_EPROTO, m);
		sc_close(c);
		return rc;
	}
	c->info.protocol = proto > UINT32_MAX ? UINT32_MAX : (uint32_t)proto;
	if (maxmsg >= 4096)
		c->info.max_message_size = maxmsg;
	if (maxrows > 0 && maxrows <= UINT32_MAX)
		c->info.max_batch_rows = (uint32_t)maxrows;
	*out = c;
	return 0;
}

void sc_close(sc_client *c)
{
	if (!c)
		return;
	sodium_memzero(c->tsecret, sizeof c->tsecret);
	sodium_memzero(c->skey, sizeof c->skey);
	drop_reply(c);
	wire_out_fini(&c->out);
	tp_close(c->sock);
	free(c);
}

const char *sc_host(const sc_client *c)
{
	return c->host;
}

const struct sc_server_info *sc_server(const sc_client *c)
{
	return &c->info;
}

void sc_set_env(sc_client *c, const struct sc_env *env)
{
	c->env = *env;
}

static bool is_read(int type)
{
	return type == WIRE_SCAN || type == WIRE_QUERY || type == WIRE_DESCRIBE ||
	       type == WIRE_HISTORY;
}

bool sc_served_by(const sc_client *c, struct sc_served *s)
{
	if (!c->have_msg || !c->msg.env.served)
		return false;
	s->node = c->msg.env.served_by;
	s->read_lsn = c->msg.env.read_lsn;
	s->staleness_ms = c->msg.env.staleness;
	return true;
}

/* The envelope (wire_begin) with the keys of c->env that concern this
 * type (PROTOCOL.md §2). */
msgpack_packer *sc_begin(sc_client *c, int type, uint32_t nbody)
{
	drop_reply(c);
	wire_out_reset(&c->out);
	c->type = type;
	bool dedupe = wire_changes_state(type);
	struct wire_env_opts *e = &c->out.env;
	if (dedupe)
		e->durability = c->env.durability;
	if (is_read(type)) {
		e->has_min_version = c->env.min_version != 0;
		e->min_version = c->env.min_version;
		e->has_max_staleness = c->env.has_max_staleness;
		e->max_staleness = c->env.max_staleness_ms;
		e->consistency = c->env.consistency;
	}
	wire_begin(&c->out, c->next_id++, type, dedupe ? c->id : NULL, dedupe ? ++c->seq : 0,
		   nbody);
	return &c->out.pk;
}

struct wire_out *sc_out(sc_client *c)
{
	return &c->out;
}

size_t sc_pending(const sc_client *c)
{
	return c->out.buf.len;
}

/* Send the request in c->out and read its reply. */
static int exchange(sc_client *c, const msgpack_object **body, struct wire_error *e)
{
	struct st_err err;
	size_t rlen;
	int rc = tp_call(c->sock, c->out.buf.data, c->out.buf.len, c->info.max_message_size,
			 &c->rep, &rlen, &err);
	if (rc != ST_OK)
		return local_error(e, rc, err.msg);
	c->have_msg = true;
	if ((rc = wire_parse(c->rep, rlen, &c->msg, &err)) != ST_OK)
		return local_error(e, rc, err.msg);
	if (c->msg.error) {
		wire_error_decode(c->msg.error, e);
		return e->code ? e->code : ST_EPROTO;
	}
	if (c->msg.type != c->type)
		return local_error(e, ST_EPROTO, "the reply answers another request type");
	*body = c->msg.body;
	return 0;
}

/* Append the session pair and the MAC pair to the request in c->out
 * (PROTOCOL.md §2.2): its map header counts them. Whether it did (a
 * session, and a fixmap header with room for two more pairs). */
static bool seal(sc_client *c)
{
	struct st_buf *b = &c->out.buf;
	if (!c->authed || b->oom || !b->len || b->data[0] < 0x80 || b->data[0] > 0x8d)
		return false;
	b->data[0] += 2;
	uint8_t sp[3 + 16] = {WIRE_ENV_SESSION, 0xc4, 16};
	memcpy(sp + 3, c->session, 16);
	st_buf_append(b, sp, sizeof sp);
	if (b->oom)
		return true;
	uint8_t hdr = (uint8_t)(b->data[0] - 1), mp[3 + 32] = {WIRE_ENV_MAC, 0xc4, 32};
	crypto_auth_hmacsha512256_state st;
	crypto_auth_hmacsha512256_init(&st, c->skey, sizeof c->skey);
	crypto_auth_hmacsha512256_update(&st, &hdr, 1);
	crypto_auth_hmacsha512256_update(&st, b->data + 1, b->len - 1);
	crypto_auth_hmacsha512256_final(&st, mp + 3);
	st_buf_append(b, mp, sizeof mp);
	return true;
}

static void token_hmac(const sc_client *c, const char *label, const uint8_t *nonce,
		       uint8_t out[32])
{
	crypto_auth_hmacsha512256_state st;
	crypto_auth_hmacsha512256_init(&st, (const uint8_t *)c->tsecret, c->tlen);
	crypto_auth_hmacsha512256_update(&st, (const uint8_t *)label, strlen(label));
	crypto_auth_hmacsha512256_update(&st, nonce, 32);
	crypto_auth_hmacsha512256_final(&st, out);
}

/* Challenge and response with c's token on c's socket (c->out is reused). */
static int handshake(sc_client *c, struct wire_error *e)
{
	const msgpack_object *b, *o;
	c->authed = false;
	msgpack_packer *pk = sc_begin(c, WIRE_AUTH_BEGIN, 1);
	wire_key_str(pk, WIRE_AUTH_Q_NAME, c->tname);
	int rc = sc_call(c, &b, e);
	if (rc == ST_EPROTO && strstr(e->msg, "unknown request type"))
		return 0; /* a daemon from before authentication: nothing to do */
	if (rc != 0)
		return rc;
	uint8_t nonce[32], proof[32];
	if (!(o = wire_get(b, WIRE_AUTH_BEGIN_R_NONCE))) {
		drop_reply(c);
		return 0; /* this daemon authenticates no one (no auth_file) */
	}
	if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != 32)
		return local_error(e, ST_EPROTO, "the daemon's AUTH_BEGIN reply has no 32-byte nonce");
	memcpy(nonce, o->via.bin.ptr, 32);
	token_hmac(c, "strata-auth-v1", nonce, proof);
	pk = sc_begin(c, WIRE_AUTH, 3);
	wire_key_str(pk, WIRE_AUTH_Q_NAME, c->tname);
	wire_key_bin(pk, WIRE_AUTH_Q_NONCE, nonce, 32);
	wire_key_bin(pk, WIRE_AUTH_Q_PROOF, proof, 32);
	if ((rc = sc_call(c, &b, e)) != 0)
		return rc;
	if (!(o = wire_get(b, WIRE_AUTH_R_SESSION)) || o->type != MSGPACK_OBJECT_BIN ||
	    o->via.bin.size != 16)
		return local_error(e, ST_EPROTO, "the daemon's AUTH reply has no 16-byte session");
	memcpy(c->session, o->via.bin.ptr, 16);
	token_hmac(c, "strata-session-v1", nonce, c->skey);
	c->authed = true;
	drop_reply(c);
	return 0;
}

int sc_authenticate(sc_client *c, const char *name, const char *token, struct wire_error *e)
{
	if (strlen(name) >= sizeof c->tname || strlen(token) >= sizeof c->tsecret || !*token)
		return local_error(e, ST_EINVAL, "a token name is at most 64 bytes and a token at "
				   "most 256");
	snprintf(c->tname, sizeof c->tname, "%s", name);
	snprintf(c->tsecret, sizeof c->tsecret, "%s", token);
	c->tlen = strlen(token);
	return handshake(c, e);
}

int sc_call(sc_client *c, const msgpack_object **body, struct wire_error *e)
{
	struct st_err err;
	*body = NULL;
	int rc = wire_end(&c->out, &err);
	if (rc != ST_OK) { /* a body of other than the pairs sc_begin announced, or no memory */
		char m[ST_ERR_MSG_MAX];
		snprintf(m, sizeof m, "%s request not sent: %s", wire_type_name(c->type), err.msg);
		return local_error(e, rc, m);
	}
	/* with a session, seal adds the session and MAC pairs (19 + 35 bytes) */
	if (c->out.buf.len + (c->authed ? 54 : 0) > c->info.max_message_size) {
		char m[256];
		snprintf(m, sizeof m, "a %s request of %zu bytes is above the server's %llu-byte "
			 "message limit", wire_type_name(c->type), c->out.buf.len,
			 (unsigned long long)c->info.max_message_size);
		return local_error(e, ST_ETOOBIG, m);
	}
	size_t plain = c->out.buf.len;
	bool sealed = seal(c);
	rc = exchange(c, body, e);
	if (rc == ST_ENOTLEADER && e->leader[0] && strcmp(e->leader, c->host)) {
		/* Once to the leader, the same bytes: same client id and seq. */
		char leader[sizeof e->leader];
		int sock;
		snprintf(leader, sizeof leader, "%s", e->leader);
		drop_reply(c);
		if ((rc = tp_connect(leader, c->timeout_ms, SC_RECV_MAX, &sock, &err)) != ST_OK) {
			char m[ST_ERR_MSG_MAX];
			snprintf(m, sizeof m, "%s is not the leader; cannot reach the leader at %s: %s",
				 c->host, leader, err.msg);
			return local_error(e, rc, m);
		}
		tp_close(c->sock);
		c->sock = sock;
		snprintf(c->host, sizeof c->host, "%s", leader);
		if (c->tlen) { /* the leader has sessions of its own: authenticate there too */
			uint8_t *req = malloc(plain ? plain : 1);
			int type = c->type;
			if (!req)
				return local_error(e, ST_ENOMEM, "out of memory");
			memcpy(req, c->out.buf.data, plain);
			if (sealed)
				req[0] -= 2; /* the header as it was before the seal */
			if ((rc = handshake(c, e)) != 0) {
				free(req);
				return rc;
			}
			drop_reply(c);
			wire_out_reset(&c->out);
			st_buf_append(&c->out.buf, req, plain);
			free(req);
			c->type = type;
			seal(c);
		}
		rc = exchange(c, body, e);
	}
	return rc;
}

void sc_error_format(const struct wire_error *e, char *buf, size_t len)
{
	size_t n = (size_t)snprintf(buf, len, "%s", e->msg);
	if (n < len && e->offset >= 0 && !strstr(e->msg, "offset"))
		n += (size_t)snprintf(buf + n, len - n, " (at offset %lld%s%s%s)",
				      (long long)e->offset, e->token[0] ? ", near '" : "", e->token,
				      e->token[0] ? "'" : "");
}
