/*
 * http_client.h — one blocking HTTP/1.1 exchange over a fresh TCP
 * connection (the CLI makes a handful of requests per run, so there is
 * no keep-alive). Connect and whole-exchange deadlines are separate.
 */
#ifndef CMDB_CLIENT_HTTP_CLIENT_H
#define CMDB_CLIENT_HTTP_CLIENT_H

#include <stddef.h>

#include "http_parse.h"

/* Replies bigger than this are refused rather than buffered. */
#define HTTP_MAX_REPLY_BYTES ((size_t)512 * 1024 * 1024)

/*
 * Connects to url->host:url->port (trying each address in turn within
 * connect_ms in total), sends request[0..len), and reads the reply within
 * timeout_ms of the connection being made. Blocks. Never raises SIGPIPE.
 * Returns 0 with *resp filled (free with cl_http_response_free), or -1 with a
 * human-readable message in err (refused, timed out, malformed reply ...).
 */
int cl_http_exchange(const struct http_url *url, const char *request, size_t len, int connect_ms,
		     int timeout_ms, struct http_response *resp, char *err, size_t errlen);

#endif
