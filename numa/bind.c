/* SPDX-License-Identifier: MIT */
/*
 * Applying a plan: bind a worker thread to its cpu, allocate buffers on the
 * plan's node.  Where either is impossible the work goes on unbound and the
 * first such fallback is told once.
 */
#define _GNU_SOURCE
#include "placement.h"
#include "../common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void place_notice(struct rmig_placement *p, const char *fmt, ...)
{
	va_list ap;

	/* Only the first fallback of a plan writes the notice, and only once. */
	if (atomic_exchange(&p->notice_claimed, true))
		return;
	va_start(ap, fmt);
	vsnprintf(p->notice, sizeof(p->notice), fmt, ap);
	va_end(ap);
	atomic_store(&p->notice_ready, true);
	if (!(p->flags & RMIG_PLACEMENT_QUIET))
		rmig_log(RMIG_LOG_WARN, "%s", p->notice);
}

const char *rmig_placement_notice(const struct rmig_placement *p)
{
	return p && atomic_load(&((struct rmig_placement *)p)->notice_ready) ? p->notice : NULL;
}

int rmig_placement_bind_self(struct rmig_placement *p, unsigned i)
{
	const struct hwloc_topology_support *s;
	hwloc_obj_t pu;

	if (!p || i >= p->nworkers)
		return -EINVAL;
	if (!p->thissystem) {
		place_notice(p, "the plan describes %s, not this machine: workers run unbound",
			     p->source);
		return 1;
	}
	s = hwloc_topology_get_support(p->topo);
	if (!s->cpubind->set_thisthread_cpubind) {
		place_notice(p, "this system cannot bind threads to cpus: workers run unbound");
		return 1;
	}
	pu = hwloc_get_pu_obj_by_os_index(p->topo, (unsigned)p->w[i].cpu);
	if (!pu || hwloc_set_cpubind(p->topo, pu->cpuset, HWLOC_CPUBIND_THREAD) < 0) {
		place_notice(p, "cannot bind worker %u to cpu %d (%s; a cgroup cpuset may forbid it): "
			     "workers run unbound", i, p->w[i].cpu, strerror(pu ? errno : ENOENT));
		return 1;
	}
	return 0;
}

void *rmig_placement_alloc(struct rmig_placement *p, size_t len)
{
	const struct hwloc_topology_support *s;
	void *m;

	if (!p || !len) {
		errno = EINVAL;
		return NULL;
	}
	if (p->node < 0) /* no preference: nothing to fall back from */
		return hwloc_alloc(p->topo, len);
	s = hwloc_topology_get_support(p->topo);
	if (!p->thissystem) {
		place_notice(p, "the plan describes %s, not this machine: buffers are allocated unbound",
			     p->source);
	} else if (!s->membind->alloc_membind || !s->membind->bind_membind) {
		place_notice(p, "this system cannot bind memory to a NUMA node: buffers are allocated unbound");
	} else {
		/* STRICT: fail rather than silently land elsewhere, so we can say so. */
		m = hwloc_alloc_membind(p->topo, len, p->nodeset, HWLOC_MEMBIND_BIND,
					HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_STRICT);
		if (m)
			return m;
		place_notice(p, "cannot allocate %zu bytes on node %d (%s): buffers are allocated unbound",
			     len, p->node, strerror(errno));
	}
	return hwloc_alloc(p->topo, len);
}

void rmig_placement_free(struct rmig_placement *p, void *addr, size_t len)
{
	if (p && addr)
		hwloc_free(p->topo, addr, len);
}
