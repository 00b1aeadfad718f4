/* SPDX-License-Identifier: MIT */
/* The median of a few samples (RSS readings that spike now and then). */
#ifndef RMIG_COMMON_MEDIAN_H
#define RMIG_COMMON_MEDIAN_H

#include <stddef.h>
#include <stdlib.h>

static inline int rmig_cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* Sorts v[0..n) in place; n > 0. */
static inline long rmig_median_long(long *v, size_t n)
{
	qsort(v, n, sizeof(*v), rmig_cmp_long);
	return v[n / 2];
}

#endif
