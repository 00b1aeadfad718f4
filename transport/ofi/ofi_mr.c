/* SPDX-License-Identifier: MIT */
/*
 * Memory registration, honouring the provider's mr_mode:
 *   FI_MR_LOCAL      local buffers carry fi_mr_desc (ofi_region.desc)
 *   FI_MR_VIRT_ADDR  the rkey carries the base virtual address; the peer
 *                    targets addr + offset (else addr 0: offsets)
 *   FI_MR_PROV_KEY   the provider picks the key (fi_mr_key); else ours,
 *                    random over the domain's mr_key_size: the fabric
 *                    endpoint listens on its own port (rxm) or shared-memory
 *                    name (shm) that anyone who can reach it may write to
 *                    with a key, authenticated or not, so a counter (1, 2,
 *                    ...) with offsets from 0 would let a stranger write
 *                    into the first region (docs/security.md)
 *   FI_MR_ENDPOINT   the region is bound to the endpoint and enabled
 *   FI_MR_ALLOCATED  regions must be backed by allocated memory: the caller
 *                    registers only memory it owns, our buffers are touched
 *   FI_MR_RAW        refused when the domain is opened (ofi_fabric.c)
 * Access is the least needed: FI_REMOTE_WRITE only for regions the peer
 * writes into, FI_REMOTE_READ only for regions it reads; regions with no
 * remote right get FI_WRITE | FI_SEND (sources of our writes), and FI_READ
 * (the destination of our reads) with RMIG_ACCESS_LOCAL_WRITE.
 */
#define _GNU_SOURCE
#include "ofi.h"

#include "../../common/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

/* A random requested key that fits the domain's key size (never 0). */
static uint64_t ofi_random_key(const struct ofi_ep *o)
{
	uint64_t k = 0;

	if (getrandom(&k, sizeof(k), 0) != sizeof(k))
		k = rmig_now_ns() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&k;
	if (o->prov.key_size && o->prov.key_size < sizeof(k))
		k &= (1ull << (8 * o->prov.key_size)) - 1;
	return k ? k : 1;
}

/* Register len bytes with access; caller holds o->lock. */
int ofi_reg(struct ofi_ep *o, void *addr, size_t len, uint64_t access,
	    struct fid_mr **mr, void **desc, uint64_t *key)
{
	uint64_t want = ofi_random_key(o);
	int rc;

	rc = fi_mr_reg(o->domain, addr, len, access, 0, want, 0, mr, NULL);
	/* A random key taken already (only with tiny key sizes): draw again. */
	for (int i = 0; rc == -FI_ENOKEY && i < 8; i++) {
		want = ofi_random_key(o);
		rc = fi_mr_reg(o->domain, addr, len, access, 0, want, 0, mr, NULL);
	}
	if (rc)
		return rmig_set_error(&o->base, ofi_errno(rc),
				      "ofi/%s: cannot register %zu bytes: %s", o->prov.name,
				      len, fi_strerror(-rc));
	if (o->prov.mr_mode & FI_MR_ENDPOINT) {
		rc = fi_mr_bind(*mr, &o->ep->fid, 0);
		if (!rc)
			rc = fi_mr_enable(*mr);
		if (rc) {
			fi_close(&(*mr)->fid);
			return rmig_set_error(&o->base, ofi_errno(rc),
					      "ofi/%s: cannot bind a region to the endpoint: %s",
					      o->prov.name, fi_strerror(-rc));
		}
	}
	*desc = fi_mr_desc(*mr);
	*key = o->prov.mr_mode & FI_MR_PROV_KEY ? fi_mr_key(*mr) : want;
	return 0;
}

int ofi_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
	       struct rmig_mr **mr)
{
	struct ofi_ep *o = OFI(ep);
	struct ofi_region *r = calloc(1, sizeof(*r));
	uint64_t fiacc = 0, key;
	int rc;

	if (!r)
		return rmig_set_error(ep, -ENOMEM, "out of memory for a region");
	if (access & RMIG_ACCESS_REMOTE_WRITE)
		fiacc |= FI_REMOTE_WRITE;
	if (access & RMIG_ACCESS_REMOTE_READ)
		fiacc |= FI_REMOTE_READ;
	if (!fiacc)
		fiacc = FI_WRITE | FI_SEND;
	if (access & RMIG_ACCESS_LOCAL_WRITE)
		fiacc |= FI_READ;
	if (o->prov.pins) {
		rc = rmig_memlock_reserve(ep, len);
		if (rc)
			goto free_region;
		r->pinned = len;
	}
	pthread_mutex_lock(&o->lock);
	rc = ofi_reg(o, addr, len, fiacc, &r->mr, &r->desc, &key);
	if (!rc) {
		pthread_mutex_lock(&o->dom->lock);
		r->next = o->dom->regions;
		o->dom->regions = r;
		pthread_mutex_unlock(&o->dom->lock);
	}
	pthread_mutex_unlock(&o->lock);
	if (rc)
		goto release_pinned;
	r->base = (struct rmig_mr){ .ep = ep, .addr = addr, .len = len, .access = access,
				    .dom = ep->dom };
	r->base.rkey = (struct rmig_rkey){
		.addr = o->prov.mr_mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)addr : 0,
		.len = len, .key = key, .id = 0, .flags = access };
	*mr = &r->base;
	return 0;

release_pinned:
	if (r->pinned)
		rmig_memlock_release(r->pinned);
free_region:
	free(r);
	return rc;
}

int ofi_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	struct ofi_ep *o = OFI(ep);
	struct ofi_region *r = (struct ofi_region *)mr, **pp;
	int found, rc = 0;

	if (!o->dom)
		return rmig_set_error(ep, -EINVAL, "region is not registered on this endpoint");
	pthread_mutex_lock(&o->lock);
	pthread_mutex_lock(&o->dom->lock);
	for (pp = &o->dom->regions; *pp && *pp != r; pp = &(*pp)->next)
		;
	found = *pp != NULL;
	if (found) {
		*pp = r->next;
		rc = fi_close(&r->mr->fid);
	}
	pthread_mutex_unlock(&o->dom->lock);
	pthread_mutex_unlock(&o->lock);
	if (!found)
		return rmig_set_error(ep, -EINVAL, "region is not registered on this endpoint");
	if (r->pinned)
		rmig_memlock_release(r->pinned);
	free(r);
	if (rc)
		return rmig_set_error(ep, ofi_errno(rc), "ofi/%s: cannot deregister a region: %s",
				      o->prov.name, fi_strerror(-rc));
	return 0;
}
