/* SPDX-License-Identifier: MIT */
/*
 * The ofi backend's private objects, shared by its files:
 *   ofi.c         the ops table, listen/accept/connect and the bootstrap
 *   ofi_fabric.c  provider choice (fi_getinfo), opening and closing the
 *                 fabric/domain/av/cq/ep of one endpoint, probe
 *   ofi_mr.c      memory registration
 *   ofi_cq.c      progress: the CQ, the liveness socket, the progress
 *                 thread, and the data path (write_batch, poll, send, recv)
 */
#ifndef RMIG_OFI_H
#define RMIG_OFI_H

#include "ofi_wire.h"
#include <rdmamig/transport.h>

#include <pthread.h>
#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

/* Pre-posted receive buffers (RMIG_MSG_MAX each) and send buffers. */
#define OFI_NRX 8
#define OFI_NTX 4
#define OFI_BUFS_LEN ((size_t)(OFI_NRX + OFI_NTX) * RMIG_MSG_MAX)

enum ofi_ctx_kind {
	OFI_CTX_RMA = 1, /* a write or a read of a batch */
	OFI_CTX_SEND,
	OFI_CTX_RECV,
};

/*
 * What a completion's op_context points at.  Every posted op carries one;
 * the kind says which table idx indexes.
 */
struct ofi_ctx {
	enum ofi_ctx_kind kind;
	unsigned idx;
};

/* A posted batch: a slot in ofi_ep.batches. */
struct ofi_batch {
	struct ofi_ctx ctx;
	int used;
	uint64_t wr_id;
	unsigned pending; /* ops posted and not yet completed */
	int status;       /* first error of any op, or 0 */
	int posting;      /* write_batch is still posting ops into it */
	int orphan;       /* write_batch failed: its caller expects no completion */
	int read;         /* a batch of reads (for the error phrase) */
};

struct ofi_region {
	struct rmig_mr base;
	struct fid_mr *mr;
	void *desc;       /* fi_mr_desc, passed with local buffers (FI_MR_LOCAL) */
	size_t pinned;    /* bytes counted by rmig_memlock_reserve */
	struct ofi_region *next;
};

/*
 * The fabric and domain endpoints share.  Shareable only when the provider
 * granted FI_THREAD_SAFE (endpoints of one domain are driven by different
 * threads, each under its own ofi_ep.lock) and regions need no binding to
 * one endpoint (no FI_MR_ENDPOINT); otherwise it is the endpoint's alone
 * and base.dom stays unset.  lock guards regions.
 */
struct ofi_dom {
	struct rmig_domain base;
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	int shareable;
	pthread_mutex_t lock;
	struct ofi_region *regions; /* still registered, closed with the domain */
};
#define OFI_DOM(d) ((struct ofi_dom *)(d))

/* A received control message waiting for rmig_recv. */
struct ofi_msg {
	struct ofi_msg *next;
	size_t len;
	uint8_t data[];
};

struct ofi_slot {
	struct ofi_ctx ctx;
	int busy;   /* send: posted, not completed; recv: posted, not filled */
	size_t len; /* recv: bytes received once filled */
};

/* What the provider grants, fixed once the domain is open. */
struct ofi_prov {
	char name[OFI_PROV_MAX];   /* fabric_attr->prov_name */
	uint64_t mr_mode;
	size_t max_msg;            /* ep_attr->max_msg_size */
	size_t key_size;           /* domain_attr->mr_key_size */
	int ordered;               /* FI_ORDER_SAW granted on tx and rx */
	int waw;                   /* FI_ORDER_WAW granted on tx and rx */
	int delivery_complete;     /* FI_DELIVERY_COMPLETE granted */
	int pins;                  /* registration pins pages (verbs, efa) */
};

struct ofi_ep {
	struct rmig_ep base;
	int sock;  /* listener: listening socket; else the bootstrap/liveness socket */
	char provider[OFI_PROV_MAX]; /* listener: the provider asked for (may be "") */

	struct fi_info *info;      /* this endpoint's copy */
	struct ofi_dom *dom;
	int dom_owned;             /* ours to free: unshareable, or a failed open */
	struct fid_fabric *fabric; /* dom's */
	struct fid_domain *domain; /* dom's */
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t peer;
	char peer_name[OFI_ADDR_MAX]; /* the peer's fabric address, from its hello */
	size_t peer_namelen;
	char self_name[OFI_ADDR_MAX]; /* this endpoint's, as sent in its hello */
	size_t self_namelen;
	/* ofi_shm.c's process-wide lists of shm endpoints (open, or parked:
	 * closed by the caller, its libfabric objects kept until its peer in
	 * this process closes); guarded by ofi_shm.c's lock. */
	int shm_listed;
	struct ofi_ep *shm_next;
	struct ofi_prov prov;
	int wait_fd;  /* the CQ's wait fd (FI_WAIT_FD), or -1: sleep-poll */
	struct fid_cntr *wcntr; /* writes into this end (FI_RMA_EVENT), or NULL */

	/*
	 * lock serializes every libfabric call on this endpoint (the domain
	 * is opened FI_THREAD_DOMAIN) and guards everything below.
	 */
	pthread_mutex_t lock;
	uint8_t *bufs;          /* OFI_NRX receive then OFI_NTX send buffers */
	struct fid_mr *bufs_mr;
	void *bufs_desc;
	struct ofi_slot rx[OFI_NRX];
	unsigned rx_head;       /* next buffer in posting order = next message */
	struct ofi_msg *msgs, **msgs_tail; /* received, in order, not yet taken */
	struct ofi_slot tx[OFI_NTX];
	struct ofi_batch batches[RMIG_OUTSTANDING_MAX];
	struct rmig_completion done[RMIG_OUTSTANDING_MAX]; /* ring, in finishing order */
	unsigned done_head, done_count;
	unsigned outstanding;   /* batches posted and not yet reaped by poll */
	unsigned long rma_inflight; /* write and read ops not yet completed */
	uint64_t rma_moved_ms;   /* last write/read completion, or first post when idle */
	uint64_t writes_seen;   /* wcntr's value at the last progress */
	/* base.timeout_ms as it was when the progress thread started: what
	 * check_stall reads (the generic layer writes base.timeout_ms again
	 * after connect/accept return, while the thread already runs). */
	int stall_ms;
	int dead;
	int dead_err;
	char dead_why[RMIG_ERR_MAX];
	char batch_why[RMIG_ERR_MAX]; /* phrase of the last failed write */

	/* The progress thread; stop is written under lock. */
	pthread_t thread;
	int thread_started;
	int stop;
};

#define OFI(ep) ((struct ofi_ep *)(ep))

extern const struct rmig_transport_ops rmig_ofi_ops;

/* ofi_shm.c: remove the shm region of a peer that died (on close). */
void ofi_shm_reap_peer(struct ofi_ep *o);
/* An shm endpoint is open (after its handshake): list it. */
void ofi_shm_track(struct ofi_ep *o);
/* On close, progress stopped: 1 if o is parked (its peer is an open
 * endpoint of this process; ofi_shm_release frees it later), else 0. */
int ofi_shm_park(struct ofi_ep *o);
/* o's libfabric objects are closed: free the parked endpoints whose peer
 * o was. */
void ofi_shm_release(struct ofi_ep *o);
/* ofi.c: everything an endpoint holds (ofi_shm_release frees parked ones). */
void ofi_ep_free(struct ofi_ep *o);
/* fi_enable said EBUSY: remove a stale region under our own name; 1 if done. */
int ofi_shm_clear_stale_self(struct ofi_ep *o);

/* ofi_fabric.c */
int ofi_getinfo(const char *provider, const char *node, struct fi_info **info,
		char *why, size_t whylen);
/* On shared (its fabric and domain), or a new domain when NULL. */
int ofi_open(struct ofi_ep *o, const char *provider, const char *node, struct ofi_dom *shared);
void ofi_dom_free(struct rmig_domain *dom);
void ofi_close_fabric(struct ofi_ep *o);
int ofi_probe(const struct rmig_ep_opts *opts, char *why, size_t whylen);
int ofi_has_wait_fd(const char *provider);

/* ofi_mr.c */
int ofi_reg(struct ofi_ep *o, void *addr, size_t len, uint64_t access,
	    struct fid_mr **mr, void **desc, uint64_t *key);
int ofi_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
	       struct rmig_mr **mr);
int ofi_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr);

/* ofi_cq.c */
void ofi_mark_dead(struct ofi_ep *o, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int ofi_post_recv(struct ofi_ep *o, unsigned i);
int ofi_start_progress(struct ofi_ep *o);
void ofi_stop_progress(struct ofi_ep *o);
void ofi_drain_sends(struct ofi_ep *o, int timeout_ms);
int ofi_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		    uint64_t wr_id);
int ofi_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		   uint64_t wr_id);
int ofi_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
	     int timeout_ms);
int ofi_send(struct rmig_ep *ep, const void *buf, size_t len);
int ofi_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms);

#endif
