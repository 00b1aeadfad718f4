/* SPDX-License-Identifier: MIT */
/*
 * The ofi backend: RDMA writes and control messages over libfabric, on any
 * provider that offers FI_RMA and FI_MSG on an FI_EP_RDM endpoint (tcp and
 * verbs through ofi_rxm, shm, efa).  Why RDM: see ofi_fabric.c.
 *
 * Connection setup: RDM endpoints have no connect/accept, so the two ends
 * meet over a TCP bootstrap socket (listen/accept/connect of common/sock.h):
 * each opens its fabric objects, binding to the socket's local IP for
 * IP-addressed providers, and sends a hello (ofi_wire.h) with its fabric
 * address; each inserts the other's address in its AV, posts its receive
 * buffers and confirms with one byte.  The socket then stays open, silent,
 * as the liveness channel: when the peer exits or closes, it reads EOF and
 * every wait fails with -ECONNRESET (ofi_cq.c).
 */
#define _GNU_SOURCE
#include "ofi.h"
#include "../../common/clock.h"
#include "../../common/sock.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>

extern const struct rmig_transport_ops rmig_ofi_ops;

#define OFI_READY 'R'

static struct ofi_ep *ofi_ep_new(int sock)
{
	struct ofi_ep *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->base.ops = &rmig_ofi_ops;
	o->sock = sock;
	o->peer = FI_ADDR_UNSPEC;
	o->msgs_tail = &o->msgs;
	pthread_mutex_init(&o->lock, NULL);
	return o;
}

/* Everything an endpoint holds, whatever stage its setup reached. */
void ofi_ep_free(struct ofi_ep *o)
{
	ofi_stop_progress(o);
	if (ofi_shm_park(o))
		return;
	ofi_close_fabric(o);
	ofi_shm_release(o);
	ofi_shm_reap_peer(o);
	if (o->bufs)
		munmap(o->bufs, OFI_BUFS_LEN);
	while (o->msgs) {
		struct ofi_msg *m = o->msgs;
		o->msgs = m->next;
		free(m);
	}
	if (o->sock >= 0)
		close(o->sock);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* The numeric local IP of a connected socket: the NIC the fabric binds to. */
static int local_ip(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (getnameinfo((struct sockaddr *)&ss, sl, buf, (socklen_t)len, NULL, 0,
			NI_NUMERICHOST))
		return -EINVAL;
	return 0;
}

/* Receive and send buffers, registered once, receives posted. */
static int ofi_setup_buffers(struct ofi_ep *o)
{
	size_t len = OFI_BUFS_LEN;
	uint64_t key;
	int rc;

	/* mmap: page-aligned, and given back to the system at close. */
	o->bufs = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (o->bufs == MAP_FAILED) {
		o->bufs = NULL;
		return rmig_set_error(&o->base, -ENOMEM, "out of memory for message buffers");
	}
	memset(o->bufs, 0, len); /* allocated and touched (FI_MR_ALLOCATED) */
	rc = ofi_reg(o, o->bufs, len, FI_SEND | FI_RECV, &o->bufs_mr, &o->bufs_desc, &key);
	if (rc)
		return rc;
	for (unsigned i = 0; i < OFI_NRX; i++) {
		rc = ofi_post_recv(o, i);
		if (rc)
			return rmig_set_error(&o->base, ofi_errno(rc),
					      "ofi/%s: cannot post a receive buffer: %s",
					      o->prov.name, fi_strerror(-rc));
	}
	return 0;
}

/* Check the peer's hello against ours: same wire version, provider, mr_mode. */
static int ofi_check_hello(struct ofi_ep *o, const uint8_t raw[OFI_HELLO_SIZE],
			   struct ofi_hello *peer)
{
	int rc = ofi_hello_decode(raw, peer);

	if (rc == -EPROTO)
		return rmig_set_error(&o->base, rc,
				      "the peer is not an rdmamig ofi endpoint (is it using the same backend?)");
	if (rc == -EPROTONOSUPPORT)
		return rmig_set_error(&o->base, rc,
				      "the peer speaks ofi wire version %u, this end %u: use the same rdmamig on both ends",
				      peer->version, OFI_WIRE_VERSION);
	if (rc)
		return rmig_set_error(&o->base, rc, "the peer sent a malformed ofi hello");
	if (strcmp(peer->provider, o->prov.name))
		return rmig_set_error(&o->base, -EPROTO,
				      "the peer uses libfabric provider %s, this end %s: give both ends the same ofi/PROVIDER",
				      peer->provider, o->prov.name);
	if (peer->mr_mode != o->prov.mr_mode)
		return rmig_set_error(&o->base, -EPROTO,
				      "the peer's %s domain has another mr_mode (0x%llx, here 0x%llx): different libfabric versions?",
				      o->prov.name, (unsigned long long)peer->mr_mode,
				      (unsigned long long)o->prov.mr_mode);
	return 0;
}

/* Hello both ways, AV insert, ready byte both ways. */
static int ofi_handshake(struct ofi_ep *o, uint64_t deadline)
{
	struct ofi_hello me = { .version = OFI_WIRE_VERSION, .mr_mode = o->prov.mr_mode }, peer;
	uint8_t raw[OFI_HELLO_SIZE];
	size_t alen = OFI_ADDR_MAX;
	char ready = OFI_READY;
	int rc;

	rc = fi_getname(&o->ep->fid, me.addr, &alen);
	if (rc || !alen || alen > OFI_ADDR_MAX)
		return rmig_set_error(&o->base, rc ? ofi_errno(rc) : -EOVERFLOW,
				      "ofi/%s: cannot read the endpoint's fabric address: %s",
				      o->prov.name, rc ? fi_strerror(-rc) : "too long");
	me.addrlen = (uint16_t)alen;
	snprintf(me.provider, sizeof(me.provider), "%s", o->prov.name);
	ofi_hello_encode(&me, raw);
	rc = rmig_sock_send(o->sock, raw, sizeof(raw), deadline);
	if (!rc)
		rc = rmig_sock_recv(o->sock, raw, sizeof(raw), deadline);
	if (rc == -ECONNRESET)
		return rmig_set_error(&o->base, rc,
				      "the peer closed the connection during the handshake: not an rdmamig ofi endpoint, or it refused this one");
	if (rc)
		return rmig_set_error(&o->base, rc, "no rdmamig ofi hello from the peer: %s",
				      strerror(-rc));
	rc = ofi_check_hello(o, raw, &peer);
	if (rc)
		return rc;
	memcpy(o->peer_name, peer.addr, peer.addrlen);
	o->peer_namelen = peer.addrlen;
	memcpy(o->self_name, me.addr, alen);
	o->self_namelen = alen;
	pthread_mutex_lock(&o->lock);
	rc = fi_av_insert(o->av, peer.addr, 1, &o->peer, 0, NULL);
	pthread_mutex_unlock(&o->lock);
	if (rc != 1)
		return rmig_set_error(&o->base, rc < 0 ? ofi_errno(rc) : -EINVAL,
				      "ofi/%s: the peer's fabric address is not usable (fi_av_insert: %s)",
				      o->prov.name, rc < 0 ? fi_strerror(-rc) : "refused");
	rc = rmig_sock_send(o->sock, &ready, 1, deadline);
	if (!rc)
		rc = rmig_sock_recv(o->sock, &ready, 1, deadline);
	if (!rc && ready != OFI_READY)
		rc = -EPROTO;
	if (rc)
		return rmig_set_error(&o->base, rc, "the peer did not confirm the ofi handshake: %s",
				      strerror(-rc));
	return 0;
}

/* Turn a connected bootstrap socket into an endpoint; takes fd in all cases. */
static int ofi_start(int fd, const char *provider, struct rmig_domain *dom, int timeout_ms,
		     struct rmig_ep **out)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct ofi_ep *o = ofi_ep_new(fd);
	char node[NI_MAXHOST];
	int rc;

	if (!o) {
		close(fd);
		return rmig_set_error(NULL, -ENOMEM, "out of memory for an endpoint");
	}
	o->base.timeout_ms = o->stall_ms = timeout_ms;
	rc = local_ip(fd, node, sizeof(node));
	if (rc)
		rmig_set_error(&o->base, rc, "cannot read the bootstrap socket's address");
	if (!rc)
		rc = ofi_open(o, provider, node, dom ? OFI_DOM(dom) : NULL);
	if (!rc) {
		pthread_mutex_lock(&o->lock);
		rc = ofi_setup_buffers(o);
		pthread_mutex_unlock(&o->lock);
	}
	if (!rc)
		rc = ofi_handshake(o, deadline);
	/* After the handshake: from here on a readable socket means EOF. */
	if (!rc)
		rc = ofi_start_progress(o);
	if (rc) {
		ofi_ep_free(o);
		return rc;
	}
	/* A shareable domain is the generic layer's from here (refs). */
	if (o->dom->shareable) {
		o->base.dom = &o->dom->base;
		o->dom_owned = 0;
	}
	ofi_shm_track(o);
	*out = &o->base;
	return 0;
}

static int ofi_listen(const struct rmig_ep_opts *opts, const char *addr,
		      struct rmig_ep **listener)
{
	char err[RMIG_ERR_MAX] = "";
	struct ofi_ep *o;
	int fd, rc;

	/* Fail at listen, not at the first accept, if the provider is absent. */
	rc = ofi_probe(opts, err, sizeof(err));
	if (rc)
		return rmig_set_error(NULL, rc, "%s", err);
	rc = rmig_sock_listen(addr, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(NULL, rc, "%s", err);
	o = ofi_ep_new(fd);
	if (!o) {
		close(fd);
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a listener");
	}
	snprintf(o->provider, sizeof(o->provider), "%s", opts->provider ? opts->provider : "");
	*listener = &o->base;
	return 0;
}

static int ofi_accept_on(struct rmig_ep *listener, struct rmig_domain *dom, int timeout_ms,
			 struct rmig_ep **ep)
{
	struct ofi_ep *l = OFI(listener);
	char err[RMIG_ERR_MAX] = "";
	int fd, rc;

	rc = rmig_sock_accept(l->sock, timeout_ms, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(listener, rc, "%s", err);
	/* timeout_ms bounds the wait for a peer (callers wait in slices); the
	 * handshake of one that arrived gets the listener's whole deadline. */
	return ofi_start(fd, l->provider, dom, listener->timeout_ms, ep);
}

static int ofi_accept(struct rmig_ep *listener, int timeout_ms, struct rmig_ep **ep)
{
	return ofi_accept_on(listener, NULL, timeout_ms, ep);
}

static int ofi_connect(const struct rmig_ep_opts *opts, const char *addr,
		       struct rmig_ep **ep)
{
	char err[RMIG_ERR_MAX] = "";
	int fd, rc;

	rc = rmig_sock_connect(addr, opts->timeout_ms, &fd, err, sizeof(err));
	if (rc)
		return rmig_set_error(NULL, rc, "%s", err);
	return ofi_start(fd, opts->provider, opts->domain, opts->timeout_ms, ep);
}

static int ofi_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	return rmig_sock_name(OFI(ep)->sock, buf, len);
}

static void ofi_ep_close(struct rmig_ep *ep)
{
	struct ofi_ep *o = OFI(ep);

	if (o->ep) {
		int t = ep->timeout_ms > 0 && ep->timeout_ms < 2000 ? ep->timeout_ms : 2000;
		ofi_drain_sends(o, t);
	}
	ofi_ep_free(o);
}

const struct rmig_transport_ops rmig_ofi_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "ofi",
	.caps = RMIG_CAP_WRITE | RMIG_CAP_ZERO_COPY | RMIG_CAP_CROSS_HOST | RMIG_CAP_DOMAIN |
		RMIG_CAP_READ,
	.probe = ofi_probe,
	.listen = ofi_listen,
	.accept = ofi_accept,
	.connect = ofi_connect,
	.local_addr = ofi_local_addr,
	.reg_mr = ofi_reg_mr,
	.dereg_mr = ofi_dereg_mr,
	.write_batch = ofi_write_batch,
	.poll = ofi_poll,
	.send = ofi_send,
	.recv = ofi_recv,
	.close = ofi_ep_close,
	.accept_on = ofi_accept_on,
	.domain_free = ofi_dom_free,
	.specs = (const char *const[]){ "ofi/verbs", "ofi/tcp", "ofi/shm", NULL },
	.read_batch = ofi_read_batch,
};
