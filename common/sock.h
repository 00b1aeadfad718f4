/* SPDX-License-Identifier: MIT */
/*
 * TCP socket helpers with deadlines, shared by the tcp backend and the
 * out-of-band bootstrap of the ofi backend.  All return 0 or -errno and
 * leave a phrase in err (may be NULL).
 */
#ifndef RMIG_COMMON_SOCK_H
#define RMIG_COMMON_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Split "host:port" ("[v6]:port" too) into host and port strings. */
int rmig_split_addr(const char *addr, char *host, size_t hostlen, char *port,
		    size_t portlen);
int rmig_sock_listen(const char *addr, int *fd, char *err, size_t errlen);
int rmig_sock_accept(int lfd, int timeout_ms, int *fd, char *err, size_t errlen);
int rmig_sock_connect(const char *addr, int timeout_ms, int *fd, char *err,
		      size_t errlen);
/* "host:port" the socket is bound to. */
int rmig_sock_name(int fd, char *buf, size_t len);
/* Send or receive exactly the bytes described, by a deadline (ms, -1 none). */
int rmig_sock_sendv(int fd, struct iovec *iov, int iovcnt, uint64_t deadline);
int rmig_sock_send(int fd, const void *buf, size_t len, uint64_t deadline);
int rmig_sock_recv(int fd, void *buf, size_t len, uint64_t deadline);
/* Make the socket low-latency (TCP_NODELAY) and give it big buffers. */
void rmig_sock_tune(int fd);

#endif
