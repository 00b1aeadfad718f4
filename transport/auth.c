/* SPDX-License-Identifier: MIT */
/*
 * Peer authentication, run by the generic layer on every new connection of
 * every backend before the caller sees it (so before any region can be
 * registered on it or any key sent over it).  Messages: auth_wire.h.
 *
 *   destination (accept)                 source (connect)
 *   CHALLENGE nonce_d          ------->
 *                              <-------  RESPONSE nonce_s, mac_s
 *   verify mac_s (else RESULT refusal)
 *   PROOF mac_d                ------->
 *                              <-------  verify mac_d; RESULT ok or refusal
 *
 * Both nonces are fresh 32-byte random values, so a recorded answer never
 * verifies again (replay), and the role byte in each MAC stops a peer from
 * reflecting one side's MAC back as the other's.  An end without a key
 * (RMIG_EP_INSECURE) says so in its flags; the other end refuses it unless
 * it runs without a key too.
 */
#define _GNU_SOURCE
#include "auth.h"
#include "auth_wire.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define KEY_FIX "give both ends the same pre-shared key"

int auth_key_new(const struct rmig_ep_opts *o, struct rmig_auth_key **out)
{
	struct rmig_auth_key *k;

	if (!o->psk && !(o->flags & RMIG_EP_INSECURE))
		return rmig_set_error(NULL, -EACCES,
				      "no pre-shared key: set psk in the options or allow unauthenticated peers explicitly (RMIG_EP_INSECURE in flags)");
	if (o->psk && (o->psk_len < RMIG_PSK_MIN || o->psk_len > RMIG_PSK_MAX))
		return rmig_set_error(NULL, -EINVAL,
				      "a pre-shared key of %zu bytes is refused: use %d to %d random bytes (head -c 32 /dev/urandom > key.bin)",
				      o->psk_len, RMIG_PSK_MIN, RMIG_PSK_MAX);
	k = calloc(1, sizeof(*k));
	if (!k)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for the key");
	k->insecure = !o->psk;
	if (o->psk) {
		memcpy(k->k, o->psk, o->psk_len);
		k->len = o->psk_len;
	}
	*out = k;
	return 0;
}

void auth_key_free(struct rmig_auth_key *k)
{
	if (!k)
		return;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

/* HMAC-SHA256(K, AUTH_LABEL || role || a || b). */
static int auth_mac(const struct rmig_auth_key *k, char role, const uint8_t *a,
		    const uint8_t *b, uint8_t out[AUTH_MAC_LEN])
{
	uint8_t data[sizeof(AUTH_LABEL) + 1 + 2 * AUTH_NONCE_LEN];
	unsigned int olen = 0;

	memcpy(data, AUTH_LABEL, sizeof(AUTH_LABEL));
	data[sizeof(AUTH_LABEL)] = (uint8_t)role;
	memcpy(data + sizeof(AUTH_LABEL) + 1, a, AUTH_NONCE_LEN);
	memcpy(data + sizeof(AUTH_LABEL) + 1 + AUTH_NONCE_LEN, b, AUTH_NONCE_LEN);
	if (!HMAC(EVP_sha256(), k->k, (int)k->len, data, sizeof(data), out, &olen) ||
	    olen != AUTH_MAC_LEN)
		return -EIO;
	return 0;
}

/* One handshake's state, both roles. */
struct auth_ctx {
	struct rmig_ep *ep;
	const struct rmig_auth_key *k;
	uint64_t deadline;
	int timeout_ms;
};

static int auth_send(struct auth_ctx *c, const struct auth_msg *m)
{
	uint8_t raw[AUTH_MSG_MAX];
	size_t len = auth_msg_encode(m, raw);
	int rc = rmig_send(c->ep, raw, len);

	if (rc)
		return rmig_set_error(c->ep, rc, "connection lost during authentication: %s",
				      rmig_ep_error(c->ep));
	return 0;
}

/* Best effort: tell the peer why it is refused; the phrase is already set. */
static int auth_refuse(struct auth_ctx *c, uint32_t code, int rc)
{
	char why[RMIG_ERR_MAX];
	struct auth_msg m = { .type = AUTH_RESULT, .code = code };

	memcpy(why, c->ep->err, sizeof(why));
	auth_send(c, &m);
	return rmig_set_error(c->ep, rc, "%s", why);
}

/* The peer's refusal, in our words. */
static int auth_refused(struct auth_ctx *c, uint32_t code)
{
	switch (code) {
	case AUTH_KEY_DIFFERS:
		return rmig_set_error(c->ep, -EACCES,
				      "peer refused our authentication: our key differs from its; " KEY_FIX);
	case AUTH_NEED_KEY:
		return rmig_set_error(c->ep, -EACCES,
				      "peer requires authentication and this end runs without a key (insecure); " KEY_FIX);
	case AUTH_HAVE_NOKEY:
		return rmig_set_error(c->ep, -EACCES,
				      "peer runs without a key (insecure) and this end requires authentication; " KEY_FIX);
	default:
		return rmig_set_error(c->ep, -EPROTO,
				      "peer did not understand our authentication message: use the same rdmamig version on both ends");
	}
}

/*
 * Receive the next message, which must be of type want (or a RESULT
 * refusing us).  Anything else is refused and named.
 */
static int auth_recv(struct auth_ctx *c, uint8_t want, struct auth_msg *m)
{
	uint8_t raw[AUTH_MSG_MAX];
	int left = rmig_left_ms(c->deadline);
	int n = left ? rmig_recv(c->ep, raw, sizeof(raw), left) : -ETIMEDOUT;

	if (n == -ETIMEDOUT)
		return rmig_set_error(c->ep, n,
				      "peer did not complete authentication within %d ms: is it rdmamig of this version, given a key?",
				      c->timeout_ms);
	if (n == -EMSGSIZE) {
		rmig_set_error(c->ep, -EPROTO,
			       "peer sent an authentication message larger than %d bytes: not an rdmamig peer of this version",
			       AUTH_MSG_MAX);
		return auth_refuse(c, AUTH_MALFORMED, -EPROTO);
	}
	if (n < 0)
		return rmig_set_error(c->ep, n,
				      "connection lost during authentication (%s): the peer may have refused us; " KEY_FIX,
				      rmig_ep_error(c->ep));
	if (auth_msg_decode(raw, (size_t)n, m) ||
	    (m->type != want && (m->type != AUTH_RESULT || m->code == AUTH_OK))) {
		rmig_set_error(c->ep, -EPROTO,
			       "peer sent a malformed authentication message (%d bytes): not an rdmamig peer of this version",
			       n);
		return auth_refuse(c, AUTH_MALFORMED, -EPROTO);
	}
	if (m->type != want)
		return auth_refused(c, m->code);
	return 0;
}

/* The peer's flags against our key: both keyed, or both without. */
static int auth_match_keys(struct auth_ctx *c, const struct auth_msg *m)
{
	int peer_nokey = !!(m->flags & AUTH_F_NOKEY);

	if (peer_nokey && !c->k->insecure) {
		rmig_set_error(c->ep, -EACCES,
			       "peer runs without a key (insecure) and this end requires authentication; " KEY_FIX);
		return auth_refuse(c, AUTH_NEED_KEY, -EACCES);
	}
	if (!peer_nokey && c->k->insecure) {
		rmig_set_error(c->ep, -EACCES,
			       "peer requires authentication and this end runs without a key (insecure); " KEY_FIX);
		return auth_refuse(c, AUTH_HAVE_NOKEY, -EACCES);
	}
	return 0;
}

static int auth_verify(struct auth_ctx *c, char role, const uint8_t *a, const uint8_t *b,
		       const uint8_t *mac)
{
	uint8_t want[AUTH_MAC_LEN];
	int rc = auth_mac(c->k, role, a, b, want);

	if (rc)
		return rmig_set_error(c->ep, rc, "cannot compute an HMAC (OpenSSL failed)");
	if (CRYPTO_memcmp(want, mac, AUTH_MAC_LEN)) {
		rmig_set_error(c->ep, -EACCES,
			       "peer failed authentication: its key differs from ours; " KEY_FIX);
		return auth_refuse(c, AUTH_KEY_DIFFERS, -EACCES);
	}
	return 0;
}

static int auth_nonce(struct auth_ctx *c, uint8_t nonce[AUTH_NONCE_LEN])
{
	if (RAND_bytes(nonce, AUTH_NONCE_LEN) != 1)
		return rmig_set_error(c->ep, -EIO,
				      "cannot draw a random nonce (OpenSSL RAND_bytes failed)");
	return 0;
}

static int auth_dest(struct auth_ctx *c)
{
	struct auth_msg ch = { .type = AUTH_CHALLENGE }, resp, pr = { .type = AUTH_PROOF }, res;
	int rc;

	if (c->k->insecure)
		ch.flags = AUTH_F_NOKEY;
	else if ((rc = auth_nonce(c, ch.nonce)))
		return rc;
	if ((rc = auth_send(c, &ch)) || (rc = auth_recv(c, AUTH_RESPONSE, &resp)) ||
	    (rc = auth_match_keys(c, &resp)))
		return rc;
	if (c->k->insecure)
		return 0;
	if ((rc = auth_verify(c, 'S', ch.nonce, resp.nonce, resp.mac)))
		return rc;
	if ((rc = auth_mac(c->k, 'D', resp.nonce, ch.nonce, pr.mac)))
		return rmig_set_error(c->ep, rc, "cannot compute an HMAC (OpenSSL failed)");
	if ((rc = auth_send(c, &pr)) || (rc = auth_recv(c, AUTH_RESULT, &res)))
		return rc;
	return res.code == AUTH_OK ? 0 : auth_refused(c, res.code);
}

static int auth_source(struct auth_ctx *c)
{
	struct auth_msg ch, resp = { .type = AUTH_RESPONSE }, pr, ok = { .type = AUTH_RESULT };
	int rc;

	if ((rc = auth_recv(c, AUTH_CHALLENGE, &ch)) || (rc = auth_match_keys(c, &ch)))
		return rc;
	if (c->k->insecure) {
		resp.flags = AUTH_F_NOKEY;
		return auth_send(c, &resp);
	}
	if ((rc = auth_nonce(c, resp.nonce)))
		return rc;
	if ((rc = auth_mac(c->k, 'S', ch.nonce, resp.nonce, resp.mac)))
		return rmig_set_error(c->ep, rc, "cannot compute an HMAC (OpenSSL failed)");
	if ((rc = auth_send(c, &resp)) || (rc = auth_recv(c, AUTH_PROOF, &pr)) ||
	    (rc = auth_verify(c, 'D', resp.nonce, ch.nonce, pr.mac)))
		return rc;
	return auth_send(c, &ok);
}

int auth_run(struct rmig_ep *ep, const struct rmig_auth_key *k, int dest, int timeout_ms)
{
	struct auth_ctx c = { .ep = ep, .k = k, .deadline = rmig_deadline(timeout_ms),
			      .timeout_ms = timeout_ms };
	int rc = dest ? auth_dest(&c) : auth_source(&c);

	OPENSSL_cleanse(&c, sizeof(c));
	return rc;
}
