/*
 * daemon/server/auth.c — client authentication (PROTOCOL.md §2.2).
 *
 * With `auth_file` in the config, stratad knows named tokens, each with a
 * role (read < write < admin). A client proves it holds a token by
 * challenge and response: AUTH_BEGIN {name} gets a fresh 32-byte nonce;
 * AUTH {name, nonce, proof = HMAC-SHA512-256(token, "strata-auth-v1" ||
 * nonce)} opens a session: a 16-byte id and a key, HMAC(token,
 * "strata-session-v1" || nonce), which both sides compute and neither
 * sends. Every later request carries the session id (envelope key 14) and,
 * as its last pair, a MAC with the session key over the request without
 * that pair (key 15). A request without a valid one, or beyond its token's
 * role, is ST_EPERM naming what it needs. The token never crosses the wire.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "daemon/server/log.h"
#include "daemon/server/server_int.h"

static const char *const role_names[] = {"none", "read", "write", "admin"};

const char *sd_auth_role_name(int role)
{
	return role >= 0 && role <= SD_AUTH_ADMIN ? role_names[role] : "?";
}

int sd_auth_needs(int type)
{
	switch (type) {
	case WIRE_HELLO: case WIRE_PING: case WIRE_AUTH_BEGIN: case WIRE_AUTH:
		return SD_AUTH_NONE;
	case WIRE_STATUS: case WIRE_TABLES: case WIRE_DESCRIBE: case WIRE_SCAN:
	case WIRE_SCAN_NEXT: case WIRE_SCAN_CLOSE: case WIRE_QUERY: case WIRE_HISTORY:
	case WIRE_CLUSTER_STATUS:
		return SD_AUTH_READ;
	case WIRE_CREATE: case WIRE_DROP: case WIRE_ALTER: case WIRE_WRITE:
	case WIRE_LOAD_BEGIN: case WIRE_LOAD_DATA: case WIRE_LOAD_COMMIT: case WIRE_LOAD_ABORT:
	case WIRE_RESTORE: case WIRE_COMPACT: case WIRE_DELETE: case WIRE_UPDATE: case WIRE_OPTIMIZE: case WIRE_MERGE:
		return SD_AUTH_WRITE;
	default: /* VACUUM, VERIFY, SCRUB, BACKUP, CLUSTER_TRANSFER and anything new */
		return SD_AUTH_ADMIN;
	}
}

int sd_auth_load(const char *path, struct sd_tokens *t, struct st_err *err)
{
	memset(t, 0, sizeof *t);
	FILE *f = fopen(path, "r");
	if (!f)
		return st_seterr(err, errno, "auth_file %s: %s", path, strerror(errno));
	char line[1024];
	int rc = ST_OK, lineno = 0;
	while (rc == ST_OK && fgets(line, sizeof line, f)) {
		lineno++;
		char name[SD_TOKEN_NAME_MAX + 2], role[16], secret[SD_TOKEN_SECRET_MAX + 2];
		char *p = line + strspn(line, " \t");
		if (*p == '#' || *p == '\n' || !*p)
			continue;
		int n = sscanf(p, "%65s %15s %257s", name, role, secret);
		int r = 0;
		for (int i = SD_AUTH_READ; i <= SD_AUTH_ADMIN; i++)
			if (n >= 2 && !strcmp(role, role_names[i]))
				r = i;
		if (n != 3 || strlen(name) > SD_TOKEN_NAME_MAX || strlen(secret) > SD_TOKEN_SECRET_MAX)
			rc = st_seterr(err, ST_EINVAL, "auth_file %s:%d: expected NAME ROLE TOKEN (a name "
				       "of at most %d characters, a token of 16 to %d)", path, lineno,
				       SD_TOKEN_NAME_MAX, SD_TOKEN_SECRET_MAX);
		else if (!r)
			rc = st_seterr(err, ST_EINVAL, "auth_file %s:%d: role '%s' is not read, write "
				       "or admin", path, lineno, role);
		else if (strlen(secret) < 16)
			rc = st_seterr(err, ST_EINVAL, "auth_file %s:%d: token of '%s' is %zu characters: "
				       "16 at least (head -c 24 /dev/urandom | base64)", path, lineno,
				       name, strlen(secret));
		else if (t->n == SD_TOKENS_MAX)
			rc = st_seterr(err, ST_EINVAL, "auth_file %s: more than %d tokens", path,
				       SD_TOKENS_MAX);
		for (uint32_t i = 0; rc == ST_OK && i < t->n; i++)
			if (!strcmp(t->t[i].name, name))
				rc = st_seterr(err, ST_EINVAL, "auth_file %s:%d: token '%s' is named twice",
					       path, lineno, name);
		if (rc == ST_OK) {
			struct sd_token *k = &t->t[t->n++];
			snprintf(k->name, sizeof k->name, "%s", name);
			k->role = r;
			k->len = strlen(secret);
			memcpy(k->secret, secret, k->len);
		}
		sodium_memzero(secret, sizeof secret);
		sodium_memzero(line, sizeof line);
	}
	fclose(f);
	if (rc == ST_OK && !t->n)
		rc = st_seterr(err, ST_EINVAL, "auth_file %s names no token", path);
	if (rc != ST_OK)
		sodium_memzero(t, sizeof *t);
	return rc;
}

static void hmac(const struct sd_token *k, const char *label, const uint8_t nonce[32],
		 uint8_t out[32])
{
	crypto_auth_hmacsha512256_state st;
	crypto_auth_hmacsha512256_init(&st, (const uint8_t *)k->secret, k->len);
	crypto_auth_hmacsha512256_update(&st, (const uint8_t *)label, strlen(label));
	crypto_auth_hmacsha512256_update(&st, nonce, 32);
	crypto_auth_hmacsha512256_final(&st, out);
}

static int token_of(const struct sd_server *srv, const char *name)
{
	for (uint32_t i = 0; i < srv->tokens.n; i++)
		if (!strcmp(srv->tokens.t[i].name, name))
			return (int)i;
	return -1;
}

int sd_h_auth_begin(struct sd_ctx *c)
{
	sd_server *srv = c->srv;
	char name[SD_TOKEN_NAME_MAX + 1] = "";
	int rc;
	if ((rc = sd_opt_strbuf(c, WIRE_AUTH_Q_NAME, "name", name, sizeof name)))
		return rc;
	if (!srv->tokens.n) { /* no authentication here: an empty body says so */
		sd_begin(c, 0);
		return ST_OK;
	}
	struct sd_auth_pending *p;
	pthread_mutex_lock(&srv->auth_lock);
	p = &srv->pending[srv->next_pending++ % SD_AUTH_PENDING];
	randombytes_buf(p->nonce, sizeof p->nonce);
	p->at_us = sd_now_us();
	p->live = true;
	uint8_t nonce[32];
	memcpy(nonce, p->nonce, sizeof nonce);
	pthread_mutex_unlock(&srv->auth_lock);
	sd_begin(c, 1);
	wire_key_bin(&c->out.pk, WIRE_AUTH_BEGIN_R_NONCE, nonce, sizeof nonce);
	return ST_OK;
}

int sd_h_auth(struct sd_ctx *c)
{
	sd_server *srv = c->srv;
	char name[SD_TOKEN_NAME_MAX + 1] = "";
	uint8_t nonce[32], proof[32], want[32];
	bool have_nonce = false, have_proof = false;
	int rc;
	if ((rc = sd_opt_strbuf(c, WIRE_AUTH_Q_NAME, "name", name, sizeof name)) ||
	    (rc = sd_opt_hash(c, WIRE_AUTH_Q_NONCE, "nonce", nonce, &have_nonce)) ||
	    (rc = sd_opt_hash(c, WIRE_AUTH_Q_PROOF, "proof", proof, &have_proof)))
		return rc;
	if (!have_nonce || !have_proof)
		return sd_fail(c, ST_EPROTO, "AUTH needs keys 1 (nonce) and 2 (proof)");
	int k = token_of(srv, name);
	/* One answer per nonce, right or wrong, within 30 s of its challenge. */
	bool fresh = false;
	pthread_mutex_lock(&srv->auth_lock);
	for (uint32_t i = 0; i < SD_AUTH_PENDING; i++) {
		struct sd_auth_pending *p = &srv->pending[i];
		if (p->live && sodium_memcmp(p->nonce, nonce, 32) == 0) {
			fresh = sd_now_us() - p->at_us < 30000000;
			p->live = false;
		}
	}
	pthread_mutex_unlock(&srv->auth_lock);
	if (k >= 0)
		hmac(&srv->tokens.t[k], "strata-auth-v1", nonce, want);
	if (!fresh || k < 0 || sodium_memcmp(want, proof, 32) != 0) {
		sd_log(SD_LOG_WARN, "auth: a client failed to authenticate as '%s'", name);
		return sd_fail(c, ST_EPERM, "authentication as '%s' failed (unknown token name, wrong "
			       "token, or a stale challenge)", name);
	}
	pthread_mutex_lock(&srv->auth_lock);
	struct sd_auth_session *s = &srv->sessions_auth[0];
	for (uint32_t i = 0; i < SD_AUTH_SESSIONS; i++) { /* a free slot, or the idlest */
		struct sd_auth_session *x = &srv->sessions_auth[i];
		if (!x->live) {
			s = x;
			break;
		}
		if (x->last_us < s->last_us)
			s = x;
	}
	randombytes_buf(s->id, sizeof s->id);
	hmac(&srv->tokens.t[k], "strata-session-v1", nonce, s->key);
	s->token = (uint32_t)k;
	s->last_us = sd_now_us();
	s->live = true;
	uint8_t id[16];
	memcpy(id, s->id, sizeof id);
	pthread_mutex_unlock(&srv->auth_lock);
	sd_log(SD_LOG_DEBUG, "auth: a client authenticated as '%s' (%s)", name,
	       role_names[srv->tokens.t[k].role]);
	sd_begin(c, 2);
	wire_key_str(&c->out.pk, WIRE_AUTH_R_ROLE, role_names[srv->tokens.t[k].role]);
	wire_key_bin(&c->out.pk, WIRE_AUTH_R_SESSION, id, sizeof id);
	return ST_OK;
}

int sd_auth_check(struct sd_ctx *c, const uint8_t *buf, size_t len, char *why, size_t wlen)
{
	sd_server *srv = c->srv;
	int need = sd_auth_needs(c->m.type);
	if (!srv->tokens.n || need == SD_AUTH_NONE)
		return ST_OK;
	const msgpack_object *sid = wire_get(&c->m.up.data, WIRE_ENV_SESSION);
	if (!sid || sid->type != MSGPACK_OBJECT_BIN || sid->via.bin.size != 16 ||
	    len < 1 + SD_MAC_PAIR_LEN || buf[0] < 0x82 || buf[0] > 0x8f ||
	    buf[len - SD_MAC_PAIR_LEN] != WIRE_ENV_MAC || buf[len - SD_MAC_PAIR_LEN + 1] != 0xc4 ||
	    buf[len - SD_MAC_PAIR_LEN + 2] != 32) {
		snprintf(why, wlen, "%s needs an authenticated session (role %s): this stratad "
			 "requires a token (strata: STRATA_TOKEN=NAME:TOKEN or --token-file)",
			 wire_type_name(c->m.type), role_names[need]);
		return ST_EPERM;
	}
	int rc = ST_EPERM;
	snprintf(why, wlen, "the request's session is unknown or expired, or its MAC is wrong: "
		 "authenticate again");
	pthread_mutex_lock(&srv->auth_lock);
	for (uint32_t i = 0; i < SD_AUTH_SESSIONS; i++) {
		struct sd_auth_session *s = &srv->sessions_auth[i];
		if (!s->live || memcmp(s->id, sid->via.bin.ptr, 16))
			continue;
		uint8_t hdr = (uint8_t)(buf[0] - 1), mac[32];
		crypto_auth_hmacsha512256_state st;
		crypto_auth_hmacsha512256_init(&st, s->key, sizeof s->key);
		crypto_auth_hmacsha512256_update(&st, &hdr, 1);
		crypto_auth_hmacsha512256_update(&st, buf + 1, len - SD_MAC_PAIR_LEN - 1);
		crypto_auth_hmacsha512256_final(&st, mac);
		if (sodium_memcmp(mac, buf + len - 32, 32) != 0)
			break;
		const struct sd_token *k = &srv->tokens.t[s->token];
		s->last_us = sd_now_us();
		if (k->role >= need)
			rc = ST_OK;
		else
			snprintf(why, wlen, "%s needs role %s; token '%s' has role %s",
				 wire_type_name(c->m.type), role_names[need], k->name,
				 role_names[k->role]);
		break;
	}
	pthread_mutex_unlock(&srv->auth_lock);
	return rc;
}
