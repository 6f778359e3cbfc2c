/*
 * tests/integration/wire_abuse.c — hostile and careless clients against a
 * running stratad (started by tests/integration/cli.sh).
 *
 *   wire_abuse HOST TABLE
 *
 * garbage bytes, msgpack that is not a map, an envelope of a newer protocol
 * version, a state-changing request without a client id, a message above
 * the daemon's NN_RCVMAXSIZE, a batch whose lengths lie, and a client that
 * vanishes in the middle of a load (TABLE must be an existing table with
 * the benchmark schema; the load must never show up). After each, a new
 * client must still be served. Closes with "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/client.h"
#include "format/transport.h"
#include "format/wire.h"

static int passed, failed;
static const char *host;

static void check(bool cond, const char *name)
{
	printf("%s %s\n", cond ? "ok  " : "FAIL", name);
	if (cond)
		passed++;
	else
		failed++;
}

/* Send raw bytes on a fresh REQ socket; return the error code of the
 * reply, 0 if it was no error, or -1 when no reply came. */
static int raw(const void *buf, size_t len, size_t max_msg)
{
	int sock, code = -1;
	struct st_err err;
	void *rep;
	size_t rlen;
	if (tp_connect(host, 2000, max_msg, &sock, &err) != ST_OK)
		return -1;
	if (tp_call(sock, buf, len, max_msg, &rep, &rlen, &err) == ST_OK) {
		struct wire_msg m;
		if (wire_parse(rep, rlen, &m, &err) == ST_OK) {
			struct wire_error e = {0};
			if (m.error)
				wire_error_decode(m.error, &e);
			code = m.error ? e.code : 0;
		}
		wire_msg_fini(&m);
		tp_free(rep);
	}
	tp_close(sock);
	return code;
}

static bool still_serves(void)
{
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) != 0)
		return false;
	sc_begin(c, WIRE_PING, 0);
	bool ok = sc_call(c, &b, &e) == 0;
	sc_close(c);
	return ok;
}

/* An envelope {0 version, 1 id, 2 type, 3 body} with an empty body. */
static size_t envelope(msgpack_sbuffer *sb, uint32_t version, int type, bool client)
{
	msgpack_packer pk;
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, client ? 6 : 4);
	wire_key_u64(&pk, 0, version);
	wire_key_u64(&pk, 1, 1);
	wire_key_u64(&pk, 2, (uint64_t)type);
	msgpack_pack_uint32(&pk, 3);
	msgpack_pack_map(&pk, 0);
	if (client) {
		msgpack_pack_uint32(&pk, 5);
		msgpack_pack_bin(&pk, WIRE_CLIENT_ID_LEN);
		msgpack_pack_bin_body(&pk, "0123456789abcdef", WIRE_CLIENT_ID_LEN);
		wire_key_u64(&pk, 6, 1);
	}
	return sb->size;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: wire_abuse HOST TABLE\n");
		return 2;
	}
	host = argv[1];
	const char *table = argv[2];
	msgpack_sbuffer sb;

	check(raw("\xc1garbage\xff\x00", 10, 1 << 20) == ST_EPROTO, "garbage bytes: ST_EPROTO reply");
	check(still_serves(), "served after garbage");
	check(raw("\x93\x01\x02\x03", 4, 1 << 20) == ST_EPROTO, "msgpack array: ST_EPROTO reply");
	check(raw("", 0, 1 << 20) == ST_EPROTO, "empty message: ST_EPROTO reply");
	envelope(&sb, 99, WIRE_PING, false);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EVERSION, "protocol version 99: ST_EVERSION");
	msgpack_sbuffer_destroy(&sb);
	envelope(&sb, 1, WIRE_DROP, false);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EPROTO, "DROP without client id: ST_EPROTO");
	msgpack_sbuffer_destroy(&sb);
	envelope(&sb, 1, 77, true);
	check(raw(sb.data, sb.size, 1 << 20) == ST_EPROTO, "unknown type: ST_EPROTO");
	msgpack_sbuffer_destroy(&sb);

	/* Above the daemon's limit: nanomsg drops it; no reply, no harm. */
	char *huge = calloc(1, 20u << 20);
	check(huge && raw(huge, 20u << 20, 64u << 20) == -1, "20 MiB message: dropped, no reply");
	free(huge);
	check(still_serves(), "served after an oversized message");

	/* A batch whose lengths lie. */
	sc_client *c;
	struct wire_error e;
	const msgpack_object *b;
	if (sc_connect(host, 5000, &c, &e) != 0) {
		check(false, "connect");
		goto out;
	}
	msgpack_packer *pk = sc_begin(c, WIRE_WRITE, 2);
	wire_key_str(pk, 0, table);
	msgpack_pack_uint32(pk, 2);
	msgpack_pack_map(pk, 2);
	wire_key_u64(pk, 0, 5); /* 5 rows ... */
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	wire_key_str(pk, 0, "id");
	wire_key_u64(pk, 1, 3);
	msgpack_pack_uint32(pk, 3);
	msgpack_pack_bin(pk, 8); /* ... but the bytes of one */
	msgpack_pack_bin_body(pk, "\1\0\0\0\0\0\0\0", 8);
	check(sc_call(c, &b, &e) == ST_EPROTO, "batch with lying lengths: ST_EPROTO");

	/* Vanish in the middle of a load: begin, send a batch, close. */
	int64_t ids[100];
	for (int i = 0; i < 100; i++)
		ids[i] = 1000000 + i;
	struct st_vec col = {.type = 3, .n = 100, .data = ids};
	const char *names[1] = {"id"};
	pk = sc_begin(c, WIRE_LOAD_BEGIN, 3);
	wire_key_str(pk, 0, table);
	msgpack_pack_uint32(pk, 1);
	msgpack_pack_map(pk, 0);
	msgpack_pack_uint32(pk, 2);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 0);
	uint64_t load = 0;
	bool began = sc_call(c, &b, &e) == 0 && wire_get_u64(b, 0, &load);
	check(began, "LOAD_BEGIN");
	pk = sc_begin(c, WIRE_LOAD_DATA, 3);
	wire_key_u64(pk, 0, load);
	wire_key_u64(pk, 2, 0);
	msgpack_pack_uint32(pk, 1);
	wire_pack_batch(sc_out(c), 1, names, &col, NULL, 100);
	check(sc_call(c, &b, &e) == 0, "LOAD_DATA");
	sc_close(c); /* gone without LOAD_COMMIT or LOAD_ABORT */

	/* The daemon expires it (cursor_timeout, 2 s in the test config). */
	bool expired = false;
	for (int i = 0; i < 100 && !expired; i++) {
		usleep(100000);
		if (sc_connect(host, 5000, &c, &e) != 0)
			break;
		sc_begin(c, WIRE_STATUS, 0);
		uint64_t loads = 1;
		if (sc_call(c, &b, &e) == 0)
			wire_get_u64(b, 7, &loads);
		expired = loads == 0;
		sc_close(c);
	}
	check(expired, "the vanished client's load expired");
	check(still_serves(), "served after the vanished client");
out:
	tp_shutdown();
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
