/* SPDX-License-Identifier: MIT */
/*
 * What is particular to the ofi backend: the bootstrap hello, -FI_* to
 * -errno, remote addressing, and the errors a user meets when the two ends
 * do not match (another provider, another backend, an absent device).
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "transport/ofi/ofi_wire.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <pthread.h>
#include <rdma/fi_errno.h>
#include <string.h>

static void test_hello_roundtrip(void)
{
	struct ofi_hello h = { .version = OFI_WIRE_VERSION, .addrlen = 16,
			       .mr_mode = 0x1234, .provider = "tcp;ofi_rxm" }, d = { 0 };
	uint8_t raw[OFI_HELLO_SIZE];

	for (int i = 0; i < 16; i++)
		h.addr[i] = (uint8_t)(0xa0 + i);
	ofi_hello_encode(&h, raw);
	CU_ASSERT_EQUAL(memcmp(raw, "RMIGOFI", 8), 0);
	CU_ASSERT_EQUAL(raw[8], OFI_WIRE_VERSION); /* little-endian */
	CU_ASSERT_EQUAL(raw[10], 16);
	CU_ASSERT_EQUAL(raw[16], 0x34);
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), 0);
	CU_ASSERT_EQUAL(d.version, OFI_WIRE_VERSION);
	CU_ASSERT_EQUAL(d.addrlen, 16);
	CU_ASSERT_EQUAL(d.mr_mode, 0x1234);
	CU_ASSERT_STRING_EQUAL(d.provider, "tcp;ofi_rxm");
	CU_ASSERT_EQUAL(memcmp(d.addr, h.addr, 16), 0);
	CU_ASSERT_EQUAL(d.addr[16], 0); /* nothing past addrlen is taken */
}

static void encode_valid(uint8_t raw[OFI_HELLO_SIZE])
{
	struct ofi_hello h = { .version = OFI_WIRE_VERSION, .addrlen = 4, .provider = "shm" };

	ofi_hello_encode(&h, raw);
}

static void test_hello_rejects_bad(void)
{
	uint8_t raw[OFI_HELLO_SIZE];
	struct ofi_hello d = { 0 };

	encode_valid(raw);
	raw[0] = 'X'; /* not ours: the tcp backend's hello, say */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EPROTO);
	encode_valid(raw);
	raw[8] = OFI_WIRE_VERSION + 1;
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EPROTONOSUPPORT);
	encode_valid(raw);
	raw[10] = 0; /* empty address */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	rmig_put_le16(raw + 10, OFI_ADDR_MAX + 1); /* longer than the field */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	raw[12] = 1; /* reserved flag bit */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	raw[24 + 5] = 'x'; /* after the provider name's NUL (found by fuzz_ofi_hello) */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	raw[56 + 4] = 1; /* address byte past addrlen */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	memset(raw + 24, 'a', OFI_PROV_MAX); /* provider not terminated */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
	encode_valid(raw);
	memset(raw + 24, 0, OFI_PROV_MAX); /* no provider */
	CU_ASSERT_EQUAL(ofi_hello_decode(raw, &d), -EINVAL);
}

static void test_errno_conversion(void)
{
	CU_ASSERT_EQUAL(ofi_errno(0), 0);
	CU_ASSERT_EQUAL(ofi_errno(-FI_EAGAIN), -EAGAIN);
	CU_ASSERT_EQUAL(ofi_errno(-FI_ECONNRESET), -ECONNRESET);
	CU_ASSERT_EQUAL(ofi_errno(-FI_ENODATA), -ENODATA);
	CU_ASSERT_EQUAL(ofi_errno(FI_ETIMEDOUT), -ETIMEDOUT); /* either sign */
	CU_ASSERT_EQUAL(ofi_errno(-FI_ETRUNC), -EMSGSIZE);
	CU_ASSERT_EQUAL(ofi_errno(-FI_ENOKEY), -EACCES);
	CU_ASSERT_EQUAL(ofi_errno(-FI_EAVAIL), -EIO);
	CU_ASSERT_EQUAL(ofi_errno(-FI_ENORX), -ENOBUFS);
	CU_ASSERT_EQUAL(ofi_errno(-FI_EOTHER), -EIO);
	CU_ASSERT_EQUAL(ofi_errno(-1000), -EIO); /* a code newer than this build */
	for (int e = FI_EOTHER; e <= FI_ENORX; e++) /* every libfabric code is an errno < 256 */
		CU_ASSERT(ofi_errno(-e) < 0 && ofi_errno(-e) > -256);
}

static void test_remote_addressing(void)
{
	/* FI_MR_VIRT_ADDR: the rkey carries the base, the offset is added. */
	CU_ASSERT_EQUAL(ofi_remote_addr(0x7f0000001000ull, 0x20), 0x7f0000001020ull);
	/* Offset addressing: the rkey's addr is 0. */
	CU_ASSERT_EQUAL(ofi_remote_addr(0, 4096), 4096);
	CU_ASSERT_EQUAL(ofi_pieces(1, 1 << 20), 1);
	CU_ASSERT_EQUAL(ofi_pieces(1 << 20, 1 << 20), 1);
	CU_ASSERT_EQUAL(ofi_pieces((1 << 20) + 1, 1 << 20), 2);
	CU_ASSERT_EQUAL(ofi_pieces(3ull << 30, 1ull << 30), 3);
}

static void test_verbs_probe_says_why(void)
{
	char why[RMIG_ERR_MAX];
	int rc = rmig_backend_probe("ofi/verbs", why, sizeof(why));

	if (!rc) {
		fprintf(stderr, "(an RDMA device is present: %s) ", why);
		return;
	}
	CU_ASSERT_EQUAL(rc, -ENODEV);
	CU_ASSERT_STRING_EQUAL(why,
			       "ofi/verbs: libfabric finds no verbs device (no RDMA device on this host)");
}

static void test_unknown_provider(void)
{
	struct rmig_ep *ep = NULL;
	char why[RMIG_ERR_MAX];

	CU_ASSERT_EQUAL(rmig_backend_probe("ofi/nosuchprov", why, sizeof(why)), -ENODEV);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "nosuchprov"));
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK };
	CU_ASSERT_EQUAL(rmig_listen("ofi/nosuchprov", "127.0.0.1:0", &o, &ep), -ENODEV);
	CU_ASSERT_PTR_NULL(ep);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "nosuchprov"));
}

struct acceptor {
	struct rmig_ep *listener, *ep;
	int rc;
	char err[RMIG_ERR_MAX];
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->rc = rmig_accept(a->listener, 5000, &a->ep);
	snprintf(a->err, sizeof(a->err), "%s", rmig_ep_error(a->listener));
	return NULL;
}

/* Connect spec_c to a listener of spec_l; both must fail with errno. */
static void expect_mismatch(const char *spec_l, const char *spec_c, int err,
			    const char *phrase)
{
	struct acceptor a = { 0 };
	struct rmig_ep *ep = NULL;
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 5000 };
	char addr[64];
	pthread_t t;
	int rc;

	CU_ASSERT_EQUAL_FATAL(rmig_listen(spec_l, "127.0.0.1:0", &o, &a.listener), 0);
	CU_ASSERT_EQUAL_FATAL(rmig_local_addr(a.listener, addr, sizeof(addr)), 0);
	pthread_create(&t, NULL, accept_main, &a);
	rc = rmig_connect(spec_c, addr, &o, &ep);
	CU_ASSERT_EQUAL(rc, err);
	CU_ASSERT_PTR_NULL(ep);
	if (phrase)
		CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), phrase));
	pthread_join(t, NULL);
	CU_ASSERT_NOT_EQUAL(a.rc, 0);
	CU_ASSERT_PTR_NULL(a.ep);
	if (rc == 0)
		rmig_close(ep);
	if (a.rc == 0)
		rmig_close(a.ep);
	rmig_close(a.listener);
}

static void test_provider_mismatch(void)
{
	expect_mismatch("ofi/shm", "ofi/tcp", -EPROTO, "provider");
}

static void test_not_an_ofi_peer(void)
{
	/* The tcp backend drops us after its own 8-byte hello. */
	expect_mismatch("tcp", "ofi/tcp", -ECONNRESET, "not an rdmamig ofi endpoint");
}

/* A connected pair over spec, both ends in this process. */
static int pair_open(const char *spec, struct rmig_ep **srv, struct rmig_ep **cli)
{
	struct acceptor a = { 0 };
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 5000 };
	char addr[64];
	pthread_t t;
	int rc;

	if (rmig_listen(spec, "127.0.0.1:0", &o, &a.listener))
		return -1;
	rmig_local_addr(a.listener, addr, sizeof(addr));
	pthread_create(&t, NULL, accept_main, &a);
	rc = rmig_connect(spec, addr, &o, cli);
	pthread_join(t, NULL);
	rmig_close(a.listener);
	if (rc || a.rc) {
		if (!rc)
			rmig_close(*cli);
		if (!a.rc)
			rmig_close(a.ep);
		return -1;
	}
	*srv = a.ep;
	return 0;
}

/*
 * The peer may send far more messages than there are posted receive
 * buffers before this end reads one: all arrive, whole and in order.
 */
static void messages_queue_without_limit(const char *spec)
{
	static uint8_t msg[RMIG_MSG_MAX], got[RMIG_MSG_MAX];
	struct rmig_ep *srv, *cli;
	const unsigned count = 40;

	CU_ASSERT_EQUAL_FATAL(pair_open(spec, &srv, &cli), 0);
	for (unsigned i = 0; i < count; i++) {
		rmig_test_fill(msg, RMIG_MSG_MAX - i, i, 0);
		CU_ASSERT_EQUAL(rmig_send(cli, msg, RMIG_MSG_MAX - i), 0);
	}
	/* Too small a buffer leaves the message queued. */
	CU_ASSERT_EQUAL(rmig_recv(srv, got, 16, 5000), -EMSGSIZE);
	for (unsigned i = 0; i < count; i++) {
		int n = rmig_recv(srv, got, sizeof(got), 5000);
		CU_ASSERT_EQUAL(n, (int)(RMIG_MSG_MAX - i));
		if (n > 0)
			CU_ASSERT_EQUAL(rmig_test_check(got, (size_t)n, i, 0), -1);
	}
	CU_ASSERT_EQUAL(rmig_recv(srv, got, sizeof(got), 50), -ETIMEDOUT);
	rmig_close(cli);
	rmig_close(srv);
}

static void test_messages_queue_tcp(void)
{
	messages_queue_without_limit("ofi/tcp");
}

static void test_messages_queue_shm(void)
{
	messages_queue_without_limit("ofi/shm");
}

/* A completed write is placed: the peer's memory shows it at once. */
static void completion_means_placed(const char *spec)
{
	static uint8_t src[1 << 20], dst[1 << 20];
	struct rmig_ep *srv, *cli;
	struct rmig_mr *smr, *dmr;
	struct rmig_write w[64];
	struct rmig_completion c;

	CU_ASSERT_EQUAL_FATAL(pair_open(spec, &srv, &cli), 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(srv, dst, sizeof(dst), RMIG_ACCESS_REMOTE_WRITE, &dmr), 0);
	CU_ASSERT_EQUAL_FATAL(rmig_reg_mr(cli, src, sizeof(src), RMIG_ACCESS_LOCAL, &smr), 0);
	for (unsigned round = 0; round < 20; round++) {
		/* 64 small writes, 16 KiB apart: each lands on its own. */
		rmig_test_fill(src, sizeof(src), round, 0);
		for (unsigned i = 0; i < 64; i++)
			w[i] = (struct rmig_write){ smr, i * 16384 + round, rmig_mr_rkey(dmr),
						    i * 16384 + round, 100 + i };
		CU_ASSERT_EQUAL_FATAL(rmig_write_batch(cli, w, 64, round), 0);
		CU_ASSERT_EQUAL_FATAL(rmig_poll(cli, &c, 1, 5000), 1);
		CU_ASSERT_EQUAL(c.status, 0);
		for (unsigned i = 0; i < 64; i++)
			CU_ASSERT_EQUAL(memcmp(dst + i * 16384 + round, src + i * 16384 + round,
					       100 + i), 0);
	}
	rmig_dereg_mr(cli, smr);
	rmig_dereg_mr(srv, dmr);
	rmig_close(cli);
	rmig_close(srv);
}

static void test_placed_tcp(void)
{
	completion_means_placed("ofi/tcp");
}

static void test_placed_shm(void)
{
	completion_means_placed("ofi/shm");
}

static void test_fds_back_after_failures(void)
{
	int before = rmig_test_count_fds();

	for (int i = 0; i < 5; i++)
		expect_mismatch("ofi/shm", "ofi/tcp", -EPROTO, NULL);
	CU_ASSERT_EQUAL(rmig_test_count_fds(), before);
}

static const CU_TestInfo tests[] = {
	{ "hello roundtrip", test_hello_roundtrip },
	{ "hello rejects bad", test_hello_rejects_bad },
	{ "errno conversion", test_errno_conversion },
	{ "remote addressing", test_remote_addressing },
	{ "verbs probe says why", test_verbs_probe_says_why },
	{ "unknown provider", test_unknown_provider },
	{ "provider mismatch", test_provider_mismatch },
	{ "not an ofi peer", test_not_an_ofi_peer },
	{ "fds back after failed handshakes", test_fds_back_after_failures },
	{ "messages queue without limit (ofi/tcp)", test_messages_queue_tcp },
	{ "messages queue without limit (ofi/shm)", test_messages_queue_shm },
	{ "a completed batch is placed (ofi/tcp)", test_placed_tcp },
	{ "a completed batch is placed (ofi/shm)", test_placed_shm },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("ofi", NULL, NULL, tests);
}
