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
#include <pthread.h>
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

/*
 * Both ends of a connection in one process (the reference host's loopback,
 * a test, a framework migrating to itself).  shm maps a peer endpoint of
 * the same process by pointing at that endpoint's own region instead of
 * mapping its file again, and an endpoint's close unmaps its region.  The
 * survivor's progress then finishes a send the closed end had answered --
 * it gives the inject or SAR buffer back to the peer's pool under the
 * peer's spinlock -- in unmapped memory: SIGSEGV in pthread_spin_trylock
 * (messages over 4 KiB, shm of libfabric 1.17).  So the end that closes
 * first is parked: its progress thread stops, its bootstrap socket closes
 * (the survivor sees the peer leave as before), and its libfabric objects,
 * region included, stay until its peer closes too.
 *
 * SHM_OPEN: listed, open.  SHM_PARKED: closed by the caller, waiting for
 * its peer.  SHM_RELEASED: off the lists, being freed.
 */
enum { SHM_NONE = 0, SHM_OPEN, SHM_PARKED, SHM_RELEASED };

/* shm_lock guards both lists and every listed endpoint's shm_next/shm_listed. */
static pthread_mutex_t shm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ofi_ep *shm_open_list, *shm_parked_list;

static int same_process_shm(const struct ofi_ep *o)
{
	char path[OFI_ADDR_MAX + 16];
	long pid;

	return !strcmp(o->prov.name, "shm") && o->self_namelen &&
	       !region_name(o->peer_name, o->peer_namelen, path, sizeof(path), &pid) &&
	       pid == (long)getpid();
}

static void unlink_from(struct ofi_ep **list, struct ofi_ep *o)
{
	for (struct ofi_ep **p = list; *p; p = &(*p)->shm_next)
		if (*p == o) {
			*p = o->shm_next;
			o->shm_next = NULL;
			return;
		}
}

void ofi_shm_track(struct ofi_ep *o)
{
	if (!same_process_shm(o))
		return;
	pthread_mutex_lock(&shm_lock);
	o->shm_next = shm_open_list;
	shm_open_list = o;
	o->shm_listed = SHM_OPEN;
	pthread_mutex_unlock(&shm_lock);
}

int ofi_shm_park(struct ofi_ep *o)
{
	struct ofi_ep *p;

	if (o->shm_listed != SHM_OPEN)
		return 0;
	pthread_mutex_lock(&shm_lock);
	unlink_from(&shm_open_list, o);
	o->shm_listed = SHM_NONE;
	for (p = shm_open_list; p; p = p->shm_next)
		if (p->self_namelen == o->peer_namelen &&
		    !memcmp(p->self_name, o->peer_name, o->peer_namelen))
			break;
	if (p) {
		o->shm_listed = SHM_PARKED;
		o->shm_next = shm_parked_list;
		shm_parked_list = o;
	}
	pthread_mutex_unlock(&shm_lock);
	if (!p)
		return 0;
	/* The peer reads EOF now, as if the endpoint were gone. */
	if (o->sock >= 0)
		close(o->sock);
	o->sock = -1;
	/* The generic layer drops the caller's domain reference when close
	 * returns: the parked objects hold one of their own. */
	if (o->base.dom)
		__atomic_add_fetch(&o->base.dom->refs, 1, __ATOMIC_RELAXED);
	return 1;
}

void ofi_shm_release(struct ofi_ep *o)
{
	struct ofi_ep *mine = NULL, *q, *next;

	/* A parked endpoint being freed: its own domain reference goes. */
	if (o->shm_listed == SHM_RELEASED) {
		struct rmig_domain *d = o->base.dom;
		o->base.dom = NULL;
		if (d && !__atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL))
			d->ops->domain_free(d);
		return;
	}
	if (!o->self_namelen || strcmp(o->prov.name, "shm"))
		return;
	pthread_mutex_lock(&shm_lock);
	for (q = shm_parked_list; q; q = next) {
		next = q->shm_next;
		if (q->peer_namelen == o->self_namelen &&
		    !memcmp(q->peer_name, o->self_name, o->self_namelen)) {
			unlink_from(&shm_parked_list, q);
			q->shm_listed = SHM_RELEASED;
			q->shm_next = mine;
			mine = q;
		}
	}
	pthread_mutex_unlock(&shm_lock);
	for (q = mine; q; q = next) {
		next = q->shm_next;
		ofi_ep_free(q);
	}
}
