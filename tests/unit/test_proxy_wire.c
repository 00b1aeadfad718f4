/* SPDX-License-Identifier: MIT */
/* The proxy's own messages (tools/proxy_wire.h): round trips and refusals. */
#include "testutil.h"
#include "tools/proxy_wire.h"

#include <errno.h>
#include <string.h>

static void test_roundtrip(void)
{
	static const uint16_t types[] = { PROXY_HELLO, PROXY_READY, PROXY_REVERSE };
	uint8_t raw[PROXY_MSG_MAX];

	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct proxy_msg in = { .type = types[i], .conn = 0x1122334455667788ull,
					.instance = 42 }, out;
		strcpy(in.name, "web-1.sock");
		size_t n = proxy_msg_encode(&in, raw);

		CU_ASSERT_EQUAL(n, PROXY_HDR_SIZE + (types[i] == PROXY_READY ? 0 : strlen(in.name)));
		CU_ASSERT_EQUAL(proxy_msg_decode(raw, n, &out), 0);
		CU_ASSERT_EQUAL(out.type, types[i]);
		CU_ASSERT_EQUAL(out.conn, in.conn);
		CU_ASSERT_EQUAL(out.instance, 42);
		CU_ASSERT_STRING_EQUAL(out.name, types[i] == PROXY_READY ? "" : "web-1.sock");
	}
}

static void test_rejects_bad(void)
{
	struct proxy_msg in = { .type = PROXY_HELLO, .conn = 1 }, out;
	uint8_t raw[PROXY_MSG_MAX + 8], bad[sizeof(raw)];
	size_t n;

	strcpy(in.name, "mA");
	n = proxy_msg_encode(&in, raw);
	CU_ASSERT_EQUAL(proxy_msg_decode(raw, n - 1, &out), -EPROTO); /* length */
	CU_ASSERT_EQUAL(proxy_msg_decode(raw, PROXY_HDR_SIZE - 1, &out), -EPROTO);
	memcpy(bad, raw, n);
	bad[0] ^= 1; /* magic */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTO);
	memcpy(bad, raw, n);
	bad[4] = 9; /* version */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTONOSUPPORT);
	memcpy(bad, raw, n);
	bad[6] = 7; /* type */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTO);
	memcpy(bad, raw, n);
	bad[27] = 1; /* reserved */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTO);
	memcpy(bad, raw, n);
	bad[PROXY_HDR_SIZE] = '/'; /* a name that would escape a folder */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTO);
	memcpy(bad, raw, n);
	bad[PROXY_HDR_SIZE] = '.'; /* hidden / ".." */
	CU_ASSERT_EQUAL(proxy_msg_decode(bad, n, &out), -EPROTO);
	in.type = PROXY_READY; /* READY carries no name */
	n = proxy_msg_encode(&in, raw);
	raw[24] = 2;
	memcpy(raw + n, "mA", 2);
	CU_ASSERT_EQUAL(proxy_msg_decode(raw, n + 2, &out), -EPROTO);
	in.type = PROXY_HELLO; /* HELLO needs one */
	in.name[0] = 0;
	n = proxy_msg_encode(&in, raw);
	CU_ASSERT_EQUAL(proxy_msg_decode(raw, n, &out), -EPROTO);
}

static void test_names(void)
{
	char longname[PROXY_NAME_MAX + 1];

	memset(longname, 'x', sizeof(longname));
	CU_ASSERT(proxy_name_ok(longname, PROXY_NAME_MAX));
	CU_ASSERT(!proxy_name_ok(longname, PROXY_NAME_MAX + 1));
	CU_ASSERT(proxy_name_ok("mA", 2));
	CU_ASSERT(proxy_name_ok("web1.sock", 9));
	CU_ASSERT(!proxy_name_ok("", 0));
	CU_ASSERT(!proxy_name_ok("..", 2));
	CU_ASSERT(!proxy_name_ok("a b", 3));
	CU_ASSERT(!proxy_name_ok("a/b", 3));
}

static const CU_TestInfo tests[] = {
	{ "roundtrip", test_roundtrip },
	{ "rejects bad", test_rejects_bad },
	{ "route names", test_names },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return rmig_test_run("proxy wire", NULL, NULL, tests);
}
