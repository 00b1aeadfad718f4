/* SPDX-License-Identifier: MIT */
/*
 * Hygiene: migrations back to back in one process (host_loopback), and
 * what the process holds after each: open descriptors, threads, resident
 * memory and registered regions.  None may grow with the count: every
 * session must give back everything it took.  Shared by
 * `rdmamig bench hygiene` and the ctest test_hygiene.
 */
#define _GNU_SOURCE
#include "hygiene.h"
#include <rdmamig/rdmamig.h>
#include "../common/median.h"

#include <dirent.h>
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			sscanf(line + 6, "%ld", &kib);
	fclose(f);
	return kib;
}

void hygiene_sample(unsigned at, struct hygiene_sample *s)
{
	/* Give the allocator's free pages back first: RSS should show what
	 * is held, not what malloc keeps cached from the last migration. */
	malloc_trim(0);
	s->at = at;
	s->fds = count_entries("/proc/self/fd") - 1; /* not opendir's own */
	s->threads = count_entries("/proc/self/task");
	s->rss_kib = rss_kib();
	s->mrs_live = rmig_mr_live();
}

/*
 * libfabric's shm provider, when both endpoints live in one process, has
 * each use the other's region in place rather than map it; the first to
 * close frees a region the other's progress still reads (a SIGSEGV in
 * fi_cq_read).  So over shm the destination is a child process per
 * migration (host_demo) and the figures are the source process's.
 */
int hygiene_forks(const char *backend)
{
	return !strncmp(backend, "ofi/shm", 7);
}

int hygiene_run(const struct host_opts *o, unsigned count, const unsigned *marks,
		unsigned nmarks, struct hygiene_sample *out, char *why, size_t whylen)
{
	struct host_result sr, dr = { .error = "" };
	long rss[HYGIENE_RSS_RUNS];
	unsigned m = 0;
	int forks = hygiene_forks(o->backend);

	for (unsigned i = 1; i <= count; i++) {
		int rc = forks ? host_demo(o, &sr) : host_loopback(o, &sr, &dr);

		if (rc || !sr.committed || sr.verified != 1) {
			snprintf(why, whylen, "migration %u of %u: %s", i, count,
				 sr.error[0] ? sr.error : dr.error[0] ? dr.error
				 : "not verified");
			return rc ? rc : -EIO;
		}
		/* RSS: the median of the last HYGIENE_RSS_RUNS migrations up to
		 * the mark -- after one migration in ten or so, some 10 MiB that
		 * libfabric or the allocator let go of during a later one are
		 * still resident, a spike, not growth. */
		if (m < nmarks && marks[m] - i < HYGIENE_RSS_RUNS) {
			hygiene_sample(i, &out[m]);
			rss[marks[m] - i] = out[m].rss_kib;
		}
		if (m < nmarks && marks[m] == i) {
			out[m++].rss_kib = rmig_median_long(rss, HYGIENE_RSS_RUNS);
		}
	}
	return 0;
}
