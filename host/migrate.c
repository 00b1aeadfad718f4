/* SPDX-License-Identifier: MIT */
/*
 * The source host: the pre-copy loop.
 *
 * Round 0 sends every page; each later round sends what the tracker saw
 * written during the previous one.  After each round the host predicts the
 * downtime (dirty bytes / measured rate): once it fits the limit, or after
 * max rounds (policy force), the vCPUs pause and the final round, the
 * device state and finish follow.  Policy giveup cancels instead and the
 * guest runs on.  Any failure before commit resumes the guest here.
 */
#define _GNU_SOURCE
#include "dirty.h"
#include "guest.h"
#include "hostint.h"
#include "../common/clock.h"
#include "../common/le.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

struct src {
	const struct host_opts *o;
	struct host_result *r;
	const struct rmig_plugin_ops *ops;
	struct rmig_mig *s;
	struct guest g;
	struct tracker *t;
	struct dirty_run *runs;
	size_t cap;
	long nruns;
	uint64_t dirty_bytes;
	uint64_t round_ns, round_bytes; /* pre-copy totals, for the rate */
	uint64_t last_round_ns;         /* for the dirty rate */
	double last_rate;               /* bytes/s of the last round */
	int tty;
};

/*
 * The rate that predicts the final round: the last round's.  Round 0
 * moves long runs of pages; later rounds, like the final one, move
 * scattered dirty pages, which cost more per byte on every backend.
 */
static double rate_of(const struct src *x)
{
	if (x->last_rate > 0)
		return x->last_rate;
	/* The last round was empty: all rounds together. */
	return x->round_ns ? (double)x->round_bytes * 1e9 / (double)x->round_ns : 0;
}

/*
 * The operator asked to cancel (o->cancel, set by the CLI's SIGINT or
 * SIGTERM handler): tell the destination, and fail the stage so the run
 * rolls back.  Checked at every stage and between batches of pages.
 */
static int cancelled(struct src *x)
{
	if (!x->o->cancel || !*x->o->cancel)
		return 0;
	if (!x->r->error[0])
		snprintf(x->r->error, sizeof(x->r->error),
			 "migration cancelled by the operator (SIGINT or SIGTERM to the source)");
	x->ops->cancel(x->s, "the operator cancelled the migration on the source");
	return -ECANCELED;
}

/* Report a stage; the test hook may stop us here.  Returns -ECANCELED if
 * the operator cancelled. */
static int progress(struct src *x, enum host_stage st, unsigned round)
{
	struct host_progress p = { .stage = st, .round = round,
				   .pages_left = x->dirty_bytes / GUEST_PAGE,
				   .rate = rate_of(x), .bytes = x->round_bytes };

	p.predicted_ms = p.rate > 0 ? (double)x->dirty_bytes / p.rate * 1e3 : 0;
	if (st == HOST_STAGE_ROUND)
		x->r->predicted_ms = p.predicted_ms;
	if (x->o->progress && st == HOST_STAGE_ROUND)
		fprintf(stderr, "%sround %-3u pages left %-9llu rate %8.1f MiB/s  predicted downtime %7.1f ms%s",
			x->tty ? "\r\033[K" : "", round, (unsigned long long)p.pages_left,
			p.rate / (1 << 20), p.predicted_ms, x->tty ? "" : "\n");
	if (x->o->on_progress)
		x->o->on_progress(&p, x->o->arg);
	host_test_pause(st, round);
	return cancelled(x);
}

/* Send runs (or the whole guest) as one round. */
static int send_round(struct src *x, unsigned flags, int all)
{
	struct rmig_page_range pr[256];
	struct rmig_round_stats rs;
	unsigned n = 0;
	int rc = x->ops->round_start(x->s, flags);

	if (rc)
		return rc;
	if (all) {
		pr[0] = (struct rmig_page_range){ .block = 0, .offset = 0, .len = x->g.size };
		rc = x->ops->save_pages(x->s, pr, 1);
	}
	for (long i = 0; !all && i < x->nruns && !rc; i++) {
		pr[n++] = (struct rmig_page_range){ .block = 0, .offset = x->runs[i].off,
						    .len = x->runs[i].len };
		if (n == 256 || i == x->nruns - 1) {
			rc = x->ops->save_pages(x->s, pr, n);
			n = 0;
			if (!rc)
				rc = cancelled(x);
		}
	}
	if (!rc)
		rc = x->ops->round_end(x->s, &rs);
	/* Sent (or the session is over): the next round starts empty. */
	x->nruns = 0;
	x->dirty_bytes = 0;
	if (!rc && !(flags & RMIG_ROUND_FINAL)) {
		x->round_ns += rs.ns;
		x->round_bytes += rs.bytes;
		x->last_round_ns = rs.ns;
		x->last_rate = rs.rate;
	}
	if (!rc && (flags & RMIG_ROUND_FINAL))
		x->r->final_pages = rs.pages;
	if (!rc && x->r->nround_log < HOST_ROUNDS_LOG)
		x->r->round_log[x->r->nround_log++] = (struct host_round){
			.pages = rs.pages, .zero_pages = rs.zero_pages, .bytes = rs.bytes,
			.writes = rs.writes, .batches = rs.batches, .ms = rs.ns / 1e6,
			.mib_s = rs.rate / (1 << 20), .final = rs.final };
	return rc;
}

/* Add what was dirtied since the last collect to the runs not yet sent. */
static int collect(struct src *x)
{
	long n = tracker_collect(x->t, &x->runs, &x->cap, (size_t)x->nruns, &x->dirty_bytes);

	if (n < 0) {
		snprintf(x->r->error, sizeof(x->r->error), "dirty tracking failed: %s",
			 strerror((int)-n));
		return (int)n;
	}
	x->nruns = n;
	return 0;
}

/* Device state: the vCPU counters and filler up to o->device_state bytes. */
static int send_device_state(struct src *x)
{
	size_t len = x->o->device_state < 64 ? 64 : x->o->device_state;
	uint8_t *b = calloc(1, len);
	int rc;

	if (!b)
		return -ENOMEM;
	memcpy(b, HOST_DEV_MAGIC, 8);
	rmig_put_le64(b + 8, len);
	rmig_put_le32(b + 16, x->g.nvcpus);
	for (unsigned i = 0; i < x->g.nvcpus && 24 + 8 * (i + 1) <= len; i++)
		rmig_put_le64(b + 24 + 8 * i, x->g.vcpus[i].counter);
	rc = x->ops->stream_write(x->s, b, len);
	free(b);
	return rc;
}

/* After commit: page hashes of the paused source, then the verdict. */
static void verify(struct src *x)
{
	uint64_t npages = x->g.size / GUEST_PAGE;
	uint8_t *buf = malloc(16 + npages * 8), v[HOST_VRFY_SIZE];
	int rc;

	if (!buf)
		return;
	memcpy(buf, HOST_HASH_MAGIC, 8);
	rmig_put_le64(buf + 8, npages);
	guest_hash_pages(x->g.mem, x->g.size, (uint64_t *)(buf + 16));
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t h = ((uint64_t *)(buf + 16))[i];
		rmig_put_le64(buf + 16 + 8 * i, h);
	}
	rc = x->ops->stream_write(x->s, buf, 16 + npages * 8);
	free(buf);
	if (!rc)
		rc = host_stream_read_full(x->ops, x->s, v, sizeof(v),
					   x->o->timeout_ms + (int)(x->g.size >> 20) * 4);
	if (rc || memcmp(v, HOST_VRFY_MAGIC, 8)) {
		x->r->verified = -1;
		return;
	}
	x->r->verified = (int)rmig_get_le64(v + 8);
	x->r->mismatched_pages = rmig_get_le64(v + 16);
	x->r->verify_ns = rmig_get_le64(v + 32);
}

static void rolled_back(struct src *x, int rc, const char *what)
{
	x->r->rc = rc;
	if (!x->r->error[0])
		snprintf(x->r->error, sizeof(x->r->error), "%s", x->ops->error(x->s));
	if (!x->g.running)
		guest_resume(&x->g);
	x->r->guest_running = x->g.running;
	snprintf(x->r->outcome, sizeof(x->r->outcome),
		 "%s; the guest keeps running on the source", what);
}

/*
 * Whether registrations over backend pin guest pages for writing even when
 * the HCA only reads them: verbs (and libfabric's verbs provider) on Linux
 * before 6.2, whose ib_umem_get asks FOLL_WRITE|FOLL_FORCE for every user
 * registration.
 */
static int pins_for_writing(const char *backend)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (strcmp(backend, "verbs") && strncmp(backend, "ofi/verbs", 9))
		return 0;
	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 1;
	return major < 6 || (major == 6 && minor < 2);
}

/*
 * The tracker "auto" gets, given how the engine registered the guest.
 * Chunks registered on demand are pinned after tracking has write-protected
 * the guest; a long-term pin for writing cannot wait for a userfaultfd
 * handler, so on such a backend every chunk would fail with EFAULT.  An
 * mprotect-protected page pins fine (the kernel resolves the forced write
 * fault itself; the page stays read-only to the guest), so there "auto"
 * tracks with mprotect.  A tracker asked for by name is kept.
 */
static const char *tracker_mode(struct src *x)
{
	struct rmig_mig_stats st = { .size = sizeof(st) };
	const char *mode = x->o->track, *env = getenv("RMIG_DIRTY_TRACKING");

	if ((mode && strcmp(mode, "auto")) || (env && *env) || !x->o->backend ||
	    !pins_for_writing(x->o->backend))
		return mode;
	if (x->ops->stats(x->s, &st) || st.mrs_live)
		return mode;
	fprintf(stderr,
		"rdmamig: the guest is registered in chunks on demand over %s, and this kernel cannot pin a userfaultfd write-protected page for that: dirty tracking uses mprotect\n",
		st.backend);
	return "mprotect";
}

static int arm_tracking(struct src *x)
{
	char why[256];
	int rc = tracker_open(tracker_mode(x), x->g.mem, x->g.size,
			      x->o->mem == HOST_MEM_HUGETLB ? 2u << 20 : GUEST_PAGE, &x->t,
			      why, sizeof(why));

	if (rc)
		snprintf(x->r->error, sizeof(x->r->error), "%s", why);
	else
		snprintf(x->r->tracker, sizeof(x->r->tracker), "%s", tracker_name(x->t));
	return rc;
}

/* Pre-copy rounds until the prediction fits or the rounds run out. */
static int precopy(struct src *x)
{
	const struct host_opts *o = x->o;
	unsigned round = 1;
	int rc;

	if ((rc = send_round(x, 0, 1)) || (rc = collect(x)))
		return rc;
	if ((rc = progress(x, HOST_STAGE_ROUND, 0)))
		return rc;
	for (;; round++) {
		double predicted = x->r->predicted_ms;
		/* After round 0 only an idle guest stops: the others need one
		 * round of dirty pages to measure what the final round costs. */
		if (predicted <= o->downtime_ms && (round > 1 || !x->dirty_bytes))
			return 0;
		if (round >= o->max_rounds) {
			if (o->policy == RMIG_POLICY_FORCE) {
				x->r->forced = 1;
				return 0;
			}
			snprintf(x->r->error, sizeof(x->r->error),
				 "pre-copy did not converge in %u rounds: the guest dirtied %.1f MiB during the last %.0f ms round at %.0f MiB/s, %.0f ms predicted downtime exceeds the %u ms limit; use --policy force or raise --downtime-ms",
				 round, (double)x->dirty_bytes / (1 << 20), x->last_round_ns / 1e6,
				 rate_of(x) / (1 << 20), predicted, o->downtime_ms);
			x->ops->cancel(x->s, "pre-copy did not converge");
			return -ETIME;
		}
		if ((rc = send_round(x, 0, 0)) || (rc = collect(x)) ||
		    (rc = progress(x, HOST_STAGE_ROUND, round)))
			return rc;
	}
}

static int stop_and_copy(struct src *x, uint64_t *t_pause)
{
	int rc;

	*t_pause = rmig_now_ns();
	if ((rc = guest_pause(&x->g))) {
		snprintf(x->r->error, sizeof(x->r->error), "the vCPUs did not pause within 2 s");
		x->ops->cancel(x->s, "the source could not pause the guest");
		return rc;
	}
	if ((rc = progress(x, HOST_STAGE_PAUSED, x->r->rounds)) || (rc = collect(x)) ||
	    (rc = send_round(x, RMIG_ROUND_FINAL, 0)) || (rc = send_device_state(x)) ||
	    (rc = progress(x, HOST_STAGE_FINAL, x->r->rounds)))
		return rc;
	return x->ops->finish(x->s);
}

static int run(struct src *x)
{
	const struct host_opts *o = x->o;
	struct host_result *r = x->r;
	struct rmig_plugin_config cfg;
	uint64_t t0, t_setup, t_pause = 0, idle_hash = 0;
	double cpu0;
	int rc;

	host_config(o, &cfg);
	rc = x->ops->open(&cfg, &x->s);
	if (!rc && (rc = x->ops->add_ram_block(x->s, "pc.ram", x->g.mem, x->g.size)) > 0)
		rc = 0;
	if (rc) {
		snprintf(r->error, sizeof(r->error), "%s",
			 x->s ? x->ops->error(x->s) : "cannot open a migration session");
		return rc;
	}
	if (!o->dirty_rate)
		idle_hash = guest_hash_all(x->g.mem, x->g.size);
	cpu0 = host_cpu_s();
	t0 = rmig_now_ns();
	rc = x->ops->setup(x->s);
	t_setup = rmig_now_ns();
	r->reserve_ns = t_setup - t0;
	int started = !rc;
	/* Tracking starts only now that the engine has registered the guest:
	 * pinning memory that userfaultfd write-protects fails (the kernel's
	 * get_user_pages cannot wait for a userfault: EFAULT).  Writes before
	 * this point are covered by round 0, which sends every page. */
	if (!rc && (rc = arm_tracking(x)))
		x->ops->cancel(x->s, "the source cannot track dirty pages");
	if (!rc) {
		rc = progress(x, HOST_STAGE_RESERVED, 0);
		if (!rc)
			rc = precopy(x);
	}
	if (!rc)
		rc = stop_and_copy(x, &t_pause);
	r->total_ns = rmig_now_ns() - t0;
	if (o->progress && x->tty)
		fprintf(stderr, "\n");
	host_fill_stats(x->ops, x->s, r);
	if (rc) {
		rolled_back(x, rc, rc == -ETIME ? "migration given up"
				   : rc == -ECANCELED ? "migration cancelled"
				   : started ? "migration rolled back" : "migration did not start");
		if (!o->dirty_rate)
			r->source_intact = guest_hash_all(x->g.mem, x->g.size) == idle_hash;
		return rc;
	}
	r->downtime_ns = rmig_now_ns() - t_pause;
	r->cpu_s = host_cpu_s() - cpu0;
	r->rounds_ns = t_pause - t_setup;
	r->setup_ns = r->reserve_ns > r->grant_ns ? r->reserve_ns - r->grant_ns : 0;
	r->committed = 1;
	r->guest_running = 0;
	r->throughput = r->total_ns ? (double)r->bytes * 1e9 / (double)r->total_ns : 0;
	/* The guest now lives on the destination: its vCPUs stop here for good. */
	guest_stop(&x->g);
	verify(x);
	host_fill_stats(x->ops, x->s, r);
	snprintf(r->outcome, sizeof(r->outcome), "migrated%s",
		 r->forced ? " (stop-and-copy forced by policy)" : "");
	return 0;
}

/* "0-3,8" into a cpu set; 0 or -EINVAL. */
static int parse_cpus(const char *list, cpu_set_t *set)
{
	const char *p = list;

	CPU_ZERO(set);
	while (*p) {
		char *e;
		unsigned long a = strtoul(p, &e, 10), b = a;
		if (e == p)
			return -EINVAL;
		if (*e == '-') {
			p = e + 1;
			b = strtoul(p, &e, 10);
			if (e == p || b < a)
				return -EINVAL;
		}
		for (unsigned long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET(c, set);
		if (*e && *e != ',')
			return -EINVAL;
		p = *e ? e + 1 : e;
	}
	return 0;
}

/* The vCPU threads run on the cpus reserved for them (the channel workers
 * stay off those: the engine's plan gets the same list). */
static void pin_vcpus(struct src *x)
{
	cpu_set_t set;

	if (!x->o->vcpu_cpus || !*x->o->vcpu_cpus || parse_cpus(x->o->vcpu_cpus, &set))
		return;
	for (unsigned i = 0; i < x->g.nvcpus; i++)
		pthread_setaffinity_np(x->g.vcpus[i].thread, sizeof(set), &set);
}

int host_migrate(const struct host_opts *o, struct host_result *r)
{
	struct src x = { .o = o, .r = r, .tty = isatty(2) };
	void *lib = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	r->verified = -1;
	r->source_intact = -1;
	r->guest_size = o->guest_size;
	x.ops = host_load_plugin(o->plugin, &lib, r->error, sizeof(r->error));
	if (!x.ops)
		return r->rc = -ENOENT;
	rc = guest_create(&x.g, o->guest_size, o->mem, 1, r->error, sizeof(r->error));
	if (rc)
		goto unload;
	if ((rc = guest_start(&x.g, o->vcpus, o->dirty_rate, o->pattern))) {
		snprintf(r->error, sizeof(r->error), "cannot start the vCPU threads");
		goto destroy_guest;
	}
	pin_vcpus(&x);
	rc = run(&x);
	if (x.s)
		x.ops->close(x.s);
	free(x.runs);
	/* Tracking off first: no vCPU may be left waiting on a protected page. */
	tracker_close(x.t);
	guest_stop(&x.g);
destroy_guest:
	guest_destroy(&x.g);
unload:
	host_unload_plugin(lib);
	if (rc && !r->outcome[0])
		snprintf(r->outcome, sizeof(r->outcome), "migration did not start");
	return r->rc = rc;
}
