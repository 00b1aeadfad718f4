/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "migutil.h"
#include "common/clock.h"
#include "testutil.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char running[160];

static void watchdog_fired(int sig)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "watchdog: still running; the last migration set up: %s\n",
			 running);

	(void)sig;
	if (write(2, msg, (size_t)n) < 0)
		_exit(98);
	abort();
}

void migtest_watchdog(unsigned seconds)
{
	signal(SIGALRM, watchdog_fired);
	alarm(seconds);
}

void pair_init(struct pair *p, const char *backend, uint64_t guest_size)
{
	snprintf(running, sizeof(running), "%s, %llu MiB guest", backend,
		 (unsigned long long)(guest_size >> 20));
	memset(p, 0, sizeof(*p));
	host_opts_default(&p->src);
	p->src.plugin = RMIG_PLUGIN_PATH;
	p->src.backend = backend;
	p->src.guest_size = guest_size;
	/*
	 * RMIG_TEST_TIMEOUT_MS: a longer deadline for every wait on the peer
	 * where the link crawls (Soft-RoCE under emulation on a loaded host,
	 * ~16 MiB/s: a batch of writes alone can take seconds there).
	 */
	const char *t = getenv("RMIG_TEST_TIMEOUT_MS");
	p->src.timeout_ms = t && atoi(t) > 0 ? atoi(t) : 5000;
	p->src.device_state = 64 << 10;
	p->src.psk = rmig_test_psk;
	p->src.psk_len = sizeof(rmig_test_psk);
	p->dst = p->src;
	/* RoCE has no loopback route: in the Soft-RoCE VM the conformance
	 * suite's RMIG_CONF_HOST names the RDMA netdev's address. */
	static char listen[80];
	const char *host = getenv("RMIG_CONF_HOST");
	snprintf(listen, sizeof(listen), "%s:0", host && *host ? host : "127.0.0.1");
	p->dst.addr = listen;
	p->dst_exit = -1;
}

/*
 * RMIG_TEST_BACKENDS=verbs (a comma list) limits the backends tried
 * (rmig_test_backend).  The Soft-RoCE stage uses it: once libfabric has
 * been initialised in this process (its verbs provider opens the RDMA
 * devices), a child forked later cannot use verbs ("changed security
 * contexts"), so verbs runs alone.  A backend selected that cannot run
 * here makes the program end skipped, not passed.
 */
int backend_usable(const char *spec)
{
	return rmig_test_backend(spec);
}

static void send_addr(const char *addr, void *arg)
{
	int fd = *(int *)arg;

	if (write(fd, addr, strlen(addr) + 1) < 0)
		_exit(3);
}

static int read_addr(int fd, char *addr, size_t len)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	if (poll(&pf, 1, 10000) != 1 || read(fd, addr, len - 1) <= 0)
		return -ETIMEDOUT;
	return 0;
}

static void on_stage(const struct host_progress *pg, void *arg)
{
	struct pair *p = arg;

	if (!p->kill_sig || p->killed || pg->stage != p->kill_at ||
	    (pg->stage == HOST_STAGE_ROUND && pg->round < p->kill_round))
		return;
	p->killed = 1;
	if (p->peer > 0)
		kill(p->peer, p->kill_sig);
	else
		_exit(9); /* the source process itself dies */
}

static int wait_peer(pid_t pid)
{
	uint64_t deadline = rmig_deadline(30000);
	int st;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (rmig_left_ms(deadline) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -ETIMEDOUT;
		}
		usleep(5000);
	}
}

/* A peer this harness killed cannot close its libfabric shm region, and
 * its survivor may have gone first: remove what it left in /dev/shm. */
static void forget_shm(pid_t pid)
{
	char pat[64];
	glob_t g;

	snprintf(pat, sizeof(pat), "/dev/shm/%d:*", (int)pid);
	if (glob(pat, 0, NULL, &g))
		return;
	for (size_t i = 0; i < g.gl_pathc; i++)
		unlink(g.gl_pathv[i]);
	globfree(&g);
}

static int pair_run_here(struct pair *p)
{
	int ap[2], rp[2], rc;
	char addr[128];
	uint64_t t0;

	if (pipe(ap) || pipe(rp))
		return -errno;
	p->peer = fork();
	if (p->peer == 0) {
		close(ap[0]);
		close(rp[0]);
		p->dst.on_listen = send_addr;
		p->dst.arg = &ap[1];
		rc = host_serve(&p->dst, &p->dr);
		if (write(rp[1], &p->dr, sizeof(p->dr)) != sizeof(p->dr))
			_exit(4);
		_exit(rc ? 1 : 0);
	}
	close(ap[1]);
	close(rp[1]);
	if (read_addr(ap[0], addr, sizeof(addr))) {
		kill(p->peer, SIGKILL);
		waitpid(p->peer, NULL, 0);
		close(ap[0]);
		close(rp[0]);
		return -ETIMEDOUT;
	}
	p->src.addr = addr;
	if (p->stranger_psk) {
		struct rmig_ep_opts o = { .size = sizeof(o), .timeout_ms = p->src.timeout_ms,
					  .psk = p->stranger_psk, .psk_len = 32 };
		struct rmig_ep *ep = NULL;
		p->stranger_rc = rmig_connect(p->src.backend, addr, &o, &ep);
		snprintf(p->stranger_err, sizeof(p->stranger_err), "%s", rmig_last_error());
		if (!p->stranger_rc)
			rmig_close(ep);
	}
	p->src.on_progress = on_stage;
	p->src.arg = p;
	t0 = rmig_now_ms();
	rc = host_migrate(&p->src, &p->sr);
	p->elapsed_ms = rmig_now_ms() - t0;
	if (p->killed && p->kill_sig == SIGSTOP)
		kill(p->peer, SIGKILL);
	p->dst_exit = wait_peer(p->peer);
	if (p->killed && p->kill_sig == SIGSTOP)
		forget_shm(p->peer);
	if (read(rp[0], &p->dr, sizeof(p->dr)) != sizeof(p->dr))
		memset(&p->dr, 0, sizeof(p->dr));
	close(ap[0]);
	close(rp[0]);
	p->src.addr = NULL;
	return rc;
}

static int pair_run_source_dies_here(struct pair *p)
{
	int ap[2], rc;
	uint64_t t0;

	if (pipe(ap))
		return -errno;
	p->peer = fork();
	if (p->peer == 0) {
		char addr[128];
		close(ap[1]);
		if (read_addr(ap[0], addr, sizeof(addr)))
			_exit(5);
		p->peer = 0;
		p->src.addr = addr;
		p->src.on_progress = on_stage;
		p->src.arg = p;
		rc = host_migrate(&p->src, &p->sr);
		_exit(rc ? 1 : 0);
	}
	close(ap[0]);
	p->dst.on_listen = send_addr;
	p->dst.arg = &ap[1];
	p->fds_before = rmig_test_count_fds();
	t0 = rmig_now_ms();
	rc = host_serve(&p->dst, &p->dr);
	p->elapsed_ms = rmig_now_ms() - t0;
	p->fds_after = rmig_test_count_fds();
	close(ap[1]);
	p->dst_exit = wait_peer(p->peer);
	return rc;
}

/* Run fn(p) in a harness child; copy the results back. */
static int in_harness(struct pair *p, int (*fn)(struct pair *))
{
	struct pair back;
	int fds[2], rc;
	size_t got = 0;

	if (pipe(fds))
		return -errno;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		rc = fn(p);
		memcpy(&back, p, sizeof(back));
		back.src.addr = back.dst.addr = NULL; /* pointers mean nothing out there */
		back.peer = rc; /* carries fn's return */
		_exit(write(fds[1], &back, sizeof(back)) == (ssize_t)sizeof(back) ? 0 : 1);
	}
	close(fds[1]);
	while (got < sizeof(back)) {
		ssize_t n = read(fds[0], (char *)&back + got, sizeof(back) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	wait_peer(pid);
	if (got != sizeof(back))
		return -EIO;
	p->sr = back.sr;
	p->dr = back.dr;
	p->dst_exit = back.dst_exit;
	p->killed = back.killed;
	p->elapsed_ms = back.elapsed_ms;
	p->fds_before = back.fds_before;
	p->fds_after = back.fds_after;
	p->stranger_rc = back.stranger_rc;
	memcpy(p->stranger_err, back.stranger_err, sizeof(p->stranger_err));
	return back.peer;
}

int pair_run(struct pair *p)
{
	return in_harness(p, pair_run_here);
}

int pair_run_source_dies(struct pair *p)
{
	return in_harness(p, pair_run_source_dies_here);
}
