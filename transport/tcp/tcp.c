/* SPDX-License-Identifier: MIT */
/*
 * The tcp backend: RDMA semantics over one TCP connection.
 *
 * Writes travel as frames (tcp_wire.h) straight from the source region
 * (sendmsg with an iovec: no bounce buffer in user space); the peer's
 * receiver thread checks each frame against its region table and reads the
 * payload directly into the registered region, without the peer's caller
 * taking part, as an RDMA NIC would.  Control messages follow on the same
 * stream, so a message sent after a write arrives only once the write's
 * bytes are in place (the ordering guarantee).
 *
 * Reads are answered the same way: the requester sends READ_REQ frames and
 * keeps the batch in a queue; the peer's receiver checks each request
 * against its region table and sends the bytes straight from the region
 * (tcp_serve_read); the requester's receiver places each answer, in
 * order, straight into the destination region and completes the batch
 * once its last read is in.  The serving receiver sends under the peer's
 * tx_lock: with reads flowing both ways at once and both sockets' buffers
 * full, two receivers could each wait for the other, until the send
 * deadline ends the connection (post-copy reads one way only).
 */
#define _GNU_SOURCE
#include "tcp_wire.h"
#include "../../common/clock.h"
#include "../../common/sock.h"
#include <rdmamig/transport.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

struct tcp_region {
	struct rmig_mr base;
};

/*
 * The region table, shared by every endpoint made on the domain: a write
 * arriving on any of them may target any region in it.  lock: receivers
 * hold it for reading while they apply a write.
 */
struct tcp_dom {
	struct rmig_domain base;
	pthread_rwlock_t lock;
	struct tcp_region **regions; /* by id - 1 */
	uint32_t nregions;
};

#define TCP_DOM(d) ((struct tcp_dom *)(d))

struct tcp_msg {
	struct tcp_msg *next;
	size_t len;
	uint8_t data[];
};

/* One read of a posted batch, as the receiver places its answer. */
struct tcp_rd {
	char *dst;                 /* lmr->addr + loff */
	const struct rmig_mr *lmr; /* still registered (under its id) when placed? */
	uint32_t lmr_id;
	uint64_t roff, len;
};

/*
 * A batch of reads on the wire.  The poster appends it (lock, in wire
 * order: tx_lock held); only the receiver takes it off the head and frees
 * it, so the receiver may use the head batch outside the lock.
 */
struct tcp_rbatch {
	struct tcp_rbatch *next;
	uint64_t wr_id;
	unsigned n, done; /* reads, and reads answered */
	int status;       /* first failure, or 0 */
	int orphan;       /* the poster returned an error: no completion */
	struct tcp_rd rd[];
};

struct tcp_ep {
	struct rmig_ep base;
	int fd;
	pthread_t rx;
	int rx_started;

	/* tx_lock: frames of concurrent senders never interleave.  Taken
	 * before lock, never while holding it. */
	pthread_mutex_t tx_lock;

	struct tcp_dom *dom; /* base.dom: its region table */

	/* lock guards everything below; cond signals a message, a completion
	 * and death. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rmig_completion cq[RMIG_OUTSTANDING_MAX];
	unsigned cq_head, cq_count;
	unsigned outstanding; /* batches posted and not yet reaped by poll */
	struct tcp_rbatch *rq_head, **rq_tail; /* reads sent, not all answered */
	struct tcp_msg *msgs, **msgs_tail;
	int dead;
	int dead_err;
	char dead_why[RMIG_ERR_MAX];
};

#define TCP(ep) ((struct tcp_ep *)(ep))

/* Queue a finished batch's completion (lock held; outstanding made room). */
static void tcp_complete(struct tcp_ep *t, uint64_t wr_id, int status)
{
	unsigned tail = (t->cq_head + t->cq_count++) % RMIG_OUTSTANDING_MAX;

	t->cq[tail] = (struct rmig_completion){ .wr_id = wr_id, .status = status };
	pthread_cond_broadcast(&t->cond);
}

static void tcp_mark_dead_locked(struct tcp_ep *t, int err, const char *why)
{
	if (!t->dead) {
		t->dead = 1;
		t->dead_err = err;
		snprintf(t->dead_why, sizeof(t->dead_why), "%s", why);
	}
	pthread_cond_broadcast(&t->cond);
}

static void tcp_mark_dead(struct tcp_ep *t, int err, const char *why)
{
	pthread_mutex_lock(&t->lock);
	tcp_mark_dead_locked(t, err, why);
	pthread_mutex_unlock(&t->lock);
}

/*
 * The receiver is ending: dead, and every read still waiting fails with
 * the reason, in one step, so that a poster either sees the endpoint dead
 * or has its batch failed here.
 */
static void tcp_rx_end(struct tcp_ep *t, int err, const char *why)
{
	pthread_mutex_lock(&t->lock);
	tcp_mark_dead_locked(t, err, why);
	while (t->rq_head) {
		struct tcp_rbatch *b = t->rq_head;
		t->rq_head = b->next;
		if (!b->orphan)
			tcp_complete(t, b->wr_id, b->status ? b->status : t->dead_err);
		free(b);
	}
	t->rq_tail = &t->rq_head;
	pthread_mutex_unlock(&t->lock);
}

/* Caller's view of a dead endpoint: its error phrase, the errno. */
static int tcp_dead_error(struct tcp_ep *t)
{
	int err;

	pthread_mutex_lock(&t->lock);
	err = t->dead ? t->dead_err : 0;
	if (err)
		rmig_set_error(&t->base, err, "%s", t->dead_why);
	pthread_mutex_unlock(&t->lock);
	return err;
}

/*
 * The receiver's reads: the socket is blocking, so one recv with
 * MSG_WAITALL takes a whole header or a whole payload (up to 1 MiB
 * straight into the region) where a non-blocking read returned whatever
 * had arrived (~2.4 KiB a call) and polled between.  shutdown() in close
 * ends a read that waits.
 */
static int rx_read(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return rmig_sock_recv(fd, p, len, UINT64_MAX);
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read and drop len bytes: an answer whose destination was deregistered. */
static int rx_discard(int fd, uint64_t len)
{
	char sink[16384];
	int rc = 0;

	while (len && !rc) {
		size_t n = len < sizeof(sink) ? (size_t)len : sizeof(sink);
		rc = rx_read(fd, sink, n);
		len -= n;
	}
	return rc;
}

/* The region a frame names, if id and key match (d->lock held). */
static struct tcp_region *tcp_lookup(struct tcp_dom *d, const struct tcp_hdr *h)
{
	struct tcp_region *r = NULL;

	if (h->id >= 1 && h->id <= d->nregions)
		r = d->regions[h->id - 1];
	return r && r->base.rkey.key == h->key ? r : NULL;
}

static int tcp_apply_write(struct tcp_ep *t, const struct tcp_hdr *h)
{
	struct tcp_dom *d = t->dom;
	struct tcp_region *r = NULL;
	int rc;

	pthread_rwlock_rdlock(&d->lock);
	r = tcp_lookup(d, h);
	if (!r) {
		rc = -EACCES;
		tcp_mark_dead(t, -EACCES, "peer wrote with an unknown region key");
	} else if (!(r->base.access & RMIG_ACCESS_REMOTE_WRITE)) {
		rc = -EACCES;
		tcp_mark_dead(t, -EACCES, "peer wrote into a region without remote write access");
	} else if (!tcp_frame_in_region(h, r->base.len)) {
		rc = -ERANGE;
		tcp_mark_dead(t, -ERANGE, "peer wrote outside a registered region");
	} else {
		rc = rx_read(t->fd, (char *)r->base.addr + h->off, h->len);
	}
	pthread_rwlock_unlock(&d->lock);
	return rc;
}

/*
 * Answer a READ_REQ from the region table, the bytes straight from the
 * region.  The region stays registered while they are sent (d->lock held
 * for reading: deregistration waits).  A refused request is answered with
 * its status and ends the connection, as a refused write does.
 */
static int tcp_serve_read(struct tcp_ep *t, const struct tcp_hdr *h)
{
	struct tcp_dom *d = t->dom;
	const char *why = NULL;
	struct tcp_region *r;
	uint8_t raw[TCP_HDR_SIZE];
	struct iovec iov[2];
	uint32_t status = 0;
	int rc;

	pthread_rwlock_rdlock(&d->lock);
	r = tcp_lookup(d, h);
	if (!r)
		status = EACCES, why = "peer read with an unknown region key";
	else if (!(r->base.access & RMIG_ACCESS_REMOTE_READ))
		status = EACCES, why = "peer read a region without remote read access";
	else if (!tcp_frame_in_region(h, r->base.len))
		status = ERANGE, why = "peer read outside a registered region";
	struct tcp_hdr a = { .type = TCP_FRAME_READ_RESP, .id = status, .off = h->off,
			     .len = status ? 0 : h->len };
	tcp_hdr_encode(&a, raw);
	iov[0] = (struct iovec){ raw, TCP_HDR_SIZE };
	if (!status)
		iov[1] = (struct iovec){ (char *)r->base.addr + h->off, h->len };
	pthread_mutex_lock(&t->tx_lock);
	rc = rmig_sock_sendv(t->fd, iov, status ? 1 : 2, rmig_deadline(t->base.timeout_ms));
	pthread_mutex_unlock(&t->tx_lock);
	pthread_rwlock_unlock(&d->lock);
	if (status) {
		tcp_mark_dead(t, -(int)status, why);
		return -(int)status;
	}
	if (rc == -ETIMEDOUT)
		tcp_mark_dead(t, rc, "peer stopped taking the answer to its read (send timed out)");
	return rc;
}

/*
 * Place the answer to the oldest read still waiting, straight into its
 * destination, if that is still registered (else the bytes are dropped
 * and the batch fails).  The head batch is the receiver's to free.
 */
static int tcp_take_answer(struct tcp_ep *t, const struct tcp_hdr *h)
{
	struct tcp_dom *d = t->dom;
	struct tcp_rbatch *b;
	struct tcp_rd *rd;
	char why[RMIG_ERR_MAX];
	int rc, status = 0;

	pthread_mutex_lock(&t->lock);
	b = t->rq_head;
	pthread_mutex_unlock(&t->lock);
	if (!b) {
		tcp_mark_dead(t, -EPROTO, "peer answered a read that was not asked for");
		return -EPROTO;
	}
	rd = &b->rd[b->done];
	if (h->id) {
		snprintf(why, sizeof(why), "the peer refused the read: %s", strerror((int)h->id));
		b->status = -(int)h->id;
		tcp_mark_dead(t, -(int)h->id, why);
		return -(int)h->id;
	}
	if (h->off != rd->roff || h->len != rd->len) {
		tcp_mark_dead(t, -EPROTO, "peer answered a read with another offset or length than asked");
		return -EPROTO;
	}
	pthread_rwlock_rdlock(&d->lock);
	if (rd->lmr_id >= 1 && rd->lmr_id <= d->nregions &&
	    d->regions[rd->lmr_id - 1] && &d->regions[rd->lmr_id - 1]->base == rd->lmr) {
		rc = rx_read(t->fd, rd->dst, rd->len);
	} else {
		rc = rx_discard(t->fd, rd->len);
		status = -ENOENT;
	}
	pthread_rwlock_unlock(&d->lock);
	if (rc)
		return rc;
	pthread_mutex_lock(&t->lock);
	if (status && !b->status)
		b->status = status;
	if (++b->done == b->n) {
		t->rq_head = b->next;
		if (!t->rq_head)
			t->rq_tail = &t->rq_head;
		if (!b->orphan)
			tcp_complete(t, b->wr_id, b->status);
		free(b);
	}
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int tcp_queue_msg(struct tcp_ep *t, const struct tcp_hdr *h)
{
	struct tcp_msg *m = malloc(sizeof(*m) + h->len);
	int rc;

	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->len = h->len;
	rc = h->len ? rx_read(t->fd, m->data, h->len) : 0;
	if (rc) {
		free(m);
		return rc;
	}
	pthread_mutex_lock(&t->lock);
	*t->msgs_tail = m;
	t->msgs_tail = &m->next;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* The receiver: frames in, until the peer goes or a frame is refused. */
static void *tcp_rx_main(void *arg)
{
	struct tcp_ep *t = arg;
	uint8_t raw[TCP_HDR_SIZE];
	struct tcp_hdr h;
	int rc;

	for (;;) {
		rc = rx_read(t->fd, raw, sizeof(raw));
		if (rc)
			break;
		rc = tcp_hdr_decode(raw, &h);
		if (rc) {
			tcp_mark_dead(t, -EPROTO, "peer sent a malformed frame");
			break;
		}
		switch (h.type) {
		case TCP_FRAME_WRITE:
			rc = tcp_apply_write(t, &h);
			break;
		case TCP_FRAME_READ_REQ:
			rc = tcp_serve_read(t, &h);
			break;
		case TCP_FRAME_READ_RESP:
			rc = tcp_take_answer(t, &h);
			break;
		default:
			rc = tcp_queue_msg(t, &h);
			break;
		}
		if (rc)
			break;
	}
	/* EOF and a reset from the peer both read -ECONNRESET; an abort here
	 * (ss -K, a firewall) and the rest say what they are. */
	if (rc == -ECONNABORTED)
		tcp_mark_dead(t, -ECONNRESET, "connection aborted on this host (reset here, e.g. ss -K or a firewall)");
	else if (rc && rc != -ECONNRESET && rc != -EPROTO) {
		char why[96];
		snprintf(why, sizeof(why), "connection lost: %s", strerror(-rc));
		tcp_mark_dead(t, -ECONNRESET, why);
	}
	tcp_rx_end(t, -ECONNRESET, "connection closed by the peer");
	/* Stop the peer from sending more into a connection we no longer read. */
	shutdown(t->fd, SHUT_RDWR);
	return NULL;
}

static struct tcp_ep *tcp_ep_new(int fd)
{
	struct tcp_ep *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->fd = fd;
	t->msgs_tail = &t->msgs;
	t->rq_tail = &t->rq_head;
	pthread_mutex_init(&t->tx_lock, NULL);
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	return t;
}

extern const struct rmig_transport_ops rmig_tcp_ops;

static struct tcp_dom *tcp_dom_new(void)
{
	struct tcp_dom *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->base.ops = &rmig_tcp_ops;
	pthread_rwlock_init(&d->lock, NULL);
	return d;
}

/* No endpoint uses it any more: what is still registered goes with it. */
static void tcp_dom_free(struct rmig_domain *dom)
{
	struct tcp_dom *d = TCP_DOM(dom);

	for (uint32_t i = 0; i < d->nregions; i++)
		free(d->regions[i]);
	free(d->regions);
	pthread_rwlock_destroy(&d->lock);
	free(d);
}

static void tcp_ep_free(struct tcp_ep *t)
{
	while (t->rq_head) {
		struct tcp_rbatch *b = t->rq_head;
		t->rq_head = b->next;
		free(b);
	}
	while (t->msgs) {
		struct tcp_msg *m = t->msgs;
		t->msgs = m->next;
		free(m);
	}
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->tx_lock);
	free(t);
}

/* Hello both ways, then start the receiver (on dom, or a new domain). */
static int tcp_start(int fd, struct rmig_domain *dom, int timeout_ms, struct rmig_ep **out)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	char hello[TCP_HELLO_LEN];
	struct tcp_ep *t;
	int rc;

	rc = rmig_sock_send(fd, TCP_HELLO, TCP_HELLO_LEN, deadline);
	if (!rc)
		rc = rmig_sock_recv(fd, hello, sizeof(hello), deadline);
	if (rc)
		return rmig_set_error(NULL, rc, "no rdmamig tcp hello from the peer: %s",
				      strerror(-rc));
	if (memcmp(hello, TCP_HELLO, TCP_HELLO_LEN))
		return rmig_set_error(NULL, -EPROTO,
				      "the peer is not an rdmamig tcp endpoint (or another version)");
	t = tcp_ep_new(fd);
	if (!t)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for an endpoint");
	t->base.ops = &rmig_tcp_ops;
	t->dom = dom ? TCP_DOM(dom) : tcp_dom_new();
	if (!t->dom) {
		tcp_ep_free(t);
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a domain");
	}
	t->base.dom = &t->dom->base;
	rc = pthread_create(&t->rx, NULL, tcp_rx_main, t);
	if (rc) {
		if (!dom)
			tcp_dom_free(&t->dom->base);
		tcp_ep_free(t);
		return rmig_set_error(NULL, -rc, "cannot start the receiver thread");
	}
	t->rx_started = 1;
	*out = &t->base;
	return 0;
}

static int tcp_listen(const struct rmig_ep_opts *opts, const char *addr,
		      struct rmig_ep **listener)
{
	char err[RMIG_ERR_MAX] = "";
	struct tcp_ep *t;
	int fd, rc;

	(void)opts;
	rc = rmig_sock_listen(addr, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(NULL, rc, "%s", err);
	t = tcp_ep_new(fd);
	if (!t) {
		close(fd);
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a listener");
	}
	t->base.ops = &rmig_tcp_ops;
	*listener = &t->base;
	return 0;
}

static int tcp_accept_on(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
			 struct rmig_ep **ep)
{
	char err[RMIG_ERR_MAX] = "";
	int fd, rc;

	rc = rmig_sock_accept(TCP(listener)->fd, timeout_ms, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(listener, rc, "%s", err);
	/* timeout_ms bounds the wait for a peer (callers wait in slices); the
	 * handshake of one that arrived gets the listener's whole deadline. */
	rc = tcp_start(fd, dom, listener->timeout_ms, ep);
	if (rc)
		close(fd);
	return rc;
}

static int tcp_accept(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep)
{
	return tcp_accept_on(listener, NULL, timeout_ms, ep);
}

static int tcp_connect(const struct rmig_ep_opts *opts, const char *addr,
		       struct rmig_ep **ep)
{
	char err[RMIG_ERR_MAX] = "";
	int fd, rc;

	rc = rmig_sock_connect(addr, opts->timeout_ms, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(NULL, rc, "%s", err);
	rc = tcp_start(fd, opts->domain, opts->timeout_ms, ep);
	if (rc)
		close(fd);
	return rc;
}

static int tcp_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	return rmig_sock_name(TCP(ep)->fd, buf, len);
}

static int tcp_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		      struct rmig_mr **mr)
{
	struct tcp_dom *d = TCP(ep)->dom;
	struct tcp_region *r = calloc(1, sizeof(*r)), **grown;
	uint64_t key;

	if (!r || !d) {
		free(r);
		return rmig_set_error(ep, d ? -ENOMEM : -ENOTCONN,
				      d ? "out of memory for a region"
					: "register memory on a connected endpoint");
	}
	if (getrandom(&key, sizeof(key), 0) != sizeof(key))
		key = rmig_now_ns() ^ (uintptr_t)r;
	r->base = (struct rmig_mr){ .ep = ep, .addr = addr, .len = len,
				    .access = access, .dom = &d->base };
	pthread_rwlock_wrlock(&d->lock);
	grown = realloc(d->regions, (d->nregions + 1) * sizeof(*grown));
	if (!grown) {
		pthread_rwlock_unlock(&d->lock);
		free(r);
		return rmig_set_error(ep, -ENOMEM, "out of memory for a region");
	}
	d->regions = grown;
	d->regions[d->nregions++] = r;
	r->base.rkey = (struct rmig_rkey){ .addr = 0, .len = len, .key = key,
					   .id = d->nregions, .flags = access };
	pthread_rwlock_unlock(&d->lock);
	*mr = &r->base;
	return 0;
}

/*
 * The slot stays empty (ids are never reused, so a stale key can never match
 * a later region); taking the lock for writing waits out a write the
 * receiver is applying into this region right now.
 */
static int tcp_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	struct tcp_dom *d = TCP(ep)->dom;
	uint32_t id = mr->rkey.id;

	if (!d)
		return rmig_set_error(ep, -EINVAL, "region is not registered on this endpoint");
	pthread_rwlock_wrlock(&d->lock);
	if (id >= 1 && id <= d->nregions && d->regions[id - 1] == (struct tcp_region *)mr)
		d->regions[id - 1] = NULL;
	pthread_rwlock_unlock(&d->lock);
	free(mr);
	return 0;
}

/*
 * Take a slot among the outstanding batches and, for reads, queue the batch
 * for the receiver: 0, the dead endpoint's error or -EAGAIN.  Readers call
 * it with tx_lock held, so the queue is in wire order.
 */
static int tcp_reserve(struct tcp_ep *t, struct tcp_rbatch *b)
{
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	if (t->dead) {
		rc = 1;
	} else if (t->outstanding == RMIG_OUTSTANDING_MAX) {
		rc = -EAGAIN;
	} else {
		t->outstanding++;
		if (b) {
			*t->rq_tail = b;
			t->rq_tail = &b->next;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (rc == 1)
		return tcp_dead_error(t);
	if (rc)
		return rmig_set_error(&t->base, -EAGAIN, "%d batches outstanding: poll first",
				      RMIG_OUTSTANDING_MAX);
	return 0;
}

static int tcp_write_batch(struct rmig_ep *ep, const struct rmig_write *w,
			   unsigned n, uint64_t wr_id)
{
	struct tcp_ep *t = TCP(ep);
	uint8_t hdr[RMIG_BATCH_MAX][TCP_HDR_SIZE];
	struct iovec iov[2 * RMIG_BATCH_MAX];
	int rc;

	for (unsigned i = 0; i < n; i++) {
		struct tcp_hdr h = { .type = TCP_FRAME_WRITE, .id = w[i].rkey->id,
				     .key = w[i].rkey->key, .off = w[i].roff,
				     .len = w[i].len };
		tcp_hdr_encode(&h, hdr[i]);
		iov[2 * i] = (struct iovec){ hdr[i], TCP_HDR_SIZE };
		iov[2 * i + 1] = (struct iovec){ (char *)w[i].lmr->addr + w[i].loff,
						 w[i].len };
	}
	pthread_mutex_lock(&t->tx_lock);
	rc = tcp_reserve(t, NULL);
	if (rc) {
		pthread_mutex_unlock(&t->tx_lock);
		return rc;
	}
	/* Complete as soon as sent: the bytes are in the stream, ahead of
	 * any message sent after them. */
	rc = rmig_sock_sendv(t->fd, iov, (int)(2 * n), rmig_deadline(ep->timeout_ms));
	pthread_mutex_lock(&t->lock);
	if (!rc)
		tcp_complete(t, wr_id, 0);
	else
		t->outstanding--;
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_unlock(&t->tx_lock);
	if (rc) {
		tcp_mark_dead(t, rc == -ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET,
			      rc == -ETIMEDOUT ? "peer stopped taking data (send timed out)"
					       : "connection lost while writing");
		return tcp_dead_error(t);
	}
	return 0;
}

/* A new read batch as the receiver will place it, and its requests. */
static struct tcp_rbatch *tcp_rbatch_new(const struct rmig_read *r, unsigned n, uint64_t wr_id,
					 uint8_t (*hdr)[TCP_HDR_SIZE], struct iovec *iov)
{
	struct tcp_rbatch *b = calloc(1, sizeof(*b) + n * sizeof(b->rd[0]));

	if (!b)
		return NULL;
	b->wr_id = wr_id;
	b->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct tcp_hdr h = { .type = TCP_FRAME_READ_REQ, .id = r[i].rkey->id,
				     .key = r[i].rkey->key, .off = r[i].roff, .len = r[i].len };
		b->rd[i] = (struct tcp_rd){ .dst = (char *)r[i].lmr->addr + r[i].loff,
					    .lmr = r[i].lmr, .lmr_id = r[i].lmr->rkey.id,
					    .roff = r[i].roff, .len = r[i].len };
		tcp_hdr_encode(&h, hdr[i]);
		iov[i] = (struct iovec){ hdr[i], TCP_HDR_SIZE };
	}
	return b;
}

static int tcp_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
			  uint64_t wr_id)
{
	struct tcp_ep *t = TCP(ep);
	uint8_t hdr[RMIG_BATCH_MAX][TCP_HDR_SIZE];
	struct iovec iov[RMIG_BATCH_MAX];
	struct tcp_rbatch *b, *p;
	int rc;

	for (unsigned i = 0; i < n; i++)
		if (!ep->dom || r[i].lmr->dom != ep->dom)
			return rmig_set_error(ep, -EINVAL,
					      "read %u's destination is registered on another endpoint's domain", i);
	b = tcp_rbatch_new(r, n, wr_id, hdr, iov);
	if (!b)
		return rmig_set_error(ep, -ENOMEM, "out of memory for a batch of reads");
	pthread_mutex_lock(&t->tx_lock);
	rc = tcp_reserve(t, b);
	if (rc) {
		pthread_mutex_unlock(&t->tx_lock);
		free(b);
		return rc;
	}
	rc = rmig_sock_sendv(t->fd, iov, (int)n, rmig_deadline(ep->timeout_ms));
	pthread_mutex_unlock(&t->tx_lock);
	if (!rc)
		return 0;
	/*
	 * Not every request went out: answers can no longer complete the
	 * batch.  Still queued: the caller gets the error and no completion.
	 * Already failed by the ending receiver: its completion says it.
	 */
	pthread_mutex_lock(&t->lock);
	for (p = t->rq_head; p && p != b; p = p->next)
		;
	if (p) {
		b->orphan = 1;
		t->outstanding--;
	}
	tcp_mark_dead_locked(t, rc == -ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET,
			     rc == -ETIMEDOUT ? "peer stopped taking data (send timed out)"
					      : "connection lost while asking for a read");
	pthread_mutex_unlock(&t->lock);
	shutdown(t->fd, SHUT_RDWR); /* the receiver ends and fails what still waits */
	return p ? tcp_dead_error(t) : 0;
}

/* Wait on cond (lock held) until ready(t) or the deadline: 0 or -ETIMEDOUT. */
static int tcp_wait_locked(struct tcp_ep *t, uint64_t deadline,
			   int (*ready)(const struct tcp_ep *t))
{
	struct timespec ts;

	while (!ready(t)) {
		int left = rmig_left_ms(deadline);

		if (left < 0) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		if (!left)
			return -ETIMEDOUT;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t abs_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
				  (uint64_t)left * 1000000ull;
		ts.tv_sec = (time_t)(abs_ns / 1000000000ull);
		ts.tv_nsec = (long)(abs_ns % 1000000000ull);
		pthread_cond_timedwait(&t->cond, &t->lock, &ts);
	}
	return 0;
}

/* A completion is there, none can come (nothing pending), or the end. */
static int tcp_poll_ready(const struct tcp_ep *t)
{
	return t->cq_count || !t->outstanding || t->dead;
}

/* Writes complete as they are sent; reads once their last answer is placed. */
static int tcp_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
		    int timeout_ms)
{
	struct tcp_ep *t = TCP(ep);
	unsigned n = 0;
	int failed = 0;

	pthread_mutex_lock(&t->lock);
	tcp_wait_locked(t, rmig_deadline(timeout_ms), tcp_poll_ready);
	while (n < max && t->cq_count) {
		c[n] = t->cq[t->cq_head];
		failed |= c[n++].status != 0;
		t->cq_head = (t->cq_head + 1) % RMIG_OUTSTANDING_MAX;
		t->cq_count--;
		t->outstanding--;
	}
	/* A failed batch: the endpoint's phrase says why (reads fail only
	 * as the connection ends, or with the answer's status). */
	if (failed && t->dead)
		rmig_set_error(ep, t->dead_err, "%s", t->dead_why);
	pthread_mutex_unlock(&t->lock);
	return n ? (int)n : tcp_dead_error(t);
}

static int tcp_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	struct tcp_ep *t = TCP(ep);
	struct tcp_hdr h = { .type = TCP_FRAME_MSG, .len = len };
	uint8_t raw[TCP_HDR_SIZE];
	struct iovec iov[2] = { { raw, TCP_HDR_SIZE }, { (void *)buf, len } };
	int rc = tcp_dead_error(t);

	if (rc)
		return rc;
	tcp_hdr_encode(&h, raw);
	pthread_mutex_lock(&t->tx_lock);
	rc = rmig_sock_sendv(t->fd, iov, len ? 2 : 1, rmig_deadline(ep->timeout_ms));
	pthread_mutex_unlock(&t->tx_lock);
	if (rc) {
		tcp_mark_dead(t, rc, rc == -ETIMEDOUT ? "peer stopped taking data (send timed out)"
						      : "connection lost while sending");
		return tcp_dead_error(t);
	}
	return 0;
}

static int tcp_recv_ready(const struct tcp_ep *t)
{
	return t->msgs || t->dead;
}

static int tcp_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	struct tcp_ep *t = TCP(ep);
	struct tcp_msg *m;
	int rc;

	pthread_mutex_lock(&t->lock);
	rc = tcp_wait_locked(t, rmig_deadline(timeout_ms), tcp_recv_ready);
	m = t->msgs;
	if (m && m->len > cap) {
		rc = -EMSGSIZE;
	} else if (m) {
		t->msgs = m->next;
		if (!t->msgs)
			t->msgs_tail = &t->msgs;
		rc = (int)m->len;
	}
	pthread_mutex_unlock(&t->lock);
	if (m && rc >= 0) {
		memcpy(buf, m->data, m->len);
		free(m);
		return rc;
	}
	if (rc == -ETIMEDOUT)
		return rmig_set_error(ep, rc, "no message from the peer within %d ms",
				      timeout_ms);
	if (rc == -EMSGSIZE)
		return rmig_set_error(ep, rc, "message of %zu bytes exceeds the %zu-byte buffer",
				      m->len, cap);
	return tcp_dead_error(t);
}

static void tcp_close(struct rmig_ep *ep)
{
	struct tcp_ep *t = TCP(ep);

	shutdown(t->fd, SHUT_RDWR);
	if (t->rx_started)
		pthread_join(t->rx, NULL);
	close(t->fd);
	tcp_ep_free(t);
}

const struct rmig_transport_ops rmig_tcp_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "tcp",
	.caps = RMIG_CAP_WRITE | RMIG_CAP_CROSS_HOST | RMIG_CAP_DOMAIN | RMIG_CAP_READ,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.local_addr = tcp_local_addr,
	.reg_mr = tcp_reg_mr,
	.dereg_mr = tcp_dereg_mr,
	.write_batch = tcp_write_batch,
	.poll = tcp_poll,
	.send = tcp_send,
	.recv = tcp_recv,
	.close = tcp_close,
	.accept_on = tcp_accept_on,
	.domain_free = tcp_dom_free,
	.read_batch = tcp_read_batch,
};
