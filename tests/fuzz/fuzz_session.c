/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a whole migration session facing a hostile peer.  The
 * session engine (plugin/) runs as a framework drives it, through the
 * plugin ops table, over a fake transport whose rmig_recv hands out the
 * fuzzer's bytes as the peer's messages.  The first byte picks the side:
 *
 *   even: destination. The peer's HELLO (the RAM block table), then
 *         ROUND/STREAM/END/CANCEL in any order; the framework places
 *         the blocks, grants, reads the stream, commits.
 *   odd:  source. One 64 KiB block; the peer's RESERVE (keys), then its
 *         answer to END (COMMIT/CANCEL or anything else).
 *
 * Then: [u16 length][message] ... up to the end of the input (after that
 * the peer is gone).  Whatever arrives, the session must not crash, leak,
 * send a malformed message, write outside the keys it was given, keep a
 * memory region registered once it ends, or grant remote write before the
 * peer's HELLO was accepted.
 */
#include "fuzz.h"
#include "plugin/session.h"
#include "fake_transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GUEST (1u << 20) /* the framework refuses larger offers */

static int bad_control(const void *msg, size_t len)
{
	struct wire_hdr h;

	return wire_hdr_decode(msg, len, &h);
}

/* --- the framework ------------------------------------------------------ */

static const struct rmig_plugin_config cfg = {
	.size = sizeof(cfg), .backend = "fake", .addr = "fake:1", .timeout_ms = 1,
	.memlock_budget = 64ull << 20,
	/* A key, as every real session has (the fake transport ignores it). */
	.psk = "fuzz_session's key", .psk_len = 18,
};

static void destination(const struct rmig_plugin_ops *ops)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	uint8_t *mem[8] = { 0 }, buf[4096];
	uint64_t total = 0;
	int n, rc = 0;

	if (ops->listen(&cfg, &l))
		abort();
	/* fake_remote_ok is 0 until the framework grants: the fake aborts if
	 * the engine opens RAM to the peer any earlier (while the offer is
	 * read and the blocks are placed). */
	if (ops->accept(l, 1, &s)) {
		ops->listen_close(l);
		return;
	}
	n = ops->load_block_count(s);
	if (n <= 0)
		abort(); /* accepted an offer without blocks */
	/* ABI 2's view: names up to 255 bytes (ABI 1's load_block refuses
	 * those over 63 with -ENAMETOOLONG, which is not a defect). */
	for (int i = 0; i < n; i++) {
		struct rmig_block_info2 bi = { .size = sizeof(bi) };
		if (ops->load_block2(s, (uint32_t)i, &bi) || !bi.len || bi.len % 4096 ||
		    !bi.page_size || bi.len % bi.page_size ||
		    !memchr(bi.name, 0, sizeof(bi.name)) || !bi.name[0])
			abort();
		total += bi.len;
	}
	if (n > 8 || total > MAX_GUEST) {
		ops->load_refuse(s, -ENOMEM, "too large for the fuzzer");
	} else {
		for (int i = 0; i < n && !rc; i++) {
			struct rmig_block_info2 bi = { .size = sizeof(bi) };
			ops->load_block2(s, (uint32_t)i, &bi);
			mem[i] = aligned_alloc(4096, bi.len);
			if (!mem[i])
				abort();
			rc = ops->load_register_block(s, (uint32_t)i, mem[i]);
		}
		fake_remote_ok = 1;
		if (!rc && !ops->load_grant(s)) {
			long got;
			while ((got = ops->stream_read(s, buf, sizeof(buf), 1)) > 0)
				;
			if (!got)
				ops->load_commit(s);
		}
	}
	if (ops->state(s) == RMIG_STATE_COMMIT && fake_live_mrs)
		abort(); /* committed with guest RAM still open to the peer */
	ops->close(s);
	ops->listen_close(l);
	for (int i = 0; i < 8; i++)
		free(mem[i]);
}

static void source(const struct rmig_plugin_ops *ops)
{
	static uint8_t guest[64 << 10] __attribute__((aligned(4096)));
	struct rmig_round_stats rs;
	struct rmig_page_range r = { .block = 0, .offset = 0, .len = sizeof(guest) };
	struct rmig_mig *s;

	memset(guest, 0x5a, sizeof(guest) / 2); /* the rest is zero pages */
	if (ops->open(&cfg, &s))
		abort();
	if (ops->add_ram_block(s, "pc.ram", guest, sizeof(guest)) < 0)
		abort();
	if (!ops->setup(s) && !ops->round_start(s, RMIG_ROUND_FINAL) &&
	    !ops->save_pages(s, &r, 1) && !ops->round_end(s, &rs))
		ops->finish(s);
	if (fake_remote_mrs)
		abort(); /* the source's RAM never carries remote rights */
	ops->close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct rmig_plugin_ops *ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION);

	if (!size || !ops)
		return 0;
	fake_reset(data + 1, size - 1);
	fake_check_sent = bad_control;
	if (data[0] & 1)
		source(ops);
	else
		destination(ops);
	/* Closed: nothing registered, nothing posted, nothing said wrong. */
	if (fake_live_mrs || fake_nposted || fake_sent_bad)
		abort();
	return 0;
}
