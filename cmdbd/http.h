/*
 * http.h — the HTTP front: evhttp glue, the request context and the replies.
 *
 * http.c owns every struct http_req. It creates one per request, runs the limits
 * (header count, body size, strict JSON), routes it (router.h), authenticates it
 * (auth.h), and calls the route's handler. A handler replies exactly once, now or
 * later from a callback, with one of the http_reply_* functions; the reply frees
 * the request, so the handler must not touch it afterwards. Replying is safe even
 * when the client has gone away (libevent then just frees the request).
 *
 * All error bodies are {"error":{"status","code","message","request_id","details"}}
 * and every response carries X-Request-Id.
 */
#ifndef CMDB_HTTP_H
#define CMDB_HTTP_H

#include "attrs.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#include "auth.h"
#include "config.h"

#define HTTP_MAX_SEGS 8

struct app;
struct route;
struct http_server;

struct http_req {
	struct evhttp_request *ev;
	struct http_server *srv;
	struct app *app; /* the application context (app.h), for the handler */
	char id[40];
	enum evhttp_cmd_type method;
	const struct route *route;
	char *segs[HTTP_MAX_SEGS]; /* percent-decoded path segments, owned */
	int nsegs;
	struct evkeyvalq query; /* decoded query parameters */
	char *body;		/* raw body, NUL-terminated, owned; NULL if none */
	size_t body_len;
	json_t *json;	       /* parsed body when the route takes JSON, owned */
	struct auth_token tok; /* the caller, after auth */
	struct timespec t0;
	void *state; /* handler-private, freed with state_free */
	void (*state_free)(void *);
	struct http_req *wait_next; /* for modules that park requests (long poll) */
	void (*on_close)(struct http_req *r, void *arg); /* http_on_close() */
	void *on_close_arg;
	struct event *close_ev; /* watches the socket for the client's close */
};

/*
 * Starts serving on listen ("host:port") with the limits in cfg, checking tokens
 * with auth and handing app (opaque here) to every request, the read
 * deadlines and the connection cap included (http_conn.h). Returns NULL with a
 * logged reason on failure. on_drained runs once after http_server_drain()
 * when the last in-flight request has been answered.
 */
CMDB_MUST_USE struct http_server *http_server_new(struct event_base *base, const struct cfg *cfg,
						  struct auth *auth, struct app *app,
						  void (*on_drained)(void *), void *arg);
void http_server_free(struct http_server *s); /* NULL-safe */

/* Stops accepting connections; in-flight requests finish. */
void http_server_drain(struct http_server *s);
int http_server_inflight(const struct http_server *s);
bool http_server_draining(const struct http_server *s);

/*
 * For a route that parses its JSON body late (router_parses_json_late): parses
 * r->body into r->json as http.c does for the others. Returns true, or replies 400
 * naming what is wrong (the request is then gone) and returns false.
 */
bool http_parse_json(struct http_req *r);

/* Path parameter i (0-based among the route's {params}); never NULL for a match. */
const char *http_param(const struct http_req *r, int i);

/* Decoded query parameter or NULL. */
const char *http_query(const struct http_req *r, const char *name);

/* Request header or NULL. */
const char *http_header(const struct http_req *r, const char *name);

/*
 * For a parked request: cb(r, arg) runs once if the client closes the connection
 * before the reply. cb must then reply (the reply goes nowhere and frees r); the
 * registration ends with the reply. NULL cb cancels it. Returns false (nothing
 * registered) when the client has already gone.
 */
bool http_on_close(struct http_req *r, void (*cb)(struct http_req *r, void *arg), void *arg);

/* Adds a response header (before replying). */
void http_set_header(struct http_req *r, const char *name, const char *value);

/* Replies with body (reference stolen; NULL sends no body). Frees r. */
void http_reply_json(struct http_req *r, int status, json_t *body);

/* Replies with an already-serialised JSON text. Frees r. */
void http_reply_raw(struct http_req *r, int status, const char *json, size_t len);

/* Replies with a text body of the given content type. Frees r. */
void http_reply_text(struct http_req *r, int status, const char *ctype, const char *text,
		     size_t len);

/* Replies with no body (204, 304). Frees r. */
void http_reply_empty(struct http_req *r, int status);

/*
 * Replies with the JSON error body. code is the machine code ("not_found"),
 * details a JSON value or NULL (reference stolen). Frees r.
 */
void http_reply_error(struct http_req *r, int status, const char *code, json_t *details,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * 503 "out of memory" with Retry-After: the one answer to a failed allocation on
 * the request path (never a 4xx or 500: the request was fine). Frees r.
 */
void http_reply_nomem(struct http_req *r);

/* 400 naming a field or parameter: details {"field": path}. Frees r. */
void http_reply_bad(struct http_req *r, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Appends to out a whole HTTP/1.1 response with the JSON error body and
 * Connection: close, for a connection evhttp has no request object to answer on
 * (http_conn.c: a read deadline, the connection cap). It gets a new request id,
 * copied to id (40 bytes). extra is more header lines ("Name: value\r\n") or
 * NULL; details as for http_reply_error (stolen). Returns 0, or -1 when out of
 * memory.
 */
int http_raw_error(struct evbuffer *out, char *id, int status, const char *code, const char *extra,
		   json_t *details, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* The reason phrase of a status ("Not Found"). */
const char *http_status_text(int status);

#endif
