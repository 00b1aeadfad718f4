/* SPDX-License-Identifier: MIT */
/*
 * rdmamig bench migrate: whole migrations between two processes (the
 * destination forked), per backend, for an idle and a dirtying guest and
 * for both registration strategies; medians of several runs.
 */
#define _GNU_SOURCE
#include "commands.h"
#include "../host/host.h"
#include <rdmamig/plugin.h>
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <getopt.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXB 8
#define MAXRUNS 15

struct cell {
	double total_ms[MAXRUNS], down_ms[MAXRUNS], mibs[MAXRUNS], reg_ms[MAXRUNS],
		sent_ratio[MAXRUNS], rounds[MAXRUNS], regs[MAXRUNS], res_ms[MAXRUNS],
		r0_mibs[MAXRUNS], grant_ms[MAXRUNS], setup_ms[MAXRUNS], rounds_ms[MAXRUNS],
		final_pages[MAXRUNS], src_cpu[MAXRUNS], dst_cpu[MAXRUNS], eff[MAXRUNS],
		r0_ms[MAXRUNS], r0_pages[MAXRUNS];
	int n, verified, failed;
	int worker_cpu[HOST_CHANNELS_MAX]; /* of the last good run */
	char why[256];
};

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	double t[MAXRUNS];

	if (!n)
		return 0;
	memcpy(t, v, (size_t)n * sizeof(*v));
	qsort(t, (size_t)n, sizeof(*t), cmp);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/*
 * One demo in a child process of its own: RDMA libraries cache device
 * contexts per process, and a destination forked from a process that has
 * used verbs inherits descriptors the kernel refuses it ("changed security
 * contexts after opening file descriptor").  The bench process itself
 * never opens a device.
 */
static int demo_in_child(const struct host_opts *o, struct host_result *r)
{
	int p[2], st;
	pid_t pid;

	if (pipe(p))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		close(p[0]);
		host_demo(o, r);
		_exit(write(p[1], r, sizeof(*r)) == (ssize_t)sizeof(*r) ? 0 : 1);
	}
	close(p[1]);
	size_t got = 0;
	while (got < sizeof(*r)) {
		ssize_t n = read(p[0], (char *)r + got, sizeof(*r) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	waitpid(pid, &st, 0);
	if (got != sizeof(*r)) {
		memset(r, 0, sizeof(*r));
		snprintf(r->error, sizeof(r->error), "the benchmark process died");
		return r->rc = -EIO;
	}
	return r->rc;
}

/* Add runs to a cell (zeroed by the caller, verified = 1). */
static void add_runs(const struct host_opts *base, struct cell *c, int runs)
{
	for (int i = 0; i < runs; i++) {
		struct host_result r;
		int rc = demo_in_child(base, &r);
		if (rc) {
			c->failed++;
			snprintf(c->why, sizeof(c->why), "%s", r.error);
			continue;
		}
		c->verified &= r.verified == 1;
		c->total_ms[c->n] = r.total_ns / 1e6;
		c->down_ms[c->n] = r.downtime_ns / 1e6;
		c->mibs[c->n] = r.throughput / (1 << 20);
		c->reg_ms[c->n] = r.reg_ns / 1e6;
		c->regs[c->n] = (double)r.regs;
		c->rounds[c->n] = r.rounds;
		c->res_ms[c->n] = r.reserve_ns / 1e6;
		c->r0_mibs[c->n] = r.nround_log ? r.round_log[0].mib_s : 0;
		c->r0_ms[c->n] = r.nround_log ? r.round_log[0].ms : 0;
		c->r0_pages[c->n] = r.nround_log ? (double)r.round_log[0].pages : 0;
		c->sent_ratio[c->n] = (double)r.bytes / (double)r.guest_size;
		c->grant_ms[c->n] = r.grant_ns / 1e6;
		c->setup_ms[c->n] = r.setup_ns / 1e6;
		c->rounds_ms[c->n] = r.rounds_ns / 1e6;
		c->final_pages[c->n] = (double)r.final_pages;
		/* CPU seconds per GiB of page bytes moved. */
		double gib = (double)r.bytes / (1 << 30);
		c->src_cpu[c->n] = gib > 0 ? r.cpu_s / gib : 0;
		c->dst_cpu[c->n] = gib > 0 && r.peer_cpu_s >= 0 ? r.peer_cpu_s / gib : -1;
		memcpy(c->worker_cpu, r.worker_cpu, sizeof(c->worker_cpu));
		c->n++;
	}
}

static void run_cell(const struct host_opts *base, struct cell *c, int runs)
{
	memset(c, 0, sizeof(*c));
	c->verified = 1;
	add_runs(base, c, runs);
}

#define MAXCH 8

/*
 * --channels 1,2,4: the scaling table.  For each backend, an idle guest
 * with whole-block registration over each channel count; medians of total
 * time and throughput, and their ratio to the first count given.
 */
static int bench_channels(const char **backends, int nb, const unsigned *chans, int nch,
			  uint64_t size, int runs, const char *listen, const char *vcpus,
			  int json)
{
	if (!json) {
		printf("idle guest %llu MiB, whole-block registration, %d runs, runs interleaved, medians; ratios against %u channel%s%s%s\n\n",
		       (unsigned long long)(size >> 20), runs, chans[0], chans[0] == 1 ? "" : "s",
		       vcpus ? ", vCPUs reserved: " : "", vcpus ? vcpus : "");
		printf("| backend | channels | total ms | reservation ms | MiB/s overall | MiB/s round 0 | time vs %u | throughput vs %u | round 0 vs %u | worker cpus | verified |\n",
		       chans[0], chans[0], chans[0]);
		printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
	}
	static struct cell cells[MAXCH];
	for (int b = 0; b < nb; b++) {
		double t1 = 0, m1 = 0, r1 = 0;
		struct host_opts o[MAXCH];
		/* Runs interleaved (1, 2, 4, 1, 2, 4, ...): a busy neighbour
		 * slows every count alike, not one of them. */
		for (int k = 0; k < nch; k++) {
			memset(&cells[k], 0, sizeof(cells[k]));
			cells[k].verified = 1;
			host_opts_default(&o[k]);
			o[k].backend = backends[b];
			o[k].addr = listen;
			o[k].guest_size = size;
			o[k].reg_mode = RMIG_REG_WHOLE;
			o[k].channels = chans[k];
			o[k].vcpu_cpus = vcpus;
		}
		for (int i = 0; i < runs; i++)
			for (int k = 0; k < nch; k++)
				add_runs(&o[k], &cells[k], 1);
		for (int k = 0; k < nch; k++) {
			struct cell *c = &cells[k];
			char cpus[64] = "";
			for (unsigned i = 0; i < chans[k] && i < HOST_CHANNELS_MAX; i++)
				snprintf(cpus + strlen(cpus), sizeof(cpus) - strlen(cpus), "%s%d",
					 i ? "," : "", c->worker_cpu[i]);
			double t = median(c->total_ms, c->n), m = median(c->mibs, c->n),
			       r0 = median(c->r0_mibs, c->n), res = median(c->res_ms, c->n);
			if (k == 0) {
				t1 = t;
				m1 = m;
				r1 = r0;
			}
			if (json) {
				printf("{\"backend\":\"%s\",\"channels\":%u,\"guest_bytes\":%llu,\"runs\":%d,\"failed\":%d,\"total_ms\":%.1f,\"reserve_ms\":%.1f,\"mib_s\":%.1f,\"round0_mib_s\":%.1f,\"time_ratio\":%.2f,\"throughput_ratio\":%.2f,\"round0_ratio\":%.2f,\"worker_cpus\":\"%s\",\"verified\":%s}\n",
				       backends[b], chans[k], (unsigned long long)size, runs, c->failed, t,
				       res, m, r0, t1 > 0 ? t / t1 : 0, m1 > 0 ? m / m1 : 0,
				       r1 > 0 ? r0 / r1 : 0, cpus, c->verified && c->n ? "true" : "false");
			} else if (!c->n) {
				printf("| %s | %u | failed: %s | | | | | | | | |\n", backends[b], chans[k],
				       c->why);
			} else {
				printf("| %s | %u | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %s%s |\n",
				       backends[b], chans[k], t, res, m, r0, t1 > 0 ? t / t1 : 0,
				       m1 > 0 ? m / m1 : 0, r1 > 0 ? r0 / r1 : 0, cpus,
				       c->verified ? "yes" : "NO", c->failed ? " (some runs failed)" : "");
			}
		}
		fflush(stdout);
	}
	return 0;
}

/* The host part of a --listen HOST:PORT (or [V6]:PORT), for the transport. */
static const char *listen_host(const char *listen, char *buf, size_t len)
{
	const char *colon;

	if (!listen)
		return NULL;
	snprintf(buf, len, "%s", listen[0] == '[' ? listen + 1 : listen);
	colon = strrchr(buf, listen[0] == '[' ? ']' : ':');
	if (colon)
		buf[colon - buf] = 0;
	return buf;
}

static void print_vs_row(const char *backend, const char *guest, struct cell *c,
			 double *tr, int ntr, int json)
{
	double t = median(tr, ntr), eff = median(c->eff, c->n);

	if (json) {
		printf("{\"bench\":\"vs-transport\",\"backend\":\"%s\",\"guest\":\"%s\",\"runs\":%d,\"failed\":%d,\"transport_1m_MBps\":%.1f,\"round0_mib_s\":%.1f,\"efficiency\":%.3f,\"round0_ms\":%.1f,\"round0_pages\":%.0f,\"efficiencies\":[",
		       backend, guest, c->n + c->failed, c->failed, t, median(c->r0_mibs, c->n), eff,
		       median(c->r0_ms, c->n), median(c->r0_pages, c->n));
		for (int i = 0; i < c->n; i++)
			printf("%s%.3f", i ? "," : "", c->eff[i]);
		printf("],\"total_ms\":%.1f,\"reservation_ms\":%.1f,\"setup_ms\":%.1f,\"rounds_ms\":%.1f,\"stop_copy_ms\":%.1f,\"final_pages\":%.0f,\"rounds\":%.0f,\"sent_per_guest_byte\":%.3f,\"src_cpu_s_per_gib\":%.3f,\"dst_cpu_s_per_gib\":%.3f,\"verified\":%s}\n",
		       median(c->total_ms, c->n), median(c->grant_ms, c->n), median(c->setup_ms, c->n),
		       median(c->rounds_ms, c->n), median(c->down_ms, c->n),
		       median(c->final_pages, c->n), median(c->rounds, c->n),
		       median(c->sent_ratio, c->n), median(c->src_cpu, c->n),
		       median(c->dst_cpu, c->n), c->verified && c->n ? "true" : "false");
		return;
	}
	if (!c->n) {
		printf("| %s | %s | %.0f | failed: %s | | | | | | | | | | | | |\n", backend, guest, t,
		       c->why);
		return;
	}
	char per[128] = "";
	for (int i = 0; i < c->n; i++)
		snprintf(per + strlen(per), sizeof(per) - strlen(per), "%s%.2f", i ? " " : "",
			 c->eff[i]);
	printf("| %s | %s | %.0f | %.0f | %.0f | %.2f | %s | %.0f | %.0f | %.1f | %.0f | %.1f | %.0f | %.3f | %.3f | %s%s |\n",
	       backend, guest, t, median(c->r0_mibs, c->n), median(c->r0_ms, c->n), eff, per,
	       median(c->total_ms, c->n),
	       median(c->grant_ms, c->n), median(c->setup_ms, c->n), median(c->rounds_ms, c->n),
	       median(c->down_ms, c->n), median(c->final_pages, c->n), median(c->src_cpu, c->n),
	       median(c->dst_cpu, c->n), c->verified ? "yes" : "NO",
	       c->failed ? " (some runs failed)" : "");
}

/*
 * --vs-transport: per backend, in this one process run, the transport's
 * 1 MiB write rate, then an idle and a dirtying guest's migration; each
 * rep measures all three back to back, and a rep's efficiency is its
 * round-0 rate over its own transport rate (medians of the reps).
 */
static int bench_vs_transport(const char **backends, int nb, uint64_t size, uint64_t rate,
			      int runs, const char *listen, int json)
{
	char host[128];
	const char *h = listen_host(listen, host, sizeof(host));

	if (!json) {
		printf("guest %llu MiB, dirtying guest at %llu MiB/s (uniform, 1 vCPU), whole-block registration, 1 channel, downtime limit 300 ms, %d reps, medians; efficiency = round-0 rate / 1 MiB write rate of the same rep\n\n",
		       (unsigned long long)(size >> 20), (unsigned long long)(rate >> 20), runs);
		printf("| backend | guest | transport 1 MiB MB/s | round 0 MiB/s | round 0 ms | efficiency | per rep | total ms | reservation ms | setup ms | rounds ms | stop-and-copy ms | final pages | source CPU s/GiB | dest CPU s/GiB | verified |\n");
		printf("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
	}
	for (int b = 0; b < nb; b++) {
		static struct cell cells[2];
		double tr[MAXRUNS];
		int ntr = 0;
		for (int g = 0; g < 2; g++) {
			memset(&cells[g], 0, sizeof(cells[g]));
			cells[g].verified = 1;
		}
		for (int i = 0; i < runs; i++) {
			double mbps = 0;
			if (bench_transport_rate(backends[b], h, 1u << 20, 1.0, &mbps) || mbps <= 0)
				continue;
			tr[ntr++] = mbps;
			for (int g = 0; g < 2; g++) {
				struct host_opts o;
				struct cell *c = &cells[g];
				host_opts_default(&o);
				o.backend = backends[b];
				o.addr = listen;
				o.guest_size = size;
				o.dirty_rate = g ? rate : 0;
				o.reg_mode = RMIG_REG_WHOLE;
				int n0 = c->n;
				add_runs(&o, c, 1);
				if (c->n > n0)
					c->eff[n0] = c->r0_mibs[n0] * (1 << 20) / (mbps * 1e6);
			}
		}
		print_vs_row(backends[b], "idle", &cells[0], tr, ntr, json);
		print_vs_row(backends[b], "dirtying", &cells[1], tr, ntr, json);
		fflush(stdout);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rdmamig bench migrate [--backend SPEC]... [--guest-size SIZE]\n"
		   "                             [--dirty-rate RATE] [--runs N] [--json]\n"
		   "Migrates an idle and a dirtying guest (uniform pattern) between two\n"
		   "processes on this machine, with whole-block and on-demand chunk\n"
		   "registration, for each backend given (default: every one that runs\n"
		   "here); prints medians of total time, downtime, rounds, page bytes sent\n"
		   "per guest byte, throughput (overall, and of round 0 alone: the\n"
		   "transfer without the reservation) and registration time.\n"
		   "--registration whole|chunked|both (default both).\n"
		   "--listen HOST:PORT: where the destination listens (default 127.0.0.1:0;\n"
		   "on RoCE the RDMA netdev's address, e.g. --listen 10.0.0.1:0).\n"
		   "--ref-bw RATE (bytes/s, e.g. ib_write_bw's on the same link) adds the\n"
		   "ratio of the total time to guest size / RATE.\n"
		   "--channels 1,2,4: the channel scaling table instead (idle guest, whole\n"
		   "registration, each count; ratios against the first); --vcpus CPUSET:\n"
		   "cpus reserved for vCPUs, kept free of channel workers.\n"
		   "--vs-transport: per backend, in one run, the transport's 1 MiB write\n"
		   "rate, then an idle and a dirtying guest (whole registration); round 0's\n"
		   "rate over the write rate (efficiency), the time split (reservation,\n"
		   "setup, rounds, stop-and-copy) and CPU seconds per GiB moved at each end.\n"
		   "Defaults: --guest-size 256M --dirty-rate 50M --runs 3.\n");
}

int bench_migrate(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "backend", required_argument, 0, 'b' }, { "guest-size", required_argument, 0, 'g' },
		{ "dirty-rate", required_argument, 0, 'd' }, { "runs", required_argument, 0, 'r' },
		{ "json", no_argument, 0, 'j' }, { "ref-bw", required_argument, 0, 'f' },
		{ "registration", required_argument, 0, 'R' },
		{ "listen", required_argument, 0, 'l' },
		{ "channels", required_argument, 0, 'c' }, { "vcpus", required_argument, 0, 'v' },
		{ "vs-transport", no_argument, 0, 'T' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *backends[MAXB];
	int nb = 0, runs = 3, json = 0, ch, reg_lo = RMIG_REG_WHOLE, reg_hi = RMIG_REG_CHUNKED;
	uint64_t size = 256ull << 20, rate = 50ull << 20, ref = 0;
	const char *listen = NULL, *vcpus = NULL;
	char why[RMIG_ERR_MAX];
	unsigned chans[MAXCH];
	int nch = 0, vs = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'b': if (nb < MAXB) backends[nb++] = optarg; break;
		case 'g': size = parse_size(optarg); break;
		case 'd': rate = parse_size(optarg); break;
		case 'r': runs = atoi(optarg); break;
		case 'j': json = 1; break;
		case 'f': ref = parse_size(optarg); break;
		case 'l': listen = optarg; break;
		case 'v': vcpus = optarg; break;
		case 'T': vs = 1; break;
		case 'c':
			for (char *p = optarg; *p && nch < MAXCH;) {
				char *e;
				unsigned long v = strtoul(p, &e, 10);
				if (e == p || !v || v > 16 || (*e && *e != ','))
					return usage(stderr), 2;
				chans[nch++] = (unsigned)v;
				p = *e ? e + 1 : e;
			}
			break;
		case 'R':
			if (!strcmp(optarg, "whole"))
				reg_hi = RMIG_REG_WHOLE;
			else if (!strcmp(optarg, "chunked"))
				reg_lo = RMIG_REG_CHUNKED;
			else if (strcmp(optarg, "both"))
				return usage(stderr), 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!size || runs < 1 || runs > MAXRUNS) {
		usage(stderr);
		return 2;
	}
	if (!nb)
		for (int i = 0; rmig_backend_spec(i) && nb < MAXB; i++)
			if (!rmig_backend_probe(rmig_backend_spec(i), why, sizeof(why)))
				backends[nb++] = rmig_backend_spec(i);
	if (vs)
		return bench_vs_transport(backends, nb, size, rate, runs, listen, json);
	if (nch)
		return bench_channels(backends, nb, chans, nch, size, runs, listen, vcpus, json);
	if (!json) {
		printf("guest %llu MiB, dirtying guest at %llu MiB/s (uniform, 1 vCPU), downtime limit 300 ms, %d runs, medians\n\n",
		       (unsigned long long)(size >> 20), (unsigned long long)(rate >> 20), runs);
		if (ref)
			printf("reference bandwidth %.1f MiB/s: guest size / reference = %.1f ms\n\n",
			       (double)ref / (1 << 20), (double)size / (double)ref * 1e3);
		printf("| backend | guest | registration | total ms | reservation ms | downtime ms | rounds | sent / guest | MiB/s overall | MiB/s round 0 | reg ms (regs) | verified |%s\n",
		       ref ? " total / (size/ref) |" : "");
		printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |%s\n",
		       ref ? " ---: |" : "");
	}
	for (int b = 0; b < nb; b++) {
		for (int dirty = 0; dirty < 2; dirty++) {
			for (int reg = reg_lo; reg <= reg_hi; reg++) {
				struct host_opts o;
				struct cell c;
				host_opts_default(&o);
				o.backend = backends[b];
				o.addr = listen;
				o.guest_size = size;
				o.dirty_rate = dirty ? rate : 0;
				o.reg_mode = reg;
				/* Chunked: a 32 MiB budget, the cache of 16 chunks. */
				o.memlock_budget = reg == RMIG_REG_CHUNKED ? 32ull << 20 : 0;
				run_cell(&o, &c, runs);
				const char *g = dirty ? "dirtying" : "idle";
				const char *rg = reg == RMIG_REG_WHOLE ? "whole" : "chunked";
				if (json) {
					printf("{\"backend\":\"%s\",\"guest\":\"%s\",\"registration\":\"%s\",\"guest_bytes\":%llu,\"runs\":%d,\"failed\":%d,\"total_ms\":%.1f,\"reserve_ms\":%.1f,\"round0_mib_s\":%.1f,\"downtime_ms\":%.1f,\"rounds\":%.0f,\"sent_per_guest_byte\":%.3f,\"mib_s\":%.1f,\"registration_ms\":%.2f,\"registrations\":%.0f,\"verified\":%s}\n",
					       backends[b], g, rg, (unsigned long long)size, runs, c.failed,
					       median(c.total_ms, c.n), median(c.res_ms, c.n),
					       median(c.r0_mibs, c.n), median(c.down_ms, c.n),
					       median(c.rounds, c.n), median(c.sent_ratio, c.n),
					       median(c.mibs, c.n), median(c.reg_ms, c.n),
					       median(c.regs, c.n), c.verified && c.n ? "true" : "false");
				} else if (!c.n) {
					printf("| %s | %s | %s | failed: %s | | | | | | | | |\n", backends[b], g, rg,
					       c.why);
				} else {
					printf("| %s | %s | %s | %.0f | %.0f | %.1f | %.0f | %.3f | %.0f | %.0f | %.2f (%.0f) | %s%s |",
					       backends[b], g, rg, median(c.total_ms, c.n),
					       median(c.res_ms, c.n), median(c.down_ms, c.n),
					       median(c.rounds, c.n), median(c.sent_ratio, c.n),
					       median(c.mibs, c.n), median(c.r0_mibs, c.n),
					       median(c.reg_ms, c.n), median(c.regs, c.n),
					       c.verified ? "yes" : "NO",
					       c.failed ? " (some runs failed)" : "");
					if (ref)
						printf(" %.2f |", median(c.total_ms, c.n) /
								  ((double)size / (double)ref * 1e3));
					printf("\n");
				}
				fflush(stdout);
			}
		}
	}
	return 0;
}
