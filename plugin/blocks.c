/* SPDX-License-Identifier: MIT */
/*
 * The RAM block table and its registration.
 *
 * Source: local-only regions (no remote rights).  Whole blocks when the
 * memlock budget allows (one registration, no per-write lookups);
 * otherwise MIG_CHUNK_SIZE chunks registered when first written and kept in
 * an LRU cache bounded by the budget, as QEMU's dynamic registration does.
 * Destination: whole blocks with REMOTE_WRITE, only after the handshake,
 * deregistered on commit, cancel, error and close.
 */
#define _GNU_SOURCE
#include "session.h"
#include "../common/clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../common/log.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

uint64_t mig_total_bytes(const struct rmig_mig *s)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < s->nblocks; i++)
		if (s->blocks[i].live)
			sum += s->blocks[i].len;
	return sum;
}

int mig_add_block(struct rmig_mig *s, const char *name, void *host, uint64_t len)
{
	struct rmig_block_desc d = { .size = sizeof(d), .name = name, .host = host, .len = len };

	return mig_add_block2(s, &d);
}

int mig_add_block2(struct rmig_mig *s, const struct rmig_block_desc *d)
{
	struct mig_block *grown;
	const char *name = d->name;
	uint32_t ps = d->page_size ? d->page_size : s->page_size;

	if (s->role != MIG_SOURCE || s->state != RMIG_STATE_RESERVE)
		return mig_err(s, -EINVAL, "RAM blocks are added on the source before setup");
	if (!name || !*name)
		return mig_err(s, -EINVAL, "a RAM block needs a name");
	if (strlen(name) >= sizeof(s->blocks[0].name))
		return mig_err(s, -ENAMETOOLONG, "RAM block name of %zu bytes: at most %zu",
			       strlen(name), sizeof(s->blocks[0].name) - 1);
	if (ps < s->page_size || (ps & (ps - 1)))
		return mig_err(s, -EINVAL,
			       "RAM block %s: page size %u is not a power-of-two multiple of the session's %u",
			       name, ps, s->page_size);
	if (d->flags & ~(uint32_t)RMIG_BLOCK_DEST_ZEROED)
		return mig_err(s, -EINVAL, "RAM block %s: unknown flags 0x%x", name, d->flags);
	if (!d->host || !d->len || d->len % ps || (uintptr_t)d->host % ps)
		return mig_err(s, -EINVAL,
			       "RAM block %s must be page-aligned and a multiple of %u bytes",
			       name, ps);
	if (s->nblocks >= WIRE_BLOCKS_MAX)
		return mig_err(s, -E2BIG, "more than %zu RAM blocks", (size_t)WIRE_BLOCKS_MAX);
	for (uint32_t i = 0; i < s->nblocks; i++)
		if (s->blocks[i].live && !strcmp(s->blocks[i].name, name))
			return mig_err(s, -EEXIST, "RAM block %s is already in the session", name);
	grown = realloc(s->blocks, (s->nblocks + 1) * sizeof(*grown));
	if (!grown)
		return mig_err(s, -ENOMEM, "out of memory for the block table");
	s->blocks = grown;
	struct mig_block *b = &s->blocks[s->nblocks];
	memset(b, 0, sizeof(*b));
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->host = d->host;
	b->len = d->len;
	b->page_size = ps;
	b->flags = d->flags;
	b->live = 1;
	b->sent = calloc((d->len / s->page_size + 7) / 8, 1);
	if (!b->sent)
		return mig_err(s, -ENOMEM, "out of memory for the block's page bitmap");
	return (int)s->nblocks++;
}

int mig_remove_block(struct rmig_mig *s, uint32_t block)
{
	if (s->role != MIG_SOURCE || s->state != RMIG_STATE_RESERVE)
		return mig_err(s, -EBUSY, "RAM blocks can be removed only before setup");
	if (block >= s->nblocks || !s->blocks[block].live)
		return mig_err(s, -ENOENT, "no RAM block %u", block);
	s->blocks[block].live = 0;
	return 0;
}

/* Bytes this session may pin: the configured budget, else RLIMIT_MEMLOCK
 * (unlimited for root, who can lift it). */
static uint64_t memlock_budget(const struct rmig_mig *s)
{
	struct rlimit rl;

	if (s->cfg.memlock_budget)
		return s->cfg.memlock_budget;
	if (geteuid() == 0 || getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_max == RLIM_INFINITY)
		return UINT64_MAX;
	return rl.rlim_max;
}

/* Counters shared by the channel workers (chunked registration runs in them). */
static int reg(struct rmig_mig *s, struct rmig_ep *ep, void *addr, uint64_t len,
	       unsigned access, struct rmig_mr **mr)
{
	uint64_t t0 = rmig_now_ns();
	int rc = rmig_reg_mr(ep, addr, len, access, mr);

	__atomic_add_fetch(&s->st.reg_ns, rmig_now_ns() - t0, __ATOMIC_RELAXED);
	if (!rc) {
		__atomic_add_fetch(&s->st.regs, 1, __ATOMIC_RELAXED);
		if (access != RMIG_ACCESS_LOCAL)
			__atomic_add_fetch(&s->st.regs_remote, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->st.pinned_bytes, len, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->st.mrs_live, 1, __ATOMIC_RELAXED);
	}
	return rc;
}

static void dereg(struct rmig_mig *s, struct rmig_ep *ep, struct rmig_mr **mr)
{
	if (!*mr)
		return;
	rmig_dereg_mr(ep, *mr);
	*mr = NULL;
	__atomic_sub_fetch(&s->st.mrs_live, 1, __ATOMIC_RELAXED);
}

/* The guest's registration on channel 0 serves channel c too (one domain). */
static void share_whole(struct rmig_mig *s, struct mig_chan *c)
{
	for (uint32_t i = 0; i < s->nblocks; i++)
		c->mrs[i] = s->ch[0].mrs[i];
	c->mrs_shared = 1;
}

/*
 * With a shared domain (s->dom) the blocks are registered once, on channel
 * 0, and every channel writes from that registration; chunks are
 * registered by the channel that writes them (each chunk is one stripe,
 * owned by one channel), so none is registered twice either.  Without
 * one, every channel registers the blocks on its own endpoint (a region
 * and its key belong to one connection's protection domain) and the
 * budget counts the guest once per channel.
 */
int mig_register_source(struct rmig_mig *s, struct mig_chan *c)
{
	uint64_t total = mig_total_bytes(s) * (s->dom ? 1 : s->nch),
		 budget = memlock_budget(s);
	int rc;

	if (c->idx && s->dom && !s->chunked) {
		share_whole(s, c);
		return 0;
	}
	if (c->idx == 0)
		s->chunked = s->cfg.reg_mode == RMIG_REG_CHUNKED ||
			     (s->cfg.reg_mode == RMIG_REG_AUTO && total > budget);
	for (uint32_t i = 0; i < s->nblocks && !s->chunked; i++) {
		if (!s->blocks[i].live)
			continue;
		rc = reg(s, c->ep, s->blocks[i].host, s->blocks[i].len, RMIG_ACCESS_LOCAL,
			 &c->mrs[i]);
		if (rc && (s->cfg.reg_mode == RMIG_REG_WHOLE || c->idx))
			return mig_fail(s, rc, "cannot register RAM block %s: %s",
					s->blocks[i].name, rmig_ep_error(c->ep));
		if (rc) {
			/* The backend could not pin it all: fall back to chunks. */
			for (uint32_t j = 0; j < i; j++)
				dereg(s, c->ep, &c->mrs[j]);
			s->chunked = 1;
		}
	}
	if (s->chunked) {
		/* Channels share the budget: each caches its own stripes. */
		uint64_t n = budget / MIG_CHUNK_SIZE / s->nch;
		c->chunks_max = n < 2 ? 2 : n > 1024 ? 1024 : (unsigned)n;
		c->chunks = calloc(c->chunks_max, sizeof(*c->chunks));
		if (!c->chunks)
			return mig_fail(s, -ENOMEM, "out of memory for the registration cache");
	}
	return 0;
}

/*
 * Evict the least recently used chunk.  The last batch that wrote from it
 * may still be gathered or in flight: wait for that one batch only (with
 * LRU it has almost always completed), not the whole pipeline.
 */
static int evict_chunk(struct mig_chan *c)
{
	unsigned victim = 0;
	int rc;

	for (unsigned i = 1; i < c->nchunks; i++)
		if (c->chunks[i].used < c->chunks[victim].used)
			victim = i;
	if ((rc = chan_wait_batch(c, c->chunks[victim].last_wr)))
		return rc;
	dereg(c->s, c->ep, &c->chunks[victim].mr);
	c->chunks[victim] = c->chunks[--c->nchunks];
	return 0;
}

int mig_local_mr(struct mig_chan *c, uint32_t b, uint64_t off,
		 const struct rmig_mr **mr, uint64_t *loff)
{
	struct rmig_mig *s = c->s;
	struct mig_block *blk = &s->blocks[b];
	uint64_t idx = off / MIG_CHUNK_SIZE, clen;
	struct mig_chunk *k;
	int rc;

	if (!s->chunked) {
		*mr = c->mrs[b];
		*loff = off;
		return 0;
	}
	for (unsigned i = 0; i < c->nchunks; i++) {
		if (c->chunks[i].block == b && c->chunks[i].idx == idx) {
			c->chunks[i].used = ++c->lru;
			c->chunks[i].last_wr = c->next_wr_id;
			*mr = c->chunks[i].mr;
			*loff = off - idx * MIG_CHUNK_SIZE;
			return 0;
		}
	}
	if (c->nchunks == c->chunks_max && (rc = evict_chunk(c)))
		return rc;
	k = &c->chunks[c->nchunks];
	clen = blk->len - idx * MIG_CHUNK_SIZE;
	if (clen > MIG_CHUNK_SIZE)
		clen = MIG_CHUNK_SIZE;
	rc = reg(s, c->ep, blk->host + idx * MIG_CHUNK_SIZE, clen, RMIG_ACCESS_LOCAL, &k->mr);
	if (rc == -EFAULT)
		return chan_err(c, rc,
				"cannot register a chunk of RAM block %s: %s (memory the host write-protects for dirty tracking cannot be pinned on demand: give the source a memlock budget for whole blocks)",
				blk->name, rmig_ep_error(c->ep));
	if (rc)
		return chan_err(c, rc, "cannot register a chunk of RAM block %s: %s",
				blk->name, rmig_ep_error(c->ep));
	k->block = b;
	k->idx = idx;
	k->used = ++c->lru;
	k->last_wr = c->next_wr_id;
	c->nchunks++;
	*mr = k->mr;
	*loff = off - idx * MIG_CHUNK_SIZE;
	return 0;
}

int mig_register_dest(struct rmig_mig *s, struct mig_chan *c)
{
	uint64_t total = mig_total_bytes(s), budget = memlock_budget(s);
	int rc;

	if (total > budget)
		return mig_err(s, -ENOMEM,
			       "the destination's memlock budget of %llu MiB is below the %llu MiB guest; raise ulimit -l",
			       (unsigned long long)(budget >> 20),
			       (unsigned long long)(total >> 20));
	if (c->idx && s->dom) {
		share_whole(s, c);
		return 0;
	}
	if (!s->dom && total * s->nch > budget)
		return mig_err(s, -ENOMEM,
			       "the destination's memlock budget of %llu MiB is below the %llu MiB guest times %u channels; raise ulimit -l",
			       (unsigned long long)(budget >> 20),
			       (unsigned long long)(total >> 20), s->nch);
	for (uint32_t i = 0; i < s->nblocks; i++) {
		rc = reg(s, c->ep, s->blocks[i].host, s->blocks[i].len, RMIG_ACCESS_REMOTE_WRITE,
			 &c->mrs[i]);
		if (rc) {
			for (uint32_t j = 0; j < i; j++)
				dereg(s, c->ep, &c->mrs[j]);
			return mig_err(s, rc, "cannot register RAM block %s for remote write: %s",
				       s->blocks[i].name, rmig_ep_error(c->ep));
		}
	}
	return 0;
}

void mig_deregister_chan(struct mig_chan *c)
{
	if (!c->ep)
		return;
	for (uint32_t i = 0; c->mrs && i < c->s->nblocks; i++) {
		if (c->mrs_shared)
			c->mrs[i] = NULL; /* channel 0's: deregistered there */
		else
			dereg(c->s, c->ep, &c->mrs[i]);
	}
	for (unsigned i = 0; i < c->nchunks; i++)
		dereg(c->s, c->ep, &c->chunks[i].mr);
	c->nchunks = 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Fault the destination's blocks in, piece by piece from offset 0 (where
 * the source's round 0 starts), so the memory is allocated ahead of the
 * source's writes instead of before the grant: reservation then costs
 * what registering costs.  On backends that pin (verbs, ofi/verbs) the
 * registration has faulted everything in already and each step returns at
 * once.  A kernel without MADV_POPULATE_WRITE leaves it to the writes.
 */
static void *populate_main(void *arg)
{
	struct rmig_mig *s = arg;
	uint64_t t0 = rmig_now_ns();

	for (uint32_t i = 0; i < s->nblocks; i++) {
		struct mig_block *b = &s->blocks[i];
		for (uint64_t off = 0; off < b->len; off += MIG_POP_STEP) {
			uint64_t n = b->len - off < MIG_POP_STEP ? b->len - off : MIG_POP_STEP;
			if (__atomic_load_n(&s->pop_stop, __ATOMIC_ACQUIRE))
				return NULL;
			if (!madvise(b->host + off, n, MADV_POPULATE_WRITE))
				continue;
			if (rmig_log_enabled())
				rmig_log(RMIG_LOG_WARN,
					 "cannot allocate RAM block %s at %llu MiB ahead of the source: %s (the writes will fault it in)",
					 b->name, (unsigned long long)(off >> 20), strerror(errno));
			return NULL;
		}
	}
	s->pop_ns = rmig_now_ns() - t0;
	return NULL;
}

int mig_populate_start(struct rmig_mig *s)
{
	s->pop_stop = 0;
	if (pthread_create(&s->pop_thread, NULL, populate_main, s))
		return mig_fail(s, -EAGAIN, "cannot start the thread that allocates the guest's RAM");
	s->pop_started = 1;
	return 0;
}

void mig_populate_stop(struct rmig_mig *s)
{
	if (!s->pop_started)
		return;
	__atomic_store_n(&s->pop_stop, 1, __ATOMIC_RELEASE);
	pthread_join(s->pop_thread, NULL);
	s->pop_started = 0;
}

void mig_deregister_all(struct rmig_mig *s)
{
	mig_populate_stop(s);
	for (unsigned i = 0; i < s->nch; i++)
		mig_deregister_chan(&s->ch[i]);
}
