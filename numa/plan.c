/* SPDX-License-Identifier: MIT */
/* Making a plan, reading it, freeing it. */
#define _GNU_SOURCE
#include "placement.h"

#include <rdmamig/transport.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy what the caller's (possibly older, smaller) options struct holds. */
static int copy_opts(const struct rmig_placement_opts *in, struct rmig_placement_opts *o)
{
	memset(o, 0, sizeof(*o));
	if (!in)
		return 0;
	if (in->size < offsetof(struct rmig_placement_opts, nic))
		return rmig_set_error(NULL, -EINVAL,
				      "placement options need size = sizeof(struct rmig_placement_opts)");
	memcpy(o, in, in->size < sizeof(*o) ? in->size : sizeof(*o));
	return 0;
}

static int set_vcpus(struct rmig_placement *p, const char *list)
{
	char in[96];

	if (!(p->vcpus = hwloc_bitmap_alloc()) || !(p->nodeset = hwloc_bitmap_alloc()))
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a cpuset");
	if (place_parse_list(list, p->vcpus) < 0)
		return rmig_set_error(NULL, -EINVAL,
				      "vCPU set '%s' is not a cpu list such as \"0-3,8\"", list);
	if (hwloc_bitmap_iszero(p->vcpus)) {
		snprintf(p->vcpus_desc, sizeof(p->vcpus_desc), "none reserved");
		return 0;
	}
	hwloc_bitmap_list_snprintf(in, sizeof(in), p->vcpus);
	if (hwloc_bitmap_isincluded(p->vcpus, hwloc_topology_get_topology_cpuset(p->topo)))
		snprintf(p->vcpus_desc, sizeof(p->vcpus_desc), "%s reserved, never used by workers", in);
	else
		snprintf(p->vcpus_desc, sizeof(p->vcpus_desc),
			 "%s reserved, never used by workers (some are not in this topology)", in);
	return 0;
}

/*
 * On this machine workers stay within the cpus the planning thread may run
 * on: taskset, a cgroup or libvirt's emulatorpin said where the
 * hypervisor's own threads belong.
 */
static int set_allowed(struct rmig_placement *p)
{
	hwloc_bitmap_t mine;
	char list[96];

	p->allowed = hwloc_bitmap_dup(hwloc_topology_get_topology_cpuset(p->topo));
	if (!p->allowed || !(mine = hwloc_bitmap_alloc()))
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a cpuset");
	if (p->thissystem && hwloc_get_cpubind(p->topo, mine, HWLOC_CPUBIND_THREAD) == 0 &&
	    hwloc_bitmap_intersects(mine, p->allowed) && !hwloc_bitmap_isincluded(p->allowed, mine)) {
		hwloc_bitmap_and(p->allowed, p->allowed, mine);
		hwloc_bitmap_list_snprintf(list, sizeof(list), p->allowed);
		snprintf(p->allowed_desc, sizeof(p->allowed_desc),
			 "the planning thread may run on cpus %s only (taskset, cgroup or "
			 "emulatorpin): workers stay there", list);
	}
	hwloc_bitmap_free(mine);
	return 0;
}

int rmig_placement_plan(const struct rmig_placement_opts *opts, struct rmig_placement **plan)
{
	struct rmig_placement_opts o;
	struct rmig_placement *p;
	int rc;

	if (!plan)
		return rmig_set_error(NULL, -EINVAL, "rmig_placement_plan needs a place to store the plan");
	*plan = NULL;
	rc = copy_opts(opts, &o);
	if (rc < 0)
		return rc;
	if (o.workers == 0)
		o.workers = 1;
	if (o.workers > RMIG_PLACEMENT_MAX_WORKERS)
		return rmig_set_error(NULL, -EINVAL, "%u workers asked; a plan places at most %d",
				      o.workers, RMIG_PLACEMENT_MAX_WORKERS);
	p = calloc(1, sizeof(*p) + o.workers * sizeof(p->w[0]));
	if (!p)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a placement plan");
	p->nworkers = o.workers;
	p->flags = o.flags;
	rc = place_load_topology(p, o.topology);
	if (rc < 0)
		goto destroy_plan;
	rc = set_vcpus(p, o.vcpus);
	if (rc < 0)
		goto destroy_plan;
	rc = set_allowed(p);
	if (rc < 0)
		goto destroy_plan;
	place_find_nic(p, o.nic);
	rc = place_find_guest(p, &o);
	if (rc < 0)
		goto destroy_plan;
	rc = place_choose(p);
	if (rc < 0)
		goto destroy_plan;
	*plan = p;
	return 0;
destroy_plan:
	rmig_placement_destroy(p);
	return rc;
}

void rmig_placement_destroy(struct rmig_placement *p)
{
	if (!p)
		return;
	hwloc_bitmap_free(p->vcpus);
	hwloc_bitmap_free(p->allowed);
	hwloc_bitmap_free(p->nodeset);
	if (p->topo)
		hwloc_topology_destroy(p->topo);
	free(p);
}

unsigned rmig_placement_workers(const struct rmig_placement *p)
{
	return p ? p->nworkers : 0;
}

int rmig_placement_cpu(const struct rmig_placement *p, unsigned i)
{
	return p && i < p->nworkers ? p->w[i].cpu : -EINVAL;
}

const char *rmig_placement_why(const struct rmig_placement *p, unsigned i)
{
	return p && i < p->nworkers ? p->w[i].why : NULL;
}

int rmig_placement_node(const struct rmig_placement *p)
{
	return p ? p->node : -1;
}
