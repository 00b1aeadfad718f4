/* SPDX-License-Identifier: MIT */
/*
 * The conformance suite's peer: a server that exposes one region per session
 * and answers text commands about what landed in it.  It runs as a forked
 * process on loopback, or alone on another host (conformance --serve).
 *
 * Session: the client sends "REGION <len>" or "REGION <len> READ"; the peer
 * maps len bytes plus a guard area right after them, registers only the
 * first len bytes for remote write (and, with READ, remote read) and sends
 * the rkey.  Commands, each answered "OK" or "BAD <why>":
 *   FILL <byte>                          set the whole region
 *   PATTERN <seed> <off> <len>           region[off..] = pattern(seed, 0..len),
 *                                        for the client to read
 *   CHECK <seed> <off> <len>             region[off..] == pattern(seed, 0..len)
 *   STRIDE <seed> <n> <stride> <len>     n slices of len at k*stride hold the
 *                                        pattern at their own offsets, gaps 0
 *   BYTES <byte> <off> <len>             region[off..off+len] all == byte
 *   DEREG                                deregister the region now; at the
 *                                        end of the session its bytes must
 *                                        still hold the last FILL
 *   GUARD                                the guard of the previous session
 *                                        was never written (nor its region
 *                                        after DEREG)
 *   BYE                                  end the session
 *   SHUTDOWN                             end the session and the server
 */
#define _GNU_SOURCE
#include "../../common/ofi_env.h"
#include "conformance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_LEN (64u * 1024u)
#define GUARD_BYTE 0xee

/* Whether the last session's guard area was intact when it ended. */
static int last_guard_ok = 1;

/* The session's region state that outlives single commands. */
struct peer_region {
	struct rmig_ep *ep;
	struct rmig_mr *mr;  /* NULL once DEREG'd */
	int filled;          /* last FILL byte, -1 if none */
	int dereged;
};

static int bytes_are(const uint8_t *p, uint8_t b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != b)
			return 0;
	return 1;
}

static void check_stride(const uint8_t *region, size_t rlen, const char *args,
			 char *reply, size_t replen)
{
	unsigned seed, n;
	unsigned long long stride, len;

	if (sscanf(args, "%u %u %llu %llu", &seed, &n, &stride, &len) != 4 ||
	    stride < len || (unsigned long long)n * stride > rlen) {
		snprintf(reply, replen, "BAD arguments");
		return;
	}
	for (unsigned k = 0; k < n; k++) {
		const uint8_t *s = region + k * stride;
		if (rmig_test_check(s, len, seed, k * stride) >= 0) {
			snprintf(reply, replen, "BAD slice %u", k);
			return;
		}
		if (!bytes_are(s + len, 0, stride - len)) {
			snprintf(reply, replen, "BAD gap after slice %u", k);
			return;
		}
	}
	snprintf(reply, replen, "OK");
}

/* Execute one command on the region; 1 when the session should end. */
static int peer_command(struct peer_region *pr, uint8_t *region, size_t rlen,
			const char *cmd, char *reply, size_t replen)
{
	unsigned seed, byte;
	unsigned long long off, len;

	snprintf(reply, replen, "OK");
	if (!strcmp(cmd, "BYE") || !strcmp(cmd, "SHUTDOWN"))
		return 1;
	if (sscanf(cmd, "FILL %u", &byte) == 1) {
		memset(region, (int)byte, rlen);
		pr->filled = (int)(uint8_t)byte;
	} else if (sscanf(cmd, "PATTERN %u %llu %llu", &seed, &off, &len) == 3) {
		if (off + len > rlen || off + len < off)
			snprintf(reply, replen, "BAD outside the region");
		else
			rmig_test_fill(region + off, len, seed, 0);
		pr->filled = -1;
	} else if (!strcmp(cmd, "DEREG")) {
		if (rmig_dereg_mr(pr->ep, pr->mr))
			snprintf(reply, replen, "BAD %s", rmig_ep_error(pr->ep));
		pr->mr = NULL;
		pr->dereged = 1;
	} else if (sscanf(cmd, "CHECK %u %llu %llu", &seed, &off, &len) == 3) {
		long long bad = off + len <= rlen ? rmig_test_check(region + off, len, seed, 0) : 0;
		if (bad >= 0)
			snprintf(reply, replen, "BAD byte %lld of %llu differs", bad, len);
	} else if (!strncmp(cmd, "STRIDE ", 7)) {
		check_stride(region, rlen, cmd + 7, reply, replen);
	} else if (sscanf(cmd, "BYTES %u %llu %llu", &byte, &off, &len) == 3) {
		if (off + len > rlen || !bytes_are(region + off, (uint8_t)byte, len))
			snprintf(reply, replen, "BAD bytes changed");
	} else if (!strcmp(cmd, "GUARD")) {
		if (!last_guard_ok)
			snprintf(reply, replen, "BAD guard written");
	} else {
		snprintf(reply, replen, "BAD unknown command");
	}
	return 0;
}

/* One session; returns 1 if the client asked the server to shut down. */
static int peer_session(struct rmig_ep *ep)
{
	char msg[512], reply[128];
	unsigned long long rlen;
	char mode[8] = "";
	uint8_t key[RMIG_RKEY_WIRE_SIZE];
	struct peer_region pr = { .ep = ep, .filled = -1 };
	uint8_t *map;
	int n, shutdown = 0;

	n = rmig_recv(ep, msg, sizeof(msg) - 1, CONF_PEER_IDLE_MS);
	if (n <= 0)
		return 0;
	msg[n] = '\0';
	if (!strcmp(msg, "SHUTDOWN"))
		return 1;
	if (!strcmp(msg, "GUARD")) {
		peer_command(NULL, NULL, 0, msg, reply, sizeof(reply));
		rmig_send(ep, reply, strlen(reply) + 1);
		return 0;
	}
	if (sscanf(msg, "REGION %llu %7s", &rlen, mode) < 1 || !rlen)
		return 0;
	map = mmap(NULL, rlen + GUARD_LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return 0;
	memset(map + rlen, GUARD_BYTE, GUARD_LEN);
	if (rmig_reg_mr(ep, map, rlen, RMIG_ACCESS_REMOTE_WRITE |
			(strcmp(mode, "READ") ? 0 : RMIG_ACCESS_REMOTE_READ), &pr.mr)) {
		fprintf(stderr, "peer: %s\n", rmig_ep_error(ep));
		goto unmap;
	}
	rmig_rkey_encode(rmig_mr_rkey(pr.mr), key);
	if (rmig_send(ep, key, sizeof(key)))
		goto dereg;
	for (;;) {
		n = rmig_recv(ep, msg, sizeof(msg) - 1, CONF_PEER_IDLE_MS);
		if (n < 0) {
			fprintf(stderr, "peer: session ended: %s\n", rmig_ep_error(ep));
			break;
		}
		msg[n] = '\0';
		int end = peer_command(&pr, map, rlen, msg, reply, sizeof(reply));
		if (rmig_send(ep, reply, strlen(reply) + 1) || end) {
			shutdown = !strcmp(msg, "SHUTDOWN");
			break;
		}
	}
dereg:
	rmig_dereg_mr(ep, pr.mr);
unmap:
	last_guard_ok = bytes_are(map + rlen, GUARD_BYTE, GUARD_LEN);
	if (!last_guard_ok)
		fprintf(stderr, "peer: a write landed past the registered region\n");
	if (pr.dereged && pr.filled >= 0 && !bytes_are(map, (uint8_t)pr.filled, rlen)) {
		fprintf(stderr, "peer: a write landed in a deregistered region\n");
		last_guard_ok = 0;
	}
	munmap(map, rlen + GUARD_LEN);
	return shutdown;
}

int conf_peer_serve(const char *backend, const char *addr, int addr_fd, int sessions)
{
	struct rmig_ep *l, *ep;
	char bound[128];
	int rc;

	/* A host of its own (exec'd apart): libfabric's tunables as the
	 * other end has them (ofi_rxm's buffer sizes must match). */
	rmig_ofi_env_defaults();

	struct rmig_ep_opts o = { .size = sizeof(o), RMIG_TEST_PSK };

	rc = rmig_listen(backend, addr, &o, &l);
	if (!rc)
		rc = rmig_local_addr(l, bound, sizeof(bound));
	if (rc) {
		fprintf(stderr, "peer: %s\n", rmig_last_error());
		return 1;
	}
	if (addr_fd >= 0) {
		if (write(addr_fd, bound, strlen(bound) + 1) < 0)
			return 1;
		close(addr_fd);
	} else {
		printf("conformance peer listening on %s\n", bound);
		fflush(stdout);
	}
	for (int i = 0; sessions < 0 || i < sessions; i++) {
		rc = rmig_accept(l, CONF_PEER_IDLE_MS, &ep);
		if (rc == -EACCES || rc == -EPROTO) { /* a peer that failed authentication */
			fprintf(stderr, "peer: refused a session: %s\n", rmig_ep_error(l));
			continue;
		}
		if (rc) {
			fprintf(stderr, "peer: %s\n", rmig_ep_error(l));
			break;
		}
		int stop = peer_session(ep);
		rmig_close(ep);
		if (stop)
			break;
	}
	rmig_close(l);
	return 0;
}
