/*
 * http_parse.c — URL parsing, request serialisation and a strict but
 * tolerant HTTP/1.1 response parser. The parser is re-run on the whole
 * buffer after each read; the completeness checks are cheap (they walk
 * chunk headers without copying), and the body is copied out only once.
 */
#include "http_parse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- URLs */

void
cl_http_url_free(struct http_url *u)
{
	if (u == NULL)
		return;
	free(u->host);
	free(u->port);
	free(u->host_header);
	free(u->prefix);
	*u = (struct http_url){NULL, NULL, NULL, NULL};
}

static bool
valid_port(const char *p, size_t n)
{
	if (n < 1 || n > 5)
		return false;
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

int
cl_http_url_parse(const char *url, struct http_url *out, char *err, size_t errlen)
{
	*out = (struct http_url){NULL, NULL, NULL, NULL};
	if (strncasecmp(url, "https://", 8) == 0) {
		snprintf(err, errlen,
			 "https URLs are not supported (%s); "
			 "reach cmdbd over http or through a local TLS tunnel",
			 url);
		return -1;
	}
	if (strncasecmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "invalid URL '%s': expected http://HOST[:PORT][/PREFIX]",
			 url);
		return -1;
	}
	const char *auth = url + 7;
	size_t alen = strcspn(auth, "/?#");
	const char *rest = auth + alen;
	if (*rest == '?' || *rest == '#' || strchr(rest, '?') || strchr(rest, '#')) {
		snprintf(err, errlen, "invalid URL '%s': no query or fragment allowed", url);
		return -1;
	}
	if (memchr(auth, '@', alen)) {
		snprintf(err, errlen, "invalid URL '%s': credentials belong in CMDB_TOKEN", url);
		return -1;
	}
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			snprintf(err, errlen,
				 "invalid URL: it contains spaces or control characters");
			return -1;
		}
	}

	const char *host, *port = NULL;
	size_t hlen, plen = 0;
	if (alen > 0 && auth[0] == '[') { /* [v6]:port */
		const char *close = memchr(auth, ']', alen);
		if (close == NULL)
			goto bad;
		host = auth + 1;
		hlen = (size_t)(close - host);
		if (close + 1 < auth + alen) {
			if (close[1] != ':')
				goto bad;
			port = close + 2;
			plen = (size_t)(auth + alen - port);
		}
	} else {
		const char *colon = memchr(auth, ':', alen);
		host = auth;
		hlen = colon ? (size_t)(colon - auth) : alen;
		if (colon) {
			port = colon + 1;
			plen = (size_t)(auth + alen - port);
		}
	}
	if (hlen == 0 || (port && !valid_port(port, plen)))
		goto bad;

	size_t rlen = strlen(rest);
	while (rlen > 0 && rest[rlen - 1] == '/')
		rlen--;
	out->host = cl_xstrndup(host, hlen);
	out->port = port ? cl_xstrndup(port, plen) : cl_xstrdup("80");
	out->host_header = cl_xstrndup(auth, alen);
	out->prefix = cl_xstrndup(rest, rlen);
	return 0;

bad:
	snprintf(err, errlen, "invalid URL '%s': expected http://HOST[:PORT][/PREFIX]", url);
	return -1;
}

/* ------------------------------------------------------------- requests */

static bool
header_value_ok(const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	return true;
}

int
cl_http_build_request(const struct http_request *rq, struct buf *out, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	if (!header_value_ok(rq->target) || strchr(rq->target, ' ')) {
		snprintf(err, errlen, "request target contains spaces or control characters");
		goto fail;
	}
	cl_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", rq->method, rq->target,
		      rq->host_header);
	for (const char *const *h = rq->headers; h && h[0]; h += 2) {
		if (h[1] == NULL)
			continue;
		if (!header_value_ok(h[1])) {
			snprintf(err, errlen, "the %s header value contains control characters",
				 h[0]);
			goto fail;
		}
		cl_buf_printf(&b, "%s: %s\r\n", h[0], h[1]);
	}
	if (rq->send_body || rq->body_len > 0)
		cl_buf_printf(&b, "Content-Length: %zu\r\n", rq->body_len);
	cl_buf_puts(&b, "Connection: close\r\n\r\n");
	if (rq->body_len > 0)
		cl_buf_append(&b, rq->body, rq->body_len);
	cl_buf_append(out, b.data, b.len);
	cl_buf_free(&b);
	return 0;

fail:
	cl_buf_free(&b);
	return -1;
}

/* ------------------------------------------------------------ responses */

void
cl_http_response_free(struct http_response *r)
{
	if (r == NULL)
		return;
	free(r->reason);
	free(r->body);
	free(r->request_id);
	free(r->content_type);
	free(r->cmdb_index);
	*r = (struct http_response){0, NULL, NULL, 0, NULL, NULL, NULL};
}

/* Finds "\r\n\r\n"; returns the offset just past it, or 0. */
static size_t
find_header_end(const char *d, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' && d[i + 3] == '\n')
			return i + 4;
	return 0;
}

/* Finds the CRLF ending the line at d[0..len); returns its offset or -1. */
static long
find_crlf(const char *d, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (d[i] == '\r' && d[i + 1] == '\n')
			return (long)i;
	return -1;
}

/* What the header block says about the body. */
struct head_info {
	int status;
	char *reason;
	char *request_id;
	char *content_type;
	char *cmdb_index;
	bool chunked;
	bool has_length;
	size_t length;
};

static void
head_info_free(struct head_info *h)
{
	free(h->reason);
	free(h->request_id);
	free(h->content_type);
	free(h->cmdb_index);
}

/* A copy of a header value without surrounding blanks, control characters
 * shown as '?' (these strings end up on the user's terminal). */
static char *
trimmed_copy(const char *s, size_t n)
{
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	char *copy = cl_xstrndup(s, n);
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	return copy;
}

/* Parses "HTTP/1.x NNN reason" from line[0..n). */
static int
parse_status_line(const char *line, size_t n, struct head_info *h, char *err, size_t errlen)
{
	if (n < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
	    !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
	    !isdigit((unsigned char)line[11]) || (n > 12 && line[12] != ' ')) {
		snprintf(err, errlen, "the server did not answer with HTTP/1.x");
		return -1;
	}
	h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (h->status < 100) {
		snprintf(err, errlen, "invalid HTTP status %d", h->status);
		return -1;
	}
	h->reason = n > 13 ? trimmed_copy(line + 13, n - 13) : cl_xstrdup("");
	return 0;
}

static int
parse_content_length(const char *v, struct head_info *h, char *err, size_t errlen)
{
	char *end = NULL;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno == ERANGE ||
	    (h->has_length && h->length != n) || n > (size_t)-1 / 2) {
		snprintf(err, errlen, "invalid Content-Length '%s'", v);
		return -1;
	}
	h->has_length = true;
	h->length = (size_t)n;
	return 0;
}

/* True when the last coding in a Transfer-Encoding value is "chunked". */
static bool
last_coding_chunked(const char *v)
{
	const char *last = strrchr(v, ',');
	last = last ? last + 1 : v;
	while (*last == ' ' || *last == '\t')
		last++;
	return strncasecmp(last, "chunked", 7) == 0 &&
	       (last[7] == '\0' || last[7] == ' ' || last[7] == '\t' || last[7] == ';');
}

/* Parses one header block d[0..hlen) (hlen includes the final CRLFCRLF). */
static int
parse_head(const char *d, size_t hlen, struct head_info *h, char *err, size_t errlen)
{
	long eol = find_crlf(d, hlen);
	if (parse_status_line(d, (size_t)eol, h, err, errlen) < 0)
		return -1;
	size_t pos = (size_t)eol + 2;
	while (pos + 2 < hlen) {
		long e = find_crlf(d + pos, hlen - pos);
		const char *line = d + pos;
		size_t n = (size_t)e;
		pos += n + 2;
		const char *colon = memchr(line, ':', n);
		if (colon == NULL || colon == line) {
			snprintf(err, errlen, "malformed header line in the reply");
			return -1;
		}
		size_t nlen = (size_t)(colon - line);
		char *value = trimmed_copy(colon + 1, n - nlen - 1);
		int rc = 0;
		if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0)
			rc = parse_content_length(value, h, err, errlen);
		else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0)
			h->chunked = last_coding_chunked(value);
		else if (nlen == 12 && strncasecmp(line, "X-Request-Id", 12) == 0 && !h->request_id)
			h->request_id = cl_xstrdup(value);
		else if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0 &&
			 !h->content_type)
			h->content_type = cl_xstrdup(value);
		else if (nlen == 12 && strncasecmp(line, "X-Cmdb-Index", 12) == 0 && !h->cmdb_index)
			h->cmdb_index = cl_xstrdup(value);
		free(value);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/*
 * Walks a chunked body d[0..len). When `out` is non-NULL the data is copied
 * into it. Returns 1 when the last chunk and trailers are complete, 0 when
 * more bytes are needed, -1 on malformed framing.
 */
static int
chunked_walk(const char *d, size_t len, struct buf *out, char *err, size_t errlen)
{
	size_t pos = 0;
	for (;;) {
		long e = find_crlf(d + pos, len - pos);
		if (e < 0)
			return len - pos > 1024
				   ? (snprintf(err, errlen, "malformed chunk header"), -1)
				   : 0;
		const char *line = d + pos;
		size_t size = 0, i = 0;
		for (; i < (size_t)e && isxdigit((unsigned char)line[i]); i++) {
			if (size > ((size_t)-1 >> 5)) {
				snprintf(err, errlen, "chunk size too large");
				return -1;
			}
			size = size * 16 +
			       (size_t)(isdigit((unsigned char)line[i])
					    ? line[i] - '0'
					    : (tolower((unsigned char)line[i]) - 'a' + 10));
		}
		if (i == 0 ||
		    (i < (size_t)e && line[i] != ';' && line[i] != ' ' && line[i] != '\t')) {
			snprintf(err, errlen, "malformed chunk header");
			return -1;
		}
		pos += (size_t)e + 2;
		if (size == 0)
			break;
		if (len - pos < size + 2)
			return 0;
		if (d[pos + size] != '\r' || d[pos + size + 1] != '\n') {
			snprintf(err, errlen, "malformed chunk: data not followed by CRLF");
			return -1;
		}
		if (out)
			cl_buf_append(out, d + pos, size);
		pos += size + 2;
	}
	/* trailer fields, then an empty line */
	for (;;) {
		long e = find_crlf(d + pos, len - pos);
		if (e < 0)
			return 0;
		pos += (size_t)e + 2;
		if (e == 0)
			return 1;
	}
}

int
cl_http_parse_response(const char *data, size_t len, bool eof, struct http_response *out, char *err,
		       size_t errlen)
{
	*out = (struct http_response){0, NULL, NULL, 0, NULL, NULL, NULL};
	for (;;) {
		size_t hlen = find_header_end(data, len);
		if (hlen == 0) {
			if (len > HTTP_MAX_HEADER_BYTES) {
				snprintf(err, errlen, "reply headers larger than %d bytes",
					 HTTP_MAX_HEADER_BYTES);
				return -1;
			}
			if (eof) {
				snprintf(
				    err, errlen,
				    len ? "connection closed in the middle of the reply headers"
					: "the server closed the connection without replying");
				return -1;
			}
			return 0;
		}
		struct head_info h = {0, NULL, NULL, NULL, NULL, false, false, 0};
		if (parse_head(data, hlen, &h, err, errlen) < 0) {
			head_info_free(&h);
			return -1;
		}
		const char *body = data + hlen;
		size_t avail = len - hlen;
		if (h.status < 200) { /* 100 Continue and friends */
			head_info_free(&h);
			data = body;
			len = avail;
			continue;
		}

		struct buf b = BUF_INIT;
		int rc = 1;
		if (h.status == 204 || h.status == 304) {
			/* no body, whatever the headers say */
		} else if (h.chunked) {
			rc = chunked_walk(body, avail, NULL, err, errlen);
			if (rc == 1)
				chunked_walk(body, avail, &b, err, errlen);
			else if (rc == 0 && eof) {
				snprintf(err, errlen,
					 "connection closed in the middle of a chunked reply");
				rc = -1;
			}
		} else if (h.has_length) {
			if (avail >= h.length)
				cl_buf_append(&b, body, h.length);
			else if (eof) {
				snprintf(err, errlen, "reply cut short: got %zu of %zu body bytes",
					 avail, h.length);
				rc = -1;
			} else
				rc = 0;
		} else if (eof) {
			cl_buf_append(&b, body, avail);
		} else {
			rc = 0;
		}
		if (rc != 1) {
			cl_buf_free(&b);
			head_info_free(&h);
			return rc;
		}
		out->status = h.status;
		out->reason = h.reason;
		out->request_id = h.request_id;
		out->content_type = h.content_type;
		out->cmdb_index = h.cmdb_index;
		out->body_len = b.len;
		out->body = cl_buf_detach(&b);
		return 1;
	}
}
