/* SPDX-License-Identifier: MIT */
/* Both ends on one machine (the destination a forked process) and the
 * summary printer shared by serve, migrate and demo. */
#define _GNU_SOURCE
#include "host.h"
#include "../common/clock.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

void host_opts_default(struct host_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout_ms = 10000;
	o->guest_size = 1ull << 30;
	o->vcpus = 1;
	o->dirty_rate = 0;
	o->downtime_ms = 300;
	o->max_rounds = 30;
	o->track = "auto";
	o->device_state = 256 << 10;
}

static int listened; /* the destination process told its address */

static void tell_parent(const char *addr, void *arg)
{
	int fd = *(int *)arg;
	size_t n = strlen(addr) + 1;

	if (write(fd, addr, n) != (ssize_t)n)
		_exit(3);
	close(fd);
	listened = 1;
}

/* Wait for the child by a deadline; kill it past that. */
static int reap_child(pid_t pid, int timeout_ms)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	int status = 0;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
		if (w < 0)
			return -errno;
		if (rmig_left_ms(deadline) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
}

int host_demo(const struct host_opts *o, struct host_result *r)
{
	struct host_opts src = *o, dst = *o;
	uint8_t key[32];
	char addr[300] = "";
	struct pollfd p;
	int pfd[2], cfd[2], rc, child;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	r->verified = r->source_intact = -1;
	r->guest_size = o->guest_size;
	/* Both ends are ours: a fresh random key authenticates them, so the
	 * demo needs no setup and still runs the real handshake. */
	if (!o->psk && !o->insecure) {
		if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
			snprintf(r->error, sizeof(r->error),
				 "cannot draw a random key for the demo (getrandom)");
			return r->rc = -EIO;
		}
		src.psk = dst.psk = key;
		src.psk_len = dst.psk_len = sizeof(key);
	}
	if (pipe(pfd))
		return -errno;
	/* The destination's CPU seconds come back through cfd. */
	if (pipe(cfd)) {
		rc = -errno;
		close(pfd[0]);
		close(pfd[1]);
		return rc;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		close(pfd[0]);
		close(pfd[1]);
		close(cfd[0]);
		close(cfd[1]);
		return rc;
	}
	if (pid == 0) {
		struct host_result dr;
		close(pfd[0]);
		close(cfd[0]);
		/* o->addr: where the destination listens (RoCE has no loopback
		 * route: the RDMA netdev's address there). */
		dst.addr = o->addr ? o->addr : "127.0.0.1:0";
		/* The budget is the source's (how it registers); the destination
		 * registers whole blocks and takes what the limit allows. */
		dst.memlock_budget = 0;
		dst.progress = 0;
		dst.on_progress = NULL;
		dst.on_listen = tell_parent;
		dst.arg = &pfd[1];
		rc = host_serve(&dst, &dr);
		if (rc && !listened) {
			/* Never listened: the reason goes up the pipe, marked '!'. */
			char msg[sizeof(dr.error) + 1];
			int n = snprintf(msg, sizeof(msg), "!%s", dr.error);
			if (write(pfd[1], msg, (size_t)n + 1) < 0)
				_exit(3);
		} else if (rc) {
			fprintf(stderr, "rdmamig demo: destination: %s\n", dr.error);
		}
		if (!rc && write(cfd[1], &dr.cpu_s, sizeof(dr.cpu_s)) < 0)
			_exit(3);
		_exit(rc ? 1 : 0);
	}
	close(pfd[1]);
	close(cfd[1]);
	p = (struct pollfd){ .fd = pfd[0], .events = POLLIN };
	if (poll(&p, 1, o->timeout_ms) != 1 || read(pfd[0], addr, sizeof(addr) - 1) <= 0) {
		close(pfd[0]);
		close(cfd[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		snprintf(r->error, sizeof(r->error), "the destination process did not start listening");
		return r->rc = -ETIMEDOUT;
	}
	close(pfd[0]);
	if (addr[0] == '!') {
		close(cfd[0]);
		reap_child(pid, o->timeout_ms);
		snprintf(r->error, sizeof(r->error), "the destination failed: %.200s", addr + 1);
		snprintf(r->outcome, sizeof(r->outcome), "migration did not start");
		return r->rc = -EIO;
	}
	src.addr = addr;
	rc = host_migrate(&src, r);
	explicit_bzero(key, sizeof(key));
	child = reap_child(pid, o->timeout_ms * 2);
	r->peer_cpu_s = -1;
	if (!child && read(cfd[0], &r->peer_cpu_s, sizeof(r->peer_cpu_s)) != sizeof(r->peer_cpu_s))
		r->peer_cpu_s = -1;
	close(cfd[0]);
	if (!rc && child) {
		snprintf(r->error, sizeof(r->error), "the destination process ended with status %d",
			 child);
		rc = r->rc = -EIO;
	}
	return rc;
}

static void mib(char *b, size_t n, double bytes)
{
	if (bytes >= (1 << 30))
		snprintf(b, n, "%.2f GiB", bytes / (1 << 30));
	else
		snprintf(b, n, "%.1f MiB", bytes / (1 << 20));
}

/* s with JSON's special characters escaped, into buf. */
static const char *jstr(char *buf, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, len - o, "\\%c", c);
		else if (c < 0x20)
			o += (size_t)snprintf(buf + o, len - o, "\\u%04x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o] = 0;
	return buf;
}

void host_print_result(const struct host_result *r, int json, const char *role)
{
	char e1[600], e2[400];

	const char *ver = r->verified == 1 ? "yes" : r->verified == 0 ? "no" : "not checked";
	char gs[32], bs[32];

	if (json) {
		printf("{\"role\":\"%s\",\"ok\":%s,\"committed\":%s,\"outcome\":\"%s\",\"error\":\"%s\","
		       "\"backend\":\"%s\",\"tracker\":\"%s\",\"guest_bytes\":%llu,\"rounds\":%u,"
		       "\"total_ms\":%.1f,\"reserve_ms\":%.1f,\"downtime_ms\":%.1f,\"predicted_downtime_ms\":%.1f,"
		       "\"bytes_sent\":%llu,\"stream_bytes\":%llu,\"pages\":%llu,\"zero_pages\":%llu,"
		       "\"final_pages\":%llu,\"writes\":%llu,\"batches\":%llu,\"registrations\":%llu,"
		       "\"registration_ms\":%.2f,\"throughput_mib_s\":%.1f,\"forced\":%s,"
		       "\"verified\":%s,\"mismatched_pages\":%llu,\"verify_ms\":%.1f,"
		       "\"guest_running_here\":%s,\"channels\":%u,\"source_intact\":%s,"
		       "\"mrs_live\":%llu,\"round_log\":[",
		       role, r->rc ? "false" : "true", r->committed ? "true" : "false",
		       jstr(e2, sizeof(e2), r->outcome),
		       jstr(e1, sizeof(e1), r->error[0] && r->rc ? r->error : ""), r->backend,
		       r->tracker,
		       (unsigned long long)r->guest_size, r->rounds, r->total_ns / 1e6,
		       r->reserve_ns / 1e6, r->downtime_ns / 1e6, r->predicted_ms, (unsigned long long)r->bytes,
		       (unsigned long long)r->stream_bytes, (unsigned long long)r->pages,
		       (unsigned long long)r->zero_pages, (unsigned long long)r->final_pages,
		       (unsigned long long)r->writes, (unsigned long long)r->batches,
		       (unsigned long long)r->regs, r->reg_ns / 1e6, r->throughput / (1 << 20),
		       r->forced ? "true" : "false",
		       r->verified == 1 ? "true" : r->verified == 0 ? "false" : "null",
		       (unsigned long long)r->mismatched_pages, r->verify_ns / 1e6,
		       r->guest_running ? "true" : "false", r->channels,
		       r->source_intact == 1 ? "true" : r->source_intact == 0 ? "false" : "null",
		       (unsigned long long)r->mrs_live);
		for (unsigned i = 0; i < r->nround_log; i++) {
			const struct host_round *x = &r->round_log[i];
			printf("%s{\"round\":%u,\"final\":%s,\"pages\":%llu,\"zero_pages\":%llu,"
			       "\"bytes\":%llu,\"writes\":%llu,\"batches\":%llu,\"ms\":%.2f,"
			       "\"mib_s\":%.1f}", i ? "," : "", i, x->final ? "true" : "false",
			       (unsigned long long)x->pages, (unsigned long long)x->zero_pages,
			       (unsigned long long)x->bytes, (unsigned long long)x->writes,
			       (unsigned long long)x->batches, x->ms, x->mib_s);
		}
		printf("],\"planned_cpus\":[");
		for (unsigned i = 0; i < r->channels && i < HOST_CHANNELS_MAX; i++)
			printf("%s%d", i ? "," : "", r->planned_cpu[i]);
		printf("],\"worker_cpus\":[");
		for (unsigned i = 0; i < r->channels && i < HOST_CHANNELS_MAX; i++)
			printf("%s%d", i ? "," : "", r->worker_cpu[i]);
		printf("]}\n");
		return;
	}
	int src = !strcmp(role, "source");

	mib(gs, sizeof(gs), (double)r->guest_size);
	mib(bs, sizeof(bs), (double)r->bytes);
	printf("%s: %s\n", role, r->outcome[0] ? r->outcome : r->rc ? "failed" : "done");
	if (r->rc && r->error[0])
		printf("  reason      %s%s\n", r->error, host_key_hint(r->error));
	if (src)
		printf("  backend     %s (dirty tracking: %s)\n", r->backend[0] ? r->backend : "-",
		       r->tracker[0] ? r->tracker : "-");
	else
		printf("  backend     %s\n", r->backend[0] ? r->backend : "-");
	printf("  guest       %s\n", gs);
	if (src)
		printf("  total time  %.1f ms (reservation %.1f ms)\n", r->total_ns / 1e6,
		       r->reserve_ns / 1e6);
	else
		printf("  total time  %.1f ms (offer to commit)\n", r->total_ns / 1e6);
	if (r->committed && !strcmp(role, "source"))
		printf("  downtime    %.1f ms (%llu pages in the final round)%s\n",
		       r->downtime_ns / 1e6, (unsigned long long)r->final_pages,
		       r->forced ? " -- forced by policy" : "");
	printf("  rounds      %u\n", r->rounds);
	if (r->channels > 1) {
		printf("  channels    %u", r->channels);
		if (src) {
			printf(" (workers on cpus");
			for (unsigned i = 0; i < r->channels && i < HOST_CHANNELS_MAX; i++)
				printf("%s%d", i ? "," : " ", r->worker_cpu[i]);
			printf(", planned");
			for (unsigned i = 0; i < r->channels && i < HOST_CHANNELS_MAX; i++)
				printf("%s%d", i ? "," : " ", r->planned_cpu[i]);
			printf(")");
		}
		printf("\n");
	}
	printf("  bytes %s  %s of pages (%llu zero pages skipped), %.1f KiB of stream\n",
	       src ? "sent" : "recv", bs, (unsigned long long)r->zero_pages,
	       r->stream_bytes / 1024.0);
	if (r->throughput > 0)
		printf("  throughput  %.1f MiB/s\n", r->throughput / (1 << 20));
	if (r->committed)
		printf("  verified    %s%s\n", ver,
		       r->verified == 0 ? " -- memory differs" : "");
	if (r->source_intact >= 0)
		printf("  source RAM  %s\n", r->source_intact ? "intact" : "CHANGED");
}
