/* SPDX-License-Identifier: MIT */
/* libFuzzer target: rkey descriptors as they arrive from a peer. */
#include "fuzz.h"
#include <rdmamig/rdmamig.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmig_rkey k;
	uint8_t again[RMIG_RKEY_WIRE_SIZE];

	if (size < RMIG_RKEY_WIRE_SIZE)
		return 0;
	if (rmig_rkey_decode(data, &k))
		return 0;
	if (k.addr + k.len < k.addr)
		abort(); /* accepted a region that wraps the address space */
	rmig_rkey_encode(&k, again);
	if (memcmp(again, data, RMIG_RKEY_WIRE_SIZE))
		abort();
	return 0;
}
