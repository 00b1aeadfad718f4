/* SPDX-License-Identifier: MIT */
/*
 * Per-connection resources: protection domain, one completion queue (with a
 * completion channel to sleep on), an RC queue pair made by librdmacm, and
 * the registered message buffers with every receive pre-posted before the
 * connection is accepted or requested (so the peer's first SEND finds one).
 */
#define _GNU_SOURCE
#include "verbs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct verbs_ep *verbs_ep_new(void)
{
	struct verbs_ep *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->base.ops = &rmig_verbs_ops;
	v->msgs_tail = &v->msgs;
	pthread_mutex_init(&v->lock, NULL);
	return v;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) ? -errno : 0;
}

static unsigned umin(unsigned a, unsigned b)
{
	return a < b ? a : b;
}

static int verbs_bufs_setup(struct verbs_ep *v)
{
	size_t rxlen = (size_t)VERBS_NRECV * RMIG_MSG_MAX;
	size_t txlen = (size_t)VERBS_NSEND * RMIG_MSG_MAX;
	int rc;

	v->rxbuf = aligned_alloc(4096, rxlen);
	v->txbuf = aligned_alloc(4096, txlen);
	if (!v->rxbuf || !v->txbuf)
		return rmig_set_error(&v->base, -ENOMEM, "out of memory for message buffers");
	/* Receives: only the local HCA writes them.  Sends: only read. */
	rc = verbs_reg_buf(v, v->rxbuf, rxlen, IBV_ACCESS_LOCAL_WRITE, &v->rxmr);
	if (rc)
		return rc;
	v->bufs_pinned += rxlen;
	rc = verbs_reg_buf(v, v->txbuf, txlen, 0, &v->txmr);
	if (rc)
		return rc;
	v->bufs_pinned += txlen;
	for (unsigned i = 0; i < VERBS_NRECV; i++) {
		rc = verbs_post_recv(v, i);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Make the QP on id (resolved or just requested) and everything it needs.
 * On failure the caller runs verbs_qp_teardown.
 */
/*
 * On-demand paging for RC writes, both as their source and their target
 * (mlx5 reports it; rxe from Linux 6.14, not the 6.1 of the Soft-RoCE VM).
 * RMIG_VERBS_NO_ODP=1 turns it off (pinned registrations, as without it).
 */
static int verbs_has_odp(struct ibv_context *ctx)
{
	struct ibv_device_attr_ex a;
	const uint32_t need = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_WRITE;
	const char *off = getenv("RMIG_VERBS_NO_ODP");

	if ((off && *off && strcmp(off, "0")) || ibv_query_device_ex(ctx, NULL, &a))
		return 0;
	return (a.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
	       (a.odp_caps.per_transport_caps.rc_odp_caps & need) == need;
}

/* A new domain: a PD on the device id resolved to. */
static int dom_new(struct verbs_ep *v, struct ibv_context *ctx, const char *dev)
{
	struct verbs_dom *d = calloc(1, sizeof(*d));

	if (!d)
		return rmig_set_error(&v->base, -ENOMEM, "out of memory for a domain");
	d->base.ops = &rmig_verbs_ops;
	d->ctx = ctx;
	pthread_mutex_init(&d->lock, NULL);
	d->odp = verbs_has_odp(ctx);
	d->pd = ibv_alloc_pd(ctx);
	if (!d->pd) {
		int rc = errno ? -errno : -ENOMEM;
		verbs_dom_free(&d->base);
		return rmig_set_error(&v->base, rc, "cannot allocate a protection domain on %s",
				      dev);
	}
	v->dom = d;
	v->own_dom = 1;
	return 0;
}

int verbs_qp_setup(struct verbs_ep *v, struct rdma_cm_id *id, struct verbs_dom *dom)
{
	struct ibv_device_attr da;
	struct ibv_qp_init_attr qa;
	const char *dev = ibv_get_device_name(id->verbs->device);
	unsigned cqe;
	int rc;

	rc = ibv_query_device(id->verbs, &da); /* positive errno */
	if (rc)
		return rmig_set_error(&v->base, -rc, "cannot query RDMA device %s: %s", dev,
				      strerror(rc));
	if (dom && dom->ctx != id->verbs)
		return rmig_set_error(&v->base, -EXDEV,
				      "the connection is on RDMA device %s, the shared domain on %s: give every channel an address on the same device",
				      dev, ibv_get_device_name(dom->ctx->device));
	if (dom)
		v->dom = dom;
	else if ((rc = dom_new(v, id->verbs, dev)))
		return rc;
	v->pd = v->dom->pd;
	v->base.dom = &v->dom->base;
	v->cc = ibv_create_comp_channel(id->verbs);
	if (!v->cc || set_nonblock(v->cc->fd))
		return rmig_set_error(&v->base, errno ? -errno : -ENOMEM,
				      "cannot create a completion channel on %s", dev);
	v->sq_depth = umin(VERBS_SQ_WANT, (unsigned)da.max_qp_wr);
	v->rd_atom = (uint8_t)umin(VERBS_RD_ATOM_WANT,
				   umin((unsigned)da.max_qp_rd_atom, (unsigned)da.max_qp_init_rd_atom));
	/* Room for a flush completion of every entry when the QP dies. */
	cqe = umin(v->sq_depth + VERBS_NRECV + 1, (unsigned)da.max_cqe);
	v->cq = ibv_create_cq(id->verbs, (int)cqe, NULL, v->cc, 0);
	if (!v->cq)
		return rmig_set_error(&v->base, errno ? -errno : -ENOMEM,
				      "cannot create a %u-entry completion queue on %s", cqe, dev);
	memset(&qa, 0, sizeof(qa));
	qa.send_cq = v->cq;
	qa.recv_cq = v->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 0; /* writes signal only the last of a batch */
	qa.cap.max_send_wr = v->sq_depth;
	qa.cap.max_recv_wr = VERBS_NRECV;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, v->pd, &qa)) /* -1 and errno */
		return rmig_set_error(&v->base, -errno,
				      "cannot create a %u-entry RC queue pair on %s: %s",
				      v->sq_depth, dev, strerror(errno));
	v->qp_made = 1;
	v->id = id;
	return verbs_bufs_setup(v);
}

/* Connection parameters both sides use; priv is the rdmamig hello. */
void verbs_conn_param(struct verbs_ep *v, struct rdma_conn_param *p, const void *priv,
		      uint8_t privlen)
{
	memset(p, 0, sizeof(*p));
	p->private_data = priv;
	p->private_data_len = privlen;
	/* RDMA READs both ways (post-copy); whether a region may be read is
	 * the region's access, not the connection's.  The passive side
	 * lowers these to what the request offers (verbs_accept_on). */
	p->responder_resources = v->rd_atom;
	p->initiator_depth = v->rd_atom;
	p->retry_count = 7;
	/* Receives are reposted as soon as a message is copied out: an RNR wait is short. */
	p->rnr_retry_count = 7;
}

/*
 * One step of the QP to state, with the attributes rdma_cm computes for
 * this connection and no remote access.
 */
static int qp_step(struct verbs_ep *v, struct ibv_qp *qp, enum ibv_qp_state state,
		   const struct rdma_conn_param *cp, int ib_link)
{
	struct ibv_qp_attr a;
	int mask, rc;

	memset(&a, 0, sizeof(a));
	a.qp_state = state;
	if (rdma_init_qp_attr(v->id, &a, &mask)) /* -1 and errno */
		return -errno;
	if (mask & IBV_QP_ACCESS_FLAGS)
		a.qp_access_flags = 0;
	if (state == IBV_QPS_RTR) {
		a.max_dest_rd_atomic = cp->responder_resources;
		if (ib_link) /* as librdmacm: the kernel's RoCE-only bits (21-23) off on IB */
			mask &= ~0xe00000;
	}
	if (state == IBV_QPS_RTS)
		a.max_rd_atomic = cp->initiator_depth;
	rc = ibv_modify_qp(qp, &a, mask); /* positive errno */
	return -rc;
}

/*
 * Accept the connection request on v->id with the QP moved to RTS here,
 * not by rdma_accept: rdma_cm would give it remote write (and read) access
 * at once, and the QP is in the session's protection domain, where guest
 * memory may already be registered.  Until the peer has authenticated
 * (verbs_open_access) the responder refuses every RDMA WRITE and READ
 * aimed at it, whatever rkey a stranger guesses.
 */
int verbs_accept_closed(struct verbs_ep *v, struct rdma_conn_param *cp)
{
	static const enum ibv_qp_state steps[] = { IBV_QPS_INIT, IBV_QPS_RTR, IBV_QPS_RTS };
	struct ibv_qp *qp = v->id->qp;
	struct ibv_port_attr pa;
	int ib_link = 0, rc = 0;

	if (!ibv_query_port(v->id->verbs, v->id->port_num, &pa))
		ib_link = pa.link_layer == IBV_LINK_LAYER_INFINIBAND;
	for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]) && !rc; i++)
		rc = qp_step(v, qp, steps[i], cp, ib_link);
	if (rc)
		return rmig_set_error(NULL, rc, "cannot bring the queue pair up: %s", strerror(-rc));
	v->remote_access = IBV_ACCESS_REMOTE_WRITE |
			   (cp->responder_resources ? IBV_ACCESS_REMOTE_READ : 0);
	/* Without id->qp, rdma_accept leaves the QP alone and names cp->qp_num. */
	cp->qp_num = qp->qp_num;
	cp->srq = 0;
	v->id->qp = NULL;
	rc = rdma_accept(v->id, cp) ? -errno : 0;
	v->id->qp = qp;
	if (rc)
		return rmig_set_error(NULL, rc, "cannot accept the RDMA connection: %s",
				      strerror(-rc));
	return 0;
}

/*
 * The peer authenticated: the QP takes the remote access held back.  A peer
 * that left right after authenticating may already have put the QP in the
 * error state (its DISCONNECTED seen while its last message was read), where
 * no access can be set: the endpoint is handed out dead, as accept hands out
 * one whose peer left before ESTABLISHED, and says so at its first use.
 */
int verbs_open_access(struct rmig_ep *ep)
{
	struct verbs_ep *v = VERBS(ep);
	struct ibv_qp_init_attr ia;
	struct ibv_qp_attr a;
	int rc = 0;

	if (!v->remote_access)
		return 0;
	pthread_mutex_lock(&v->lock); /* no verbs_mark_dead in between */
	if (!v->dead) {
		memset(&a, 0, sizeof(a));
		a.qp_access_flags = v->remote_access;
		rc = ibv_modify_qp(v->id->qp, &a, IBV_QP_ACCESS_FLAGS); /* positive errno */
		if (rc && !ibv_query_qp(v->id->qp, &a, IBV_QP_STATE, &ia) &&
		    a.qp_state == IBV_QPS_ERR) {
			verbs_mark_dead(v, -ECONNRESET, "connection closed by the peer");
			rc = 0;
		}
	}
	v->remote_access = 0;
	pthread_mutex_unlock(&v->lock);
	if (rc)
		return rmig_set_error(ep, -rc,
				      "cannot open the queue pair to the authenticated peer's writes: %s",
				      strerror(rc));
	return 0;
}

/* Undo verbs_qp_setup (whatever part of it was done). */
void verbs_qp_teardown(struct verbs_ep *v)
{
	if (v->qp_made) {
		rdma_destroy_qp(v->id);
		v->qp_made = 0;
	}
	if (v->rxmr)
		ibv_dereg_mr(v->rxmr);
	if (v->txmr)
		ibv_dereg_mr(v->txmr);
	rmig_memlock_release(v->bufs_pinned);
	v->rxmr = v->txmr = NULL;
	v->bufs_pinned = 0;
	if (v->cq)
		ibv_destroy_cq(v->cq);
	if (v->cc)
		ibv_destroy_comp_channel(v->cc);
	/* The PD is the domain's: it goes with the domain's last endpoint. */
	v->pd = NULL;
	v->cq = NULL;
	v->cc = NULL;
	v->pd = NULL;
	free(v->rxbuf);
	free(v->txbuf);
	v->rxbuf = v->txbuf = NULL;
}

void verbs_ep_free(struct verbs_ep *v)
{
	while (v->msgs) {
		struct verbs_msg *m = v->msgs;
		v->msgs = m->next;
		free(m);
	}
	pthread_mutex_destroy(&v->lock);
	free(v);
}
