/* SPDX-License-Identifier: MIT */
/*
 * The ofi backend's pure helpers, kept free of libfabric objects so unit
 * tests can include them: the bootstrap hello, -FI_* to -errno conversion,
 * the remote address of a write.
 *
 * Bootstrap hello (sent once each way on the TCP bootstrap socket, fixed
 * OFI_HELLO_SIZE bytes, little-endian):
 *
 *   0  u8[8]  magic    "RMIGOFI\0"
 *   8  u16    version  OFI_WIRE_VERSION
 *  10  u16    addrlen  bytes of addr used (1..OFI_ADDR_MAX)
 *  12  u32    flags    0 (reserved; receivers refuse unknown bits)
 *  16  u64    mr_mode  the sender's domain mr_mode (both ends must agree)
 *  24  u8[32] provider provider name, NUL-padded ("tcp;ofi_rxm", "shm")
 *  56  u8[OFI_ADDR_MAX] addr  the sender's fabric address (fi_getname)
 */
#ifndef RMIG_OFI_WIRE_H
#define RMIG_OFI_WIRE_H

#include "../../common/le.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define OFI_MAGIC "RMIGOFI"
#define OFI_WIRE_VERSION 1
#define OFI_ADDR_MAX 256
#define OFI_PROV_MAX 32
#define OFI_HELLO_SIZE (56 + OFI_ADDR_MAX)

struct ofi_hello {
	uint16_t version;
	uint16_t addrlen;
	uint32_t flags;
	uint64_t mr_mode;
	char provider[OFI_PROV_MAX]; /* NUL-terminated */
	uint8_t addr[OFI_ADDR_MAX];
};

static inline void ofi_hello_encode(const struct ofi_hello *h, uint8_t out[OFI_HELLO_SIZE])
{
	memset(out, 0, OFI_HELLO_SIZE);
	memcpy(out, OFI_MAGIC, sizeof(OFI_MAGIC));
	rmig_put_le16(out + 8, h->version);
	rmig_put_le16(out + 10, h->addrlen);
	rmig_put_le32(out + 12, h->flags);
	rmig_put_le64(out + 16, h->mr_mode);
	memcpy(out + 24, h->provider, strnlen(h->provider, OFI_PROV_MAX - 1));
	memcpy(out + 56, h->addr, h->addrlen <= OFI_ADDR_MAX ? h->addrlen : OFI_ADDR_MAX);
}

/*
 * -EPROTO: not an rdmamig ofi hello; -EPROTONOSUPPORT: another version;
 * -EINVAL: a field out of range, or a nonzero padding byte.
 */
static inline int ofi_hello_decode(const uint8_t in[OFI_HELLO_SIZE], struct ofi_hello *h)
{
	if (memcmp(in, OFI_MAGIC, sizeof(OFI_MAGIC)))
		return -EPROTO;
	h->version = rmig_get_le16(in + 8);
	h->addrlen = rmig_get_le16(in + 10);
	h->flags = rmig_get_le32(in + 12);
	h->mr_mode = rmig_get_le64(in + 16);
	if (h->version != OFI_WIRE_VERSION)
		return -EPROTONOSUPPORT;
	if (!h->addrlen || h->addrlen > OFI_ADDR_MAX || h->flags)
		return -EINVAL;
	if (!memchr(in + 24, '\0', OFI_PROV_MAX) || !in[24])
		return -EINVAL;
	/* Padding is zero, as the encoder writes it: the provider name's
	 * tail after its NUL and the address after addrlen. */
	for (size_t i = strlen((const char *)in + 24); i < OFI_PROV_MAX; i++)
		if (in[24 + i])
			return -EINVAL;
	for (size_t i = h->addrlen; i < OFI_ADDR_MAX; i++)
		if (in[56 + i])
			return -EINVAL;
	memcpy(h->provider, in + 24, OFI_PROV_MAX);
	memset(h->addr, 0, OFI_ADDR_MAX);
	memcpy(h->addr, in + 56, h->addrlen);
	return 0;
}

/*
 * libfabric returns -FI_Exxx: below 256 these are errno values already;
 * above, libfabric's own codes, mapped to the nearest errno.
 */
static inline int ofi_errno(int fi_rc)
{
	int e = fi_rc < 0 ? -fi_rc : fi_rc;

	if (!e)
		return 0;
	if (e < 256)
		return -e;
	switch (e) {
	case 257: return -ENOSPC;     /* FI_ETOOSMALL */
	case 258: return -EBADFD;     /* FI_EOPBADSTATE */
	case 259: return -EIO;        /* FI_EAVAIL: an error completion waits */
	case 260: return -EINVAL;     /* FI_EBADFLAGS */
	case 261: return -ENOENT;     /* FI_ENOEQ */
	case 262: return -EINVAL;     /* FI_EDOMAIN */
	case 263: return -ENOENT;     /* FI_ENOCQ */
	case 264: return -EBADMSG;    /* FI_ECRC */
	case 265: return -EMSGSIZE;   /* FI_ETRUNC */
	case 266: return -EACCES;     /* FI_ENOKEY: the peer's key is unknown */
	case 267: return -EHOSTUNREACH; /* FI_ENOAV */
	case 268: return -EOVERFLOW;  /* FI_EOVERRUN */
	case 269: return -ENOBUFS;    /* FI_ENORX: no receive buffer posted */
	default: return -EIO;         /* FI_EOTHER and anything newer */
	}
}

/*
 * Where a write lands at the peer: with FI_MR_VIRT_ADDR the rkey carries
 * the region's virtual address and RMA addresses are absolute; otherwise
 * the rkey's addr is 0 and addresses are offsets into the region.
 */
static inline uint64_t ofi_remote_addr(uint64_t rkey_addr, uint64_t roff)
{
	return rkey_addr + roff;
}

/* Pieces a write of len bytes splits into when one op carries at most max. */
static inline uint64_t ofi_pieces(uint64_t len, uint64_t max)
{
	return max ? (len + max - 1) / max : 1;
}

#endif
