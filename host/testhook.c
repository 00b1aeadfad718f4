/* SPDX-License-Identifier: MIT */
/*
 * TEST HOOK, not a feature: RMIG_TEST_PAUSE_AT=PHASE stops the source
 * process (SIGSTOP to itself) when the migration reaches PHASE, after
 * printing on stderr
 *
 *   rdmamig: test hook: pid N paused at PHASE (RMIG_TEST_PAUSE_AT)
 *
 * so that a fault script (scripts/fault-matrix.sh) can inject a fault at
 * exactly that phase -- kill a peer, reset the connections, send SIGINT --
 * and then let the source go on with SIGCONT.  PHASE is one of setup (the
 * destination said yes), round (pre-copy round 0 ended; round:N for round
 * N), stop-and-copy (vCPUs paused, before the final round) and commit
 * (final round and device state sent, before finish).  The process waits
 * only as long as whoever stopped it wants: the script runs it under
 * timeout(1), which resumes and kills it at its deadline.
 */
#define _GNU_SOURCE
#include "hostint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef RMIG_TEST_HOOKS /* a build without the hooks: host_test_pause does nothing */
static const char *phase_name(enum host_stage st)
{
	switch (st) {
	case HOST_STAGE_RESERVED: return "setup";
	case HOST_STAGE_ROUND: return "round";
	case HOST_STAGE_PAUSED: return "stop-and-copy";
	case HOST_STAGE_FINAL: return "commit";
	}
	return "?";
}

void host_test_pause(enum host_stage st, unsigned round)
{
	const char *want = getenv("RMIG_TEST_PAUSE_AT"), *name = phase_name(st);
	size_t n = strlen(name);
	unsigned want_round = 0;

	if (!want || strncmp(want, name, n))
		return;
	if (want[n] == ':' && st == HOST_STAGE_ROUND)
		want_round = (unsigned)strtoul(want + n + 1, NULL, 10);
	else if (want[n])
		return;
	if (st == HOST_STAGE_ROUND && round != want_round)
		return;
	fprintf(stderr, "rdmamig: test hook: pid %d paused at %s (RMIG_TEST_PAUSE_AT)\n",
		(int)getpid(), want);
	fflush(stderr);
	raise(SIGSTOP);
}
#else
void host_test_pause(enum host_stage st, unsigned round)
{
	(void)st;
	(void)round;
}
#endif
