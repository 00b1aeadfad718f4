/* SPDX-License-Identifier: MIT */
/*
 * The source side: connect and reserve, then rounds of page writes.
 *
 * Pages handed to save_page(s) are coalesced: a run of contiguous pages of
 * one block becomes one rmig_write (up to MIG_WRITE_MAX, never across a
 * registration chunk), writes gather into batches of up to RMIG_BATCH_MAX,
 * each batch is one rmig_write_batch with one completion, and at most
 * MIG_WINDOW batches are in flight.  Guest memory is written straight from
 * where it lives: no copy.
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * A failed page write.  A remote access error on a region the destination
 * granted means it no longer grants it: it deregistered the region, which
 * it does when it closes, dies or gives up (seen when the destination is
 * killed during setup, over verbs).
 */
static int write_failed(struct rmig_ep *ep, int status)
{
	if (status == -EACCES)
		return rmig_set_error(ep, status,
				      "a page write was refused by the destination (%s): it no longer grants that memory (it closed, died or revoked the key)",
				      strerror(-status));
	return rmig_set_error(ep, status, "a page write failed: %s", strerror(-status));
}

static int reap(struct mig_chan *c, int wait)
{
	struct rmig_mig *s = c->s;
	struct rmig_completion cq[MIG_WINDOW];
	int n = wait ? mig_ep_poll(s, c->ep, cq, MIG_WINDOW, s->cfg.timeout_ms)
		     : rmig_poll(c->ep, cq, MIG_WINDOW, 0);

	if (n < 0)
		return n;
	if (n == 0 && wait)
		return rmig_set_error(c->ep, -ETIMEDOUT,
				      "page writes not completed within %d ms",
				      s->cfg.timeout_ms);
	for (int i = 0; i < n; i++) {
		for (unsigned j = 0; j < c->inflight; j++) {
			if (c->inflight_ids[j] == cq[i].wr_id) {
				c->inflight_ids[j] = c->inflight_ids[c->inflight - 1];
				break;
			}
		}
		c->inflight--;
		if (cq[i].status)
			return write_failed(c->ep, cq[i].status);
	}
	return 0;
}

/* Wait for every batch in flight.  On error nothing is in flight any more
 * that the session will ever look at again. */
int chan_drain(struct mig_chan *c)
{
	int rc = 0;

	while (c->ep && c->inflight && !rc)
		rc = reap(c, 1);
	if (rc || !c->ep)
		c->inflight = 0;
	return rc;
}

int mig_drain(struct rmig_mig *s)
{
	int rc = 0, r;

	mig_stop_workers(s);
	for (unsigned i = 0; i < s->nch; i++)
		if ((r = chan_drain(&s->ch[i])) && !rc)
			rc = r;
	return rc;
}

int chan_wait_batch(struct mig_chan *c, uint64_t wr_id)
{
	int rc;

	if (wr_id == c->next_wr_id && c->nbatch && (rc = chan_post_batch(c)))
		return rc;
	for (;;) {
		unsigned j = 0;
		while (j < c->inflight && c->inflight_ids[j] != wr_id)
			j++;
		if (j == c->inflight)
			return 0;
		if ((rc = reap(c, 1)))
			return chan_err(c, rc, "page writes did not complete: %s",
					rmig_ep_error(c->ep));
	}
}

/* Sleep as long as the round is ahead of this channel's bandwidth share. */
static void pace(struct mig_chan *c)
{
	uint64_t due, now;

	if (!c->bandwidth)
		return;
	due = c->bw_t0 + (uint64_t)((double)c->bw_bytes * 1e9 / (double)c->bandwidth);
	now = rmig_now_ns();
	if (due > now) {
		uint64_t d = due - now;
		struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
		nanosleep(&ts, NULL);
	}
}

/*
 * The destination waits for channel 0's next message (a ROUND, STREAM or
 * END) with a deadline of timeout_ms, and one-sided writes are invisible to
 * it; a round can take longer than that (an 8 GiB guest at 500 MiB/s takes
 * 16 s).  So while pages flow, channel 0 sends an empty STREAM message
 * every third of the deadline: the destination reads it as "still
 * sending" and otherwise ignores it (no bytes, no change of wire format).
 */
static int keepalive(struct mig_chan *c)
{
	static const uint8_t none;
	uint8_t m[WIRE_HDR_SIZE];
	uint64_t now = rmig_now_ms();
	int n, rc;

	if (c->idx || now - c->alive_ms < (uint64_t)c->s->cfg.timeout_ms / 3)
		return 0;
	n = wire_stream_encode(m, sizeof(m), &none, 0);
	if (n < 0)
		return n;
	if ((rc = rmig_send(c->ep, m, (size_t)n)))
		return rc;
	c->alive_ms = now;
	return 0;
}

int chan_post_batch(struct mig_chan *c)
{
	int rc;

	if (!c->nbatch)
		return 0;
	while (c->inflight >= MIG_WINDOW)
		if ((rc = reap(c, 1)))
			goto lost;
	for (;;) {
		rc = rmig_write_batch(c->ep, c->batch, c->nbatch, c->next_wr_id);
		if (rc != -EAGAIN)
			break;
		if ((rc = reap(c, 1)))
			goto lost;
	}
	if (rc)
		goto lost;
	c->inflight_ids[c->inflight++] = c->next_wr_id++;
	c->round.batches++;
	/* stats() reads it from the framework thread during the round. */
	__atomic_store_n(&c->round.bytes, c->round.bytes + c->batch_bytes, __ATOMIC_RELAXED);
	c->bw_bytes += c->batch_bytes;
	c->nbatch = 0;
	c->batch_bytes = 0;
	if ((rc = reap(c, 0)) || (rc = keepalive(c)))
		goto lost;
	pace(c);
	return 0;
lost:
	c->nbatch = 0;
	c->peer_gone = rc != -ERANGE && rc != -EINVAL && rc != -EACCES;
	return chan_err(c, rc, "page writes failed: %s", rmig_ep_error(c->ep));
}

/* The longest write the open extent's head can become (chunk and size
 * limits). */
static uint64_t extent_piece(const struct mig_chan *c, const struct mig_extent *e)
{
	uint64_t n = MIG_WRITE_MAX;

	if (c->s->chunked && MIG_CHUNK_SIZE - e->off % MIG_CHUNK_SIZE < n)
		n = MIG_CHUNK_SIZE - e->off % MIG_CHUNK_SIZE;
	return n;
}

/*
 * The batch is posted once it holds MIG_BATCH_BYTES, or a single write's
 * worth while fewer than two batches are in flight: the link never waits
 * for a large batch to fill (round 0 starts writing after the first
 * MiB, not the first 8), and once it is busy batches grow again.
 */
static int batch_full(const struct mig_chan *c)
{
	return c->nbatch == RMIG_BATCH_MAX || c->batch_bytes >= MIG_BATCH_BYTES ||
	       (c->inflight < 2 && c->batch_bytes >= MIG_WRITE_MAX);
}

/* Write the open extent's first len bytes (whole pieces, or all of it). */
static int emit(struct mig_chan *c, uint64_t len)
{
	struct mig_extent *e = &c->ext;
	int rc;

	while (len) {
		uint64_t n = extent_piece(c, e), loff;
		const struct rmig_mr *mr;

		if (n > len)
			n = len;
		if ((rc = mig_local_mr(c, e->block, e->off, &mr, &loff)))
			return rc;
		c->batch[c->nbatch++] = (struct rmig_write){
			.lmr = mr, .loff = loff, .rkey = &c->rkeys[e->block], .roff = e->off,
			.len = n };
		c->batch_bytes += n;
		c->round.writes++;
		e->off += n;
		e->len -= n;
		len -= n;
		if (batch_full(c) && (rc = chan_post_batch(c)))
			return rc;
	}
	return 0;
}

/* Turn the open extent into writes (split at chunk and size limits); a
 * zero gap after it is dropped (skipped). */
static int flush_extent(struct mig_chan *c)
{
	struct mig_extent *e = &c->ext;

	if (!e->open)
		return 0;
	e->open = 0;
	e->gap = 0;
	return emit(c, e->len);
}

/* The open extent's head as writes once it is a whole write: a long run of
 * pages goes out while the scan goes on, not when the run ends. */
static int emit_whole(struct mig_chan *c)
{
	struct mig_extent *e = &c->ext;
	int rc;

	while (e->len >= extent_piece(c, e))
		if ((rc = emit(c, extent_piece(c, e))))
			return rc;
	return 0;
}

/* Eight words at a time, no branch inside: the compiler vectorises it.  A
 * page with data usually fails on its first line. */
static int page_is_zero(const uint8_t *p, uint32_t len)
{
	const uint64_t *w = (const uint64_t *)p;

	for (uint32_t i = 0; i < len / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		    w[i + 7])
			return 0;
	return 1;
}

/* Whether off continues the open extent (past its zero gap). */
static int extends(const struct mig_extent *e, uint32_t block, uint64_t off)
{
	return e->open && e->block == block && e->off + e->len + e->gap == off;
}

/* A zero page the peer holds as zeros: part of the gap after the open
 * extent while the gap fits the bridge, else the extent is written now. */
static int zero_page(struct mig_chan *c, uint32_t block, uint64_t off)
{
	struct mig_extent *e = &c->ext;
	uint32_t ps = c->s->page_size;

	c->round.zero_pages++;
	if (extends(e, block, off) && e->gap + ps <= c->s->bridge_bytes) {
		e->gap += ps;
		return 0;
	}
	return flush_extent(c);
}

/* A page to send: extend the open extent (bridging its zero gap) or
 * start a new one. */
static int data_page(struct mig_chan *c, uint32_t block, uint64_t off)
{
	struct mig_block *b = &c->s->blocks[block];
	struct mig_extent *e = &c->ext;
	uint32_t ps = c->s->page_size;
	int rc;

	if (extends(e, block, off)) {
		/* The bridged zeros go out as written pages: the peer may hold
		 * what the guest writes into them before the write reads them. */
		for (uint64_t z = e->off + e->len; z < off; z += ps) {
			uint64_t pg = z / ps;
			b->sent[pg / 8] |= (uint8_t)(1u << (pg % 8));
			c->round.zero_pages--;
		}
		e->len += e->gap + ps;
		e->gap = 0;
		return emit_whole(c);
	}
	if ((rc = flush_extent(c)))
		return rc;
	*e = (struct mig_extent){ .block = block, .off = off, .len = ps, .open = 1 };
	return emit_whole(c);
}

/* How many pages ahead the scan asks for the first line of a page. */
#define SCAN_AHEAD 8

int chan_send_range(struct mig_chan *c, const struct mig_work *w)
{
	struct rmig_mig *s = c->s;
	struct mig_block *b = &s->blocks[w->block];
	int skip_zero = (s->dest_zeroed || (b->flags & RMIG_BLOCK_DEST_ZEROED)) &&
			(s->caps & WIRE_CAP_ZERO_SKIP);
	uint64_t ps = s->page_size, end = w->off + w->len;
	int rc;

	for (uint64_t off = w->off; off < end; off += ps) {
		uint64_t pg = off / ps;
		/* Each page's first touch is a cache (and TLB) miss: start the
		 * next ones early. */
		if (off + SCAN_AHEAD * ps < end)
			__builtin_prefetch(b->host + off + SCAN_AHEAD * ps);
		c->round.pages++;
		if (skip_zero && !(b->sent[pg / 8] & (1u << (pg % 8))) &&
		    page_is_zero(b->host + off, (uint32_t)ps)) {
			rc = zero_page(c, w->block, off);
		} else {
			b->sent[pg / 8] |= (uint8_t)(1u << (pg % 8));
			rc = data_page(c, w->block, off);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* Split a range at stripe boundaries and queue each piece to its channel. */
static int queue_range(struct rmig_mig *s, const struct rmig_page_range *x)
{
	uint64_t off = x->offset, end = x->offset + x->len;
	int rc;

	while (off < end) {
		uint64_t n = MIG_STRIPE - off % MIG_STRIPE;
		struct mig_work w = { .block = x->block, .off = off };
		if (n > end - off)
			n = end - off;
		w.len = n;
		if ((rc = mig_chan_enqueue(s, &w)))
			return rc;
		off += n;
	}
	return 0;
}

int mig_save_pages(struct rmig_mig *s, const struct rmig_page_range *r, unsigned n)
{
	int rc;

	if (!s->in_round)
		return mig_err(s, -EINVAL, "save_page outside a round (call round_start)");
	for (unsigned i = 0; i < n; i++) {
		const struct rmig_page_range *x = &r[i];
		struct mig_block *b;

		if (x->block >= s->nblocks || !s->blocks[x->block].live)
			return mig_err(s, -ENOENT, "save_page: no RAM block %u", x->block);
		b = &s->blocks[x->block];
		if (x->offset % s->page_size || x->len % s->page_size || x->len > b->len ||
		    x->offset > b->len - x->len)
			return mig_err(s, -ERANGE,
				       "save_page: %llu bytes at %llu do not fit RAM block %s in whole pages",
				       (unsigned long long)x->len,
				       (unsigned long long)x->offset, b->name);
		if (s->nch > 1) {
			if ((rc = queue_range(s, x)))
				return rc;
			continue;
		}
		struct mig_work w = { .block = x->block, .off = x->offset, .len = x->len };
		if (chan_send_range(&s->ch[0], &w))
			return mig_chan_fail(s, &s->ch[0]);
	}
	return 0;
}

int mig_round_start(struct rmig_mig *s, unsigned flags)
{
	if (s->role != MIG_SOURCE || s->state < RMIG_STATE_PRECOPY ||
	    s->state > RMIG_STATE_STOPCOPY)
		return mig_err(s, -EINVAL, "round_start in state %s", mig_state_name(s->state));
	if (s->in_round)
		return mig_err(s, -EINVAL, "round_start inside a round (call round_end)");
	if (s->state == RMIG_STATE_STOPCOPY)
		return mig_err(s, -EINVAL, "the final round has been sent; call finish");
	memset(&s->round, 0, sizeof(s->round));
	s->round.round = s->st.rounds;
	s->round.final = !!(flags & RMIG_ROUND_FINAL);
	s->in_round = 1;
	s->round_t0 = rmig_now_ns();
	/* The workers are idle between rounds: their fields are ours. */
	for (unsigned i = 0; i < s->nch; i++) {
		struct mig_chan *c = &s->ch[i];
		memset(&c->round, 0, sizeof(c->round));
		c->round.round = s->round.round;
		c->round.final = s->round.final;
		c->bw_t0 = s->round_t0;
		c->bw_bytes = 0;
	}
	if (flags & RMIG_ROUND_FINAL)
		mig_set_state(s, RMIG_STATE_STOPCOPY);
	return 0;
}

/* End of round on one channel: its writes, then its fence on its own ep. */
int chan_end_round(struct mig_chan *c)
{
	struct rmig_mig *s = c->s;
	struct wire_round wr;
	uint8_t msg[WIRE_HDR_SIZE + WIRE_ROUND_SIZE];
	int rc, len;

	/* A shutdown (any thread) ends the round here, fence unsent. */
	if (mig_shut(s))
		return chan_err(c, -ECANCELED, "shut down: %s", s->shut_why);
	if ((rc = flush_extent(c)) || (rc = chan_post_batch(c)))
		return rc;
	if ((rc = chan_drain(c))) {
		c->peer_gone = 1;
		return chan_err(c, rc, "page writes did not complete: %s", rmig_ep_error(c->ep));
	}
	if (c->skip_fence)
		return 0;
	wr = (struct wire_round){ .round = c->round.round, .final = c->round.final,
				  .pages = c->round.pages, .bytes = c->round.bytes,
				  .zero_pages = c->round.zero_pages, .channel = c->idx };
	len = wire_round_encode(msg, sizeof(msg), &wr);
	/* The ordering guarantee: ROUND arrives after this channel's data. */
	rc = rmig_send(c->ep, msg, (size_t)len);
	if (rc) {
		c->peer_gone = 1;
		return chan_err(c, rc, "lost the peer at the end of round %u: %s",
				c->round.round, rmig_ep_error(c->ep));
	}
	(void)s;
	return 0;
}

int mig_round_end(struct rmig_mig *s, struct rmig_round_stats *out)
{
	int rc;

	if (!s->in_round)
		return mig_err(s, -EINVAL, "round_end without round_start");
	if (s->nch > 1)
		rc = mig_chans_end_round(s);
	else if (chan_end_round(&s->ch[0]))
		return mig_chan_fail(s, &s->ch[0]);
	else
		rc = 0;
	if (rc)
		return rc;
	s->in_round = 0;
	for (unsigned i = 0; i < s->nch; i++) {
		const struct rmig_round_stats *r = &s->ch[i].round;
		s->round.pages += r->pages;
		s->round.zero_pages += r->zero_pages;
		s->round.bytes += r->bytes;
		s->round.writes += r->writes;
		s->round.batches += r->batches;
	}
	s->st.pages += s->round.pages;
	s->st.zero_pages += s->round.zero_pages;
	s->st.bytes += s->round.bytes;
	s->st.writes += s->round.writes;
	s->st.batches += s->round.batches;
	s->round.ns = rmig_now_ns() - s->round_t0;
	s->round.rate = s->round.ns ? (double)s->round.bytes * 1e9 / (double)s->round.ns : 0;
	s->st.rounds++;
	if (out)
		*out = s->round;
	return 0;
}

static int offer(struct rmig_mig *s, struct wire_block *wb)
{
	struct wire_hello h = { .caps = WIRE_CAPS_KNOWN, .page_size = s->page_size,
				.channels = s->nch };
	uint32_t n = 0;
	int len;

	if (s->cfg.flags & RMIG_CFG_NO_ZERO_SKIP)
		h.caps &= ~WIRE_CAP_ZERO_SKIP;
	for (uint32_t i = 0; i < s->nblocks; i++) {
		if (!s->blocks[i].live)
			continue;
		memcpy(wb[n].name, s->blocks[i].name, WIRE_NAME_MAX);
		wb[n].len = s->blocks[i].len;
		wb[n].page_size = s->blocks[i].page_size;
		wb[n].flags = s->blocks[i].flags;
		wb[n].pad = 0;
		h.total += wb[n].len;
		n++;
	}
	h.nblocks = n;
	len = wire_hello_encode(s->msg, sizeof(s->msg), &h, wb);
	if (len < 0)
		return mig_err(s, len, "too many RAM blocks for one HELLO");
	return rmig_send(s->ep, s->msg, (size_t)len);
}

/* The destination's answer: keys in block order, each the block's size. */
static int take_reserve(struct rmig_mig *s, uint32_t offered, struct rmig_rkey *keys)
{
	char why[128];
	struct wire_reserve r;
	struct wire_hdr h;
	uint32_t k = 0;
	int rc = mig_recv(s, &h, s->cfg.timeout_ms);

	if (rc)
		return rc;
	if (h.type != WIRE_RESERVE)
		return mig_fail(s, -EPROTO, "the destination answered %s to HELLO",
				wire_type_name(h.type));
	if (wire_reserve_decode(s->rxmsg + WIRE_HDR_SIZE, h.len, &r, keys, offered,
				why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the destination sent a malformed RESERVE: %s", why);
	if (r.status) {
		s->peer_gone = 1;
		return mig_fail(s, r.status, "the destination cannot take the guest: %s",
				r.reason[0] ? r.reason : strerror(-r.status));
	}
	if (r.nblocks != offered)
		return mig_fail(s, -EPROTO, "the destination sent %u keys for %u blocks",
				r.nblocks, offered);
	for (uint32_t i = 0; i < s->nblocks; i++) {
		if (!s->blocks[i].live)
			continue;
		if (keys[k].len != s->blocks[i].len ||
		    !(keys[k].flags & RMIG_ACCESS_REMOTE_WRITE))
			return mig_fail(s, -EPROTO,
					"the destination's key for block %s does not cover it for writing",
					s->blocks[i].name);
		s->ch[0].rkeys[i] = keys[k++];
	}
	memcpy(s->token, r.token, WIRE_TOKEN_SIZE);
	s->caps = r.caps & WIRE_CAPS_KNOWN;
	s->dest_zeroed = !!(r.flags & WIRE_RES_ZEROED);
	return 0;
}

/*
 * The zero gap worth bridging (struct rmig_mig.bridge_bytes), by backend:
 * measured on loopback, a write costs tcp about a 4 KiB copy (a frame
 * header and two receive calls) and libfabric's software providers about
 * ten (one message each, ~100,000 writes/s).  Hardware RDMA: none.
 */
static uint64_t bridge_for(const struct rmig_mig *s)
{
	const char *name = rmig_ep_backend(s->ep), *spec = s->cfg.backend ? s->cfg.backend : "";

	if (!strcmp(name, "tcp"))
		return 4ull * s->page_size;
	if (!strcmp(name, "ofi") && (!strcmp(spec, "ofi/tcp") || !strcmp(spec, "ofi/shm")))
		return 16ull * s->page_size;
	return 0;
}

int mig_source_setup(struct rmig_mig *s)
{
	struct rmig_ep_opts o;
	uint32_t offered = 0;
	uint64_t t0, r0, reg_ns = 0;
	int rc;

	if (s->role != MIG_SOURCE || s->state != RMIG_STATE_RESERVE || s->ep)
		return mig_err(s, -EINVAL, "setup runs once, on a new source session");
	for (uint32_t i = 0; i < s->nblocks; i++)
		offered += s->blocks[i].live;
	if (!offered)
		return mig_err(s, -EINVAL, "no RAM blocks to migrate (add_ram_block first)");
	for (unsigned i = 0; i < s->nch; i++) {
		s->ch[i].mrs = calloc(s->nblocks, sizeof(*s->ch[i].mrs));
		s->ch[i].rkeys = calloc(s->nblocks, sizeof(*s->ch[i].rkeys));
		if (!s->ch[i].mrs || !s->ch[i].rkeys)
			return mig_err(s, -ENOMEM, "out of memory for the channels");
	}
	mig_ep_opts(&s->cfg, &o);
	t0 = rmig_now_ns();
	rc = rmig_connect(s->cfg.backend, s->cfg.addr, &o, &s->ep);
	s->ch[0].ep = s->ep;
	s->dom = rc ? NULL : rmig_ep_domain(s->ep);
	if (rc) {
		s->ep = s->ch[0].ep = NULL;
		mig_set_state(s, RMIG_STATE_ROLLED_BACK);
		return mig_err(s, rc, rc == -EACCES ? "no authenticated connection to the destination %s: %s"
						    : "cannot reach the destination %s: %s", s->cfg.addr,
			       rmig_last_error());
	}
	/* Scratch for the offer and the keys: no statics, sessions may run
	 * side by side in one process. */
	struct wire_block *wb = calloc(WIRE_BLOCKS_MAX, sizeof(*wb));
	struct rmig_rkey *keys = calloc(WIRE_BLOCKS_MAX, sizeof(*keys));
	if (!wb || !keys) {
		free(wb);
		free(keys);
		return mig_fail(s, -ENOMEM, "out of memory for the offer");
	}
	rc = offer(s, wb);
	if (rc) {
		s->peer_gone = 1;
		rc = mig_fail(s, rc, "lost the destination sending the offer: %s",
			      rmig_ep_error(s->ep));
	} else {
		/* The guest is pinned here while the destination pins its
		 * copy: the two registrations overlap instead of adding up. */
		r0 = rmig_now_ns();
		rc = mig_register_source(s, &s->ch[0]);
		reg_ns = rmig_now_ns() - r0;
		if (!rc)
			rc = take_reserve(s, offered, keys);
	}
	free(wb);
	free(keys);
	if (rc)
		return rc;
	s->st.reserve_ns = rmig_now_ns() - t0 - reg_ns;
	s->bridge_bytes = bridge_for(s);
	mig_set_state(s, RMIG_STATE_SETUP);
	if ((rc = mig_join_channels(s)) || (rc = mig_start_workers(s)))
		return rc;
	mig_set_state(s, RMIG_STATE_PRECOPY);
	return 0;
}

int mig_finish(struct rmig_mig *s)
{
	char why[128];
	struct wire_status ws;
	struct wire_end e;
	struct wire_hdr h;
	int rc, len;

	if (s->role != MIG_SOURCE || s->state != RMIG_STATE_STOPCOPY || s->in_round)
		return mig_err(s, -EINVAL, "finish needs a completed final round (state %s)",
			       mig_state_name(s->state));
	mig_stop_workers(s);
	e = (struct wire_end){ .rounds = s->st.rounds, .bytes = s->st.bytes,
			       .stream_bytes = s->st.stream_bytes };
	len = wire_end_encode(s->msg, sizeof(s->msg), &e);
	rc = rmig_send(s->ep, s->msg, (size_t)len);
	if (rc) {
		s->peer_gone = 1;
		return mig_fail(s, rc, "lost the destination before commit: %s",
				rmig_ep_error(s->ep));
	}
	if ((rc = mig_recv(s, &h, s->cfg.timeout_ms)))
		return rc;
	if (h.type != WIRE_COMMIT)
		return mig_fail(s, -EPROTO, "the destination answered %s to END",
				wire_type_name(h.type));
	if (wire_status_decode(s->rxmsg + WIRE_HDR_SIZE, h.len, &ws, why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the destination sent a malformed COMMIT: %s", why);
	if (ws.status)
		return mig_fail(s, ws.status, "the destination did not commit: %s", ws.reason);
	mig_deregister_all(s);
	mig_set_state(s, RMIG_STATE_COMMIT);
	return 0;
}
