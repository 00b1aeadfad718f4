/* SPDX-License-Identifier: MIT */
/* Internal helpers shared by the reference host's files. */
#ifndef RMIG_HOST_HOSTINT_H
#define RMIG_HOST_HOSTINT_H

#include "host.h"
#include <rdmamig/plugin.h>

/* Stream records the host puts on the plugin's stream (little-endian). */
#define HOST_DEV_MAGIC "RMIGDEV1"  /* device state, before finish */
#define HOST_HASH_MAGIC "RMIGHASH" /* page hashes at pause, after commit */
#define HOST_VRFY_MAGIC "RMIGVRFY" /* destination's verdict, back to the source */
#define HOST_VRFY_SIZE 40
#define HOST_DEV_MAX (64u << 20)

const struct rmig_plugin_ops *host_load_plugin(const char *path, void **handle,
					       char *why, size_t whylen);
void host_unload_plugin(void *handle);
void host_config(const struct host_opts *o, struct rmig_plugin_config *cfg);
/* Read exactly len stream bytes; -EPIPE if the stream ends first. */
int host_stream_read_full(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
			  void *buf, size_t len, int timeout_ms);
/* Test hook (testhook.c): stop here if RMIG_TEST_PAUSE_AT names this phase. */
void host_test_pause(enum host_stage st, unsigned round);
void host_fill_stats(const struct rmig_plugin_ops *ops, struct rmig_mig *s,
		     struct host_result *r);
/* CPU seconds (user + system) of this process so far (getrusage). */
double host_cpu_s(void);

#endif
