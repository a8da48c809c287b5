/*
 * log.h — one line per event on stderr, as key=value pairs.
 *
 * Every line starts with ts=<RFC 3339 UTC> level=<level>; the caller supplies the
 * rest ("event=request_done status=200 ..."). Values that may hold spaces or quotes
 * go through log_q(), which quotes and escapes them into a caller buffer.
 * Never blocks on anything but stderr itself; safe to call from any module.
 */
#ifndef CMDB_LOG_H
#define CMDB_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped. Default LOG_INFO. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *s);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/*
 * Writes s into buf as a log value: bare when it is non-empty and has no space,
 * quote, '=' or control character, else double-quoted with \" \\ \n escaped.
 * Truncates to fit; returns buf. s may be NULL ("-").
 */
const char *log_q(const char *s, char *buf, size_t size);

/*
 * Copies a request URI into buf with the value of every query parameter whose name
 * looks like a credential (contains token, secret, passw, pwd, auth, key, credential,
 * session or sig, in any case) replaced by "REDACTED", so a token sent in a URL never
 * reaches the log. The rest is copied as it is (still percent-encoded). Truncates to
 * fit; returns buf. uri may be NULL (""). The Authorization header is never logged.
 */
const char *log_redact_uri(const char *uri, char *buf, size_t size);

#endif
