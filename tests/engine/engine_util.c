/* SPDX-License-Identifier: MIT */
/* The engine unit tests' peer and session helpers (engine_util.h). */
#define _GNU_SOURCE
#include "engine_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct rmig_plugin_ops *eu_ops;
uint8_t *eu_guest, *eu_dest_mem;

static const uint8_t psk[32] = "the engine unit tests' own key!";

void eu_reset(void)
{
	if (!eu_ops)
		eu_ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION);
	if (!eu_guest)
		eu_guest = aligned_alloc(EU_PAGE, EU_GUEST);
	if (!eu_dest_mem)
		eu_dest_mem = aligned_alloc(EU_PAGE, EU_GUEST);
	if (!eu_ops || !eu_guest || !eu_dest_mem)
		abort();
	memset(eu_guest, 0, EU_GUEST);
	for (unsigned p = 0; p < 16; p++)
		memset(eu_guest + p * EU_PAGE, 0x40 + p, EU_PAGE);
	/* Data in the second stripe too, for the second channel. */
	memset(eu_guest + (2u << 20), 0x77, EU_PAGE);
	memset(eu_dest_mem, 0, EU_GUEST);
	fake_script();
}

static void push_msg(unsigned ep, const uint8_t *m, int len)
{
	if (len < 0)
		abort();
	fake_push(ep, m, (size_t)len);
}

static void push_reserve_type(unsigned ep, uint16_t type, unsigned n, const uint64_t *lens,
			      uint32_t flags)
{
	static uint8_t m[RMIG_MSG_MAX];
	struct wire_reserve r = { .nblocks = n, .caps = WIRE_CAPS_KNOWN, .flags = flags };
	struct rmig_rkey keys[8];

	for (unsigned i = 0; i < n && i < 8; i++)
		keys[i] = (struct rmig_rkey){ .len = lens[i], .key = 7,
					      .flags = RMIG_ACCESS_REMOTE_WRITE };
	memset(r.token, 0x5a, sizeof(r.token));
	push_msg(ep, m, type == WIRE_RESERVE ? wire_reserve_encode(m, sizeof(m), &r, keys)
					     : wire_joined_encode(m, sizeof(m), &r, keys));
}

void eu_push_reserve(unsigned ep, unsigned n, const uint64_t *lens, uint32_t flags)
{
	push_reserve_type(ep, WIRE_RESERVE, n, lens, flags);
}

void eu_push_joined(unsigned ep, unsigned n, const uint64_t *lens)
{
	push_reserve_type(ep, WIRE_JOINED, n, lens, 0);
}

void eu_push_refusal(unsigned ep, int status, const char *why)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_RESERVE_SIZE];
	struct wire_reserve r = { .status = status };

	snprintf(r.reason, sizeof(r.reason), "%s", why);
	push_msg(ep, m, wire_reserve_encode(m, sizeof(m), &r, NULL));
}

void eu_push_status(unsigned ep, uint16_t type, int status, const char *why)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_STATUS_SIZE];
	struct wire_status ws = { .status = status };

	snprintf(ws.reason, sizeof(ws.reason), "%s", why);
	push_msg(ep, m, wire_status_encode(m, sizeof(m), type, &ws));
}

void eu_push_round(unsigned ep, uint32_t round, uint32_t final, uint32_t channel,
		   uint64_t pages)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_ROUND_SIZE];
	struct wire_round r = { .round = round, .final = final, .channel = channel,
				.pages = pages, .bytes = pages * EU_PAGE };

	push_msg(ep, m, wire_round_encode(m, sizeof(m), &r));
}

void eu_push_stream(unsigned ep, const void *data, size_t len)
{
	static uint8_t m[RMIG_MSG_MAX];

	push_msg(ep, m, wire_stream_encode(m, sizeof(m), data, len));
}

void eu_push_end(unsigned ep, uint32_t rounds, uint64_t stream_bytes)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_END_SIZE];
	struct wire_end e = { .rounds = rounds, .stream_bytes = stream_bytes };

	push_msg(ep, m, wire_end_encode(m, sizeof(m), &e));
}

void eu_push_hello(unsigned ep, unsigned n, uint64_t len, uint32_t page_size,
		   uint32_t channels)
{
	static uint8_t m[RMIG_MSG_MAX];
	struct wire_hello h = { .caps = WIRE_CAPS_KNOWN, .page_size = page_size,
				.nblocks = n, .total = n * len, .channels = channels };
	struct wire_block b[8];

	memset(b, 0, sizeof(b));
	for (unsigned i = 0; i < n && i < 8; i++) {
		snprintf(b[i].name, sizeof(b[i].name), "b%u", i);
		b[i].len = len;
		b[i].page_size = page_size;
	}
	push_msg(ep, m, wire_hello_encode(m, sizeof(m), &h, b));
}

void eu_push_version(unsigned ep, uint16_t version, uint16_t type)
{
	uint8_t m[WIRE_HDR_SIZE];

	wire_hdr_encode(m, type, 0);
	m[4] = (uint8_t)version; /* the version field, little-endian */
	m[5] = (uint8_t)(version >> 8);
	fake_push(ep, m, sizeof(m));
}

/* An empty STREAM: channel 0's keepalive during a long round (source.c). */
static int keepalive(unsigned ep, unsigned raw)
{
	static uint8_t m[RMIG_MSG_MAX];
	size_t n = fake_sent(ep, raw, m, sizeof(m));
	struct wire_hdr h;

	return n && !wire_hdr_decode(m, n, &h) && h.type == WIRE_STREAM && !h.len;
}

/* Messages sent on ep other than keepalives (they come whenever a batch
 * is posted a third of the deadline after the last one). */
unsigned eu_nsent(unsigned ep)
{
	unsigned n = 0;

	for (unsigned raw = 0; raw < fake_nsent(ep); raw++)
		n += !keepalive(ep, raw);
	return n;
}

/* The k-th message on ep, keepalives skipped. */
static size_t sent(unsigned ep, unsigned k, uint8_t *m, struct wire_hdr *h)
{
	size_t n = 0;

	for (unsigned raw = 0; raw < fake_nsent(ep); raw++) {
		if (keepalive(ep, raw))
			continue;
		if (k--)
			continue;
		n = fake_sent(ep, raw, m, RMIG_MSG_MAX);
		break;
	}
	if (!n || wire_hdr_decode(m, n, h))
		return 0;
	return n;
}

unsigned eu_sent_type(unsigned ep, unsigned k)
{
	static uint8_t m[RMIG_MSG_MAX];
	struct wire_hdr h;

	return sent(ep, k, m, &h) ? h.type : 0;
}

unsigned eu_last_type(unsigned ep)
{
	unsigned n = eu_nsent(ep);

	return n ? eu_sent_type(ep, n - 1) : 0;
}

int eu_find_sent(unsigned ep, unsigned t)
{
	for (unsigned k = 0; k < eu_nsent(ep); k++)
		if (eu_sent_type(ep, k) == t)
			return (int)k;
	return -1;
}

int eu_last_status(unsigned ep, struct wire_status *ws)
{
	static uint8_t m[RMIG_MSG_MAX];
	unsigned n = eu_nsent(ep);
	struct wire_hdr h;
	char why[128];

	if (!n || !sent(ep, n - 1, m, &h))
		return -1;
	return wire_status_decode(m + WIRE_HDR_SIZE, h.len, ws, why, sizeof(why)) ? -1 : 0;
}

int eu_sent_reserve(unsigned ep, unsigned k, struct wire_reserve *r)
{
	static uint8_t m[RMIG_MSG_MAX];
	static struct rmig_rkey keys[WIRE_BLOCKS_MAX];
	struct wire_hdr h;
	char why[128];

	if (!sent(ep, k, m, &h))
		return -1;
	return wire_reserve_decode(m + WIRE_HDR_SIZE, h.len, r, keys, WIRE_BLOCKS_MAX, why,
				   sizeof(why)) ? -1 : 0;
}

int eu_sent_round(unsigned ep, unsigned k, struct wire_round *r)
{
	static uint8_t m[RMIG_MSG_MAX];
	struct wire_hdr h;
	char why[128];

	if (!sent(ep, k, m, &h) || h.type != WIRE_ROUND)
		return -1;
	return wire_round_decode(m + WIRE_HDR_SIZE, h.len, r, why, sizeof(why)) ? -1 : 0;
}

void eu_config(struct rmig_plugin_config *c, unsigned channels)
{
	*c = (struct rmig_plugin_config){ .size = sizeof(*c), .backend = "fake",
					  .addr = "fake:1", .timeout_ms = EU_TIMEOUT_MS,
					  .channels = channels, .memlock_budget = 1ull << 30,
					  .psk = psk, .psk_len = sizeof(psk) };
}

struct rmig_mig *eu_source(unsigned channels, uint32_t flags)
{
	struct rmig_plugin_config c;
	struct rmig_block_desc d = { .size = sizeof(d), .name = "pc.ram", .host = eu_guest,
				     .len = EU_GUEST, .flags = flags };
	struct rmig_mig *s = NULL;

	eu_config(&c, channels);
	/* Channel workers must start within the timeout: on a loaded
	 * machine that takes longer than the peer's timeouts tested here. */
	if (channels > 1)
		c.timeout_ms = 5000;
	if (eu_ops->open(&c, &s) || eu_ops->add_ram_block2(s, &d) != 0)
		abort();
	return s;
}

struct rmig_mig *eu_source_ready(unsigned channels, uint32_t flags)
{
	uint64_t len = EU_GUEST;
	struct rmig_mig *s = eu_source(channels, flags);

	eu_push_reserve(0, 1, &len, 0);
	for (unsigned i = 1; i < channels; i++)
		eu_push_joined(i, 1, &len);
	if (eu_ops->setup(s)) {
		fprintf(stderr, "setup: %s\n", eu_ops->error(s));
		eu_ops->close(s);
		return NULL;
	}
	return s;
}

int eu_round(struct rmig_mig *s, unsigned flags)
{
	struct rmig_page_range r = { .block = 0, .offset = 0, .len = EU_GUEST };
	struct rmig_round_stats st;
	int rc;

	if ((rc = eu_ops->round_start(s, flags)) || (rc = eu_ops->save_pages(s, &r, 1)))
		return rc;
	return eu_ops->round_end(s, &st);
}

struct rmig_mig *eu_dest(struct rmig_mig_listener **l, unsigned channels)
{
	struct rmig_plugin_config c;
	struct rmig_mig *s = NULL;

	eu_config(&c, 0);
	if (eu_ops->listen(&c, l))
		abort();
	eu_push_hello(0, 1, EU_GUEST, EU_PAGE, channels);
	if (eu_ops->accept(*l, EU_TIMEOUT_MS, &s))
		return NULL;
	return s;
}

/* The source's side of a join: once the destination's RESERVE (with the
 * token) goes out on channel 0, channels 1.. say JOIN with that token. */
static unsigned join_channels;
static void join_on_reserve(unsigned ep, const void *msg, size_t len)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_JOIN_SIZE];
	struct rmig_rkey keys[1];
	struct wire_reserve r;
	struct wire_hdr h;
	char why[128];

	if (ep != 0 || wire_hdr_decode(msg, len, &h) || h.type != WIRE_RESERVE ||
	    wire_reserve_decode((const uint8_t *)msg + WIRE_HDR_SIZE, h.len, &r, keys, 1, why,
				sizeof(why)))
		return;
	for (unsigned i = 1; i < join_channels; i++) {
		struct wire_join j = { .channel = i, .channels = join_channels };
		memcpy(j.token, r.token, sizeof(j.token));
		push_msg(i, m, wire_join_encode(m, sizeof(m), &j));
	}
}

struct rmig_mig *eu_dest_granted(struct rmig_mig_listener **l, unsigned channels)
{
	struct rmig_mig *s = eu_dest(l, channels);

	if (!s || eu_ops->load_register_block(s, 0, eu_dest_mem))
		return NULL;
	fake_remote_ok = 1;
	join_channels = channels;
	fake_on_send = join_on_reserve;
	if (eu_ops->load_grant(s))
		return NULL;
	return s;
}

int eu_err_has(const struct rmig_mig *s, const char *words)
{
	const char *e = eu_ops->error(s);

	if (!strstr(e, words)) {
		fprintf(stderr, "error phrase \"%s\" lacks \"%s\"\n", e, words);
		return 0;
	}
	return 1;
}
