#!/usr/bin/python3
"""Manifests under concurrency (SPEC §1 Source, §2 Manifests, §3 Manifest v1).

Eight sources share nodes and some edges. Each posts a sequence of manifests (growing
generations; every one adds some edges and drops others) from its own thread while
other threads edit by hand (PUT /v1/edges, PUT/DELETE nodes). Checked:

- no 5xx ever reaches a client, and no 409 except for the stale generations the test
  sends on purpose (SPEC §3: "an older or equal one with a different body → 409");
- after a final round, the map EXACTLY equals the union of what each source's last
  manifest asserts: the node set, the edge set, each edge's and node's `sources`, the
  `orphan` flags of nodes no source asserts any more, and node attributes/labels merged
  key by key over every applied manifest (each source writes only its own key, so the
  merge result does not depend on commit order);
- posts of one source are serialized: racing generations g and g+1 leave the map as
  g+1 says, and g answers 409 when it lands after g+1;
- invariants of the hand edits while manifests run (a deleted node's edges are gone, a
  hand edge carries the source `api:<token name>`, health leaves `sources` alone);
- a manifest racing a hand DELETE of the node it asserts still answers 200;
- many new sources creating the same bare endpoints at once create each node once.

Run: /usr/bin/python3 tests/e2e/test_manifest_concurrency.py
"""

import json
import os
import random
import sys
import threading
import time
import unittest
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402

N_SOURCES = 8
ROUNDS = 12
HAND_SOURCE = "api:admin"          # hand edits with the token named 'admin' (SPEC §1)


# --------------------------------------------------------------------------- map access

def fetch_map(srv, prefix=None):
    """The whole map as ({ref: node}, {(from, type, to): edge}), from GET /v1/nodes (every
    page) and each node's outgoing edges. prefix (a ref prefix) limits it. Raises
    AssertionError on any unexpected status."""
    nodes = {}
    cursor = None
    while True:
        q = {"limit": "1000"}
        if prefix:
            q["q"] = prefix
        if cursor:
            q["cursor"] = cursor
        st, _, body = srv.get("/v1/nodes?" + urllib.parse.urlencode(q))
        if st != 200:
            raise AssertionError("GET /v1/nodes → %s %r" % (st, body))
        for n in body["items"]:
            if n["ref"] in nodes:
                raise AssertionError("node %s listed twice across pages" % n["ref"])
            nodes[n["ref"]] = n
        cursor = body["next_cursor"]
        if cursor is None:
            break
    edges = {}
    for ref in nodes:
        st, _, body = srv.get(node_path(ref) + "/edges?direction=out")
        if st != 200:
            raise AssertionError("GET %s/edges → %s %r" % (node_path(ref), st, body))
        for e in body["edges"]:
            if e["from"] != ref:
                raise AssertionError("direction=out of %s returned %r" % (ref, e))
            edges[(e["from"], e["type"], e["to"])] = e
    return nodes, edges


def only_c(nodes, edges):
    """This test's part of the map (names start with c-; other tests share the server)."""
    keep = {r: n for r, n in nodes.items() if n["name"].startswith("c-")}
    return keep, {k: e for k, e in edges.items() if k[0] in keep}


def ekey(e):
    return (e["from"], e["type"], e["to"])


# --------------------------------------------------------------------------- the estate

SVCS = ["service/c-svc-%d" % k for k in range(6)]
HOSTS = ["host/c-host-%d" % k for k in range(4)]
DBS = ["database/c-db-0", "database/c-db-1"]
TEAM = "team/c-team"
SHARED = SVCS + HOSTS + DBS + [TEAM]
CONTESTED = "database/c-db-0"      # deleted by hand while manifests assert it
HAND_NODE = "service/c-svc-5"      # also PUT by hand while manifests write it
HEALTH_NODE = "service/c-svc-4"    # its health set while manifests write it


def own_nodes(i):
    return ["service/c-own-%d-%d" % (i, k) for k in range(4)]


def candidate_edges(i):
    """Edges source i may assert: shared ones (other sources assert them too) and its own."""
    c = []
    for s in SVCS:
        for h in HOSTS:
            c.append((s, "runs_on", h))
        for d in DBS:
            c.append((s, "depends_on", d))
        c.append((s, "owned_by", TEAM))
    for a, b in zip(SVCS, SVCS[1:]):
        c.append((a, "depends_on", b))
    for o in own_nodes(i):
        c.append((o, "part_of", SVCS[i % len(SVCS)]))
        c.append((o, "depends_on", DBS[1]))
    return c


def src_name(i):
    return "ci:c-src-%d" % i


def build_manifest(i, gen, salt=""):
    """Source i's manifest at generation gen: deterministic, different for every gen (the
    attribute values carry it, so no post is the identical-body fast path by accident).
    salt changes the body without changing what is asserted."""
    rnd = random.Random("%d:%d:%s" % (i, gen, salt))
    declared = rnd.sample(SHARED, rnd.randint(3, 7)) + rnd.sample(own_nodes(i), rnd.randint(0, 3))
    edges = rnd.sample(candidate_edges(i), rnd.randint(3, 10))
    key = "s%d" % i
    m = {"manifest": "cmdb/v1", "source": src_name(i), "generation": gen,
         "nodes": [{"ref": r, "attributes": {key: gen}, "labels": {key: str(gen)}}
                   for r in declared],
         "edges": [{"from": f, "type": t, "to": to, "attributes": {key: gen}}
                   for (f, t, to) in edges]}
    if salt:
        m["extensions"] = {"x-salt": salt}
    return m


def asserted(m):
    """Refs a manifest asserts: its declared nodes and its edges' endpoints (SPEC §1)."""
    refs = {n["ref"] for n in m.get("nodes", [])}
    for e in m.get("edges", []):
        refs.add(e["from"])
        refs.add(e["to"])
    return refs


def declared(m):
    return {n["ref"]: n for n in m.get("nodes", [])}


# --------------------------------------------------------------------------- tests

class Problems:
    """Thread-safe list of unexpected responses: (what, status, body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, what, st, body):
        with self.lock:
            self.items.append("%s → %s %s" % (what, st, json.dumps(body)[:400]))

    def expect(self, what, resp, allowed):
        st = resp[0]
        if st not in allowed:
            self.add("%s (expected %s)" % (what, "/".join(map(str, allowed))), st, resp[2])
        return st


class ManifestConcurrency(ServerTestCase):
    server_name = "mconc"

    def test_many_sources_converge_to_union_of_last_manifests(self):
        srv = self.srv
        probs = Problems()
        applied = {i: [] for i in range(N_SOURCES)}     # manifests answered 200, in order
        stale_409 = [0]
        lock = threading.Lock()

        def gen_of(r):
            return 10 * (r + 1)

        # Round 0 first, serially: the shared nodes exist before hand edits start.
        for i in range(N_SOURCES):
            m = build_manifest(i, gen_of(0))
            have = set(declared(m))
            m["nodes"] += [{"ref": r} for r in SHARED if r not in have]  # all asserted at first
            probs.expect("source %d gen %d" % (i, m["generation"]),
                         srv.post("/v1/manifests", m), (200,))
            applied[i].append(m)

        stop = threading.Event()

        def source_worker(i):
            for r in range(1, ROUNDS):
                m = build_manifest(i, gen_of(r))
                resp = srv.post("/v1/manifests", m, token="write")
                if probs.expect("source %d gen %d" % (i, m["generation"]), resp, (200,)) == 200:
                    applied[i].append(m)
                if r % 3 == 0:
                    # A late delivery of an older generation with another body: 409 and
                    # no effect (SPEC §3).
                    old = build_manifest(i, gen_of(r - 1), salt="late")
                    st = probs.expect("stale source %d gen %d" % (i, old["generation"]),
                                      srv.post("/v1/manifests", old), (409,))
                    if st == 409:
                        with lock:
                            stale_409[0] += 1
                    # The same generation with another body is a 409 as well.
                    same = build_manifest(i, gen_of(r), salt="other")
                    probs.expect("equal-generation other body, source %d gen %d"
                                 % (i, same["generation"]), srv.post("/v1/manifests", same),
                                 (409,))
                if r % 4 == 0:
                    # The identical body again: the 200 no-op.
                    probs.expect("identical re-post source %d gen %d" % (i, m["generation"]),
                                 srv.post("/v1/manifests", m), (200,))

        hand_edges = [("service/c-svc-0", "depends_on", "database/c-db-1"),  # manifests too
                      ("service/c-svc-1", "connects_to", "service/c-svc-2")]  # hand only

        hand_node = {}      # the last attributes the hand worker PUT on HAND_NODE
        health = {}         # the last health state set on HEALTH_NODE

        def hand_edge_worker():
            n = 0
            states = ("ok", "degraded", "down", "unknown")
            while not stop.is_set() or n < 3:
                # A hand PUT merges into a node manifests also write (its own key).
                resp = srv.put_node(HAND_NODE, {"hand": n}, {"hand": str(n)})
                if probs.expect("PUT node %s" % HAND_NODE, resp, (200,)) == 200:
                    hand_node.update(attributes={"hand": n}, labels={"hand": str(n)})
                # Health is status, not an assertion: it must not touch sources.
                resp = srv.put(node_path(HEALTH_NODE) + "/health",
                               {"state": states[n % 4], "reason": "n=%d" % n})
                if probs.expect("PUT health %s" % HEALTH_NODE, resp, (200,)) == 200:
                    health.update(state=states[n % 4], reason="n=%d" % n)
                for (f, t, to) in hand_edges:
                    resp = srv.put_edge(f, t, to)
                    if probs.expect("PUT edge %s %s %s" % (f, t, to), resp, (200, 201)) in (200, 201):
                        e = resp[2]
                        if HAND_SOURCE not in e.get("sources", []):
                            probs.add("PUT edge %s %s %s: sources lack %s" % (f, t, to, HAND_SOURCE),
                                      resp[0], e)
                n += 1
                time.sleep(0.02)

        def hand_node_worker():
            k = 0
            while not stop.is_set() or k < 3:
                ref = "host/c-hand-%d" % k
                probs.expect("PUT node %s" % ref, srv.put_node(ref, {"hand": k}), (201,))
                probs.expect("PUT edge to %s" % ref,
                             srv.put_edge("service/c-svc-3", "runs_on", ref), (201,))
                probs.expect("DELETE node %s" % ref, srv.delete(node_path(ref)), (204,))
                probs.expect("GET deleted node %s" % ref, srv.get(node_path(ref)), (404,))
                resp = srv.get(node_path("service/c-svc-3") + "/edges?direction=out")
                if probs.expect("GET edges of service/c-svc-3", resp, (200,)) == 200:
                    if any(e["to"] == ref for e in resp[2]["edges"]):
                        probs.add("edge to deleted %s still listed" % ref, 200, resp[2])
                k += 1
            probs.expect("PUT node host/c-hand-final",
                         srv.put_node("host/c-hand-final", {"hand": "final"}), (201,))
            probs.expect("PUT edge to host/c-hand-final",
                         srv.put_edge("service/c-svc-3", "runs_on", "host/c-hand-final"), (201,))

        def contested_delete_worker():
            n = 0
            while not stop.is_set() or n < 2:
                # 404 when a delete already won and no manifest has re-created it since.
                resp = srv.delete(node_path(CONTESTED))
                if probs.expect("DELETE %s" % CONTESTED, resp, (204, 404)) == 204:
                    n += 1
                time.sleep(0.05)

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=N_SOURCES + 3) as pool:
            hands = [pool.submit(f) for f in (hand_edge_worker, hand_node_worker,
                                              contested_delete_worker)]
            futs = [pool.submit(source_worker, i) for i in range(N_SOURCES)]
            for f in futs:
                f.result()
            stop.set()
            for f in hands:
                f.result()
        elapsed = time.monotonic() - t0

        # Final round, concurrently: every source's last word, after every hand delete.
        final_gen = gen_of(ROUNDS)
        finals = {i: build_manifest(i, final_gen) for i in range(N_SOURCES)}
        with ThreadPoolExecutor(max_workers=N_SOURCES) as pool:
            resps = list(pool.map(lambda i: srv.post("/v1/manifests", finals[i], token="write"),
                                  range(N_SOURCES)))
        for i, resp in enumerate(resps):
            if probs.expect("final source %d" % i, resp, (200,)) == 200:
                applied[i].append(finals[i])

        self.assertFalse(probs.items, "unexpected responses (%d) in %.1f s:\n  %s%s"
                         % (len(probs.items), elapsed, "\n  ".join(probs.items[:30]),
                            "\n  server log " + srv.log_path))
        self.assertGreater(stale_409[0], 0)

        nodes, edges = only_c(*fetch_map(srv))
        self.check_union(nodes, edges, applied, finals, hand_edges, hand_node)
        h = nodes[HEALTH_NODE]
        self.assertEqual((h["health"], h["health_reason"]), (health["state"], health["reason"]),
                         "the last health update stands")

        # Late stale deliveries after the fact change nothing at all.
        for i in range(N_SOURCES):
            old = build_manifest(i, gen_of(ROUNDS - 1), salt="very-late")
            resp = srv.post("/v1/manifests", old)
            self.assertError(resp, 409, "conflict", what="stale gen after final, source %d" % i)
        nodes2, edges2 = only_c(*fetch_map(srv))
        self.assertEqual(nodes2, nodes, "a 409 manifest must not change any node")
        self.assertEqual(edges2, edges, "a 409 manifest must not change any edge")

    def check_union(self, nodes, edges, applied, finals, hand_edges, hand_node):
        # -- edges: exactly the last manifests' edges plus the surviving hand edges.
        want = {}
        for i, m in finals.items():
            for e in m["edges"]:
                want.setdefault(ekey(e), set()).add(src_name(i))
        hand = set(hand_edges) | {("service/c-svc-3", "runs_on", "host/c-hand-final")}
        for k in hand:
            want.setdefault(k, set()).add(HAND_SOURCE)
        got = {k: set(e["sources"]) for k, e in edges.items()}
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        self.assertFalse(missing, "edges the last manifests/hand edits assert are missing: %s" % missing)
        self.assertFalse(extra, "edges nobody asserts any more are still on the map: %s"
                         % [(k, sorted(got[k])) for k in extra])
        wrong = [(k, sorted(want[k]), sorted(got[k])) for k in want if want[k] != got[k]]
        self.assertFalse(wrong, "edge sources differ (edge, want, got): %s" % wrong[:10])
        for k, e in edges.items():
            if k in hand:
                continue    # PUT /v1/edges without attributes: merge vs replace not pinned
            for s in got[k]:
                i = int(s.rsplit("-", 1)[1])
                self.assertEqual(e["attributes"].get("s%d" % i), finals[i]["generation"],
                                 "edge %s: attribute s%d is what source %d's last manifest "
                                 "sent (merge, manifest wins): %r" % (k, i, i, e["attributes"]))

        # -- nodes: every ref any applied manifest asserted (orphan when no last manifest
        # asserts it), the hand node, no deleted hand node.
        last_assert = {}
        for i, m in finals.items():
            for r in asserted(m):
                last_assert.setdefault(r, set()).add(src_name(i))
        ever = set()
        for i in applied:
            for m in applied[i]:
                ever |= asserted(m)
        expected_refs = (ever - {CONTESTED}) | {"host/c-hand-final"}
        got_refs = {r for r in nodes if r != CONTESTED}
        self.assertEqual(sorted(got_refs - expected_refs), [], "nodes nobody made")
        self.assertEqual(sorted(expected_refs - got_refs), [],
                         "asserted nodes missing (orphans must stay, SPEC §3)")
        # Endpoints of hand edges: whether a hand edge makes api:admin assert its endpoint
        # nodes is not pinned by the SPEC ("joins the node's or edge's sources"); allow it.
        hand_endpoints = {r for k in hand for r in (k[0], k[2])} - {"host/c-hand-final"}
        hand_put = {"host/c-hand-final", HAND_NODE}
        for ref, n in sorted(nodes.items()):
            self.assertNodeShape(n, ref)
            srcs = set(n["sources"])
            manifest_srcs = {s for s in srcs if not s.startswith("api:")}
            want_srcs = last_assert.get(ref, set())
            if ref == "host/c-hand-final":
                self.assertEqual(srcs, {HAND_SOURCE}, ref)
            elif ref == CONTESTED and not want_srcs:
                # Deleted by hand, maybe re-created (then orphaned) since: either is right.
                self.assertEqual(manifest_srcs, set(), "%s: %r" % (ref, n))
            else:
                self.assertEqual(manifest_srcs, want_srcs, "%s: sources are the sources whose "
                                 "last manifest asserts it: %r" % (ref, n))
                extra_hand = srcs - manifest_srcs
                if ref in hand_put:
                    self.assertEqual(extra_hand, {HAND_SOURCE}, "%s: a hand PUT joins sources: %r"
                                     % (ref, n))
                elif ref in hand_endpoints:
                    self.assertLessEqual(extra_hand, {HAND_SOURCE}, ref)
                else:
                    self.assertEqual(extra_hand, set(), "%s: %r" % (ref, n))
            self.assertEqual(n["orphan"], not srcs,
                             "%s: orphan iff no source asserts it and no hand edit: %r" % (ref, n))
            self.check_node_merge(ref, n, applied, finals, hand_node if ref == HAND_NODE else {})
        if CONTESTED in last_assert:
            self.assertIn(CONTESTED, nodes, "re-asserted after the hand deletes")

    def check_node_merge(self, ref, n, applied, finals, hand):
        """Attributes and labels: per source key, the generation of its latest applied
        manifest declaring the node (key-by-key merge never drops a key)."""
        if ref.startswith("host/c-hand-"):
            self.assertEqual(n["attributes"], {"hand": "final"}, ref)
            return
        want_a, want_l = {}, {}
        for i in applied:
            for m in applied[i]:
                d = declared(m).get(ref)
                if d and "attributes" in d:
                    want_a.update(d["attributes"])
                    want_l.update(d["labels"])
        if ref == HAND_NODE:
            # Whether a hand PUT merges into or replaces attributes is not in the SPEC
            # (schema/api.md says merge; the server replaces): check what holds either way.
            self.assertEqual(n["attributes"].get("hand"), hand["attributes"]["hand"], ref)
            self.assertEqual(n["labels"].get("hand"), hand["labels"]["hand"], ref)
        if ref in (CONTESTED, HAND_NODE):
            # Deleted (or overwritten) by hand mid-run: only the keys written after that
            # are known for sure: those of the final manifests that declare it.
            for i, m in finals.items():
                d = declared(m).get(ref)
                if d and "attributes" in d:
                    self.assertEqual(n["attributes"].get("s%d" % i), m["generation"], ref)
            return
        self.assertEqual(n["attributes"], want_a, "%s: attributes merge key by key" % ref)
        self.assertEqual(n["labels"], want_l, "%s: labels merge key by key" % ref)

    def test_sixteen_sources_into_shared_hubs(self):
        """Issue 7: sixteen sources post at once, every manifest pointing into the same
        platform hubs (a team, dns, vault, a database, shared hosts) and some asserting
        the same edges. No source waits on another's hub rows: none may fail, and the
        final map is exactly the union of each source's last manifest (edges and their
        sources, nodes and their sources, orphans). Re-posting every last manifest is then
        a no-op (no change, no seq) that still refreshes the hubs' last_seen_at."""
        srv = self.srv
        n_src, rounds = 16, 6
        hubs = ["team/h-platform", "service/h-dns", "service/h-vault", "database/h-pg"]
        hosts = ["host/h-host-%d" % k for k in range(3)]

        def man(i, gen):
            rnd = random.Random("hub:%d:%d" % (i, gen))
            svc = "service/h-svc-%d" % i
            extra = "service/h-svc-%d-v%d" % (i, gen % 3)      # comes and goes: orphans
            edges = [(svc, "depends_on", h) for h in rnd.sample(hubs[1:], rnd.randint(1, 3))]
            edges += [(svc, "owned_by", hubs[0]), (svc, "runs_on", rnd.choice(hosts)),
                      (extra, "part_of", svc)]
            # A shared edge asserted by several sources: the even ones.
            if i % 2 == 0:
                edges.append(("service/h-dns", "depends_on", "database/h-pg"))
            return {"manifest": "cmdb/v1", "source": "ci:h-src-%d" % i, "generation": gen,
                    "nodes": [{"ref": svc, "attributes": {"gen": gen}}, {"ref": hubs[0]}],
                    "edges": [{"from": f, "type": t, "to": to} for f, t, to in edges]}

        probs = Problems()
        start = threading.Barrier(n_src)

        def worker(i):
            start.wait()
            for gen in range(1, rounds + 1):
                probs.expect("hub source %d gen %d" % (i, gen),
                             srv.post("/v1/manifests", man(i, gen), token="write"), (200,))

        with ThreadPoolExecutor(max_workers=n_src) as pool:
            list(pool.map(worker, range(n_src)))
        self.assertFalse(probs.items, "unexpected responses:\n  %s\n  server log %s"
                         % ("\n  ".join(probs.items[:20]), srv.log_path))

        finals = {i: man(i, rounds) for i in range(n_src)}
        nodes, edges = fetch_map(srv, prefix=None)
        nodes = {r: n for r, n in nodes.items() if n["name"].startswith("h-")}
        edges = {k: e for k, e in edges.items() if k[0] in nodes}
        want_e, want_n = {}, {}
        for i, m in finals.items():
            for e in m["edges"]:
                want_e.setdefault(ekey(e), set()).add(m["source"])
            for r in asserted(m):
                want_n.setdefault(r, set()).add(m["source"])
        self.assertEqual({k: set(e["sources"]) for k, e in edges.items()}, want_e,
                         "edges and their sources are the union of the last manifests")
        ever = {r for i in range(n_src) for g in range(1, rounds + 1)
                for r in asserted(man(i, g))}
        self.assertEqual(set(nodes), ever, "every node ever asserted is on the map")
        for ref, n in nodes.items():
            self.assertEqual(set(n["sources"]), want_n.get(ref, set()), "%s: sources" % ref)
            self.assertEqual(n["orphan"], ref not in want_n, "%s: orphan" % ref)
        self.assertEqual(len(nodes["team/h-platform"]["sources"]), n_src)

        # The identical re-post of every last manifest: a no-op that changes nothing.
        before_seen = nodes["team/h-platform"]["last_seen_at"]
        time.sleep(0.01)
        with ThreadPoolExecutor(max_workers=n_src) as pool:
            resps = list(pool.map(lambda i: srv.post("/v1/manifests", finals[i], token="write"),
                                  range(n_src)))
        for i, (st, _, body) in enumerate(resps):
            self.assertEqual(st, 200, body)
            self.assertIsNone(body["seq"], "source %d: an identical re-post logs nothing" % i)
            self.assertEqual(body["nodes"]["created"] + body["nodes"]["updated"], 0)
        nodes2, _ = fetch_map(srv, prefix="team/h-platform")
        hub = nodes2["team/h-platform"]
        self.assertEqual(hub["version"], nodes["team/h-platform"]["version"],
                         "a no-op does not write the hub")
        self.assertGreater(hub["last_seen_at"], before_seen,
                           "a no-op still counts as a sighting (last_seen_at derived)")
        st, _, got = srv.get(node_path("team/h-platform"))
        self.assertEqual(st, 200)
        self.assertEqual(got["last_seen_at"], hub["last_seen_at"],
                         "GET node and the list agree on the derived last_seen_at")

    def test_same_source_posts_are_serialized(self):
        """Generations g and g+1 of one source race; g+1 must win every time."""
        srv = self.srv
        src = "ci:d-racer"
        targets = ["database/d-x-%d" % k for k in range(40)]

        def man(gen):
            return {"manifest": "cmdb/v1", "source": src, "generation": gen,
                    "nodes": [{"ref": "service/d-racer", "attributes": {"gen": gen}}],
                    "edges": [{"from": "service/d-racer", "type": "depends_on",
                               "to": targets[gen % len(targets)]},
                              {"from": "service/d-racer", "type": "depends_on",
                               "to": targets[(gen + 1) % len(targets)]}]}

        self.assertStatus(srv.post("/v1/manifests", man(1)), 200)
        late_409 = 0
        for rnd in range(12):
            g = 2 + 2 * rnd
            older, newer = man(g), man(g + 1)
            barrier = threading.Barrier(2)

            def post(m):
                barrier.wait()
                return srv.post("/v1/manifests", m, token="write")

            with ThreadPoolExecutor(max_workers=2) as pool:
                f_new = pool.submit(post, newer)
                f_old = pool.submit(post, older)
                r_new, r_old = f_new.result(), f_old.result()
            self.assertStatus(r_new, 200, "generation %d (newest) of %s" % (g + 1, src))
            self.assertIn(r_old[0], (200, 409), "generation %d of %s%s" % (g, src, self.ctx(r_old)))
            if r_old[0] == 409:
                late_409 += 1
                self.assertError(r_old, 409, "conflict")
            st, _, body = srv.get(node_path("service/d-racer") + "/edges?direction=out")
            self.assertEqual(st, 200)
            got = sorted(e["to"] for e in body["edges"])
            want = sorted(e["to"] for e in newer["edges"])
            self.assertEqual(got, want, "round %d: the map must be generation %d's (older got %d)"
                             % (rnd, g + 1, r_old[0]))
            st, _, node = srv.get(node_path("service/d-racer"))
            self.assertEqual(node["attributes"]["gen"], g + 1)
        # Not asserted (timing): how often the older one lost the race.
        sys.stderr.write("same-source race: %d/12 older posts answered 409\n" % late_409)

    def test_manifest_racing_a_hand_delete_of_its_node(self):
        """A manifest asserting a node while someone deletes that node by hand: either
        order is fine, but the manifest must answer 200 (a DELETE is not a reason to
        refuse it) and afterwards the node exists with the manifest's edges, or it was
        deleted after the apply. Never a 400/5xx made of a database race."""
        srv = self.srv
        probs = Problems()
        stop = threading.Event()
        target = "database/r-victim"

        def poster(i):
            for g in range(1, 41):
                m = {"manifest": "cmdb/v1", "source": "ci:r-%d" % i, "generation": g,
                     "nodes": [{"ref": target, "attributes": {"r%d" % i: g}}],
                     "edges": [{"from": "service/r-app-%d" % i, "type": "depends_on",
                                "to": target, "attributes": {"g": g}}]}
                probs.expect("manifest ci:r-%d gen %d" % (i, g),
                             srv.post("/v1/manifests", m, token="write"), (200,))

        def deleter():
            while not stop.is_set():
                probs.expect("DELETE %s" % target, srv.delete(node_path(target)), (204, 404))

        with ThreadPoolExecutor(max_workers=4) as pool:
            d = [pool.submit(deleter) for _ in range(2)]
            p = [pool.submit(poster, i) for i in range(2)]
            for f in p:
                f.result()
            stop.set()
            for f in d:
                f.result()
        self.assertFalse(probs.items, "unexpected responses (%d):\n  %s\n  server log %s"
                         % (len(probs.items), "\n  ".join(probs.items[:10]), srv.log_path))

    def test_concurrent_first_posts_of_new_sources_share_bare_nodes(self):
        """Many sources create the same bare endpoints at the same moment: each node is
        created once, no 5xx/409, and every source is recorded on the shared edge."""
        srv = self.srv
        n = 12
        barrier = threading.Barrier(n)

        def post(i):
            m = {"manifest": "cmdb/v1", "source": "ci:e-first-%d" % i, "generation": 1,
                 "edges": [{"from": "service/e-app-%d" % i, "type": "depends_on",
                            "to": "database/e-shared"},
                           {"from": "service/e-front", "type": "depends_on",
                            "to": "service/e-back"}]}
            barrier.wait()
            return srv.post("/v1/manifests", m, token="write")

        with ThreadPoolExecutor(max_workers=n) as pool:
            resps = list(pool.map(post, range(n)))
        for i, r in enumerate(resps):
            self.assertStatus(r, 200, "first manifest of ci:e-first-%d" % i)
        created = sum(r[2]["nodes"]["created"] for r in resps)
        self.assertEqual(created, n + 3, "each bare node created exactly once across reports")
        st, _, body = srv.get(node_path("service/e-front") + "/edges?direction=out")
        self.assertEqual(len(body["edges"]), 1)
        self.assertEqual(sorted(body["edges"][0]["sources"]),
                         sorted("ci:e-first-%d" % i for i in range(n)))
        st, _, node = srv.get(node_path("database/e-shared"))
        self.assertEqual(sorted(node["sources"]), sorted("ci:e-first-%d" % i for i in range(n)))
        self.assertEqual(node["edges"], {"in": n, "out": 0})


if __name__ == "__main__":
    unittest.main()
