/* SPDX-License-Identifier: MIT */
/*
 * stream_fd: for a host driven by an event loop (QEMU's incoming side is a
 * coroutine), an eventfd that is readable whenever stream_read with
 * timeout 0 has something to say.  Once asked for, a pump thread receives
 * the control connection's messages one at a time into a one-message slot
 * and raises the eventfd; mig_recv then takes its messages from the slot
 * instead of the connection.  One slot: the peer is never read ahead of the
 * framework by more than one message.
 *
 * The pump only receives; the framework thread still sends on the same
 * endpoint (every backend serialises its own send and receive paths).
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* The pump looks at quit this often while nothing arrives. */
#define PUMP_SLICE_MS 50

struct mig_pump {
	struct rmig_mig *s;
	pthread_t thread;
	/* lock guards full, len, err, quit, raised and msg while full. */
	pthread_mutex_t lock;
	pthread_cond_t cv;    /* slot emptied / slot filled */
	int efd;
	int full;             /* msg holds one message of len bytes */
	int len;
	int err;              /* the pump stopped on this (-errno), 0 while running */
	int quit;
	int raised;           /* efd holds a count */
	uint8_t msg[RMIG_MSG_MAX];
};

static void set_fd(struct mig_pump *p, int on)
{
	uint64_t v = 1;

	if (on && !p->raised)
		p->raised = write(p->efd, &v, sizeof(v)) == sizeof(v);
	else if (!on && p->raised)
		p->raised = !(read(p->efd, &v, sizeof(v)) == sizeof(v));
}

static void *pump_main(void *arg)
{
	struct mig_pump *p = arg;
	int n;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->full && !p->quit)
			pthread_cond_wait(&p->cv, &p->lock);
		if (p->quit)
			break;
		pthread_mutex_unlock(&p->lock);
		n = rmig_recv(p->s->ep, p->msg, sizeof(p->msg), PUMP_SLICE_MS);
		pthread_mutex_lock(&p->lock);
		if (n == -ETIMEDOUT)
			continue;
		if (n < 0) {
			p->err = n;
			set_fd(p, 1);
			pthread_cond_broadcast(&p->cv);
			break;
		}
		p->len = n;
		p->full = 1;
		set_fd(p, 1);
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int mig_stream_fd(struct rmig_mig *s)
{
	struct mig_pump *p = s->pump;
	pthread_condattr_t ca;

	if (p)
		return p->efd;
	if (!s->ep)
		return mig_err(s, -ENOTCONN, "stream_fd before the session has a connection");
	p = calloc(1, sizeof(*p));
	if (!p)
		return mig_err(s, -ENOMEM, "out of memory for the stream pump");
	p->s = s;
	p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->efd < 0) {
		free(p);
		return mig_err(s, -errno, "cannot make the stream's eventfd: %s", strerror(errno));
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* A session already over, or with bytes already buffered, is readable. */
	if (s->rx_len || s->ended || s->state == RMIG_STATE_ROLLED_BACK ||
	    s->state == RMIG_STATE_FAILED || mig_shut(s))
		set_fd(p, 1);
	if (pthread_create(&p->thread, NULL, pump_main, p)) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->lock);
		close(p->efd);
		free(p);
		return mig_err(s, -EAGAIN, "cannot start the stream pump thread");
	}
	__atomic_store_n(&s->pump, p, __ATOMIC_RELEASE);
	return p->efd;
}

int mig_pump_take(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms)
{
	struct mig_pump *p = s->pump;
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct timespec ts;
	int n;

	pthread_mutex_lock(&p->lock);
	while (!p->full && !p->err) {
		int left = rmig_left_ms(deadline);
		if (mig_shut(s) || !left)
			break;
		if (left < 0 || left > MIG_SLICE_MS)
			left = MIG_SLICE_MS;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)left * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&p->cv, &p->lock, &ts);
	}
	if (p->full && (size_t)p->len > cap) {
		n = -EMSGSIZE;
	} else if (p->full) {
		memcpy(buf, p->msg, (size_t)p->len);
		n = p->len;
		p->full = 0;
		pthread_cond_broadcast(&p->cv);
	} else {
		n = p->err ? p->err : mig_shut(s) ? -ECANCELED : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&p->lock);
	if (n == -ECANCELED)
		rmig_set_error(s->ep, n, "shut down");
	return n;
}

void mig_pump_sync(struct rmig_mig *s)
{
	struct mig_pump *p = __atomic_load_n(&s->pump, __ATOMIC_ACQUIRE);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	set_fd(p, p->full || p->err || s->rx_len || s->ended || mig_shut(s) ||
		      s->state == RMIG_STATE_ROLLED_BACK || s->state == RMIG_STATE_FAILED);
	pthread_mutex_unlock(&p->lock);
}

/* Any thread (shutdown): the fd goes readable; stream_read says why. */
void mig_pump_raise(struct rmig_mig *s)
{
	struct mig_pump *p = __atomic_load_n(&s->pump, __ATOMIC_ACQUIRE);

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	set_fd(p, 1);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
}

void mig_pump_stop(struct rmig_mig *s)
{
	struct mig_pump *p = s->pump;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
	close(p->efd);
	s->pump = NULL;
	free(p);
}
