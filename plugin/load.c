/* SPDX-License-Identifier: MIT */
/*
 * The destination (load) side: accept a source, read its offer, let the
 * framework place each block, answer yes with keys (or no with the reason),
 * then deliver the stream until END and commit.  Guest RAM is registered
 * REMOTE_WRITE only between load_grant and commit/cancel/error.
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int mig_listen(const struct rmig_plugin_config *cfg, struct rmig_mig_listener **out)
{
	struct rmig_mig_listener *l = calloc(1, sizeof(*l));
	struct rmig_ep_opts o;
	int rc;

	if (!l)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a listener");
	mig_copy_config(&l->cfg, cfg, l->psk);
	/* A destination takes any channel count up to its configured most. */
	l->ch_max = cfg && cfg->channels ? cfg->channels : RMIG_CHANNELS_MAX;
	if (l->ch_max > RMIG_CHANNELS_MAX)
		l->ch_max = RMIG_CHANNELS_MAX;
	snprintf(l->backend_spec, sizeof(l->backend_spec), "%s",
		 l->cfg.backend ? l->cfg.backend : "auto");
	l->cfg.backend = l->backend_spec;
	l->cfg.addr = NULL;
	mig_ep_opts(&l->cfg, &o);
	rc = rmig_listen(l->backend_spec, cfg && cfg->addr ? cfg->addr : "127.0.0.1:0", &o,
			 &l->ep);
	if (rc) {
		explicit_bzero(l->psk, sizeof(l->psk));
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int mig_listen_addr(struct rmig_mig_listener *l, char *buf, size_t len)
{
	return rmig_local_addr(l->ep, buf, len);
}

void mig_listen_close(struct rmig_mig_listener *l)
{
	if (!l)
		return;
	rmig_close(l->ep);
	explicit_bzero(l->psk, sizeof(l->psk));
	free(l);
}

/* Refuse before any block is registered (the framework may not know yet). */
int mig_load_refuse(struct rmig_mig *s, int err, const char *why)
{
	struct wire_reserve r = { .status = err < 0 && err >= -4095 ? err : -EINVAL };
	int len, rc;

	if (s->role != MIG_DEST || s->state != RMIG_STATE_RESERVE)
		return mig_err(s, -EINVAL, "load_refuse only answers an offer (state %s)",
			       mig_state_name(s->state));
	snprintf(r.reason, sizeof(r.reason), "%s", why && *why ? why : strerror(-r.status));
	len = wire_reserve_encode(s->msg, sizeof(s->msg), &r, NULL);
	rc = len < 0 ? len : rmig_send(s->ep, s->msg, (size_t)len);
	s->peer_gone = 1;
	mig_fail(s, r.status, "refused the guest: %s", r.reason);
	return rc;
}

static int take_hello(struct rmig_mig *s, const struct wire_hdr *h, struct wire_block *wb)
{
	char why[160];
	struct wire_hello hello;

	if (h->type != WIRE_HELLO)
		return mig_fail(s, -EPROTO, "the source opened with %s instead of HELLO",
				wire_type_name(h->type));
	if (wire_hello_decode(s->rxmsg + WIRE_HDR_SIZE, h->len, &hello, wb, WIRE_BLOCKS_MAX,
			      why, sizeof(why)))
		return mig_fail(s, -EPROTO, "the source sent a malformed HELLO: %s", why);
	if (hello.page_size != s->page_size) {
		snprintf(why, sizeof(why), "page size %u, the destination uses %u",
			 hello.page_size, s->page_size);
		mig_load_refuse(s, -EINVAL, why);
		return mig_err(s, -EINVAL, "the source uses %s", why);
	}
	if (hello.channels > s->ch_max) {
		snprintf(why, sizeof(why),
			 "the source asks for %u channels, this destination takes at most %u (channels in its config)",
			 hello.channels, s->ch_max);
		mig_load_refuse(s, -EINVAL, why);
		return mig_err(s, -EINVAL, "%s", why);
	}
	s->nch = hello.channels;
	s->caps = hello.caps & WIRE_CAPS_KNOWN;
	s->blocks = calloc(hello.nblocks, sizeof(*s->blocks));
	if (!s->blocks) {
		mig_load_refuse(s, -ENOMEM, "out of memory for the block table");
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < hello.nblocks; i++) {
		memcpy(s->blocks[i].name, wb[i].name, WIRE_NAME_MAX);
		s->blocks[i].len = wb[i].len;
		s->blocks[i].page_size = wb[i].page_size;
		s->blocks[i].flags = wb[i].flags;
		s->blocks[i].live = 1;
	}
	s->nblocks = hello.nblocks;
	if (s->cfg.mem_limit && hello.total > s->cfg.mem_limit) {
		snprintf(why, sizeof(why),
			 "the guest needs %llu MiB, the destination takes at most %llu MiB",
			 (unsigned long long)(hello.total >> 20),
			 (unsigned long long)(s->cfg.mem_limit >> 20));
		mig_load_refuse(s, -ENOMEM, why);
		return mig_err(s, -ENOMEM, "%s", why);
	}
	return 0;
}

int mig_accept(struct rmig_mig_listener *l, int timeout_ms, struct rmig_mig **out)
{
	struct rmig_mig *s = mig_new(&l->cfg, MIG_DEST);
	char why[RMIG_ERR_MAX];
	struct wire_hdr h;
	int rc;

	if (!s)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a session");
	s->ch_max = l->ch_max;
	s->listener = l;
	s->accepting = 1;
	rc = mig_accept_peer(s, l->ep, timeout_ms, &s->ep);
	s->ch[0].ep = s->ep;
	if (rc) {
		s->ep = s->ch[0].ep = NULL;
		mig_err(s, rc, "no source arrived: %s", rmig_ep_error(l->ep));
		goto free_session;
	}
	snprintf(s->addr, sizeof(s->addr), "%s", "accepted");
	s->dom = rmig_ep_domain(s->ep);
	struct wire_block *wb = calloc(WIRE_BLOCKS_MAX, sizeof(*wb));
	if (!wb) {
		rc = mig_err(s, -ENOMEM, "out of memory for the offer");
		goto free_session;
	}
	rc = mig_recv(s, &h, s->cfg.timeout_ms);
	if (!rc)
		rc = take_hello(s, &h, wb);
	free(wb);
	if (rc)
		goto free_session;
	s->accepting = 0;
	*out = s;
	return 0;
free_session:
	/* Roll back with this reason (telling the source, if there is one),
	 * and leave it as the thread's error once the session is gone. */
	snprintf(why, sizeof(why), "%s", s->err);
	if (s->state != RMIG_STATE_ROLLED_BACK)
		mig_fail(s, rc, "%s", why);
	mig_close(s);
	return rmig_set_error(NULL, rc, "%s", why);
}

int mig_load_grant(struct rmig_mig *s)
{
	struct rmig_rkey *keys;
	struct wire_reserve r = { .nblocks = s->nblocks, .caps = s->caps };
	int rc, len;

	if (s->role != MIG_DEST || s->state != RMIG_STATE_RESERVE)
		return mig_err(s, -EINVAL, "load_grant answers an offer (state %s)",
			       mig_state_name(s->state));
	for (uint32_t i = 0; i < s->nblocks; i++)
		if (!s->blocks[i].host)
			return mig_err(s, -EINVAL, "block %s has no memory (load_register_block)",
				       s->blocks[i].name);
	for (unsigned i = 0; i < s->nch; i++) {
		s->ch[i].mrs = calloc(s->nblocks, sizeof(*s->ch[i].mrs));
		if (!s->ch[i].mrs) {
			mig_load_refuse(s, -ENOMEM, "out of memory for the channels");
			return mig_err(s, -ENOMEM, "out of memory for the channels");
		}
	}
	/* Extra channels prove they belong to this session with the token. */
	if (s->nch > 1 && getrandom(s->token, sizeof(s->token), 0) != sizeof(s->token)) {
		mig_load_refuse(s, -EIO, "no random bytes for the session token");
		return mig_err(s, -EIO, "no random bytes for the session token");
	}
	rc = mig_register_dest(s, &s->ch[0]);
	if (rc) {
		char why[RMIG_ERR_MAX];
		snprintf(why, sizeof(why), "%s", s->err);
		mig_load_refuse(s, rc, why);
		return mig_err(s, rc, "%s", why);
	}
	mig_set_state(s, RMIG_STATE_SETUP);
	keys = calloc(s->nblocks, sizeof(*keys));
	if (!keys)
		return mig_fail(s, -ENOMEM, "out of memory for the keys");
	for (uint32_t i = 0; i < s->nblocks; i++)
		keys[i] = *rmig_mr_rkey(s->ch[0].mrs[i]);
	if (s->cfg.flags & RMIG_CFG_DEST_ZEROED)
		r.flags |= WIRE_RES_ZEROED;
	memcpy(r.token, s->token, sizeof(r.token));
	len = wire_reserve_encode(s->msg, sizeof(s->msg), &r, keys);
	free(keys);
	if (len < 0)
		return mig_fail(s, len, "too many RAM blocks for one RESERVE");
	rc = rmig_send(s->ep, s->msg, (size_t)len);
	if (rc) {
		s->peer_gone = 1;
		return mig_fail(s, rc, "lost the source answering its offer: %s",
				rmig_ep_error(s->ep));
	}
	/* Granted: allocate the RAM while the channels join and round 0 runs. */
	if ((rc = mig_populate_start(s)) || (rc = mig_accept_channels(s)))
		return rc;
	mig_set_state(s, RMIG_STATE_PRECOPY);
	return 0;
}

int mig_load_commit(struct rmig_mig *s)
{
	int rc;

	if (s->role != MIG_DEST || !s->ended || s->state != RMIG_STATE_STOPCOPY)
		return mig_err(s, -EINVAL, "load_commit needs the source's END (state %s)",
			       mig_state_name(s->state));
	mig_deregister_all(s);
	rc = mig_send_status(s, WIRE_COMMIT, 0, "");
	if (rc) {
		s->peer_gone = 1;
		return mig_fail(s, rc, "lost the source while committing: %s",
				rmig_ep_error(s->ep));
	}
	mig_set_state(s, RMIG_STATE_COMMIT);
	s->ended = 0; /* the stream goes on after commit (reports) */
	return 0;
}
