/* SPDX-License-Identifier: MIT */
/*
 * The end of a stream, in the order a backend may report it, over the fake
 * transport (tests/fuzz/fake_transport.c): rmig_stream_send returns 0
 * whenever every byte was delivered, and fails when one was not.
 *
 * The race it pins down: the receiver sends CREDIT and DONE, then closes.
 * The tcp backend's rmig_poll reports the close as soon as its receive
 * thread saw it, possibly before the sender read the CREDIT and DONE queued
 * ahead of it; the sender then failed a delivered stream (`rdmamig send`
 * exited 1, QEMU reported a failed migration).
 */
#define _GNU_SOURCE
#include "testutil.h"
#include "fake_transport.h"
#include "stream/wire.h"
#include <rdmamig/stream.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RING (16u << 10)
#define TIMEOUT_ENTRY 0xffff

struct script {
	uint8_t buf[1024];
	size_t len;
};

static void add(struct script *s, const struct stream_msg *m)
{
	size_t n = stream_msg_encode(m, s->buf + s->len + 2);

	s->buf[s->len] = (uint8_t)n;
	s->buf[s->len + 1] = (uint8_t)(n >> 8);
	s->len += 2 + n;
}

static void add_timeout(struct script *s)
{
	s->buf[s->len++] = TIMEOUT_ENTRY & 0xff;
	s->buf[s->len++] = TIMEOUT_ENTRY >> 8;
}

/* The receiver's ring, as its RING message offers it. */
static void add_ring(struct script *s)
{
	add(s, &(struct stream_msg){ .type = STREAM_RING, .a = RING,
				     .rkey = { .len = RING, .key = 1,
					       .flags = RMIG_ACCESS_REMOTE_WRITE } });
}

/* Send "the stream" (10 bytes) against the peer's script; the exit code. */
static int send_against(const struct script *s, int poll_dead, char *err, size_t errlen)
{
	const struct rmig_stream_opts o = { .size = sizeof(o), .chunk = 4096,
					    .timeout_ms = 2000 };
	struct rmig_stream_stats st;
	struct rmig_ep *ep = NULL;
	int fds[2], rc;

	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	CU_ASSERT_EQUAL(write(fds[1], "the stream", 10), 10);
	close(fds[1]);
	fake_reset(s->buf, s->len);
	fake_poll_dead = poll_dead;
	CU_ASSERT_EQUAL_FATAL(rmig_connect("fake", "peer", NULL, &ep), 0);
	rc = rmig_stream_send(ep, fds[0], &o, &st, err, errlen);
	rmig_close(ep);
	close(fds[0]);
	CU_ASSERT_EQUAL(fake_live_mrs, 0);
	return rc;
}

/* CREDIT and DONE read before the close: delivered (the ordinary case). */
static void test_done_then_close(void)
{
	struct script s = { .len = 0 };
	char err[RMIG_ERR_MAX];

	add_ring(&s);
	add(&s, &(struct stream_msg){ .type = STREAM_CREDIT, .a = 10 });
	add(&s, &(struct stream_msg){ .type = STREAM_DONE, .a = 10 });
	CU_ASSERT_EQUAL(send_against(&s, 0, err, sizeof(err)), 0);
}

/* The close reported (by rmig_poll) before CREDIT and DONE were read: delivered. */
static void test_close_reported_first(void)
{
	struct script s = { .len = 0 };
	char err[RMIG_ERR_MAX];
	int rc;

	add_ring(&s);
	add_timeout(&s); /* the DATA's credit is not there yet when the sender looks */
	add(&s, &(struct stream_msg){ .type = STREAM_CREDIT, .a = 10 });
	add(&s, &(struct stream_msg){ .type = STREAM_DONE, .a = 10 });
	rc = send_against(&s, 1, err, sizeof(err));
	if (rc)
		fprintf(stderr, "send: %s\n", err);
	CU_ASSERT_EQUAL(rc, 0);
}

/* Only DONE queued behind the close (its CREDIT folded into it): delivered. */
static void test_close_then_done_only(void)
{
	struct script s = { .len = 0 };
	char err[RMIG_ERR_MAX];

	add_ring(&s);
	add_timeout(&s);
	add(&s, &(struct stream_msg){ .type = STREAM_DONE, .a = 10 });
	CU_ASSERT_EQUAL(send_against(&s, 1, err, sizeof(err)), 0);
}

/* The peer closed having credited 4 of the 10 bytes: not delivered, and said so. */
static void test_close_short(void)
{
	struct script s = { .len = 0 };
	char err[RMIG_ERR_MAX];

	add_ring(&s);
	add_timeout(&s);
	add(&s, &(struct stream_msg){ .type = STREAM_CREDIT, .a = 4 });
	CU_ASSERT(send_against(&s, 1, err, sizeof(err)) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "connection to the peer lost"));
}

/* A DONE claiming more than was sent is a broken peer, not a delivery. */
static void test_done_too_long(void)
{
	struct script s = { .len = 0 };
	char err[RMIG_ERR_MAX];

	add_ring(&s);
	add_timeout(&s);
	add(&s, &(struct stream_msg){ .type = STREAM_DONE, .a = 11 });
	CU_ASSERT(send_against(&s, 1, err, sizeof(err)) < 0);
}

/* Options are checked: no size, no timeout, an odd ring. */
static void test_bad_options(void)
{
	struct rmig_stream_opts o = { .size = sizeof(o), .ring = RING, .chunk = 4096 };
	struct rmig_stream_stats st;
	struct rmig_ep *ep = NULL;
	char err[RMIG_ERR_MAX];

	fake_reset(NULL, 0);
	CU_ASSERT_EQUAL_FATAL(rmig_connect("fake", "peer", NULL, &ep), 0);
	CU_ASSERT_EQUAL(rmig_stream_send(ep, 0, &o, &st, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "timeout"));
	o.timeout_ms = 1000;
	o.ring = RING + 1;
	CU_ASSERT_EQUAL(rmig_stream_recv(ep, 1, &o, &st, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "ring"));
	o.size = 0;
	CU_ASSERT_EQUAL(rmig_stream_send(ep, 0, &o, &st, err, sizeof(err)), -EINVAL);
	rmig_close(ep);
}

/* ABORT: what one side sends, the other reads back. */
static void test_abort_reason(void)
{
	struct stream_msg m = { .type = STREAM_ABORT };
	uint8_t raw[STREAM_MSG_MAX];
	char why[RMIG_STREAM_REASON_MAX + 1];
	size_t n;

	snprintf(m.reason, sizeof(m.reason), "proxy-in: no route");
	n = stream_msg_encode(&m, raw);
	CU_ASSERT_EQUAL(rmig_stream_abort_reason(raw, n, why, sizeof(why)), 0);
	CU_ASSERT_STRING_EQUAL(why, "proxy-in: no route");
	m = (struct stream_msg){ .type = STREAM_PING };
	n = stream_msg_encode(&m, raw);
	CU_ASSERT_EQUAL(rmig_stream_abort_reason(raw, n, why, sizeof(why)), -EPROTO);
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "DONE read before the close: exit 0", test_done_then_close },
		{ "close reported before CREDIT and DONE were read: exit 0", test_close_reported_first },
		{ "close reported before a lone DONE: exit 0", test_close_then_done_only },
		{ "close after 4 of 10 bytes credited: failure", test_close_short },
		{ "DONE longer than the stream: failure", test_done_too_long },
		{ "options are checked", test_bad_options },
		{ "an ABORT's reason reads back", test_abort_reason },
		CU_TEST_INFO_NULL,
	};
	return rmig_test_run("stream end", NULL, NULL, tests);
}
