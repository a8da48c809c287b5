/*
 * bench_graph.c — load and query figures for the in-memory graph at CMDB
 * scale (100k nodes, ~1M edges). Prints figures; asserts nothing; not part
 * of `make test`.
 *
 * Build and run from the project root:
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Icmdbd tests/bench_graph.c cmdbd/graph*.c \
 *       cmdbd/model.c cmdbd/strbuf.c -ljansson -o build/bench_graph
 *   build/bench_graph [seed [dense]]
 *
 * The map is layered like a real estate: load balancers connect to
 * services; services (four tiers) depend on three services of the next tier
 * and on data stores, run on hosts, are part of systems and are owned by
 * teams; one database is a hub that half of the services need. "dense" makes
 * each service need eight of the next 2000 instead: nearly everything then
 * reaches nearly everything, the worst case for unlimited walks.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph.h"

enum {
	N_TEAMS = 1000,
	N_SYSTEMS = 2000,
	N_HOSTS = 10000,
	N_DATA = 4000, /* databases, caches, queues */
	N_LBS = 3000,
	N_SERVICES = 80000,
};

static uint64_t rng_state;

static uint32_t
rnd(uint32_t n)
{
	/* xorshift64*: fast, and the same sequence for a given seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ull) >> 32) % n;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	while (f != NULL && fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = strtol(line + 6, NULL, 10);
	if (f != NULL)
		fclose(f);
	return kib;
}

static void
ref(char *buf, size_t n, const char *kind, uint32_t i)
{
	snprintf(buf, n, "%s/%s-%05u.prod", kind, kind, i);
}

static const char *
data_kind(uint32_t i)
{
	return i % 4 == 0 ? "cache" : i % 4 == 1 ? "queue" : "database";
}

static void
put_edge(graph *g, const char *from, int type, const char *to)
{
	if (graph_edge_put(g, from, type, to) != 0) {
		perror("graph_edge_put");
		exit(1);
	}
}

static void
load(graph *g, bool dense)
{
	char a[64], b[64];
	for (uint32_t i = 0; i < N_TEAMS; i++) {
		ref(a, sizeof a, "team", i);
		graph_node_put(
		    g, a, GRAPH_OK,
		    "{\"email\":\"team@example.com\",\"oncall\":\"https://pager.example.com/x\"}");
	}
	for (uint32_t i = 0; i < N_SYSTEMS; i++) {
		ref(a, sizeof a, "system", i);
		ref(b, sizeof b, "team", rnd(N_TEAMS));
		put_edge(g, a, GRAPH_OWNED_BY, b);
		if (i >= 100) { /* two-level systems */
			ref(b, sizeof b, "system", rnd(100));
			put_edge(g, a, GRAPH_PART_OF, b);
		}
	}
	for (uint32_t i = 0; i < N_DATA; i++) {
		ref(a, sizeof a, data_kind(i), i);
		ref(b, sizeof b, "host", rnd(N_HOSTS));
		put_edge(g, a, GRAPH_RUNS_ON, b);
	}
	for (uint32_t i = 0; i < N_SERVICES; i++) {
		ref(a, sizeof a, "service", i);
		ref(b, sizeof b, "host", rnd(N_HOSTS));
		put_edge(g, a, GRAPH_RUNS_ON, b);
		ref(b, sizeof b, "system", 100 + rnd(N_SYSTEMS - 100));
		put_edge(g, a, GRAPH_PART_OF, b);
		if (rnd(2)) {
			ref(b, sizeof b, "team", rnd(N_TEAMS));
			put_edge(g, a, GRAPH_OWNED_BY, b);
		}
		for (int k = 0; k < (dense ? 8 : 6); k++) {
			/* tiered: tier t (of 4) needs services of tier t + 1 only;
			 * dense: any of the next 2000 services (huge transitive reach). */
			uint32_t tier = N_SERVICES / 4, j;
			if (dense)
				j = i + 1 + rnd(2000);
			else
				j = (i / tier + 1) * tier + rnd(tier);
			if (j >= N_SERVICES)
				continue;
			ref(b, sizeof b, "service", j);
			put_edge(g, a, GRAPH_DEPENDS_ON, b);
		}
		for (int k = 0; k < 4; k++) {
			uint32_t d = rnd(N_DATA);
			ref(b, sizeof b, data_kind(d), d);
			put_edge(g, a, k == 3 ? GRAPH_CONNECTS_TO : GRAPH_DEPENDS_ON, b);
		}
		if (rnd(2))
			put_edge(g, a, GRAPH_DEPENDS_ON, "database/hub");
	}
	for (uint32_t i = 0; i < N_LBS; i++) {
		ref(a, sizeof a, "load_balancer", i);
		for (int k = 0; k < 10; k++) {
			ref(b, sizeof b, "service", rnd(N_SERVICES));
			put_edge(g, a, GRAPH_CONNECTS_TO, b);
		}
	}
}

/* Runs `fn` on random roots for about `budget` seconds; prints ops/s and
 * the mean size of the answer. */
typedef json_t *(*query_fn)(graph *g, long node);

static void
bench(graph *g, const char *name, query_fn fn, const char *kind, uint32_t n, const char *count_key)
{
	char r[64];
	double t0 = now(), t = 0;
	long ops = 0;
	double found = 0;
	while (t < 1.0) {
		if (n > 0)
			ref(r, sizeof r, kind, rnd(n));
		else
			snprintf(r, sizeof r, "%s", kind);
		long node = graph_find(g, r);
		t = now() - t0;
		if (node < 0)
			continue; /* a host nothing landed on was never created */
		json_t *res = fn(g, node);
		if (res == NULL) {
			fprintf(stderr, "%s(%s) failed\n", name, r);
			exit(1);
		}
		json_t *c = json_object_get(res, count_key);
		found +=
		    json_is_integer(c) ? (double)json_integer_value(c) : (double)json_array_size(c);
		json_decref(res);
		ops++;
		t = now() - t0;
	}
	printf("%-40s %10.0f ops/s  %9.1f us/op  (mean %s %.0f)\n", name, (double)ops / t,
	       t / (double)ops * 1e6, count_key, found / (double)ops);
}

static json_t *
q_dependents(graph *g, long n)
{
	return graph_dependents(g, n, -1, GRAPH_IMPACT_MASK, 1000);
}
static json_t *
q_dependents_d2(graph *g, long n)
{
	return graph_dependents(g, n, 2, GRAPH_IMPACT_MASK, 1000);
}
static json_t *
q_dependencies(graph *g, long n)
{
	return graph_dependencies(g, n, -1, GRAPH_IMPACT_MASK, 1000);
}
static json_t *
q_dependencies_d3(graph *g, long n)
{
	return graph_dependencies(g, n, 3, GRAPH_IMPACT_MASK, 1000);
}
static json_t *
q_owners(graph *g, long n)
{
	return graph_owners(g, n);
}
static json_t *
q_subgraph(graph *g, long n)
{
	return graph_subgraph(g, n, 2, GRAPH_DIR_BOTH);
}

static json_t *
q_rootcause50(graph *g, long unused)
{
	(void)unused;
	long f[50];
	char r[64];
	for (int i = 0; i < 50; i++) {
		ref(r, sizeof r, "service", rnd(N_SERVICES));
		f[i] = graph_find(g, r);
	}
	return graph_rootcause(g, f, 50, 16);
}

static json_t *
q_path(graph *g, long from)
{
	json_t *res = graph_path(g, from, graph_find(g, "database/hub"));
	return res ? res : json_pack("{s:[]}", "hops");
}

int
main(int argc, char **argv)
{
	rng_state = argc > 1 ? strtoull(argv[1], NULL, 10) | 1 : 88172645463325252ull;
	bool dense = argc > 2 && strcmp(argv[2], "dense") == 0;
	long rss0 = rss_kib();
	graph *g = graph_new();
	double t0 = now();
	load(g, dense);
	double tl = now() - t0;
	printf("%s map\n", dense ? "dense" : "tiered");
	printf("load: %zu nodes, %zu edges in %.3f s (%.0f edges/s), RSS +%ld MiB\n",
	       graph_node_count(g), graph_edge_count(g), tl, (double)graph_edge_count(g) / tl,
	       (rss_kib() - rss0) / 1024);

	bench(g, "dependents(hub) limit 1000", q_dependents, "database/hub", 0, "count");
	bench(g, "dependents(host) unlimited", q_dependents, "host", N_HOSTS, "count");
	bench(g, "dependents(service, leaf-ish) unlimited", q_dependents, "service", N_SERVICES,
	      "count");
	bench(g, "dependents(host) depth 2", q_dependents_d2, "host", N_HOSTS, "count");
	bench(g, "dependencies(service) unlimited", q_dependencies, "service", N_SERVICES, "count");
	bench(g, "dependencies(service) depth 3", q_dependencies_d3, "service", N_SERVICES,
	      "count");
	bench(g, "owners(service)", q_owners, "service", N_SERVICES, "owners");
	bench(g, "owners(host) (runs_on rule)", q_owners, "host", N_HOSTS, "owners");
	bench(g, "path(service -> hub)", q_path, "service", N_SERVICES, "hops");
	bench(g, "subgraph(service) depth 2 both", q_subgraph, "service", N_SERVICES, "nodes");
	bench(g, "rootcause(50 failing services) depth 16", q_rootcause50, "service", N_SERVICES,
	      "candidates");

	t0 = now();
	char r[64];
	for (uint32_t i = 0; i < N_SERVICES; i += 2) {
		ref(r, sizeof r, "service", i);
		graph_node_remove(g, r);
	}
	printf("remove 40k services (and their edges): %.3f s, %zu edges left\n", now() - t0,
	       graph_edge_count(g));
	graph_free(g);
	return 0;
}
