/* SPDX-License-Identifier: MIT */
/*
 * On this machine: workers bound by the plan really run where it says
 * (sched_getaffinity from inside each worker), buffers land on its node,
 * and the guest memory's node is found.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include <rdmamig/numa.h>
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct worker {
	pthread_t tid;
	struct rmig_placement *plan;
	unsigned index;
	int bound;         /* rmig_placement_bind_self's answer */
	int ncpus;         /* cpus in the thread's affinity after binding */
	int cpu;           /* the one cpu, if ncpus == 1 */
	int ran_on;        /* sched_getcpu() after yielding */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	cpu_set_t set;

	w->bound = rmig_placement_bind_self(w->plan, w->index);
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return NULL;
	w->ncpus = CPU_COUNT(&set);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			w->cpu = c;
	sched_yield();
	w->ran_on = sched_getcpu();
	return NULL;
}

/* Start the plan's workers, let each bind itself and report where it runs. */
static void run_workers(const char *vcpus, unsigned n)
{
	struct rmig_placement_opts o = { .size = sizeof(o), .workers = n, .nic = "auto",
					  .vcpus = vcpus };
	struct rmig_placement *plan;
	struct worker w[8] = { 0 };

	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct worker){ .plan = plan, .index = i, .cpu = -1, .ran_on = -1 };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
	}
	for (unsigned i = 0; i < n; i++) {
		pthread_join(w[i].tid, NULL);
		CU_ASSERT_EQUAL(w[i].bound, 0);
		CU_ASSERT_EQUAL(w[i].ncpus, 1);
		CU_ASSERT_EQUAL(w[i].cpu, rmig_placement_cpu(plan, i));
		CU_ASSERT_EQUAL(w[i].ran_on, rmig_placement_cpu(plan, i));
		if (vcpus)
			CU_ASSERT_NOT_EQUAL(w[i].cpu, atoi(vcpus));
	}
	CU_ASSERT_PTR_NULL(rmig_placement_notice(plan));
	rmig_placement_destroy(plan);
}

static void test_workers_are_bound(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	run_workers(NULL, n < 1 ? 1 : n > 8 ? 8 : (unsigned)n);
}

/* cpu 0 reserved for vCPUs: every worker on another cpu. */
static void test_workers_avoid_vcpus(void)
{
	run_workers("0", 2);
}

/* Buffers: on the plan's node, touched pages included. */
static void test_alloc_on_node(void)
{
	struct rmig_placement_opts o = { .size = sizeof(o), .nic = "auto" };
	struct rmig_placement *plan;
	hwloc_topology_t topo;
	hwloc_bitmap_t nodes;
	size_t len = 4 << 20;
	char *buf;

	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	CU_ASSERT_FATAL(rmig_placement_node(plan) >= 0);
	buf = rmig_placement_alloc(plan, len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL((uintptr_t)buf % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
	memset(buf, 1, len);
	CU_ASSERT_EQUAL_FATAL(hwloc_topology_init(&topo), 0);
	CU_ASSERT_EQUAL_FATAL(hwloc_topology_load(topo), 0);
	nodes = hwloc_bitmap_alloc();
	CU_ASSERT_EQUAL(hwloc_get_area_memlocation(topo, buf, len, nodes, HWLOC_MEMBIND_BYNODESET), 0);
	CU_ASSERT_EQUAL(hwloc_bitmap_weight(nodes), 1);
	CU_ASSERT_EQUAL(hwloc_bitmap_first(nodes), rmig_placement_node(plan));
	CU_ASSERT_PTR_NULL(rmig_placement_notice(plan));
	hwloc_bitmap_free(nodes);
	hwloc_topology_destroy(topo);
	rmig_placement_free(plan, buf, len);
	rmig_placement_destroy(plan);
}

/* The guest memory's node, from where its pages are. */
static void test_guest_memory_node(void)
{
	size_t len = 2 << 20;
	char *guest = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct rmig_placement_opts o = { .size = sizeof(o), .guest_addr = guest, .guest_len = len };
	struct rmig_placement *plan;
	char desc[4096];

	CU_ASSERT_FATAL(guest != MAP_FAILED);
	/* Untouched: no page is placed, so no node is known yet. */
	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	rmig_placement_describe(plan, desc, sizeof(desc), RMIG_PLACEMENT_JSON);
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "\"guest_node\":-1"));
	rmig_placement_destroy(plan);

	memset(guest, 7, len);
	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	rmig_placement_describe(plan, desc, sizeof(desc), RMIG_PLACEMENT_JSON);
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "\"guest_node\":0"));
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "where its pages are"));
	/* No NIC given: buffers go where the guest memory is. */
	CU_ASSERT_EQUAL(rmig_placement_node(plan), 0);
	rmig_placement_destroy(plan);
	munmap(guest, len);
}

/* The tcp backend names its NIC by local address: 127.0.0.1 is lo, not on PCI. */
static void test_nic_by_address(void)
{
	struct rmig_placement_opts o = { .size = sizeof(o), .nic = "127.0.0.1" };
	struct rmig_placement *plan;
	char desc[4096];

	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	rmig_placement_describe(plan, desc, sizeof(desc), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "nic:      network interface lo (not on PCI)"));
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "lo is a network interface with no PCI device"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_placement_why(plan, 0), "NIC locality unknown"));
	rmig_placement_destroy(plan);
}

/* A plan made on a thread pinned to cpu 1 (taskset, emulatorpin) stays on cpu 1. */
static void *plan_pinned(void *arg)
{
	struct rmig_placement_opts o = { .size = sizeof(o), .workers = 2 };
	struct rmig_placement **plan = arg;
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(1, &one);
	if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0)
		rmig_placement_plan(&o, plan);
	return NULL;
}

static void test_stays_within_affinity(void)
{
	struct rmig_placement *plan = NULL;
	pthread_t t;
	char desc[4096];

	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, plan_pinned, &plan), 0);
	pthread_join(t, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(plan);
	CU_ASSERT_EQUAL(rmig_placement_cpu(plan, 0), 1);
	CU_ASSERT_EQUAL(rmig_placement_cpu(plan, 1), 1);
	rmig_placement_describe(plan, desc, sizeof(desc), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "affinity: the planning thread may run on cpus 1 only"));
	rmig_placement_destroy(plan);

	/* And the unpinned main thread sees every cpu: no affinity line. */
	struct rmig_placement_opts o = { .size = sizeof(o) };

	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	rmig_placement_describe(plan, desc, sizeof(desc), 0);
	CU_ASSERT_PTR_NULL(strstr(desc, "affinity:"));
	rmig_placement_destroy(plan);
}

/* A local address with a port, as rmig_local_addr gives it. */
static void test_nic_by_address_and_port(void)
{
	static const char *const addrs[] = { "127.0.0.1:4444", "[::1]:4444" };
	struct rmig_placement_opts o = { .size = sizeof(o) };
	struct rmig_placement *plan;
	char desc[4096];

	for (size_t i = 0; i < 2; i++) {
		o.nic = addrs[i];
		CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
		rmig_placement_describe(plan, desc, sizeof(desc), 0);
		/* ::1 may be absent where IPv6 is off: then no interface holds it. */
		CU_ASSERT(strstr(desc, "network interface lo (not on PCI)") ||
			  (i == 1 && strstr(desc, "no interface of this machine holds address")));
		rmig_placement_destroy(plan);
	}
	o.nic = "192.0.2.254:1";
	CU_ASSERT_EQUAL_FATAL(rmig_placement_plan(&o, &plan), 0);
	rmig_placement_describe(plan, desc, sizeof(desc), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(desc, "no interface of this machine holds address 192.0.2.254:1"));
	rmig_placement_destroy(plan);
}

static const CU_TestInfo tests[] = {
	{ "workers are bound to their cpus", test_workers_are_bound },
	{ "workers avoid vCPUs", test_workers_avoid_vcpus },
	{ "buffers on the plan's node", test_alloc_on_node },
	{ "guest memory's node", test_guest_memory_node },
	{ "NIC by local address", test_nic_by_address },
	{ "NIC by local address and port", test_nic_by_address_and_port },
	{ "workers stay within the planner's affinity", test_stays_within_affinity },
	CU_TEST_INFO_NULL,
};

/* Binding is what is tested: where this process may not use 2 cpus, it cannot be. */
int main(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2 || !CPU_ISSET(0, &set) ||
	    !CPU_ISSET(1, &set)) {
		fprintf(stderr, "skip: this process may not run on cpus 0 and 1, so binding to them "
				"cannot be checked here\n");
		return RMIG_TEST_SKIP;
	}
	return rmig_test_run("numa binding", NULL, NULL, tests);
}
