/* SPDX-License-Identifier: MIT */
/*
 * Parallel channels: N connections per session, the first the control
 * channel.
 *
 * Source: after RESERVE (which carries the destination's random session
 * token) the source opens channels 1..N-1 to the same address; each says
 * JOIN (token, its index) first and gets JOINED back with the
 * destination's keys registered on that connection.  Every channel then
 * gets a worker thread bound to the cpu the placement plan chose (near the
 * NIC, off the vCPUs), with its queue of page ranges allocated on the
 * NIC's node.  save_pages splits ranges into MIG_STRIPE pieces and queues
 * each to the channel owning it; round_end asks every worker to finish:
 * each flushes, waits for its completions and sends its own ROUND on its
 * own connection (after its last write, so it means "this channel's data
 * is visible").
 *
 * Destination: load_grant accepts the N-1 extra connections on the
 * session's listener, refuses any without the token, and a round counts
 * as done only once the ROUND of every channel has arrived.
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"
#ifdef RMIG_HAVE_NUMA
#include <rdmamig/numa.h>
#endif

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Test hooks (docs/architecture.md): read once per session, and only in
 * a build with RMIG_TEST_HOOKS (the test build; a shipped library has
 * none). */
void mig_chan_hooks(struct rmig_mig *s)
{
#ifndef RMIG_TEST_HOOKS
	(void)s;
#else
	const char *v;
	unsigned c, n;

	if ((v = getenv("RMIG_TEST_DELAY_CHANNEL")) && sscanf(v, "%u:%u", &c, &n) == 2 &&
	    c < RMIG_CHANNELS_MAX)
		s->ch[c].delay_ms = n;
	if ((v = getenv("RMIG_TEST_SKIP_FENCE")) && sscanf(v, "%u", &c) == 1 && c > 0 &&
	    c < RMIG_CHANNELS_MAX)
		s->ch[c].skip_fence = 1;
	if ((v = getenv("RMIG_TEST_DROP_CHANNEL")) && sscanf(v, "%u:%u", &c, &n) == 2 &&
	    c > 0 && c < RMIG_CHANNELS_MAX) {
		s->drop_channel = (int)c;
		s->drop_round = (int)n;
	}
#endif
}

static void wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += (long)ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	pthread_cond_timedwait(cv, m, &ts);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The live blocks' keys arrive in block order; each must cover its block. */
static int take_keys(struct rmig_mig *s, struct mig_chan *c, const struct rmig_rkey *keys,
		     uint32_t nkeys)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < s->nblocks; i++) {
		if (!s->blocks[i].live)
			continue;
		if (k >= nkeys || keys[k].len != s->blocks[i].len ||
		    !(keys[k].flags & RMIG_ACCESS_REMOTE_WRITE))
			return mig_fail(s, -EPROTO,
					"the destination's key for block %s on channel %u does not cover it for writing",
					s->blocks[i].name, c->idx);
		c->rkeys[i] = keys[k++];
	}
	if (k != nkeys)
		return mig_fail(s, -EPROTO, "the destination sent %u keys for %u blocks on channel %u",
				nkeys, k, c->idx);
	return 0;
}

static int join_one(struct rmig_mig *s, struct mig_chan *c, struct rmig_rkey *keys)
{
	struct rmig_ep_opts o;
	struct wire_join j = { .channel = c->idx, .channels = s->nch };
	struct wire_reserve r;
	struct wire_hdr h;
	char why[128];
	int rc, len, n;

	/* The control connection's options: the same key authenticates it;
	 * on its domain, so the guest's one registration serves here too. */
	mig_ep_opts(&s->cfg, &o);
	o.domain = s->dom;
	rc = rmig_connect(s->cfg.backend, s->cfg.addr, &o, &c->ep);
	if (rc) {
		c->ep = NULL;
		return mig_fail(s, rc, "cannot open channel %u to %s: %s", c->idx, s->cfg.addr,
				rmig_last_error());
	}
	memcpy(j.token, s->token, sizeof(j.token));
	len = wire_join_encode(s->msg, sizeof(s->msg), &j);
	if ((rc = rmig_send(c->ep, s->msg, (size_t)len)))
		return mig_fail(s, rc, "lost channel %u while joining: %s", c->idx,
				rmig_ep_error(c->ep));
	n = mig_ep_recv(s, c->ep, s->rxmsg, sizeof(s->rxmsg), s->cfg.timeout_ms);
	if (n < 0)
		return mig_fail(s, n, "the destination did not answer channel %u's JOIN: %s",
				c->idx, rmig_ep_error(c->ep));
	if (wire_hdr_decode(s->rxmsg, (size_t)n, &h) || h.type != WIRE_JOINED)
		return mig_fail(s, -EPROTO, "the destination answered channel %u's JOIN with %s",
				c->idx, wire_type_name(h.type));
	if (wire_reserve_decode(s->rxmsg + WIRE_HDR_SIZE, h.len, &r, keys, WIRE_BLOCKS_MAX,
				why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the destination sent a malformed JOINED: %s", why);
	if (r.status)
		return mig_fail(s, r.status, "the destination refused channel %u: %s", c->idx,
				r.reason);
	if ((rc = take_keys(s, c, keys, r.nblocks)))
		return rc;
	return mig_register_source(s, c);
}

int mig_join_channels(struct rmig_mig *s)
{
	struct rmig_rkey *keys;
	int rc = 0;

	if (s->nch < 2)
		return 0;
	keys = calloc(WIRE_BLOCKS_MAX, sizeof(*keys));
	if (!keys)
		return mig_fail(s, -ENOMEM, "out of memory for the channels' keys");
	for (unsigned i = 1; i < s->nch && !rc; i++)
		rc = join_one(s, &s->ch[i], keys);
	free(keys);
	return rc;
}

/* ---- the workers ------------------------------------------------------ */

/* Channel 0's worker: one STREAM message of the framework's bytes. */
static int chan_send_stream(struct mig_chan *c, const struct mig_work *w)
{
	int m, rc;

	if (!c->smsg && !(c->smsg = malloc(RMIG_MSG_MAX)))
		return chan_err(c, -ENOMEM, "out of memory for a stream message");
	m = wire_stream_encode(c->smsg, RMIG_MSG_MAX, (const void *)(uintptr_t)w->off,
			       (size_t)w->len);
	if (m < 0)
		return chan_err(c, m, "stream piece of %llu bytes does not fit a message",
				(unsigned long long)w->len);
	if ((rc = rmig_send(c->ep, c->smsg, (size_t)m))) {
		c->peer_gone = 1;
		return chan_err(c, rc, "lost the peer sending the stream: %s", rmig_ep_error(c->ep));
	}
	return 0;
}

static void *worker(void *arg)
{
	struct mig_chan *c = arg;
	cpu_set_t set;
	int rc;

#ifdef RMIG_HAVE_NUMA
	if (c->s->plan)
		rmig_placement_bind_self(c->s->plan, c->idx);
#endif
	/* What the kernel says, not what we asked for: the test hook. */
	if (!sched_getaffinity(0, sizeof(set), &set) && CPU_COUNT(&set) == 1)
		for (int i = 0; i < CPU_SETSIZE; i++)
			if (CPU_ISSET(i, &set)) {
				c->worker_cpu = i;
				break;
			}
	pthread_mutex_lock(&c->lock);
	c->round_done = 1; /* started */
	pthread_cond_broadcast(&c->done_cv);
	while (!c->quit) {
		if (c->head != c->tail) {
			struct mig_work w = c->ring[c->tail % MIG_RING];
			int failed = c->failed;
			pthread_mutex_unlock(&c->lock);
			rc = failed ? 0 : w.block == MIG_WORK_STREAM ? chan_send_stream(c, &w)
								     : chan_send_range(c, &w);
			pthread_mutex_lock(&c->lock);
			c->failed |= rc != 0;
			c->tail++;
			pthread_cond_broadcast(&c->done_cv);
			continue;
		}
		if (c->end_req) {
			int failed = c->failed;
			pthread_mutex_unlock(&c->lock);
			/* The test hook's delay, cut short by a shutdown. */
			for (unsigned ms = 0; !failed && ms < c->delay_ms && !mig_shut(c->s);
			     ms += MIG_SLICE_MS)
				sleep_ms(MIG_SLICE_MS);
			rc = failed ? 0 : chan_end_round(c);
			pthread_mutex_lock(&c->lock);
			c->failed |= rc != 0;
			c->end_req = 0;
			c->round_done = 1;
			pthread_cond_broadcast(&c->done_cv);
			continue;
		}
		/* Idle: no deadline to miss, but wake up now and then anyway. */
		wait_ms(&c->work_cv, &c->lock, 1000);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * c->rc and c->err are written by the worker outside the lock; it then
 * sets c->failed under the lock.  The framework reads failed under the
 * lock and rc/err only after joining the worker (mig_chan_fail).
 */
static int chan_failed(struct mig_chan *c)
{
	return c->failed;
}

#ifdef RMIG_HAVE_NUMA
static int make_plan(struct rmig_mig *s)
{
	struct rmig_placement_opts po = { .size = sizeof(po), .workers = s->nch };
	char nic[128];
	int rc;

	if (s->vcpus[0])
		po.vcpus = s->vcpus;
	/* The NIC is the one holding the control connection's local address. */
	if (!rmig_local_addr(s->ep, nic, sizeof(nic)))
		po.nic = nic;
	for (uint32_t i = 0; i < s->nblocks; i++) {
		if (s->blocks[i].live) {
			po.guest_addr = s->blocks[i].host;
			po.guest_len = s->blocks[i].len;
			break;
		}
	}
	rc = rmig_placement_plan(&po, &s->plan);
	if (rc) {
		s->plan = NULL;
		return mig_fail(s, rc, "cannot place the channel workers: %s", rmig_last_error());
	}
	for (unsigned i = 0; i < s->nch; i++)
		s->ch[i].planned_cpu = rmig_placement_cpu(s->plan, i);
	return 0;
}
#endif

static int start_one(struct rmig_mig *s, struct mig_chan *c)
{
	pthread_condattr_t ca;

	c->ring_bytes = MIG_RING * sizeof(*c->ring);
#ifdef RMIG_HAVE_NUMA
	if (s->plan)
		c->ring = rmig_placement_alloc(s->plan, c->ring_bytes);
#endif
	if (!c->ring)
		return mig_fail(s, -ENOMEM, "out of memory for channel %u's queue", c->idx);
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->work_cv, &ca);
	pthread_cond_init(&c->done_cv, &ca);
	pthread_condattr_destroy(&ca);
	c->head = c->tail = 0;
	c->round_done = c->end_req = c->quit = c->failed = 0;
	if (pthread_create(&c->thread, NULL, worker, c)) {
		pthread_cond_destroy(&c->work_cv);
		pthread_cond_destroy(&c->done_cv);
		pthread_mutex_destroy(&c->lock);
		return mig_fail(s, -EAGAIN, "cannot start channel %u's worker thread", c->idx);
	}
	c->has_thread = 1;
	return 0;
}

int mig_start_workers(struct rmig_mig *s)
{
	int rc;

	for (unsigned i = 0; i < s->nch; i++)
		s->ch[i].bandwidth = s->cfg.bandwidth / s->nch;
	if (s->nch < 2)
		return 0;
#ifdef RMIG_HAVE_NUMA
	if ((rc = make_plan(s)))
		return rc;
#else
	return mig_fail(s, -EOPNOTSUPP,
			"%u channels need the numa placement (this build has no hwloc: one channel)",
			s->nch);
#endif
	for (unsigned i = 0; i < s->nch; i++)
		if ((rc = start_one(s, &s->ch[i])))
			return rc;
	/* Each worker says it has started (bound, cpu read). */
	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		uint64_t deadline = rmig_deadline(s->cfg.timeout_ms);
		pthread_mutex_lock(&c->lock);
		while (!c->round_done && rmig_left_ms(deadline))
			wait_ms(&c->done_cv, &c->lock, 50);
		rc = c->round_done ? 0 : -ETIMEDOUT;
		pthread_mutex_unlock(&c->lock);
		if (rc)
			return mig_fail(s, rc, "channel %u's worker did not start within %d ms", i,
					s->cfg.timeout_ms);
	}
	return 0;
}

void mig_stop_workers(struct rmig_mig *s)
{

	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		if (!c->has_thread)
			continue;
		pthread_mutex_lock(&c->lock);
		c->quit = 1;
		pthread_cond_broadcast(&c->work_cv);
		pthread_mutex_unlock(&c->lock);
	}
	/* Every wait in a worker has a deadline (timeout_ms): joins end. */
	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		if (!c->has_thread)
			continue;
		pthread_join(c->thread, NULL);
		c->has_thread = 0;
		pthread_cond_destroy(&c->work_cv);
		pthread_cond_destroy(&c->done_cv);
		pthread_mutex_destroy(&c->lock);
	}
	/* Also after a start that failed half-way: rings and plan go too. */
#ifdef RMIG_HAVE_NUMA
	for (unsigned i = 0; i < s->nch; i++) {
		if (s->ch[i].ring)
			rmig_placement_free(s->plan, s->ch[i].ring, s->ch[i].ring_bytes);
		s->ch[i].ring = NULL;
	}
	if (s->plan)
		rmig_placement_destroy(s->plan);
	s->plan = NULL;
#endif
}

int mig_chan_fail(struct rmig_mig *s, struct mig_chan *c)
{
	mig_stop_workers(s);
	int rc = c->rc ? c->rc : -EIO;
	char why[RMIG_ERR_MAX];

	/* Only channel 0's loss silences the CANCEL: when another channel's
	 * connection died the control connection may well be up, and the
	 * destination then hears why instead of waiting out that channel. */
	if (c->idx == 0)
		s->peer_gone |= c->peer_gone;
	if (s->nch == 1)
		return mig_fail(s, rc, "%s", c->err);
	snprintf(why, sizeof(why), "%s", c->err);
	return mig_fail(s, rc, "channel %u: %s", c->idx, why);
}

int mig_chan_enqueue(struct rmig_mig *s, const struct mig_work *w)
{
	unsigned ci = (unsigned)((w->off / MIG_STRIPE + w->block) % s->nch);
	struct mig_chan *c = &s->ch[ci];
	uint64_t deadline = rmig_deadline(s->cfg.timeout_ms);
	int failed, full;

	pthread_mutex_lock(&c->lock);
	while (!(failed = chan_failed(c)) && (full = c->head - c->tail >= MIG_RING) &&
	       !mig_shut(s) && rmig_left_ms(deadline))
		wait_ms(&c->done_cv, &c->lock, MIG_SLICE_MS);
	if (!failed && !full) {
		struct mig_work *last = &c->ring[(c->head - 1) % MIG_RING];
		/* Extend the last piece if the worker has not taken it yet. */
		if (c->head - c->tail >= 2 && last->block == w->block &&
		    w->block != MIG_WORK_STREAM &&
		    last->off + last->len == w->off && w->off % MIG_STRIPE)
			last->len += w->len;
		else
			c->ring[c->head++ % MIG_RING] = *w;
		pthread_cond_signal(&c->work_cv);
	}
	pthread_mutex_unlock(&c->lock);
	if (failed)
		return mig_chan_fail(s, c);
	if (full) {
		mig_stop_workers(s);
		if (mig_shut(s))
			return mig_fail(s, -ECANCELED, "shut down: %s", s->shut_why);
		return mig_fail(s, -ETIMEDOUT, "channel %u took no pages for %d ms", ci,
				s->cfg.timeout_ms);
	}
	return 0;
}

int mig_chan_stream(struct rmig_mig *s, const void *buf, size_t len)
{
	struct mig_chan *c = &s->ch[0];
	struct mig_work w = { .block = MIG_WORK_STREAM, .off = (uintptr_t)buf, .len = len };
	uint64_t deadline = rmig_deadline(s->cfg.timeout_ms), mine = 0, seen;
	int failed, done = 0;

	pthread_mutex_lock(&c->lock);
	/* Room in the queue, then the item, then the worker past it; the
	 * deadline runs from the worker's last progress. */
	seen = c->tail;
	while (!(failed = chan_failed(c)) && !mig_shut(s) && rmig_left_ms(deadline)) {
		if (!mine && c->head - c->tail < MIG_RING) {
			c->ring[c->head++ % MIG_RING] = w;
			mine = c->head;
			pthread_cond_signal(&c->work_cv);
		}
		if (mine && c->tail >= mine) {
			done = 1;
			break;
		}
		wait_ms(&c->done_cv, &c->lock, MIG_SLICE_MS);
		if (c->tail != seen) {
			seen = c->tail;
			deadline = rmig_deadline(s->cfg.timeout_ms);
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (done)
		return 0;
	if (failed)
		return mig_chan_fail(s, c);
	/* The worker may still hold the caller's buffer: stop it first. */
	mig_stop_workers(s);
	if (mig_shut(s))
		return mig_fail(s, -ECANCELED, "shut down: %s", s->shut_why);
	return mig_fail(s, -ETIMEDOUT, "channel 0 sent no stream bytes for %d ms",
			s->cfg.timeout_ms);
}

/* Every worker: finish the queue, drain, send its fence.  The deadline
 * runs from the last progress a channel made, not from the start. */
int mig_chans_end_round(struct rmig_mig *s)
{
	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		pthread_mutex_lock(&c->lock);
		c->round_done = 0;
		c->end_req = 1;
		pthread_cond_signal(&c->work_cv);
		pthread_mutex_unlock(&c->lock);
	}
	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		int limit = 2 * s->cfg.timeout_ms + (int)c->delay_ms;
		uint64_t deadline = rmig_deadline(limit), seen;
		int done, failed;

		pthread_mutex_lock(&c->lock);
		seen = c->tail;
		while (!(done = c->round_done) && !mig_shut(s) && rmig_left_ms(deadline)) {
			wait_ms(&c->done_cv, &c->lock, MIG_SLICE_MS);
			if (c->tail != seen) {
				seen = c->tail;
				deadline = rmig_deadline(limit);
			}
		}
		failed = chan_failed(c);
		pthread_mutex_unlock(&c->lock);
		if (!done) {
			mig_stop_workers(s);
			if (mig_shut(s))
				return mig_fail(s, -ECANCELED, "shut down: %s", s->shut_why);
			return mig_fail(s, -ETIMEDOUT, "channel %u did not finish round %u within %d ms",
					i, s->round.round, limit);
		}
		if (failed)
			return mig_chan_fail(s, c);
	}
	return 0;
}

/* ---- destination ------------------------------------------------------- */

/* Constant time: the token is a secret of the session. */
static int token_eq(const uint8_t *a, const uint8_t *b)
{
	uint8_t d = 0;

	for (unsigned i = 0; i < WIRE_TOKEN_SIZE; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static void refuse_join(struct rmig_ep *ep, int err, const char *why)
{
	struct wire_reserve r = { .status = err };
	uint8_t m[WIRE_HDR_SIZE + WIRE_RESERVE_SIZE];
	int len;

	snprintf(r.reason, sizeof(r.reason), "%s", why);
	len = wire_joined_encode(m, sizeof(m), &r, NULL);
	if (len > 0)
		rmig_send(ep, m, (size_t)len);
	rmig_close(ep);
}

/* One arriving connection: >0 joined as that channel, 0 refused, <0 the
 * session failed. */
static int take_join(struct rmig_mig *s, struct rmig_ep *ep, int timeout_ms)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_JOIN_SIZE + 64];
	struct rmig_rkey *keys;
	struct wire_reserve r = { .nblocks = s->nblocks };
	struct wire_join j;
	struct wire_hdr h;
	struct mig_chan *c;
	char why[128];
	int n = mig_ep_recv(s, ep, m, sizeof(m), timeout_ms), rc, len;

	if (n < 0 || wire_hdr_decode(m, (size_t)n, &h) || h.type != WIRE_JOIN ||
	    wire_join_decode(m + WIRE_HDR_SIZE, h.len, &j, why, sizeof(why))) {
		refuse_join(ep, -EACCES, "a connection to a session in progress must JOIN first");
		return 0;
	}
	if (!token_eq(j.token, s->token) || j.channels != s->nch) {
		refuse_join(ep, -EACCES, "unknown session token");
		return 0;
	}
	c = &s->ch[j.channel];
	if (c->ep) {
		refuse_join(ep, -EEXIST, "that channel has already joined");
		return 0;
	}
	c->ep = ep;
	if ((rc = mig_register_dest(s, c)))
		return mig_fail(s, rc, "%s", s->err);
	keys = calloc(s->nblocks, sizeof(*keys));
	if (!keys)
		return mig_fail(s, -ENOMEM, "out of memory for the keys");
	for (uint32_t i = 0; i < s->nblocks; i++)
		keys[i] = *rmig_mr_rkey(c->mrs[i]);
	len = wire_joined_encode(s->msg, sizeof(s->msg), &r, keys);
	free(keys);
	if (len < 0)
		return mig_fail(s, len, "too many RAM blocks for one JOINED");
	if ((rc = rmig_send(ep, s->msg, (size_t)len)))
		return mig_fail(s, rc, "lost channel %u while it joined: %s", c->idx,
				rmig_ep_error(ep));
	return (int)c->idx;
}

/*
 * While channels join, the source may give up (CANCEL on channel 0) or
 * vanish: look at channel 0 before each accept, so the destination frees
 * everything then instead of at the deadline.
 */
static int control_alive(struct rmig_mig *s)
{
	char why[WIRE_REASON_MAX + 8];
	struct wire_status ws;
	struct wire_hdr h;
	int n = rmig_recv(s->ep, s->rxmsg, sizeof(s->rxmsg), 1);

	if (n == -ETIMEDOUT)
		return 0;
	if (n < 0) {
		s->peer_gone = 1;
		return mig_fail(s, n, "lost the source while its channels joined: %s",
				rmig_ep_error(s->ep));
	}
	if (wire_hdr_decode(s->rxmsg, (size_t)n, &h) || h.type != WIRE_CANCEL)
		return mig_fail(s, -EPROTO, "the source sent %s while its channels joined",
				wire_type_name(h.type));
	s->peer_gone = 1;
	if (wire_status_decode(s->rxmsg + WIRE_HDR_SIZE, h.len, &ws, why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the peer sent a malformed CANCEL: %s", why);
	return mig_fail(s, ws.status ? ws.status : -ECANCELED,
			"the peer cancelled the migration: %s", ws.reason);
}

int mig_accept_channels(struct rmig_mig *s)
{
	uint64_t deadline = rmig_deadline(s->cfg.timeout_ms);
	unsigned joined = 1;
	int rc;

	if (s->nch < 2)
		return 0;
	if (!s->listener)
		return mig_fail(s, -EINVAL, "extra channels need the session's listener open");
	while (joined < s->nch) {
		struct rmig_ep *ep = NULL;
		int left = (int)rmig_left_ms(deadline);
		if (!left)
			return mig_fail(s, -ETIMEDOUT, "only %u of %u channels joined within %d ms",
					joined, s->nch, s->cfg.timeout_ms);
		if ((rc = control_alive(s)))
			return rc;
		/* Past peers that fail authentication (mig_accept_peer).  The
		 * whole time left, not slices: verbs gives a connection it has
		 * begun to accept only what is left of the call's deadline to be
		 * established, and under emulation that takes long. */
		rc = mig_accept_peer(s, s->listener->ep, left, &ep);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc)
			return mig_fail(s, rc, "channel %u did not arrive: %s", joined,
					rmig_ep_error(s->listener->ep));
		rc = take_join(s, ep, left);
		if (rc < 0)
			return rc;
		joined += rc > 0;
	}
	return 0;
}

int mig_take_fences(struct rmig_mig *s, const struct wire_round *r0, struct wire_round *sum)
{
	struct wire_round acc = *r0, r;
	uint8_t m[256];
	struct wire_hdr h;
	char why[128];

	for (unsigned i = 1; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		int n;
		if (!c->ep)
			return mig_fail(s, -ECONNRESET, "channel %u is gone before round %u's fence",
					i, r0->round);
		n = mig_ep_recv(s, c->ep, m, sizeof(m), s->cfg.timeout_ms);
		if (n == -ETIMEDOUT)
			return mig_fail(s, n, "channel %u sent no ROUND %u within %d ms", i,
					r0->round, s->cfg.timeout_ms);
		if (n < 0)
			return mig_fail(s, n, "lost channel %u: %s", i, rmig_ep_error(c->ep));
		if (wire_hdr_decode(m, (size_t)n, &h) || h.type != WIRE_ROUND)
			return mig_fail(s, -EPROTO, "channel %u sent %s where its ROUND was due", i,
					wire_type_name(h.type));
		if (wire_round_decode(m + WIRE_HDR_SIZE, h.len, &r, why, sizeof(why)))
			return mig_fail(s, -EPROTO, "channel %u sent a malformed ROUND: %s", i, why);
		if (r.channel != i || r.round != r0->round || r.final != r0->final)
			return mig_fail(s, -EPROTO,
					"channel %u sent ROUND %u%s of channel %u, ROUND %u%s was due", i,
					r.round, r.final ? " (final)" : "", r.channel, r0->round,
					r0->final ? " (final)" : "");
		acc.pages += r.pages;
		acc.bytes += r.bytes;
		acc.zero_pages += r.zero_pages;
	}
	/* Test hook: this channel's connection dies after the round. */
	if (s->drop_channel > 0 && (unsigned)s->drop_channel < s->nch &&
	    (int)r0->round == s->drop_round) {
		struct mig_chan *c = &s->ch[s->drop_channel];
		mig_deregister_chan(c);
		rmig_close(c->ep);
		c->ep = NULL;
	}
	*sum = acc;
	return 0;
}

void mig_close_channels(struct rmig_mig *s)
{
	for (unsigned i = 1; i < RMIG_CHANNELS_MAX; i++) {
		if (s->ch[i].ep)
			rmig_close(s->ch[i].ep);
		s->ch[i].ep = NULL;
	}
}
