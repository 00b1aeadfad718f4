/* SPDX-License-Identifier: MIT */
/*
 * Progress and the data path of the ofi backend.
 *
 * tcp;ofi_rxm and shm (like most providers) make data progress only when
 * someone calls into them (FI_PROGRESS_MANUAL), at the target of a write as
 * much as at its source.  So each endpoint has a progress thread that reads
 * the CQ while the caller is elsewhere, as an RDMA NIC would place data
 * without the caller; and every wait of the caller (poll, recv, send, a full
 * send queue) progresses the CQ itself: a short spin, then short sleeps on
 * the bootstrap socket, whose EOF means the peer is gone.  Whoever reads the
 * CQ holds ofi_ep.lock and files what it finds into the endpoint.
 *
 * Completions: every write op asks for one and each batch counts its
 * pending ops; the batch completes when the count reaches zero.  Selective
 * completion (signal only the last op) would need completions in order,
 * which neither tcp;ofi_rxm nor shm promise (comp_order NONE).
 *
 * Ordering (a send after a write is delivered only once the write's data is
 * visible): writes ask for FI_DELIVERY_COMPLETE when the provider grants it,
 * so a completed write is placed at the peer.  Where the provider grants
 * FI_ORDER_SAW (tcp;ofi_rxm and shm do) the send is simply posted after the
 * writes; otherwise send first waits for every outstanding write to
 * complete.
 */
#define _GNU_SOURCE
#include "ofi.h"
#include "../../common/clock.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define OFI_SPINS 200             /* progress calls before the first sleep */
#define OFI_SLEEP_MIN_NS 20000    /* first sleep of a waiting caller */
#define OFI_SLEEP_MAX_NS 1000000  /* longest sleep between progress calls */
#define OFI_FD_NAP_NS 10000000   /* with a wait fd: a safety net, not a poll */
#define OFI_CQ_BATCH 32

/* Caller holds o->lock. */
__attribute__((format(printf, 3, 0)))
static void mark_dead_locked(struct ofi_ep *o, int err, const char *fmt, va_list ap)
{
	if (o->dead)
		return;
	o->dead = 1;
	o->dead_err = err;
	vsnprintf(o->dead_why, sizeof(o->dead_why), fmt, ap);
}

static void dead_locked(struct ofi_ep *o, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void dead_locked(struct ofi_ep *o, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mark_dead_locked(o, err, fmt, ap);
	va_end(ap);
}

void ofi_mark_dead(struct ofi_ep *o, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&o->lock);
	va_start(ap, fmt);
	mark_dead_locked(o, err, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&o->lock);
}

/* The caller's view of a dead endpoint: its phrase on ep, the errno. */
static int dead_error(struct ofi_ep *o)
{
	int err;

	pthread_mutex_lock(&o->lock);
	err = o->dead ? o->dead_err : 0;
	if (err)
		rmig_set_error(&o->base, err, "%s", o->dead_why);
	pthread_mutex_unlock(&o->lock);
	return err;
}

/* Losing the peer reads as a reset, whatever the provider calls it. */
static int peer_errno(int err)
{
	switch (err) {
	case -EPIPE:
	case -ENOTCONN:
	case -ECONNABORTED:
	case -ECONNREFUSED:
	case -EHOSTUNREACH:
	case -ESHUTDOWN:
		return -ECONNRESET;
	default:
		return err;
	}
}

int ofi_post_recv(struct ofi_ep *o, unsigned i)
{
	struct ofi_slot *s = &o->rx[i];
	int rc;

	s->ctx = (struct ofi_ctx){ .kind = OFI_CTX_RECV, .idx = i };
	s->len = 0;
	rc = (int)fi_recv(o->ep, o->bufs + (size_t)i * RMIG_MSG_MAX, RMIG_MSG_MAX,
			  o->bufs_desc, FI_ADDR_UNSPEC, &s->ctx);
	if (!rc)
		s->busy = 1;
	return rc;
}

static void finish_batch(struct ofi_ep *o, struct ofi_batch *b)
{
	if (!b->orphan) {
		unsigned tail = (o->done_head + o->done_count++) % RMIG_OUTSTANDING_MAX;
		o->done[tail] = (struct rmig_completion){ .wr_id = b->wr_id, .status = b->status };
	}
	b->used = 0;
}

/* File one completion (err 0) or error completion; caller holds o->lock. */
static void handle(struct ofi_ep *o, const struct ofi_ctx *c, size_t len, int err,
		   const char *why)
{
	struct ofi_batch *b;

	switch (c->kind) {
	case OFI_CTX_RMA:
		b = &o->batches[c->idx];
		b->pending--;
		o->rma_inflight--;
		o->rma_moved_ms = rmig_now_ms();
		if (err && !b->status) {
			b->status = peer_errno(err); /* ENOTCONN & co: the peer is gone */
			snprintf(o->batch_why, sizeof(o->batch_why),
				 "ofi/%s: %s failed: %s", o->prov.name, b->read ? "read" : "write", why);
		}
		if (!b->pending && !b->posting)
			finish_batch(o, b);
		break;
	case OFI_CTX_SEND:
		o->tx[c->idx].busy = 0;
		if (err)
			dead_locked(o, peer_errno(err), "ofi/%s: control message not delivered: %s",
				    o->prov.name, why);
		break;
	case OFI_CTX_RECV:
		if (err) { /* the buffer stays unfilled: recv reports the death */
			dead_locked(o, peer_errno(err), "ofi/%s: receive failed: %s",
				    o->prov.name, why);
			break;
		}
		o->rx[c->idx].busy = 0;
		o->rx[c->idx].len = len;
		break;
	}
}

static void handle_error(struct ofi_ep *o)
{
	struct fi_cq_err_entry e = { 0 };
	char buf[160];
	const char *why;
	ssize_t rc = fi_cq_readerr(o->cq, &e, 0);

	if (rc != 1)
		return;
	why = fi_cq_strerror(o->cq, e.prov_errno, e.err_data, buf, sizeof(buf));
	if (!why || !why[0])
		why = fi_strerror(e.err);
	if (e.err == FI_ECANCELED) /* a receive cancelled by close */
		return;
	if (e.op_context)
		handle(o, e.op_context, e.len, ofi_errno(-e.err), why);
	else
		dead_locked(o, ofi_errno(-e.err), "ofi/%s: error completion: %s",
			    o->prov.name, why);
}

/*
 * Move filled receive buffers, in posting order (= message order), to the
 * message queue and post them again: the peer may send any number of
 * messages before this end reads one, as on the tcp backend.
 */
static void queue_msgs(struct ofi_ep *o)
{
	while (!o->dead && !o->rx[o->rx_head].busy) {
		struct ofi_slot *s = &o->rx[o->rx_head];
		struct ofi_msg *m = malloc(sizeof(*m) + s->len);
		int rc;

		if (!m) {
			dead_locked(o, -ENOMEM, "out of memory for a received message");
			return;
		}
		m->next = NULL;
		m->len = s->len;
		memcpy(m->data, o->bufs + (size_t)o->rx_head * RMIG_MSG_MAX, s->len);
		*o->msgs_tail = m;
		o->msgs_tail = &m->next;
		rc = ofi_post_recv(o, o->rx_head);
		if (rc) {
			dead_locked(o, ofi_errno(rc), "ofi/%s: cannot post a receive buffer: %s",
				    o->prov.name, fi_strerror(-rc));
			return;
		}
		o->rx_head = (o->rx_head + 1) % OFI_NRX;
	}
}

/*
 * Writes (and reads) that stop completing end the endpoint: a provider drops
 * a write the peer refuses (bad key, out of bounds) without an error
 * completion, and
 * a peer that stops progressing looks the same.  The clock restarts at every
 * write completion, so a long queue that drains steadily never trips it.
 */
static void check_stall(struct ofi_ep *o)
{
	int t = o->stall_ms;

	if (!o->rma_inflight || t <= 0 || rmig_now_ms() - o->rma_moved_ms < (uint64_t)t)
		return;
	dead_locked(o, -ETIMEDOUT,
		    "ofi/%s: writes or reads got no completion for %d ms (the peer refused them or stopped progressing)",
		    o->prov.name, t);
}

/* Read the CQ dry; returns how many entries it filed.  Caller holds o->lock. */
static int progress(struct ofi_ep *o)
{
	struct fi_cq_msg_entry e[OFI_CQ_BATCH];
	int total = 0;

	for (;;) {
		ssize_t n = fi_cq_read(o->cq, e, OFI_CQ_BATCH);

		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				handle(o, e[i].op_context, e[i].len, 0, "");
			total += (int)n;
			if (n < OFI_CQ_BATCH)
				break;
		} else if (n == -FI_EAVAIL) {
			handle_error(o);
			total++;
		} else {
			if (n != -FI_EAGAIN)
				dead_locked(o, ofi_errno((int)n),
					    "ofi/%s: cannot read the completion queue: %s",
					    o->prov.name, fi_strerror((int)-n));
			break;
		}
	}
	if (total)
		queue_msgs(o);
	check_stall(o);
	if (o->wcntr) { /* writes landing here count as activity too */
		uint64_t w = fi_cntr_read(o->wcntr);
		if (w != o->writes_seen) {
			o->writes_seen = w;
			total++;
		}
	}
	return total;
}

/*
 * The bootstrap socket carries nothing after the handshake, so readable
 * means EOF or an error: the peer closed its endpoint or died.  Deliver
 * what it sent before going (drain the CQ), then mark the endpoint dead.
 * Returns whether the peer is gone.  Caller holds o->lock.
 */
static int check_peer_locked(struct ofi_ep *o)
{
	char c;
	ssize_t n = recv(o->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	for (int i = 0; i < 100 && progress(o); i++)
		;
	if (n > 0)
		dead_locked(o, -EPROTO, "the peer sent unexpected bytes on the bootstrap connection");
	else
		dead_locked(o, -ECONNRESET,
			    "connection closed by the peer (it exited or closed its endpoint)");
	return 1;
}

static void check_peer(struct ofi_ep *o)
{
	pthread_mutex_lock(&o->lock);
	check_peer_locked(o);
	pthread_mutex_unlock(&o->lock);
}

/*
 * Sleep up to ns, until the bootstrap socket turns readable or, where the
 * CQ has a wait fd, until the provider has work (fi_trywait says whether
 * sleeping on it is safe right now).
 */
static void nap(struct ofi_ep *o, long ns, long limit_ns)
{
	struct pollfd p[2] = { { .fd = o->sock, .events = POLLIN },
			       { .fd = o->wait_fd, .events = POLLIN } };
	struct fid *cq = &o->cq->fid;
	nfds_t n = 1;

	if (o->wait_fd >= 0) {
		pthread_mutex_lock(&o->lock);
		int rc = fi_trywait(o->fabric, &cq, 1);
		pthread_mutex_unlock(&o->lock);
		if (rc)
			return; /* work pending: progress again */
		n = 2;
		ns = limit_ns;
	}
	struct timespec ts = { .tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L };
	if (ppoll(p, n, &ts, NULL) > 0 && p[0].revents)
		check_peer(o);
}

typedef int (*ofi_cond)(struct ofi_ep *o);

/*
 * Progress until cond holds (checked under the lock), the endpoint dies or
 * the deadline passes: 0, the dead endpoint's errno, or -ETIMEDOUT.
 */
static int wait_for(struct ofi_ep *o, ofi_cond cond, uint64_t deadline)
{
	long sleep_ns = OFI_SLEEP_MIN_NS;
	unsigned spins = 0;

	for (;;) {
		pthread_mutex_lock(&o->lock);
		int n = progress(o), ok = cond(o), dead = o->dead;
		pthread_mutex_unlock(&o->lock);
		if (ok)
			return 0;
		if (dead)
			return dead_error(o);
		int left = rmig_left_ms(deadline);
		if (!left)
			return -ETIMEDOUT;
		if (n) {
			spins = 0;
			sleep_ns = OFI_SLEEP_MIN_NS;
			continue;
		}
		if (++spins < OFI_SPINS) {
			sched_yield();
			continue;
		}
		long limit = left > 0 && (long)left * 1000000L < OFI_FD_NAP_NS
				     ? (long)left * 1000000L : OFI_FD_NAP_NS;
		nap(o, sleep_ns < limit ? sleep_ns : limit, limit);
		sleep_ns = sleep_ns * 2 > OFI_SLEEP_MAX_NS ? OFI_SLEEP_MAX_NS : sleep_ns * 2;
	}
}

/* Make progress for a caller that is elsewhere; see the top of the file. */
static void *progress_main(void *arg)
{
	struct ofi_ep *o = arg;
	long sleep_ns = OFI_SLEEP_MIN_NS;

	for (;;) {
		pthread_mutex_lock(&o->lock);
		int stop = o->stop, dead = o->dead, n = stop ? 0 : progress(o);
		pthread_mutex_unlock(&o->lock);
		if (stop)
			break;
		if (n) { /* busy: keep polling, but let the caller have the lock */
			sleep_ns = OFI_SLEEP_MIN_NS;
			sched_yield();
			continue;
		}
		if (dead) { /* the socket stays readable: just wait for close */
			struct timespec ts = { 0, 10000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		nap(o, sleep_ns, OFI_FD_NAP_NS);
		sleep_ns = sleep_ns * 2 > OFI_SLEEP_MAX_NS ? OFI_SLEEP_MAX_NS : sleep_ns * 2;
	}
	return NULL;
}

int ofi_start_progress(struct ofi_ep *o)
{
	int rc = pthread_create(&o->thread, NULL, progress_main, o);

	if (rc)
		return rmig_set_error(&o->base, -rc, "cannot start the ofi progress thread");
	o->thread_started = 1;
	return 0;
}

void ofi_stop_progress(struct ofi_ep *o)
{
	if (!o->thread_started)
		return;
	pthread_mutex_lock(&o->lock);
	o->stop = 1;
	pthread_mutex_unlock(&o->lock);
	pthread_join(o->thread, NULL);
	o->thread_started = 0;
}

static int sends_idle(struct ofi_ep *o)
{
	for (unsigned i = 0; i < OFI_NTX; i++)
		if (o->tx[i].busy)
			return 0;
	return 1;
}

/* Let posted control messages reach the peer before the endpoint goes. */
void ofi_drain_sends(struct ofi_ep *o, int timeout_ms)
{
	wait_for(o, sends_idle, rmig_deadline(timeout_ms));
}

/*
 * Post one op; on a full queue (-FI_EAGAIN) progress the CQ and retry until
 * the deadline, the peer goes or the endpoint dies.  Caller holds o->lock;
 * post is re-run with the same args.
 */
#define POST_RETRY(o, deadline, rc, post)                                     \
	do {                                                                  \
		for (;;) {                                                    \
			rc = (int)(post);                                     \
			if (rc != -FI_EAGAIN)                                 \
				break;                                        \
			if (progress(o))                                      \
				continue;                                     \
			if (o->dead || check_peer_locked(o) ||                \
			    !rmig_left_ms(deadline))                          \
				break;                                        \
		}                                                             \
	} while (0)

/*
 * Post one write or read (b->read; for a read, w's local region is its
 * destination), split into ops of at most max_msg bytes, each asking for a
 * completion.  A read's completion means the bytes are in local memory.
 * Which write ops ask for delivery completion: all of them, or, where
 * writes are ordered (FI_ORDER_WAW), only the batch's last: once it is
 * placed at the peer, the writes before it are too, and the cheaper
 * transmit completions of the others suffice (shm, for one, moves a small
 * delivery-complete write through a segmented protocol that allows one at
 * a time per peer).
 */
static int post_write(struct ofi_ep *o, struct ofi_batch *b, const struct rmig_write *w,
		      int last_write, uint64_t deadline)
{
	const struct ofi_region *lr = (const struct ofi_region *)w->lmr;
	int rc = 0;

	for (uint64_t off = 0; off < w->len; off += o->prov.max_msg) {
		uint64_t chunk = w->len - off < o->prov.max_msg ? w->len - off : o->prov.max_msg;
		struct iovec iov = { (char *)lr->base.addr + w->loff + off, chunk };
		void *desc = lr->desc;
		struct fi_rma_iov rma = { .addr = ofi_remote_addr(w->rkey->addr, w->roff + off),
					  .len = chunk, .key = w->rkey->key };
		struct fi_msg_rma msg = { .msg_iov = &iov, .desc = &desc, .iov_count = 1,
					  .addr = o->peer, .rma_iov = &rma,
					  .rma_iov_count = 1, .context = &b->ctx };
		int last = last_write && off + chunk == w->len;
		uint64_t flags = FI_COMPLETION;

		if (b->read) {
			POST_RETRY(o, deadline, rc, fi_readmsg(o->ep, &msg, flags));
		} else {
			if (o->prov.delivery_complete && (last || !o->prov.waw))
				flags |= FI_DELIVERY_COMPLETE;
			POST_RETRY(o, deadline, rc, fi_writemsg(o->ep, &msg, flags));
		}
		if (rc)
			return rc;
		if (!o->rma_inflight)
			o->rma_moved_ms = rmig_now_ms();
		b->pending++;
		o->rma_inflight++;
	}
	return 0;
}

static struct ofi_batch *new_batch(struct ofi_ep *o, uint64_t wr_id)
{
	for (unsigned i = 0; i < RMIG_OUTSTANDING_MAX; i++) {
		struct ofi_batch *b = &o->batches[i];
		if (b->used)
			continue;
		*b = (struct ofi_batch){ .ctx = { .kind = OFI_CTX_RMA, .idx = i },
					 .used = 1, .wr_id = wr_id, .posting = 1 };
		return b;
	}
	return NULL;
}

/* Writes, or reads (read: each w describes a read, its lmr the destination). */
static int rma_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id, int read)
{
	struct ofi_ep *o = OFI(ep);
	uint64_t deadline = rmig_deadline(ep->timeout_ms);
	const char *what = read ? "read" : "write";
	struct ofi_batch *b;
	int rc = 0;

	for (unsigned i = 0; i < n; i++)
		if (w[i].lmr->ep != ep && (!ep->dom || w[i].lmr->dom != ep->dom))
			return rmig_set_error(ep, -EINVAL,
					      "%s %u's local region is registered on another endpoint",
					      what, i);
	pthread_mutex_lock(&o->lock);
	if (o->dead) {
		pthread_mutex_unlock(&o->lock);
		return dead_error(o);
	}
	b = o->outstanding < RMIG_OUTSTANDING_MAX ? new_batch(o, wr_id) : NULL;
	if (!b) {
		pthread_mutex_unlock(&o->lock);
		return rmig_set_error(ep, -EAGAIN, "%d batches outstanding: poll first",
				      RMIG_OUTSTANDING_MAX);
	}
	o->outstanding++;
	b->read = read;
	for (unsigned i = 0; i < n && !rc; i++)
		rc = post_write(o, b, &w[i], i + 1 == n, deadline);
	b->posting = 0;
	if (rc) {
		/* The caller sees an error, not a completion, for this batch. */
		b->orphan = 1;
		o->outstanding--;
		if (rc == -FI_EAGAIN)
			dead_locked(o, -ETIMEDOUT,
				    "ofi/%s: the send queue stayed full for %d ms (peer not progressing)",
				    o->prov.name, ep->timeout_ms);
		else
			dead_locked(o, peer_errno(ofi_errno(rc)), "ofi/%s: cannot post a %s: %s",
				    o->prov.name, what, fi_strerror(-rc));
	}
	if (!b->pending)
		finish_batch(o, b);
	pthread_mutex_unlock(&o->lock);
	return rc ? dead_error(o) : 0;
}

int ofi_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		    uint64_t wr_id)
{
	return rma_batch(ep, w, n, wr_id, 0);
}

int ofi_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		   uint64_t wr_id)
{
	struct rmig_write w[RMIG_BATCH_MAX];

	for (unsigned i = 0; i < n; i++)
		w[i] = (struct rmig_write){ .lmr = r[i].lmr, .loff = r[i].loff, .rkey = r[i].rkey,
					    .roff = r[i].roff, .len = r[i].len };
	return rma_batch(ep, w, n, wr_id, 1);
}

static int have_done(struct ofi_ep *o)
{
	return o->done_count > 0;
}

int ofi_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max, int timeout_ms)
{
	struct ofi_ep *o = OFI(ep);
	int rc = wait_for(o, have_done, rmig_deadline(timeout_ms));
	unsigned n = 0;
	int failed = 0;

	pthread_mutex_lock(&o->lock);
	while (n < max && o->done_count) {
		c[n] = o->done[o->done_head];
		failed |= c[n].status != 0;
		o->done_head = (o->done_head + 1) % RMIG_OUTSTANDING_MAX;
		o->done_count--;
		o->outstanding--;
		n++;
	}
	if (failed)
		rmig_set_error(ep, -EIO, "%s", o->batch_why);
	pthread_mutex_unlock(&o->lock);
	if (n)
		return (int)n;
	return rc == -ETIMEDOUT ? 0 : rc;
}

static int writes_done(struct ofi_ep *o)
{
	return !o->rma_inflight;
}

static int some_tx_free(struct ofi_ep *o)
{
	for (unsigned i = 0; i < OFI_NTX; i++)
		if (!o->tx[i].busy)
			return 1;
	return 0;
}

int ofi_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	struct ofi_ep *o = OFI(ep);
	uint64_t deadline = rmig_deadline(ep->timeout_ms);
	unsigned i;
	int rc;

	/* Without FI_ORDER_SAW, writes must be placed before the message goes. */
	rc = o->prov.ordered ? 0 : wait_for(o, writes_done, deadline);
	for (;;) {
		if (!rc)
			rc = wait_for(o, some_tx_free, deadline);
		if (rc == -ETIMEDOUT) {
			/* Every send slot still waits for the peer after a whole
			 * timeout: it is not progressing.  Dead, so that what
			 * follows (the CANCEL, close's drain) fails at once
			 * instead of waiting a timeout each. */
			ofi_mark_dead(o, rc, "ofi/%s: the peer took no message within %d ms",
				      o->prov.name, ep->timeout_ms);
			return dead_error(o);
		}
		if (rc)
			return rc;
		pthread_mutex_lock(&o->lock);
		for (i = 0; i < OFI_NTX && o->tx[i].busy; i++)
			;
		if (i < OFI_NTX)
			break;
		pthread_mutex_unlock(&o->lock); /* another sender took it */
	}
	uint8_t *slot = o->bufs + (size_t)(OFI_NRX + i) * RMIG_MSG_MAX;
	memcpy(slot, buf, len);
	o->tx[i].ctx = (struct ofi_ctx){ .kind = OFI_CTX_SEND, .idx = i };
	struct iovec iov = { slot, len };
	void *desc = o->bufs_desc;
	struct fi_msg msg = { .msg_iov = &iov, .desc = &desc, .iov_count = 1,
			      .addr = o->peer, .context = &o->tx[i].ctx };
	POST_RETRY(o, deadline, rc, fi_sendmsg(o->ep, &msg, FI_COMPLETION));
	if (!rc)
		o->tx[i].busy = 1;
	else if (rc == -FI_EAGAIN)
		dead_locked(o, -ETIMEDOUT,
			    "ofi/%s: the send queue stayed full for %d ms (peer not progressing)",
			    o->prov.name, ep->timeout_ms);
	else
		dead_locked(o, peer_errno(ofi_errno(rc)), "ofi/%s: cannot send: %s",
			    o->prov.name, fi_strerror(-rc));
	pthread_mutex_unlock(&o->lock);
	return rc ? dead_error(o) : 0;
}

static int have_msg(struct ofi_ep *o)
{
	return o->msgs != NULL;
}

int ofi_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	struct ofi_ep *o = OFI(ep);
	int rc = wait_for(o, have_msg, rmig_deadline(timeout_ms));
	struct ofi_msg *m;

	if (rc == -ETIMEDOUT)
		return rmig_set_error(ep, rc, "no message from the peer within %d ms", timeout_ms);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	m = o->msgs;
	if (m->len > cap) {
		pthread_mutex_unlock(&o->lock);
		return rmig_set_error(ep, -EMSGSIZE, "message of %zu bytes exceeds the %zu-byte buffer",
				      m->len, cap);
	}
	o->msgs = m->next;
	if (!o->msgs)
		o->msgs_tail = &o->msgs;
	pthread_mutex_unlock(&o->lock);
	rc = (int)m->len;
	memcpy(buf, m->data, m->len);
	free(m);
	return rc;
}
