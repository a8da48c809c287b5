/*
 * http_client.c — the socket half of the HTTP client: non-blocking
 * connect with a deadline, then send/receive driven by poll() against the
 * request deadline. Parsing lives in http_parse.c.
 */
#include "http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until `deadline` (ms). Returns 1 ready, 0 timed out, -1 error. */
static int
wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd pfd = {fd, events, 0};
		int n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* Tries one address. Returns the connected fd, or -1 with *why set (an errno,
 * ETIMEDOUT when the deadline passed). */
static int
connect_one(const struct addrinfo *ai, long long deadline, int *why)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*why = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS) {
		*why = errno;
		close(fd);
		return -1;
	}
	int rc = wait_fd(fd, POLLOUT, deadline);
	if (rc <= 0) {
		*why = rc == 0 ? ETIMEDOUT : errno;
		close(fd);
		return -1;
	}
	int soerr = 0;
	socklen_t slen = sizeof soerr;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
		soerr = errno;
	if (soerr != 0) {
		*why = soerr;
		close(fd);
		return -1;
	}
	return fd;
}

static int
connect_url(const struct http_url *url, int connect_ms, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int gai = getaddrinfo(url->host, url->port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", url->host, gai_strerror(gai));
		return -1;
	}
	long long deadline = now_ms() + connect_ms;
	int fd = -1, why = 0;
	for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
		fd = connect_one(ai, deadline, &why);
	freeaddrinfo(res);
	if (fd < 0) {
		if (why == ETIMEDOUT)
			snprintf(err, errlen, "cannot connect to %s: timed out after %d s",
				 url->host_header, connect_ms / 1000);
		else
			snprintf(err, errlen, "cannot connect to %s: %s", url->host_header,
				 strerror(why));
	}
	return fd;
}

static int
send_all(int fd, const char *p, size_t len, long long deadline, char *err, size_t errlen)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) > 0)
				continue;
			snprintf(err, errlen, "timed out sending the request");
			return -1;
		}
		/* The server may have answered early (413) and closed: let the
		 * caller try to read that reply before reporting this. */
		snprintf(err, errlen, "sending the request failed: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Reads until a complete reply is parsed, EOF, or the deadline. */
static int
recv_reply(int fd, long long deadline, int timeout_ms, struct buf *in, struct http_response *resp,
	   char *err, size_t errlen)
{
	char chunk[65536];
	for (;;) {
		int ready = wait_fd(fd, POLLIN, deadline);
		if (ready == 0) {
			snprintf(err, errlen, "timed out after %d s waiting for the reply",
				 timeout_ms / 1000);
			return -1;
		}
		if (ready < 0) {
			snprintf(err, errlen, "waiting for the reply failed: %s", strerror(errno));
			return -1;
		}
		ssize_t n = recv(fd, chunk, sizeof chunk, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			snprintf(err, errlen, "reading the reply failed: %s", strerror(errno));
			return -1;
		}
		if (n > 0) {
			if (in->len + (size_t)n > HTTP_MAX_REPLY_BYTES) {
				snprintf(err, errlen, "reply larger than %zu MiB",
					 HTTP_MAX_REPLY_BYTES >> 20);
				return -1;
			}
			cl_buf_append(in, chunk, (size_t)n);
		}
		int rc = cl_http_parse_response(cl_buf_str(in), in->len, n == 0, resp, err, errlen);
		if (rc != 0)
			return rc > 0 ? 0 : -1;
	}
}

int
cl_http_exchange(const struct http_url *url, const char *request, size_t len, int connect_ms,
		 int timeout_ms, struct http_response *resp, char *err, size_t errlen)
{
	struct buf in = BUF_INIT;
	int rc = -1;
	*resp = (struct http_response){0, NULL, NULL, 0, NULL, NULL, NULL};

	int fd = connect_url(url, connect_ms, err, errlen);
	if (fd < 0)
		return -1;
	long long deadline = now_ms() + timeout_ms;
	char send_err[256] = "";
	if (send_all(fd, request, len, deadline, send_err, sizeof send_err) < 0) {
		/* A reply may already be waiting (e.g. 413 before the body was read). */
		if (recv_reply(fd, deadline, timeout_ms, &in, resp, err, errlen) == 0) {
			rc = 0;
			goto out;
		}
		snprintf(err, errlen, "%s", send_err);
		goto out;
	}
	rc = recv_reply(fd, deadline, timeout_ms, &in, resp, err, errlen);
out:
	close(fd);
	cl_buf_free(&in);
	return rc;
}
