/* SPDX-License-Identifier: MIT */
/*
 * The proxy's own messages, before the stream channel's (stream_wire.h) on
 * each carried connection:
 *   proxy-out -> proxy-in  HELLO: the route's name (which destination socket)
 *   proxy-in -> proxy-out  READY: connected to that socket
 *   proxy-out -> proxy-in  REVERSE: this second connection carries the bytes
 *                          the destination QEMU sends back on connection
 *                          (instance, conn) (QEMU's return path)
 * A refusal from proxy-in is a STREAM_ABORT with the reason instead of READY.
 * proxy-out sends a route's HELLOs one at a time, each after the previous
 * READY, so the destination QEMU sees its connections in the order the
 * source QEMU opened them (QEMU 7.2 takes the first as the main channel).
 *
 *   0  u32 magic    "RMPX"
 *   4  u16 version
 *   6  u16 type     1 HELLO, 2 READY, 3 REVERSE
 *   8  u64 connection number on proxy-out (for the logs of both ends)
 *  16  u64 proxy-out's instance (random at its start: tells apart the
 *          connections of several proxy-outs, or of one restarted)
 *  24  u16 name length, HELLO/REVERSE: 1..PROXY_NAME_MAX, READY: 0
 *  26  6 bytes reserved, 0
 *  32  name (no NUL; letters, digits, '.', '_', '-')
 */
#ifndef RMIG_TOOLS_PROXY_WIRE_H
#define RMIG_TOOLS_PROXY_WIRE_H

#include "../common/le.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define PROXY_MAGIC 0x58504d52u /* "RMPX" */
#define PROXY_VERSION 1
#define PROXY_HDR_SIZE 32
#define PROXY_HELLO 1
#define PROXY_READY 2
#define PROXY_REVERSE 3
#define PROXY_NAME_MAX 64
#define PROXY_MSG_MAX (PROXY_HDR_SIZE + PROXY_NAME_MAX)

struct proxy_msg {
	uint16_t version;
	uint16_t type;
	uint64_t conn;
	uint64_t instance;
	char name[PROXY_NAME_MAX + 1];
};

/* A route name is safe in logs and as a file name. */
static inline int proxy_name_ok(const char *s, size_t n)
{
	if (!n || n > PROXY_NAME_MAX || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* Encode into out (PROXY_MSG_MAX bytes); returns the length to send. */
static inline size_t proxy_msg_encode(const struct proxy_msg *h, uint8_t *out)
{
	size_t n = strnlen(h->name, PROXY_NAME_MAX);

	if (h->type == PROXY_READY)
		n = 0;
	memset(out, 0, PROXY_HDR_SIZE);
	rmig_put_le32(out, PROXY_MAGIC);
	rmig_put_le16(out + 4, PROXY_VERSION);
	rmig_put_le16(out + 6, h->type);
	rmig_put_le64(out + 8, h->conn);
	rmig_put_le64(out + 16, h->instance);
	rmig_put_le16(out + 24, (uint16_t)n);
	memcpy(out + PROXY_HDR_SIZE, h->name, n);
	return PROXY_HDR_SIZE + n;
}

/* Decode; -EPROTO if malformed, -EPROTONOSUPPORT for another version. */
static inline int proxy_msg_decode(const uint8_t *in, size_t len, struct proxy_msg *h)
{
	size_t n;

	memset(h, 0, sizeof(*h));
	if (len < PROXY_HDR_SIZE || rmig_get_le32(in) != PROXY_MAGIC)
		return -EPROTO;
	h->version = rmig_get_le16(in + 4);
	if (h->version != PROXY_VERSION)
		return -EPROTONOSUPPORT;
	h->type = rmig_get_le16(in + 6);
	n = rmig_get_le16(in + 24);
	if (len != PROXY_HDR_SIZE + n || rmig_get_le16(in + 26) || rmig_get_le32(in + 28))
		return -EPROTO;
	if (h->type == PROXY_READY ? n != 0
	    : (h->type != PROXY_HELLO && h->type != PROXY_REVERSE) ||
	      !proxy_name_ok((const char *)in + PROXY_HDR_SIZE, n))
		return -EPROTO;
	h->conn = rmig_get_le64(in + 8);
	h->instance = rmig_get_le64(in + 16);
	memcpy(h->name, in + PROXY_HDR_SIZE, n);
	h->name[n] = 0;
	return 0;
}

#endif
