/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the ofi backend's bootstrap hello (transport/ofi/
 * ofi_wire.h), the first bytes a peer sends on the bootstrap socket.  A
 * hello that decodes has a known version, an address length in range, a
 * NUL-terminated provider name, and encodes back to the same bytes (no
 * reserved or padding byte is silently ignored).
 */
#include "fuzz.h"
#include "transport/ofi/ofi_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ofi_hello h;
	uint8_t again[OFI_HELLO_SIZE];

	if (size != OFI_HELLO_SIZE)
		return 0; /* the socket reads exactly this many bytes */
	if (ofi_hello_decode(data, &h))
		return 0;
	if (h.version != OFI_WIRE_VERSION || !h.addrlen || h.addrlen > OFI_ADDR_MAX || h.flags)
		abort();
	if (!memchr(h.provider, 0, OFI_PROV_MAX) || !h.provider[0])
		abort();
	ofi_hello_encode(&h, again);
	if (memcmp(again, data, OFI_HELLO_SIZE))
		abort();
	return 0;
}
