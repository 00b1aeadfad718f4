/* SPDX-License-Identifier: MIT */
/* Migrations back to back in one process, and what the process holds. */
#ifndef RMIG_HOST_HYGIENE_H
#define RMIG_HOST_HYGIENE_H

#include "host.h"

#define HYGIENE_RSS_RUNS 5 /* RSS at a mark: median over this many migrations */

struct hygiene_sample {
	unsigned at;    /* after this many migrations */
	int fds;        /* open descriptors */
	int threads;    /* /proc/self/task */
	long rss_kib;   /* VmRSS, median of the HYGIENE_RSS_RUNS up to at */
	long mrs_live;  /* rmig_mr_live(): regions registered right now */
};

/* 1 if over this backend the destination runs in a child (see hygiene.c). */
int hygiene_forks(const char *backend);
void hygiene_sample(unsigned at, struct hygiene_sample *s);
/* count migrations (host_loopback, each committed and verified); a sample
 * after each of marks[0..nmarks) (ascending, at least HYGIENE_RSS_RUNS
 * apart and from 0).  0, or -errno with why. */
int hygiene_run(const struct host_opts *o, unsigned count, const unsigned *marks,
		unsigned nmarks, struct hygiene_sample *out, char *why, size_t whylen);

#endif
