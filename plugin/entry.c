/* SPDX-License-Identifier: MIT */
/* The hook table and the one entry symbol a framework looks up. */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int h_open(const struct rmig_plugin_config *cfg, struct rmig_mig **out)
{
	struct rmig_mig *s;

	if (!cfg || !cfg->addr || !*cfg->addr)
		return rmig_set_error(NULL, -EINVAL, "the source needs the destination's address");
	if (cfg->channels > RMIG_CHANNELS_MAX)
		return rmig_set_error(NULL, -EINVAL,
				      "%u channels asked; a session opens at most %d (--channels 1 to %d)",
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
				      "no pre-shared key: give one (--key-file FILE or RMIG_KEY_FILE; psk in the config) or allow unauthenticated peers explicitly (--insecure, RMIG_CFG_INSECURE)");
	}
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
	memset(info, 0, sizeof(*info));
	memcpy(info->name, s->blocks[i].name, sizeof(info->name));
	info->len = s->blocks[i].len;
	return 0;
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
};

const struct rmig_plugin_ops *rmig_plugin_entry(uint32_t abi_version)
{
	/* Version 1 is the first ABI; a framework built for a later one
	 * needs a later library. */
	if (abi_version == 0 || abi_version > RMIG_PLUGIN_ABI_VERSION)
		return NULL;
	return &ops;
}
