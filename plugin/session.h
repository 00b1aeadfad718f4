/* SPDX-License-Identifier: MIT */
/*
 * The session engine's private view of a migration session.  One session
 * is driven by one framework thread at a time, so no field has a lock.
 */
#ifndef RMIG_PLUGIN_SESSION_H
#define RMIG_PLUGIN_SESSION_H

#include "wire.h"
#include <rdmamig/plugin.h>
#include <rdmamig/transport.h>

/* A write never spans more than this: keeps batches pipelined. */
#define MIG_WRITE_MAX (1u << 20)
/* Chunk size of on-demand registration. */
#define MIG_CHUNK_SIZE (2u << 20)
/* Batches in flight before the engine polls. */
#define MIG_WINDOW 16

enum mig_role { MIG_SOURCE, MIG_DEST };

struct mig_block {
	char name[WIRE_NAME_MAX];
	uint8_t *host;
	uint64_t len;
	int live;             /* 0 once removed */
	struct rmig_mr *mr;   /* whole-block region (source local / dest remote write) */
	struct rmig_rkey rkey;/* source: the destination's key for this block */
	uint8_t *sent;        /* source: page bitmap, 1 = peer may hold nonzero data */
};

/* One cached on-demand registration (source, chunked mode). */
struct mig_chunk {
	uint32_t block;
	uint64_t idx;         /* chunk index within the block */
	struct rmig_mr *mr;
	uint64_t used;        /* LRU clock */
	uint64_t last_wr;     /* the batch that last wrote from it */
};

/* The run of pages being coalesced into one write. */
struct mig_extent {
	uint32_t block;
	uint64_t off, len;
	int open;
};

struct rmig_mig {
	enum mig_role role;
	enum rmig_mig_state state;
	struct rmig_plugin_config cfg;
	uint8_t psk[RMIG_PSK_MAX]; /* cfg.psk points here */
	char backend_spec[32];
	char addr[128];
	uint32_t page_size;
	struct rmig_ep *ep;
	char err[RMIG_ERR_MAX];
	int peer_gone;        /* no point telling the peer anything */

	struct mig_block *blocks;
	uint32_t nblocks;
	uint64_t caps;        /* agreed WIRE_CAP_* */
	int dest_zeroed;      /* destination RAM starts as zeros */

	/* registration (source) */
	int chunked;
	struct mig_chunk *chunks;
	unsigned nchunks, chunks_max;
	uint64_t lru;

	/* batching (source) */
	struct rmig_write batch[RMIG_BATCH_MAX];
	unsigned nbatch;
	uint64_t batch_bytes;
	unsigned inflight;
	uint64_t inflight_ids[MIG_WINDOW]; /* wr_ids of the batches in flight */
	uint64_t next_wr_id;
	struct mig_extent ext;

	/* rounds and statistics */
	int in_round;
	uint64_t round_t0;
	uint64_t bw_t0, bw_bytes; /* bandwidth cap window: the round */
	struct rmig_round_stats round;
	struct rmig_mig_stats st;
	uint64_t t0;

	/* stream receive buffer */
	uint8_t *rx;          /* points into rxmsg */
	size_t rx_len;
	int ended;            /* destination saw END */

	uint8_t msg[RMIG_MSG_MAX];
	uint8_t rxmsg[RMIG_MSG_MAX];
};

struct rmig_mig_listener {
	struct rmig_plugin_config cfg;
	uint8_t psk[RMIG_PSK_MAX]; /* cfg.psk points here */
	char backend_spec[32];
	struct rmig_ep *ep;
};

/* session.c */
int mig_err(struct rmig_mig *s, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int mig_fail(struct rmig_mig *s, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mig_set_state(struct rmig_mig *s, enum rmig_mig_state st);
const char *mig_state_name(enum rmig_mig_state st);
struct rmig_mig *mig_new(const struct rmig_plugin_config *cfg, enum mig_role role);
/* psk: where the copy keeps the key (RMIG_PSK_MAX bytes). */
void mig_copy_config(struct rmig_plugin_config *dst, const struct rmig_plugin_config *src,
		     uint8_t *psk);
/* Transport options of every connection of a session (key, deadline). */
void mig_ep_opts(const struct rmig_plugin_config *cfg, struct rmig_ep_opts *o);
int mig_recv(struct rmig_mig *s, struct wire_hdr *h, int timeout_ms);
int mig_send_status(struct rmig_mig *s, uint16_t type, int status, const char *why);
int mig_stream_write(struct rmig_mig *s, const void *buf, size_t len);
long mig_stream_read(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms);
int mig_cancel(struct rmig_mig *s, const char *why);
int mig_stats(struct rmig_mig *s, struct rmig_mig_stats *out);
void mig_close(struct rmig_mig *s);

/* blocks.c: the RAM block table and registration */
int mig_add_block(struct rmig_mig *s, const char *name, void *host, uint64_t len);
int mig_remove_block(struct rmig_mig *s, uint32_t block);
int mig_register_source(struct rmig_mig *s);
int mig_register_dest(struct rmig_mig *s);
void mig_deregister_all(struct rmig_mig *s);
/* The local region covering [off, off+len) of block b, len within one chunk. */
int mig_local_mr(struct rmig_mig *s, uint32_t b, uint64_t off,
		 const struct rmig_mr **mr, uint64_t *loff);
uint64_t mig_total_bytes(const struct rmig_mig *s);

/* source.c */
int mig_source_setup(struct rmig_mig *s);
int mig_round_start(struct rmig_mig *s, unsigned flags);
int mig_save_pages(struct rmig_mig *s, const struct rmig_page_range *r, unsigned n);
int mig_round_end(struct rmig_mig *s, struct rmig_round_stats *out);
int mig_finish(struct rmig_mig *s);
int mig_drain(struct rmig_mig *s);
/* Post the writes gathered so far as one batch. */
int mig_post_batch(struct rmig_mig *s);
/* Wait until batch wr_id (posted or still being gathered) has completed. */
int mig_wait_batch(struct rmig_mig *s, uint64_t wr_id);

/* load.c */
int mig_listen(const struct rmig_plugin_config *cfg, struct rmig_mig_listener **l);
int mig_listen_addr(struct rmig_mig_listener *l, char *buf, size_t len);
void mig_listen_close(struct rmig_mig_listener *l);
int mig_accept(struct rmig_mig_listener *l, int timeout_ms, struct rmig_mig **out);
int mig_load_refuse(struct rmig_mig *s, int err, const char *why);
int mig_load_grant(struct rmig_mig *s);
int mig_load_commit(struct rmig_mig *s);

#endif
