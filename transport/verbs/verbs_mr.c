/* SPDX-License-Identifier: MIT */
/*
 * Memory registration with the least access each region needs.  A region
 * the peer writes into gets LOCAL_WRITE|REMOTE_WRITE (the HCA writes it on
 * the peer's behalf); a region that is only the source of our writes is
 * only read by the local HCA, which needs no access flag at all: no rkey it
 * hands out opens it to anyone.
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
	struct verbs_region *r;
	int rc;

	if (!v->pd)
		return rmig_set_error(ep, -ENOTCONN, "register memory on a connected endpoint");
	r = calloc(1, sizeof(*r));
	if (!r)
		return rmig_set_error(ep, -ENOMEM, "out of memory for a region");
	rc = verbs_reg_buf(v, addr, len, verbs_access(access), &r->mr);
	if (rc) {
		free(r);
		return rc;
	}
	r->base = (struct rmig_mr){ .ep = ep, .addr = addr, .len = len, .access = access };
	r->base.rkey = (struct rmig_rkey){ .addr = (uintptr_t)addr, .len = len,
					   .key = r->mr->rkey, .flags = access };
	pthread_mutex_lock(&v->lock);
	r->next = v->regions;
	if (r->next)
		r->next->prev = r;
	v->regions = r;
	pthread_mutex_unlock(&v->lock);
	*out = &r->base;
	return 0;
}

static int verbs_region_free(struct verbs_ep *v, struct verbs_region *r)
{
	int rc = ibv_dereg_mr(r->mr); /* positive errno */

	rmig_memlock_release(r->base.len);
	free(r);
	return rc ? rmig_set_error(&v->base, -rc, "cannot deregister a region: %s",
				   strerror(rc))
		  : 0;
}

int verbs_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	struct verbs_ep *v = VERBS(ep);
	struct verbs_region *r = (struct verbs_region *)mr;

	pthread_mutex_lock(&v->lock);
	if (r->prev)
		r->prev->next = r->next;
	else
		v->regions = r->next;
	if (r->next)
		r->next->prev = r->prev;
	pthread_mutex_unlock(&v->lock);
	return verbs_region_free(v, r);
}

/* On close: whatever the caller left registered (the PD cannot go before). */
void verbs_dereg_all(struct verbs_ep *v)
{
	while (v->regions) {
		struct verbs_region *r = v->regions;
		v->regions = r->next;
		verbs_region_free(v, r);
	}
}
