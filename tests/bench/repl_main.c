/*
 * tests/bench/repl_main.c — the replication benchmark: a 3-node cluster of
 * stratad processes on loopback, driven through the client library.
 *
 *   bench-repl [--rows N] [--failovers N] [--quick] [--port-base P]
 *              [--stratad PATH] [--dir PATH]
 *
 * Node i (1..3) listens for clients on P+i (default P = 27420: 27421-27423)
 * and for peers on 27500 + 20 (i - 1) (P + 80 + 20 (i - 1)); a node uses
 * 17 ports from its peer port. The temp dir (mkdtemp, or --dir) holds the
 * configs, the data directories and each node's stderr (nodeI.log); it is
 * kept when something misbehaved, removed otherwise.
 *
 * Output: JSON lines {"bench":"repl","metric":NAME,"value":X,...}:
 *   quorum_vs_local_latency      median 1-row WRITE latency at quorum ÷ at
 *                                local (1 writer), with both medians (ms)
 *   quorum_vs_local_throughput   1-row WRITEs/s at quorum ÷ at local, 32
 *                                writer threads (one client each), ~3 s each
 *   failover_p50_ms/_p99_ms/_runs  kill -9 of the leader → first write
 *                                acknowledged after it, a writer following
 *                                ST_ENOTLEADER (else trying the others)
 *   acked_lost                   acknowledged ids missing or duplicated in a
 *                                scan of the final leader
 *   catchup_vs_ingest            rows/s of a restarted follower catching up
 *                                N rows ÷ single-node ingest rows/s of them
 *   repl_bytes_per_row_ratio     bytes the leader sent one follower per row
 *                                (CLUSTER_STATUS key 8) ÷ on-disk bytes per
 *                                row (DESCRIBE keys 8 and 7)
 *
 * The durability level goes in envelope key 7 (sc_set_env).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin/client.h"
#include "tests/bench/table.h"

#define NODES 3
#define NOTE "all three nodes (and the single node, and this client) share 2 cores and one disk; fsync on"

static char g_dir[4096];
static char g_stratad[4096];
static int g_port_base = 27420;
static pid_t g_pid[NODES + 1]; /* 1..3; [0] = the single node */
static bool g_keep;            /* keep the dir (--keep, or something misbehaved) */
static bool g_failed;          /* a daemon fault was seen: exit 1 */
static char g_cfg[NODES + 1][4200];
static char g_host[NODES + 1][128];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void kill_all(void)
{
	for (int i = 0; i <= NODES; i++)
		if (g_pid[i] > 0) {
			kill(g_pid[i], SIGKILL);
			waitpid(g_pid[i], NULL, 0);
			g_pid[i] = 0;
		}
}

static void at_exit(void)
{
	kill_all();
	if (g_dir[0] && !g_keep) {
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-repl: could not remove %s\n", g_dir);
	} else if (g_dir[0])
		fprintf(stderr, "bench-repl: kept %s (node logs nodeI.log)\n", g_dir);
}

static void on_signal(int sig)
{
	(void)sig;
	exit(3); /* runs at_exit */
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench-repl: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	g_keep = true;
	exit(1);
}

/* A daemon fault: reported, the dir kept, the run goes on. */
static void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fault(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench-repl: DAEMON PROBLEM: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	g_keep = g_failed = true;
}

/* ---- envelope key 7 ------------------------------------------------------ */

/* The durability of c's next state-changing requests (envelope key 7). */
static void with_durability(sc_client *c, uint32_t dur)
{
	sc_set_env(c, &(struct sc_env){.durability = dur});
}

/* ---- processes ----------------------------------------------------------- */

static int client_port(int i)
{
	return g_port_base + i;
}

static int peer_port(int i)
{
	return g_port_base == 27420 ? 27500 + 20 * (i - 1) : g_port_base + 80 + 20 * (i - 1);
}

static void write_configs(void)
{
	for (int i = 1; i <= NODES; i++) {
		snprintf(g_cfg[i], sizeof g_cfg[i], "%s/node%d.yaml", g_dir, i);
		snprintf(g_host[i], sizeof g_host[i], "tcp://127.0.0.1:%d", client_port(i));
		FILE *f = fopen(g_cfg[i], "w");
		if (!f)
			die("cannot write %s", g_cfg[i]);
		fprintf(f, "listen: [\"%s\"]\ndata_dir: \"%s/node%d\"\nfsync: on\nworkers: 32\nlog_level: info\n"
			   "cluster:\n  node_id: %d\n  cluster_id: \"5374726174614c6f6f706261636b3031\"\n"
			   "  peer_listen: \"tcp://127.0.0.1:%d\"\n  peers:\n",
			g_host[i], g_dir, i, i, peer_port(i));
		for (int j = 1; j <= NODES; j++)
			if (j != i)
				fprintf(f, "    - {id: %d, peer: \"tcp://127.0.0.1:%d\", client: "
					   "\"tcp://127.0.0.1:%d\"}\n", j, peer_port(j), client_port(j));
		fprintf(f, "  heartbeat: 100ms\n  election_timeout: 1s\n  durability: quorum\n"
			   "  write_timeout: 5s\n  max_staleness: 5s\n");
		fclose(f);
	}
	snprintf(g_cfg[0], sizeof g_cfg[0], "%s/single.yaml", g_dir);
	snprintf(g_host[0], sizeof g_host[0], "tcp://127.0.0.1:%d", client_port(4));
	FILE *f = fopen(g_cfg[0], "w");
	if (!f)
		die("cannot write %s", g_cfg[0]);
	fprintf(f, "listen: [\"%s\"]\ndata_dir: \"%s/single\"\nfsync: on\nworkers: 32\nlog_level: info\n",
		g_host[0], g_dir);
	fclose(f);
}

static void start_node(int i)
{
	char log[4300];
	snprintf(log, sizeof log, "%s/node%d.log", g_dir, i);
	if (i == 0)
		snprintf(log, sizeof log, "%s/single.log", g_dir);
	FILE *lf = fopen(log, "a");
	if (lf) {
		fprintf(lf, "==== bench-repl: %s -c %s\n", g_stratad, g_cfg[i]);
		fclose(lf);
	}
	pid_t p = fork();
	if (p < 0)
		die("fork: %s", strerror(errno));
	if (p == 0) {
		FILE *o = freopen(log, "a", stderr);
		if (o)
			dup2(2, 1);
		execl(g_stratad, g_stratad, "-c", g_cfg[i], (char *)NULL);
		fprintf(stderr, "cannot run %s: %s\n", g_stratad, strerror(errno));
		_exit(127);
	}
	g_pid[i] = p;
}

/* Check that node i's process still runs; report it when it died. */
static bool alive(int i)
{
	if (g_pid[i] <= 0)
		return false;
	int st;
	pid_t r = waitpid(g_pid[i], &st, WNOHANG);
	if (r == g_pid[i]) {
		fault("node %d (pid %d) exited on its own: %s %d%s (see %s/node%d.log)", i,
		      (int)g_pid[i], WIFSIGNALED(st) ? "signal" : "status",
		      WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
		      WIFEXITED(st) && WEXITSTATUS(st) == 0
			      ? " (stratad's clean stop: it got SIGTERM or SIGINT, which bench-repl "
				"sends only when it stops a follower for the catch-up)"
			      : "", g_dir, i);
		g_pid[i] = 0;
		return false;
	}
	return true;
}

static void stop_node(int i, int sig)
{
	if (g_pid[i] <= 0)
		return;
	kill(g_pid[i], sig);
	double t0 = now();
	int st;
	while (waitpid(g_pid[i], &st, WNOHANG) == 0) {
		if (now() - t0 > 20) {
			fault("node %d did not exit within 20 s of signal %d; killing it", i, sig);
			kill(g_pid[i], SIGKILL);
			waitpid(g_pid[i], &st, 0);
			break;
		}
		usleep(10000);
	}
	g_pid[i] = 0;
}

/* ---- requests ------------------------------------------------------------ */

struct node_status {
	char role[32];
	uint64_t epoch, node, leader, commit, applied;
};

static int get_status(const char *host, struct node_status *s, int timeout_ms)
{
	sc_client *c;
	struct wire_error e;
	if (sc_connect(host, timeout_ms, &c, &e) != 0)
		return -1;
	const msgpack_object *b;
	sc_begin(c, WIRE_STATUS, 0);
	int rc = sc_call(c, &b, &e);
	struct st_err err;
	memset(s, 0, sizeof *s);
	if (rc == 0) {
		wire_field_strbuf(b, NULL, WIRE_STATUS_R_ROLE, "role", s->role, sizeof s->role, &err);
		wire_field_u64(b, NULL, WIRE_STATUS_R_EPOCH, "epoch", &s->epoch, &err);
		wire_field_u64(b, NULL, WIRE_STATUS_R_NODE, "node", &s->node, &err);
		wire_field_u64(b, NULL, WIRE_STATUS_R_LEADER, "leader", &s->leader, &err);
		wire_field_u64(b, NULL, WIRE_STATUS_R_COMMIT_LSN, "commit", &s->commit, &err);
		wire_field_u64(b, NULL, WIRE_STATUS_R_APPLIED_LSN, "applied", &s->applied, &err);
	}
	sc_close(c);
	return rc == 0 ? 0 : -1;
}

/* Poll until one live node says it leads; its index, or 0 at the deadline. */
static int find_leader(double secs)
{
	double t0 = now();
	while (now() - t0 < secs) {
		for (int i = 1; i <= NODES; i++) {
			struct node_status s;
			if (g_pid[i] > 0 && alive(i) && get_status(g_host[i], &s, 500) == 0 &&
			    !strcmp(s.role, "leader"))
				return i;
		}
		usleep(50000);
	}
	return 0;
}

static void wait_ready(int i, double secs)
{
	double t0 = now();
	struct node_status s;
	while (get_status(g_host[i], &s, 500) != 0) {
		if (!alive(i))
			die("node %d died while starting", i);
		if (now() - t0 > secs)
			die("node %d did not answer STATUS on %s within %.0f s", i, g_host[i], secs);
		usleep(20000);
	}
}

/* Restart every node that died on its own (alive() reported it). */
static int revive(void)
{
	int n = 0;
	for (int i = 1; i <= NODES; i++)
		if (!alive(i)) {
			fprintf(stderr, "bench-repl: restarting node %d, which died on its own\n", i);
			start_node(i);
			n++;
		}
	for (int i = 1; i <= NODES; i++)
		wait_ready(i, 20);
	return n;
}

static sc_client *connect_or_die(const char *host, int timeout_ms)
{
	sc_client *c;
	struct wire_error e;
	double t0 = now();
	while (sc_connect(host, timeout_ms, &c, &e) != 0) {
		if (now() - t0 > 15)
			die("cannot connect to %s: %s", host, e.msg);
		usleep(50000);
	}
	return c;
}

static void call_or_die(sc_client *c, const char *what, const msgpack_object **b)
{
	struct wire_error e;
	if (sc_call(c, b, &e) != 0) {
		char m[700];
		sc_error_format(&e, m, sizeof m);
		die("%s on %s failed (code %d): %s", what, sc_host(c), e.code, m);
	}
}

static void create_table(sc_client *c, const char *name, const struct st_schema *s)
{
	msgpack_packer *pk = sc_begin(c, WIRE_CREATE, 2);
	wire_key_str(pk, WIRE_CREATE_Q_TABLE, name);
	msgpack_pack_uint32(pk, WIRE_CREATE_Q_COLUMNS);
	msgpack_pack_array(pk, s->nfields);
	for (uint32_t i = 0; i < s->nfields; i++) {
		msgpack_pack_array(pk, 3);
		wire_pack_str(pk, s->fields[i].name);
		msgpack_pack_uint32(pk, s->fields[i].type);
		s->fields[i].nullable ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
	}
	const msgpack_object *b;
	call_or_die(c, "CREATE", &b);
}

static struct st_field g_small_fields[1] = {{.id = 1, .type = ST_TYPE_INT64, .name = "id"}};
static const struct st_schema g_small = {1, g_small_fields};

/* One 1-row append of id to table r. */
static int write1(sc_client *c, int64_t id, uint32_t dur, struct wire_error *e)
{
	with_durability(c, dur);
	msgpack_packer *pk = sc_begin(c, WIRE_WRITE, 2);
	wire_key_str(pk, WIRE_WRITE_Q_TABLE, "r");
	msgpack_pack_uint32(pk, WIRE_WRITE_Q_BATCH);
	struct st_vec v = {.type = ST_TYPE_INT64, .n = 1, .data = &id};
	const char *names[1] = {"id"};
	wire_pack_batch(sc_out(c), 1, names, &v, NULL, 1);
	const msgpack_object *b;
	return sc_call(c, &b, e);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	if (n == 0)
		return -1;
	qsort(v, n, sizeof *v, cmp_double);
	size_t k = (size_t)(p * (double)(n - 1) + 0.5);
	return v[k < n ? k : n - 1];
}

/* Unique ids: every write attempt takes a new one. */
static _Atomic int64_t g_next_id = 1;

/* ---- 1. latency ---------------------------------------------------------- */

static double median_latency(const char *host, uint32_t dur, int n)
{
	sc_client *c = connect_or_die(host, 10000);
	double *t = malloc(sizeof(double) * (size_t)n);
	struct wire_error e;
	for (int i = 0; i < n + 5; i++) {
		double t0 = now();
		if (write1(c, atomic_fetch_add(&g_next_id, 1), dur, &e) != 0)
			die("1-row WRITE (durability %u) failed on %s: %s (code %d)", dur, host, e.msg,
			    e.code);
		if (i >= 5) /* 5 warm-up writes */
			t[i - 5] = now() - t0;
	}
	sc_close(c);
	double m = pct(t, (size_t)n, 0.5);
	free(t);
	return m * 1e3;
}

/* ---- 2. throughput ------------------------------------------------------- */

struct tp_arg {
	const char *host;
	uint32_t dur;
	double secs;
	uint64_t ok, failed;
	pthread_barrier_t *bar;
};

static void *tp_thread(void *p)
{
	struct tp_arg *a = p;
	sc_client *c = connect_or_die(a->host, 10000);
	pthread_barrier_wait(a->bar);
	struct wire_error e;
	double t0 = now();
	while (now() - t0 < a->secs) {
		if (write1(c, atomic_fetch_add(&g_next_id, 1), a->dur, &e) == 0)
			a->ok++;
		else
			a->failed++;
	}
	sc_close(c);
	return NULL;
}

static double throughput(const char *host, uint32_t dur, int threads, double secs,
			 uint64_t *failed)
{
	pthread_t th[64];
	struct tp_arg a[64];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		a[i] = (struct tp_arg){host, dur, secs, 0, 0, &bar};
		pthread_create(&th[i], NULL, tp_thread, &a[i]);
	}
	pthread_barrier_wait(&bar);
	double t0 = now();
	uint64_t ok = 0;
	*failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		ok += a[i].ok;
		*failed += a[i].failed;
	}
	double dt = now() - t0;
	pthread_barrier_destroy(&bar);
	return (double)ok / dt;
}

/* ---- 3. failover --------------------------------------------------------- */

struct acked {
	int64_t *ids;
	size_t n, cap;
};

static struct {
	pthread_mutex_t mu;
	struct acked acked;
	double last_ack;      /* time of the latest acknowledgement */
	double last_sent;     /* when the write it acknowledged was sent */
	atomic_bool stop;
	uint64_t errors[8];   /* by kind: 0 notleader, 1 timeout, 2 unavail, 3 other */
	char last_error[600];
} g_fw = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int host_index(const char *addr)
{
	for (int i = 1; i <= NODES; i++)
		if (!strcmp(addr, g_host[i]))
			return i;
	return 0;
}

/* The failover writer's request timeout; a node that timed out is
 * avoided for FO_AVOID_S even when a follower still names it leader. */
#define FO_TIMEOUT_MS 300
#define FO_AVOID_S 0.5

static void *failover_writer(void *p)
{
	(void)p;
	int at = 1;
	double bad_until[NODES + 1] = {0};
	sc_client *c = NULL;
	struct wire_error e;
	while (!atomic_load(&g_fw.stop)) {
		if (!c && sc_connect(g_host[at], FO_TIMEOUT_MS, &c, &e) != 0) {
			c = NULL;
			bad_until[at] = now() + FO_AVOID_S;
			at = at % NODES + 1;
			usleep(5000);
			continue;
		}
		int64_t id = atomic_fetch_add(&g_next_id, 1);
		double ts = now();
		int rc = write1(c, id, WIRE_DUR_QUORUM, &e);
		if (rc == 0) {
			double t = now();
			pthread_mutex_lock(&g_fw.mu);
			struct acked *a = &g_fw.acked;
			if (a->n == a->cap) {
				a->cap = a->cap ? 2 * a->cap : 4096;
				a->ids = realloc(a->ids, a->cap * sizeof *a->ids);
				if (!a->ids)
					die("out of memory");
			}
			a->ids[a->n++] = id;
			g_fw.last_ack = t;
			g_fw.last_sent = ts;
			pthread_mutex_unlock(&g_fw.mu);
			continue;
		}
		pthread_mutex_lock(&g_fw.mu);
		g_fw.errors[rc == ST_ENOTLEADER ? 0 : rc == ETIMEDOUT ? 1 : rc == ST_EUNAVAIL ? 2 : 3]++;
		snprintf(g_fw.last_error, sizeof g_fw.last_error, "%s: code %d %s", g_host[at], rc,
			 e.msg);
		pthread_mutex_unlock(&g_fw.mu);
		if (rc != ST_ENOTLEADER && rc != ST_EUNAVAIL) {
			bad_until[at] = now() + FO_AVOID_S;
			sc_close(c); /* a timed-out REQ socket: start afresh */
			c = NULL;
		}
		int next = rc == ST_ENOTLEADER && e.leader[0] ? host_index(e.leader) : 0;
		if (next && bad_until[next] > now())
			next = 0; /* a stale leader address: it just timed out */
		if (!next || next == at) {
			/* no (usable) leader known: the next node that did not time out */
			next = at % NODES + 1;
			if (bad_until[next] > now())
				next = next % NODES + 1;
			usleep(5000);
		}
		if (next != at) {
			sc_close(c);
			c = NULL;
			at = next;
		}
	}
	sc_close(c);
	return NULL;
}

/* Time of the latest acknowledgement; *sent = when its write was sent. */
static double last_ack(size_t *n, double *sent)
{
	pthread_mutex_lock(&g_fw.mu);
	double t = g_fw.last_ack;
	if (sent)
		*sent = g_fw.last_sent;
	if (n)
		*n = g_fw.acked.n;
	pthread_mutex_unlock(&g_fw.mu);
	return t;
}

/* Wait until node i's applied LSN reaches `lsn`. Returns seconds, or -1. */
static double wait_applied(int i, uint64_t lsn, double secs, uint64_t *got)
{
	double t0 = now();
	struct node_status s = {0};
	for (;;) {
		if (get_status(g_host[i], &s, 1000) == 0 && s.applied >= lsn) {
			*got = s.applied;
			return now() - t0;
		}
		*got = s.applied;
		if (!alive(i) || now() - t0 > secs)
			return -1;
		usleep(5000);
	}
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Every id of table r on host, sorted. */
static int64_t *scan_ids(const char *host, size_t *n)
{
	sc_client *c = connect_or_die(host, 30000);
	size_t cap = 1 << 16, len = 0;
	int64_t *ids = malloc(cap * sizeof *ids);
	msgpack_packer *pk = sc_begin(c, WIRE_SCAN, 2);
	wire_key_str(pk, WIRE_SCAN_Q_TABLE, "r");
	msgpack_pack_uint32(pk, WIRE_SCAN_Q_COLUMNS);
	msgpack_pack_array(pk, 1);
	wire_pack_str(pk, "id");
	const msgpack_object *b;
	call_or_die(c, "SCAN", &b);
	for (int first = 1;; first = 0) {
		struct st_err err;
		const msgpack_object *bo = NULL;
		uint64_t cursor = 0;
		wire_field_u64(b, NULL, first ? WIRE_SCAN_R_CURSOR : WIRE_SCAN_NEXT_R_CURSOR, "cursor",
			       &cursor, &err);
		if (wire_field_map(b, NULL, first ? WIRE_SCAN_R_BATCH : WIRE_SCAN_NEXT_R_BATCH,
				   "batch", &bo, &err) == 1) {
			struct wire_batch wb;
			if (wire_batch_decode(bo, UINT32_MAX, &wb, &err) != ST_OK)
				die("a scan batch does not decode: %s", err.msg);
			const int64_t *v = wb.cols[0].data;
			for (uint32_t r = 0; r < wb.nrows; r++) {
				if (len == cap)
					ids = realloc(ids, (cap *= 2) * sizeof *ids);
				ids[len++] = v[r];
			}
			wire_batch_fini(&wb);
		}
		if (!cursor)
			break;
		pk = sc_begin(c, WIRE_SCAN_NEXT, 1);
		wire_key_u64(pk, WIRE_SCAN_NEXT_Q_CURSOR, cursor);
		call_or_die(c, "SCAN_NEXT", &b);
	}
	sc_close(c);
	qsort(ids, len, sizeof *ids, cmp_i64);
	*n = len;
	return ids;
}

/* ---- 4. bulk load -------------------------------------------------------- */

static const char *const g_bench_names[4] = {"id", "ts", "sensor", "value"};

/* Load t's rows into table t on c at durability dur (0: none named);
 * returns the seconds from LOAD_BEGIN to LOAD_COMMIT's reply. */
static double load_rows(sc_client *c, const struct bench_table *t, uint32_t dur)
{
	uint32_t per = sc_server(c)->max_batch_rows;
	if (per > 65536)
		per = 65536;
	struct st_vec cols[4];
	bench_table_vecs(t, 0, 0, cols);
	double t0 = now();
	if (dur)
		with_durability(c, dur);
	msgpack_packer *pk = sc_begin(c, WIRE_LOAD_BEGIN, 2);
	wire_key_str(pk, WIRE_LOAD_BEGIN_Q_TABLE, "t");
	msgpack_pack_uint32(pk, WIRE_LOAD_BEGIN_Q_HEADER);
	wire_pack_batch(sc_out(c), 4, g_bench_names, cols, NULL, 0);
	const msgpack_object *b;
	call_or_die(c, "LOAD_BEGIN", &b);
	uint64_t id = 0;
	struct st_err err;
	if (wire_field_u64(b, NULL, WIRE_LOAD_BEGIN_R_ID, "load id", &id, &err) != 1)
		die("LOAD_BEGIN's reply has no load id");
	uint64_t no = 0;
	for (uint64_t at = 0; at < t->n;) {
		uint32_t n = t->n - at < per ? (uint32_t)(t->n - at) : per;
		bench_table_vecs(t, at, n, cols);
		while (n > 1 && wire_batch_bytes(4, g_bench_names, cols, NULL, n) + 4096 >
					sc_server(c)->max_message_size) {
			n /= 2;
			bench_table_vecs(t, at, n, cols);
		}
		pk = sc_begin(c, WIRE_LOAD_DATA, 3);
		wire_key_u64(pk, WIRE_LOAD_DATA_Q_ID, id);
		wire_key_u64(pk, WIRE_LOAD_DATA_Q_NUMBER, no++);
		msgpack_pack_uint32(pk, WIRE_LOAD_DATA_Q_BATCH);
		wire_pack_batch(sc_out(c), 4, g_bench_names, cols, NULL, n);
		call_or_die(c, "LOAD_DATA", &b);
		at += n;
	}
	pk = sc_begin(c, WIRE_LOAD_COMMIT, 1);
	if (dur)
		with_durability(c, dur);
	wire_key_u64(pk, WIRE_LOAD_END_Q_ID, id);
	call_or_die(c, "LOAD_COMMIT", &b);
	return now() - t0;
}

/* CLUSTER_STATUS on c: bytes sent to node `peer` (key 8 of its row). */
static uint64_t bytes_sent_to(sc_client *c, int peer)
{
	sc_begin(c, WIRE_CLUSTER_STATUS, 0);
	const msgpack_object *b, *nodes = NULL;
	call_or_die(c, "CLUSTER_STATUS", &b);
	struct st_err err;
	if (wire_field_array(b, NULL, WIRE_CLUSTER_R_NODES, "nodes", &nodes, &err) != 1)
		die("CLUSTER_STATUS has no nodes");
	for (uint32_t i = 0; i < nodes->via.array.size; i++) {
		const msgpack_object *row = &nodes->via.array.ptr[i];
		uint64_t id = 0, bytes = 0;
		wire_field_u64(row, NULL, WIRE_CNODE_ID, "id", &id, &err);
		if (id != (uint64_t)peer)
			continue;
		if (wire_field_u64(row, NULL, WIRE_CNODE_BYTES_SENT, "bytes sent", &bytes, &err) != 1)
			die("CLUSTER_STATUS's row of node %d has no bytes sent (key 8)", peer);
		return bytes;
	}
	die("CLUSTER_STATUS has no row for node %d", peer);
}

static void describe_t(sc_client *c, uint64_t *rows, uint64_t *bytes)
{
	msgpack_packer *pk = sc_begin(c, WIRE_DESCRIBE, 1);
	wire_key_str(pk, WIRE_DESCRIBE_Q_TABLE, "t");
	const msgpack_object *b;
	call_or_die(c, "DESCRIBE", &b);
	struct st_err err;
	if (wire_field_u64(b, NULL, WIRE_DESCRIBE_R_ROWS, "rows", rows, &err) != 1 ||
	    wire_field_u64(b, NULL, WIRE_DESCRIBE_R_BYTES, "bytes", bytes, &err) != 1)
		die("DESCRIBE's reply lacks rows or bytes");
}

static void metric(const char *name, double v, const char *extra)
{
	printf("{\"bench\":\"repl\",\"metric\":\"%s\",\"value\":%.6g%s%s,\"note\":\"%s\"}\n", name, v,
	       extra && *extra ? "," : "", extra ? extra : "", NOTE);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {{"rows", required_argument, NULL, 'r'},
					      {"failovers", required_argument, NULL, 'f'},
					      {"quick", no_argument, NULL, 'q'},
					      {"port-base", required_argument, NULL, 'p'},
					      {"stratad", required_argument, NULL, 's'},
					      {"dir", required_argument, NULL, 'd'},
					      {"keep", no_argument, NULL, 'k'},
					      {"help", no_argument, NULL, 'h'},
					      {NULL, 0, NULL, 0}};
	uint64_t rows = 10000000;
	int failovers = 20, lat_n = 300;
	double tp_secs = 3;
	bool rows_set = false, fo_set = false, quick = false;
	const char *dir = NULL;
	g_stratad[0] = 0;
	int o;
	while ((o = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (o) {
		case 'r': rows = strtoull(optarg, NULL, 10); rows_set = true; break;
		case 'f': failovers = atoi(optarg); fo_set = true; break;
		case 'q': quick = true; break;
		case 'p': g_port_base = atoi(optarg) - 1; break;
		case 's': snprintf(g_stratad, sizeof g_stratad, "%s", optarg); break;
		case 'd': dir = optarg; break;
		case 'k': g_keep = true; break;
		default:
			printf("usage: bench-repl [--rows N] [--failovers N] [--quick] [--port-base P]\n"
			       "                  [--stratad PATH] [--dir PATH] [--keep]\n"
			       "A 3-node stratad cluster on loopback: quorum vs local latency and\n"
			       "throughput, failover time, acknowledged writes lost, catch-up vs\n"
			       "ingest, replication bytes per row. Client ports P..P+2 (27421).\n"
			       "--keep keeps the directory (configs, data, node logs) after a clean run.\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (quick) {
		if (!rows_set)
			rows = 200000;
		if (!fo_set)
			failovers = 3;
		lat_n = 50;
		tp_secs = 1;
	}
	if (rows == 0 || failovers < 1)
		die("--rows and --failovers must be at least 1");
	if (!g_stratad[0]) {
		char self[4096];
		snprintf(self, sizeof self, "%s", argv[0]);
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = 0;
		snprintf(g_stratad, sizeof g_stratad, "%s/stratad", slash ? self : ".");
	}
	if (access(g_stratad, X_OK) != 0)
		die("%s is not executable (--stratad PATH)", g_stratad);
	if (dir) {
		snprintf(g_dir, sizeof g_dir, "%s", dir);
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
		if (system(cmd) != 0)
			die("cannot create %s", dir);
	} else {
		snprintf(g_dir, sizeof g_dir, "/tmp/bench-repl.XXXXXX");
		if (!mkdtemp(g_dir))
			die("mkdtemp: %s", strerror(errno));
	}
	atexit(at_exit);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "bench-repl: dir %s, stratad %s, %" PRIu64 " rows, %d failovers\n", g_dir,
		g_stratad, rows, failovers);

	write_configs();
	for (int i = 1; i <= NODES; i++)
		start_node(i);
	for (int i = 1; i <= NODES; i++)
		wait_ready(i, 15);
	int L = find_leader(20);
	if (!L)
		die("no leader elected within 20 s");
	fprintf(stderr, "bench-repl: leader node %d\n", L);
	sc_client *c = connect_or_die(g_host[L], 30000);
	create_table(c, "r", &g_small);
	sc_close(c);

	/* 1. latency. */
	double lat_local = median_latency(g_host[L], WIRE_DUR_LOCAL, lat_n);
	double lat_quorum = median_latency(g_host[L], WIRE_DUR_QUORUM, lat_n);
	char x[512];
	snprintf(x, sizeof x, "\"writes\":%d,\"what\":\"median of 1-row WRITE latencies on the "
		 "leader, 1 writer, quorum / local\"", lat_n);
	metric("quorum_vs_local_latency", lat_quorum / lat_local, x);
	snprintf(x, sizeof x, "\"writes\":%d", lat_n);
	metric("local_latency_p50_ms", lat_local, x);
	metric("quorum_latency_p50_ms", lat_quorum, x);

	/* 2. throughput. */
	uint64_t fl, fq;
	double tp_local = throughput(g_host[L], WIRE_DUR_LOCAL, 32, tp_secs, &fl);
	double tp_quorum = throughput(g_host[L], WIRE_DUR_QUORUM, 32, tp_secs, &fq);
	if (fl || fq)
		fault("%" PRIu64 " local and %" PRIu64 " quorum writes failed during the "
		      "throughput runs (a healthy leader)", fl, fq);
	snprintf(x, sizeof x, "\"threads\":32,\"seconds\":%.1f,\"local_per_s\":%.0f,"
		 "\"quorum_per_s\":%.0f,\"failed_local\":%" PRIu64 ",\"failed_quorum\":%" PRIu64,
		 tp_secs, tp_local, tp_quorum, fl, fq);
	metric("quorum_vs_local_throughput", tp_quorum / tp_local, x);

	/* 3. failover. */
	pthread_t w;
	pthread_create(&w, NULL, failover_writer, NULL);
	double *fo = calloc((size_t)failovers, sizeof *fo);
	int runs = 0, no_ack = 0;
	int revived = 0;
	for (int r = 0; r < failovers; r++) {
		revived += revive();
		/* A steady state: a leader and writes being acknowledged. */
		double t0 = now();
		size_t n0, n1;
		last_ack(&n0, NULL);
		for (;;) {
			last_ack(&n1, NULL);
			if (n1 >= n0 + 20)
				break;
			if (now() - t0 > 30) {
				fault("run %d: no writes acknowledged for 30 s before the kill (last "
				      "error: %s)", r, g_fw.last_error);
				break;
			}
			usleep(5000);
		}
		L = find_leader(20);
		if (!L) {
			fault("run %d: no leader within 20 s", r);
			break;
		}
		double tk = now();
		kill(g_pid[L], SIGKILL);
		waitpid(g_pid[L], NULL, 0);
		g_pid[L] = 0;
		/* The first acknowledgement of a write sent after the kill (a reply
		 * in flight at the kill does not count). */
		double ta, sent = 0;
		while ((ta = last_ack(NULL, &sent)), sent <= tk && now() - tk < 30)
			usleep(1000);
		if (sent <= tk) {
			no_ack++;
			fault("run %d: no write acknowledged within 30 s of kill -9 of leader node %d "
			      "(last error: %s)", r, L, g_fw.last_error);
		} else
			fo[runs++] = (ta - tk) * 1e3;
		if (sent > tk)
			fprintf(stderr, "bench-repl: failover %d: leader %d killed, %.1f ms\n", r, L,
				(ta - tk) * 1e3);
		start_node(L);
		wait_ready(L, 20);
		revived += revive();
		int nl = find_leader(20);
		struct node_status s;
		if (!nl || get_status(g_host[nl], &s, 2000) != 0) {
			fault("run %d: no leader after restarting node %d", r, L);
			continue;
		}
		uint64_t got;
		if (wait_applied(L, s.applied, 60, &got) < 0)
			fault("run %d: restarted node %d's applied LSN %" PRIu64 " did not reach the "
			      "leader's %" PRIu64 " within 60 s", r, L, got, s.applied);
	}
	atomic_store(&g_fw.stop, true);
	pthread_join(w, NULL);
	double p50 = pct(fo, (size_t)runs, 0.5), p99 = pct(fo, (size_t)runs, 0.99);
	snprintf(x, sizeof x, "\"runs\":%d,\"what\":\"kill -9 of the leader to the "
		 "acknowledgement of the first quorum write sent after it, as one client sees it "
		 "(request timeout 300 ms; follows ST_ENOTLEADER unless it names a node that timed out in the last 0.5 s, else tries the next node); election_timeout 1s, "
		 "heartbeat 100ms\"", runs);
	metric("failover_p50_ms", p50, x);
	metric("failover_p99_ms", p99, x);
	snprintf(x, sizeof x, "\"runs_without_ack\":%d,\"nodes_restarted_after_dying_on_their_own\":%d",
		 no_ack, revived);
	metric("failover_runs", runs, x);

	/* acked_lost: on the final leader. */
	revive();
	L = find_leader(20);
	if (!L)
		die("no leader for the final scan");
	size_t nscan;
	int64_t *scan = scan_ids(g_host[L], &nscan);
	struct acked *a = &g_fw.acked;
	qsort(a->ids, a->n, sizeof *a->ids, cmp_i64);
	uint64_t missing = 0, dup = 0, total_dup = 0;
	for (size_t i = 0, j = 0; i < a->n; i++) {
		while (j < nscan && scan[j] < a->ids[i])
			j++;
		size_t k = j;
		while (k < nscan && scan[k] == a->ids[i])
			k++;
		if (k == j)
			missing++;
		else if (k - j > 1)
			dup += k - j - 1;
	}
	for (size_t i = 1; i < nscan; i++)
		total_dup += scan[i] == scan[i - 1];
	if (missing || dup)
		fault("%" PRIu64 " acknowledged ids missing and %" PRIu64 " duplicated on leader node %d",
		      missing, dup, L);
	snprintf(x, sizeof x, "\"acked\":%zu,\"missing\":%" PRIu64 ",\"duplicated\":%" PRIu64
		 ",\"rows_scanned\":%zu,\"duplicates_any_id\":%" PRIu64 ",\"writer_errors\":{"
		 "\"notleader\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"unavail\":%" PRIu64
		 ",\"other\":%" PRIu64 "}", a->n, missing, dup, nscan, total_dup, g_fw.errors[0],
		 g_fw.errors[1], g_fw.errors[2], g_fw.errors[3]);
	metric("acked_lost", (double)(missing + dup), x);
	free(scan);

	/* 4. catch-up and bytes per row. */
	struct bench_table t;
	fprintf(stderr, "bench-repl: generating %" PRIu64 " rows\n", rows);
	if (bench_table_init(&t, rows) != 0)
		die("out of memory for %" PRIu64 " rows", rows);
	int F = L % NODES + 1, K = F % NODES + 1; /* F stopped, K keeps running */
	if (K == L)
		K = K % NODES + 1;
	revive();
	if (!(L = find_leader(20)))
		die("no leader for the catch-up part");
	F = L % NODES + 1, K = F % NODES + 1;
	if (K == L)
		K = K % NODES + 1;
	c = connect_or_die(g_host[L], 120000);
	create_table(c, "t", &t.schema);
	stop_node(F, SIGTERM);
	uint64_t b0 = bytes_sent_to(c, K);
	fprintf(stderr, "bench-repl: node %d stopped; loading into leader %d\n", F, L);
	double load_s = load_rows(c, &t, WIRE_DUR_QUORUM);
	uint64_t b1 = bytes_sent_to(c, K);
	uint64_t drows, dbytes;
	describe_t(c, &drows, &dbytes);
	if (drows != rows)
		fault("DESCRIBE t says %" PRIu64 " rows after loading %" PRIu64, drows, rows);
	struct node_status ls;
	if (get_status(g_host[L], &ls, 5000) != 0)
		die("leader node %d does not answer STATUS after the load", L);
	sc_close(c);
	double tc = now();
	start_node(F);
	uint64_t got;
	double catch_s = wait_applied(F, ls.applied, 120, &got);
	bool caught_up = catch_s >= 0;
	if (!caught_up)
		fault("restarted node %d reached applied LSN %" PRIu64 ", not the leader's %" PRIu64
		      " within 120 s", F, got, ls.applied);
	catch_s = now() - tc;
	/* The caught-up follower must hold the rows, not only the LSN. */
	if (caught_up) {
		c = connect_or_die(g_host[F], 30000);
		uint64_t frows = 0, fbytes = 0;
		describe_t(c, &frows, &fbytes);
		sc_close(c);
		if (frows != rows)
			fault("caught-up follower node %d: DESCRIBE t says %" PRIu64 " rows, not %" PRIu64,
			      F, frows, rows);
	}

	/* Single-node ingest of the same rows. */
	start_node(0);
	wait_ready(0, 15);
	c = connect_or_die(g_host[0], 120000);
	create_table(c, "t", &t.schema);
	double single_s = load_rows(c, &t, 0);
	sc_close(c);
	stop_node(0, SIGTERM);

	double catch_rps = (double)rows / catch_s, single_rps = (double)rows / single_s;
	snprintf(x, sizeof x, "\"caught_up\":%s,\"rows\":%" PRIu64 ",\"catchup_s\":%.3f,\"catchup_rows_per_s\":%.0f,"
		 "\"single_ingest_s\":%.3f,\"single_ingest_rows_per_s\":%.0f,\"cluster_load_s\":%.3f,"
		 "\"what\":\"catch-up = start of the stopped follower's process (stratad start-up "
		 "included) to its applied LSN equal to the leader's after the load; ingest = "
		 "LOAD_BEGIN to LOAD_COMMIT's reply on a fresh single-node stratad, same rows, "
		 "same client code (batches of up to 65536 rows)\"",
		 caught_up ? "true" : "false", rows, catch_s, catch_rps, single_s, single_rps, load_s);
	metric("catchup_vs_ingest", caught_up ? catch_rps / single_rps : -1, x);
	double sent_per_row = (double)(b1 - b0) / (double)rows;
	double disk_per_row = (double)dbytes / (double)drows;
	snprintf(x, sizeof x, "\"rows\":%" PRIu64 ",\"sent_bytes\":%" PRIu64 ",\"to_node\":%d,"
		 "\"sent_per_row\":%.3f,\"disk_bytes\":%" PRIu64 ",\"disk_per_row\":%.3f,"
		 "\"what\":\"CLUSTER_STATUS key 8 (peer-link messages and the segment chunks the "
		 "follower fetched) per row, over DESCRIBE's bytes per row\"", rows, b1 - b0, K,
		 sent_per_row, dbytes, disk_per_row);
	metric("repl_bytes_per_row_ratio", sent_per_row / disk_per_row, x);
	bench_table_fini(&t);

	/* 5. Is envelope key 7 honoured? Both followers killed: a local write
	 * must succeed, a quorum write must not. */
	stop_node(F, SIGKILL);
	stop_node(K, SIGKILL);
	c = connect_or_die(g_host[L], 15000);
	struct wire_error e1, e2;
	double t1 = now();
	int rc1 = write1(c, atomic_fetch_add(&g_next_id, 1), WIRE_DUR_LOCAL, &e1);
	double t2 = now();
	int rc2 = write1(c, atomic_fetch_add(&g_next_id, 1), WIRE_DUR_QUORUM, &e2);
	double t3 = now();
	sc_close(c);
	if (rc1 != 0 || rc2 == 0)
		fault("with both followers killed, a local write on leader node %d gave code %d (%s) "
		      "and a quorum write code %d (%s)", L, rc1, rc1 ? e1.msg : "ok", rc2,
		      rc2 ? e2.msg : "ok");
	snprintf(x, sizeof x, "\"what\":\"both followers killed: 1 = a local write succeeded and a "
		 "quorum write failed\",\"local_code\":%d,\"local_ms\":%.1f,\"quorum_code\":%d,"
		 "\"quorum_ms\":%.1f", rc1, (t2 - t1) * 1e3, rc2, (t3 - t2) * 1e3);
	metric("durability_key_check", rc1 == 0 && rc2 != 0, x);
	return g_failed ? 1 : 0;
}
