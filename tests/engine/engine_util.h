/* SPDX-License-Identifier: MIT */
/*
 * The engine unit tests' peer: builds the messages a source or a
 * destination would send (plugin/wire.c's encoders) and reads what the
 * engine sent over the fake transport (tests/fuzz/fake_transport.c).
 */
#ifndef RMIG_ENGINE_UTIL_H
#define RMIG_ENGINE_UTIL_H

#include "fake_transport.h"
#include "plugin/wire.h"
#include "testutil.h"
#include <rdmamig/plugin.h>

#include <stdint.h>

/* Every wait on the peer in these tests; a timeout path costs this. */
#define EU_TIMEOUT_MS 60
#define EU_PAGE 4096u
/* Two stripes (MIG_STRIPE, 2 MiB): a range spans two channels. */
#define EU_GUEST (4u << 20)

extern const struct rmig_plugin_ops *eu_ops;
extern uint8_t *eu_guest;     /* the source's RAM: EU_GUEST bytes */
extern uint8_t *eu_dest_mem;  /* the destination's RAM: EU_GUEST bytes */

/* A fresh fake (script mode) and guest: pages 0..15 data, the rest zero. */
void eu_reset(void);

/* --- the peer's messages, queued on endpoint ep -------------------------- */
/* RESERVE yes with a key covering each of the n blocks (lens), or no. */
void eu_push_reserve(unsigned ep, unsigned n, const uint64_t *lens, uint32_t flags);
void eu_push_refusal(unsigned ep, int status, const char *why);
void eu_push_joined(unsigned ep, unsigned n, const uint64_t *lens);
void eu_push_status(unsigned ep, uint16_t type, int status, const char *why);
void eu_push_round(unsigned ep, uint32_t round, uint32_t final, uint32_t channel,
		   uint64_t pages);
void eu_push_stream(unsigned ep, const void *data, size_t len);
void eu_push_end(unsigned ep, uint32_t rounds, uint64_t stream_bytes);
/* HELLO offering n blocks named "b0".. of len bytes each. */
void eu_push_hello(unsigned ep, unsigned n, uint64_t len, uint32_t page_size,
		   uint32_t channels);
/* A header with another wire version (and a valid payload length 0). */
void eu_push_version(unsigned ep, uint16_t version, uint16_t type);

/* --- what the engine sent ------------------------------------------------- */
/* Everything below skips channel 0's keepalives (empty STREAM messages a
 * source sends while a round's pages flow): k counts the others. */
unsigned eu_nsent(unsigned ep);
/* Type of the k-th message sent on ep (0: none). */
unsigned eu_sent_type(unsigned ep, unsigned k);
/* Type of the last message sent on ep (0: none). */
unsigned eu_last_type(unsigned ep);
/* The last message on ep decoded as COMMIT/CANCEL (status, reason). */
int eu_last_status(unsigned ep, struct wire_status *ws);
/* The k-th message on ep decoded as RESERVE/JOINED (0, or -1). */
int eu_sent_reserve(unsigned ep, unsigned k, struct wire_reserve *r);
int eu_sent_round(unsigned ep, unsigned k, struct wire_round *r);
/* Index of the first message of type t sent on ep, or -1. */
int eu_find_sent(unsigned ep, unsigned t);

/* --- sessions --------------------------------------------------------------- */
void eu_config(struct rmig_plugin_config *c, unsigned channels);
/* A source with the guest as one block ("pc.ram", flags), not set up. */
struct rmig_mig *eu_source(unsigned channels, uint32_t flags);
/* A source set up (PRECOPY) against a peer that grants everything. */
struct rmig_mig *eu_source_ready(unsigned channels, uint32_t flags);
/* One round over the whole guest: 0 or the round_end/save error. */
int eu_round(struct rmig_mig *s, unsigned flags);
/* A destination that accepted an offer of one EU_GUEST block (RESERVE). */
struct rmig_mig *eu_dest(struct rmig_mig_listener **l, unsigned channels);
/* ...and granted it (PRECOPY); channels > 1 join with the right token. */
struct rmig_mig *eu_dest_granted(struct rmig_mig_listener **l, unsigned channels);
/* Error phrase contains the words. */
int eu_err_has(const struct rmig_mig *s, const char *words);

#endif
