/*
 * loadgen.c — the HTTP load tool of `make bench`: keep-alive clients over raw sockets
 * on one libevent loop, so that the client is not what limits the figures.
 *
 *   loadgen post [opts] FILE   POST every body in FILE once to PATH (default
 *                              /v1/manifests); FILE holds records "<length>\n<bytes>".
 *   loadgen get  [opts] FILE   GET the paths in FILE (one a line), cycling through them,
 *                              for -n requests in all or for -d seconds.
 *   loadgen ready [opts]       poll GET /readyz until it answers 200; print the
 *                              CLOCK_REALTIME nanoseconds of that moment.
 *
 * Options: -u http://HOST:PORT (default http://127.0.0.1:8080), -t TOKEN (bearer),
 * -c CLIENTS (concurrent connections, default 8), -n COUNT, -d SECONDS, -p PATH,
 * -l LABEL (echoed in the output), -T SECONDS (ready: give up after, default 60).
 *
 * Output (stdout, one JSON object): label, count, errors, elapsed_s, rate, p50_ms,
 * p90_ms, p99_ms, max_ms, bytes_in. A reply counts as an error unless its status is
 * 2xx; the first few are printed on stderr with their bodies. Exit 0 when every
 * request was answered (errors included), 1 when the tool itself failed.
 *
 * Only what cmdbd and evhttp send is understood: HTTP/1.1 replies with Content-Length
 * (a reply without one is an error). A connection the server closes between requests
 * (keep-alive race) is reopened and the request sent again, once.
 */
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 256
#define MAX_SHOWN_ERRORS 5
#define MAX_CONN_ERRORS 1000 /* then the server is gone: give up */
#define READ_CHUNK 65536

/* One request's body (post) or path (get): a slice of the input file. */
struct item {
	const char *data;
	size_t len;
};

struct growbuf {
	char *p;
	size_t len, cap;
};

struct run;

struct conn {
	struct run *run;
	int fd;
	struct event *rev, *wev;
	struct growbuf out;  /* the request being written */
	size_t out_off;
	struct growbuf in;   /* bytes of the reply read so far */
	size_t item;         /* index of the request in flight */
	double started;      /* when it was sent (monotonic seconds) */
	bool busy;           /* a request is in flight */
	bool reused;         /* the connection has answered before */
	bool retried;        /* the request in flight is a resend */
};

struct run {
	struct event_base *base;
	struct addrinfo *addr;
	const char *hostport;
	const char *token;
	const char *path;    /* post: the target path */
	bool post;
	struct item *items;
	size_t nitems;
	size_t total;        /* requests to make (0 with a deadline: until it passes) */
	double deadline;     /* monotonic seconds, 0 = none */
	size_t next;         /* requests issued */
	size_t done, errors;
	double *lat;         /* seconds, one per completed request */
	size_t lat_cap;
	unsigned long long bytes_in;
	double t0, t_end;
	int active;          /* connections still running */
	bool failed;
};

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL) {
		perror("loadgen: realloc");
		exit(1);
	}
	return q;
}

static void
gb_reserve(struct growbuf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + extra + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

static void
gb_add(struct growbuf *b, const char *s, size_t n)
{
	gb_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
gb_consume(struct growbuf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	if (b->p != NULL)
		b->p[b->len] = '\0';
}

/* --- input files --------------------------------------------------------------------- */

static char *
read_file(const char *name, size_t *len)
{
	FILE *f = fopen(name, "rb");
	struct growbuf b = {0};
	size_t n;

	if (f == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", name, strerror(errno));
		exit(1);
	}
	do {
		gb_reserve(&b, READ_CHUNK);
		n = fread(b.p + b.len, 1, READ_CHUNK, f);
		b.len += n;
	} while (n > 0);
	fclose(f);
	*len = b.len;
	return b.p;
}

static void
add_item(struct run *r, size_t *cap, const char *data, size_t len)
{
	if (r->nitems == *cap) {
		*cap = *cap ? *cap * 2 : 1024;
		r->items = xrealloc(r->items, *cap * sizeof(*r->items));
	}
	r->items[r->nitems].data = data;
	r->items[r->nitems].len = len;
	r->nitems++;
}

/* Records "<decimal length>\n<that many bytes>", back to back. */
static void
parse_bodies(struct run *r, const char *buf, size_t len)
{
	size_t pos = 0, cap = 0;

	while (pos < len) {
		char *end;
		unsigned long long n = strtoull(buf + pos, &end, 10);

		if (end == buf + pos || *end != '\n' || (size_t)(end + 1 - buf) + n > len) {
			fprintf(stderr, "loadgen: malformed record at byte %zu\n", pos);
			exit(1);
		}
		add_item(r, &cap, end + 1, (size_t)n);
		pos = (size_t)(end + 1 - buf) + (size_t)n;
	}
}

/* One path a line; blank lines are skipped. */
static void
parse_paths(struct run *r, char *buf, size_t len)
{
	size_t cap = 0;
	char *p = buf, *end = buf + len;

	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *stop = nl ? nl : end;

		if (stop > p)
			add_item(r, &cap, p, (size_t)(stop - p));
		if (nl)
			*nl = '\0';
		p = stop + 1;
	}
}

/* --- requests and replies --------------------------------------------------------------- */

static void conn_start(struct conn *c);
static void conn_next(struct conn *c);

static void
build_request(struct conn *c)
{
	const struct run *r = c->run;
	const struct item *it = &r->items[c->item];
	char head[1024];
	int n;

	c->out.len = 0;
	c->out_off = 0;
	if (r->post)
		n = snprintf(head, sizeof(head),
			     "POST %s HTTP/1.1\r\nHost: %s\r\n%s%s%sContent-Type: application/json\r\n"
			     "Content-Length: %zu\r\n\r\n",
			     r->path, r->hostport, r->token ? "Authorization: Bearer " : "",
			     r->token ? r->token : "", r->token ? "\r\n" : "", it->len);
	else
		n = snprintf(head, sizeof(head), "GET %.*s HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n",
			     (int)it->len, it->data, r->hostport,
			     r->token ? "Authorization: Bearer " : "", r->token ? r->token : "",
			     r->token ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		fprintf(stderr, "loadgen: request head too long\n");
		exit(1);
	}
	gb_add(&c->out, head, (size_t)n);
	if (r->post)
		gb_add(&c->out, it->data, it->len);
}

static void
record(struct conn *c, int status, const char *body, size_t blen)
{
	struct run *r = c->run;

	if (r->done == r->lat_cap) {
		r->lat_cap = r->lat_cap ? r->lat_cap * 2 : 4096;
		r->lat = xrealloc(r->lat, r->lat_cap * sizeof(*r->lat));
	}
	r->lat[r->done++] = now_mono() - c->started;
	if (status >= 200 && status < 300)
		return;
	if (r->errors++ < MAX_SHOWN_ERRORS)
		fprintf(stderr, "loadgen: request %zu: status %d: %.*s\n", c->item, status,
			(int)(blen > 400 ? 400 : blen), body ? body : "");
}

/* Finds the value of header NAME in the head [h, h+len); NULL if absent. */
static const char *
find_header(const char *h, size_t len, const char *name)
{
	size_t nl = strlen(name);
	const char *p = memchr(h, '\n', len), *end = h + len;

	while (p != NULL && p + 1 + nl + 1 < end) {
		p++;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return p;
		}
		p = memchr(p, '\n', (size_t)(end - p));
	}
	return NULL;
}

/*
 * Parses a complete reply at the start of c->in. Returns its total length, 0 while
 * incomplete, -1 when it cannot be understood. *status, *close_after and the body
 * slice are set when a length is returned.
 */
static long
parse_reply(struct conn *c, int *status, bool *close_after, const char **body, size_t *blen)
{
	const char *p = c->in.p, *eoh, *cl, *conn;
	size_t hlen;
	char *end;

	if (c->in.len < 12)
		return 0;
	eoh = strstr(p, "\r\n\r\n");
	if (eoh == NULL)
		return c->in.len > 65536 ? -1 : 0;
	hlen = (size_t)(eoh - p) + 4;
	if (strncmp(p, "HTTP/1.", 7) != 0)
		return -1;
	*status = atoi(p + 9);
	cl = find_header(p, hlen, "Content-Length");
	if (cl == NULL)
		return -1;
	unsigned long long n = strtoull(cl, &end, 10);
	if (end == cl)
		return -1;
	if (c->in.len < hlen + n)
		return 0;
	conn = find_header(p, hlen, "Connection");
	*close_after = (conn != NULL && strncasecmp(conn, "close", 5) == 0) ||
		       strncmp(p, "HTTP/1.0", 8) == 0;
	*body = p + hlen;
	*blen = (size_t)n;
	return (long)(hlen + n);
}

static void
conn_close(struct conn *c)
{
	if (c->rev) {
		event_free(c->rev);
		c->rev = NULL;
	}
	if (c->wev) {
		event_free(c->wev);
		c->wev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->in.len = 0;
	c->reused = false;
}

static void
conn_finish(struct conn *c)
{
	struct run *r = c->run;

	conn_close(c);
	if (--r->active == 0)
		event_base_loopbreak(r->base);
}

static void
conn_fail(struct conn *c, const char *what)
{
	struct run *r = c->run;

	/* The server closed a kept-alive connection before our request reached it. */
	if (c->busy && c->reused && !c->retried && c->in.len == 0) {
		conn_close(c);
		c->retried = true;
		conn_start(c);
		return;
	}
	if (r->errors < MAX_SHOWN_ERRORS)
		fprintf(stderr, "loadgen: connection %s (request %zu)\n", what, c->item);
	if (c->busy) {
		record(c, 0, what, strlen(what));
		c->busy = false;
	}
	if (r->errors > MAX_CONN_ERRORS) {
		r->failed = true;
		conn_finish(c);
		return;
	}
	conn_close(c);
	conn_next(c);
}

static void
write_some(struct conn *c)
{
	while (c->out_off < c->out.len) {
		/* MSG_NOSIGNAL: a connection the server closed is an error, not SIGPIPE. */
		ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			event_add(c->wev, NULL);
			return;
		}
		if (n <= 0) {
			conn_fail(c, "write failed");
			return;
		}
		c->out_off += (size_t)n;
	}
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	write_some(arg);
}

/* A whole reply is in: record it, then send the next request or reconnect. */
static void
take_reply(struct conn *c)
{
	int status = 0;
	bool close_after = false;
	const char *body = NULL;
	size_t blen = 0;
	long n = parse_reply(c, &status, &close_after, &body, &blen);

	if (n == 0)
		return;
	if (n < 0) {
		c->retried = true; /* not a keep-alive race: do not resend */
		conn_fail(c, "sent a reply loadgen cannot parse");
		return;
	}
	c->run->bytes_in += (unsigned long long)n;
	record(c, status, body, blen);
	c->busy = false;
	gb_consume(&c->in, (size_t)n);
	c->reused = true;
	if (close_after)
		conn_close(c);
	conn_next(c);
}

/* One read per readiness event (level-triggered): no extra read just to see EAGAIN. */
static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	(void)what;
	gb_reserve(&c->in, READ_CHUNK);
	do
		n = read(fd, c->in.p + c->in.len, READ_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		conn_fail(c, n == 0 ? "closed by the server" : "read failed");
		return;
	}
	c->in.len += (size_t)n;
	c->in.p[c->in.len] = '\0';
	if (c->busy)
		take_reply(c);
}

static int
open_socket(const struct run *r)
{
	int fd = socket(r->addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, r->addr->ai_addr, r->addr->ai_addrlen) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Opens a connection if there is none, then sends the request c->item. */
static void
conn_start(struct conn *c)
{
	struct run *r = c->run;

	if (c->fd < 0) {
		c->fd = open_socket(r);
		if (c->fd < 0) {
			perror("loadgen: connect");
			r->failed = true;
			conn_finish(c);
			return;
		}
		c->rev = event_new(r->base, c->fd, EV_READ | EV_PERSIST, on_read, c);
		c->wev = event_new(r->base, c->fd, EV_WRITE, on_write, c);
		event_add(c->rev, NULL);
	}
	c->busy = true;
	build_request(c);
	c->started = now_mono();
	write_some(c);
}

static bool
more_to_do(const struct run *r)
{
	if (r->failed)
		return false;
	if (r->deadline > 0)
		return now_mono() < r->deadline;
	return r->next < r->total;
}

static void
conn_next(struct conn *c)
{
	struct run *r = c->run;

	if (!more_to_do(r)) {
		r->t_end = now_mono();
		conn_finish(c);
		return;
	}
	c->item = r->next++ % r->nitems;
	c->retried = false;
	conn_start(c);
}

/* --- results ------------------------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
percentile_ms(const double *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return sorted[i] * 1000.0;
}

static void
report(struct run *r, const char *label)
{
	double elapsed = r->t_end - r->t0;

	qsort(r->lat, r->done, sizeof(*r->lat), cmp_double);
	printf("{\"label\":\"%s\",\"count\":%zu,\"errors\":%zu,\"elapsed_s\":%.4f,"
	       "\"rate\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
	       "\"bytes_in\":%llu}\n",
	       label, r->done, r->errors, elapsed, elapsed > 0 ? (double)r->done / elapsed : 0.0,
	       percentile_ms(r->lat, r->done, 0.50), percentile_ms(r->lat, r->done, 0.90),
	       percentile_ms(r->lat, r->done, 0.99), percentile_ms(r->lat, r->done, 1.0),
	       r->bytes_in);
}

/* --- modes --------------------------------------------------------------------------------- */

static int
run_load(struct run *r, int clients, const char *label)
{
	struct conn *conns = calloc((size_t)clients, sizeof(*conns));

	if (conns == NULL || r->nitems == 0) {
		fprintf(stderr, "loadgen: nothing to send\n");
		return 1;
	}
	r->base = event_base_new();
	r->t0 = r->t_end = now_mono();
	if (r->deadline > 0)
		r->deadline += r->t0;
	for (int i = 0; i < clients; i++) {
		conns[i].run = r;
		conns[i].fd = -1;
		r->active++;
	}
	for (int i = 0; i < clients; i++)
		conn_next(&conns[i]);
	if (r->active > 0)
		event_base_dispatch(r->base);
	report(r, label);
	for (int i = 0; i < clients; i++) {
		conn_close(&conns[i]);
		free(conns[i].out.p);
		free(conns[i].in.p);
	}
	free(conns);
	event_base_free(r->base);
	return r->failed ? 1 : 0;
}

/* Blocking GET /readyz until 200; prints the wall-clock nanoseconds it first answered. */
static int
run_ready(struct run *r, double timeout)
{
	char req[512];
	double until = now_mono() + timeout;

	snprintf(req, sizeof(req), "GET /readyz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		 r->hostport);
	while (now_mono() < until) {
		int fd = socket(r->addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		char buf[64] = {0};
		struct timespec ts;

		if (fd >= 0 && connect(fd, r->addr->ai_addr, r->addr->ai_addrlen) == 0 &&
		    write(fd, req, strlen(req)) == (ssize_t)strlen(req) &&
		    read(fd, buf, sizeof(buf) - 1) >= 12 && strncmp(buf + 9, "200", 3) == 0) {
			clock_gettime(CLOCK_REALTIME, &ts);
			close(fd);
			printf("%lld\n", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
			return 0;
		}
		if (fd >= 0)
			close(fd);
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
	}
	fprintf(stderr, "loadgen: %s not ready after %.0f s\n", r->hostport, timeout);
	return 1;
}

static int
resolve(struct run *r, const char *url)
{
	static char host[256], hostport[300];
	const char *hp = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
	const char *colon = strrchr(hp, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};

	if (colon == NULL || (size_t)(colon - hp) >= sizeof(host)) {
		fprintf(stderr, "loadgen: -u wants http://HOST:PORT, not %s\n", url);
		return -1;
	}
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	snprintf(hostport, sizeof(hostport), "%s", hp);
	hostport[strcspn(hostport, "/")] = '\0';
	char port[16];
	snprintf(port, sizeof(port), "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
	if (getaddrinfo(host, port, &hints, &r->addr) != 0) {
		fprintf(stderr, "loadgen: cannot resolve %s\n", url);
		return -1;
	}
	r->hostport = hostport;
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: loadgen post|get [-u URL] [-t TOKEN] [-c CLIENTS] [-n COUNT] "
			"[-d SECONDS] [-p PATH] [-l LABEL] FILE\n"
			"       loadgen ready [-u URL] [-T SECONDS]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct run r = {.path = "/v1/manifests"};
	const char *url = "http://127.0.0.1:8080", *label = "load";
	int clients = 8, opt;
	double timeout = 60;
	char *buf;
	size_t len;

	if (argc < 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	const char *mode = argv[1];
	optind = 2;
	while ((opt = getopt(argc, argv, "u:t:c:n:d:p:l:T:")) != -1) {
		switch (opt) {
		case 'u': url = optarg; break;
		case 't': r.token = optarg; break;
		case 'c': clients = atoi(optarg); break;
		case 'n': r.total = strtoull(optarg, NULL, 10); break;
		case 'd': r.deadline = atof(optarg); break;
		case 'p': r.path = optarg; break;
		case 'l': label = optarg; break;
		case 'T': timeout = atof(optarg); break;
		default: usage();
		}
	}
	if (clients < 1 || clients > MAX_CLIENTS || resolve(&r, url) != 0)
		usage();
	if (strcmp(mode, "ready") == 0)
		return run_ready(&r, timeout);
	if (optind != argc - 1 || (strcmp(mode, "post") != 0 && strcmp(mode, "get") != 0))
		usage();
	buf = read_file(argv[optind], &len);
	r.post = strcmp(mode, "post") == 0;
	if (r.post) {
		parse_bodies(&r, buf, len);
		if (r.total == 0 && r.deadline <= 0)
			r.total = r.nitems; /* each body exactly once */
	} else {
		parse_paths(&r, buf, len);
		if (r.total == 0 && r.deadline <= 0)
			r.total = r.nitems;
	}
	int rc = run_load(&r, clients, label);
	free(r.items);
	free(r.lat);
	free(buf);
	freeaddrinfo(r.addr);
	return rc;
}
