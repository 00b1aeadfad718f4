/* SPDX-License-Identifier: MIT */
/*
 * rdmamig send | rdmamig recv as QEMU uses them: real processes, pipes on
 * both ends, every backend that runs here.  Byte-identical delivery (large,
 * empty, ring wrap-around with odd sizes), and failure propagation: a killed
 * peer or a closed reader makes both ends exit non-zero within the deadline.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS "5000" /* --timeout given to both ends */
#define TIMEOUT_S 5.0
#define SEED 0x5eed

#define MAX_BACKENDS 16
static const char *backends[MAX_BACKENDS];
static int nbackends;
static char tmpdir[] = "/tmp/rdmamig-stream-XXXXXX";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* fork + exec argv with the given stdin/stdout (-1: /dev/null); stderr to errfile. */
static pid_t spawn(const char *const *argv, int in_fd, int out_fd, const char *errfile)
{
	pid_t pid = fork();

	if (pid)
		return pid;
	int null = open("/dev/null", O_RDWR);
	int err = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(in_fd >= 0 ? in_fd : null, 0);
	dup2(out_fd >= 0 ? out_fd : null, 1);
	dup2(err, 2);
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

/* Exit code of pid, waiting up to secs; -1 if it is still running (then killed). */
static int wait_exit(pid_t pid, double secs)
{
	double end = now_s() + secs;
	int status;

	while (now_s() < end) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

/* Start a receiver on a free port; its address goes to addr. */
static pid_t start_recv(const char *backend, const char *ring, int out_fd, char *addr,
			size_t len)
{
	char path[256], errf[256];
	const char *argv[16] = { RMIG_CLI, "recv", "--listen", "127.0.0.1:0", "--backend",
				 backend, "--timeout", TIMEOUT_MS, "--addr-file", path };
	int n = 10;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/addr", tmpdir);
	snprintf(errf, sizeof(errf), "%s/recv.err", tmpdir);
	unlink(path);
	if (ring) {
		argv[n++] = "--ring";
		argv[n++] = ring;
	}
	pid = spawn(argv, -1, out_fd, errf);
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			int ok = fgets(addr, (int)len, f) != NULL;
			fclose(f);
			addr[strcspn(addr, "\n")] = 0;
			if (ok)
				return pid;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

static pid_t start_send(const char *backend, const char *addr, const char *chunk, int fork_,
			int in_fd)
{
	char errf[256];
	const char *argv[16] = { RMIG_CLI, "send", "--to", addr, "--backend", backend,
				 "--timeout", TIMEOUT_MS };
	int n = 8;

	snprintf(errf, sizeof(errf), "%s/send.err", tmpdir);
	if (chunk) {
		argv[n++] = "--chunk";
		argv[n++] = chunk;
	}
	if (!fork_)
		argv[n++] = "--no-fork";
	return spawn(argv, in_fd, -1, errf);
}

/* The first line the command wrote to stderr. */
static void err_line(const char *who, char *buf, size_t len)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.err", tmpdir, who);
	buf[0] = 0;
	f = fopen(path, "r");
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = 0;
		fclose(f);
	}
}

static int err_lines(const char *who)
{
	char path[256], line[512];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.err", tmpdir, who);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n++;
	fclose(f);
	return n;
}

struct feeder {
	int fd;
	uint64_t total;
	size_t piece;
};

/* Writes the pattern into the sender's stdin in pieces of odd sizes, then EOF. */
static void *feed(void *arg)
{
	struct feeder *f = arg;
	/* The piece size wanders up to 3 bytes above its start (below). */
	uint8_t *buf = malloc(f->piece + 3);
	uint64_t off = 0;

	while (buf && off < f->total) {
		size_t n = f->total - off < f->piece ? (size_t)(f->total - off) : f->piece;
		rmig_test_fill(buf, n, SEED, off);
		ssize_t w = write(f->fd, buf, n);
		if (w <= 0)
			break;
		off += (uint64_t)w;
		/* a different size each time, so writes land across the ring's edge */
		f->piece = f->piece % 4 == 3 ? f->piece - 2 : f->piece + 1;
	}
	close(f->fd);
	free(buf);
	return NULL;
}

/* Pipe total bytes through send | recv; returns bytes verified, -1 on a mismatch. */
static long long pipe_through(const char *backend, uint64_t total, size_t piece,
			      const char *ring, const char *chunk, int *rc_send, int *rc_recv)
{
	int in[2], out[2];
	char addr[128], why[256];
	struct feeder f = { .total = total, .piece = piece };
	uint8_t buf[1 << 16];
	long long got = 0, bad = -1;
	pthread_t th;
	pid_t r, s;

	*rc_send = *rc_recv = -2;
	if (pipe(in) || pipe(out))
		return -1;
	r = start_recv(backend, ring, out[1], addr, sizeof(addr));
	close(out[1]);
	if (r < 0) {
		err_line("recv", why, sizeof(why));
		fprintf(stderr, "receiver did not start: %s\n", why);
		return -1;
	}
	s = start_send(backend, addr, chunk, 1, in[0]);
	close(in[0]);
	f.fd = in[1];
	pthread_create(&th, NULL, feed, &f);
	for (;;) {
		ssize_t n = read(out[0], buf, sizeof(buf));
		if (n <= 0)
			break;
		if (bad < 0 && rmig_test_check(buf, (size_t)n, SEED, (uint64_t)got) >= 0)
			bad = got;
		got += n;
	}
	close(out[0]);
	pthread_join(th, NULL);
	*rc_send = wait_exit(s, 20);
	*rc_recv = wait_exit(r, 20);
	if (*rc_send || *rc_recv) {
		err_line("send", why, sizeof(why));
		fprintf(stderr, "[%s] send: %d %s", backend, *rc_send, why);
		err_line("recv", why, sizeof(why));
		fprintf(stderr, "[%s] recv: %d %s", backend, *rc_recv, why);
	}
	if (bad >= 0)
		fprintf(stderr, "[%s] first wrong byte at %lld\n", backend, bad);
	return bad >= 0 ? -1 : got;
}

static void test_large_stream(void)
{
	for (int i = 0; i < nbackends; i++) {
		int rs, rr;
		uint64_t total = 48ull << 20;
		long long got = pipe_through(backends[i], total, 1 << 20, NULL, NULL, &rs, &rr);

		fprintf(stderr, "  %s: %lld of %llu bytes\n", backends[i], got,
			(unsigned long long)total);
		CU_ASSERT_EQUAL(got, (long long)total);
		CU_ASSERT_EQUAL(rs, 0);
		CU_ASSERT_EQUAL(rr, 0);
	}
}

static void test_empty_stream(void)
{
	for (int i = 0; i < nbackends; i++) {
		int rs, rr;
		long long got = pipe_through(backends[i], 0, 4096, NULL, NULL, &rs, &rr);

		CU_ASSERT_EQUAL(got, 0);
		CU_ASSERT_EQUAL(rs, 0);
		CU_ASSERT_EQUAL(rr, 0);
	}
}

/* A 64 KiB ring, 24 KiB chunks and odd write sizes: every write crosses or ends near the edge. */
static void test_ring_wraparound(void)
{
	for (int i = 0; i < nbackends; i++) {
		int rs, rr;
		uint64_t total = (5ull << 20) + 12345;
		long long got = pipe_through(backends[i], total, 10007, "64K", "24K", &rs, &rr);

		CU_ASSERT_EQUAL(got, (long long)total);
		CU_ASSERT_EQUAL(rs, 0);
		CU_ASSERT_EQUAL(rr, 0);
	}
}

/* Both ends running, the sender's stdin open and idle; then one end is killed. */
static void peer_killed(const char *backend, int kill_receiver)
{
	int in[2], out[2], rc;
	char addr[128], why[256], got[32];
	pid_t r, s, victim, survivor;
	double t0, secs;

	CU_ASSERT_FATAL(pipe(in) == 0 && pipe(out) == 0);
	r = start_recv(backend, NULL, out[1], addr, sizeof(addr));
	close(out[1]);
	CU_ASSERT_FATAL(r > 0);
	s = start_send(backend, addr, NULL, 0, in[0]);
	close(in[0]);
	/* The stream is up once these bytes came out the far end. */
	CU_ASSERT_EQUAL(write(in[1], "some bytes of a migration stream", 32), 32);
	CU_ASSERT_EQUAL(read(out[0], got, sizeof(got)), 32);
	victim = kill_receiver ? r : s;
	survivor = kill_receiver ? s : r;
	kill(victim, SIGKILL);
	t0 = now_s();
	rc = wait_exit(survivor, TIMEOUT_S + 5.0); /* the --timeout plus slack */
	secs = now_s() - t0;
	err_line(kill_receiver ? "send" : "recv", why, sizeof(why));
	fprintf(stderr, "  %s: %s killed, the %s exited %d after %.2f s: %s", backend,
		kill_receiver ? "receiver" : "sender", kill_receiver ? "sender" : "receiver",
		rc, secs, why);
	CU_ASSERT(rc > 0);
	CU_ASSERT(secs < TIMEOUT_S + 2.0);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, kill_receiver ? "rdmamig send: " : "rdmamig recv: "));
	CU_ASSERT_EQUAL(err_lines(kill_receiver ? "send" : "recv"), 1); /* one clear line */
	close(in[1]);
	close(out[0]);
	wait_exit(victim, 1);
}

static void test_receiver_killed(void)
{
	for (int i = 0; i < nbackends; i++)
		peer_killed(backends[i], 1);
}

static void test_sender_killed(void)
{
	for (int i = 0; i < nbackends; i++)
		peer_killed(backends[i], 0);
}

/* The process reading recv's stdout goes away: both ends fail, the sender says why. */
static void test_reader_gone(void)
{
	for (int i = 0; i < nbackends; i++) {
		int in[2], out[2], rs, rr;
		char addr[128], why[256];
		struct feeder f = { .total = 256ull << 20, .piece = 1 << 20 };
		pthread_t th;
		pid_t r, s;

		CU_ASSERT_FATAL(pipe(in) == 0 && pipe(out) == 0);
		r = start_recv(backends[i], NULL, out[1], addr, sizeof(addr));
		close(out[1]);
		CU_ASSERT_FATAL(r > 0);
		s = start_send(backends[i], addr, NULL, 1, in[0]);
		close(in[0]);
		f.fd = in[1];
		pthread_create(&th, NULL, feed, &f);
		char buf[4096];
		CU_ASSERT(read(out[0], buf, sizeof(buf)) > 0);
		close(out[0]);
		rr = wait_exit(r, 8);
		rs = wait_exit(s, 8);
		pthread_join(th, NULL);
		err_line("send", why, sizeof(why));
		fprintf(stderr, "  %s: reader gone: recv %d, send %d: %s", backends[i], rr, rs, why);
		CU_ASSERT(rr > 0);
		CU_ASSERT(rs > 0);
		/* The sender usually relays the receiver's reason; it may see the broken link first. */
		CU_ASSERT_PTR_NOT_NULL(strstr(why, "rdmamig send: "));
		CU_ASSERT_EQUAL(err_lines("send"), 1);
		err_line("recv", why, sizeof(why));
		CU_ASSERT_PTR_NOT_NULL(strstr(why, "rdmamig recv: cannot write the stream to stdout"));
	}
}

static void test_bad_usage(void)
{
	const char *argv[] = { RMIG_CLI, "send", "--backend", "tcp", NULL };
	char why[256], path[256];

	snprintf(path, sizeof(path), "%s/usage.err", tmpdir);
	CU_ASSERT_EQUAL(wait_exit(spawn(argv, -1, -1, path), 5), 2);
	const char *argv2[] = { RMIG_CLI, "send", "--to", "127.0.0.1:1", "--backend", "tcp",
				"--timeout", "300", NULL };
	snprintf(path, sizeof(path), "%s/send.err", tmpdir);
	CU_ASSERT_EQUAL(wait_exit(spawn(argv2, -1, -1, path), 5), 1);
	err_line("send", why, sizeof(why));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "cannot reach the receiver"));
}

static char keyfile[300];

static int write_key(const char *path, const void *key, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int rc = fd < 0 || write(fd, key, len) != (ssize_t)len || fchmod(fd, mode);

	if (fd >= 0)
		close(fd);
	return rc;
}

/* Run send with extra arguments against addr; its exit code, stderr's first line in why. */
static int send_with(const char *addr, const char *const *extra, int in_fd, char *why,
		     size_t len)
{
	const char *argv[20] = { RMIG_CLI, "send", "--to", addr, "--backend", "tcp",
				 "--timeout", TIMEOUT_MS, "--no-fork" };
	char errf[256];
	int n = 9, rc;

	for (; *extra; extra++)
		argv[n++] = *extra;
	snprintf(errf, sizeof(errf), "%s/send.err", tmpdir);
	rc = wait_exit(spawn(argv, in_fd, -1, errf), 10);
	err_line("send", why, len);
	return rc;
}

/*
 * --key-file, RMIG_KEY_FILE and --insecure: a sender with another key is
 * refused and recv waits on for the right one; bad key files and no key
 * are refused before anything connects, each with its fix.
 */
static void test_keys(void)
{
	static const uint8_t other[32] = "a key that is not the test key!";
	char addr[128], why[512], other_path[300], open_path[300], short_path[300],
		out_path[300];
	int in[2], out;
	pid_t recv;

	snprintf(other_path, sizeof(other_path), "%s/other.key", tmpdir);
	snprintf(open_path, sizeof(open_path), "%s/open.key", tmpdir);
	snprintf(short_path, sizeof(short_path), "%s/short.key", tmpdir);
	snprintf(out_path, sizeof(out_path), "%s/keys.out", tmpdir);
	CU_ASSERT_EQUAL_FATAL(write_key(other_path, other, sizeof(other), 0600), 0);
	CU_ASSERT_EQUAL_FATAL(write_key(open_path, rmig_test_psk, sizeof(rmig_test_psk), 0644), 0);
	CU_ASSERT_EQUAL_FATAL(write_key(short_path, rmig_test_psk, 8, 0600), 0);
	out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CU_ASSERT_FATAL(out >= 0);
	recv = start_recv("tcp", NULL, out, addr, sizeof(addr));
	close(out);
	CU_ASSERT_FATAL(recv > 0);

	/* Another key: refused, with the fix. */
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ "--key-file", other_path, NULL }, -1,
				  why, sizeof(why)), 1);
	fprintf(stderr, "\n    other key: %s", why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "key differs"));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "--key-file"));
	/* No key on the sender: refused by the keyed receiver. */
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ "--insecure", NULL }, -1, why,
				  sizeof(why)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "this end runs without a key"));
	/* Bad key files and no key at all: refused before connecting (exit 2). */
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ "--key-file", open_path, NULL }, -1,
				  why, sizeof(why)), 2);
	fprintf(stderr, "    open key file: %s", why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "chmod 600"));
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ "--key-file", short_path, NULL }, -1,
				  why, sizeof(why)), 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "at least 16"));
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ "--key-file", other_path, "--insecure",
							  NULL }, -1, why, sizeof(why)), 2);
	unsetenv("RMIG_KEY_FILE");
	CU_ASSERT_EQUAL(send_with(addr, (const char *[]){ NULL }, -1, why, sizeof(why)), 2);
	fprintf(stderr, "    no key: %s", why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "no key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "--insecure"));
	setenv("RMIG_KEY_FILE", keyfile, 1);

	/* The receiver refused them all and still takes the right sender. */
	CU_ASSERT_EQUAL_FATAL(pipe(in), 0);
	CU_ASSERT_EQUAL(write(in[1], "the stream", 10), 10);
	close(in[1]);
	int rc = send_with(addr, (const char *[]){ "--key-file", keyfile, NULL }, in[0], why,
			   sizeof(why));
	/* Every byte delivered: send exits 0, whatever order the end's messages take. */
	CU_ASSERT_EQUAL(rc, 0);
	if (rc)
		fprintf(stderr, "    right key: exit %d: %s", rc, why);
	close(in[0]);
	CU_ASSERT_EQUAL(wait_exit(recv, 10), 0);
	char got[32] = "";
	int fd = open(out_path, O_RDONLY);
	CU_ASSERT(fd >= 0 && read(fd, got, sizeof(got)) == 10);
	if (fd >= 0)
		close(fd);
	CU_ASSERT_EQUAL(memcmp(got, "the stream", 10), 0);
	err_line("recv", why, sizeof(why));
	fprintf(stderr, "    recv: %s", why);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, "refused a peer"));
}

static int setup(void)
{

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir))
		return 1;
	/* Every send and recv started here authenticates with the test key. */
	snprintf(keyfile, sizeof(keyfile), "%s/key", tmpdir);
	if (write_key(keyfile, rmig_test_psk, sizeof(rmig_test_psk), 0600))
		return 1;
	setenv("RMIG_KEY_FILE", keyfile, 1);
	/* The registry's backends that run here (those that cannot: SKIP). */
	for (int i = 0; rmig_backend_spec(i) && nbackends < MAX_BACKENDS; i++)
		if (rmig_test_backend(rmig_backend_spec(i)))
			backends[nbackends++] = rmig_backend_spec(i);
	return 0;
}

static int cleanup(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) ? 1 : 0;
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "48 MiB through send | recv, byte-identical", test_large_stream },
		{ "empty input", test_empty_stream },
		{ "ring wrap-around with odd sizes", test_ring_wraparound },
		{ "receiver killed: sender exits non-zero in time", test_receiver_killed },
		{ "sender killed: receiver exits non-zero in time", test_sender_killed },
		{ "reader of recv's stdout gone: both fail", test_reader_gone },
		{ "usage and unreachable receiver", test_bad_usage },
		{ "key files, a wrong key, no key", test_keys },
		CU_TEST_INFO_NULL,
	};
	return rmig_test_run("stream", setup, cleanup, tests);
}
