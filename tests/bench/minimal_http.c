/*
 * minimal_http.c — the GET baseline of `make bench`: a plain libevent evhttp server,
 * one thread, that answers every request with the same ~700-byte JSON body (the size
 * of a typical cmdbd node reply) and keeps connections alive. It does no routing, no
 * auth and no JSON work, so its req/s is the ceiling evhttp sets on this machine; the
 * benchmark prints cmdbd's GET rate as a fraction of it.
 *
 *   minimal_http PORT        listens on 127.0.0.1:PORT until SIGINT or SIGTERM
 *
 * Like cmdbd it sets TCP_NODELAY on the listening socket (inherited by accepted ones).
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A node as cmdbd returns it, trimmed to a fixed ~600 bytes. */
static const char BODY[] =
	"{\"id\":\"0e1c313a-6e83-42de-adf8-f0114e33850d\",\"ref\":\"service/checkout\","
	"\"kind\":\"service\",\"name\":\"checkout\",\"attributes\":{\"language\":\"python\","
	"\"port\":8081,\"repo\":\"git@git.shop.example.com:shop/checkout.git\"},"
	"\"labels\":{\"env\":\"prod\",\"lang\":\"python\",\"tier\":\"1\"},\"health\":\"unknown\","
	"\"health_reason\":null,\"health_at\":null,\"orphan\":false,"
	"\"sources\":[\"ansible:lb\",\"fabric:checkout\"],\"version\":2,"
	"\"created_at\":\"2026-11-21T23:37:12.814741Z\",\"updated_at\":\"2026-11-21T23:37:12.992830Z\","
	"\"last_seen_at\":\"2026-11-21T23:37:12.992830Z\",\"edges\":{\"in\":1,\"out\":8},"
	"\"owners\":[{\"ref\":\"team/checkout\",\"attributes\":{\"email\":\"checkout@shop.example.com\","
	"\"chat\":\"#team-checkout\"},\"rule\":\"direct\",\"via\":[\"service/checkout\",\"team/checkout\"]}]}";

static void
answer(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	(void)arg;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evbuffer_add_reference(out, BODY, sizeof(BODY) - 1, NULL, NULL);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *base)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(base);
}

int
main(int argc, char **argv)
{
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	struct event *sigint, *sigterm;
	int one = 1, port = argc == 2 ? atoi(argv[1]) : 0;

	if (port <= 0 || port > 65535) {
		fprintf(stderr, "usage: minimal_http PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	http = evhttp_new(base);
	evhttp_set_gencb(http, answer, NULL);
	sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port);
	if (sock == NULL) {
		fprintf(stderr, "minimal_http: cannot listen on 127.0.0.1:%d\n", port);
		return 1;
	}
	setsockopt(evhttp_bound_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sigint = evsignal_new(base, SIGINT, on_signal, base);
	sigterm = evsignal_new(base, SIGTERM, on_signal, base);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	event_base_dispatch(base);
	event_free(sigint);
	event_free(sigterm);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
