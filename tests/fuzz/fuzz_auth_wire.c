/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the peer-authentication message decoder
 * (transport/auth_wire.h), which reads whatever an unauthenticated peer
 * sends.  A message that decodes has exactly its type's length, known
 * flags and code, and re-encodes to the same bytes.
 */
#include "fuzz.h"
#include "transport/auth_wire.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t again[AUTH_MSG_MAX];
	struct auth_msg m;

	if (auth_msg_decode(data, size, &m))
		return 0;
	if (size != auth_msg_size(m.type) || size > AUTH_MSG_MAX)
		abort();
	if (m.flags & ~AUTH_F_NOKEY)
		abort();
	if (m.type == AUTH_RESULT ? m.code > AUTH_CODE_MAX : m.code != 0)
		abort();
	if (auth_msg_encode(&m, again) != size)
		abort();
	for (size_t i = 0; i < size; i++)
		if (again[i] != data[i])
			abort();
	return 0;
}
