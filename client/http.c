/*
 * http.c — the CLI's HTTP client on libcurl (see http.h): URL checks with
 * libcurl's own URL parser, request checks, and one easy handle reused for every
 * request of the run so its connection stays open between them.
 */
#include "http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

static CURL *handle; /* the process's one handle; created on first use */

int
cl_http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void
cl_http_global_cleanup(void)
{
	if (handle != NULL)
		curl_easy_cleanup(handle);
	handle = NULL;
	curl_global_cleanup();
}

/* ---------------------------------------------------------------- URLs */

void
cl_http_url_free(struct http_url *u)
{
	if (u == NULL)
		return;
	free(u->base);
	free(u->prefix);
	*u = (struct http_url){NULL, NULL, false};
}

static bool
has_control_or_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

/* A part of h, or NULL when absent (caller frees with curl_free). */
static char *
url_part(CURLU *h, CURLUPart what)
{
	char *v = NULL;

	if (curl_url_get(h, what, &v, 0) != CURLUE_OK)
		return NULL;
	return v;
}

int
cl_http_url_parse(const char *url, struct http_url *out, char *err, size_t errlen)
{
	CURLU *h = NULL;
	char *scheme = NULL, *user = NULL, *query = NULL, *fragment = NULL, *host = NULL;
	char *port = NULL, *path = NULL;
	int rc = -1;

	*out = (struct http_url){NULL, NULL, false};
	if (has_control_or_space(url, strlen(url))) {
		snprintf(err, errlen, "invalid URL: it contains spaces or control characters");
		return -1;
	}
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		snprintf(err, errlen,
			 "invalid URL '%s': expected http://HOST[:PORT][/PREFIX] or https://…",
			 url);
		return -1;
	}
	h = curl_url();
	if (h == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
		snprintf(err, errlen, "invalid URL '%s'", url);
		goto out;
	}
	scheme = url_part(h, CURLUPART_SCHEME);
	user = url_part(h, CURLUPART_USER);
	query = url_part(h, CURLUPART_QUERY);
	fragment = url_part(h, CURLUPART_FRAGMENT);
	host = url_part(h, CURLUPART_HOST);
	port = url_part(h, CURLUPART_PORT);
	path = url_part(h, CURLUPART_PATH);
	if (user != NULL || strchr(url + strcspn(url, ":") + 3, '@') != NULL) {
		snprintf(err, errlen, "invalid URL '%s': credentials belong in CMDB_TOKEN", url);
		goto out;
	}
	if (query != NULL || fragment != NULL || strchr(url, '?') || strchr(url, '#')) {
		snprintf(err, errlen, "invalid URL '%s': no query or fragment allowed", url);
		goto out;
	}
	if (host == NULL || host[0] == '\0') {
		snprintf(err, errlen, "invalid URL '%s': no host", url);
		goto out;
	}
	if (port != NULL) {
		char *end;
		long p = strtol(port, &end, 10);

		if (*end != '\0' || p < 1 || p > 65535) {
			snprintf(err, errlen, "invalid URL '%s': port must be 1-65535", url);
			goto out;
		}
	}
	out->tls = strcasecmp(scheme, "https") == 0;
	{
		struct buf b = BUF_INIT;
		size_t n = path ? strlen(path) : 0;

		cl_buf_printf(&b, "%s://%s", out->tls ? "https" : "http", host);
		if (port != NULL)
			cl_buf_printf(&b, ":%s", port);
		out->base = cl_xstrdup(cl_buf_str(&b));
		cl_buf_free(&b);
		while (n > 0 && path[n - 1] == '/')
			n--;
		out->prefix = cl_xstrndup(path ? path : "", n);
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(user);
	curl_free(query);
	curl_free(fragment);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_url_cleanup(h);
	return rc;
}

/* ---------------------------------------------------------------- requests */

int
cl_http_check_request(const struct http_request *rq, char *err, size_t errlen)
{
	if (has_control_or_space(rq->target, strlen(rq->target))) {
		snprintf(err, errlen, "request target contains spaces or control characters");
		return -1;
	}
	for (const char *const *h = rq->headers; h && h[0]; h += 2) {
		if (h[1] == NULL)
			continue;
		for (const char *p = h[1]; *p; p++)
			if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
				snprintf(err, errlen,
					 "the %s header value contains control characters", h[0]);
				return -1;
			}
	}
	return 0;
}

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

struct exchange {
	struct buf body;
	bool too_big;
	struct http_response *resp;
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct exchange *x = arg;
	size_t len = size * n;

	if (x->body.len + len > HTTP_MAX_REPLY_BYTES) {
		x->too_big = true;
		return 0; /* libcurl stops with CURLE_WRITE_ERROR */
	}
	cl_buf_append(&x->body, data, len);
	return len;
}

/* The value of header line "Name: value\r\n" when its name is name; malloc'd. */
static char *
header_value(const char *line, size_t len, const char *name)
{
	size_t nlen = strlen(name);

	if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
		return NULL;
	line += nlen + 1;
	len -= nlen + 1;
	while (len > 0 && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' ' ||
			   line[len - 1] == '\t'))
		len--;
	return cl_xstrndup(line, len);
}

/* Called once per header line of every reply (1xx interim ones included). */
static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	struct exchange *x = arg;
	struct http_response *r = x->resp;
	size_t len = size * n;
	char *v;

	if (len > 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new status line: forget what an interim reply said. */
		const char *sp = memchr(data, ' ', len), *reason;
		size_t rlen;

		free(r->reason);
		free(r->request_id);
		free(r->content_type);
		free(r->cmdb_index);
		r->reason = r->request_id = r->content_type = r->cmdb_index = NULL;
		if (sp != NULL && (size_t)(sp - data) + 4 < len) {
			reason = sp + 4;
			while (reason < data + len && *reason == ' ')
				reason++;
			rlen = (size_t)(data + len - reason);
			while (rlen > 0 && (reason[rlen - 1] == '\r' || reason[rlen - 1] == '\n'))
				rlen--;
			r->reason = cl_xstrndup(reason, rlen);
		}
	} else if ((v = header_value(data, len, "X-Request-Id")) != NULL) {
		free(r->request_id);
		r->request_id = v;
	} else if ((v = header_value(data, len, "Content-Type")) != NULL) {
		free(r->content_type);
		r->content_type = v;
	} else if ((v = header_value(data, len, "X-Cmdb-Index")) != NULL) {
		free(r->cmdb_index);
		r->cmdb_index = v;
	}
	return len;
}

/* A message for a failed transfer, in the terms the CLI has always used. */
static void
describe_failure(CURL *h, CURLcode rc, const char *errbuf, const struct http_url *url,
		 const struct http_opts *o, const struct exchange *x, char *err, size_t errlen)
{
	const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	long os_errno = 0;

	curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		snprintf(err, errlen, "cannot connect to %s: %s%s%s", url->base,
			 os_errno ? strerror((int)os_errno) : detail, os_errno ? " — " : "",
			 os_errno ? detail : "");
		return;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(err, errlen, "timed out after %d s waiting for %s (%s)",
			 (o->timeout_ms + 999) / 1000, url->base, detail);
		return;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
		snprintf(err, errlen, "the reply was cut short: %s", detail);
		return;
	case CURLE_WRITE_ERROR:
		if (x->too_big) {
			snprintf(err, errlen, "reply larger than %zu MiB",
				 HTTP_MAX_REPLY_BYTES / (1024 * 1024));
			return;
		}
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		snprintf(err, errlen,
			 "TLS with %s failed: %s (is the server's CA in --cacert/CMDB_CACERT?)",
			 url->base, detail);
		return;
	default:
		break;
	}
	snprintf(err, errlen, "request to %s failed: %s", url->base, detail);
}

int
cl_http_perform(const struct http_url *url, const struct http_request *rq,
		const struct http_opts *o, struct http_response *resp, char *err, size_t errlen)
{
	struct exchange x = {BUF_INIT, false, resp};
	struct curl_slist *hdrs = NULL;
	struct buf full = BUF_INIT, line = BUF_INIT;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	long status = 0;
	int ret = -1;

	*resp = (struct http_response){0, NULL, NULL, 0, NULL, NULL, NULL};
	if (cl_http_check_request(rq, err, errlen) < 0)
		return -1;
	if (handle == NULL && (handle = curl_easy_init()) == NULL) {
		snprintf(err, errlen, "cannot start libcurl (out of memory?)");
		return -1;
	}
	curl_easy_reset(handle); /* options only: the connection cache stays */
	cl_buf_printf(&full, "%s%s%s", url->base, url->prefix, rq->target);
	for (const char *const *h = rq->headers; h && h[0]; h += 2) {
		if (h[1] == NULL)
			continue;
		cl_buf_reset(&line);
		cl_buf_printf(&line, "%s: %s", h[0], h[1]);
		hdrs = curl_slist_append(hdrs, cl_buf_str(&line));
	}
	/* No "Expect: 100-continue" round trip before a body. */
	hdrs = curl_slist_append(hdrs, "Expect:");

	curl_easy_setopt(handle, CURLOPT_URL, cl_buf_str(&full));
	curl_easy_setopt(handle, CURLOPT_PATH_AS_IS, 1L); /* the target is already encoded */
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(handle, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_ms);
	curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
	curl_easy_setopt(handle, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->cacert != NULL)
		curl_easy_setopt(handle, CURLOPT_CAINFO, o->cacert);
	curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(handle, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(handle, CURLOPT_HEADERDATA, &x);
	if (strcmp(rq->method, "GET") == 0) {
		curl_easy_setopt(handle, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(rq->method, "HEAD") == 0) {
		curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
	} else {
		curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, rq->method);
		if (rq->body_len > 0 || rq->send_body) {
			curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)rq->body_len);
			curl_easy_setopt(handle, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
		}
	}

	rc = curl_easy_perform(handle);
	if (rc != CURLE_OK) {
		describe_failure(handle, rc, errbuf, url, o, &x, err, errlen);
		cl_http_response_free(resp);
		goto out;
	}
	curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
	resp->status = (int)status;
	resp->body_len = x.body.len;
	resp->body = cl_xstrndup(x.body.data ? x.body.data : "", x.body.len);
	ret = 0;
out:
	/* The handle keeps pointers to these until the next reset: clear them now. */
	curl_easy_setopt(handle, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdrs);
	cl_buf_free(&x.body);
	cl_buf_free(&full);
	cl_buf_free(&line);
	return ret;
}
