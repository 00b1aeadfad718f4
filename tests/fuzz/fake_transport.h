/* SPDX-License-Identifier: MIT */
/*
 * The fake transport (fake_transport.c) the fuzz targets and the engine
 * unit tests (tests/engine/) link instead of the real backends.
 */
#ifndef RMIG_FUZZ_FAKE_TRANSPORT_H
#define RMIG_FUZZ_FAKE_TRANSPORT_H

#include <rdmamig/transport.h>

#include <stddef.h>
#include <stdint.h>

/* Start a run: the peer's messages are data[0..size). */
void fake_reset(const uint8_t *data, size_t size);

extern int fake_live_mrs;    /* regions registered and not deregistered */
extern int fake_remote_mrs;  /* of which with RMIG_ACCESS_REMOTE_WRITE */
extern int fake_remote_ok;   /* the harness allows remote-write regions */
extern int fake_sent_bad;    /* a sent message failed fake_check_sent */
extern unsigned fake_nposted;/* write batches not yet polled */
/* rmig_poll with nothing to complete says the peer is gone, as the tcp
 * backend's does once its receive thread saw the close (fake_reset: 0). */
extern int fake_poll_dead;
/* Returns nonzero if a message this side sends is malformed. */
extern int (*fake_check_sent)(const void *msg, size_t len);

/*
 * Script mode (the engine unit tests).  Endpoints made by connect and
 * accept are numbered 0, 1, ... in the order they are made; each has its
 * own queue of the peer's messages (rmig_recv takes from it; an empty
 * queue is -ETIMEDOUT after a 1 ms nap) and a log of what this side sent
 * on it.  fake_script resets everything, fuzz state included.  The calls
 * below are safe from any thread (the engine's workers send and write).
 */
#define FAKE_EPS 32
#define FAKE_LOG 64 /* messages kept per endpoint */
void fake_script(void);
/* Queue a message (or an error rmig_recv returns once, e.g. -ECONNRESET)
 * from the peer on endpoint i; it may not exist yet. */
void fake_push(unsigned i, const void *msg, size_t len);
void fake_push_err(unsigned i, int err);
/* Endpoints made so far, and whether endpoint i has been closed. */
unsigned fake_neps(void);
int fake_closed(unsigned i);
/* Messages sent on endpoint i; a copy of the k-th (its length, 0 if none). */
unsigned fake_nsent(unsigned i);
size_t fake_sent(unsigned i, unsigned k, void *buf, size_t cap);
/* Called after each message this side sends (outside the fake's lock:
 * it may push the peer's answer). */
extern void (*fake_on_send)(unsigned ep, const void *msg, size_t len);
/* Faults: connect and accept fail with these (0: they work); send on
 * endpoint i fails from its k-th message on; the n-th registration from
 * now fails; every write completes with this status. */
extern int fake_connect_rc, fake_accept_rc;
void fake_fail_send(unsigned i, unsigned k, int rc);
void fake_fail_reg(unsigned n, int rc);
extern int fake_write_status;
/* Bytes written by rmig_write_batch so far (all endpoints). */
extern uint64_t fake_written;

#endif
