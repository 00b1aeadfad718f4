/* SPDX-License-Identifier: MIT */
/* The conformance suite: one set of tests run over every backend. */
#ifndef RMIG_CONFORMANCE_H
#define RMIG_CONFORMANCE_H

#include "testutil.h"
#include <rdmamig/rdmamig.h>

/* How long the peer waits for a command or a connection before giving up. */
#define CONF_PEER_IDLE_MS 60000

/*
 * Serve sessions on addr (sessions < 0: until SHUTDOWN or idle).  The bound
 * address goes to addr_fd (a pipe) or, if addr_fd < 0, to stdout.
 */
int conf_peer_serve(const char *backend, const char *addr, int addr_fd, int sessions);

#endif
