/*
 * check_sha256.c — SHA-256 against the FIPS 180-2 test vectors (appendix B), plus the
 * incremental interface fed in awkward pieces, and the hex helper.
 */
#include <check.h>
#include <string.h>

#include "sha256.h"

static void
hex_of(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
	uint8_t digest[SHA256_DIGEST_LEN];

	sha256(data, len, digest);
	sha256_hex(digest, sizeof(digest), out);
}

static const struct {
	const char *input;
	const char *digest;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    /* Not FIPS: digests from coreutils' sha256sum, for the padding edge cases. 55 bytes
     * is the longest message whose padding fits one block; 64 needs a second. */
    {"0000000000000000000000000000000000000000000000000000000",
     "9f8ef876f51f5313c91cc3f6b8119af09d8bbdd72098fa149b2780eb3591d6be"},
    {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     "a8ae6e6ee929abea3afcfc5258c8ccd6f85273e0d4626d26c7279f3250f77c8e"},
};

START_TEST(test_vectors)
{
	char hex[SHA256_HEX_LEN + 1];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		hex_of(vectors[i].input, strlen(vectors[i].input), hex);
		ck_assert_str_eq(hex, vectors[i].digest);
	}
}
END_TEST

START_TEST(test_empty_null)
{
	char hex[SHA256_HEX_LEN + 1];

	hex_of(NULL, 0, hex);
	ck_assert_str_eq(hex, vectors[0].digest);
}
END_TEST

START_TEST(test_million_a)
{
	static char buf[1000000];
	char hex[SHA256_HEX_LEN + 1];

	memset(buf, 'a', sizeof(buf));
	hex_of(buf, sizeof(buf), hex);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* Feeding the same bytes in pieces of every size 1..130 gives the one-shot digest;
 * lengths around 55/56/64 exercise every padding branch. */
START_TEST(test_incremental)
{
	uint8_t data[300];
	uint8_t whole[SHA256_DIGEST_LEN];
	uint8_t parts[SHA256_DIGEST_LEN];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(data); len += 1) {
		sha256(data, len, whole);
		for (size_t step = 1; step <= 130; step += 43) {
			struct sha256_ctx ctx;

			sha256_init(&ctx);
			for (size_t off = 0; off < len; off += step)
				sha256_update(&ctx, data + off,
					      len - off < step ? len - off : step);
			sha256_final(&ctx, parts);
			ck_assert_msg(memcmp(whole, parts, sizeof(whole)) == 0,
				      "len %zu step %zu differs", len, step);
		}
	}
}
END_TEST

/* The FIPS 448-bit message split across the block boundary, and the million 'a's in
 * 1000-byte pieces. */
START_TEST(test_incremental_vectors)
{
	const char *msg = vectors[2].input;
	uint8_t digest[SHA256_DIGEST_LEN];
	char hex[SHA256_HEX_LEN + 1];
	struct sha256_ctx ctx;
	char chunk[1000];

	sha256_init(&ctx);
	sha256_update(&ctx, msg, 3);
	sha256_update(&ctx, msg + 3, strlen(msg) - 3);
	sha256_final(&ctx, digest);
	sha256_hex(digest, sizeof(digest), hex);
	ck_assert_str_eq(hex, vectors[2].digest);

	memset(chunk, 'a', sizeof(chunk));
	sha256_init(&ctx);
	for (int i = 0; i < 1000; i++)
		sha256_update(&ctx, chunk, sizeof(chunk));
	sha256_final(&ctx, digest);
	sha256_hex(digest, sizeof(digest), hex);
	ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

START_TEST(test_hex)
{
	const uint8_t bytes[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
	char hex[2 * sizeof(bytes) + 1];

	sha256_hex(bytes, sizeof(bytes), hex);
	ck_assert_str_eq(hex, "0001abff7f");
	sha256_hex(bytes, 0, hex);
	ck_assert_str_eq(hex, "");
}
END_TEST

Suite *
suite_sha256(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("sha256");

	tcase_add_test(tc, test_vectors);
	tcase_add_test(tc, test_empty_null);
	tcase_add_test(tc, test_million_a);
	tcase_add_test(tc, test_incremental);
	tcase_add_test(tc, test_incremental_vectors);
	tcase_add_test(tc, test_hex);
	suite_add_tcase(s, tc);
	return s;
}
