/* SPDX-License-Identifier: MIT */
/*
 * The transport registry and the generic layer every call goes through:
 * backend selection, -EOPNOTSUPP for ops a backend leaves out, bounds checks
 * before anything reaches a backend, error phrases.
 */
#define _GNU_SOURCE
#include "auth.h"
#include "backends.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Order of preference for "auto". */
static const struct rmig_transport_ops *const registry[] = {
#ifdef RMIG_HAVE_VERBS
	&rmig_verbs_ops,
#endif
#ifdef RMIG_HAVE_OFI
	&rmig_ofi_ops,
#endif
	&rmig_tcp_ops,
};
#define NBACKENDS ((int)(sizeof(registry) / sizeof(registry[0])))

static __thread char last_error[RMIG_ERR_MAX];

int rmig_set_error(struct rmig_ep *ep, int err, const char *fmt, ...)
{
	char buf[RMIG_ERR_MAX];
	va_list ap;

	/* Format apart: an argument may be last_error itself (passing it on). */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(last_error, buf, sizeof(last_error));
	if (ep)
		memcpy(ep->err, last_error, sizeof(ep->err));
	return err;
}

const char *rmig_last_error(void)
{
	return last_error[0] ? last_error : "no error";
}

const char *rmig_ep_error(const struct rmig_ep *ep)
{
	return ep && ep->err[0] ? ep->err : "no error";
}

const char *rmig_ep_backend(const struct rmig_ep *ep)
{
	return ep ? ep->ops->name : "none";
}

int rmig_backend_count(void)
{
	return NBACKENDS;
}

const char *rmig_backend_name(int i)
{
	return i >= 0 && i < NBACKENDS ? registry[i]->name : NULL;
}

const char *rmig_backend_spec(int i)
{
	for (int b = 0; b < NBACKENDS && i >= 0; b++) {
		const char *const *v = registry[b]->specs;

		if (!v) {
			if (!i--)
				return registry[b]->name;
			continue;
		}
		for (; *v; v++)
			if (!i--)
				return *v;
	}
	return NULL;
}

/*
 * Resolve a spec ("ofi/shm", "tcp", "auto", NULL) to a backend; the part
 * after '/' becomes opts->provider unless the caller set one.
 */
static int lookup(const char *spec, const struct rmig_ep_opts *in,
		  struct rmig_ep_opts *out, const struct rmig_transport_ops **ops)
{
	static __thread char sub[64];
	char name[32];
	const char *slash;

	memset(out, 0, sizeof(*out));
	if (in)
		memcpy(out, in, in->size && in->size < sizeof(*out) ? in->size : sizeof(*out));
	out->size = sizeof(*out);
	if (!out->timeout_ms)
		out->timeout_ms = RMIG_DEFAULT_TIMEOUT_MS;
	if (!spec || !strcmp(spec, "auto"))
		spec = rmig_backend_best();
	slash = strchr(spec, '/');
	snprintf(name, sizeof(name), "%.*s",
		 (int)(slash ? (size_t)(slash - spec) : strlen(spec)), spec);
	if (slash && !out->provider) {
		snprintf(sub, sizeof(sub), "%s", slash + 1);
		out->provider = sub;
	}
	for (int i = 0; i < NBACKENDS; i++) {
		if (!strcmp(registry[i]->name, name)) {
			*ops = registry[i];
			return 0;
		}
	}
	return rmig_set_error(NULL, -ENOENT,
			      "backend '%s' is not compiled in (rmig_backend_name lists those that are)",
			      spec);
}

int rmig_backend_probe(const char *spec, char *why, size_t whylen)
{
	const struct rmig_transport_ops *ops;
	struct rmig_ep_opts o;
	int rc = lookup(spec, NULL, &o, &ops);

	if (rc) {
		snprintf(why, whylen, "%s", rmig_last_error());
		return rc;
	}
	if (!ops->probe) {
		snprintf(why, whylen, "ok");
		return 0;
	}
	return ops->probe(&o, why, whylen);
}

const char *rmig_backend_best(void)
{
	char why[RMIG_ERR_MAX];

	for (int i = 0; i < NBACKENDS; i++) {
		struct rmig_ep_opts o = { .size = sizeof(o) };
		if (!registry[i]->probe || !registry[i]->probe(&o, why, sizeof(why)))
			return registry[i]->name;
	}
	return "tcp";
}

/* A table shorter than this build's (size first) lacks the later ops. */
#define HAS_OP(ops, op)                                                        \
	((ops)->size >= offsetof(struct rmig_transport_ops, op) + sizeof((ops)->op) && \
	 (ops)->op)

#define NEED_OP(ep, op)                                                        \
	do {                                                                   \
		if (!HAS_OP((ep)->ops, op))                                    \
			return rmig_set_error(ep, -EOPNOTSUPP,                 \
					      "%s backend does not support " #op, \
					      (ep)->ops->name);                \
	} while (0)

int rmig_listen(const char *backend, const char *addr,
		const struct rmig_ep_opts *opts, struct rmig_ep **listener)
{
	const struct rmig_transport_ops *ops;
	struct rmig_auth_key *key;
	struct rmig_ep_opts o;
	int rc = lookup(backend, opts, &o, &ops);

	if (rc)
		return rc;
	if (!ops->listen)
		return rmig_set_error(NULL, -EOPNOTSUPP, "%s backend cannot listen",
				      ops->name);
	rc = auth_key_new(&o, &key);
	if (rc)
		return rc;
	rc = ops->listen(&o, addr, listener);
	if (rc) {
		auth_key_free(key);
		return rc;
	}
	(*listener)->listener = 1;
	(*listener)->timeout_ms = o.timeout_ms;
	(*listener)->auth = key;
	return 0;
}

/* Close a connection that failed authentication; its phrase stays the thread's. */
static void close_unauthenticated(struct rmig_ep **ep, int rc)
{
	char why[RMIG_ERR_MAX];

	memcpy(why, (*ep)->err, sizeof(why));
	rmig_close(*ep);
	*ep = NULL;
	rmig_set_error(NULL, rc, "%s", why);
}

/* The peer authenticated: the backend opens what it held back. */
static int auth_granted(struct rmig_ep *ep)
{
	if (!HAS_OP(ep->ops, authenticated))
		return 0;
	return ep->ops->authenticated(ep);
}

/* A new endpoint holds a reference on its domain until it is closed. */
static void domain_hold(struct rmig_ep *ep)
{
	if (ep->dom)
		__atomic_add_fetch(&ep->dom->refs, 1, __ATOMIC_RELAXED);
}

/* Is dom usable for a new endpoint of backend ops?  0 or -errno. */
static int domain_check(struct rmig_ep *ep, const struct rmig_transport_ops *ops,
			const struct rmig_domain *dom)
{
	if (!dom)
		return 0;
	if (!(ops->caps & RMIG_CAP_DOMAIN) || !ops->domain_free)
		return rmig_set_error(ep, -EOPNOTSUPP,
				      "%s backend cannot share a domain between endpoints", ops->name);
	if (dom->ops != ops)
		return rmig_set_error(ep, -EINVAL, "the domain belongs to the %s backend, not %s",
				      dom->ops->name, ops->name);
	return 0;
}

/*
 * A connection the peer has not authenticated is closed here: the caller
 * never sees it, so nothing can be registered on it or sent over it.  The
 * listener keeps listening and keeps the reason.
 */
int rmig_accept_on(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
		   struct rmig_ep **ep)
{
	int rc;

	if (!listener || !listener->listener)
		return rmig_set_error(listener, -EINVAL, "accept needs a listening endpoint");
	if (dom) {
		NEED_OP(listener, accept_on);
		if ((rc = domain_check(listener, listener->ops, dom)))
			return rc;
		rc = listener->ops->accept_on(listener, dom, timeout_ms, ep);
	} else if (listener->ops->accept_on) {
		rc = listener->ops->accept_on(listener, NULL, timeout_ms, ep);
	} else {
		NEED_OP(listener, accept);
		rc = listener->ops->accept(listener, timeout_ms, ep);
	}
	if (!rc) {
		domain_hold(*ep);
		(*ep)->timeout_ms = listener->timeout_ms;
		rc = auth_run(*ep, listener->auth, 1, listener->timeout_ms);
		if (!rc)
			rc = auth_granted(*ep);
		if (rc)
			close_unauthenticated(ep, rc);
	}
	if (rc) /* a backend may have set only the thread's phrase: keep it on the listener too */
		rmig_set_error(listener, rc, "%s", rmig_last_error());
	return rc;
}

int rmig_accept(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep)
{
	return rmig_accept_on(listener, NULL, timeout_ms, ep);
}

struct rmig_domain *rmig_ep_domain(const struct rmig_ep *ep)
{
	return ep ? ep->dom : NULL;
}

uint64_t rmig_domain_regs(const struct rmig_domain *dom)
{
	return dom ? __atomic_load_n(&dom->regs, __ATOMIC_RELAXED) : 0;
}

uint64_t rmig_domain_pinned(const struct rmig_domain *dom)
{
	return dom ? __atomic_load_n(&dom->pinned, __ATOMIC_RELAXED) : 0;
}

int rmig_connect(const char *backend, const char *addr,
		 const struct rmig_ep_opts *opts, struct rmig_ep **ep)
{
	const struct rmig_transport_ops *ops;
	struct rmig_auth_key *key;
	struct rmig_ep_opts o;
	int rc = lookup(backend, opts, &o, &ops);

	if (rc)
		return rc;
	if (!ops->connect)
		return rmig_set_error(NULL, -EOPNOTSUPP, "%s backend cannot connect",
				      ops->name);
	if ((rc = domain_check(NULL, ops, o.domain)))
		return rc;
	rc = auth_key_new(&o, &key);
	if (rc)
		return rc;
	rc = ops->connect(&o, addr, ep);
	if (!rc) {
		domain_hold(*ep);
		(*ep)->timeout_ms = o.timeout_ms;
		rc = auth_run(*ep, key, 0, o.timeout_ms);
		if (!rc)
			rc = auth_granted(*ep);
		if (rc)
			close_unauthenticated(ep, rc);
	}
	auth_key_free(key);
	return rc;
}

int rmig_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	NEED_OP(ep, local_addr);
	return ep->ops->local_addr(ep, buf, len);
}

/* Regions registered and not yet deregistered, process-wide (rmig_mr_live). */
static long mrs_live;

long rmig_mr_live(void)
{
	return __atomic_load_n(&mrs_live, __ATOMIC_RELAXED);
}

int rmig_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		struct rmig_mr **mr)
{
	int rc;

	NEED_OP(ep, reg_mr);
	if (!addr || !len)
		return rmig_set_error(ep, -EINVAL, "cannot register an empty region");
	if (access & ~(unsigned)(RMIG_ACCESS_REMOTE_WRITE | RMIG_ACCESS_REMOTE_READ |
				 RMIG_ACCESS_LOCAL_WRITE))
		return rmig_set_error(ep, -EINVAL, "unknown access flags 0x%x", access);
	rc = ep->ops->reg_mr(ep, addr, len, access, mr);
	if (!rc) {
		/* The key tells the peer what it may do: local rights stay here. */
		(*mr)->rkey.flags &= RMIG_ACCESS_REMOTE_WRITE | RMIG_ACCESS_REMOTE_READ;
		__atomic_add_fetch(&mrs_live, 1, __ATOMIC_RELAXED);
		if (ep->dom) {
			__atomic_add_fetch(&ep->dom->regs, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&ep->dom->pinned, len, __ATOMIC_RELAXED);
		}
	}
	return rc;
}

int rmig_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	if (!mr)
		return 0;
	NEED_OP(ep, dereg_mr);
	if (mr->dom && mr->dom != ep->dom)
		return rmig_set_error(ep, -EINVAL,
				      "the region is registered on another domain than the endpoint's");
	/* The backend frees the handle whatever it returns. */
	__atomic_sub_fetch(&mrs_live, 1, __ATOMIC_RELAXED);
	if (ep->dom)
		__atomic_sub_fetch(&ep->dom->pinned, mr->len, __ATOMIC_RELAXED);
	return ep->ops->dereg_mr(ep, mr);
}

const struct rmig_rkey *rmig_mr_rkey(const struct rmig_mr *mr)
{
	return &mr->rkey;
}

/* len bytes at off fit in a region of size total (no overflow). */
static int fits(uint64_t off, uint64_t len, uint64_t total)
{
	return len <= total && off <= total - len;
}

/* One write or read of a batch: not empty, both ends within their regions. */
static int check_op(struct rmig_ep *ep, const char *op, unsigned i, const struct rmig_mr *lmr,
		    uint64_t loff, const struct rmig_rkey *rkey, uint64_t roff, uint64_t len,
		    const char *local)
{
	if (!lmr || !rkey || !len)
		return rmig_set_error(ep, -EINVAL, "%s %u of the batch is empty", op, i);
	if (!fits(loff, len, lmr->len))
		return rmig_set_error(ep, -ERANGE,
				      "%s of %llu bytes at local offset %llu is outside the %zu-byte %s region",
				      op, (unsigned long long)len, (unsigned long long)loff, lmr->len,
				      local);
	if (!fits(roff, len, rkey->len))
		return rmig_set_error(ep, -ERANGE,
				      "%s of %llu bytes at offset %llu is outside the peer's %llu-byte region",
				      op, (unsigned long long)len, (unsigned long long)roff,
				      (unsigned long long)rkey->len);
	return 0;
}

static int check_batch_size(struct rmig_ep *ep, const char *ops, unsigned n)
{
	if (!n || n > RMIG_BATCH_MAX)
		return rmig_set_error(ep, -EINVAL, "a batch holds 1 to %d %s, not %u",
				      RMIG_BATCH_MAX, ops, n);
	return 0;
}

int rmig_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id)
{
	int rc;

	NEED_OP(ep, write_batch);
	if ((rc = check_batch_size(ep, "writes", n)))
		return rc;
	for (unsigned i = 0; i < n; i++) {
		if ((rc = check_op(ep, "write", i, w[i].lmr, w[i].loff, w[i].rkey, w[i].roff,
				   w[i].len, "source")))
			return rc;
		if (!(w[i].rkey->flags & RMIG_ACCESS_REMOTE_WRITE))
			return rmig_set_error(ep, -EACCES,
					      "the peer's region does not grant remote write");
	}
	return ep->ops->write_batch(ep, w, n, wr_id);
}

int rmig_read_batch(struct rmig_ep *ep, const struct rmig_read *r, unsigned n,
		    uint64_t wr_id)
{
	int rc;

	NEED_OP(ep, read_batch);
	if ((rc = check_batch_size(ep, "reads", n)))
		return rc;
	for (unsigned i = 0; i < n; i++) {
		if ((rc = check_op(ep, "read", i, r[i].lmr, r[i].loff, r[i].rkey, r[i].roff,
				   r[i].len, "destination")))
			return rc;
		if (!(r[i].rkey->flags & RMIG_ACCESS_REMOTE_READ))
			return rmig_set_error(ep, -EACCES,
					      "the peer's region does not grant remote read (it registers with RMIG_ACCESS_REMOTE_READ)");
		if (!(r[i].lmr->access & RMIG_ACCESS_LOCAL_WRITE))
			return rmig_set_error(ep, -EACCES,
					      "a read's destination must be registered with RMIG_ACCESS_LOCAL_WRITE");
	}
	return ep->ops->read_batch(ep, r, n, wr_id);
}

int rmig_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max,
	      int timeout_ms)
{
	NEED_OP(ep, poll);
	if (!max)
		return 0;
	return ep->ops->poll(ep, c, max, timeout_ms);
}

int rmig_write_sync(struct rmig_ep *ep, const struct rmig_mr *lmr, uint64_t loff,
		    const struct rmig_rkey *rkey, uint64_t roff, uint64_t len)
{
	static const uint64_t sync_id = 0x53594e43ull; /* "SYNC" */
	struct rmig_write w = { .lmr = lmr, .loff = loff, .rkey = rkey,
				.roff = roff, .len = len };
	struct rmig_completion c;
	int rc = rmig_write_batch(ep, &w, 1, sync_id);

	if (rc)
		return rc;
	rc = rmig_poll(ep, &c, 1, ep->timeout_ms);
	if (rc == 0)
		return rmig_set_error(ep, -ETIMEDOUT, "write not completed within %d ms",
				      ep->timeout_ms);
	if (rc < 0)
		return rc;
	return c.status;
}

int rmig_read_sync(struct rmig_ep *ep, const struct rmig_mr *lmr, uint64_t loff,
		   const struct rmig_rkey *rkey, uint64_t roff, uint64_t len)
{
	static const uint64_t sync_id = 0x52454144ull; /* "READ" */
	struct rmig_read r = { .lmr = lmr, .loff = loff, .rkey = rkey,
			       .roff = roff, .len = len };
	struct rmig_completion c;
	int rc = rmig_read_batch(ep, &r, 1, sync_id);

	if (rc)
		return rc;
	rc = rmig_poll(ep, &c, 1, ep->timeout_ms);
	if (rc == 0)
		return rmig_set_error(ep, -ETIMEDOUT, "read not completed within %d ms",
				      ep->timeout_ms);
	if (rc < 0)
		return rc;
	return c.status;
}

int rmig_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	NEED_OP(ep, send);
	if (len > RMIG_MSG_MAX)
		return rmig_set_error(ep, -EMSGSIZE,
				      "control message of %zu bytes exceeds the %u-byte limit",
				      len, RMIG_MSG_MAX);
	return ep->ops->send(ep, buf, len);
}

int rmig_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	NEED_OP(ep, recv);
	return ep->ops->recv(ep, buf, cap, timeout_ms);
}

void rmig_close(struct rmig_ep *ep)
{
	struct rmig_domain *dom;

	if (!ep)
		return;
	auth_key_free(ep->auth);
	ep->auth = NULL;
	dom = ep->dom;
	if (ep->ops->close)
		ep->ops->close(ep);
	/* Last endpoint of the domain gone: its regions and the domain go too. */
	if (dom && !__atomic_sub_fetch(&dom->refs, 1, __ATOMIC_ACQ_REL))
		dom->ops->domain_free(dom);
}
