/* SPDX-License-Identifier: MIT */
/*
 * Both ends of an ofi connection in one process (the reference host's
 * loopback, rdmamig bench hygiene, a framework migrating to itself), closed
 * while the other end's progress thread runs.
 *
 * The regression: libfabric's shm provider points a same-process peer's
 * map entry at that endpoint's own region, and an endpoint's close unmaps
 * it.  The survivor's progress thread then handled the closed end's answer
 * to a message over 4 KiB (an inject or SAR buffer given back to the
 * peer's pool under the peer's spinlock) in unmapped memory: SIGSEGV in
 * pthread_spin_trylock called from the progress thread (the crash file
 * rdmamig.80s-8362,vm.btr, from rdmamig bench hygiene over ofi/shm).  Each
 * round below crashed the process within its first iterations before the
 * backend parked the end that closes first (transport/ofi/ofi_shm.c).
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 12

struct acceptor {
	struct rmig_ep *listener, *ep;
	int rc;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->rc = rmig_accept(a->listener, 5000, &a->ep);
	return NULL;
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

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * sender sends len bytes, receiver takes them and closes at once; the
 * sender's progress thread runs on (it handles the receiver's answer),
 * then the sender sees the peer gone, named, and closes.
 */
static void close_after_answer(const char *spec, size_t len)
{
	static uint8_t buf[RMIG_MSG_MAX];
	char why[RMIG_ERR_MAX];

	for (int i = 0; i < ROUNDS; i++) {
		struct rmig_ep *snd, *rcv;
		int n;

		CU_ASSERT_EQUAL_FATAL(pair_open(spec, &snd, &rcv), 0);
		rmig_test_fill(buf, len, (uint32_t)i, 0);
		CU_ASSERT_EQUAL(rmig_send(snd, buf, len), 0);
		memset(buf, 0, len);
		n = rmig_recv(rcv, buf, sizeof(buf), 5000);
		CU_ASSERT_EQUAL(n, (int)len);
		CU_ASSERT_EQUAL(rmig_test_check(buf, len, (uint32_t)i, 0), -1);
		rmig_close(rcv);
		sleep_ms(30); /* the sender's progress thread handles the answer */
		n = rmig_recv(snd, buf, sizeof(buf), 5000);
		snprintf(why, sizeof(why), "%s", rmig_ep_error(snd));
		CU_ASSERT_EQUAL(n, -ECONNRESET);
		CU_ASSERT_PTR_NOT_NULL(strstr(why, "connection closed by the peer"));
		rmig_close(snd);
	}
}

/* The other order: the sender closes first, the receiver reads on. */
static void sender_closes_first(const char *spec, size_t len)
{
	static uint8_t buf[RMIG_MSG_MAX];

	for (int i = 0; i < ROUNDS; i++) {
		struct rmig_ep *snd, *rcv;

		CU_ASSERT_EQUAL_FATAL(pair_open(spec, &snd, &rcv), 0);
		rmig_test_fill(buf, len, (uint32_t)i, 0);
		CU_ASSERT_EQUAL(rmig_send(snd, buf, len), 0);
		CU_ASSERT_EQUAL(rmig_send(snd, buf, len), 0);
		rmig_close(snd); /* drains its sends: both were taken */
		for (int k = 0; k < 2; k++) {
			memset(buf, 0, len);
			CU_ASSERT_EQUAL(rmig_recv(rcv, buf, sizeof(buf), 5000), (int)len);
			CU_ASSERT_EQUAL(rmig_test_check(buf, len, (uint32_t)i, 0), -1);
		}
		sleep_ms(30);
		CU_ASSERT_EQUAL(rmig_recv(rcv, buf, sizeof(buf), 5000), -ECONNRESET);
		rmig_close(rcv);
	}
}

static int usable(const char *spec)
{
	char why[RMIG_ERR_MAX];

	if (rmig_backend_probe(spec, why, sizeof(why))) {
		fprintf(stderr, "%s not usable here: %s\n", spec, why);
		return 0;
	}
	return 1;
}

static void test_shm_close_after_answer(void)
{
	if (!usable("ofi/shm"))
		return;
	close_after_answer("ofi/shm", 8192);
	close_after_answer("ofi/shm", RMIG_MSG_MAX);
	close_after_answer("ofi/shm", 100);
}

static void test_shm_sender_closes_first(void)
{
	if (!usable("ofi/shm"))
		return;
	sender_closes_first("ofi/shm", 8192);
	sender_closes_first("ofi/shm", RMIG_MSG_MAX);
}

/* The same sequences over ofi/tcp, which maps nothing: the same results. */
static void test_tcp_same_sequences(void)
{
	if (!usable("ofi/tcp"))
		return;
	close_after_answer("ofi/tcp", RMIG_MSG_MAX);
	sender_closes_first("ofi/tcp", RMIG_MSG_MAX);
}

static const CU_TestInfo tests[] = {
	{ "ofi/shm: the receiver closes right after it answered", test_shm_close_after_answer },
	{ "ofi/shm: the sender closes first", test_shm_sender_closes_first },
	{ "ofi/tcp: the same sequences", test_tcp_same_sequences },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	char why[RMIG_ERR_MAX];

	if (rmig_backend_probe("ofi/shm", why, sizeof(why)) &&
	    rmig_backend_probe("ofi/tcp", why, sizeof(why))) {
		fprintf(stderr, "test_ofi_local: no ofi provider here: %s\n", why);
		return RMIG_TEST_SKIP;
	}
	return rmig_test_run("ofi, both ends in one process", NULL, NULL, tests);
}
