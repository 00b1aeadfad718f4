/* SPDX-License-Identifier: MIT */
/*
 * The session state machine and what both sides share: errors and
 * rollback, the control-message receive path, the stream channel, stats.
 *
 *   RESERVE -> SETUP -> PRECOPY -> STOPCOPY -> COMMIT
 *      \________\__________\__________\______-> ROLLED_BACK (cancel, peer
 *                                               gone, refusal, bad message)
 * A failure after COMMIT (destination side) is FAILED: there is nothing
 * left to roll back to.
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"
#include "../common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[RMIG_STATE_COUNT] = {
	[RMIG_STATE_RESERVE] = "reserve",
	[RMIG_STATE_SETUP] = "setup",
	[RMIG_STATE_PRECOPY] = "precopy",
	[RMIG_STATE_STOPCOPY] = "stopcopy",
	[RMIG_STATE_COMMIT] = "commit",
	[RMIG_STATE_ROLLED_BACK] = "rolled back",
	[RMIG_STATE_FAILED] = "failed",
};

const char *mig_state_name(enum rmig_mig_state st)
{
	return (unsigned)st < RMIG_STATE_COUNT ? state_names[st] : "unknown";
}

void mig_set_state(struct rmig_mig *s, enum rmig_mig_state st)
{
	if (rmig_log_enabled())
		rmig_log(RMIG_LOG_DEBUG, "%.3f s %s: %s -> %s",
			(double)(rmig_now_ns() - s->t0) / 1e9,
			s->role == MIG_SOURCE ? "source" : "destination",
			mig_state_name(s->state), mig_state_name(st));
	s->state = st;
	s->st.state = st;
}

int mig_err(struct rmig_mig *s, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	rmig_set_error(NULL, rc, "%s", s->err);
	return rc;
}

/* Best effort: the peer may already be gone. */
int mig_send_status(struct rmig_mig *s, uint16_t type, int status, const char *why)
{
	struct wire_status ws = { .status = status };
	int len;

	snprintf(ws.reason, sizeof(ws.reason), "%s", why ? why : "");
	len = wire_status_encode(s->msg, sizeof(s->msg), type, &ws);
	if (len < 0 || !s->ep)
		return len < 0 ? len : -ENOTCONN;
	return rmig_send(s->ep, s->msg, (size_t)len);
}

int chan_err(struct mig_chan *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!c->rc) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
		c->rc = rc;
	}
	return rc;
}

/*
 * The session cannot go on: keep the first reason, stop the channel
 * workers, tell the peer, drop every registration.  Before commit that is a rollback (the source guest
 * keeps running); after, a failure.
 */
int mig_fail(struct rmig_mig *s, int rc, const char *fmt, ...)
{
	va_list ap;
	int first = s->state != RMIG_STATE_ROLLED_BACK && s->state != RMIG_STATE_FAILED;

	if (first) {
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
		/* The workers stop first: channel 0's one shares the control ep. */
		mig_stop_workers(s);
		if (s->ep && !s->peer_gone)
			mig_send_status(s, WIRE_CANCEL, rc, s->err);
		mig_drain(s);
		mig_deregister_all(s);
		mig_set_state(s, s->state == RMIG_STATE_COMMIT ? RMIG_STATE_FAILED
							      : RMIG_STATE_ROLLED_BACK);
	}
	rmig_set_error(NULL, rc, "%s", s->err);
	return rc;
}

void mig_copy_config(struct rmig_plugin_config *dst, const struct rmig_plugin_config *src,
		     uint8_t *psk)
{
	memset(dst, 0, sizeof(*dst));
	if (src)
		memcpy(dst, src, src->size && src->size < sizeof(*dst) ? src->size : sizeof(*dst));
	dst->size = sizeof(*dst);
	/* The caller's key may go away after open/listen: keep a copy.  A
	 * longer key than fits keeps its length, so connect refuses it. */
	if (dst->psk) {
		memcpy(psk, dst->psk, dst->psk_len < RMIG_PSK_MAX ? dst->psk_len : RMIG_PSK_MAX);
		dst->psk = psk;
	}
	if (!dst->timeout_ms)
		dst->timeout_ms = RMIG_DEFAULT_TIMEOUT_MS;
	if (!dst->page_size)
		dst->page_size = 4096;
	if (!dst->channels)
		dst->channels = 1;
}

void mig_ep_opts(const struct rmig_plugin_config *cfg, struct rmig_ep_opts *o)
{
	*o = (struct rmig_ep_opts){ .size = sizeof(*o), .timeout_ms = cfg->timeout_ms,
				    .psk = cfg->psk, .psk_len = cfg->psk_len,
				    .flags = cfg->flags & RMIG_CFG_INSECURE ? RMIG_EP_INSECURE : 0 };
}

int mig_shut(const struct rmig_mig *s)
{
	if (__atomic_load_n(&s->shut, __ATOMIC_ACQUIRE))
		return 1;
	return s->accepting && s->listener &&
	       __atomic_load_n(&s->listener->shut, __ATOMIC_ACQUIRE);
}

static const char *shut_why(const struct rmig_mig *s)
{
	return __atomic_load_n(&s->shut, __ATOMIC_ACQUIRE) ? s->shut_why
							    : "the listener was shut down";
}

/* Any thread.  Only the flag: the driving thread sees it within a slice
 * and fails the session itself (mig_recv, the workers' polls). */
int mig_shutdown(struct rmig_mig *s, const char *why)
{
	if (__atomic_exchange_n(&s->shut_claimed, 1, __ATOMIC_ACQ_REL))
		return 0;
	snprintf(s->shut_why, sizeof(s->shut_why), "%s", why && *why ? why : "by the host");
	__atomic_store_n(&s->shut, 1, __ATOMIC_RELEASE);
	mig_pump_raise(s);
	return 0;
}

void mig_listen_shutdown(struct rmig_mig_listener *l)
{
	if (l)
		__atomic_store_n(&l->shut, 1, __ATOMIC_RELEASE);
}

static int slice(uint64_t deadline)
{
	int left = rmig_left_ms(deadline);

	return left < 0 || left > MIG_SLICE_MS ? MIG_SLICE_MS : left;
}

int mig_ep_recv(struct rmig_mig *s, struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	int n;

	if (timeout_ms >= 0 && timeout_ms <= MIG_SLICE_MS) /* one slice: one call */
		return mig_shut(s) ? rmig_set_error(ep, -ECANCELED, "shut down: %s", shut_why(s))
				   : rmig_recv(ep, buf, cap, timeout_ms);
	for (;;) {
		if (mig_shut(s))
			return rmig_set_error(ep, -ECANCELED, "shut down: %s", shut_why(s));
		n = rmig_recv(ep, buf, cap, slice(deadline));
		if (n != -ETIMEDOUT)
			return n;
		if (!rmig_left_ms(deadline))
			return rmig_set_error(ep, n, "no message from the peer within %d ms",
					      timeout_ms);
	}
}

int mig_ep_poll(struct rmig_mig *s, struct rmig_ep *ep, struct rmig_completion *c,
		unsigned max, int timeout_ms)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	int n;

	if (timeout_ms >= 0 && timeout_ms <= MIG_SLICE_MS)
		return mig_shut(s) ? rmig_set_error(ep, -ECANCELED, "shut down: %s", shut_why(s))
				   : rmig_poll(ep, c, max, timeout_ms);
	for (;;) {
		if (mig_shut(s))
			return rmig_set_error(ep, -ECANCELED, "shut down: %s", shut_why(s));
		n = rmig_poll(ep, c, max, slice(deadline));
		if (n || !rmig_left_ms(deadline))
			return n;
	}
}

int mig_accept_peer(struct rmig_mig *s, struct rmig_ep *listener, int timeout_ms,
		    struct rmig_ep **ep)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	char refused[RMIG_ERR_MAX] = "";
	int rc;

	for (;;) {
		if (mig_shut(s))
			return rmig_set_error(listener, -ECANCELED, "shut down: %s", shut_why(s));
		/* Channel 0 on a new domain (s->dom not yet set), 1.. on the session's. */
		rc = rmig_accept_on(listener, s->dom, slice(deadline), ep);
		if (rc == -ETIMEDOUT && rmig_left_ms(deadline))
			continue;
		if (rc != -EACCES && rc != -EPROTO)
			break;
		snprintf(refused, sizeof(refused), "%s", rmig_ep_error(listener));
		if (!rmig_left_ms(deadline))
			return rc;
	}
	/* Timed out after refusing someone: that is the likelier story. */
	if (rc == -ETIMEDOUT && refused[0])
		rmig_set_error(listener, rc, "no authenticated peer within %d ms (refused one: %s)",
			       timeout_ms, refused);
	else if (rc == -ETIMEDOUT)
		rmig_set_error(listener, rc, "no peer connected within %d ms", timeout_ms);
	return rc;
}

struct rmig_mig *mig_new(const struct rmig_plugin_config *cfg, enum mig_role role)
{
	struct rmig_mig *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->role = role;
	mig_copy_config(&s->cfg, cfg, s->psk);
	snprintf(s->backend_spec, sizeof(s->backend_spec), "%s",
		 s->cfg.backend ? s->cfg.backend : "auto");
	snprintf(s->addr, sizeof(s->addr), "%s", s->cfg.addr ? s->cfg.addr : "");
	s->cfg.backend = s->backend_spec;
	s->cfg.addr = s->addr;
	s->page_size = s->cfg.page_size;
	snprintf(s->vcpus, sizeof(s->vcpus), "%s", s->cfg.vcpus ? s->cfg.vcpus : "");
	s->cfg.vcpus = s->vcpus;
	s->nch = s->cfg.channels;
	if (s->nch > RMIG_CHANNELS_MAX)
		s->nch = RMIG_CHANNELS_MAX; /* open refuses more; the listener caps its max */
	for (unsigned i = 0; i < RMIG_CHANNELS_MAX; i++) {
		s->ch[i].s = s;
		s->ch[i].idx = i;
		s->ch[i].planned_cpu = s->ch[i].worker_cpu = -1;
	}
	s->drop_channel = -1;
	mig_chan_hooks(s);
	s->st.size = sizeof(s->st);
	s->t0 = rmig_now_ns();
	s->state = s->st.state = RMIG_STATE_RESERVE;
	return s;
}

/*
 * Receive one control message into rxmsg and check its header.  A CANCEL
 * from the peer ends the session here with the peer's reason.
 */
int mig_recv(struct rmig_mig *s, struct wire_hdr *h, int timeout_ms)
{
	char why[WIRE_REASON_MAX + 64];
	struct wire_status ws;
	int n, rc;

	if (!s->ep)
		return mig_err(s, -ENOTCONN, "the session has no connection");
	n = s->pump ? mig_pump_take(s, s->rxmsg, sizeof(s->rxmsg), timeout_ms)
		    : mig_ep_recv(s, s->ep, s->rxmsg, sizeof(s->rxmsg), timeout_ms);
	if (n == -ECANCELED && mig_shut(s))
		return mig_fail(s, n, "shut down: %s", shut_why(s));
	if (n == -ETIMEDOUT && !timeout_ms)
		return -EAGAIN; /* a non-blocking look found nothing */
	if (n == -ETIMEDOUT)
		return mig_fail(s, n, "the peer sent nothing within %d ms", timeout_ms);
	if (n < 0) {
		s->peer_gone = 1;
		return mig_fail(s, n, "lost the peer: %s", rmig_ep_error(s->ep));
	}
	rc = wire_hdr_decode(s->rxmsg, (size_t)n, h);
	if (rc == -EPROTONOSUPPORT)
		return mig_fail(s, rc, "the peer speaks protocol version %u, this side %u",
				h->version, WIRE_VERSION);
	if (rc)
		return mig_fail(s, -EPROTO, "the peer sent a malformed control header");
	if (h->type == WIRE_CANCEL) {
		rc = wire_status_decode(s->rxmsg + WIRE_HDR_SIZE, h->len, &ws, why, sizeof(why));
		if (rc)
			return mig_fail(s, -EPROTO, "the peer sent a malformed CANCEL: %s", why);
		snprintf(why, sizeof(why), "%s", ws.reason);
		/* Nothing to send back: the peer has already gone. */
		s->peer_gone = 1;
		return mig_fail(s, ws.status ? ws.status : -ECANCELED,
				"the peer cancelled the migration: %s", why);
	}
	return 0;
}

int mig_stream_write(struct rmig_mig *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc;

	if (s->state == RMIG_STATE_ROLLED_BACK || s->state == RMIG_STATE_FAILED)
		return mig_err(s, -ECANCELED, "the session has ended: %s", s->err);
	if (!s->ep)
		return mig_err(s, -ENOTCONN, "stream_write before setup");
	while (len) {
		size_t n = len < WIRE_STREAM_MAX ? len : WIRE_STREAM_MAX;

		if (mig_shut(s))
			return mig_fail(s, -ECANCELED, "shut down: %s", shut_why(s));
		/* Inside a round channel 0's worker owns the connection: it
		 * sends the bytes among its writes.  Bytes written after
		 * round_end follow that round's fences (docs/plugin-abi.md). */
		if (s->in_round && s->nch > 1) {
			if ((rc = mig_chan_stream(s, p, n)))
				return rc;
		} else {
			int m = wire_stream_encode(s->msg, sizeof(s->msg), p, n);
			if ((rc = rmig_send(s->ep, s->msg, (size_t)m)))
				return mig_fail(s, rc, "lost the peer sending the stream: %s",
						rmig_ep_error(s->ep));
		}
		p += n;
		len -= n;
		s->st.stream_bytes += n;
	}
	return 0;
}

/* Destination: fold a ROUND into the statistics. */
static int take_round(struct rmig_mig *s, const struct wire_hdr *h)
{
	char why[128];
	struct wire_round r;
	int rc;

	if (s->role != MIG_DEST || s->state < RMIG_STATE_PRECOPY ||
	    s->state > RMIG_STATE_STOPCOPY)
		return mig_fail(s, -EPROTO, "the peer sent ROUND in state %s",
				mig_state_name(s->state));
	if (wire_round_decode(s->rxmsg + WIRE_HDR_SIZE, h->len, &r, why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the peer sent a malformed ROUND: %s", why);
	if (r.channel != 0)
		return mig_fail(s, -EPROTO, "the peer sent channel %u's ROUND on channel 0",
				r.channel);
	if (r.round != s->st.rounds)
		return mig_fail(s, -EPROTO, "the peer sent ROUND %u, round %u was due",
				r.round, s->st.rounds);
	/* The round is done only once every channel's fence has arrived:
	 * each follows that channel's last write. */
	if (s->nch > 1 && (rc = mig_take_fences(s, &r, &r)))
		return rc;
	s->st.rounds = r.round + 1;
	s->st.pages += r.pages;
	s->st.zero_pages += r.zero_pages;
	s->st.bytes += r.bytes;
	if (r.final)
		mig_set_state(s, RMIG_STATE_STOPCOPY);
	return 0;
}

static int take_end(struct rmig_mig *s, const struct wire_hdr *h)
{
	char why[128];
	struct wire_end e;

	if (s->role != MIG_DEST || s->state != RMIG_STATE_STOPCOPY)
		return mig_fail(s, -EPROTO, "the peer sent END in state %s (no final round)",
				mig_state_name(s->state));
	if (wire_end_decode(s->rxmsg + WIRE_HDR_SIZE, h->len, &e, why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the peer sent a malformed END: %s", why);
	if (e.stream_bytes != s->st.stream_bytes + s->rx_len)
		return mig_fail(s, -EPROTO, "END counts %llu stream bytes, %llu arrived",
				(unsigned long long)e.stream_bytes,
				(unsigned long long)(s->st.stream_bytes + s->rx_len));
	s->ended = 1;
	return 0;
}

/*
 * Stream bytes in order.  Control messages met on the way (ROUND, END)
 * are handled here; 0 means the source sent END and all its stream bytes
 * have been read.
 */
static long stream_read(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms);

/* With stream_fd, the fd's level follows what the next read would find. */
long mig_stream_read(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms)
{
	long n = stream_read(s, buf, cap, timeout_ms);

	mig_pump_sync(s);
	return n;
}

static long stream_read(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms)
{
	struct wire_hdr h;
	int rc;

	if (s->state == RMIG_STATE_ROLLED_BACK || s->state == RMIG_STATE_FAILED)
		return mig_err(s, -ECANCELED, "the session has ended: %s", s->err);
	if (s->role == MIG_DEST && s->state == RMIG_STATE_RESERVE)
		return mig_err(s, -EINVAL, "stream_read before load_grant");
	while (!s->rx_len) {
		if (s->ended)
			return 0;
		rc = mig_recv(s, &h, timeout_ms);
		if (rc)
			return rc;
		switch (h.type) {
		case WIRE_STREAM:
			s->rx = s->rxmsg + WIRE_HDR_SIZE;
			s->rx_len = h.len;
			break;
		case WIRE_ROUND:
			rc = take_round(s, &h);
			break;
		case WIRE_END:
			rc = take_end(s, &h);
			break;
		default:
			rc = mig_fail(s, -EPROTO, "the peer sent %s where stream data was expected",
				      wire_type_name(h.type));
		}
		if (rc)
			return rc;
	}
	size_t n = s->rx_len < cap ? s->rx_len : cap;
	memcpy(buf, s->rx, n);
	s->rx += n;
	s->rx_len -= n;
	s->st.stream_bytes += n;
	return (long)n;
}

int mig_cancel(struct rmig_mig *s, const char *why)
{
	if (s->state == RMIG_STATE_COMMIT)
		return mig_err(s, -EBUSY, "the migration has committed; nothing to cancel");
	if (s->state == RMIG_STATE_ROLLED_BACK || s->state == RMIG_STATE_FAILED)
		return 0;
	mig_fail(s, -ECANCELED, "cancelled: %s", why && *why ? why : "by the caller");
	return 0;
}

int mig_stats(struct rmig_mig *s, struct rmig_mig_stats *out)
{
	size_t n;

	if (!out || out->size < sizeof(out->size))
		return -EINVAL;
	s->st.ns = rmig_now_ns() - s->t0;
	s->st.ram_bytes = mig_total_bytes(s);
	s->st.rate = s->round.rate;
	/* The spec as asked ("ofi/shm"), or what "auto" resolved to. */
	snprintf(s->st.backend, sizeof(s->st.backend), "%s",
		 strcmp(s->backend_spec, "auto") || !s->ep ? s->backend_spec
							   : rmig_ep_backend(s->ep));
	s->st.channels = s->nch;
	for (unsigned i = 0; i < RMIG_CHANNELS_MAX; i++) {
		s->st.planned_cpu[i] = i < s->nch ? s->ch[i].planned_cpu : -1;
		s->st.worker_cpu[i] = i < s->nch ? s->ch[i].worker_cpu : -1;
	}
	n = out->size < sizeof(s->st) ? out->size : sizeof(s->st);
	memcpy(out, &s->st, n);
	out->size = n;
	/* Inside a round: the bytes the channels have posted so far too, so
	 * that a host can credit them while the round goes on. */
	if (s->role == MIG_SOURCE && s->in_round &&
	    n >= offsetof(struct rmig_mig_stats, bytes) + sizeof(out->bytes))
		for (unsigned i = 0; i < s->nch; i++)
			out->bytes += __atomic_load_n(&s->ch[i].round.bytes, __ATOMIC_RELAXED);
	return 0;
}

void mig_close(struct rmig_mig *s)
{
	if (!s)
		return;
	if (s->state != RMIG_STATE_COMMIT && s->state != RMIG_STATE_ROLLED_BACK &&
	    s->state != RMIG_STATE_FAILED)
		mig_fail(s, -ECANCELED, "the session was closed before commit");
	mig_drain(s);
	mig_deregister_all(s);
	mig_close_channels(s);
	mig_pump_stop(s);
	if (s->ep)
		rmig_close(s->ep);
	for (uint32_t i = 0; i < s->nblocks; i++)
		free(s->blocks[i].sent);
	for (unsigned i = 0; i < RMIG_CHANNELS_MAX; i++) {
		free(s->ch[i].mrs);
		free(s->ch[i].rkeys);
		free(s->ch[i].chunks);
		free(s->ch[i].smsg);
	}
	free(s->blocks);
	explicit_bzero(s->psk, sizeof(s->psk));
	free(s);
}
