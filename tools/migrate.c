/* SPDX-License-Identifier: MIT */
/*
 * rdmamig serve / migrate / demo: the reference host (host/) from the
 * command line.  The host loads librdmamig through its entry symbol; this
 * file only parses options and prints results.
 */
#define _GNU_SOURCE
#include "commands.h"
#include "../host/host.h"
#include <rdmamig/plugin.h>
#include <rdmamig/rdmamig.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { O_BACKEND = 256, O_TIMEOUT, O_GUEST, O_MEM, O_DIRTY, O_PATTERN, O_VCPUS,
       O_DOWNTIME, O_ROUNDS, O_BW, O_POLICY, O_REG, O_MEMLOCK, O_MEMLIMIT, O_TRACK,
       O_DEVSTATE, O_NOZERO, O_PROGRESS, O_JSON, O_PLUGIN, O_LISTEN, O_TO, O_HELP,
       O_ACCEPT, O_KEYFILE, O_INSECURE,
       O_CHANNELS, O_VTHREADS };

static const struct option longopts[] = {
	{ "backend", required_argument, 0, O_BACKEND },
	{ "timeout-ms", required_argument, 0, O_TIMEOUT },
	{ "guest-size", required_argument, 0, O_GUEST },
	{ "memory", required_argument, 0, O_MEM },
	{ "dirty-rate", required_argument, 0, O_DIRTY },
	{ "pattern", required_argument, 0, O_PATTERN },
	{ "vcpus", required_argument, 0, O_VCPUS },
	{ "vcpu-threads", required_argument, 0, O_VTHREADS },
	{ "channels", required_argument, 0, O_CHANNELS },
	{ "downtime-ms", required_argument, 0, O_DOWNTIME },
	{ "max-rounds", required_argument, 0, O_ROUNDS },
	{ "bandwidth", required_argument, 0, O_BW },
	{ "policy", required_argument, 0, O_POLICY },
	{ "registration", required_argument, 0, O_REG },
	{ "memlock-budget", required_argument, 0, O_MEMLOCK },
	{ "mem-limit", required_argument, 0, O_MEMLIMIT },
	{ "dirty-tracking", required_argument, 0, O_TRACK },
	{ "device-state", required_argument, 0, O_DEVSTATE },
	{ "no-zero-skip", no_argument, 0, O_NOZERO },
	{ "progress", no_argument, 0, O_PROGRESS },
	{ "json", no_argument, 0, O_JSON },
	{ "plugin", required_argument, 0, O_PLUGIN },
	{ "listen", required_argument, 0, O_LISTEN },
	{ "to", required_argument, 0, O_TO },
	{ "accept-timeout-ms", required_argument, 0, O_ACCEPT },
	{ "key-file", required_argument, 0, O_KEYFILE },
	{ "insecure", no_argument, 0, O_INSECURE },
	{ "help", no_argument, 0, O_HELP },
	{ 0, 0, 0, 0 },
};

static const char options_help[] =
	"  --backend SPEC         tcp, ofi, ofi/tcp, ofi/shm, verbs, auto (default: best here)\n"
	"  --guest-size SIZE      guest RAM (default 1G; multiple of 2M)\n"
	"  --memory KIND          anon, memfd, hugetlb (default anon)\n"
	"  --dirty-rate RATE      bytes/s the vCPUs dirty (default 0: idle guest)\n"
	"  --pattern P            uniform, hotset, seq (default uniform)\n"
	"  --vcpu-threads N       vCPU threads (default 1)\n"
	"  --vcpus CPUSET         cpus reserved for the vCPUs (\"0-1,4\"): no channel\n"
	"                         worker is placed there (default: none reserved)\n"
	"  --channels N           source: connections, each with a worker pinned near\n"
	"                         the NIC (1..16, default 1); serve: the most a source\n"
	"                         may open (default 16)\n"
	"  --downtime-ms MS       downtime limit for convergence (default 300)\n"
	"  --max-rounds N         pre-copy rounds before the policy applies (default 30)\n"
	"  --bandwidth RATE       cap on page bytes/s (default none)\n"
	"  --policy giveup|force  when pre-copy does not converge (default giveup)\n"
	"  --registration MODE    auto, whole, chunked (source RAM registration)\n"
	"  --memlock-budget SIZE  bytes a session may pin (default RLIMIT_MEMLOCK)\n"
	"  --mem-limit SIZE       destination: largest guest it accepts\n"
	"  --dirty-tracking T     auto, uffd-async, uffd-sync, mprotect (auto: env\n                         RMIG_DIRTY_TRACKING, else the first that works)\n"
	"  --device-state SIZE    device-state bytes on the stream (default 256K)\n"
	"  --no-zero-skip         send all-zero pages too\n"
	"  --timeout-ms MS        deadline for every wait on the peer (default 10000)\n"
	"  --accept-timeout-ms MS serve: how long to wait for a source (default 6 x timeout)\n"
	"  --progress             progress line on stderr even when not a tty\n"
	"  --json                 one JSON object per result on stdout\n"
	"  --plugin PATH          library to dlopen (default librdmamig.so.0)\n"
	"  --key-file FILE        pre-shared key both ends authenticate with (16+ random\n"
	"                         bytes, mode 600; default $RMIG_KEY_FILE; demo: a random one)\n"
	"  --insecure             no key: accept or reach unauthenticated peers\n";

struct cli {
	struct host_opts o;
	int json;
	const char *key_file;
	int insecure;
	struct cli_key key;
};

static int bad_opt(const char *cmd, const char *opt, const char *val)
{
	fprintf(stderr, "rdmamig %s: bad value '%s' for --%s (rdmamig %s --help)\n", cmd, val,
		opt, cmd);
	return 2;
}

static int parse(const char *cmd, int argc, char **argv, struct cli *c)
{
	struct host_opts *o = &c->o;
	int ch, idx;

	host_opts_default(o);
	o->progress = isatty(2);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		const char *v = optarg;
		switch (ch) {
		case O_BACKEND: o->backend = v; break;
		case O_TIMEOUT: o->timeout_ms = atoi(v); if (o->timeout_ms <= 0) return bad_opt(cmd, "timeout-ms", v); break;
		case O_GUEST: if (!(o->guest_size = parse_size(v))) return bad_opt(cmd, "guest-size", v); break;
		case O_MEM:
			if (!strcmp(v, "anon")) o->mem = HOST_MEM_ANON;
			else if (!strcmp(v, "memfd")) o->mem = HOST_MEM_MEMFD;
			else if (!strcmp(v, "hugetlb")) o->mem = HOST_MEM_HUGETLB;
			else return bad_opt(cmd, "memory", v);
			break;
		case O_DIRTY: o->dirty_rate = parse_size(v); if (!o->dirty_rate && strcmp(v, "0")) return bad_opt(cmd, "dirty-rate", v); break;
		case O_PATTERN:
			if (!strcmp(v, "uniform")) o->pattern = HOST_PAT_UNIFORM;
			else if (!strcmp(v, "hotset")) o->pattern = HOST_PAT_HOTSET;
			else if (!strcmp(v, "seq")) o->pattern = HOST_PAT_SEQ;
			else return bad_opt(cmd, "pattern", v);
			break;
		case O_VTHREADS: o->vcpus = (unsigned)atoi(v); if (!o->vcpus || o->vcpus > 256) return bad_opt(cmd, "vcpu-threads", v); break;
		case O_VCPUS: if (!*v || strspn(v, "0123456789,-") != strlen(v)) return bad_opt(cmd, "vcpus", v); o->vcpu_cpus = v; break;
		case O_CHANNELS: o->channels = (unsigned)atoi(v); if (!o->channels || o->channels > 16) return bad_opt(cmd, "channels", v); break;
		case O_DOWNTIME: o->downtime_ms = (uint32_t)atoi(v); break;
		case O_ROUNDS: o->max_rounds = (unsigned)atoi(v); if (!o->max_rounds) return bad_opt(cmd, "max-rounds", v); break;
		case O_BW: if (!(o->bandwidth = parse_size(v))) return bad_opt(cmd, "bandwidth", v); break;
		case O_POLICY:
			if (!strcmp(v, "giveup")) o->policy = RMIG_POLICY_GIVEUP;
			else if (!strcmp(v, "force")) o->policy = RMIG_POLICY_FORCE;
			else return bad_opt(cmd, "policy", v);
			break;
		case O_REG:
			if (!strcmp(v, "auto")) o->reg_mode = RMIG_REG_AUTO;
			else if (!strcmp(v, "whole")) o->reg_mode = RMIG_REG_WHOLE;
			else if (!strcmp(v, "chunked")) o->reg_mode = RMIG_REG_CHUNKED;
			else return bad_opt(cmd, "registration", v);
			break;
		case O_MEMLOCK: if (!(o->memlock_budget = parse_size(v))) return bad_opt(cmd, "memlock-budget", v); break;
		case O_MEMLIMIT: if (!(o->mem_limit = parse_size(v))) return bad_opt(cmd, "mem-limit", v); break;
		case O_TRACK: o->track = v; break;
		case O_DEVSTATE: o->device_state = parse_size(v); break;
		case O_NOZERO: o->no_zero_skip = 1; break;
		case O_PROGRESS: o->progress = 1; break;
		case O_JSON: c->json = 1; break;
		case O_PLUGIN: o->plugin = v; break;
		case O_LISTEN: case O_TO: o->addr = v; break;
		case O_ACCEPT: o->accept_timeout_ms = atoi(v); if (o->accept_timeout_ms <= 0) return bad_opt(cmd, "accept-timeout-ms", v); break;
		case O_KEYFILE: c->key_file = v; break;
		case O_INSECURE: c->insecure = 1; break;
		case O_HELP: return -1;
		default: return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rdmamig %s: unexpected argument '%s'\n", cmd, argv[optind]);
		return 2;
	}
	if (!o->backend)
		o->backend = rmig_backend_best();
	return 0;
}

static void print_listen(const char *addr, void *arg)
{
	(void)arg;
	fprintf(stderr, "rdmamig serve: listening on %s\n", addr);
}

/*
 * Parse, print the usage for --help, insist on the address where the
 * command needs one (addr_opt: its option name).  Returns -1 to go on,
 * else the exit code.
 */
static int prepare(const char *cmd, const char *usage, const char *addr_opt, int argc,
		   char **argv, struct cli *c)
{
	int rc = parse(cmd, argc, argv, c);

	if (rc < 0) {
		printf("%s\n%s", usage, options_help);
		return 0;
	}
	if (rc)
		return rc;
	if (addr_opt && !c->o.addr) {
		fprintf(stderr, "rdmamig %s: %s HOST:PORT is required\n", cmd, addr_opt);
		return 2;
	}
	/* demo: both ends are ours, host_demo makes a random key. */
	rc = cli_key_resolve(cmd, c->key_file, c->insecure, !addr_opt, &c->key);
	if (rc)
		return rc;
	c->o.psk = c->key.len ? c->key.buf : NULL;
	c->o.psk_len = c->key.len;
	c->o.insecure = c->key.insecure;
	return -1;
}

int cmd_serve(int argc, char **argv)
{
	struct host_result r;
	struct cli c = { 0 };
	int rc = prepare("serve",
			 "usage: rdmamig serve --listen HOST:PORT [OPTIONS]\n\n"
			 "Destination: take one guest from 'rdmamig migrate', resume it and\n"
			 "verify its memory against the source's.\n",
			 "--listen", argc, argv, &c);

	if (rc >= 0)
		return rc;
	c.o.on_listen = print_listen;
	rc = host_serve(&c.o, &r);
	explicit_bzero(&c.key, sizeof(c.key)); /* the library keeps its own copy */
	host_print_result(&r, c.json, "destination");
	return rc ? 1 : 0;
}

static volatile sig_atomic_t cancel_req;

static void on_cancel_signal(int sig)
{
	(void)sig;
	cancel_req = 1;
}

/*
 * Cancel from the command line: the first SIGINT (Ctrl-C) or SIGTERM
 * cancels the migration at the next stage or batch of pages -- the source
 * tells the destination and keeps its guest; a second one kills as usual.
 */
static void catch_cancel(struct host_opts *o)
{
	struct sigaction sa = { .sa_handler = on_cancel_signal,
				.sa_flags = SA_RESETHAND | SA_RESTART };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	o->cancel = &cancel_req;
}

int cmd_migrate(int argc, char **argv)
{
	struct host_result r;
	struct cli c = { 0 };
	int rc = prepare("migrate",
			 "usage: rdmamig migrate --to HOST:PORT [OPTIONS]\n\n"
			 "Source: run a guest and live-migrate it to 'rdmamig serve'.  SIGINT\n"
			 "(Ctrl-C) or SIGTERM cancels before commit: the guest keeps running.\n",
			 "--to", argc, argv, &c);

	if (rc >= 0)
		return rc;
	catch_cancel(&c.o);
	rc = host_migrate(&c.o, &r);
	explicit_bzero(&c.key, sizeof(c.key)); /* the library keeps its own copy */
	host_print_result(&r, c.json, "source");
	return rc ? 1 : 0;
}

int cmd_demo(int argc, char **argv)
{
	struct host_result r;
	struct cli c = { 0 };
	int rc = prepare("demo",
			 "usage: rdmamig demo [OPTIONS]\n\n"
			 "Live-migrate a guest between two processes on this machine (the\n"
			 "destination is forked) and check the result.  --listen HOST:PORT sets\n"
			 "where the destination listens (default 127.0.0.1:0; on RoCE use the\n"
			 "RDMA netdev's address).\n",
			 NULL, argc, argv, &c);

	if (rc >= 0)
		return rc;
	if (!c.json)
		printf("rdmamig demo: %llu MiB guest, backend %s, dirty rate %llu MiB/s (%s), downtime limit %u ms\n",
		       (unsigned long long)(c.o.guest_size >> 20), c.o.backend,
		       (unsigned long long)(c.o.dirty_rate >> 20),
		       c.o.pattern == HOST_PAT_HOTSET ? "hotset"
		       : c.o.pattern == HOST_PAT_SEQ ? "seq" : "uniform", c.o.downtime_ms);
	fflush(stdout);
	rc = host_demo(&c.o, &r);
	explicit_bzero(&c.key, sizeof(c.key)); /* the library keeps its own copy */
	host_print_result(&r, c.json, "source");
	return rc || r.verified != 1 ? 1 : 0;
}
