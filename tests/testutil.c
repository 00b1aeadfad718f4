/* SPDX-License-Identifier: MIT */
#include "testutil.h"
#include "../common/ofi_env.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether name contains one of the '|'-separated parts of only. */
static int picked_by(const char *name, const char *only)
{
	char part[128];

	while (*only) {
		size_t n = strcspn(only, "|");
		snprintf(part, sizeof(part), "%.*s", (int)n, only);
		if (n && n < sizeof(part) && strstr(name, part))
			return 1;
		only += n + (only[n] == '|');
	}
	return 0;
}

/* Test programs are hosts: libfabric's tunables in their own environment
 * before anything (a backend probe in main already reads them). */
__attribute__((constructor)) static void test_env(void)
{
	rmig_ofi_env_defaults();
}

/* Test programs are hosts: they print what the library logs. */
static void test_log(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level < RMIG_LOG_DEBUG || getenv("RMIG_TRACE"))
		fprintf(stderr, "rdmamig: %s\n", msg);
}

static unsigned skipped;

void rmig_test_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "SKIP: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	skipped++;
}

static int backend_selected(const char *spec)
{
	const char *list = getenv("RMIG_TEST_BACKENDS"), *p;
	size_t n = strlen(spec);

	if (!list || !*list)
		return 1;
	for (p = list; (p = strstr(p, spec)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return 1;
	return 0;
}

int rmig_test_backend(const char *spec)
{
	char why[RMIG_ERR_MAX];

	if (!backend_selected(spec))
		return 0;
	if (rmig_backend_probe(spec, why, sizeof(why))) {
		rmig_test_skip("backend %s cannot run here: %s", spec, why);
		return 0;
	}
	return 1;
}

/* RMIG_TEST_BACKENDS names backends and none of them runs here. */
static int no_selected_backend_runs(const char *suite)
{
	const char *list = getenv("RMIG_TEST_BACKENDS");
	char why[RMIG_ERR_MAX] = "no backend of that name is compiled in";

	if (!list || !*list)
		return 0;
	for (int i = 0; rmig_backend_spec(i); i++)
		if (backend_selected(rmig_backend_spec(i)) &&
		    !rmig_backend_probe(rmig_backend_spec(i), why, sizeof(why)))
			return 0;
	fprintf(stderr, "SKIP: %s: none of RMIG_TEST_BACKENDS=%s can run here (%s)\n", suite, list,
		why);
	return 1;
}

int rmig_test_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc clean,
		  const CU_TestInfo *tests)
{
	CU_SuiteInfo suites[] = { { suite, init, clean, NULL, NULL, (CU_TestInfo *)tests },
				  CU_SUITE_INFO_NULL };
	/* RMIG_TEST_ONLY=A|B: only the tests whose name contains A or B (loops, bisecting). */
	const char *only = getenv("RMIG_TEST_ONLY");
	CU_TestInfo picked[256];
	unsigned failed, n = 0;

	rmig_set_log(test_log, NULL);
	if (no_selected_backend_runs(suite))
		return RMIG_TEST_SKIP;

	if (only && *only) {
		for (const CU_TestInfo *t = tests; t->pName && n + 1 < 256; t++)
			if (picked_by(t->pName, only))
				picked[n++] = *t;
		picked[n] = (CU_TestInfo)CU_TEST_INFO_NULL;
		if (!n) {
			fprintf(stderr, "%s: no test name contains RMIG_TEST_ONLY='%s'\n", suite, only);
			return 1;
		}
		suites[0].pTests = picked;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if (CU_register_suites(suites) != CUE_SUCCESS) {
		fprintf(stderr, "cannot register suite %s: %s\n", suite, CU_get_error_msg());
		CU_cleanup_registry();
		return 1;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	if (!failed && skipped)
		fprintf(stderr, "%s: SKIPPED: %u part(s) could not run here (SKIP lines above)\n",
			suite, skipped);
	return failed ? 1 : skipped ? RMIG_TEST_SKIP : 0;
}

void rmig_test_fill(void *buf, size_t len, uint32_t seed, uint64_t first)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = rmig_test_byte(seed, first + i);
}

long long rmig_test_check(const void *buf, size_t len, uint32_t seed, uint64_t first)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != rmig_test_byte(seed, first + i))
			return (long long)i;
	return -1;
}

int rmig_test_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

long rmig_test_rss_kib(void)
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

const uint8_t rmig_test_psk[32] = "rdmamig test key, not a secret!";
