/* SPDX-License-Identifier: MIT */
/*
 * rdmamig: placement of transfer workers and buffers by topology (hwloc).
 *
 * A plan answers, once per migration: which CPU each of N transfer workers
 * runs on, and which NUMA node holds the transfer buffers and control
 * rings.  Workers go near the NIC (its PCI locality), never on CPUs the
 * caller reserves for vCPUs; buffers go on the NIC's node.  Every choice
 * carries a one-line reason.
 *
 * Numbering: CPUs and NUMA nodes are the operating system's numbers (what
 * taskset, numactl and /sys use); packages and cores are hwloc's logical
 * indexes (what lstopo prints as L#).
 *
 * A plan may describe this machine, or another one (an hwloc XML file or a
 * synthetic description, for tests and for "what would happen there").
 * Only a plan of this machine binds threads and memory; the others answer
 * the questions and bind nothing.  On this machine workers also stay
 * within the cpus the thread making the plan may run on (taskset, a cgroup
 * or libvirt's emulatorpin decided where the hypervisor's threads go).
 *
 * Thread safety: a plan is read-only once made; any thread may call the
 * functions below on it concurrently, until rmig_placement_destroy.
 */
#ifndef RDMAMIG_NUMA_H
#define RDMAMIG_NUMA_H

#include <rdmamig/export.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rmig_placement;

/* Most workers one plan places. */
#define RMIG_PLACEMENT_MAX_WORKERS 256

/* rmig_placement_opts.flags */
enum rmig_placement_flag {
	/* Never print the one-time "binding unsupported" notice on stderr
	 * (rmig_placement_notice still returns it). */
	RMIG_PLACEMENT_QUIET = 1u << 0,
};

/* rmig_placement_describe flags */
enum rmig_placement_describe_flag {
	RMIG_PLACEMENT_JSON = 1u << 0, /* one JSON object instead of text */
};

/* Options for rmig_placement_plan.  Zero-initialise, set size = sizeof. */
struct rmig_placement_opts {
	size_t size;
	/* Transfer workers (one per channel) to place; 0 means 1. */
	unsigned workers;
	/*
	 * The NIC the migration uses: an RDMA device name ("mlx5_0", from
	 * ibv_get_device_name), a network interface ("eth0"), a local IP
	 * address with or without port ("192.0.2.2:4444", "[fe80::1]:4444",
	 * as rmig_local_addr gives it: the interface holding it), or a PCI
	 * bus id ("0000:3b:00.0", e.g. from libfabric's fi_info->nic->bus_attr).  "auto": the first RDMA device, else the
	 * first network interface on PCI.  NULL: unknown (no NIC locality).
	 */
	const char *nic;
	/* CPUs reserved for vCPUs, in list form "0-3,8"; NULL or "": none. */
	const char *vcpus;
	/*
	 * NULL: this machine.  Otherwise a path to an hwloc XML file, or a
	 * synthetic description ("pack:2 [numa] core:4 pu:2").
	 */
	const char *topology;
	/* Guest RAM on this machine: its NUMA node is looked up (optional). */
	const void *guest_addr;
	size_t guest_len;
	/* Or the guest RAM's NUMA nodes as a list ("1"), for other topologies. */
	const char *guest_nodes;
	unsigned flags; /* RMIG_PLACEMENT_* */
};

/**
 * Make a placement plan.
 *
 * @param opts  the options (NULL: one worker, unknown NIC, this machine)
 * @param plan  receives the plan; free it with rmig_placement_destroy
 * @return 0, or -EINVAL (bad option: a cpu list, a topology that is neither
 *         a readable XML file nor a synthetic description), -ENOSPC (every
 *         CPU is reserved for vCPUs), -ENOMEM; rmig_last_error() says why.
 *         An unknown or unlocated NIC is not an error: the plan says so and
 *         uses the whole machine.
 */
RMIG_EXPORT int rmig_placement_plan(const struct rmig_placement_opts *opts,
			struct rmig_placement **plan);

/** Free a plan (NULL is fine).  Memory from rmig_placement_alloc must be freed first. */
RMIG_EXPORT void rmig_placement_destroy(struct rmig_placement *plan);

/** Number of workers the plan places. */
RMIG_EXPORT unsigned rmig_placement_workers(const struct rmig_placement *plan);

/** CPU (OS number) of worker i, or -EINVAL if i is out of range. */
RMIG_EXPORT int rmig_placement_cpu(const struct rmig_placement *plan, unsigned i);

/** Why worker i got its CPU (one line), or NULL if i is out of range. */
RMIG_EXPORT const char *rmig_placement_why(const struct rmig_placement *plan, unsigned i);

/** NUMA node (OS number) for buffers and rings, or -1 if none is preferred. */
RMIG_EXPORT int rmig_placement_node(const struct rmig_placement *plan);

/**
 * Bind the calling thread to worker i's CPU.  Call it first thing in the
 * worker thread.
 *
 * @return 0 bound; 1 left unbound because binding is unsupported here, was
 *         refused, or the plan describes another machine (the reason is
 *         printed once per plan unless RMIG_PLACEMENT_QUIET, and kept for
 *         rmig_placement_notice); -EINVAL if i is out of range.
 */
RMIG_EXPORT int rmig_placement_bind_self(struct rmig_placement *plan, unsigned i);

/**
 * Allocate len bytes, page-aligned, on the plan's node (transfer buffers,
 * control rings).  Where memory binding is unsupported the memory is
 * allocated unbound (noted once, like rmig_placement_bind_self).
 *
 * @return the memory, or NULL (errno ENOMEM) if none could be allocated.
 */
RMIG_EXPORT void *rmig_placement_alloc(struct rmig_placement *plan, size_t len);

/** Free memory from rmig_placement_alloc (len as allocated). */
RMIG_EXPORT void rmig_placement_free(struct rmig_placement *plan, void *addr, size_t len);

/** The first fallback notice (binding or allocation), or NULL if none happened. */
RMIG_EXPORT const char *rmig_placement_notice(const struct rmig_placement *plan);

/**
 * Describe the plan: the topology, the NIC and its locality, the guest
 * memory's node, the buffer node and each worker's CPU, each with why.
 *
 * @return the length of the whole description (like snprintf: if it is
 *         >= len the text was truncated), or -EINVAL.
 */
RMIG_EXPORT int rmig_placement_describe(const struct rmig_placement *plan, char *buf, size_t len,
			    unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
