/* SPDX-License-Identifier: MIT */
/*
 * The reference host: a small hypervisor stand-in.  It keeps a guest
 * memory image dirtied by vCPU-like threads, tracks dirty pages with a
 * kernel mechanism, and migrates through librdmamig loaded exactly as a
 * framework would: dlopen and the one entry symbol (only plugin.h).
 */
#ifndef RMIG_HOST_H
#define RMIG_HOST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

enum host_mem { HOST_MEM_ANON, HOST_MEM_MEMFD, HOST_MEM_HUGETLB };
enum host_pattern { HOST_PAT_UNIFORM, HOST_PAT_HOTSET, HOST_PAT_SEQ };

/* Where the migration is when the host reports progress. */
enum host_stage {
	HOST_STAGE_RESERVED,  /* the destination said yes */
	HOST_STAGE_ROUND,     /* a pre-copy round ended */
	HOST_STAGE_PAUSED,    /* vCPUs paused, before the final round */
	HOST_STAGE_FINAL,     /* final round and device state sent, before finish */
};

struct host_progress {
	enum host_stage stage;
	unsigned round;
	uint64_t pages_left;      /* dirty pages waiting for the next round */
	double rate;              /* bytes/s measured so far */
	double predicted_ms;      /* downtime if we stopped now */
	uint64_t bytes;           /* page bytes sent */
};

struct host_opts {
	const char *plugin;       /* library to dlopen; NULL: librdmamig.so.0 */
	const char *backend;
	const char *addr;         /* source: destination; dest: listen address */
	int timeout_ms;
	int accept_timeout_ms;    /* destination: wait for a source (0: 6 x timeout) */
	uint64_t guest_size;
	enum host_mem mem;
	uint64_t dirty_rate;      /* bytes/s written by the vCPUs (all together) */
	enum host_pattern pattern;
	unsigned vcpus;           /* vCPU threads */
	/* CPUs reserved for the vCPUs ("0-1"): the vCPU threads run there and
	 * the channel workers never do.  NULL: none. */
	const char *vcpu_cpus;
	/* Source: connections (0: 1).  Destination: most a source may open
	 * (0: RMIG_CHANNELS_MAX). */
	unsigned channels;
	uint32_t downtime_ms;
	unsigned max_rounds;
	uint64_t bandwidth;
	int policy;               /* enum rmig_policy */
	int reg_mode;             /* enum rmig_reg_mode */
	uint64_t memlock_budget;
	uint64_t mem_limit;       /* destination: refuse larger guests */
	const char *track;        /* "auto", "uffd-async", "uffd-sync", "mprotect" */
	size_t device_state;      /* bytes of device state on the stream */
	int no_zero_skip;
	/* Pre-shared key of every connection (docs/security.md); NULL: none,
	 * refused unless insecure.  host_demo makes a random one if none. */
	const void *psk;
	size_t psk_len;
	int insecure;             /* no key: peers are not authenticated */
	int progress;             /* print a progress line on stderr */
	/* Called at each stage (tests inject failures here). */
	void (*on_progress)(const struct host_progress *p, void *arg);
	/* Destination: called once listening with the real address. */
	void (*on_listen)(const char *addr, void *arg);
	void *arg;
	/* Source: set (by a signal handler, say) to cancel the migration at
	 * the next stage or batch of pages; the guest keeps running here. */
	const volatile sig_atomic_t *cancel;
};

struct host_result {
	int rc;
	char error[256];
	char outcome[160];        /* one line: what happened */
	char backend[32];
	char tracker[32];
	int committed;
	int guest_running;        /* source: guest still running here (rolled back) */
	int forced;               /* policy force was used */
	int verified;             /* 1 identical, 0 differs, -1 not checked */
	int source_intact;        /* idle guest rolled back: memory unchanged 1/0, -1 n/a */
	uint64_t mismatched_pages;
	unsigned rounds;
	uint64_t guest_size;
	uint64_t total_ns, downtime_ns, verify_ns;
	uint64_t reserve_ns;      /* of total: setup (connect, offer, the destination's
				   * answer, registration, extra channels) */
	/* Source, the time split: of reserve_ns, the wait for the destination's
	 * answer (grant_ns) and the rest (setup_ns); the pre-copy rounds; the
	 * pause to commit is downtime_ns. */
	uint64_t grant_ns, setup_ns, rounds_ns;
	/* CPU seconds (user + system, every thread) this process spent from
	 * setup (source) or accept (destination) to commit; host_demo also
	 * reports the destination process's as peer_cpu_s (-1: not known). */
	double cpu_s, peer_cpu_s;
	uint64_t bytes, stream_bytes, pages, zero_pages, writes, batches;
	uint64_t regs, reg_ns, mrs_live;
	uint64_t regs_remote;     /* registrations granting the peer access */
	uint64_t pinned_bytes;    /* bytes the registrations covered (stats.pinned_bytes) */
	double throughput;        /* page bytes/s over the migration */
	double predicted_ms;      /* last prediction before stop-and-copy */
	uint64_t final_pages;     /* pages sent while paused */
	/* Per round, as the engine measured them (the first HOST_ROUNDS_LOG). */
#define HOST_ROUNDS_LOG 64
	struct host_round {
		uint64_t pages, zero_pages, bytes, writes, batches;
		double ms, mib_s;
		int final;
	} round_log[HOST_ROUNDS_LOG];
	unsigned nround_log;
	/* Channels and, per channel worker, the planned and the actual cpu. */
#define HOST_CHANNELS_MAX 16
	unsigned channels;
	int planned_cpu[HOST_CHANNELS_MAX], worker_cpu[HOST_CHANNELS_MAX];
};

void host_opts_default(struct host_opts *o);
/* Source: build a guest, run it, migrate it to o->addr. */
int host_migrate(const struct host_opts *o, struct host_result *r);
/* Destination: take one guest on o->addr, resume it, verify it. */
int host_serve(const struct host_opts *o, struct host_result *r);

/* Both ends on one machine: the destination a forked process. */
int host_demo(const struct host_opts *o, struct host_result *r);

/* Both ends in this process (the destination a thread), on loopback. */
int host_loopback(const struct host_opts *o, struct host_result *src, struct host_result *dst);

/* Print the summary (text or JSON) of a result. */
/* The CLI's own words for a key or backend problem the library names ("" if none):
 * the library speaks of its config, the CLI of its flags. */
const char *host_key_hint(const char *why);
void host_print_result(const struct host_result *r, int json, const char *role);

#endif
