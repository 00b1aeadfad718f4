/* SPDX-License-Identifier: MIT */
/*
 * The session state machine (plugin/), unit-tested over the fake
 * transport: the engine is driven through the plugin ops table as a
 * framework drives it, and the test plays the peer (engine_util.c): it
 * queues the peer's messages, reads what the engine sent, and injects
 * connection failures.  Each test asserts the return code, the state, the
 * error phrase and what went over the wire; none needs a network.
 *
 *   RESERVE -> SETUP -> PRECOPY -> STOPCOPY -> COMMIT, and ROLLED_BACK
 *   from each state before COMMIT (cancel, peer's CANCEL, peer lost,
 *   refusal, bad message).
 */
#define _GNU_SOURCE
#include "engine_util.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

static int setup_each(void)
{
	eu_reset();
	return 0;
}

#define ST(s) eu_ops->state(s)

/* Nothing registered, nothing posted once a session is closed. */
static void close_clean(struct rmig_mig *s)
{
	eu_ops->close(s);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	CU_ASSERT_EQUAL(fake_nposted, 0);
	CU_ASSERT_FALSE(fake_sent_bad);
	for (unsigned i = 0; i < fake_neps(); i++)
		CU_ASSERT_TRUE(fake_closed(i));
}

/* ---- source: the whole way, and each transition --------------------------- */

static void test_source_happy_path(void)
{
	struct rmig_mig_stats st = { .size = sizeof(st) };
	struct wire_round r;
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_RESERVE);
	uint64_t len = EU_GUEST;
	eu_push_reserve(0, 1, &len, 0);
	CU_ASSERT_EQUAL_FATAL(eu_ops->setup(s), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	CU_ASSERT_EQUAL(eu_sent_type(0, 0), WIRE_HELLO);
	CU_ASSERT_EQUAL(fake_live_mrs, 1); /* the block, local access only */
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);

	/* Round 0: every page written (no zero skip without DEST_ZEROED). */
	CU_ASSERT_EQUAL(eu_round(s, 0), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	CU_ASSERT_EQUAL(fake_written, EU_GUEST);
	CU_ASSERT_EQUAL_FATAL(eu_sent_round(0, 1, &r), 0);
	CU_ASSERT_EQUAL(r.round, 0);
	CU_ASSERT_EQUAL(r.final, 0);
	CU_ASSERT_EQUAL(r.channel, 0);
	CU_ASSERT_EQUAL(r.pages, EU_GUEST / EU_PAGE);

	/* The final round: STOPCOPY, then device state and END. */
	CU_ASSERT_EQUAL(eu_ops->round_start(s, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	CU_ASSERT_EQUAL(eu_ops->round_end(s, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(eu_sent_round(0, 2, &r), 0);
	CU_ASSERT_EQUAL(r.round, 1);
	CU_ASSERT_EQUAL(r.final, 1);
	CU_ASSERT_EQUAL(r.pages, 0);
	CU_ASSERT_EQUAL(eu_ops->stream_write(s, "devstate", 8), 0);
	CU_ASSERT_EQUAL(eu_sent_type(0, 3), WIRE_STREAM);
	eu_push_status(0, WIRE_COMMIT, 0, "");
	CU_ASSERT_EQUAL(eu_ops->finish(s), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_COMMIT);
	CU_ASSERT_EQUAL(eu_sent_type(0, 4), WIRE_END);
	CU_ASSERT_EQUAL(fake_live_mrs, 0); /* deregistered at commit */
	CU_ASSERT_EQUAL(eu_ops->stats(s, &st), 0);
	CU_ASSERT_EQUAL(st.rounds, 2);
	CU_ASSERT_EQUAL(st.stream_bytes, 8);
	CU_ASSERT_EQUAL(st.bytes, EU_GUEST);
	CU_ASSERT_EQUAL(st.state, RMIG_STATE_COMMIT);
	close_clean(s);
}

/* The destination says its RAM is zeros: zero pages are not written. */
static void test_source_zero_skip(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, RMIG_BLOCK_DEST_ZEROED);
	uint64_t len = EU_GUEST;
	eu_push_reserve(0, 1, &len, 0);
	CU_ASSERT_EQUAL_FATAL(eu_ops->setup(s), 0);
	CU_ASSERT_EQUAL(eu_round(s, 0), 0);
	/* 16 data pages and one in the second stripe, nothing else. */
	CU_ASSERT_EQUAL(fake_written, 17 * EU_PAGE);
	close_clean(s);
}

/* ---- source: cancel in each state ----------------------------------------- */

static void test_source_cancel_before_setup(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	CU_ASSERT_EQUAL(eu_ops->cancel(s, "operator"), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "cancelled: operator"));
	CU_ASSERT_EQUAL(fake_neps(), 0); /* nobody to tell */
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EINVAL);
	close_clean(s);
}

static void cancel_tells_peer(struct rmig_mig *s)
{
	struct wire_status ws;
	unsigned before = eu_nsent(0);

	CU_ASSERT_EQUAL(eu_ops->cancel(s, "operator"), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	CU_ASSERT_EQUAL_FATAL(eu_last_status(0, &ws), 0);
	CU_ASSERT_EQUAL(ws.status, -ECANCELED);
	CU_ASSERT_STRING_EQUAL(ws.reason, "cancelled: operator");
	/* Idempotent: a second cancel says nothing more. */
	CU_ASSERT_EQUAL(eu_ops->cancel(s, "again"), 0);
	CU_ASSERT_EQUAL(eu_nsent(0), before + 1);
	CU_ASSERT_TRUE(eu_err_has(s, "cancelled: operator"));
}

static void test_source_cancel_precopy(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, 0), 0);
	cancel_tells_peer(s);
	/* Rolled back: nothing goes on. */
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->stream_write(s, "x", 1), -ECANCELED);
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EINVAL);
	close_clean(s);
}

/* Inside a round (pages queued, fence not sent). */
static void test_source_cancel_in_round(void)
{
	struct rmig_page_range r = { .block = 0, .offset = 0, .len = EU_GUEST };
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), 0);
	CU_ASSERT_EQUAL(eu_ops->save_pages(s, &r, 1), 0);
	cancel_tells_peer(s);
	CU_ASSERT_EQUAL(eu_find_sent(0, WIRE_ROUND), -1); /* no fence for a cancelled round */
	close_clean(s);
}

static void test_source_cancel_stopcopy(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	cancel_tells_peer(s);
	close_clean(s);
}

static void test_source_cancel_after_commit(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	eu_push_status(0, WIRE_COMMIT, 0, "");
	CU_ASSERT_EQUAL(eu_ops->finish(s), 0);
	CU_ASSERT_EQUAL(eu_ops->cancel(s, "too late"), -EBUSY);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_COMMIT);
	CU_ASSERT_TRUE(eu_err_has(s, "has committed"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_END); /* no CANCEL after commit */
	close_clean(s);
}

/* close before commit rolls back and tells the peer. */
static void test_source_close_is_cancel(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_ops->close(s);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	CU_ASSERT_TRUE(fake_closed(0));
}

/* ---- source: the peer cancels or vanishes in each state ------------------ */

static void test_source_peer_cancels_reserve(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	eu_push_status(0, WIRE_CANCEL, -EIO, "its disk died");
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EIO);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer cancelled the migration: its disk died"));
	CU_ASSERT_EQUAL(eu_nsent(0), 1); /* HELLO only: no CANCEL back */
	close_clean(s);
}

static void test_source_peer_cancels_stopcopy(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	eu_push_status(0, WIRE_CANCEL, 0, "operator on the far side");
	CU_ASSERT_EQUAL(eu_ops->finish(s), -ECANCELED);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer cancelled the migration: operator on the far side"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_END);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	close_clean(s);
}

static void test_source_peer_lost_reserve(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	fake_push_err(0, -ECONNRESET);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -ECONNRESET);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "lost the peer"));
	CU_ASSERT_EQUAL(eu_nsent(0), 1); /* nothing sent to a peer that is gone */
	close_clean(s);
}

static void test_source_peer_lost_precopy(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	/* Every send after HELLO fails: the round's keepalive or its fence,
	 * whichever comes first (the keepalive's timing is the clock's). */
	fake_fail_send(0, 1, -ECONNRESET);
	CU_ASSERT_EQUAL(eu_round(s, 0), -ECONNRESET);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "fake: the send failed (Connection reset by peer)"));
	CU_ASSERT_EQUAL(eu_find_sent(0, WIRE_ROUND), -1);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	close_clean(s);
}

static void test_source_peer_lost_stopcopy(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	fake_push_err(0, -ECONNRESET); /* gone before it answered END */
	CU_ASSERT_EQUAL(eu_ops->finish(s), -ECONNRESET);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "lost the peer"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_END);
	close_clean(s);
}

static void test_source_end_not_sent(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	fake_fail_send(0, 2, -EPIPE);
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EPIPE);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "lost the destination before commit"));
	close_clean(s);
}

/* A write the destination refuses (its key revoked) ends the round. */
static void test_source_write_refused(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fake_write_status = -EACCES;
	CU_ASSERT_EQUAL(eu_round(s, 0), -EACCES);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "no longer grants that memory"));
	CU_ASSERT_EQUAL(eu_find_sent(0, WIRE_ROUND), -1);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL); /* the peer is still there */
	close_clean(s);
}

static void test_source_silent_peer(void)
{
	struct wire_status ws;
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -ETIMEDOUT);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer sent nothing within 60 ms"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	CU_ASSERT_EQUAL_FATAL(eu_last_status(0, &ws), 0);
	CU_ASSERT_EQUAL(ws.status, -ETIMEDOUT);
	close_clean(s);
}

/* shutdown from another thread: the next wait returns -ECANCELED. */
static void *shut_later(void *arg)
{
	eu_ops->shutdown(arg, "the host is quitting");
	return NULL;
}

static void test_source_shutdown(void)
{
	struct rmig_mig *s;
	pthread_t t;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, shut_later, s), 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(eu_ops->finish(s), -ECANCELED);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "shut down: the host is quitting"));
	close_clean(s);
}

/* ---- source: refusals ------------------------------------------------------ */

static void test_source_wrong_order(void)
{
	struct rmig_page_range r = { .block = 0, .offset = 0, .len = EU_PAGE };
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "round_start in state reserve"));
	CU_ASSERT_EQUAL(eu_ops->save_pages(s, &r, 1), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "outside a round"));
	CU_ASSERT_EQUAL(eu_ops->round_end(s, NULL), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->stream_write(s, "x", 1), -ENOTCONN);
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_commit(s), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_block_count(s), -EINVAL);
	CU_ASSERT_EQUAL(fake_neps(), 0); /* none of it reached a peer */
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_RESERVE);

	uint64_t len = EU_GUEST;
	eu_push_reserve(0, 1, &len, 0);
	CU_ASSERT_EQUAL_FATAL(eu_ops->setup(s), 0);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "setup runs once"));
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "late", eu_guest, EU_PAGE), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->remove_ram_block(s, 0), -EBUSY);
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EINVAL); /* no final round yet */
	CU_ASSERT_TRUE(eu_err_has(s, "finish needs a completed final round"));
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), 0);
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "inside a round"));
	CU_ASSERT_EQUAL(eu_ops->round_end(s, NULL), 0);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "the final round has been sent"));
	/* None of the refusals ended the session. */
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	CU_ASSERT_EQUAL(eu_find_sent(0, WIRE_CANCEL), -1);
	close_clean(s);
}

static void test_source_bad_arguments(void)
{
	struct rmig_plugin_config c;
	struct rmig_mig *s = NULL;
	struct rmig_mig_stats st = { .size = 0 };

	eu_reset();
	eu_config(&c, 1);
	c.addr = NULL;
	CU_ASSERT_EQUAL(eu_ops->open(&c, &s), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), "destination's address"));
	eu_config(&c, RMIG_CHANNELS_MAX + 1);
	CU_ASSERT_EQUAL(eu_ops->open(&c, &s), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), "17 channels asked"));
	eu_config(&c, 1);
	c.page_size = 6000;
	CU_ASSERT_EQUAL(eu_ops->open(&c, &s), -EINVAL);
	eu_config(&c, 1);
	c.psk = NULL;
	CU_ASSERT_EQUAL(eu_ops->open(&c, &s), -EACCES);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), "no pre-shared key"));

	eu_config(&c, 1);
	CU_ASSERT_EQUAL_FATAL(eu_ops->open(&c, &s), 0);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "no RAM blocks"));
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "a", eu_guest + 1, EU_PAGE), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "a", eu_guest, 100), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "", eu_guest, EU_PAGE), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "a", eu_guest, EU_GUEST), 0);
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "a", eu_guest, EU_PAGE), -EEXIST);
	char longname[300];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, longname, eu_guest, EU_PAGE), -ENAMETOOLONG);
	struct rmig_block_desc d = { .size = sizeof(d), .name = "f", .host = eu_guest,
				     .len = EU_PAGE, .flags = 0x80 };
	CU_ASSERT_EQUAL(eu_ops->add_ram_block2(s, &d), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "unknown flags"));
	d = (struct rmig_block_desc){ .size = sizeof(d), .name = "h", .host = eu_guest,
				      .len = EU_PAGE, .page_size = 3 * EU_PAGE };
	CU_ASSERT_EQUAL(eu_ops->add_ram_block2(s, &d), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->remove_ram_block(s, 9), -ENOENT);
	CU_ASSERT_EQUAL(eu_ops->stats(s, &st), -EINVAL);

	uint64_t len = EU_GUEST;
	eu_push_reserve(0, 1, &len, 0);
	CU_ASSERT_EQUAL_FATAL(eu_ops->setup(s), 0);
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), 0);
	struct rmig_page_range r = { .block = 5, .offset = 0, .len = EU_PAGE };
	CU_ASSERT_EQUAL(eu_ops->save_pages(s, &r, 1), -ENOENT);
	r = (struct rmig_page_range){ .block = 0, .offset = EU_GUEST, .len = EU_PAGE };
	CU_ASSERT_EQUAL(eu_ops->save_pages(s, &r, 1), -ERANGE);
	r = (struct rmig_page_range){ .block = 0, .offset = 100, .len = EU_PAGE };
	CU_ASSERT_EQUAL(eu_ops->save_pages(s, &r, 1), -ERANGE);
	CU_ASSERT_EQUAL(eu_ops->save_page(s, 0, UINT64_MAX - 4095), -ERANGE);
	uint64_t bits = 1;
	CU_ASSERT_EQUAL(eu_ops->save_bitmap(s, 0, EU_GUEST / EU_PAGE, &bits, 1), -ERANGE);
	CU_ASSERT_EQUAL(eu_ops->save_bitmap(s, 0, 0, NULL, 1), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->save_bitmap(s, 3, 0, &bits, 1), -ENOENT);
	CU_ASSERT_EQUAL(eu_ops->round_end(s, NULL), 0);
	CU_ASSERT_EQUAL(fake_written, 0); /* nothing refused was written */
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	close_clean(s);
}

static void test_entry_versions(void)
{
	const struct rmig_plugin_ops *v1 = rmig_plugin_entry(1);

	CU_ASSERT_PTR_NULL(rmig_plugin_entry(0));
	CU_ASSERT_PTR_NULL(rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION + 1));
	CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
	CU_ASSERT_EQUAL(v1, rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION));
	CU_ASSERT_EQUAL(v1->abi_version, RMIG_PLUGIN_ABI_VERSION);
	CU_ASSERT_EQUAL(v1->size, sizeof(struct rmig_plugin_ops));
	for (int st = 0; st < RMIG_STATE_COUNT; st++)
		CU_ASSERT_STRING_NOT_EQUAL(v1->state_name((enum rmig_mig_state)st), "unknown");
	CU_ASSERT_STRING_EQUAL(v1->state_name(RMIG_STATE_COUNT), "unknown");
}

/* The destination speaks another wire version: refused, named. */
static void test_source_version_mismatch(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	eu_push_version(0, WIRE_VERSION + 1, WIRE_RESERVE);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EPROTONOSUPPORT);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer speaks protocol version 4, this side 3"));
	close_clean(s);
}

static void test_source_connect_fails(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	fake_connect_rc = -ECONNREFUSED;
	CU_ASSERT_EQUAL(eu_ops->setup(s), -ECONNREFUSED);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "cannot reach the destination fake:1: fake: nobody at fake:1"));
	fake_connect_rc = -EACCES;
	eu_ops->close(s);
	s = eu_source(1, 0);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EACCES);
	CU_ASSERT_TRUE(eu_err_has(s, "no authenticated connection to the destination"));
	close_clean(s);
}

/* ---- source: the reservation refused or malformed ------------------------ */

static void test_source_reservation_refused(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	eu_push_refusal(0, -ENOMEM, "the guest needs 4 MiB, the destination takes at most 1 MiB");
	CU_ASSERT_EQUAL(eu_ops->setup(s), -ENOMEM);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the destination cannot take the guest: the guest needs 4 MiB"));
	CU_ASSERT_EQUAL(eu_nsent(0), 1); /* it said no: no CANCEL back */
	CU_ASSERT_EQUAL(fake_live_mrs, 0); /* nothing registered before the yes */
	close_clean(s);
}

static void test_source_reservation_bad_keys(void)
{
	uint64_t short_len = EU_GUEST / 2, lens[2] = { EU_GUEST, EU_GUEST };
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(1, 0);
	eu_push_reserve(0, 1, &short_len, 0); /* a key that does not cover the block */
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "does not cover it for writing"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	eu_ops->close(s);

	eu_reset();
	s = eu_source(1, 0);
	eu_push_reserve(0, 2, lens, 0); /* two keys for one block */
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EPROTO);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	eu_ops->close(s);

	eu_reset();
	s = eu_source(1, 0);
	eu_push_status(0, WIRE_COMMIT, 0, ""); /* not an answer to HELLO */
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "the destination answered COMMIT to HELLO"));
	close_clean(s);
}

/* ---- source: the commit fence ----------------------------------------------- */

static void test_source_commit_refused(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	eu_push_status(0, WIRE_COMMIT, -EIO, "cannot load the device state");
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EIO);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "the destination did not commit: cannot load the device state"));
	eu_ops->close(s);

	eu_reset();
	s = eu_source_ready(1, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_round(s, RMIG_ROUND_FINAL), 0);
	eu_push_round(0, 0, 0, 0, 0); /* anything but COMMIT */
	CU_ASSERT_EQUAL(eu_ops->finish(s), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "the destination answered ROUND to END"));
	close_clean(s);
}

/* ---- source: channels (one worker thread each) --------------------------- */

static void test_source_two_channels(void)
{
	struct wire_round r0, r1;
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(2, 0);
#ifndef RMIG_HAVE_NUMA
	CU_ASSERT_PTR_NULL(s); /* refused: several channels need placement */
	return;
#endif
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(fake_neps(), 2);
	CU_ASSERT_EQUAL(eu_sent_type(1, 0), WIRE_JOIN);
	CU_ASSERT_EQUAL(eu_round(s, 0), 0);
	CU_ASSERT_EQUAL(fake_written, EU_GUEST);
	/* Each channel fenced its own round on its own connection. */
	CU_ASSERT_EQUAL_FATAL(eu_sent_round(0, 1, &r0), 0);
	CU_ASSERT_EQUAL_FATAL(eu_sent_round(1, 1, &r1), 0);
	CU_ASSERT_EQUAL(r0.channel, 0);
	CU_ASSERT_EQUAL(r1.channel, 1);
	CU_ASSERT_EQUAL(r0.round, 0);
	CU_ASSERT_EQUAL(r1.round, 0);
	CU_ASSERT_EQUAL(r0.pages + r1.pages, EU_GUEST / EU_PAGE);
	CU_ASSERT_TRUE(r0.pages > 0 && r1.pages > 0);
	/* Stream bytes inside a round go through channel 0's worker. */
	CU_ASSERT_EQUAL(eu_ops->round_start(s, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(eu_ops->stream_write(s, "abc", 3), 0);
	CU_ASSERT_EQUAL(eu_ops->round_end(s, NULL), 0);
	CU_ASSERT_EQUAL(eu_sent_type(0, 2), WIRE_STREAM);
	CU_ASSERT_EQUAL(eu_sent_type(0, 3), WIRE_ROUND);
	eu_push_status(0, WIRE_COMMIT, 0, "");
	CU_ASSERT_EQUAL(eu_ops->finish(s), 0);
	close_clean(s);
}

/* Channel 1's fence cannot be sent: the round fails with its reason. */
static void test_source_channel_lost(void)
{
	struct rmig_mig *s;

	eu_reset();
	s = eu_source_ready(2, 0);
#ifndef RMIG_HAVE_NUMA
	return;
#endif
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fake_fail_send(1, 1, -ECONNRESET);
	CU_ASSERT_EQUAL(eu_round(s, 0), -ECONNRESET);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "channel 1: lost the peer at the end of round 0"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL); /* told on channel 0 */
	close_clean(s);
}

static void test_source_join_refused(void)
{
	uint64_t len = EU_GUEST;
	struct rmig_mig *s;

	eu_reset();
	s = eu_source(2, 0);
	eu_push_reserve(0, 1, &len, 0);
	eu_push_refusal(1, -EACCES, "unknown session token");
	/* A RESERVE-layout refusal is a JOINED only by type: refused as such. */
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "answered channel 1's JOIN with RESERVE"));
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	close_clean(s);
}

/* ---- destination ------------------------------------------------------------ */

static void test_dest_happy_path(void)
{
	struct rmig_block_info2 bi = { .size = sizeof(bi) };
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s;
	char buf[16];

	eu_reset();
	s = eu_dest(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_RESERVE);
	CU_ASSERT_EQUAL(eu_ops->load_block_count(s), 1);
	CU_ASSERT_EQUAL(eu_ops->load_block2(s, 0, &bi), 0);
	CU_ASSERT_STRING_EQUAL(bi.name, "b0");
	CU_ASSERT_EQUAL(bi.len, EU_GUEST);
	CU_ASSERT_EQUAL(eu_nsent(0), 0); /* nothing said before the framework decides */
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), 0), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -EINVAL); /* no memory yet */
	CU_ASSERT_TRUE(eu_err_has(s, "has no memory"));
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem), 0);
	fake_remote_ok = 1;
	CU_ASSERT_EQUAL_FATAL(eu_ops->load_grant(s), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	CU_ASSERT_EQUAL(fake_remote_mrs, 1);
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(0, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(r.nblocks, 1);

	eu_push_round(0, 0, 0, 0, 3);
	eu_push_stream(0, "abc", 3);
	eu_push_round(0, 1, 1, 0, 0);
	eu_push_stream(0, "de", 2);
	eu_push_end(0, 2, 5);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), 3);
	CU_ASSERT_EQUAL(memcmp(buf, "abc", 3), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	CU_ASSERT_EQUAL(eu_ops->load_commit(s), -EINVAL); /* no END yet */
	CU_ASSERT_TRUE(eu_err_has(s, "needs the source's END"));
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), 2);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), 0);
	CU_ASSERT_EQUAL(eu_ops->load_commit(s), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_COMMIT);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_COMMIT);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	CU_ASSERT_EQUAL(eu_ops->cancel(s, "late"), -EBUSY);
	close_clean(s);
	eu_ops->listen_close(l);
}

static void test_dest_offer_refused_by_framework(void)
{
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s;

	eu_reset();
	s = eu_dest(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->load_refuse(s, -ENOSPC, "no room for this guest"), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(0, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, -ENOSPC);
	CU_ASSERT_STRING_EQUAL(r.reason, "no room for this guest");
	CU_ASSERT_EQUAL(eu_nsent(0), 1); /* the no, and no CANCEL after it */
	CU_ASSERT_EQUAL(eu_ops->load_refuse(s, -ENOSPC, "twice"), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -EINVAL);
	close_clean(s);
	eu_ops->listen_close(l);
}

/* Offers the destination refuses by itself, naming why to the source. */
static void dest_refuses(uint32_t page_size, uint32_t channels, uint64_t mem_limit,
			 int rc, const char *why)
{
	struct rmig_plugin_config c;
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s = NULL;

	eu_reset();
	eu_config(&c, 2);
	c.mem_limit = mem_limit;
	CU_ASSERT_EQUAL_FATAL(eu_ops->listen(&c, &l), 0);
	eu_push_hello(0, 1, EU_GUEST, page_size, channels);
	CU_ASSERT_EQUAL(eu_ops->accept(l, EU_TIMEOUT_MS, &s), rc);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), why));
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(0, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, rc);
	CU_ASSERT_PTR_NOT_NULL(strstr(r.reason, why));
	CU_ASSERT_EQUAL(eu_nsent(0), 1);
	CU_ASSERT_TRUE(fake_closed(0));
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	eu_ops->listen_close(l);
}

static void test_dest_reservation_refusals(void)
{
	dest_refuses(2 * EU_PAGE, 1, 0, -EINVAL, "page size 8192, the destination uses 4096");
	dest_refuses(EU_PAGE, 3, 0, -EINVAL, "the source asks for 3 channels, this destination takes at most 2");
	dest_refuses(EU_PAGE, 1, 1u << 20, -ENOMEM, "the guest needs 4 MiB, the destination takes at most 1 MiB");
}

/* Registration fails at grant: the source hears no, nothing stays open. */
static void test_dest_grant_cannot_register(void)
{
	struct rmig_plugin_config c;
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s = NULL;

	eu_reset();
	s = eu_dest(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem), 0);
	fake_remote_ok = 1;
	fake_fail_reg(1, -ENOMEM);
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -ENOMEM);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_TRUE(eu_err_has(s, "cannot register RAM block b0 for remote write"));
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(0, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, -ENOMEM);
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);
	close_clean(s);
	eu_ops->listen_close(l);

	/* The memlock budget below the guest: refused before registering. */
	eu_reset();
	eu_config(&c, 1);
	c.memlock_budget = 1u << 20;
	CU_ASSERT_EQUAL_FATAL(eu_ops->listen(&c, &l), 0);
	eu_push_hello(0, 1, EU_GUEST, EU_PAGE, 1);
	CU_ASSERT_EQUAL_FATAL(eu_ops->accept(l, EU_TIMEOUT_MS, &s), 0);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem), 0);
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -ENOMEM);
	CU_ASSERT_TRUE(eu_err_has(s, "memlock budget of 1 MiB is below the 4 MiB guest"));
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(0, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, -ENOMEM);
	close_clean(s);
	eu_ops->listen_close(l);
}

static void test_dest_bad_arguments(void)
{
	struct rmig_block_info bi;
	struct rmig_block_info2 bi2 = { .size = 0 };
	struct rmig_mig_listener *l;
	struct rmig_mig *s;

	eu_reset();
	s = eu_dest(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->load_block(s, 1, &bi), -ENOENT);
	CU_ASSERT_EQUAL(eu_ops->load_block2(s, 0, &bi2), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 1, eu_dest_mem), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem + 1), -EINVAL);
	CU_ASSERT_TRUE(eu_err_has(s, "must be page-aligned"));
	CU_ASSERT_EQUAL(eu_ops->round_start(s, 0), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->setup(s), -EINVAL);
	CU_ASSERT_EQUAL(eu_ops->add_ram_block(s, "x", eu_guest, EU_PAGE), -EINVAL);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_RESERVE);
	CU_ASSERT_EQUAL(eu_nsent(0), 0);
	close_clean(s);
	eu_ops->listen_close(l);
}

static void test_dest_version_mismatch(void)
{
	struct rmig_plugin_config c;
	struct rmig_mig_listener *l;
	struct rmig_mig *s = NULL;

	eu_reset();
	eu_config(&c, 1);
	CU_ASSERT_EQUAL_FATAL(eu_ops->listen(&c, &l), 0);
	eu_push_version(0, 2, WIRE_HELLO);
	CU_ASSERT_EQUAL(eu_ops->accept(l, EU_TIMEOUT_MS, &s), -EPROTONOSUPPORT);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL),
				      "the peer speaks protocol version 2, this side 3"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL); /* told why */
	CU_ASSERT_TRUE(fake_closed(0));
	/* An opening that is not HELLO. */
	eu_push_round(1, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(eu_ops->accept(l, EU_TIMEOUT_MS, &s), -EPROTO);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), "opened with ROUND instead of HELLO"));
	/* Nobody came. */
	fake_accept_rc = -ETIMEDOUT;
	CU_ASSERT_EQUAL(eu_ops->accept(l, EU_TIMEOUT_MS, &s), -ETIMEDOUT);
	CU_ASSERT_PTR_NOT_NULL(strstr(eu_ops->error(NULL), "no source arrived"));
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	eu_ops->listen_close(l);
}

/* Cancel and peer loss on the destination, in each state. */
static void test_dest_cancel_reserve(void)
{
	struct rmig_mig_listener *l;
	struct wire_status ws;
	struct rmig_mig *s;

	eu_reset();
	s = eu_dest(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->cancel(s, "the host changed its mind"), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	CU_ASSERT_EQUAL_FATAL(eu_last_status(0, &ws), 0);
	CU_ASSERT_STRING_EQUAL(ws.reason, "cancelled: the host changed its mind");
	close_clean(s);
	eu_ops->listen_close(l);
}

static void dest_ends(int stopcopy, int how)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	char buf[8];
	long n;

	eu_reset();
	s = eu_dest_granted(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	if (stopcopy) {
		eu_push_round(0, 0, 1, 0, 0);
		eu_push_stream(0, "x", 1);
		CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), 1);
		CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	}
	CU_ASSERT_EQUAL(fake_remote_mrs, 1);
	switch (how) {
	case 0: /* the framework cancels */
		CU_ASSERT_EQUAL(eu_ops->cancel(s, "operator"), 0);
		CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
		break;
	case 1: /* the source cancels */
		eu_push_status(0, WIRE_CANCEL, -ECANCELED, "migration cancelled by the operator");
		n = eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS);
		CU_ASSERT_EQUAL(n, -ECANCELED);
		CU_ASSERT_TRUE(eu_err_has(s, "the peer cancelled the migration: migration cancelled by the operator"));
		CU_ASSERT_NOT_EQUAL(eu_last_type(0), WIRE_CANCEL);
		break;
	case 2: /* the source vanishes */
		fake_push_err(0, -ECONNRESET);
		n = eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS);
		CU_ASSERT_EQUAL(n, -ECONNRESET);
		CU_ASSERT_TRUE(eu_err_has(s, "lost the peer"));
		CU_ASSERT_NOT_EQUAL(eu_last_type(0), WIRE_CANCEL);
		break;
	case 3: /* the source goes silent */
		n = eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS);
		CU_ASSERT_EQUAL(n, -ETIMEDOUT);
		CU_ASSERT_TRUE(eu_err_has(s, "the peer sent nothing within 60 ms"));
		CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
		break;
	}
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	/* Guest RAM is closed to the peer the moment the session ends. */
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), 0), -ECANCELED);
	CU_ASSERT_EQUAL(eu_ops->load_commit(s), -EINVAL);
	close_clean(s);
	eu_ops->listen_close(l);
}

static void test_dest_ends_precopy(void)
{
	for (int how = 0; how < 4; how++)
		dest_ends(0, how);
}

static void test_dest_ends_stopcopy(void)
{
	for (int how = 0; how < 4; how++)
		dest_ends(1, how);
}

/* The commit fence: END only after the final round, with every byte. */
static void test_dest_end_fence(void)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	char buf[8];

	eu_reset();
	s = eu_dest_granted(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_push_end(0, 0, 0); /* END in PRECOPY: no final round was sent */
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer sent END in state precopy"));
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	close_clean(s);
	eu_ops->listen_close(l);

	eu_reset();
	s = eu_dest_granted(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_push_round(0, 0, 1, 0, 0);
	eu_push_stream(0, "ab", 2);
	eu_push_end(0, 1, 3); /* counts a byte that never came */
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, 1, EU_TIMEOUT_MS), 1);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, 1, EU_TIMEOUT_MS), 1);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, 1, EU_TIMEOUT_MS), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "END counts 3 stream bytes, 2 arrived"));
	close_clean(s);
	eu_ops->listen_close(l);

	/* Rounds in order only. */
	eu_reset();
	s = eu_dest_granted(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_push_round(0, 1, 0, 0, 0);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, 1, EU_TIMEOUT_MS), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer sent ROUND 1, round 0 was due"));
	close_clean(s);
	eu_ops->listen_close(l);
}

/* ---- destination: channels and their fences ------------------------------- */

static void test_dest_two_channels(void)
{
	struct rmig_mig_stats st = { .size = sizeof(st) };
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s;
	char buf[8];

	eu_reset();
	s = eu_dest_granted(&l, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	CU_ASSERT_EQUAL(fake_neps(), 2);
	CU_ASSERT_EQUAL(eu_sent_type(1, 0), WIRE_JOINED);
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(1, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, 0);
	/* A round is done once every channel's fence is in. */
	eu_push_round(0, 0, 0, 0, 5);
	eu_push_round(1, 0, 0, 1, 7);
	eu_push_round(0, 1, 1, 0, 1);
	eu_push_round(1, 1, 1, 1, 2);
	eu_push_end(0, 2, 0);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_STOPCOPY);
	CU_ASSERT_EQUAL(eu_ops->stats(s, &st), 0);
	CU_ASSERT_EQUAL(st.rounds, 2);
	CU_ASSERT_EQUAL(st.pages, 15);
	CU_ASSERT_EQUAL(eu_ops->load_commit(s), 0);
	close_clean(s);
	eu_ops->listen_close(l);
}

/* Channel 1's fence missing, late, wrong or its connection gone. */
static void fence_fails(int how, int rc, const char *why)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	char buf[8];

	eu_reset();
	s = eu_dest_granted(&l, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_push_round(0, 0, 0, 0, 5);
	switch (how) {
	case 0: break;                                      /* no fence */
	case 1: eu_push_round(1, 1, 0, 1, 0); break;        /* another round's */
	case 2: eu_push_round(1, 0, 0, 0, 0); break;        /* names channel 0 */
	case 3: eu_push_round(1, 0, 1, 1, 0); break;        /* final where 0 was not */
	case 4: fake_push_err(1, -ECONNRESET); break;       /* channel lost */
	case 5: eu_push_stream(1, "x", 1); break;           /* not a ROUND */
	}
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), rc);
	CU_ASSERT_TRUE(eu_err_has(s, why));
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);
	CU_ASSERT_EQUAL(eu_last_type(0), WIRE_CANCEL);
	close_clean(s);
	eu_ops->listen_close(l);
}

static void test_dest_channel_fences(void)
{
	fence_fails(0, -ETIMEDOUT, "channel 1 sent no ROUND 0 within 60 ms");
	fence_fails(1, -EPROTO, "channel 1 sent ROUND 1 of channel 1, ROUND 0 was due");
	fence_fails(2, -EPROTO, "channel 1 sent ROUND 0 of channel 0");
	fence_fails(3, -EPROTO, "channel 1 sent ROUND 0 (final) of channel 1, ROUND 0 was due");
	fence_fails(4, -ECONNRESET, "lost channel 1");
	fence_fails(5, -EPROTO, "channel 1 sent STREAM where its ROUND was due");
}

/* ROUND on channel 0 claiming another channel. */
static void test_dest_round_wrong_channel(void)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	char buf[8];

	eu_reset();
	s = eu_dest_granted(&l, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	eu_push_round(0, 0, 0, 1, 0);
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), EU_TIMEOUT_MS), -EPROTO);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer sent channel 1's ROUND on channel 0"));
	close_clean(s);
	eu_ops->listen_close(l);
}

/* A stranger (wrong token) is refused and the real channel still joins. */
static void bad_join_first(unsigned ep, const void *msg, size_t len)
{
	uint8_t m[WIRE_HDR_SIZE + WIRE_JOIN_SIZE];
	struct wire_join j = { .channel = 1, .channels = 2 };
	struct wire_hdr h;

	if (ep || wire_hdr_decode(msg, len, &h) || h.type != WIRE_RESERVE)
		return;
	memset(j.token, 0xee, sizeof(j.token));
	fake_push(1, m, (size_t)wire_join_encode(m, sizeof(m), &j));
}

static void test_dest_join_refusals(void)
{
	struct rmig_mig_listener *l;
	struct wire_reserve r;
	struct rmig_mig *s;

	eu_reset();
	s = eu_dest(&l, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem), 0);
	fake_remote_ok = 1;
	fake_on_send = bad_join_first;
	/* Only the stranger arrives: refused, then the channel never comes. */
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -ETIMEDOUT);
	CU_ASSERT_TRUE(eu_err_has(s, "only 1 of 2 channels joined within 60 ms"));
	CU_ASSERT_EQUAL_FATAL(eu_sent_reserve(1, 0, &r), 0);
	CU_ASSERT_EQUAL(r.status, -EACCES);
	CU_ASSERT_STRING_EQUAL(r.reason, "unknown session token");
	CU_ASSERT_TRUE(fake_closed(1));
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);
	close_clean(s);
	eu_ops->listen_close(l);
}

/* The source cancels while its channels join. */
static void cancel_on_reserve(unsigned ep, const void *msg, size_t len)
{
	(void)msg, (void)len;
	if (ep == 0)
		eu_push_status(0, WIRE_CANCEL, -ECANCELED, "the operator gave up");
}

static void test_dest_cancel_while_joining(void)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;

	eu_reset();
	s = eu_dest(&l, 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(eu_ops->load_register_block(s, 0, eu_dest_mem), 0);
	fake_remote_ok = 1;
	fake_on_send = cancel_on_reserve;
	CU_ASSERT_EQUAL(eu_ops->load_grant(s), -ECANCELED);
	CU_ASSERT_TRUE(eu_err_has(s, "the peer cancelled the migration: the operator gave up"));
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_ROLLED_BACK);
	CU_ASSERT_EQUAL(fake_remote_mrs, 0);
	CU_ASSERT_EQUAL(eu_nsent(0), 1); /* the RESERVE; no CANCEL back */
	close_clean(s);
	eu_ops->listen_close(l);
}

/* stream_fd: readable when stream_read would not say -EAGAIN. */
static void test_dest_stream_fd(void)
{
	struct rmig_mig_listener *l;
	struct rmig_mig *s;
	char buf[8];
	int fd;

	eu_reset();
	s = eu_dest_granted(&l, 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	fd = eu_ops->stream_fd(s);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(eu_ops->stream_fd(s), fd); /* one per session */
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), 0), -EAGAIN);
	eu_push_stream(0, "hey", 3);
	/* The pump thread takes it: a success path, so no tight deadline. */
	CU_ASSERT_EQUAL(eu_ops->stream_read(s, buf, sizeof(buf), 5000), 3);
	CU_ASSERT_EQUAL(memcmp(buf, "hey", 3), 0);
	CU_ASSERT_EQUAL(ST(s), RMIG_STATE_PRECOPY);
	close_clean(s);
	eu_ops->listen_close(l);
}

static const CU_TestInfo tests[] = {
	{ "entry: ABI versions and state names", test_entry_versions },
	{ "source: reserve, setup, precopy, stopcopy, commit", test_source_happy_path },
	{ "source: zero pages skipped where the destination is zeroed", test_source_zero_skip },
	{ "source: cancel before setup", test_source_cancel_before_setup },
	{ "source: cancel in precopy", test_source_cancel_precopy },
	{ "source: cancel inside a round", test_source_cancel_in_round },
	{ "source: cancel in stopcopy", test_source_cancel_stopcopy },
	{ "source: cancel after commit refused", test_source_cancel_after_commit },
	{ "source: close before commit cancels", test_source_close_is_cancel },
	{ "source: peer cancels during the reservation", test_source_peer_cancels_reserve },
	{ "source: peer cancels in stopcopy", test_source_peer_cancels_stopcopy },
	{ "source: peer lost during the reservation", test_source_peer_lost_reserve },
	{ "source: peer lost in precopy", test_source_peer_lost_precopy },
	{ "source: peer lost in stopcopy", test_source_peer_lost_stopcopy },
	{ "source: END cannot be sent", test_source_end_not_sent },
	{ "source: a refused write", test_source_write_refused },
	{ "source: a silent destination", test_source_silent_peer },
	{ "source: shutdown from another thread", test_source_shutdown },
	{ "source: calls in the wrong order", test_source_wrong_order },
	{ "source: bad arguments", test_source_bad_arguments },
	{ "source: version mismatch", test_source_version_mismatch },
	{ "source: connect fails", test_source_connect_fails },
	{ "source: reservation refused", test_source_reservation_refused },
	{ "source: reservation with bad keys", test_source_reservation_bad_keys },
	{ "source: commit refused or malformed", test_source_commit_refused },
	{ "source: two channels, a fence each", test_source_two_channels },
	{ "source: a channel lost at its fence", test_source_channel_lost },
	{ "source: a channel's join refused", test_source_join_refused },
	{ "dest: accept, grant, stream, commit", test_dest_happy_path },
	{ "dest: the framework refuses the offer", test_dest_offer_refused_by_framework },
	{ "dest: offers refused (page size, channels, memory)", test_dest_reservation_refusals },
	{ "dest: grant cannot register", test_dest_grant_cannot_register },
	{ "dest: bad arguments", test_dest_bad_arguments },
	{ "dest: version mismatch and bad openings", test_dest_version_mismatch },
	{ "dest: cancel before the grant", test_dest_cancel_reserve },
	{ "dest: cancel, peer cancel, loss, silence in precopy", test_dest_ends_precopy },
	{ "dest: cancel, peer cancel, loss, silence in stopcopy", test_dest_ends_stopcopy },
	{ "dest: END fence and round order", test_dest_end_fence },
	{ "dest: two channels, a fence each", test_dest_two_channels },
	{ "dest: a channel's fence missing or wrong", test_dest_channel_fences },
	{ "dest: channel 0's ROUND naming another channel", test_dest_round_wrong_channel },
	{ "dest: a stranger's JOIN refused", test_dest_join_refusals },
	{ "dest: the source cancels while channels join", test_dest_cancel_while_joining },
	{ "dest: stream_fd", test_dest_stream_fd },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("session state machine (fake transport)", setup_each, NULL, tests);
}
