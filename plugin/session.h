/* SPDX-License-Identifier: MIT */
/*
 * The session engine's private view of a migration session.  One session
 * is driven by one framework thread at a time.  With several channels the
 * source also runs one worker thread per channel: a worker owns its
 * struct mig_chan (registrations, batches, completions, its endpoint)
 * while the channel is busy; the framework thread touches a channel only
 * through its queue (under the channel's lock) or once the worker has
 * reported the round done and sits idle.
 */
#ifndef RMIG_PLUGIN_SESSION_H
#define RMIG_PLUGIN_SESSION_H

#include "wire.h"
#include <rdmamig/plugin.h>
#include <rdmamig/transport.h>

#include <pthread.h>

/* A write never spans more than this: keeps batches pipelined. */
#define MIG_WRITE_MAX (1u << 20)
/* The destination allocates its RAM in pieces of this size (populate):
 * small enough that stopping the allocation at commit waits only for one
 * piece (a few ms), which the source sees as downtime. */
#define MIG_POP_STEP (16u << 20)
/* Chunk size of on-demand registration. */
#define MIG_CHUNK_SIZE (2u << 20)
/* Batches in flight before the engine polls. */
#define MIG_WINDOW 16
/*
 * RAM is striped among channels in MIG_STRIPE pieces by block offset: a
 * stripe is one registration chunk, so a chunk is only ever written (and
 * cached) by one channel, and a page-bitmap byte (8 pages) by one worker.
 */
#define MIG_STRIPE MIG_CHUNK_SIZE
/* Page ranges queued per channel before save_pages waits for the worker. */
#define MIG_RING 4096
/*
 * A batch is posted once it holds this many bytes (or RMIG_BATCH_MAX
 * writes): large enough that a batch's one completion is rare, small
 * enough that MIG_WINDOW of them keep the link busy while the engine
 * scans the next pages.
 */
#define MIG_BATCH_BYTES (8u << 20)

/*
 * Waits on the peer are cut in slices this long so that a shutdown from
 * another thread (rmig_plugin_ops.shutdown) is seen within one slice.
 */
#define MIG_SLICE_MS 10

enum mig_role { MIG_SOURCE, MIG_DEST };

struct mig_block {
	char name[WIRE_NAME_MAX];
	uint8_t *host;
	uint64_t len;
	uint32_t page_size;   /* the block's own (>= the session's) */
	uint32_t flags;       /* RMIG_BLOCK_* */
	int live;             /* 0 once removed */
	/* source: page bitmap, 1 = peer may hold nonzero data.  Byte i is
	 * written only by the channel owning the stripe of pages 8i..8i+7. */
	uint8_t *sent;
};

/* One cached on-demand registration (source, chunked mode). */
struct mig_chunk {
	uint32_t block;
	uint64_t idx;         /* chunk index within the block */
	struct rmig_mr *mr;
	uint64_t used;        /* LRU clock */
	uint64_t last_wr;     /* the batch that last wrote from it */
};

/* The run of pages being coalesced into one write.  gap: zero pages
 * seen right after it, not (yet) part of it: bridged into the write if a
 * page to send follows within the channel's bridge, else skipped. */
struct mig_extent {
	uint32_t block;
	uint64_t off, len;
	uint64_t gap;
	int open;
};

/* A piece of a save_pages range, queued for the channel that owns it. */
struct mig_work {
	uint32_t block;
	uint64_t off, len;
};
/* block of a stream item (channel 0 only): off is the framework's buffer
 * (valid until the item is done), len its bytes (<= WIRE_STREAM_MAX). */
#define MIG_WORK_STREAM UINT32_MAX

/* One connection and everything that writes over it. */
struct mig_chan {
	struct rmig_mig *s;
	unsigned idx;
	struct rmig_ep *ep;   /* channel 0: the control connection, s->ep */
	struct rmig_mr **mrs; /* per block: whole-block region on this ep */
	int mrs_shared;       /* mrs are channel 0's (one domain): not ours to deregister */
	struct rmig_rkey *rkeys; /* source: the destination's key per block here */
	char err[RMIG_ERR_MAX];  /* the first failure of this channel */
	int rc;
	int peer_gone;

	/* registration cache (source, chunked mode) */
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
	uint64_t bw_t0, bw_bytes; /* bandwidth cap window: the round */
	uint64_t bandwidth;       /* this channel's share of the cap */
	struct rmig_round_stats round; /* this channel's part of the round */
	uint64_t alive_ms;        /* channel 0: when the destination last heard from us */

	/* The worker (channels > 1).  lock guards head, tail, end_req,
	 * round_done, quit and rc/err once the worker runs. */
	pthread_t thread;
	int has_thread;
	pthread_mutex_t lock;
	pthread_cond_t work_cv;   /* framework -> worker: work or a request */
	pthread_cond_t done_cv;   /* worker -> framework: room, round done */
	struct mig_work *ring;    /* MIG_RING entries, on the NIC's node */
	size_t ring_bytes;
	uint64_t head, tail;      /* queued / taken counts */
	int end_req, round_done, quit, failed;
	int32_t planned_cpu, worker_cpu;
	uint8_t *smsg;            /* channel 0's worker: a STREAM message being sent */
	unsigned delay_ms;        /* test hook: RMIG_TEST_DELAY_CHANNEL */
	int skip_fence;           /* test hook: RMIG_TEST_SKIP_FENCE */
};

struct rmig_placement;

struct rmig_mig {
	enum mig_role role;
	enum rmig_mig_state state;
	struct rmig_plugin_config cfg;
	uint8_t psk[RMIG_PSK_MAX]; /* cfg.psk points here */
	char backend_spec[32];
	char addr[128];
	uint32_t page_size;
	struct rmig_ep *ep;
	/* The control connection's domain when the backend shares domains
	 * (NULL: it does not).  Every channel is made on it, so the guest is
	 * registered once per side and its keys are valid on every channel. */
	struct rmig_domain *dom;
	char err[RMIG_ERR_MAX];
	int peer_gone;        /* no point telling the peer anything */
	/* shutdown from any thread: shut is set (atomically, release) after
	 * shut_why is written, once (shut_claimed); readers load shut first. */
	int shut, shut_claimed;
	char shut_why[128];
	int accepting;        /* inside accept: the listener's shutdown counts too */
	struct mig_pump *pump; /* stream_fd's receiver (pump.c); NULL until asked */

	struct mig_block *blocks;
	uint32_t nblocks;
	uint64_t caps;        /* agreed WIRE_CAP_* */
	int dest_zeroed;      /* destination RAM starts as zeros */

	/* channels: ch[0] is the control connection */
	struct mig_chan ch[RMIG_CHANNELS_MAX];
	unsigned nch;          /* channels asked (source) or offered (destination) */
	unsigned ch_max;       /* destination: most channels it takes */
	uint8_t token[WIRE_TOKEN_SIZE]; /* extra channels present it in JOIN */
	struct rmig_mig_listener *listener; /* destination: where extra channels arrive */
	struct rmig_placement *plan;
	char vcpus[256];
	int drop_channel, drop_round; /* test hook: RMIG_TEST_DROP_CHANNEL */

	/* registration (source) */
	int chunked;
	/*
	 * Source: the longest run of zero pages written as zeros rather than
	 * skipped, when skipping it would split a write in two.  Set from the
	 * backend at setup: where each write has a fixed cost in software
	 * (tcp's frame, libfabric's message) a few zero pages are cheaper to
	 * send than a second write; on an RDMA NIC a write costs a work
	 * request and zeros cost link time, so verbs bridges nothing.
	 */
	uint64_t bridge_bytes;

	/* Destination: the thread that allocates the granted RAM ahead of the
	 * source's writes (blocks.c).  pop_stop is atomic; the rest is the
	 * thread's until it is joined. */
	pthread_t pop_thread;
	int pop_started, pop_stop;
	uint64_t pop_ns;       /* how long it took (0: not finished) */

	/* rounds and statistics */
	int in_round;
	uint64_t round_t0;
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
	unsigned ch_max;
	uint8_t psk[RMIG_PSK_MAX]; /* cfg.psk points here */
	char backend_spec[32];
	struct rmig_ep *ep;
	int shut;             /* listen_shutdown, from any thread (atomic) */
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
/*
 * rmig_accept, going on past peers that fail authentication (a stranger or
 * a wrong key must not end a destination waiting for its source) until
 * timeout_ms; the listener keeps the last refusal's phrase.
 */
int mig_accept_peer(struct rmig_mig *s, struct rmig_ep *listener, int timeout_ms,
		    struct rmig_ep **ep);
/* 1 once shutdown was called (or, inside accept, listen_shutdown). */
int mig_shut(const struct rmig_mig *s);
int mig_shutdown(struct rmig_mig *s, const char *why);
void mig_listen_shutdown(struct rmig_mig_listener *l);
/* rmig_recv / rmig_poll in MIG_SLICE_MS slices until timeout_ms (< 0:
 * none); -ECANCELED (and the ep's phrase) once the session is shut down. */
int mig_ep_recv(struct rmig_mig *s, struct rmig_ep *ep, void *buf, size_t cap, int timeout_ms);
int mig_ep_poll(struct rmig_mig *s, struct rmig_ep *ep, struct rmig_completion *c,
		unsigned max, int timeout_ms);
/* Transport options of every connection of a session (key, deadline). */
void mig_ep_opts(const struct rmig_plugin_config *cfg, struct rmig_ep_opts *o);
int mig_recv(struct rmig_mig *s, struct wire_hdr *h, int timeout_ms);
int mig_send_status(struct rmig_mig *s, uint16_t type, int status, const char *why);
int mig_stream_write(struct rmig_mig *s, const void *buf, size_t len);
long mig_stream_read(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms);
int mig_cancel(struct rmig_mig *s, const char *why);
int mig_stats(struct rmig_mig *s, struct rmig_mig_stats *out);
void mig_close(struct rmig_mig *s);

/* A channel's failure: keep the first reason on the channel, return rc.
 * Workers use it; the framework thread turns it into mig_fail. */
int chan_err(struct mig_chan *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* blocks.c: the RAM block table and registration */
int mig_add_block(struct rmig_mig *s, const char *name, void *host, uint64_t len);
int mig_add_block2(struct rmig_mig *s, const struct rmig_block_desc *d);
int mig_remove_block(struct rmig_mig *s, uint32_t block);
/* Per channel: whole blocks (or the chunk cache) on the channel's ep. */
int mig_register_source(struct rmig_mig *s, struct mig_chan *c);
int mig_register_dest(struct rmig_mig *s, struct mig_chan *c);
void mig_deregister_all(struct rmig_mig *s);
/* Destination: allocate (populate) the blocks in the background, in
 * MIG_POP_STEP pieces from offset 0, while the source writes; stop joins
 * it (idempotent; mig_deregister_all stops it first). */
int mig_populate_start(struct rmig_mig *s);
void mig_populate_stop(struct rmig_mig *s);
void mig_deregister_chan(struct mig_chan *c);
/* The local region covering [off, off+len) of block b, len within one chunk. */
int mig_local_mr(struct mig_chan *c, uint32_t b, uint64_t off,
		 const struct rmig_mr **mr, uint64_t *loff);
uint64_t mig_total_bytes(const struct rmig_mig *s);

/* source.c */
int mig_source_setup(struct rmig_mig *s);
int mig_round_start(struct rmig_mig *s, unsigned flags);
int mig_save_pages(struct rmig_mig *s, const struct rmig_page_range *r, unsigned n);
int mig_round_end(struct rmig_mig *s, struct rmig_round_stats *out);
int mig_finish(struct rmig_mig *s);
/* Every channel: wait for its batches in flight (workers stopped first). */
int mig_drain(struct rmig_mig *s);
int chan_drain(struct mig_chan *c);
/* Post the writes gathered so far as one batch. */
int chan_post_batch(struct mig_chan *c);
/* Wait until batch wr_id (posted or still being gathered) has completed. */
int chan_wait_batch(struct mig_chan *c, uint64_t wr_id);
/* The writes of one queued piece (block range within one stripe). */
int chan_send_range(struct mig_chan *c, const struct mig_work *w);
/* End of round on one channel: flush, drain, send its ROUND fence. */
int chan_end_round(struct mig_chan *c);

/* channels.c: extra connections, their workers and the destination's fences */
int mig_join_channels(struct rmig_mig *s);       /* source, after RESERVE */
int mig_start_workers(struct rmig_mig *s);       /* source, channels > 1 */
void mig_stop_workers(struct rmig_mig *s);       /* idempotent */
/* A channel failed: stop the workers, roll back with the channel's reason. */
int mig_chan_fail(struct rmig_mig *s, struct mig_chan *c);
int mig_chan_enqueue(struct rmig_mig *s, const struct mig_work *w);
/* Inside a round with workers: channel 0's worker sends these stream bytes
 * (one STREAM message) among its writes; returns once it has. */
int mig_chan_stream(struct rmig_mig *s, const void *buf, size_t len);
int mig_chans_end_round(struct rmig_mig *s);     /* all workers: fences sent */
int mig_accept_channels(struct rmig_mig *s);     /* destination, in load_grant */
/* Destination: the fences of round r from channels 1.. after channel 0's. */
int mig_take_fences(struct rmig_mig *s, const struct wire_round *r0,
		    struct wire_round *sum);
void mig_close_channels(struct rmig_mig *s);
void mig_chan_hooks(struct rmig_mig *s);

/* pump.c: stream_fd's eventfd and the thread that fills it */
struct mig_pump;
int mig_stream_fd(struct rmig_mig *s);
/* mig_recv's source once the pump runs: one message, or -ETIMEDOUT,
 * -ECANCELED (shut down) or the pump's receive error. */
int mig_pump_take(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms);
void mig_pump_sync(struct rmig_mig *s);  /* the fd's level after a stream_read */
void mig_pump_raise(struct rmig_mig *s); /* any thread: readable (shutdown) */
void mig_pump_stop(struct rmig_mig *s);

/* load.c */
int mig_listen(const struct rmig_plugin_config *cfg, struct rmig_mig_listener **l);
int mig_listen_addr(struct rmig_mig_listener *l, char *buf, size_t len);
void mig_listen_close(struct rmig_mig_listener *l);
int mig_accept(struct rmig_mig_listener *l, int timeout_ms, struct rmig_mig **out);
int mig_load_refuse(struct rmig_mig *s, int err, const char *why);
int mig_load_grant(struct rmig_mig *s);
int mig_load_commit(struct rmig_mig *s);

#endif
