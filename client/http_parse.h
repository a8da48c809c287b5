/*
 * http_parse.h — the pure half of the HTTP/1.1 client: base-URL parsing,
 * request serialisation and response parsing (Content-Length, chunked, or
 * read-until-close bodies). No sockets here; http_client.c does the I/O.
 * Unit-tested by tests/check_client_http.c.
 */
#ifndef CMDB_CLIENT_HTTP_PARSE_H
#define CMDB_CLIENT_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Upper bound on the header block of a reply; bigger is treated as malformed. */
#define HTTP_MAX_HEADER_BYTES (64 * 1024)

/* A parsed base URL "http://host[:port][/prefix]". All strings owned. */
struct http_url {
	char *host;	   /* without IPv6 brackets, for getaddrinfo */
	char *port;	   /* decimal, "80" when absent */
	char *host_header; /* the Host: header value, as written in the URL */
	char *prefix;	   /* path prefix without a trailing '/', often "" */
};

/* Returns 0, or -1 with a message in err (out left zeroed). */
int cl_http_url_parse(const char *url, struct http_url *out, char *err, size_t errlen);
/* NULL-safe; leaves *u zeroed. */
void cl_http_url_free(struct http_url *u);

/* A request to serialise. `headers` is NULL or a NULL-terminated list of
 * name, value pairs (a NULL value skips that header). */
struct http_request {
	const char *method;
	const char *target; /* origin-form: "/v1/nodes?kind=x" */
	const char *host_header;
	const char *const *headers;
	const char *body; /* may be NULL when body_len is 0 */
	size_t body_len;
	bool send_body; /* send Content-Length (and body) even if 0 */
};

/*
 * Appends the serialised request to out. Header values containing CR, LF or
 * other control characters are refused (they would forge headers).
 * Returns 0, or -1 with a message in err.
 */
int cl_http_build_request(const struct http_request *rq, struct buf *out, char *err, size_t errlen);

/* A parsed reply. All strings owned; body is NUL-terminated (it may also
 * contain NULs: use body_len). */
struct http_response {
	int status;
	char *reason;
	char *body;
	size_t body_len;
	char *request_id;   /* X-Request-Id, or NULL */
	char *content_type; /* or NULL */
	char *cmdb_index;   /* X-Cmdb-Index (graph answers), or NULL */
};

/*
 * Parses the bytes received so far. `eof` says whether the peer has closed.
 * Returns 1 with *out filled (free with cl_http_response_free) when a whole
 * reply is there, 0 when more bytes are needed, -1 with a message in err
 * when the reply is malformed or was cut short. Informational (1xx) replies
 * are skipped. Requests are always sent with "Connection: close", so a body
 * with neither Content-Length nor chunked coding runs until EOF.
 */
int cl_http_parse_response(const char *data, size_t len, bool eof, struct http_response *out,
			   char *err, size_t errlen);

/* NULL-safe; leaves *r zeroed. */
void cl_http_response_free(struct http_response *r);

#endif
