/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "sock.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SETERR(...) do { if (err) snprintf(err, errlen, __VA_ARGS__); } while (0)

int rmig_split_addr(const char *addr, char *host, size_t hostlen, char *port,
		    size_t portlen)
{
	const char *colon;
	size_t hl;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - addr - 1);
		colon = end + 1;
		addr++;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - addr);
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || !colon[1])
		return -EINVAL;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int resolve(const char *addr, int passive, struct addrinfo **res,
		   char *err, size_t errlen)
{
	char host[256], port[32];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int rc;

	if (rmig_split_addr(addr, host, sizeof(host), port, sizeof(port))) {
		SETERR("address '%s' is not host:port", addr ? addr : "(null)");
		return -EINVAL;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (rc) {
		SETERR("cannot resolve '%s': %s", addr, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	return 0;
}

void rmig_sock_tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

int rmig_sock_listen(const char *addr, int *fd, char *err, size_t errlen)
{
	struct addrinfo *res;
	int rc = resolve(addr, 1, &res, err, errlen), s, one = 1;

	if (rc)
		return rc;
	s = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		rc = -errno;
		SETERR("socket: %s", strerror(errno));
		goto free_res;
	}
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, res->ai_addr, res->ai_addrlen) || listen(s, 64)) {
		rc = -errno;
		SETERR("cannot listen on %s: %s", addr, strerror(errno));
		goto close_sock;
	}
	*fd = s;
	freeaddrinfo(res);
	return 0;

close_sock:
	close(s);
free_res:
	freeaddrinfo(res);
	return rc;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int rc = poll(&p, 1, rmig_left_ms(deadline));
		if (rc > 0)
			return 0;
		if (rc == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int rmig_sock_accept(int lfd, int timeout_ms, int *fd, char *err, size_t errlen)
{
	int rc = wait_fd(lfd, POLLIN, rmig_deadline(timeout_ms)), s;

	if (rc) {
		SETERR("no peer connected within %d ms", timeout_ms);
		return rc;
	}
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) {
		SETERR("accept: %s", strerror(errno));
		return -errno;
	}
	rmig_sock_tune(s);
	*fd = s;
	return 0;
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *fd)
{
	int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int rc = 0, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (s < 0)
		return -errno;
	rmig_sock_tune(s);
	if (connect(s, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
		rc = -errno;
		goto fail;
	}
	rc = wait_fd(s, POLLOUT, deadline);
	if (rc)
		goto fail;
	getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		rc = -soerr;
		goto fail;
	}
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) & ~O_NONBLOCK);
	*fd = s;
	return 0;
fail:
	close(s);
	return rc;
}

int rmig_sock_connect(const char *addr, int timeout_ms, int *fd, char *err,
		      size_t errlen)
{
	uint64_t deadline = rmig_deadline(timeout_ms);
	struct addrinfo *res, *ai;
	int rc = resolve(addr, 0, &res, err, errlen);

	if (rc)
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline, fd);
		if (!rc)
			break;
	}
	freeaddrinfo(res);
	if (rc == -ECONNREFUSED)
		SETERR("connection to %s refused: is the peer listening?", addr);
	else if (rc == -ETIMEDOUT)
		SETERR("no answer from %s within %d ms", addr, timeout_ms);
	else if (rc)
		SETERR("cannot connect to %s: %s", addr, strerror(-rc));
	return rc;
}

int rmig_sock_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[128], port[16];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
			sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV))
		return -EINVAL;
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
		 port);
	return 0;
}

int rmig_sock_sendv(int fd, struct iovec *iov, int iovcnt, uint64_t deadline)
{
	while (iovcnt > 0) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return errno == EPIPE ? -ECONNRESET : -errno;
			int rc = wait_fd(fd, POLLOUT, deadline);
			if (rc)
				return rc;
			continue;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int rmig_sock_send(int fd, const void *buf, size_t len, uint64_t deadline)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return rmig_sock_sendv(fd, &iov, 1, deadline);
}

int rmig_sock_recv(int fd, void *buf, size_t len, uint64_t deadline)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			int rc = wait_fd(fd, POLLIN, deadline);
			if (rc)
				return rc;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
