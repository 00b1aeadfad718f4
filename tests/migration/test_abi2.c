/* SPDX-License-Identifier: MIT */
/*
 * Plugin ABI 2 (include/rdmamig/plugin.h), both ends in this process over
 * tcp: shutdown from another thread, long block names with page size and
 * flags, save_bitmap, stream_fd, device state inside rounds with several
 * channels.
 */
#define _GNU_SOURCE
#include "testutil.h"
#include <rdmamig/plugin.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define NB_MAX 4
#define FILL 0xee /* the destination's memory before the migration */

static const struct rmig_plugin_ops *ops;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Both ends of one session, and the blocks on each side. */
struct pair {
	struct rmig_plugin_config cfg;
	struct rmig_mig_listener *l;
	struct rmig_mig *src, *dst;
	unsigned nb;
	const char *names[NB_MAX];
	uint64_t len[NB_MAX];
	uint32_t page_size[NB_MAX], flags[NB_MAX];
	uint8_t *smem[NB_MAX], *dmem[NB_MAX];
	struct rmig_block_info2 info[NB_MAX]; /* what the destination was offered */
	int grant_rc;
	char dst_err[RMIG_ERR_MAX];
};

/* Destination: accept, place the blocks (filled with FILL), grant. */
static void *grant_main(void *arg)
{
	struct pair *p = arg;
	int rc = ops->accept(p->l, 5000, &p->dst);

	if (rc) {
		snprintf(p->dst_err, sizeof(p->dst_err), "%s", ops->error(NULL));
		p->grant_rc = rc;
		return NULL;
	}
	for (unsigned i = 0; i < p->nb && !rc; i++) {
		p->info[i].size = sizeof(p->info[i]);
		rc = ops->load_block2(p->dst, i, &p->info[i]);
		if (!rc)
			rc = ops->load_register_block(p->dst, i, p->dmem[i]);
	}
	if (!rc)
		rc = ops->load_grant(p->dst);
	if (rc)
		snprintf(p->dst_err, sizeof(p->dst_err), "%s", ops->error(p->dst));
	p->grant_rc = rc;
	return NULL;
}

static void pair_free(struct pair *p)
{
	if (p->src)
		ops->close(p->src);
	if (p->dst)
		ops->close(p->dst);
	if (p->l)
		ops->listen_close(p->l);
	for (unsigned i = 0; i < p->nb; i++) {
		free(p->smem[i]);
		free(p->dmem[i]);
	}
	memset(p, 0, sizeof(*p));
}

/* Listen, connect, offer, grant: both sessions ready for rounds. */
static int pair_setup(struct pair *p, unsigned channels)
{
	char addr[128];
	pthread_t t;
	int rc;

	p->cfg = (struct rmig_plugin_config){ .size = sizeof(p->cfg), .backend = "tcp",
					      .addr = "127.0.0.1:0", .timeout_ms = 5000,
					      .channels = channels, RMIG_TEST_PSK };
	for (unsigned i = 0; i < p->nb; i++) {
		if (posix_memalign((void **)&p->smem[i], 1u << 16, p->len[i]) ||
		    posix_memalign((void **)&p->dmem[i], 1u << 16, p->len[i]))
			return -ENOMEM;
		rmig_test_fill(p->smem[i], p->len[i], i + 1, 0);
		memset(p->dmem[i], FILL, p->len[i]);
	}
	if ((rc = ops->listen(&p->cfg, &p->l)) || (rc = ops->listen_addr(p->l, addr, sizeof(addr))))
		return rc;
	if (pthread_create(&t, NULL, grant_main, p))
		return -EAGAIN;
	p->cfg.addr = addr;
	rc = ops->open(&p->cfg, &p->src);
	for (unsigned i = 0; i < p->nb && !rc; i++) {
		struct rmig_block_desc d = { .size = sizeof(d), .name = p->names[i],
					     .host = p->smem[i], .len = p->len[i],
					     .page_size = p->page_size[i], .flags = p->flags[i] };
		rc = ops->add_ram_block2(p->src, &d);
		rc = rc == (int)i ? 0 : rc < 0 ? rc : -EINVAL;
	}
	if (!rc)
		rc = ops->setup(p->src);
	if (rc)
		fprintf(stderr, "\n    source: %s", ops->error(p->src));
	pthread_join(t, NULL);
	p->cfg.addr = NULL;
	if (p->grant_rc)
		fprintf(stderr, "\n    destination: %s", p->dst_err);
	return rc ? rc : p->grant_rc;
}

/* Destination: the stream to its end (expecting want bytes), then commit. */
struct reader {
	struct pair *p;
	uint8_t buf[2 << 20];
	size_t got;
	int rc;
	/* With mark set: on reaching byte mark of the stream, mark_ok says
	 * whether block 0 at the destination equals the source's (1) or not. */
	size_t mark;
	int mark_ok;
};

static void *read_commit_main(void *arg)
{
	struct reader *r = arg;
	long n;

	for (;;) {
		size_t cap = sizeof(r->buf) - r->got;
		if (r->mark && r->got < r->mark && cap > r->mark - r->got)
			cap = r->mark - r->got;
		if ((n = ops->stream_read(r->p->dst, r->buf + r->got, cap, 5000)) <= 0)
			break;
		r->got += (size_t)n;
		if (r->mark && r->got == r->mark && !r->mark_ok)
			r->mark_ok = memcmp(r->p->smem[0], r->p->dmem[0], r->p->len[0]) ? -1 : 1;
	}
	r->rc = n < 0 ? (int)n : ops->load_commit(r->p->dst);
	return NULL;
}

/* Source: finish while a thread reads the stream and commits (started
 * already if t is given). */
static int finish_started(struct pair *p, struct reader *r, pthread_t t)
{
	int rc = ops->finish(p->src);
	if (rc)
		fprintf(stderr, "\n    finish: %s", ops->error(p->src));
	pthread_join(t, NULL);
	if (r->rc)
		fprintf(stderr, "\n    destination: %s", ops->error(p->dst));
	return rc ? rc : r->rc;
}

static int finish_both(struct pair *p, struct reader *r)
{
	pthread_t t;

	r->p = p;
	r->got = 0;
	if (pthread_create(&t, NULL, read_commit_main, r))
		return -EAGAIN;
	return finish_started(p, r, t);
}

static void one_block(struct pair *p, const char *name, uint64_t len)
{
	memset(p, 0, sizeof(*p));
	p->nb = 1;
	p->names[0] = name;
	p->len[0] = len;
}

/* --- shutdown ----------------------------------------------------------- */

struct blocked {
	struct pair *p;
	int which; /* 0 accept, 1 stream_read, 2 finish, 3 round_end */
	long rc;
	uint64_t returned_ms;
	char err[RMIG_ERR_MAX];
};

static void *blocked_main(void *arg)
{
	struct blocked *b = arg;
	struct rmig_mig *s = NULL;
	char c;

	switch (b->which) {
	case 0:
		b->rc = ops->accept(b->p->l, 10000, &s);
		snprintf(b->err, sizeof(b->err), "%s", ops->error(NULL));
		break;
	case 1:
		b->rc = ops->stream_read(b->p->dst, &c, 1, 10000);
		snprintf(b->err, sizeof(b->err), "%s", ops->error(b->p->dst));
		break;
	case 2:
		b->rc = ops->finish(b->p->src);
		snprintf(b->err, sizeof(b->err), "%s", ops->error(b->p->src));
		break;
	default: {
		struct rmig_round_stats rs;
		b->rc = ops->round_end(b->p->src, &rs);
		snprintf(b->err, sizeof(b->err), "%s", ops->error(b->p->src));
	}
	}
	b->returned_ms = now_ms();
	if (s)
		ops->close(s);
	return NULL;
}

/* Start the call in a thread, shut it down after 200 ms, measure. */
static void shut_and_time(struct blocked *b, const char *what)
{
	pthread_t t;
	uint64_t t0;

	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, blocked_main, b), 0);
	usleep(200 * 1000);
	t0 = now_ms();
	if (b->which == 0)
		ops->listen_shutdown(b->p->l);
	else
		ops->shutdown(b->which == 1 ? b->p->dst : b->p->src, "the operator cancelled");
	pthread_join(t, NULL);
	fprintf(stderr, "\n    %s: %ld after %llu ms: %s", what, b->rc,
		(unsigned long long)(b->returned_ms - t0), b->err);
	CU_ASSERT_EQUAL(b->rc, -ECANCELED);
	CU_ASSERT(b->returned_ms - t0 < 1000);
	CU_ASSERT_PTR_NOT_NULL(strstr(b->err, "shut down"));
}

static void test_shutdown_accept(void)
{
	struct pair p = { 0 };
	struct blocked b = { .p = &p, .which = 0 };

	p.cfg = (struct rmig_plugin_config){ .size = sizeof(p.cfg), .backend = "tcp",
					     .addr = "127.0.0.1:0", RMIG_TEST_PSK };
	CU_ASSERT_EQUAL_FATAL(ops->listen(&p.cfg, &p.l), 0);
	shut_and_time(&b, "accept");
	pair_free(&p);
}

static void test_shutdown_stream_read(void)
{
	struct pair p;
	struct blocked b = { .p = &p, .which = 1 };

	one_block(&p, "pc.ram", 64 * PAGE);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	shut_and_time(&b, "stream_read");
	CU_ASSERT_PTR_NOT_NULL(strstr(b.err, "the operator cancelled"));
	CU_ASSERT_EQUAL(ops->state(p.dst), RMIG_STATE_ROLLED_BACK);
	/* Every later call says the same at once. */
	char c;
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, &c, 1, 10000), -ECANCELED);
	pair_free(&p);
}

static void test_shutdown_finish(void)
{
	struct pair p;
	struct blocked b = { .p = &p, .which = 2 };
	struct rmig_round_stats rs;

	one_block(&p, "pc.ram", 64 * PAGE);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	CU_ASSERT_EQUAL_FATAL(ops->round_start(p.src, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL_FATAL(ops->round_end(p.src, &rs), 0);
	/* Nobody at the destination reads: finish waits for a COMMIT. */
	shut_and_time(&b, "finish");
	CU_ASSERT_EQUAL(ops->cancel(p.src, "shut down"), 0);
	CU_ASSERT_EQUAL(ops->state(p.src), RMIG_STATE_ROLLED_BACK);
	pair_free(&p);
}

#ifdef RMIG_TEST_HOOKS
/* Channel 1 holds its fence back 5 s (the test hook): round_end waits. */
static void test_shutdown_round_end(void)
{
	struct pair p;
	struct blocked b = { .p = &p, .which = 3 };

	one_block(&p, "pc.ram", 8u << 20);
	setenv("RMIG_TEST_DELAY_CHANNEL", "1:5000", 1);
	int rc = pair_setup(&p, 2);
	unsetenv("RMIG_TEST_DELAY_CHANNEL");
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	struct rmig_page_range all = { .block = 0, .len = p.len[0] };
	CU_ASSERT_EQUAL_FATAL(ops->round_start(p.src, 0), 0);
	CU_ASSERT_EQUAL_FATAL(ops->save_pages(p.src, &all, 1), 0);
	shut_and_time(&b, "round_end, 2 channels");
	CU_ASSERT_EQUAL(ops->state(p.src), RMIG_STATE_ROLLED_BACK);
	pair_free(&p);
}
#endif

/* --- block names, page sizes, flags ---------------------------------------- */

static void test_long_names(void)
{
	char n0[RMIG_BLOCK_NAME_MAX], n1[RMIG_BLOCK_NAME_MAX];
	struct rmig_block_info v1;
	struct reader *r = calloc(1, sizeof(*r));
	struct rmig_round_stats rs;
	struct pair p = { .nb = 2, .names = { n0, n1 }, .len = { 16 * PAGE, 32 * PAGE },
			  .page_size = { 0, 2 * PAGE }, .flags = { 0, RMIG_BLOCK_DEST_ZEROED } };

	memset(n0, 'a', sizeof(n0) - 1);
	n0[sizeof(n0) - 1] = 0;
	memcpy(n1, n0, sizeof(n1));
	n1[0] = 'b';
	CU_ASSERT_EQUAL_FATAL(strlen(n0), 255);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	CU_ASSERT_STRING_EQUAL(p.info[0].name, n0);
	CU_ASSERT_STRING_EQUAL(p.info[1].name, n1);
	CU_ASSERT_EQUAL(p.info[0].page_size, PAGE);
	CU_ASSERT_EQUAL(p.info[1].page_size, 2 * PAGE);
	CU_ASSERT_EQUAL(p.info[0].flags, 0);
	CU_ASSERT_EQUAL(p.info[1].flags, RMIG_BLOCK_DEST_ZEROED);
	CU_ASSERT_EQUAL(p.info[1].len, 32 * PAGE);
	/* ABI 1's load_block cannot hold such a name: refused, with the fix. */
	CU_ASSERT_EQUAL(ops->load_block(p.dst, 0, &v1), -ENAMETOOLONG);
	fprintf(stderr, "\n    v1 load_block: %s", ops->error(p.dst));
	CU_ASSERT_PTR_NOT_NULL(strstr(ops->error(p.dst), "load_block2"));
	/* Both blocks migrate whole. */
	struct rmig_page_range all[2] = { { .block = 0, .len = p.len[0] },
					  { .block = 1, .len = p.len[1] } };
	CU_ASSERT_EQUAL_FATAL(ops->round_start(p.src, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL_FATAL(ops->save_pages(p.src, all, 2), 0);
	CU_ASSERT_EQUAL_FATAL(ops->round_end(p.src, &rs), 0);
	CU_ASSERT_EQUAL_FATAL(finish_both(&p, r), 0);
	CU_ASSERT_EQUAL(memcmp(p.smem[0], p.dmem[0], p.len[0]), 0);
	CU_ASSERT_EQUAL(memcmp(p.smem[1], p.dmem[1], p.len[1]), 0);
	pair_free(&p);
	free(r);
}

static void test_bad_blocks(void)
{
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .addr = "127.0.0.1:1",
					  RMIG_TEST_PSK };
	char longname[RMIG_BLOCK_NAME_MAX + 1];
	void *mem = aligned_alloc(1u << 16, 1u << 16);
	struct rmig_mig *s;

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	CU_ASSERT_EQUAL_FATAL(ops->open(&cfg, &s), 0);
	struct rmig_block_desc d = { .size = sizeof(d), .name = longname, .host = mem,
				     .len = 1u << 16 };
	CU_ASSERT_EQUAL(ops->add_ram_block2(s, &d), -ENAMETOOLONG);
	d.name = "ok";
	d.page_size = 3 * PAGE;
	CU_ASSERT_EQUAL(ops->add_ram_block2(s, &d), -EINVAL);
	d.page_size = 1u << 17; /* the block is not a multiple of it */
	CU_ASSERT_EQUAL(ops->add_ram_block2(s, &d), -EINVAL);
	d.page_size = 0;
	d.flags = 1u << 7;
	CU_ASSERT_EQUAL(ops->add_ram_block2(s, &d), -EINVAL);
	d.flags = 0;
	CU_ASSERT_EQUAL(ops->add_ram_block2(s, &d), 0);
	ops->close(s);
	free(mem);
}

/* --- save_bitmap ----------------------------------------------------------- */

static int bit(const uint64_t *bm, uint64_t i)
{
	return (int)(bm[i / 64] >> (i % 64) & 1);
}

static void test_save_bitmap(void)
{
	enum { PAGES = 300, FIRST = 5, NPAGES = 200 };
	uint64_t bm[4] = {
		0x8000000000000001ull | 0xf0ull, /* ends, a run inside */
		~0ull,                           /* a whole word: runs across words */
		0,                               /* skipped */
		~0ull,                           /* only 200 - 192 = 8 bits count */
	};
	struct reader *r = calloc(1, sizeof(*r));
	struct rmig_round_stats rs;
	struct rmig_mig_stats st = { .size = sizeof(st) };
	struct pair p;
	uint64_t want = 0;

	one_block(&p, "pc.ram", PAGES * PAGE);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	CU_ASSERT_EQUAL_FATAL(ops->round_start(p.src, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(ops->save_bitmap(p.src, 0, FIRST, bm, NPAGES), 0);
	/* Past the block's end: refused, nothing queued. */
	CU_ASSERT_EQUAL(ops->save_bitmap(p.src, 0, PAGES - 10, bm, 11), -ERANGE);
	CU_ASSERT_EQUAL(ops->save_bitmap(p.src, 1, 0, bm, 1), -ENOENT);
	CU_ASSERT_EQUAL_FATAL(ops->round_end(p.src, &rs), 0);
	CU_ASSERT_EQUAL_FATAL(finish_both(&p, r), 0);
	for (uint64_t i = 0; i < NPAGES; i++)
		want += (uint64_t)bit(bm, i);
	CU_ASSERT_EQUAL(ops->stats(p.src, &st), 0);
	CU_ASSERT_EQUAL(st.pages, want);
	/* Exactly the bitmap's pages arrived, byte for byte; no other page. */
	unsigned wrong = 0;
	for (uint64_t pg = 0; pg < PAGES; pg++) {
		int sent = pg >= FIRST && pg < FIRST + NPAGES && bit(bm, pg - FIRST);
		const uint8_t *d = p.dmem[0] + pg * PAGE;
		if (sent ? memcmp(d, p.smem[0] + pg * PAGE, PAGE)
			 : d[0] != FILL || memcmp(d, d + 1, PAGE - 1))
			wrong++;
	}
	fprintf(stderr, "\n    %llu pages in the bitmap, %llu sent, %u wrong",
		(unsigned long long)want, (unsigned long long)st.pages, wrong);
	CU_ASSERT_EQUAL(wrong, 0);
	pair_free(&p);
	free(r);
}

/* --- stream_fd --------------------------------------------------------- */

static int readable(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 1 && (pfd.revents & POLLIN);
}

static void *finish_main(void *arg)
{
	struct pair *p = arg;

	p->grant_rc = ops->finish(p->src);
	return NULL;
}

static void test_stream_fd(void)
{
	struct rmig_round_stats rs;
	uint8_t in[256], out[200];
	struct pair p;
	pthread_t t;
	int fd;

	one_block(&p, "pc.ram", 16 * PAGE);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	fd = ops->stream_fd(p.dst);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(ops->stream_fd(p.dst), fd); /* the same one each time */
	/* Nothing sent: not readable, and a non-blocking read says so. */
	CU_ASSERT_FALSE(readable(fd, 100));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in, sizeof(in), 0), -EAGAIN);
	CU_ASSERT_FALSE(readable(fd, 0));
	/* Data: readable, read it all (in two reads), then not readable. */
	rmig_test_fill(out, sizeof(out), 7, 0);
	CU_ASSERT_EQUAL_FATAL(ops->stream_write(p.src, out, sizeof(out)), 0);
	CU_ASSERT_TRUE(readable(fd, 2000));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in, 150, 0), 150);
	CU_ASSERT_TRUE(readable(fd, 0)); /* 50 bytes still buffered */
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in + 150, sizeof(in) - 150, 0), 50);
	CU_ASSERT_EQUAL(memcmp(in, out, sizeof(out)), 0);
	CU_ASSERT_FALSE(readable(fd, 0));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in, sizeof(in), 0), -EAGAIN);
	/* A ROUND alone wakes the fd; reading it finds no stream bytes. */
	CU_ASSERT_EQUAL_FATAL(ops->round_start(p.src, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL_FATAL(ops->round_end(p.src, &rs), 0);
	CU_ASSERT_TRUE(readable(fd, 2000));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in, sizeof(in), 0), -EAGAIN);
	CU_ASSERT_FALSE(readable(fd, 0));
	/* The end: readable, the read says 0, commit. */
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, finish_main, &p), 0);
	CU_ASSERT_TRUE(readable(fd, 2000));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, in, sizeof(in), 0), 0);
	CU_ASSERT_TRUE(readable(fd, 0));
	CU_ASSERT_EQUAL(ops->load_commit(p.dst), 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(p.grant_rc, 0);
	CU_ASSERT_EQUAL(ops->state(p.src), RMIG_STATE_COMMIT);
	pair_free(&p);
}

/* shutdown makes the fd readable, and the read says why. */
static void test_stream_fd_shutdown(void)
{
	struct pair p;
	char c;
	int fd;

	one_block(&p, "pc.ram", 16 * PAGE);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 1), 0);
	fd = ops->stream_fd(p.dst);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FALSE(readable(fd, 50));
	ops->shutdown(p.dst, "yank");
	CU_ASSERT_TRUE(readable(fd, 0));
	CU_ASSERT_EQUAL(ops->stream_read(p.dst, &c, 1, 0), -ECANCELED);
	CU_ASSERT_PTR_NOT_NULL(strstr(ops->error(p.dst), "yank"));
	CU_ASSERT_TRUE(readable(fd, 0));
	pair_free(&p);
}

/* --- device state inside rounds, 4 channels ------------------------------ */

/* Stream pieces of every size up to past one message, pages between them. */
static int write_pieces(struct pair *p, const uint8_t *out, size_t *off, size_t end,
			uint64_t *page)
{
	static const size_t sizes[] = { 1, 7, 4096, 65519, 65520, 65521, 200000, 333 };
	int rc = 0;

	for (unsigned i = 0; *off < end && !rc; i++) {
		size_t n = sizes[i % 8] < end - *off ? sizes[i % 8] : end - *off;
		struct rmig_page_range r = { .block = 0, .offset = *page % (p->len[0] / PAGE) * PAGE,
					     .len = 64 * PAGE };
		if (r.offset + r.len > p->len[0])
			r.offset = 0;
		*page += 64;
		if ((rc = ops->save_pages(p->src, &r, 1)) || (rc = ops->stream_write(p->src, out + *off, n)))
			break;
		*off += n;
	}
	return rc;
}

static void test_stream_in_rounds(void)
{
	enum { LEN = 1 << 20 };
	struct reader *r = calloc(1, sizeof(*r));
	uint8_t *out = malloc(LEN);
	struct rmig_round_stats rs;
	size_t off = 0, mark = 300000;
	uint64_t page = 0;
	struct pair p;
	pthread_t t;

	CU_ASSERT_FATAL(r && out);
	rmig_test_fill(out, LEN, 99, 0);
	one_block(&p, "pc.ram", 16u << 20);
	CU_ASSERT_EQUAL_FATAL(pair_setup(&p, 4), 0);
	r->p = &p;
	r->mark = mark + 1; /* once the first byte written after round_end is read */
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, read_commit_main, r), 0);
	/* Round 0: every page, stream bytes in between. */
	struct rmig_page_range all = { .block = 0, .len = p.len[0] };
	CU_ASSERT_EQUAL(ops->round_start(p.src, 0), 0);
	CU_ASSERT_EQUAL(write_pieces(&p, out, &off, mark / 2, &page), 0);
	CU_ASSERT_EQUAL(ops->save_pages(p.src, &all, 1), 0);
	CU_ASSERT_EQUAL(write_pieces(&p, out, &off, mark, &page), 0);
	CU_ASSERT_EQUAL(ops->round_end(p.src, &rs), 0);
	/* After round_end: the reader reaches these bytes only once round
	 * 0's pages (all of them) are in place. */
	CU_ASSERT_EQUAL(ops->stream_write(p.src, out + off, 1000), 0);
	off += 1000;
	CU_ASSERT_EQUAL(ops->round_start(p.src, RMIG_ROUND_FINAL), 0);
	CU_ASSERT_EQUAL(write_pieces(&p, out, &off, LEN, &page), 0);
	CU_ASSERT_EQUAL(ops->round_end(p.src, &rs), 0);
	CU_ASSERT_EQUAL(finish_started(&p, r, t), 0);
	fprintf(stderr, "\n    %zu stream bytes read of %zu written, in order: %s; pages before the mark: %s",
		r->got, off, r->got == off && !memcmp(r->buf, out, off) ? "yes" : "no",
		r->mark_ok == 1 ? "all there" : "missing");
	CU_ASSERT_EQUAL(r->got, LEN);
	CU_ASSERT_EQUAL(memcmp(r->buf, out, LEN), 0);
	CU_ASSERT_EQUAL(r->mark_ok, 1);
	CU_ASSERT_EQUAL(memcmp(p.smem[0], p.dmem[0], p.len[0]), 0);
	pair_free(&p);
	free(out);
	free(r);
}

/* --- versions -------------------------------------------------------------- */

static void test_entry_versions(void)
{
	/* v1 and v2 frameworks get the same table (a v1 one reads its first
	 * bytes); 0 and later ABIs get NULL. */
	CU_ASSERT_PTR_NULL(rmig_plugin_entry(0));
	CU_ASSERT_PTR_EQUAL(rmig_plugin_entry(1), ops);
	CU_ASSERT_PTR_EQUAL(rmig_plugin_entry(2), ops);
	CU_ASSERT_PTR_NULL(rmig_plugin_entry(3));
	CU_ASSERT_EQUAL(ops->abi_version, 2);
	CU_ASSERT_EQUAL(ops->size, sizeof(*ops));
	/* Every ABI 2 hook is implemented. */
	CU_ASSERT(ops->shutdown && ops->listen_shutdown && ops->stream_fd && ops->add_ram_block2 &&
		  ops->load_block2 && ops->save_bitmap && ops->set_log && ops->memlock_raise);
}

/* set_log: the library's messages reach the host's callback. */
static int logged;
static void count_log(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level == RMIG_LOG_DEBUG && strstr(msg, "->"))
		logged++;
}

static void test_set_log(void)
{
	struct rmig_plugin_config cfg = { .size = sizeof(cfg), .addr = "127.0.0.1:1",
					  .timeout_ms = 200, RMIG_TEST_PSK };
	struct rmig_mig *s;

	ops->set_log(count_log, NULL);
	CU_ASSERT_EQUAL_FATAL(ops->open(&cfg, &s), 0);
	ops->close(s); /* reserve -> rolled back: one state transition logged */
	ops->set_log(NULL, NULL);
	CU_ASSERT(logged >= 1);
}

int main(void)
{
	static const CU_TestInfo tests[] = {
		{ "entry: ABI 1 and 2 get the table, 0 and 3 NULL", test_entry_versions },
		{ "set_log receives the library's messages", test_set_log },
		{ "listen_shutdown wakes a blocked accept", test_shutdown_accept },
		{ "shutdown wakes a blocked stream_read", test_shutdown_stream_read },
		{ "shutdown wakes a blocked finish", test_shutdown_finish },
#ifdef RMIG_TEST_HOOKS
		{ "shutdown wakes a blocked round_end (2 channels)", test_shutdown_round_end },
#endif
		{ "255-byte names, page size and flags round-trip", test_long_names },
		{ "add_ram_block2 refuses what it cannot take", test_bad_blocks },
		{ "save_bitmap moves exactly the bitmap's pages", test_save_bitmap },
		{ "stream_fd is readable exactly when a read has something", test_stream_fd },
		{ "stream_fd after shutdown", test_stream_fd_shutdown },
		{ "stream_write inside rounds with 4 channels, in order", test_stream_in_rounds },
		CU_TEST_INFO_NULL,
	};

	ops = rmig_plugin_entry(RMIG_PLUGIN_ABI_VERSION);
	if (!ops || ops->size < sizeof(*ops)) {
		fprintf(stderr, "librdmamig does not serve ABI %d\n", RMIG_PLUGIN_ABI_VERSION);
		return 1;
	}
	return rmig_test_run("abi2", NULL, NULL, tests);
}
