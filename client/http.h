/*
 * http.h — the CLI's HTTP client, on libcurl: base-URL checks, one request at a
 * time over a reused handle (keep-alive across the requests of one run, e.g.
 * `changes --follow`), https with certificate verification on by default.
 *
 * Proxies come from the environment as libcurl reads it: http_proxy, https_proxy
 * (or HTTPS_PROXY), all_proxy and no_proxy; the upper-case HTTP_PROXY is ignored
 * by libcurl on purpose (it can be set by a CGI request's Proxy: header).
 * Redirects are not followed; only http and https are spoken.
 *
 * Blocking. Not thread-safe (one process-wide handle). cl_http_global_init() runs
 * once before any request; cl_http_global_cleanup() once at exit.
 */
#ifndef CMDB_CLIENT_HTTP_H
#define CMDB_CLIENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* Replies bigger than this are refused rather than buffered. */
#define HTTP_MAX_REPLY_BYTES ((size_t)512 * 1024 * 1024)

/* A checked base URL "http[s]://host[:port][/prefix]". All strings owned. */
struct http_url {
	char *base;   /* scheme://host[:port], no trailing '/' */
	char *prefix; /* path prefix without a trailing '/', often "" */
	bool tls;     /* https */
};

/*
 * Checks url (scheme http or https, a host, an optional port 1-65535 and path; no
 * credentials, query or fragment, spaces or control characters). Returns 0, or -1
 * with a message in err (out left zeroed).
 */
int cl_http_url_parse(const char *url, struct http_url *out, char *err, size_t errlen);
/* NULL-safe; leaves *u zeroed. */
void cl_http_url_free(struct http_url *u);

/* A request. `headers` is NULL or a NULL-terminated list of name, value pairs (a
 * NULL value skips that header). */
struct http_request {
	const char *method;
	const char *target; /* origin-form, sent as is: "/v1/nodes?kind=x" */
	const char *const *headers;
	const char *body; /* may be NULL when body_len is 0 */
	size_t body_len;
	bool send_body; /* send Content-Length (and body) even if 0 */
};

/* How to connect. */
struct http_opts {
	int connect_ms;	    /* connection set-up, TLS handshake included */
	int timeout_ms;	    /* the whole exchange */
	const char *cacert; /* PEM bundle to verify the server with, or NULL: the system's */
};

/* A reply. All strings owned; body is NUL-terminated (it may also contain NULs:
 * use body_len). */
struct http_response {
	int status;
	char *reason;
	char *body;
	size_t body_len;
	char *request_id;   /* X-Request-Id, or NULL */
	char *content_type; /* or NULL */
	char *cmdb_index;   /* X-Cmdb-Index (the seq a graph answer was computed at), or NULL */
};

/*
 * Checks a request before anything is sent: header values with CR, LF or other
 * control characters, and targets with spaces or control characters, are refused
 * (they would forge headers). Returns 0, or -1 with a message in err.
 */
int cl_http_check_request(const struct http_request *rq, char *err, size_t errlen);

/*
 * Sends rq to url->base + url->prefix + rq->target and reads the reply. Returns 0
 * with *resp filled (any status; free with cl_http_response_free), or -1 with a
 * human-readable message in err (refused, timed out, certificate, cut short...).
 */
int cl_http_perform(const struct http_url *url, const struct http_request *rq,
		    const struct http_opts *opts, struct http_response *resp, char *err,
		    size_t errlen);

/* NULL-safe; leaves *r zeroed. */
void cl_http_response_free(struct http_response *r);

/* libcurl's global set-up and tear-down: 0 or -1. */
int cl_http_global_init(void);
void cl_http_global_cleanup(void);

#endif
