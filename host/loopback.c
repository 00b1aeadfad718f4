/* SPDX-License-Identifier: MIT */
/*
 * Both ends in one process: the destination in a thread, the source in
 * the caller's.  For checks that need one address space over many
 * migrations (descriptors, threads, memory and registered regions must
 * come back to where they were: `rdmamig bench hygiene`).
 */
#define _GNU_SOURCE
#include "host.h"
#include "../common/clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct dest {
	struct host_opts o;
	struct host_result *r;
	/* lock guards addr and state; cond signals the change. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char addr[128];
	int state; /* 0 starting, 1 listening, 2 done */
	int rc;
};

static void on_listen(const char *addr, void *arg)
{
	struct dest *d = arg;

	pthread_mutex_lock(&d->lock);
	snprintf(d->addr, sizeof(d->addr), "%s", addr);
	d->state = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void *dest_main(void *arg)
{
	struct dest *d = arg;
	int rc = host_serve(&d->o, d->r);

	pthread_mutex_lock(&d->lock);
	d->rc = rc;
	d->state = 2;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Wait until the destination listens or ends, by timeout_ms. */
static int wait_listening(struct dest *d, int timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (!d->state && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&d->cond, &d->lock, &ts);
	rc = d->state == 1 ? 0 : d->state == 2 ? -EIO : -ETIMEDOUT;
	pthread_mutex_unlock(&d->lock);
	return rc;
}

int host_loopback(const struct host_opts *o, struct host_result *src, struct host_result *dst)
{
	struct dest d = { .o = *o, .r = dst, .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER };
	struct host_opts so = *o;
	uint8_t key[32];
	pthread_t t;
	int rc;

	memset(src, 0, sizeof(*src));
	/* Both ends are ours: a fresh random key, as host_demo does. */
	if (!o->psk && !o->insecure) {
		if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
			snprintf(src->error, sizeof(src->error),
				 "cannot draw a random key (getrandom)");
			return src->rc = -EIO;
		}
		so.psk = d.o.psk = key;
		so.psk_len = d.o.psk_len = sizeof(key);
	}
	d.o.addr = "127.0.0.1:0";
	d.o.progress = 0;
	d.o.on_progress = NULL;
	d.o.on_listen = on_listen;
	d.o.arg = &d;
	if ((rc = pthread_create(&t, NULL, dest_main, &d))) {
		snprintf(src->error, sizeof(src->error), "cannot start the destination thread");
		return src->rc = -rc;
	}
	rc = wait_listening(&d, o->timeout_ms);
	if (rc) {
		snprintf(src->error, sizeof(src->error), "the destination did not listen: %.200s",
			 rc == -EIO ? dst->error : "no address within the timeout");
		src->rc = rc;
	} else {
		so.addr = d.addr;
		rc = host_migrate(&so, src);
	}
	/* host_serve ends by its own deadlines (accept, every wait on the peer). */
	pthread_join(t, NULL);
	pthread_cond_destroy(&d.cond);
	pthread_mutex_destroy(&d.lock);
	return rc ? rc : d.rc;
}
