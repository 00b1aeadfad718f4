/* SPDX-License-Identifier: MIT */
/*
 * The stream channel's engine: a byte stream from a file descriptor on one
 * side to a file descriptor on the other, carried by one-sided writes into a
 * receive ring with credits (see stream_wire.h for the messages).
 */
#ifndef RMIG_TOOLS_STREAM_RING_H
#define RMIG_TOOLS_STREAM_RING_H

#include <rdmamig/rdmamig.h>

#include <stddef.h>
#include <stdint.h>

struct stream_opts {
	size_t ring;    /* receiver: ring size (bytes, multiple of 4 KiB) */
	size_t chunk;   /* sender: most bytes per write */
	int timeout_ms; /* the peer silent this long (or the local reader stuck): give up */
	/* The local fd in messages ("QEMU's socket"); NULL: "stdin" / "stdout". */
	const char *fd_name;
	/*
	 * Receiver: how long out_fd may take nothing before the stream fails;
	 * 0: timeout_ms.  (QEMU leaves a multifd channel unread while it waits
	 * for a slower one to connect.)
	 */
	int stall_ms;
};

struct stream_stats {
	uint64_t bytes;  /* stream bytes carried */
	uint64_t writes; /* one-sided writes (sender) or DATA messages (receiver) */
	uint64_t credits;/* CREDIT messages */
	uint64_t ns;     /* from the first message to the end */
	size_t ring;     /* ring size in use */
	int fd_failed;   /* the failure was the local fd's (read, write, stuck), not the peer's */
};

/*
 * Carry in_fd to the peer until end of file.  Returns 0 once the receiver
 * confirmed every byte, else -errno with a one-phrase reason in err.
 */
int stream_send(struct rmig_ep *ep, int in_fd, const struct stream_opts *o,
		struct stream_stats *st, char *err, size_t errlen);

/*
 * Deliver the peer's stream to out_fd.  Returns 0 once the sender's end of
 * stream arrived and every byte was written out, else -errno and err.
 */
int stream_recv(struct rmig_ep *ep, int out_fd, const struct stream_opts *o,
		struct stream_stats *st, char *err, size_t errlen);

#endif
