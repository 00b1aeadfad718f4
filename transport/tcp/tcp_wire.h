/* SPDX-License-Identifier: MIT */
/*
 * The tcp backend's byte stream.  After an 8-byte hello each way, frames of
 * a 32-byte little-endian header, then len payload bytes:
 *
 *   0  u32 type   TCP_FRAME_WRITE or TCP_FRAME_MSG
 *   4  u32 id     WRITE: region id from the rkey; MSG: 0
 *   8  u64 key    WRITE: region secret from the rkey; MSG: 0
 *  16  u64 off    WRITE: offset in the region; MSG: 0
 *  24  u64 len    payload bytes (MSG: at most RMIG_MSG_MAX)
 *
 * The receiver checks id, key, access and bounds before a byte is applied.
 */
#ifndef RMIG_TCP_WIRE_H
#define RMIG_TCP_WIRE_H

#include "../../common/le.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define TCP_HELLO "RMIGTCP1"
#define TCP_HELLO_LEN 8
#define TCP_HDR_SIZE 32

enum tcp_frame_type {
	TCP_FRAME_WRITE = 1,
	TCP_FRAME_MSG = 2,
};

struct tcp_hdr {
	uint32_t type;
	uint32_t id;
	uint64_t key;
	uint64_t off;
	uint64_t len;
};

static inline void tcp_hdr_encode(const struct tcp_hdr *h, uint8_t out[TCP_HDR_SIZE])
{
	rmig_put_le32(out, h->type);
	rmig_put_le32(out + 4, h->id);
	rmig_put_le64(out + 8, h->key);
	rmig_put_le64(out + 16, h->off);
	rmig_put_le64(out + 24, h->len);
}

/* -EPROTO for an unknown type or an oversize message. */
static inline int tcp_hdr_decode(const uint8_t in[TCP_HDR_SIZE], struct tcp_hdr *h)
{
	h->type = rmig_get_le32(in);
	h->id = rmig_get_le32(in + 4);
	h->key = rmig_get_le64(in + 8);
	h->off = rmig_get_le64(in + 16);
	h->len = rmig_get_le64(in + 24);
	if (h->type == TCP_FRAME_MSG)
		return h->len <= RMIG_MSG_MAX && !h->id && !h->key && !h->off ? 0 : -EPROTO;
	if (h->type == TCP_FRAME_WRITE)
		return h->len ? 0 : -EPROTO;
	return -EPROTO;
}

#endif
