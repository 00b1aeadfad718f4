/* SPDX-License-Identifier: MIT */
/* The fuzz targets' fake transport (fake_transport.c). */
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
/* Returns nonzero if a message this side sends is malformed. */
extern int (*fake_check_sent)(const void *msg, size_t len);

#endif
