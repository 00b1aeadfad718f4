/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the tcp backend's frame header and the receiver's
 * checks.  Whatever the bytes, a frame that decodes must describe a write
 * that the receiver's bounds rule keeps inside the region, or be refused.
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
	if (h.type == TCP_FRAME_MSG && h.len > RMIG_MSG_MAX)
		abort();
	/* The receiver's rule (tcp.c, tcp_apply_write) never lets a write past the end. */
	if (h.type == TCP_FRAME_WRITE && !(h.len > region || h.off > region - h.len))
		if (h.off + h.len > region || h.off + h.len < h.off)
			abort();
	return 0;
}
