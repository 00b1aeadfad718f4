/* SPDX-License-Identifier: MIT */
/*
 * rdmamig proxy-out / proxy-in (see proxy.h).
 *
 * Each QEMU connection is carried forward (source QEMU to destination QEMU:
 * the migration stream) by its own rdmamig connection.  The main one also
 * gets a reverse connection with a small ring for what the destination QEMU
 * sends back (QEMU's return path, which libvirt turns on); QEMU never sends
 * back on multifd channels.  The main connection is the one that finds its
 * route idle: QEMU opens it first and the multifd channels only once it is
 * connected, and migrations at the same time use routes of their own.
 *
 * Threads: the main thread accepts (QEMU's connections on proxy-out,
 * rdmamig connections on proxy-in) and starts one detached thread per
 * rdmamig connection, which owns its endpoint and its own descriptor of the
 * QEMU socket (the reverse one a dup()) and closes both when it ends.
 * Shared between connection threads: the read-only configuration, the
 * placement plan (read-only once made), atomic counters, the routes' turn
 * (route_order.lock) and proxy-in's registry of forward connections
 * (registry_lock).
 *
 * Lifetimes are mirrored through the stream: QEMU closing its socket is the
 * stream's end of file, which proxy-in turns into closing the other QEMU's
 * socket once every byte is delivered; a failure anywhere (a QEMU socket
 * reset, the rdmamig connection lost or silent past the timeout, the peer
 * proxy's ABORT) ends both forward streams, and each proxy then shuts its
 * QEMU socket down, so both QEMUs see the connection die: the source fails
 * the migration and its guest runs on.  The reverse stream mirrors the
 * destination QEMU closing its socket (its end of file) onto the source's
 * socket; losing it resets the source's socket (QEMU would wait for it
 * forever), see conn_end.
 */
#define _GNU_SOURCE
#include "proxy.h"
#include "commands.h"
#include "../common/clock.h"
#ifdef RMIG_HAVE_NUMA
#include <rdmamig/numa.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ACCEPT_SLICE_MS 500 /* how often the accept loops look at the stop flag */
#define UNIX_BACKLOG 64

/*
 * proxy-out introduces a route's connections to proxy-in one at a time, in
 * the order it accepted them (see proxy_wire.h: QEMU 7.2 takes the first
 * connection to arrive as the main channel).
 */
struct route_order {
	pthread_mutex_t lock;
	pthread_cond_t turn_cv;
	uint64_t accepted; /* connections accepted so far; main thread only */
	uint64_t turn;     /* the connection whose HELLO may go now; guarded by lock */
	unsigned active;   /* forward connections carried now; guarded by lock */
};
static struct route_order order[PROXY_ROUTES_MAX];

static volatile sig_atomic_t stop_requested;
static atomic_uint active_conns;
static atomic_ulong next_conn_id;
static uint64_t instance; /* proxy-out: random, set before any thread starts */

#define REVERSE_RING (64u << 10) /* QEMU's return path: a few small messages */

#ifdef RMIG_HAVE_NUMA
static struct rmig_placement *plan; /* read-only once made */
#endif

/* One carried connection; owned by its thread. */
struct conn {
	const struct proxy_cfg *c;
	unsigned long id;
	int fd;                    /* the QEMU socket (-1 on proxy-in until connected) */
	struct rmig_ep *ep;        /* proxy-in: accepted before the thread starts */
	const struct proxy_route *route;
	struct route_order *order; /* proxy-out: its route's */
	uint64_t seq;              /* proxy-out: accept order on its route */
	int reverse;               /* carries the destination QEMU's bytes back */
	int main_channel;          /* proxy-out: found its route idle (gets a reverse one) */
	int eof_to_qemu;           /* a clean end shuts QEMU's socket for writing */
	int keep_on_fail;          /* a failure leaves QEMU's socket to the other thread */
	uint64_t peer_conn, peer_instance; /* proxy-in: proxy-out's names for it */
	struct conn *next;         /* proxy-in: registry link, guarded by registry_lock */
	int registered;            /* proxy-in: in the registry (forward thread only) */
	struct rmig_stream_opts o;      /* the configuration's, with this side's name */
	struct rmig_stream_stats st;
	char err[RMIG_ERR_MAX];    /* why it ended, when it failed */
	char tag[PROXY_NAME_MAX + 48]; /* "NAME#ID" for log lines */
};

/*
 * proxy-in: forward connections whose destination socket is open, for their
 * reverse connection to find (a dup of the socket, taken under the lock; a
 * forward thread leaves the registry before it closes the socket).
 */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *registry; /* guarded by registry_lock */

__attribute__((format(printf, 2, 3)))
static void plog(const struct proxy_cfg *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "rdmamig %s: %s\n", c->cmd, line); /* one call: lines never interleave */
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int proxy_route_parse(char *arg, struct proxy_route *r)
{
	char *eq = strrchr(arg, '=');
	const char *base;
	size_t n;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (eq) {
		n = (size_t)(eq - arg);
		if (!n || !proxy_name_ok(eq + 1, strlen(eq + 1)))
			return -1;
		snprintf(r->name, sizeof(r->name), "%s", eq + 1);
		*eq = 0; /* the path is arg's first part: it lives as long as the process */
		r->path = arg;
		return 0;
	}
	r->path = arg;
	base = strrchr(arg, '/');
	base = base ? base + 1 : arg;
	if (!proxy_name_ok(base, strlen(base)))
		return -1;
	snprintf(r->name, sizeof(r->name), "%s", base);
	return 0;
}

/* ---- placement ------------------------------------------------------------ */

static void place_init(const struct proxy_cfg *c)
{
#ifdef RMIG_HAVE_NUMA
	struct rmig_placement_opts o = { .size = sizeof(o), .workers = c->workers,
					 .nic = c->nic, .vcpus = c->vcpus };

	if (rmig_placement_plan(&o, &plan))
		plog(c, "no placement plan (%s): connection threads run where the scheduler puts them",
		     rmig_last_error());
#else
	(void)c;
#endif
}

/* Bind the calling connection thread to its worker's CPU; -1 when unplaced. */
static int place_self(unsigned long id)
{
#ifdef RMIG_HAVE_NUMA
	unsigned w;

	if (!plan)
		return -1;
	w = (unsigned)(id % rmig_placement_workers(plan));
	return rmig_placement_bind_self(plan, w) == 0 ? rmig_placement_cpu(plan, w) : -1;
#else
	(void)id;
	return -1;
#endif
}

/* At exit: connection threads still running keep the plan (the process ends them). */
static void place_fini(void)
{
#ifdef RMIG_HAVE_NUMA
	if (atomic_load(&active_conns))
		return;
	rmig_placement_destroy(plan);
	plan = NULL;
#endif
}

/* ---- unix sockets ------------------------------------------------------------ */

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* A socket file nobody listens on is stale: remove it.  One in use is an error. */
static int unix_clear_stale(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, rc;

	if (lstat(sa->sun_path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (!rc)
		return -EADDRINUSE;
	return unlink(sa->sun_path) ? -errno : 0;
}

static int unix_listen(const struct proxy_cfg *c, struct proxy_route *r)
{
	struct sockaddr_un sa;
	int fd, rc = unix_addr(r->path, &sa);

	if (!rc)
		rc = unix_clear_stale(&sa);
	if (rc) {
		plog(c, "cannot listen on %s: %s", r->path,
		     rc == -EADDRINUSE ? "a running process listens there: stop it or choose another path"
		     : rc == -EEXIST ? "it exists and is not a socket: remove it or choose another path"
		     : rc == -ENAMETOOLONG ? "path too long for a unix socket (108 bytes): choose a shorter one"
		     : strerror(-rc));
		return rc;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    (c->mode && chmod(r->path, c->mode)) || listen(fd, UNIX_BACKLOG)) {
		rc = -errno;
		plog(c, "cannot listen on %s: %s (check the folder exists and is writable)", r->path,
		     strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	r->fd = fd;
	return 0;
}

/* Connect to QEMU's socket, retrying while it is not there yet, up to timeout_ms. */
static int unix_connect(const char *path, int timeout_ms, int *out)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct sockaddr_un sa;
	int fd, rc = unix_addr(path, &sa);

	if (rc)
		return rc;
	for (;;) {
		/* Non-blocking: QEMU's backlog may be full while it accepts the others. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			*out = fd;
			return 0;
		}
		rc = -errno;
		close(fd);
		if ((rc != -EAGAIN && rc != -ENOENT && rc != -ECONNREFUSED) || !rmig_left_ms(deadline))
			return rc;
		usleep(20000);
	}
}

static const char *unix_connect_hint(int rc)
{
	switch (rc) {
	case -ENOENT: return "no such socket: start the destination QEMU with -incoming unix:PATH "
			     "(or migrate-incoming) first, or fix --to-unix";
	case -ECONNREFUSED: return "nobody listens there: the destination QEMU is not waiting for a migration";
	case -EAGAIN: return "the destination QEMU accepts no more connections: give it multifd-channels to match the source";
	case -EACCES: return "permission denied: run proxy-in as a user that may connect to it";
	case -ENAMETOOLONG: return "path too long for a unix socket (108 bytes)";
	default: return strerror(-rc);
	}
}

/* Shut a QEMU socket down both ways, so QEMU sees the connection die now. */
static void reset_qemu_socket(int fd, int failed)
{
	if (fd < 0)
		return;
	if (failed)
		shutdown(fd, SHUT_RDWR);
	close(fd);
}

/* ---- one connection, both ends ------------------------------------------------ */

static void conn_free(struct conn *k)
{
	if (k->ep)
		rmig_close(k->ep);
	free(k);
	atomic_fetch_sub(&active_conns, 1);
}

static void registry_add(struct conn *k)
{
	pthread_mutex_lock(&registry_lock);
	k->next = registry;
	registry = k;
	k->registered = 1;
	pthread_mutex_unlock(&registry_lock);
}

static void registry_del(struct conn *k)
{
	struct conn **p;

	if (!k->registered)
		return;
	pthread_mutex_lock(&registry_lock);
	for (p = &registry; *p; p = &(*p)->next)
		if (*p == k) {
			*p = k->next;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	k->registered = 0;
}

/* A dup of the destination socket of proxy-out's forward connection, or -1. */
static int registry_dup(uint64_t inst, uint64_t conn)
{
	int fd = -1;

	pthread_mutex_lock(&registry_lock);
	for (struct conn *k = registry; k; k = k->next)
		if (k->peer_instance == inst && k->peer_conn == conn) {
			fd = fcntl(k->fd, F_DUPFD_CLOEXEC, 0);
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	return fd;
}

/*
 * Say how it ended and free everything.  A forward failure resets QEMU's
 * socket (both ways: QEMU sees it die); a clean end of a stream that writes
 * into QEMU shuts that socket for writing (QEMU reads end of file).  A
 * reverse failure on proxy-out that is not the source QEMU's own socket
 * refusing the bytes (it closed: the migration is over) is a lost return
 * path: QEMU would wait for it forever, so its socket is reset too.  On
 * proxy-in a reverse failure only closes its descriptor: the forward
 * stream may still be delivering the migration's tail.
 */
static void conn_end(struct conn *k, int rc)
{
	const struct rmig_stream_stats *st = &k->st;
	double secs = (double)st->ns / 1e9;

	if (rc && !k->reverse)
		plog(k->c, "%s: %s; QEMU's socket reset", k->tag, k->err);
	else if (rc && k->c->verbose)
		plog(k->c, "%s: return path ended: %s", k->tag, k->err);
	else if (!rc && k->c->verbose)
		plog(k->c, "%s: %llu bytes in %.3f s, %.1f MB/s over %s, ring %zu KiB", k->tag,
		     (unsigned long long)st->bytes, secs,
		     secs > 0 ? (double)st->bytes / secs / 1e6 : 0.0, rmig_ep_backend(k->ep),
		     st->ring >> 10);
	registry_del(k);
	if (k->order && !k->reverse) {
		pthread_mutex_lock(&k->order->lock);
		k->order->active--;
		pthread_mutex_unlock(&k->order->lock);
	}
	if (!rc && k->eof_to_qemu && k->fd >= 0)
		shutdown(k->fd, SHUT_WR);
	reset_qemu_socket(k->fd, rc != 0 && !k->keep_on_fail && !(k->reverse && k->st.fd_failed));
	conn_free(k);
}

static int conn_start(struct conn *k, void *(*fn)(void *))
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, fn, k);
	pthread_attr_destroy(&attr);
	return -rc;
}

/* Room for one more carried connection?  Counts it when so. */
static int conn_admit(const struct proxy_cfg *c)
{
	if (atomic_fetch_add(&active_conns, 1) < c->max_conns)
		return 1;
	atomic_fetch_sub(&active_conns, 1);
	return 0;
}

/*
 * The end of a proxy (stopped, or its listener broke): with connections
 * still carried, leave at once (_exit): their threads use the endpoints and
 * the library's state that an ordinary exit would tear down under them.
 * The kernel closes their sockets, so both QEMUs see those connections die.
 */
static int proxy_end(int rc, struct rmig_ep *listener)
{
	if (atomic_load(&active_conns)) {
		fflush(stderr);
		_exit(rc ? 1 : 0);
	}
	if (listener)
		rmig_close(listener);
	place_fini();
	return rc ? 1 : 0;
}

/* ---- proxy-out --------------------------------------------------------------- */

/*
 * Wait until the connections accepted before this one on its route were set
 * up.  Bounded: each earlier one takes at most a connect and a READY wait,
 * so the wait gives up when the turn has not moved for that long.
 */
static void turn_wait(struct conn *k)
{
	struct timespec until;
	uint64_t seen = UINT64_MAX;
	int rc = 0;

	pthread_mutex_lock(&k->order->lock);
	while (k->order->turn < k->seq && rc != ETIMEDOUT) {
		if (k->order->turn != seen) { /* progress: a fresh bound */
			seen = k->order->turn;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 2 * (k->c->o.timeout_ms / 1000 + 1);
		}
		rc = pthread_cond_timedwait(&k->order->turn_cv, &k->order->lock, &until);
	}
	pthread_mutex_unlock(&k->order->lock);
}

static void turn_next(struct conn *k)
{
	pthread_mutex_lock(&k->order->lock);
	if (k->order->turn <= k->seq)
		k->order->turn = k->seq + 1;
	pthread_cond_broadcast(&k->order->turn_cv);
	pthread_mutex_unlock(&k->order->lock);
}

/* Name the route to proxy-in and wait until it connected the destination QEMU. */
static int out_introduce(struct conn *k, char *err, size_t errlen)
{
	struct proxy_msg h = { .type = k->reverse ? PROXY_REVERSE : PROXY_HELLO, .conn = k->id,
			       .instance = instance };
	uint8_t raw[RMIG_STREAM_MSG_MAX > PROXY_MSG_MAX ? RMIG_STREAM_MSG_MAX : PROXY_MSG_MAX];
	char why[RMIG_STREAM_REASON_MAX + 1];
	int n;

	snprintf(h.name, sizeof(h.name), "%s", k->route->name);
	n = rmig_send(k->ep, raw, proxy_msg_encode(&h, raw));
	if (!n)
		n = rmig_recv(k->ep, raw, sizeof(raw), k->c->o.timeout_ms);
	if (n < 0) {
		snprintf(err, errlen, "no reply from proxy-in within %d ms: %s", k->c->o.timeout_ms,
			 rmig_ep_error(k->ep));
		return n;
	}
	if (!proxy_msg_decode(raw, (size_t)n, &h) && h.type == PROXY_READY)
		return 0;
	if (!rmig_stream_abort_reason(raw, (size_t)n, why, sizeof(why))) {
		snprintf(err, errlen, "refused by %s", why);
		return -ECONNREFUSED;
	}
	snprintf(err, errlen, "proxy-in sent a malformed reply: run the same rdmamig on both ends");
	return -EPROTO;
}

static int out_connect(struct conn *k)
{
	const struct proxy_cfg *c = k->c;
	int rc = cli_connect_retry(c->backend, c->addr, &c->ep_opts, c->o.timeout_ms, &k->ep);

	if (rc) {
		k->ep = NULL;
		snprintf(k->err, sizeof(k->err), "%s proxy-in at %s: %s",
			 rc == -EACCES ? "no authenticated connection to" : "cannot reach", c->addr,
			 rmig_last_error());
	}
	return rc;
}

/* The destination QEMU's bytes back into the source QEMU's socket. */
static void *out_reverse_main(void *arg)
{
	struct conn *k = arg;
	int rc;

	place_self(k->id);
	rc = out_connect(k);
	if (!rc)
		rc = out_introduce(k, k->err, sizeof(k->err));
	if (!rc)
		rc = rmig_stream_recv(k->ep, k->fd, &k->o, &k->st, k->err, sizeof(k->err));
	conn_end(k, rc);
	return NULL;
}

/* Start the reverse connection of forward connection f (on a dup of its socket). */
static void out_start_reverse(const struct conn *f)
{
	struct conn *k = conn_admit(f->c) ? calloc(1, sizeof(*k)) : NULL;

	if (!k) {
		plog(f->c, "%s: no return path (already carrying %u connections: raise --max-conns)",
		     f->tag, f->c->max_conns);
		return;
	}
	*k = (struct conn){ .c = f->c, .id = f->id, .route = f->route, .reverse = 1,
			    .eof_to_qemu = 1, .o = f->c->o,
			    .fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0) };
	k->o.ring = REVERSE_RING;
	k->o.fd_name = "the source QEMU's socket (return path)";
	snprintf(k->tag, sizeof(k->tag), "%s#%lu (return path)", f->route->name, f->id);
	if (k->fd < 0 || conn_start(k, out_reverse_main)) {
		snprintf(k->err, sizeof(k->err), "cannot start it: %s", strerror(errno));
		conn_end(k, -EAGAIN);
	}
}

static void *out_conn_main(void *arg)
{
	struct conn *k = arg;
	const struct proxy_cfg *c = k->c;
	int cpu = place_self(k->id);
	int rc;

	/*
	 * One at a time per route, connect included: proxy-in accepts (and
	 * authenticates) one connection at a time, and a burst of handshakes
	 * behind each other timed out over ofi/shm on a loaded machine.
	 */
	turn_wait(k);
	rc = out_connect(k);
	if (!rc)
		rc = out_introduce(k, k->err, sizeof(k->err));
	turn_next(k);
	if (!rc && k->main_channel)
		out_start_reverse(k);
	if (!rc) {
		if (c->verbose)
			plog(c, "%s: QEMU connected on %s, carried to %s over %s (cpu %d)", k->tag,
			     k->route->path, c->addr, rmig_ep_backend(k->ep), cpu);
		k->o.fd_name = "the source QEMU's socket";
		rc = rmig_stream_send(k->ep, k->fd, &k->o, &k->st, k->err, sizeof(k->err));
	}
	conn_end(k, rc);
	return NULL;
}

static void out_accept(const struct proxy_cfg *c, const struct proxy_route *r)
{
	int fd = accept4(r->fd, NULL, NULL, SOCK_CLOEXEC);
	struct conn *k;

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			plog(c, "accept on %s failed: %s", r->path, strerror(errno));
		return;
	}
	if (!conn_admit(c)) {
		plog(c, "refused a QEMU connection on %s: already carrying %u (raise --max-conns)",
		     r->path, c->max_conns);
		close(fd);
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		close(fd);
		atomic_fetch_sub(&active_conns, 1);
		return;
	}
	*k = (struct conn){ .c = c, .id = atomic_fetch_add(&next_conn_id, 1) + 1, .fd = fd,
			    .route = r, .order = &order[r - c->routes], .o = c->o };
	k->seq = k->order->accepted++;
	pthread_mutex_lock(&k->order->lock);
	k->main_channel = !k->order->active++;
	pthread_mutex_unlock(&k->order->lock);
	snprintf(k->tag, sizeof(k->tag), "%s#%lu", r->name, k->id);
	if (conn_start(k, out_conn_main)) {
		snprintf(k->err, sizeof(k->err), "cannot start a thread for it: %s", strerror(errno));
		conn_end(k, -EAGAIN);
	}
}

int proxy_out_run(struct proxy_cfg *c)
{
	struct pollfd p[PROXY_ROUTES_MAX];
	unsigned i, n = 0;
	int rc = 0;

	install_signals();
	instance = ((uint64_t)getpid() << 32) ^ rmig_now_ns(); /* distinct per run, not secret */
	for (i = 0; i < c->nroutes; i++) {
		pthread_mutex_init(&order[i].lock, NULL);
		pthread_cond_init(&order[i].turn_cv, NULL);
	}
	for (i = 0; i < c->nroutes && !rc; i++, n++)
		rc = unix_listen(c, &c->routes[i]);
	if (!rc) {
		place_init(c);
		plog(c, "QEMU may migrate to unix:%s%s (carried to %s)", c->routes[0].path,
		     c->nroutes > 1 ? " and the other --listen-unix sockets" : "", c->addr);
	}
	while (!rc && !stop_requested) {
		for (i = 0; i < c->nroutes; i++)
			p[i] = (struct pollfd){ .fd = c->routes[i].fd, .events = POLLIN };
		if (poll(p, c->nroutes, ACCEPT_SLICE_MS) < 0 && errno != EINTR) {
			plog(c, "poll failed: %s", strerror(errno));
			rc = -errno;
		}
		for (i = 0; !rc && i < c->nroutes; i++)
			if (p[i].revents & POLLIN)
				out_accept(c, &c->routes[i]);
	}
	for (i = 0; i < n; i++)
		if (c->routes[i].fd >= 0) {
			close(c->routes[i].fd);
			unlink(c->routes[i].path);
		}
	return proxy_end(rc, NULL);
}

/* ---- proxy-in ---------------------------------------------------------------- */

/* Tell proxy-out why this connection is refused (it reports the reason). */
static void in_refuse(struct conn *k, const char *why)
{
	char reason[RMIG_STREAM_REASON_MAX + 1];

	/* Cut to the wire's limit on purpose: the first phrase says it all. */
	snprintf(reason, sizeof(reason), "proxy-in: %.*s", RMIG_STREAM_REASON_MAX - 10, why);
	rmig_stream_abort(k->ep, reason);
}

/*
 * The longest a route's connections take to all be set up: each earlier one
 * may take a connect and a READY wait (turn_wait's bound) and this one its
 * own.  Until then QEMU may leave a connected one unread (QEMU 7.2's
 * destination starts reading once every multifd channel arrived).
 */
static int setup_ms(const struct proxy_cfg *c)
{
	return 3 * c->o.timeout_ms + 2000;
}

/* Read proxy-out's hello and pick the route; 0, or -errno with err set. */
static int in_route(struct conn *k, char *err, size_t errlen)
{
	uint8_t raw[PROXY_MSG_MAX];
	struct proxy_msg h;
	/* proxy-out may hold it back while the route's earlier ones connect (turn_wait). */
	int wait_ms = setup_ms(k->c);
	int n = rmig_recv(k->ep, raw, sizeof(raw), wait_ms);

	if (n < 0) {
		snprintf(err, errlen, "no route message from proxy-out within %d ms: %s",
			 wait_ms, rmig_ep_error(k->ep));
		return n;
	}
	n = proxy_msg_decode(raw, (size_t)n, &h);
	if (!n && h.type == PROXY_READY)
		n = -EPROTO;
	if (n) {
		snprintf(err, errlen, n == -EPROTONOSUPPORT
			 ? "proxy-out speaks proxy protocol version %u, this is %u: run the same rdmamig on both ends"
			 : "proxy-out sent a malformed route message (a 'rdmamig send' to a proxy-in?)",
			 h.version, PROXY_VERSION);
		return n;
	}
	k->reverse = h.type == PROXY_REVERSE;
	k->peer_conn = h.conn;
	k->peer_instance = h.instance;
	snprintf(k->tag, sizeof(k->tag), "%s#%llu%s", h.name, (unsigned long long)h.conn,
		 k->reverse ? " (return path)" : "");
	for (unsigned i = 0; i < k->c->nroutes; i++)
		if (!strcmp(k->c->routes[i].name, h.name)) {
			k->route = &k->c->routes[i];
			return 0;
		}
	snprintf(err, errlen, "no route '%s' here: give proxy-in --to-unix PATH=%s", h.name, h.name);
	return -ENOENT;
}

/* Connected to the destination QEMU: proxy-out may introduce the next one. */
static int in_ready(struct conn *k, char *err, size_t errlen)
{
	struct proxy_msg h = { .type = PROXY_READY, .conn = k->id };
	uint8_t raw[PROXY_MSG_MAX];
	int rc = rmig_send(k->ep, raw, proxy_msg_encode(&h, raw));

	if (rc)
		snprintf(err, errlen, "connection to proxy-out lost: %s", rmig_ep_error(k->ep));
	return rc;
}

/* Reverse: read what the destination QEMU sends back on the forward connection's socket. */
static int in_reverse(struct conn *k)
{
	int rc;

	k->keep_on_fail = 1;
	k->fd = registry_dup(k->peer_instance, k->peer_conn);
	if (k->fd < 0) {
		snprintf(k->err, sizeof(k->err), "its connection already ended");
		in_refuse(k, k->err);
		return -ECONNREFUSED;
	}
	rc = in_ready(k, k->err, sizeof(k->err));
	k->o.fd_name = "the destination QEMU's socket (return path)";
	return rc ? rc : rmig_stream_send(k->ep, k->fd, &k->o, &k->st, k->err, sizeof(k->err));
}

/* Forward: connect the destination QEMU's socket and write the stream into it. */
static int in_forward(struct conn *k, int cpu)
{
	const struct proxy_cfg *c = k->c;
	int rc = unix_connect(k->route->path, c->o.timeout_ms, &k->fd);

	if (rc) {
		snprintf(k->err, sizeof(k->err), "cannot connect to the destination QEMU at %s: %s",
			 k->route->path, unix_connect_hint(rc));
		in_refuse(k, k->err);
		return rc;
	}
	registry_add(k); /* before READY: proxy-out opens the reverse one after it */
	rc = in_ready(k, k->err, sizeof(k->err));
	if (rc)
		return rc;
	if (c->verbose)
		plog(c, "%s: carried to %s over %s (cpu %d)", k->tag, k->route->path,
		     rmig_ep_backend(k->ep), cpu);
	k->eof_to_qemu = 1;
	k->o.fd_name = "the destination QEMU's socket";
	k->o.stall_ms = setup_ms(c);
	return rmig_stream_recv(k->ep, k->fd, &k->o, &k->st, k->err, sizeof(k->err));
}

static void *in_conn_main(void *arg)
{
	struct conn *k = arg;
	int cpu = place_self(k->id);
	int rc = in_route(k, k->err, sizeof(k->err));

	if (rc)
		in_refuse(k, k->err);
	else
		rc = k->reverse ? in_reverse(k) : in_forward(k, cpu);
	conn_end(k, rc);
	return NULL;
}

/* Take one rdmamig connection; 0 (also a refused stranger or no one), or -errno to stop. */
static int in_accept(const struct proxy_cfg *c, struct rmig_ep *l)
{
	struct rmig_ep *ep;
	struct conn *k;
	int rc = rmig_accept(l, ACCEPT_SLICE_MS, &ep);

	if (rc == -ETIMEDOUT || rc == -EAGAIN || rc == -EINTR)
		return 0;
	if (rc == -EACCES || rc == -EPROTO || rc == -ECONNRESET || rc == -ECONNABORTED) {
		plog(c, "refused a peer: %s", rmig_ep_error(l));
		return 0;
	}
	if (rc) {
		plog(c, "cannot accept on %s: %s", c->addr, rmig_ep_error(l));
		return rc;
	}
	k = conn_admit(c) ? calloc(1, sizeof(*k)) : NULL;
	if (!k) {
		plog(c, "refused a connection from proxy-out: already carrying %u (raise --max-conns)",
		     c->max_conns);
		rmig_close(ep);
		return 0;
	}
	*k = (struct conn){ .c = c, .id = atomic_fetch_add(&next_conn_id, 1) + 1, .fd = -1, .ep = ep,
			    .o = c->o };
	snprintf(k->tag, sizeof(k->tag), "connection %lu", k->id);
	if (conn_start(k, in_conn_main)) {
		snprintf(k->err, sizeof(k->err), "cannot start a thread for it: %s", strerror(errno));
		conn_end(k, -EAGAIN);
	}
	return 0;
}

int proxy_in_run(struct proxy_cfg *c)
{
	struct rmig_ep *l;
	int rc;

	install_signals();
	rc = rmig_listen(c->backend, c->addr, &c->ep_opts, &l);
	if (rc) {
		plog(c, "cannot listen on %s: %s", c->addr, rmig_last_error());
		return 1;
	}
	if (c->addr_file && cli_write_addr_file(c->addr_file, l)) {
		plog(c, "cannot write the address to %s: %s", c->addr_file, strerror(errno));
		rmig_close(l);
		return 1;
	}
	place_init(c);
	while (!rc && !stop_requested)
		rc = in_accept(c, l);
	return proxy_end(rc, l);
}
