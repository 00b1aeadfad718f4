/* SPDX-License-Identifier: MIT */
/*
 * Guest memory and vCPU-like threads.  Memory is anonymous, a memfd or
 * hugetlbfs; a fresh guest is filled with a pattern in three of four pages
 * (the fourth left zero, as real guests have free memory).  Each vCPU
 * writes a counter into pages chosen by the pattern at its share of the
 * dirty rate, and parks when asked to pause.
 */
#define _GNU_SOURCE
#include "guest.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void fill(struct guest *g)
{
	uint64_t npages = g->size / GUEST_PAGE, seed = 0x243f6a8885a308d3ull;

	for (uint64_t p = 0; p < npages; p++) {
		uint64_t *w = (uint64_t *)(g->mem + p * GUEST_PAGE);
		if (p % 4 == 3)
			continue;
		for (unsigned i = 0; i < GUEST_PAGE / 8; i++)
			w[i] = xorshift(&seed);
	}
}

int guest_create(struct guest *g, uint64_t size, enum host_mem kind, int do_fill,
		 char *why, size_t whylen)
{
	/* The source's guest is filled at once: fault it in with the map.  The
	 * destination's is not populated here: the engine allocates it in
	 * pieces ahead of the source's writes once it has granted the guest
	 * (docs/architecture.md), so reserving costs what registering costs. */
	int flags = do_fill ? MAP_POPULATE : 0;
	int fd = -1;

	memset(g, 0, sizeof(*g));
	g->memfd = -1;
	g->kind = kind;
	if (!size || size % (2u << 20)) {
		snprintf(why, whylen, "guest size must be a nonzero multiple of 2 MiB");
		return -EINVAL;
	}
	g->size = g->map_len = size;
	if (kind == HOST_MEM_MEMFD) {
		fd = memfd_create("rdmamig-guest", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			snprintf(why, whylen, "cannot create a %llu MiB memfd: %s",
				 (unsigned long long)(size >> 20), strerror(errno));
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		flags |= MAP_SHARED;
	} else {
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		if (kind == HOST_MEM_HUGETLB)
			flags |= MAP_HUGETLB;
	}
	g->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
	if (g->mem == MAP_FAILED) {
		int err = errno;
		g->mem = NULL;
		if (fd >= 0)
			close(fd);
		if (kind == HOST_MEM_HUGETLB)
			snprintf(why, whylen,
				 "cannot map %llu MiB of huge pages (%s): reserve them with sysctl vm.nr_hugepages",
				 (unsigned long long)(size >> 20), strerror(err));
		else
			snprintf(why, whylen, "cannot map %llu MiB of guest memory: %s",
				 (unsigned long long)(size >> 20), strerror(err));
		return -err;
	}
	g->memfd = fd;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	if (do_fill)
		fill(g);
	return 0;
}

void guest_destroy(struct guest *g)
{
	guest_stop(g);
	if (g->mem)
		munmap(g->mem, g->map_len);
	if (g->memfd >= 0)
		close(g->memfd);
	g->mem = NULL;
	g->memfd = -1;
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

static uint64_t pick_page(struct vcpu *v, uint64_t npages, uint64_t *seq)
{
	uint64_t r = xorshift(&v->rng);

	switch (v->g->pattern) {
	case HOST_PAT_HOTSET: {
		/* 90% of writes land in a hot set of 1/16 of memory. */
		uint64_t hot = npages / 16 ? npages / 16 : 1;
		return (r % 10) ? (r >> 8) % hot : (r >> 8) % npages;
	}
	case HOST_PAT_SEQ:
		return (*seq)++ % npages;
	default:
		return r % npages;
	}
}

/* Park while a pause is asked for; returns 1 when told to stop. */
static int checkpoint(struct guest *g)
{
	int stop;

	pthread_mutex_lock(&g->lock);
	if (g->pause_req && !g->stop) {
		g->paused++;
		pthread_cond_broadcast(&g->cond);
		while (g->pause_req && !g->stop)
			pthread_cond_wait(&g->cond, &g->lock);
		g->paused--;
	}
	stop = g->stop;
	pthread_mutex_unlock(&g->lock);
	return stop;
}

/*
 * Under ThreadSanitizer (-DRMIG_SANITIZE=thread) the guest's own writes are
 * not tracked: the source reading guest RAM while vCPUs write it is live
 * migration itself (a page written during a round is dirty and is sent
 * again, the last round runs paused), not a race to report.  An annotation
 * rather than a suppression: TSan often cannot restore the writer's stack
 * for a suppression to match.
 */
#ifdef __SANITIZE_THREAD__
void AnnotateIgnoreWritesBegin(const char *file, int line);
void AnnotateIgnoreWritesEnd(const char *file, int line);
#define GUEST_WRITES_UNTRACKED() AnnotateIgnoreWritesBegin(__FILE__, __LINE__)
#define GUEST_WRITES_TRACKED() AnnotateIgnoreWritesEnd(__FILE__, __LINE__)
#else
#define GUEST_WRITES_UNTRACKED() do { } while (0)
#define GUEST_WRITES_TRACKED() do { } while (0)
#endif

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	struct guest *g = v->g;
	uint64_t npages = g->size / GUEST_PAGE;
	uint64_t share = g->nvcpus ? g->rate / g->nvcpus : 0;
	uint64_t seq = v->id * (npages / (g->nvcpus ? g->nvcpus : 1));
	uint64_t t0 = rmig_now_ns(), done = 0;
	struct timespec ms = { 0, 1000000 };

	while (!checkpoint(g)) {
		uint64_t due = share ? (uint64_t)((double)(rmig_now_ns() - t0) / 1e9 *
						   (double)share / GUEST_PAGE) : 0;
		if (done >= due) {
			nanosleep(&ms, NULL);
			continue;
		}
		/* Up to 64 pages between pause checks: a pause takes effect fast. */
		for (unsigned i = 0; i < 64 && done < due; i++, done++) {
			uint64_t p = pick_page(v, npages, &seq);
			uint64_t *w = (uint64_t *)(g->mem + p * GUEST_PAGE) +
				      (v->counter % (GUEST_PAGE / 8));
			GUEST_WRITES_UNTRACKED();
			*(volatile uint64_t *)w = ++v->counter ^ ((uint64_t)v->id << 56);
			GUEST_WRITES_TRACKED();
		}
	}
	return NULL;
}

int guest_start(struct guest *g, unsigned nvcpus, uint64_t rate, enum host_pattern p)
{
	g->nvcpus = nvcpus;
	g->rate = rate;
	g->pattern = p;
	g->vcpus = calloc(nvcpus ? nvcpus : 1, sizeof(*g->vcpus));
	if (!g->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < nvcpus; i++) {
		g->vcpus[i] = (struct vcpu){ .g = g, .id = i,
					     .rng = 0x9e3779b97f4a7c15ull * (i + 1) };
		int rc = pthread_create(&g->vcpus[i].thread, NULL, vcpu_main, &g->vcpus[i]);
		if (rc) {
			g->nvcpus = i;
			guest_stop(g);
			return -rc;
		}
	}
	g->running = 1;
	return 0;
}

int guest_pause(struct guest *g)
{
	uint64_t deadline = rmig_now_ms() + 2000;
	int rc = 0;

	pthread_mutex_lock(&g->lock);
	g->pause_req = 1;
	while (g->paused < (int)g->nvcpus && !rc) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&g->cond, &g->lock, &ts);
		if (rmig_now_ms() > deadline)
			rc = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&g->lock);
	if (!rc)
		g->running = 0;
	return rc;
}

void guest_resume(struct guest *g)
{
	pthread_mutex_lock(&g->lock);
	g->pause_req = 0;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	g->running = 1;
}

void guest_stop(struct guest *g)
{
	if (!g->vcpus)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = 1;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	for (unsigned i = 0; i < g->nvcpus; i++)
		pthread_join(g->vcpus[i].thread, NULL);
	free(g->vcpus);
	g->vcpus = NULL;
	g->running = 0;
}

static uint64_t hash_page(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (unsigned i = 0; i < GUEST_PAGE / 8; i++) {
		h = (h ^ w[i]) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

void guest_hash_pages(const uint8_t *mem, uint64_t size, uint64_t *out)
{
	for (uint64_t p = 0; p < size / GUEST_PAGE; p++)
		out[p] = hash_page((const uint64_t *)(mem + p * GUEST_PAGE));
}

uint64_t guest_hash_all(const uint8_t *mem, uint64_t size)
{
	uint64_t h = 0;

	for (uint64_t p = 0; p < size / GUEST_PAGE; p++)
		h = (h ^ hash_page((const uint64_t *)(mem + p * GUEST_PAGE))) * 0x100000001b3ull;
	return h;
}
