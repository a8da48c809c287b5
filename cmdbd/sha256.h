/*
 * sha256.h — SHA-256 (FIPS 180-4) of a buffer, and a hex helper.
 *
 * Used to store API tokens as hashes (tokens.hash) and to fingerprint request bodies.
 * Pure functions: no allocation, no global state, never block, thread-safe.
 */
#ifndef CMDBD_SHA256_H
#define CMDBD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64 /* without the terminating NUL */

/* Incremental interface, for data that arrives in pieces. */
struct sha256_ctx {
	uint32_t state[8];
	uint64_t total;	 /* bytes hashed so far */
	uint8_t buf[64]; /* pending partial block */
	size_t buf_len;
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest and wipes the context. */
void sha256_final(struct sha256_ctx *ctx, uint8_t out[SHA256_DIGEST_LEN]);

/* One-shot: out = SHA-256(data[0..len)). data may be NULL when len is 0. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);

/* Lower-case hex of len bytes into out, which must hold 2*len+1 bytes; NUL-terminated. */
void sha256_hex(const uint8_t *bytes, size_t len, char *out);

#endif
