/* SPDX-License-Identifier: MIT */
/*
 * Pinned-memory accounting against RLIMIT_MEMLOCK.  The library counts and
 * names a shortfall; only the host raises the limit (rmig_memlock_raise).
 */
#define _GNU_SOURCE
#include <rdmamig/transport.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void fmt_size(char *buf, size_t len, unsigned long long v)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else if (v >= (1ull << 30) && !(v % (1ull << 30)))
		snprintf(buf, len, "%llu GiB", v >> 30);
	else if (v >= (1ull << 20))
		snprintf(buf, len, "%llu MiB", v >> 20);
	else
		snprintf(buf, len, "%llu KiB", v >> 10);
}

/* Pinned bytes this process asked for so far (registrations are pinned). */
static size_t pinned_total;

/*
 * Only the host decides to raise its limits: this is the one place the
 * library calls setrlimit, and only when the host asks (rmig_memlock_raise,
 * the plugin table's memlock_raise).  Tries unlimited (root), else the hard
 * limit if that covers bytes (UINT64_MAX: as far as allowed, the hard limit).
 */
int rmig_memlock_raise(uint64_t bytes)
{
	struct rlimit rl, inf = { RLIM_INFINITY, RLIM_INFINITY };
	char lim[32], ask[32];

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return rmig_set_error(NULL, -errno, "getrlimit(RLIMIT_MEMLOCK): %s", strerror(errno));
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= bytes)
		return 0;
	if (!setrlimit(RLIMIT_MEMLOCK, &inf))
		return 0;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= bytes || bytes == UINT64_MAX) {
		rl.rlim_cur = rl.rlim_max;
		if (!setrlimit(RLIMIT_MEMLOCK, &rl))
			return 0;
	}
	fmt_size(lim, sizeof(lim), rl.rlim_max);
	fmt_size(ask, sizeof(ask), bytes);
	return rmig_set_error(NULL, -EPERM,
			      "cannot raise the memlock limit to %s: the hard limit is %s (raise it with ulimit -l, LimitMEMLOCK= in a systemd unit, or run with CAP_SYS_RESOURCE)",
			      ask, lim);
}

/* Counts what is pinned; never raises the limit (the host does, see above). */
int rmig_memlock_reserve(struct rmig_ep *ep, size_t len)
{
	struct rlimit rl;
	size_t want;
	char lim[32], ask[32], shortfall[32];

	if (getrlimit(RLIMIT_MEMLOCK, &rl))
		return 0;
	want = __atomic_add_fetch(&pinned_total, len, __ATOMIC_RELAXED);
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want + (1u << 20))
		return 0;
	/* Root (CAP_IPC_LOCK) pins past the limit anyway. */
	if (geteuid() == 0)
		return 0;
	__atomic_sub_fetch(&pinned_total, len, __ATOMIC_RELAXED);
	fmt_size(lim, sizeof(lim), rl.rlim_cur);
	fmt_size(ask, sizeof(ask), want + (1u << 20));
	fmt_size(shortfall, sizeof(shortfall), want + (1u << 20) - rl.rlim_cur);
	return rmig_set_error(ep, -ENOMEM,
			      "memlock limit %s is %s short of the %s to register; raise it (ulimit -l, LimitMEMLOCK=, or the host calls rmig_memlock_raise / memlock_raise)",
			      lim, shortfall, ask);
}

void rmig_memlock_release(size_t len)
{
	__atomic_sub_fetch(&pinned_total, len, __ATOMIC_RELAXED);
}
