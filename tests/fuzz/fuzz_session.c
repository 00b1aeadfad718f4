/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a whole migration session facing a hostile peer.  The
 * session engine (plugin/) runs as a framework drives it, through the
 * plugin ops table, over a fake transport whose rmig_recv hands out the
 * fuzzer's bytes as the peer's messages.  The first byte picks the side:
 *
 *   even: destination. The peer's HELLO (the RAM block table), then
 *         ROUND/STREAM/END/CANCEL in any order; the framework places
 *         the blocks, grants, reads the stream, commits.
 *   odd:  source. One 64 KiB block; the peer's RESERVE (keys), then its
 *         answer to END (COMMIT/CANCEL or anything else).
 *
 * Then: [u16 length][message] ... up to the end of the input (after that
 * the peer is gone).  Whatever arrives, the session must not crash, leak,
 * send a malformed message, write outside the keys it was given, keep a
 * memory region registered once it ends, or grant remote write before the
 * peer's HELLO was accepted.
 */
#include "plugin/session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GUEST (1u << 20) /* the framework refuses larger offers */

/* struct rmig_ep and rmig_mr come from transport.h; the fake fills only
 * what the engine reads. */
static const uint8_t *in_p;
static size_t in_left;
static int live_mrs, remote_mrs, hello_ok, sent_bad;
static uint64_t posted[64];
static unsigned nposted;
static __thread char last_err[RMIG_ERR_MAX];

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
	/* Least remote access: only for a peer whose offer was accepted. */
	if ((access & RMIG_ACCESS_REMOTE_WRITE) && !hello_ok)
		abort();
	mr->addr = addr;
	mr->len = len;
	mr->access = access;
	mr->rkey = (struct rmig_rkey){ .len = len, .key = 7, .flags = access };
	live_mrs++;
	remote_mrs += !!(access & RMIG_ACCESS_REMOTE_WRITE);
	*out = mr;
	return 0;
}

int rmig_dereg_mr(struct rmig_ep *ep, struct rmig_mr *mr)
{
	(void)ep;
	live_mrs--;
	remote_mrs -= !!(mr->access & RMIG_ACCESS_REMOTE_WRITE);
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
	if (!n || n > RMIG_BATCH_MAX || nposted == 64)
		abort();
	for (unsigned i = 0; i < n; i++) {
		if (!w[i].len || w[i].roff + w[i].len > w[i].rkey->len ||
		    w[i].roff + w[i].len < w[i].roff ||
		    w[i].loff + w[i].len > w[i].lmr->len ||
		    !(w[i].rkey->flags & RMIG_ACCESS_REMOTE_WRITE))
			abort();
		(void)*(volatile uint8_t *)((uint8_t *)w[i].lmr->addr + w[i].loff + w[i].len - 1);
	}
	posted[nposted++] = wr_id;
	return 0;
}

int rmig_poll(struct rmig_ep *ep, struct rmig_completion *c, unsigned max, int timeout_ms)
{
	unsigned n = 0;

	(void)ep, (void)timeout_ms;
	while (n < max && n < nposted) {
		c[n] = (struct rmig_completion){ .wr_id = posted[n] };
		n++;
	}
	memmove(posted, posted + n, (nposted - n) * sizeof(posted[0]));
	nposted -= n;
	return (int)n;
}

/* Everything this side says must be a well-formed message. */
int rmig_send(struct rmig_ep *ep, const void *buf, size_t len)
{
	struct wire_hdr h;

	(void)ep;
	if (len > RMIG_MSG_MAX || wire_hdr_decode(buf, len, &h))
		sent_bad = 1;
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
	if (n > in_left)
		n = in_left;
	if (n > cap)
		return -EMSGSIZE;
	memcpy(buf, in_p, n);
	in_p += n;
	in_left -= n;
	return (int)n;
}

/* --- the framework ------------------------------------------------------ */

static const struct rmig_plugin_config cfg = {
	.size = sizeof(cfg), .backend = "fake", .addr = "fake:1", .timeout_ms = 1,
	.memlock_budget = 64ull << 20,
	/* A key, as every real session has (the fake transport ignores it). */
	.psk = "fuzz_session's key", .psk_len = 18,
};

static void destination(const struct rmig_plugin_ops *ops)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	uint8_t *mem[8] = { 0 }, buf[4096];
	uint64_t total = 0;
	int n, rc = 0;

	if (ops->listen(&cfg, &l))
		abort();
	/* hello_ok before accept: the engine decides; the fake checks it
	 * registers nothing remote before load_grant. */
	if (ops->accept(l, 1, &s)) {
		ops->listen_close(l);
		return;
	}
	n = ops->load_block_count(s);
	if (n <= 0)
		abort(); /* accepted an offer without blocks */
	for (int i = 0; i < n; i++) {
		struct rmig_block_info bi;
		if (ops->load_block(s, (uint32_t)i, &bi) || !bi.len || bi.len % 4096 ||
		    !memchr(bi.name, 0, sizeof(bi.name)) || !bi.name[0])
			abort();
		total += bi.len;
	}
	if (n > 8 || total > MAX_GUEST) {
		ops->load_refuse(s, -ENOMEM, "too large for the fuzzer");
	} else {
		for (int i = 0; i < n && !rc; i++) {
			struct rmig_block_info bi;
			ops->load_block(s, (uint32_t)i, &bi);
			mem[i] = aligned_alloc(4096, bi.len);
			if (!mem[i])
				abort();
			rc = ops->load_register_block(s, (uint32_t)i, mem[i]);
		}
		hello_ok = 1;
		if (!rc && !ops->load_grant(s)) {
			long got;
			while ((got = ops->stream_read(s, buf, sizeof(buf), 1)) > 0)
				;
			if (!got)
				ops->load_commit(s);
		}
	}
	if (ops->state(s) == RMIG_STATE_COMMIT && live_mrs)
		abort(); /* committed with guest RAM still open to the peer */
	ops->close(s);
	ops->listen_close(l);
	for (int i = 0; i < 8; i++)
		free(mem[i]);
}

static void source(const struct rmig_plugin_ops *ops)
{
	static uint8_t guest[64 << 10] __attribute__((aligned(4096)));
	struct rmig_round_stats rs;
	struct rmig_page_range r = { .block = 0, .offset = 0, .len = sizeof(guest) };
	struct rmig_mig *s;

	memset(guest, 0x5a, sizeof(guest) / 2); /* the rest is zero pages */
	if (ops->open(&cfg, &s))
		abort();
	if (ops->add_ram_block(s, "pc.ram", guest, sizeof(guest)) < 0)
		abort();
	if (!ops->setup(s) && !ops->round_start(s, RMIG_ROUND_FINAL) &&
	    !ops->save_pages(s, &r, 1) && !ops->round_end(s, &rs))
		ops->finish(s);
	if (remote_mrs)
		abort(); /* the source's RAM never carries remote rights */
	ops->close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct rmig_plugin_ops *ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION);

	if (!size || !ops)
		return 0;
	in_p = data + 1;
	in_left = size - 1;
	live_mrs = remote_mrs = hello_ok = sent_bad = 0;
	nposted = 0;
	if (data[0] & 1)
		source(ops);
	else
		destination(ops);
	/* Closed: nothing registered, nothing posted, nothing said wrong. */
	if (live_mrs || nposted || sent_bad)
		abort();
	return 0;
}
