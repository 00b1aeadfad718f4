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

struct tcp_ep {
	struct rmig_ep base;
	int fd;
	pthread_t rx;
	int rx_started;

	/* tx_lock: frames of concurrent senders never interleave; guards cq. */
	pthread_mutex_t tx_lock;
	struct rmig_completion cq[RMIG_OUTSTANDING_MAX];
	unsigned cq_head, cq_count;

	struct tcp_dom *dom; /* base.dom: its region table */

	/* lock guards msgs, dead, dead_err, dead_why; cond signals both. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct tcp_msg *msgs, **msgs_tail;
	int dead;
	int dead_err;
	char dead_why[RMIG_ERR_MAX];
};

#define TCP(ep) ((struct tcp_ep *)(ep))

static void tcp_mark_dead(struct tcp_ep *t, int err, const char *why)
{
	pthread_mutex_lock(&t->lock);
	if (!t->dead) {
		t->dead = 1;
		t->dead_err = err;
		snprintf(t->dead_why, sizeof(t->dead_why), "%s", why);
	}
	pthread_cond_broadcast(&t->cond);
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

/* Read and drop len bytes (never used for a frame that failed a check). */
static int tcp_apply_write(struct tcp_ep *t, const struct tcp_hdr *h)
{
	struct tcp_dom *d = t->dom;
	struct tcp_region *r = NULL;
	int rc;

	pthread_rwlock_rdlock(&d->lock);
	if (h->id >= 1 && h->id <= d->nregions)
		r = d->regions[h->id - 1];
	if (!r || r->base.rkey.key != h->key) {
		rc = -EACCES;
		tcp_mark_dead(t, -EACCES, "peer wrote with an unknown region key");
	} else if (!(r->base.access & RMIG_ACCESS_REMOTE_WRITE)) {
		rc = -EACCES;
		tcp_mark_dead(t, -EACCES, "peer wrote into a region without remote write access");
	} else if (h->len > r->base.len || h->off > r->base.len - h->len) {
		rc = -ERANGE;
		tcp_mark_dead(t, -ERANGE, "peer wrote outside a registered region");
	} else {
		rc = rx_read(t->fd, (char *)r->base.addr + h->off, h->len);
	}
	pthread_rwlock_unlock(&d->lock);
	return rc;
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
		rc = h.type == TCP_FRAME_WRITE ? tcp_apply_write(t, &h)
					       : tcp_queue_msg(t, &h);
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
	tcp_mark_dead(t, -ECONNRESET, "connection closed by the peer");
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

static int tcp_write_batch(struct rmig_ep *ep, const struct rmig_write *w,
			   unsigned n, uint64_t wr_id)
{
	struct tcp_ep *t = TCP(ep);
	uint8_t hdr[RMIG_BATCH_MAX][TCP_HDR_SIZE];
	struct iovec iov[2 * RMIG_BATCH_MAX];
	int rc = tcp_dead_error(t);

	if (rc)
		return rc;
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
	if (t->cq_count == RMIG_OUTSTANDING_MAX) {
		pthread_mutex_unlock(&t->tx_lock);
		return rmig_set_error(ep, -EAGAIN, "%d batches outstanding: poll first",
				      RMIG_OUTSTANDING_MAX);
	}
	rc = rmig_sock_sendv(t->fd, iov, (int)(2 * n), rmig_deadline(ep->timeout_ms));
	if (!rc) {
		unsigned tail = (t->cq_head + t->cq_count++) % RMIG_OUTSTANDING_MAX;
		t->cq[tail] = (struct rmig_completion){ .wr_id = wr_id, .status = 0 };
	}
	pthread_mutex_unlock(&t->tx_lock);
	if (rc) {
		tcp_mark_dead(t, rc == -ETIMEDOUT ? -ETIMEDOUT : -ECONNRESET,
			      rc == -ETIMEDOUT ? "peer stopped taking data (send timed out)"
					       : "connection lost while writing");
		return tcp_dead_error(t);
	}
	return 0;
}

/* Writes complete as they are sent, so there is never anything to wait for. */
static int tcp_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
		    int timeout_ms)
{
	struct tcp_ep *t = TCP(ep);
	unsigned n = 0;

	(void)timeout_ms;
	pthread_mutex_lock(&t->tx_lock);
	while (n < max && t->cq_count) {
		c[n++] = t->cq[t->cq_head];
		t->cq_head = (t->cq_head + 1) % RMIG_OUTSTANDING_MAX;
		t->cq_count--;
	}
	pthread_mutex_unlock(&t->tx_lock);
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

static int tcp_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	struct tcp_ep *t = TCP(ep);
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct timespec ts;
	struct tcp_msg *m;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	while (!t->msgs && !t->dead && !rc) {
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&t->cond, &t->lock);
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t abs_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
				  (uint64_t)rmig_left_ms(deadline) * 1000000ull;
		ts.tv_sec = (time_t)(abs_ns / 1000000000ull);
		ts.tv_nsec = (long)(abs_ns % 1000000000ull);
		if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT &&
		    !t->msgs && !t->dead)
			rc = -ETIMEDOUT;
	}
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
	.caps = RMIG_CAP_WRITE | RMIG_CAP_CROSS_HOST | RMIG_CAP_DOMAIN,
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
};
