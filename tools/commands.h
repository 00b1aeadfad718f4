/* SPDX-License-Identifier: MIT */
/* The rdmamig CLI's subcommands: one function each, argv[0] is the command. */
#ifndef RMIG_TOOLS_COMMANDS_H
#define RMIG_TOOLS_COMMANDS_H

#include <stddef.h>

int cmd_backends(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int bench_transport(int argc, char **argv);
/* One backend's write rate at one size (MB/s, 10^6 bytes) to a forked peer
 * on host (NULL: 127.0.0.1), for seconds; 0 or -errno. */
int bench_transport_rate(const char *backend, const char *host, unsigned long long size,
			 double seconds, double *mbps);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_proxy_out(int argc, char **argv);
int cmd_proxy_in(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int bench_migrate(int argc, char **argv);
int bench_hygiene(int argc, char **argv);
int cmd_topo(int argc, char **argv);

/* The key of --key-file FILE / RMIG_KEY_FILE, or --insecure (keyfile.c). */
struct cli_key {
	unsigned char buf[1024]; /* RMIG_PSK_MAX */
	size_t len;              /* 0: none */
	int insecure;
};
/*
 * Resolve --key-file (path, may be NULL), RMIG_KEY_FILE and --insecure.
 * may_generate: no key is fine (the command makes a random one for its
 * own two ends).  Returns 0, or the exit code after printing why.
 */
int cli_key_resolve(const char *cmd, const char *path, int insecure, int may_generate,
		    struct cli_key *k);
struct rmig_ep_opts;
/* Put the key (or RMIG_EP_INSECURE) into transport options. */
void cli_key_opts(const struct cli_key *k, struct rmig_ep_opts *o);

struct rmig_ep;
/*
 * rmig_connect, retrying while nobody listens yet (refused, reset, timed
 * out, unreachable) until timeout_ms; 0 or the last -errno (cmd_stream.c).
 */
int cli_connect_retry(const char *backend, const char *addr, const struct rmig_ep_opts *opts,
		      int timeout_ms, struct rmig_ep **ep);
/* Write a listener's bound HOST:PORT to path (via a renamed temp file); 0 or -1, errno. */
int cli_write_addr_file(const char *path, struct rmig_ep *l);

/* Parse "4K", "64M", "1G" (binary units) into bytes; 0 on error. */
unsigned long long parse_size(const char *s);

#endif
