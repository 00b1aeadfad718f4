/* SPDX-License-Identifier: MIT */
/*
 * The peer-authentication messages (transport/auth.c), carried as control
 * messages of the backend before the caller sees the endpoint.  A 16-byte
 * little-endian header, then the type's fixed payload:
 *
 *   0  8  magic "RMIGAUTH"
 *   8  u8 version AUTH_VERSION
 *   9  u8 type    AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_PROOF, AUTH_RESULT
 *  10  u16 flags  AUTH_F_NOKEY: the sender runs without a key (insecure)
 *  12  u32 code   AUTH_RESULT: AUTH_OK or the refusal; otherwise 0
 *  16  payload    CHALLENGE: nonce_d[32]            (48 bytes in all)
 *                 RESPONSE:  nonce_s[32] mac_s[32]  (80)
 *                 PROOF:     mac_d[32]              (48)
 *                 RESULT:    nothing                (16)
 *
 * mac_s = HMAC-SHA256(K, AUTH_LABEL || 'S' || nonce_d || nonce_s)
 * mac_d = HMAC-SHA256(K, AUTH_LABEL || 'D' || nonce_s || nonce_d)
 * A message of another length, magic, version, type, flag or code is
 * malformed.
 */
#ifndef RMIG_AUTH_WIRE_H
#define RMIG_AUTH_WIRE_H

#include "../common/le.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AUTH_MAGIC "RMIGAUTH"
#define AUTH_VERSION 1
#define AUTH_HDR_SIZE 16
#define AUTH_NONCE_LEN 32
#define AUTH_MAC_LEN 32
#define AUTH_MSG_MAX (AUTH_HDR_SIZE + AUTH_NONCE_LEN + AUTH_MAC_LEN)
/* Domain separation: this protocol, this version. */
#define AUTH_LABEL "rdmamig-auth-v1"

enum auth_type {
	AUTH_CHALLENGE = 1, /* destination -> source */
	AUTH_RESPONSE = 2,  /* source -> destination */
	AUTH_PROOF = 3,     /* destination -> source */
	AUTH_RESULT = 4,    /* either way: accepted or why not */
};

#define AUTH_F_NOKEY 0x1u

/* AUTH_RESULT codes: what the sender concluded about the receiver. */
enum auth_code {
	AUTH_OK = 0,
	AUTH_KEY_DIFFERS = 1, /* the receiver's MAC did not verify */
	AUTH_NEED_KEY = 2,    /* the sender has a key, the receiver none */
	AUTH_HAVE_NOKEY = 3,  /* the sender has no key, the receiver one */
	AUTH_MALFORMED = 4,   /* the receiver's message was not understood */
	AUTH_CODE_MAX = AUTH_MALFORMED,
};

struct auth_msg {
	uint8_t type;
	uint16_t flags;
	uint32_t code;
	uint8_t nonce[AUTH_NONCE_LEN]; /* CHALLENGE, RESPONSE */
	uint8_t mac[AUTH_MAC_LEN];     /* RESPONSE, PROOF */
};

static inline size_t auth_msg_size(uint8_t type)
{
	switch (type) {
	case AUTH_CHALLENGE: return AUTH_HDR_SIZE + AUTH_NONCE_LEN;
	case AUTH_RESPONSE: return AUTH_HDR_SIZE + AUTH_NONCE_LEN + AUTH_MAC_LEN;
	case AUTH_PROOF: return AUTH_HDR_SIZE + AUTH_MAC_LEN;
	case AUTH_RESULT: return AUTH_HDR_SIZE;
	default: return 0;
	}
}

/* Encode into out (AUTH_MSG_MAX bytes); returns the length. */
static inline size_t auth_msg_encode(const struct auth_msg *m, uint8_t out[AUTH_MSG_MAX])
{
	size_t len = auth_msg_size(m->type), off = AUTH_HDR_SIZE;

	memset(out, 0, AUTH_MSG_MAX);
	memcpy(out, AUTH_MAGIC, 8);
	out[8] = AUTH_VERSION;
	out[9] = m->type;
	rmig_put_le16(out + 10, m->flags);
	rmig_put_le32(out + 12, m->code);
	if (m->type == AUTH_CHALLENGE || m->type == AUTH_RESPONSE) {
		memcpy(out + off, m->nonce, AUTH_NONCE_LEN);
		off += AUTH_NONCE_LEN;
	}
	if (m->type == AUTH_RESPONSE || m->type == AUTH_PROOF)
		memcpy(out + off, m->mac, AUTH_MAC_LEN);
	return len;
}

/*
 * Decode len bytes.  -EPROTO: not an auth message of this version (or
 * another length than its type has); -EINVAL: a reserved bit or an unknown
 * code.
 */
static inline int auth_msg_decode(const uint8_t *in, size_t len, struct auth_msg *m)
{
	size_t off = AUTH_HDR_SIZE;

	memset(m, 0, sizeof(*m));
	if (len < AUTH_HDR_SIZE || memcmp(in, AUTH_MAGIC, 8) || in[8] != AUTH_VERSION)
		return -EPROTO;
	m->type = in[9];
	if (!auth_msg_size(m->type) || len != auth_msg_size(m->type))
		return -EPROTO;
	m->flags = rmig_get_le16(in + 10);
	m->code = rmig_get_le32(in + 12);
	if (m->flags & ~AUTH_F_NOKEY)
		return -EINVAL;
	if (m->type == AUTH_RESULT ? m->code > AUTH_CODE_MAX || m->flags : m->code != 0)
		return -EINVAL;
	if (m->type == AUTH_PROOF && m->flags)
		return -EINVAL;
	if (m->type == AUTH_CHALLENGE || m->type == AUTH_RESPONSE) {
		memcpy(m->nonce, in + off, AUTH_NONCE_LEN);
		off += AUTH_NONCE_LEN;
	}
	if (m->type == AUTH_RESPONSE || m->type == AUTH_PROOF)
		memcpy(m->mac, in + off, AUTH_MAC_LEN);
	return 0;
}

#endif
