/* SPDX-License-Identifier: MIT */
/*
 * rdmamig: the hook ABI a QEMU-compatible migration framework loads.
 *
 * A framework dlopen()s librdmamig.so, looks up RMIG_PLUGIN_ENTRY and calls
 * it with the ABI version it was built against.  It gets back a const table
 * of hooks (size first, so the table can grow: a hook beyond the size the
 * framework reads is simply not there).  Nothing else of the library is used:
 * this header is all a framework includes.
 *
 * The hooks mirror QEMU's RAM control hooks (RAM_CONTROL_SETUP, ROUND,
 * save_page, FINISH, the load side) and add: RAM block add/remove, a byte
 * stream for device state, cancel and statistics.  See docs/plugin-abi.md
 * for the sequence and a minimal framework.
 *
 * Every hook returns 0 (or a count) on success and a negative errno on
 * failure; error() then names the cause in one phrase.  A session is
 * driven by one thread at a time; shutdown (ABI 2) is the exception: any
 * thread may call it while another drives the session.
 *
 * ABI versions: 1 is the first table (up to load_commit); 2 appends the
 * hooks below "ABI 2".  A framework built against 1 gets the same table and
 * reads only its first sizeof(v1 table) bytes; one asking for a version the
 * library does not know gets NULL.  A hook a library leaves NULL is not
 * implemented there (calling it is the framework's bug; check first).
 * docs/plugin-abi.md says what a v1 framework gets.
 */
#ifndef RDMAMIG_PLUGIN_H
#define RDMAMIG_PLUGIN_H

#include <rdmamig/export.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RMIG_PLUGIN_ABI_VERSION 2
/* The one symbol a framework looks up. */
#define RMIG_PLUGIN_ENTRY "rmig_plugin_entry"
/* Most connections one session opens (rmig_plugin_config.channels). */
#define RMIG_CHANNELS_MAX 16

/* What to do when pre-copy does not converge within max rounds. */
enum rmig_policy {
	RMIG_POLICY_GIVEUP = 0, /* cancel, the guest keeps running at the source */
	RMIG_POLICY_FORCE = 1,  /* stop-and-copy anyway, paying the downtime */
};

/* How the source registers guest RAM (local access only). */
enum rmig_reg_mode {
	RMIG_REG_AUTO = 0,    /* whole blocks if the memlock budget allows, else chunks */
	RMIG_REG_WHOLE = 1,   /* one region per block */
	RMIG_REG_CHUNKED = 2, /* chunks registered on demand, kept in a cache */
};

/* Session states, in the order a successful migration passes them. */
enum rmig_mig_state {
	RMIG_STATE_RESERVE = 0,  /* destination proving it can take the guest */
	RMIG_STATE_SETUP,        /* regions registered, keys exchanged */
	RMIG_STATE_PRECOPY,      /* guest running, rounds of dirty pages */
	RMIG_STATE_STOPCOPY,     /* guest paused, last pages and device state */
	RMIG_STATE_COMMIT,       /* the destination owns the guest */
	RMIG_STATE_ROLLED_BACK,  /* cancelled or failed before commit: source keeps it */
	RMIG_STATE_FAILED,       /* the session is unusable (destination side, after commit) */
	RMIG_STATE_COUNT
};

/* Session configuration.  Zero-initialise, set size = sizeof. */
struct rmig_plugin_config {
	size_t size;
	const char *backend;       /* "tcp", "ofi/tcp", "verbs", "auto" or NULL */
	const char *addr;          /* source: "host:port" to connect; destination: to listen */
	int timeout_ms;            /* every wait on the peer; 0: 10000 */
	/*
	 * Source: connections to open, 1..RMIG_CHANNELS_MAX (0: 1); each
	 * served by a worker thread placed near the NIC.  Destination
	 * (listen): the most a source may open (0: RMIG_CHANNELS_MAX).
	 */
	unsigned channels;
	uint32_t downtime_limit_ms;/* for the framework's convergence test */
	uint64_t bandwidth;        /* bytes/s cap for page writes; 0: none */
	enum rmig_policy policy;
	enum rmig_reg_mode reg_mode;
	uint64_t memlock_budget;   /* bytes this session may pin; 0: RLIMIT_MEMLOCK */
	uint64_t mem_limit;        /* destination: most guest bytes it accepts; 0: any */
	uint32_t page_size;        /* 0: 4096 */
	uint32_t flags;            /* RMIG_CFG_* */
	/* Pre-shared key every connection of the session authenticates with
	 * (16 to 1024 bytes, copied by open and listen); NULL: refused unless
	 * flags has RMIG_CFG_INSECURE.  docs/security.md */
	const void *psk;
	size_t psk_len;
	/* Appended fields: a framework built with an older, shorter struct
	 * sets size accordingly and gets the defaults. */
	/* CPUs the framework reserves for vCPUs ("0-3,8"): no channel worker
	 * runs there.  NULL or "": none. */
	const char *vcpus;
};

/* The destination's RAM is fresh anonymous memory (reads as zeros). */
#define RMIG_CFG_DEST_ZEROED (1u << 0)
/* Do not skip all-zero pages (for measurements). */
#define RMIG_CFG_NO_ZERO_SKIP (1u << 1)
/* No key: connect and accept peers without authentication. */
#define RMIG_CFG_INSECURE (1u << 2)

/* round_start flags */
#define RMIG_ROUND_FINAL (1u << 0) /* the guest is paused: stop-and-copy */

/* A run of pages to send: offset and length are multiples of the page size. */
struct rmig_page_range {
	uint32_t block; /* index from add_ram_block */
	uint32_t pad;
	uint64_t offset;
	uint64_t len;
};

/* One pre-copy round, as measured by the source. */
struct rmig_round_stats {
	uint32_t round;
	uint32_t final;
	uint64_t pages;       /* pages handed to save_page(s) */
	uint64_t zero_pages;  /* of which skipped as known zero */
	uint64_t bytes;       /* bytes written to the peer */
	uint64_t writes;      /* write operations posted (after coalescing) */
	uint64_t batches;
	uint64_t ns;          /* round_start to round_end */
	double rate;          /* bytes/s of this round's writes */
};

/* Whole-session statistics. */
struct rmig_mig_stats {
	size_t size;
	enum rmig_mig_state state;
	uint32_t rounds;
	uint64_t ram_bytes;      /* guest RAM in the session */
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t bytes;          /* page bytes written */
	uint64_t stream_bytes;   /* device-state and stream bytes sent or received */
	uint64_t writes;
	uint64_t batches;
	uint64_t regs;           /* memory registrations made */
	uint64_t reg_ns;         /* time spent registering */
	uint64_t mrs_live;       /* regions registered right now */
	uint64_t ns;             /* setup to now (or to the end) */
	double rate;             /* last round's rate, bytes/s */
	char backend[32];
	/* Appended fields (size-first struct). */
	uint32_t channels;       /* connections in use */
	/* Source, per channel worker: the cpu the plan chose (-1: none) and
	 * the cpu the worker found itself bound to with sched_getaffinity
	 * (-1: not bound to exactly one cpu, or no worker yet). */
	int32_t planned_cpu[RMIG_CHANNELS_MAX];
	int32_t worker_cpu[RMIG_CHANNELS_MAX];
	uint64_t regs_remote;    /* of regs: with remote access (source: always 0) */
	/* Source: setup's connect, offer and wait for the destination's
	 * answer (its allocation and registration), of setup's whole time. */
	uint64_t reserve_ns;
	/* Bytes the session's registrations covered, summed over all of them:
	 * what was pinned, on backends that pin (verbs, ofi/verbs, efa).  With
	 * a shared domain (rmig_ep_domain) every channel uses one registration
	 * of the guest, so this does not grow with the channel count. */
	uint64_t pinned_bytes;
};

/* A destination's view of a block the source offers (ABI 1: a name that
 * does not fit makes load_block fail with -ENAMETOOLONG; use load_block2). */
struct rmig_block_info {
	char name[64];
	uint64_t len;
};

/* Longest block name, including the NUL (QEMU's RAMBlock idstr). */
#define RMIG_BLOCK_NAME_MAX 256

/*
 * Block flags (ABI 2).  RMIG_BLOCK_DEST_ZEROED: the source framework knows
 * the destination's copy of this block starts as zeros (QEMU: guest RAM of
 * an incoming QEMU is fresh anonymous memory), so all-zero pages of it are
 * not sent until they have been sent nonzero once.  The destination sees
 * the flag in load_block2 and must refuse (load_refuse) if its memory for
 * that block does not hold zeros.
 */
#define RMIG_BLOCK_DEST_ZEROED (1u << 0)

/* A RAM block for add_ram_block2.  Zero-initialise, set size = sizeof. */
struct rmig_block_desc {
	size_t size;
	const char *name;    /* 1 to RMIG_BLOCK_NAME_MAX - 1 bytes, unique */
	void *host;          /* mapped until close, aligned to page_size */
	uint64_t len;        /* a multiple of page_size */
	/* The block's own page size (hugepages): a power of two multiple of
	 * the session's page size; 0: the session's.  Told to the
	 * destination, which allocates alike; pages are still addressed in
	 * the session's page size (save_page, save_bitmap). */
	uint32_t page_size;
	uint32_t flags;      /* RMIG_BLOCK_* */
};

/* A destination's view of an offered block (ABI 2, load_block2).  Set
 * size = sizeof; the library fills at most size bytes. */
struct rmig_block_info2 {
	size_t size;
	char name[RMIG_BLOCK_NAME_MAX];
	uint64_t len;
	uint32_t page_size;  /* as the source gave it (never 0) */
	uint32_t flags;      /* RMIG_BLOCK_* as the source gave them */
};

#ifndef RMIG_LOG_FN_DEFINED /* also in rdmamig.h */
#define RMIG_LOG_FN_DEFINED
/* Log levels of rmig_log_fn. */
enum rmig_log_level {
	RMIG_LOG_ERROR = 0,
	RMIG_LOG_WARN = 1,
	RMIG_LOG_INFO = 2,
	RMIG_LOG_DEBUG = 3, /* state transitions */
};
/* The library never prints: what it has to say goes here (msg has no
 * trailing newline).  Called from any of the library's threads. */
typedef void (*rmig_log_fn)(void *opaque, int level, const char *msg);
#endif

struct rmig_mig;          /* a migration session (either side) */
struct rmig_mig_listener; /* a destination waiting for sources */

/*
 * The hook table.  Source side, in order: open, add_ram_block..., setup,
 * then rounds of round_start / save_page(s) / round_end, then round_start
 * with RMIG_ROUND_FINAL once the guest is paused, the last pages,
 * round_end, stream_write (device state), finish.  cancel at any time
 * before finish returns rolls back.
 *
 * Destination side: listen, accept (the source's offer arrives),
 * load_block/load_register_block for each block (or load_refuse), load_grant
 * (registers REMOTE_WRITE, answers yes), stream_read until it returns 0
 * (the source finished), load_commit.  After commit the stream stays open
 * both ways for reports; close ends the session.
 */
struct rmig_plugin_ops {
	size_t size;            /* sizeof(struct rmig_plugin_ops) of the library */
	uint32_t abi_version;   /* RMIG_PLUGIN_ABI_VERSION of the library */
	const char *name;       /* "rdmamig" */
	const char *version;    /* library version */

	/* --- source ---------------------------------------------------- */
	int (*open)(const struct rmig_plugin_config *cfg, struct rmig_mig **s);
	/* host must stay mapped until close; len a multiple of the page size. */
	int (*add_ram_block)(struct rmig_mig *s, const char *name, void *host,
			     uint64_t len);
	int (*remove_ram_block)(struct rmig_mig *s, uint32_t block);
	/* Connect, offer the blocks, wait for the destination's reservation. */
	int (*setup)(struct rmig_mig *s);
	int (*round_start)(struct rmig_mig *s, unsigned flags);
	int (*save_page)(struct rmig_mig *s, uint32_t block, uint64_t offset);
	int (*save_pages)(struct rmig_mig *s, const struct rmig_page_range *r,
			  unsigned n);
	/* Waits for the round's writes; tells the destination the round is done. */
	int (*round_end)(struct rmig_mig *s, struct rmig_round_stats *out);
	/* Ask the destination to commit; 0 once it has. */
	int (*finish)(struct rmig_mig *s);

	/* --- both sides -------------------------------------------------- */
	int (*stream_write)(struct rmig_mig *s, const void *buf, size_t len);
	/* Bytes read (> 0), 0 at the end of the source's stream, or -errno. */
	long (*stream_read)(struct rmig_mig *s, void *buf, size_t cap, int timeout_ms);
	/* Tell the peer, deregister everything: rolled back. */
	int (*cancel)(struct rmig_mig *s, const char *why);
	int (*stats)(struct rmig_mig *s, struct rmig_mig_stats *out);
	/* The session's reason; with NULL, the calling thread's last one
	 * (after a failed open, listen or accept). */
	const char *(*error)(const struct rmig_mig *s);
	enum rmig_mig_state (*state)(const struct rmig_mig *s);
	const char *(*state_name)(enum rmig_mig_state st);
	void (*close)(struct rmig_mig *s);

	/* --- destination --------------------------------------------------- */
	int (*listen)(const struct rmig_plugin_config *cfg, struct rmig_mig_listener **l);
	int (*listen_addr)(struct rmig_mig_listener *l, char *buf, size_t len);
	void (*listen_close)(struct rmig_mig_listener *l);
	/* Accept one source and read its offer (state RESERVE). */
	int (*accept)(struct rmig_mig_listener *l, int timeout_ms, struct rmig_mig **s);
	int (*load_block_count)(struct rmig_mig *s);
	int (*load_block)(struct rmig_mig *s, uint32_t i, struct rmig_block_info *info);
	/* Memory the framework allocated for block i (len from load_block). */
	int (*load_register_block)(struct rmig_mig *s, uint32_t i, void *host);
	/* Answer no: err (-errno) and why go back to the source. */
	int (*load_refuse)(struct rmig_mig *s, int err, const char *why);
	/* Register the blocks REMOTE_WRITE and answer yes with the keys. */
	int (*load_grant)(struct rmig_mig *s);
	/* The framework has everything: deregister, tell the source. */
	int (*load_commit)(struct rmig_mig *s);

	/* --- ABI 2 (a v1 framework reads none of this) -------------------- */
	/*
	 * From any thread, at any time before close: every call of the
	 * session waiting on the peer (setup, round_end, finish, stream_read,
	 * stream_write, load_grant and its channel accepts...) returns
	 * -ECANCELED within milliseconds, and so does every later one; error()
	 * names why.  The driving thread then calls cancel (or close) as
	 * usual.  Idempotent; returns 0.
	 */
	int (*shutdown)(struct rmig_mig *s, const char *why);
	/* From any thread: a blocked or later accept returns -ECANCELED. */
	void (*listen_shutdown)(struct rmig_mig_listener *l);
	/*
	 * An fd that polls readable whenever stream_read(s, buf, cap, 0)
	 * would not return -EAGAIN (stream data, the end, or an error).  Owned
	 * by the session (do not close or read it); valid until close.  With
	 * timeout_ms == 0, stream_read never blocks: -EAGAIN when nothing is
	 * there.
	 */
	int (*stream_fd)(struct rmig_mig *s);
	/* add_ram_block with a long name, a page size and flags; returns the
	 * block index. */
	int (*add_ram_block2)(struct rmig_mig *s, const struct rmig_block_desc *d);
	int (*load_block2)(struct rmig_mig *s, uint32_t i, struct rmig_block_info2 *info);
	/*
	 * Dirty pages as a bitmap: bit i (LSB first in each word) set means
	 * page first_page + i of the block is sent, pages in the session's
	 * page size.  Same rules as save_pages.
	 */
	int (*save_bitmap)(struct rmig_mig *s, uint32_t block, uint64_t first_page,
			   const uint64_t *bitmap, uint64_t npages);
	/* Process-wide; NULL fn: drop messages (the default). */
	void (*set_log)(rmig_log_fn fn, void *opaque);
	/* Raise RLIMIT_MEMLOCK so bytes can be pinned (the framework's
	 * decision; the library never raises it by itself, and otherwise
	 * names the shortfall).  UINT64_MAX: as far as allowed (unlimited,
	 * else the hard limit).  0 or -errno (error(NULL) says why). */
	int (*memlock_raise)(uint64_t bytes);
};

typedef const struct rmig_plugin_ops *(*rmig_plugin_entry_fn)(uint32_t abi_version);

/*
 * The entry symbol.  Returns NULL if the library cannot serve abi_version
 * (0, or a newer ABI than it knows).
 */
RMIG_EXPORT const struct rmig_plugin_ops *rmig_plugin_entry(uint32_t abi_version);

#ifdef __cplusplus
}
#endif
#endif
