/* SPDX-License-Identifier: MIT */
/*
 * The verbs backend: librdmacm for connection management, libibverbs RC
 * queue pairs for the data (InfiniBand, RoCE v1/v2, Soft-RoCE).
 *
 * Addresses are IP "host:port" on both fabrics: librdmacm maps them to a
 * device, port and GID (RoCE: the netdev's address; InfiniBand: IPoIB), so
 * the same code serves both.  Every endpoint owns a non-blocking CM event
 * channel that is polled with a deadline; a connected endpoint keeps
 * watching it for DISCONNECTED while it waits for completions.
 *
 * The connection carries an 8-byte hello in the CM private data both ways,
 * so a stray rdma_cm client (or another version) is refused at accept.
 *
 * Errors: libibverbs returns a positive errno (or NULL and errno) and
 * librdmacm -1 and errno; both become -errno right where they are called.
 */
#define _GNU_SOURCE
#include "verbs_int.h"
#include "../../common/clock.h"
#include "../../common/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERBS_BACKLOG 64
/* Longest a close waits for posted sends and writes to finish. */
#define VERBS_DRAIN_MS 2000

/* What an event said, copied out before it is acknowledged. */
struct cm_result {
	enum rdma_cm_event_type type;
	int status;
	struct rdma_cm_id *id;
	uint8_t priv[VERBS_HELLO_LEN];
	int hello_ok;
	uint8_t responder_resources, initiator_depth; /* a request's offer */
};

/* Next event on ech by the deadline: 0, -ETIMEDOUT or -errno. */
static int cm_wait(struct rdma_event_channel *ech, uint64_t deadline, struct cm_result *r)
{
	for (;;) {
		struct rdma_cm_event *e;
		struct pollfd p = { .fd = ech->fd, .events = POLLIN };
		int left;

		if (!rdma_get_cm_event(ech, &e)) {
			memset(r, 0, sizeof(*r));
			r->type = e->event;
			r->status = e->status;
			r->id = e->id;
			r->responder_resources = e->param.conn.responder_resources;
			r->initiator_depth = e->param.conn.initiator_depth;
			if (e->param.conn.private_data_len >= VERBS_HELLO_LEN) {
				memcpy(r->priv, e->param.conn.private_data, VERBS_HELLO_LEN);
				r->hello_ok = !memcmp(r->priv, VERBS_HELLO, VERBS_HELLO_LEN);
			}
			rdma_ack_cm_event(e);
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		left = rmig_left_ms(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
}

/* CM events on a connected endpoint (lock not held): only endings matter. */
void verbs_cm_drain(struct verbs_ep *v)
{
	struct cm_result r;

	while (!cm_wait(v->ech, rmig_deadline(0), &r)) {
		if (r.type == RDMA_CM_EVENT_DISCONNECTED ||
		    r.type == RDMA_CM_EVENT_DEVICE_REMOVAL) {
			pthread_mutex_lock(&v->lock);
			verbs_mark_dead(v, -ECONNRESET,
					r.type == RDMA_CM_EVENT_DISCONNECTED
						? "connection closed by the peer"
						: "the RDMA device was removed");
			pthread_mutex_unlock(&v->lock);
		}
	}
}

static int new_channel(struct verbs_ep *v)
{
	int fl;

	v->ech = rdma_create_event_channel();
	if (!v->ech)
		return rmig_set_error(NULL, errno ? -errno : -ENODEV,
				      "librdmacm cannot open /dev/infiniband/rdma_cm: %s (load rdma_ucm; is there an RDMA device?)",
				      strerror(errno));
	fl = fcntl(v->ech->fd, F_GETFL);
	if (fl < 0 || fcntl(v->ech->fd, F_SETFL, fl | O_NONBLOCK))
		return rmig_set_error(NULL, -errno, "cannot make the CM channel non-blocking");
	return 0;
}

/* Tear down whatever an endpoint holds, in reverse order of making it. */
static void verbs_destroy(struct verbs_ep *v)
{
	verbs_qp_teardown(v);
	if (v->id)
		rdma_destroy_id(v->id);
	if (v->ech)
		rdma_destroy_event_channel(v->ech);
	verbs_ep_free(v);
}

/* A failed open: the domain goes too if this endpoint made it (no one else
 * holds it yet). */
static void verbs_destroy_failed(struct verbs_ep *v)
{
	struct verbs_dom *d = v->own_dom ? v->dom : NULL;

	verbs_destroy(v);
	if (d)
		verbs_dom_free(&d->base);
}

static int parse_addr(const char *addr, int passive, struct addrinfo **res)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0) };
	int rc;

	if (rmig_split_addr(addr, host, sizeof(host), port, sizeof(port)))
		return rmig_set_error(NULL, -EINVAL, "address '%s' is not host:port",
				      addr ? addr : "(null)");
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (rc)
		return rmig_set_error(NULL, -EHOSTUNREACH, "cannot resolve '%s': %s", addr,
				      gai_strerror(rc));
	return 0;
}

static int device_check(const struct rmig_ep_opts *opts, struct rdma_cm_id *id,
			const char *addr)
{
	const char *dev;

	if (!opts->device || !id->verbs)
		return 0;
	dev = ibv_get_device_name(id->verbs->device);
	if (!strcmp(dev, opts->device))
		return 0;
	return rmig_set_error(NULL, -ENODEV, "address %s is on RDMA device %s, not %s", addr,
			      dev, opts->device);
}

static int verbs_probe(const struct rmig_ep_opts *opts, char *why, size_t whylen)
{
	struct ibv_device **list;
	int n, found = 0, active = 0, rc = -ENODEV;

	list = ibv_get_device_list(&n);
	if (!list || n <= 0) {
		snprintf(why, whylen, "no RDMA device (/sys/class/infiniband is empty)");
		goto free_list;
	}
	for (int i = 0; i < n && !active; i++) {
		struct ibv_device_attr da;
		struct ibv_context *ctx;

		if (opts->device && strcmp(opts->device, ibv_get_device_name(list[i])))
			continue;
		found = 1;
		ctx = ibv_open_device(list[i]);
		if (!ctx)
			continue;
		if (!ibv_query_device(ctx, &da)) {
			for (uint8_t p = 1; p <= da.phys_port_cnt && !active; p++) {
				struct ibv_port_attr pa;
				active = !ibv_query_port(ctx, p, &pa) && pa.state == IBV_PORT_ACTIVE;
			}
		}
		ibv_close_device(ctx);
	}
	if (!found) {
		snprintf(why, whylen, "RDMA device %s not found (ibv_devices lists them)",
			 opts->device);
	} else if (!active) {
		snprintf(why, whylen, "no RDMA port is active (check the link with rdma link)");
		rc = -ENETDOWN;
	} else {
		/*
		 * Open the CM device by hand rather than through librdmacm: its
		 * first use sets up process-wide device state that a child forked
		 * later inherits, and the kernel refuses a uverbs file used by a
		 * process other than the one that opened it.
		 */
		int fd = open("/dev/infiniband/rdma_cm", O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			snprintf(why, whylen, "cannot open /dev/infiniband/rdma_cm: %s (load rdma_ucm)",
				 strerror(errno));
		} else {
			close(fd);
			snprintf(why, whylen, "ok");
			rc = 0;
		}
	}
free_list:
	if (list)
		ibv_free_device_list(list);
	return rc;
}

/* A fresh endpoint with its CM event channel and CM id (listen and connect). */
static int verbs_ep_open(struct verbs_ep **out, const char *what)
{
	struct verbs_ep *v = verbs_ep_new();
	int rc;

	if (!v)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for %s", what);
	rc = new_channel(v);
	if (!rc && rdma_create_id(v->ech, &v->id, v, RDMA_PS_TCP))
		rc = rmig_set_error(NULL, -errno, "cannot create an RDMA CM id: %s",
				    strerror(errno));
	if (rc) {
		verbs_destroy(v);
		return rc;
	}
	*out = v;
	return 0;
}

static int verbs_listen(const struct rmig_ep_opts *opts, const char *addr,
			struct rmig_ep **listener)
{
	struct addrinfo *res;
	struct verbs_ep *v;
	int rc = parse_addr(addr, 1, &res);

	if (rc)
		return rc;
	rc = verbs_ep_open(&v, "a listener");
	if (rc)
		goto free_res;
	if (rdma_bind_addr(v->id, res->ai_addr) || rdma_listen(v->id, VERBS_BACKLOG)) {
		rc = rmig_set_error(NULL, -errno,
				    "cannot listen on %s: %s (is the address on an RDMA netdev?)",
				    addr, strerror(errno));
		goto destroy;
	}
	rc = device_check(opts, v->id, addr);
	if (rc)
		goto destroy;
	freeaddrinfo(res);
	*listener = &v->base;
	return 0;

destroy:
	verbs_destroy(v);
free_res:
	freeaddrinfo(res);
	return rc;
}

/* Wait for ESTABLISHED on v's channel; the phrase says what came instead. */
static int wait_established(struct verbs_ep *v, uint64_t deadline, int timeout_ms,
			    const char *addr)
{
	struct cm_result r;
	int rc = cm_wait(v->ech, deadline, &r);

	if (rc == -ETIMEDOUT)
		return rmig_set_error(NULL, rc, "no RDMA connection with %s within %d ms", addr,
				      timeout_ms);
	if (rc)
		return rmig_set_error(NULL, rc, "waiting for the RDMA connection failed: %s",
				      strerror(-rc));
	switch (r.type) {
	case RDMA_CM_EVENT_ESTABLISHED:
		return 0;
	case RDMA_CM_EVENT_DISCONNECTED:
		/*
		 * Accepting side: the peer connected (it disconnects only once
		 * established) and left before our ESTABLISHED arrived.  Hand out
		 * the endpoint, dead, as a TCP accept returns a socket whose peer
		 * already closed.
		 */
		pthread_mutex_lock(&v->lock);
		verbs_mark_dead(v, -ECONNRESET, "connection closed by the peer");
		pthread_mutex_unlock(&v->lock);
		return 0;
	case RDMA_CM_EVENT_REJECTED:
		return rmig_set_error(NULL, -ECONNREFUSED,
				      "connection to %s refused: is an rdmamig verbs peer listening?",
				      addr);
	case RDMA_CM_EVENT_UNREACHABLE:
		return rmig_set_error(NULL, -EHOSTUNREACH, "%s is unreachable over RDMA: %s", addr,
				      strerror(r.status < 0 ? -r.status : ETIMEDOUT));
	default:
		return rmig_set_error(NULL, -ECONNABORTED, "RDMA connection with %s failed: %s (%d)",
				      addr, rdma_event_str(r.type), r.status);
	}
}

/* Take one CONNECT_REQUEST off the listener's channel (its id, or an error). */
static int next_request(struct verbs_ep *l, uint64_t deadline, int timeout_ms,
			struct cm_result *r)
{
	for (;;) {
		int rc = cm_wait(l->ech, deadline, r);

		if (rc == -ETIMEDOUT)
			return rmig_set_error(&l->base, rc, "no peer connected within %d ms",
					      timeout_ms);
		if (rc)
			return rmig_set_error(&l->base, rc, "waiting for a connection failed: %s",
					      strerror(-rc));
		if (r->type != RDMA_CM_EVENT_CONNECT_REQUEST)
			continue;
		if (r->hello_ok)
			return 0;
		rdma_reject(r->id, NULL, 0);
		rdma_destroy_id(r->id);
		return rmig_set_error(&l->base, -EPROTO,
				      "the peer is not an rdmamig verbs endpoint (or another version)");
	}
}

static int verbs_accept_on(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
			   struct rmig_ep **ep)
{
	struct verbs_ep *l = VERBS(listener), *v;
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct rdma_conn_param cp;
	struct cm_result r;
	int rc = next_request(l, deadline, timeout_ms, &r);

	if (rc)
		return rc;
	v = verbs_ep_new();
	if (!v) {
		rdma_reject(r.id, NULL, 0);
		rdma_destroy_id(r.id);
		return rmig_set_error(listener, -ENOMEM, "out of memory for an endpoint");
	}
	v->id = r.id;
	/* Its own channel, so its DISCONNECTED never lands on the listener's. */
	rc = new_channel(v);
	if (!rc && rdma_migrate_id(v->id, v->ech))
		rc = rmig_set_error(NULL, -errno, "cannot move the connection to its own channel: %s",
				    strerror(errno));
	if (!rc)
		rc = verbs_qp_setup(v, v->id, dom ? VERBS_DOM(dom) : NULL);
	if (rc)
		goto reject;
	verbs_conn_param(v, &cp, VERBS_HELLO, VERBS_HELLO_LEN);
	/* Serve no more reads than the peer issues, issue no more than it serves. */
	if (cp.responder_resources > r.initiator_depth)
		cp.responder_resources = r.initiator_depth;
	if (cp.initiator_depth > r.responder_resources)
		cp.initiator_depth = r.responder_resources;
	rc = verbs_accept_closed(v, &cp);
	if (rc)
		goto destroy;
	/* timeout_ms bounds the wait for a peer (callers wait in slices); the
	 * handshake of one that arrived gets the listener's whole deadline. */
	rc = wait_established(v, rmig_deadline(listener->timeout_ms), listener->timeout_ms,
			      "the peer");
	if (rc)
		goto destroy;
	*ep = &v->base;
	return 0;

reject:
	rdma_reject(v->id, NULL, 0);
destroy:
	verbs_destroy_failed(v);
	return rc;
}

static int verbs_accept(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep)
{
	return verbs_accept_on(listener, NULL, timeout_ms, ep);
}

/* Resolve addr to a device, port and path (the event, or why not). */
static int resolve(struct verbs_ep *v, const struct sockaddr *dst, const char *addr,
		   uint64_t deadline, int timeout_ms)
{
	struct cm_result r;
	int left = rmig_left_ms(deadline), rc;

	if (rdma_resolve_addr(v->id, NULL, (struct sockaddr *)dst, left > 0 ? left : 1))
		return rmig_set_error(NULL, -errno, "cannot resolve %s to an RDMA device: %s", addr,
				      strerror(errno));
	rc = cm_wait(v->ech, deadline, &r);
	if (!rc && r.type != RDMA_CM_EVENT_ADDR_RESOLVED)
		rc = r.status < 0 ? r.status : -EHOSTUNREACH;
	if (rc)
		return rmig_set_error(NULL, rc,
				      "cannot resolve %s to an RDMA device within %d ms: %s (is it on an RDMA netdev?)",
				      addr, timeout_ms, strerror(-rc));
	left = rmig_left_ms(deadline);
	if (rdma_resolve_route(v->id, left > 0 ? left : 1))
		return rmig_set_error(NULL, -errno,
				      "no RDMA route to %s: %s (on RoCE loopback addresses have none: use the RDMA netdev's address)",
				      addr, strerror(errno));
	rc = cm_wait(v->ech, deadline, &r);
	if (!rc && r.type != RDMA_CM_EVENT_ROUTE_RESOLVED)
		rc = r.status < 0 ? r.status : -EHOSTUNREACH;
	if (rc)
		return rmig_set_error(NULL, rc, "no RDMA route to %s within %d ms: %s", addr,
				      timeout_ms, strerror(-rc));
	return 0;
}

static int verbs_connect(const struct rmig_ep_opts *opts, const char *addr,
			 struct rmig_ep **ep)
{
	uint64_t deadline = rmig_deadline(opts->timeout_ms);
	struct rdma_conn_param cp;
	struct addrinfo *res;
	struct verbs_ep *v;
	int rc = parse_addr(addr, 0, &res);

	if (rc)
		return rc;
	rc = verbs_ep_open(&v, "an endpoint");
	if (rc)
		goto free_res;
	rc = resolve(v, res->ai_addr, addr, deadline, opts->timeout_ms);
	if (!rc)
		rc = device_check(opts, v->id, addr);
	if (!rc)
		rc = verbs_qp_setup(v, v->id, opts->domain ? VERBS_DOM(opts->domain) : NULL);
	if (rc)
		goto destroy;
	verbs_conn_param(v, &cp, VERBS_HELLO, VERBS_HELLO_LEN);
	if (rdma_connect(v->id, &cp)) {
		rc = rmig_set_error(NULL, -errno, "cannot connect to %s: %s", addr, strerror(errno));
		goto destroy;
	}
	rc = wait_established(v, deadline, opts->timeout_ms, addr);
	if (rc)
		goto destroy;
	freeaddrinfo(res);
	*ep = &v->base;
	return 0;

destroy:
	verbs_destroy_failed(v);
free_res:
	freeaddrinfo(res);
	return rc;
}

static int verbs_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	struct sockaddr *sa = rdma_get_local_addr(VERBS(ep)->id);
	char host[INET6_ADDRSTRLEN];
	int n;

	if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						      : sizeof(struct sockaddr_in),
			host, sizeof(host), NULL, 0, NI_NUMERICHOST))
		return rmig_set_error(ep, -EINVAL, "the endpoint has no IP address");
	n = snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
		     ntohs(rdma_get_src_port(VERBS(ep)->id)));
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

static void verbs_close(struct rmig_ep *ep)
{
	struct verbs_ep *v = VERBS(ep);

	if (v->qp_made) {
		verbs_drain(v, v->base.timeout_ms < VERBS_DRAIN_MS && v->base.timeout_ms >= 0
				       ? v->base.timeout_ms : VERBS_DRAIN_MS);
		/* A DREQ to the peer: its waits end with -ECONNRESET right away. */
		rdma_disconnect(v->id);
	}
	verbs_destroy(v);
}

const struct rmig_transport_ops rmig_verbs_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "verbs",
	.caps = RMIG_CAP_WRITE | RMIG_CAP_ZERO_COPY | RMIG_CAP_CROSS_HOST | RMIG_CAP_DOMAIN |
		RMIG_CAP_READ,
	.probe = verbs_probe,
	.listen = verbs_listen,
	.accept = verbs_accept,
	.connect = verbs_connect,
	.local_addr = verbs_local_addr,
	.reg_mr = verbs_reg_mr,
	.dereg_mr = verbs_dereg_mr,
	.write_batch = verbs_write_batch,
	.poll = verbs_poll,
	.send = verbs_send,
	.recv = verbs_recv,
	.close = verbs_close,
	.accept_on = verbs_accept_on,
	.domain_free = verbs_dom_free,
	.authenticated = verbs_open_access,
	.read_batch = verbs_read_batch,
};
