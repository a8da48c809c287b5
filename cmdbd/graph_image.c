/*
 * graph_image.c — the whole image of each node (what GET /v1/nodes/{kind}/{name}
 * answers) and the sightings of sources, from which last_seen_at is derived
 * (see graph.h, "Node images and last_seen_at").
 *
 * An image arrives as text (graph_node_put_image) and stays text: on first use
 * it is parsed once with jansson and re-serialised compactly without its
 * last_seen_at, which is what a reply then copies. Going through jansson is
 * what makes the bytes equal to the database path's (which parsed the jsonb
 * reply and serialised it again): numbers and escapes come out the same.
 */
#include "graph_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- Sources ------------------------------------------------------------ */

static bool
time_ok(const char *t)
{
	return t != NULL && strlen(t) == GRAPH_TIME_LEN && t[10] == 'T' &&
	       t[GRAPH_TIME_LEN - 1] == 'Z';
}

/* Slot of `name` in the table, or of the empty slot where it would go. */
static uint32_t
src_probe(const graph *g, const char *name)
{
	uint32_t mask = g->src_tab_cap - 1;
	for (uint32_t i = graph_hash_str(name) & mask;; i = (i + 1) & mask) {
		uint32_t k = g->src_tab[i];
		if (k == 0 || strcmp(g->src[k - 1].name, name) == 0)
			return i;
	}
}

static long
src_find(const graph *g, const char *name)
{
	if (g->src_tab_cap == 0)
		return -1;
	uint32_t k = g->src_tab[src_probe(g, name)];
	return k ? (long)k - 1 : -1;
}

/* The id of source `name`, added (never seen) when new; -1 on ENOMEM. */
static long
src_intern(graph *g, const char *name)
{
	long k = src_find(g, name);
	if (k >= 0)
		return k;
	if ((size_t)(g->nsrc + 1) * 2 > g->src_tab_cap) {
		uint32_t ncap = g->src_tab_cap ? g->src_tab_cap * 2 : 64;
		uint32_t *nt = calloc(ncap, sizeof *nt);
		if (nt == NULL)
			goto oom;
		for (uint32_t i = 0; i < g->nsrc; i++) {
			uint32_t j = graph_hash_str(g->src[i].name) & (ncap - 1);
			while (nt[j] != 0)
				j = (j + 1) & (ncap - 1);
			nt[j] = i + 1;
		}
		free(g->src_tab);
		g->src_tab = nt;
		g->src_tab_cap = ncap;
	}
	if (g->nsrc == g->src_cap) {
		uint32_t ncap = g->src_cap ? g->src_cap * 2 : 16;
		if (graph_grow(&g->src, ncap, sizeof *g->src))
			goto oom;
		g->src_cap = ncap;
	}
	char *copy = strdup(name);
	if (copy == NULL)
		goto oom;
	g->src[g->nsrc] = (struct graph_source){.name = copy};
	g->src_tab[src_probe(g, name)] = g->nsrc + 1;
	return (long)g->nsrc++;
oom:
	return GRAPH_ENOMEM;
}

void
graph_sources_free(graph *g)
{
	for (uint32_t i = 0; i < g->nsrc; i++)
		free(g->src[i].name);
	free(g->src);
	free(g->src_tab);
	g->src = NULL;
	g->src_tab = NULL;
	g->nsrc = g->src_cap = g->src_tab_cap = 0;
}

int
graph_source_seen(graph *g, const char *source, const char *at)
{
	if (g == NULL || source == NULL || !time_ok(at)) {
		return GRAPH_EINVAL;
	}
	long k = src_intern(g, source);
	if (k < 0)
		return GRAPH_ENOMEM;
	if (strcmp(at, g->src[k].at) > 0)
		memcpy(g->src[k].at, at, GRAPH_TIME_LEN + 1);
	return 0;
}

const char *
graph_source_seen_at(const graph *g, const char *source)
{
	if (g == NULL || source == NULL)
		return NULL;
	long k = src_find(g, source);
	return k >= 0 && g->src[k].at[0] ? g->src[k].at : NULL;
}

/* ---- Images ------------------------------------------------------------- */

void
graph_image_free(struct graph_image *im)
{
	if (im == NULL)
		return;
	free(im->srcs);
	free(im);
}

void
graph_image_carry(const struct graph_image *old, struct graph_image *im)
{
	if (old == NULL || im == NULL || old->fresh_id[0] == '\0')
		return;
	memcpy(im->fresh_id, old->fresh_id, sizeof im->fresh_id);
	memcpy(im->fresh_seen, old->fresh_seen, sizeof im->fresh_seen);
	memcpy(im->fresh_health_at, old->fresh_health_at, sizeof im->fresh_health_at);
}

/* A time field of an image: "" for null, the text for a well-formed time;
 * false for anything else. */
static bool
image_time(json_t *v, char out[GRAPH_TIME_LEN + 1])
{
	if (json_is_null(v)) {
		out[0] = '\0';
		return true;
	}
	if (!time_ok(json_string_value(v)))
		return false;
	memcpy(out, json_string_value(v), GRAPH_TIME_LEN + 1);
	return true;
}

/* Serialises obj (which must not hold last_seen_at) into a normalised image
 * carrying the given fields; NULL on ENOMEM. */
static struct graph_image *
image_from(json_t *obj, const struct graph_image *fields, uint32_t *srcs)
{
	char *text = json_dumps(obj, JSON_COMPACT);
	if (text == NULL)
		return NULL;
	size_t len = strlen(text);
	struct graph_image *im = len < UINT32_MAX ? malloc(sizeof *im + len + 1) : NULL;
	if (im != NULL) {
		*im = *fields;
		im->norm = true;
		im->len = (uint32_t)len;
		im->srcs = srcs;
		memcpy(im->text, text, len + 1);
	}
	free(text);
	return im;
}

/*
 * Parses node i's raw image into the normalised form (see graph_impl.h).
 * 0, or GRAPH_EPROTO (not a node image; left as it was) or GRAPH_ENOMEM.
 */
static int
image_normalize(graph *g, uint32_t i)
{
	struct graph_image *raw = g->img[i], fields = {0}, *im;
	uint32_t *srcs = NULL;
	json_error_t jerr;
	json_t *obj = json_loadb(raw->text, raw->len, 0, &jerr);
	json_t *id = json_object_get(obj, "id"), *version = json_object_get(obj, "version");
	json_t *sources = json_object_get(obj, "sources");
	int err = GRAPH_EPROTO;

	if (!json_is_object(obj) || !json_is_string(id) || strlen(json_string_value(id)) >= 40 ||
	    !json_is_integer(version) || !json_is_array(sources) ||
	    json_array_size(sources) > UINT32_MAX / sizeof(uint32_t) ||
	    !image_time(json_object_get(obj, "last_seen_at"), fields.seen))
		goto fail;
	strcpy(fields.id, json_string_value(id));
	/* The digest reads the text as it arrived, which is about to be rewritten. */
	if (!raw->has_digest)
		(void)graph_image_digest(g, i, raw);
	fields.has_digest = raw->has_digest;
	memcpy(fields.digest, raw->digest, sizeof fields.digest);
	fields.version = (long long)json_integer_value(version);
	/* Refreshes of this node seen after an older image: the later time wins. */
	graph_image_carry(raw, &fields);
	if (strcmp(fields.fresh_id, fields.id) == 0) {
		const char *h = json_string_value(json_object_get(obj, "health_at"));

		if (strcmp(fields.fresh_seen, fields.seen) > 0)
			memcpy(fields.seen, fields.fresh_seen, sizeof fields.seen);
		if (fields.fresh_health_at[0] != '\0' &&
		    (h == NULL || strcmp(fields.fresh_health_at, h) > 0) &&
		    json_object_set_new(obj, "health_at", json_string(fields.fresh_health_at)))
			goto oom;
	} else {
		fields.fresh_id[0] = '\0';
	}
	fields.nsrc = (uint32_t)json_array_size(sources);
	if (fields.nsrc > 0 && (srcs = malloc(fields.nsrc * sizeof *srcs)) == NULL)
		goto oom;
	for (size_t k = 0; k < fields.nsrc; k++) {
		const char *name = json_string_value(json_array_get(sources, k));
		long s;
		if (name == NULL)
			goto fail;
		if ((s = src_intern(g, name)) < 0)
			goto oom;
		srcs[k] = (uint32_t)s;
	}
	json_object_del(obj, "last_seen_at");
	if ((im = image_from(obj, &fields, srcs)) == NULL)
		goto oom;
	json_decref(obj);
	graph_image_free(raw);
	g->img[i] = im;
	return 0;
oom:
	err = GRAPH_ENOMEM;
fail:
	free(srcs);
	json_decref(obj);
	return err;
}

/* Node i's image, normalised; NULL with graph_error(g) set (see graph_node_view). */
static struct graph_image *
image_of(graph *g, long node)
{
	if (g == NULL || !graph_live(g, node)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	if (g->img[node] == NULL) {
		return graph_fail(g, GRAPH_ENOENT);
	}
	int rc;

	if (!g->img[node]->norm && (rc = image_normalize(g, (uint32_t)node)) != 0)
		return graph_fail(g, rc);
	return g->img[node];
}

int
graph_node_view(graph *g, long node, struct graph_node_view *v)
{
	struct graph_image *im = image_of(g, node);
	if (im == NULL)
		return graph_error(g);
	const char *seen = im->seen;
	for (uint32_t k = 0; k < im->nsrc; k++)
		if (strcmp(g->src[im->srcs[k]].at, seen) > 0)
			seen = g->src[im->srcs[k]].at;
	v->json = im->text;
	v->len = im->len;
	v->version = im->version;
	memcpy(v->last_seen_at, seen, GRAPH_TIME_LEN + 1);
	return 0;
}

/* Replaces node i's health_at by `at` when that is later; 0 or GRAPH_ENOMEM. */
static int
image_health_at(graph *g, uint32_t i, const char *at)
{
	struct graph_image *old = g->img[i], *im;
	json_error_t jerr;
	json_t *obj = json_loadb(old->text, old->len, 0, &jerr);
	const char *cur = json_string_value(json_object_get(obj, "health_at"));
	uint32_t *srcs = NULL;

	if (obj == NULL)
		return GRAPH_ENOMEM; /* it parsed when it was normalised */
	if ((cur != NULL && strcmp(at, cur) <= 0) ||
	    json_object_set_new(obj, "health_at", json_string(at))) {
		json_decref(obj);
		return 0;
	}
	if (old->nsrc > 0) {
		if ((srcs = malloc(old->nsrc * sizeof *srcs)) == NULL) {
			json_decref(obj);
			return GRAPH_ENOMEM;
		}
		memcpy(srcs, old->srcs, old->nsrc * sizeof *srcs);
	}
	im = image_from(obj, old, srcs);
	json_decref(obj);
	if (im == NULL) {
		free(srcs);
		return GRAPH_ENOMEM;
	}
	graph_image_free(old);
	g->img[i] = im;
	return 0;
}

int
graph_node_refresh(graph *g, const char *ref, const char *id, const char *last_seen_at,
		   const char *health_at)
{
	if (g == NULL || ref == NULL || id == NULL) {
		return GRAPH_EINVAL;
	}
	long i = graph_find(g, ref);
	if (i < 0 || g->img[i] == NULL)
		return 0;
	struct graph_image *im = image_of(g, i);
	if (im == NULL)
		return graph_error(g) == GRAPH_ENOMEM ? GRAPH_ENOMEM : 0;
	if (strcmp(im->id, id) != 0)
		return 0;
	/* Remembered apart from the image too, so that an image of an earlier
	 * change that the tailer applies after this reply does not undo it. */
	if (strcmp(im->fresh_id, id) != 0) {
		memcpy(im->fresh_id, im->id, sizeof im->fresh_id);
		im->fresh_seen[0] = im->fresh_health_at[0] = '\0';
	}
	if (time_ok(last_seen_at) && strcmp(last_seen_at, im->fresh_seen) > 0)
		memcpy(im->fresh_seen, last_seen_at, GRAPH_TIME_LEN + 1);
	if (time_ok(health_at) && strcmp(health_at, im->fresh_health_at) > 0)
		memcpy(im->fresh_health_at, health_at, GRAPH_TIME_LEN + 1);
	if (time_ok(last_seen_at) && strcmp(last_seen_at, im->seen) > 0)
		memcpy(im->seen, last_seen_at, GRAPH_TIME_LEN + 1);
	if (time_ok(health_at))
		return image_health_at(g, (uint32_t)i, health_at);
	return 0;
}
