/*
 * walkbench.c — the dependents / dependencies walks of `make bench` without HTTP:
 * the estate's final map loaded straight into the in-memory graph (graph.h), then
 * graph_walk_text() (the reply text GET …/dependents sends) of the bench's roots,
 * timed. Prints figures; asserts nothing; not part of `make test`.
 *
 *   make build/walkbench
 *   tests/bench/gen_estate.py --size l --out /tmp/estate
 *   build/walkbench [options] /tmp/estate
 *
 * Options:
 *   -r N        rounds over every root (default 50); each round visits the roots in order
 *   -l N        limit (default 1000, the API's default)
 *   -d N        depth (default unlimited)
 *   -t TYPES    types (comma list, as the API's `types`)
 *   -o ORDER    node index order: gen1 (default: the order the first apply creates
 *               nodes in, as a server that ingested the estate holds them) or shuffle
 *               (random indexes: a map loaded in no particular order)
 *   -w FILE     write every answer of the first round to FILE (to compare two builds)
 *   -D DIR      only the dependents (or only the dependencies) walks
 *   -x          walk with the index as stale as the automatic rebuild lets it get: the
 *               edges of ~6,000 nodes changed and 50 new nodes that depend on every
 *               root (so their first levels hold nodes without a rank)
 *   -q          one round, no timing output but the checksum (for callgrind:
 *               valgrind --tool=callgrind --toggle-collect=graph_walk_text build/walkbench -q DIR)
 *
 * Loading: the nodes and edges of gen1.bodies in manifest order (nodes, then edges, as
 * the tailer applies them), then the edges of walk-edges.tsv (the map after gen2) added
 * and the gen1 edges it lacks removed: the same map the bench's server holds. The first
 * run records these operations in ESTATE_DIR/walkbench.ops and later runs replay them
 * (parsing the manifests is most of a load). When the build has the walk index, it is
 * built before the timed walks (as the loader does) and its rebuild times are printed.
 * The checksum (FNV-1a of every answer of the first round) must be the same for any two
 * builds: answers are byte for byte the same.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "graph.h"

/* Absent from builds before the walk index: then NULL. */
#pragma weak graph_index_refresh

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
die(const char *what)
{
	fprintf(stderr, "walkbench: %s\n", what);
	exit(1);
}

static char *
slurp(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		die("read failed");
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Splits text into lines in place. */
static char **
lines(char *text, size_t *n)
{
	size_t cap = 1024, k = 0;
	char **v = malloc(cap * sizeof *v);
	for (char *p = text; v != NULL && *p;) {
		char *nl = strchr(p, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (k == cap)
			v = realloc(v, (cap *= 2) * sizeof *v);
		if (v == NULL)
			break;
		v[k++] = p;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (v == NULL)
		die("out of memory");
	*n = k;
	return v;
}

static void
shuffle(char **v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd() % i;
		char *t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* "from\ttype\tto" -> graph_edge_put or _remove. */
static void
edge_line(graph *g, char *line, bool put)
{
	char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
	if (t2 == NULL)
		die("bad walk-edges.tsv line");
	*t1 = *t2 = '\0';
	int type = graph_edge_type_parse(t1 + 1);
	int rc =
	    put ? graph_edge_put(g, line, type, t2 + 1) : graph_edge_remove(g, line, type, t2 + 1);
	*t1 = *t2 = '\t';
	if (rc != 0)
		die("edge put/remove failed");
}

/* The operations of a load, replayed by later runs (DIR/walkbench.ops: "n REF",
 * "e FROM\tTYPE\tTO" put, "x FROM\tTYPE\tTO" remove): parsing the manifests is
 * most of a load's time. */
static FILE *ops;

static void
load_gen1(graph *g, const char *dir)
{
	size_t len;
	char *bodies = slurp(dir, "gen1.bodies", &len);
	for (char *p = bodies; p < bodies + len;) {
		char *end;
		size_t n = strtoul(p, &end, 10);
		if (end == p || *end != '\n')
			die("bad gen1.bodies record");
		json_t *m = json_loadb(end + 1, n, 0, NULL);
		if (m == NULL)
			die("bad manifest JSON");
		size_t i;
		json_t *x;
		json_array_foreach(json_object_get(m, "nodes"), i, x)
		{
			const char *ref = json_string_value(json_object_get(x, "ref"));
			if (graph_find(g, ref) >= 0)
				continue;
			if (graph_node_put(g, ref, 0, NULL) != 0)
				die("node put failed");
			fprintf(ops, "n %s\n", ref);
		}
		json_array_foreach(json_object_get(m, "edges"), i, x)
		{
			const char *from = json_string_value(json_object_get(x, "from")),
				   *ty = json_string_value(json_object_get(x, "type")),
				   *to = json_string_value(json_object_get(x, "to"));
			if (graph_edge_put(g, from, graph_edge_type_parse(ty), to) != 0)
				die("edge put failed");
			fprintf(ops, "e %s\t%s\t%s\n", from, ty, to);
		}
		json_decref(m);
		p = end + 1 + n;
	}
	free(bodies);
}

/* The final map's edges: added (when gen1 lacked them); gen1 edges not in it removed. */
static void
load_final(graph *g, const char *dir, bool shuffled)
{
	size_t nn, ne;
	char *ntext = slurp(dir, "walk-nodes.tsv", NULL),
	     *etext = slurp(dir, "walk-edges.tsv", NULL);
	char **nodes = lines(ntext, &nn), **edges = lines(etext, &ne);
	if (shuffled) {
		shuffle(nodes, nn);
		for (size_t i = 0; i < nn; i++) {
			char *tab = strchr(nodes[i], '\t');
			if (tab == NULL)
				die("bad walk-nodes.tsv line");
			*tab = '/';
			if (graph_node_put(g, nodes[i], 0, NULL) != 0)
				die("node put failed");
		}
		shuffle(edges, ne);
	}
	for (size_t i = 0; i < ne; i++) {
		edge_line(g, edges[i], true);
		if (ops != NULL)
			fprintf(ops, "e %s\n", edges[i]);
	}
	free(nodes);
	free(edges);
	free(ntext);
	free(etext);
}

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Removes the gen1 edges that gen2 swapped away (not lines of walk-edges.tsv), so
 * that the map is the final one with the node indexes of the first apply. */
static void
drop_swapped(graph *g, const char *dir)
{
	size_t ne, len;
	char *etext = slurp(dir, "walk-edges.tsv", NULL), *bodies = slurp(dir, "gen1.bodies", &len);
	char **edges = lines(etext, &ne);
	qsort(edges, ne, sizeof *edges, cmp_strp);
	for (char *p = bodies; p < bodies + len;) {
		char *end;
		size_t n = strtoul(p, &end, 10);
		json_t *m = json_loadb(end + 1, n, 0, NULL), *x;
		size_t k;
		json_array_foreach(json_object_get(m, "edges"), k, x)
		{
			char line[1024];
			char *key = line;
			snprintf(line, sizeof line, "%s\t%s\t%s",
				 json_string_value(json_object_get(x, "from")),
				 json_string_value(json_object_get(x, "type")),
				 json_string_value(json_object_get(x, "to")));
			if (bsearch(&key, edges, ne, sizeof *edges, cmp_strp) == NULL) {
				edge_line(g, line, false);
				fprintf(ops, "x %s\n", line);
			}
		}
		json_decref(m);
		p = end + 1 + n;
	}
	if (graph_edge_count(g) != ne)
		die("the map does not match walk-edges.tsv");
	free(bodies);
	free(edges);
	free(etext);
}

/* Replays DIR/walkbench.ops; false when there is none. */
static bool
load_ops(graph *g, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/walkbench.ops", dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	fclose(f);
	size_t n;
	char *text = slurp(dir, "walkbench.ops", NULL);
	char **v = lines(text, &n);
	for (size_t i = 0; i < n; i++) {
		if (v[i][0] == 'n') {
			if (graph_node_put(g, v[i] + 2, 0, NULL) != 0)
				die("node put failed");
		} else {
			edge_line(g, v[i] + 2, v[i][0] == 'e');
		}
	}
	free(v);
	free(text);
	return true;
}

/* The first load: the manifests, recorded into DIR/walkbench.ops for the next. */
static void
load_and_record(graph *g, const char *dir)
{
	char path[4096], done[4096];
	snprintf(path, sizeof path, "%s/walkbench.ops.tmp", dir);
	snprintf(done, sizeof done, "%s/walkbench.ops", dir);
	if ((ops = fopen(path, "w")) == NULL)
		die("cannot write walkbench.ops.tmp");
	load_gen1(g, dir);
	load_final(g, dir, false);
	drop_swapped(g, dir);
	if (fclose(ops) != 0 || rename(path, done) != 0)
		die("cannot write walkbench.ops");
	ops = NULL;
}

static int cmp_dbl(const void *a, const void *b);

/* -x: edges re-put at random (both ends stale) up to just below the automatic
 * rebuild's threshold, and new nodes in the roots' first levels. */
static void
make_stale(graph *g, const char *dir)
{
	size_t ne, nr;
	char *etext = slurp(dir, "walk-edges.tsv", NULL);
	char *rtext = slurp(dir, "walk-dependents.roots", NULL);
	char **edges = lines(etext, &ne), **roots = lines(rtext, &nr);
	for (size_t i = 0; i < graph_node_count(g) / 36; i++) {
		char *line = edges[rnd() % ne];
		edge_line(g, line, false);
		edge_line(g, line, true);
	}
	for (int i = 0; i < 50; i++) {
		char ref[64];
		snprintf(ref, sizeof ref, "service/zz-new-%02d", i);
		for (size_t k = 0; k < nr; k++)
			if (graph_edge_put(g, ref, graph_edge_type_parse("depends_on"), roots[k]) !=
			    0)
				die("edge put failed");
	}
	free(edges);
	free(etext);
	free(roots);
	free(rtext);
}

/* Rebuild times of the walk index: after a node is created (its ref merged into
 * the order) and after the edges of a sixteenth of the nodes changed (the
 * automatic rebuild's threshold), each the median of 9. */
static void
rebuilds(graph *g, const char *dir)
{
	size_t ne;
	char *etext = slurp(dir, "walk-edges.tsv", NULL);
	char **edges = lines(etext, &ne);
	double t[2][9];
	for (int r = 0; r < 9; r++) {
		double a = now_ms();
		if (graph_node_put(g, "zz/new", 0, NULL) != 0 || graph_index_refresh(g) != 0)
			die("index rebuild failed");
		t[0][r] = now_ms() - a;
		graph_node_remove(g, "zz/new");
		/* Each edge removed and put back: both ends stale. */
		for (size_t i = 0; i < graph_node_count(g) / 32; i++) {
			char *line = edges[rnd() % ne];
			edge_line(g, line, false);
			edge_line(g, line, true);
		}
		a = now_ms();
		if (graph_index_refresh(g) != 0)
			die("index rebuild failed");
		t[1][r] = now_ms() - a;
	}
	qsort(t[0], 9, sizeof(double), cmp_dbl);
	qsort(t[1], 9, sizeof(double), cmp_dbl);
	printf("index rebuilt in %.2f ms after a node was created, %.2f ms after %zu edges "
	       "changed\n",
	       t[0][4], t[1][4], graph_node_count(g) / 32);
	free(edges);
	free(etext);
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	int rounds = 50, depth = GRAPH_UNLIMITED;
	size_t limit = 1000;
	const char *types = NULL, *order = "gen1", *dump = NULL;
	bool quiet = false, stale = false;
	const char *only = NULL;
	int i;
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-x") == 0) {
			stale = true;
			continue;
		}
		if (strcmp(argv[i], "-q") == 0) {
			quiet = true;
			rounds = 1;
			continue;
		}
		if (i + 1 >= argc)
			die("option without a value");
		const char *v = argv[++i];
		switch (argv[i - 1][1]) {
		case 'r':
			rounds = atoi(v);
			break;
		case 'l':
			limit = strtoul(v, NULL, 10);
			break;
		case 'd':
			depth = atoi(v);
			break;
		case 't':
			types = v;
			break;
		case 'o':
			order = v;
			break;
		case 'w':
			dump = v;
			break;
		case 'D':
			only = v;
			break;
		default:
			die("unknown option");
		}
	}
	if (i + 1 != argc)
		die("usage: walkbench [-r N] [-l N] [-d N] [-t TYPES] [-o gen1|shuffle] [-w FILE] "
		    "[-q] ESTATE_DIR");
	const char *dir = argv[i];
	unsigned mask;
	if (graph_impact_mask_parse(types, &mask) != 0)
		die("bad -t");

	graph *g = graph_new();
	double t0 = now_ms();
	if (strcmp(order, "gen1") == 0) {
		if (!load_ops(g, dir))
			load_and_record(g, dir);
	} else if (strcmp(order, "shuffle") == 0) {
		load_final(g, dir, true);
	} else {
		die("bad -o");
	}
	double t1 = now_ms();
	/* The walk index (when the build under test has one): built here, so that
	 * the first walk does not pay for it and its cost is shown on its own. */
	double tb = 0;
	if (graph_index_refresh != NULL) {
		tb = now_ms();
		if (graph_index_refresh(g) != 0)
			die("index build failed");
		tb = now_ms() - tb;
		if (!quiet)
			rebuilds(g, dir);
	}
	if (stale)
		make_stale(g, dir);

	size_t nroots[2];
	char *rtext[2] = {slurp(dir, "walk-dependents.roots", NULL),
			  slurp(dir, "walk-dependencies.roots", NULL)};
	char **roots[2] = {lines(rtext[0], &nroots[0]), lines(rtext[1], &nroots[1])};
	static const int dirs[2] = {GRAPH_DIR_DEPENDENTS, GRAPH_DIR_DEPENDENCIES};
	static const char *const names[2] = {"dependents", "dependencies"};
	if (!quiet)
		printf("map: %zu nodes, %zu edges, loaded in %.0f ms (order %s), index built in "
		       "%.1f ms%s; limit %zu, depth %d, types %s, %d rounds\n",
		       graph_node_count(g), graph_edge_count(g), t1 - t0, order, tb,
		       stale ? " then left stale (-x)" : "", limit, depth, types ? types : "(all)",
		       rounds);

	FILE *df = dump ? fopen(dump, "wb") : NULL;
	uint64_t sum = 1469598103934665603ull;
	for (int d = 0; d < 2; d++) {
		if (only != NULL && strcmp(only, names[d]) != 0)
			continue;
		size_t n = nroots[d];
		double *ms = malloc((size_t)rounds * n * sizeof *ms);
		double *per_root = calloc(n, sizeof *per_root);
		size_t *count = calloc(n, sizeof *count);
		long *idx = malloc(n * sizeof *idx);
		for (size_t k = 0; k < n; k++)
			if ((idx[k] = graph_find(g, roots[d][k])) < 0)
				die("root not in the map");
		for (int r = 0; r < rounds; r++)
			for (size_t k = 0; k < n; k++) {
				size_t len;
				double a = now_ms();
				char *text =
				    graph_walk_text(g, idx[k], dirs[d], depth, mask, limit, &len);
				double b = now_ms();
				if (text == NULL)
					die("walk failed");
				ms[(size_t)r * n + k] = b - a;
				per_root[k] += b - a;
				if (r == 0) {
					for (size_t j = 0; j < len; j++)
						sum = (sum ^ (unsigned char)text[j]) *
						      1099511628211ull;
					if (df != NULL)
						fprintf(df, "%s\n", text);
					const char *c = strstr(text, "\"count\":");
					count[k] = c ? strtoul(c + 8, NULL, 10) : 0;
				}
				free(text);
			}
		if (!quiet) {
			qsort(ms, (size_t)rounds * n, sizeof *ms, cmp_dbl);
			size_t m = (size_t)rounds * n;
			printf("%-12s p50 %.3f ms  p90 %.3f  p99 %.3f  max %.3f  (%zu walks)\n",
			       names[d], ms[m / 2], ms[m * 9 / 10], ms[m * 99 / 100], ms[m - 1], m);
			for (size_t k = 0; k < n; k++)
				printf("  %-28s count %6zu  mean %.3f ms\n", roots[d][k], count[k],
				       per_root[k] / rounds);
		}
		free(ms);
		free(per_root);
		free(count);
		free(idx);
	}
	if (df != NULL)
		fclose(df);
	printf("checksum %016llx\n", (unsigned long long)sum);
	for (int d = 0; d < 2; d++) {
		free(roots[d]);
		free(rtext[d]);
	}
	graph_free(g);
	return 0;
}
