/* SPDX-License-Identifier: MIT */
/* Peer authentication in the generic transport layer (auth.c). */
#ifndef RMIG_TRANSPORT_AUTH_H
#define RMIG_TRANSPORT_AUTH_H

#include <rdmamig/transport.h>

/* A copy of the caller's key (or none, insecure), owned by the generic layer. */
struct rmig_auth_key {
	int insecure;
	size_t len;
	uint8_t k[RMIG_PSK_MAX];
};

/*
 * The policy: a key of RMIG_PSK_MIN..RMIG_PSK_MAX bytes, or none with
 * RMIG_EP_INSECURE; anything else is refused with the phrase.
 */
int auth_key_new(const struct rmig_ep_opts *o, struct rmig_auth_key **out);
/* Wipes the key. */
void auth_key_free(struct rmig_auth_key *k);

/*
 * Mutual challenge-response on a freshly connected ep, within timeout_ms
 * overall.  dest: the accepting side, which challenges first.  On failure
 * the peer is told why (best effort), the phrase is set and the caller
 * closes ep.
 */
int auth_run(struct rmig_ep *ep, const struct rmig_auth_key *k, int dest,
	     int timeout_ms);

#endif
