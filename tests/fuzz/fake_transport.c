/* SPDX-License-Identifier: MIT */
/*
 * A fake transport for the fuzz targets that drive a whole protocol engine
 * (fuzz_session, fuzz_stream_session): it defines the rmig_* transport
 * calls the engines make.  rmig_recv hands out the fuzzer's input as the
 * peer's messages, each [u16 little-endian length][bytes], where length
 * 0xffff means "nothing arrived in time" (-ETIMEDOUT), then -ECONNRESET
 * (the peer is gone); writes complete at once; registrations are counted.
 * It aborts (a finding) on a write outside the local region or the peer's
 * key, on a key without remote write, or on a remote-write registration
 * before fake_remote_ok is set.
 */
#include "fake_transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *in_p;
static size_t in_left;
static uint64_t posted[64];
static __thread char last_err[RMIG_ERR_MAX];
int fake_live_mrs, fake_remote_mrs, fake_remote_ok, fake_sent_bad;
unsigned fake_nposted;
int (*fake_check_sent)(const void *msg, size_t len);

void fake_reset(const uint8_t *data, size_t size)
{
	in_p = data;
	in_left = size;
	fake_live_mrs = fake_remote_mrs = fake_remote_ok = fake_sent_bad = 0;
	fake_nposted = 0;
}

/* --- the fake transport ------------------------------------------------ */

int rmig_set_error(struct rmig_ep *ep, int err, const char *fmt, ...)
{
	va_list ap;

	(void)ep;
	va_start(ap, fmt);
	vsnprintf(last_err, sizeof(last_err), fmt, ap);
	va_end(ap);
	return err;
}

const char *rmig_last_error(void) { return last_err; }
const char *rmig_ep_error(const struct rmig_ep *ep) { (void)ep; return "fake"; }
const char *rmig_ep_backend(const struct rmig_ep *ep) { (void)ep; return "fake"; }

static struct rmig_ep *new_ep(int listener)
{
	struct rmig_ep *ep = calloc(1, sizeof(*ep));

	if (ep)
		ep->listener = listener;
	return ep;
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
	(void)l, (void)timeout_ms;
	*ep = new_ep(0);
	return *ep ? 0 : -ENOMEM;
}

int rmig_backend_probe(const char *backend, char *why, size_t whylen)
{
	(void)backend;
	snprintf(why, whylen, "ok");
	return 0;
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
	(void)backend, (void)addr, (void)o;
	*ep = new_ep(0);
	return *ep ? 0 : -ENOMEM;
}

int rmig_local_addr(struct rmig_ep *ep, char *buf, size_t len)
{
	(void)ep;
	snprintf(buf, len, "fake:1");
	return 0;
}

void rmig_close(struct rmig_ep *ep) { free(ep); }

int rmig_reg_mr(struct rmig_ep *ep, void *addr, size_t len, unsigned access,
		struct rmig_mr **out)
{
	struct rmig_mr *mr = calloc(1, sizeof(*mr));

	(void)ep;
	if (!mr)
		return -ENOMEM;
	/* Least remote access: only once the harness says the peer may. */
	if ((access & RMIG_ACCESS_REMOTE_WRITE) && !fake_remote_ok)
		abort();
	mr->addr = addr;
	mr->len = len;
	mr->access = access;
	mr->rkey = (struct rmig_rkey){ .len = len, .key = 7, .flags = access };
	fake_live_mrs++;
	fake_remote_mrs += !!(access & RMIG_ACCESS_REMOTE_WRITE);
	*out = mr;
	return 0;
}

int rmig_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	(void)ep;
	fake_live_mrs--;
	fake_remote_mrs -= !!(mr->access & RMIG_ACCESS_REMOTE_WRITE);
	free(mr);
	return 0;
}

const struct rmig_rkey *rmig_mr_rkey(const struct rmig_mr *mr) { return &mr->rkey; }

/* The source never writes past a key the destination gave, nor past its
 * own region (the real transport would refuse; the engine must not try). */
int rmig_write_batch(struct rmig_ep *ep, const struct rmig_write *w, unsigned n,
		     uint64_t wr_id)
{
	(void)ep;
	if (!n || n > RMIG_BATCH_MAX || fake_nposted == 64)
		abort();
	for (unsigned i = 0; i < n; i++) {
		if (!w[i].len || w[i].roff + w[i].len > w[i].rkey->len ||
		    w[i].roff + w[i].len < w[i].roff ||
		    w[i].loff + w[i].len > w[i].lmr->len ||
		    !(w[i].rkey->flags & RMIG_ACCESS_REMOTE_WRITE))
			abort();
		(void)*(volatile uint8_t *)((uint8_t *)w[i].lmr->addr + w[i].loff + w[i].len - 1);
	}
	posted[fake_nposted++] = wr_id;
	return 0;
}

int rmig_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max, int timeout_ms)
{
	unsigned n = 0;

	(void)ep, (void)timeout_ms;
	while (n < max && n < fake_nposted) {
		c[n] = (struct rmig_completion){ .wr_id = posted[n] };
		n++;
	}
	memmove(posted, posted + n, (fake_nposted - n) * sizeof(posted[0]));
	fake_nposted -= n;
	return (int)n;
}

/* Everything this side says must be a well-formed message. */
int rmig_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	(void)ep;
	if (len > RMIG_MSG_MAX || (fake_check_sent && fake_check_sent(buf, len)))
		fake_sent_bad = 1;
	return 0;
}

int rmig_recv(struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	size_t n;

	(void)ep, (void)timeout_ms;
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

