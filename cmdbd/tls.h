/*
 * tls.h — HTTPS for the HTTP front: the server's TLS context and one TLS
 * bufferevent per connection (libevent's OpenSSL glue over OpenSSL 3).
 *
 * struct tls owns the SSL_CTX made from --tls-cert and --tls-key: TLS 1.2 and 1.3
 * only, ECDHE key exchange with AEAD ciphers for TLS 1.2 (OpenSSL's defaults for
 * 1.3), no compression, no renegotiation, no session tickets (TLS 1.2 sessions
 * resume from the server's cache; keys never outlive the process). The files are
 * read and checked when the context is made — the key must match the certificate
 * and must not be encrypted — and again by tls_reload() (SIGHUP), which keeps the
 * current context when the new files are bad. Connections hold their own reference
 * to the context they were accepted with, so a reload never disturbs them.
 *
 * Everything runs on the event loop; only tls_new() and tls_reload() read files.
 */
#ifndef CMDB_TLS_H
#define CMDB_TLS_H

#include "attrs.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

struct tls;

/*
 * Loads the certificate chain (PEM, the server's certificate first) and its
 * private key (PEM, unencrypted). NULL with the reason in err (naming the file)
 * when a file is missing or unreadable, not PEM, or the key does not match.
 */
CMDB_MUST_USE struct tls *tls_new(const char *cert_file, const char *key_file, char *err,
				  size_t errlen);
void tls_free(struct tls *t); /* NULL-safe; open connections keep their context */

/* Reads the files again; 0, or -1 with the reason in err and the old context kept. */
CMDB_MUST_USE int tls_reload(struct tls *t, char *err, size_t errlen);

/*
 * The certificate in use, for the log: its subject and expiry as a log fragment
 * ("subject=... not_after=2027-01-31T12:00:00Z"). *expired is set when it is no
 * longer (or not yet) valid.
 */
void tls_describe(const struct tls *t, char *buf, size_t size, bool *expired);

/*
 * A new server-side TLS bufferevent without a socket yet (evhttp sets it), in the
 * accepting state, for evhttp_set_bevcb. A client's close without close_notify
 * counts as an ordinary end of file (HTTP/1.1 messages carry their own length).
 * NULL when out of memory.
 */
struct bufferevent *tls_bufferevent_new(struct tls *t, struct event_base *base);

/* True when bev is a TLS bufferevent (one tls_bufferevent_new() made). */
bool tls_is_tls(struct bufferevent *bev);

enum tls_close {
	TLS_CLOSE_OK,	     /* not TLS, or the handshake had finished */
	TLS_CLOSE_EARLY,     /* closed before the handshake finished, no error (a probe) */
	TLS_CLOSE_FAILED,    /* the handshake failed */
	TLS_CLOSE_PLAIN_HTTP /* ... because the client spoke plain HTTP */
};

/*
 * For a connection being closed: did its handshake fail, and why (OpenSSL's
 * reason, e.g. "unsupported protocol", into reason). Consumes the errors the
 * bufferevent recorded.
 */
enum tls_close tls_close_reason(struct bufferevent *bev, char *reason, size_t size);

#endif
