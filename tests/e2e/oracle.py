"""An independent model of SPEC §2 "Graph queries", written from the SPEC alone.

Given the map as plain data (nodes with health and attributes, stored edges as
(from, type, to) triples), Oracle answers what the server must answer, using networkx
for the walks. Nothing here looks at how cmdbd does it.

The SPEC fixes some things and leaves others open; this module keeps the two apart:
- What the SPEC fixes (which nodes, at which depth, in which order, counts, truncation,
  which owners by which rule, path length, candidates and their explains/depth, ranking,
  root causes, the greedy cover) is computed exactly, and the checks compare it exactly.
- Where several answers are equally right (which `via` edge when a node is reached at
  the same depth through several, which of several shortest paths, which `via` chain
  for an owner), the check_* functions accept any valid answer and verify it is valid.

Decisions where the SPEC is silent (each flagged in the report of the test that uses it):
- dependents/dependencies never list the root itself, even when a cycle leads back to
  it ("every node impacted if X fails": X is the failure, not an impacted node).
- rootcause: "none of whose dependencies ... are failing or down" looks at the
  candidate's dependencies other than itself (in a cycle a node is its own dependency;
  counting that would make every failing node on a cycle disqualify itself).
- rootcause rank "smaller total depth" = the sum, over the failing nodes a candidate
  explains, of its distance from each.

Impact direction (SPEC §1 Edge table): for depends_on/runs_on/connects_to FROM->TO, a
failure of TO impacts FROM; for part_of FROM->TO, a failure of FROM impacts TO;
owned_by never impacts. "Needs" (dependencies, path, rootcause) is the reverse.
"""

import networkx as nx

IMPACT_TYPES = ("depends_on", "runs_on", "connects_to", "part_of")
NEED_FORWARD = ("depends_on", "runs_on", "connects_to")  # FROM needs TO
ALL_TYPES = IMPACT_TYPES + ("owned_by",)


def impact_pair(edge):
    """(u, v) such that a failure of u impacts v through this stored edge, or None."""
    frm, typ, to = edge
    if typ in NEED_FORWARD:
        return (to, frm)
    if typ == "part_of":
        return (frm, to)
    return None


def byte_key(ref):
    """Sort key for "by ref is byte order" (UTF-8 bytes)."""
    return ref.encode("utf-8")


class Oracle:
    """Expected answers for one snapshot of the map.

    nodes: {ref: {"health": str, "attributes": dict}}; edges: iterable of (from, type, to).
    """

    def __init__(self, nodes, edges):
        self.nodes = dict(nodes)
        self.edges = set(tuple(e) for e in edges)
        for f, t, to in self.edges:
            if t not in ALL_TYPES:
                raise ValueError("unknown edge type %r" % t)
            if f not in self.nodes or to not in self.nodes:
                raise ValueError("edge %r touches a node not on the map" % ((f, t, to),))
        # impact: u -> v when u's failure impacts v; key = the stored edge.
        self.impact = nx.MultiDiGraph()
        self.impact.add_nodes_from(self.nodes)
        for e in self.edges:
            p = impact_pair(e)
            if p is not None:
                self.impact.add_edge(p[0], p[1], key=e, type=e[1])
        self.needs = self.impact.reverse(copy=True)
        # owned_by and part_of adjacency, for owners.
        self.owned_by = {}
        self.part_of_up = {}
        self.runs_on_in = {}
        for f, t, to in self.edges:
            if t == "owned_by":
                self.owned_by.setdefault(f, set()).add(to)
            elif t == "part_of":
                self.part_of_up.setdefault(f, set()).add(to)
            elif t == "runs_on":
                self.runs_on_in.setdefault(to, set()).add(f)
        self._views = {}

    # ------------------------------------------------------------------ walks

    def _view(self, direction, types):
        """The impact (dependents) or needs (dependencies) graph restricted to types."""
        types = tuple(sorted(types or IMPACT_TYPES))
        k = (direction, types)
        if k not in self._views:
            g = self.impact if direction == "dependents" else self.needs
            if set(types) == set(IMPACT_TYPES):
                v = g
            else:
                ok = set(types)
                v = nx.subgraph_view(g, filter_edge=lambda u, w, key: key[1] in ok)
            self._views[k] = v
        return self._views[k]

    def distances(self, root, direction, types=None, depth=None):
        """{ref: least depth} of every node reached from root (root itself excluded)."""
        d = nx.single_source_shortest_path_length(self._view(direction, types), root,
                                                  cutoff=depth)
        d.pop(root, None)
        return d

    def walk(self, root, direction, types=None, depth=None, limit=1000):
        """The full expected answer of dependents/dependencies, minus `via` (which the
        SPEC leaves open when several edges reach a node at its least depth)."""
        dist = self.distances(root, direction, types, depth)
        order = sorted(dist, key=lambda r: (dist[r], byte_key(r)))
        return {"root": root, "count": len(order), "truncated": len(order) > limit,
                "nodes": [(r, dist[r]) for r in order[:limit]], "dist": dist}

    def valid_via(self, root, direction, types, dist, ref, via):
        """Why via is not a valid explanation of ref at dist[ref] (None when valid): it
        must be a stored edge of an allowed type that steps, in the walk's direction,
        from a node at depth-1 (the root at 0) to ref."""
        if not isinstance(via, dict) or set(via) != {"from", "type", "to"}:
            return "via must be {from,type,to}, got %r" % (via,)
        e = (via["from"], via["type"], via["to"])
        if e not in self.edges:
            return "via %r is not a stored edge" % (e,)
        if e[1] not in (types or IMPACT_TYPES):
            return "via %r has a type outside types=%s" % (e, types)
        p = impact_pair(e)
        if direction == "dependencies":
            p = (p[1], p[0])
        prev, nxt = p
        if nxt != ref:
            return "via %r does not lead to %s in the %s direction" % (e, ref, direction)
        prev_depth = 0 if prev == root else dist.get(prev)
        if prev_depth != dist[ref] - 1:
            return ("via %r steps from %s (depth %s), not from a node at depth %d"
                    % (e, prev, prev_depth, dist[ref] - 1))
        return None

    # ------------------------------------------------------------------ path

    def path_length(self, frm, to):
        """Number of hops of a shortest "needs" chain frm -> to, or None when none."""
        try:
            return nx.shortest_path_length(self.needs, frm, to)
        except nx.NetworkXNoPath:
            return None

    def valid_path(self, frm, to, hops):
        """Why hops is not a valid needs-chain frm -> to (None when valid)."""
        if not isinstance(hops, list) or not hops:
            return "hops must be a non-empty list, got %r" % (hops,)
        at = frm
        for i, h in enumerate(hops):
            if not isinstance(h, dict) or set(h) != {"from", "type", "to"}:
                return "hops[%d] must be {from,type,to}, got %r" % (i, h)
            e = (h["from"], h["type"], h["to"])
            if e not in self.edges:
                return "hops[%d] %r is not a stored edge" % (i, e)
            p = impact_pair(e)
            if p is None:
                return "hops[%d] %r is owned_by, which is not a needs hop" % (i, e)
            needer, needed = p[1], p[0]
            if needer != at:
                return "hops[%d] %r does not continue from %s" % (i, e, at)
            at = needed
        if at != to:
            return "the chain ends at %s, not %s" % (at, to)
        return None

    # ------------------------------------------------------------------ owners

    def direct_owners(self, ref):
        return set(self.owned_by.get(ref, ()))

    def part_of_level(self, ref):
        """Walk up part_of breadth-first; return (level, {system: depth}, owners) of the
        nearest level whose nodes have direct owners, or None."""
        dist = {ref: 0}
        frontier = [ref]
        level = 0
        while frontier:
            level += 1
            nxt = []
            for n in frontier:
                for s in self.part_of_up.get(n, ()):
                    if s not in dist:
                        dist[s] = level
                        nxt.append(s)
            owners = set()
            for s in nxt:
                owners |= self.direct_owners(s)
            if owners:
                return level, dist, owners
            frontier = nxt
        return None

    def own_owners(self, ref):
        """Owners by `direct` or else `part_of`: (rule, {owner refs}) or (None, set())."""
        d = self.direct_owners(ref)
        if d:
            return "direct", d
        p = self.part_of_level(ref)
        if p:
            return "part_of", p[2]
        return None, set()

    def owners(self, ref):
        """(rule, {owner refs}) per SPEC: direct -> part_of -> runs_on; (None, set())."""
        rule, owners = self.own_owners(ref)
        if rule:
            return rule, owners
        union = set()
        for runner in self.runs_on_in.get(ref, ()):
            union |= self.own_owners(runner)[1]
        if union:
            return "runs_on", union
        return None, set()

    def _valid_part_of_chain(self, chain, owner):
        """chain = [n0, s1, ..., sk, owner] with each s a part_of step up from the one
        before, sk owned_by owner, and k the nearest owned level of n0."""
        start = chain[0]
        for a, b in zip(chain[:-2], chain[1:-1]):
            if (a, "part_of", b) not in self.edges:
                return "%s -> %s is not a part_of edge" % (a, b)
        if (chain[-2], "owned_by", owner) not in self.edges:
            return "%s is not owned_by %s" % (chain[-2], owner)
        lvl = self.part_of_level(start)
        if lvl is None or len(chain) - 2 != lvl[0]:
            return ("the part_of chain has %d steps but the nearest owned level of %s is %s"
                    % (len(chain) - 2, start, lvl and lvl[0]))
        return None

    def valid_owner_via(self, ref, rule, owner, via):
        """Why via does not explain owner of ref under rule (None when valid)."""
        if not isinstance(via, list) or len(via) < 2 or via[0] != ref or via[-1] != owner:
            return "via must run from %s to %s, got %r" % (ref, owner, via)
        if rule == "direct":
            return None if len(via) == 2 and (ref, "owned_by", owner) in self.edges else \
                "direct via must be [%s, %s]" % (ref, owner)
        if rule == "part_of":
            return self._valid_part_of_chain(via, owner)
        if rule == "runs_on":
            runner = via[1]
            if (runner, "runs_on", ref) not in self.edges:
                return "%s does not run on %s" % (runner, ref)
            rrule, rowners = self.own_owners(runner)
            if owner not in rowners:
                return "%s is not an owner of runner %s" % (owner, runner)
            rest = via[1:]
            if rrule == "direct":
                return None if len(rest) == 2 else "runner %s is owned directly" % runner
            return self._valid_part_of_chain(rest, owner)
        return "unknown rule %r" % rule

    # ------------------------------------------------------------------ rootcause

    def rootcause(self, failing, max_depth):
        """Expected candidates (ranked, with explains as a set and depth), root_causes
        (set) and minimal_cover (list: the greedy order is fixed by the SPEC)."""
        failing = list(dict.fromkeys(failing))
        fset = set(failing)
        dist_from = {}
        for f in failing:
            d = nx.single_source_shortest_path_length(self.needs, f, cutoff=max_depth)
            dist_from[f] = d  # includes f itself at 0
        cand = {}
        for f, d in dist_from.items():
            for c, k in d.items():
                e = cand.setdefault(c, {"explains": set(), "depth": None, "total": 0})
                e["explains"].add(f)
                e["total"] += k
                e["depth"] = k if e["depth"] is None else min(e["depth"], k)

        def health(r):
            return self.nodes[r]["health"]

        def rank(r):
            c = cand[r]
            return (-len(c["explains"]), 0 if health(r) == "down" else 1, c["total"],
                    byte_key(r))

        ranked = sorted(cand, key=rank)
        bad = {r for r in cand if r in fset or health(r) == "down"}
        roots = set()
        for r in bad:
            deps = nx.single_source_shortest_path_length(self.needs, r, cutoff=max_depth)
            deps.pop(r, None)
            if not any(x in fset or health(x) == "down" for x in deps):
                roots.add(r)
        uncovered = set(fset)
        cover = []
        while uncovered:
            best = max(ranked, key=lambda r: len(cand[r]["explains"] & uncovered))
            # max() returns the first maximal item, and ranked is in rank order.
            cover.append(best)
            uncovered -= cand[best]["explains"]
        return {"ranked": ranked, "cand": cand, "root_causes": roots, "minimal_cover": cover,
                "health": {r: health(r) for r in cand}}
