/* SPDX-License-Identifier: MIT */
/*
 * rdmamig proxy-out / proxy-in: unmodified QEMU's unix: migration (the main
 * connection and every multifd channel) carried over rdmamig.
 *
 *   source:      QEMU --unix--> proxy-out ==rdmamig==> proxy-in --unix--> QEMU
 *
 * Each QEMU connection proxy-out accepts becomes its own authenticated
 * rdmamig connection carrying one stream (rmig_stream_*, include/rdmamig/stream.h), served by its own
 * thread; proxy-in connects it to the destination socket its route names.
 * One pair serves any number of migrations, at once too: a route per
 * migration socket.
 */
#ifndef RMIG_TOOLS_PROXY_H
#define RMIG_TOOLS_PROXY_H

#include "proxy_wire.h"
#include <rdmamig/stream.h>
#include <rdmamig/rdmamig.h>

#define PROXY_ROUTES_MAX 32

/* A migration socket: where QEMU connects (out) or what to connect to (in). */
struct proxy_route {
	const char *path;
	char name[PROXY_NAME_MAX + 1]; /* how proxy-out names it to proxy-in */
	int fd;                         /* out: the listening socket, else -1 */
};

struct proxy_cfg {
	const char *cmd;      /* "proxy-out" or "proxy-in", for messages */
	const char *addr;     /* out: proxy-in's HOST:PORT; in: where to listen */
	const char *backend;
	const char *addr_file; /* in: write the bound HOST:PORT there */
	struct proxy_route routes[PROXY_ROUTES_MAX];
	unsigned nroutes;
	struct rmig_stream_opts o;  /* ring (in), chunk (out), timeout both */
	struct rmig_ep_opts ep_opts; /* holds the key: kept for every connection */
	unsigned mode;         /* out: chmod of the sockets QEMU connects to; 0 leave */
	unsigned max_conns;    /* carried connections at once */
	const char *nic, *vcpus; /* placement (NUMA plan), NULL: unknown / none */
	unsigned workers;      /* CPUs the plan spreads connections over */
	int verbose;
};

/* Run until SIGINT/SIGTERM; returns the exit code (0, 1 error). */
int proxy_out_run(struct proxy_cfg *c);
int proxy_in_run(struct proxy_cfg *c);

/* "PATH" or "PATH=NAME" into a route (name: PATH's file name by default; arg is
 * cut at the '=' and must outlive the proxy, like argv); 0 or -1. */
int proxy_route_parse(char *arg, struct proxy_route *r);

#endif
