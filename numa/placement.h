/* SPDX-License-Identifier: MIT */
/* numa/: the plan's insides, shared by the files of this folder only. */
#ifndef RMIG_NUMA_PLACEMENT_H
#define RMIG_NUMA_PLACEMENT_H

#include <rdmamig/numa.h>

#include <hwloc.h>
#include <stdatomic.h>
#include <stdbool.h>

#define PLACE_WHY_MAX 256

struct place_worker {
	int cpu;     /* OS number */
	int core;    /* logical index of its core, -1 if the topology has none */
	int package; /* logical index of its package, -1 if none */
	int node;    /* OS number of its NUMA node, -1 if none */
	char why[PLACE_WHY_MAX];
};

/*
 * Everything is written once by rmig_placement_plan and read-only after,
 * except the notice: the first thread to fall back claims it through
 * notice_claimed and writes it; readers check notice_ready first.
 */
struct rmig_placement {
	hwloc_topology_t topo;
	bool thissystem;  /* binding applies only to the machine we run on */
	unsigned flags;   /* RMIG_PLACEMENT_* */
	char source[192]; /* "this machine", "XML file ...", "synthetic ..." */
	char summary[128];/* "2 packages, 2 NUMA nodes, 8 cores, 16 cpus" */

	char nic[64];     /* the NIC as named (or picked by "auto"); "" none */
	char nic_desc[192];
	hwloc_obj_t anchor;   /* non-I/O object the NIC hangs off; NULL unknown */
	char locality[PLACE_WHY_MAX];

	int guest_node;       /* OS number, -1 unknown */
	char guest[PLACE_WHY_MAX];

	hwloc_bitmap_t vcpus; /* reserved cpus (OS numbers) */
	char vcpus_desc[PLACE_WHY_MAX];
	hwloc_bitmap_t allowed; /* cpus the planning thread may run on (this machine) */
	char allowed_desc[PLACE_WHY_MAX]; /* "" when that is every cpu */

	int node;             /* buffers and rings; -1 no preference */
	hwloc_bitmap_t nodeset;
	char node_why[PLACE_WHY_MAX];

	atomic_bool notice_claimed;
	atomic_bool notice_ready;
	char notice[PLACE_WHY_MAX];

	unsigned nworkers;
	struct place_worker w[];
};

/* topology.c: load the topology named by spec (NULL: this machine). */
int place_load_topology(struct rmig_placement *p, const char *spec);
/* topology.c: find the NIC, set nic, nic_desc, anchor and locality. */
void place_find_nic(struct rmig_placement *p, const char *nic);
/* topology.c: where the guest memory lives; sets guest_node and guest. */
int place_find_guest(struct rmig_placement *p, const struct rmig_placement_opts *o);
/* topology.c: parse a list "0-3,8" into set; -EINVAL on anything else. */
int place_parse_list(const char *s, hwloc_bitmap_t set);
/* topology.c: "package 1", "node 2", "the machine"... */
void place_obj_label(hwloc_obj_t obj, char *buf, size_t len);
/* topology.c: OS number of the first NUMA node holding cpu, or -1. */
int place_cpu_node(hwloc_topology_t topo, int cpu);

/* choose.c: pick the buffer node and a cpu per worker. */
int place_choose(struct rmig_placement *p);

/* bind.c: record the first fallback and print it once. */
void place_notice(struct rmig_placement *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
