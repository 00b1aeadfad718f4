/* SPDX-License-Identifier: MIT */
/*
 * Post-copy's destination side, the part that moves pages
 * (docs/postcopy.md): pages of guest memory still missing after the
 * switch-over are read one-sidedly from the source's registered RAM and
 * placed with userfaultfd, on the guest's first touch (a fault) or ahead
 * of it (the puller).  The engine's messages (SWITCHOVER, BITMAP, ...) are
 * not part of it.
 */
#ifndef RMIG_PLUGIN_PULL_H
#define RMIG_PLUGIN_PULL_H

#include <rdmamig/rdmamig.h>

#include <stdint.h>

/* One block of guest memory at the destination and where to read it from. */
struct pull_block {
	uint8_t *addr;   /* private anonymous memory, page-aligned */
	uint64_t len;    /* a multiple of the page size */
	/* The source's keys for the block (REMOTE_READ), one per endpoint
	 * (the same key twice when both endpoints share a domain). */
	const struct rmig_rkey *fault_rkey, *pull_rkey;
	/* Bit i (LSB first in each word) set: page i is stale or absent here
	 * and must be read.  A page whose bit is clear holds its final bytes,
	 * or was never sent and never touched (then it reads as zeros). */
	const uint64_t *missing;
};

struct pull_opts {
	uint32_t page_size; /* 0: 4096 */
	uint32_t prefetch;  /* missing pages read after a faulted one; 0: none */
	int puller;         /* 1: pull every missing page in the background;
			     * 0: faults only (the guest's touches decide) */
	int timeout_ms;     /* a read's deadline (0: the endpoint's) */
};

struct pull_stats {
	uint64_t pages;       /* missing at the start */
	uint64_t present;     /* of those, placed so far */
	uint64_t faults;      /* faults that started a read */
	uint64_t fault_pages; /* pages those reads placed (faulted + prefetched) */
	uint64_t pulled;      /* pages the puller placed */
	uint64_t zero_filled; /* faults on pages never sent: a zero page */
	uint64_t lat_p50_ns, lat_p99_ns, lat_max_ns; /* fault read -> page placed */
	uint64_t all_present_ms; /* start -> every page present (0: not yet) */
};

struct pull;

/*
 * Register the blocks with userfaultfd (MISSING), then discard every missing
 * page (MADV_DONTNEED) so the first touch faults, and start the fault thread
 * (reads on fault_ep) and, with opts->puller, the puller (reads on pull_ep).
 * Each thread drives its endpoint alone.  0 or -errno with the reason in
 * *why (a buffer of RMIG_ERR_MAX).
 */
int pull_start(struct rmig_ep *fault_ep, struct rmig_ep *pull_ep, const struct pull_block *b,
	       unsigned nblocks, const struct pull_opts *opts, struct pull **out, char *why);
/* Until every missing page is present (0), the deadline (-ETIMEDOUT), or a
 * failed read (-errno; pull_error says which pages are lost and why). */
int pull_wait(struct pull *p, int timeout_ms);
const char *pull_error(const struct pull *p);
void pull_get_stats(struct pull *p, struct pull_stats *st);
/*
 * Stop the threads, unregister from userfaultfd, deregister the staging
 * buffers.  A page still missing then reads as zeros: call it once every
 * page is present, or once nothing can touch the memory any more (the
 * guest's vCPUs stopped for good).
 */
void pull_stop(struct pull *p);

#endif
