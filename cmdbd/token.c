/*
 * token.c — API token primitives: generate, hash, compare, glob, names, lifetimes.
 *
 * Used by the server's auth module on every request and by `cmdbd token`
 * (cmd_token.c), which stores them.
 */
#include "token.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sha256.h"

int
token_generate(char out[TOKEN_MAX])
{
	unsigned char raw[TOKEN_RANDOM_BYTES];
	size_t have = 0;

	while (have < sizeof(raw)) {
		ssize_t n = getrandom(raw + have, sizeof(raw) - have, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			memset(out, 0, TOKEN_MAX);
			return -1;
		}
		have += (size_t)n;
	}
	memcpy(out, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
	sha256_hex(raw, sizeof(raw), out + TOKEN_PREFIX_LEN);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

void
token_hash_hex(const char *tok, size_t len, char out[TOKEN_HASH_HEX_LEN + 1])
{
	uint8_t digest[SHA256_DIGEST_LEN];

	sha256(tok, len, digest);
	sha256_hex(digest, sizeof(digest), out);
}

bool
token_ct_equal(const void *a, const void *b, size_t n)
{
	/* volatile: keep the compiler from turning the loop into an early-exit memcmp. */
	const volatile unsigned char *pa = a;
	const volatile unsigned char *pb = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= pa[i] ^ pb[i];
	return diff == 0;
}

bool
token_glob_match(const char *glob, const char *source)
{
	if (glob == NULL)
		return true;
	if (source == NULL)
		return false;
	/* No FNM_PATHNAME or FNM_PERIOD: sources are flat names, '*' may span ':' '.' '/'. */
	return fnmatch(glob, source, 0) == 0;
}

/* isalnum() depends on the locale; token names are ASCII. */
static bool
ascii_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
token_name_valid(const char *name)
{
	size_t len;

	if (name == NULL || !ascii_alnum((unsigned char)name[0]))
		return false;
	len = strlen(name);
	if (len > TOKEN_NAME_MAX)
		return false;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!ascii_alnum(c) && strchr("_.:@-", c) == NULL)
			return false;
	}
	return true;
}

int
token_parse_duration(const char *text, long long *seconds)
{
	long long value = 0;
	long long unit;
	const char *p = text;

	if (text == NULL || !(*p >= '0' && *p <= '9'))
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		value = value * 10 + (*p - '0');
		if (value > TOKEN_MAX_LIFETIME_S)
			return -1;
	}
	switch (*p) {
	case 's':
		unit = 1;
		break;
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = 86400;
		break;
	default:
		return -1;
	}
	if (p[1] != '\0' || value == 0 || value > TOKEN_MAX_LIFETIME_S / unit)
		return -1;
	*seconds = value * unit;
	return 0;
}
