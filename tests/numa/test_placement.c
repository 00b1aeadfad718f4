/* SPDX-License-Identifier: MIT */
/*
 * Placement on machines CI does not have: hwloc XML fixtures (topologies/,
 * made by generate.py) and synthetic descriptions.  Every test asserts the
 * exact cpus and node chosen.
 */
#include "testutil.h"
#include <rdmamig/numa.h>
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TWO_SOCKET RMIG_TOPO_DIR "/two-socket.xml"
#define TWO_SOCKET_SMT RMIG_TOPO_DIR "/two-socket-smt.xml"
#define FOUR_NUMA RMIG_TOPO_DIR "/four-numa.xml"

static struct rmig_placement *plan_of(const char *topo, const char *nic, unsigned workers,
				      const char *vcpus, const char *guest_nodes)
{
	struct rmig_placement_opts o = {
		.size = sizeof(o), .workers = workers, .nic = nic, .vcpus = vcpus,
		.topology = topo, .guest_nodes = guest_nodes, .flags = RMIG_PLACEMENT_QUIET,
	};
	struct rmig_placement *p = NULL;
	int rc = rmig_placement_plan(&o, &p);

	if (rc)
		fprintf(stderr, "plan failed: %d %s\n", rc, rmig_last_error());
	return p;
}

/* The plan's cpus, in worker order, as "4,5,6". */
static const char *cpus_of(const struct rmig_placement *p)
{
	static char buf[256];
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < rmig_placement_workers(p) && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%d", i ? "," : "",
				      rmig_placement_cpu(p, i));
	return buf;
}

static int why_has(const struct rmig_placement *p, unsigned i, const char *what)
{
	const char *why = rmig_placement_why(p, i);

	if (!why || !strstr(why, what)) {
		fprintf(stderr, "worker %u: '%s' lacks '%s'\n", i, why ? why : "(null)", what);
		return 0;
	}
	return 1;
}

static int describes(const struct rmig_placement *p, unsigned flags, const char *what)
{
	char buf[8192];
	int n = rmig_placement_describe(p, buf, sizeof(buf), flags);

	if (n < 0 || (size_t)n >= sizeof(buf) || !strstr(buf, what)) {
		fprintf(stderr, "description lacks '%s':\n%s\n", what, buf);
		return 0;
	}
	return 1;
}

static void test_two_socket_nic_on_socket1(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET, "mlx5_0", 2, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
	CU_ASSERT(why_has(p, 0, "near the NIC (package 1)"));
	CU_ASSERT(why_has(p, 1, "a core of its own"));
	CU_ASSERT(describes(p, 0, "mlx5_0 is local to package 1 (cpus 4-7"));
	rmig_placement_destroy(p);
}

/* The same NIC named the three ways the backends know it. */
static void test_nic_by_pci_id_and_interface(void)
{
	static const char *const names[] = { "0000:3b:00.0", "3b:00.0", "ens3f0" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct rmig_placement *p = plan_of(TWO_SOCKET, names[i], 3, NULL, NULL);

		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5,6");
		CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
		rmig_placement_destroy(p);
	}
	/* And the Ethernet NIC on the other socket lands on the other side. */
	struct rmig_placement *p = plan_of(TWO_SOCKET, "eno1", 2, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 0);
	rmig_placement_destroy(p);
}

/* Node 2 of 4: its two cpus first, then its package, buffers on node 2. */
static void test_four_numa_nodes(void)
{
	struct rmig_placement *p = plan_of(FOUR_NUMA, "mlx5_1", 3, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5,6");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 2);
	CU_ASSERT(why_has(p, 0, "node 2)"));
	CU_ASSERT(why_has(p, 2, "on package 1, as every cpu of L3 2 (4-5) is an earlier worker's"));
	CU_ASSERT(why_has(p, 2, "node 3)"));
	rmig_placement_destroy(p);

	/* Its package full of vCPUs: the other package, buffers still on node 2. */
	p = plan_of(FOUR_NUMA, "0000:c1:00.0", 2, "4-7", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 2);
	CU_ASSERT(why_has(p, 0, "on the machine, as every cpu of package 1 (4-7) is reserved for vCPUs"));
	rmig_placement_destroy(p);
}

/*
 * Siblings of cpu N are N and N+8.  Own cores first (4-7), then siblings;
 * with a vCPU on cpu 4, its sibling 12 comes before siblings of workers.
 */
static void test_smt_siblings(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET_SMT, "mlx5_0", 4, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5,6,7");
	rmig_placement_destroy(p);

	p = plan_of(TWO_SOCKET_SMT, "mlx5_0", 6, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5,6,7,12,13");
	CU_ASSERT(why_has(p, 4, "shares its core with an earlier worker"));
	rmig_placement_destroy(p);

	p = plan_of(TWO_SOCKET_SMT, "mlx5_0", 5, "4", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "5,6,7,12,13");
	CU_ASSERT(why_has(p, 3, "shares its core with a vCPU"));
	CU_ASSERT(why_has(p, 4, "shares its core with an earlier worker"));
	CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
	rmig_placement_destroy(p);

	/* A vCPU on cpu 12 makes core 4 (cpus 4 and 12) the last choice. */
	p = plan_of(TWO_SOCKET_SMT, "mlx5_0", 4, "12", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "5,6,7,4");
	CU_ASSERT(why_has(p, 3, "cpu 4 (core 4, package 1, node 1)"));
	rmig_placement_destroy(p);
}

/* vCPUs on the NIC's socket: never used, workers move out, buffers stay. */
static void test_vcpus_occupy_nic_socket(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET, "mlx5_0", 2, "4-7", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
	CU_ASSERT(why_has(p, 0, "every cpu of package 1 (4-7) is reserved for vCPUs"));
	rmig_placement_destroy(p);

	/* Partly: the free near cpus first, then outward. */
	p = plan_of(TWO_SOCKET, "mlx5_0", 3, "4,5", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "6,7,0");
	CU_ASSERT(why_has(p, 2, "(4-7) is reserved for vCPUs or an earlier worker's"));
	rmig_placement_destroy(p);

	/* SMT: vCPUs on every cpu of the NIC's socket, siblings included. */
	p = plan_of(TWO_SOCKET_SMT, "mlx5_0", 3, "4-7,12-15", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1,2");
	rmig_placement_destroy(p);
}

/* No locality: unknown NIC, no NIC, no I/O in the topology. */
static void test_no_nic_locality(void)
{
	static const char *const nics[] = { "mlx5_9", NULL, "" };

	for (size_t i = 0; i < sizeof(nics) / sizeof(nics[0]); i++) {
		struct rmig_placement *p = plan_of(TWO_SOCKET, nics[i], 2, NULL, NULL);

		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1");
		CU_ASSERT_EQUAL(rmig_placement_node(p), -1);
		CU_ASSERT(why_has(p, 0, "on the machine (NIC locality unknown)"));
		CU_ASSERT(describes(p, 0, "locality is unknown"));
		rmig_placement_destroy(p);
	}
	struct rmig_placement *p = plan_of("pack:2 [numa] core:4 pu:1", "mlx5_0", 1, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0");
	CU_ASSERT_EQUAL(rmig_placement_node(p), -1);
	CU_ASSERT(describes(p, 0, "mlx5_0 is not in the topology"));
	rmig_placement_destroy(p);

	/* Unknown NIC, guest memory on node 1: start there, buffers there. */
	p = plan_of(TWO_SOCKET, "mlx5_9", 2, NULL, "1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4,5");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
	CU_ASSERT(why_has(p, 0, "near the guest memory"));
	rmig_placement_destroy(p);
}

/* A chipset NIC is local to the whole machine: buffers follow worker 0 or the guest. */
static void test_nic_on_whole_machine(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET, "eno0", 2, "0", NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "1,2");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 0);
	CU_ASSERT(why_has(p, 0, "the NIC is local to all of it"));
	rmig_placement_destroy(p);

	p = plan_of(TWO_SOCKET, "eno0", 1, NULL, "1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "4");
	CU_ASSERT_EQUAL(rmig_placement_node(p), 1);
	rmig_placement_destroy(p);
}

static void test_more_workers_than_cpus(void)
{
	struct rmig_placement *p = plan_of("pack:1 core:2 pu:1", NULL, 5, NULL, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_STRING_EQUAL(cpus_of(p), "0,1,0,1,0");
	CU_ASSERT(why_has(p, 2, "more workers than free cpus (2), shares worker 0's cpu"));
	CU_ASSERT_EQUAL(rmig_placement_cpu(p, 5), -EINVAL);
	CU_ASSERT_PTR_NULL(rmig_placement_why(p, 5));
	rmig_placement_destroy(p);
}

static void test_bad_options(void)
{
	struct rmig_placement_opts o = { .size = sizeof(o), .topology = TWO_SOCKET };
	struct rmig_placement *p = (struct rmig_placement *)&o;

	o.vcpus = "4-7";
	o.workers = 1;
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), 0);
	rmig_placement_destroy(p);

	o.vcpus = "0-7";
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -ENOSPC);
	CU_ASSERT_PTR_NULL(p);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "reserved for vCPUs (0-7)"));
	for (size_t i = 0; i < 4; i++) {
		static const char *const bad[] = { "0-", "a", "3-1", "1,,2" };

		o.vcpus = bad[i];
		CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "is not a cpu list"));
	}
	o.vcpus = NULL;
	o.topology = "no-such-thing:7";
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_last_error(), "neither a readable hwloc XML file"));
	o.topology = TWO_SOCKET;
	o.workers = RMIG_PLACEMENT_MAX_WORKERS + 1;
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -EINVAL);
	o.workers = 1;
	o.guest_nodes = "x";
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -EINVAL);
	o.guest_nodes = NULL;
	o.size = 0;
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, &p), -EINVAL);
	CU_ASSERT_EQUAL(rmig_placement_plan(&o, NULL), -EINVAL);
	CU_ASSERT_EQUAL(rmig_placement_describe(NULL, NULL, 0, 0), -EINVAL);
}

/* Text and JSON; the length is returned whole even when the buffer is short. */
static void test_describe(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET, "mlx5_0", 2, "7", "1");
	char small[16];
	int full;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	full = rmig_placement_describe(p, NULL, 0, 0);
	CU_ASSERT(full > 100);
	CU_ASSERT_EQUAL(rmig_placement_describe(p, small, sizeof(small), 0), full);
	CU_ASSERT_EQUAL(strlen(small), sizeof(small) - 1);
	CU_ASSERT(describes(p, 0, "worker 1: cpu 5 (core 5, package 1, node 1)"));
	CU_ASSERT(describes(p, 0, "vcpus:    7 reserved"));
	CU_ASSERT(describes(p, 0, "guest:    node 1 (as given)"));
	CU_ASSERT(describes(p, RMIG_PLACEMENT_JSON,
			    "{\"index\":1,\"cpu\":5,\"core\":5,\"package\":1,\"node\":1,"));
	CU_ASSERT(describes(p, RMIG_PLACEMENT_JSON, "\"nic\":\"mlx5_0\""));
	CU_ASSERT(describes(p, RMIG_PLACEMENT_JSON, "\"node\":1,\"node_why\":"));
	CU_ASSERT_EQUAL(rmig_placement_describe(p, NULL, 0, 0x80), -EINVAL);
	rmig_placement_destroy(p);
}

/* A plan of another machine binds nothing, says so once, still allocates. */
static void test_other_machine_does_not_bind(void)
{
	struct rmig_placement *p = plan_of(TWO_SOCKET, "mlx5_0", 2, NULL, NULL);
	char *buf;

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_PTR_NULL(rmig_placement_notice(p));
	CU_ASSERT_EQUAL(rmig_placement_bind_self(p, 0), 1);
	CU_ASSERT_EQUAL(rmig_placement_bind_self(p, 1), 1);
	CU_ASSERT_EQUAL(rmig_placement_bind_self(p, 2), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rmig_placement_notice(p));
	CU_ASSERT_PTR_NOT_NULL(strstr(rmig_placement_notice(p), "not this machine: workers run unbound"));
	buf = rmig_placement_alloc(p, 1 << 20);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	memset(buf, 0xa5, 1 << 20);
	rmig_placement_free(p, buf, 1 << 20);
	CU_ASSERT(describes(p, 0, "notice:   the plan describes XML file"));
	rmig_placement_destroy(p);
	rmig_placement_destroy(NULL);
}

static const CU_TestInfo tests[] = {
	{ "2 sockets, NIC on socket 1", test_two_socket_nic_on_socket1 },
	{ "NIC by PCI id and by interface", test_nic_by_pci_id_and_interface },
	{ "4 NUMA nodes", test_four_numa_nodes },
	{ "SMT siblings", test_smt_siblings },
	{ "vCPUs occupy the NIC's socket", test_vcpus_occupy_nic_socket },
	{ "no locality for the NIC", test_no_nic_locality },
	{ "NIC local to the whole machine", test_nic_on_whole_machine },
	{ "more workers than cpus", test_more_workers_than_cpus },
	{ "bad options", test_bad_options },
	{ "describe: text and JSON", test_describe },
	{ "another machine's plan binds nothing", test_other_machine_does_not_bind },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("numa placement", NULL, NULL, tests);
}
