/* SPDX-License-Identifier: MIT */
/* rdmamig topo: where transfer workers and buffers would go, and why. */
#include "commands.h"
#include <rdmamig/numa.h>
#include <rdmamig/rdmamig.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void topo_usage(FILE *f)
{
	fprintf(f,
		"usage: rdmamig topo [--channels N] [--vcpus CPUSET] [--topology FILE|SYNTHETIC]\n"
		"                    [--nic NAME|PCIID|ADDR] [--guest-nodes NODES] [--json]\n\n"
		"Prints the placement plan: the NIC, its locality and NUMA node, the node for\n"
		"buffers, and the cpu of each transfer worker, each with why.\n\n"
		"  --channels N        transfer workers to place, one per channel (default 1)\n"
		"  --vcpus CPUSET      cpus reserved for vCPUs, never used: \"0-3,8\"\n"
		"  --topology T        an hwloc XML file or a synthetic description\n"
		"                      (\"pack:2 [numa] core:4 pu:2\"); default: this machine\n"
		"  --nic NIC           RDMA device (mlx5_0), interface (eth0), local IP\n"
		"                      address, or PCI id (0000:3b:00.0); default: auto\n"
		"                      (first RDMA device, else first interface on PCI)\n"
		"  --guest-nodes N     NUMA nodes holding the guest memory: \"1\"\n"
		"  --json              one JSON object instead of text\n");
}

static int print_plan(struct rmig_placement *plan, unsigned flags)
{
	int n = rmig_placement_describe(plan, NULL, 0, flags);
	char *buf;

	if (n < 0 || !(buf = malloc((size_t)n + 1)))
		return 1;
	rmig_placement_describe(plan, buf, (size_t)n + 1, flags);
	fputs(buf, stdout);
	free(buf);
	return 0;
}

int cmd_topo(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "channels", required_argument, NULL, 'c' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "topology", required_argument, NULL, 't' },
		{ "nic", required_argument, NULL, 'n' },
		{ "guest-nodes", required_argument, NULL, 'g' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rmig_placement_opts o = { .size = sizeof(o), .workers = 1, .nic = "auto",
					  .flags = RMIG_PLACEMENT_QUIET };
	struct rmig_placement *plan;
	unsigned flags = 0;
	char *end;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o.workers = (unsigned)strtoul(optarg, &end, 10);
			if (*end || !*optarg || o.workers < 1 || o.workers > RMIG_PLACEMENT_MAX_WORKERS) {
				fprintf(stderr, "rdmamig topo: --channels takes 1 to %d, not '%s'\n",
					RMIG_PLACEMENT_MAX_WORKERS, optarg);
				return 2;
			}
			break;
		case 'v': o.vcpus = optarg; break;
		case 't': o.topology = optarg; break;
		case 'n': o.nic = optarg; break;
		case 'g': o.guest_nodes = optarg; break;
		case 'j': flags |= RMIG_PLACEMENT_JSON; break;
		case 'h': topo_usage(stdout); return 0;
		default: topo_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rdmamig topo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	rc = rmig_placement_plan(&o, &plan);
	if (rc < 0) {
		fprintf(stderr, "rdmamig topo: %s\n", rmig_last_error());
		return 1;
	}
	rc = print_plan(plan, flags);
	rmig_placement_destroy(plan);
	return rc;
}
