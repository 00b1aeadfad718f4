/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page tracking of the guest memory with a kernel mechanism:
 *   uffd-async  userfaultfd write-protect in async mode (UFFD_FEATURE_WP_ASYNC)
 *               read and re-armed atomically by the PAGEMAP_SCAN ioctl
 *               (Linux 6.7+): no fault reaches user space.
 *   uffd-sync   userfaultfd write-protect faults served by a handler
 *               thread that records the page and lifts the protection
 *               (Linux 5.7+ for anonymous memory, 5.19+ for shmem).
 *   mprotect    the guest made read-only with mprotect; a SIGSEGV handler
 *               records the first write to each page and lifts the
 *               protection.  Any kernel, and valgrind (which has no
 *               userfaultfd); slower, one signal per page per round.
 * "auto" takes RMIG_DIRTY_TRACKING from the environment if set, else the
 * first that works here, and says once on stderr when it falls back to
 * mprotect, and why.
 */
#ifndef RMIG_HOST_DIRTY_H
#define RMIG_HOST_DIRTY_H

#include <stddef.h>
#include <stdint.h>

struct tracker;

/* A run of dirty pages: byte offset and length into the tracked range. */
struct dirty_run {
	uint64_t off, len;
};

/* gran: the memory's page size (4 KiB, or 2 MiB for hugetlbfs): the
 * kernel protects and reports whole pages of it. */
int tracker_open(const char *mode, void *mem, uint64_t len, uint64_t gran,
		 struct tracker **t, char *why, size_t whylen);
const char *tracker_name(const struct tracker *t);
/*
 * Everything written since the last collect (or open), as runs appended
 * after the first n of *runs, and arm tracking again.  *runs is grown as
 * needed (free it); *bytes grows by the dirty bytes.  Returns the new
 * count or -errno.
 */
long tracker_collect(struct tracker *t, struct dirty_run **runs, size_t *cap,
		     size_t n, uint64_t *bytes);
void tracker_close(struct tracker *t);

#endif
