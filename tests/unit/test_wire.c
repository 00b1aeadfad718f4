/* SPDX-License-Identifier: MIT */
/* Wire encodings: rkey descriptors, tcp frames, address parsing. */
#include "testutil.h"
#include "common/sock.h"
#include "transport/tcp/tcp_wire.h"

#include <errno.h>
#include <string.h>

static void test_rkey_roundtrip(void)
{
	struct rmig_rkey k = { .addr = 0x1122334455667788ull, .len = 1ull << 33,
			       .key = 0xdeadbeefcafef00dull, .id = 7,
			       .flags = RMIG_ACCESS_REMOTE_WRITE }, d;
	uint8_t raw[RMIG_RKEY_WIRE_SIZE];

	rmig_rkey_encode(&k, raw);
	CU_ASSERT_EQUAL(raw[0], 0x88); /* little-endian on the wire */
	CU_ASSERT_EQUAL(raw[7], 0x11);
	CU_ASSERT_EQUAL(raw[24], 7);
	CU_ASSERT_EQUAL(rmig_rkey_decode(raw, &d), 0);
	CU_ASSERT_EQUAL(memcmp(&k, &d, sizeof(k)), 0);
}

static void test_rkey_rejects_bad(void)
{
	struct rmig_rkey k = { .addr = UINT64_MAX - 10, .len = 100 }, d;
	uint8_t raw[RMIG_RKEY_WIRE_SIZE];

	rmig_rkey_encode(&k, raw); /* addr + len wraps around */
	CU_ASSERT_EQUAL(rmig_rkey_decode(raw, &d), -EINVAL);
	k = (struct rmig_rkey){ .len = 1, .flags = 0x80 };
	rmig_rkey_encode(&k, raw); /* unknown access bit */
	CU_ASSERT_EQUAL(rmig_rkey_decode(raw, &d), -EINVAL);
}

static void test_tcp_frame_roundtrip(void)
{
	struct tcp_hdr h = { .type = TCP_FRAME_WRITE, .id = 3, .key = 42,
			     .off = 4097, .len = 65535 }, d;
	uint8_t raw[TCP_HDR_SIZE];

	tcp_hdr_encode(&h, raw);
	CU_ASSERT_EQUAL(tcp_hdr_decode(raw, &d), 0);
	CU_ASSERT_EQUAL(memcmp(&h, &d, sizeof(h)), 0);
}

static void test_tcp_frame_rejects_bad(void)
{
	struct tcp_hdr h = { .type = 9, .len = 1 }, d;
	uint8_t raw[TCP_HDR_SIZE];

	tcp_hdr_encode(&h, raw);
	CU_ASSERT_EQUAL(tcp_hdr_decode(raw, &d), -EPROTO);
	h = (struct tcp_hdr){ .type = TCP_FRAME_MSG, .len = RMIG_MSG_MAX + 1 };
	tcp_hdr_encode(&h, raw);
	CU_ASSERT_EQUAL(tcp_hdr_decode(raw, &d), -EPROTO);
	h = (struct tcp_hdr){ .type = TCP_FRAME_MSG, .len = 4, .off = 1 };
	tcp_hdr_encode(&h, raw);
	CU_ASSERT_EQUAL(tcp_hdr_decode(raw, &d), -EPROTO);
	h = (struct tcp_hdr){ .type = TCP_FRAME_WRITE, .len = 0 };
	tcp_hdr_encode(&h, raw);
	CU_ASSERT_EQUAL(tcp_hdr_decode(raw, &d), -EPROTO);
}

static void test_split_addr(void)
{
	char host[64], port[16];

	CU_ASSERT_EQUAL(rmig_split_addr("127.0.0.1:4000", host, sizeof(host), port, sizeof(port)), 0);
	CU_ASSERT_STRING_EQUAL(host, "127.0.0.1");
	CU_ASSERT_STRING_EQUAL(port, "4000");
	CU_ASSERT_EQUAL(rmig_split_addr("[::1]:5", host, sizeof(host), port, sizeof(port)), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT_STRING_EQUAL(port, "5");
	CU_ASSERT_EQUAL(rmig_split_addr(":7", host, sizeof(host), port, sizeof(port)), 0);
	CU_ASSERT_STRING_EQUAL(host, "");
	CU_ASSERT_EQUAL(rmig_split_addr("nohost", host, sizeof(host), port, sizeof(port)), -EINVAL);
	CU_ASSERT_EQUAL(rmig_split_addr("h:", host, sizeof(host), port, sizeof(port)), -EINVAL);
	CU_ASSERT_EQUAL(rmig_split_addr("[::1]5", host, sizeof(host), port, sizeof(port)), -EINVAL);
	CU_ASSERT_EQUAL(rmig_split_addr("a:1", host, 1, port, sizeof(port)), -EINVAL);
}

static const CU_TestInfo tests[] = {
	{ "rkey roundtrip", test_rkey_roundtrip },
	{ "rkey rejects bad", test_rkey_rejects_bad },
	{ "tcp frame roundtrip", test_tcp_frame_roundtrip },
	{ "tcp frame rejects bad", test_tcp_frame_rejects_bad },
	{ "split addr", test_split_addr },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("wire", NULL, NULL, tests);
}
