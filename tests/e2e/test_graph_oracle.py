#!/usr/bin/python3
"""The graph queries (SPEC §2 "Graph queries") against an independent oracle.

A random map (fixed seed per run, printed; set CMDB_ORACLE_SEED to replay one) of a few
thousand nodes — services, hosts, vms, containers, databases, systems, teams, … with
cycles, diamonds, all five edge types — is loaded through the API the way the real
writers would: manifests from several sources, hand `PUT /v1/edges`, node deletions and
re-creations, a source withdrawing edges by re-posting a smaller manifest, health
updates. The test keeps its own model of what the SPEC says the map must then be
(§1, §3 replacement rules) and checks the stored map against it, then builds expected
answers with networkx (tests/e2e/oracle.py) from the stored map and compares
dependents, dependencies, owners, path, rootcause and graph on a sample of roots.
Then it writes more (read-your-writes: every answer must already reflect the writes
the server acknowledged) and checks again.

Where the SPEC leaves a choice open (which `via` when several edges reach a node at its
least depth, which shortest path, which owner chain), any valid answer passes; all that
the SPEC fixes is compared exactly. Failures are collected per phase and reported
together: request, expected (with the reason), got.

Run: /usr/bin/python3 tests/e2e/test_graph_oracle.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import json
import os
import random
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402
from oracle import IMPACT_TYPES, Oracle, byte_key  # noqa: E402

SEED = int(os.environ.get("CMDB_ORACLE_SEED") or random.SystemRandom().randrange(1, 10**9))
MAX_REPORTED = 25

# How many of each kind (a few thousand nodes in all).
KIND_COUNTS = {
    "service": 1100, "database": 120, "cache": 50, "queue": 40, "load_balancer": 20,
    "host": 300, "vm": 200, "container": 300, "system": 60, "team": 30, "person": 15,
    "network": 8, "storage": 8,
}
# Names that exercise refs: '/' and ':' inside a name, upper case (sorts before lower
# case in byte order), multi-byte UTF-8 (sorts after ASCII), a space.
SPECIAL_NAMES = {
    "service": ["eu/west/api", "Zeta-upper", "caf\u00e9-\u00fc", "a b", "~tilde"],
    "database": ["pg-main:5432", "pg/replica:5433"],
    "host": ["web-01.prod", "\u00e9dge-01"],
    "system": ["Payments", "payments"],
}


# --------------------------------------------------------------------------- the map

def generate(rng):
    """Nodes by kind and edges by writer: returns (refs_by_kind, {source: [edges]},
    declared {source: {ref: attributes}})."""
    refs = {}
    for kind, n in KIND_COUNTS.items():
        names = ["%s-%04d" % (kind[:3], i) for i in range(n)] + SPECIAL_NAMES.get(kind, [])
        refs[kind] = ["%s/%s" % (kind, name) for name in names]
    svc, db, host, vm, ctr = refs["service"], refs["database"], refs["host"], refs["vm"], \
        refs["container"]
    systems, teams, persons = refs["system"], refs["team"], refs["person"]
    rng.shuffle(svc)  # special names land anywhere in the dependency order
    by = {}

    def add(source, f, t, to):
        if f != to:
            by.setdefault(source, set()).add((f, t, to))

    deploy = ["deploy:team-%d" % i for i in range(4)]
    for i, s in enumerate(svc):
        src = deploy[i % 4]
        # Mostly "forward" dependencies (long chains, diamonds), a few back edges (cycles).
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4))):
            if rng.random() < 0.04 or i > len(svc) - 5:
                j = rng.randrange(0, len(svc))
            else:
                j = rng.randrange(i + 1, min(len(svc), i + 1 + rng.choice((3, 20, 200))))
            add(src, s, "depends_on", svc[j])
            if rng.random() < 0.1:
                add(src, s, "connects_to", svc[j])  # two types between the same pair
        if rng.random() < 0.5:
            add(src, s, "depends_on", rng.choice(db))
        if rng.random() < 0.2:
            add(src, s, "depends_on", rng.choice(refs["cache"]))
        if rng.random() < 0.2:
            add(src, s, "connects_to", rng.choice(refs["queue"]))
        r = rng.random()
        where = rng.choice(ctr) if r < 0.6 else rng.choice(vm) if r < 0.8 else rng.choice(host)
        add("k8s:prod" if i % 3 else "k8s:staging", s, "runs_on", where)
        if rng.random() < 0.7:
            add("catalog:backstage", s, "part_of", rng.choice(systems))
            if rng.random() < 0.1:
                add("catalog:backstage", s, "part_of", rng.choice(systems))
        if rng.random() < 0.3:
            add("catalog:backstage", s, "owned_by", rng.choice(teams))
    for lb in refs["load_balancer"]:
        for s in rng.sample(svc, rng.randint(3, 8)):
            add("lb:haproxy", lb, "connects_to", s)
    for d in db + refs["cache"] + refs["queue"]:
        add("terraform:infra", d, "runs_on", rng.choice(host + vm))
        if rng.random() < 0.3:
            add("catalog:backstage", d, "part_of", rng.choice(systems))
        if rng.random() < 0.2:
            add("catalog:backstage", d, "owned_by", rng.choice(teams + persons))
    for c in ctr:
        add("terraform:infra", c, "runs_on",
            rng.choice(vm) if rng.random() < 0.8 else rng.choice(host))
    for v in vm:
        add("terraform:infra", v, "runs_on", rng.choice(host))
    for h in host:
        if rng.random() < 0.8:
            add("terraform:infra", h, "connects_to", rng.choice(refs["network"]))
        if rng.random() < 0.3:
            add("terraform:infra", h, "depends_on", rng.choice(refs["storage"]))
        if rng.random() < 0.1:
            add("terraform:infra", h, "owned_by", rng.choice(teams))
    # Systems: a hierarchy (with a cycle or two), owned at some levels only.
    for i, s in enumerate(systems):
        if rng.random() < 0.5 and i + 1 < len(systems):
            add("catalog:backstage", s, "part_of", systems[rng.randrange(i + 1, len(systems))])
        if rng.random() < 0.05:
            add("catalog:backstage", s, "part_of", systems[rng.randrange(0, len(systems))])
        if rng.random() < 0.4:
            for t in rng.sample(teams + persons, rng.choice((1, 1, 2))):
                add("catalog:backstage", s, "owned_by", t)
    # A few irregular edges between any kinds (owners must not be confused by them).
    everything = [r for k in refs.values() for r in k]
    for _ in range(60):
        add("scanner:net", rng.choice(everything), rng.choice(("depends_on", "connects_to")),
            rng.choice(everything))
    # Overlap: some edges are asserted by two sources.
    sources = sorted(by)
    for src in sources:
        for e in sorted(by[src]):
            if rng.random() < 0.08:
                by[rng.choice(sources)].add(e)
    # Declared nodes (with attributes): every node is declared by some source, so
    # isolated ones exist too.
    declared = {}
    for t in teams + persons:
        declared.setdefault("catalog:backstage", {})[t] = {
            "email": t.split("/", 1)[1] + "@example.com", "oncall": "https://pager/" + t}
    for s in systems:
        declared.setdefault("catalog:backstage", {})[s] = {"tier": rng.choice("123")}
    for k in ("host", "vm", "container", "network", "storage"):
        for r in refs[k]:
            declared.setdefault("terraform:infra", {})[r] = {"zone": rng.choice("abc")}
    for k in ("service", "database", "cache", "queue", "load_balancer"):
        for i, r in enumerate(refs[k]):
            declared.setdefault(deploy[i % 4], {})[r] = {"repo": "git@x:" + r}
    return refs, {s: sorted(e) for s, e in by.items()}, declared


class MapModel:
    """What the SPEC says the map is after each write (§1 Source, §2, §3 Replacement).

    edges: {(from, type, to): set(sources)}; nodes: {ref: health}. Attributes are not
    modelled: the oracle reads them from the database."""

    def __init__(self, srv):
        self.srv = srv
        self.nodes = {}
        self.edges = {}
        self.last = {}        # source -> set of edges of its last applied manifest
        self.generation = {}  # source -> last generation sent
        self.problems = []    # write calls that did not answer as the SPEC says

    def _req(self, what, resp, ok):
        if resp[0] not in ok:
            self.problems.append("%s: expected %s, got %s %s" % (what, ok, resp[0],
                                                                  json.dumps(resp[2])[:400]))
            return False
        return True

    def _ensure(self, ref):
        self.nodes.setdefault(ref, "unknown")

    def manifest(self, source, edges, declared):
        gen = self.generation.get(source, 0) + 1
        body = {"manifest": "cmdb/v1", "source": source, "generation": gen,
                "nodes": [{"ref": r, "attributes": a} for r, a in sorted(declared.items())],
                "edges": [{"from": f, "type": t, "to": to} for f, t, to in edges]}
        if not self._req("POST /v1/manifests source=%s (%d edges)" % (source, len(edges)),
                         self.srv.post("/v1/manifests", body), (200,)):
            return
        self.generation[source] = gen
        new = set(edges)
        for e in self.last.get(source, set()) - new:
            s = self.edges.get(e)
            if s is not None:
                s.discard(source)
                if not s:
                    del self.edges[e]
        for ref in declared:
            self._ensure(ref)
        for e in new:
            self._ensure(e[0])
            self._ensure(e[2])
            self.edges.setdefault(e, set()).add(source)
        self.last[source] = new

    def put_edge(self, e):
        if e[0] == e[2]:
            # No edge type makes sense on a node itself; the server refuses them.
            self._req("PUT /v1/edges %r" % (e,), self.srv.put_edge(*e), (422,))
            return
        if self._req("PUT /v1/edges %r" % (e,), self.srv.put_edge(*e), (200, 201)):
            self.edges.setdefault(e, set()).add("api:admin")

    def delete_edge(self, e):
        q = urllib.parse.urlencode({"from": e[0], "type": e[1], "to": e[2]})
        if self._req("DELETE /v1/edges %r" % (e,), self.srv.delete("/v1/edges?" + q), (204,)):
            self.edges.pop(e, None)

    def delete_node(self, ref):
        if self._req("DELETE %s" % ref, self.srv.delete(node_path(ref)), (204,)):
            del self.nodes[ref]
            for e in [e for e in self.edges if ref in (e[0], e[2])]:
                del self.edges[e]

    def put_node(self, ref):
        if self._req("PUT %s" % ref, self.srv.put_node(ref, {"readded": True}), (200, 201)):
            self._ensure(ref)

    def health(self, ref, state):
        r = self.srv.put(node_path(ref) + "/health", {"state": state, "reason": "oracle"})
        if self._req("PUT %s/health" % ref, r, (200,)):
            self.nodes[ref] = state


# --------------------------------------------------------------------------- checks

def qs(**params):
    return urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})


class Checker:
    """Compares the server's graph answers with the oracle; collects failures."""

    def __init__(self, srv, oracle, rng):
        self.srv, self.o, self.rng = srv, oracle, rng
        self.failures = []
        self.requests = 0
        self.seen = {}  # what the sample exercised (printed, so a weak sample shows)

    def saw(self, what):
        self.seen[what] = self.seen.get(what, 0) + 1

    def fail(self, request, expected, got):
        self.failures.append("%s\n    expected: %s\n    got:      %s"
                             % (request, expected, json.dumps(got)[:1500]
                                if not isinstance(got, str) else got[:1500]))

    def get(self, path):
        self.requests += 1
        st, _, body = self.srv.get(path)
        return st, body

    # -- dependents / dependencies

    def walk(self, root, direction, depth=None, types=None, limit=None):
        path = "%s/%s" % (node_path(root), direction)
        q = qs(depth=depth, types=",".join(types) if types else None, limit=limit)
        req = "GET " + path + ("?" + q if q else "")
        st, body = self.get(path + ("?" + q if q else ""))
        exp = self.o.walk(root, direction, types, depth, 1000 if limit is None else limit)
        if st != 200 or not isinstance(body, dict):
            return self.fail(req, "200 with the walk", "%s %s" % (st, body))
        if set(body) != {"root", "count", "truncated", "nodes"}:
            return self.fail(req, "keys root,count,truncated,nodes", body)
        if body["root"] != root:
            self.fail(req, "root %s" % root, body["root"])
        if body["count"] != exp["count"]:
            self.fail(req, "count %d (every node reached, not only the listed ones)"
                      % exp["count"], body["count"])
        if body["truncated"] is not exp["truncated"]:
            self.fail(req, "truncated %s (count %d, limit %s)"
                      % (exp["truncated"], exp["count"], limit or 1000), body["truncated"])
        if exp["truncated"]:
            self.saw("truncated")
        if exp["nodes"] and exp["nodes"][-1][1] >= 4:
            self.saw("depth>=4")
        got = [(n.get("ref"), n.get("depth")) for n in body["nodes"]]
        if got != exp["nodes"]:
            self.fail(req, "%d nodes by (depth, ref bytes); first difference at %s"
                      % (len(exp["nodes"]), first_diff(exp["nodes"], got)), got[:40])
            return
        for n in body["nodes"]:
            why = self.o.valid_via(root, direction, types, exp["dist"], n["ref"], n.get("via"))
            if why:
                self.fail(req, "a valid via for %s at depth %d" % (n["ref"], n["depth"]), why)
                break

    # -- owners

    def owners(self, ref):
        req = "GET %s/owners" % node_path(ref)
        st, body = self.get(node_path(ref) + "/owners")
        rule, exp = self.o.owners(ref)
        self.saw("owners:%s" % rule)
        if st != 200 or not isinstance(body, dict) or body.get("node") != ref:
            return self.fail(req, "200 {node: %s, owners}" % ref, "%s %s" % (st, body))
        got = body.get("owners")
        refs = [o.get("ref") for o in got]
        if sorted(refs) != sorted(exp) or len(set(refs)) != len(refs):
            return self.fail(req, "owners %s by rule %s (each once)" % (sorted(exp), rule), got)
        for o in got:
            if o.get("rule") != rule:
                self.fail(req, "rule %s for %s (first rule that yields wins)"
                          % (rule, o["ref"]), o)
                continue
            if o.get("attributes") != self.o.nodes[o["ref"]]["attributes"]:
                self.fail(req, "attributes of %s = %s" % (o["ref"],
                                                          self.o.nodes[o["ref"]]["attributes"]), o)
            why = self.o.valid_owner_via(ref, rule, o["ref"], o.get("via"))
            if why:
                self.fail(req, "a valid via chain for owner %s by %s" % (o["ref"], rule), why)

    def node_owners(self, ref):
        """GET of one node carries the same owners as the owners query (SPEC §2 Shapes)."""
        st, body = self.get(node_path(ref))
        rule, exp = self.o.owners(ref)
        got = body.get("owners") if isinstance(body, dict) else None
        if st != 200 or not isinstance(got, list) or \
                sorted(o.get("ref") for o in got) != sorted(exp) or \
                any(o.get("rule") != rule for o in got):
            self.fail("GET %s" % node_path(ref), "owners %s by rule %s, as in the owners query"
                      % (sorted(exp), rule), "%s %s" % (st, got))

    # -- path

    def path(self, frm, to):
        req = "GET /v1/path?" + qs(**{"from": frm, "to": to})
        st, body = self.get("/v1/path?" + qs(**{"from": frm, "to": to}))
        n = self.o.path_length(frm, to)
        self.saw("path:none" if n is None else "path:found")
        if n is None:
            if st != 404:
                self.fail(req, "404: no needs-chain from %s to %s" % (frm, to),
                          "%s %s" % (st, body))
            return
        if st != 200 or not isinstance(body, dict):
            return self.fail(req, "200 with a %d-hop path" % n, "%s %s" % (st, body))
        if body.get("from") != frm or body.get("to") != to:
            self.fail(req, "from/to echo %s, %s" % (frm, to), body)
        hops = body.get("hops")
        if not isinstance(hops, list) or len(hops) != n:
            return self.fail(req, "a shortest path: %d hops" % n, body)
        why = self.o.valid_path(frm, to, hops)
        if why:
            self.fail(req, "each hop a stored needs edge, the chain connected", why)

    # -- rootcause

    def rootcause(self, failing, max_depth):
        req = "POST /v1/rootcause %s" % json.dumps({"failing": failing, "max_depth": max_depth})
        self.requests += 1
        st, _, body = self.srv.post("/v1/rootcause", {"failing": failing, "max_depth": max_depth},
                                    token="read")
        exp = self.o.rootcause(failing, max_depth)
        self.saw("rootcause:cover>1" if len(exp["minimal_cover"]) > 1 else "rootcause:cover=1")
        if any(exp["health"][r] == "down" for r in exp["ranked"]):
            self.saw("rootcause:down-candidate")
        if st != 200 or not isinstance(body, dict):
            return self.fail(req, "200", "%s %s" % (st, body))
        cands = body.get("candidates") or []
        got_order = [c.get("ref") for c in cands]
        if got_order != exp["ranked"]:
            i = diff_index(exp["ranked"], got_order)
            ctx = [(r, len(exp["cand"][r]["explains"]), exp["health"][r], exp["cand"][r]["total"])
                   for r in exp["ranked"][max(0, i - 2):i + 3]]
            return self.fail(req, "%d candidates in rank order (more explained, down, smaller "
                             "total depth, ref); first difference: %s; expected around it "
                             "(ref, n explained, health, total depth): %s"
                             % (len(exp["ranked"]), first_diff(exp["ranked"], got_order), ctx),
                             got_order[max(0, i - 2):i + 8])
        for c in cands:
            e = exp["cand"][c["ref"]]
            if sorted(c.get("explains") or []) != sorted(e["explains"]) or \
                    len(set(c["explains"])) != len(c["explains"]):
                self.fail(req, "%s explains %s" % (c["ref"], sorted(e["explains"])), c)
                break
            if c.get("depth") != e["depth"]:
                self.fail(req, "%s depth %d (least distance from a failing node it explains)"
                          % (c["ref"], e["depth"]), c)
                break
            if c.get("health") != exp["health"][c["ref"]]:
                self.fail(req, "%s health %s" % (c["ref"], exp["health"][c["ref"]]), c)
                break
        rc = body.get("root_causes")
        if not isinstance(rc, list) or sorted(rc) != sorted(exp["root_causes"]) or \
                len(set(rc)) != len(rc):
            self.fail(req, "root_causes %s (failing or down, no failing/down dependency "
                      "within max_depth)" % sorted(exp["root_causes"]), rc)
        if body.get("minimal_cover") != exp["minimal_cover"]:
            self.fail(req, "minimal_cover %s (greedy, ties by rank)" % exp["minimal_cover"],
                      body.get("minimal_cover"))

    # -- graph

    def graph(self, root, depth, direction):
        q = qs(root=root, depth=depth, direction=direction, format="json")
        req = "GET /v1/graph?" + q
        st, body = self.get("/v1/graph?" + q)
        want = {root}
        dirs = ("dependents", "dependencies") if direction == "both" else (direction,)
        for d in dirs:
            want |= set(self.o.distances(root, d, None, depth))
        if st != 200 or not isinstance(body, dict) or not isinstance(body.get("nodes"), list):
            return self.fail(req, "200 with a subgraph", "%s %s" % (st, body))
        got = [n.get("ref") for n in body["nodes"]]
        if sorted(got) != sorted(want) or len(set(got)) != len(got):
            return self.fail(req, "nodes = root + %s within depth %d (%d nodes)"
                             % (direction, depth, len(want)), sorted(got)[:40])
        for e in body.get("edges") or []:
            t = (e.get("from"), e.get("type"), e.get("to"))
            if t not in self.o.edges or t[0] not in want or t[2] not in want:
                return self.fail(req, "edges: stored edges between the subgraph's nodes", e)
        st, body = self.get("/v1/graph?" + qs(root=root, depth=depth, direction=direction,
                                               format="dot"))
        if st != 200 or not isinstance(body, str) or not body.lstrip().startswith("digraph") \
                or any(('"%s"' % r) not in body for r in want if '"' not in r):
            self.fail(req.replace("json", "dot"), "200 Graphviz digraph naming every node",
                      "%s %s" % (st, str(body)[:300]))


def diff_index(a, b):
    """The first index where lists a and b differ (len of the shorter if one is a prefix)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def first_diff(a, b):
    i = diff_index(a, b)
    if i < min(len(a), len(b)):
        return "index %d: expected %r, got %r" % (i, a[i], b[i])
    return "length: expected %d, got %d" % (len(a), len(b))


# --------------------------------------------------------------------------- the test

class GraphOracle(ServerTestCase):
    server_name = "oracle"

    def snapshot(self):
        """The stored map, read from the database (the truth the graph must follow)."""
        nodes = self.srv.psql_json(
            "SELECT coalesce(json_object_agg(kind || '/' || name, "
            "json_build_object('health', health, 'attributes', attributes)), '{}') FROM nodes")
        edges = self.srv.psql_json(
            "SELECT coalesce(json_agg(json_build_array(f.kind || '/' || f.name, e.type, "
            "t.kind || '/' || t.name)), '[]') FROM edges e JOIN nodes f ON f.id = e.from_id "
            "JOIN nodes t ON t.id = e.to_id")
        return nodes, [tuple(e) for e in edges]

    def check_model(self, model, nodes, edges):
        """The stored map must be what the SPEC's write rules make of the writes."""
        out = []
        if model.problems:
            out += model.problems[:10]
        want_e, got_e = set(model.edges), set(edges)
        if want_e != got_e:
            out.append("stored edges differ from the SPEC's replacement rules: missing %d "
                       "(e.g. %s, asserted by %s), unexpected %d (e.g. %s)"
                       % (len(want_e - got_e), sorted(want_e - got_e)[:3],
                          [sorted(model.edges[e]) for e in sorted(want_e - got_e)[:3]],
                          len(got_e - want_e), sorted(got_e - want_e)[:3]))
        if set(model.nodes) != set(nodes):
            out.append("stored nodes differ: missing %s, unexpected %s"
                       % (sorted(set(model.nodes) - set(nodes))[:5],
                          sorted(set(nodes) - set(model.nodes))[:5]))
        bad = [r for r in model.nodes if r in nodes and nodes[r]["health"] != model.nodes[r]]
        if bad:
            out.append("health differs for %s" % bad[:5])
        return out

    def compare(self, phase, model, rng, n_roots):
        t0 = time.monotonic()
        nodes, edges = self.snapshot()
        failures = ["[write path] " + p for p in self.check_model(model, nodes, edges)]
        o = Oracle(nodes, edges)
        c = Checker(self.srv, o, rng)
        refs = sorted(nodes, key=byte_key)
        deg = sorted(refs, key=lambda r: -(o.impact.in_degree(r) + o.impact.out_degree(r)))
        special = ["%s/%s" % (k, n) for k, names in SPECIAL_NAMES.items() for n in names
                   if "%s/%s" % (k, n) in nodes]
        roots = list(dict.fromkeys(deg[:20] + special + rng.sample(refs, n_roots)))[:n_roots]
        for r in roots:
            for d in ("dependents", "dependencies"):
                c.walk(r, d)
                types = rng.sample(IMPACT_TYPES, rng.randint(1, 3))
                c.walk(r, d, depth=rng.choice((None, 1, 2, 3, 5)), types=types,
                       limit=rng.choice((None, 1, 7, 100)))
                if rng.random() < 0.2:
                    c.walk(r, d, depth=rng.choice((0, 1, 2, 4)), limit=rng.choice((1, 3, 100000)))
            c.owners(r)
        # Owners where the interesting rules apply: hosts/vms/containers (runs_on), parts
        # of systems without direct owners (part_of).
        infra = [r for r in refs if r.split("/")[0] in ("host", "vm", "container")]
        for r in rng.sample(infra, min(len(infra), n_roots // 2)):
            c.owners(r)
        for r in rng.sample(refs, n_roots):
            deps = o.distances(r, "dependencies")
            to = rng.choice(sorted(deps, key=byte_key)) if deps and rng.random() < 0.85 \
                else rng.choice(refs)
            if to != r:
                c.path(r, to)
        for _ in range(max(20, n_roots // 5)):
            f = rng.choice(refs)
            fail = [f] + rng.sample(sorted(o.distances(f, "dependents"), key=byte_key)
                                    or [f], min(2, len(o.distances(f, "dependents"))))
            fail += rng.sample(refs, rng.randint(0, 3))
            c.rootcause(list(dict.fromkeys(fail)), rng.choice((1, 3, 16)))
        for r in rng.sample(roots, 30):
            c.node_owners(r)
        for r in rng.sample(roots, 20):
            c.graph(r, rng.choice((1, 2)), rng.choice(("dependents", "dependencies", "both")))
        failures += c.failures
        print("seed=%d phase=%s nodes=%d edges=%d requests=%d failures=%d %.1fs\n  exercised: %s"
              % (SEED, phase, len(nodes), len(edges), c.requests, len(failures),
                 time.monotonic() - t0, json.dumps(c.seen, sort_keys=True)), flush=True)
        return failures

    def test_graph_matches_oracle(self):
        print("seed=%d (replay with CMDB_ORACLE_SEED=%d)" % (SEED, SEED), flush=True)
        rng = random.Random(SEED)
        s = self.srv
        refs, by_source, declared = generate(rng)
        model = MapModel(s)
        t0 = time.monotonic()

        # Phase 1: the writers load the map.
        for src in sorted(by_source):
            model.manifest(src, by_source[src], declared.get(src, {}))
        everything = sorted(model.nodes)
        for _ in range(150):  # hand edges, a few already asserted by a manifest
            if rng.random() < 0.2 and model.edges:
                e = rng.choice(sorted(model.edges))
            else:
                a, b = rng.sample(everything, 2)
                t = rng.choice(("depends_on", "runs_on", "connects_to", "part_of", "owned_by"))
                if t == "runs_on":  # onto infrastructure, as the owners rule expects
                    b = rng.choice(refs["host"] + refs["vm"] + refs["container"])
                e = (a, t, b)
            model.put_edge(e)
        for r in rng.sample(everything, 150):
            model.health(r, rng.choice(("down", "down", "degraded", "ok")))
        hubs = sorted(model.nodes, key=lambda r: -sum(1 for e in model.edges if r in (e[0], e[2])))
        doomed = rng.sample(hubs[:100], 8) + rng.sample(everything, 17)
        for r in dict.fromkeys(doomed):
            model.delete_node(r)
        readded = rng.sample(list(dict.fromkeys(doomed)), 12)
        for r in readded:
            model.put_node(r)
            for _ in range(2):
                model.put_edge((rng.choice(sorted(model.nodes)), "depends_on", r))
        # Withdrawal: smaller manifests (edges still asserted by another source stay).
        for src in ("deploy:team-1", "catalog:backstage"):
            keep = [e for e in by_source[src] if rng.random() < 0.75]
            model.manifest(src, keep, declared.get(src, {}))
        print("seed=%d phase 1 written in %.1fs" % (SEED, time.monotonic() - t0), flush=True)
        failures = self.compare("loaded", model, rng, 400)

        # Phase 2: more writes; every answer must already include them.
        rw = []
        for _ in range(25):  # read-your-writes, one by one
            a, b = rng.sample(sorted(model.nodes), 2)
            model.put_edge((a, "depends_on", b))
            st, _, body = s.get(node_path(b) + "/dependents?depth=1&limit=100000")
            if st != 200 or a not in [n["ref"] for n in body["nodes"]]:
                rw.append("after PUT /v1/edges %s depends_on %s answered, GET %s/dependents"
                          "?depth=1 must list %s; got %s %s" % (a, b, b, a, st,
                                                                  json.dumps(body)[:300]))
            model.delete_edge((a, "depends_on", b))
            st, _, body = s.get(node_path(a) + "/dependencies?depth=1&limit=100000")
            if st != 200 or any(n["ref"] == b and n["via"] == {"from": a, "type": "depends_on",
                                                                "to": b} for n in body["nodes"]):
                rw.append("after DELETE of %s depends_on %s, GET %s/dependencies must not "
                          "use it; got %s %s" % (a, b, a, st, json.dumps(body)[:300]))
        failures += ["[read-your-writes] " + x for x in rw]
        src = "deploy:team-2"
        svc = refs["service"]
        more = sorted(set(by_source[src][: len(by_source[src]) * 2 // 3]) |
                      {(rng.choice(svc), "depends_on", rng.choice(svc)) for _ in range(80)})
        model.manifest(src, [e for e in more if e[0] != e[2]], declared.get(src, {}))
        for e in rng.sample(sorted(model.edges), 40):
            model.delete_edge(e)
        for r in rng.sample(sorted(model.nodes), 10):
            model.delete_node(r)
        # The withdrawn source asserts everything again: its edges come back, also to
        # re-added nodes (and deleted nodes are created again, bare).
        model.manifest("deploy:team-1", by_source["deploy:team-1"],
                       declared.get("deploy:team-1", {}))
        for r in rng.sample(sorted(model.nodes), 60):
            model.health(r, rng.choice(("down", "ok", "unknown", "degraded")))
        failures += self.compare("after-writes", model, rng, 200)

        # Error handling on the same endpoints (SPEC: invalid parameters → 400, unknown
        # node → 404).
        root = node_path(sorted(model.nodes)[0])
        for q in ("types=owned_by", "types=uses", "depth=-1", "depth=x", "limit=100001",
                  "limit=-5"):
            st, _, body = s.get(root + "/dependents?" + q)
            if st != 400:
                failures.append("GET %s/dependents?%s\n    expected: 400 naming the parameter"
                                "\n    got: %s %s" % (root, q, st, json.dumps(body)[:300]))
        for p in ("/v1/nodes/service/no-such-node/dependents", "/v1/nodes/service/no-such/owners",
                  "/v1/path?from=service/no-such&to=" + urllib.parse.quote(sorted(model.nodes)[0])):
            st, _, body = s.get(p)
            if st != 404:
                failures.append("GET %s\n    expected: 404 (unknown node)\n    got: %s %s"
                                % (p, st, json.dumps(body)[:300]))

        if failures:
            self.fail("seed %d: %d failures (first %d):\n  %s\nserver log tail:\n%s"
                      % (SEED, len(failures), min(len(failures), MAX_REPORTED),
                         "\n  ".join(failures[:MAX_REPORTED]), s.log_tail(10)))


if __name__ == "__main__":
    unittest.main()
