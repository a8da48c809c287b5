/*
 * check_noop.c — identical re-posts (cmdbd/noop.c).
 *
 * tcase "memory" (no database): the per-source fingerprints — learned, kept against
 * older news, forgotten only when still the one refused — and the bodies known by
 * their bytes: one per source, valid only while its fingerprint is the source's.
 *
 * tcase "batch" (a real PostgreSQL: a migrated scratch database, the server's
 * statements on a real pool and loop): items queued in one turn go together, at most
 * NOOP_BATCH_MAX a statement and one statement out at a time; each item is answered
 * once, never inside noop_submit(), with its reply or NULL (refused: not a no-op
 * there), and only after the commit (its deployments row is there); a batch that
 * fails answers every item with the failure.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "noop.h"
#include "pgtest.h"
#include "sql.h"

/* A fingerprint: 64 hex digits made of c. */
static const char *
fp(char c)
{
	static char buf[4][65];
	static int k;
	char *s = buf[k++ % 4];

	memset(s, c, 64);
	s[64] = '\0';
	return s;
}

#define T1 "2026-11-21T10:00:00.000001Z"
#define T2 "2026-11-21T10:00:00.000002Z"
#define T3 "2026-11-21T10:00:00.000003Z"

/* A memory without a database (the batcher's part unused). */
static struct event_base *base;

static void
base_setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
}

static void
base_teardown(void)
{
	event_base_free(base);
	base = NULL;
}

START_TEST(test_memory_learns)
{
	struct noop_stats st;
	struct noop *n = noop_new(base, NULL, 0);

	ck_assert_ptr_nonnull(n);
	ck_assert(!noop_known(n, "cap:a", fp('a')));
	noop_learn(n, "cap:a", fp('a'), T2);
	ck_assert(noop_known(n, "cap:a", fp('a')));
	ck_assert(!noop_known(n, "cap:a", fp('b')));
	ck_assert(!noop_known(n, "cap:b", fp('a')));
	/* Older news (a poll answered from an older snapshot) does not undo it. */
	noop_learn(n, "cap:a", fp('b'), T1);
	ck_assert(noop_known(n, "cap:a", fp('a')));
	noop_learn(n, "cap:a", NULL, T1);
	ck_assert(noop_known(n, "cap:a", fp('a')));
	/* Newer news does, and a reply without a time always. */
	noop_learn(n, "cap:a", fp('b'), T3);
	ck_assert(noop_known(n, "cap:a", fp('b')));
	noop_learn(n, "cap:a", fp('c'), NULL);
	ck_assert(noop_known(n, "cap:a", fp('c')));
	/* Stale (NULL) forgets; a malformed fingerprint is ignored. */
	noop_learn(n, "cap:a", NULL, T3);
	ck_assert(!noop_known(n, "cap:a", fp('c')));
	noop_learn(n, "cap:a", "abc", T3);
	ck_assert(!noop_known(n, "cap:a", "abc"));
	/* A refusal forgets only the fingerprint refused. */
	noop_learn(n, "cap:b", fp('d'), T1);
	noop_forget(n, "cap:b", fp('e'));
	ck_assert(noop_known(n, "cap:b", fp('d')));
	noop_forget(n, "cap:b", fp('d'));
	ck_assert(!noop_known(n, "cap:b", fp('d')));
	noop_get_stats(n, &st);
	ck_assert_uint_eq(st.sources, 0);
	/* NULL-safe where the server may have none. */
	ck_assert(!noop_known(NULL, "cap:a", fp('a')));
	noop_learn(NULL, "cap:a", fp('a'), T1);
	noop_free(NULL);
	noop_free(n);
}
END_TEST

START_TEST(test_memory_grows)
{
	struct noop_stats st;
	struct noop *n = noop_new(base, NULL, 0);
	char src[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(src, sizeof(src), "cap:s%d", i);
		noop_learn(n, src, fp("abcdef0123456789"[i % 16]), T1);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(src, sizeof(src), "cap:s%d", i);
		ck_assert_msg(noop_known(n, src, fp("abcdef0123456789"[i % 16])), "%s", src);
	}
	noop_get_stats(n, &st);
	ck_assert_uint_eq(st.sources, 5000);
	noop_free(n);
}
END_TEST

static void
hash_of(const char *body, unsigned char h[NOOP_BODY_HASH])
{
	noop_body_hash(body, strlen(body), h);
}

START_TEST(test_bodies)
{
	struct noop *n = noop_new(base, NULL, 0);
	unsigned char h1[NOOP_BODY_HASH], h2[NOOP_BODY_HASH], h3[NOOP_BODY_HASH];
	struct noop_item it = {.source = "cap:a",
			       .fp = fp('a'),
			       .generation = "7",
			       .deployment = "{\"version\":\"1\"}",
			       .ttl = "3600"};
	const struct noop_item *got;

	hash_of("{\"body\":1}", h1);
	hash_of("{\"body\": 1}", h2);
	hash_of("{\"body\":2}", h3);
	ck_assert_ptr_null(noop_body_item(n, h1));
	/* Remembered, and good while the source's fingerprint is the body's. */
	noop_learn(n, "cap:a", fp('a'), T1);
	noop_remember_body(n, h1, &it);
	got = noop_body_item(n, h1);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got->source, "cap:a");
	ck_assert_str_eq(got->fp, fp('a'));
	ck_assert_str_eq(got->generation, "7");
	ck_assert_str_eq(got->deployment, "{\"version\":\"1\"}");
	ck_assert_ptr_null(got->extensions);
	ck_assert_str_eq(got->ttl, "3600");
	ck_assert_ptr_null(noop_body_item(n, h2)); /* other bytes, same manifest: parsed */
	/* The source moved on (or went stale): its body is no no-op any more. */
	noop_learn(n, "cap:a", fp('b'), T2);
	ck_assert_ptr_null(noop_body_item(n, h1));
	noop_learn(n, "cap:a", fp('a'), T3);
	ck_assert_ptr_nonnull(noop_body_item(n, h1));
	noop_learn(n, "cap:a", NULL, T3);
	ck_assert_ptr_null(noop_body_item(n, h1));
	/* One body a source: the next replaces it. */
	noop_learn(n, "cap:a", fp('c'), NULL);
	it.fp = fp('c');
	it.generation = NULL;
	it.deployment = NULL;
	it.extensions = "[1]";
	noop_remember_body(n, h3, &it);
	ck_assert_ptr_null(noop_body_item(n, h1));
	got = noop_body_item(n, h3);
	ck_assert_ptr_nonnull(got);
	ck_assert_ptr_null(got->generation);
	ck_assert_ptr_null(got->deployment);
	ck_assert_str_eq(got->extensions, "[1]");
	noop_free(n);
}
END_TEST

START_TEST(test_bodies_grow)
{
	struct noop *n = noop_new(base, NULL, 0);
	char src[32], body[64];
	unsigned char h[NOOP_BODY_HASH];

	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 3000; i++) {
			struct noop_item it = {.source = src, .fp = fp('a' + (char)round)};

			snprintf(src, sizeof(src), "cap:s%d", i);
			snprintf(body, sizeof(body), "{\"s\":%d,\"r\":%d}", i, round);
			hash_of(body, h);
			noop_learn(n, src, it.fp, NULL);
			noop_remember_body(n, h, &it);
		}
	for (int i = 0; i < 3000; i++) {
		const struct noop_item *got;

		snprintf(src, sizeof(src), "cap:s%d", i);
		snprintf(body, sizeof(body), "{\"s\":%d,\"r\":0}", i);
		hash_of(body, h);
		ck_assert_ptr_null(noop_body_item(n, h)); /* replaced by round 1's */
		snprintf(body, sizeof(body), "{\"s\":%d,\"r\":1}", i);
		hash_of(body, h);
		got = noop_body_item(n, h);
		ck_assert_ptr_nonnull(got);
		ck_assert_str_eq(got->source, src);
	}
	noop_free(n);
}
END_TEST

/* ------------------------------------------------------------ batches, a database */

static const char *admin_url;

struct answers {
	int want, calls, replies, refused, failed;
	char failed_state[8];
	bool submitting; /* a callback while noop_submit runs is a bug */
	bool inside;
	json_t *last; /* the last reply */
};

static void
answer(void *arg, const char *reply, const struct db_result *failed)
{
	struct answers *a = arg;

	a->calls++;
	if (a->submitting)
		a->inside = true;
	if (reply != NULL) {
		a->replies++;
		json_decref(a->last);
		a->last = json_loads(reply, 0, NULL);
	} else if (failed != NULL) {
		a->failed++;
		snprintf(a->failed_state, sizeof(a->failed_state), "%s", failed->sqlstate);
	} else {
		a->refused++;
	}
}

/* Every item submitted has been answered (a.want of them). */
static bool
answered(void *arg)
{
	const struct answers *a = arg;

	return a->calls >= a->want;
}

static void
apply(struct pgtest_map *m, const char *src, const char *fprint)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT cmdb_post_manifest_ttl('{\"manifest\":\"cmdb/v1\",\"source\":\"%s\","
		 "\"nodes\":[{\"ref\":\"service/x\"}]}', '%s', 't', 't', NULL, false, '%s', NULL, "
		 "NULL, NULL, NULL)",
		 src, src, fprint);
	pgtest_map_write(m, sql);
}

START_TEST(test_batches)
{
	struct pgtest_map *m = &pgtest_current_map;
	struct noop *n = noop_new(m->base, m->db, SQL_MANIFEST_NOOP_BATCH);
	struct answers a = {.want = 300};
	struct noop_stats st;
	char src[32];
	long long deployments;

	ck_assert_ptr_nonnull(n);
	apply(m, "cap:a", fp('a'));
	apply(m, "cap:b", fp('b'));
	deployments = pgtest_value(m->side, "SELECT count(*) FROM deployments");
	/* 300 items in one turn: 150 no-ops of two sources, 150 of unknown sources. */
	a.submitting = true;
	for (int i = 0; i < 300; i++) {
		struct noop_item it = {.source = i % 2 ? "cap:a" : "cap:b",
				       .fp = i % 2 ? fp('a') : fp('b'),
				       .actor = "t",
				       .deployment = "{\"version\":\"9\"}"};

		if (i >= 150) {
			snprintf(src, sizeof(src), "cap:u%d", i);
			it.source = src;
		}
		ck_assert_int_eq(noop_submit(n, &it, answer, &a), 0);
	}
	a.submitting = false;
	ck_assert_int_eq(a.calls, 0);
	ck_assert(pgtest_run_until(m->base, answered, &a, 20000));
	ck_assert_int_eq(a.calls, 300);
	ck_assert(!a.inside);
	ck_assert_int_eq(a.replies, 150);
	ck_assert_int_eq(a.refused, 150);
	ck_assert_int_eq(a.failed, 0);
	noop_get_stats(n, &st);
	ck_assert_uint_eq(st.batches, 3); /* 128 + 128 + 44, one after the other */
	ck_assert_uint_eq(st.items, 300);
	ck_assert_uint_eq(st.refused, 150);
	/* Answered after the commit: every no-op's row is there. */
	ck_assert_int_eq(pgtest_value(m->side, "SELECT count(*) FROM deployments"),
			 deployments + 150);
	ck_assert_int_eq(pgtest_value(m->side,
				      "SELECT count(*) FROM deployments WHERE version = '9'"
				      " AND actor = 't' AND seq IS NULL"),
			 150);
	ck_assert_int_eq(json_integer_value(json_object_get(a.last, "status")), 200);
	ck_assert(
	    json_is_string(json_object_get(json_object_get(a.last, "body"), "deployment_id")));
	ck_assert(json_is_string(json_object_get(json_object_get(a.last, "sighting"), "at")));
	json_decref(a.last);
	noop_free(n);
}
END_TEST

START_TEST(test_failed_batch)
{
	struct pgtest_map *m = &pgtest_current_map;
	struct noop *n = noop_new(m->base, m->db, SQL_MANIFEST_NOOP_BATCH);
	struct answers a = {.want = 3};
	struct noop_item it = {.source = "cap:a", .fp = fp('a'), .actor = "t"};
	struct noop_stats st;

	apply(m, "cap:a", fp('a'));
	/* The statement fails (its function is gone): each item hears it, none a reply. */
	pgtest_exec(m->side, "ALTER FUNCTION cmdb_manifest_noop_batch(jsonb) RENAME TO nb_gone");
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(noop_submit(n, &it, answer, &a), 0);
	ck_assert(pgtest_run_until(m->base, answered, &a, 20000));
	ck_assert_int_eq(a.calls, 3);
	ck_assert_int_eq(a.failed, 3);
	ck_assert_str_eq(a.failed_state, "42883");
	noop_get_stats(n, &st);
	ck_assert_uint_eq(st.failed, 3);
	ck_assert_int_eq(
	    pgtest_value(m->side, "SELECT count(*) FROM deployments WHERE seq IS NULL"), 0);
	pgtest_exec(m->side, "ALTER FUNCTION nb_gone(jsonb) RENAME TO cmdb_manifest_noop_batch");
	/* Items still queued when it is freed are answered (shutting down). */
	a = (struct answers){0};
	ck_assert_int_eq(noop_submit(n, &it, answer, &a), 0);
	noop_free(n);
	ck_assert_int_eq(a.failed, 1);
}
END_TEST

Suite *
suite_noop(void)
{
	Suite *s = suite_create("noop");
	TCase *tc = tcase_create("memory");

	tcase_add_checked_fixture(tc, base_setup, base_teardown);
	tcase_add_test(tc, test_memory_learns);
	tcase_add_test(tc, test_memory_grows);
	tcase_add_test(tc, test_bodies);
	tcase_add_test(tc, test_bodies_grow);
	suite_add_tcase(s, tc);
	if ((admin_url = pgtest_admin_url(s)) == NULL)
		return s;
	tc = tcase_create("batch");
	tcase_add_checked_fixture(tc, pgtest_map_fixture_setup, pgtest_map_fixture_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_batches);
	tcase_add_test(tc, test_failed_batch);
	suite_add_tcase(s, tc);
	return s;
}
