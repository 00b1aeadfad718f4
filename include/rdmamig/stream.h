/* SPDX-License-Identifier: MIT */
/*
 * rdmamig: a byte stream over any backend (rdma-core's rsockets is the
 * precedent).  One file descriptor's bytes on one side arrive on a file
 * descriptor on the other, carried by one-sided writes into a receive ring
 * with credits: the receiver registers a ring REMOTE_WRITE, the sender
 * writes the bytes it read into the same offset of that ring and announces
 * them; the receiver writes them out and hands the space back.  The only
 * copies are the two the kernel makes for the descriptors themselves.
 * `rdmamig send` / `rdmamig recv` (QEMU's exec: migration) and
 * `rdmamig proxy-out` / `proxy-in` (QEMU's unix: migration) are built on it.
 * docs/architecture.md ("The stream") describes the protocol; its
 * messages are in stream/wire.h.
 *
 * Each call runs one side of one stream to its end on the calling thread,
 * over an endpoint already connected (rmig_connect / rmig_accept) and used
 * by nothing else meanwhile.  Both return 0 or -errno with one phrase in
 * err; neither prints, and neither closes the endpoint or the descriptor.
 */
#ifndef RDMAMIG_STREAM_H
#define RDMAMIG_STREAM_H

#include <rdmamig/export.h>
#include <rdmamig/rdmamig.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest reason an ABORT carries (bytes, without the NUL). */
#define RMIG_STREAM_REASON_MAX 200
/* Longest message on a stream's endpoint (a buffer for rmig_recv). */
#define RMIG_STREAM_MSG_MAX (32 + RMIG_STREAM_REASON_MAX)

struct rmig_stream_opts {
	size_t size;    /* sizeof(struct rmig_stream_opts): fields past it read as 0 */
	size_t ring;    /* receiver: ring size (bytes, a multiple of 4 KiB, 4 KiB to 16 GiB) */
	size_t chunk;   /* sender: most bytes per write (> 0) */
	int timeout_ms; /* the peer silent this long (or the local reader stuck): give up (> 0) */
	/* The local fd in messages ("QEMU's socket"); NULL: "stdin" / "stdout". */
	const char *fd_name;
	/*
	 * Receiver: how long out_fd may take nothing before the stream fails;
	 * 0: timeout_ms.  (QEMU leaves a multifd channel unread while it waits
	 * for a slower one to connect.)
	 */
	int stall_ms;
};

struct rmig_stream_stats {
	uint64_t bytes;  /* stream bytes carried */
	uint64_t writes; /* one-sided writes (sender) or DATA messages (receiver) */
	uint64_t credits;/* CREDIT messages */
	uint64_t ns;     /* from the first message to the end */
	size_t ring;     /* ring size in use */
	int fd_failed;   /* the failure was the local fd's (read, write, stuck), not the peer's */
};

/**
 * Carry in_fd to the peer until end of file.
 *
 * Returns 0 once every byte was delivered: the receiver confirmed the end
 * of the stream, or it had taken every byte (credited) when its side of
 * the connection went away (QEMU ends the receiving command as soon as it
 * has read the whole stream).  Else -errno, with a one-phrase reason in err
 * (errlen bytes, RMIG_ERR_MAX is enough), and the peer is told why.
 */
RMIG_EXPORT int rmig_stream_send(struct rmig_ep *ep, int in_fd, const struct rmig_stream_opts *o,
				 struct rmig_stream_stats *st, char *err, size_t errlen);

/**
 * Deliver the peer's stream to out_fd.
 *
 * Returns 0 once the sender's end of stream arrived, every byte was written
 * to out_fd and the sender was told so; else -errno and err.  A non-blocking
 * out_fd is fine; a pipe or socket is switched to non-blocking so that a
 * stuck reader is noticed (stall_ms).
 */
RMIG_EXPORT int rmig_stream_recv(struct rmig_ep *ep, int out_fd, const struct rmig_stream_opts *o,
				 struct rmig_stream_stats *st, char *err, size_t errlen);

/**
 * Refuse or end a stream before (or instead of) running it: send the peer
 * an ABORT with reason (cut to RMIG_STREAM_REASON_MAX bytes).  0 or -errno.
 */
RMIG_EXPORT int rmig_stream_abort(struct rmig_ep *ep, const char *reason);

/**
 * If the message msg (len bytes, as rmig_recv returned it) is a stream's
 * ABORT, copy its reason into reason (cap bytes, NUL-terminated) and return
 * 0; else -EPROTO.
 */
RMIG_EXPORT int rmig_stream_abort_reason(const void *msg, size_t len, char *reason, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
