/* SPDX-License-Identifier: MIT */
/* Dirty-page tracking (see dirty.h for the mechanisms and their kernels). */
#define _GNU_SOURCE
#include "dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096ull

/* Linux 6.7 uapi, absent from Debian 12's 6.1 headers. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages,
		category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)
#endif

enum tmode { T_ASYNC, T_SYNC, T_MPROTECT };

struct tracker {
	enum tmode mode;
	uint8_t *mem;
	uint64_t len;
	uint64_t gran;        /* protection granule: 4 KiB, or the huge page size */
	int uffd;
	int pagemap;
	/* sync mode: lock serialises the handler's record-and-unprotect
	 * against collect's take-and-protect; it guards bitmap.  mprotect
	 * mode: no lock (a signal handler cannot take one), the bitmap is
	 * changed only by atomic ops (see mp_segv for the order). */
	pthread_mutex_t lock;
	uint64_t *bitmap;
	pthread_t handler;
	int handler_started;
	volatile int stop;
	volatile int fatal;
	int slot;             /* mprotect mode: index in mp_slots, or -1 */
};

const char *tracker_name(const struct tracker *t)
{
	return t->mode == T_ASYNC ? "uffd-async" : t->mode == T_SYNC ? "uffd-sync" : "mprotect";
}

static int wp_range(struct tracker *t, uint64_t off, uint64_t len, int protect)
{
	struct uffdio_writeprotect wp = {
		.range = { (uintptr_t)t->mem + off, len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(t->uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

static int uffd_setup(struct tracker *t, uint64_t features, char *why, size_t whylen)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	struct uffdio_register reg = {
		.range = { (uintptr_t)t->mem, t->len }, .mode = UFFDIO_REGISTER_MODE_WP };

	t->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (t->uffd < 0) {
		int e = errno;
		if (e == ENOSYS)
			snprintf(why, whylen,
				 "userfaultfd is not available (no such system call here: running under valgrind, or a kernel without CONFIG_USERFAULTFD)");
		else if (e == EPERM)
			snprintf(why, whylen,
				 "userfaultfd is not permitted (sysctl vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE: set it to 1 or run as root)");
		else
			snprintf(why, whylen, "userfaultfd is not available (%s)", strerror(e));
		return -e;
	}
	if (ioctl(t->uffd, UFFDIO_API, &api) || (api.features & features) != features) {
		snprintf(why, whylen, "the kernel lacks userfaultfd features 0x%llx",
			 (unsigned long long)features);
		return -EOPNOTSUPP;
	}
	if (ioctl(t->uffd, UFFDIO_REGISTER, &reg)) {
		snprintf(why, whylen, "cannot write-protect this memory with userfaultfd: %s",
			 strerror(errno));
		return -errno;
	}
	return 0;
}

static int open_async(struct tracker *t, char *why, size_t whylen)
{
	struct page_region v[1];
	struct pm_scan_arg a = { .size = sizeof(a), .start = (uintptr_t)t->mem,
				 .end = (uintptr_t)t->mem + PAGE, .vec = (uintptr_t)v,
				 .vec_len = 1, .category_mask = PAGE_IS_WRITTEN,
				 .return_mask = PAGE_IS_WRITTEN };
	int rc = uffd_setup(t, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, why, whylen);

	if (rc)
		return rc;
	t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (t->pagemap < 0 || ioctl(t->pagemap, PAGEMAP_SCAN, &a) < 0) {
		snprintf(why, whylen, "the kernel has no PAGEMAP_SCAN (Linux 6.7+)");
		return -EOPNOTSUPP;
	}
	t->mode = T_ASYNC;
	return wp_range(t, 0, t->len, 1);
}

static void *handler_main(void *arg)
{
	struct tracker *t = arg;
	struct uffd_msg msg[64];

	while (!t->stop) {
		struct pollfd p = { .fd = t->uffd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = read(t->uffd, msg, sizeof(msg));
		if (n <= 0)
			continue;
		pthread_mutex_lock(&t->lock);
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT ||
			    !(msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				continue;
			uint64_t off = (msg[i].arg.pagefault.address - (uintptr_t)t->mem) &
				       ~(t->gran - 1);
			uint64_t pg = off / t->gran;
			__atomic_or_fetch(&t->bitmap[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
			/* Lifting the protection wakes the faulting vCPU.  If that
			 * fails, lift it everywhere (a vCPU must never stay stuck)
			 * and make the next collect fail: tracking is lost. */
			if (wp_range(t, off, t->gran, 0)) {
				t->fatal = 1;
				wp_range(t, 0, t->len, 0);
			}
		}
		pthread_mutex_unlock(&t->lock);
	}
	return NULL;
}

static int open_sync(struct tracker *t, char *why, size_t whylen)
{
	int rc = uffd_setup(t, 0, why, whylen);

	if (rc)
		return rc;
	t->bitmap = calloc((t->len / t->gran + 63) / 64, 8);
	if (!t->bitmap)
		return -ENOMEM;
	t->mode = T_SYNC;
	if ((rc = wp_range(t, 0, t->len, 1))) {
		snprintf(why, whylen, "cannot write-protect the guest: %s", strerror(-rc));
		return rc;
	}
	rc = pthread_create(&t->handler, NULL, handler_main, t);
	if (rc)
		return -rc;
	t->handler_started = 1;
	return 0;
}

/*
 * mprotect tracker, for when userfaultfd is missing (valgrind has no
 * userfaultfd; unprivileged users may be refused it) and this kernel has
 * no soft-dirty bits.  The guest is made read-only; the first write to a
 * page raises SIGSEGV, whose handler lifts the protection of that page and
 * sets its bit; collect takes the bits and makes those pages read-only
 * again.  The handler finds its tracker in mp_slots (written by open and
 * close under mp_lock, read lock-free); mp_active counts handlers running
 * so close can wait for them before freeing the tracker.
 */
#define MP_SLOTS 8
static struct tracker *_Atomic mp_slots[MP_SLOTS];
static atomic_int mp_active;
static pthread_mutex_t mp_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction mp_old; /* guarded by mp_lock; read by the handler */
static int mp_users;            /* guarded by mp_lock */
/* A fault outside every tracker retried once: it may be a write to a
 * tracker closed (and unprotected) while the signal was on its way. */
static __thread uintptr_t mp_retry;

static void mp_chain(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	if ((mp_old.sa_flags & SA_SIGINFO) && mp_old.sa_sigaction) {
		mp_old.sa_sigaction(sig, si, uc);
	} else if (mp_old.sa_handler != SIG_DFL && mp_old.sa_handler != SIG_IGN) {
		mp_old.sa_handler(sig);
	} else {
		/* Default action: the faulting access repeats and kills. */
		sigemptyset(&dfl.sa_mask);
		sigaction(SIGSEGV, &dfl, NULL);
	}
}

/*
 * Async-signal-safe: atomics, mprotect and sigaction only.  The page is
 * made writable before its bit is set, so whenever a page is writable a
 * set bit follows: collect (exchange bits, then protect the pages taken)
 * can never leave a page writable with its bit clear.
 */
static void mp_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	int saved = errno;

	atomic_fetch_add(&mp_active, 1);
	for (int i = 0; i < MP_SLOTS; i++) {
		struct tracker *t = atomic_load(&mp_slots[i]);
		if (!t || a < (uintptr_t)t->mem || a - (uintptr_t)t->mem >= t->len)
			continue;
		uint64_t pg = (a - (uintptr_t)t->mem) / t->gran;
		if (mprotect(t->mem + pg * t->gran, t->gran, PROT_READ | PROT_WRITE)) {
			/* Most likely vm.max_map_count: tracking is lost, the
			 * guest must go on; the next collect fails. */
			t->fatal = 1;
			mprotect(t->mem, t->len, PROT_READ | PROT_WRITE);
		}
		__atomic_or_fetch(&t->bitmap[pg / 64], 1ull << (pg % 64), __ATOMIC_RELEASE);
		mp_retry = 0;
		atomic_fetch_sub(&mp_active, 1);
		errno = saved;
		return;
	}
	/* Not ours: done with the slots before chaining, since the earlier
	 * handler may never return (siglongjmp). */
	atomic_fetch_sub(&mp_active, 1);
	errno = saved;
	if (mp_retry != a) {
		mp_retry = a;
		return;
	}
	mp_retry = 0;
	mp_chain(sig, si, uc);
}

static int open_mprotect(struct tracker *t, char *why, size_t whylen)
{
	struct sigaction sa = { .sa_sigaction = mp_segv, .sa_flags = SA_SIGINFO | SA_RESTART };
	int slot = -1;

	t->bitmap = calloc((t->len / t->gran + 63) / 64, 8);
	if (!t->bitmap)
		return -ENOMEM;
	t->mode = T_MPROTECT;
	sigemptyset(&sa.sa_mask);
	pthread_mutex_lock(&mp_lock);
	for (int i = 0; i < MP_SLOTS && slot < 0; i++)
		if (!atomic_load(&mp_slots[i]))
			slot = i;
	if (slot < 0) {
		pthread_mutex_unlock(&mp_lock);
		snprintf(why, whylen, "more than %d guests tracked with mprotect in one process",
			 MP_SLOTS);
		return -EBUSY;
	}
	if (!mp_users && sigaction(SIGSEGV, &sa, &mp_old)) {
		int e = errno;
		pthread_mutex_unlock(&mp_lock);
		snprintf(why, whylen, "cannot install a SIGSEGV handler for mprotect tracking: %s",
			 strerror(e));
		return -e;
	}
	mp_users++;
	t->slot = slot;
	atomic_store(&mp_slots[slot], t);
	pthread_mutex_unlock(&mp_lock);
	if (mprotect(t->mem, t->len, PROT_READ)) {
		int e = errno;
		snprintf(why, whylen, "cannot write-protect the guest with mprotect: %s",
			 strerror(e));
		return -e;
	}
	return 0;
}

static void close_mprotect(struct tracker *t)
{
	uint64_t spins = 0;

	mprotect(t->mem, t->len, PROT_READ | PROT_WRITE);
	pthread_mutex_lock(&mp_lock);
	atomic_store(&mp_slots[t->slot], NULL);
	/* A handler that found t runs for microseconds; bounded anyway. */
	while (atomic_load(&mp_active) && spins++ < 200000)
		usleep(10);
	if (!--mp_users)
		sigaction(SIGSEGV, &mp_old, NULL);
	pthread_mutex_unlock(&mp_lock);
	t->slot = -1;
}

/* The fallback is said once per process: a host may open many trackers. */
static void say_fallback(const char *why)
{
	static atomic_int said;

	if (!atomic_exchange(&said, 1))
		fprintf(stderr,
			"rdmamig: %s; dirty tracking uses mprotect instead (one SIGSEGV per first write to a page in each round: slower for write-heavy guests)\n",
			why);
}

static const char *const tracker_modes[] = { "uffd-async", "uffd-sync", "mprotect" };

/*
 * mode "auto" (or NULL) takes RMIG_DIRTY_TRACKING from the environment if
 * set, else the first tracker that works here, in tracker_modes order.
 */
int tracker_open(const char *mode, void *mem, uint64_t len, uint64_t gran,
		 struct tracker **out, char *why, size_t whylen)
{
	const char *env = getenv("RMIG_DIRTY_TRACKING");
	char uffd_why[256] = "";
	struct tracker *t;
	int rc = -EINVAL, is_auto;

	if (!mode || !strcmp(mode, "auto"))
		mode = env && *env ? env : "auto";
	is_auto = !strcmp(mode, "auto");
	if (!is_auto && strcmp(mode, "uffd-async") && strcmp(mode, "uffd-sync") &&
	    strcmp(mode, "mprotect")) {
		snprintf(why, whylen, "unknown tracker '%s' (auto, uffd-async, uffd-sync, mprotect)",
			 mode);
		return -EINVAL;
	}
	for (int m = 0; m < 3; m++) {
		if (!is_auto && strcmp(mode, tracker_modes[m]))
			continue;
		t = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->mem = mem;
		t->len = len;
		t->gran = gran < PAGE ? PAGE : gran;
		t->uffd = t->pagemap = t->slot = -1;
		pthread_mutex_init(&t->lock, NULL);
		rc = m == 0 ? open_async(t, why, whylen)
		   : m == 1 ? open_sync(t, why, whylen) : open_mprotect(t, why, whylen);
		if (!rc) {
			if (m == 2 && is_auto)
				say_fallback(uffd_why);
			*out = t;
			return 0;
		}
		if (m == 1)
			snprintf(uffd_why, sizeof(uffd_why), "%s", why);
		tracker_close(t);
	}
	/* Asked for a userfaultfd tracker by name: say what would work. */
	if (!is_auto && strcmp(mode, "mprotect") && strlen(why) + 50 < whylen)
		strcat(why, "; --dirty-tracking auto or mprotect works without it");
	return rc;
}

static int grow(struct dirty_run **runs, size_t *cap, size_t n)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 1024;
	struct dirty_run *r = realloc(*runs, c * sizeof(*r));
	if (!r)
		return -ENOMEM;
	*runs = r;
	*cap = c;
	return 0;
}

static long collect_async(struct tracker *t, struct dirty_run **runs, size_t *cap,
			  size_t n, uint64_t *bytes)
{
	struct page_region v[512];
	uint64_t start = (uintptr_t)t->mem, end = start + t->len;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = start, .end = end, .vec = (uintptr_t)v, .vec_len = 512,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN };
		int got = ioctl(t->pagemap, PAGEMAP_SCAN, &a);
		if (got < 0)
			return -errno;
		for (int i = 0; i < got; i++) {
			if (grow(runs, cap, n))
				return -ENOMEM;
			(*runs)[n++] = (struct dirty_run){ v[i].start - (uintptr_t)t->mem,
							   v[i].end - v[i].start };
			*bytes += v[i].end - v[i].start;
		}
		start = a.walk_end;
		if (got < 512)
			break;
	}
	return (long)n;
}

/* Take the bitmap (and clear it) into runs from n on, coalesced. */
static long take_bitmap(struct tracker *t, struct dirty_run **runs, size_t *cap,
			size_t n, uint64_t *bytes)
{
	uint64_t words = (t->len / t->gran + 63) / 64;
	size_t n0 = n;

	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = __atomic_exchange_n(&t->bitmap[w], 0, __ATOMIC_ACQ_REL);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			uint64_t off = (w * 64 + b) * t->gran;
			bits &= bits - 1;
			if (n > n0 && (*runs)[n - 1].off + (*runs)[n - 1].len == off) {
				(*runs)[n - 1].len += t->gran;
			} else {
				if (grow(runs, cap, n))
					return -ENOMEM;
				(*runs)[n++] = (struct dirty_run){ off, t->gran };
			}
			*bytes += t->gran;
		}
	}
	return (long)n;
}

/* Re-arm what was dirty; the runs are sent after this, so any write
 * before it is in this round and any after it faults again. */
static long collect_sync(struct tracker *t, struct dirty_run **runs, size_t *cap,
			 size_t n, uint64_t *bytes)
{
	long rc;

	if (t->fatal)
		return -EIO;
	pthread_mutex_lock(&t->lock);
	rc = take_bitmap(t, runs, cap, n, bytes);
	for (size_t i = n; rc >= 0 && i < (size_t)rc; i++) {
		int e = wp_range(t, (*runs)[i].off, (*runs)[i].len, 1);
		if (e)
			rc = e;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* As collect_sync, with mprotect and without a lock (see mp_segv). */
static long collect_mprotect(struct tracker *t, struct dirty_run **runs, size_t *cap,
			     size_t n, uint64_t *bytes)
{
	long rc = t->fatal ? -EIO : take_bitmap(t, runs, cap, n, bytes);

	for (size_t i = n; rc >= 0 && i < (size_t)rc; i++)
		if (mprotect(t->mem + (*runs)[i].off, (*runs)[i].len, PROT_READ))
			rc = -errno;
	return t->fatal ? -EIO : rc;
}

long tracker_collect(struct tracker *t, struct dirty_run **runs, size_t *cap,
		     size_t n, uint64_t *bytes)
{
	if (t->mode == T_MPROTECT)
		return collect_mprotect(t, runs, cap, n, bytes);
	return t->mode == T_ASYNC ? collect_async(t, runs, cap, n, bytes)
				  : collect_sync(t, runs, cap, n, bytes);
}

void tracker_close(struct tracker *t)
{
	if (!t)
		return;
	t->stop = 1;
	if (t->slot >= 0)
		close_mprotect(t);
	if (t->handler_started) {
		/* Unprotect first so no vCPU stays blocked on a fault. */
		if (t->uffd >= 0)
			wp_range(t, 0, t->len, 0);
		pthread_join(t->handler, NULL);
	}
	if (t->uffd >= 0) {
		struct uffdio_range r = { (uintptr_t)t->mem, t->len };
		ioctl(t->uffd, UFFDIO_UNREGISTER, &r);
		close(t->uffd);
	}
	if (t->pagemap >= 0)
		close(t->pagemap);
	free(t->bitmap);
	pthread_mutex_destroy(&t->lock);
	free(t);
}
