/* SPDX-License-Identifier: MIT */
/*
 * The verbs backend's private objects, shared by its files:
 *   verbs.c     ops table, probe, listen/accept/connect, close (librdmacm)
 *   verbs_qp.c  per-connection resources: PD, CQ, QP, message buffers
 *   verbs_cq.c  completion dispatch, waiting with deadlines, write/send/recv
 *   verbs_mr.c  memory registration with the least access
 */
#ifndef RMIG_VERBS_INT_H
#define RMIG_VERBS_INT_H

#include <rdmamig/transport.h>

#include <infiniband/verbs.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdint.h>

/* Pre-posted receive buffers of RMIG_MSG_MAX bytes, and send buffers. */
#define VERBS_NRECV 8
#define VERBS_NSEND 8
/*
 * Send-queue entries.  Every write of every outstanding batch would be
 * RMIG_OUTSTANDING_MAX * RMIG_BATCH_MAX = 16384 entries: megabytes of queue
 * per connection that take long to set up (Soft-RoCE zeroes them), for a
 * depth no NIC needs to stay busy.  A batch that does not fit waits for
 * room (verbs_write_batch), within the endpoint's deadline.
 */
#define VERBS_SQ_WANT (2048 + VERBS_NSEND)

/* What a work completion belongs to: wr_id = tag << 32 | slot. */
enum verbs_tag {
	VERBS_TAG_WRITE = 1, /* slot: index in batch[] (writes or reads) */
	VERBS_TAG_SEND = 2,  /* slot: send buffer */
	VERBS_TAG_RECV = 3,  /* slot: receive buffer */
};
#define VERBS_WRID(tag, slot) (((uint64_t)(tag) << 32) | (uint32_t)(slot))

struct verbs_msg {
	struct verbs_msg *next;
	size_t len;
	uint8_t data[];
};

/* One posted batch of writes, until its completion is queued. */
struct verbs_batch {
	uint64_t wr_id; /* the caller's */
	unsigned nwr;   /* send-queue entries it holds */
	int busy;
	int read;       /* RDMA READs, not WRITEs (for the error phrase) */
};

/* RDMA READs in flight per QP, each way (initiator depth, responder resources). */
#define VERBS_RD_ATOM_WANT 16

struct verbs_region {
	struct rmig_mr base;
	struct ibv_mr *mr;
	int odp;    /* registered on demand: nothing pinned, no memlock counted */
	struct verbs_region *next, *prev;
};

/*
 * The protection domain endpoints share: one PD on one device context
 * (librdmacm opens each device once per process, so every cm id on the
 * device has the same context).  lock guards regions.
 */
/* The connection request's private data: an rdmamig verbs endpoint, wire v1. */
#define VERBS_HELLO "RMIGVRB1"
#define VERBS_HELLO_LEN 8

struct verbs_dom {
	struct rmig_domain base;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	/* The device pages RC writes in on demand (ibv_query_device_ex
	 * odp_caps): guest RAM is registered IBV_ACCESS_ON_DEMAND, unpinned. */
	int odp;
	pthread_mutex_t lock;
	struct verbs_region *regions; /* still registered, freed with the domain */
};
#define VERBS_DOM(d) ((struct verbs_dom *)(d))

struct verbs_ep {
	struct rmig_ep base;
	struct rdma_event_channel *ech; /* this endpoint's own, non-blocking */
	struct rdma_cm_id *id;
	struct verbs_dom *dom; /* base.dom once the QP is made on it */
	int own_dom;           /* made by this endpoint's setup: freed on a failed open */
	struct ibv_pd *pd;     /* dom->pd */
	struct ibv_comp_channel *cc; /* non-blocking */
	struct ibv_cq *cq;           /* sends, writes and receives */
	int qp_made;
	/* Remote access the QP gets once the peer authenticated (0: none held back). */
	unsigned remote_access;
	unsigned sq_depth;
	uint8_t rd_atom;  /* reads in flight we issue / serve (device-capped) */
	uint8_t *rxbuf, *txbuf; /* VERBS_NRECV / VERBS_NSEND x RMIG_MSG_MAX */
	struct ibv_mr *rxmr, *txmr;
	size_t bufs_pinned;

	/*
	 * lock guards everything below; it is held while the CQ is polled and
	 * work is posted, never while a thread sleeps in poll().
	 */
	pthread_mutex_t lock;
	struct verbs_batch batch[RMIG_OUTSTANDING_MAX];
	unsigned nbusy;      /* batches posted, completion not yet queued */
	struct rmig_completion done[RMIG_OUTSTANDING_MAX];
	unsigned done_head, done_count; /* completions queued for rmig_poll */
	unsigned sq_used;    /* send-queue entries posted, not yet completed */
	int tx_busy[VERBS_NSEND];
	unsigned tx_nbusy;
	struct verbs_msg *msgs, **msgs_tail;
	int dead;
	int dead_err;
	char dead_why[RMIG_ERR_MAX];
};

#define VERBS(ep) ((struct verbs_ep *)(ep))

extern const struct rmig_transport_ops rmig_verbs_ops;

/* verbs_qp.c */
struct verbs_ep *verbs_ep_new(void);
/* Accept on a QP that takes no remote access until verbs_open_access(). */
int verbs_accept_closed(struct verbs_ep *v, struct rdma_conn_param *cp);
int verbs_open_access(struct rmig_ep *ep);
/* dom: the domain to make the QP on (NULL: a new one on id's device). */
int verbs_qp_setup(struct verbs_ep *v, struct rdma_cm_id *id, struct verbs_dom *dom);
void verbs_qp_teardown(struct verbs_ep *v);
void verbs_ep_free(struct verbs_ep *v);
void verbs_conn_param(struct verbs_ep *v, struct rdma_conn_param *p,
		      const void *priv, uint8_t privlen);

/* verbs_cq.c */
void verbs_mark_dead(struct verbs_ep *v, int err, const char *why);
int verbs_dead_error(struct verbs_ep *v);
int verbs_post_recv(struct verbs_ep *v, unsigned slot);
int verbs_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		      uint64_t wr_id);
int verbs_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		     uint64_t wr_id);
int verbs_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
	       int timeout_ms);
int verbs_send(struct rmig_ep *ep, const void *buf, size_t len);
int verbs_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms);
void verbs_drain(struct verbs_ep *v, int timeout_ms);

/* verbs_mr.c */
int verbs_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		 struct rmig_mr **mr);
int verbs_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr);
void verbs_dom_free(struct rmig_domain *dom);
int verbs_reg_buf(struct verbs_ep *v, void *addr, size_t len, int access,
		  struct ibv_mr **mr);

/* verbs.c */
void verbs_cm_drain(struct verbs_ep *v);

#endif
