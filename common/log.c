/* SPDX-License-Identifier: MIT */
/* The host's log callback (common/log.h). */
#define _GNU_SOURCE
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

/* The host's log callback: log_lock guards the pair, so a message never
 * reaches a callback with another one's opaque. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static rmig_log_fn log_fn;
static void *log_opaque;

void rmig_set_log(rmig_log_fn fn, void *opaque)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_opaque = opaque;
	pthread_mutex_unlock(&log_lock);
}

int rmig_log_enabled(void)
{
	return __atomic_load_n(&log_fn, __ATOMIC_RELAXED) != NULL;
}

void rmig_log(int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!rmig_log_enabled())
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	if (log_fn)
		log_fn(log_opaque, level, buf);
	pthread_mutex_unlock(&log_lock);
}
