/* SPDX-License-Identifier: MIT */
/*
 * Post-copy's page mover at the destination (pull.h, docs/postcopy.md).
 *
 * Every page to pull goes MISSING -> CLAIMED -> PRESENT.  Whoever claims a
 * page (an atomic compare-and-swap) reads it, so no page is read twice:
 *   - the fault thread reads the faulted page and up to `prefetch` missing
 *     pages after it, on the fault endpoint, into its staging buffer;
 *   - the puller reads runs of missing pages (up to 1 MiB each, PULL_RUNS
 *     per batch), starting after the last fault (a guest that touched X
 *     touches X + 1 next more often than anything else), on its own
 *     endpoint, into its own staging buffer.
 * Both place a run with UFFDIO_COPY, which maps the pages atomically and
 * wakes every thread waiting on them.  A fault on a page another thread has
 * claimed needs nothing more: that thread's copy wakes it.  The staging
 * copy is the one copy of a page on this path, forced by MISSING mode.
 *
 * A failed read fails the whole pull (the source is gone or refused): the
 * pages not yet present are lost, and the threads waiting on them stay
 * blocked in the kernel until pull_stop.
 */
#define _GNU_SOURCE
#include "pull.h"

#include "../common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#define PULL_RUN_MAX (1u << 20) /* bytes of one puller read */
#define PULL_RUNS 8             /* puller reads per batch */
#define PULL_POLL_MS 50         /* the fault thread looks at stop this often */

enum { PG_HERE, PG_MISSING, PG_CLAIMED, PG_PRESENT };

struct pull_run {
	unsigned blk;
	uint64_t page, n; /* first page in the block, pages */
};

struct pull {
	struct rmig_ep *fault_ep, *pull_ep;
	struct pull_block *b;
	unsigned nblocks;
	uint64_t *base;   /* first global page of each block */
	uint64_t npages;  /* all blocks */
	uint8_t *state;   /* PG_* per global page (atomic) */
	uint64_t page;
	uint32_t prefetch;
	int timeout_ms;
	int uffd;
	uint64_t t0_ns;

	uint8_t *fstage, *pstage; /* staging buffers, registered LOCAL_WRITE */
	struct rmig_mr *fmr, *pmr;
	pthread_t fault_thread, pull_thread;
	int fault_started, pull_started;
	uint64_t hint;    /* global page after the last fault's run (atomic) */

	/* lock guards what follows; cond signals done and failure. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	int err;
	char why[RMIG_ERR_MAX];
	struct pull_stats st;
	uint64_t *lat;    /* fault latencies (ns) */
	size_t nlat, caplat;
};

static void pull_fail(struct pull *p, int err, const char *what, const char *reason)
{
	pthread_mutex_lock(&p->lock);
	if (!p->err) {
		uint64_t left = p->st.pages - p->st.present;
		p->err = err;
		snprintf(p->why, sizeof(p->why),
			 "%s failed with %llu pages (%llu MiB) not yet pulled: %s", what,
			 (unsigned long long)left,
			 (unsigned long long)(left * p->page >> 20), reason);
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static int pull_stopping(struct pull *p)
{
	pthread_mutex_lock(&p->lock);
	int s = p->stop || p->err;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static int claim(struct pull *p, uint64_t g)
{
	uint8_t want = PG_MISSING;

	return __atomic_compare_exchange_n(&p->state[g], &want, PG_CLAIMED, 0,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Claim up to max pages from (blk, page) on, stopping at the first not
 * missing (page itself already claimed by the caller when first_claimed). */
static uint64_t claim_run(struct pull *p, unsigned blk, uint64_t page, uint64_t max,
			  int first_claimed)
{
	uint64_t n = 0, bpages = p->b[blk].len / p->page;

	if (first_claimed)
		n = 1;
	while (n < max && page + n < bpages && claim(p, p->base[blk] + page + n))
		n++;
	return n;
}

/* Place a run read into src; the pages become PRESENT.  0 or -errno. */
static int place(struct pull *p, const struct pull_run *r, const uint8_t *src, int fault)
{
	struct uffdio_copy c;
	uint64_t done = 0, len = r->n * p->page;
	uint8_t *dst = p->b[r->blk].addr + r->page * p->page;

	while (done < len) {
		c = (struct uffdio_copy){ .dst = (uintptr_t)(dst + done),
					  .src = (uintptr_t)(src + done),
					  .len = len - done };
		if (!ioctl(p->uffd, UFFDIO_COPY, &c))
			break;
		if (errno == EAGAIN && c.copy > 0) { /* partly done: go on */
			done += (uint64_t)c.copy;
			continue;
		}
		if (errno == EEXIST) /* populated meanwhile: nothing lost */
			break;
		return -errno;
	}
	for (uint64_t i = 0; i < r->n; i++)
		__atomic_store_n(&p->state[p->base[r->blk] + r->page + i], PG_PRESENT,
				 __ATOMIC_RELEASE);
	pthread_mutex_lock(&p->lock);
	p->st.present += r->n;
	if (fault)
		p->st.fault_pages += r->n;
	else
		p->st.pulled += r->n;
	if (p->st.present == p->st.pages && !p->st.all_present_ms)
		p->st.all_present_ms = (rmig_now_ns() - p->t0_ns) / 1000000ull;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void record_latency(struct pull *p, uint64_t ns)
{
	pthread_mutex_lock(&p->lock);
	p->st.faults++;
	if (p->nlat == p->caplat) {
		size_t cap = p->caplat ? 2 * p->caplat : 1024;
		uint64_t *grown = realloc(p->lat, cap * sizeof(*grown));
		if (grown) {
			p->lat = grown;
			p->caplat = cap;
		}
	}
	if (p->nlat < p->caplat)
		p->lat[p->nlat++] = ns;
	pthread_mutex_unlock(&p->lock);
}

/* Which block and page an address of a fault is in; -1 if none. */
static int locate(const struct pull *p, uint64_t addr, unsigned *blk, uint64_t *page)
{
	for (unsigned i = 0; i < p->nblocks; i++) {
		uint64_t a = (uintptr_t)p->b[i].addr;
		if (addr >= a && addr - a < p->b[i].len) {
			*blk = i;
			*page = (addr - a) / p->page;
			return 0;
		}
	}
	return -1;
}

/* One fault: read the page and its prefetch window, place them. */
static int serve_fault(struct pull *p, uint64_t addr, uint64_t t0)
{
	struct pull_run r;
	uint64_t g;

	if (locate(p, addr, &r.blk, &r.page))
		return 0; /* not ours: cannot happen with our registration */
	g = p->base[r.blk] + r.page;
	if (__atomic_load_n(&p->state[g], __ATOMIC_ACQUIRE) == PG_HERE) {
		/* Never sent and never touched: the source's page is zeros. */
		struct uffdio_zeropage z = {
			.range = { .start = addr & ~(p->page - 1), .len = p->page } };
		if (ioctl(p->uffd, UFFDIO_ZEROPAGE, &z))
			return errno == EEXIST ? 0 : -errno; /* a second fault on it */
		pthread_mutex_lock(&p->lock);
		p->st.zero_filled++;
		pthread_mutex_unlock(&p->lock);
		return 0;
	}
	if (!claim(p, g))
		return 0; /* being read by the puller (its copy wakes us), or placed */
	r.n = claim_run(p, r.blk, r.page, 1 + (uint64_t)p->prefetch, 1);
	int rc = rmig_read_sync(p->fault_ep, p->fmr, 0, p->b[r.blk].fault_rkey,
				r.page * p->page, r.n * p->page);
	if (rc) {
		pull_fail(p, rc, "a fault's read", rmig_ep_error(p->fault_ep));
		return rc;
	}
	rc = place(p, &r, p->fstage, 1);
	if (rc) {
		pull_fail(p, rc, "placing a faulted page", strerror(-rc));
		return rc;
	}
	__atomic_store_n(&p->hint, g + r.n, __ATOMIC_RELAXED);
	record_latency(p, rmig_now_ns() - t0);
	return 0;
}

static void *fault_main(void *arg)
{
	struct pull *p = arg;
	struct uffd_msg m[16];

	while (!pull_stopping(p)) {
		struct pollfd pfd = { .fd = p->uffd, .events = POLLIN };
		if (poll(&pfd, 1, PULL_POLL_MS) <= 0)
			continue;
		ssize_t n = read(p->uffd, m, sizeof(m));
		uint64_t t0 = rmig_now_ns();
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			pull_fail(p, -errno, "reading the userfaultfd", strerror(errno));
			break;
		}
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(m[0]); i++)
			if (m[i].event == UFFD_EVENT_PAGEFAULT &&
			    serve_fault(p, m[i].arg.pagefault.address, t0))
				return NULL;
	}
	return NULL;
}

/* Up to PULL_RUNS runs of missing pages from global page *pos on (wrapping once). */
static unsigned gather(struct pull *p, uint64_t *pos, struct pull_run *runs)
{
	unsigned n = 0;
	uint64_t maxpages = PULL_RUN_MAX / p->page, start = *pos;

	for (uint64_t seen = 0; seen < p->npages && n < PULL_RUNS; seen++) {
		uint64_t g = (start + seen) % p->npages;
		if (__atomic_load_n(&p->state[g], __ATOMIC_ACQUIRE) != PG_MISSING)
			continue;
		unsigned blk = 0;
		while (blk + 1 < p->nblocks && g >= p->base[blk + 1])
			blk++;
		uint64_t page = g - p->base[blk];
		uint64_t k = claim_run(p, blk, page, maxpages, 0);
		if (!k)
			continue; /* the fault thread took it just now */
		runs[n++] = (struct pull_run){ .blk = blk, .page = page, .n = k };
		seen += k - 1;
		*pos = (g + k) % p->npages;
	}
	return n;
}

/* Read the runs (one batch) into the staging buffer and place them. */
static int pull_batch(struct pull *p, const struct pull_run *runs, unsigned n)
{
	struct rmig_read rd[PULL_RUNS];
	struct rmig_completion c;
	int rc;

	for (unsigned i = 0; i < n; i++)
		rd[i] = (struct rmig_read){ .lmr = p->pmr, .loff = (uint64_t)i * PULL_RUN_MAX,
					    .rkey = p->b[runs[i].blk].pull_rkey,
					    .roff = runs[i].page * p->page,
					    .len = runs[i].n * p->page };
	rc = rmig_read_batch(p->pull_ep, rd, n, 1);
	if (!rc) {
		rc = rmig_poll(p->pull_ep, &c, 1, p->timeout_ms);
		rc = rc == 1 ? c.status : rc == 0 ? -ETIMEDOUT : rc;
	}
	if (rc) {
		pull_fail(p, rc, "the puller's read", rmig_ep_error(p->pull_ep));
		return rc;
	}
	for (unsigned i = 0; i < n; i++) {
		rc = place(p, &runs[i], p->pstage + (size_t)i * PULL_RUN_MAX, 0);
		if (rc) {
			pull_fail(p, rc, "placing a pulled page", strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static void *pull_main(void *arg)
{
	struct pull *p = arg;
	struct pull_run runs[PULL_RUNS];
	uint64_t pos = 0, last_hint = 0;

	while (!pull_stopping(p)) {
		uint64_t h = __atomic_load_n(&p->hint, __ATOMIC_RELAXED);
		if (h != last_hint) { /* a fault: go on from there */
			last_hint = h;
			pos = h % p->npages;
		}
		unsigned n = gather(p, &pos, runs);
		if (n) {
			if (pull_batch(p, runs, n))
				break;
			continue;
		}
		/* Nothing left to claim: the fault thread holds the rest, or all
		 * is present. */
		pthread_mutex_lock(&p->lock);
		int done = p->st.present == p->st.pages;
		pthread_mutex_unlock(&p->lock);
		if (done)
			break;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* The page states, from the blocks' missing bitmaps. */
static int pull_states(struct pull *p)
{
	p->base = calloc(p->nblocks, sizeof(*p->base));
	if (!p->base)
		return -ENOMEM;
	for (unsigned i = 0; i < p->nblocks; i++) {
		p->base[i] = p->npages;
		p->npages += p->b[i].len / p->page;
	}
	p->state = calloc(p->npages ? p->npages : 1, 1);
	if (!p->state)
		return -ENOMEM;
	for (unsigned i = 0; i < p->nblocks; i++)
		for (uint64_t k = 0; k < p->b[i].len / p->page; k++)
			if (p->b[i].missing[k / 64] >> (k % 64) & 1) {
				p->state[p->base[i] + k] = PG_MISSING;
				p->st.pages++;
			}
	return 0;
}

/*
 * Register every block (MISSING), then drop its missing pages: registered
 * first, so a touch in between faults instead of finding a fresh zero page.
 */
static int pull_register(struct pull *p, char *why)
{
	struct uffdio_api api = { .api = UFFD_API };

	p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (p->uffd < 0)
		p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (p->uffd < 0 || ioctl(p->uffd, UFFDIO_API, &api)) {
		snprintf(why, RMIG_ERR_MAX,
			 "userfaultfd is not available: %s (post-copy needs it: root, or vm.unprivileged_userfaultfd=1)",
			 strerror(errno));
		return -errno;
	}
	for (unsigned i = 0; i < p->nblocks; i++) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)p->b[i].addr, .len = p->b[i].len },
			.mode = UFFDIO_REGISTER_MODE_MISSING };
		if (ioctl(p->uffd, UFFDIO_REGISTER, &reg)) {
			snprintf(why, RMIG_ERR_MAX,
				 "cannot register block %u with userfaultfd: %s (it must be private anonymous memory)",
				 i, strerror(errno));
			return -errno;
		}
		for (uint64_t k = 0; k < p->b[i].len / p->page; k++)
			if (p->state[p->base[i] + k] == PG_MISSING &&
			    madvise(p->b[i].addr + k * p->page, p->page, MADV_DONTNEED)) {
				snprintf(why, RMIG_ERR_MAX, "cannot discard a stale page: %s",
					 strerror(errno));
				return -errno;
			}
	}
	return 0;
}

/* A staging buffer of len bytes, registered as a read's destination. */
static int stage(struct rmig_ep *ep, size_t len, uint8_t **buf, struct rmig_mr **mr, char *why)
{
	int rc;

	*buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*buf == MAP_FAILED) {
		*buf = NULL;
		snprintf(why, RMIG_ERR_MAX, "out of memory for a %zu-byte staging buffer", len);
		return -ENOMEM;
	}
	rc = rmig_reg_mr(ep, *buf, len, RMIG_ACCESS_LOCAL_WRITE, mr);
	if (rc)
		snprintf(why, RMIG_ERR_MAX, "cannot register a staging buffer: %s",
			 rmig_ep_error(ep));
	return rc;
}

int pull_start(struct rmig_ep *fault_ep, struct rmig_ep *pull_ep, const struct pull_block *b,
	       unsigned nblocks, const struct pull_opts *opts, struct pull **out, char *why)
{
	struct pull *p = calloc(1, sizeof(*p));
	int rc;

	why[0] = '\0';
	if (!p) {
		snprintf(why, RMIG_ERR_MAX, "out of memory for the puller");
		return -ENOMEM;
	}
	p->fault_ep = fault_ep;
	p->pull_ep = pull_ep;
	p->nblocks = nblocks;
	p->page = opts->page_size ? opts->page_size : 4096;
	p->prefetch = opts->prefetch;
	p->timeout_ms = opts->timeout_ms ? opts->timeout_ms : RMIG_DEFAULT_TIMEOUT_MS;
	p->uffd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->b = calloc(nblocks, sizeof(*b));
	rc = p->b ? 0 : -ENOMEM;
	if (!rc) {
		memcpy(p->b, b, nblocks * sizeof(*b));
		rc = pull_states(p);
	}
	if (rc)
		snprintf(why, RMIG_ERR_MAX, "out of memory for the page states");
	if (!rc)
		rc = pull_register(p, why);
	if (!rc)
		rc = stage(fault_ep, (size_t)(1 + p->prefetch) * p->page, &p->fstage, &p->fmr, why);
	if (!rc && opts->puller)
		rc = stage(pull_ep, (size_t)PULL_RUNS * PULL_RUN_MAX, &p->pstage, &p->pmr, why);
	p->t0_ns = rmig_now_ns();
	if (!rc) {
		rc = -pthread_create(&p->fault_thread, NULL, fault_main, p);
		p->fault_started = !rc;
	}
	if (!rc && opts->puller) {
		rc = -pthread_create(&p->pull_thread, NULL, pull_main, p);
		p->pull_started = !rc;
	}
	if (rc) {
		if (!why[0])
			snprintf(why, RMIG_ERR_MAX, "cannot start the puller's threads");
		pull_stop(p);
		return rc;
	}
	*out = p;
	return 0;
}

int pull_wait(struct pull *p, int timeout_ms)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	while (!p->err && p->st.present < p->st.pages) {
		int left = rmig_left_ms(deadline);
		if (!left) {
			rc = -ETIMEDOUT;
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec +
			      (uint64_t)(left < 0 || left > 100 ? 100 : left) * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	if (p->err)
		rc = p->err;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

const char *pull_error(const struct pull *p)
{
	return p->why[0] ? p->why : "no error";
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

void pull_get_stats(struct pull *p, struct pull_stats *st)
{
	uint64_t *sorted = NULL;
	size_t n;

	pthread_mutex_lock(&p->lock);
	*st = p->st;
	n = p->nlat;
	if (n && (sorted = malloc(n * sizeof(*sorted))))
		memcpy(sorted, p->lat, n * sizeof(*sorted));
	pthread_mutex_unlock(&p->lock);
	if (sorted) {
		qsort(sorted, n, sizeof(*sorted), cmp_u64);
		st->lat_p50_ns = sorted[(n - 1) / 2];
		st->lat_p99_ns = sorted[(n - 1) * 99 / 100];
		st->lat_max_ns = sorted[n - 1];
		free(sorted);
	}
}

void pull_stop(struct pull *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_mutex_unlock(&p->lock);
	if (p->fault_started)
		pthread_join(p->fault_thread, NULL);
	if (p->pull_started)
		pthread_join(p->pull_thread, NULL);
	if (p->uffd >= 0)
		close(p->uffd); /* unregisters every range */
	if (p->fmr)
		rmig_dereg_mr(p->fault_ep, p->fmr);
	if (p->pmr)
		rmig_dereg_mr(p->pull_ep, p->pmr);
	if (p->fstage)
		munmap(p->fstage, (size_t)(1 + p->prefetch) * p->page);
	if (p->pstage)
		munmap(p->pstage, (size_t)PULL_RUNS * PULL_RUN_MAX);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p->lat);
	free(p->state);
	free(p->base);
	free(p->b);
	free(p);
}
