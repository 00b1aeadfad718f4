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
 * code (0 all passed, 1 otherwise).  init/clean may be NULL.
 */
int rmig_test_run(const char *suite, CU_InitializeFunc init, CU_CleanupFunc clean,
		  const CU_TestInfo *tests);

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
