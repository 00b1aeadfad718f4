/* SPDX-License-Identifier: MIT */
/*
 * rdmamig proxy-out / rdmamig proxy-in: the command lines of the unix:
 * migration proxy (proxy.c does the work).
 *   source:       rdmamig proxy-out --listen-unix PATH --to HOST:PORT
 *                 QEMU: migrate unix:PATH (multifd too)
 *   destination:  rdmamig proxy-in --listen HOST:PORT --to-unix PATH
 *                 QEMU: -incoming unix:PATH (or migrate-incoming)
 */
#define _GNU_SOURCE
#include "commands.h"
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_RING (4u << 20)
#define DEFAULT_CHUNK (1u << 20)
#define DEFAULT_MAX_CONNS 256
#define DEFAULT_WORKERS 8

static void usage(int out, FILE *f)
{
	if (out)
		fprintf(f,
			"usage: rdmamig proxy-out --listen-unix PATH[=NAME] [--listen-unix ...] --to HOST:PORT\n"
			"                         [--backend SPEC] [--chunk SIZE] [--mode OCTAL] [COMMON]\n\n"
			"Source host: QEMU migrates to unix:PATH (its main connection and every\n"
			"multifd channel); each connection is carried to 'rdmamig proxy-in' at\n"
			"HOST:PORT on its own authenticated rdmamig connection.  One --listen-unix\n"
			"per migration socket (up to %d); NAME (default: PATH's file name) picks\n"
			"the destination socket on proxy-in.  --mode: chmod the sockets (e.g. 660).\n",
			PROXY_ROUTES_MAX);
	else
		fprintf(f,
			"usage: rdmamig proxy-in --listen HOST:PORT --to-unix PATH[=NAME] [--to-unix ...]\n"
			"                        [--backend SPEC] [--ring SIZE] [--addr-file PATH] [COMMON]\n\n"
			"Destination host: takes proxy-out's connections and connects each to the\n"
			"destination QEMU's -incoming unix:PATH (or a socket libvirt names), the one\n"
			"whose NAME (default: PATH's file name) proxy-out's route gave.\n"
			"--ring: receive ring per connection (default 4M, pinned); --addr-file:\n"
			"write the bound HOST:PORT there (port 0 picks a free one).\n");
	fprintf(f,
		"COMMON: [--timeout MS] [--max-conns N] [--nic NIC] [--vcpus LIST] [--workers N]\n"
		"        [--verbose] [--key-file FILE | --insecure]\n"
		"--timeout: a silent peer, an unreachable proxy or QEMU socket is given up\n"
		"after MS (default %d); every QEMU socket is then reset, so QEMU fails the\n"
		"migration and the source guest runs on.  --max-conns: connections carried\n"
		"at once (default %d).  --nic/--vcpus/--workers: the placement plan the\n"
		"connection threads are bound by (see 'rdmamig topo').\n"
		"SPEC: tcp, ofi, ofi/tcp, ofi/shm, verbs or auto (default).  Both proxies use\n"
		"the same backend and key.  Runs until SIGINT/SIGTERM.\n",
		RMIG_DEFAULT_TIMEOUT_MS, DEFAULT_MAX_CONNS);
}

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned base, unsigned *out)
{
	char *end;
	unsigned long x = strtoul(v, &end, (int)base);

	if (*end || end == v || x < lo || x > hi)
		return -1;
	*out = (unsigned)x;
	return 0;
}

/* One option with a value; 0, -1 unknown option, -2 bad value. */
static int parse_opt(struct proxy_cfg *c, int out, const char *k, char *v,
		     const char **key_file)
{
	unsigned ms;

	if (!strcmp(k, out ? "--listen-unix" : "--to-unix")) {
		if (c->nroutes == PROXY_ROUTES_MAX)
			return -2;
		return proxy_route_parse(v, &c->routes[c->nroutes++]) ? -2 : 0;
	}
	if (!strcmp(k, out ? "--to" : "--listen"))
		c->addr = v;
	else if (!strcmp(k, "--backend"))
		c->backend = v;
	else if (!strcmp(k, "--key-file"))
		*key_file = v;
	else if (!strcmp(k, "--timeout")) {
		if (parse_uint(v, 1, 86400000, 10, &ms))
			return -2;
		c->o.timeout_ms = (int)ms;
	} else if (!strcmp(k, "--max-conns"))
		return parse_uint(v, 1, 65536, 10, &c->max_conns) ? -2 : 0;
	else if (!strcmp(k, "--workers"))
		return parse_uint(v, 1, 256, 10, &c->workers) ? -2 : 0;
	else if (!strcmp(k, "--nic"))
		c->nic = v;
	else if (!strcmp(k, "--vcpus"))
		c->vcpus = v;
	else if (out && !strcmp(k, "--mode"))
		return parse_uint(v, 1, 0777, 8, &c->mode) ? -2 : 0;
	else if (out && !strcmp(k, "--chunk"))
		return (c->o.chunk = parse_size(v)) ? 0 : -2;
	else if (!out && !strcmp(k, "--ring"))
		return (c->o.ring = parse_size(v)) < 65536 || c->o.ring % 4096 ||
		       c->o.ring > (1ull << 34) ? -2 : 0;
	else if (!out && !strcmp(k, "--addr-file"))
		c->addr_file = v;
	else
		return -1;
	return 0;
}

/* 0, or the exit code after saying why. */
static int parse_args(int argc, char **argv, int out, struct proxy_cfg *c, struct cli_key *key)
{
	const char *key_file = NULL;
	int insecure = 0;

	*c = (struct proxy_cfg){ .cmd = argv[0], .backend = "auto", .max_conns = DEFAULT_MAX_CONNS,
				 .workers = DEFAULT_WORKERS,
				 .o = { .size = sizeof(struct rmig_stream_opts), .ring = DEFAULT_RING,
					.chunk = DEFAULT_CHUNK, .timeout_ms = RMIG_DEFAULT_TIMEOUT_MS } };
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i];
		int rc;

		if (!strcmp(k, "--verbose") || !strcmp(k, "-v")) {
			c->verbose = 1;
			continue;
		}
		if (!strcmp(k, "--insecure")) {
			insecure = 1;
			continue;
		}
		rc = i + 1 < argc ? parse_opt(c, out, k, argv[i + 1], &key_file) : -1;
		if (rc == -1) {
			usage(out, stderr);
			return 2;
		}
		if (rc == -2) {
			fprintf(stderr, "rdmamig %s: bad value '%s' for %s%s\n", argv[0], argv[i + 1], k,
				strstr(k, "unix") ? " (PATH or PATH=NAME, NAME of letters, digits, '.', '_', '-')"
						  : "");
			return 2;
		}
		i++;
	}
	if (!c->addr || !c->nroutes) {
		fprintf(stderr, "rdmamig %s: %s and at least one %s are required (--help)\n", argv[0],
			out ? "--to" : "--listen", out ? "--listen-unix" : "--to-unix");
		return 2;
	}
	if (cli_key_resolve(argv[0], key_file, insecure, 0, key))
		return 2;
	c->ep_opts = (struct rmig_ep_opts){ .size = sizeof(c->ep_opts), .timeout_ms = c->o.timeout_ms };
	cli_key_opts(key, &c->ep_opts); /* points at key: it lives until the proxy exits */
	return 0;
}

static int run(int argc, char **argv, int out)
{
	/* Both outlive every connection thread (they read them to the end). */
	static struct cli_key key;
	static struct proxy_cfg c;
	int rc;

	if (argc > 1 && !strcmp(argv[1], "--help")) {
		usage(out, stdout);
		return 0;
	}
	rc = parse_args(argc, argv, out, &c, &key);
	if (rc)
		return rc;
	return out ? proxy_out_run(&c) : proxy_in_run(&c);
}

int cmd_proxy_out(int argc, char **argv)
{
	return run(argc, argv, 1);
}

int cmd_proxy_in(int argc, char **argv)
{
	return run(argc, argv, 0);
}
