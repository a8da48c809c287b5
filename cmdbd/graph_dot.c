/*
 * graph_dot.c — the subgraph as Graphviz source (GET /v1/graph?format=dot):
 * one box per node, coloured by health, and one arrow per stored edge,
 * labelled with its type. The subgraph itself is collected by graph_query.c.
 */
#include "graph_impl.h"
#include "strbuf.h"

#include <string.h>

/* Appends `n` bytes of s for use inside a DOT double-quoted string:
 * quotes and backslashes escaped (a name ending in '\' must not escape the
 * closing quote), control characters — which valid names never hold —
 * replaced by '?'. Used for ids and labels alike, so ids stay consistent. */
static void
dot_escaped(struct strbuf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			strbuf_add(b, "\\", 1);
		if (c < 0x20 || c == 0x7f)
			strbuf_add(b, "?", 1);
		else
			strbuf_add(b, &s[i], 1);
	}
}

static void
dot_id(struct strbuf *b, const char *ref)
{
	strbuf_add(b, "\"", 1);
	dot_escaped(b, ref, strlen(ref));
	strbuf_add(b, "\"", 1);
}

static const char *
health_colour(int h)
{
	switch (h) {
	case GRAPH_OK:
		return "palegreen";
	case GRAPH_DEGRADED:
		return "gold";
	case GRAPH_DOWN:
		return "tomato";
	default:
		return "lightgrey";
	}
}

static void
dot_node(struct strbuf *b, const graph *g, const struct graph_sub_node *x, uint32_t root)
{
	const char *slash = strchr(x->ref, '/');
	strbuf_puts(b, "  ");
	dot_id(b, x->ref);
	strbuf_puts(b, " [label=\"");
	dot_escaped(b, x->ref, (size_t)(slash - x->ref));
	strbuf_puts(b, "\\n");
	dot_escaped(b, slash + 1, strlen(slash + 1));
	strbuf_puts(b, "\", fillcolor=\"");
	strbuf_puts(b, health_colour(g->health[x->idx]));
	strbuf_puts(b, "\", tooltip=\"health: ");
	strbuf_puts(b, graph_health_name(g->health[x->idx]));
	strbuf_puts(b, x->idx == root ? "\", penwidth=3];\n" : "\"];\n");
}

char *
graph_subgraph_dot(graph *g, long root, int depth, int direction)
{
	struct graph_sub s;
	int rc = graph_sub_collect(g, root, depth, direction, &s);
	if (rc != 0)
		return graph_fail(g, rc);
	struct strbuf b = STRBUF_INIT;
	strbuf_puts(&b, "digraph cmdb {\n"
			"  rankdir=LR;\n"
			"  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n"
			"  edge [fontname=\"Helvetica\", fontsize=10];\n");
	for (size_t i = 0; i < s.n; i++)
		dot_node(&b, g, &s.nodes[i], (uint32_t)root);
	for (size_t i = 0; i < s.ne; i++) {
		strbuf_puts(&b, "  ");
		dot_id(&b, g->ref[s.edges[i].from]);
		strbuf_puts(&b, " -> ");
		dot_id(&b, g->ref[s.edges[i].to]);
		strbuf_puts(&b, " [label=\"");
		strbuf_puts(&b, graph_edge_type_name(s.edges[i].type));
		strbuf_puts(&b,
			    s.edges[i].type == GRAPH_OWNED_BY ? "\", style=dashed];\n" : "\"];\n");
	}
	strbuf_puts(&b, "}\n");
	graph_sub_release(&s);
	char *text = strbuf_detach(&b, NULL);
	if (text == NULL)
		g->err = GRAPH_ENOMEM;
	return text;
}
