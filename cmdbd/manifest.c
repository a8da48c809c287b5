/*
 * manifest.c — manifest v1 validation (see manifest.h).
 */
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "sha256.h"
#include "token.h"

#define TEXT_MAX 1024

static const struct jv_field top_fields[] = {
    {"manifest", JV_STRING, true},
    {"source", JV_STRING, true},
    {"generation", JV_INTEGER, false},
    {"deployment", JV_OBJECT, false},
    {"nodes", JV_ARRAY, false},
    {"edges", JV_ARRAY, false},
    {"extensions", JV_OBJECT, false},
    {"ttl", JV_STRING, false},
    {NULL, JV_ANY, false},
};

static const struct jv_field deployment_fields[] = {
    {"node", JV_STRING, false},
    {"version", JV_STRING, false},
    {"revision", JV_STRING, false},
    {"environment", JV_STRING, false},
    {"actor", JV_STRING, false},
    {"status", JV_STRING, false},
    {"started_at", JV_STRING, false},
    {"finished_at", JV_STRING, false},
    {NULL, JV_ANY, false},
};

static const struct jv_field node_fields[] = {
    {"ref", JV_STRING, true},
    {"attributes", JV_OBJECT, false},
    {"labels", JV_STRING_MAP, false},
    {NULL, JV_ANY, false},
};

static const struct jv_field edge_fields[] = {
    {"from", JV_STRING, true},	      {"type", JV_STRING, true}, {"to", JV_STRING, true},
    {"attributes", JV_OBJECT, false}, {NULL, JV_ANY, false},
};

static bool
digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
days_in_month(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* Leap seconds (:60) are refused, as PostgreSQL and the JSON Schema format do. */
bool
manifest_time_valid(const char *s)
{
	const char *p = s;
	int mon, day, hh, mm, ss;

	if (strlen(s) < 20 || !digits(p, 4) || p[4] != '-' || !digits(p + 5, 2) || p[7] != '-' ||
	    !digits(p + 8, 2) || (p[10] != 'T' && p[10] != 't') || !digits(p + 11, 2) ||
	    p[13] != ':' || !digits(p + 14, 2) || p[16] != ':' || !digits(p + 17, 2))
		return false;
	mon = atoi(p + 5);
	day = atoi(p + 8);
	hh = atoi(p + 11);
	mm = atoi(p + 14);
	ss = atoi(p + 17);
	if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(atoi(p), mon) || hh > 23 ||
	    mm > 59 || ss > 59)
		return false;
	p += 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return true;
	if ((*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) &&
	    p[6] == '\0')
		return atoi(p + 1) <= 15 && atoi(p + 4) <= 59; /* PostgreSQL's range */
	return false;
}

static bool
check_ref(const json_t *v, const char *prefix, const char *field, struct jv_err *err)
{
	const char *why = model_ref_parse(json_string_value(v), NULL, NULL);

	if (why != NULL)
		return jv_fail(err, prefix, field, "%s", why);
	return true;
}

static bool
check_attrs(const json_t *obj, const char *prefix, const char *field, struct jv_err *err)
{
	const json_t *a = json_object_get(obj, field);

	if (a != NULL && jv_serialized_size(a) > MODEL_ATTRIBUTES_MAX)
		return jv_fail(err, prefix, field, "is larger than %d bytes serialised",
			       MODEL_ATTRIBUTES_MAX);
	return true;
}

static bool
check_deployment(const json_t *d, struct jv_err *err)
{
	const char *key;
	json_t *v;

	if (!jv_check_object(d, "deployment", deployment_fields, err))
		return false;
	json_object_foreach((json_t *)d, key, v)
	{
		const char *s = json_string_value(v);

		if (strlen(s) > TEXT_MAX)
			return jv_fail(err, "deployment", key, "is longer than %d bytes", TEXT_MAX);
		if (strcmp(key, "node") == 0 && !check_ref(v, "deployment", key, err))
			return false;
		if ((strcmp(key, "started_at") == 0 || strcmp(key, "finished_at") == 0) &&
		    !manifest_time_valid(s))
			return jv_fail(err, "deployment", key,
				       "must be an RFC 3339 date-time (2026-11-21T10:00:00Z)");
	}
	return true;
}

/* Sort helper for duplicate detection: indexes ordered by their key string. */
struct keyed {
	const char *key;
	size_t index;
};

static int
keyed_cmp(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

/* Finds a duplicate among n keys: returns true with the two indexes. */
static int
find_duplicate(struct keyed *k, size_t n, size_t *first, size_t *second)
{
	qsort(k, n, sizeof(*k), keyed_cmp);
	for (size_t i = 1; i < n; i++)
		if (strcmp(k[i - 1].key, k[i].key) == 0) {
			*first = k[i - 1].index;
			*second = k[i].index;
			return 1;
		}
	return 0;
}

static bool
check_nodes(const json_t *nodes, struct jv_err *err)
{
	size_t n = json_array_size(nodes), i, a, b;
	struct keyed *keys = calloc(n ? n : 1, sizeof(*keys));
	json_t *node;
	bool ok = true;

	if (keys == NULL)
		return jv_fail_nomem(err);
	json_array_foreach(nodes, i, node)
	{
		char path[JV_PATH_MAX];

		snprintf(path, sizeof(path), "nodes[%zu]", i);
		if (!jv_check_object(node, path, node_fields, err) ||
		    !check_ref(json_object_get(node, "ref"), path, "ref", err) ||
		    !check_attrs(node, path, "attributes", err) ||
		    !check_attrs(node, path, "labels", err)) {
			ok = false;
			goto out;
		}
		keys[i].key = json_string_value(json_object_get(node, "ref"));
		keys[i].index = i;
	}
	if (find_duplicate(keys, n, &a, &b)) {
		char path[JV_PATH_MAX];

		snprintf(path, sizeof(path), "nodes[%zu]", b);
		ok =
		    jv_fail(err, path, "ref", "declares %s again (first at nodes[%zu])",
			    json_string_value(json_object_get(json_array_get(nodes, a), "ref")), a);
	}
out:
	free(keys);
	return ok;
}

static bool
check_edges(const json_t *edges, struct jv_err *err)
{
	size_t n = json_array_size(edges), i, a, b;
	struct keyed *keys = calloc(n ? n : 1, sizeof(*keys));
	char **owned = calloc(n ? n : 1, sizeof(char *));
	json_t *edge;
	bool ok = true;

	if (keys == NULL || owned == NULL) {
		ok = jv_fail_nomem(err);
		goto out;
	}
	json_array_foreach(edges, i, edge)
	{
		char path[JV_PATH_MAX];
		const char *from, *type, *to;

		snprintf(path, sizeof(path), "edges[%zu]", i);
		if (!jv_check_object(edge, path, edge_fields, err) ||
		    !check_ref(json_object_get(edge, "from"), path, "from", err) ||
		    !check_ref(json_object_get(edge, "to"), path, "to", err) ||
		    !check_attrs(edge, path, "attributes", err)) {
			ok = false;
			goto out;
		}
		from = json_string_value(json_object_get(edge, "from"));
		type = json_string_value(json_object_get(edge, "type"));
		to = json_string_value(json_object_get(edge, "to"));
		if (model_edge_type_index(type) < 0) {
			ok = jv_fail(err, path, "type", "must be one of " MODEL_EDGE_TYPES_LIST);
			goto out;
		}
		if (strcmp(from, to) == 0) {
			ok = jv_fail(err, path, "to", "an edge cannot connect %s to itself", from);
			goto out;
		}
		/* Tab cannot appear in a ref (no control characters): a safe separator. */
		if (asprintf(&owned[i], "%s\t%s\t%s", from, type, to) < 0) {
			owned[i] = NULL;
			ok = jv_fail_nomem(err);
			goto out;
		}
		keys[i].key = owned[i];
		keys[i].index = i;
	}
	if (find_duplicate(keys, n, &a, &b)) {
		char path[JV_PATH_MAX];

		snprintf(path, sizeof(path), "edges[%zu]", b);
		ok = jv_fail(err, path, "", "repeats the edge of edges[%zu]", a);
	}
out:
	for (i = 0; owned != NULL && i < n; i++)
		free(owned[i]);
	free(owned);
	free(keys);
	return ok;
}

bool
manifest_validate(const json_t *m, const struct manifest_limits *lim, struct jv_err *err)
{
	const char *version, *source;
	const json_t *nodes, *edges, *gen, *dep;

	if (!jv_check_object(m, "", top_fields, err))
		return false;
	version = json_string_value(json_object_get(m, "manifest"));
	if (strcmp(version, MANIFEST_VERSION) != 0)
		return jv_fail(
		    err, "", "manifest",
		    "unsupported manifest version \"%.40s\"; supported: " MANIFEST_VERSION,
		    version);
	source = json_string_value(json_object_get(m, "source"));
	if (!model_source_valid(source))
		return jv_fail(err, "", "source", "must match " MODEL_SOURCE_PATTERN);
	/* Hand edits are recorded under api:<token>; a manifest replacing that source
	 * would silently undo them. */
	if (strncmp(source, "api:", 4) == 0)
		return jv_fail(err, "", "source", "api:… sources are reserved for hand edits");
	gen = json_object_get(m, "generation");
	if (gen != NULL && json_integer_value(gen) < 0)
		return jv_fail(err, "", "generation", "must be an integer >= 0");
	if (json_object_get(m, "ttl") != NULL && manifest_ttl(m) == 0)
		return jv_fail(err, "", "ttl",
			       "must be a duration: a positive number and a unit, as 36h, 90m, "
			       "7d or 45s (got \"%.40s\")",
			       json_string_value(json_object_get(m, "ttl")));
	dep = json_object_get(m, "deployment");
	if (dep != NULL && !check_deployment(dep, err))
		return false;
	nodes = json_object_get(m, "nodes");
	edges = json_object_get(m, "edges");
	if (nodes != NULL && json_array_size(nodes) > (size_t)lim->max_nodes) {
		jv_fail(err, "", "nodes", "has %zu items; the limit is %ld per manifest",
			json_array_size(nodes), lim->max_nodes);
		err->status = 413;
		return false;
	}
	if (edges != NULL && json_array_size(edges) > (size_t)lim->max_edges) {
		jv_fail(err, "", "edges", "has %zu items; the limit is %ld per manifest",
			json_array_size(edges), lim->max_edges);
		err->status = 413;
		return false;
	}
	if (nodes != NULL && !check_nodes(nodes, err))
		return false;
	if (edges != NULL && !check_edges(edges, err))
		return false;
	return true;
}

long long
manifest_ttl(const json_t *m)
{
	long long s;

	if (token_parse_duration(json_string_value(json_object_get(m, "ttl")), &s) != 0)
		return 0;
	return s;
}

/* ---- Fingerprint ----------------------------------------------------------- */

static int
cmp_keyp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
fp_bytes(struct sha256_ctx *c, char tag, const void *p, size_t n)
{
	uint64_t len = n;

	sha256_update(c, &tag, 1);
	sha256_update(c, &len, sizeof(len));
	if (n > 0) /* true, false and null have no bytes (and p may be NULL) */
		sha256_update(c, p, n);
}

/* Tag, then the value: 'o' count (key, value)… sorted by key; 'a' count values…;
 * 's' length bytes; 'i' int64; 'r' double; 't' 'f' 'n'. Lengths make it unambiguous. */
static int
fp_value(struct sha256_ctx *c, const json_t *v, int depth)
{
	if (depth > 64)
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		size_t n = json_object_size(v), k = 0;
		const char **keys = n ? malloc(n * sizeof(*keys)) : NULL;
		const char *key;
		json_t *val;
		int rc = 0;

		if (n && keys == NULL)
			return -1;
		json_object_foreach((json_t *)v, key, val) keys[k++] = key;
		if (n > 1)
			qsort(keys, n, sizeof(*keys), cmp_keyp);
		fp_bytes(c, 'o', &n, sizeof(n));
		for (k = 0; k < n && rc == 0; k++) {
			fp_bytes(c, 'k', keys[k], strlen(keys[k]));
			rc = fp_value(c, json_object_get(v, keys[k]), depth + 1);
		}
		free(keys);
		return rc;
	}
	case JSON_ARRAY: {
		size_t n = json_array_size(v);

		fp_bytes(c, 'a', &n, sizeof(n));
		for (size_t i = 0; i < n; i++)
			if (fp_value(c, json_array_get(v, i), depth + 1))
				return -1;
		return 0;
	}
	case JSON_STRING:
		fp_bytes(c, 's', json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER: {
		json_int_t i = json_integer_value(v);

		fp_bytes(c, 'i', &i, sizeof(i));
		return 0;
	}
	case JSON_REAL: {
		double d = json_real_value(v);

		fp_bytes(c, 'r', &d, sizeof(d));
		return 0;
	}
	case JSON_TRUE:
		fp_bytes(c, 't', NULL, 0);
		return 0;
	case JSON_FALSE:
		fp_bytes(c, 'f', NULL, 0);
		return 0;
	case JSON_NULL:
		fp_bytes(c, 'n', NULL, 0);
		return 0;
	}
	return -1;
}

int
manifest_fingerprint(const json_t *m, char *hex)
{
	struct sha256_ctx c;
	uint8_t digest[SHA256_DIGEST_LEN];

	sha256_init(&c);
	if (m == NULL || fp_value(&c, m, 0) != 0) {
		sha256_final(&c, digest);
		return -1;
	}
	sha256_final(&c, digest);
	sha256_hex(digest, sizeof(digest), hex);
	return 0;
}
