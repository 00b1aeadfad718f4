/* SPDX-License-Identifier: MIT */
/*
 * Memory registration with the least access each region needs.  A region
 * the peer writes into gets LOCAL_WRITE|REMOTE_WRITE (the HCA writes it on
 * the peer's behalf); a region that is only the source of our writes is
 * only read by the local HCA, which needs no access flag at all: no rkey it
 * hands out opens it to anyone.  REMOTE_READ is given only to regions the
 * peer is to read (post-copy's source RAM); LOCAL_WRITE alone to the
 * destinations of our reads.
 */
#define _GNU_SOURCE
#include "verbs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int verbs_access(unsigned access)
{
	int a = 0;

	if (access & RMIG_ACCESS_REMOTE_WRITE)
		a |= IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	if (access & RMIG_ACCESS_REMOTE_READ)
		a |= IBV_ACCESS_REMOTE_READ;
	if (access & RMIG_ACCESS_LOCAL_WRITE)
		a |= IBV_ACCESS_LOCAL_WRITE;
	return a;
}

/* Pin and register; memlock is reserved first so a shortfall is named. */
int verbs_reg_buf(struct verbs_ep *v, void *addr, size_t len, int access,
		  struct ibv_mr **mr)
{
	int rc = rmig_memlock_reserve(&v->base, len);

	if (rc)
		return rc;
	*mr = ibv_reg_mr(v->pd, addr, len, access);
	if (!*mr) {
		rc = errno ? -errno : -ENOMEM;
		rmig_memlock_release(len);
		return rmig_set_error(&v->base, rc, "cannot register %zu bytes with %s: %s",
				      len, ibv_get_device_name(v->pd->context->device),
				      strerror(-rc));
	}
	return 0;
}

int verbs_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		 struct rmig_mr **out)
{
	struct verbs_ep *v = VERBS(ep);
	struct verbs_dom *d = v->dom;
	struct verbs_region *r;
	int rc;

	if (!v->pd || !d)
		return rmig_set_error(ep, -ENOTCONN, "register memory on a connected endpoint");
	r = calloc(1, sizeof(*r));
	if (!r)
		return rmig_set_error(ep, -ENOMEM, "out of memory for a region");
	if (d->odp) {
		/* Nothing is pinned: no memlock to count, registering costs no
		 * page walk; the device faults pages in as it reaches them. */
		r->mr = ibv_reg_mr(v->pd, addr, len, verbs_access(access) | IBV_ACCESS_ON_DEMAND);
		rc = r->mr ? 0 : rmig_set_error(ep, errno ? -errno : -ENOMEM,
						"cannot register %zu bytes on demand with %s: %s",
						len, ibv_get_device_name(v->pd->context->device),
						strerror(errno ? errno : ENOMEM));
		r->odp = 1;
	} else {
		rc = verbs_reg_buf(v, addr, len, verbs_access(access), &r->mr);
	}
	if (rc) {
		free(r);
		return rc;
	}
	r->base = (struct rmig_mr){ .ep = ep, .addr = addr, .len = len, .access = access,
				    .dom = &d->base };
	r->base.rkey = (struct rmig_rkey){ .addr = (uintptr_t)addr, .len = len,
					   .key = r->mr->rkey, .flags = access };
	pthread_mutex_lock(&d->lock);
	r->next = d->regions;
	if (r->next)
		r->next->prev = r;
	d->regions = r;
	pthread_mutex_unlock(&d->lock);
	*out = &r->base;
	return 0;
}

static int verbs_region_free(struct rmig_ep *ep, struct verbs_region *r)
{
	int rc = ibv_dereg_mr(r->mr); /* positive errno */

	if (!r->odp)
		rmig_memlock_release(r->base.len);
	free(r);
	return rc ? rmig_set_error(ep, -rc, "cannot deregister a region: %s", strerror(rc)) : 0;
}

int verbs_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	struct verbs_dom *d = VERBS(ep)->dom;
	struct verbs_region *r = (struct verbs_region *)mr;

	if (!d)
		return rmig_set_error(ep, -EINVAL, "region is not registered on this endpoint");
	pthread_mutex_lock(&d->lock);
	if (r->prev)
		r->prev->next = r->next;
	else
		d->regions = r->next;
	if (r->next)
		r->next->prev = r->prev;
	pthread_mutex_unlock(&d->lock);
	return verbs_region_free(ep, r);
}

/* No endpoint is left on it: whatever the caller left registered, then the PD. */
void verbs_dom_free(struct rmig_domain *dom)
{
	struct verbs_dom *d = VERBS_DOM(dom);

	while (d->regions) {
		struct verbs_region *r = d->regions;
		d->regions = r->next;
		verbs_region_free(NULL, r);
	}
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
