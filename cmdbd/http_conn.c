/*
 * http_conn.c — the connection guard: read deadlines and the connection cap under
 * evhttp (see http_conn.h).
 *
 * One struct conn per accepted connection, made by http_conns_guard() inside
 * evhttp's accept path, before evhttp has made its connection object. Its life:
 *
 *   accept ─► (adopt) ─► HEADERS ──blank line──► BODY ──handler has it──► HANDLER
 *                          ▲                                                │
 *                          └─first byte── IDLE ◄──reply written (keep-alive)┘
 *   HEADERS or BODY deadline passed (bytes received) ─► CLOSING: raw 408
 *   accepted at the cap ───────────────────────────────► CLOSING: raw 503
 *   HEADERS deadline passed, no byte ever received ─────► closed, no answer
 *
 * Adopt. evhttp calls the bevcb before it has a connection object, so the guard
 * activates the conn's timer at once: the callback runs in the same pass of the
 * loop, after evhttp_get_request() has set the connection up and before any read
 * on the new socket. It finds the evhttp connection as the bufferevent's callback
 * argument (bufferevent_getcb(); evhttp 2.1 always passes its connection there,
 * and the guard checks that the connection's bufferevent is this one), hooks its
 * close callback, and files the conn under its descriptor so that handle_request()
 * and the reply's completion can find it (http_conns_request_started/_done). A
 * reference on the bufferevent keeps it valid until then.
 *
 * Watching bytes. An evbuffer callback on the bufferevent's input (evhttp owns the
 * bufferevent callbacks, not the evbuffer's) sees every byte before evhttp parses
 * it; in HEADERS the new bytes go through a small scanner for the blank line that
 * ends the header block. Bytes that were already buffered when a reply completes
 * (a pipelined request) are scanned then.
 *
 * Closing (CLOSING). The guard takes the bufferevent's callbacks over (so evhttp
 * reads no more), drops unread input, appends a whole raw response
 * (http_raw_error()), and once it is written half-closes the socket and keeps
 * reading and dropping until the client closes or HTTP_CONN_LINGER_S passes, so
 * that unread request bytes do not turn the close into a reset that would destroy
 * the answer before the client reads it. Then it hands evhttp's callbacks back and
 * raises a read timeout on the bufferevent: evhttp closes the connection exactly as
 * when its own idle timeout fires (freeing the unanswered request), and its close
 * callback releases the conn. A connection whose request is with a handler is
 * never closed by the guard.
 *
 * Counting. A conn counts against the cap from accept until evhttp closes the
 * connection. One accepted at the cap is not counted; it is answered 503 and
 * closed within HTTP_CONN_LINGER_S; past HTTP_CONNS_REFUSING_MAX of those at once
 * further ones are closed without an answer.
 */
#include "http_conn.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "metrics.h"

/* Seconds a refused or timed-out connection may take to read its answer. */
#define HTTP_CONN_LINGER_S 2
/* The automatic cap (--max-connections 0) never goes above this. */
#define HTTP_CONNS_AUTO_MAX 4096

enum conn_phase { PH_HEADERS, PH_BODY, PH_HANDLER, PH_IDLE, PH_UNGUARDED, PH_CLOSING };

struct conn {
	struct http_conns *owner;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until adopted */
	struct evbuffer_cb_entry *watch; /* on the bufferevent's input */
	struct event *timer;		 /* adopt, then deadlines, then the linger */
	evutil_socket_t fd;		 /* key in owner->by_fd once adopted, else -1 */
	enum conn_phase phase;
	int scan;	    /* http_conn_scan_headers() state */
	size_t received;    /* bytes of the current request */
	bool refused;	    /* accepted at the cap */
	bool refuse_silent; /* ... with too many refusals under way: no answer */
	bool half_closed;
	void (*req_gone)(void *arg); /* http_conns_watch_request() */
	void *req_gone_arg;
	/* evhttp's bufferevent callbacks, while CLOSING holds them */
	bufferevent_data_cb ev_read, ev_write;
	bufferevent_event_cb ev_event;
	void *ev_arg;
	LIST_ENTRY(conn) link;
};

struct http_conns {
	struct event_base *base;
	struct timeval header_tv, body_tv;
	long header_s, body_s;
	long max_open;
	int open;     /* counted conns */
	int refusing; /* refused conns not yet closed */
	bool full;    /* "connections_full" logged, not yet cleared */
	http_conns_close_fn on_close;
	void *on_close_arg;
	struct conn **by_fd;
	size_t nfd;
	LIST_HEAD(, conn) all;
};

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static const char *peer_of(const struct conn *cn, char *buf, size_t size);

/* ---------------------------------------------------------------- the scanner */

/*
 * States: 0 inside a line (or at the start of the request), 1 at the start of a
 * line, 2 at the start of a line after a '\r'. A '\n' at 1 or 2 ends the block.
 */
bool
http_conn_scan_headers(int *state, const char *p, size_t n)
{
	int st = *state;
	size_t i = 0;

	while (i < n) {
		if (st == 0) { /* skip to the end of the line */
			const char *nl = memchr(p + i, '\n', n - i);

			if (nl == NULL)
				break;
			i = (size_t)(nl - p) + 1;
			st = 1;
			continue;
		}
		if (p[i] == '\n') {
			*state = 0;
			return true;
		}
		st = st == 1 && p[i] == '\r' ? 2 : 0;
		i++;
	}
	*state = st;
	return false;
}

/* Scans buf from byte offset `from`; true when the header block ends there. */
static bool
scan_buffer(struct conn *cn, struct evbuffer *buf, size_t from)
{
	size_t len = evbuffer_get_length(buf);

	while (from < len) {
		struct evbuffer_iovec v[8];
		struct evbuffer_ptr pos;
		int n;

		if (evbuffer_ptr_set(buf, &pos, from, EVBUFFER_PTR_SET) != 0)
			return false;
		n = evbuffer_peek(buf, (ev_ssize_t)(len - from), &pos, v, 8);
		if (n <= 0)
			return false;
		for (int i = 0; i < n && i < 8; i++) {
			if (http_conn_scan_headers(&cn->scan, v[i].iov_base, v[i].iov_len))
				return true;
			from += v[i].iov_len;
		}
	}
	return false;
}

/* ---------------------------------------------------------------- bookkeeping */

static void
publish(struct http_conns *c)
{
	metrics_set_connections(c->open, c->max_open);
}

static int
file_conn(struct http_conns *c, struct conn *cn, evutil_socket_t fd)
{
	if (fd < 0)
		return -1;
	if ((size_t)fd >= c->nfd) {
		size_t n = c->nfd ? c->nfd : 256;
		struct conn **grown;

		while (n <= (size_t)fd)
			n *= 2;
		grown = realloc(c->by_fd, n * sizeof(*grown));
		if (grown == NULL)
			return -1;
		memset(grown + c->nfd, 0, (n - c->nfd) * sizeof(*grown));
		c->by_fd = grown;
		c->nfd = n;
	}
	if (c->by_fd[fd] != NULL) /* a close we never heard of: should not happen */
		log_warn("event=connection_stale fd=%d", (int)fd);
	c->by_fd[fd] = cn;
	cn->fd = fd;
	return 0;
}

/* Forgets cn and frees it. The bufferevent must still be alive. */
static void
conn_release(struct conn *cn)
{
	struct http_conns *c = cn->owner;

	if (cn->watch != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(cn->bev), cn->watch);
	event_free(cn->timer);
	if (cn->fd >= 0 && (size_t)cn->fd < c->nfd && c->by_fd[cn->fd] == cn)
		c->by_fd[cn->fd] = NULL;
	LIST_REMOVE(cn, link);
	if (cn->refused) {
		c->refusing--;
	} else {
		c->open--;
		publish(c);
		if (c->full && c->open <= c->max_open - c->max_open / 10) {
			c->full = false;
			log_info("event=connections_available open=%d max=%ld", c->open,
				 c->max_open);
		}
	}
	free(cn);
}

/* evhttp frees the connection (any reason): the conn goes with it. */
static void
conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct conn *cn = arg;

	(void)evcon;
	if (cn->req_gone != NULL) {
		void (*gone)(void *) = cn->req_gone;

		cn->req_gone = NULL;
		gone(cn->req_gone_arg);
	}
	if (cn->owner->on_close != NULL) {
		char peer[80];

		cn->owner->on_close(cn->bev, peer_of(cn, peer, sizeof(peer)),
				    cn->owner->on_close_arg);
	}
	conn_release(cn);
}

static struct conn *
conn_of(struct http_conns *c, struct evhttp_request *ev)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
	struct bufferevent *bev;
	evutil_socket_t fd;
	struct conn *cn;

	if (c == NULL || evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(evcon);
	fd = bev ? bufferevent_getfd(bev) : -1;
	if (fd < 0 || (size_t)fd >= c->nfd)
		return NULL;
	cn = c->by_fd[fd];
	return cn != NULL && cn->evcon == evcon ? cn : NULL;
}

int
http_conns_watch_request(struct http_conns *c, struct evhttp_request *ev, void (*gone)(void *arg),
			 void *arg)
{
	struct conn *cn = conn_of(c, ev);

	if (cn == NULL)
		return -1;
	cn->req_gone = gone;
	cn->req_gone_arg = arg;
	return 0;
}

void
http_conns_unwatch_request(struct http_conns *c, struct evhttp_request *ev)
{
	struct conn *cn = conn_of(c, ev);

	if (cn != NULL)
		cn->req_gone = NULL;
}

static const char *
peer_of(const struct conn *cn, char *buf, size_t size)
{
	char *addr = NULL;
	ev_uint16_t port = 0;

	evhttp_connection_get_peer(cn->evcon, &addr, &port);
	snprintf(buf, size, "%s:%u", addr ? addr : "-", (unsigned)port);
	return buf;
}

/* ---------------------------------------------------------------- phases */

static void
start_request(struct conn *cn)
{
	cn->phase = PH_HEADERS;
	cn->scan = 0;
	cn->received = 0;
	evtimer_add(cn->timer, &cn->owner->header_tv);
}

static void
headers_whole(struct conn *cn)
{
	cn->phase = PH_BODY;
	if (cn->evcon != NULL) /* else adopt() arms the timer */
		evtimer_add(cn->timer, &cn->owner->body_tv);
}

static void
conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *cn = arg;
	size_t len = evbuffer_get_length(buf);

	if (info->n_added == 0)
		return;
	switch (cn->phase) {
	case PH_IDLE:
		start_request(cn);
		/* fall through */
	case PH_HEADERS:
		cn->received += info->n_added;
		if (scan_buffer(cn, buf, info->n_added <= len ? len - info->n_added : 0))
			headers_whole(cn);
		break;
	case PH_BODY:
		cn->received += info->n_added;
		break;
	case PH_HANDLER:
	case PH_UNGUARDED:
	case PH_CLOSING:
		break;
	}
}

void
http_conns_request_started(struct http_conns *c, struct evhttp_request *ev)
{
	struct conn *cn = conn_of(c, ev);

	if (cn == NULL || (cn->phase != PH_HEADERS && cn->phase != PH_BODY && cn->phase != PH_IDLE))
		return;
	cn->phase = PH_HANDLER;
	evtimer_del(cn->timer);
}

void
http_conns_request_done(struct http_conns *c, struct evhttp_request *ev)
{
	struct conn *cn = conn_of(c, ev);
	struct evbuffer *in;

	if (cn == NULL || cn->phase != PH_HANDLER)
		return;
	cn->phase = PH_IDLE;
	/* What is buffered now is the start of the next (pipelined) request. */
	in = bufferevent_get_input(cn->bev);
	if (evbuffer_get_length(in) > 0) {
		start_request(cn);
		cn->received = evbuffer_get_length(in);
		if (scan_buffer(cn, in, 0))
			headers_whole(cn);
	}
}

/* ---------------------------------------------------------------- closing */

/*
 * Closes the connection the way evhttp's own idle timeout does: evhttp frees it,
 * and its close callback frees cn. cn must not be used afterwards.
 */
static void
close_now(struct conn *cn)
{
	struct bufferevent *bev = cn->bev;

	if (cn->phase == PH_CLOSING)
		bufferevent_setcb(bev, cn->ev_read, cn->ev_write, cn->ev_event, cn->ev_arg);
	bufferevent_trigger_event(bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
}

static void
closing_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);

	(void)arg; /* not used: evhttp's deferred read would pass its own */
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *cn = arg;

	if (cn->half_closed || evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	cn->half_closed = true;
	shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void
closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	/* A TLS connection refused at the cap finishes its handshake now: go on. */
	if (what == BEV_EVENT_CONNECTED)
		return;
	close_now(arg); /* the client closed, or an error: done */
}

/*
 * Answers status with the JSON error body on the raw connection and starts
 * closing it (see the banner). id receives the answer's request id. cn may be
 * freed when this returns (out of memory: closed at once).
 */
static void
answer_and_close(struct conn *cn, char *id, int status, const char *code, const char *extra,
		 json_t *details, const char *msg)
{
	struct bufferevent *bev = cn->bev;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct timeval linger = {HTTP_CONN_LINGER_S, 0};

	bufferevent_getcb(bev, &cn->ev_read, &cn->ev_write, &cn->ev_event, &cn->ev_arg);
	bufferevent_setcb(bev, closing_read_cb, closing_write_cb, closing_event_cb, cn);
	cn->phase = PH_CLOSING;
	evbuffer_drain(in, evbuffer_get_length(in));
	if (http_raw_error(bufferevent_get_output(bev), id, status, code, extra, details, "%s",
			   msg) != 0) {
		close_now(cn);
		return;
	}
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	evtimer_add(cn->timer, &linger);
}

static void
expire(struct conn *cn)
{
	struct http_conns *c = cn->owner;
	bool body = cn->phase == PH_BODY;
	const char *phase = body ? "body" : "headers";
	long limit = body ? c->body_s : c->header_s;
	size_t received = cn->received;
	char id[40] = "-", peer[80], msg[160];

	peer_of(cn, peer, sizeof(peer));
	if (received == 0) {
		/* A new connection that never sent a byte: nothing to answer. */
		log_debug("event=connection_closed reason=no_request peer=%s limit_s=%ld", peer,
			  limit);
		close_now(cn);
		return;
	}
	metrics_count_request_timeout(phase);
	snprintf(msg, sizeof(msg), "the request %s did not arrive within %ld seconds", phase,
		 limit);
	answer_and_close(cn, id, 408, "request_timeout", NULL,
			 json_pack("{s:s,s:I}", "phase", phase, "limit_seconds", (json_int_t)limit),
			 msg);
	log_info("event=request_timeout id=%s phase=%s peer=%s received=%zu limit_s=%ld", id, phase,
		 peer, received, limit);
}

static void
refuse(struct conn *cn)
{
	struct http_conns *c = cn->owner;
	char id[40] = "-", peer[80], msg[160];

	metrics_count_connection_refused();
	peer_of(cn, peer, sizeof(peer));
	if (cn->refuse_silent) {
		log_debug("event=connection_refused peer=%s answer=none", peer);
		close_now(cn);
		return;
	}
	snprintf(msg, sizeof(msg),
		 "the server has its limit of %ld connections open; try again shortly",
		 c->max_open);
	answer_and_close(cn, id, 503, "too_many_connections", "Retry-After: 1\r\n",
			 json_pack("{s:I}", "limit", (json_int_t)c->max_open), msg);
	log_debug("event=connection_refused id=%s peer=%s", id, peer);
}

/* ---------------------------------------------------------------- accept */

static void
adopt(struct conn *cn)
{
	struct http_conns *c = cn->owner;
	struct bufferevent *bev = cn->bev;
	bufferevent_data_cb readcb = NULL;
	void *arg = NULL;
	struct evhttp_connection *evcon;

	bufferevent_getcb(bev, &readcb, NULL, NULL, &arg);
	evcon = arg;
	if (readcb == NULL || evcon == NULL || evhttp_connection_get_bufferevent(evcon) != bev) {
		/* evhttp gave the connection up before it was set up (out of memory). */
		log_warn("event=connection_lost reason=\"not set up by evhttp\"");
		conn_release(cn);
		bufferevent_decref(bev);
		return;
	}
	cn->evcon = evcon;
	evhttp_connection_set_closecb(evcon, conn_closed_cb, cn);
	bufferevent_decref(bev); /* evhttp holds its own reference */
	if (file_conn(c, cn, bufferevent_getfd(bev)) != 0) {
		/* Unfindable by its requests: a deadline could hit one in a handler. */
		log_warn("event=connection_unguarded reason=\"out of memory\"");
		cn->phase = PH_UNGUARDED;
		if (cn->refused) {
			cn->refused = false; /* serve it; count it */
			c->refusing--;
			c->open++;
			publish(c);
		}
		return;
	}
	if (cn->refused) {
		refuse(cn);
		return;
	}
	evtimer_add(cn->timer, cn->phase == PH_BODY ? &c->body_tv : &c->header_tv);
}

struct bufferevent *
http_conns_guard(struct http_conns *c, struct bufferevent *bev)
{
	struct conn *cn;

	if (bev == NULL || c == NULL)
		return bev;
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL)
		return bev;
	cn->timer = evtimer_new(c->base, conn_timer_cb, cn);
	cn->watch = evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, cn);
	if (cn->timer == NULL || cn->watch == NULL) {
		if (cn->watch != NULL)
			evbuffer_remove_cb_entry(bufferevent_get_input(bev), cn->watch);
		if (cn->timer != NULL)
			event_free(cn->timer);
		free(cn);
		return bev;
	}
	cn->owner = c;
	cn->bev = bev;
	cn->fd = -1;
	cn->phase = PH_HEADERS; /* a new connection: the header clock runs from now */
	if (c->open >= c->max_open) {
		cn->refused = true;
		cn->refuse_silent = c->refusing >= HTTP_CONNS_REFUSING_MAX;
		c->refusing++;
		if (!c->full) {
			c->full = true;
			log_warn("event=connections_full open=%d max=%ld hint=\"new connections "
				 "are answered 503; see --max-connections\"",
				 c->open, c->max_open);
		}
	} else {
		c->open++;
		publish(c);
	}
	LIST_INSERT_HEAD(&c->all, cn, link);
	bufferevent_incref(bev); /* until adopt() */
	event_active(cn->timer, EV_TIMEOUT, 1);
	return bev;
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *cn = arg;

	(void)fd;
	(void)what;
	if (cn->evcon == NULL) {
		adopt(cn);
		return;
	}
	switch (cn->phase) {
	case PH_HEADERS:
	case PH_BODY:
		expire(cn);
		break;
	case PH_CLOSING:
		close_now(cn); /* the client did not close within the linger */
		break;
	case PH_HANDLER:
	case PH_IDLE:
	case PH_UNGUARDED:
		break;
	}
}

/* ---------------------------------------------------------------- the guard */

struct http_conns *
http_conns_new(struct event_base *base, const struct http_conn_limits *lim)
{
	struct http_conns *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->base = base;
	c->header_s = lim->header_timeout;
	c->body_s = lim->body_timeout;
	c->header_tv.tv_sec = lim->header_timeout;
	c->body_tv.tv_sec = lim->body_timeout;
	c->max_open = lim->max_open;
	LIST_INIT(&c->all);
	publish(c);
	return c;
}

void
http_conns_free(struct http_conns *c)
{
	struct conn *cn;

	if (c == NULL)
		return;
	/*
	 * evhttp_free() has closed every connection it set up; what is left was
	 * never adopted, and its bufferevent is alive on the reference taken for
	 * adopt().
	 */
	while ((cn = LIST_FIRST(&c->all)) != NULL) {
		struct bufferevent *bev = cn->bev;

		if (cn->evcon != NULL) {
			/* adopted, yet evhttp did not say it closed: its bufferevent may be gone */
			cn->watch = NULL;
			conn_release(cn);
			continue;
		}
		conn_release(cn);
		bufferevent_decref(bev);
	}
	free(c->by_fd);
	free(c);
}

void
http_conns_on_close(struct http_conns *c, http_conns_close_fn fn, void *arg)
{
	c->on_close = fn;
	c->on_close_arg = arg;
}

int
http_conns_open(const struct http_conns *c)
{
	return c ? c->open : 0;
}

long
http_conns_max(const struct http_conns *c)
{
	return c ? c->max_open : 0;
}

long
http_conns_cap(long configured, long reserve, char *err, size_t errlen)
{
	struct rlimit rl;
	long want = (configured > 0 ? configured : HTTP_CONNS_AUTO_MAX) + reserve;
	long have, cap;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, errlen, "cannot read the open-file limit");
		return -1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want &&
	    rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = rl;

		up.rlim_cur = rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max
				  ? (rlim_t)want
				  : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	have = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX
									      : (long)rl.rlim_cur;
	if (configured > 0) {
		if (configured > have - reserve) {
			snprintf(err, errlen,
				 "max-connections %ld needs %ld open files with the %ld the server "
				 "uses besides, but the limit is %ld (raise ulimit -n, or lower "
				 "--max-connections)",
				 configured, configured + reserve, reserve, have);
			return -1;
		}
		return configured;
	}
	cap = have - reserve;
	if (cap > HTTP_CONNS_AUTO_MAX)
		cap = HTTP_CONNS_AUTO_MAX;
	if (cap < 1) {
		snprintf(err, errlen,
			 "the open-file limit %ld leaves no room for client connections (the "
			 "server needs %ld besides; raise ulimit -n)",
			 have, reserve);
		return -1;
	}
	return cap;
}
