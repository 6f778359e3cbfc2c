/*
 * daemon/server/dedup.c — request deduplication (PROTOCOL.md §1 "Resends",
 * §4): for each client id, the replies of its last SD_DEDUPE_PER_CLIENT
 * state-changing requests, so that a resent (client, seq) is answered from
 * the first reply and never applied twice.
 *
 * Invariants: a client's entries are a ring; an entry in progress (seq set,
 * not done) is never evicted, nor is a client with one. Clients are
 * allocated one by one and never move (workers hold entry pointers across
 * unlocks). Threading: everything here runs under srv->lock.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/server/server_int.h"

/* The client record for id, created (or recycled from the client idle
 * the longest) when new. NULL when out of memory or all are busy. */
static struct sd_dedupe_client *client_for(sd_server *srv, const uint8_t *id)
{
	struct sd_dedupe_client *cl = NULL;
	for (uint32_t i = 0; i < srv->nclients; i++)
		if (!memcmp(srv->clients[i]->id, id, WIRE_CLIENT_ID_LEN))
			return srv->clients[i];
	if (srv->nclients < SD_DEDUPE_CLIENTS) {
		struct sd_dedupe_client **g = realloc(srv->clients, (srv->nclients + 1) * sizeof *g);
		if (!g)
			return NULL;
		srv->clients = g;
		if (!(cl = calloc(1, sizeof *cl)))
			return NULL;
		g[srv->nclients++] = cl;
	} else { /* forget the client idle the longest (nothing in progress) */
		for (uint32_t i = 0; i < srv->nclients; i++) {
			struct sd_dedupe_client *x = srv->clients[i];
			bool busy = false;
			for (int k = 0; k < SD_DEDUPE_PER_CLIENT; k++)
				busy |= x->e[k].seq && !x->e[k].done;
			if (!busy && (!cl || x->last_us < cl->last_us))
				cl = x;
		}
		if (!cl)
			return NULL;
		for (int k = 0; k < SD_DEDUPE_PER_CLIENT; k++)
			free(cl->e[k].reply);
	}
	memset(cl, 0, sizeof *cl);
	memcpy(cl->id, id, WIRE_CLIENT_ID_LEN);
	return cl;
}

struct sd_dedupe_entry *sd_dedupe_find(sd_server *srv, const uint8_t *id, uint64_t seq,
				       bool *fresh)
{
	struct sd_dedupe_client *cl = client_for(srv, id);
	*fresh = false;
	if (!cl)
		return NULL;
	cl->last_us = sd_now_us();
	for (int k = 0; k < SD_DEDUPE_PER_CLIENT; k++)
		if (cl->e[k].seq && cl->e[k].seq == seq) /* 0 marks an unused entry */
			return &cl->e[k];
	struct sd_dedupe_entry *e = &cl->e[cl->next];
	if (e->seq && !e->done) /* 64 requests of one client in flight: do not evict */
		return NULL;
	cl->next = (cl->next + 1) % SD_DEDUPE_PER_CLIENT;
	free(e->reply);
	*e = (struct sd_dedupe_entry){.seq = seq};
	*fresh = true;
	return e;
}

void sd_dedupe_free(sd_server *srv)
{
	for (uint32_t i = 0; i < srv->nclients; i++) {
		for (int k = 0; k < SD_DEDUPE_PER_CLIENT; k++)
			free(srv->clients[i]->e[k].reply);
		free(srv->clients[i]);
	}
	free(srv->clients);
	srv->clients = NULL;
	srv->nclients = 0;
}
