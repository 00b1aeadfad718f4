/* SPDX-License-Identifier: MIT */
/* Key descriptors on the wire: 32 bytes, little-endian, checked on decode. */
#include "../common/le.h"
#include <rdmamig/rdmamig.h>

#include <errno.h>

void rmig_rkey_encode(const struct rmig_rkey *k, uint8_t out[RMIG_RKEY_WIRE_SIZE])
{
	rmig_put_le64(out, k->addr);
	rmig_put_le64(out + 8, k->len);
	rmig_put_le64(out + 16, k->key);
	rmig_put_le32(out + 24, k->id);
	rmig_put_le32(out + 28, k->flags);
}

int rmig_rkey_decode(const uint8_t in[RMIG_RKEY_WIRE_SIZE], struct rmig_rkey *k)
{
	k->addr = rmig_get_le64(in);
	k->len = rmig_get_le64(in + 8);
	k->key = rmig_get_le64(in + 16);
	k->id = rmig_get_le32(in + 24);
	k->flags = rmig_get_le32(in + 28);
	if (k->flags & ~(uint32_t)(RMIG_ACCESS_REMOTE_WRITE | RMIG_ACCESS_REMOTE_READ))
		return -EINVAL;
	if (k->addr + k->len < k->addr)
		return -EINVAL;
	return 0;
}
