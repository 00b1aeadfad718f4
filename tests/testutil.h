/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the CUnit test programs. */
#ifndef RMIG_TESTUTIL_H
#define RMIG_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <rdmamig/rdmamig.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The pre-shared key test ends share: tests authenticate like real peers
 * (a constant, so a peer process started apart, even on another host,
 * holds it too).  RMIG_TEST_PSK goes into an rmig_ep_opts initializer.
 */
extern const uint8_t rmig_test_psk[32];
#define RMIG_TEST_PSK .psk = rmig_test_psk, .psk_len = sizeof(rmig_test_psk)

/* Exit code ctest reads as "skipped" (SKIP_RETURN_CODE 77). */
#define RMIG_TEST_SKIP 77

/*
 * Run one suite of tests, print CUnit's report, return the process exit
 * code: 1 if a case failed, else RMIG_TEST_SKIP if part of the program
 * could not run here (rmig_test_skip), else 0.  init/clean may be NULL.
 * With RMIG_TEST_BACKENDS set and none of its backends able to run here,
 * nothing runs and the program is skipped.
 */
int rmig_test_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc clean,
		  const CU_TestInfo *tests);

/*
 * Part of this program cannot run here: why goes to stderr, and the
 * program ends skipped (never passed) unless a case failed.
 */
void rmig_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * 1 if this program should test backend spec: it is in RMIG_TEST_BACKENDS
 * (comma-separated; unset: every spec, rmig_backend_spec) and can run here.
 * A spec selected that cannot run here is a skip (rmig_test_skip).
 */
int rmig_test_backend(const char *spec);

/* Deterministic test pattern: byte i of stream seed. */
static inline uint8_t rmig_test_byte(uint32_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32 | seed);
	x ^= x >> 29;
	return (uint8_t)(x ^ (x >> 17));
}
void rmig_test_fill(void *buf, size_t len, uint32_t seed, uint64_t first);
/* Index of the first byte that differs from the pattern, or -1. */
long long rmig_test_check(const void *buf, size_t len, uint32_t seed, uint64_t first);

/* Open file descriptors and resident set (KiB) of this process. */
int rmig_test_count_fds(void);
long rmig_test_rss_kib(void);

#endif
