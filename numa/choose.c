/* SPDX-License-Identifier: MIT */
/*
 * Choosing: one cpu per worker, then the buffer node.
 *
 * Workers start from the NIC's locality (or, when it is unknown or the
 * whole machine, from the guest memory's node) and widen level by level:
 * that object, its package, the machine.  Within a level a worker first
 * takes a core nobody uses, then a core whose other cpu is a vCPU, then a
 * sibling of another worker; it moves outward only when the level has no
 * free cpu left.  vCPU cpus, and cpus outside the planning thread's
 * affinity, are never chosen.
 */
#define _GNU_SOURCE
#include "placement.h"

#include <rdmamig/transport.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_LEVELS 3

struct level {
	hwloc_obj_t obj;
	char label[64];
};

enum tier {
	TIER_OWN_CORE,     /* nothing else on that core */
	TIER_VCPU_SIBLING, /* its core's other cpu runs a vCPU */
	TIER_WORKER_SIBLING,/* its core's other cpu runs an earlier worker */
	NTIERS,
};

/* Reasons nest other reasons; a cut at PLACE_WHY_MAX is acceptable. */
static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Levels: near object, its package, the machine; each strictly wider. */
static int make_levels(struct rmig_placement *p, struct level *lv)
{
	hwloc_obj_t root = hwloc_get_root_obj(p->topo), near = p->anchor, pkg;
	int n = 0;

	/* The NIC does not narrow it down: start where the guest memory is. */
	if ((!near || near == root) && p->guest_node >= 0) {
		hwloc_obj_t numa = hwloc_get_numanode_obj_by_os_index(p->topo, (unsigned)p->guest_node);

		near = numa ? numa->parent : NULL;
	}
	if (near && near != root) {
		lv[n].obj = near;
		place_obj_label(near, lv[n].label, sizeof(lv[n].label));
		n++;
		pkg = hwloc_get_ancestor_obj_by_type(p->topo, HWLOC_OBJ_PACKAGE, near);
		if (near->type == HWLOC_OBJ_PACKAGE)
			pkg = NULL;
		if (pkg && !hwloc_bitmap_isequal(pkg->cpuset, near->cpuset) &&
		    !hwloc_bitmap_isequal(pkg->cpuset, root->cpuset)) {
			lv[n].obj = pkg;
			place_obj_label(pkg, lv[n].label, sizeof(lv[n].label));
			n++;
		}
	}
	lv[n].obj = root;
	snprintf(lv[n].label, sizeof(lv[n].label), "the machine");
	return n + 1;
}

/*
 * Buffers and rings: on the NIC's node.  Where the NIC's locality spans
 * several nodes: the guest's if among them, else worker 0's.  NIC locality
 * unknown: the guest's node, else the only node, else none (first touch).
 */
static void choose_node(struct rmig_placement *p)
{
	hwloc_const_nodeset_t all = hwloc_topology_get_topology_nodeset(p->topo);
	int w0 = p->w[0].node;
	char label[64], list[64];

	p->node = -1;
	if (p->anchor && !hwloc_bitmap_iszero(p->anchor->nodeset)) {
		hwloc_const_nodeset_t near = p->anchor->nodeset;

		place_obj_label(p->anchor, label, sizeof(label));
		hwloc_bitmap_list_snprintf(list, sizeof(list), near);
		if (hwloc_bitmap_weight(near) == 1) {
			p->node = hwloc_bitmap_first(near);
			say(p->node_why, sizeof(p->node_why), "the NIC's node (%s holds node %s)",
			    label, list);
		} else if (p->guest_node >= 0 && hwloc_bitmap_isset(near, (unsigned)p->guest_node)) {
			p->node = p->guest_node;
			say(p->node_why, sizeof(p->node_why),
			    "the NIC is local to nodes %s (%s); node %d holds the guest memory",
			    list, label, p->node);
		} else {
			p->node = w0 >= 0 && hwloc_bitmap_isset(near, (unsigned)w0) ? w0
										 : hwloc_bitmap_first(near);
			say(p->node_why, sizeof(p->node_why),
			    "the NIC is local to nodes %s (%s); node %d %s", list, label, p->node,
			    p->node == w0 ? "holds worker 0" : "is the first");
		}
	} else if (p->guest_node >= 0) {
		p->node = p->guest_node;
		say(p->node_why, sizeof(p->node_why),
		    "NIC locality unknown; node %d holds the guest memory", p->node);
	} else if (hwloc_bitmap_weight(all) == 1) {
		p->node = hwloc_bitmap_first(all);
		say(p->node_why, sizeof(p->node_why), "NIC locality unknown; the machine's only node");
	} else {
		say(p->node_why, sizeof(p->node_why),
		    "NIC and guest locality unknown: no node preferred, pages go where first touched");
	}
	if (p->node >= 0)
		hwloc_bitmap_only(p->nodeset, (unsigned)p->node);
}

/* The cpus sharing cpu's core (just cpu if the topology has no cores). */
static hwloc_const_cpuset_t core_cpus(hwloc_topology_t t, int cpu, hwloc_obj_t *core)
{
	hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(t, (unsigned)cpu);

	*core = hwloc_get_ancestor_obj_by_type(t, HWLOC_OBJ_CORE, pu);
	return *core ? (*core)->cpuset : pu->cpuset;
}

/* The first free cpu of set in the given tier, or -1. */
static int first_in_tier(struct rmig_placement *p, hwloc_const_cpuset_t set,
			 hwloc_const_cpuset_t taken, enum tier tier)
{
	int cpu;

	hwloc_bitmap_foreach_begin(cpu, set) {
		hwloc_obj_t core;
		hwloc_const_cpuset_t sib;

		if (hwloc_bitmap_isset(taken, (unsigned)cpu) || hwloc_bitmap_isset(p->vcpus, (unsigned)cpu) ||
		    !hwloc_bitmap_isset(p->allowed, (unsigned)cpu))
			continue;
		sib = core_cpus(p->topo, cpu, &core);
		if (tier == TIER_WORKER_SIBLING)
			return cpu;
		if (hwloc_bitmap_intersects(sib, taken))
			continue;
		if (tier == TIER_VCPU_SIBLING || !hwloc_bitmap_intersects(sib, p->vcpus))
			return cpu;
	} hwloc_bitmap_foreach_end();
	return -1;
}

/* Why the nearer level could not host the worker: who holds its cpus. */
static void nearer_full(struct rmig_placement *p, const struct level *lv,
			hwloc_const_cpuset_t taken, char *buf, size_t len)
{
	const char *who[3];
	int n = 0;
	char cpus[64];

	if (hwloc_bitmap_intersects(lv->obj->cpuset, p->vcpus))
		who[n++] = "reserved for vCPUs";
	if (!hwloc_bitmap_isincluded(lv->obj->cpuset, p->allowed))
		who[n++] = "outside the planning thread's cpus";
	if (hwloc_bitmap_intersects(lv->obj->cpuset, taken))
		who[n++] = "an earlier worker's";
	hwloc_bitmap_list_snprintf(cpus, sizeof(cpus), lv->obj->cpuset);
	say(buf, len, "every cpu of %s (%s) is %s%s%s%s%s", lv->label, cpus, who[0],
	    n > 1 ? " or " : "", n > 1 ? who[1] : "", n > 2 ? " or " : "", n > 2 ? who[2] : "");
}

static void fill_worker(struct rmig_placement *p, struct place_worker *w, int cpu)
{
	hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(p->topo, (unsigned)cpu), core, pkg;

	core = hwloc_get_ancestor_obj_by_type(p->topo, HWLOC_OBJ_CORE, pu);
	pkg = hwloc_get_ancestor_obj_by_type(p->topo, HWLOC_OBJ_PACKAGE, pu);
	w->cpu = cpu;
	w->core = core ? (int)core->logical_index : -1;
	w->package = pkg ? (int)pkg->logical_index : -1;
	w->node = place_cpu_node(p->topo, cpu);
}

static const char *const tier_why[NTIERS] = {
	[TIER_OWN_CORE] = "a core of its own",
	[TIER_VCPU_SIBLING] = "no free core left there, shares its core with a vCPU",
	[TIER_WORKER_SIBLING] = "no free core left there, shares its core with an earlier worker",
};

/* Where level li stands: near the NIC, near the guest, or anywhere. */
static void where(struct rmig_placement *p, const struct level *lv, int li, int nlv,
		  hwloc_const_cpuset_t taken, char *buf, size_t len)
{
	char full[PLACE_WHY_MAX];

	if (li == 0 && nlv == 1)
		snprintf(buf, len, "%s", !p->anchor ? "on the machine (NIC locality unknown)"
				       : "on the machine (the NIC is local to all of it)");
	else if (li == 0)
		say(buf, len, "%s (%s)", lv[0].obj == p->anchor ? "near the NIC" : "near the guest memory",
		    lv[0].label);
	else {
		nearer_full(p, &lv[li - 1], taken, full, sizeof(full));
		say(buf, len, "on %s, as %s", lv[li].label, full);
	}
}

static void explain(struct place_worker *w, const char *whr, const char *tier)
{
	char loc[96];
	size_t n = 0;

	n += (size_t)snprintf(loc + n, sizeof(loc) - n, "cpu %d (", w->cpu);
	if (w->core >= 0)
		n += (size_t)snprintf(loc + n, sizeof(loc) - n, "core %d, ", w->core);
	if (w->package >= 0)
		n += (size_t)snprintf(loc + n, sizeof(loc) - n, "package %d, ", w->package);
	snprintf(loc + n, sizeof(loc) - n, "node %d)", w->node);
	say(w->why, sizeof(w->why), "%s: %s; %s", loc, whr, tier);
}

/* One worker: the nearest level with a free cpu, the best tier in it. */
static int pick(struct rmig_placement *p, const struct level *lv, int nlv,
		hwloc_cpuset_t taken, struct place_worker *w)
{
	char whr[PLACE_WHY_MAX];

	for (int li = 0; li < nlv; li++)
		for (int t = 0; t < NTIERS; t++) {
			int cpu = first_in_tier(p, lv[li].obj->cpuset, taken, t);

			if (cpu < 0)
				continue;
			fill_worker(p, w, cpu);
			where(p, lv, li, nlv, taken, whr, sizeof(whr));
			explain(w, whr, tier_why[t]);
			hwloc_bitmap_set(taken, (unsigned)cpu);
			return 0;
		}
	return -ENOSPC;
}

int place_choose(struct rmig_placement *p)
{
	struct level lv[MAX_LEVELS];
	hwloc_cpuset_t taken = hwloc_bitmap_alloc();
	int nlv, placed = 0, rc = 0;
	char vc[64], al[64];

	if (!taken)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a cpuset");
	nlv = make_levels(p, lv);
	for (unsigned i = 0; i < p->nworkers; i++) {
		struct place_worker *w = &p->w[i], *first;

		if (pick(p, lv, nlv, taken, w) == 0) {
			placed++;
			continue;
		}
		if (!placed) {
			hwloc_bitmap_list_snprintf(vc, sizeof(vc), p->vcpus);
			hwloc_bitmap_list_snprintf(al, sizeof(al), p->allowed);
			rc = rmig_set_error(NULL, -ENOSPC,
					    "every cpu the workers may use on %s (%s) is reserved for vCPUs (%s): "
					    "leave at least one out of the vCPU set", p->source, al, vc);
			goto free_taken;
		}
		/* More workers than free cpus: share, round-robin over the placed ones. */
		first = &p->w[i % (unsigned)placed];
		*w = *first;
		snprintf(w->why, sizeof(w->why),
			 "cpu %d: more workers than free cpus (%d), shares worker %u's cpu", first->cpu,
			 placed, i % (unsigned)placed);
	}
	choose_node(p);
free_taken:
	hwloc_bitmap_free(taken);
	return rc;
}
