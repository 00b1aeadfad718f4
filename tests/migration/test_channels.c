/* SPDX-License-Identifier: MIT */
/*
 * Parallel channels: migrations over 2 and 4 connections arrive
 * byte-identical on every host backend, each channel worker runs on the cpu
 * the placement plan chose (as sched_getaffinity sees it from inside the
 * worker), the vCPUs' cpus are left alone, a connection without the
 * session's token is refused, a round is done at the destination only once
 * every channel's fence is in (a delayed channel, a missing fence), a
 * channel dying mid-migration rolls both sides back, and a destination
 * refuses more channels than it takes.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "migutil.h"
#include "plugin/wire.h"
#include "common/clock.h"
#include <rdmamig/plugin.h>
#include <rdmamig/rdmamig.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (1ull << 20)

/* verbs runs in the Soft-RoCE VM only (RMIG_TEST_BACKENDS=verbs there). */

static void expect_bound(const struct host_result *r, unsigned n)
{
	CU_ASSERT_EQUAL(r->channels, n);
	for (unsigned i = 0; i < n; i++) {
		if (r->worker_cpu[i] != r->planned_cpu[i] || r->planned_cpu[i] < 0)
			fprintf(stderr, "channel %u: planned cpu %d, worker found itself on %d\n", i,
				r->planned_cpu[i], r->worker_cpu[i]);
		CU_ASSERT(r->planned_cpu[i] >= 0);
		CU_ASSERT_EQUAL(r->worker_cpu[i], r->planned_cpu[i]);
	}
}

static void expect_verified(const struct pair *p, int rc, const char *what)
{
	if (rc || p->sr.verified != 1)
		fprintf(stderr, "%s over %s, %u channels: rc %d, %s; %s\n", what, p->src.backend,
			p->src.channels, rc, p->sr.error, p->sr.outcome);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(p->sr.committed, 1);
	CU_ASSERT_EQUAL(p->sr.verified, 1);
	CU_ASSERT_EQUAL(p->sr.mismatched_pages, 0);
	CU_ASSERT_EQUAL(p->dst_exit, 0);
	CU_ASSERT_EQUAL(p->dr.verified, 1);
	CU_ASSERT_EQUAL(p->dr.mrs_live, 0);
	CU_ASSERT_EQUAL(p->sr.mrs_live, 0);
	CU_ASSERT_EQUAL(p->dr.channels, p->src.channels);
}

static void test_idle_and_dirtying(void)
{
	static const unsigned chans[] = { 2, 4 };

	for (unsigned b = 0; migtest_backend(b); b++) {
		if (!backend_usable(migtest_backend(b)))
			continue;
		for (unsigned c = 0; c < 2; c++) {
			for (int dirty = 0; dirty < 2; dirty++) {
				struct pair p;
				pair_init(&p, migtest_backend(b), dirty ? 64 * MiB : 32 * MiB);
				p.src.channels = p.dst.channels = chans[c];
				if (dirty) {
					/* Under emulation rxe moves ~50 MiB/s: dirty
					 * well below that so pre-copy converges. */
					p.src.dirty_rate = strcmp(migtest_backend(b), "verbs") ? 20 * MiB
											 : 4 * MiB;
					p.src.vcpus = 2;
				}
				int rc = pair_run(&p);
				expect_verified(&p, rc, dirty ? "dirtying guest" : "idle guest");
				expect_bound(&p.sr, chans[c]);
				/* The page counts are the same as with one channel:
				 * the destination summed every channel's fence. */
				CU_ASSERT_EQUAL(p.dr.bytes, p.sr.bytes);
				CU_ASSERT_EQUAL(p.dr.pages, p.sr.pages);
				/* Each page written or skipped as zero, once. */
				if (!dirty)
					CU_ASSERT_EQUAL(p.sr.bytes + p.sr.zero_pages * 4096,
							32 * MiB);
			}
		}
	}
}

static void test_chunked(void)
{
	struct pair p;

	pair_init(&p, "tcp", 64 * MiB);
	p.src.channels = 4;
	p.src.reg_mode = RMIG_REG_CHUNKED;
	p.src.memlock_budget = 32 * MiB;
	int rc = pair_run(&p);
	expect_verified(&p, rc, "chunked registration");
	CU_ASSERT(p.sr.regs > 4);
}

/*
 * One domain per side: 1, 2 and 4 channels register the guest the same
 * number of times (once per side) and cover the same bytes, and the
 * migration arrives byte-identical through every channel's connection.
 */
static void test_one_registration(void)
{
	static const unsigned chans[] = { 1, 2, 4 };
	const uint64_t size = 32 * MiB;

	for (unsigned b = 0; migtest_backend(b); b++) {
		if (!backend_usable(migtest_backend(b)))
			continue;
		for (unsigned c = 0; c < 3; c++) {
			struct pair p;
			pair_init(&p, migtest_backend(b), size);
			p.src.channels = p.dst.channels = chans[c];
			p.src.reg_mode = RMIG_REG_WHOLE;
			int rc = pair_run(&p);
			expect_verified(&p, rc, "one registration per side");
			fprintf(stderr, "%s, %u channels: source %llu regs %llu bytes, destination %llu regs %llu bytes\n",
				migtest_backend(b), chans[c], (unsigned long long)p.sr.regs,
				(unsigned long long)p.sr.pinned_bytes, (unsigned long long)p.dr.regs,
				(unsigned long long)p.dr.pinned_bytes);
			CU_ASSERT_EQUAL(p.sr.regs, 1);
			CU_ASSERT_EQUAL(p.sr.pinned_bytes, size);
			CU_ASSERT_EQUAL(p.dr.regs, 1);
			CU_ASSERT_EQUAL(p.dr.regs_remote, 1);
			CU_ASSERT_EQUAL(p.dr.pinned_bytes, size);
		}
	}
}

/* Workers stay off the cpus reserved for vCPUs. */
static void test_vcpus_reserved(void)
{
	cpu_set_t set;
	struct pair p;

	if (sched_getaffinity(0, sizeof(set), &set) || !CPU_ISSET(0, &set) || CPU_COUNT(&set) < 2) {
		rmig_test_skip("vCPUs reserved: needs cpu 0 and another cpu to run on");
		return;
	}
	pair_init(&p, "tcp", 32 * MiB);
	p.src.channels = 2;
	p.src.vcpu_cpus = "0";
	int rc = pair_run(&p);
	expect_verified(&p, rc, "vcpus on cpu 0");
	expect_bound(&p.sr, 2);
	CU_ASSERT(p.sr.planned_cpu[0] != 0 && p.sr.planned_cpu[1] != 0);
	/* Every cpu reserved: no place for a worker, said before anything moves. */
	pair_init(&p, "tcp", 32 * MiB);
	p.src.channels = 2;
	p.src.vcpu_cpus = "0-1023";
	rc = pair_run(&p);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p.sr.guest_running, 1);
	CU_ASSERT(strstr(p.sr.error, "cannot place the channel workers") != NULL);
	fprintf(stderr, "all cpus reserved: %s\n", p.sr.error);
}

/* One channel holds its last writes and its fence back: the source's
 * round waits for it, and the data is complete at the destination. */
#ifdef RMIG_TEST_HOOKS /* the cases that need the library's RMIG_TEST_* hooks */
static void test_delayed_channel(void)
{
	struct pair p;

	pair_init(&p, "tcp", 32 * MiB);
	p.src.channels = 2;
	setenv("RMIG_TEST_DELAY_CHANNEL", "1:400", 1);
	int rc = pair_run(&p);
	unsetenv("RMIG_TEST_DELAY_CHANNEL");
	expect_verified(&p, rc, "channel 1 delayed");
	CU_ASSERT(p.sr.nround_log >= 1);
	CU_ASSERT(p.sr.round_log[0].ms >= 400);
}

#endif

static void expect_rolled_back(const struct pair *p, int rc, const char *what)
{
	fprintf(stderr, "%s: source says: %s; destination says: %s\n", what, p->sr.error,
		p->dr.error);
	CU_ASSERT(rc < 0);
	CU_ASSERT_EQUAL(p->sr.committed, 0);
	CU_ASSERT_EQUAL(p->dr.committed, 0);
	CU_ASSERT_EQUAL(p->sr.guest_running, 1);
	CU_ASSERT_EQUAL(p->sr.mrs_live, 0);
	CU_ASSERT_EQUAL(p->dr.mrs_live, 0);
	CU_ASSERT(p->dst_exit != 0);
	CU_ASSERT(p->elapsed_ms < (uint64_t)p->src.timeout_ms * 3 + 3000);
}

/* Channel 1 never sends its fence: the destination must not take the
 * round as done, so it never commits. */
#ifdef RMIG_TEST_HOOKS
static void test_missing_fence(void)
{
	struct pair p;

	pair_init(&p, "tcp", 32 * MiB);
	p.src.channels = p.dst.channels = 2;
	/* The destination's deadline must run out first: with equal ones the
	 * source, waiting on the same round, may give up a moment earlier and
	 * close, and the destination then sees a closed channel instead. */
	p.dst.timeout_ms = 1500;
	p.src.timeout_ms = 4000;
	setenv("RMIG_TEST_SKIP_FENCE", "1", 1);
	int rc = pair_run(&p);
	unsetenv("RMIG_TEST_SKIP_FENCE");
	expect_rolled_back(&p, rc, "no fence from channel 1");
	CU_ASSERT(strstr(p.dr.error, "channel 1 sent no ROUND") != NULL);
	CU_ASSERT(strstr(p.sr.error, "channel 1 sent no ROUND") != NULL);
}

/* Channel 1's connection dies after round 0, on each backend. */
static void test_channel_dies(void)
{
	for (unsigned b = 0; migtest_backend(b); b++) {
		struct pair p;
		if (!backend_usable(migtest_backend(b)))
			continue;
		pair_init(&p, migtest_backend(b), 32 * MiB);
		p.src.channels = p.dst.channels = 2;
		p.src.timeout_ms = p.dst.timeout_ms = 2000;
		p.src.dirty_rate = 10 * MiB;
		setenv("RMIG_TEST_DROP_CHANNEL", "1:0", 1);
		int rc = pair_run(&p);
		unsetenv("RMIG_TEST_DROP_CHANNEL");
		expect_rolled_back(&p, rc, migtest_backend(b));
	}
}
#endif /* RMIG_TEST_HOOKS */

static void test_too_many_channels(void)
{
	struct pair p;

	pair_init(&p, "tcp", 32 * MiB);
	p.src.channels = 4;
	p.dst.channels = 2;
	int rc = pair_run(&p);
	expect_rolled_back(&p, rc, "4 channels to a destination taking 2");
	CU_ASSERT(strstr(p.sr.error, "asks for 4 channels, this destination takes at most 2") !=
		  NULL);
}

/* ---- a hand-made source against the real destination ----------------- */

struct dest {
	const struct rmig_plugin_ops *ops;
	struct rmig_mig_listener *l;
	void *mem;
	int grant_rc, state_after;
	long read_rc;
	uint64_t grant_ms;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	struct rmig_mig *s = NULL;
	char b;

	d->grant_rc = -1;
	if (d->ops->accept(d->l, 5000, &s))
		return NULL;
	uint64_t t0 = rmig_now_ms();
	if (d->ops->load_block_count(s) == 1 && !d->ops->load_register_block(s, 0, d->mem))
		d->grant_rc = d->ops->load_grant(s);
	d->grant_ms = rmig_now_ms() - t0;
	/* The hand-made source cancels: the read returns the reason. */
	d->read_rc = d->ops->stream_read(s, &b, 1, 5000);
	d->state_after = d->ops->state(s);
	d->ops->close(s);
	return NULL;
}

static int xfer(struct rmig_ep *ep, const uint8_t *m, int len, uint8_t *in, size_t cap,
		struct wire_hdr *h)
{
	int n;

	if (len > 0 && rmig_send(ep, m, (size_t)len))
		return -1;
	n = rmig_recv(ep, in, cap, 5000);
	if (n < 0 || wire_hdr_decode(in, (size_t)n, h))
		return -1;
	return n;
}

static void test_join_token(void)
{
	static uint8_t out[4096], in[4096];
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .backend = "tcp",
					  .addr = "127.0.0.1:0", .timeout_ms = 3000,
					  .psk = rmig_test_psk, .psk_len = sizeof(rmig_test_psk) };
	struct wire_hello hl = { .caps = WIRE_CAPS_KNOWN, .page_size = 4096, .nblocks = 1,
				 .total = 8 * 4096, .channels = 2 };
	struct wire_block wb = { .name = "ram", .len = 8 * 4096, .page_size = 4096 };
	/* The key authenticates every connection; the token ties a connection
	 * to this session (a peer with the key but another session's token is
	 * still refused). */
	struct rmig_ep_opts o = { .size = sizeof(o), .timeout_ms = 3000, .psk = rmig_test_psk,
				  .psk_len = sizeof(rmig_test_psk) };
	struct dest d = { .ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION) };
	struct rmig_ep *ep0 = NULL, *bad = NULL, *good = NULL, *none = NULL;
	struct wire_reserve r;
	struct wire_join j = { .channel = 1, .channels = 2 };
	struct rmig_rkey k[2];
	struct wire_hdr h;
	char addr[128], why[128];
	pthread_t t;
	int len;

	CU_ASSERT_PTR_NOT_NULL_FATAL(d.ops);
	d.mem = aligned_alloc(4096, 8 * 4096);
	CU_ASSERT_EQUAL_FATAL(d.ops->listen(&cfg, &d.l), 0);
	CU_ASSERT_EQUAL_FATAL(d.ops->listen_addr(d.l, addr, sizeof(addr)), 0);
	pthread_create(&t, NULL, dest_main, &d);
	CU_ASSERT_EQUAL_FATAL(rmig_connect("tcp", addr, &o, &ep0), 0);
	len = wire_hello_encode(out, sizeof(out), &hl, &wb);
	CU_ASSERT_FATAL(xfer(ep0, out, len, in, sizeof(in), &h) > 0);
	CU_ASSERT_EQUAL_FATAL(h.type, WIRE_RESERVE);
	CU_ASSERT_EQUAL_FATAL(wire_reserve_decode(in + WIRE_HDR_SIZE, h.len, &r, k, 2, why,
						  sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.status, 0);
	/* A wrong token: refused, and that connection is closed. */
	memcpy(j.token, r.token, sizeof(j.token));
	j.token[5] ^= 0x5a;
	CU_ASSERT_EQUAL_FATAL(rmig_connect("tcp", addr, &o, &bad), 0);
	len = wire_join_encode(out, sizeof(out), &j);
	CU_ASSERT_FATAL(xfer(bad, out, len, in, sizeof(in), &h) > 0);
	CU_ASSERT_EQUAL(h.type, WIRE_JOINED);
	CU_ASSERT_EQUAL(wire_reserve_decode(in + WIRE_HDR_SIZE, h.len, &r, k, 2, why,
					    sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.status, -EACCES);
	CU_ASSERT_EQUAL(r.nblocks, 0);
	CU_ASSERT_STRING_EQUAL(r.reason, "unknown session token");
	CU_ASSERT(rmig_recv(bad, in, sizeof(in), 2000) < 0);
	/* No token at all (it opens with HELLO): refused too. */
	CU_ASSERT_EQUAL_FATAL(rmig_connect("tcp", addr, &o, &none), 0);
	len = wire_hello_encode(out, sizeof(out), &hl, &wb);
	CU_ASSERT_FATAL(xfer(none, out, len, in, sizeof(in), &h) > 0);
	CU_ASSERT_EQUAL(h.type, WIRE_JOINED);
	CU_ASSERT_EQUAL(wire_reserve_decode(in + WIRE_HDR_SIZE, h.len, &r, k, 2, why,
					    sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.status, -EACCES);
	/* The right token joins and gets its own key. */
	j.token[5] ^= 0x5a;
	CU_ASSERT_EQUAL_FATAL(rmig_connect("tcp", addr, &o, &good), 0);
	len = wire_join_encode(out, sizeof(out), &j);
	CU_ASSERT_FATAL(xfer(good, out, len, in, sizeof(in), &h) > 0);
	CU_ASSERT_EQUAL(h.type, WIRE_JOINED);
	CU_ASSERT_EQUAL(wire_reserve_decode(in + WIRE_HDR_SIZE, h.len, &r, k, 2, why,
					    sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(r.nblocks, 1);
	CU_ASSERT_EQUAL(k[0].len, 8 * 4096);
	CU_ASSERT(k[0].flags & RMIG_ACCESS_REMOTE_WRITE);
	/* Cancel: the destination rolls back. */
	struct wire_status ws = { .status = -ECANCELED, .reason = "test over" };
	len = wire_status_encode(out, sizeof(out), WIRE_CANCEL, &ws);
	CU_ASSERT_EQUAL(rmig_send(ep0, out, (size_t)len), 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(d.grant_rc, 0);
	CU_ASSERT(d.read_rc < 0);
	CU_ASSERT_EQUAL(d.state_after, RMIG_STATE_ROLLED_BACK);
	rmig_close(good);
	rmig_close(none);
	rmig_close(bad);
	rmig_close(ep0);
	d.ops->listen_close(d.l);
	free(d.mem);
}

/* The source gives up while its channels join: the destination, waiting
 * for them in load_grant, rolls back at the next join, not at its deadline. */
static void test_cancel_while_joining(void)
{
	static uint8_t out[4096], in[4096];
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .backend = "tcp",
					  .addr = "127.0.0.1:0", .timeout_ms = 5000,
					  .psk = rmig_test_psk, .psk_len = sizeof(rmig_test_psk) };
	struct wire_hello hl = { .caps = WIRE_CAPS_KNOWN, .page_size = 4096, .nblocks = 1,
				 .total = 8 * 4096, .channels = 3 };
	struct wire_block wb = { .name = "ram", .len = 8 * 4096, .page_size = 4096 };
	struct rmig_ep_opts o = { .size = sizeof(o), .timeout_ms = 3000, .psk = rmig_test_psk,
				  .psk_len = sizeof(rmig_test_psk) };
	struct dest d = { .ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION) };
	struct wire_status ws = { .status = -ECANCELED, .reason = "the source gave up" };
	struct wire_join j = { .channel = 1, .channels = 3 };
	struct rmig_ep *ep0 = NULL, *ep1 = NULL;
	struct wire_reserve r;
	struct rmig_rkey k[2];
	char why[128];
	struct wire_hdr h;
	char addr[128];
	pthread_t t;
	int len;

	d.mem = aligned_alloc(4096, 8 * 4096);
	CU_ASSERT_EQUAL_FATAL(d.ops->listen(&cfg, &d.l), 0);
	CU_ASSERT_EQUAL_FATAL(d.ops->listen_addr(d.l, addr, sizeof(addr)), 0);
	pthread_create(&t, NULL, dest_main, &d);
	CU_ASSERT_EQUAL_FATAL(rmig_connect("tcp", addr, &o, &ep0), 0);
	len = wire_hello_encode(out, sizeof(out), &hl, &wb);
	CU_ASSERT_FATAL(xfer(ep0, out, len, in, sizeof(in), &h) > 0);
	CU_ASSERT_EQUAL(h.type, WIRE_RESERVE);
	CU_ASSERT_EQUAL(wire_reserve_decode(in + WIRE_HDR_SIZE, h.len, &r, k, 2, why,
					    sizeof(why)), 0);
	len = wire_status_encode(out, sizeof(out), WIRE_CANCEL, &ws);
	CU_ASSERT_EQUAL(rmig_send(ep0, out, (size_t)len), 0);
	/* Channel 1 tries to join after the cancel (channel 2 never comes):
	 * the destination sees the cancel before that accept or after it,
	 * and then nobody accepts (the connection fails its handshake). */
	memcpy(j.token, r.token, sizeof(j.token));
	o.timeout_ms = 1000;
	if (!rmig_connect("tcp", addr, &o, &ep1)) {
		len = wire_join_encode(out, sizeof(out), &j);
		xfer(ep1, out, len, in, sizeof(in), &h);
	}
	pthread_join(t, NULL);
	CU_ASSERT(d.grant_rc < 0);
	CU_ASSERT(d.grant_ms < 2000); /* the deadline was 5000 */
	CU_ASSERT_EQUAL(d.state_after, RMIG_STATE_ROLLED_BACK);
	rmig_close(ep1);
	rmig_close(ep0);
	d.ops->listen_close(d.l);
	free(d.mem);
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "2 and 4 channels, idle and dirtying, every backend", test_idle_and_dirtying },
		{ "4 channels, chunked registration", test_chunked },
		{ "1, 2, 4 channels: one registration per side", test_one_registration },
		{ "workers off the vCPUs' cpus", test_vcpus_reserved },
#ifdef RMIG_TEST_HOOKS /* these need the library's RMIG_TEST_* hooks */
		{ "a delayed channel", test_delayed_channel },
		{ "a missing fence: no commit", test_missing_fence },
		{ "a channel dies after round 0", test_channel_dies },
#endif
		{ "more channels than the destination takes", test_too_many_channels },
		{ "join with a bad or no token", test_join_token },
		{ "the source cancels while channels join", test_cancel_while_joining },
		CU_TEST_INFO_NULL,
	};

	migtest_watchdog(270);
	return rmig_test_run("channels", NULL, NULL, tests);
}
