/* SPDX-License-Identifier: MIT */
/*
 * The session's control protocol (docs/wire.md): fixed-size little-endian
 * messages with explicit padding, carried by rmig_send/rmig_recv.  Each
 * message is a 16-byte header and a payload; every decoder checks the
 * lengths, counts, reserved fields and strings before anything is used.
 */
#ifndef RMIG_PLUGIN_WIRE_H
#define RMIG_PLUGIN_WIRE_H

#include <rdmamig/rdmamig.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x47494d52u /* "RMIG" little-endian */
/* 2: parallel channels (HELLO channels, RESERVE token, ROUND channel, JOIN/JOINED).
 * 3: HELLO block entries of 280 bytes: 256-byte names, page size, flags. */
#define WIRE_VERSION 3
#define WIRE_HDR_SIZE 16
#define WIRE_NAME_MAX 256 /* RMIG_BLOCK_NAME_MAX */
#define WIRE_REASON_MAX 160
/* Most channels one session may open (RMIG_CHANNELS_MAX). */
#define WIRE_CHANNELS_MAX 16
#define WIRE_TOKEN_SIZE 16

/* Capability bits offered in HELLO and answered in RESERVE. */
#define WIRE_CAP_ZERO_SKIP (1ull << 0) /* all-zero pages may be skipped */
#define WIRE_CAP_STREAM (1ull << 1)    /* STREAM messages both ways */
#define WIRE_CAPS_KNOWN (WIRE_CAP_ZERO_SKIP | WIRE_CAP_STREAM)

/* RESERVE flags */
#define WIRE_RES_ZEROED (1u << 0) /* destination RAM reads as zeros */

enum wire_type {
	WIRE_HELLO = 1,   /* source -> dest: caps, page size, the blocks */
	WIRE_RESERVE = 2, /* dest -> source: yes (rkeys) or no (reason) */
	WIRE_ROUND = 3,   /* source -> dest: a round's writes are placed */
	WIRE_STREAM = 4,  /* either way: stream bytes */
	WIRE_END = 5,     /* source -> dest: everything sent, please commit */
	WIRE_COMMIT = 6,  /* dest -> source: committed (or not, with reason) */
	WIRE_CANCEL = 7,  /* either way: rolled back, with reason */
	WIRE_JOIN = 8,    /* source -> dest, first on an extra channel: the token */
	WIRE_JOINED = 9,  /* dest -> source on that channel: its keys (or no) */
};
#define WIRE_TYPE_LAST WIRE_JOINED

struct wire_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* payload bytes after the header */
	uint32_t pad;
};

/* HELLO payload: fixed part then nblocks entries. */
#define WIRE_HELLO_SIZE 32
#define WIRE_BLOCK_SIZE 280
struct wire_hello {
	uint64_t caps;
	uint32_t page_size;
	uint32_t nblocks;
	uint64_t total; /* sum of the block lengths */
	uint32_t channels; /* 1..WIRE_CHANNELS_MAX connections the source will open */
	uint32_t pad;
};
struct wire_block {
	char name[WIRE_NAME_MAX]; /* NUL-terminated, NUL-padded */
	uint64_t len;
	uint32_t page_size;       /* the block's own: a power of two >= HELLO's, divides len */
	uint32_t flags;           /* WIRE_BLOCK_* */
	uint64_t pad;
};
/* Block flags (RMIG_BLOCK_*). */
#define WIRE_BLOCK_DEST_ZEROED (1u << 0)
#define WIRE_BLOCK_FLAGS_KNOWN WIRE_BLOCK_DEST_ZEROED
#define WIRE_BLOCKS_MAX ((RMIG_MSG_MAX - WIRE_HDR_SIZE - WIRE_HELLO_SIZE) / WIRE_BLOCK_SIZE)

/* RESERVE payload: fixed part then nblocks rkeys (yes only).  JOINED
 * has the same layout (caps, flags and token zero). */
#define WIRE_RESERVE_SIZE (24 + WIRE_REASON_MAX + WIRE_TOKEN_SIZE)
struct wire_reserve {
	int32_t status; /* 0 yes, -errno no */
	uint32_t nblocks;
	uint64_t caps;
	uint32_t flags;
	uint32_t pad;
	char reason[WIRE_REASON_MAX];
	/* Extra channels present it in JOIN; all zero with one channel or a no. */
	uint8_t token[WIRE_TOKEN_SIZE];
};

/* JOIN payload: the session's token and which channel this connection is. */
#define WIRE_JOIN_SIZE (WIRE_TOKEN_SIZE + 8)
struct wire_join {
	uint8_t token[WIRE_TOKEN_SIZE];
	uint32_t channel;  /* 1..channels-1 */
	uint32_t channels; /* as in HELLO */
};

/* Each channel sends its own ROUND on its own connection after its last
 * write of the round; the counts are that channel's. */
#define WIRE_ROUND_SIZE 40
struct wire_round {
	uint32_t round;
	uint32_t final;
	uint64_t pages;
	uint64_t bytes;
	uint64_t zero_pages;
	uint32_t channel;
	uint32_t pad;
};

#define WIRE_END_SIZE 24
struct wire_end {
	uint32_t rounds;
	uint32_t pad;
	uint64_t bytes;
	uint64_t stream_bytes;
};

/* COMMIT and CANCEL share a status + reason payload. */
#define WIRE_STATUS_SIZE (8 + WIRE_REASON_MAX)
struct wire_status {
	int32_t status;
	uint32_t pad;
	char reason[WIRE_REASON_MAX];
};

#define WIRE_STREAM_MAX (RMIG_MSG_MAX - WIRE_HDR_SIZE)

/* Header: encode writes 16 bytes; decode checks magic, version, type,
 * padding and that the payload length matches msglen exactly. */
void wire_hdr_encode(uint8_t *out, uint16_t type, uint32_t len);
int wire_hdr_decode(const uint8_t *in, size_t msglen, struct wire_hdr *h);

/* Each encoder fills a whole message (header included) into out (of cap
 * bytes) and returns its length or -EMSGSIZE.  Each decoder takes the
 * payload (after the header) and its length, returns 0 or -EPROTO/-EINVAL
 * and a phrase in why. */
int wire_hello_encode(uint8_t *out, size_t cap, const struct wire_hello *h,
		      const struct wire_block *b);
int wire_hello_decode(const uint8_t *p, size_t len, struct wire_hello *h,
		      struct wire_block *b, uint32_t bmax, char *why, size_t whylen);
int wire_reserve_encode(uint8_t *out, size_t cap, const struct wire_reserve *r,
			const struct rmig_rkey *keys);
/* JOINED: a RESERVE-layout message of type WIRE_JOINED. */
int wire_joined_encode(uint8_t *out, size_t cap, const struct wire_reserve *r,
		       const struct rmig_rkey *keys);
int wire_join_encode(uint8_t *out, size_t cap, const struct wire_join *j);
int wire_join_decode(const uint8_t *p, size_t len, struct wire_join *j,
		     char *why, size_t whylen);
int wire_reserve_decode(const uint8_t *p, size_t len, struct wire_reserve *r,
			struct rmig_rkey *keys, uint32_t kmax, char *why, size_t whylen);
int wire_round_encode(uint8_t *out, size_t cap, const struct wire_round *r);
int wire_round_decode(const uint8_t *p, size_t len, struct wire_round *r,
		      char *why, size_t whylen);
int wire_end_encode(uint8_t *out, size_t cap, const struct wire_end *e);
int wire_end_decode(const uint8_t *p, size_t len, struct wire_end *e,
		    char *why, size_t whylen);
int wire_status_encode(uint8_t *out, size_t cap, uint16_t type,
		       const struct wire_status *s);
int wire_status_decode(const uint8_t *p, size_t len, struct wire_status *s,
		       char *why, size_t whylen);
int wire_stream_encode(uint8_t *out, size_t cap, const void *data, size_t len);

const char *wire_type_name(unsigned type);

#endif
