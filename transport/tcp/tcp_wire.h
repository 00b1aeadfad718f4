/* SPDX-License-Identifier: MIT */
/*
 * The tcp backend's byte stream.  After an 8-byte hello each way, frames of
 * a 32-byte little-endian header, then len payload bytes:
 *
 *   0  u32 type   TCP_FRAME_*
 *   4  u32 id     WRITE, READ_REQ: region id from the rkey
 *                 READ_RESP: status, 0 or a positive errno (the refusal)
 *                 MSG: 0
 *   8  u64 key    WRITE, READ_REQ: region secret from the rkey; else 0
 *  16  u64 off    WRITE, READ_REQ: offset in the region
 *                 READ_RESP: the offset the request asked for (echoed)
 *                 MSG: 0
 *  24  u64 len    WRITE, MSG, READ_RESP: payload bytes that follow
 *                 READ_REQ: bytes asked for (no payload follows)
 *
 * WRITE (1) carries len bytes into the peer's region; MSG (2) a control
 * message of at most RMIG_MSG_MAX bytes.  READ_REQ (3) asks the peer for
 * len bytes of its region at off; its receiver answers each request, in
 * the order they came, with READ_RESP (4): status 0 and exactly len bytes,
 * or a nonzero status, no payload, and the end of the connection.  The
 * receiver checks id, key, access (REMOTE_WRITE for WRITE, REMOTE_READ for
 * READ_REQ) and bounds (tcp_frame_in_region) before a byte is applied or
 * sent.  A peer built before reads refuses frame types 3 and 4 as
 * malformed; rdmamig issues reads only to a peer that agreed to post-copy
 * in its own handshake.
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
	TCP_FRAME_READ_REQ = 3,
	TCP_FRAME_READ_RESP = 4,
};

/* Largest status a READ_RESP may carry (a positive errno). */
#define TCP_STATUS_MAX 4095

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

/* -EPROTO for an unknown type, an oversize message or a nonzero reserved field. */
static inline int tcp_hdr_decode(const uint8_t in[TCP_HDR_SIZE], struct tcp_hdr *h)
{
	h->type = rmig_get_le32(in);
	h->id = rmig_get_le32(in + 4);
	h->key = rmig_get_le64(in + 8);
	h->off = rmig_get_le64(in + 16);
	h->len = rmig_get_le64(in + 24);
	switch (h->type) {
	case TCP_FRAME_MSG:
		return h->len <= RMIG_MSG_MAX && !h->id && !h->key && !h->off ? 0 : -EPROTO;
	case TCP_FRAME_WRITE:
	case TCP_FRAME_READ_REQ:
		return h->len ? 0 : -EPROTO;
	case TCP_FRAME_READ_RESP:
		if (h->key || h->id > TCP_STATUS_MAX)
			return -EPROTO;
		return (h->id ? !h->len : h->len != 0) ? 0 : -EPROTO;
	default:
		return -EPROTO;
	}
}

/*
 * The receiver's bounds rule for WRITE and READ_REQ: len bytes at off lie
 * inside a region of rlen bytes (no overflow).
 */
static inline int tcp_frame_in_region(const struct tcp_hdr *h, uint64_t rlen)
{
	return h->len <= rlen && h->off <= rlen - h->len;
}

#endif
