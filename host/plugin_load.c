/* SPDX-License-Identifier: MIT */
/*
 * Load librdmamig the way a framework does: dlopen, the entry symbol,
 * the ABI version, the table's size.  Nothing else of the library is
 * touched by the host.
 */
#define _GNU_SOURCE
#include "hostint.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* The library prints nothing itself: the host prints what it logs (state
 * transitions only with RMIG_TRACE set). */
static void host_log(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level < RMIG_LOG_DEBUG || getenv("RMIG_TRACE"))
		fprintf(stderr, "rdmamig: %s\n", msg);
}

/* An ABI 2 hook is there if the library's table reaches it and sets it. */
#define HAS_OP(ops, op) \
	((ops)->size >= offsetof(struct rmig_plugin_ops, op) + sizeof(void *) && (ops)->op)

/* The last hook the host calls must be inside the library's table. */
#define HOST_NEEDS offsetof(struct rmig_plugin_ops, load_commit) + sizeof(void *)

const struct rmig_plugin_ops *host_load_plugin(const char *path, void **handle,
					       char *why, size_t whylen)
{
	const struct rmig_plugin_ops *ops;
	rmig_plugin_entry_fn entry;

	if (!path)
		path = "librdmamig.so.0";
	*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!*handle) {
		snprintf(why, whylen, "cannot load the plugin %s: %s (set --plugin)", path,
			 dlerror());
		return NULL;
	}
	entry = (rmig_plugin_entry_fn)dlsym(*handle, RMIG_PLUGIN_ENTRY);
	if (!entry) {
		snprintf(why, whylen, "%s has no %s symbol: not an rdmamig plugin", path,
			 RMIG_PLUGIN_ENTRY);
		goto close_lib;
	}
	ops = entry(RMIG_PLUGIN_ABI_VERSION);
	if (!ops) {
		snprintf(why, whylen, "%s does not serve plugin ABI %d", path,
			 RMIG_PLUGIN_ABI_VERSION);
		goto close_lib;
	}
	if (ops->size < HOST_NEEDS) {
		snprintf(why, whylen, "%s's hook table is older than this host needs", path);
		goto close_lib;
	}
	if (HAS_OP(ops, set_log))
		ops->set_log(host_log, NULL);
	/* The host pins guest RAM: it lifts its own memlock limit as far as
	 * allowed (the library does not do it behind its back).  A refusal is
	 * not fatal here: a registration beyond the limit names the shortfall. */
	if (HAS_OP(ops, memlock_raise))
		ops->memlock_raise(UINT64_MAX);
	return ops;
close_lib:
	dlclose(*handle);
	*handle = NULL;
	return NULL;
}

void host_unload_plugin(void *handle)
{
	if (handle)
		dlclose(handle);
}

void host_config(const struct host_opts *o, struct rmig_plugin_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->backend = o->backend;
	cfg->addr = o->addr;
	cfg->timeout_ms = o->timeout_ms;
	cfg->channels = o->channels;
	cfg->vcpus = o->vcpu_cpus;
	cfg->downtime_limit_ms = o->downtime_ms;
	cfg->bandwidth = o->bandwidth;
	cfg->policy = (enum rmig_policy)o->policy;
	cfg->reg_mode = (enum rmig_reg_mode)o->reg_mode;
	cfg->memlock_budget = o->memlock_budget;
	cfg->mem_limit = o->mem_limit;
	cfg->page_size = 4096;
	cfg->flags = RMIG_CFG_DEST_ZEROED | (o->no_zero_skip ? RMIG_CFG_NO_ZERO_SKIP : 0) |
		     (o->insecure ? RMIG_CFG_INSECURE : 0);
	cfg->psk = o->psk;
	cfg->psk_len = o->psk_len;
}

int host_stream_read_full(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
			  void *buf, size_t len, int timeout_ms)
{
	char *p = buf;

	while (len) {
		long n = ops->stream_read(s, p, len, timeout_ms);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void host_fill_stats(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
		     struct host_result *r)
{
	struct rmig_mig_stats st = { .size = sizeof(st) };

	if (ops->stats(s, &st))
		return;
	r->rounds = st.rounds;
	r->bytes = st.bytes;
	r->stream_bytes = st.stream_bytes;
	r->pages = st.pages;
	r->zero_pages = st.zero_pages;
	r->writes = st.writes;
	r->batches = st.batches;
	r->regs = st.regs;
	r->regs_remote = st.regs_remote;
	r->reg_ns = st.reg_ns;
	r->mrs_live = st.mrs_live;
	if (st.size >= offsetof(struct rmig_mig_stats, pinned_bytes) + sizeof(st.pinned_bytes))
		r->pinned_bytes = st.pinned_bytes;
	if (st.size >= offsetof(struct rmig_mig_stats, worker_cpu) + sizeof(st.worker_cpu)) {
		r->channels = st.channels;
		for (unsigned i = 0; i < HOST_CHANNELS_MAX && i < RMIG_CHANNELS_MAX; i++) {
			r->planned_cpu[i] = st.planned_cpu[i];
			r->worker_cpu[i] = st.worker_cpu[i];
		}
	}
	if (st.size >= offsetof(struct rmig_mig_stats, reserve_ns) + sizeof(st.reserve_ns))
		r->grant_ns = st.reserve_ns;
	snprintf(r->backend, sizeof(r->backend), "%s", st.backend);
}

double host_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

const char *host_key_hint(const char *why)
{
	if (strstr(why, "is not compiled in"))
		return " (rdmamig backends lists them)";
	if (!strstr(why, "pre-shared key") && !strstr(why, "without a key"))
		return "";
	return " (rdmamig: the same --key-file FILE or RMIG_KEY_FILE on both ends, or --insecure on both)";
}
