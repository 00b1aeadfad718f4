/* SPDX-License-Identifier: MIT */
/*
 * Hygiene, short version of `rdmamig bench hygiene`: 200 migrations back
 * to back in this process over each backend; after the 200th it holds
 * no more descriptors, threads or registered regions than after the 10th,
 * and its RSS has not grown by more than the allocator's noise.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "migutil.h"
#include "hygiene.h"
#include <rdmamig/rdmamig.h>

#include <signal.h>
#include <stdio.h>

#define COUNT 200
#define RSS_SLACK_KIB 2048

static void hygiene_on(const char *backend)
{
	unsigned marks[2] = { 10, COUNT };
	struct hygiene_sample s[2];
	struct host_opts o;
	char why[300] = "";

	if (!backend_usable(backend))
		return;
	host_opts_default(&o);
	o.plugin = RMIG_PLUGIN_PATH;
	o.backend = backend;
	o.guest_size = 8ull << 20;
	o.timeout_ms = 5000;
	o.device_state = 4096;
	int rc = hygiene_run(&o, COUNT, marks, 2, s, why, sizeof(why));
	if (rc)
		fprintf(stderr, "%s: %s\n", backend, why);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	fprintf(stderr, "%s%s: after %u / %u migrations: fds %d / %d, threads %d / %d, RSS %ld / %ld KiB, regions %ld / %ld\n",
		backend, hygiene_forks(backend) ? " (destination forked)" : "", s[0].at, s[1].at,
		s[0].fds, s[1].fds, s[0].threads, s[1].threads, s[0].rss_kib, s[1].rss_kib,
		s[0].mrs_live, s[1].mrs_live);
	CU_ASSERT_EQUAL(s[1].fds, s[0].fds);
	CU_ASSERT_EQUAL(s[1].threads, s[0].threads);
	CU_ASSERT_EQUAL(s[0].mrs_live, 0);
	CU_ASSERT_EQUAL(s[1].mrs_live, 0);
	CU_ASSERT(s[1].rss_kib <= s[0].rss_kib + RSS_SLACK_KIB);
}

/* Every backend the registry lists that runs here (the others: SKIP). */
static void test_every_backend(void)
{
	for (unsigned i = 0; migtest_backend(i); i++)
		hygiene_on(migtest_backend(i));
}

/* The region count the checks rely on does count: during a migration
 * both ends hold their guest's regions, afterwards none. */
static void seen_live(const struct host_progress *p, void *arg)
{
	if (p->stage == HOST_STAGE_ROUND)
		*(long *)arg = rmig_mr_live();
}

static void test_counter_counts(void)
{
	struct host_result sr, dr;
	struct host_opts o;
	long during = -1;

	host_opts_default(&o);
	o.plugin = RMIG_PLUGIN_PATH;
	o.backend = "tcp";
	o.guest_size = 8ull << 20;
	o.timeout_ms = 5000;
	o.on_progress = seen_live;
	o.arg = &during;
	CU_ASSERT_EQUAL_FATAL(host_loopback(&o, &sr, &dr), 0);
	fprintf(stderr, "regions registered during round 0: %ld, after: %ld\n", during,
		rmig_mr_live());
	CU_ASSERT(during >= 2); /* the source's guest and the destination's */
	CU_ASSERT_EQUAL(rmig_mr_live(), 0);
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "the region counter counts", test_counter_counts },
		{ "every backend: 200 migrations hold what 10 held", test_every_backend },
		CU_TEST_INFO_NULL,
	};
	signal(SIGPIPE, SIG_IGN);
	migtest_watchdog(280);
	return rmig_test_run("hygiene", NULL, NULL, tests);
}
