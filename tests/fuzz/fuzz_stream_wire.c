/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the stream channel's control messages (stream/wire.h). */
#include "fuzz.h"
#include "stream/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_msg m;
	uint8_t again[STREAM_MSG_MAX];
	size_t len;

	if (stream_msg_decode(data, size, &m))
		return 0;
	if (m.type == STREAM_ABORT && strlen(m.reason) > STREAM_REASON_MAX)
		abort(); /* a reason longer than the message could hold */
	if (m.type == STREAM_RING && m.rkey.addr + m.rkey.len < m.rkey.addr)
		abort();
	/* Whatever is accepted encodes back to the same bytes. */
	len = stream_msg_encode(&m, again);
	if (len != size || memcmp(again, data, size))
		abort();
	return 0;
}
