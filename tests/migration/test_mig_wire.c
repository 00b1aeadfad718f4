/* SPDX-License-Identifier: MIT */
/* The session control protocol (plugin/wire.c): round trips, and every
 * malformed field rejected. */
#include "testutil.h"
#include "common/le.h"
#include "plugin/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint8_t buf[RMIG_MSG_MAX];
static char why[160];

static void test_hdr(void)
{
	struct wire_hdr h;

	wire_hdr_encode(buf, WIRE_ROUND, 32);
	CU_ASSERT_EQUAL(buf[0], 'R');
	CU_ASSERT_EQUAL(buf[3], 'G');
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), 0);
	CU_ASSERT_EQUAL(h.type, WIRE_ROUND);
	CU_ASSERT_EQUAL(h.len, 32);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 47, &h), -EPROTO);  /* length mismatch */
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 15, &h), -EPROTO);  /* short */
	buf[0] ^= 1;
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTO);  /* magic */
	buf[0] ^= 1;
	rmig_put_le16(buf + 4, WIRE_VERSION + 1);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTONOSUPPORT);
	rmig_put_le16(buf + 4, 1); /* version 1 (one channel, no token) is refused too */
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTONOSUPPORT);
	rmig_put_le16(buf + 4, WIRE_VERSION);
	rmig_put_le16(buf + 6, 0);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTO);  /* type 0 */
	rmig_put_le16(buf + 6, 99);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTO);  /* type unknown */
	rmig_put_le16(buf + 6, WIRE_ROUND);
	buf[13] = 1;
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, 48, &h), -EPROTO);  /* padding */
	CU_ASSERT_STRING_EQUAL(wire_type_name(WIRE_COMMIT), "COMMIT");
	CU_ASSERT_STRING_EQUAL(wire_type_name(1000), "unknown");
}

static int hello_msg(void)
{
	struct wire_hello h = { .caps = WIRE_CAPS_KNOWN, .page_size = 4096, .nblocks = 2,
				.total = 3 * 4096, .channels = 2 };
	struct wire_block b[2] = { { .name = "pc.ram", .len = 2 * 4096, .page_size = 8192,
				     .flags = WIRE_BLOCK_DEST_ZEROED },
				   { .name = "vga.vram", .len = 4096, .page_size = 4096 } };

	return wire_hello_encode(buf, sizeof(buf), &h, b);
}

static int hello_dec(int len)
{
	struct wire_hello h;
	struct wire_block b[4];

	return wire_hello_decode(buf + WIRE_HDR_SIZE, (size_t)len - WIRE_HDR_SIZE, &h, b, 4,
				 why, sizeof(why));
}

static void test_hello(void)
{
	struct wire_hello h;
	struct wire_block b[4];
	int len = hello_msg();
	uint8_t *p = buf + WIRE_HDR_SIZE, *b1 = p + WIRE_HELLO_SIZE + WIRE_BLOCK_SIZE;

	CU_ASSERT_EQUAL(len, WIRE_HDR_SIZE + WIRE_HELLO_SIZE + 2 * WIRE_BLOCK_SIZE);
	CU_ASSERT_EQUAL(wire_hello_decode(p, (size_t)len - WIRE_HDR_SIZE, &h, b, 4, why,
					  sizeof(why)), 0);
	CU_ASSERT_EQUAL(h.nblocks, 2);
	CU_ASSERT_EQUAL(h.page_size, 4096);
	CU_ASSERT_STRING_EQUAL(b[1].name, "vga.vram");
	CU_ASSERT_EQUAL(b[0].len, 8192);
	CU_ASSERT_EQUAL(b[0].page_size, 8192);
	CU_ASSERT_EQUAL(b[0].flags, WIRE_BLOCK_DEST_ZEROED);
	CU_ASSERT_EQUAL(b[1].page_size, 4096);
	CU_ASSERT_EQUAL(b[1].flags, 0);
	CU_ASSERT_EQUAL(h.channels, 2);
	/* each field broken in turn */
	rmig_put_le32(p + 24, 0);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 24, WIRE_CHANNELS_MAX + 1);  CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 28, 1);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 8, 4095);                    CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 8, 12288);                   CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 8, 2048);                    CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 12, 0);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 12, 3);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 12, 5);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(p + 12, 0xffffffffu);            CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le64(p + 16, 4096);                   CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	memset(b1, 'x', WIRE_NAME_MAX);                CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	b1[0] = 0;                                     CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	b1[40] = 'z';                                  CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	memcpy(b1, "pc.ram", 7);                       CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	uint8_t *l1 = b1 + WIRE_NAME_MAX, *b0 = p + WIRE_HELLO_SIZE;
	rmig_put_le64(l1, 0);                          CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le64(l1, 4097);                       CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le64(l1, UINT64_MAX & ~4095ull);      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(l1 + 8, 0);                      CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(l1 + 8, 2048);                   CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(l1 + 8, 12288);                  CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(l1 + 8, 8192);                   CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le32(l1 + 12, 2);                     CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	rmig_put_le64(l1 + 16, 1);                     CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	/* a 255-byte name is fine, 256 without its NUL is not */
	memset(b0, 'n', WIRE_NAME_MAX - 1);            CU_ASSERT_EQUAL(hello_dec(len), 0); hello_msg();
	memset(b0, 'n', WIRE_NAME_MAX);                CU_ASSERT_EQUAL(hello_dec(len), -EPROTO); hello_msg();
	CU_ASSERT_EQUAL(hello_dec(len - 1), -EPROTO);
	CU_ASSERT_EQUAL(hello_dec(WIRE_HDR_SIZE + 8), -EPROTO);
	CU_ASSERT_EQUAL(hello_dec(len), 0);
	/* too many blocks for a message */
	h.nblocks = WIRE_BLOCKS_MAX + 1;
	CU_ASSERT_EQUAL(wire_hello_encode(buf, sizeof(buf), &h, b), -EMSGSIZE);
}

static int reserve_msg(int32_t status, uint32_t nkeys)
{
	struct rmig_rkey k[2] = { { .len = 8192, .key = 77, .id = 1,
				    .flags = RMIG_ACCESS_REMOTE_WRITE },
				  { .len = 4096, .key = 78, .id = 2,
				    .flags = RMIG_ACCESS_REMOTE_WRITE } };
	struct wire_reserve r = { .status = status, .nblocks = nkeys, .caps = WIRE_CAP_STREAM,
				  .flags = WIRE_RES_ZEROED, .token = { 1, 2, 3 } };

	strcpy(r.reason, status ? "no memory here" : "");
	return wire_reserve_encode(buf, sizeof(buf), &r, k);
}

static int reserve_dec(int len, uint32_t kmax)
{
	struct wire_reserve r;
	struct rmig_rkey k[4];

	return wire_reserve_decode(buf + WIRE_HDR_SIZE, (size_t)len - WIRE_HDR_SIZE, &r, k,
				   kmax, why, sizeof(why));
}

static void test_reserve(void)
{
	struct wire_reserve r;
	struct rmig_rkey k[4];
	uint8_t *p = buf + WIRE_HDR_SIZE;
	int len = reserve_msg(0, 2);

	CU_ASSERT_EQUAL(wire_reserve_decode(p, (size_t)len - WIRE_HDR_SIZE, &r, k, 4, why,
					    sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.nblocks, 2);
	CU_ASSERT_EQUAL(k[1].key, 78);
	CU_ASSERT_EQUAL(r.flags, WIRE_RES_ZEROED);
	CU_ASSERT_EQUAL(r.token[2], 3);
	CU_ASSERT_EQUAL(reserve_dec(len, 1), -EPROTO); /* more keys than offered */
	rmig_put_le32(p + 20, 1);          CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	rmig_put_le32(p + 16, 2);          CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	rmig_put_le32(p, 5);               CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	rmig_put_le32(p, (uint32_t)-5000); CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	rmig_put_le64(p + 8, 1ull << 40);  CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	memset(p + 24, 'a', WIRE_REASON_MAX); CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	rmig_put_le32(p + 4, 3);           CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	p[WIRE_RESERVE_SIZE + 28] = 0x40;  CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO); len = reserve_msg(0, 2);
	CU_ASSERT_EQUAL(reserve_dec(len - 4, 4), -EPROTO);
	/* a refusal: reason, no keys */
	len = reserve_msg(-ENOMEM, 2);
	CU_ASSERT_EQUAL(len, WIRE_HDR_SIZE + WIRE_RESERVE_SIZE);
	CU_ASSERT_EQUAL(wire_reserve_decode(p, (size_t)len - WIRE_HDR_SIZE, &r, k, 4, why,
					    sizeof(why)), 0);
	CU_ASSERT_EQUAL(r.status, -ENOMEM);
	CU_ASSERT_STRING_EQUAL(r.reason, "no memory here");
	CU_ASSERT_EQUAL(r.token[0], 0); /* a refusal never carries the token */
	rmig_put_le32(p + 4, 1); /* a refusal carrying keys */
	CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO);
	len = reserve_msg(-ENOMEM, 0);
	p[24 + WIRE_REASON_MAX] = 1; /* a refusal carrying a token */
	CU_ASSERT_EQUAL(reserve_dec(len, 4), -EPROTO);
}

static void test_join(void)
{
	struct wire_join j = { .token = { 9 }, .channel = 1, .channels = 2 }, jd;
	struct wire_reserve r = { .nblocks = 1 }, rd;
	struct rmig_rkey k = { .len = 4096, .key = 5, .flags = RMIG_ACCESS_REMOTE_WRITE }, kd;
	struct wire_hdr h;
	uint8_t *p = buf + WIRE_HDR_SIZE;
	int len = wire_join_encode(buf, sizeof(buf), &j);

	CU_ASSERT_EQUAL(len, WIRE_HDR_SIZE + WIRE_JOIN_SIZE);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, (size_t)len, &h), 0);
	CU_ASSERT_EQUAL(h.type, WIRE_JOIN);
	CU_ASSERT_STRING_EQUAL(wire_type_name(WIRE_JOIN), "JOIN");
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE, &jd, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(jd.token[0], 9);
	CU_ASSERT_EQUAL(jd.channel, 1);
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE - 1, &jd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 16, 0); /* channel 0 is the control channel, never joins */
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE, &jd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 16, 2); /* index beyond the count */
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE, &jd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 16, 1);
	rmig_put_le32(p + 20, WIRE_CHANNELS_MAX + 1);
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE, &jd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 20, 2);
	p[0] = 0; /* no token at all */
	CU_ASSERT_EQUAL(wire_join_decode(p, WIRE_JOIN_SIZE, &jd, why, sizeof(why)), -EPROTO);
	/* JOINED: RESERVE's layout under its own type */
	len = wire_joined_encode(buf, sizeof(buf), &r, &k);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, (size_t)len, &h), 0);
	CU_ASSERT_EQUAL(h.type, WIRE_JOINED);
	CU_ASSERT_EQUAL(wire_reserve_decode(p, h.len, &rd, &kd, 1, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(kd.key, 5);
}

static void test_round_end_status(void)
{
	struct wire_round r = { .round = 3, .final = 1, .pages = 10, .bytes = 40960, .channel = 2,
				.zero_pages = 2 }, rd;
	struct wire_end e = { .rounds = 4, .bytes = 5, .stream_bytes = 6 }, ed;
	struct wire_status s = { .status = -ECONNRESET, .reason = "bye" }, sd;
	uint8_t *p = buf + WIRE_HDR_SIZE;

	CU_ASSERT_EQUAL(wire_round_encode(buf, sizeof(buf), &r), WIRE_HDR_SIZE + WIRE_ROUND_SIZE);
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE, &rd, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(memcmp(&r, &rd, sizeof(r)), 0);
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE - 1, &rd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 4, 2);
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE, &rd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 4, 0);
	rmig_put_le64(p + 24, 11); /* more zero pages than pages */
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE, &rd, why, sizeof(why)), -EPROTO);
	rmig_put_le64(p + 24, 2);
	rmig_put_le32(p + 36, 1); /* padding */
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE, &rd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p + 36, 0);
	rmig_put_le32(p + 32, WIRE_CHANNELS_MAX); /* no such channel */
	CU_ASSERT_EQUAL(wire_round_decode(p, WIRE_ROUND_SIZE, &rd, why, sizeof(why)), -EPROTO);

	CU_ASSERT_EQUAL(wire_end_encode(buf, sizeof(buf), &e), WIRE_HDR_SIZE + WIRE_END_SIZE);
	CU_ASSERT_EQUAL(wire_end_decode(p, WIRE_END_SIZE, &ed, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(ed.stream_bytes, 6);
	CU_ASSERT_EQUAL(wire_end_decode(p, WIRE_END_SIZE + 1, &ed, why, sizeof(why)), -EPROTO);
	p[4] = 1;
	CU_ASSERT_EQUAL(wire_end_decode(p, WIRE_END_SIZE, &ed, why, sizeof(why)), -EPROTO);

	CU_ASSERT(wire_status_encode(buf, sizeof(buf), WIRE_CANCEL, &s) > 0);
	CU_ASSERT_EQUAL(wire_status_decode(p, WIRE_STATUS_SIZE, &sd, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(sd.status, -ECONNRESET);
	CU_ASSERT_STRING_EQUAL(sd.reason, "bye");
	CU_ASSERT_EQUAL(wire_status_encode(buf, sizeof(buf), WIRE_ROUND, &s), -EMSGSIZE);
	wire_status_encode(buf, sizeof(buf), WIRE_COMMIT, &s);
	p[5] = 1;
	CU_ASSERT_EQUAL(wire_status_decode(p, WIRE_STATUS_SIZE, &sd, why, sizeof(why)), -EPROTO);
	p[5] = 0;
	rmig_put_le32(p, 1);
	CU_ASSERT_EQUAL(wire_status_decode(p, WIRE_STATUS_SIZE, &sd, why, sizeof(why)), -EPROTO);
	rmig_put_le32(p, 0);
	memset(p + 8, 'q', WIRE_REASON_MAX);
	CU_ASSERT_EQUAL(wire_status_decode(p, WIRE_STATUS_SIZE, &sd, why, sizeof(why)), -EPROTO);
	CU_ASSERT_EQUAL(wire_status_decode(p, 3, &sd, why, sizeof(why)), -EPROTO);
}

static void test_stream(void)
{
	struct wire_hdr h;
	int len = wire_stream_encode(buf, sizeof(buf), "abc", 3);

	CU_ASSERT_EQUAL(len, WIRE_HDR_SIZE + 3);
	CU_ASSERT_EQUAL(wire_hdr_decode(buf, (size_t)len, &h), 0);
	CU_ASSERT_EQUAL(h.type, WIRE_STREAM);
	CU_ASSERT_EQUAL(memcmp(buf + WIRE_HDR_SIZE, "abc", 3), 0);
	CU_ASSERT_EQUAL(wire_stream_encode(buf, sizeof(buf), buf, WIRE_STREAM_MAX + 1), -EMSGSIZE);
}

/* Random bytes and bit flips of valid messages: decoders never crash and
 * never accept a HELLO whose blocks break the rules. */
static void test_garbage(void)
{
	struct wire_hello h;
	struct wire_block b[8];
	struct wire_reserve r;
	struct rmig_rkey k[8];
	struct wire_round rd;
	struct wire_end ed;
	struct wire_status sd;
	uint64_t seed = 12345;

	for (int iter = 0; iter < 20000; iter++) {
		int len = iter % 2 ? hello_msg() : reserve_msg(0, 2);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		buf[WIRE_HDR_SIZE + (seed >> 33) % (uint64_t)(len - WIRE_HDR_SIZE)] ^=
			(uint8_t)(1u << ((seed >> 20) % 8));
		size_t plen = (size_t)len - WIRE_HDR_SIZE - (iter % 7 == 0);
		uint8_t *p = buf + WIRE_HDR_SIZE;
		if (!wire_hello_decode(p, plen, &h, b, 8, why, sizeof(why))) {
			uint64_t sum = 0;
			for (uint32_t i = 0; i < h.nblocks; i++) {
				CU_ASSERT(b[i].len && b[i].len % h.page_size == 0);
				CU_ASSERT(memchr(b[i].name, 0, WIRE_NAME_MAX) != NULL);
				sum += b[i].len;
			}
			CU_ASSERT_EQUAL(sum, h.total);
		}
		if (!wire_reserve_decode(p, plen, &r, k, 8, why, sizeof(why)))
			CU_ASSERT(r.nblocks <= 8);
		wire_round_decode(p, plen % 64, &rd, why, sizeof(why));
		wire_end_decode(p, plen % 64, &ed, why, sizeof(why));
		wire_status_decode(p, plen, &sd, why, sizeof(why));
	}
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "header", test_hdr },
		{ "hello", test_hello },
		{ "reserve", test_reserve },
		{ "join, joined", test_join },
		{ "round, end, status", test_round_end_status },
		{ "stream", test_stream },
		{ "garbage", test_garbage },
		CU_TEST_INFO_NULL,
	};
	return rmig_test_run("migration wire", NULL, NULL, tests);
}
