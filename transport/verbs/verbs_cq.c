/* SPDX-License-Identifier: MIT */
/*
 * The data path: posting writes and sends, and the one place completions
 * are polled (verbs_progress), which every waiting call drives.
 *
 * Ordering: writes and control messages go on the same RC queue pair.  RC
 * executes a QP's requests in order, and the responder completes a SEND's
 * receive only after every RDMA WRITE posted before it has been placed in
 * its memory; so a message sent after a write reaches the peer's rmig_recv
 * only once that write's bytes are visible: the guarantee rdmamig.h makes.
 *
 * Waiting: spin on the CQ briefly (a completion is often microseconds
 * away), then arm the completion channel and sleep in poll() on it and on
 * the CM event channel (so a DISCONNECTED event ends the wait), in slices,
 * never past the caller's deadline.
 */
#define _GNU_SOURCE
#include "verbs_int.h"
#include "../../common/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Busy-poll this long before sleeping on the completion channel. */
#define VERBS_SPIN_NS 20000ull
/* Longest sleep before looking again (another thread may have taken the event). */
#define VERBS_SLICE_MS 20

void verbs_mark_dead(struct verbs_ep *v, int err, const char *why)
{
	struct ibv_qp_attr qa = { .qp_state = IBV_QPS_ERR };

	if (v->dead)
		return;
	v->dead = 1;
	v->dead_err = err;
	snprintf(v->dead_why, sizeof(v->dead_why), "%s", why);
	/* Flush what is still posted so every batch gets its (failed) completion. */
	if (v->qp_made)
		ibv_modify_qp(v->id->qp, &qa, IBV_QP_STATE);
}

/* Caller's view of a dead endpoint (lock not held): its phrase, the errno. */
int verbs_dead_error(struct verbs_ep *v)
{
	int err;

	pthread_mutex_lock(&v->lock);
	err = v->dead ? v->dead_err : 0;
	if (err)
		rmig_set_error(&v->base, err, "%s", v->dead_why);
	pthread_mutex_unlock(&v->lock);
	return err;
}

/* Data calls on a listener (or a torn-down endpoint) have no queue pair. */
static int not_connected(struct verbs_ep *v)
{
	return rmig_set_error(&v->base, -ENOTCONN,
			      "writes and messages need a connected endpoint, not a listener");
}

int verbs_post_recv(struct verbs_ep *v, unsigned slot)
{
	struct ibv_sge sge = { .addr = (uintptr_t)(v->rxbuf + (size_t)slot * RMIG_MSG_MAX),
			       .length = RMIG_MSG_MAX, .lkey = v->rxmr->lkey };
	struct ibv_recv_wr wr = { .wr_id = VERBS_WRID(VERBS_TAG_RECV, slot),
				  .sg_list = &sge, .num_sge = 1 }, *bad;
	int rc = ibv_post_recv(v->id->qp, &wr, &bad); /* positive errno */

	return rc ? rmig_set_error(&v->base, -rc, "cannot post a receive: %s", strerror(rc))
		  : 0;
}

static int wc_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_LOC_LEN_ERR:
		return -EINVAL;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	default: /* flushed, remote operation errors: the connection is gone */
		return -ECONNRESET;
	}
}

/* The first error decides what the caller is told; later flushes repeat it. */
static void wc_failed(struct verbs_ep *v, const struct ibv_wc *wc, const char *what)
{
	char why[RMIG_ERR_MAX];

	if (wc->status == IBV_WC_WR_FLUSH_ERR)
		snprintf(why, sizeof(why), "connection lost (%s flushed)", what);
	else
		snprintf(why, sizeof(why), "%s failed: %s", what, ibv_wc_status_str(wc->status));
	verbs_mark_dead(v, wc_errno(wc->status) == -ETIMEDOUT ? -ECONNRESET
							       : wc_errno(wc->status), why);
}

static void on_recv(struct verbs_ep *v, const struct ibv_wc *wc, unsigned slot)
{
	struct verbs_msg *m;

	if (wc->status != IBV_WC_SUCCESS) {
		wc_failed(v, wc, "receive");
		return;
	}
	m = malloc(sizeof(*m) + wc->byte_len);
	if (!m) {
		verbs_mark_dead(v, -ENOMEM, "out of memory for a received message");
		return;
	}
	m->next = NULL;
	m->len = wc->byte_len;
	memcpy(m->data, v->rxbuf + (size_t)slot * RMIG_MSG_MAX, wc->byte_len);
	*v->msgs_tail = m;
	v->msgs_tail = &m->next;
	if (!v->dead && verbs_post_recv(v, slot))
		verbs_mark_dead(v, -EIO, "cannot post a receive buffer again");
}

static void on_write(struct verbs_ep *v, const struct ibv_wc *wc, unsigned slot)
{
	struct verbs_batch *b = &v->batch[slot];

	if (wc->status != IBV_WC_SUCCESS)
		wc_failed(v, wc, slot < RMIG_OUTSTANDING_MAX && b->read ? "RDMA read" : "RDMA write");
	/* Unsignaled entries report only errors; the first report ends the batch. */
	if (slot >= RMIG_OUTSTANDING_MAX || !b->busy)
		return;
	b->busy = 0;
	v->nbusy--;
	v->sq_used -= b->nwr;
	v->done[(v->done_head + v->done_count++) % RMIG_OUTSTANDING_MAX] =
		(struct rmig_completion){ .wr_id = b->wr_id, .status = wc_errno(wc->status) };
}

/* Reap the CQ and sort completions out (lock held). */
static void verbs_progress(struct verbs_ep *v)
{
	struct ibv_wc wc[32];
	int n;

	if (!v->cq)
		return;
	while ((n = ibv_poll_cq(v->cq, 32, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			unsigned slot = (uint32_t)wc[i].wr_id;
			switch (wc[i].wr_id >> 32) {
			case VERBS_TAG_RECV:
				on_recv(v, &wc[i], slot);
				break;
			case VERBS_TAG_WRITE:
				on_write(v, &wc[i], slot);
				break;
			case VERBS_TAG_SEND:
				if (wc[i].status != IBV_WC_SUCCESS)
					wc_failed(v, &wc[i], "send");
				if (slot < VERBS_NSEND && v->tx_busy[slot]) {
					v->tx_busy[slot] = 0;
					v->tx_nbusy--;
					v->sq_used--;
				}
				break;
			}
		}
	}
	if (n < 0)
		verbs_mark_dead(v, -EIO, "polling the completion queue failed");
}

/*
 * Drive progress until ready(v) holds (returns 1), the endpoint dies or the
 * deadline passes (returns 0; the caller looks at v->dead).
 */
static int verbs_wait(struct verbs_ep *v, uint64_t deadline,
		      int (*ready)(struct verbs_ep *v, void *arg), void *arg)
{
	uint64_t spin_end = rmig_now_ns() + VERBS_SPIN_NS;
	int armed = 0, cm_seen = 0;

	for (;;) {
		struct pollfd p[2];
		int ok, dead, left;

		pthread_mutex_lock(&v->lock);
		verbs_progress(v);
		ok = ready(v, arg);
		dead = v->dead;
		pthread_mutex_unlock(&v->lock);
		if (ok)
			return 1;
		if (dead)
			return 0;
		left = rmig_left_ms(deadline);
		if (left == 0 && !cm_seen) {
			/* A caller that never waits must still learn that the peer left. */
			verbs_cm_drain(v);
			cm_seen = 1;
			continue;
		}
		if (left == 0)
			return 0;
		if (rmig_now_ns() < spin_end)
			continue;
		if (!armed) {
			/* Arm, then look once more: a completion in between raises no event. */
			if (ibv_req_notify_cq(v->cq, 0))
				spin_end = rmig_now_ns() + VERBS_SPIN_NS;
			else
				armed = 1;
			continue;
		}
		p[0] = (struct pollfd){ .fd = v->cc->fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = v->ech->fd, .events = POLLIN };
		if (poll(p, 2, left < 0 || left > VERBS_SLICE_MS ? VERBS_SLICE_MS : left) == 0)
			armed = 0; /* another thread may have taken the event: arm again */
		if (p[0].revents & POLLIN) {
			struct ibv_cq *cq;
			void *ctx;
			if (!ibv_get_cq_event(v->cc, &cq, &ctx)) {
				ibv_ack_cq_events(cq, 1);
				armed = 0;
			}
		}
		if (p[1].revents & POLLIN)
			verbs_cm_drain(v);
	}
}

/*
 * verbs_wait, then take the lock and check again (another thread may have
 * taken what was waited for): 1 with the lock held and ready(v) true and
 * the endpoint alive, or 0 without the lock (dead or deadline passed).
 *
 * verbs_wait reports ready before it looks at dead (a receive still gets
 * the messages that came before the peer left), so a dead endpoint whose
 * condition holds (room on the send queue) must end the loop here: going
 * round again spun forever, the hang a killed peer caused now and then.
 */
static int verbs_wait_locked(struct verbs_ep *v, uint64_t deadline,
			     int (*ready)(struct verbs_ep *v, void *arg), void *arg)
{
	for (;;) {
		if (!verbs_wait(v, deadline, ready, arg))
			return 0;
		pthread_mutex_lock(&v->lock);
		if (v->dead)
			break;
		if (ready(v, arg))
			return 1;
		pthread_mutex_unlock(&v->lock);
		if (!rmig_left_ms(deadline))
			return 0;
	}
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int batch_room(struct verbs_ep *v, void *arg)
{
	unsigned n = *(unsigned *)arg;

	return v->sq_used + n <= v->sq_depth;
}

/* Writes, or reads (opcode IBV_WR_RDMA_READ: each w's lmr is the destination). */
static int verbs_post_rma(struct verbs_ep *v, const struct rmig_write *w, unsigned n,
			  unsigned slot, enum ibv_wr_opcode opcode)
{
	struct ibv_send_wr wr[RMIG_BATCH_MAX], *bad;
	struct ibv_sge sge[RMIG_BATCH_MAX];

	for (unsigned i = 0; i < n; i++) {
		const struct verbs_region *l = (const struct verbs_region *)w[i].lmr;
		sge[i] = (struct ibv_sge){ .addr = (uintptr_t)l->base.addr + w[i].loff,
					   .length = (uint32_t)w[i].len, .lkey = l->mr->lkey };
		wr[i] = (struct ibv_send_wr){
			.wr_id = VERBS_WRID(VERBS_TAG_WRITE, slot),
			.next = i + 1 < n ? &wr[i + 1] : NULL,
			.sg_list = &sge[i],
			.num_sge = 1,
			.opcode = opcode,
			/* One completion per batch: in-order SQ, so the last implies all
			 * (a READ's completion too: requests complete in order). */
			.send_flags = i + 1 == n ? IBV_SEND_SIGNALED : 0,
			.wr.rdma = { .remote_addr = w[i].rkey->addr + w[i].roff,
				     .rkey = (uint32_t)w[i].rkey->key },
		};
	}
	return ibv_post_send(v->id->qp, wr, &bad); /* positive errno */
}

static int rma_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id, int read)
{
	struct verbs_ep *v = VERBS(ep);
	const char *what = read ? "read" : "write";
	unsigned slot;
	int rc;

	if (!v->qp_made)
		return not_connected(v);
	for (unsigned i = 0; i < n; i++) {
		if (w[i].len > UINT32_MAX)
			return rmig_set_error(ep, -EMSGSIZE,
					      "a single %s is limited to 4 GiB, not %llu bytes",
					      what, (unsigned long long)w[i].len);
		if (w[i].rkey->key > UINT32_MAX || w[i].lmr->dom != ep->dom)
			return rmig_set_error(ep, -EINVAL,
					      "%s %u names a region of another endpoint or backend",
					      what, i);
	}
	if (n > v->sq_depth)
		return rmig_set_error(ep, -EINVAL, "a batch of %u %ss exceeds the %u-entry send queue",
				      n, what, v->sq_depth);
	if (!verbs_wait_locked(v, rmig_deadline(ep->timeout_ms), batch_room, &n)) {
		rc = verbs_dead_error(v);
		return rc ? rc : rmig_set_error(ep, -ETIMEDOUT,
						"send queue still full after %d ms",
						ep->timeout_ms);
	}
	if (v->nbusy + v->done_count >= RMIG_OUTSTANDING_MAX) {
		pthread_mutex_unlock(&v->lock);
		return rmig_set_error(ep, -EAGAIN, "%d batches outstanding: poll first",
				      RMIG_OUTSTANDING_MAX);
	}
	for (slot = 0; v->batch[slot].busy; slot++)
		;
	/* Set before posting: an error completion may name the batch's kind. */
	v->batch[slot] = (struct verbs_batch){ .wr_id = wr_id, .nwr = n, .read = read };
	rc = verbs_post_rma(v, w, n, slot, read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE);
	if (!rc) {
		v->batch[slot].busy = 1;
		v->nbusy++;
		v->sq_used += n;
	}
	pthread_mutex_unlock(&v->lock);
	return rc ? rmig_set_error(ep, -rc, "cannot post %u RDMA %ss: %s", n, what, strerror(rc))
		  : 0;
}

int verbs_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		      uint64_t wr_id)
{
	return rma_batch(ep, w, n, wr_id, 0);
}

int verbs_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		     uint64_t wr_id)
{
	struct rmig_write w[RMIG_BATCH_MAX];

	for (unsigned i = 0; i < n; i++)
		w[i] = (struct rmig_write){ .lmr = r[i].lmr, .loff = r[i].loff, .rkey = r[i].rkey,
					    .roff = r[i].roff, .len = r[i].len };
	return rma_batch(ep, w, n, wr_id, 1);
}

static int have_done(struct verbs_ep *v, void *arg)
{
	(void)arg;
	return v->done_count > 0;
}

int verbs_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
	       int timeout_ms)
{
	struct verbs_ep *v = VERBS(ep);
	unsigned n = 0;
	int failed = 0;

	if (!v->qp_made)
		return not_connected(v);
	verbs_wait(v, rmig_deadline(timeout_ms), have_done, NULL);
	pthread_mutex_lock(&v->lock);
	while (n < max && v->done_count) {
		c[n] = v->done[v->done_head];
		failed |= c[n++].status != 0;
		v->done_head = (v->done_head + 1) % RMIG_OUTSTANDING_MAX;
		v->done_count--;
	}
	/* A failed batch: the endpoint's phrase says why (the first error). */
	if (failed && v->dead)
		rmig_set_error(ep, v->dead_err, "%s", v->dead_why);
	pthread_mutex_unlock(&v->lock);
	return n ? (int)n : verbs_dead_error(v);
}

static int sq_empty(struct verbs_ep *v, void *arg)
{
	(void)arg;
	return v->sq_used == 0;
}

/*
 * Before a close: let posted sends and writes finish, as a TCP close
 * delivers what was written.  A message sent just before rmig_close (a
 * "shutdown") would otherwise die with the queue pair.
 */
void verbs_drain(struct verbs_ep *v, int timeout_ms)
{
	if (v->cq)
		verbs_wait(v, rmig_deadline(timeout_ms), sq_empty, NULL);
}

static int tx_free(struct verbs_ep *v, void *arg)
{
	(void)arg;
	return v->tx_nbusy < VERBS_NSEND && v->sq_used < v->sq_depth;
}

int verbs_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	struct verbs_ep *v = VERBS(ep);
	struct ibv_send_wr wr, *bad;
	struct ibv_sge sge;
	unsigned slot;
	int rc;

	if (!v->qp_made)
		return not_connected(v);
	if (!verbs_wait_locked(v, rmig_deadline(ep->timeout_ms), tx_free, NULL)) {
		rc = verbs_dead_error(v);
		if (rc)
			return rc;
		pthread_mutex_lock(&v->lock);
		verbs_mark_dead(v, -ETIMEDOUT, "peer stopped taking messages (send timed out)");
		pthread_mutex_unlock(&v->lock);
		return verbs_dead_error(v);
	}
	for (slot = 0; v->tx_busy[slot]; slot++)
		;
	memcpy(v->txbuf + (size_t)slot * RMIG_MSG_MAX, buf, len);
	sge = (struct ibv_sge){ .addr = (uintptr_t)(v->txbuf + (size_t)slot * RMIG_MSG_MAX),
				.length = (uint32_t)len, .lkey = v->txmr->lkey };
	wr = (struct ibv_send_wr){ .wr_id = VERBS_WRID(VERBS_TAG_SEND, slot),
				   .sg_list = &sge, .num_sge = len ? 1 : 0,
				   .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED };
	rc = ibv_post_send(v->id->qp, &wr, &bad); /* positive errno */
	if (!rc) {
		v->tx_busy[slot] = 1;
		v->tx_nbusy++;
		v->sq_used++;
	}
	pthread_mutex_unlock(&v->lock);
	return rc ? rmig_set_error(ep, -rc, "cannot post a send: %s", strerror(rc)) : 0;
}

static int have_msg(struct verbs_ep *v, void *arg)
{
	(void)arg;
	return v->msgs != NULL;
}

int verbs_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	struct verbs_ep *v = VERBS(ep);
	struct verbs_msg *m;
	int rc;

	if (!v->qp_made)
		return not_connected(v);
	verbs_wait(v, rmig_deadline(timeout_ms), have_msg, NULL);
	pthread_mutex_lock(&v->lock);
	/* Messages that arrived before the peer went are still delivered. */
	m = v->msgs;
	if (m && m->len > cap) {
		size_t len = m->len;
		pthread_mutex_unlock(&v->lock);
		return rmig_set_error(ep, -EMSGSIZE, "message of %zu bytes exceeds the %zu-byte buffer",
				      len, cap);
	}
	if (m) {
		v->msgs = m->next;
		if (!v->msgs)
			v->msgs_tail = &v->msgs;
	}
	pthread_mutex_unlock(&v->lock);
	if (m) {
		rc = (int)m->len;
		memcpy(buf, m->data, m->len);
		free(m);
		return rc;
	}
	rc = verbs_dead_error(v);
	return rc ? rc : rmig_set_error(ep, -ETIMEDOUT, "no message from the peer within %d ms",
					timeout_ms);
}
