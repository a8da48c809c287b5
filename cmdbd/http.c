/*
 * http.c — evhttp glue: one request context per request, the limits every request
 * passes, routing, auth, and the replies (see http.h).
 */
#include "http.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <uuid/uuid.h>

#include "api.h"
#include "clock.h"
#include "http_conn.h"
#include "jv.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "router.h"
#include "tls.h"

/* evhttp cuts off bodies above this many times the JSON limit, before buffering. */
#define HTTP_HARD_BODY_FACTOR 4
/*
 * Descriptors the process needs besides client connections and the database pool:
 * stdio, the event loop's, the listener, the LISTEN and start-up connections, the
 * libraries'. The cap on connections leaves these, the pool and the refusals free.
 */
#define HTTP_FD_RESERVE 32

struct http_server {
	struct event_base *base;
	struct auth *auth;
	struct app *app;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct http_conns *conns; /* deadlines and the cap (http_conn.h) */
	struct tls *tls;	  /* NULL: plain HTTP */
	struct event *sighup;	  /* reloads the certificate (with TLS) */
	bool tls_nomem_logged;
	const struct cfg *cfg;
	int inflight;  /* requests not yet answered */
	int unflushed; /* answers still being written */
	bool draining;
	bool drained;
	struct event *flush_timer;
	void (*on_drained)(void *);
	void *arg;
};

/* ---------------------------------------------------------------- draining */

static void
finish_drain(struct http_server *s)
{
	if (s->drained)
		return;
	s->drained = true;
	if (s->on_drained != NULL)
		s->on_drained(s->arg);
}

static void
quiet_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	(void)fd;
	(void)what;
	if (s->inflight == 0)
		finish_drain(s);
}

/*
 * Draining is over when every request has been answered, every answer written,
 * and no new request has completed for a short quiet spell: a request whose body
 * was still arriving when the signal came is only handed to us once it is whole,
 * and it deserves an answer too. A client that vanished mid-write never completes
 * its answer, so the wait for flushing is capped as well.
 */
static void
check_drained(struct http_server *s)
{
	struct timeval quiet = {0, 500000}, flush = {1, 0};

	if (!s->draining || s->inflight > 0 || s->drained)
		return;
	if (s->flush_timer == NULL) {
		s->flush_timer = evtimer_new(s->base, quiet_timeout_cb, s);
		if (s->flush_timer == NULL) {
			finish_drain(s);
			return;
		}
	}
	evtimer_add(s->flush_timer, s->unflushed > 0 ? &flush : &quiet);
}

static void
reply_flushed(struct evhttp_request *ev, void *arg)
{
	struct http_server *s = arg;

	http_conns_request_done(s->conns, ev);
	s->unflushed--;
	check_drained(s);
}

/* ---------------------------------------------------------------- replies */

static void
req_free(struct http_req *r)
{
	struct http_server *s = r->srv;

	for (int i = 0; i < r->nsegs; i++)
		free(r->segs[i]);
	evhttp_clear_headers(&r->query);
	free(r->body);
	json_decref(r->json);
	if (r->state_free != NULL)
		r->state_free(r->state);
	free(r);
	s->inflight--;
	check_drained(s);
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 304:
		return "Not Modified";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Entity";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	default:
		return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_TRACE:
		return "TRACE";
	case EVHTTP_REQ_CONNECT:
		return "CONNECT";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	}
	return "OTHER";
}

/* Sends the reply held in buf (may be NULL) and frees the request. */
static void
send_and_free(struct http_req *r, int status, struct evbuffer *buf)
{
	const char *route = r->route ? router_route_name(r->route) : "none";
	double dt = clock_ms_since(&r->t0) / 1e3;
	char qpath[300], safe[300];
	const char *uri = log_redact_uri(evhttp_request_get_uri(r->ev), safe, sizeof(safe));

	if (r->on_close != NULL)
		(void)http_on_close(r, NULL, NULL);
	evhttp_add_header(evhttp_request_get_output_headers(r->ev), "X-Request-Id", r->id);
	if (r->srv->draining)
		evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Connection", "close");
	/* Log first: a request detached from its connection is freed by the send. */
	metrics_observe_request(route, status, dt);
	log_info("event=request id=%s method=%s path=%s route=%s status=%d ms=%.2f token=%s", r->id,
		 method_name(r->method), log_q(uri, qpath, sizeof(qpath)), route, status,
		 dt * 1000.0, r->tok.name[0] ? r->tok.name : "-");
	r->srv->unflushed++;
	evhttp_request_set_on_complete_cb(r->ev, reply_flushed, r->srv);
	evhttp_send_reply(r->ev, status, http_status_text(status), buf);
	if (buf != NULL)
		evbuffer_free(buf);
	req_free(r);
}

/*
 * Noticing that the client of a parked request went away. evhttp does not read
 * from a connection while its request awaits the reply, so it would only notice
 * when the reply is written. We watch the socket ourselves: readable with nothing
 * to read (recv peeks 0 bytes) is the client's FIN or a reset. Bytes (a pipelined
 * request) belong to evhttp: we stop watching and the request simply waits for
 * its reply. Should evhttp free the connection first (shutdown), its close
 * callback ends the watch the same way.
 */
static void
close_watch_end(struct http_req *r)
{
	if (r->close_ev != NULL) {
		event_free(r->close_ev);
		r->close_ev = NULL;
	}
	http_conns_unwatch_request(r->srv->conns, r->ev);
}

static void
client_gone(struct http_req *r)
{
	void (*cb)(struct http_req *, void *) = r->on_close;

	close_watch_end(r);
	r->on_close = NULL;
	if (cb != NULL)
		cb(r, r->on_close_arg); /* replies: written to nobody, then r is freed */
}

/* The connection guard's backstop (http_conn.h): evhttp closed the connection. */
static void
request_conn_gone(void *arg)
{
	client_gone(arg);
}

static void
peek_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_req *r = arg;
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	(void)what;
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		client_gone(r);
	else if (n > 0)
		close_watch_end(r); /* a pipelined request: evhttp's to read */
}

bool
http_on_close(struct http_req *r, void (*cb)(struct http_req *r, void *arg), void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(r->ev);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

	close_watch_end(r);
	r->on_close = NULL;
	if (cb == NULL)
		return true;
	if (fd < 0)
		return false;
	r->close_ev = event_new(r->srv->base, fd, EV_READ | EV_PERSIST, peek_cb, r);
	if (r->close_ev == NULL || event_add(r->close_ev, NULL) != 0) {
		close_watch_end(r);
		return true; /* cannot watch: the request still gets its reply in time */
	}
	r->on_close = cb;
	r->on_close_arg = arg;
	/* The guard owns evhttp's one close callback per connection; ask it. */
	(void)http_conns_watch_request(r->srv->conns, r->ev, request_conn_gone, r);
	return true;
}

void
http_set_header(struct http_req *r, const char *name, const char *value)
{
	evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

void
http_reply_raw(struct http_req *r, int status, const char *json, size_t len)
{
	struct evbuffer *buf = evbuffer_new();

	http_set_header(r, "Content-Type", "application/json; charset=utf-8");
	if (buf != NULL) {
		evbuffer_add(buf, json, len);
		evbuffer_add(buf, "\n", 1);
	}
	send_and_free(r, buf ? status : 503, buf);
}

void
http_reply_json(struct http_req *r, int status, json_t *body)
{
	char *text;

	if (body == NULL) {
		http_reply_empty(r, status);
		return;
	}
	text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(body);
	if (text == NULL) {
		http_reply_nomem(r); /* the value was built by us: only memory can fail */
		return;
	}
	http_reply_raw(r, status, text, strlen(text));
	free(text);
}

void
http_reply_text(struct http_req *r, int status, const char *ctype, const char *text, size_t len)
{
	struct evbuffer *buf = evbuffer_new();

	http_set_header(r, "Content-Type", ctype);
	if (buf != NULL)
		evbuffer_add(buf, text, len);
	send_and_free(r, buf ? status : 503, buf);
}

void
http_reply_empty(struct http_req *r, int status)
{
	send_and_free(r, status, NULL);
}

/*
 * The one error body: {"error":{"status","code","message","request_id","details"}}.
 * msg is made valid UTF-8 in place; details is stolen. NULL when out of memory.
 */
static json_t *
error_body(int status, const char *code, const char *id, json_t *details, char *msg)
{
	json_t *err;

	/* Messages may quote client input: keep them valid UTF-8 (JSON strings must be). */
	if (!model_utf8_valid(msg, strlen(msg)))
		for (char *p = msg; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
	err =
	    json_pack("{s:{s:i,s:s,s:s,s:s,s:o}}", "error", "status", status, "code", code,
		      "message", msg, "request_id", id, "details", details ? details : json_null());
	if (err == NULL) /* details that would not serialise: say it without them */
		err = json_pack("{s:{s:i,s:s,s:s,s:s,s:n}}", "error", "status", status, "code",
				code, "message", msg, "request_id", id, "details");
	return err;
}

static void reply_error_v(struct http_req *r, int status, const char *code, json_t *details,
			  const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void
reply_error_v(struct http_req *r, int status, const char *code, json_t *details, const char *fmt,
	      va_list ap)
{
	char msg[1024];
	json_t *err;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	err = error_body(status, code, r->id, details, msg);
	if (status == 401)
		http_set_header(r, "WWW-Authenticate", "Bearer realm=\"cmdbd\"");
	if (status >= 500)
		log_warn("event=request_error id=%s status=%d code=%s message=\"%s\"", r->id,
			 status, code, msg);
	http_reply_json(r, status, err);
}

void
http_reply_error(struct http_req *r, int status, const char *code, json_t *details, const char *fmt,
		 ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_error_v(r, status, code, details, fmt, ap);
	va_end(ap);
}

/*
 * A new request id: a random (version 4) UUID. Drawn from a xoshiro256** generator
 * seeded once from libuuid's randomness: uuid_generate_random() made six system calls
 * per request (getrandom and getpid, getppid, gettid, getuid for its checks), a tenth of
 * the server's system calls on a fast request. The ids need to be unique, not secret.
 */
static void
new_request_id(char *id)
{
	static uint64_t st[4];
	static bool seeded;
	uint64_t v[2];
	uuid_t u;

	if (!seeded) {
		uuid_generate_random(u);
		memcpy(st, u, sizeof(u));
		uuid_generate_random(u);
		memcpy(st + 2, u, sizeof(u));
		seeded = (st[0] | st[1] | st[2] | st[3]) != 0;
	}
	for (int i = 0; i < 2; i++) {
		uint64_t x = st[1] * 5, t = st[1] << 17;

		v[i] = ((x << 7) | (x >> 57)) * 9;
		st[2] ^= st[0];
		st[3] ^= st[1];
		st[1] ^= st[2];
		st[0] ^= st[3];
		st[2] ^= t;
		st[3] = (st[3] << 45) | (st[3] >> 19);
	}
	memcpy(u, v, sizeof(u));
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	uuid_unparse_lower(u, id);
}

int
http_raw_error(struct evbuffer *out, char *id, int status, const char *code, const char *extra,
	       json_t *details, const char *fmt, ...)
{
	char msg[1024], date[64];
	va_list ap;
	json_t *err;
	char *text;
	int rc;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	new_request_id(id);
	err = error_body(status, code, id, details, msg);
	text = err ? json_dumps(err, JSON_COMPACT) : NULL;
	json_decref(err);
	if (text == NULL)
		return -1;
	if (evutil_date_rfc1123(date, sizeof(date), NULL) >= (int)sizeof(date))
		date[0] = '\0';
	/* The body ends in a newline, as http_reply_raw() sends it. */
	rc = evbuffer_add_printf(out,
				 "HTTP/1.1 %d %s\r\nDate: %s\r\n"
				 "Content-Type: application/json; charset=utf-8\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %s\r\n"
				 "%s\r\n%s\n",
				 status, http_status_text(status), date, strlen(text) + 1, id,
				 extra ? extra : "", text);
	free(text);
	return rc < 0 ? -1 : 0;
}

void
http_reply_nomem(struct http_req *r)
{
	http_set_header(r, "Retry-After", "1");
	http_reply_error(r, 503, "unavailable", NULL, "out of memory");
}

void
http_reply_bad(struct http_req *r, const char *field, const char *fmt, ...)
{
	va_list ap;
	char msg[900];
	json_t *details = field ? json_pack("{s:s}", "field", field) : NULL;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (field != NULL && *field != '\0')
		http_reply_error(r, 400, "bad_request", details, "%s: %s", field, msg);
	else
		http_reply_error(r, 400, "bad_request", details, "%s", msg);
}

/* ---------------------------------------------------------------- accessors */

const char *
http_param(const struct http_req *r, int i)
{
	int idx = router_param_segment(r->route, i);

	return (idx >= 0 && idx < r->nsegs) ? r->segs[idx] : "";
}

const char *
http_query(const struct http_req *r, const char *name)
{
	return evhttp_find_header(&r->query, name);
}

const char *
http_header(const struct http_req *r, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

/* ---------------------------------------------------------------- dispatch */

static void
run_handler(struct http_req *r)
{
	api_dispatch(r); /* the handler, after X-Cmdb-Min-Seq (api.h) */
}

/*
 * The one place an auth verdict becomes a reply: 401 (with WWW-Authenticate) when
 * the caller is not known, 403 when it is but may not do this, 503 when the check
 * itself could not be made. Everything else refuses: failures are closed.
 */
static void
auth_done(void *arg, const struct auth_result *res)
{
	struct http_req *r = arg;
	const char *who = res->tok.name;

	switch (res->verdict) {
	case AUTH_OK:
		r->tok = res->tok;
		run_handler(r);
		return;
	case AUTH_MISSING:
		http_reply_error(r, 401, "unauthorized", NULL,
				 "missing Authorization: Bearer <token> header");
		return;
	case AUTH_BAD_SCHEME:
		http_reply_error(r, 401, "unauthorized", NULL,
				 "the Authorization header must use the Bearer scheme");
		return;
	case AUTH_REVOKED:
		http_reply_error(r, 401, "unauthorized", NULL, "token %s has been revoked", who);
		return;
	case AUTH_EXPIRED:
		http_reply_error(r, 401, "unauthorized", NULL, "token %s has expired", who);
		return;
	case AUTH_FORBIDDEN:
		r->tok = res->tok;
		http_reply_error(r, 403, "forbidden",
				 json_pack("{s:s,s:s}", "scope", auth_scope_name(res->tok.scope),
					   "required", auth_scope_name(res->need)),
				 "token %s has scope %s; this needs %s", who,
				 auth_scope_name(res->tok.scope), auth_scope_name(res->need));
		return;
	case AUTH_UNAVAILABLE:
		http_reply_error(r, 503, "unavailable", NULL,
				 "cannot check the token: database unavailable");
		return;
	case AUTH_NO_MEMORY:
		http_reply_nomem(r);
		return;
	case AUTH_INVALID:
		break;
	}
	http_reply_error(r, 401, "unauthorized", NULL, "invalid token");
}

static bool
valid_client_id(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9') || s[n] == '-' || s[n] == '_' || s[n] == '.'))
			return false;
	return n > 0 && n <= 36;
}

/* Number of request headers; *bytes gets their size as sent ("Key: value\r\n"). */
static int
count_headers(struct evhttp_request *ev, size_t *bytes)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	struct evkeyval *kv;
	int n = 0;

	*bytes = 0;
	TAILQ_FOREACH(kv, h, next)
	{
		n++;
		*bytes += strlen(kv->key) + strlen(kv->value) + 4;
	}
	return n;
}

static void
handle_request(struct evhttp_request *ev, void *arg)
{
	struct http_server *s = arg;
	struct http_req *r = calloc(1, sizeof(*r));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	const char *client_id;
	struct evbuffer *in;
	enum router_result rr;
	size_t header_bytes;
	int split;

	/* Whole and ours now: no read deadline while a handler has it. */
	http_conns_request_started(s->conns, ev);
	if (r == NULL) {
		evhttp_send_error(ev, 503, "Out of memory");
		return;
	}
	s->inflight++;
	r->ev = ev;
	r->srv = s;
	r->app = s->app;
	r->method = evhttp_request_get_command(ev);
	TAILQ_INIT(&r->query);
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	client_id = evhttp_find_header(evhttp_request_get_input_headers(ev), "X-Request-Id");
	if (client_id != NULL && valid_client_id(client_id))
		snprintf(r->id, sizeof(r->id), "%s", client_id);
	else
		new_request_id(r->id);

	if (s->tls != NULL &&
	    !tls_is_tls(evhttp_connection_get_bufferevent(evhttp_request_get_connection(ev)))) {
		/* make_bufferevent() could not make the TLS one: never serve in the clear. */
		http_reply_nomem(r);
		return;
	}
	if (count_headers(ev, &header_bytes) > s->cfg->max_headers) {
		http_reply_error(r, 431, "headers_too_large",
				 json_pack("{s:I}", "limit", (json_int_t)s->cfg->max_headers),
				 "more than %ld request headers", s->cfg->max_headers);
		return;
	}
	if (header_bytes > (size_t)s->cfg->max_header_bytes) {
		http_reply_error(r, 431, "headers_too_large",
				 json_pack("{s:I}", "limit", (json_int_t)s->cfg->max_header_bytes),
				 "request headers are larger than %ld bytes",
				 s->cfg->max_header_bytes);
		return;
	}
	if (path == NULL || *path == '\0')
		path = "/";
	split = router_split_path(path, r->segs, HTTP_MAX_SEGS, &r->nsegs);
	if (split < 0) {
		http_reply_bad(r, "path", "malformed percent-encoding in the path");
		return;
	}
	if (query != NULL && evhttp_parse_query_str(query, &r->query) != 0) {
		http_reply_bad(r, "query", "malformed query string");
		return;
	}
	rr = split > 0 ? ROUTER_NOT_FOUND
		       : router_match(r->method, (const char *const *)r->segs, r->nsegs, &r->route);
	if (rr == ROUTER_NOT_FOUND) {
		http_reply_error(r, 404, "not_found", NULL, "no such endpoint: %s", path);
		return;
	}
	if (rr == ROUTER_BAD_METHOD) {
		char allow[128];

		router_allowed(r->route, allow, sizeof(allow));
		http_set_header(r, "Allow", allow);
		http_reply_error(r, 405, "method_not_allowed", NULL,
				 "method %s is not allowed here; allowed: %s",
				 method_name(r->method), allow);
		return;
	}

	in = evhttp_request_get_input_buffer(ev);
	r->body_len = evbuffer_get_length(in);
	if (r->body_len > (size_t)s->cfg->max_body_bytes) {
		http_reply_error(r, 413, "payload_too_large",
				 json_pack("{s:I}", "limit", (json_int_t)s->cfg->max_body_bytes),
				 "request body is larger than the limit of %ld bytes",
				 s->cfg->max_body_bytes);
		return;
	}
	if (router_takes_json(r->route)) {
		r->body = malloc(r->body_len + 1);
		if (r->body == NULL) {
			http_reply_nomem(r);
			return;
		}
		evbuffer_copyout(in, r->body, r->body_len);
		r->body[r->body_len] = '\0';
		if (!router_parses_json_late(r->route) && !http_parse_json(r))
			return;
	} else if (r->body_len > 0 && r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD &&
		   r->method != EVHTTP_REQ_DELETE) {
		http_reply_bad(r, NULL, "this endpoint takes no request body");
		return;
	}
	if (router_scope(r->route) == AUTH_NONE) {
		run_handler(r);
		return;
	}
	auth_check(s->auth, http_header(r, "Authorization"), router_scope(r->route), auth_done, r);
}

bool
http_parse_json(struct http_req *r)
{
	struct jv_err err = {0};

	r->json = jv_parse_object(r->body, r->body_len, (int)r->srv->cfg->json_max_depth, &err);
	if (r->json == NULL) {
		http_reply_bad(r, err.path[0] ? err.path : NULL, "%s", err.msg);
		return false;
	}
	return true;
}

/* ---------------------------------------------------------------- server */

/*
 * evhttp's bevcb: the bufferevent for one new connection, under the guard: a TLS
 * one with --tls-cert, else a plain socket. evhttp sets its socket. When the TLS
 * one cannot be made (out of memory) a plain one goes in its place — returning
 * NULL would have evhttp make a plain one anyway — and handle_request() answers
 * its requests 503 instead of serving them in the clear.
 */
static struct bufferevent *
make_bufferevent(struct event_base *base, void *arg)
{
	struct http_server *s = arg;
	struct bufferevent *bev = NULL;

	if (s->tls != NULL) {
		bev = tls_bufferevent_new(s->tls, base);
		if (bev == NULL && !s->tls_nomem_logged) {
			s->tls_nomem_logged = true;
			log_warn("event=tls_connection_failed reason=\"out of memory\"");
		}
	}
	if (bev == NULL)
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	return http_conns_guard(s->conns, bev);
}

/*
 * A client that spoke plain HTTP to the HTTPS port gets a plain-HTTP 400 that says
 * so (as nginx and Go do) rather than a bare reset, best effort: the socket is
 * non-blocking, the request bytes already there are read and dropped first (a
 * close with unread bytes would reset the answer away), and the answer is small
 * enough for the socket buffer. evhttp closes the socket right after.
 */
static void
answer_plain_http(struct bufferevent *bev, char *id)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct evbuffer *out;
	char scratch[4096];

	if (fd < 0 || (out = evbuffer_new()) == NULL)
		return;
	for (int i = 0; i < 16 && recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0; i++)
		;
	if (http_raw_error(out, id, 400, "https_required", NULL, NULL,
			   "this port serves HTTPS: use an https:// URL") == 0)
		(void)evbuffer_write(out, fd);
	evbuffer_free(out);
}

/*
 * The guard's close hook (TLS only): one line for a handshake that failed. A
 * connection closed before its handshake without an error (a port probe, a
 * client giving up) is only a debug line.
 */
static void
conn_closed(struct bufferevent *bev, const char *peer, void *arg)
{
	char reason[160], q[200], id[40] = "-";

	(void)arg;
	switch (tls_close_reason(bev, reason, sizeof(reason))) {
	case TLS_CLOSE_OK:
		return;
	case TLS_CLOSE_EARLY:
		log_debug("event=tls_handshake_failed peer=%s reason=%s", peer,
			  log_q(reason, q, sizeof(q)));
		return;
	case TLS_CLOSE_PLAIN_HTTP:
		answer_plain_http(bev, id);
		log_info("event=tls_handshake_failed peer=%s reason=%s id=%s hint=\"the client "
			 "sent plain HTTP to the HTTPS port; answered 400 in plain HTTP\"",
			 peer, log_q(reason, q, sizeof(q)), id);
		return;
	case TLS_CLOSE_FAILED:
		log_info("event=tls_handshake_failed peer=%s reason=%s", peer,
			 log_q(reason, q, sizeof(q)));
		return;
	}
}

/* Logs the certificate in use; warns when it is not valid now. */
static void
log_certificate(struct http_server *s, const char *event)
{
	char desc[400];
	bool expired;

	tls_describe(s->tls, desc, sizeof(desc), &expired);
	log_info("event=%s cert=%s %s", event, s->cfg->tls_cert, desc);
	if (expired)
		log_warn("event=tls_certificate_not_valid %s hint=\"clients will refuse it; "
			 "renew it and send SIGHUP\"",
			 desc);
}

/* SIGHUP: read the certificate and key again; keep the old ones if they are bad. */
static void
sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct http_server *s = arg;
	char err[512], q[600];

	(void)sig;
	(void)what;
	if (s->tls == NULL) {
		log_info("event=sighup action=none reason=\"no certificate to reload: serving "
			 "plain HTTP\"");
		return;
	}
	if (tls_reload(s->tls, err, sizeof(err)) != 0) {
		log_error("event=tls_reload_failed reason=%s hint=\"still serving the previous "
			  "certificate\"",
			  log_q(err, q, sizeof(q)));
		return;
	}
	log_certificate(s, "tls_reloaded");
}

/*
 * TLS from cfg, when configured, and SIGHUP (which reloads the certificate, and
 * never stops the server). 0, or -1 with a logged reason.
 */
static int
tls_setup(struct http_server *s, const struct cfg *cfg)
{
	char err[512], q[600];

	s->sighup = evsignal_new(s->base, SIGHUP, sighup_cb, s);
	if (s->sighup == NULL || evsignal_add(s->sighup, NULL) != 0) {
		log_error("event=listen_failed reason=\"cannot watch SIGHUP\"");
		return -1;
	}
	if (cfg->tls_cert == NULL || cfg->tls_cert[0] == '\0')
		return 0;
	s->tls = tls_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
	if (s->tls == NULL) {
		log_error("event=listen_failed listen=%s reason=%s", cfg->listen,
			  log_q(err, q, sizeof(q)));
		return -1;
	}
	http_conns_on_close(s->conns, conn_closed, s);
	log_certificate(s, "tls_certificate");
	return 0;
}

/* The guard with cfg's deadlines and cap; NULL with a logged reason. */
static struct http_conns *
guard_new(struct event_base *base, const struct cfg *cfg)
{
	struct http_conn_limits lim = {cfg->header_timeout, cfg->body_timeout, 0};
	char err[256];
	struct http_conns *c;

	lim.max_open = http_conns_cap(cfg->max_connections,
				      HTTP_FD_RESERVE +
					  cfg->db_pool_size * (cfg->read_database_url[0] ? 2 : 1) +
					  HTTP_CONNS_REFUSING_MAX,
				      err, sizeof(err));
	if (lim.max_open < 0) {
		log_error("event=listen_failed reason=\"%s\"", err);
		return NULL;
	}
	c = http_conns_new(base, &lim);
	if (c == NULL)
		log_error("event=listen_failed reason=\"out of memory\"");
	return c;
}

static bool
loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0;
}

struct http_server *
http_server_new(struct event_base *base, const struct cfg *cfg, struct auth *auth, struct app *app,
		void (*on_drained)(void *), void *arg)
{
	struct http_server *s = calloc(1, sizeof(*s));
	char *host = NULL;
	int port;

	if (s == NULL)
		return NULL;
	s->base = base;
	s->auth = auth;
	s->app = app;
	s->cfg = cfg;
	s->on_drained = on_drained;
	s->arg = arg;
	s->conns = guard_new(base, cfg);
	s->http = evhttp_new(base);
	if (s->conns == NULL || s->http == NULL || tls_setup(s, cfg) != 0)
		goto fail;
	if (cfg_split_listen(cfg->listen, &host, &port) != 0) {
		log_error("event=listen_failed listen=%s reason=\"expected host:port\"",
			  cfg->listen);
		goto fail;
	}
	/*
	 * The limits are checked in handle_request() so that the answer is a JSON
	 * error; evhttp's own caps (which answer in HTML) sit well above them and
	 * only stop what would be absurd to buffer.
	 */
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)cfg->max_header_bytes * 4);
	evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->max_body_bytes * HTTP_HARD_BODY_FACTOR);
	evhttp_set_timeout(s->http, (int)cfg->idle_timeout);
	evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
	/* Every method reaches the router, which answers 405 in JSON with Allow. */
	evhttp_set_allowed_methods(s->http, 0xffff);
	evhttp_set_gencb(s->http, handle_request, s);
	evhttp_set_bevcb(s->http, make_bufferevent, s);
	s->sock = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
	if (s->sock == NULL) {
		log_error("event=listen_failed listen=%s reason=\"cannot bind\"", cfg->listen);
		goto fail;
	}
	{
		/*
		 * Replies are written whole; Nagle would hold their tail back for the
		 * client's delayed ACK (~40 ms on keep-alive connections). Linux passes
		 * the option on to every accepted socket.
		 */
		int one = 1;

		setsockopt(evhttp_bound_socket_get_fd(s->sock), IPPROTO_TCP, TCP_NODELAY, &one,
			   sizeof(one));
	}
	log_info("event=listening listen=%s tls=%d max_connections=%ld header_timeout_s=%ld "
		 "body_timeout_s=%ld",
		 cfg->listen, s->tls != NULL, http_conns_max(s->conns), cfg->header_timeout,
		 cfg->body_timeout);
	if (s->tls == NULL && !loopback(host))
		log_warn("event=listening_in_the_clear listen=%s hint=\"tokens and the map cross "
			 "the network unencrypted; serve HTTPS with --tls-cert and --tls-key\"",
			 cfg->listen);
	free(host);
	return s;
fail:
	free(host);
	http_server_free(s);
	return NULL;
}

void
http_server_drain(struct http_server *s)
{
	if (s->draining)
		return;
	s->draining = true;
	if (s->sock != NULL) {
		evhttp_del_accept_socket(s->http, s->sock);
		s->sock = NULL;
	}
	check_drained(s);
}

int
http_server_inflight(const struct http_server *s)
{
	return s->inflight;
}

bool
http_server_draining(const struct http_server *s)
{
	return s->draining;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	if (s->http != NULL)
		evhttp_free(s->http); /* closes every connection: the guard forgets them */
	http_conns_free(s->conns);
	if (s->sighup != NULL)
		event_free(s->sighup);
	tls_free(s->tls); /* after the connections: none is left to use it */
	if (s->flush_timer != NULL)
		event_free(s->flush_timer);
	free(s);
}
