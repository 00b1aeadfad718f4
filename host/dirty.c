/* SPDX-License-Identifier: MIT */
/* Dirty-page tracking (see dirty.h for the mechanisms and their kernels). */
#define _GNU_SOURCE
#include "dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

enum tmode { T_ASYNC, T_SYNC };

struct tracker {
	enum tmode mode;
	uint8_t *mem;
	uint64_t len;
	uint64_t gran;        /* protection granule: 4 KiB, or the huge page size */
	int uffd;
	int pagemap;
	/* sync mode: lock serialises the handler's record-and-unprotect
	 * against collect's take-and-protect; it guards bitmap. */
	pthread_mutex_t lock;
	uint64_t *bitmap;
	pthread_t handler;
	int handler_started;
	volatile int stop;
	int fatal;
};

const char *tracker_name(const struct tracker *t)
{
	return t->mode == T_ASYNC ? "uffd-async" : "uffd-sync";
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
		snprintf(why, whylen,
			 "userfaultfd unavailable (%s): run as root or set vm.unprivileged_userfaultfd=1",
			 strerror(errno));
		return -errno;
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

int tracker_open(const char *mode, void *mem, uint64_t len, uint64_t gran,
		 struct tracker **out, char *why, size_t whylen)
{
	struct tracker *t;
	int rc = -EINVAL;

	if (!mode)
		mode = "auto";
	for (int attempt = 0; attempt < 2; attempt++) {
		int want_async = attempt == 0;
		if ((want_async && !strcmp(mode, "uffd-sync")) ||
		    (!want_async && !strcmp(mode, "uffd-async")))
			continue;
		if (strcmp(mode, "auto") && strcmp(mode, "uffd-sync") && strcmp(mode, "uffd-async")) {
			snprintf(why, whylen, "unknown tracker '%s' (auto, uffd-async, uffd-sync)", mode);
			return -EINVAL;
		}
		t = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->mem = mem;
		t->len = len;
		t->gran = gran < PAGE ? PAGE : gran;
		t->uffd = t->pagemap = -1;
		pthread_mutex_init(&t->lock, NULL);
		rc = want_async ? open_async(t, why, whylen) : open_sync(t, why, whylen);
		if (!rc) {
			*out = t;
			return 0;
		}
		tracker_close(t);
	}
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

static long collect_sync(struct tracker *t, struct dirty_run **runs, size_t *cap,
			 size_t n, uint64_t *bytes)
{
	uint64_t words = (t->len / t->gran + 63) / 64;
	size_t n0 = n;
	long rc = 0;

	if (t->fatal)
		return -EIO;
	pthread_mutex_lock(&t->lock);
	for (uint64_t w = 0; w < words && rc >= 0; w++) {
		uint64_t bits = __atomic_exchange_n(&t->bitmap[w], 0, __ATOMIC_RELAXED);
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			uint64_t off = (w * 64 + b) * t->gran;
			bits &= bits - 1;
			if (n > n0 && (*runs)[n - 1].off + (*runs)[n - 1].len == off) {
				(*runs)[n - 1].len += t->gran;
			} else {
				if (grow(runs, cap, n)) {
					rc = -ENOMEM;
					break;
				}
				(*runs)[n++] = (struct dirty_run){ off, t->gran };
			}
			*bytes += t->gran;
		}
	}
	/* Re-arm what was dirty; the runs are sent after this, so any write
	 * before it is in this round and any after it faults again. */
	for (size_t i = n0; i < n && rc >= 0; i++)
		rc = wp_range(t, (*runs)[i].off, (*runs)[i].len, 1);
	pthread_mutex_unlock(&t->lock);
	return rc < 0 ? rc : (long)n;
}

long tracker_collect(struct tracker *t, struct dirty_run **runs, size_t *cap,
		     size_t n, uint64_t *bytes)
{
	return t->mode == T_ASYNC ? collect_async(t, runs, cap, n, bytes)
				  : collect_sync(t, runs, cap, n, bytes);
}

void tracker_close(struct tracker *t)
{
	if (!t)
		return;
	t->stop = 1;
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
