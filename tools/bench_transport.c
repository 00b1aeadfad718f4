/* SPDX-License-Identifier: MIT */
/*
 * rdmamig bench transport: one-sided write throughput per message size, for
 * each backend that runs here.  The receiver is a forked process (a real
 * peer, as in a migration); the sender keeps a window of batches in flight.
 */
#define _GNU_SOURCE
#include "commands.h"
#include "../common/clock.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#define WINDOW 16 /* batches in flight */

struct bench_opts {
	const char *backends[8];
	int nbackends;
	unsigned long long sizes[32];
	int nsizes;
	unsigned long long bytes; /* per size: stop after this many bytes... */
	double seconds;           /* ...or this long, whichever comes first */
	int json;
	const char *host; /* listen address; verbs on RoCE needs the netdev's */
	const char *key_file;
	int insecure;
	struct cli_key key; /* both ends': --key-file, else a random one; none: --insecure */
};

struct bench_row {
	const char *backend;
	unsigned long long size;
	double mbps;  /* MB/s, 10^6 bytes */
	double wps;   /* writes per second */
	int rc;
};

static void *map_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0xa5, len);
	return p;
}

/* The key the parent wrote into a pipe (nothing: insecure). */
static void read_key(int fd, struct cli_key *k)
{
	ssize_t n;

	memset(k, 0, sizeof(*k));
	while (k->len < sizeof(k->buf) &&
	       (n = read(fd, k->buf + k->len, sizeof(k->buf) - k->len)) > 0)
		k->len += (size_t)n;
	close(fd);
	k->insecure = !k->len;
}

/* The peer: accept, expose a region, wait until told to go. */
static int bench_receiver(const char *backend, const char *host, size_t len,
			  int addr_pipe, int key_pipe)
{
	struct rmig_ep_opts opts = { .size = sizeof(opts) };
	struct rmig_ep *l, *ep;
	struct rmig_mr *mr;
	struct cli_key k;
	uint8_t key[RMIG_RKEY_WIRE_SIZE], msg[16];
	char addr[128];
	void *buf = map_buf(len);
	int rc;

	if (!buf)
		return 1;
	read_key(key_pipe, &k);
	cli_key_opts(&k, &opts);
	snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:0" : "%s:0", host);
	rc = rmig_listen(backend, addr, &opts, &l);
	explicit_bzero(&k, sizeof(k));
	if (!rc)
		rc = rmig_local_addr(l, addr, sizeof(addr));
	if (rc) {
		fprintf(stderr, "bench receiver: %s\n", rmig_last_error());
		return 1;
	}
	if (write(addr_pipe, addr, strlen(addr) + 1) < 0)
		return 1;
	close(addr_pipe);
	rc = rmig_accept(l, 30000, &ep);
	if (rc) {
		fprintf(stderr, "bench receiver: %s\n", rmig_ep_error(l));
		return 1;
	}
	rc = rmig_reg_mr(ep, buf, len, RMIG_ACCESS_REMOTE_WRITE, &mr);
	if (rc) {
		fprintf(stderr, "bench receiver: %s\n", rmig_ep_error(ep));
		return 1;
	}
	rmig_rkey_encode(rmig_mr_rkey(mr), key);
	rc = rmig_send(ep, key, sizeof(key));
	if (!rc)
		rc = rmig_recv(ep, msg, sizeof(msg), 600000);
	rmig_dereg_mr(ep, mr);
	rmig_close(ep);
	rmig_close(l);
	return rc < 0;
}

/* Writes of size bytes, WINDOW batches in flight; fills row. */
static int bench_size(struct rmig_ep *ep, const struct rmig_mr *lmr,
		      const struct rmig_rkey *rk, size_t region,
		      const struct bench_opts *o, struct bench_row *row)
{
	unsigned per_batch = row->size >= 65536 ? 1 : (unsigned)(65536 / row->size);
	unsigned long long done = 0, writes = 0, slots = region / row->size;
	uint64_t t0 = rmig_now_ns(), limit = (uint64_t)(o->seconds * 1e9);
	struct rmig_write w[RMIG_BATCH_MAX];
	struct rmig_completion c[WINDOW];
	unsigned inflight = 0;
	uint64_t id = 0;
	int rc = 0;

	if (per_batch > RMIG_BATCH_MAX)
		per_batch = RMIG_BATCH_MAX;
	while (!rc && (inflight || (done < o->bytes && rmig_now_ns() - t0 < limit))) {
		while (inflight < WINDOW && done < o->bytes && rmig_now_ns() - t0 < limit) {
			for (unsigned i = 0; i < per_batch; i++) {
				uint64_t off = ((writes + i) % slots) * row->size;
				w[i] = (struct rmig_write){ .lmr = lmr, .loff = off, .rkey = rk,
							    .roff = off, .len = row->size };
			}
			rc = rmig_write_batch(ep, w, per_batch, id++);
			if (rc)
				break;
			inflight++;
			writes += per_batch;
			done += per_batch * row->size;
		}
		int n = rc ? rc : rmig_poll(ep, c, WINDOW, 10000);
		if (n < 0)
			rc = n;
		for (int i = 0; i < n && !rc; i++)
			rc = c[i].status;
		if (n > 0)
			inflight -= (unsigned)n;
		if (!n && !rc)
			rc = -ETIMEDOUT;
	}
	double secs = (double)(rmig_now_ns() - t0) / 1e9;
	row->mbps = rc ? 0 : (double)done / secs / 1e6;
	row->wps = rc ? 0 : (double)writes / secs;
	row->rc = rc;
	return rc;
}

static int bench_backend(const char *backend, const struct bench_opts *o,
			 struct bench_row *rows)
{
	unsigned long long region = 0;
	struct rmig_ep *ep = NULL;
	struct rmig_mr *mr = NULL;
	struct rmig_rkey rk;
	uint8_t key[RMIG_RKEY_WIRE_SIZE];
	char addr[128] = "";
	int pfd[2], kfd[2], rc = 0, status;
	void *buf;
	pid_t pid;

	for (int i = 0; i < o->nsizes; i++)
		if (o->sizes[i] * 4 > region)
			region = o->sizes[i] * 4;
	if (region < (16u << 20))
		region = 16u << 20;
	if (pipe(pfd))
		return -errno;
	/* The key goes to the receiver through a pipe, not its argv (ps). */
	if (pipe(kfd)) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	if (o->key.len && write(kfd[1], o->key.buf, o->key.len) != (ssize_t)o->key.len)
		rc = -EIO;
	close(kfd[1]);
	pid = fork();
	if (pid == 0) {
		/*
		 * A fresh image (exec): RDMA device contexts do not survive fork,
		 * and after the first backend the parent has opened them.
		 */
		char fd[16], kf[16], len[32];
		close(pfd[0]);
		snprintf(fd, sizeof(fd), "%d", pfd[1]);
		snprintf(kf, sizeof(kf), "%d", kfd[0]);
		snprintf(len, sizeof(len), "%llu", region);
		execl("/proc/self/exe", "rdmamig", "bench", "transport", "--receiver", backend,
		      o->host, len, fd, kf, (char *)NULL);
		_exit(bench_receiver(backend, o->host, region, pfd[1], kfd[0]));
	}
	close(kfd[0]);
	close(pfd[1]);
	if (read(pfd[0], addr, sizeof(addr)) <= 0)
		rc = -ECONNREFUSED;
	close(pfd[0]);
	buf = map_buf(region);
	if (!rc && !buf)
		rc = -ENOMEM;
	if (!rc) {
		struct rmig_ep_opts opts = { .size = sizeof(opts) };
		cli_key_opts(&o->key, &opts);
		rc = rmig_connect(backend, addr, &opts, &ep);
	}
	if (!rc)
		rc = rmig_reg_mr(ep, buf, region, RMIG_ACCESS_LOCAL, &mr);
	if (!rc) {
		int n = rmig_recv(ep, key, sizeof(key), 30000);
		rc = n == RMIG_RKEY_WIRE_SIZE ? rmig_rkey_decode(key, &rk) : (n < 0 ? n : -EPROTO);
	}
	for (int i = 0; i < o->nsizes; i++)
		rows[i] = (struct bench_row){ .backend = backend, .size = o->sizes[i],
					      .rc = -ECANCELED };
	for (int i = 0; i < o->nsizes && !rc; i++) {
		rc = bench_size(ep, mr, &rk, region, o, &rows[i]);
	}
	if (rc)
		fprintf(stderr, "rdmamig bench: %s: %s\n", backend,
			ep ? rmig_ep_error(ep) : rmig_last_error());
	if (ep) {
		rmig_send(ep, "done", 4);
		rmig_dereg_mr(ep, mr);
		rmig_close(ep);
	} else {
		kill(pid, SIGTERM);
	}
	waitpid(pid, &status, 0);
	if (buf)
		munmap(buf, region);
	return rc;
}

static void print_rows(const struct bench_opts *o, struct bench_row *rows, int nrows)
{
	if (o->json) {
		printf("{\"bench\":\"transport\",\"results\":[");
		for (int i = 0; i < nrows; i++)
			printf("%s{\"backend\":\"%s\",\"size\":%llu,\"MBps\":%.1f,\"writes_per_s\":%.0f,\"ok\":%s}",
			       i ? "," : "", rows[i].backend, rows[i].size, rows[i].mbps,
			       rows[i].wps, rows[i].rc ? "false" : "true");
		printf("]}\n");
		return;
	}
	printf("| backend | size | MB/s | writes/s |\n|---|---:|---:|---:|\n");
	for (int i = 0; i < nrows; i++) {
		char sz[32];
		unsigned long long s = rows[i].size;
		if (s >= (1u << 20))
			snprintf(sz, sizeof(sz), "%llu MiB", s >> 20);
		else if (s >= 1024)
			snprintf(sz, sizeof(sz), "%llu KiB", s >> 10);
		else
			snprintf(sz, sizeof(sz), "%llu B", s);
		if (rows[i].rc)
			printf("| %s | %s | failed | |\n", rows[i].backend, sz);
		else
			printf("| %s | %s | %.1f | %.0f |\n", rows[i].backend, sz,
			       rows[i].mbps, rows[i].wps);
	}
}

static int parse_bench_opts(int argc, char **argv, struct bench_opts *o)
{
	static const unsigned long long defsizes[] = { 4096, 16384, 65536, 262144,
						       1u << 20, 4u << 20, 16u << 20 };
	*o = (struct bench_opts){ .bytes = 1ull << 30, .seconds = 1.0, .host = "127.0.0.1" };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--json")) {
			o->json = 1;
		} else if (!strcmp(a, "--backend") && v && o->nbackends < 8) {
			o->backends[o->nbackends++] = v;
			i++;
		} else if (!strcmp(a, "--sizes") && v) {
			char *copy = strdup(v), *save, *tok;
			for (tok = strtok_r(copy, ",", &save); tok && o->nsizes < 32;
			     tok = strtok_r(NULL, ",", &save))
				if (!(o->sizes[o->nsizes++] = parse_size(tok)))
					return -EINVAL;
			free(copy);
			i++;
		} else if (!strcmp(a, "--seconds") && v) {
			o->seconds = atof(v);
			i++;
		} else if (!strcmp(a, "--addr") && v) {
			o->host = v;
			i++;
		} else if (!strcmp(a, "--bytes") && v) {
			o->bytes = parse_size(v);
			i++;
		} else if (!strcmp(a, "--key-file") && v) {
			o->key_file = v;
			i++;
		} else if (!strcmp(a, "--insecure")) {
			o->insecure = 1;
		} else {
			return -EINVAL;
		}
	}
	if (!o->nsizes) {
		memcpy(o->sizes, defsizes, sizeof(defsizes));
		o->nsizes = (int)(sizeof(defsizes) / sizeof(defsizes[0]));
	}
	return 0;
}

int bench_transport_rate(const char *backend, const char *host, unsigned long long size,
			 double seconds, double *mbps)
{
	struct bench_opts o = { .bytes = 1ull << 40, .seconds = seconds, .host = host,
				.sizes = { size }, .nsizes = 1 };
	struct bench_row row;
	int rc;

	if (!o.host)
		o.host = "127.0.0.1";
	if (getrandom(o.key.buf, 32, 0) != 32)
		return -EIO;
	o.key.len = 32;
	rc = bench_backend(backend, &o, &row);
	explicit_bzero(&o.key, sizeof(o.key));
	*mbps = rc ? 0 : row.mbps;
	return rc;
}

int bench_transport(int argc, char **argv)
{
	struct bench_row rows[8 * 32];
	struct bench_opts o;
	char why[RMIG_ERR_MAX];
	int nrows = 0, failed = 0;

	/* The receiver, exec'd by bench_backend: --receiver BACKEND HOST LEN FD KEYFD. */
	if (argc == 7 && !strcmp(argv[1], "--receiver"))
		return bench_receiver(argv[2], argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]),
				      atoi(argv[6]));
	if (parse_bench_opts(argc, argv, &o)) {
		fprintf(stderr,
			"usage: rdmamig bench transport [--backend SPEC]... [--sizes 4K,64K,1M]\n"
			"                               [--seconds S] [--bytes N] [--addr HOST] [--json]\n"
			"                               [--key-file FILE | --insecure]\n"
			"Write throughput per message size to a forked peer on loopback, for each\n"
			"backend given (default: every backend that runs here).  --addr: the local\n"
			"address to use (default 127.0.0.1; verbs on RoCE needs the RDMA netdev's).\n"
			"Both ends authenticate with a random key (or --key-file's); --insecure: none.\n");
		return 2;
	}
	if (cli_key_resolve("bench", o.key_file, o.insecure, 1, &o.key))
		return 2;
	if (!o.key.len && !o.key.insecure) {
		if (getrandom(o.key.buf, 32, 0) != 32) {
			fprintf(stderr, "rdmamig bench: cannot draw a random key (getrandom)\n");
			return 1;
		}
		o.key.len = 32;
	}
	if (!o.nbackends) {
		for (int i = 0; rmig_backend_spec(i) && o.nbackends < (int)(sizeof(o.backends) / sizeof(o.backends[0])); i++)
			if (!rmig_backend_probe(rmig_backend_spec(i), why, sizeof(why)))
				o.backends[o.nbackends++] = rmig_backend_spec(i);
	}
	for (int b = 0; b < o.nbackends; b++) {
		if (rmig_backend_probe(o.backends[b], why, sizeof(why))) {
			fprintf(stderr, "rdmamig bench: %s cannot run here: %s\n", o.backends[b], why);
			failed = 1;
			continue;
		}
		if (!o.json)
			fprintf(stderr, "benchmarking %s...\n", o.backends[b]);
		if (bench_backend(o.backends[b], &o, rows + nrows))
			failed = 1;
		nrows += o.nsizes;
	}
	explicit_bzero(&o.key, sizeof(o.key));
	print_rows(&o, rows, nrows);
	return failed;
}
