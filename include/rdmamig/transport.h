/* SPDX-License-Identifier: MIT */
/*
 * For backend authors: the endpoint and region headers every backend object
 * starts with, and the ops table.  Callers use <rdmamig/rdmamig.h>.
 */
#ifndef RDMAMIG_TRANSPORT_H
#define RDMAMIG_TRANSPORT_H

#include <rdmamig/rdmamig.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- writing a backend -------------------------------------------------- */

/*
 * Every endpoint a backend returns starts with this.  The backend owns the
 * rest of its object.  err is written only by the thread that drives the
 * endpoint (the caller), never by a backend's helper thread.
 */
struct rmig_ep {
	const struct rmig_transport_ops *ops;
	int timeout_ms;
	int listener; /* 1 for an endpoint made by listen */
	char err[RMIG_ERR_MAX];
	/* Generic layer only: a listener's key for authenticating accepted peers. */
	struct rmig_auth_key *auth;
	/* The domain the backend made the endpoint on (RMIG_CAP_DOMAIN), else
	 * NULL.  Set by the backend before it returns the endpoint; the
	 * generic layer counts the reference and drops it on close. */
	struct rmig_domain *dom;
};

/*
 * A protection domain shared by endpoints (verbs: a PD on one device;
 * libfabric: a fabric domain; tcp: a region table).  A region registered
 * on any endpoint of a domain is valid on every endpoint of it: its local
 * handle may be used in writes on any of them, its key reaches it through
 * any of them.  Every backend object starts with this.  refs counts the
 * endpoints made on it (atomic, generic layer); at 0 the generic layer
 * calls the backend's domain_free, which releases whatever regions are
 * still registered on it.
 */
struct rmig_domain {
	const struct rmig_transport_ops *ops;
	unsigned long refs;
	uint64_t regs;   /* registrations made on it (atomic) */
	uint64_t pinned; /* bytes registered on it right now (atomic) */
};

/* Every region a backend returns starts with this. */
struct rmig_mr {
	struct rmig_ep *ep;
	void *addr;
	size_t len;
	unsigned access;
	struct rmig_rkey rkey;
	struct rmig_domain *dom; /* the domain it is registered on (NULL: ep's alone) */
};

#define RMIG_TRANSPORT_OPS_VERSION 2

/*
 * One const table per backend, designated initializers, size first.  The
 * registry answers -EOPNOTSUPP for any op left NULL.  The generic layer has
 * already bounds-checked writes and message sizes before calling in.
 *
 * Authentication is the generic layer's: once accept or connect returns an
 * endpoint, it exchanges a few control messages with send/recv before the
 * caller sees the endpoint.  A backend must therefore carry messages as soon
 * as its endpoint exists, and must keep every endpoint's regions out of
 * reach of any other connection (keys scoped to the endpoint, or random).
 */
struct rmig_transport_ops {
	size_t size; /* sizeof(struct rmig_transport_ops) at build time */
	const char *name;
	unsigned caps;
	int (*probe)(const struct rmig_ep_opts *opts, char *why, size_t whylen);
	int (*listen)(const struct rmig_ep_opts *opts, const char *addr,
		      struct rmig_ep **listener);
	int (*accept)(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep);
	int (*connect)(const struct rmig_ep_opts *opts, const char *addr,
		       struct rmig_ep **ep);
	int (*local_addr)(struct rmig_ep *ep, char *buf, size_t len);
	int (*reg_mr)(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		      struct rmig_mr **mr);
	int (*dereg_mr)(struct rmig_ep *ep, struct rmig_mr *mr);
	int (*write_batch)(struct rmig_ep *ep, const struct rmig_write *w,
			   unsigned n, uint64_t wr_id);
	int (*poll)(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
		    int timeout_ms);
	int (*send)(struct rmig_ep *ep, const void *buf, size_t len);
	int (*recv)(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms);
	void (*close)(struct rmig_ep *ep);
	/*
	 * Shared domains (caps has RMIG_CAP_DOMAIN).  connect makes its
	 * endpoint on opts->domain when set; accept_on is accept on a given
	 * domain (NULL: a new one).  domain_free releases a domain no endpoint
	 * uses any more.  NULL: the registry answers -EOPNOTSUPP.
	 */
	int (*accept_on)(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
			 struct rmig_ep **ep);
	void (*domain_free)(struct rmig_domain *dom);
	/*
	 * The peer has just authenticated on ep: grant it what the backend held
	 * back until then (verbs: remote access on an accepted queue pair).
	 * NULL: nothing is held back.
	 */
	int (*authenticated)(struct rmig_ep *ep);
	/*
	 * The specs this backend answers to besides its name, NULL-terminated,
	 * in order of preference (ofi: one per provider it drives, "ofi/tcp").
	 * NULL: only the name.  rmig_backend_spec lists them: tests, benches
	 * and scripts take the list of backends from there.
	 */
	const char *const *specs;
	/*
	 * One-sided reads (caps has RMIG_CAP_READ; ops version 2).  Checked
	 * by the generic layer like writes; completes through poll, in the
	 * same RMIG_OUTSTANDING_MAX budget.  The backend makes the peer's side
	 * refuse a region registered without RMIG_ACCESS_REMOTE_READ.
	 */
	int (*read_batch)(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
			  uint64_t wr_id);
};

/* Set the endpoint's (may be NULL) and the thread's error phrase; returns err. */
int rmig_set_error(struct rmig_ep *ep, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Raise RLIMIT_MEMLOCK so len more bytes can be pinned.  On failure the
 * phrase names the limit, the size asked and the fix; returns -ENOMEM.
 */
int rmig_memlock_reserve(struct rmig_ep *ep, size_t len);
/* Give back what rmig_memlock_reserve counted, on deregistration. */
void rmig_memlock_release(size_t len);

#ifdef __cplusplus
}
#endif
#endif
