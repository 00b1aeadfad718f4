/* SPDX-License-Identifier: MIT */
/*
 * Encode/decode pairs for the control protocol.  Decoders trust nothing:
 * exact lengths, known types, zero padding, counts within bounds, names
 * NUL-terminated with NUL padding, sums without overflow.
 */
#include "wire.h"
#include "../common/le.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[] = {
	[WIRE_HELLO] = "HELLO", [WIRE_RESERVE] = "RESERVE", [WIRE_ROUND] = "ROUND",
	[WIRE_STREAM] = "STREAM", [WIRE_END] = "END", [WIRE_COMMIT] = "COMMIT",
	[WIRE_CANCEL] = "CANCEL", [WIRE_JOIN] = "JOIN", [WIRE_JOINED] = "JOINED",
};

const char *wire_type_name(unsigned type)
{
	if (type < sizeof(type_names) / sizeof(type_names[0]) && type_names[type])
		return type_names[type];
	return "unknown";
}

static int bad(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s", what);
	return -EPROTO;
}

void wire_hdr_encode(uint8_t *out, uint16_t type, uint32_t len)
{
	rmig_put_le32(out, WIRE_MAGIC);
	rmig_put_le16(out + 4, WIRE_VERSION);
	rmig_put_le16(out + 6, type);
	rmig_put_le32(out + 8, len);
	rmig_put_le32(out + 12, 0);
}

int wire_hdr_decode(const uint8_t *in, size_t msglen, struct wire_hdr *h)
{
	if (msglen < WIRE_HDR_SIZE)
		return -EPROTO;
	h->magic = rmig_get_le32(in);
	h->version = rmig_get_le16(in + 4);
	h->type = rmig_get_le16(in + 6);
	h->len = rmig_get_le32(in + 8);
	h->pad = rmig_get_le32(in + 12);
	if (h->magic != WIRE_MAGIC || h->pad)
		return -EPROTO;
	if (h->version != WIRE_VERSION)
		return -EPROTONOSUPPORT;
	if (h->type < WIRE_HELLO || h->type > WIRE_TYPE_LAST)
		return -EPROTO;
	if ((size_t)h->len != msglen - WIRE_HDR_SIZE)
		return -EPROTO;
	return 0;
}

/* A fixed char field: NUL-terminated inside and NUL after the terminator. */
static int str_ok(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i])
		i++;
	if (i == n)
		return 0;
	for (; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void put_str(uint8_t *p, size_t n, const char *s)
{
	size_t l = strnlen(s, n - 1);

	memset(p, 0, n);
	memcpy(p, s, l);
}

int wire_hello_encode(uint8_t *out, size_t cap, const struct wire_hello *h,
		      const struct wire_block *b)
{
	size_t len = WIRE_HELLO_SIZE + (size_t)h->nblocks * WIRE_BLOCK_SIZE;
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (h->nblocks > WIRE_BLOCKS_MAX || WIRE_HDR_SIZE + len > cap)
		return -EMSGSIZE;
	wire_hdr_encode(out, WIRE_HELLO, (uint32_t)len);
	rmig_put_le64(p, h->caps);
	rmig_put_le32(p + 8, h->page_size);
	rmig_put_le32(p + 12, h->nblocks);
	rmig_put_le64(p + 16, h->total);
	rmig_put_le32(p + 24, h->channels);
	rmig_put_le32(p + 28, 0);
	p += WIRE_HELLO_SIZE;
	for (uint32_t i = 0; i < h->nblocks; i++, p += WIRE_BLOCK_SIZE) {
		put_str(p, WIRE_NAME_MAX, b[i].name);
		rmig_put_le64(p + WIRE_NAME_MAX, b[i].len);
		rmig_put_le32(p + WIRE_NAME_MAX + 8, b[i].page_size);
		rmig_put_le32(p + WIRE_NAME_MAX + 12, b[i].flags);
		rmig_put_le64(p + WIRE_NAME_MAX + 16, 0);
	}
	return (int)(WIRE_HDR_SIZE + len);
}

int wire_hello_decode(const uint8_t *p, size_t len, struct wire_hello *h,
		      struct wire_block *b, uint32_t bmax, char *why, size_t whylen)
{
	uint64_t sum = 0;

	if (len < WIRE_HELLO_SIZE)
		return bad(why, whylen, "HELLO is shorter than its fixed part");
	h->caps = rmig_get_le64(p);
	h->page_size = rmig_get_le32(p + 8);
	h->nblocks = rmig_get_le32(p + 12);
	h->total = rmig_get_le64(p + 16);
	h->channels = rmig_get_le32(p + 24);
	h->pad = rmig_get_le32(p + 28);
	if (h->pad)
		return bad(why, whylen, "HELLO has nonzero reserved fields");
	if (!h->channels || h->channels > WIRE_CHANNELS_MAX)
		return bad(why, whylen, "HELLO channel count is zero or above the protocol's 16");
	if (h->page_size < 4096 || h->page_size > (1u << 30) ||
	    (h->page_size & (h->page_size - 1)))
		return bad(why, whylen, "HELLO page size is not a power of two between 4 KiB and 1 GiB");
	if (!h->nblocks || h->nblocks > bmax || h->nblocks > WIRE_BLOCKS_MAX)
		return bad(why, whylen, "HELLO block count is zero or above the limit");
	if (len != WIRE_HELLO_SIZE + (size_t)h->nblocks * WIRE_BLOCK_SIZE)
		return bad(why, whylen, "HELLO length does not match its block count");
	p += WIRE_HELLO_SIZE;
	for (uint32_t i = 0; i < h->nblocks; i++, p += WIRE_BLOCK_SIZE) {
		if (!str_ok(p, WIRE_NAME_MAX) || !p[0])
			return bad(why, whylen, "HELLO block name is empty or not NUL-terminated");
		memcpy(b[i].name, p, WIRE_NAME_MAX);
		b[i].len = rmig_get_le64(p + WIRE_NAME_MAX);
		b[i].page_size = rmig_get_le32(p + WIRE_NAME_MAX + 8);
		b[i].flags = rmig_get_le32(p + WIRE_NAME_MAX + 12);
		b[i].pad = rmig_get_le64(p + WIRE_NAME_MAX + 16);
		if (b[i].pad)
			return bad(why, whylen, "HELLO block has nonzero padding");
		if (b[i].flags & ~WIRE_BLOCK_FLAGS_KNOWN)
			return bad(why, whylen, "HELLO block has unknown flags");
		if (b[i].page_size < h->page_size || b[i].page_size > (1u << 30) ||
		    (b[i].page_size & (b[i].page_size - 1)))
			return bad(why, whylen, "HELLO block page size is not a power of two between the session's and 1 GiB");
		if (!b[i].len || b[i].len % b[i].page_size)
			return bad(why, whylen, "HELLO block length is zero or not a multiple of its page size");
		if (sum + b[i].len < sum)
			return bad(why, whylen, "HELLO block lengths overflow");
		sum += b[i].len;
		for (uint32_t j = 0; j < i; j++)
			if (!strcmp(b[j].name, b[i].name))
				return bad(why, whylen, "HELLO names a block twice");
	}
	if (sum != h->total)
		return bad(why, whylen, "HELLO total does not match the block lengths");
	return 0;
}

static int reserve_encode(uint8_t *out, size_t cap, uint16_t type,
			  const struct wire_reserve *r, const struct rmig_rkey *keys)
{
	uint32_t nkeys = r->status ? 0 : r->nblocks;
	size_t len = WIRE_RESERVE_SIZE + (size_t)nkeys * RMIG_RKEY_WIRE_SIZE;
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (nkeys > WIRE_BLOCKS_MAX || WIRE_HDR_SIZE + len > cap)
		return -EMSGSIZE;
	wire_hdr_encode(out, type, (uint32_t)len);
	rmig_put_le32(p, (uint32_t)r->status);
	rmig_put_le32(p + 4, nkeys);
	rmig_put_le64(p + 8, r->caps);
	rmig_put_le32(p + 16, r->flags);
	rmig_put_le32(p + 20, 0);
	put_str(p + 24, WIRE_REASON_MAX, r->reason);
	if (r->status)
		memset(p + 24 + WIRE_REASON_MAX, 0, WIRE_TOKEN_SIZE);
	else
		memcpy(p + 24 + WIRE_REASON_MAX, r->token, WIRE_TOKEN_SIZE);
	p += WIRE_RESERVE_SIZE;
	for (uint32_t i = 0; i < nkeys; i++, p += RMIG_RKEY_WIRE_SIZE)
		rmig_rkey_encode(&keys[i], p);
	return (int)(WIRE_HDR_SIZE + len);
}

int wire_reserve_encode(uint8_t *out, size_t cap, const struct wire_reserve *r,
			const struct rmig_rkey *keys)
{
	return reserve_encode(out, cap, WIRE_RESERVE, r, keys);
}

int wire_joined_encode(uint8_t *out, size_t cap, const struct wire_reserve *r,
		       const struct rmig_rkey *keys)
{
	return reserve_encode(out, cap, WIRE_JOINED, r, keys);
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int wire_join_encode(uint8_t *out, size_t cap, const struct wire_join *j)
{
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (cap < WIRE_HDR_SIZE + WIRE_JOIN_SIZE)
		return -EMSGSIZE;
	wire_hdr_encode(out, WIRE_JOIN, WIRE_JOIN_SIZE);
	memcpy(p, j->token, WIRE_TOKEN_SIZE);
	rmig_put_le32(p + WIRE_TOKEN_SIZE, j->channel);
	rmig_put_le32(p + WIRE_TOKEN_SIZE + 4, j->channels);
	return WIRE_HDR_SIZE + WIRE_JOIN_SIZE;
}

int wire_join_decode(const uint8_t *p, size_t len, struct wire_join *j,
		     char *why, size_t whylen)
{
	if (len != WIRE_JOIN_SIZE)
		return bad(why, whylen, "JOIN has the wrong length");
	memcpy(j->token, p, WIRE_TOKEN_SIZE);
	j->channel = rmig_get_le32(p + WIRE_TOKEN_SIZE);
	j->channels = rmig_get_le32(p + WIRE_TOKEN_SIZE + 4);
	if (all_zero(j->token, WIRE_TOKEN_SIZE))
		return bad(why, whylen, "JOIN carries no session token");
	if (j->channels < 2 || j->channels > WIRE_CHANNELS_MAX || !j->channel ||
	    j->channel >= j->channels)
		return bad(why, whylen, "JOIN channel is not an extra channel of 2 to 16");
	return 0;
}

int wire_reserve_decode(const uint8_t *p, size_t len, struct wire_reserve *r,
			struct rmig_rkey *keys, uint32_t kmax, char *why, size_t whylen)
{
	if (len < WIRE_RESERVE_SIZE)
		return bad(why, whylen, "RESERVE is shorter than its fixed part");
	r->status = (int32_t)rmig_get_le32(p);
	r->nblocks = rmig_get_le32(p + 4);
	r->caps = rmig_get_le64(p + 8);
	r->flags = rmig_get_le32(p + 16);
	r->pad = rmig_get_le32(p + 20);
	if (r->pad || (r->flags & ~WIRE_RES_ZEROED))
		return bad(why, whylen, "RESERVE has unknown flags or nonzero padding");
	if (r->status > 0 || r->status < -4095)
		return bad(why, whylen, "RESERVE status is not 0 or a negative errno");
	if (r->caps & ~WIRE_CAPS_KNOWN)
		return bad(why, whylen, "RESERVE answers capabilities never offered");
	if (!str_ok(p + 24, WIRE_REASON_MAX))
		return bad(why, whylen, "RESERVE reason is not NUL-terminated");
	memcpy(r->reason, p + 24, WIRE_REASON_MAX);
	memcpy(r->token, p + 24 + WIRE_REASON_MAX, WIRE_TOKEN_SIZE);
	if (r->status && r->nblocks)
		return bad(why, whylen, "RESERVE refusal carries keys");
	if (r->status && !all_zero(r->token, WIRE_TOKEN_SIZE))
		return bad(why, whylen, "RESERVE refusal carries a session token");
	if (r->nblocks > kmax)
		return bad(why, whylen, "RESERVE carries more keys than blocks offered");
	if (len != WIRE_RESERVE_SIZE + (size_t)r->nblocks * RMIG_RKEY_WIRE_SIZE)
		return bad(why, whylen, "RESERVE length does not match its key count");
	p += WIRE_RESERVE_SIZE;
	for (uint32_t i = 0; i < r->nblocks; i++, p += RMIG_RKEY_WIRE_SIZE)
		if (rmig_rkey_decode(p, &keys[i]))
			return bad(why, whylen, "RESERVE carries a malformed key");
	return 0;
}

int wire_round_encode(uint8_t *out, size_t cap, const struct wire_round *r)
{
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (cap < WIRE_HDR_SIZE + WIRE_ROUND_SIZE)
		return -EMSGSIZE;
	wire_hdr_encode(out, WIRE_ROUND, WIRE_ROUND_SIZE);
	rmig_put_le32(p, r->round);
	rmig_put_le32(p + 4, r->final);
	rmig_put_le64(p + 8, r->pages);
	rmig_put_le64(p + 16, r->bytes);
	rmig_put_le64(p + 24, r->zero_pages);
	rmig_put_le32(p + 32, r->channel);
	rmig_put_le32(p + 36, 0);
	return WIRE_HDR_SIZE + WIRE_ROUND_SIZE;
}

int wire_round_decode(const uint8_t *p, size_t len, struct wire_round *r,
		      char *why, size_t whylen)
{
	if (len != WIRE_ROUND_SIZE)
		return bad(why, whylen, "ROUND has the wrong length");
	r->round = rmig_get_le32(p);
	r->final = rmig_get_le32(p + 4);
	r->pages = rmig_get_le64(p + 8);
	r->bytes = rmig_get_le64(p + 16);
	r->zero_pages = rmig_get_le64(p + 24);
	r->channel = rmig_get_le32(p + 32);
	r->pad = rmig_get_le32(p + 36);
	if (r->pad)
		return bad(why, whylen, "ROUND has nonzero padding");
	if (r->channel >= WIRE_CHANNELS_MAX)
		return bad(why, whylen, "ROUND channel is above the protocol's 16");
	if (r->final > 1)
		return bad(why, whylen, "ROUND final flag is not 0 or 1");
	if (r->zero_pages > r->pages)
		return bad(why, whylen, "ROUND skipped more zero pages than it had");
	return 0;
}

int wire_end_encode(uint8_t *out, size_t cap, const struct wire_end *e)
{
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (cap < WIRE_HDR_SIZE + WIRE_END_SIZE)
		return -EMSGSIZE;
	wire_hdr_encode(out, WIRE_END, WIRE_END_SIZE);
	rmig_put_le32(p, e->rounds);
	rmig_put_le32(p + 4, 0);
	rmig_put_le64(p + 8, e->bytes);
	rmig_put_le64(p + 16, e->stream_bytes);
	return WIRE_HDR_SIZE + WIRE_END_SIZE;
}

int wire_end_decode(const uint8_t *p, size_t len, struct wire_end *e,
		    char *why, size_t whylen)
{
	if (len != WIRE_END_SIZE)
		return bad(why, whylen, "END has the wrong length");
	e->rounds = rmig_get_le32(p);
	e->pad = rmig_get_le32(p + 4);
	e->bytes = rmig_get_le64(p + 8);
	e->stream_bytes = rmig_get_le64(p + 16);
	if (e->pad)
		return bad(why, whylen, "END has nonzero padding");
	return 0;
}

int wire_status_encode(uint8_t *out, size_t cap, uint16_t type,
		       const struct wire_status *s)
{
	uint8_t *p = out + WIRE_HDR_SIZE;

	if (cap < WIRE_HDR_SIZE + WIRE_STATUS_SIZE ||
	    (type != WIRE_COMMIT && type != WIRE_CANCEL))
		return -EMSGSIZE;
	wire_hdr_encode(out, type, WIRE_STATUS_SIZE);
	rmig_put_le32(p, (uint32_t)s->status);
	rmig_put_le32(p + 4, 0);
	put_str(p + 8, WIRE_REASON_MAX, s->reason);
	return WIRE_HDR_SIZE + WIRE_STATUS_SIZE;
}

int wire_status_decode(const uint8_t *p, size_t len, struct wire_status *s,
		       char *why, size_t whylen)
{
	if (len != WIRE_STATUS_SIZE)
		return bad(why, whylen, "status message has the wrong length");
	s->status = (int32_t)rmig_get_le32(p);
	s->pad = rmig_get_le32(p + 4);
	if (s->pad)
		return bad(why, whylen, "status message has nonzero padding");
	if (s->status > 0 || s->status < -4095)
		return bad(why, whylen, "status is not 0 or a negative errno");
	if (!str_ok(p + 8, WIRE_REASON_MAX))
		return bad(why, whylen, "status reason is not NUL-terminated");
	memcpy(s->reason, p + 8, WIRE_REASON_MAX);
	return 0;
}

int wire_stream_encode(uint8_t *out, size_t cap, const void *data, size_t len)
{
	if (len > WIRE_STREAM_MAX || WIRE_HDR_SIZE + len > cap)
		return -EMSGSIZE;
	wire_hdr_encode(out, WIRE_STREAM, (uint32_t)len);
	memcpy(out + WIRE_HDR_SIZE, data, len);
	return (int)(WIRE_HDR_SIZE + len);
}
