/*
 * http_conn.h — the connection guard under evhttp: a read deadline for every
 * request, and a cap on open client connections.
 *
 * libevent 2.1's evhttp has neither: its timeout is an idle timeout that every byte
 * restarts, and it accepts connections until the process runs out of descriptors.
 * The guard wraps each connection's bufferevent (http_conns_guard(), called from
 * the server's evhttp_set_bevcb callback, whatever kind of bufferevent it made),
 * watches the bytes arriving on it, and keeps one timer per connection:
 *
 *  - headers must be whole within header_timeout: counted from accept for a new
 *    connection, from the first byte of the request on a kept-alive one (between
 *    requests the idle timeout alone applies);
 *  - the body must be whole within body_timeout of the end of the headers;
 *  - a request handed to a handler has no read deadline (it may wait on the
 *    database); its connection is idle again once the reply is written.
 *
 * A deadline that passes is answered 408 with the JSON error body and the
 * connection closed; a connection accepted at the cap is answered 503 and closed.
 * evhttp has no request object to answer through then, so the guard writes a whole
 * raw HTTP/1.1 response (http_raw_error()) on the bufferevent, takes the
 * bufferevent's callbacks over, and frees the evhttp connection once the answer is
 * out (see http_conn.c for the closing sequence).
 *
 * With TLS the guard sees the decrypted bytes (the bufferevent's input), and the
 * raw answers are encrypted like any output; a handshake that never finishes is
 * a connection that never sent a byte, closed at the header deadline.
 *
 * Everything runs on the event loop; nothing here blocks.
 */
#ifndef CMDB_HTTP_CONN_H
#define CMDB_HTTP_CONN_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>

struct http_conns;

struct http_conn_limits {
	long header_timeout; /* seconds */
	long body_timeout;   /* seconds */
	long max_open;	     /* connections; from http_conns_cap() */
};

/*
 * The guard for the connections of one evhttp server (the caller installs its
 * evhttp_set_bevcb callback and calls http_conns_guard() from it). NULL when out of
 * memory. Free it after evhttp_free(), which closes (and so releases) every
 * connection.
 */
struct http_conns *http_conns_new(struct event_base *base, const struct http_conn_limits *lim);
void http_conns_free(struct http_conns *c); /* NULL-safe */

/*
 * Puts bev — a fresh bufferevent without a socket yet, of any kind (plain, TLS) —
 * under the guard and returns it, for evhttp_set_bevcb. Counts the connection
 * against the cap, or marks it to be refused. When out of memory the bufferevent
 * is returned unguarded. NULL in, NULL out.
 */
struct bufferevent *http_conns_guard(struct http_conns *c, struct bufferevent *bev);

/*
 * Calls fn(bev, peer, arg) as evhttp closes each guarded connection, before its
 * bufferevent is freed (http.c: to log a TLS handshake that failed). peer is
 * "address:port". fn must not free or close anything.
 */
typedef void (*http_conns_close_fn)(struct bufferevent *bev, const char *peer, void *arg);
void http_conns_on_close(struct http_conns *c, http_conns_close_fn fn, void *arg);

/*
 * Calls gone(arg) once if the connection of ev closes before
 * http_conns_unwatch_request() (a parked request whose client left: watch.c). evhttp
 * keeps one close callback per connection and the guard owns it, so per-request
 * interest goes through here. -1 when ev's connection is not guarded (no backstop).
 */
int http_conns_watch_request(struct http_conns *c, struct evhttp_request *ev,
			     void (*gone)(void *arg), void *arg);
void http_conns_unwatch_request(struct http_conns *c, struct evhttp_request *ev);

/* The request is whole and goes to a handler: its read deadline stops. */
void http_conns_request_started(struct http_conns *c, struct evhttp_request *ev);

/* Its reply is written: the connection is idle (or reads a pipelined request). */
void http_conns_request_done(struct http_conns *c, struct evhttp_request *ev);

/* Connections open now (counted against the cap; refusals are not), and the cap. */
int http_conns_open(const struct http_conns *c);
long http_conns_max(const struct http_conns *c);

/*
 * The cap on open connections: configured (> 0), or 0 for min(4096, the open-file
 * limit − reserve). reserve is what the process needs besides client connections
 * (database pool, listener, logs). Raises the soft RLIMIT_NOFILE toward the hard
 * limit when the cap needs more. Returns the cap, or -1 with a message in err when
 * a configured cap does not fit the limit.
 */
long http_conns_cap(long configured, long reserve, char *err, size_t errlen);

/* How many connections may be answered 503 at once; more are closed at once. */
#define HTTP_CONNS_REFUSING_MAX 64

/*
 * The end-of-headers scanner, exposed for tests: feeds the next n bytes of a
 * request to *state (0 at its start) and returns true when they complete the blank
 * line that ends the header block ("\r\n\r\n", or bare "\n" line ends, as evhttp
 * reads lines). Bytes may come split anywhere.
 */
bool http_conn_scan_headers(int *state, const char *p, size_t n);

#endif
