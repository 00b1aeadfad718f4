/* SPDX-License-Identifier: MIT */
/* Running both ends of a migration in two processes, for the tests. */
#ifndef RMIG_TESTS_MIGUTIL_H
#define RMIG_TESTS_MIGUTIL_H

#include "host.h"
#include <rdmamig/rdmamig.h>
#include <sys/types.h>

struct pair {
	struct host_opts src, dst;
	struct host_result sr, dr;
	int dst_exit;            /* the destination process's exit code */
	pid_t peer;              /* the forked end */
	/* fault injection: at this stage signal the peer (kill_sig) */
	int kill_sig;
	enum host_stage kill_at;
	unsigned kill_round;
	int killed;
	uint64_t elapsed_ms;     /* of the end run in the harness process */
	int fds_before, fds_after; /* open descriptors around it there */
	/* Before the source: a stranger connects with this key (NULL: none). */
	const void *stranger_psk;
	int stranger_rc;
	char stranger_err[256];
};

void pair_init(struct pair *p, const char *backend, uint64_t guest_size);
/*
 * Each runs in a harness process of its own, so the test process never
 * opens an RDMA device (a process forked from one that has is refused the
 * inherited device descriptors by the kernel).
 * Destination forked, source in the harness.  Returns the source's rc. */
int pair_run(struct pair *p);
/* Source forked (it dies at kill_at), destination in the harness.  Returns
 * the destination's rc. */
int pair_run_source_dies(struct pair *p);
/* A watchdog for the whole program: past seconds, say which migration was
 * running (pair_init records it) and abort, rather than let ctest's
 * timeout kill it without a word. */
void migtest_watchdog(unsigned seconds);

/* 1 if the backend can run here (else prints why). */
int backend_usable(const char *spec);
/* Backend spec i of the registry (rmig_backend_spec), NULL past the last:
 * the tests' list of backends. */
#define MIGTEST_MAX_BACKENDS 16
static inline const char *migtest_backend(unsigned i)
{
	return i < MIGTEST_MAX_BACKENDS ? rmig_backend_spec((int)i) : NULL;
}

#endif
