/* SPDX-License-Identifier: MIT */
/* Monotonic time and deadlines: nothing in rdmamig waits forever. */
#ifndef RMIG_COMMON_CLOCK_H
#define RMIG_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rmig_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rmig_now_ms(void)
{
	return rmig_now_ns() / 1000000ull;
}

/* Deadline in ms of the monotonic clock; timeout_ms < 0 means none. */
static inline uint64_t rmig_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? UINT64_MAX : rmig_now_ms() + (uint64_t)timeout_ms;
}

/* Milliseconds left before deadline (0 once passed; -1 for none). */
static inline int rmig_left_ms(uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return -1;
	uint64_t now = rmig_now_ms();
	if (now >= deadline)
		return 0;
	uint64_t left = deadline - now;
	return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

#endif
