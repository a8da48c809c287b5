/*
 * graph_digest.c — the digests by which a verification compares the in-memory
 * graph with PostgreSQL (graph.h, "Digests"): a node's from its image as it
 * arrived, a node's outgoing edges from the adjacency lists.
 *
 * The image is read with a small scanner, not a JSON parser: the values that are
 * JSON (attributes, labels, sources) must be digested as the very bytes
 * PostgreSQL wrote, and a parser would rewrite numbers (1.50 → 1.5).
 */
#include "graph_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "strbuf.h"

/* The fields of a node digest, in digest order (sql.c SQL_VERIFY agrees). */
enum {
	F_ID,
	F_REF,
	F_KIND,
	F_NAME,
	F_HEALTH,
	F_HEALTH_REASON,
	F_ORPHAN,
	F_VERSION,
	F_CREATED_AT,
	F_UPDATED_AT,
	F_ATTRIBUTES,
	F_LABELS,
	F_SOURCES,
	F_COUNT
};

/* How each field is read from the image. */
enum kind { STRING, STRING_OR_NULL, BOOLEAN, INTEGER, OBJECT, ARRAY };

static const struct {
	const char *key;
	enum kind kind;
} fields[F_COUNT] = {
    [F_ID] = {"id", STRING},
    [F_REF] = {"ref", STRING},
    [F_KIND] = {"kind", STRING},
    [F_NAME] = {"name", STRING},
    [F_HEALTH] = {"health", STRING},
    [F_HEALTH_REASON] = {"health_reason", STRING_OR_NULL},
    [F_ORPHAN] = {"orphan", BOOLEAN},
    [F_VERSION] = {"version", INTEGER},
    [F_CREATED_AT] = {"created_at", STRING},
    [F_UPDATED_AT] = {"updated_at", STRING},
    [F_ATTRIBUTES] = {"attributes", OBJECT},
    [F_LABELS] = {"labels", OBJECT},
    [F_SOURCES] = {"sources", ARRAY},
};

/* ---- Scanning ------------------------------------------------------------ */

struct span {
	const char *p;
	size_t n;
};

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at '"': the byte after the closing quote, or NULL. */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* p at a value: the byte after it, or NULL. Containers are matched by depth
 * (strings skipped whole); their content is not checked. */
static const char *
skip_value(const char *p, const char *end)
{
	size_t depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[') {
		const char *s = p;

		while (p < end && strchr(",}] \t\r\n", *p) == NULL)
			p++;
		return p > s ? p : NULL;
	}
	for (; p < end; p++) {
		if (*p == '"') {
			if ((p = skip_string(p, end)) == NULL)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if ((*p == '}' || *p == ']') && --depth == 0) {
			return p + 1;
		}
	}
	return NULL;
}

/* The top-level members of the object text[0..len) that fields[] names, as raw
 * value spans (the last one wins). False when the text is not an object. */
static bool
scan_image(const char *text, size_t len, struct span out[F_COUNT])
{
	const char *p = text, *end = text + len;

	memset(out, 0, sizeof(struct span) * F_COUNT);
	p = skip_ws(p, end);
	if (p == end || *p++ != '{')
		return false;
	p = skip_ws(p, end);
	if (p < end && *p == '}')
		return true;
	for (;;) {
		const char *key = p, *val;

		if (p == end || *p != '"' || (p = skip_string(p, end)) == NULL)
			return false;
		p = skip_ws(p, end);
		if (p == end || *p++ != ':')
			return false;
		val = p = skip_ws(p, end);
		if ((p = skip_value(p, end)) == NULL)
			return false;
		for (int f = 0; f < F_COUNT; f++) {
			size_t klen = strlen(fields[f].key);

			if ((size_t)(p - key) >= klen + 2 && key[klen + 1] == '"' &&
			    memcmp(key + 1, fields[f].key, klen) == 0) {
				out[f].p = val;
				out[f].n = (size_t)(p - val);
			}
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		return p < end && *p == '}';
	}
}

/* ---- Decoding a JSON string ------------------------------------------------ */

static int
hex4(const char *p)
{
	int v = 0;

	for (int k = 0; k < 4; k++) {
		char c = p[k];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static void
put_utf8(struct strbuf *b, unsigned long cp)
{
	char u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	strbuf_add(b, u, n);
}

/* The value of the JSON string token s (quotes included) into b; false when it
 * is not a well-formed string. Escapes are decoded whichever way they were
 * written (PostgreSQL and the loader escape control characters differently). */
static bool
decode_string(struct span s, struct strbuf *b)
{
	const char *p = s.p + 1, *end = s.p + s.n - 1;

	strbuf_reset(b);
	strbuf_grow(b, s.n); /* so that b->s is a string even for "" */
	if (b->failed || s.n < 2 || s.p[0] != '"' || s.p[s.n - 1] != '"')
		return false;
	while (p < end) {
		const char *run = p;
		int cp, lo;

		while (p < end && *p != '\\')
			p++;
		strbuf_add(b, run, (size_t)(p - run));
		if (p == end)
			break;
		if (++p == end)
			return false;
		switch (*p++) {
		case '"':
			strbuf_lit(b, "\"");
			break;
		case '\\':
			strbuf_lit(b, "\\");
			break;
		case '/':
			strbuf_lit(b, "/");
			break;
		case 'b':
			strbuf_lit(b, "\b");
			break;
		case 'f':
			strbuf_lit(b, "\f");
			break;
		case 'n':
			strbuf_lit(b, "\n");
			break;
		case 'r':
			strbuf_lit(b, "\r");
			break;
		case 't':
			strbuf_lit(b, "\t");
			break;
		case 'u':
			if (end - p < 4 || (cp = hex4(p)) < 0)
				return false;
			p += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    (lo = hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
					return false;
				p += 6;
				put_utf8(b, 0x10000 + (((unsigned long)cp - 0xD800) << 10) +
						((unsigned long)lo - 0xDC00));
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				return false;
			} else {
				put_utf8(b, (unsigned long)cp);
			}
			break;
		default:
			return false;
		}
	}
	return !b->failed;
}

/* ---- Digests --------------------------------------------------------------- */

/* Feeds "<len>:<bytes>" to the hash. */
static void
digest_field(struct sha256_ctx *h, const char *p, size_t n)
{
	char len[24];

	sha256_update(h, len, (size_t)snprintf(len, sizeof(len), "%zu:", n));
	sha256_update(h, p, n);
}

static void
digest_end(struct sha256_ctx *h, unsigned char out[GRAPH_DIGEST_LEN])
{
	uint8_t full[SHA256_DIGEST_LEN];

	sha256_final(h, full);
	memcpy(out, full, GRAPH_DIGEST_LEN);
}

static bool
span_is(struct span s, const char *text)
{
	return s.n == strlen(text) && memcmp(s.p, text, s.n) == 0;
}

int
graph_image_digest(const graph *g, uint32_t i, struct graph_image *im)
{
	struct span f[F_COUNT];
	struct strbuf b = STRBUF_INIT;
	struct sha256_ctx h;
	const char *attrs = g->attrs[i] ? g->attrs[i] : "{}";
	int err = GRAPH_EPROTO;

	if (!scan_image(im->text, im->len, f))
		goto fail;
	sha256_init(&h);
	for (int k = 0; k < F_COUNT; k++) {
		struct span v = f[k];

		if (v.p == NULL)
			goto fail;
		switch (fields[k].kind) {
		case STRING_OR_NULL:
			if (span_is(v, "null")) {
				sha256_update(&h, "~", 1);
				break;
			}
			/* fall through */
		case STRING:
			if (!decode_string(v, &b))
				goto fail;
			if ((k == F_REF && strcmp(b.s, g->ref[i]) != 0) ||
			    (k == F_HEALTH && strcmp(b.s, graph_health_name(g->health[i])) != 0))
				goto fail; /* the image disagrees with the node */
			digest_field(&h, b.s, b.len);
			break;
		case BOOLEAN:
			if (!span_is(v, "true") && !span_is(v, "false"))
				goto fail;
			digest_field(&h, v.p, v.n);
			break;
		case INTEGER:
			for (size_t c = 0; c < v.n; c++)
				if ((v.p[c] < '0' || v.p[c] > '9') && !(c == 0 && v.p[c] == '-'))
					goto fail;
			digest_field(&h, v.p, v.n);
			break;
		case OBJECT:
		case ARRAY:
			if (v.p[0] != (fields[k].kind == OBJECT ? '{' : '['))
				goto fail;
			if (k == F_ATTRIBUTES && !span_is(v, attrs))
				goto fail;
			digest_field(&h, v.p, v.n);
			break;
		}
	}
	if (b.failed) {
		err = GRAPH_ENOMEM;
		goto fail;
	}
	digest_end(&h, im->digest);
	im->has_digest = true;
	strbuf_release(&b);
	return 0;
fail:
	if (b.failed)
		err = GRAPH_ENOMEM;
	strbuf_release(&b);
	return err;
}

int
graph_node_digest(graph *g, long node, unsigned char out[GRAPH_DIGEST_LEN])
{
	struct graph_image *im;

	if (g == NULL || !graph_live(g, node)) {
		return GRAPH_EINVAL;
	}
	if ((im = g->img[node]) == NULL) {
		return GRAPH_ENOENT;
	}
	if (!im->has_digest) {
		/* A normalised image without a digest had a raw text that did not read. */
		if (im->norm) {
			return GRAPH_EPROTO;
		}
		int rc = graph_image_digest(g, (uint32_t)node, im);

		if (rc != 0)
			return rc;
	}
	memcpy(out, im->digest, GRAPH_DIGEST_LEN);
	return 0;
}

/* An outgoing edge for sorting: (type name, target ref). */
struct out_edge {
	const char *type;
	const char *to;
};

static int
cmp_out_edge(const void *a, const void *b)
{
	const struct out_edge *x = a, *y = b;
	int c = strcmp(x->type, y->type);

	return c != 0 ? c : strcmp(x->to, y->to);
}

int
graph_out_digest(graph *g, long node, unsigned char out[GRAPH_DIGEST_LEN], size_t *count)
{
	const struct graph_adj *a;
	struct out_edge *e;
	struct sha256_ctx h;

	if (g == NULL || !graph_live(g, node)) {
		return GRAPH_EINVAL;
	}
	a = &g->out[node];
	e = a->n > 0 ? malloc(a->n * sizeof(*e)) : NULL;
	if (a->n > 0 && e == NULL) {
		return GRAPH_ENOMEM;
	}
	for (uint32_t k = 0; k < a->n; k++) {
		e[k].type = graph_edge_type_name(GRAPH_ENT_TYPE(a->e[k]));
		e[k].to = g->ref[GRAPH_ENT_NODE(a->e[k])];
	}
	if (a->n > 1)
		qsort(e, a->n, sizeof(*e), cmp_out_edge);
	sha256_init(&h);
	for (uint32_t k = 0; k < a->n; k++) {
		digest_field(&h, e[k].type, strlen(e[k].type));
		digest_field(&h, e[k].to, strlen(e[k].to));
	}
	digest_end(&h, out);
	*count = a->n;
	free(e);
	return 0;
}

long
graph_index_end(const graph *g)
{
	return g != NULL ? (long)g->hi : 0;
}
