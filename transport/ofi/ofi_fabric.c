/* SPDX-License-Identifier: MIT */
/*
 * Choosing a provider and opening the libfabric objects of one endpoint.
 *
 * Endpoint type: FI_EP_RDM everywhere.  shm and efa offer only RDM; tcp and
 * verbs offer it through the ofi_rxm utility layer, so one code path covers
 * every provider.  RDM has no connect/accept of its own: ofi.c pairs the two
 * ends over a TCP bootstrap socket that then serves as the liveness channel.
 *
 * Each endpoint owns its fabric, domain, AV, CQ and EP: simple to tear down
 * completely, and a migration opens one or a few endpoints, not thousands.
 */
#define _GNU_SOURCE
#include "ofi.h"
#include "../../common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fi_cm.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#define OFI_API FI_VERSION(1, 9)

/* mr_mode bits rdmamig knows how to honour (FI_MR_RAW is refused). */
#define OFI_MR_MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY | \
		      FI_MR_ALLOCATED | FI_MR_ENDPOINT)

#define OFI_TX_DEPTH 1024
#define OFI_RX_DEPTH 64

/* Default provider order when the spec names none ("ofi"). */
static const char *const default_providers[] = { "verbs", "efa", "tcp" };

/*
 * Whether the provider's CQ wait fd wakes a sleeper when peer traffic needs
 * progress: tcp;ofi_rxm puts its sockets behind it; shm has no such signal
 * (a peer writes into shared memory).
 */
int ofi_has_wait_fd(const char *provider)
{
	return strcmp(provider, "shm") != 0;
}

/* Providers addressed by IP: the bootstrap socket's local IP picks the NIC. */
static int ip_addressed(const char *provider)
{
	return strcmp(provider, "shm") && strcmp(provider, "efa");
}

/*
 * libfabric takes these tunables only from the environment (no fi_info
 * hint, domain attribute or fi_control sets them), and the library never
 * changes its host's environment: the host sets them before the first
 * fi_getinfo (the CLI and the tests do, common/ofi_env.h; docs/plugin-abi.md
 * says why each matters).  Here the library only says, once, through the
 * host's log, which are missing.
 */
static void check_env(void)
{
	static const struct { const char *name, *want, *why; } vars[] = {
		{ "FI_OFI_RXM_MSG_RX_SIZE", "32", "ofi_rxm then touches ~120 MB per endpoint pair" },
		{ "FI_OFI_RXM_BUFFER_SIZE", "4096", "ofi_rxm then touches ~120 MB per endpoint pair" },
		{ "FI_UNIVERSE_SIZE", "16", "ofi_rxm's CQ then exceeds Soft-RoCE's max_cqe" },
		{ "FI_MR_CACHE_MAX_COUNT", "0",
		  "libfabric's MR cache may keep a deregistered region writable by the peer" },
	};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (!getenv(vars[i].name))
			rmig_log(RMIG_LOG_WARN, "ofi: %s is not set (rdmamig hosts set %s=%s): %s",
				 vars[i].name, vars[i].name, vars[i].want, vars[i].why);
}

/* What ofi_getinfo asks a provider for, best first. */
struct ofi_want {
	uint64_t order;  /* FI_ORDER_* on tx and rx */
	int dc;          /* FI_DELIVERY_COMPLETE writes */
	int rma_event;   /* FI_RMA_EVENT: a counter of writes into this end */
};

static struct fi_info *make_hints(const char *provider, uint64_t mr_mode,
				  const struct ofi_want *w, enum fi_threading threading)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->caps = FI_MSG | FI_RMA | FI_SEND | FI_RECV | FI_WRITE | FI_REMOTE_WRITE |
		  FI_READ | FI_REMOTE_READ | (w->rma_event ? FI_RMA_EVENT : 0);
	h->mode = 0; /* no FI_CONTEXT: op contexts are ours */
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = (int)mr_mode;
	/* FI_THREAD_SAFE lets endpoints share the domain (ofi_dom); with
	 * FI_THREAD_DOMAIN ofi_ep.lock serializes the endpoint's only user. */
	h->domain_attr->threading = threading;
	h->fabric_attr->prov_name = strdup(provider);
	/*
	 * Queue depths: a window of small writes in flight (a full send queue
	 * only makes write_batch progress and retry); receives are few
	 * (OFI_NRX posted buffers).
	 */
	h->tx_attr->size = OFI_TX_DEPTH;
	h->rx_attr->size = OFI_RX_DEPTH;
	h->tx_attr->msg_order = w->order;
	h->rx_attr->msg_order = w->order;
	if (w->dc)
		h->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
	return h;
}

static int try_getinfo(const char *provider, const char *node, uint64_t mr_mode,
		       const struct ofi_want *w, struct fi_info **info)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct fi_info *h;
	int rc;

	pthread_once(&once, check_env);
	h = make_hints(provider, mr_mode, w, FI_THREAD_SAFE);
	if (!h)
		return -ENOMEM;
	if (node && ip_addressed(provider))
		rc = fi_getinfo(OFI_API, node, NULL, FI_SOURCE, h, info);
	else
		rc = fi_getinfo(OFI_API, NULL, NULL, 0, h, info);
	fi_freeinfo(h);
	if (rc != -FI_ENODATA)
		return rc;
	h = make_hints(provider, mr_mode, w, FI_THREAD_DOMAIN);

	if (!h)
		return -ENOMEM;
	if (node && ip_addressed(provider))
		rc = fi_getinfo(OFI_API, node, NULL, FI_SOURCE, h, info);
	else
		rc = fi_getinfo(OFI_API, NULL, NULL, 0, h, info);
	fi_freeinfo(h);
	return rc;
}

/*
 * The best info for provider: ask for delivery-complete writes and for
 * send-after-write and write-after-write ordering first, then give them up
 * one by one (ofi_cq.c makes up for what is missing).  Providers that give
 * no fd to sleep on (shm) are first asked for a remote-write counter too:
 * it tells the target's progress thread that writes are streaming in.
 * node: local IP to bind to, or NULL.
 */
int ofi_getinfo(const char *provider, const char *node, struct fi_info **info,
		char *why, size_t whylen)
{
	static const struct ofi_want tries[] = {
		{ FI_ORDER_SAW | FI_ORDER_WAW, 1, 0 }, { FI_ORDER_SAW, 1, 0 }, { 0, 1, 0 },
		{ FI_ORDER_SAW | FI_ORDER_WAW, 0, 0 }, { FI_ORDER_SAW, 0, 0 }, { 0, 0, 0 },
	};
	static const struct ofi_want none = { 0, 0, 0 };
	int rc = -FI_ENODATA;

	for (int ev = !ofi_has_wait_fd(provider); ev >= 0 && rc == -FI_ENODATA; ev--) {
		for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
			struct ofi_want w = tries[i];
			w.rma_event = ev;
			rc = try_getinfo(provider, node, OFI_MR_MODES, &w, info);
			if (rc != -FI_ENODATA)
				break;
		}
	}
	if (!rc)
		return 0;
	if (rc == -FI_ENODATA && !try_getinfo(provider, node, OFI_MR_MODES | FI_MR_RAW,
					      &none, info)) {
		fi_freeinfo(*info);
		*info = NULL;
		snprintf(why, whylen,
			 "ofi/%s: the provider needs raw memory keys (FI_MR_RAW), which rdmamig does not support; use another provider",
			 provider);
		return -EOPNOTSUPP;
	}
	if (rc == -FI_ENODATA && !strcmp(provider, "verbs"))
		snprintf(why, whylen,
			 "ofi/verbs: libfabric finds no verbs device (no RDMA device on this host)");
	else if (rc == -FI_ENODATA && !strcmp(provider, "efa"))
		snprintf(why, whylen,
			 "ofi/efa: libfabric finds no EFA device (not an AWS EFA instance)");
	else if (rc == -FI_ENODATA && node && ip_addressed(provider))
		snprintf(why, whylen,
			 "ofi/%s: libfabric offers no RDM endpoint with FI_RMA|FI_MSG on %s (check FI_PROVIDER and the interface)",
			 provider, node);
	else if (rc == -FI_ENODATA)
		snprintf(why, whylen,
			 "ofi/%s: libfabric has no such provider with FI_RMA|FI_MSG on FI_EP_RDM (fi_info -l lists them)",
			 provider);
	else
		snprintf(why, whylen, "ofi/%s: fi_getinfo failed: %s", provider,
			 fi_strerror(-rc));
	return rc == -FI_ENODATA ? -ENODEV : ofi_errno(rc);
}

/* provider: "" or NULL for the default order; out: the one found. */
static int pick_provider(const char *provider, const char *node, struct fi_info **info,
			 char *why, size_t whylen)
{
	int rc = -ENODEV;

	if (provider && provider[0])
		return ofi_getinfo(provider, node, info, why, whylen);
	for (size_t i = 0; i < sizeof(default_providers) / sizeof(default_providers[0]); i++) {
		rc = ofi_getinfo(default_providers[i], node, info, why, whylen);
		if (!rc)
			return 0;
	}
	snprintf(why, whylen,
		 "ofi: libfabric finds none of verbs, efa, tcp with FI_RMA|FI_MSG on FI_EP_RDM");
	return rc;
}

int ofi_probe(const struct rmig_ep_opts *opts, char *why, size_t whylen)
{
	struct fi_info *info = NULL;
	int rc = pick_provider(opts ? opts->provider : NULL, NULL, &info, why, whylen);

	if (rc)
		return rc;
	snprintf(why, whylen, "ok: %s", info->fabric_attr->prov_name);
	fi_freeinfo(info);
	return 0;
}

static void record_prov(struct ofi_ep *o)
{
	struct fi_info *i = o->info;
	struct ofi_prov *p = &o->prov;

	snprintf(p->name, sizeof(p->name), "%s", i->fabric_attr->prov_name);
	p->mr_mode = (uint64_t)i->domain_attr->mr_mode;
	p->max_msg = i->ep_attr->max_msg_size ? i->ep_attr->max_msg_size : SIZE_MAX;
	p->key_size = i->domain_attr->mr_key_size;
	p->ordered = (i->tx_attr->msg_order & FI_ORDER_SAW) &&
		     (i->rx_attr->msg_order & FI_ORDER_SAW);
	p->waw = (i->tx_attr->msg_order & FI_ORDER_WAW) &&
		 (i->rx_attr->msg_order & FI_ORDER_WAW);
	p->delivery_complete = !!(i->tx_attr->op_flags & FI_DELIVERY_COMPLETE);
	/* Hardware providers pin registered pages; tcp and shm do not. */
	p->pins = strstr(p->name, "verbs") || strstr(p->name, "efa") ||
		  (p->mr_mode & FI_MR_LOCAL);
}

/*
 * A CQ with a wait fd lets an idle waiter sleep in poll() until the
 * provider has something to progress, so the target of a write wakes as the
 * data arrives.  Without one (shm, or a provider that refuses FI_WAIT_FD)
 * waiters sleep-poll (ofi_cq.c).
 */
static int open_cq(struct ofi_ep *o, struct fi_cq_attr *attr)
{
	int rc = -FI_ENOSYS;

	o->wait_fd = -1;
	if (ofi_has_wait_fd(o->prov.name)) {
		attr->wait_obj = FI_WAIT_FD;
		rc = fi_cq_open(o->domain, attr, &o->cq, NULL);
		if (!rc && fi_control(&o->cq->fid, FI_GETWAIT, &o->wait_fd)) {
			o->wait_fd = -1;
			fi_close(&o->cq->fid);
			o->cq = NULL;
			rc = -FI_ENOSYS;
		}
	}
	if (rc) {
		attr->wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(o->domain, attr, &o->cq, NULL);
	}
	return rc;
}

/* Count writes into this end: activity the CQ does not show (FI_RMA_EVENT). */
static int open_write_counter(struct ofi_ep *o)
{
	struct fi_cntr_attr attr = { .events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_NONE };
	int rc = fi_cntr_open(o->domain, &attr, &o->wcntr, NULL);

	if (!rc)
		rc = fi_ep_bind(o->ep, &o->wcntr->fid, FI_REMOTE_WRITE);
	return rc;
}

/* Open fabric, domain, AV, CQ and an enabled EP; ofi_close_fabric undoes. */
/* The endpoint, bound to the AV, CQ (and write counter), enabled. */
static int open_ep(struct ofi_ep *o, const char **what)
{
	int rc;

	*what = "fi_endpoint";
	rc = fi_endpoint(o->domain, o->info, &o->ep, NULL);
	if (!rc && (*what = "binding the AV"))
		rc = fi_ep_bind(o->ep, &o->av->fid, 0);
	if (!rc && (*what = "binding the CQ"))
		rc = fi_ep_bind(o->ep, &o->cq->fid, FI_TRANSMIT | FI_RECV);
	if (!rc && (o->info->caps & FI_RMA_EVENT) && (*what = "opening the write counter"))
		rc = open_write_counter(o);
	if (!rc && (*what = "fi_enable"))
		rc = fi_enable(o->ep);
	return rc;
}

static void close_ep(struct ofi_ep *o)
{
	if (o->ep)
		fi_close(&o->ep->fid);
	o->ep = NULL;
	if (o->wcntr)
		fi_close(&o->wcntr->fid);
	o->wcntr = NULL;
}

/* A new domain for o (its info chosen): fabric and domain opened. */
static int dom_open(struct ofi_ep *o, const char **what)
{
	struct ofi_dom *d = calloc(1, sizeof(*d));
	int rc;

	if (!d)
		return -FI_ENOMEM;
	d->base.ops = &rmig_ofi_ops;
	pthread_mutex_init(&d->lock, NULL);
	o->dom = d;
	o->dom_owned = 1;
	d->info = fi_dupinfo(o->info);
	if (!d->info)
		return -FI_ENOMEM;
	d->shareable = o->info->domain_attr->threading == FI_THREAD_SAFE &&
		       !(o->prov.mr_mode & FI_MR_ENDPOINT);
	*what = "fi_fabric";
	rc = fi_fabric(d->info->fabric_attr, &d->fabric, NULL);
	if (!rc && (*what = "fi_domain"))
		rc = fi_domain(d->fabric, d->info, &d->domain, NULL);
	o->fabric = d->fabric;
	o->domain = d->domain;
	return rc;
}

/* The endpoint joins shared: its fabric and domain, a copy of its info. */
static int dom_join(struct ofi_ep *o, struct ofi_dom *shared)
{
	o->info = fi_dupinfo(shared->info);
	if (!o->info)
		return rmig_set_error(&o->base, -ENOMEM, "out of memory for the fabric info");
	o->dom = shared;
	o->fabric = shared->fabric;
	o->domain = shared->domain;
	return 0;
}

void ofi_dom_free(struct rmig_domain *dom)
{
	struct ofi_dom *d = OFI_DOM(dom);

	while (d->regions) {
		struct ofi_region *r = d->regions;
		d->regions = r->next;
		fi_close(&r->mr->fid);
		if (r->pinned)
			rmig_memlock_release(r->pinned);
		free(r);
	}
	if (d->domain)
		fi_close(&d->domain->fid);
	if (d->fabric)
		fi_close(&d->fabric->fid);
	if (d->info)
		fi_freeinfo(d->info);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int ofi_open(struct ofi_ep *o, const char *provider, const char *node, struct ofi_dom *shared)
{
	struct fi_av_attr av_attr = { .type = FI_AV_UNSPEC, .count = 1 };
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_NONE };
	char why[RMIG_ERR_MAX];
	const char *what = "";
	int rc;

	if (shared) {
		if ((rc = dom_join(o, shared)))
			return rc;
	} else if ((rc = pick_provider(provider, node, &o->info, why, sizeof(why)))) {
		return rmig_set_error(&o->base, rc, "%s", why);
	}
	record_prov(o);
	if (o->prov.mr_mode & FI_MR_RAW)
		return rmig_set_error(&o->base, -EOPNOTSUPP,
				      "ofi/%s needs raw memory keys (FI_MR_RAW), which rdmamig does not support",
				      o->prov.name);
	cq_attr.size = o->info->tx_attr->size + o->info->rx_attr->size;
	rc = shared ? 0 : dom_open(o, &what);
	if (!rc && (what = "fi_av_open"))
		rc = fi_av_open(o->domain, &av_attr, &o->av, NULL);
	if (!rc && (what = "fi_cq_open"))
		rc = open_cq(o, &cq_attr);
	if (!rc)
		rc = open_ep(o, &what);
	if (rc == -FI_EBUSY && ofi_shm_clear_stale_self(o)) {
		close_ep(o);
		rc = open_ep(o, &what);
	}
	if (rc)
		return rmig_set_error(&o->base, ofi_errno(rc), "ofi/%s: %s failed: %s",
				      o->prov.name, what, fi_strerror(-rc));
	return 0;
}

/* Close whatever ofi_open opened, in reverse order; safe on a partial open. */
void ofi_close_fabric(struct ofi_ep *o)
{
	if (o->ep)
		fi_close(&o->ep->fid);
	o->ep = NULL;
	if (o->bufs_mr)
		fi_close(&o->bufs_mr->fid);
	o->bufs_mr = NULL;
	if (o->wcntr)
		fi_close(&o->wcntr->fid);
	o->wcntr = NULL;
	if (o->cq)
		fi_close(&o->cq->fid);
	o->cq = NULL;
	if (o->av)
		fi_close(&o->av->fid);
	o->av = NULL;
	/* The domain goes with its last endpoint (generic layer), or here if
	 * it was never handed out. */
	if (o->dom && o->dom_owned)
		ofi_dom_free(&o->dom->base);
	o->dom = NULL;
	o->domain = NULL;
	o->fabric = NULL;
	if (o->info)
		fi_freeinfo(o->info);
	o->info = NULL;
}
