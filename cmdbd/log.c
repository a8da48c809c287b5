/*
 * log.c — key=value event lines on stderr (see log.h).
 */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_set_level(enum log_level level)
{
	min_level = level;
}

int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	return -1;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level < min_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, level_names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs of the whole line keeps concurrent writers from interleaving. */
	fprintf(stderr, "%s\n", line);
}

const char *
log_q(const char *s, char *buf, size_t size)
{
	size_t o = 0;
	int bare = 1;

	if (size == 0)
		return buf;
	if (s == NULL) {
		snprintf(buf, size, "-");
		return buf;
	}
	if (*s == '\0')
		bare = 0;
	for (const char *p = s; *p && bare; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20 || *p == 0x7f)
			bare = 0;
	if (bare) {
		snprintf(buf, size, "%s", s);
		return buf;
	}
	if (size < 3) {
		buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = s; *p && o + 3 < size; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			buf[o++] = '?';
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* Does the query parameter name name[0..len) look like a credential? */
static int
secret_name(const char *name, size_t len)
{
	static const char *const words[] = {"token", "secret",	   "passw",   "pwd", "auth",
					    "key",   "credential", "session", "sig"};
	char low[64];

	if (len >= sizeof(low))
		len = sizeof(low) - 1;
	for (size_t i = 0; i < len; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[len] = '\0';
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strstr(low, words[i]) != NULL)
			return 1;
	return 0;
}

const char *
log_redact_uri(const char *uri, char *buf, size_t size)
{
	const char *q, *p;
	size_t o = 0;

	if (size == 0)
		return buf;
	if (uri == NULL)
		uri = "";
	q = strchr(uri, '?');
	if (q == NULL) {
		snprintf(buf, size, "%s", uri);
		return buf;
	}
	/* The path, then each name=value pair, its value replaced when secret. */
	o = (size_t)snprintf(buf, size, "%.*s", (int)(q - uri + 1), uri);
	for (p = q + 1; *p && o + 1 < size;) {
		size_t n = strcspn(p, "&"), nl = strcspn(p, "=&");
		int w;

		if (nl < n && secret_name(p, nl))
			w = snprintf(buf + o, size - o, "%.*s=REDACTED", (int)nl, p);
		else
			w = snprintf(buf + o, size - o, "%.*s", (int)n, p);
		o = w < 0 ? size : o + (size_t)w;
		p += n;
		if (*p == '&' && o + 1 < size) {
			buf[o++] = '&';
			buf[o] = '\0';
			p++;
		}
	}
	if (o >= size)
		buf[size - 1] = '\0';
	return buf;
}
