/* SPDX-License-Identifier: MIT */
/*
 * Failures: the destination cannot reserve; either peer dies or hangs at
 * each stage before commit; pre-copy does not converge (both policies);
 * hostile control messages.  Before commit the source guest keeps running
 * with its memory intact, the destination frees everything, and nothing
 * waits past its deadline.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "migutil.h"
#include "common/le.h"
#include "plugin/wire.h"
#include <rdmamig/rdmamig.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define TIMEOUT 3000

static void expect_rolled_back(const struct pair *p, int rc, const char *what)
{
	fprintf(stderr, "%s: source says: %s\n", what, p->sr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p->sr.committed, 0);
	CU_ASSERT_EQUAL(p->sr.guest_running, 1);
	CU_ASSERT_EQUAL(p->sr.mrs_live, 0);
	CU_ASSERT(strstr(p->sr.outcome, "keeps running on the source") != NULL);
	if (p->src.dirty_rate == 0)
		CU_ASSERT_EQUAL(p->sr.source_intact, 1);
	/* Nothing waits past its deadline (+ slack for a loaded machine). */
	CU_ASSERT(p->elapsed_ms < (uint64_t)p->src.timeout_ms * 2 + 3000);
}

static void test_refuse_memory(void)
{
	struct pair p;

	pair_init(&p, "tcp", 64 * MiB);
	p.dst.mem_limit = 32 * MiB;
	int rc = pair_run(&p);
	expect_rolled_back(&p, rc, "memory limit");
	CU_ASSERT(strstr(p.sr.error, "cannot take the guest") != NULL);
	CU_ASSERT(strstr(p.sr.error, "at most 32 MiB") != NULL);
	CU_ASSERT(p.dst_exit != 0);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);
}

static void test_refuse_memlock(void)
{
	struct pair p;

	pair_init(&p, "tcp", 64 * MiB);
	p.dst.memlock_budget = 16 * MiB;
	int rc = pair_run(&p);
	expect_rolled_back(&p, rc, "memlock budget");
	CU_ASSERT(strstr(p.sr.error, "memlock") != NULL);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);
	CU_ASSERT_EQUAL(p.dr.committed, 0);
}

static void destination_dies_on(const char *backend, enum host_stage st, unsigned round,
			       int sig, uint64_t rate)
{
	static const char *const names[] = { "reserved", "round", "paused", "final" };
	char what[64];
	struct pair p;

	pair_init(&p, backend, 64 * MiB);
	p.src.timeout_ms = p.dst.timeout_ms = TIMEOUT;
	p.src.dirty_rate = rate;
	p.src.bandwidth = rate ? 64 * MiB : 0;
	p.kill_sig = sig;
	p.kill_at = st;
	p.kill_round = round;
	snprintf(what, sizeof(what), "%s: destination %s at %s", backend,
		 sig == SIGKILL ? "killed" : "stopped", names[st]);
	int rc = pair_run(&p);
	CU_ASSERT_EQUAL(p.killed, 1);
	expect_rolled_back(&p, rc, what);
}

static void destination_dies(enum host_stage st, unsigned round, int sig, uint64_t rate)
{
	destination_dies_on("tcp", st, round, sig, rate);
}

static void test_destination_dies(void)
{
	destination_dies(HOST_STAGE_RESERVED, 0, SIGKILL, 0);
	destination_dies(HOST_STAGE_ROUND, 0, SIGKILL, 0);
	destination_dies(HOST_STAGE_ROUND, 1, SIGKILL, 30 * MiB);
	destination_dies(HOST_STAGE_PAUSED, 0, SIGKILL, 0);
	destination_dies(HOST_STAGE_FINAL, 0, SIGKILL, 0);
}

static void test_destination_hangs(void)
{
	destination_dies(HOST_STAGE_ROUND, 0, SIGSTOP, 0);
	destination_dies(HOST_STAGE_FINAL, 0, SIGSTOP, 0);
}

static void source_dies_on(const char *backend, enum host_stage st)
{
	struct pair p;

	pair_init(&p, backend, 64 * MiB);
	p.src.timeout_ms = p.dst.timeout_ms = TIMEOUT;
	p.kill_sig = SIGKILL; /* the source process exits itself at the stage */
	p.kill_at = st;
	int rc = pair_run_source_dies(&p);
	fprintf(stderr, "%s: source died at stage %d: destination says: %s\n", backend, st,
		p.dr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p.dst_exit, 9);
	CU_ASSERT_EQUAL(p.dr.committed, 0);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);          /* every region deregistered */
	CU_ASSERT_EQUAL(p.fds_after, p.fds_before); /* and every descriptor closed */
	CU_ASSERT(p.elapsed_ms < TIMEOUT * 2 + 3000);
}

static void source_dies(enum host_stage st)
{
	source_dies_on("tcp", st);
}

/* The same over libfabric and verbs, where they run: a peer lost mid-round and at the end. */
static void test_ofi_peer_dies(void)
{
	for (unsigned i = 0; migtest_backend(i); i++) {
		/* tcp: the cases above */
		if (!strcmp(migtest_backend(i), "tcp") || !backend_usable(migtest_backend(i)))
			continue;
		destination_dies_on(migtest_backend(i), HOST_STAGE_ROUND, 1, SIGKILL, 30 * MiB);
		/*
		 * A destination stopped (SIGSTOP) at the final stage, while it
		 * takes the stream.  Over ofi/shm this case was skipped after
		 * the suite's watchdog fired twice under load.  Found since: each
		 * step after the first timeout (the CANCEL, close's drain)
		 * waited a timeout of its own, ~2.7 x the timeout in all; a send
		 * that times out now marks the endpoint dead.  The watchdog
		 * hang itself was not reproduced (scripts/fault-matrix.sh,
		 * stop-dst, and this case run repeatedly under load).
		 */
		destination_dies_on(migtest_backend(i), HOST_STAGE_FINAL, 0, SIGSTOP, 0);
		source_dies_on(migtest_backend(i), HOST_STAGE_ROUND);
		source_dies_on(migtest_backend(i), HOST_STAGE_FINAL);
	}
}

static void test_source_dies(void)
{
	source_dies(HOST_STAGE_RESERVED);
	source_dies(HOST_STAGE_ROUND);
	source_dies(HOST_STAGE_PAUSED);
	source_dies(HOST_STAGE_FINAL);
}

/* Dirtying far faster than the capped link: pre-copy cannot converge. */
static void no_convergence(int policy, struct pair *p)
{
	pair_init(p, "tcp", 32 * MiB);
	p->src.dirty_rate = 200 * MiB;
	p->src.bandwidth = 48 * MiB;
	p->src.downtime_ms = 20;
	p->src.max_rounds = 3;
	p->src.policy = policy;
}

static void test_no_convergence_giveup(void)
{
	struct pair p;

	no_convergence(0, &p);
	int rc = pair_run(&p);
	expect_rolled_back(&p, rc, "no convergence, giveup");
	CU_ASSERT(strstr(p.sr.outcome, "given up") != NULL);
	CU_ASSERT(strstr(p.sr.error, "did not converge") != NULL);
	CU_ASSERT_EQUAL(p.sr.rounds, 3);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);
	CU_ASSERT(p.dst_exit != 0);
}

static void test_no_convergence_force(void)
{
	struct pair p;

	no_convergence(1, &p);
	int rc = pair_run(&p);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(p.sr.committed, 1);
	CU_ASSERT_EQUAL(p.sr.forced, 1);
	CU_ASSERT_EQUAL(p.sr.verified, 1);
	CU_ASSERT(strstr(p.sr.outcome, "forced") != NULL);
	/* The cost is reported: predicted above the limit, downtime measured. */
	CU_ASSERT(p.sr.predicted_ms > 20);
	CU_ASSERT(p.sr.downtime_ns > 0);
	CU_ASSERT(p.sr.final_pages > 0);
}

/* A fake destination answering HELLO with msg; returns the source's result. */
static void fake_destination(const uint8_t *msg, size_t len, const char *expect)
{
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 3000 };
	struct rmig_ep *l, *ep;
	struct pair p;
	char addr[64];
	uint8_t in[RMIG_MSG_MAX];

	CU_ASSERT_EQUAL_FATAL(rmig_listen("tcp", "127.0.0.1:0", &o, &l), 0);
	rmig_local_addr(l, addr, sizeof(addr));
	pid_t pid = fork();
	if (pid == 0) {
		if (rmig_accept(l, 5000, &ep))
			_exit(1);
		if (rmig_recv(ep, in, sizeof(in), 5000) <= 0)
			_exit(2);
		rmig_send(ep, msg, len);
		rmig_recv(ep, in, sizeof(in), 5000); /* the source's CANCEL */
		_exit(0);
	}
	pair_init(&p, "tcp", 4 * MiB);
	p.src.addr = addr;
	int rc = host_migrate(&p.src, &p.sr);
	fprintf(stderr, "hostile destination: source says: %s\n", p.sr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p.sr.guest_running, 1);
	CU_ASSERT_EQUAL(p.sr.bytes, 0); /* not one page written */
	CU_ASSERT(strstr(p.sr.error, expect) != NULL);
	waitpid(pid, NULL, 0);
	rmig_close(l);
}

static void test_hostile_destination(void)
{
	uint8_t m[RMIG_MSG_MAX];
	struct rmig_rkey k = { .len = 4096, .key = 1, .id = 1, .flags = RMIG_ACCESS_REMOTE_WRITE };
	struct wire_reserve r = { .nblocks = 1 };
	int len;

	/* A key that covers one page of a 4 MiB block. */
	len = wire_reserve_encode(m, sizeof(m), &r, &k);
	fake_destination(m, (size_t)len, "does not cover it");
	/* A key without remote write. */
	k.len = 4 * MiB;
	k.flags = 0;
	len = wire_reserve_encode(m, sizeof(m), &r, &k);
	fake_destination(m, (size_t)len, "does not cover it");
	/* Garbage header. */
	memset(m, 0xa5, 64);
	fake_destination(m, 64, "malformed control header");
	/* A newer protocol. */
	len = wire_reserve_encode(m, sizeof(m), &r, &k);
	rmig_put_le16(m + 4, WIRE_VERSION + 1);
	fake_destination(m, (size_t)len, "protocol version");
	/* Wrong message. */
	len = wire_end_encode(m, sizeof(m), &(struct wire_end){ 0 });
	fake_destination(m, (size_t)len, "answered END");
}

static void migtest_send_addr(const char *addr, void *arg)
{
	if (write(*(int *)arg, addr, strlen(addr) + 1) < 0)
		perror("write");
}

/* A fake source offering a hostile HELLO to a real destination. */
static void fake_source(const uint8_t *msg, size_t len)
{
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 3000 };
	struct pair p;
	int ap[2];
	char addr[128] = "";

	pair_init(&p, "tcp", 4 * MiB);
	CU_ASSERT_EQUAL_FATAL(pipe(ap), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct rmig_ep *ep;
		uint8_t in[RMIG_MSG_MAX];
		close(ap[1]);
		if (read(ap[0], addr, sizeof(addr) - 1) <= 0 || rmig_connect("tcp", addr, &o, &ep))
			_exit(1);
		rmig_send(ep, msg, len);
		rmig_recv(ep, in, sizeof(in), 3000);
		_exit(0);
	}
	close(ap[0]);
	p.dst.timeout_ms = 3000;
	struct host_opts d = p.dst;
	d.on_listen = migtest_send_addr;
	d.arg = &ap[1];
	int rc = host_serve(&d, &p.dr);
	fprintf(stderr, "hostile source: destination says: %s\n", p.dr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p.dr.committed, 0);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);
	CU_ASSERT(strstr(p.dr.error, "malformed HELLO") != NULL);
	close(ap[1]);
	waitpid(pid, NULL, 0);
}

static void test_hostile_source(void)
{
	uint8_t m[RMIG_MSG_MAX];
	struct wire_hello h = { .page_size = 4096, .nblocks = 1, .total = 4 * MiB,
				 .channels = 1 };
	struct wire_block b = { .name = "pc.ram", .len = 4 * MiB, .page_size = 4096 };
	int len;

	h.total = 8 * MiB; /* total does not match */
	len = wire_hello_encode(m, sizeof(m), &h, &b);
	fake_source(m, (size_t)len);
	h.total = b.len = 4 * MiB + 1; /* not whole pages */
	len = wire_hello_encode(m, sizeof(m), &h, &b);
	fake_source(m, (size_t)len);
	h.total = b.len = 4 * MiB;
	len = wire_hello_encode(m, sizeof(m), &h, &b);
	m[len - 20] = 'x'; /* name field garbage after the terminator */
	fake_source(m, (size_t)len);
}

/*
 * A source that authenticated and got its keys, then writes outside the
 * block it offered (a forged, longer key; at roff): the destination ends
 * the session before a byte of the frame is applied, deregisters
 * everything and never commits.  tcp: its receiver checks each frame.
 */
static void source_writes_outside(uint64_t roff)
{
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 3000 };
	struct pair p;
	int ap[2];
	char addr[128] = "";

	pair_init(&p, "tcp", 4 * MiB);
	CU_ASSERT_EQUAL_FATAL(pipe(ap), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct wire_hello h = { .page_size = 4096, .nblocks = 1, .total = 4 * MiB,
				 .channels = 1 };
		struct wire_block b = { .name = "pc.ram", .len = 4 * MiB, .page_size = 4096 };
		static uint8_t m[RMIG_MSG_MAX], page[8192];
		struct wire_reserve r;
		struct rmig_rkey k;
		struct wire_hdr wh;
		struct rmig_ep *ep;
		struct rmig_mr *lmr;
		char why[128];
		int n;
		close(ap[1]);
		if (read(ap[0], addr, sizeof(addr) - 1) <= 0 || rmig_connect("tcp", addr, &o, &ep))
			_exit(1);
		n = wire_hello_encode(m, sizeof(m), &h, &b);
		if (n < 0 || rmig_send(ep, m, (size_t)n))
			_exit(2);
		n = rmig_recv(ep, m, sizeof(m), 3000);
		if (n < 0 || wire_hdr_decode(m, (size_t)n, &wh) || wh.type != WIRE_RESERVE ||
		    wire_reserve_decode(m + WIRE_HDR_SIZE, wh.len, &r, &k, 1, why, sizeof(why)) ||
		    r.status)
			_exit(3);
		k.len = 8 * MiB; /* the lie: the region is 4 MiB */
		memset(page, 0xee, sizeof(page));
		if (rmig_reg_mr(ep, page, sizeof(page), RMIG_ACCESS_LOCAL, &lmr))
			_exit(4);
		rmig_write_sync(ep, lmr, 0, &k, roff, 4096);
		rmig_recv(ep, m, sizeof(m), 3000); /* the destination's CANCEL, or its close */
		_exit(0);
	}
	close(ap[0]);
	p.dst.timeout_ms = 3000;
	struct host_opts d = p.dst;
	d.on_listen = migtest_send_addr;
	d.arg = &ap[1];
	int rc = host_serve(&d, &p.dr);
	fprintf(stderr, "source writing at %llu of a 4 MiB block: destination says: %s\n",
		(unsigned long long)roff, p.dr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p.dr.committed, 0);
	CU_ASSERT_EQUAL(p.dr.mrs_live, 0);
	CU_ASSERT(p.dr.regs_remote > 0); /* it had granted the block: the write was aimed at it */
	CU_ASSERT(strstr(p.dr.error, "outside a registered region") != NULL);
	close(ap[1]);
	waitpid(pid, NULL, 0);
}

/*
 * A stranger with another key reaches the destination first: it is
 * refused, and the destination goes on waiting for its real source, which
 * then migrates.
 */
static void test_stranger_first(void)
{
	static const uint8_t other[32] = "a stranger's key, not the test's";

	for (unsigned i = 0; migtest_backend(i); i++) {
		struct pair p;
		if (!backend_usable(migtest_backend(i)))
			continue;
		pair_init(&p, migtest_backend(i), 4 * MiB);
		p.stranger_psk = other;
		int rc = pair_run(&p);
		fprintf(stderr, "%s: stranger: %s; migration: %s\n", migtest_backend(i), p.stranger_err,
			rc ? p.sr.error : "committed");
		CU_ASSERT_EQUAL(p.stranger_rc, -EACCES);
		CU_ASSERT(strstr(p.stranger_err, "key differs") != NULL);
		CU_ASSERT_EQUAL(rc, 0);
		CU_ASSERT_EQUAL(p.sr.committed, 1);
		CU_ASSERT_EQUAL(p.dr.committed, 1);
		CU_ASSERT_EQUAL(p.dst_exit, 0);
	}
}

static void test_source_writes_outside_block(void)
{
	source_writes_outside(4 * MiB);        /* just past the end */
	source_writes_outside(4 * MiB - 2048); /* straddling the end */
	source_writes_outside(6 * MiB);        /* far past it */
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "destination refuses: memory", test_refuse_memory },
		{ "destination refuses: memlock", test_refuse_memlock },
		{ "destination dies at each stage", test_destination_dies },
		{ "destination hangs", test_destination_hangs },
		{ "source dies at each stage", test_source_dies },
		{ "ofi and verbs: either peer dies or hangs", test_ofi_peer_dies },
		{ "no convergence: give up", test_no_convergence_giveup },
		{ "no convergence: force", test_no_convergence_force },
		{ "hostile destination", test_hostile_destination },
		{ "hostile source", test_hostile_source },
		{ "source writes outside its block", test_source_writes_outside_block },
		{ "a stranger with another key first, then the source", test_stranger_first },
		CU_TEST_INFO_NULL,
	};
	signal(SIGPIPE, SIG_IGN);
	migtest_watchdog(270);
	return rmig_test_run("migration failures", NULL, NULL, tests);
}
