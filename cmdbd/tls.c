/*
 * tls.c — the server's TLS context and its connections' TLS bufferevents (see
 * tls.h). Policy lives in make_ctx(); everything else is plumbing.
 */
#include "tls.h"

#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/*
 * TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher, for ECDSA and RSA
 * certificates — Mozilla's "intermediate" list without the finite-field DHE
 * suites (they need DH parameters and are slow). No CBC, no RSA key exchange, no
 * SHA-1 MACs. TLS 1.3 suites are OpenSSL's defaults (all AEAD).
 */
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls {
	SSL_CTX *ctx; /* the current context; each SSL holds its own reference */
	char *cert_file;
	char *key_file;
};

/* ---------------------------------------------------------------- errors */

/* OpenSSL's first (innermost) queued reason, e.g. "no start line"; clears the queue. */
static const char *
openssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (r != NULL)
		snprintf(buf, size, "%s", r);
	else if (e != 0)
		snprintf(buf, size, "OpenSSL error %lx", e);
	else
		snprintf(buf, size, "unknown error");
	ERR_clear_error();
	return buf;
}

/* A clear message for a file OpenSSL would only call "system lib". */
static int
check_readable(const char *path, const char *what, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "cannot read the %s file %s: %s", what, path,
			 strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

/* The key must not ask for a passphrase: a server has no one to ask. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

/* ---------------------------------------------------------------- the context */

static SSL_CTX *
make_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	char why[256];

	if (check_readable(cert, "certificate", err, errlen) != 0 ||
	    check_readable(key, "private key", err, errlen) != 0)
		return NULL;
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		snprintf(err, errlen, "cannot make a TLS context: %s",
			 openssl_reason(why, sizeof(why)));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		snprintf(err, errlen, "cannot set the TLS policy: %s",
			 openssl_reason(why, sizeof(why)));
		goto fail;
	}
	SSL_CTX_set_options(ctx,
			    SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
	/* Idle keep-alive connections give their read and write buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"cmdbd", 5);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "cannot load the certificate chain from %s: %s", cert,
			 openssl_reason(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();

		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, errlen,
				 "the private key in %s does not match the certificate in %s", key,
				 cert);
		} else {
			snprintf(err, errlen,
				 "cannot load the private key from %s: %s (it must be PEM and not "
				 "encrypted)",
				 key, openssl_reason(why, sizeof(why)));
		}
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "the private key in %s does not match the certificate in %s",
			 key, cert);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls *
tls_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	struct tls *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->cert_file = strdup(cert_file);
	t->key_file = strdup(key_file);
	if (t->cert_file == NULL || t->key_file == NULL) {
		snprintf(err, errlen, "out of memory");
		tls_free(t);
		return NULL;
	}
	t->ctx = make_ctx(cert_file, key_file, err, errlen);
	if (t->ctx == NULL) {
		tls_free(t);
		return NULL;
	}
	return t;
}

void
tls_free(struct tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}

int
tls_reload(struct tls *t, char *err, size_t errlen)
{
	SSL_CTX *ctx = make_ctx(t->cert_file, t->key_file, err, errlen);

	if (ctx == NULL)
		return -1;
	SSL_CTX_free(t->ctx); /* connections accepted with it keep it alive */
	t->ctx = ctx;
	return 0;
}

static void
format_time(const ASN1_TIME *at, char *buf, size_t size)
{
	struct tm tm;

	if (at == NULL || ASN1_TIME_to_tm(at, &tm) != 1 ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "-");
}

void
tls_describe(const struct tls *t, char *buf, size_t size, bool *expired)
{
	X509 *x = SSL_CTX_get0_certificate(t->ctx);
	char subject[256] = "-", q[300], until[40];

	*expired = false;
	if (x == NULL) {
		snprintf(buf, size, "subject=-");
		return;
	}
	X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
	format_time(X509_get0_notAfter(x), until, sizeof(until));
	*expired = X509_cmp_current_time(X509_get0_notAfter(x)) <= 0 ||
		   X509_cmp_current_time(X509_get0_notBefore(x)) >= 0;
	snprintf(buf, size, "subject=%s not_after=%s", log_q(subject, q, sizeof(q)), until);
}

/* ---------------------------------------------------------------- connections */

struct bufferevent *
tls_bufferevent_new(struct tls *t, struct event_base *base)
{
	SSL *ssl = SSL_new(t->ctx);
	struct bufferevent *bev;

	if (ssl == NULL) {
		ERR_clear_error();
		return NULL;
	}
	/* With BEV_OPT_CLOSE_ON_FREE the bufferevent owns the SSL, failure included. */
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		ERR_clear_error();
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

bool
tls_is_tls(struct bufferevent *bev)
{
	return bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL;
}

enum tls_close
tls_close_reason(struct bufferevent *bev, char *reason, size_t size)
{
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	unsigned long e, first = 0;
	const char *r;

	if (size > 0)
		reason[0] = '\0';
	if (ssl == NULL)
		return TLS_CLOSE_OK;
	/*
	 * libevent keeps up to three codes per connection, newest returned first:
	 * SSL_get_error()'s code (library 0), then OpenSSL's queue, innermost first.
	 */
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (ERR_GET_LIB(e) != 0)
			first = e;
	if (SSL_is_init_finished(ssl))
		return TLS_CLOSE_OK;
	if (first == 0) {
		snprintf(reason, size, "closed before the handshake finished");
		return TLS_CLOSE_EARLY;
	}
	r = ERR_reason_error_string(first);
	if (r != NULL)
		snprintf(reason, size, "%s", r);
	else
		snprintf(reason, size, "OpenSSL error %lx", first);
	if (ERR_GET_LIB(first) == ERR_LIB_SSL && ERR_GET_REASON(first) == SSL_R_HTTP_REQUEST)
		return TLS_CLOSE_PLAIN_HTTP;
	return TLS_CLOSE_FAILED;
}
