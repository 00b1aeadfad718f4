/* SPDX-License-Identifier: MIT */
/*
 * The stream (include/rdmamig/stream.h): the ring protocol's two ends.
 *
 * The receiver owns a ring registered REMOTE_WRITE; the sender owns a buffer
 * of the same size registered locally.  Stream byte p lives at offset
 * p % ring in both, so the sender read()s stdin straight into its registered
 * buffer, writes that span one-sidedly to the same offset of the ring and
 * announces it with DATA; the receiver write()s it out of the ring and hands
 * the space back with CREDIT.  The only copies are the two pipe copies the
 * kernel makes anyway.
 *
 * Single-threaded on each side: one loop multiplexes the local fd, the
 * transport's messages and completions, keepalives and deadlines.
 */
#define _GNU_SOURCE
#include "wire.h"
#include "../common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PING_EVERY_MS 1000
#define IDLE_WAIT_MS 50
/* Longest the receiver waits, after DONE, for the sender to close first. */
#define LINGER_MS 2000

struct stream {
	struct rmig_ep *ep;
	const struct rmig_stream_opts *o; /* &opts */
	struct rmig_stream_opts opts;     /* the caller's, fields past its size 0 */
	uint8_t *buf;       /* ring (receiver) or send buffer (sender) */
	size_t ring;
	struct rmig_mr *mr;
	struct rmig_rkey peer; /* sender: the receiver's ring */
	uint64_t last_rx, last_tx; /* ms, monotonic */
	uint64_t t0;
	struct rmig_stream_stats *st;
	char *err;
	size_t errlen;
	int failed;         /* err holds the first failure */
	/*
	 * What lost() found queued behind a failed operation: the receiver
	 * credits everything and confirms the end, then closes, and a backend
	 * may report that close before the messages sent ahead of it are read.
	 */
	uint64_t late_credit; /* highest CREDIT among them */
	int late_done;        /* a DONE was among them (its length in late_credit) */
};

/* Keep the first failure's phrase; returns rc. */
__attribute__((format(printf, 3, 4)))
static int fail(struct stream *s, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!s->failed) {
		va_start(ap, fmt);
		vsnprintf(s->err, s->errlen, fmt, ap);
		va_end(ap);
		s->failed = 1;
	}
	return rc;
}

/*
 * The connection failed under an operation: if the peer said why (ABORT
 * still queued before the close), report that rather than the symptom.
 */
static int lost(struct stream *s, int rc, const char *what)
{
	uint8_t raw[STREAM_MSG_MAX];
	char why[RMIG_ERR_MAX];
	struct stream_msg m;

	snprintf(why, sizeof(why), "%s", rmig_ep_error(s->ep));
	for (int i = 0; i < 2 * STREAM_INFLIGHT_MAX + 2; i++) {
		int n = rmig_recv(s->ep, raw, sizeof(raw), 0);
		if (n < 0)
			break;
		if (stream_msg_decode(raw, (size_t)n, &m))
			continue;
		if (m.type == STREAM_ABORT)
			return fail(s, -ECONNABORTED, "peer gave up: %s", m.reason);
		if ((m.type == STREAM_CREDIT || m.type == STREAM_DONE) && m.a > s->late_credit)
			s->late_credit = m.a;
		if (m.type == STREAM_DONE)
			s->late_done = 1;
	}
	return fail(s, rc, "%s: %s", what, why);
}

static int put(struct stream *s, const struct stream_msg *m)
{
	uint8_t raw[STREAM_MSG_MAX];
	size_t len = stream_msg_encode(m, raw);
	int rc = rmig_send(s->ep, raw, len);

	if (rc)
		return lost(s, rc, "connection to the peer lost");
	s->last_tx = rmig_now_ms();
	return 0;
}

/* Tell the peer why we stop; best effort, the connection may be gone. */
static void abort_peer(struct stream *s)
{
	struct stream_msg m = { .type = STREAM_ABORT };

	snprintf(m.reason, sizeof(m.reason), "%s", s->err);
	put(s, &m);
}

static int ping_if_idle(struct stream *s)
{
	struct stream_msg m = { .type = STREAM_PING };

	if (rmig_now_ms() - s->last_tx < PING_EVERY_MS)
		return 0;
	return put(s, &m);
}

/*
 * Next message other than PING within timeout_ms: 1 and *m, 0 if none, or
 * -errno (connection lost, peer silent too long, ABORT, malformed).
 */
static int get(struct stream *s, struct stream_msg *m, int timeout_ms)
{
	uint8_t raw[STREAM_MSG_MAX];
	int n, rc;

	for (;;) {
		n = rmig_recv(s->ep, raw, sizeof(raw), timeout_ms);
		if (n == -ETIMEDOUT) {
			if (rmig_now_ms() - s->last_rx > (uint64_t)s->o->timeout_ms)
				return fail(s, -ETIMEDOUT,
					    "peer silent for %d ms: it died or the link is down",
					    s->o->timeout_ms);
			rc = ping_if_idle(s);
			return rc ? rc : 0;
		}
		if (n < 0)
			return fail(s, n, "connection to the peer lost: %s", rmig_ep_error(s->ep));
		s->last_rx = rmig_now_ms();
		rc = stream_msg_decode(raw, (size_t)n, m);
		if (rc == -EPROTONOSUPPORT)
			return fail(s, rc, "peer speaks stream protocol version %u, this is version %u: "
				    "run the same rdmamig on both ends", m->version, STREAM_VERSION);
		if (rc)
			return fail(s, rc, "peer sent a malformed stream message");
		if (m->type == STREAM_ABORT)
			return fail(s, -ECONNABORTED, "peer gave up: %s", m->reason);
		if (m->type != STREAM_PING)
			return 1;
		timeout_ms = 0;
	}
}

static int unexpected(struct stream *s, const struct stream_msg *m)
{
	return fail(s, -EPROTO, "peer sent an unexpected stream message (type %u)", m->type);
}

static int map_buffer(struct stream *s, size_t len, unsigned access)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int rc;

	if (p == MAP_FAILED)
		return fail(s, -ENOMEM, "cannot map a %zu-byte stream buffer", len);
	s->buf = p;
	s->ring = len;
	rc = rmig_reg_mr(s->ep, p, len, access, &s->mr);
	if (rc) {
		munmap(p, len);
		s->buf = NULL;
		return fail(s, rc, "%s", rmig_ep_error(s->ep));
	}
	return 0;
}

static void unmap_buffer(struct stream *s)
{
	if (s->mr)
		rmig_dereg_mr(s->ep, s->mr);
	if (s->buf)
		munmap(s->buf, s->ring);
	s->mr = NULL;
	s->buf = NULL;
}

/* The caller's options, fields past o->size as 0; -EINVAL names what is wrong. */
static int stream_init(struct stream *s, struct rmig_ep *ep, const struct rmig_stream_opts *o,
		       struct rmig_stream_stats *st, char *err, size_t errlen, int sender)
{
	memset(s, 0, sizeof(*s));
	memset(st, 0, sizeof(*st));
	s->ep = ep;
	s->o = &s->opts;
	s->st = st;
	s->err = err;
	s->errlen = errlen;
	err[0] = 0;
	s->last_rx = s->last_tx = rmig_now_ms();
	s->t0 = rmig_now_ns();
	if (!ep || !o || o->size < sizeof(o->size))
		return fail(s, -EINVAL, "no endpoint or no options (set rmig_stream_opts.size)");
	memcpy(&s->opts, o, o->size < sizeof(s->opts) ? o->size : sizeof(s->opts));
	s->opts.size = sizeof(s->opts);
	if (s->opts.timeout_ms <= 0)
		return fail(s, -EINVAL, "the stream's timeout must be positive");
	if (sender && !s->opts.chunk)
		return fail(s, -EINVAL, "the stream's chunk must be positive");
	if (!sender && (s->opts.ring < 4096 || s->opts.ring % 4096 || s->opts.ring > (1ull << 34)))
		return fail(s, -EINVAL, "the stream's ring must be 4 KiB to 16 GiB, a multiple of 4 KiB");
	return 0;
}

/* ---- sender ------------------------------------------------------------ */

/*
 * Writes posted and not yet both completed and credited, oldest first.
 * wr_id is the entry's sequence number; slot = seq % STREAM_INFLIGHT_MAX.
 */
struct inflight {
	uint64_t end[STREAM_INFLIGHT_MAX]; /* stream offset after the write */
	uint8_t done[STREAM_INFLIGHT_MAX];
	uint64_t front, next;              /* sequence numbers */
};

struct sender {
	struct stream s;
	struct inflight q;
	uint64_t head;     /* bytes read from in_fd and announced */
	uint64_t credited; /* bytes the receiver consumed */
	int eof;
};

/* An entry goes once its buffer is free locally and its ring space is back. */
static void retire(struct sender *x)
{
	while (x->q.front < x->q.next) {
		unsigned slot = x->q.front % STREAM_INFLIGHT_MAX;
		if (!x->q.done[slot] || x->q.end[slot] > x->credited)
			break;
		x->q.front++;
	}
}

static int reap(struct sender *x, int timeout_ms)
{
	struct rmig_completion c[STREAM_INFLIGHT_MAX];
	int n = rmig_poll(x->s.ep, c, STREAM_INFLIGHT_MAX, timeout_ms);

	if (n < 0)
		return lost(&x->s, n, "connection to the peer lost");
	for (int i = 0; i < n; i++) {
		if (c[i].status)
			return lost(&x->s, c[i].status, "a write into the peer's ring failed");
		if (c[i].wr_id < x->q.front || c[i].wr_id >= x->q.next)
			return fail(&x->s, -EPROTO, "completion for an unknown write");
		x->q.done[c[i].wr_id % STREAM_INFLIGHT_MAX] = 1;
	}
	retire(x);
	return n;
}

/* Take CREDIT (and, at the end, DONE) messages; 1 when DONE arrived. */
static int take_messages(struct sender *x, int timeout_ms)
{
	struct stream_msg m;
	int rc;

	while ((rc = get(&x->s, &m, timeout_ms)) > 0) {
		timeout_ms = 0;
		if (m.type == STREAM_CREDIT) {
			if (m.a < x->credited || m.a > x->head)
				return fail(&x->s, -EPROTO, "peer credited %llu bytes of %llu sent",
					    (unsigned long long)m.a, (unsigned long long)x->head);
			x->credited = m.a;
			x->s.st->credits++;
			retire(x);
		} else if (m.type == STREAM_DONE && x->eof) {
			if (m.a != x->head)
				return fail(&x->s, -EPROTO, "peer delivered %llu bytes of %llu",
					    (unsigned long long)m.a, (unsigned long long)x->head);
			/* Delivered is consumed: without this, a DONE that
			 * overtakes (or replaces) the last CREDIT left the
			 * sender waiting its whole timeout for ring space it no
			 * longer needs (found by fuzz_stream_session). */
			x->credited = m.a;
			retire(x);
			return 1;
		} else {
			return unexpected(&x->s, &m);
		}
	}
	return rc;
}

/* Wait a little for ring space, a free in-flight slot or a completion. */
static int sender_wait(struct sender *x)
{
	int rc;

	if (x->q.front < x->q.next && !x->q.done[x->q.front % STREAM_INFLIGHT_MAX]) {
		rc = reap(x, 1);
		if (rc)
			return rc < 0 ? rc : 0;
		return take_messages(x, 1);
	}
	return take_messages(x, IDLE_WAIT_MS);
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, timeout_ms) > 0;
}

/* Read up to len bytes into the send buffer at off, without blocking long. */
static ssize_t fill(struct sender *x, int fd, size_t off, size_t len)
{
	size_t got = 0;

	if (!readable(fd, IDLE_WAIT_MS))
		return 0;
	while (got < len) {
		ssize_t r = read(fd, x->s.buf + off + got, len - got);
		if (r > 0) {
			got += (size_t)r;
			/* Coalesce what is already there into one write, never wait for more. */
			if (got < len && !readable(fd, 0))
				break;
		} else if (r == 0) {
			x->eof = 1;
			break;
		} else if (errno == EAGAIN) {
			break;
		} else if (errno != EINTR) {
			x->s.st->fd_failed = 1;
			return fail(&x->s, -errno, "cannot read the stream from %s: %s",
				    x->s.o->fd_name ? x->s.o->fd_name : "stdin", strerror(errno));
		}
	}
	return (ssize_t)got;
}

static int post(struct sender *x, size_t off, size_t len)
{
	struct rmig_write w = { .lmr = x->s.mr, .loff = off, .rkey = &x->s.peer,
				.roff = off, .len = len };
	struct stream_msg m = { .type = STREAM_DATA, .a = x->head, .b = len };
	uint64_t seq = x->q.next;
	int rc = rmig_write_batch(x->s.ep, &w, 1, seq);

	if (rc)
		return lost(&x->s, rc, "cannot write into the peer's ring");
	x->q.end[seq % STREAM_INFLIGHT_MAX] = x->head + len;
	x->q.done[seq % STREAM_INFLIGHT_MAX] = 0;
	x->q.next++;
	x->head += len;
	x->s.st->bytes += len;
	x->s.st->writes++;
	/* Sent after the write was posted: delivered only once its bytes are in the ring. */
	return put(&x->s, &m);
}

/* One step of the main loop: read what stdin has into free ring space. */
static int send_step(struct sender *x, int fd)
{
	size_t off = x->head % x->s.ring;
	size_t space = x->s.ring - (size_t)(x->head - x->credited);
	size_t len = x->s.ring - off;
	ssize_t got;
	int rc;

	if (len > space)
		len = space;
	if (len > x->s.o->chunk)
		len = x->s.o->chunk;
	/* Ring space behind `credited` may still be a write in flight locally. */
	if (!len || x->q.next - x->q.front == STREAM_INFLIGHT_MAX ||
	    (x->q.front < x->q.next &&
	     x->q.end[x->q.front % STREAM_INFLIGHT_MAX] <= x->credited))
		return sender_wait(x);
	got = fill(x, fd, off, len);
	if (got < 0)
		return (int)got;
	if (got > 0) {
		rc = post(x, off, (size_t)got);
		if (rc)
			return rc;
	}
	rc = reap(x, 0);
	if (rc < 0)
		return rc;
	rc = take_messages(x, 0);
	return rc < 0 ? rc : 0;
}

static int sender_handshake(struct sender *x)
{
	struct stream_msg m = { .type = STREAM_HELLO, .a = x->s.o->chunk };
	uint64_t deadline = rmig_deadline(x->s.o->timeout_ms);
	int rc = put(&x->s, &m);

	while (!rc) {
		rc = get(&x->s, &m, rmig_left_ms(deadline));
		if (rc == 0 && !rmig_left_ms(deadline))
			return fail(&x->s, -ETIMEDOUT, "no reply from the receiver within %d ms",
				    x->s.o->timeout_ms);
		if (rc <= 0)
			continue;
		if (m.type != STREAM_RING)
			return unexpected(&x->s, &m);
		if (m.a < 4096 || m.a % 4096 || m.a > (1ull << 34) || m.rkey.len < m.a)
			return fail(&x->s, -EPROTO, "peer offered a ring of %llu bytes",
				    (unsigned long long)m.a);
		if (!(m.rkey.flags & RMIG_ACCESS_REMOTE_WRITE))
			return fail(&x->s, -EPROTO,
				    "peer's ring key does not grant remote write (a broken or hostile receiver)");
		x->s.peer = m.rkey;
		x->s.st->ring = (size_t)m.a;
		return map_buffer(&x->s, (size_t)m.a, RMIG_ACCESS_LOCAL);
	}
	return rc;
}

/* After end of file: announce the length, wait until the receiver has it all. */
static int sender_finish(struct sender *x)
{
	struct stream_msg m = { .type = STREAM_EOF, .a = x->head };
	uint64_t deadline;
	int rc = put(&x->s, &m);

	if (rc)
		return rc;
	deadline = rmig_deadline(x->s.o->timeout_ms);
	while (rmig_left_ms(deadline)) {
		rc = reap(x, 0);
		if (rc >= 0)
			rc = take_messages(x, IDLE_WAIT_MS);
		if (rc == 1)
			return 0;
		/*
		 * QEMU kills the receiving command as soon as it has read the
		 * whole stream, and a backend may report the receiver's close
		 * before the CREDIT and DONE it sent ahead of it: a connection
		 * lost after every byte was credited (now or in what lost()
		 * found queued) is a delivered stream, not a failure.
		 */
		if (rc < 0 && x->s.late_credit > x->credited && x->s.late_credit <= x->head) {
			x->credited = x->s.late_credit;
			retire(x);
		}
		if (rc < 0 && x->credited == x->head && rc != -ECONNABORTED && rc != -EPROTO) {
			x->s.err[0] = 0;
			x->s.failed = 0;
			return 0;
		}
		if (rc < 0)
			return rc;
	}
	return fail(&x->s, -ETIMEDOUT, "receiver did not confirm the end of the stream within %d ms",
		    x->s.o->timeout_ms);
}

int rmig_stream_send(struct rmig_ep *ep, int in_fd, const struct rmig_stream_opts *o,
		struct rmig_stream_stats *st, char *err, size_t errlen)
{
	struct sender x = { 0 };
	int rc;

	if (!st || !err || !errlen)
		return -EINVAL;
	rc = stream_init(&x.s, ep, o, st, err, errlen, 1);
	if (rc)
		return rc;
	rc = sender_handshake(&x);
	while (!rc && !x.eof)
		rc = send_step(&x, in_fd);
	if (!rc)
		rc = sender_finish(&x);
	if (rc && rc != -ECONNABORTED)
		abort_peer(&x.s);
	/* Nothing may still read the buffer when it goes (bounded: the peer confirmed). */
	for (uint64_t deadline = rmig_deadline(x.s.o->timeout_ms);
	     !rc && x.q.front < x.q.next && rmig_left_ms(deadline);)
		if (reap(&x, 10) < 0)
			break;
	st->ns = rmig_now_ns() - x.s.t0;
	unmap_buffer(&x.s);
	return rc;
}

/* ---- receiver ---------------------------------------------------------- */

struct receiver {
	struct stream s;
	uint64_t consumed; /* bytes written out of the ring */
	uint64_t credited; /* bytes handed back with CREDIT */
	unsigned uncredited_msgs;
};

static const char *out_name(const struct receiver *r)
{
	return r->s.o->fd_name ? r->s.o->fd_name : "stdout";
}

/* Write len bytes of the ring out, keeping the peer informed while blocked. */
static int write_out(struct receiver *r, int fd, const uint8_t *p, size_t len)
{
	uint64_t progress = rmig_now_ms();
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int stall_ms = r->s.o->stall_ms ? r->s.o->stall_ms : r->s.o->timeout_ms;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			progress = rmig_now_ms();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && (r->s.st->fd_failed = 1))
			return fail(&r->s, -errno, "cannot write the stream to %s: %s%s",
				    out_name(r), strerror(errno),
				    errno == EPIPE ? " (the reading side closed it)" : "");
		if (rmig_now_ms() - progress > (uint64_t)stall_ms && (r->s.st->fd_failed = 1))
			return fail(&r->s, -ETIMEDOUT,
				    "%s took nothing for %d ms: the reading side is stuck",
				    out_name(r), stall_ms);
		poll(&pfd, 1, IDLE_WAIT_MS);
		int rc = ping_if_idle(&r->s);
		if (rc)
			return rc;
	}
	return 0;
}

static int give_credit(struct receiver *r)
{
	struct stream_msg m = { .type = STREAM_CREDIT, .a = r->consumed };
	int rc = put(&r->s, &m);

	if (!rc) {
		r->credited = r->consumed;
		r->uncredited_msgs = 0;
		r->s.st->credits++;
	}
	return rc;
}

static int take_data(struct receiver *r, int fd, const struct stream_msg *m)
{
	size_t off = (size_t)(m->a % r->s.ring);
	int rc;

	if (m->a != r->consumed || !m->b || m->b > r->s.ring - off)
		return fail(&r->s, -EPROTO, "peer announced %llu bytes at %llu, expected offset %llu",
			    (unsigned long long)m->b, (unsigned long long)m->a,
			    (unsigned long long)r->consumed);
	rc = write_out(r, fd, r->s.buf + off, (size_t)m->b);
	if (rc)
		return rc;
	r->consumed += m->b;
	r->s.st->bytes += m->b;
	r->s.st->writes++;
	r->uncredited_msgs++;
	if (r->consumed - r->credited >= r->s.ring / 8 ||
	    r->uncredited_msgs >= STREAM_CREDIT_EVERY)
		return give_credit(r);
	return 0;
}

static int receiver_handshake(struct receiver *r)
{
	struct stream_msg m;
	int rc = get(&r->s, &m, r->s.o->timeout_ms);

	if (rc == 0)
		return fail(&r->s, -ETIMEDOUT, "no hello from the sender within %d ms",
			    r->s.o->timeout_ms);
	if (rc < 0)
		return rc;
	if (m.type != STREAM_HELLO)
		return unexpected(&r->s, &m);
	rc = map_buffer(&r->s, r->s.o->ring, RMIG_ACCESS_REMOTE_WRITE);
	if (rc)
		return rc;
	r->s.st->ring = r->s.ring;
	m = (struct stream_msg){ .type = STREAM_RING, .a = r->s.ring,
				 .rkey = *rmig_mr_rkey(r->s.mr) };
	return put(&r->s, &m);
}

/*
 * The stream is delivered and DONE sent: let the sender close first, so
 * that our close cannot overtake DONE on its way (a sender that saw the
 * close first and not DONE could not tell a delivered stream from a lost
 * one).  Bounded; whatever arrives meanwhile (PING) is dropped.
 */
static void linger(struct stream *s)
{
	uint8_t raw[STREAM_MSG_MAX];
	uint64_t deadline = rmig_deadline(s->o->timeout_ms < LINGER_MS ? s->o->timeout_ms
									  : LINGER_MS);
	int n;

	do
		n = rmig_recv(s->ep, raw, sizeof(raw), (int)rmig_left_ms(deadline));
	while (n >= 0 && rmig_left_ms(deadline));
}

int rmig_stream_recv(struct rmig_ep *ep, int out_fd, const struct rmig_stream_opts *o,
		struct rmig_stream_stats *st, char *err, size_t errlen)
{
	struct receiver r = { 0 };
	struct stream_msg m;
	struct stat sb;
	int rc;

	if (!st || !err || !errlen)
		return -EINVAL;
	rc = stream_init(&r.s, ep, o, st, err, errlen, 0);
	if (rc)
		return rc;
	/* Non-blocking only on our own pipe or socket, so a stuck reader is noticed. */
	if (!fstat(out_fd, &sb) && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
		fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	rc = receiver_handshake(&r);
	while (!rc) {
		/* Credit at once when the sender's announcements run dry. */
		rc = get(&r.s, &m, r.consumed > r.credited ? 0 : IDLE_WAIT_MS);
		if (rc == 0 && r.consumed > r.credited)
			rc = give_credit(&r);
		else if (rc > 0 && m.type == STREAM_DATA)
			rc = take_data(&r, out_fd, &m);
		else if (rc > 0 && m.type == STREAM_EOF)
			break;
		else if (rc > 0)
			rc = unexpected(&r.s, &m);
	}
	if (rc > 0 && m.a != r.consumed)
		rc = fail(&r.s, -EPROTO, "sender ended the stream at %llu bytes but %llu arrived",
			  (unsigned long long)m.a, (unsigned long long)r.consumed);
	if (rc > 0) {
		m = (struct stream_msg){ .type = STREAM_DONE, .a = r.consumed };
		rc = give_credit(&r);
		if (!rc)
			rc = put(&r.s, &m);
		if (!rc)
			linger(&r.s);
	}
	if (rc && rc != -ECONNABORTED)
		abort_peer(&r.s);
	st->ns = rmig_now_ns() - r.s.t0;
	unmap_buffer(&r.s);
	return rc;
}

/* ---- refusals ---------------------------------------------------------- */

int rmig_stream_abort(struct rmig_ep *ep, const char *reason)
{
	struct stream_msg m = { .type = STREAM_ABORT };
	uint8_t raw[STREAM_MSG_MAX];

	if (!ep || !reason)
		return -EINVAL;
	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	return rmig_send(ep, raw, stream_msg_encode(&m, raw));
}

int rmig_stream_abort_reason(const void *msg, size_t len, char *reason, size_t cap)
{
	struct stream_msg m;

	if (!msg || !reason || !cap || stream_msg_decode(msg, len, &m) || m.type != STREAM_ABORT)
		return -EPROTO;
	snprintf(reason, cap, "%s", m.reason);
	return 0;
}
