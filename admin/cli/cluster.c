/*
 * admin/cli/cluster.c — `strata cluster status` and `strata cluster
 * transfer` (PROTOCOL.md §3 types 60 CLUSTER_STATUS and 61
 * CLUSTER_TRANSFER; replication/REPLICATION.md).
 *
 * status asks --host for CLUSTER_STATUS, which lists every node with its
 * client address, then asks each other node the same (a short timeout
 * each), so that every row's role, epoch and LSNs are that node's own
 * answer; lag and last contact are the leader's view (the leader's reply,
 * asked too when --host is not the leader). A node that does not answer is
 * "unreachable". Exit status 1 when a node is unreachable. A single node answers ST_EINVAL "not a
 * cluster" (or, from a daemon that predates the request, ST_EPROTO "unknown request type"), or a
 * status whose node id is 0: all three print "not a cluster: single node" (on stdout; with --format
 * jsonl on stderr, stdout left empty), exit 0.
 *
 * transfer sends CLUSTER_TRANSFER; the client follows a follower's
 * ST_ENOTLEADER to the leader once (admin/client.c).
 */
#include <inttypes.h>
#include <string.h>

#include "admin/cli/cli.h"

#define PEER_TIMEOUT_MS 1000 /* each other node gets this long to answer */
#define MAX_NODES       16   /* RAFT_MAX_NODES */
/* CLUSTER_MEMBER ops (format/wire.h) */
enum { SD_CLI_ADD = 1, SD_CLI_PROMOTE = 2, SD_CLI_REMOVE = 3, SD_CLI_FORCE = 4 };

/* One row of a CLUSTER_STATUS reply. */
struct cnode {
	uint64_t id;        /* node id */
	char role[32];      /* "leader", "follower", ..., "unknown" */
	char address[256];  /* its client address */
	uint64_t match;     /* match LSN (the leader's view) */
	uint64_t lag;       /* lag in entries (the leader's view) */
	int64_t contact_ms; /* last contact ms (-1 never) */
	uint64_t commit;    /* commit LSN */
	uint64_t applied;   /* applied LSN */
};

/* A CLUSTER_STATUS reply. */
struct cstatus {
	uint64_t node;                /* the serving node */
	uint64_t leader;              /* its leader, 0 unknown */
	uint64_t epoch;               /* its epoch */
	bool repairs;                 /* it sent the three below (a newer daemon) */
	uint64_t repaired, repair_failures, repair_pending;
	uint32_t n;                   /* rows */
	struct cnode rows[MAX_NODES]; /* one per node */
};

static const struct cnode *row_of(const struct cstatus *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->rows[i].id == id)
			return &s->rows[i];
	return NULL;
}

/* Whether an error means "this daemon is a single node". */
static bool is_single(const struct wire_error *e)
{
	return (e->code == ST_EINVAL && strstr(e->msg, "not a cluster")) ||
	       (e->code == ST_EPROTO && strstr(e->msg, "unknown request type"));
}

/* Ask c for CLUSTER_STATUS into s. Returns 0; 1 with the error printed
 * (quiet: not printed); -1 for a single node. */
static int fetch(sc_client *c, struct cstatus *s, bool quiet)
{
	const msgpack_object *b, *nodes = NULL;
	struct wire_error e;
	memset(s, 0, sizeof *s);
	sc_begin(c, WIRE_CLUSTER_STATUS, 0);
	if (sc_call(c, &b, &e) != 0) {
		if (is_single(&e))
			return -1;
		return quiet ? 1 : cli_fail_wire(c, &e);
	}
	const struct cli_reply r = {WIRE_CLUSTER_STATUS, NULL};
	if (cli_reply_u64(&r, b, WIRE_CLUSTER_R_NODE, "node id", CLI_REQUIRED, &s->node) < 0 ||
	    cli_reply_u64(&r, b, WIRE_CLUSTER_R_LEADER, "leader id", CLI_REQUIRED, &s->leader) <
	        0 ||
	    cli_reply_u64(&r, b, WIRE_CLUSTER_R_EPOCH, "epoch", CLI_REQUIRED, &s->epoch) < 0 ||
	    cli_reply_array(&r, b, WIRE_CLUSTER_R_NODES, "nodes", CLI_REQUIRED, &nodes) < 0)
		return 1;
	int rep = cli_reply_u64(&r, b, WIRE_CLUSTER_R_REPAIRED, "repaired", CLI_OPTIONAL,
	                        &s->repaired);
	if (rep < 0 ||
	    cli_reply_u64(&r, b, WIRE_CLUSTER_R_REPAIR_FAILURES, "repair failures", CLI_OPTIONAL,
	                  &s->repair_failures) < 0 ||
	    cli_reply_u64(&r, b, WIRE_CLUSTER_R_REPAIR_PENDING, "repairs pending", CLI_OPTIONAL,
	                  &s->repair_pending) < 0)
		return 1;
	s->repairs = rep == 1;
	if (s->node == 0)
		return -1;
	for (uint32_t i = 0; i < nodes->via.array.size && s->n < MAX_NODES; i++) {
		const msgpack_object *o = &nodes->via.array.ptr[i];
		char part[32];
		snprintf(part, sizeof part, "node %u", i);
		const struct cli_reply rr = {WIRE_CLUSTER_STATUS, part};
		struct cnode *n = &s->rows[s->n];
		n->contact_ms = -1;
		if (o->type != MSGPACK_OBJECT_MAP)
			return cli_fail_msg("the daemon's CLUSTER_STATUS reply is malformed: %s is "
			                    "a %s, expected map",
			                    part, wire_obj_type_name(o));
		if (cli_reply_u64(&rr, o, WIRE_CNODE_ID, "id", CLI_REQUIRED, &n->id) < 0 ||
		    cli_reply_strbuf(&rr, o, WIRE_CNODE_ROLE, "role", CLI_REQUIRED, n->role,
		                     sizeof n->role) < 0 ||
		    cli_reply_strbuf(&rr, o, WIRE_CNODE_ADDRESS, "client address", CLI_REQUIRED,
		                     n->address, sizeof n->address) < 0 ||
		    cli_reply_u64(&rr, o, WIRE_CNODE_MATCH, "match LSN", CLI_REQUIRED, &n->match) <
		        0 ||
		    cli_reply_u64(&rr, o, WIRE_CNODE_LAG, "lag entries", CLI_REQUIRED, &n->lag) <
		        0 ||
		    cli_reply_i64(&rr, o, WIRE_CNODE_CONTACT_MS, "last contact ms", CLI_REQUIRED,
		                  &n->contact_ms) < 0 ||
		    cli_reply_u64(&rr, o, WIRE_CNODE_COMMIT, "commit LSN", CLI_REQUIRED,
		                  &n->commit) < 0 ||
		    cli_reply_u64(&rr, o, WIRE_CNODE_APPLIED, "applied LSN", CLI_REQUIRED,
		                  &n->applied) < 0)
			return 1;
		s->n++;
	}
	return 0;
}

/* Ask the node at address for its status, briefly. 0 or not. */
static int fetch_at(const char *address, const struct cli_global *g, struct cstatus *s)
{
	sc_client *c;
	struct wire_error e;
	int ms =
	    g->timeout_ms > 0 && g->timeout_ms < PEER_TIMEOUT_MS ? g->timeout_ms : PEER_TIMEOUT_MS;
	if (!address[0] || sc_connect(address, ms, &c, &e) != 0)
		return 1;
	if (cli_auth(c, g, true) != 0) {
		sc_close(c);
		return 1;
	}
	int rc = fetch(c, s, true);
	sc_close(c);
	return rc;
}

/* One output row. */
struct out_row {
	uint64_t id;        /* node id */
	char role[32];      /* its own answer, or "unreachable" */
	bool own;           /* epoch, commit, applied known */
	uint64_t epoch;     /* its epoch (when own) */
	uint64_t commit;    /* its commit LSN (when own) */
	uint64_t applied;   /* its applied LSN (when own) */
	bool view;          /* lag, contact known (the leader's view) */
	uint64_t lag;       /* entries behind the leader (when view) */
	int64_t contact_ms; /* since the leader heard from it, -1 never (when view) */
	bool repairs;       /* repaired, pending known (its own answer) */
	uint64_t repaired;  /* segment files it repaired from a peer */
	uint64_t pending;   /* damaged segment files it waits to repair */
};

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++)
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s >= 0x20)
			putchar(*s);
	putchar('"');
}

static void print_rows(const struct out_row *rows, uint32_t n, bool jsonl)
{
	if (!jsonl)
		printf("%-6s %-12s %8s %12s %12s %10s %16s %9s\n", "id", "role", "epoch",
		       "commit_lsn", "applied_lsn", "lag", "last_contact_ms", "repaired");
	for (uint32_t i = 0; i < n; i++) {
		const struct out_row *r = &rows[i];
		char epoch[24] = "-", commit[24] = "-", applied[24] = "-", lag[24] = "-",
		     contact[24] = "-", repaired[24] = "-", pending[24] = "-", rep[48] = "-";
		if (r->repairs) {
			snprintf(repaired, sizeof repaired, "%" PRIu64, r->repaired);
			snprintf(pending, sizeof pending, "%" PRIu64, r->pending);
			if (r->pending)
				snprintf(rep, sizeof rep, "%" PRIu64 " (%" PRIu64 " pending)",
				         r->repaired, r->pending);
			else
				snprintf(rep, sizeof rep, "%" PRIu64, r->repaired);
		}
		if (r->own) {
			snprintf(epoch, sizeof epoch, "%" PRIu64, r->epoch);
			snprintf(commit, sizeof commit, "%" PRIu64, r->commit);
			snprintf(applied, sizeof applied, "%" PRIu64, r->applied);
		}
		if (r->view) {
			snprintf(lag, sizeof lag, "%" PRIu64, r->lag);
			if (r->contact_ms >= 0)
				snprintf(contact, sizeof contact, "%" PRId64, r->contact_ms);
		}
		if (!jsonl) {
			printf("%-6" PRIu64 " %-12s %8s %12s %12s %10s %16s %9s\n", r->id, r->role,
			       epoch, commit, applied, lag, contact, rep);
			continue;
		}
		/* JSON: null for what is not known */
#define J(s) (strcmp((s), "-") ? (s) : "null")
		printf("{\"id\":%" PRIu64 ",\"role\":", r->id);
		json_str(r->role);
		printf(",\"epoch\":%s,\"commit_lsn\":%s,\"applied_lsn\":%s,\"lag_entries\":%s,"
		       "\"last_contact_ms\":%s,\"repaired\":%s,\"repairs_pending\":%s}\n",
		       J(epoch), J(commit), J(applied), J(lag), J(contact), J(repaired), J(pending));
#undef J
	}
}

static int cluster_status(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"format", required_argument, NULL, 'f'},
	                                      CLI_COMMON_OPTS};
	bool jsonl = false;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		if (o == 'f') {
			if (!strcmp(optarg, "jsonl"))
				jsonl = true;
			else if (strcmp(optarg, "table"))
				return cli_usage_error("--format takes table or jsonl, not '%s'",
				                       optarg);
		}
	if (o == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("cluster status takes no arguments");
	static struct cstatus first, leader, other; /* a few KiB each */
	struct out_row rows[MAX_NODES];
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	int rc = fetch(c, &first, false);
	if (rc < 0) { /* jsonl: no object, stdout stays JSON (empty) */
		fprintf(jsonl ? stderr : stdout, "not a cluster: single node (%s)\n", sc_host(c));
		sc_close(c);
		return 0;
	}
	if (rc > 0) {
		sc_close(c);
		return rc;
	}
	/* The leader's view: the first reply when it came from the leader. */
	const struct cstatus *view = NULL;
	if (first.leader == first.node)
		view = &first;
	else if (first.leader && row_of(&first, first.leader) &&
	         fetch_at(row_of(&first, first.leader)->address, g, &leader) == 0 &&
	         leader.node == first.leader)
		view = &leader;
	uint32_t n = 0;
	for (uint32_t i = 0; i < first.n && n < MAX_NODES; i++) {
		const struct cnode *fr = &first.rows[i];
		struct out_row *r = &rows[n++];
		memset(r, 0, sizeof *r);
		r->id = fr->id;
		const struct cstatus *own = NULL;
		if (fr->id == first.node)
			own = &first;
		else if (view == &leader && fr->id == leader.node)
			own = &leader;
		else if (fetch_at(fr->address, g, &other) == 0 && other.node == fr->id)
			own = &other;
		const struct cnode *self = own ? row_of(own, fr->id) : NULL;
		if (self) {
			snprintf(r->role, sizeof r->role, "%s", self->role);
			r->own = true;
			r->epoch = own->epoch;
			r->commit = self->commit;
			r->applied = self->applied;
			r->repairs = own->repairs;
			r->repaired = own->repaired;
			r->pending = own->repair_pending;
		} else {
			snprintf(r->role, sizeof r->role, "unreachable");
			status = 1;
		}
		const struct cnode *v = view ? row_of(view, fr->id) : NULL;
		if (v) {
			r->view = true;
			r->lag = v->lag;
			r->contact_ms = v->contact_ms;
		}
	}
	print_rows(rows, n, jsonl);
	sc_close(c);
	return status;
}

static int cluster_transfer(int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"to", required_argument, NULL, 't'},
	                                      CLI_COMMON_OPTS};
	const char *to = NULL;
	uint64_t id = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0)
		if (o == 't')
			to = optarg;
	if (o == CLI_OPT_STOP)
		return status;
	if (optind != argc)
		return cli_usage_error("cluster transfer takes no arguments besides --to ID");
	if (!to)
		return cli_usage_error("cluster transfer needs --to ID (the node to lead)");
	if (!cli_parse_u64(to, &id) || id == 0)
		return cli_usage_error("--to takes a node id >= 1, not '%s'", to);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk = sc_begin(c, WIRE_CLUSTER_TRANSFER, 1);
	wire_key_u64(pk, WIRE_TRANSFER_Q_TO, id);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0)
		status = is_single(&e) ? cli_fail_msg("not a cluster: single node (%s)", sc_host(c))
		                       : cli_fail_wire(c, &e);
	else
		printf("leadership transfer to node %" PRIu64 " started (by the leader at %s)\n",
		       id, sc_host(c));
	sc_close(c);
	return status;
}

/* cluster add --id N --address ADDR [--client ADDR] | promote ID | remove ID:
 * CLUSTER_MEMBER at the leader (followed from any node). */
static int cluster_member(int op, int argc, char **argv, struct cli_global *g)
{
	static const struct option longs[] = {{"id", required_argument, NULL, 'i'},
	                                      {"address", required_argument, NULL, 'a'},
	                                      {"client", required_argument, NULL, 'C'},
	                                      {"accept-data-loss", no_argument, NULL, 'L'},
	                                      CLI_COMMON_OPTS};
	const char *ids = NULL, *addr = NULL, *client = NULL;
	bool accept = false;
	uint64_t id = 0;
	int status = 0, o;
	while ((o = cli_getopt(argc, argv, longs, g, &status)) > 0) {
		if (o == 'i')
			ids = optarg;
		else if (o == 'a')
			addr = optarg;
		else if (o == 'C')
			client = optarg;
		else if (o == 'L')
			accept = true;
	}
	if (o == CLI_OPT_STOP)
		return status;
	if (op == SD_CLI_FORCE) {
		if (optind != argc || ids || addr || client)
			return cli_usage_error("cluster force-promote takes only --accept-data-loss");
		if (!accept)
			return cli_usage_error("cluster force-promote makes --host the only voter and may "
			                       "lose acknowledged writes: say --accept-data-loss");
		ids = "0";
	} else if (accept) {
		return cli_usage_error("--accept-data-loss is force-promote's");
	} else if (op == SD_CLI_ADD) {
		if (optind != argc || !ids || !addr)
			return cli_usage_error("cluster add needs --id N --address tcp://HOST:PORT (the "
			                       "new node's cluster.peer_listen) [--client tcp://HOST:PORT]");
	} else {
		if (ids || addr || client || optind + 1 != argc)
			return cli_usage_error("cluster %s takes one node id", argv[0]);
		ids = argv[optind];
	}
	if (!cli_parse_u64(ids, &id) || (id == 0 && op != SD_CLI_FORCE))
		return cli_usage_error("a node id is an integer >= 1, not '%s'", ids);
	sc_client *c = cli_connect(g, &status);
	if (!c)
		return status;
	msgpack_packer *pk =
	    sc_begin(c, WIRE_CLUSTER_MEMBER, 2 + (addr != NULL) + (client != NULL) + accept);
	wire_key_u64(pk, WIRE_MEMBER_Q_OP, (uint64_t)op);
	wire_key_u64(pk, WIRE_MEMBER_Q_ID, id);
	if (addr)
		wire_key_str(pk, WIRE_MEMBER_Q_PEER, addr);
	if (client)
		wire_key_str(pk, WIRE_MEMBER_Q_CLIENT, client);
	if (accept)
		wire_key_bool(pk, WIRE_MEMBER_Q_ACCEPT_LOSS, true);
	const msgpack_object *b;
	struct wire_error e;
	if (sc_call(c, &b, &e) != 0) {
		status = is_single(&e) ? cli_fail_msg("not a cluster: single node (%s)", sc_host(c))
		                       : cli_fail_wire(c, &e);
	} else {
		const msgpack_object *m = wire_get(b, WIRE_MEMBER_R_MESSAGE);
		if (m && m->type == MSGPACK_OBJECT_STR)
			printf("%.*s (%s at %s)\n", (int)m->via.str.size, m->via.str.ptr,
			       op == SD_CLI_FORCE ? "by the node" : "by the leader", sc_host(c));
	}
	sc_close(c);
	return status;
}

int cli_cmd_cluster(int argc, char **argv, struct cli_global *g)
{
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		cli_cmd_usage(stdout);
		return 0;
	}
	if (argc < 2 || argv[1][0] == '-')
		return cli_usage_error("give a subcommand: status, transfer, add, promote, remove or force-promote");
	/* The subcommand parses the rest; argv[0] becomes its name. */
	if (!strcmp(argv[1], "status"))
		return cluster_status(argc - 1, argv + 1, g);
	if (!strcmp(argv[1], "transfer"))
		return cluster_transfer(argc - 1, argv + 1, g);
	if (!strcmp(argv[1], "add"))
		return cluster_member(SD_CLI_ADD, argc - 1, argv + 1, g);
	if (!strcmp(argv[1], "promote"))
		return cluster_member(SD_CLI_PROMOTE, argc - 1, argv + 1, g);
	if (!strcmp(argv[1], "remove"))
		return cluster_member(SD_CLI_REMOVE, argc - 1, argv + 1, g);
	if (!strcmp(argv[1], "force-promote"))
		return cluster_member(SD_CLI_FORCE, argc - 1, argv + 1, g);
	return cli_usage_error("unknown subcommand '%s' (status, transfer, add, promote, remove "
	                       "or force-promote)",
	                       argv[1]);
}
