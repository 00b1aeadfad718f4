/* SPDX-License-Identifier: MIT */
/*
 * A fake transport for the programs that drive a whole protocol engine
 * without a network: the fuzz targets (fuzz_session, fuzz_stream_session)
 * and the engine unit tests (tests/engine/).  It defines the rmig_*
 * transport calls the engines make.
 *
 * Fuzz mode (fake_reset): rmig_recv hands out the fuzzer's input as the
 * peer's messages, each [u16 little-endian length][bytes], where length
 * 0xffff means "nothing arrived in time" (-ETIMEDOUT), then -ECONNRESET
 * (the peer is gone).  Script mode (fake_script): each endpoint has its
 * own queue the test fills and a log of what was sent on it.
 *
 * In both, writes complete at once; registrations are counted.  It aborts
 * (a finding) on a write outside the local region or the peer's key, on a
 * key without remote write, or on a remote-write registration before
 * fake_remote_ok is set.
 */
#define _GNU_SOURCE
#include "fake_transport.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fake_ep {
	struct rmig_ep base;
	int idx;          /* -1: a listener */
	uint64_t posted[64];
	unsigned nposted;
};

/* A queued message from the peer, or an error (err < 0). */
struct fake_msg {
	struct fake_msg *next;
	int err;
	size_t len;
	uint8_t data[];
};

/* mu guards everything below (the engine's workers call in concurrently). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const uint8_t *in_p;
static size_t in_left;
static int scripted;
static unsigned neps;
static struct fake_msg *queue[FAKE_EPS], **queue_tail[FAKE_EPS];
static struct fake_msg *sentlog[FAKE_EPS][FAKE_LOG];
static unsigned nsent[FAKE_EPS];
static int closed[FAKE_EPS];
static unsigned send_fail_at[FAKE_EPS];
static int send_fail_rc[FAKE_EPS];
static unsigned reg_fail_in;
static int reg_fail_rc;
static __thread char last_err[RMIG_ERR_MAX];
int fake_live_mrs, fake_remote_mrs, fake_remote_ok, fake_sent_bad, fake_poll_dead;
unsigned fake_nposted;
int (*fake_check_sent)(const void *msg, size_t len);
void (*fake_on_send)(unsigned ep, const void *msg, size_t len);
int fake_connect_rc, fake_accept_rc, fake_write_status;
uint64_t fake_written;

static void clear_locked(void)
{
	for (unsigned i = 0; i < FAKE_EPS; i++) {
		while (queue[i]) {
			struct fake_msg *m = queue[i];
			queue[i] = m->next;
			free(m);
		}
		queue_tail[i] = &queue[i];
		for (unsigned k = 0; k < FAKE_LOG; k++) {
			free(sentlog[i][k]);
			sentlog[i][k] = NULL;
		}
		nsent[i] = 0;
		closed[i] = 0;
		send_fail_at[i] = 0;
		send_fail_rc[i] = 0;
	}
	neps = 0;
	reg_fail_in = 0;
	fake_live_mrs = fake_remote_mrs = fake_remote_ok = fake_sent_bad = fake_poll_dead = 0;
	fake_nposted = 0;
	fake_connect_rc = fake_accept_rc = fake_write_status = 0;
	fake_written = 0;
	fake_on_send = NULL;
}

void fake_reset(const uint8_t *data, size_t size)
{
	pthread_mutex_lock(&mu);
	clear_locked();
	scripted = 0;
	in_p = data;
	in_left = size;
	pthread_mutex_unlock(&mu);
}

void fake_script(void)
{
	pthread_mutex_lock(&mu);
	clear_locked();
	fake_check_sent = NULL;
	scripted = 1;
	in_p = NULL;
	in_left = 0;
	pthread_mutex_unlock(&mu);
}

static struct fake_msg *msg_new(int err, const void *data, size_t len)
{
	struct fake_msg *m = calloc(1, sizeof(*m) + len);

	if (!m)
		abort();
	m->err = err;
	m->len = len;
	if (len)
		memcpy(m->data, data, len);
	return m;
}

static void push(unsigned i, struct fake_msg *m)
{
	if (i >= FAKE_EPS)
		abort();
	pthread_mutex_lock(&mu);
	if (!queue_tail[i])
		queue_tail[i] = &queue[i];
	*queue_tail[i] = m;
	queue_tail[i] = &m->next;
	pthread_mutex_unlock(&mu);
}

void fake_push(unsigned i, const void *msg, size_t len) { push(i, msg_new(0, msg, len)); }
void fake_push_err(unsigned i, int err) { push(i, msg_new(err, NULL, 0)); }

unsigned fake_neps(void)
{
	pthread_mutex_lock(&mu);
	unsigned n = neps;
	pthread_mutex_unlock(&mu);
	return n;
}

int fake_closed(unsigned i)
{
	pthread_mutex_lock(&mu);
	int c = i < FAKE_EPS && closed[i];
	pthread_mutex_unlock(&mu);
	return c;
}

unsigned fake_nsent(unsigned i)
{
	pthread_mutex_lock(&mu);
	unsigned n = i < FAKE_EPS ? nsent[i] : 0;
	pthread_mutex_unlock(&mu);
	return n;
}

size_t fake_sent(unsigned i, unsigned k, void *buf, size_t cap)
{
	size_t n = 0;

	pthread_mutex_lock(&mu);
	if (i < FAKE_EPS && k < FAKE_LOG && sentlog[i][k]) {
		n = sentlog[i][k]->len < cap ? sentlog[i][k]->len : cap;
		memcpy(buf, sentlog[i][k]->data, n);
	}
	pthread_mutex_unlock(&mu);
	return n;
}

void fake_fail_send(unsigned i, unsigned k, int rc)
{
	pthread_mutex_lock(&mu);
	if (i < FAKE_EPS) {
		send_fail_at[i] = k + 1; /* 0: never */
		send_fail_rc[i] = rc;
	}
	pthread_mutex_unlock(&mu);
}

void fake_fail_reg(unsigned n, int rc)
{
	pthread_mutex_lock(&mu);
	reg_fail_in = n;
	reg_fail_rc = rc;
	pthread_mutex_unlock(&mu);
}

/* --- the fake transport ------------------------------------------------ */

int rmig_set_error(struct rmig_ep *ep, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_err, sizeof(last_err), fmt, ap);
	va_end(ap);
	if (ep)
		snprintf(ep->err, sizeof(ep->err), "%s", last_err);
	return err;
}

const char *rmig_last_error(void) { return last_err; }
const char *rmig_ep_error(const struct rmig_ep *ep) { return ep && ep->err[0] ? ep->err : "fake"; }
const char *rmig_ep_backend(const struct rmig_ep *ep) { (void)ep; return "fake"; }

static int idx_of(const struct rmig_ep *ep)
{
	return ((const struct fake_ep *)ep)->idx;
}

static struct rmig_ep *new_ep(int listener)
{
	struct fake_ep *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->base.listener = listener;
	f->idx = -1;
	if (!listener) {
		pthread_mutex_lock(&mu);
		if (neps == FAKE_EPS)
			abort();
		f->idx = (int)neps++;
		pthread_mutex_unlock(&mu);
	}
	return &f->base;
}

int rmig_listen(const char *backend, const char *addr, const struct rmig_ep_opts *o,
		struct rmig_ep **l)
{
	(void)backend, (void)addr, (void)o;
	*l = new_ep(1);
	return *l ? 0 : -ENOMEM;
}

int rmig_accept(struct rmig_ep *l, int timeout_ms, struct rmig_ep **ep)
{
	(void)timeout_ms;
	if (fake_accept_rc)
		return rmig_set_error(l, fake_accept_rc, "fake: accept failed");
	*ep = new_ep(0);
	return *ep ? 0 : -ENOMEM;
}

int rmig_backend_probe(const char *backend, char *why, size_t whylen)
{
	(void)backend;
	snprintf(why, whylen, "ok");
	return 0;
}

/* The fake registry: one backend. */
const char *rmig_backend_spec(int i)
{
	return i == 0 ? "fake" : NULL;
}

/* The fake has no shared domains: the engine registers per channel. */
int rmig_accept_on(struct rmig_ep *l, struct rmig_domain *dom, int timeout_ms,
		   struct rmig_ep **ep)
{
	(void)dom;
	return rmig_accept(l, timeout_ms, ep);
}

struct rmig_domain *rmig_ep_domain(const struct rmig_ep *ep)
{
	(void)ep;
	return NULL;
}

int rmig_connect(const char *backend, const char *addr, const struct rmig_ep_opts *o,
		 struct rmig_ep **ep)
{
	(void)backend, (void)o;
	if (fake_connect_rc)
		return rmig_set_error(NULL, fake_connect_rc, "fake: nobody at %s", addr);
	*ep = new_ep(0);
	return *ep ? 0 : -ENOMEM;
}

int rmig_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	(void)ep;
	snprintf(buf, len, "fake:1");
	return 0;
}

void rmig_close(struct rmig_ep *ep)
{
	struct fake_ep *f = (struct fake_ep *)ep;

	if (!f)
		return;
	pthread_mutex_lock(&mu);
	if (f->idx >= 0)
		closed[f->idx] = 1;
	/* Writes still posted stay counted in fake_nposted: the harness
	 * finds an engine that closes with writes in flight. */
	pthread_mutex_unlock(&mu);
	free(f);
}

int rmig_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		struct rmig_mr **out)
{
	struct rmig_mr *mr;
	int fail = 0;

	pthread_mutex_lock(&mu);
	if (reg_fail_in && !--reg_fail_in)
		fail = reg_fail_rc;
	pthread_mutex_unlock(&mu);
	if (fail)
		return rmig_set_error(ep, fail, "fake: cannot register %zu bytes", len);
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -ENOMEM;
	/* Least remote access: only once the harness says the peer may. */
	if ((access & RMIG_ACCESS_REMOTE_WRITE) && !fake_remote_ok)
		abort();
	mr->addr = addr;
	mr->len = len;
	mr->access = access;
	mr->rkey = (struct rmig_rkey){ .len = len, .key = 7, .flags = access };
	pthread_mutex_lock(&mu);
	fake_live_mrs++;
	fake_remote_mrs += !!(access & RMIG_ACCESS_REMOTE_WRITE);
	pthread_mutex_unlock(&mu);
	*out = mr;
	return 0;
}

int rmig_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	(void)ep;
	pthread_mutex_lock(&mu);
	fake_live_mrs--;
	fake_remote_mrs -= !!(mr->access & RMIG_ACCESS_REMOTE_WRITE);
	pthread_mutex_unlock(&mu);
	free(mr);
	return 0;
}

const struct rmig_rkey *rmig_mr_rkey(const struct rmig_mr *mr) { return &mr->rkey; }

/* The source never writes past a key the destination gave, nor past its
 * own region (the real transport would refuse; the engine must not try). */
int rmig_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id)
{
	struct fake_ep *f = (struct fake_ep *)ep;
	uint64_t bytes = 0;

	if (!n || n > RMIG_BATCH_MAX || f->nposted == 64)
		abort();
	for (unsigned i = 0; i < n; i++) {
		if (!w[i].len || w[i].roff + w[i].len > w[i].rkey->len ||
		    w[i].roff + w[i].len < w[i].roff ||
		    w[i].loff + w[i].len > w[i].lmr->len ||
		    !(w[i].rkey->flags & RMIG_ACCESS_REMOTE_WRITE))
			abort();
		(void)*(volatile uint8_t *)((uint8_t *)w[i].lmr->addr + w[i].loff + w[i].len - 1);
		bytes += w[i].len;
	}
	f->posted[f->nposted++] = wr_id;
	pthread_mutex_lock(&mu);
	fake_nposted++;
	fake_written += bytes;
	pthread_mutex_unlock(&mu);
	return 0;
}

int rmig_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max, int timeout_ms)
{
	struct fake_ep *f = (struct fake_ep *)ep;
	unsigned n = 0;

	(void)timeout_ms;
	while (n < max && n < f->nposted) {
		c[n] = (struct rmig_completion){ .wr_id = f->posted[n], .status = fake_write_status };
		n++;
	}
	memmove(f->posted, f->posted + n, (f->nposted - n) * sizeof(f->posted[0]));
	f->nposted -= n;
	pthread_mutex_lock(&mu);
	fake_nposted -= n;
	pthread_mutex_unlock(&mu);
	return !n && fake_poll_dead ? -ECONNRESET : (int)n;
}

/* Everything this side says must be a well-formed message. */
int rmig_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	int i = idx_of(ep), rc = 0;

	pthread_mutex_lock(&mu);
	if (i >= 0 && send_fail_at[i] && nsent[i] + 1 >= send_fail_at[i])
		rc = send_fail_rc[i];
	if (!rc && i >= 0 && nsent[i] < FAKE_LOG)
		sentlog[i][nsent[i]] = msg_new(0, buf, len);
	if (!rc && i >= 0)
		nsent[i]++;
	if (!rc && (len > RMIG_MSG_MAX || (fake_check_sent && fake_check_sent(buf, len))))
		fake_sent_bad = 1;
	pthread_mutex_unlock(&mu);
	if (rc)
		return rmig_set_error(ep, rc, "fake: the send failed (%s)", strerror(-rc));
	if (scripted && fake_on_send)
		fake_on_send((unsigned)i, buf, len);
	return 0;
}

static int recv_script(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	int i = idx_of(ep);
	struct fake_msg *m = NULL;
	int n;

	pthread_mutex_lock(&mu);
	if (i >= 0 && (m = queue[i])) {
		queue[i] = m->next;
		if (!queue[i])
			queue_tail[i] = &queue[i];
	}
	pthread_mutex_unlock(&mu);
	if (!m) {
		struct timespec ts = { 0, 1000000L };
		if (timeout_ms)
			nanosleep(&ts, NULL);
		return rmig_set_error(ep, -ETIMEDOUT, "fake: nothing from the peer");
	}
	if (m->err)
		n = rmig_set_error(ep, m->err, "fake: the peer is gone (%s)", strerror(-m->err));
	else if (m->len > cap)
		n = -EMSGSIZE;
	else
		memcpy(buf, m->data, m->len), n = (int)m->len;
	free(m);
	return n;
}

int rmig_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	size_t n;

	if (scripted)
		return recv_script(ep, buf, cap, timeout_ms);
	if (in_left < 2)
		return -ECONNRESET;
	n = (size_t)in_p[0] | (size_t)in_p[1] << 8;
	in_p += 2;
	in_left -= 2;
	if (n == 0xffff)
		return -ETIMEDOUT;
	if (n > in_left)
		n = in_left;
	if (n > cap)
		return -EMSGSIZE;
	memcpy(buf, in_p, n);
	in_p += n;
	in_left -= n;
	return (int)n;
}
