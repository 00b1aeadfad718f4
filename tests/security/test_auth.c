/* SPDX-License-Identifier: MIT */
/*
 * Peer authentication (transport/auth.c) over one backend, given as the
 * argument: the right key connects, a wrong key or none is refused on both
 * sides with the phrase, the listener keeps listening, and a refused
 * connection reaches nothing registered on an authenticated endpoint.
 * On the tcp backend a fake peer speaking the raw byte stream also checks
 * a replayed handshake, truncated and oversize messages, and a silent peer.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "common/clock.h"
#include "common/sock.h"
#include "transport/auth_wire.h"
#include "transport/tcp/tcp_wire.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#ifdef RMIG_HAVE_VERBS
#include "transport/verbs/verbs_int.h"
#include <rdma/rdma_verbs.h>
#endif

#define TIMEOUT_MS 3000

static const char *backend;
/* Where to listen: RoCE has no loopback route (Soft-RoCE VM: rxe0's IP). */
static char listen_addr[80] = "127.0.0.1:0";
static const uint8_t other_key[32] = "another key, 32 bytes long......";

/* --- an accepting thread ------------------------------------------------ */

struct acceptor {
	struct rmig_ep *listener, *ep;
	int rc;
	char err[RMIG_ERR_MAX];
	pthread_t t;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->ep = NULL;
	a->rc = rmig_accept(a->listener, TIMEOUT_MS, &a->ep);
	snprintf(a->err, sizeof(a->err), "%s", a->rc ? rmig_ep_error(a->listener) : "");
	return NULL;
}

static void accept_start(struct acceptor *a)
{
	pthread_create(&a->t, NULL, accept_main, a);
}

static void accept_join(struct acceptor *a)
{
	pthread_join(a->t, NULL);
}

static struct rmig_ep_opts opts_key(const void *key, size_t len, unsigned flags)
{
	return (struct rmig_ep_opts){ .size = sizeof(struct rmig_ep_opts),
				      .timeout_ms = TIMEOUT_MS, .psk = key, .psk_len = len,
				      .flags = flags };
}

static int listen_with(struct rmig_ep_opts o, struct acceptor *a, char *addr, size_t len)
{
	memset(a, 0, sizeof(*a));
	if (rmig_listen(backend, listen_addr, &o, &a->listener))
		return -1;
	return rmig_local_addr(a->listener, addr, len);
}

/* Connect with co to a listener; both results kept, endpoints closed. */
static int try_pair(struct acceptor *a, const char *addr, struct rmig_ep_opts co,
		    char *cerr, size_t cerrlen)
{
	struct rmig_ep *ep = NULL;
	int rc;

	accept_start(a);
	rc = rmig_connect(backend, addr, &co, &ep);
	snprintf(cerr, cerrlen, "%s", rc ? rmig_last_error() : "");
	accept_join(a);
	if (!rc) {
		CU_ASSERT_PTR_NOT_NULL(ep);
		rmig_close(ep);
	} else {
		CU_ASSERT_PTR_NULL(ep);
	}
	if (!a->rc)
		rmig_close(a->ep);
	else
		CU_ASSERT_PTR_NULL(a->ep);
	return rc;
}

/* --- every backend --------------------------------------------------------- */

static void test_right_key_connects(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	struct rmig_ep *ep = NULL;
	struct acceptor a;
	char addr[128], buf[16];

	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	accept_start(&a);
	CU_ASSERT_EQUAL(rmig_connect(backend, addr, &o, &ep), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ep);
	/* The handshake left nothing behind: the first message is the caller's. */
	CU_ASSERT_EQUAL(rmig_send(ep, "hello", 6), 0);
	CU_ASSERT_EQUAL(rmig_recv(a.ep, buf, sizeof(buf), TIMEOUT_MS), 6);
	CU_ASSERT_STRING_EQUAL(buf, "hello");
	CU_ASSERT_EQUAL(rmig_send(a.ep, "back", 5), 0);
	CU_ASSERT_EQUAL(rmig_recv(ep, buf, sizeof(buf), TIMEOUT_MS), 5);
	CU_ASSERT_STRING_EQUAL(buf, "back");
	rmig_close(ep);
	rmig_close(a.ep);
	rmig_close(a.listener);
}

static void test_wrong_key_refused_both_sides(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	struct acceptor a;
	char addr[128], cerr[RMIG_ERR_MAX];
	int rc;

	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	rc = try_pair(&a, addr, opts_key(other_key, sizeof(other_key), 0), cerr, sizeof(cerr));
	fprintf(stderr, "\n    wrong key: connect says '%s'\n    accept says '%s'\n", cerr,
		a.err);
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_EQUAL(a.rc, -EACCES);
	CU_ASSERT_STRING_EQUAL(a.err, "peer failed authentication: its key differs from ours; "
				      "give both ends the same pre-shared key");
	CU_ASSERT_PTR_NOT_NULL(strstr(cerr, "key differs"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cerr, "same pre-shared key"));
	/* A shorter key that is a prefix of the right one is another key. */
	rc = try_pair(&a, addr, opts_key(rmig_test_psk, 16, 0), cerr, sizeof(cerr));
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_EQUAL(a.rc, -EACCES);
	/* The listener keeps listening: the right key still gets in. */
	rc = try_pair(&a, addr, o, cerr, sizeof(cerr));
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(a.rc, 0);
	rmig_close(a.listener);
}

static void test_no_key_refused_unless_insecure(void)
{
	struct rmig_ep_opts none = opts_key(NULL, 0, 0);
	struct rmig_ep_opts insecure = opts_key(NULL, 0, RMIG_EP_INSECURE);
	struct rmig_ep_opts keyed = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	struct rmig_ep *ep = NULL;
	struct acceptor a;
	char addr[128], cerr[RMIG_ERR_MAX];
	int rc;

	/* Refused before anything is opened, with the way out. */
	CU_ASSERT_EQUAL(rmig_listen(backend, listen_addr, &none, &ep), -EACCES);
	CU_ASSERT_PTR_NULL(ep);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "no pre-shared key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "RMIG_EP_INSECURE"));
	CU_ASSERT_EQUAL(rmig_listen(backend, listen_addr, NULL, &ep), -EACCES);
	CU_ASSERT_EQUAL(rmig_connect(backend, "127.0.0.1:1", &none, &ep), -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "no pre-shared key"));
	/* Too short a key is no key. */
	struct rmig_ep_opts shortkey = opts_key("0123456789abcde", 15, 0);
	CU_ASSERT_EQUAL(rmig_connect(backend, "127.0.0.1:1", &shortkey, &ep), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "16 to 1024"));

	/* Insecure on both ends, asked for explicitly: connects. */
	CU_ASSERT_EQUAL_FATAL(listen_with(insecure, &a, addr, sizeof(addr)), 0);
	rc = try_pair(&a, addr, insecure, cerr, sizeof(cerr));
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(a.rc, 0);
	/* A keyed source does not talk to an insecure destination. */
	rc = try_pair(&a, addr, keyed, cerr, sizeof(cerr));
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_EQUAL(a.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(cerr, "peer runs without a key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "this end runs without a key"));
	rmig_close(a.listener);

	/* An insecure source is refused by a keyed destination. */
	CU_ASSERT_EQUAL_FATAL(listen_with(keyed, &a, addr, sizeof(addr)), 0);
	rc = try_pair(&a, addr, insecure, cerr, sizeof(cerr));
	fprintf(stderr, "\n    insecure source: connect says '%s'\n    accept says '%s'\n",
		cerr, a.err);
	CU_ASSERT_EQUAL(rc, -EACCES);
	CU_ASSERT_EQUAL(a.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "peer runs without a key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(cerr, "this end runs without a key"));
	rmig_close(a.listener);
}

/*
 * An authenticated pair: the destination registers a region for remote
 * writes and hands its key to its source.  Then another connection, with
 * the wrong key, is refused; the region holds its pattern, and the
 * authenticated source can still write into it (the check can fail).
 */
static void test_refused_peer_cannot_write(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	const size_t len = 1 << 20;
	uint8_t *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0), *src = malloc(len);
	struct rmig_ep *cli = NULL;
	struct rmig_mr *mr, *lmr;
	struct acceptor a;
	char addr[128], cerr[RMIG_ERR_MAX];

	CU_ASSERT_FATAL(region != MAP_FAILED && src);
	rmig_test_fill(region, len, 7, 0);
	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	accept_start(&a);
	CU_ASSERT_EQUAL(rmig_connect(backend, addr, &o, &cli), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(a.ep, region, len, RMIG_ACCESS_REMOTE_WRITE, &mr), 0);
	struct rmig_rkey rk = *rmig_mr_rkey(mr);
	/*
	 * Where rdmamig picks the key (tcp, ofi over tcp and shm), it is not a
	 * guessable counter: 1, 2... would be found at once.  verbs keys are
	 * the NIC's (rxe: a table index and 8 random bits); the verbs backend
	 * scopes them to the connection's protection domain instead.
	 */
	if (!strstr(backend, "verbs"))
		CU_ASSERT(rk.key > 0xffff);

	/* A stranger with the wrong key gets no endpoint at all. */
	struct acceptor b = { .listener = a.listener };
	CU_ASSERT_EQUAL(try_pair(&b, addr, opts_key(other_key, sizeof(other_key), 0), cerr,
				 sizeof(cerr)), -EACCES);
	CU_ASSERT_EQUAL(b.rc, -EACCES);
	CU_ASSERT_EQUAL(rmig_test_check(region, len, 7, 0), -1);

	/* The authenticated source writes: the region did take writes. */
	rmig_test_fill(src, len, 9, 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(cli, src, len, RMIG_ACCESS_LOCAL, &lmr), 0);
	CU_ASSERT_EQUAL(rmig_write_sync(cli, lmr, 0, &rk, 0, len), 0);
	CU_ASSERT_EQUAL(rmig_send(cli, "done", 5), 0);
	CU_ASSERT_EQUAL(rmig_recv(a.ep, cerr, sizeof(cerr), TIMEOUT_MS), 5);
	CU_ASSERT_EQUAL(rmig_test_check(region, len, 9, 0), -1);
	rmig_dereg_mr(cli, lmr);
	rmig_dereg_mr(a.ep, mr);
	rmig_close(cli);
	rmig_close(a.ep);
	rmig_close(a.listener);
	munmap(region, len);
	free(src);
}

/* --- tcp: a fake source speaking the raw byte stream ----------------------- */

/* What a fake source sent, to replay it. */
struct recording {
	uint8_t bytes[1024];
	size_t len;
};

static int raw_send(int fd, const void *buf, size_t len, struct recording *rec)
{
	if (rec && rec->len + len <= sizeof(rec->bytes)) {
		memcpy(rec->bytes + rec->len, buf, len);
		rec->len += len;
	}
	return rmig_sock_send(fd, buf, len, rmig_deadline(TIMEOUT_MS));
}

/* One MSG frame of len payload bytes. */
static int raw_send_msg(int fd, const void *msg, size_t len, struct recording *rec)
{
	struct tcp_hdr h = { .type = TCP_FRAME_MSG, .len = len };
	uint8_t raw[TCP_HDR_SIZE];

	tcp_hdr_encode(&h, raw);
	if (raw_send(fd, raw, sizeof(raw), rec))
		return -1;
	return len ? raw_send(fd, msg, len, rec) : 0;
}

/* Next MSG frame's payload; its length, or -1. */
static int raw_recv_msg(int fd, uint8_t *buf, size_t cap)
{
	uint8_t raw[TCP_HDR_SIZE];
	struct tcp_hdr h;

	if (rmig_sock_recv(fd, raw, sizeof(raw), rmig_deadline(TIMEOUT_MS)) ||
	    tcp_hdr_decode(raw, &h) || h.type != TCP_FRAME_MSG || h.len > cap ||
	    rmig_sock_recv(fd, buf, h.len, rmig_deadline(TIMEOUT_MS)))
		return -1;
	return (int)h.len;
}

/* Connect and exchange the tcp backend's hello. */
static int raw_connect(const char *addr, struct recording *rec)
{
	char err[RMIG_ERR_MAX], hello[TCP_HELLO_LEN];
	int fd;

	if (rmig_sock_connect(addr, TIMEOUT_MS, &fd, err, sizeof(err)))
		return -1;
	if (raw_send(fd, TCP_HELLO, TCP_HELLO_LEN, rec) ||
	    rmig_sock_recv(fd, hello, sizeof(hello), rmig_deadline(TIMEOUT_MS))) {
		close(fd);
		return -1;
	}
	return fd;
}

static void mac(const void *key, size_t klen, char role, const uint8_t *a, const uint8_t *b,
		uint8_t out[AUTH_MAC_LEN])
{
	uint8_t data[sizeof(AUTH_LABEL) + 1 + 2 * AUTH_NONCE_LEN];
	unsigned olen;

	memcpy(data, AUTH_LABEL, sizeof(AUTH_LABEL));
	data[sizeof(AUTH_LABEL)] = (uint8_t)role;
	memcpy(data + sizeof(AUTH_LABEL) + 1, a, AUTH_NONCE_LEN);
	memcpy(data + sizeof(AUTH_LABEL) + 1 + AUTH_NONCE_LEN, b, AUTH_NONCE_LEN);
	HMAC(EVP_sha256(), key, (int)klen, data, sizeof(data), out, &olen);
}

/*
 * The source's side of the handshake by hand, recording every byte sent.
 * Returns the code of the destination's verdict as this fake sees it: 0
 * once it checked the destination's proof and said OK.
 */
static int fake_source_handshake(int fd, struct recording *rec)
{
	uint8_t buf[256], raw[AUTH_MSG_MAX];
	struct auth_msg ch, resp = { .type = AUTH_RESPONSE }, pr, ok = { .type = AUTH_RESULT };
	uint8_t want[AUTH_MAC_LEN];
	int n = raw_recv_msg(fd, buf, sizeof(buf));

	if (n < 0 || auth_msg_decode(buf, (size_t)n, &ch) || ch.type != AUTH_CHALLENGE)
		return -1;
	for (int i = 0; i < AUTH_NONCE_LEN; i++)
		resp.nonce[i] = (uint8_t)(rand() & 0xff);
	mac(rmig_test_psk, sizeof(rmig_test_psk), 'S', ch.nonce, resp.nonce, resp.mac);
	if (raw_send_msg(fd, raw, auth_msg_encode(&resp, raw), rec))
		return -1;
	n = raw_recv_msg(fd, buf, sizeof(buf));
	if (n < 0 || auth_msg_decode(buf, (size_t)n, &pr) || pr.type != AUTH_PROOF)
		return -1;
	mac(rmig_test_psk, sizeof(rmig_test_psk), 'D', resp.nonce, ch.nonce, want);
	if (memcmp(want, pr.mac, AUTH_MAC_LEN))
		return -1;
	return raw_send_msg(fd, raw, auth_msg_encode(&ok, raw), rec);
}

static int tcp_only(void)
{
	if (strcmp(backend, "tcp")) {
		fprintf(stderr, "(the fake peer speaks the tcp backend's stream) ");
		return 0;
	}
	return 1;
}

/* A recorded successful handshake, replayed byte for byte, is refused. */
static void test_replayed_handshake_refused(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	struct recording rec = { .len = 0 };
	struct acceptor a;
	char addr[128], buf[16];
	int fd;

	if (!tcp_only())
		return;
	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	/* The fake source is right: with the key, it gets in and talks. */
	accept_start(&a);
	fd = raw_connect(addr, &rec);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(fake_source_handshake(fd, &rec), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	CU_ASSERT_EQUAL(raw_send_msg(fd, "hi", 3, NULL), 0);
	CU_ASSERT_EQUAL(rmig_recv(a.ep, buf, sizeof(buf), TIMEOUT_MS), 3);
	rmig_close(a.ep);
	close(fd);

	/* The same bytes again, on a new connection: a fresh challenge. */
	accept_start(&a);
	fd = raw_connect(addr, NULL);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(raw_send(fd, rec.bytes + TCP_HELLO_LEN, rec.len - TCP_HELLO_LEN, NULL), 0);
	accept_join(&a);
	fprintf(stderr, "\n    replayed handshake (%zu bytes): accept says '%s'\n", rec.len,
		a.err);
	CU_ASSERT_EQUAL(a.rc, -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "peer failed authentication"));
	close(fd);
	rmig_close(a.listener);
}

/* Send one raw MSG payload as the source's answer; returns accept's rc. */
static int answer_with(const char *addr, struct acceptor *a, const void *msg, size_t len)
{
	uint8_t buf[256];
	int fd;

	accept_start(a);
	fd = raw_connect(addr, NULL);
	CU_ASSERT(fd >= 0);
	if (fd >= 0) {
		CU_ASSERT(raw_recv_msg(fd, buf, sizeof(buf)) == AUTH_HDR_SIZE + AUTH_NONCE_LEN);
		raw_send_msg(fd, msg, len, NULL);
	}
	accept_join(a);
	if (fd >= 0)
		close(fd);
	return a->rc;
}

static void test_bad_messages_refused(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	struct auth_msg resp = { .type = AUTH_RESPONSE };
	uint8_t raw[AUTH_MSG_MAX], big[200];
	struct acceptor a;
	char addr[128];
	size_t n;
	int fd;

	if (!tcp_only())
		return;
	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	n = auth_msg_encode(&resp, raw);
	/* Truncated by one byte. */
	CU_ASSERT_EQUAL(answer_with(addr, &a, raw, n - 1), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "malformed authentication message (79 bytes)"));
	/* Oversize: more than any auth message. */
	memset(big, 0, sizeof(big));
	memcpy(big, raw, n);
	CU_ASSERT_EQUAL(answer_with(addr, &a, big, sizeof(big)), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "larger than 80 bytes"));
	/* Not an auth message at all (an old peer's first message). */
	CU_ASSERT_EQUAL(answer_with(addr, &a, "RMIGMIG hello", 14), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "malformed authentication message"));
	/* A proof where the response belongs. */
	struct auth_msg pr = { .type = AUTH_PROOF };
	n = auth_msg_encode(&pr, raw);
	CU_ASSERT_EQUAL(answer_with(addr, &a, raw, n), -EPROTO);
	/* A garbled MAC is a wrong key. */
	n = auth_msg_encode(&resp, raw);
	CU_ASSERT_EQUAL(answer_with(addr, &a, raw, n), -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "key differs"));

	/* A silent peer: refused at the deadline, not later. */
	accept_start(&a);
	fd = raw_connect(addr, NULL);
	uint64_t t0 = rmig_now_ms();
	accept_join(&a);
	CU_ASSERT_EQUAL(a.rc, -ETIMEDOUT);
	CU_ASSERT(rmig_now_ms() - t0 < TIMEOUT_MS + 1000);
	CU_ASSERT_PTR_NOT_NULL(strstr(a.err, "did not complete authentication within"));
	close(fd);
	rmig_close(a.listener);
}

/*
 * A stranger skips the handshake and sends write frames aimed at the
 * authenticated endpoint's region, with its real id and key: they land on
 * its own, unauthenticated connection, which has no region; nothing moves.
 */
static void test_unauthenticated_writes_land_nowhere(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	const size_t len = 64 << 10;
	uint8_t *region, payload[4096];
	struct rmig_ep *cli = NULL;
	struct rmig_mr *mr;
	struct acceptor a;
	char addr[128];
	uint8_t raw[TCP_HDR_SIZE];

	if (!tcp_only())
		return;
	region = malloc(len);
	CU_ASSERT_FATAL(region != NULL);
	rmig_test_fill(region, len, 3, 0);
	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	accept_start(&a);
	CU_ASSERT_EQUAL(rmig_connect(backend, addr, &o, &cli), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(a.ep, region, len, RMIG_ACCESS_REMOTE_WRITE, &mr), 0);
	const struct rmig_rkey *rk = rmig_mr_rkey(mr);
	struct rmig_ep *authed = a.ep;

	accept_start(&a);
	int fd = raw_connect(addr, NULL);
	CU_ASSERT_FATAL(fd >= 0);
	memset(payload, 0xee, sizeof(payload));
	struct tcp_hdr h = { .type = TCP_FRAME_WRITE, .id = rk->id, .key = rk->key, .off = 0,
			     .len = sizeof(payload) };
	tcp_hdr_encode(&h, raw);
	raw_send(fd, raw, sizeof(raw), NULL);
	raw_send(fd, payload, sizeof(payload), NULL);
	accept_join(&a);
	fprintf(stderr, "\n    stranger writing first: accept says '%s'\n", a.err);
	CU_ASSERT(a.rc < 0);
	CU_ASSERT_EQUAL(rmig_test_check(region, len, 3, 0), -1);
	close(fd);
	rmig_dereg_mr(authed, mr);
	rmig_close(cli);
	rmig_close(authed);
	rmig_close(a.listener);
	free(region);
}

#ifdef RMIG_HAVE_VERBS
/* --- verbs: a stranger's queue pair on the session's protection domain ----- */

struct domain_acceptor {
	struct acceptor *a;
	struct rmig_domain *dom;
};

static void *accept_on_main(void *arg)
{
	struct domain_acceptor *d = arg;

	d->a->ep = NULL;
	d->a->rc = rmig_accept_on(d->a->listener, d->dom, TIMEOUT_MS, &d->a->ep);
	snprintf(d->a->err, sizeof(d->a->err), "%s",
		 d->a->rc ? rmig_ep_error(d->a->listener) : "");
	return NULL;
}

/*
 * A raw librdmacm peer that sends the verbs backend's hello (so it is
 * accepted) and then never authenticates: it writes len bytes of 0xee at
 * rk at once.  Returns the write's completion status, or -1 if it could
 * not connect or no completion came within 10 s.
 */
static int stranger_write(const char *addr, const struct rmig_rkey *rk, size_t len)
{
	char host[128], *port;
	struct rdma_addrinfo hints = { .ai_port_space = RDMA_PS_TCP }, *res = NULL;
	struct ibv_qp_init_attr qa = { .qp_type = IBV_QPT_RC, .sq_sig_all = 1,
				       .cap = { .max_send_wr = 2, .max_recv_wr = 2,
						.max_send_sge = 1, .max_recv_sge = 1 } };
	struct rdma_conn_param cp = { .private_data = VERBS_HELLO,
				      .private_data_len = VERBS_HELLO_LEN,
				      .retry_count = 7, .rnr_retry_count = 7 };
	struct rdma_cm_id *id = NULL;
	struct ibv_mr *mr = NULL;
	struct ibv_wc wc;
	uint8_t *buf = malloc(len);
	int status = -1, n = 0;

	snprintf(host, sizeof(host), "%s", addr);
	port = strrchr(host, ':');
	if (!buf || !port)
		goto out;
	*port++ = '\0';
	memset(buf, 0xee, len);
	if (rdma_getaddrinfo(host, port, &hints, &res) || rdma_create_ep(&id, res, NULL, &qa))
		goto out;
	mr = ibv_reg_mr(id->pd, buf, len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr || rdma_connect(id, &cp))
		goto out;
	if (rdma_post_write(id, NULL, buf, len, mr, IBV_SEND_SIGNALED, rk->addr,
			    (uint32_t)rk->key))
		goto out;
	for (uint64_t end = rmig_now_ms() + 10000; !n && rmig_now_ms() < end;)
		if ((n = ibv_poll_cq(id->send_cq, 1, &wc)) == 0)
			usleep(1000);
	if (n == 1) {
		status = (int)wc.status;
		fprintf(stderr, "\n    stranger's write before authenticating: %s",
			ibv_wc_status_str(wc.status));
	}
	rdma_disconnect(id);
out:
	if (mr)
		ibv_dereg_mr(mr);
	if (id)
		rdma_destroy_ep(id);
	if (res)
		rdma_freeaddrinfo(res);
	free(buf);
	return status;
}

/*
 * The destination accepts a session's extra channels on the protection
 * domain where guest memory is registered.  A connection accepted there
 * takes no RDMA WRITE before its peer authenticated, whatever rkey it
 * names; an extra channel that did authenticate writes as usual.
 */
static void test_verbs_unauthenticated_qp_takes_no_writes(void)
{
	struct rmig_ep_opts o = opts_key(rmig_test_psk, sizeof(rmig_test_psk), 0);
	const size_t len = 64 << 10;
	uint8_t *region = malloc(len), *src = malloc(len);
	struct rmig_ep *cli = NULL, *cli2 = NULL, *authed;
	struct rmig_mr *mr, *lmr;
	struct acceptor a;
	struct domain_acceptor d = { .a = &a };
	char addr[128];

	if (strcmp(backend, "verbs")) {
		fprintf(stderr, "(raw verbs peer: the verbs backend only) ");
		free(region);
		free(src);
		return;
	}
	CU_ASSERT_FATAL(region && src);
	rmig_test_fill(region, len, 5, 0);
	CU_ASSERT_EQUAL_FATAL(listen_with(o, &a, addr, sizeof(addr)), 0);
	accept_start(&a);
	CU_ASSERT_EQUAL(rmig_connect(backend, addr, &o, &cli), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	authed = a.ep;
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(authed, region, len, RMIG_ACCESS_REMOTE_WRITE, &mr), 0);
	const struct rmig_rkey rk = *rmig_mr_rkey(mr);

	/* The stranger, on the session's domain: refused by the NIC. */
	d.dom = rmig_ep_domain(authed);
	pthread_create(&a.t, NULL, accept_on_main, &d);
	int st = stranger_write(addr, &rk, len);
	accept_join(&a);
	CU_ASSERT(st >= 0 && st != IBV_WC_SUCCESS);
	CU_ASSERT(a.rc < 0);
	CU_ASSERT_EQUAL(rmig_test_check(region, len, 5, 0), -1);

	/* An extra channel that authenticates on the same domain does write. */
	pthread_create(&a.t, NULL, accept_on_main, &d);
	CU_ASSERT_EQUAL(rmig_connect(backend, addr, &o, &cli2), 0);
	accept_join(&a);
	CU_ASSERT_EQUAL_FATAL(a.rc, 0);
	rmig_test_fill(src, len, 6, 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(cli2, src, len, RMIG_ACCESS_LOCAL, &lmr), 0);
	CU_ASSERT_EQUAL(rmig_write_sync(cli2, lmr, 0, &rk, 0, len), 0);
	CU_ASSERT_EQUAL(rmig_test_check(region, len, 6, 0), -1);
	rmig_dereg_mr(cli2, lmr);
	rmig_close(cli2);
	rmig_close(a.ep);
	rmig_dereg_mr(authed, mr);
	rmig_close(cli);
	rmig_close(authed);
	rmig_close(a.listener);
	free(region);
	free(src);
}
#endif

int main(int argc, char **argv)
{
	static const CU_TestInfo tests[] = {
		{ "right key connects", test_right_key_connects },
		{ "wrong key refused on both sides, listener keeps listening",
		  test_wrong_key_refused_both_sides },
		{ "no key refused unless insecure on both ends", test_no_key_refused_unless_insecure },
		{ "refused peer cannot write into an authenticated endpoint's region",
		  test_refused_peer_cannot_write },
		{ "tcp: replayed handshake refused", test_replayed_handshake_refused },
		{ "tcp: truncated, oversize, foreign, garbled and missing answers refused",
		  test_bad_messages_refused },
		{ "tcp: unauthenticated write frames land nowhere",
		  test_unauthenticated_writes_land_nowhere },
#ifdef RMIG_HAVE_VERBS
		{ "verbs: a queue pair on the session's domain takes no write before it authenticates",
		  test_verbs_unauthenticated_qp_takes_no_writes },
#endif
		CU_TEST_INFO_NULL,
	};
	char why[RMIG_ERR_MAX], name[64];

	if (argc != 2) {
		fprintf(stderr, "usage: test_auth BACKEND\n");
		return 2;
	}
	backend = argv[1];
	if (getenv("RMIG_CONF_HOST") && *getenv("RMIG_CONF_HOST"))
		snprintf(listen_addr, sizeof(listen_addr), "%s:0", getenv("RMIG_CONF_HOST"));
	if (rmig_backend_probe(backend, why, sizeof(why))) {
		fprintf(stderr, "test_auth %s: skipped: %s\n", backend, why);
		return RMIG_TEST_SKIP;
	}
	snprintf(name, sizeof(name), "authentication %s", backend);
	return rmig_test_run(name, NULL, NULL, tests);
}
