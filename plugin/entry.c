/* SPDX-License-Identifier: MIT */
/* The hook table and the one entry symbol a framework looks up. */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int h_open(const struct rmig_plugin_config *cfg, struct rmig_mig **out)
{
	struct rmig_mig *s;

	if (!cfg || !cfg->addr || !*cfg->addr)
		return rmig_set_error(NULL, -EINVAL, "the source needs the destination's address");
	if (cfg->channels > RMIG_CHANNELS_MAX)
		return rmig_set_error(NULL, -EINVAL,
				      "%u channels asked; a session opens at most %d (channels in the config: 1 to %d)",
				      cfg->channels, RMIG_CHANNELS_MAX, RMIG_CHANNELS_MAX);
	s = mig_new(cfg, MIG_SOURCE);
	if (!s)
		return rmig_set_error(NULL, -ENOMEM, "out of memory for a session");
	if (s->page_size < 4096 || (s->page_size & (s->page_size - 1))) {
		free(s);
		return rmig_set_error(NULL, -EINVAL, "page size must be a power of two >= 4096");
	}
	/* Refuse a session without a key now, not at setup (mig_listen
	 * gets the same phrase from rmig_listen). */
	if (!s->cfg.psk && !(s->cfg.flags & RMIG_CFG_INSECURE)) {
		free(s);
		return rmig_set_error(NULL, -EACCES,
				      "no pre-shared key: set psk in the session config or allow unauthenticated peers explicitly (RMIG_CFG_INSECURE in flags)");
	}
	/* Warm the backend up now: libfabric's first fi_getinfo in a process
	 * discovers its providers (~250 ms here), once per process; paid at
	 * open, not inside the reservation.  A backend that cannot run here
	 * still fails at setup with the connection's own phrase. */
	char why[RMIG_ERR_MAX];
	rmig_backend_probe(s->backend_spec, why, sizeof(why));
	*out = s;
	return 0;
}

static int h_save_page(struct rmig_mig *s, uint32_t block, uint64_t offset)
{
	struct rmig_page_range r = { .block = block, .offset = offset, .len = s->page_size };

	return mig_save_pages(s, &r, 1);
}

static const char *h_error(const struct rmig_mig *s)
{
	if (!s)
		return rmig_last_error();
	return s->err[0] ? s->err : "no error";
}

static enum rmig_mig_state h_state(const struct rmig_mig *s)
{
	return s->state;
}

static int h_load_block_count(struct rmig_mig *s)
{
	return s->role == MIG_DEST ? (int)s->nblocks : -EINVAL;
}

static int h_load_block(struct rmig_mig *s, uint32_t i, struct rmig_block_info *info)
{
	if (s->role != MIG_DEST || i >= s->nblocks)
		return mig_err(s, -ENOENT, "no offered block %u", i);
	if (strlen(s->blocks[i].name) >= sizeof(info->name))
		return mig_err(s, -ENAMETOOLONG,
			       "block %u's name has %zu bytes, more than ABI 1's load_block holds (%zu): use load_block2",
			       i, strlen(s->blocks[i].name), sizeof(info->name) - 1);
	memset(info, 0, sizeof(*info));
	memcpy(info->name, s->blocks[i].name, sizeof(info->name));
	info->len = s->blocks[i].len;
	return 0;
}

static int h_load_block2(struct rmig_mig *s, uint32_t i, struct rmig_block_info2 *info)
{
	struct rmig_block_info2 out;

	if (!info || info->size < sizeof(info->size))
		return mig_err(s, -EINVAL, "load_block2 needs info with size set");
	if (s->role != MIG_DEST || i >= s->nblocks)
		return mig_err(s, -ENOENT, "no offered block %u", i);
	memset(&out, 0, sizeof(out));
	out.size = info->size < sizeof(out) ? info->size : sizeof(out);
	snprintf(out.name, sizeof(out.name), "%s", s->blocks[i].name);
	out.len = s->blocks[i].len;
	out.page_size = s->blocks[i].page_size;
	out.flags = s->blocks[i].flags;
	memcpy(info, &out, out.size);
	return 0;
}

static int h_add_ram_block2(struct rmig_mig *s, const struct rmig_block_desc *d)
{
	struct rmig_block_desc x = { 0 };

	if (!d || d->size < offsetof(struct rmig_block_desc, len) + sizeof(d->len))
		return mig_err(s, -EINVAL, "add_ram_block2 needs a descriptor with size set");
	memcpy(&x, d, d->size < sizeof(x) ? d->size : sizeof(x));
	return mig_add_block2(s, &x);
}

/*
 * The bitmap as ranges: zero words skipped whole, runs of set bits
 * coalesced across words, handed to save_pages RANGES at a time.
 */
#define BITMAP_RANGES 64
static int h_save_bitmap(struct rmig_mig *s, uint32_t block, uint64_t first_page,
			 const uint64_t *bitmap, uint64_t npages)
{
	struct rmig_page_range r[BITMAP_RANGES];
	uint64_t ps = s->page_size, run0 = 0, runlen = 0, pages;
	unsigned n = 0;
	int rc;

	if (block >= s->nblocks || !s->blocks[block].live)
		return mig_err(s, -ENOENT, "save_bitmap: no RAM block %u", block);
	pages = s->blocks[block].len / ps;
	if (npages && !bitmap)
		return mig_err(s, -EINVAL, "save_bitmap: no bitmap for %llu pages",
			       (unsigned long long)npages);
	if (first_page > pages || npages > pages - first_page)
		return mig_err(s, -ERANGE,
			       "save_bitmap: pages %llu..+%llu do not fit RAM block %s (%llu pages)",
			       (unsigned long long)first_page, (unsigned long long)npages,
			       s->blocks[block].name, (unsigned long long)pages);
	for (uint64_t w = 0; w * 64 < npages; w++) {
		uint64_t bits = bitmap[w];

		if (npages - w * 64 < 64)
			bits &= (1ull << (npages - w * 64)) - 1;
		while (bits) {
			unsigned lo = (unsigned)__builtin_ctzll(bits);
			uint64_t rest = ~(bits >> lo);
			unsigned len = rest ? (unsigned)__builtin_ctzll(rest) : 64 - lo;
			uint64_t p = w * 64 + lo;

			if (runlen && run0 + runlen == p) {
				runlen += len;
			} else {
				if (runlen) {
					r[n++] = (struct rmig_page_range){
						.block = block, .offset = (first_page + run0) * ps,
						.len = runlen * ps };
					if (n == BITMAP_RANGES) {
						if ((rc = mig_save_pages(s, r, n)))
							return rc;
						n = 0;
					}
				}
				run0 = p;
				runlen = len;
			}
			bits = lo + len < 64 ? bits & ~(((1ull << len) - 1) << lo) : 0;
		}
	}
	if (runlen)
		r[n++] = (struct rmig_page_range){ .block = block, .offset = (first_page + run0) * ps,
						   .len = runlen * ps };
	return n ? mig_save_pages(s, r, n) : 0;
}

static int h_load_register_block(struct rmig_mig *s, uint32_t i, void *host)
{
	if (s->role != MIG_DEST || s->state != RMIG_STATE_RESERVE || i >= s->nblocks)
		return mig_err(s, -EINVAL, "load_register_block: no offered block %u", i);
	if (!host || (uintptr_t)host % s->page_size)
		return mig_err(s, -EINVAL, "memory for block %s must be page-aligned",
			       s->blocks[i].name);
	s->blocks[i].host = host;
	return 0;
}

static const struct rmig_plugin_ops ops = {
	.size = sizeof(struct rmig_plugin_ops),
	.abi_version = RMIG_PLUGIN_ABI_VERSION,
	.name = "rdmamig",
	.version = RMIG_VERSION_STRING,
	.open = h_open,
	.add_ram_block = mig_add_block,
	.remove_ram_block = mig_remove_block,
	.setup = mig_source_setup,
	.round_start = mig_round_start,
	.save_page = h_save_page,
	.save_pages = mig_save_pages,
	.round_end = mig_round_end,
	.finish = mig_finish,
	.stream_write = mig_stream_write,
	.stream_read = mig_stream_read,
	.cancel = mig_cancel,
	.stats = mig_stats,
	.error = h_error,
	.state = h_state,
	.state_name = mig_state_name,
	.close = mig_close,
	.listen = mig_listen,
	.listen_addr = mig_listen_addr,
	.listen_close = mig_listen_close,
	.accept = mig_accept,
	.load_block_count = h_load_block_count,
	.load_block = h_load_block,
	.load_register_block = h_load_register_block,
	.load_refuse = mig_load_refuse,
	.load_grant = mig_load_grant,
	.load_commit = mig_load_commit,
	/* ABI 2 */
	.shutdown = mig_shutdown,
	.listen_shutdown = mig_listen_shutdown,
	.stream_fd = mig_stream_fd,
	.add_ram_block2 = h_add_ram_block2,
	.load_block2 = h_load_block2,
	.save_bitmap = h_save_bitmap,
	.set_log = rmig_set_log,
	.memlock_raise = rmig_memlock_raise,
};

const struct rmig_plugin_ops *rmig_plugin_entry(uint32_t abi_version)
{
	/* Versions 1 and 2 get the same table: a v1 framework reads only the
	 * first sizeof(v1 table) bytes (it knows its own size).  A framework
	 * built for a later ABI needs a later library. */
	if (abi_version == 0 || abi_version > RMIG_PLUGIN_ABI_VERSION)
		return NULL;
	return &ops;
}
