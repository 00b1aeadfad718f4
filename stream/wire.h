/* SPDX-License-Identifier: MIT */
/*
 * The stream's messages (include/rdmamig/stream.h; rdmamig send / recv,
 * proxy-out / proxy-in).
 *
 * The bytes themselves never travel in these messages: the sender writes
 * them one-sidedly into the receiver's ring and then announces them with a
 * DATA message (the transport delivers a message only once the writes posted
 * before it are visible).  The receiver hands ring space back with CREDIT.
 *
 * Every message is a fixed 32-byte little-endian header, RING adds the
 * ring's key descriptor and ABORT a reason:
 *   0  u32 magic  "RMST"
 *   4  u16 type   enum stream_msg_type
 *   6  u16 version
 *   8  u64 a      HELLO: chunk; RING: ring size; DATA: stream offset;
 *                 CREDIT: bytes consumed; EOF/DONE: stream length
 *  16  u64 b      DATA: length
 *  24  u64 c      reserved, 0
 */
#ifndef RMIG_STREAM_WIRE_H
#define RMIG_STREAM_WIRE_H

#include "../common/le.h"
#include <rdmamig/rdmamig.h>
#include <rdmamig/stream.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define STREAM_MAGIC 0x54534d52u /* "RMST" */
#define STREAM_VERSION 1
#define STREAM_HDR_SIZE 32
#define STREAM_REASON_MAX RMIG_STREAM_REASON_MAX
#define STREAM_MSG_MAX (STREAM_HDR_SIZE + STREAM_REASON_MAX)
_Static_assert(STREAM_MSG_MAX == RMIG_STREAM_MSG_MAX, "stream.h's message bound is the wire's");

/*
 * At most this many DATA messages are announced and not yet credited: a
 * backend's receive queue is finite.  The receiver credits at least every
 * STREAM_CREDIT_EVERY messages (and whenever it runs dry), so the sender
 * never stalls on this bound while the receiver is draining.
 */
#define STREAM_INFLIGHT_MAX 32
#define STREAM_CREDIT_EVERY 16

enum stream_msg_type {
	STREAM_HELLO = 1,  /* sender -> receiver: first message */
	STREAM_RING = 2,   /* receiver -> sender: ring size + rkey */
	STREAM_DATA = 3,   /* sender -> receiver: [a, a+b) is in the ring */
	STREAM_CREDIT = 4, /* receiver -> sender: a bytes consumed in total */
	STREAM_EOF = 5,    /* sender -> receiver: the stream is a bytes long */
	STREAM_DONE = 6,   /* receiver -> sender: all a bytes delivered */
	STREAM_PING = 7,   /* either way: still alive while idle */
	STREAM_ABORT = 8,  /* either way: giving up; payload is the reason */
};

struct stream_msg {
	uint16_t type;
	uint16_t version;
	uint64_t a, b;
	struct rmig_rkey rkey;           /* RING only */
	char reason[STREAM_REASON_MAX + 1]; /* ABORT only, NUL-terminated */
};

/* Encode into out (STREAM_MSG_MAX bytes); returns the length to send. */
static inline size_t stream_msg_encode(const struct stream_msg *m, uint8_t *out)
{
	size_t len = STREAM_HDR_SIZE;

	rmig_put_le32(out, STREAM_MAGIC);
	rmig_put_le16(out + 4, m->type);
	rmig_put_le16(out + 6, STREAM_VERSION);
	rmig_put_le64(out + 8, m->a);
	rmig_put_le64(out + 16, m->b);
	rmig_put_le64(out + 24, 0);
	if (m->type == STREAM_RING) {
		rmig_rkey_encode(&m->rkey, out + STREAM_HDR_SIZE);
		len += RMIG_RKEY_WIRE_SIZE;
	} else if (m->type == STREAM_ABORT) {
		size_t n = strnlen(m->reason, STREAM_REASON_MAX);
		memcpy(out + STREAM_HDR_SIZE, m->reason, n);
		len += n;
	}
	return len;
}

/* Decode len bytes; -EPROTO for anything malformed, -EPROTONOSUPPORT for another version. */
static inline int stream_msg_decode(const uint8_t *in, size_t len, struct stream_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (len < STREAM_HDR_SIZE || rmig_get_le32(in) != STREAM_MAGIC)
		return -EPROTO;
	m->type = rmig_get_le16(in + 4);
	m->version = rmig_get_le16(in + 6);
	m->a = rmig_get_le64(in + 8);
	m->b = rmig_get_le64(in + 16);
	if (m->version != STREAM_VERSION)
		return -EPROTONOSUPPORT;
	if (rmig_get_le64(in + 24))
		return -EPROTO; /* reserved */
	switch (m->type) {
	case STREAM_RING:
		if (len != STREAM_HDR_SIZE + RMIG_RKEY_WIRE_SIZE)
			return -EPROTO;
		return rmig_rkey_decode(in + STREAM_HDR_SIZE, &m->rkey) ? -EPROTO : 0;
	case STREAM_ABORT:
		if (len > STREAM_MSG_MAX ||
		    memchr(in + STREAM_HDR_SIZE, 0, len - STREAM_HDR_SIZE))
			return -EPROTO;
		memcpy(m->reason, in + STREAM_HDR_SIZE, len - STREAM_HDR_SIZE);
		m->reason[len - STREAM_HDR_SIZE] = 0;
		return 0;
	case STREAM_HELLO: case STREAM_DATA: case STREAM_CREDIT:
	case STREAM_EOF: case STREAM_DONE: case STREAM_PING:
		return len == STREAM_HDR_SIZE ? 0 : -EPROTO;
	default:
		return -EPROTO;
	}
}

#endif
