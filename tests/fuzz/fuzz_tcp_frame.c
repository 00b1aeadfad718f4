/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the tcp backend's frame header and the receiver's
 * checks.  Whatever the bytes, a frame that decodes must be one the
 * receiver can act on safely: a write or a read request that its bounds
 * rule (tcp_frame_in_region, the one tcp.c uses) keeps inside the region
 * or refuses, a message within the limit, a read answer whose status and
 * payload agree.
 */
#include "fuzz.h"
#include "transport/tcp/tcp_wire.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t region = 1 << 20;
	struct tcp_hdr h;
	uint8_t again[TCP_HDR_SIZE];

	if (size < TCP_HDR_SIZE)
		return 0;
	if (tcp_hdr_decode(data, &h))
		return 0;
	/* Decode accepted it: re-encoding gives the same bytes. */
	tcp_hdr_encode(&h, again);
	for (int i = 0; i < TCP_HDR_SIZE; i++)
		if (again[i] != data[i])
			abort();
	switch (h.type) {
	case TCP_FRAME_MSG:
		if (h.len > RMIG_MSG_MAX || h.id || h.key || h.off)
			abort();
		break;
	case TCP_FRAME_WRITE:
	case TCP_FRAME_READ_REQ:
		/* The receiver's rule never lets a write or a read past the end. */
		if (!h.len)
			abort();
		if (tcp_frame_in_region(&h, region) &&
		    (h.off + h.len > region || h.off + h.len < h.off))
			abort();
		break;
	case TCP_FRAME_READ_RESP:
		/* A refusal carries no payload; an answer carries some. */
		if (h.key || h.id > TCP_STATUS_MAX || (h.id && h.len) || (!h.id && !h.len))
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
