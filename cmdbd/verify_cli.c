/*
 * verify_cli.c — `cmdbd verify`: asks a running server to compare its in-memory
 * map with the database (GET /v1/admin/verify, verify.h) and prints the report.
 *
 * Only the server knows its memory, so the command is an HTTP client of it (a
 * libevent request on a loop of its own), not a second reader of the database.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "verify.h"

#define VERIFY_CLI_TIMEOUT_S 600

struct reply {
	struct event_base *base;
	int status; /* 0: no answer */
	char *body;
};

static void
usage(void)
{
	fputs("usage: cmdbd verify [--url URL] [--token-file FILE] [--limit N] [--repair]\n"
	      "  URL: $CMDB_URL, else http:// and the serve address (--listen, $CMDB_LISTEN)\n"
	      "  token (admin scope): $CMDB_TOKEN, else FILE (default .cmdb/admin.token)\n"
	      "  exit: 0 the map equals the database, 1 it differs, 2 usage, 3 refused "
	      "(401/403), 4 other failure\n",
	      stderr);
}

/* The first line of a file, or NULL. */
static char *
read_token(const char *path)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return NULL;
	if (fgets(line, sizeof(line), f) == NULL) {
		fclose(f);
		return NULL;
	}
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	return line[0] ? strdup(line) : NULL;
}

static void
request_done(struct evhttp_request *req, void *arg)
{
	struct reply *rep = arg;
	struct evbuffer *in;
	size_t n;

	/* One request: the loop ends with it (the connection would keep it alive). */
	event_base_loopexit(rep->base, NULL);
	if (req == NULL || evhttp_request_get_response_code(req) == 0)
		return; /* no answer: status stays 0 */
	rep->status = evhttp_request_get_response_code(req);
	in = evhttp_request_get_input_buffer(req);
	n = evbuffer_get_length(in);
	if ((rep->body = malloc(n + 1)) != NULL) {
		evbuffer_remove(in, rep->body, n);
		rep->body[n] = '\0';
	}
}

/* GET url with the token; the reply in *rep. -1 with a message on a bad URL. */
static int
get(const char *url, const char *token, struct reply *rep)
{
	struct evhttp_uri *uri = evhttp_uri_parse(url);
	struct event_base *base = NULL;
	struct evhttp_connection *conn = NULL;
	struct evhttp_request *req;
	char auth[600], target[2048], hostport[300];
	const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
	int port = uri ? evhttp_uri_get_port(uri) : -1, rc = -1;

	if (uri == NULL || host == NULL || evhttp_uri_get_scheme(uri) == NULL ||
	    strcmp(evhttp_uri_get_scheme(uri), "http") != 0) {
		fprintf(stderr, "cmdbd verify: %s is not an http:// URL\n", url);
		goto out;
	}
	if (port < 0)
		port = 80;
	snprintf(target, sizeof(target), "%s%s%s",
		 evhttp_uri_get_path(uri) ? evhttp_uri_get_path(uri) : "",
		 evhttp_uri_get_query(uri) ? "?" : "",
		 evhttp_uri_get_query(uri) ? evhttp_uri_get_query(uri) : "");
	snprintf(hostport, sizeof(hostport), "%s:%d", host, port);
	snprintf(auth, sizeof(auth), "Bearer %s", token);
	if ((rep->base = base = event_base_new()) == NULL ||
	    (conn = evhttp_connection_base_new(base, NULL, host, (unsigned short)port)) == NULL ||
	    (req = evhttp_request_new(request_done, rep)) == NULL) {
		fprintf(stderr, "cmdbd verify: out of memory\n");
		goto out;
	}
	evhttp_connection_set_timeout(conn, VERIFY_CLI_TIMEOUT_S);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host", hostport);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Authorization", auth);
	if (evhttp_make_request(conn, req, EVHTTP_REQ_GET, target) != 0) {
		fprintf(stderr, "cmdbd verify: cannot send the request to %s\n", hostport);
		goto out;
	}
	event_base_dispatch(base);
	rc = 0;
out:
	if (conn != NULL)
		evhttp_connection_free(conn);
	if (base != NULL)
		event_base_free(base);
	if (uri != NULL)
		evhttp_uri_free(uri);
	return rc;
}

int
verify_cli(int argc, char **argv, const char *listen)
{
	const char *url = getenv("CMDB_URL"), *token_file = ".cmdb/admin.token";
	const char *env_token = getenv("CMDB_TOKEN");
	char *token = NULL, full[2048], base_url[600];
	struct reply rep = {NULL, 0, NULL};
	json_t *report;
	long limit = 0;
	bool repair = false;
	size_t n;
	int rc = 2;

	for (int i = 0; i < argc; i++) {
		char *end;

		if (strcmp(argv[i], "--repair") == 0) {
			repair = true;
		} else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
			url = argv[++i];
		} else if (strcmp(argv[i], "--token-file") == 0 && i + 1 < argc) {
			token_file = argv[++i];
		} else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
			errno = 0;
			limit = strtol(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || limit < 1 || limit > 10000) {
				fprintf(stderr, "cmdbd verify: --limit must be 1..10000\n");
				return 2;
			}
		} else {
			fprintf(stderr, "cmdbd verify: unknown argument %s\n", argv[i]);
			usage();
			return 2;
		}
	}
	if (url == NULL || url[0] == '\0') {
		snprintf(base_url, sizeof(base_url), "http://%s", listen);
		url = base_url;
	}
	token = env_token != NULL && env_token[0] ? strdup(env_token) : read_token(token_file);
	if (token == NULL) {
		fprintf(stderr, "cmdbd verify: no token: set CMDB_TOKEN or --token-file (admin "
				"scope)\n");
		return 2;
	}
	/* The server's base URL: no query, no trailing slash (that would make "//v1"). */
	n = strcspn(url, "?");
	while (n > 0 && url[n - 1] == '/')
		n--;
	snprintf(full, sizeof(full), "%.*s/v1/admin/verify?repair=%s", (int)n, url,
		 repair ? "true" : "false");
	if (limit > 0)
		snprintf(full + strlen(full), sizeof(full) - strlen(full), "&limit=%ld", limit);
	if (get(full, token, &rep) != 0) {
		rc = 2;
		goto out;
	}
	if (rep.status == 0) {
		fprintf(stderr, "cmdbd verify: no answer from %s\n", url);
		rc = 4;
		goto out;
	}
	if (rep.status != 200) {
		fprintf(stderr, "cmdbd verify: %d: %s\n", rep.status, rep.body ? rep.body : "");
		rc = rep.status == 401 || rep.status == 403 ? 3 : 4;
		goto out;
	}
	report = json_loads(rep.body ? rep.body : "", 0, NULL);
	if (report == NULL) {
		fprintf(stderr, "cmdbd verify: the reply is not JSON\n");
		rc = 4;
		goto out;
	}
	json_dumpf(report, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	rc = json_is_true(json_object_get(report, "ok")) ? 0 : 1;
	json_decref(report);
out:
	free(rep.body);
	free(token);
	return rc;
}
