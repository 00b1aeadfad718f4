/* SPDX-License-Identifier: MIT */
/*
 * Post-copy's page mover (plugin/pull.c) over a real backend:
 *
 *   test_pull BACKEND                     the tests, each with a source
 *                                         process of its own
 *   test_pull BACKEND --source MIB SEED   be that source
 *
 * The source registers MIB of pattern (its last ZERO_TAIL pages zeros) for
 * remote read on two connections and sends a key on each.  The destination
 * holds the pattern already (as after pre-copy), except the pages it marks
 * missing (stale bytes), and the zero tail (never sent, never touched); it
 * starts the mover and touches pages the way a guest would.  Exits 77 when
 * the backend or userfaultfd is not available here.  RMIG_CONF_HOST is the
 * address the source listens on (default 127.0.0.1; verbs on RoCE needs the
 * RDMA netdev's, as for the conformance suite).
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "../../plugin/pull.h"
#include "../../common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096u
#define ZERO_TAIL 16u
#define MIB (1024ull * 1024ull)

static const char *backend;

struct src {
	pid_t pid;
	struct rmig_ep *ep[2];
	struct rmig_rkey rk[2];
};

/* --- the source process ---------------------------------------------------- */

static int source_main(const char *spec, uint64_t len, unsigned seed)
{
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 30000 };
	struct rmig_ep *l, *ep[2] = { 0 };
	struct rmig_mr *mr[2] = { 0 };
	uint8_t key[RMIG_RKEY_WIRE_SIZE];
	const char *host = getenv("RMIG_CONF_HOST");
	char addr[128], listen_addr[160], buf[16];
	uint8_t *mem;

	snprintf(listen_addr, sizeof(listen_addr), "%s:0", host && *host ? host : "127.0.0.1");
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || rmig_listen(spec, listen_addr, &o, &l) ||
	    rmig_local_addr(l, addr, sizeof(addr)))
		return 1;
	rmig_test_fill(mem, len - ZERO_TAIL * PAGE, seed, 0);
	printf("source listening on %s\n", addr);
	fflush(stdout);
	for (int i = 0; i < 2; i++) {
		if (rmig_accept(l, 30000, &ep[i]) ||
		    rmig_reg_mr(ep[i], mem, len, RMIG_ACCESS_REMOTE_READ, &mr[i])) {
			fprintf(stderr, "source: %s\n", rmig_last_error());
			return 1;
		}
		rmig_rkey_encode(rmig_mr_rkey(mr[i]), key);
		if (rmig_send(ep[i], key, sizeof(key)))
			return 1;
	}
	/* Serve reads (no software of ours in their path) until told. */
	rmig_recv(ep[0], buf, sizeof(buf), 120000);
	for (int i = 0; i < 2; i++) {
		rmig_dereg_mr(ep[i], mr[i]);
		rmig_close(ep[i]);
	}
	rmig_close(l);
	return 0;
}

/* Start a source of len bytes (exec'd: RDMA contexts do not survive fork). */
static int src_open(struct src *s, uint64_t len, unsigned seed)
{
	static const char banner[] = "source listening on ";
	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK, .timeout_ms = 3000 };
	char line[256] = "", mib[32], sd[32];
	uint8_t key[RMIG_RKEY_WIRE_SIZE];
	int pfd[2];
	ssize_t n;

	memset(s, 0, sizeof(*s));
	snprintf(mib, sizeof(mib), "%llu", (unsigned long long)(len / MIB));
	snprintf(sd, sizeof(sd), "%u", seed);
	if (pipe(pfd))
		return -1;
	s->pid = fork();
	if (s->pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		execl("/proc/self/exe", "test_pull", backend, "--source", mib, sd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	n = read(pfd[0], line, sizeof(line) - 1);
	close(pfd[0]);
	line[n > 0 ? n : 0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, banner, sizeof(banner) - 1))
		return -1;
	for (int i = 0; i < 2; i++) {
		if (rmig_connect(backend, line + sizeof(banner) - 1, &o, &s->ep[i]) ||
		    rmig_recv(s->ep[i], key, sizeof(key), 30000) != sizeof(key) ||
		    rmig_rkey_decode(key, &s->rk[i])) {
			fprintf(stderr, "destination: %s\n", rmig_last_error());
			return -1;
		}
	}
	return 0;
}

static void src_close(struct src *s)
{
	if (s->ep[0])
		rmig_send(s->ep[0], "DONE", 5);
	for (int i = 0; i < 2; i++)
		rmig_close(s->ep[i]);
	if (s->pid > 0)
		waitpid(s->pid, NULL, 0);
}

/* --- the destination ------------------------------------------------------- */

struct guest {
	uint8_t *mem;
	uint64_t len, npages;
	uint64_t *missing;
	uint64_t nmissing;
	unsigned seed;
};

/*
 * Memory as pre-copy left it: the pattern, except `percent` of the pages
 * (stale: 0xdd) and the zero tail (never sent: not populated).
 */
static int guest_make(struct guest *g, uint64_t len, unsigned seed, unsigned percent)
{
	g->len = len;
	g->npages = len / PAGE;
	g->seed = seed;
	g->nmissing = 0;
	g->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g->missing = calloc((g->npages + 63) / 64, sizeof(uint64_t));
	if (g->mem == MAP_FAILED || !g->missing)
		return -1;
	rmig_test_fill(g->mem, len, seed, 0);
	srand(seed);
	for (uint64_t k = 0; k < g->npages - ZERO_TAIL; k++) {
		if ((unsigned)rand() % 100 >= percent)
			continue;
		g->missing[k / 64] |= 1ull << (k % 64);
		g->nmissing++;
		memset(g->mem + k * PAGE, 0xdd, PAGE);
	}
	madvise(g->mem + len - ZERO_TAIL * PAGE, ZERO_TAIL * PAGE, MADV_DONTNEED);
	return 0;
}

static void guest_free(struct guest *g)
{
	munmap(g->mem, g->len);
	free(g->missing);
}

/* Whether page k holds the source's bytes (reading it may fault). */
static int page_right(const struct guest *g, uint64_t k)
{
	const uint8_t *p = g->mem + k * PAGE;

	if (k >= g->npages - ZERO_TAIL) {
		for (unsigned i = 0; i < PAGE; i++)
			if (p[i])
				return 0;
		return 1;
	}
	return rmig_test_check(p, PAGE, g->seed, k * PAGE) < 0;
}

struct toucher {
	pthread_t t;
	const struct guest *g;
	unsigned seed, count, wrong;
	int all_missing; /* touch every missing page once, in a random order */
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	unsigned r = t->seed;

	if (t->all_missing) {
		uint64_t n = t->g->npages, start = (uint64_t)rand_r(&r) % n;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t k = (start + i * 7919) % n; /* 7919 prime: a permutation */
			if (k < n - ZERO_TAIL && !(t->g->missing[k / 64] >> (k % 64) & 1))
				continue;
			t->wrong += !page_right(t->g, k);
		}
		return NULL;
	}
	for (unsigned i = 0; i < t->count; i++)
		t->wrong += !page_right(t->g, (uint64_t)rand_r(&r) % t->g->npages);
	return NULL;
}

static int uffd_usable(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);

	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static void print_stats(const char *what, const struct pull_stats *st)
{
	fprintf(stderr,
		"  (%s over %s: %llu pages missing; %llu faults placed %llu pages, "
		"puller %llu, zero pages %llu; fault p50 %.1f us p99 %.1f us max %.1f us; "
		"all present after %llu ms)\n",
		what, backend, (unsigned long long)st->pages, (unsigned long long)st->faults,
		(unsigned long long)st->fault_pages, (unsigned long long)st->pulled,
		(unsigned long long)st->zero_filled, st->lat_p50_ns / 1e3, st->lat_p99_ns / 1e3,
		st->lat_max_ns / 1e3, (unsigned long long)st->all_present_ms);
}

static int start(struct src *s, struct guest *g, const struct pull_opts *o, struct pull **p)
{
	struct pull_block b = { .addr = g->mem, .len = g->len, .fault_rkey = &s->rk[0],
				.pull_rkey = &s->rk[1], .missing = g->missing };
	char why[RMIG_ERR_MAX];
	int rc = pull_start(s->ep[0], s->ep[1], &b, 1, o, p, why);

	if (rc)
		fprintf(stderr, "pull_start: %s\n", why);
	return rc;
}

/* Faults only: the guest touches every missing page; each arrives by a read. */
static void test_faults_only(void)
{
	struct pull_opts o = { .prefetch = 3, .puller = 0, .timeout_ms = 5000 };
	struct toucher t[2];
	struct pull_stats st;
	struct guest g;
	struct src s;
	struct pull *p;

	CU_ASSERT_EQUAL_FATAL(src_open(&s, 16 * MIB, 41), 0);
	CU_ASSERT_EQUAL_FATAL(guest_make(&g, 16 * MIB, 41, 50), 0);
	CU_ASSERT_EQUAL_FATAL(start(&s, &g, &o, &p), 0);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct toucher){ .g = &g, .seed = 7 + (unsigned)i, .all_missing = 1 };
		pthread_create(&t[i].t, NULL, touch_main, &t[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].t, NULL);
		CU_ASSERT_EQUAL(t[i].wrong, 0);
	}
	CU_ASSERT_EQUAL(pull_wait(p, 30000), 0);
	pull_get_stats(p, &st);
	print_stats("faults only", &st);
	CU_ASSERT_EQUAL(st.pages, g.nmissing);
	CU_ASSERT_EQUAL(st.present, g.nmissing);
	CU_ASSERT_EQUAL(st.pulled, 0);
	CU_ASSERT_EQUAL(st.fault_pages, g.nmissing);
	CU_ASSERT(st.faults > 0 && st.faults <= g.nmissing);
	CU_ASSERT_EQUAL(st.zero_filled, ZERO_TAIL);
	pull_stop(p);
	CU_ASSERT(rmig_test_check(g.mem, g.len - ZERO_TAIL * PAGE, 41, 0) < 0);
	guest_free(&g);
	src_close(&s);
}

/* The puller and a touching guest together: every page right, none twice. */
static void test_puller_and_faults(void)
{
	struct pull_opts o = { .prefetch = 7, .puller = 1, .timeout_ms = 5000 };
	struct toucher t[2];
	struct pull_stats st;
	struct guest g;
	struct src s;
	struct pull *p;

	CU_ASSERT_EQUAL_FATAL(src_open(&s, 64 * MIB, 42), 0);
	CU_ASSERT_EQUAL_FATAL(guest_make(&g, 64 * MIB, 42, 75), 0);
	CU_ASSERT_EQUAL_FATAL(start(&s, &g, &o, &p), 0);
	for (int i = 0; i < 2; i++) {
		t[i] = (struct toucher){ .g = &g, .seed = 11 + (unsigned)i, .count = 3000 };
		pthread_create(&t[i].t, NULL, touch_main, &t[i]);
	}
	CU_ASSERT_EQUAL(pull_wait(p, 60000), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i].t, NULL);
		CU_ASSERT_EQUAL(t[i].wrong, 0);
	}
	pull_get_stats(p, &st);
	print_stats("puller and faults", &st);
	CU_ASSERT_EQUAL(st.pages, g.nmissing);
	CU_ASSERT_EQUAL(st.present, g.nmissing);
	CU_ASSERT_EQUAL(st.fault_pages + st.pulled, g.nmissing);
	CU_ASSERT(st.all_present_ms > 0 || g.nmissing == 0);
	pull_stop(p);
	CU_ASSERT(rmig_test_check(g.mem, g.len - ZERO_TAIL * PAGE, 42, 0) < 0);
	for (uint64_t k = g.npages - ZERO_TAIL; k < g.npages; k++)
		CU_ASSERT(page_right(&g, k));
	guest_free(&g);
	src_close(&s);
}

/*
 * The source dies after the switch-over: the mover reports the loss, with
 * how much is lost, and no missing page was ever filled by anything else.
 */
static void test_source_killed(void)
{
	struct pull_opts o = { .prefetch = 7, .puller = 1, .timeout_ms = 3000 };
	unsigned char *vec;
	struct guest g;
	struct src s;
	struct pull *p;
	uint64_t t0, resident = 0;
	int rc;

	CU_ASSERT_EQUAL_FATAL(src_open(&s, 64 * MIB, 43), 0);
	CU_ASSERT_EQUAL_FATAL(guest_make(&g, 64 * MIB, 43, 90), 0);
	kill(s.pid, SIGKILL);
	waitpid(s.pid, NULL, 0);
	s.pid = 0;
	t0 = rmig_now_ms();
	CU_ASSERT_EQUAL_FATAL(start(&s, &g, &o, &p), 0);
	rc = pull_wait(p, 20000);
	fprintf(stderr, "  (source killed: %d '%s' after %llu ms)\n", rc, pull_error(p),
		(unsigned long long)(rmig_now_ms() - t0));
	CU_ASSERT(rc < 0 && rc != -ETIMEDOUT);
	CU_ASSERT_PTR_NOT_NULL(strstr(pull_error(p), "not yet pulled"));
	vec = malloc(g.npages);
	CU_ASSERT_FATAL(vec && !mincore(g.mem, g.len, vec));
	for (uint64_t k = 0; k < g.npages; k++)
		if ((g.missing[k / 64] >> (k % 64) & 1) && (vec[k] & 1))
			resident++;
	/* The pages placed before the failure are fine; no other is mapped. */
	struct pull_stats st;
	pull_get_stats(p, &st);
	CU_ASSERT_EQUAL(resident, st.present);
	CU_ASSERT(st.present < st.pages);
	free(vec);
	pull_stop(p);
	guest_free(&g);
	src_close(&s);
}

static const CU_TestInfo tests[] = {
	{ "faults only, every missing page touched", test_faults_only },
	{ "puller and faults together", test_puller_and_faults },
	{ "source killed after the switch-over", test_source_killed },
	CU_TEST_INFO_NULL,
};

int main(int argc, char **argv)
{
	char why[RMIG_ERR_MAX], name[64];

	if (argc < 2) {
		fprintf(stderr, "usage: test_pull BACKEND [--source MIB SEED]\n");
		return 2;
	}
	backend = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[2], "--source"))
		return source_main(backend, strtoull(argv[3], NULL, 10) * MIB,
				   (unsigned)strtoul(argv[4], NULL, 10));
	if (rmig_backend_probe(backend, why, sizeof(why))) {
		fprintf(stderr, "test_pull %s: skipped: %s\n", backend, why);
		return RMIG_TEST_SKIP;
	}
	if (!uffd_usable()) {
		fprintf(stderr, "test_pull %s: skipped: userfaultfd is not available (%s)\n",
			backend, strerror(errno));
		return RMIG_TEST_SKIP;
	}
	snprintf(name, sizeof(name), "pull %s", backend);
	return rmig_test_run(name, NULL, NULL, tests);
}
