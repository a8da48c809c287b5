/*
 * token.h — API tokens: making them, hashing them, matching them (`cmdbd token`
 * is cmd_token.h).
 *
 * A token is "cmdb_" followed by 64 lower-case hex digits (32 random bytes). The
 * database stores only its SHA-256 in hex (tokens.hash); the server hashes the bearer
 * token of a request and looks the hash up, comparing with token_ct_equal().
 *
 * Everything here is pure, allocation-free and thread-safe.
 */
#ifndef CMDBD_TOKEN_H
#define CMDBD_TOKEN_H

#include "attrs.h"

#include <stdbool.h>
#include <stddef.h>

#define TOKEN_PREFIX "cmdb_"
#define TOKEN_PREFIX_LEN 5
#define TOKEN_RANDOM_BYTES 32
#define TOKEN_LEN (TOKEN_PREFIX_LEN + 2 * TOKEN_RANDOM_BYTES) /* 69 */
#define TOKEN_MAX (TOKEN_LEN + 1)			      /* with the NUL */
#define TOKEN_HASH_HEX_LEN 64
#define TOKEN_NAME_MAX 64

/* Longest --expires accepted: 100 years, so now() + it never overflows a timestamp. */
#define TOKEN_MAX_LIFETIME_S (100LL * 366 * 24 * 3600)

/* Write a fresh token into out (NUL-terminated) from getrandom(2). Returns 0, or -1 with
 * errno set when the kernel's random source fails (out is then zeroed). */
CMDB_MUST_USE int token_generate(char out[TOKEN_MAX]);

/* out = lower-case hex SHA-256 of tok[0..len), NUL-terminated: the tokens.hash value. */
void token_hash_hex(const char *tok, size_t len, char out[TOKEN_HASH_HEX_LEN + 1]);

/* Compare n bytes in time that depends only on n, never on where they differ. */
bool token_ct_equal(const void *a, const void *b, size_t n);

/* Does a write token restricted to `glob` (fnmatch(3) syntax, '/' not special) allow
 * writing as `source`? A NULL glob (no restriction) matches everything; a NULL source
 * matches nothing. */
bool token_glob_match(const char *glob, const char *source);

/* Is name a valid token name: ^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$ */
bool token_name_valid(const char *name);

/* Parse a lifetime "90d", "12h", "30m" or "45s" (a positive integer and one unit) into
 * seconds. Returns 0, or -1 when malformed, zero or longer than TOKEN_MAX_LIFETIME_S. */
CMDB_MUST_USE int token_parse_duration(const char *text, long long *seconds);

#endif
