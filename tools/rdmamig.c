/* SPDX-License-Identifier: MIT */
/* rdmamig: the command-line tool.  Each subcommand lives in its own file. */
#include "commands.h"
#include "../common/ofi_env.h"
#include <rdmamig/rdmamig.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

static const struct command commands[] = {
	{ "backends", cmd_backends, "list the compiled backends and whether each can run here" },
	{ "bench", cmd_bench, "benchmarks: 'bench transport' (throughput per message size), 'bench migrate', 'bench hygiene'" },
	{ "demo", cmd_demo, "live-migrate a guest between two processes here and verify it" },
	{ "migrate", cmd_migrate, "source: run a guest and live-migrate it to 'serve'" },
	{ "serve", cmd_serve, "destination: take one migrating guest and verify it" },
#ifdef RMIG_HAVE_NUMA
	{ "topo", cmd_topo, "where transfer workers and buffers would be placed, and why" },
#endif
	{ "send", cmd_send, "carry stdin to a 'rdmamig recv' (QEMU: migrate \"exec:rdmamig send ...\")" },
	{ "proxy-out", cmd_proxy_out, "source: carry QEMU's unix: migration (multifd too) to a 'proxy-in'" },
	{ "proxy-in", cmd_proxy_in, "destination: deliver a 'proxy-out's connections to QEMU's -incoming unix:" },
	{ "recv", cmd_recv, "write a 'rdmamig send' stream to stdout (QEMU: -incoming \"exec:rdmamig recv ...\")" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: rdmamig [--help] [--version] COMMAND [ARGS]\n\n"
		   "RDMA transport for live migration of virtual machines.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'rdmamig COMMAND --help' describes a command.\n");
}

unsigned long long parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	return *end || end == s ? 0 : v;
}

int cmd_backends(int argc, char **argv)
{
	int available_only = argc > 1 && !strcmp(argv[1], "--available");
	char why[RMIG_ERR_MAX];

	if (argc > 1 && !available_only) {
		printf("usage: rdmamig backends [--available]\n\nLists the compiled backends (and ofi "
		       "providers) and whether each can run on this machine.\n--available: only "
		       "those that can, one spec a line (for scripts).\n");
		return strcmp(argv[1], "--help") ? 2 : 0;
	}
	for (int i = 0; rmig_backend_spec(i); i++) {
		const char *spec = rmig_backend_spec(i);
		int rc = rmig_backend_probe(spec, why, sizeof(why));

		if (available_only) {
			if (!rc)
				printf("%s\n", spec);
			continue;
		}
		printf("%-10s %s%s%s\n", spec, rc ? "unavailable" : "available",
		       rc ? ": " : "", rc ? why : "");
	}
	if (!available_only)
		printf("best: %s\n", rmig_backend_best());
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "transport"))
		return bench_transport(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "migrate"))
		return bench_migrate(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "hygiene"))
		return bench_hygiene(argc - 1, argv + 1);
	fprintf(stderr, "usage: rdmamig bench transport|migrate|hygiene [OPTIONS]\n");
	return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
}

/* The library prints nothing itself: the CLI prints what it logs
 * (state transitions only with RMIG_TRACE set, as before). */
static void cli_log(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level < RMIG_LOG_DEBUG || getenv("RMIG_TRACE"))
		fprintf(stderr, "rdmamig: %s\n", msg);
}

int main(int argc, char **argv)
{
	rmig_set_log(cli_log, NULL);
	/* libfabric's tunables: the CLI's own environment (the library
	 * never sets it). */
	rmig_ofi_env_defaults();
	/* The CLI pins guest-sized memory: it lifts its own limit as far as
	 * allowed (the library never does it behind a host's back).  A
	 * refusal is not fatal: a registration beyond the limit names it. */
	rmig_memlock_raise(UINT64_MAX);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("rdmamig %s\n", rmig_version());
		return 0;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "rdmamig: unknown command '%s' (rdmamig --help lists them)\n", argv[1]);
	return 2;
}
