/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the stream channel's engine (stream/ring.c, rmig_stream_*,
 * `rdmamig send` / `rdmamig recv`) facing a hostile peer, over the fake
 * transport (fake_transport.c).  The first byte picks the side:
 *
 *   even: receiver. The peer's HELLO, then DATA (offsets and lengths into
 *         the ring), EOF, PING, ABORT in any order; output to /dev/null.
 *   odd:  sender of 20000 bytes. The peer's RING (size and key), then
 *         CREDIT and DONE in any order.
 *
 * Then [u16 length][message] ... (see fake_transport.c).  Whatever arrives,
 * the engine must not crash or leak, must write only inside the ring the
 * peer announced and its own buffer, must send well-formed messages, and
 * must deregister its buffer before it returns; a receiver reports success
 * only if the announced stream length is what it delivered.
 */
#define _GNU_SOURCE
#include "fuzz.h"
#include "stream/wire.h"
#include "fake_transport.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define SEND_BYTES 20000

static int bad_stream_msg(const void *msg, size_t len)
{
	struct stream_msg m;

	return stream_msg_decode(msg, len, &m);
}

static int open_once(int *fd, int sender)
{
	if (*fd >= 0)
		return *fd;
	if (sender) {
		static uint8_t data[SEND_BYTES];
		*fd = memfd_create("fuzz-stream", 0);
		for (size_t i = 0; i < sizeof(data); i++)
			data[i] = (uint8_t)(i * 7);
		if (*fd < 0 || write(*fd, data, sizeof(data)) != sizeof(data))
			abort();
	} else {
		*fd = open("/dev/null", O_WRONLY);
	}
	if (*fd < 0)
		abort();
	return *fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int in_fd = -1, out_fd = -1;
	const struct rmig_stream_opts o = { .size = sizeof(o), .ring = 16 << 10, .chunk = 4 << 10,
					    .timeout_ms = 1000 };
	struct rmig_stream_stats st;
	struct rmig_ep *ep;
	char err[256];
	int rc;

	if (!size)
		return 0;
	fake_reset(data + 1, size - 1);
	fake_check_sent = bad_stream_msg;
	if (rmig_connect("fake", "fake:1", NULL, &ep))
		abort();
	if (data[0] & 1) {
		if (lseek(open_once(&in_fd, 1), 0, SEEK_SET))
			abort();
		rc = rmig_stream_send(ep, in_fd, &o, &st, err, sizeof(err));
		if (!rc && st.bytes != SEND_BYTES)
			abort(); /* "done" before the receiver confirmed every byte */
	} else {
		fake_remote_ok = 1; /* the receiver's ring is for the peer to write */
		rc = rmig_stream_recv(ep, open_once(&out_fd, 0), &o, &st, err, sizeof(err));
	}
	if (rc && !err[0])
		abort(); /* every failure says why */
	if (getenv("RMIG_FUZZ_VERBOSE")) /* to see where a seed gets */
		fprintf(stderr, "%s: rc %d, %llu bytes: %s\n", data[0] & 1 ? "sender" : "receiver",
			rc, (unsigned long long)st.bytes, err);
	rmig_close(ep);
	if (fake_live_mrs || fake_sent_bad)
		abort();
	return 0;
}
