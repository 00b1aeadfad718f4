/* SPDX-License-Identifier: MIT */
/*
 * rdmamig bench hygiene: N migrations back to back in this process (both
 * ends, loopback), per backend; open descriptors, threads, RSS and
 * registered regions after the 10th and the Nth.  Exit 1 if any grew
 * (RSS: by more than --rss-slack, for the allocator's own caches).
 */
#define _GNU_SOURCE
#include "commands.h"
#include "hygiene.h"
#include <rdmamig/rdmamig.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXB 8

/* The registry's backends that run here, comma-separated. */
static void default_backends(char *list, size_t cap)
{
	char why[RMIG_ERR_MAX];
	size_t n = 0;

	list[0] = 0;
	for (int i = 0; rmig_backend_spec(i) && n < cap; i++)
		if (!rmig_backend_probe(rmig_backend_spec(i), why, sizeof(why)))
			n += (size_t)snprintf(list + n, cap - n, "%s%s", n ? "," : "",
					      rmig_backend_spec(i));
}

static const char usage[] =
	"usage: rdmamig bench hygiene [--backends LIST] [--count N] [--guest-size SIZE]\n"
	"                             [--timeout-ms MS] [--rss-slack SIZE]\n\n"
	"N migrations (default 1000) back to back in this process, both ends on\n"
	"loopback, for each backend (default: every one that runs here);\n"
	"open descriptors, threads, RSS and registered regions after the 10th and\n"
	"the Nth.  Exit 1 if any grew (RSS by more than --rss-slack, default 1M).\n"
	"Over ofi/shm the destination is a child process per migration (libfabric's\n"
	"shm cannot have both ends in one process close safely): the figures are\n"
	"the source process's.\n";

static int one_backend(const char *be, struct host_opts *o, unsigned count, long slack_kib)
{
	unsigned marks[2] = { 10, count };
	struct hygiene_sample s[2];
	char why[300] = "";
	int rc;

	o->backend = be;
	rc = hygiene_run(o, count, marks, 2, s, why, sizeof(why));
	if (rc) {
		printf("| %-8s | failed: %s |\n", be, why);
		return 1;
	}
	int grew = s[1].fds > s[0].fds || s[1].threads > s[0].threads ||
		   s[1].mrs_live > s[0].mrs_live || s[1].rss_kib > s[0].rss_kib + slack_kib;
	printf("| %s%s | %u -> %u | %d -> %d | %d -> %d | %ld -> %ld (%+ld) | %ld -> %ld | %s |\n",
	       be, hygiene_forks(be) ? " (destination forked)" : "", s[0].at, s[1].at, s[0].fds, s[1].fds, s[0].threads, s[1].threads,
	       s[0].rss_kib, s[1].rss_kib, s[1].rss_kib - s[0].rss_kib, s[0].mrs_live,
	       s[1].mrs_live, grew ? "GREW" : "flat");
	fflush(stdout);
	return grew;
}

int bench_hygiene(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "backends", required_argument, 0, 'b' }, { "count", required_argument, 0, 'n' },
		{ "guest-size", required_argument, 0, 'g' }, { "timeout-ms", required_argument, 0, 't' },
		{ "rss-slack", required_argument, 0, 's' }, { "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 } };
	char list[256] = "", *save = NULL;
	unsigned count = 1000;
	long slack_kib = 1024;
	struct host_opts o;
	int ch, bad = 0;

	host_opts_default(&o);
	o.guest_size = 16ull << 20;
	o.timeout_ms = 5000;
	o.device_state = 4096;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'b': snprintf(list, sizeof(list), "%s", optarg); break;
		case 'n': count = (unsigned)atoi(optarg); break;
		case 'g': o.guest_size = parse_size(optarg); break;
		case 't': o.timeout_ms = atoi(optarg); break;
		case 's': slack_kib = (long)(parse_size(optarg) >> 10); break;
		case 'h': printf("%s", usage); return 0;
		default: fprintf(stderr, "%s", usage); return 2;
		}
	}
	if (count < 10 + HYGIENE_RSS_RUNS || !o.guest_size || o.timeout_ms <= 0) {
		fprintf(stderr, "rdmamig bench hygiene: --count must be at least %d, --guest-size and --timeout-ms positive\n",
			10 + HYGIENE_RSS_RUNS);
		return 2;
	}
	if (!list[0])
		default_backends(list, sizeof(list));
	printf("rdmamig bench hygiene: %u migrations per backend in one process, %llu MiB idle guest\n\n",
	       count, (unsigned long long)(o.guest_size >> 20));
	printf("| backend | after migration | open fds | threads | RSS KiB | registered regions | |\n");
	printf("| --- | --- | --- | --- | --- | --- | --- |\n");
	for (char *be = strtok_r(list, ",", &save); be; be = strtok_r(NULL, ",", &save)) {
		char why[RMIG_ERR_MAX];
		if (rmig_backend_probe(be, why, sizeof(why))) {
			printf("| %-8s | not usable here: %s |\n", be, why);
			continue;
		}
		bad |= one_backend(be, &o, count, slack_kib);
	}
	return bad ? 1 : 0;
}
