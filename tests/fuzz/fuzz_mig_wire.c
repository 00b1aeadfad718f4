/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the migration session's control messages
 * (plugin/wire.c).  A message whose header and payload decode must follow
 * every rule of docs/wire.md, and encoding what was decoded must give the
 * same bytes back (no field silently dropped or normalised).
 */
#include "fuzz.h"
#include "plugin/wire.h"

#include <stdlib.h>
#include <string.h>

#define KMAX 8

static void same(const uint8_t *a, const uint8_t *b, size_t n)
{
	if (memcmp(a, b, n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[RMIG_MSG_MAX];
	static struct wire_block b[KMAX];
	static struct rmig_rkey k[KMAX];
	const uint8_t *p = data + WIRE_HDR_SIZE;
	struct wire_hdr h;
	char why[160];
	int n;

	if (size > RMIG_MSG_MAX || wire_hdr_decode(data, size, &h))
		return 0;
	switch (h.type) {
	case WIRE_HELLO: {
		struct wire_hello x;
		uint64_t sum = 0;
		if (wire_hello_decode(p, h.len, &x, b, KMAX, why, sizeof(why)))
			return 0;
		if (!x.nblocks || x.nblocks > KMAX || x.page_size < 4096 ||
		    (x.page_size & (x.page_size - 1)))
			abort();
		for (uint32_t i = 0; i < x.nblocks; i++) {
			if (!b[i].len || b[i].len % x.page_size || !memchr(b[i].name, 0, WIRE_NAME_MAX))
				abort();
			if (b[i].page_size < x.page_size || b[i].len % b[i].page_size ||
			    (b[i].flags & ~WIRE_BLOCK_FLAGS_KNOWN))
				abort();
			sum += b[i].len;
		}
		if (sum != x.total)
			abort();
		n = wire_hello_encode(out, sizeof(out), &x, b);
		break;
	}
	case WIRE_RESERVE:
	case WIRE_JOINED: {
		struct wire_reserve x;
		if (wire_reserve_decode(p, h.len, &x, k, KMAX, why, sizeof(why)))
			return 0;
		if (x.nblocks > KMAX || (x.status && x.nblocks) || x.status > 0)
			abort();
		n = h.type == WIRE_RESERVE ? wire_reserve_encode(out, sizeof(out), &x, k)
					   : wire_joined_encode(out, sizeof(out), &x, k);
		break;
	}
	case WIRE_JOIN: {
		struct wire_join x;
		if (wire_join_decode(p, h.len, &x, why, sizeof(why)))
			return 0;
		if (!x.channel || x.channel >= x.channels || x.channels > WIRE_CHANNELS_MAX)
			abort();
		n = wire_join_encode(out, sizeof(out), &x);
		break;
	}
	case WIRE_ROUND: {
		struct wire_round x;
		if (wire_round_decode(p, h.len, &x, why, sizeof(why)))
			return 0;
		if (x.zero_pages > x.pages || x.final > 1 || x.pad || x.channel >= WIRE_CHANNELS_MAX)
			abort();
		n = wire_round_encode(out, sizeof(out), &x);
		break;
	}
	case WIRE_END: {
		struct wire_end x;
		if (wire_end_decode(p, h.len, &x, why, sizeof(why)))
			return 0;
		n = wire_end_encode(out, sizeof(out), &x);
		break;
	}
	case WIRE_COMMIT:
	case WIRE_CANCEL: {
		struct wire_status x;
		if (wire_status_decode(p, h.len, &x, why, sizeof(why)))
			return 0;
		n = wire_status_encode(out, sizeof(out), h.type, &x);
		break;
	}
	default:
		n = wire_stream_encode(out, sizeof(out), p, h.len);
	}
	if (n != (int)size)
		abort();
	same(out, data, size);
	return 0;
}
