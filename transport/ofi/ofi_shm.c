/* SPDX-License-Identifier: MIT */
/*
 * libfabric's shm provider keeps each endpoint's region in /dev/shm under
 * the endpoint's name, "PID:DOMAIN:EP", and unlinks it when the endpoint
 * closes.  A process killed with SIGKILL never closes: its 16 MiB region
 * stays in RAM until someone removes it, and a later process that gets the
 * same PID fails fi_enable with EBUSY.  The survivor knows the dead peer's
 * name -- it is the fabric address from the hello -- so it removes the
 * region when it closes its own endpoint, once the peer's PID is gone.
 */
#define _GNU_SOURCE
#include "ofi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/fi_cm.h>

#define SHM_PREFIX "fi_shm://"

/* The region name in a peer's shm address, "PID:N:N" only (no path). */
static int region_name(const char *addr, size_t len, char *name, size_t namelen,
		       long *pid)
{
	char buf[OFI_ADDR_MAX + 1];
	unsigned a, b;
	int n = 0;

	if (!len || len > OFI_ADDR_MAX)
		return -EINVAL;
	memcpy(buf, addr, len);
	buf[len] = 0;
	const char *s = strncmp(buf, SHM_PREFIX, strlen(SHM_PREFIX)) ? buf
								     : buf + strlen(SHM_PREFIX);
	if (sscanf(s, "%ld:%u:%u%n", pid, &a, &b, &n) != 3 || s[n] || *pid <= 0)
		return -EINVAL;
	snprintf(name, namelen, "/dev/shm/%s", s);
	return 0;
}

/* Gone, or a zombie whose memory the kernel has already released. */
static int pid_gone(long pid)
{
	char path[64], st[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return errno == ENOENT;
	size_t n = fread(st, 1, sizeof(st) - 1, f);
	fclose(f);
	st[n] = 0;
	const char *p = strrchr(st, ')');
	return p && (p[2] == 'Z' || p[2] == 'X');
}

/*
 * Called on close of a dead endpoint (caller holds no lock): if the peer
 * was an shm endpoint whose process has exited, remove its region.  The
 * peer's socket reads EOF as its process exits, a moment before the kernel
 * marks it exited: wait up to 200 ms for that, if its region is still there.
 */
void ofi_shm_reap_peer(struct ofi_ep *o)
{
	char path[OFI_ADDR_MAX + 16];
	long pid;

	if (!o->dead || strcmp(o->prov.name, "shm") ||
	    region_name(o->peer_name, o->peer_namelen, path, sizeof(path), &pid) ||
	    pid == (long)getpid() || access(path, F_OK))
		return; /* not shm, ourselves, or the peer closed and removed it */
	for (int i = 0; i < 40 && !pid_gone(pid); i++)
		usleep(5000);
	if (pid_gone(pid))
		unlink(path); /* ENOENT: the peer closed cleanly after all */
}

/*
 * fi_enable refused with EBUSY: shm found a region under this endpoint's
 * name, "OURPID:N:N", whose recorded owner is alive -- its PID is ours.  No
 * live process but this one can own that PID, and this one has not made it
 * (libfabric numbers its endpoints), so it was left by a killed process that
 * had the same PID.  Remove it (libfabric may have already) and return 1:
 * the caller opens a new endpoint (shm will not enable this one twice).
 * Else 0.
 */
int ofi_shm_clear_stale_self(struct ofi_ep *o)
{
	char name[OFI_ADDR_MAX], path[OFI_ADDR_MAX + 16];
	size_t len = sizeof(name);
	long pid;

	if (strcmp(o->prov.name, "shm") || fi_getname(&o->ep->fid, name, &len) ||
	    region_name(name, len, path, sizeof(path), &pid) || pid != (long)getpid())
		return 0;
	return !unlink(path) || errno == ENOENT;
}
