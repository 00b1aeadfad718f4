/* SPDX-License-Identifier: MIT */
/*
 * rdmamig send / rdmamig recv: a byte stream (stdin on one host to stdout on
 * the other) over any backend, for QEMU's exec: migration channel:
 *   migrate "exec:rdmamig send --to HOST:PORT"
 *   -incoming "exec:rdmamig recv --listen HOST:PORT"
 */
#define _GNU_SOURCE
#include "commands.h"
#include "host.h"
#include "../common/clock.h"
#include <rdmamig/rdmamig.h>
#include <rdmamig/stream.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_RING (4u << 20)
#define DEFAULT_CHUNK (1u << 20)
#define DEFAULT_ACCEPT_MS 600000
#define DEFAULT_PIPE (1u << 20)

struct stream_args {
	const char *addr;
	const char *backend;
	const char *addr_file;
	struct rmig_stream_opts o;
	int accept_ms;
	int verbose;
	int fork;
	unsigned long long pipe; /* F_SETPIPE_SZ on QEMU's pipe; 0: leave it */
	const char *key_file;
	int insecure;
	struct cli_key key;
};

static void usage(const char *cmd, FILE *f)
{
	if (!strcmp(cmd, "send"))
		fprintf(f,
			"usage: rdmamig send --to HOST:PORT [--backend SPEC] [--chunk SIZE]\n"
			"                    [--timeout MS] [--pipe-size SIZE] [--no-fork] [--verbose]\n"
			"                    [--key-file FILE | --insecure]\n\n"
			"Carries stdin to a 'rdmamig recv' by one-sided writes into its ring,\n"
			"for QEMU: migrate \"exec:rdmamig send --to HOST:PORT\".\n"
			"Exits 0 once the receiver confirmed every byte; non-zero with one\n"
			"line on stderr if the peer dies, goes silent for --timeout ms\n"
			"(default %d) or refuses.  The work runs in a child process so that\n"
			"QEMU's kill of the exec: command at the end of a migration cannot cut\n"
			"the stream's tail (--no-fork: stay in one process).\n",
			RMIG_DEFAULT_TIMEOUT_MS);
	else
		fprintf(f,
			"usage: rdmamig recv --listen HOST:PORT [--backend SPEC] [--ring SIZE]\n"
			"                    [--timeout MS] [--accept-timeout MS] [--addr-file PATH]\n"
			"                    [--pipe-size SIZE] [--verbose] [--key-file FILE | --insecure]\n\n"
			"Accepts one 'rdmamig send' and writes its stream to stdout,\n"
			"for QEMU: -incoming \"exec:rdmamig recv --listen HOST:PORT\".\n"
			"--ring: receive ring size (default 4M); --accept-timeout: how long to\n"
			"wait for the sender (default %d ms); --addr-file: write the bound\n"
			"HOST:PORT there once listening (use port 0 to pick a free one).\n"
			"A peer that fails authentication is refused and recv waits on.\n",
			DEFAULT_ACCEPT_MS);
	fprintf(f, "SPEC: tcp, ofi, ofi/tcp, ofi/shm, verbs or auto (default).\n"
		   "--pipe-size: grow QEMU's pipe to SIZE (default 1M; 0 leaves it as it is).\n"
		   "--key-file: the pre-shared key both ends authenticate with, 16+ random bytes,\n"
		   "mode 600 (default $RMIG_KEY_FILE); --insecure: no key, no authentication.\n");
}

static int parse_ms(const char *v, int *out)
{
	char *end;
	long ms = strtol(v, &end, 10);

	if (*end || ms <= 0 || ms > 86400000)
		return -1;
	*out = (int)ms;
	return 0;
}

static int parse_pipe(const char *v, unsigned long long *out)
{
	*out = strcmp(v, "0") ? parse_size(v) : 0;
	return (strcmp(v, "0") && !*out) || *out > (1ull << 30);
}

static int parse_args(int argc, char **argv, struct stream_args *a)
{
	int is_send = !strcmp(argv[0], "send");

	*a = (struct stream_args){ .backend = "auto", .accept_ms = DEFAULT_ACCEPT_MS,
				   .fork = is_send, .pipe = DEFAULT_PIPE,
				   .o = { .size = sizeof(a->o), .ring = DEFAULT_RING, .chunk = DEFAULT_CHUNK,
					  .timeout_ms = RMIG_DEFAULT_TIMEOUT_MS } };
	for (int i = 1; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int bad = 0;

		if (!strcmp(k, "--verbose") || !strcmp(k, "-v")) {
			a->verbose = 1;
			continue;
		}
		if (is_send && !strcmp(k, "--no-fork")) {
			a->fork = 0;
			continue;
		}
		if (!strcmp(k, "--insecure")) {
			a->insecure = 1;
			continue;
		}
		if (!v)
			return -1;
		i++;
		if (!strcmp(k, is_send ? "--to" : "--listen"))
			a->addr = v;
		else if (!strcmp(k, "--backend"))
			a->backend = v;
		else if (!strcmp(k, "--key-file"))
			a->key_file = v;
		else if (!strcmp(k, "--timeout"))
			bad = parse_ms(v, &a->o.timeout_ms);
		else if (!strcmp(k, "--pipe-size"))
			bad = parse_pipe(v, &a->pipe);
		else if (is_send && !strcmp(k, "--chunk"))
			bad = !(a->o.chunk = parse_size(v));
		else if (!is_send && !strcmp(k, "--ring"))
			bad = (a->o.ring = parse_size(v)) < 65536 || a->o.ring % 4096 ||
			      a->o.ring > (1ull << 34);
		else if (!is_send && !strcmp(k, "--accept-timeout"))
			bad = parse_ms(v, &a->accept_ms);
		else if (!is_send && !strcmp(k, "--addr-file"))
			a->addr_file = v;
		else
			return -1;
		if (bad) {
			fprintf(stderr, "rdmamig %s: bad value '%s' for %s\n", argv[0], v, k);
			return -1;
		}
	}
	if (!a->addr)
		return -1;
	return cli_key_resolve(argv[0], a->key_file, a->insecure, 0, &a->key) ? -2 : 0;
}

static void report(const char *cmd, const struct stream_args *a, struct rmig_ep *ep,
		   const struct rmig_stream_stats *st, uint64_t setup_ns)
{
	double secs = (double)st->ns / 1e9;

	if (!a->verbose)
		return;
	fprintf(stderr,
		"rdmamig %s: %llu bytes in %.3f s, %.1f MB/s over %s (%s %.0f ms before; %llu %s, %llu credits, ring %zu KiB)\n",
		cmd, (unsigned long long)st->bytes, secs,
		secs > 0 ? (double)st->bytes / secs / 1e6 : 0.0, rmig_ep_backend(ep),
		!strcmp(cmd, "send") ? "connected" : "accepted", (double)setup_ns / 1e6,
		(unsigned long long)st->writes, !strcmp(cmd, "send") ? "writes" : "announcements",
		(unsigned long long)st->credits, st->ring >> 10);
}

int cli_connect_retry(const char *backend, const char *addr, const struct rmig_ep_opts *opts,
		      int timeout_ms, struct rmig_ep **ep)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	int rc;

	for (;;) {
		rc = rmig_connect(backend, addr, opts, ep);
		if (!rc || (rc != -ECONNREFUSED && rc != -ECONNRESET && rc != -EAGAIN &&
			    rc != -ETIMEDOUT && rc != -EHOSTUNREACH) ||
		    !rmig_left_ms(deadline))
			return rc;
		usleep(50000);
	}
}

/* Connect, retrying while the receiver is not listening yet, up to the timeout. */
static int connect_retry(const struct stream_args *a, struct rmig_ep **ep)
{
	struct rmig_ep_opts opts = { .size = sizeof(opts), .timeout_ms = a->o.timeout_ms };

	cli_key_opts(&a->key, &opts);
	return cli_connect_retry(a->backend, a->addr, &opts, a->o.timeout_ms, ep);
}

/*
 * QEMU closes an exec: command's pipe at the end of a migration and kills
 * the command at once (SIGTERM, then SIGKILL 10 ms later), while up to a ring
 * of the stream may still be on its way.  So the parent QEMU knows only
 * waits; the child carries the stream to the end and its exit closes the
 * pipe, which is how QEMU learns of a failure.
 */
static int run_in_child(void)
{
	int status;
	pid_t pid = fork();

	if (pid <= 0)
		return pid; /* child (0) or no fork (-1): carry on here */
	close(STDIN_FILENO);
	close(STDOUT_FILENO);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

int cmd_send(int argc, char **argv)
{
	struct stream_args a;
	struct rmig_stream_stats st;
	struct rmig_ep *ep;
	char err[RMIG_ERR_MAX];
	uint64_t t0;
	int rc;

	if (argc > 1 && !strcmp(argv[1], "--help")) {
		usage("send", stdout);
		return 0;
	}
	rc = parse_args(argc, argv, &a);
	if (rc) {
		if (rc == -1)
			usage("send", stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (a.pipe) /* fewer, larger reads; may fail (pipe-max-size) */
		fcntl(STDIN_FILENO, F_SETPIPE_SZ, (int)a.pipe);
	if (a.fork)
		run_in_child();
	t0 = rmig_now_ns();
	rc = connect_retry(&a, &ep);
	explicit_bzero(&a.key, sizeof(a.key)); /* the library keeps its own copy */
	if (rc) {
		fprintf(stderr, rc == -EACCES ? "rdmamig send: no authenticated connection to the receiver at %s: %s%s\n"
					      : "rdmamig send: cannot reach the receiver at %s: %s%s\n", a.addr,
			rmig_last_error(), host_key_hint(rmig_last_error()));
		return 1;
	}
	t0 = rmig_now_ns() - t0;
	rc = rmig_stream_send(ep, STDIN_FILENO, &a.o, &st, err, sizeof(err));
	if (rc)
		fprintf(stderr, "rdmamig send: %s\n", err);
	else
		report("send", &a, ep, &st, t0);
	rmig_close(ep);
	return rc ? 1 : 0;
}

int cli_write_addr_file(const char *path, struct rmig_ep *l)
{
	char addr[128], tmp[4096];
	FILE *f;

	if (rmig_local_addr(l, addr, sizeof(addr)))
		return -1;
	/* Written then renamed: a reader never sees half an address. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%s\n", addr);
	if (fclose(f) || rename(tmp, path))
		return -1;
	return 0;
}

/*
 * Accept the sender.  A peer that fails authentication (a stranger, a
 * wrong key) does not end recv: QEMU's real source may still come.
 */
static int accept_authenticated(struct rmig_ep *l, int accept_ms, struct rmig_ep **ep)
{
	uint64_t deadline = rmig_deadline(accept_ms);
	int rc;

	for (;;) {
		rc = rmig_accept(l, rmig_left_ms(deadline), ep);
		if ((rc != -EACCES && rc != -EPROTO) || !rmig_left_ms(deadline))
			return rc;
		fprintf(stderr, "rdmamig recv: refused a peer: %s%s\n", rmig_ep_error(l),
			host_key_hint(rmig_ep_error(l)));
	}
}

int cmd_recv(int argc, char **argv)
{
	struct stream_args a;
	struct rmig_stream_stats st;
	struct rmig_ep *l, *ep;
	struct rmig_ep_opts opts = { .size = sizeof(opts) };
	char err[RMIG_ERR_MAX];
	uint64_t t0;
	int rc;

	if (argc > 1 && !strcmp(argv[1], "--help")) {
		usage("recv", stdout);
		return 0;
	}
	rc = parse_args(argc, argv, &a);
	if (rc) {
		if (rc == -1)
			usage("recv", stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (a.pipe)
		fcntl(STDOUT_FILENO, F_SETPIPE_SZ, (int)a.pipe);
	opts.timeout_ms = a.o.timeout_ms;
	cli_key_opts(&a.key, &opts);
	rc = rmig_listen(a.backend, a.addr, &opts, &l);
	explicit_bzero(&a.key, sizeof(a.key)); /* the library keeps its own copy */
	if (rc) {
		fprintf(stderr, "rdmamig recv: cannot listen on %s: %s\n", a.addr, rmig_last_error());
		return 1;
	}
	if (a.addr_file && cli_write_addr_file(a.addr_file, l)) {
		fprintf(stderr, "rdmamig recv: cannot write the address to %s: %s\n", a.addr_file,
			strerror(errno));
		rmig_close(l);
		return 1;
	}
	t0 = rmig_now_ns();
	rc = accept_authenticated(l, a.accept_ms, &ep);
	if (rc) {
		fprintf(stderr, "rdmamig recv: no sender on %s: %s\n", a.addr,
			strcmp(rmig_ep_error(l), "no error") ? rmig_ep_error(l) : rmig_last_error());
		rmig_close(l);
		return 1;
	}
	t0 = rmig_now_ns() - t0;
	rc = rmig_stream_recv(ep, STDOUT_FILENO, &a.o, &st, err, sizeof(err));
	if (rc)
		fprintf(stderr, "rdmamig recv: %s\n", err);
	else
		report("recv", &a, ep, &st, t0);
	rmig_close(ep);
	rmig_close(l);
	return rc ? 1 : 0;
}
