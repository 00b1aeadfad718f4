/* SPDX-License-Identifier: MIT */
/*
 * rdmamig: the caller's API.  The transport part is what the session engine,
 * the CLI and the tests use to move bytes; backends implement it through
 * <rdmamig/transport.h>.
 *
 * Model: a connected endpoint (struct rmig_ep) between two processes.
 * Memory is registered on an endpoint; the peer learns a region through its
 * key descriptor (struct rmig_rkey, fixed size, encodable on the wire) and
 * then writes into it one-sidedly.  Small control messages travel with
 * rmig_send/rmig_recv.
 *
 * Ordering guarantee (every backend): a control message sent after a write
 * was posted is delivered to the peer only once that write's data is visible
 * in the peer's memory.  The migration engine relies on it: "round done" is a
 * control message that follows the round's writes.
 *
 * Errors: every function returns 0 (or a count) on success and a negative
 * errno on failure.  A one-phrase reason is kept on the endpoint
 * (rmig_ep_error) and, for the calling thread, in rmig_last_error().
 */
#ifndef RDMAMIG_RDMAMIG_H
#define RDMAMIG_RDMAMIG_H

#include <rdmamig/export.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest control message rmig_send accepts and rmig_recv delivers. */
#define RMIG_MSG_MAX (64u * 1024u)
/* Longest error phrase kept, including the NUL. */
#define RMIG_ERR_MAX 256
/* Default deadline for connect, accept, send and completions (ms). */
#define RMIG_DEFAULT_TIMEOUT_MS 10000
/* Most writes one rmig_write_batch call may carry. */
#define RMIG_BATCH_MAX 256
/* Most batches posted and not yet reaped by rmig_poll; more: -EAGAIN. */
#define RMIG_OUTSTANDING_MAX 64

/* Access a registered region grants. */
enum rmig_access {
	RMIG_ACCESS_LOCAL = 0,        /* only read locally (source of writes) */
	RMIG_ACCESS_REMOTE_WRITE = 1, /* the peer may write into it */
	RMIG_ACCESS_REMOTE_READ = 2,  /* the peer may read it (post-copy) */
	/* Local only: rmig_read may place data in it (a read's destination).
	 * Never on the wire (rkey flags carry the REMOTE_* bits alone); verbs
	 * pins such a region writable, which breaks copy-on-write sharing. */
	RMIG_ACCESS_LOCAL_WRITE = 4,
};

/* Capability bits of a backend (struct rmig_transport_ops.caps). */
enum rmig_cap {
	RMIG_CAP_WRITE = 1u << 0,      /* one-sided write wired */
	RMIG_CAP_ZERO_COPY = 1u << 1,  /* no bounce buffer on the write path */
	RMIG_CAP_CROSS_HOST = 1u << 2, /* peers may be on different hosts */
	RMIG_CAP_DOMAIN = 1u << 3,     /* endpoints may share a domain (rmig_ep_domain) */
	RMIG_CAP_READ = 1u << 4,       /* one-sided read wired (rmig_read_batch) */
};

/*
 * What the peer needs to write into a region.  Fixed size on the wire
 * (RMIG_RKEY_WIRE_SIZE bytes, little-endian, see rmig_rkey_encode).
 */
struct rmig_rkey {
	uint64_t addr; /* remote address of offset 0 (0 if the backend addresses by offset) */
	uint64_t len;  /* length of the region in bytes */
	uint64_t key;  /* rkey, fi_mr_key or the tcp region's secret */
	uint32_t id;   /* tcp: region id; otherwise 0 */
	uint32_t flags;/* RMIG_ACCESS_* granted */
};
#define RMIG_RKEY_WIRE_SIZE 32

RMIG_EXPORT void rmig_rkey_encode(const struct rmig_rkey *k, uint8_t out[RMIG_RKEY_WIRE_SIZE]);
RMIG_EXPORT int rmig_rkey_decode(const uint8_t in[RMIG_RKEY_WIRE_SIZE], struct rmig_rkey *k);

struct rmig_ep;
struct rmig_mr;
struct rmig_domain;

/* One write: len bytes from a local region at loff into the peer's region at roff. */
struct rmig_write {
	const struct rmig_mr *lmr;
	uint64_t loff;
	const struct rmig_rkey *rkey;
	uint64_t roff;
	uint64_t len;
};

/*
 * One read: len bytes of the peer's region at roff into a local region at
 * loff.  The local region is registered with RMIG_ACCESS_LOCAL_WRITE; the
 * peer's key grants RMIG_ACCESS_REMOTE_READ.
 */
struct rmig_read {
	const struct rmig_mr *lmr;
	uint64_t loff;
	const struct rmig_rkey *rkey;
	uint64_t roff;
	uint64_t len;
};

/* One finished batch. */
struct rmig_completion {
	uint64_t wr_id; /* as given to rmig_write_batch */
	int status;     /* 0 or -errno */
};

/*
 * Options for listen and connect.  Zero-initialise, set size = sizeof.
 *
 * Peer authentication: every connection runs a mutual HMAC-SHA256
 * challenge-response on the pre-shared key psk before rmig_connect or
 * rmig_accept returns it (docs/security.md).  Without a key, listen and
 * connect refuse unless flags has RMIG_EP_INSECURE (no authentication: any
 * peer that reaches the address may connect).
 */
struct rmig_ep_opts {
	size_t size;
	int timeout_ms;       /* 0: RMIG_DEFAULT_TIMEOUT_MS */
	const char *provider; /* ofi: libfabric provider ("tcp", "shm", "verbs"...); NULL: default */
	const char *device;   /* verbs: RDMA device name; NULL: any */
	const void *psk;      /* pre-shared key, RMIG_PSK_MIN..RMIG_PSK_MAX bytes (copied) */
	size_t psk_len;
	unsigned flags;       /* RMIG_EP_* */
	/* Appended (size-first struct).  connect: make the endpoint on this
	 * domain (rmig_ep_domain of an endpoint of the same backend) so the
	 * regions registered on it are valid here too; NULL: a new domain. */
	struct rmig_domain *domain;
};

/* Connect or accept peers without authentication (no psk). */
#define RMIG_EP_INSECURE (1u << 0)
/* Shortest and longest pre-shared key accepted (bytes). */
#define RMIG_PSK_MIN 16
#define RMIG_PSK_MAX 1024

/* Library version, "MAJOR.MINOR.PATCH". */
RMIG_EXPORT const char *rmig_version(void);

#ifndef RMIG_LOG_FN_DEFINED
#define RMIG_LOG_FN_DEFINED
/* Log levels of rmig_log_fn. */
enum rmig_log_level {
	RMIG_LOG_ERROR = 0,
	RMIG_LOG_WARN = 1,
	RMIG_LOG_INFO = 2,
	RMIG_LOG_DEBUG = 3, /* state transitions */
};
/* The library never prints: what it has to say goes to the host's
 * callback (msg without a trailing newline), from any library thread. */
typedef void (*rmig_log_fn)(void *opaque, int level, const char *msg);
#endif
/* Process-wide; NULL fn: messages are dropped (the default). */
RMIG_EXPORT void rmig_set_log(rmig_log_fn fn, void *opaque);

/*
 * Raise RLIMIT_MEMLOCK so that bytes can be pinned: the host's explicit
 * decision (the library never raises a limit by itself; a registration
 * beyond the limit fails naming the shortfall).  Tries unlimited, then the
 * hard limit; UINT64_MAX: as far as allowed (unlimited, else the hard
 * limit).  0, or -EPERM and a phrase naming the hard limit and the fix.
 */
RMIG_EXPORT int rmig_memlock_raise(uint64_t bytes);

/* --- the transport ------------------------------------------------------ */

/*
 * backend spec: "tcp", "ofi", "ofi/tcp", "ofi/shm", "verbs", or "auto"/NULL
 * for the best available (verbs if an RDMA device is up, else ofi, else tcp).
 * addr: "host:port"; port 0 when listening picks a free port (see
 * rmig_local_addr).
 */
RMIG_EXPORT int rmig_listen(const char *backend, const char *addr,
		const struct rmig_ep_opts *opts, struct rmig_ep **listener);
RMIG_EXPORT int rmig_accept(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep);
RMIG_EXPORT int rmig_connect(const char *backend, const char *addr,
		 const struct rmig_ep_opts *opts, struct rmig_ep **ep);
/*
 * Domains: one registration for many connections.  Every endpoint of a
 * backend with RMIG_CAP_DOMAIN is made on a domain: a new one, or the one
 * given (opts.domain to connect, dom to rmig_accept_on).  A region
 * registered on any endpoint of a domain is valid on all of them (local
 * handle and key), and stays registered until rmig_dereg_mr or until the
 * last endpoint of the domain is closed.  The domain lives as long as one
 * of its endpoints does; the caller holds no reference of its own.
 * rmig_ep_domain: NULL if the backend has no shared domains.  Making an
 * endpoint on a domain fails with -EOPNOTSUPP on such a backend, -EINVAL
 * for another backend's domain, -EXDEV when the connection lands on another
 * device than the domain's (verbs).
 */
RMIG_EXPORT struct rmig_domain *rmig_ep_domain(const struct rmig_ep *ep);
RMIG_EXPORT int rmig_accept_on(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
			       struct rmig_ep **ep);
/* Registrations made on a domain so far, and the bytes registered now. */
RMIG_EXPORT uint64_t rmig_domain_regs(const struct rmig_domain *dom);
RMIG_EXPORT uint64_t rmig_domain_pinned(const struct rmig_domain *dom);
/* "host:port" the endpoint is bound to (a listener's real port). */
RMIG_EXPORT int rmig_local_addr(struct rmig_ep *ep, char *buf, size_t len);

RMIG_EXPORT int rmig_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		struct rmig_mr **mr);
RMIG_EXPORT int rmig_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr);
RMIG_EXPORT const struct rmig_rkey *rmig_mr_rkey(const struct rmig_mr *mr);
/**
 * Memory regions registered right now by this process, over every endpoint
 * and backend (rmig_reg_mr minus rmig_dereg_mr): a leak check.
 */
RMIG_EXPORT long rmig_mr_live(void);

/*
 * Post n (1..RMIG_BATCH_MAX) writes.  One completion carrying wr_id is
 * reported by rmig_poll once all of them are done (local buffers reusable,
 * data placed at the peer).  Each write is bounds-checked against both
 * regions first: -ERANGE and nothing posted if any is out of bounds.
 */
RMIG_EXPORT int rmig_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id);
/* Poll for up to max completions; waits up to timeout_ms for the first. 
 * Returns the count (0 on timeout) or -errno (peer gone, link down). */
RMIG_EXPORT int rmig_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
	      int timeout_ms);
/* Post one write and wait for it: convenience for tests and setup. */
RMIG_EXPORT int rmig_write_sync(struct rmig_ep *ep, const struct rmig_mr *lmr, uint64_t loff,
		    const struct rmig_rkey *rkey, uint64_t roff, uint64_t len);

/*
 * Post n (1..RMIG_BATCH_MAX) one-sided reads: the peer's software takes no
 * part (verbs RDMA READ, libfabric fi_read; tcp: the peer's receiver thread
 * answers from its region table, checking key, access and bounds as for a
 * write).  One completion carrying wr_id is reported by rmig_poll once
 * every byte is in the local regions; batches of reads and of writes share
 * the RMIG_OUTSTANDING_MAX limit.  Checked first, nothing posted on failure:
 * -ERANGE if a read is out of bounds of either region, -EACCES if the key
 * lacks REMOTE_READ or the local region LOCAL_WRITE, -EOPNOTSUPP where the
 * backend has no RMIG_CAP_READ.  A read the peer refuses (unknown key, no
 * REMOTE_READ, out of its region) fails its batch and ends the endpoint.
 * No order is promised between a read and operations posted after it:
 * wait for its completion.  The local region stays registered until then.
 */
RMIG_EXPORT int rmig_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		    uint64_t wr_id);
/* Post one read and wait for it. */
RMIG_EXPORT int rmig_read_sync(struct rmig_ep *ep, const struct rmig_mr *lmr, uint64_t loff,
		   const struct rmig_rkey *rkey, uint64_t roff, uint64_t len);

/* Control messages of at most RMIG_MSG_MAX bytes. */
RMIG_EXPORT int rmig_send(struct rmig_ep *ep, const void *buf, size_t len);
/* Returns the message length, -ETIMEDOUT, -EMSGSIZE (cap too small) or -errno. */
RMIG_EXPORT int rmig_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms);

RMIG_EXPORT void rmig_close(struct rmig_ep *ep);

RMIG_EXPORT const char *rmig_ep_error(const struct rmig_ep *ep);
RMIG_EXPORT const char *rmig_ep_backend(const struct rmig_ep *ep);
/* The reason for the calling thread's last failure. */
RMIG_EXPORT const char *rmig_last_error(void);

/* Compiled backends, in order of preference. */
RMIG_EXPORT int rmig_backend_count(void);
RMIG_EXPORT const char *rmig_backend_name(int i);
/* 0 if the backend (spec as above) can run here, else -errno and why. */
RMIG_EXPORT int rmig_backend_probe(const char *backend, char *why, size_t whylen);
/*
 * Every spec the compiled backends answer to, i = 0, 1, ... until NULL, in
 * order of preference ("verbs", "ofi/verbs", "ofi/tcp", "ofi/shm", "tcp"):
 * the list to probe, test or benchmark.  A spec listed may still not run
 * here (rmig_backend_probe says why).
 */
RMIG_EXPORT const char *rmig_backend_spec(int i);
/* The spec "auto" resolves to on this machine ("verbs", "ofi", "tcp"). */
RMIG_EXPORT const char *rmig_backend_best(void);

#ifdef __cplusplus
}
#endif
#endif
