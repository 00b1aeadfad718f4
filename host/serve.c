/* SPDX-License-Identifier: MIT */
/*
 * The destination host: take one guest.  Memory is placed only once the
 * source's offer is known (and refused with the reason if it cannot be),
 * the device state arrives on the stream, the guest resumes at commit,
 * and its memory is checked against the source's page hashes.
 */
#define _GNU_SOURCE
#include "guest.h"
#include "hostint.h"
#include "../common/clock.h"
#include "../common/le.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Take the device state: every stream byte before the source's END. */
static int take_device_state(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
			     int timeout_ms, char *why, size_t whylen)
{
	size_t cap = 1 << 20, len = 0;
	uint8_t *b = malloc(cap);
	long n;
	int rc = 0;

	if (!b)
		return -ENOMEM;
	while ((n = ops->stream_read(s, b + len, cap - len, timeout_ms)) > 0) {
		len += (size_t)n;
		if (len == cap) {
			uint8_t *g = cap < HOST_DEV_MAX ? realloc(b, cap * 2) : NULL;
			if (!g) {
				rc = -EFBIG;
				ops->cancel(s, "device state too large");
				snprintf(why, whylen, "device state exceeds %u MiB", HOST_DEV_MAX >> 20);
				break;
			}
			b = g;
			cap *= 2;
		}
	}
	if (!rc && n < 0)
		rc = (int)n;
	if (!rc && (len < 24 || memcmp(b, HOST_DEV_MAGIC, 8) || rmig_get_le64(b + 8) != len)) {
		rc = -EPROTO;
		snprintf(why, whylen, "the device state is malformed");
		ops->cancel(s, "malformed device state");
	}
	free(b);
	return rc;
}

/* Compare our pages with the source's hashes; tell the source. */
static int check_memory(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
			struct guest *g, int timeout_ms, struct host_result *r)
{
	uint64_t npages = g->size / GUEST_PAGE, t0 = rmig_now_ns(), bad = 0, first = 0;
	uint64_t *mine = malloc(npages * 8), *theirs = malloc(npages * 8);
	uint8_t hdr[16], v[HOST_VRFY_SIZE];
	int rc = -ENOMEM;

	if (!mine || !theirs)
		goto free_hashes;
	guest_hash_pages(g->mem, g->size, mine);
	r->verify_ns = rmig_now_ns() - t0;
	rc = host_stream_read_full(ops, s, hdr, sizeof(hdr), timeout_ms);
	if (!rc && (memcmp(hdr, HOST_HASH_MAGIC, 8) || rmig_get_le64(hdr + 8) != npages))
		rc = -EPROTO;
	if (!rc)
		rc = host_stream_read_full(ops, s, theirs, npages * 8, timeout_ms);
	if (rc)
		goto free_hashes;
	for (uint64_t i = 0; i < npages; i++) {
		if (rmig_get_le64((uint8_t *)&theirs[i]) != mine[i]) {
			if (!bad++)
				first = i;
		}
	}
	r->verified = !bad;
	r->mismatched_pages = bad;
	memcpy(v, HOST_VRFY_MAGIC, 8);
	rmig_put_le64(v + 8, (uint64_t)r->verified);
	rmig_put_le64(v + 16, bad);
	rmig_put_le64(v + 24, first);
	rmig_put_le64(v + 32, r->verify_ns);
	rc = ops->stream_write(s, v, sizeof(v));
free_hashes:
	free(mine);
	free(theirs);
	return rc;
}

static int place(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
		 const struct host_opts *o, struct guest *g, struct host_result *r)
{
	struct rmig_block_info bi;
	char why[200];
	int rc;

	if (ops->load_block_count(s) != 1) {
		ops->load_refuse(s, -EINVAL, "this host takes guests with one RAM block");
		snprintf(r->error, sizeof(r->error), "the source offered several RAM blocks");
		return -EINVAL;
	}
	if ((rc = ops->load_block(s, 0, &bi)))
		return rc;
	r->guest_size = bi.len;
	rc = guest_create(g, bi.len, o->mem, 0, why, sizeof(why));
	if (rc) {
		ops->load_refuse(s, rc, why);
		snprintf(r->error, sizeof(r->error), "refused the guest: %s", why);
		return rc;
	}
	if ((rc = ops->load_register_block(s, 0, g->mem)) || (rc = ops->load_grant(s)))
		snprintf(r->error, sizeof(r->error), "%s", ops->error(s));
	return rc;
}

static int serve_one(const struct rmig_plugin_ops *ops, struct rmig_mig_listener *l,
		     const struct host_opts *o, struct host_result *r)
{
	struct rmig_mig *s = NULL;
	struct guest g = { .memfd = -1 };
	uint64_t t0;
	int accept_ms = o->accept_timeout_ms ? o->accept_timeout_ms : o->timeout_ms * 6, rc;

	rc = ops->accept(l, accept_ms, &s);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "%s", ops->error(NULL));
		return rc;
	}
	t0 = rmig_now_ns();
	double cpu0 = host_cpu_s();
	if ((rc = place(ops, s, o, &g, r)))
		goto close_session;
	rc = take_device_state(ops, s, o->timeout_ms, r->error, sizeof(r->error));
	if (!rc)
		rc = ops->load_commit(s);
	if (rc) {
		if (!r->error[0])
			snprintf(r->error, sizeof(r->error), "%s", ops->error(s));
		goto close_session;
	}
	r->committed = 1;
	r->total_ns = rmig_now_ns() - t0;
	r->cpu_s = host_cpu_s() - cpu0;
	/* Resumed: the guest is ours.  Check it against the source's pages. */
	rc = check_memory(ops, s, &g, o->timeout_ms, r);
	if (rc)
		snprintf(r->error, sizeof(r->error), "could not verify the guest: %s",
			 ops->error(s));
	snprintf(r->outcome, sizeof(r->outcome), "guest received%s",
		 r->verified == 1 ? ", memory identical to the source at pause"
		 : r->verified == 0 ? ", MEMORY DIFFERS from the source" : "");
close_session:
	host_fill_stats(ops, s, r);
	ops->close(s);
	/* The engine has deregistered everything; now the memory goes. */
	if (g.mem)
		guest_destroy(&g);
	return rc;
}

int host_serve(const struct host_opts *o, struct host_result *r)
{
	struct rmig_mig_listener *l = NULL;
	struct rmig_plugin_config cfg;
	const struct rmig_plugin_ops *ops;
	char addr[128];
	void *lib = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	r->verified = -1;
	r->source_intact = -1;
	ops = host_load_plugin(o->plugin, &lib, r->error, sizeof(r->error));
	if (!ops)
		return r->rc = -ENOENT;
	host_config(o, &cfg);
	rc = ops->listen(&cfg, &l);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "cannot listen on %s: %s",
			 o->addr ? o->addr : "127.0.0.1:0", ops->error(NULL));
		goto unload;
	}
	if (!ops->listen_addr(l, addr, sizeof(addr)) && o->on_listen)
		o->on_listen(addr, o->arg);
	rc = serve_one(ops, l, o, r);
	if (rc && !r->outcome[0])
		snprintf(r->outcome, sizeof(r->outcome), "no guest received; everything freed");
	ops->listen_close(l);
unload:
	host_unload_plugin(lib);
	return r->rc = rc;
}
