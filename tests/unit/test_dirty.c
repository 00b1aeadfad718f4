/* SPDX-License-Identifier: MIT */
/*
 * The mprotect dirty tracker (host/dirty.c) on its own: exactly the pages
 * written are reported, coalesced into runs; a collect re-arms them; writes
 * from several threads during collects are never lost; closing leaves the
 * memory writable; "auto" honours RMIG_DIRTY_TRACKING; a fault outside the
 * guest still reaches the handler that was there before.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "dirty.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PG 4096ull
#define NPAGES 256ull

static uint8_t *map_guest(void)
{
	void *m = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	CU_ASSERT_FATAL(m != MAP_FAILED);
	return m;
}

static long collect(struct tracker *t, struct dirty_run **runs, size_t *cap, uint64_t *bytes)
{
	*bytes = 0;
	return tracker_collect(t, runs, cap, 0, bytes);
}

static void test_exact_pages(void)
{
	uint8_t *mem = map_guest();
	struct tracker *t = NULL;
	struct dirty_run *runs = NULL;
	size_t cap = 0;
	uint64_t bytes;
	char why[256] = "";

	CU_ASSERT_EQUAL_FATAL(tracker_open("mprotect", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(tracker_name(t), "mprotect");
	CU_ASSERT_EQUAL(collect(t, &runs, &cap, &bytes), 0); /* nothing yet */
	mem[0] = 1;
	mem[5 * PG + 17] = 2;
	mem[6 * PG + 4095] = 3;
	mem[7 * PG] = 4;
	mem[100 * PG + 1] = 5;
	mem[100 * PG + 2] = 6; /* same page again: no second fault */
	(void)mem[200 * PG];   /* a read is not a write */
	CU_ASSERT_EQUAL_FATAL(collect(t, &runs, &cap, &bytes), 3);
	CU_ASSERT_EQUAL(runs[0].off, 0);
	CU_ASSERT_EQUAL(runs[0].len, PG);
	CU_ASSERT_EQUAL(runs[1].off, 5 * PG);
	CU_ASSERT_EQUAL(runs[1].len, 3 * PG);
	CU_ASSERT_EQUAL(runs[2].off, 100 * PG);
	CU_ASSERT_EQUAL(runs[2].len, PG);
	CU_ASSERT_EQUAL(bytes, 5 * PG);
	/* Collected: armed again, so only the new write shows. */
	CU_ASSERT_EQUAL(collect(t, &runs, &cap, &bytes), 0);
	mem[5 * PG] = 7;
	CU_ASSERT_EQUAL_FATAL(collect(t, &runs, &cap, &bytes), 1);
	CU_ASSERT_EQUAL(runs[0].off, 5 * PG);
	CU_ASSERT_EQUAL(runs[0].len, PG);
	CU_ASSERT_EQUAL(mem[0] + mem[5 * PG] + mem[6 * PG + 4095] + mem[100 * PG + 2], 1 + 7 + 3 + 6);
	tracker_close(t);
	/* Closed: writable everywhere, and no handler left in the way. */
	memset(mem, 0xab, NPAGES * PG);
	CU_ASSERT_EQUAL(mem[NPAGES * PG - 1], 0xab);
	free(runs);
	munmap(mem, NPAGES * PG);
}

struct writer {
	uint8_t *mem;
	volatile int *stop;
	uint64_t written[NPAGES / 64]; /* pages this thread wrote, ever */
	unsigned seed;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!*w->stop) {
		uint64_t pg = (uint64_t)rand_r(&w->seed) % NPAGES;
		w->mem[pg * PG + (uint64_t)rand_r(&w->seed) % PG]++;
		w->written[pg / 64] |= 1ull << (pg % 64);
	}
	return NULL;
}

/*
 * Two writer threads against repeated collects: every page written shows
 * up in some collect (a lost write would leave its page unreported).  The
 * memory is checked against a shadow copy taken at each collect, as a
 * migration would send it: the final copy must equal the memory.
 */
static void test_concurrent_writers(void)
{
	uint8_t *mem = map_guest(), *shadow = calloc(NPAGES, PG);
	struct writer w[2] = { { .seed = 1 }, { .seed = 2 } };
	struct tracker *t = NULL;
	struct dirty_run *runs = NULL;
	volatile int stop = 0;
	uint64_t bytes, seen[NPAGES / 64] = { 0 };
	size_t cap = 0;
	char why[256];
	pthread_t th[2];

	CU_ASSERT_FATAL(shadow != NULL);
	CU_ASSERT_EQUAL_FATAL(tracker_open("mprotect", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	for (int i = 0; i < 2; i++) {
		w[i].mem = mem;
		w[i].stop = &stop;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (int round = 0; round < 60; round++) {
		long n = collect(t, &runs, &cap, &bytes);
		CU_ASSERT_FATAL(n >= 0);
		for (long i = 0; i < n; i++) {
			memcpy(shadow + runs[i].off, mem + runs[i].off, runs[i].len);
			for (uint64_t p = runs[i].off / PG; p < (runs[i].off + runs[i].len) / PG; p++)
				seen[p / 64] |= 1ull << (p % 64);
		}
		usleep(200);
	}
	stop = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	/* The final round, with the "vCPUs" stopped. */
	long n = collect(t, &runs, &cap, &bytes);
	CU_ASSERT_FATAL(n >= 0);
	for (long i = 0; i < n; i++)
		memcpy(shadow + runs[i].off, mem + runs[i].off, runs[i].len);
	CU_ASSERT_EQUAL(memcmp(shadow, mem, NPAGES * PG), 0);
	for (unsigned i = 0; i < NPAGES / 64; i++)
		CU_ASSERT_EQUAL((w[0].written[i] | w[1].written[i]) & ~seen[i], 0);
	tracker_close(t);
	free(runs);
	free(shadow);
	munmap(mem, NPAGES * PG);
}

static void test_auto_env_and_names(void)
{
	uint8_t *mem = map_guest();
	struct tracker *t = NULL;
	char why[256] = "";

	setenv("RMIG_DIRTY_TRACKING", "mprotect", 1);
	CU_ASSERT_EQUAL_FATAL(tracker_open("auto", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(tracker_name(t), "mprotect");
	tracker_close(t);
	setenv("RMIG_DIRTY_TRACKING", "nonsense", 1);
	CU_ASSERT_EQUAL(tracker_open(NULL, mem, NPAGES * PG, PG, &t, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "mprotect"));
	unsetenv("RMIG_DIRTY_TRACKING");
	/* An explicit choice wins over the environment. */
	setenv("RMIG_DIRTY_TRACKING", "uffd-async", 1);
	CU_ASSERT_EQUAL_FATAL(tracker_open("mprotect", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(tracker_name(t), "mprotect");
	tracker_close(t);
	unsetenv("RMIG_DIRTY_TRACKING");
	/* auto always finds one: a uffd tracker, or the mprotect fallback. */
	CU_ASSERT_EQUAL_FATAL(tracker_open("auto", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	mem[3 * PG] = 1;
	tracker_close(t);
	munmap(mem, NPAGES * PG);
}

static sigjmp_buf foreign_jmp;
static volatile sig_atomic_t foreign_hits;

static void foreign_handler(int sig)
{
	(void)sig;
	foreign_hits++;
	siglongjmp(foreign_jmp, 1);
}

/* A write to a read-only page that is not the guest's goes to the handler
 * installed before the tracker, as if the tracker were not there. */
static void test_foreign_fault_chains(void)
{
	uint8_t *mem = map_guest();
	uint8_t *ro = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa = { .sa_handler = foreign_handler }, old;
	struct tracker *t = NULL;
	char why[256];

	CU_ASSERT_FATAL(ro != MAP_FAILED);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	CU_ASSERT_EQUAL_FATAL(tracker_open("mprotect", mem, NPAGES * PG, PG, &t, why, sizeof(why)), 0);
	if (!sigsetjmp(foreign_jmp, 1))
		*(volatile uint8_t *)ro = 1;
	CU_ASSERT_EQUAL(foreign_hits, 1);
	/* The tracker still works after the foreign fault. */
	mem[9 * PG] = 1;
	struct dirty_run *runs = NULL;
	size_t cap = 0;
	uint64_t bytes;
	CU_ASSERT_EQUAL(collect(t, &runs, &cap, &bytes), 1);
	/* The foreign handler left by siglongjmp: closing must not wait for
	 * a handler it thinks is still running. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tracker_close(t);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CU_ASSERT((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 500);
	/* Closing put the earlier handler back. */
	struct sigaction now;
	sigaction(SIGSEGV, NULL, &now);
	CU_ASSERT(now.sa_handler == foreign_handler);
	sigaction(SIGSEGV, &old, NULL);
	free(runs);
	munmap(ro, PG);
	munmap(mem, NPAGES * PG);
}

static const CU_TestInfo tests[] = {
	{ "mprotect: exactly the pages written, re-armed by collect", test_exact_pages },
	{ "mprotect: no write lost under concurrent writers", test_concurrent_writers },
	{ "auto honours RMIG_DIRTY_TRACKING, explicit choice wins", test_auto_env_and_names },
	{ "mprotect: a foreign fault reaches the earlier handler", test_foreign_fault_chains },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("dirty", NULL, NULL, tests);
}
