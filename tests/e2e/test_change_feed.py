#!/usr/bin/python3
"""The change feed (SPEC §1 Change log, §2 Change feed), end to end.

While concurrent writers (manifests, hand edits of nodes and edges, node deletes, health
updates) change the map, a follower pages GET /v1/changes?since=N&wait=5&limit=50 from 0,
always resuming from `next`. Afterwards:

- every page is well formed (seq strictly increasing and > since, at most `limit`,
  `next` = the last seq, or `since` on an empty page), and what the follower received
  equals the whole log read again from 0: no duplicate, nothing missed ("a reader that has
  seen seq N and later asks for since=N never misses a change"); the seqs are 1..max
  without holes (DESIGN.md numbers rows from a counter in commit order);
- every change's `before` is what the previous change of that ref left (`after`), so the
  feed is a consistent history;
- replaying the feed alone (apply `after` per ref, drop on *.deleted) rebuilds exactly the
  final map (GET /v1/nodes, every page, and every node's edges). last_seen_at is left out
  of that comparison: re-asserting a node refreshes it without a visible change, and the
  SPEC does not make that a change row (the identical manifest is a no-op);
- `wait` returns as soon as a change arrives; an empty feed answers {"changes": [],
  "next": since} after about `wait`; wait > 60, since < 0, non-numbers → 400 naming the
  parameter.

Run: /usr/bin/python3 tests/e2e/test_change_feed.py
"""

import json
import os
import random
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402
from test_manifest_concurrency import Problems, fetch_map  # noqa: E402

OPS = {"node.created", "node.updated", "node.deleted",
       "edge.created", "edge.updated", "edge.deleted"}
CHANGE_FIELDS = {"seq", "at", "actor", "source", "op", "ref", "before", "after"}
SVCS = ["service/f-svc-%d" % k for k in range(5)]
HOSTS = ["host/f-host-%d" % k for k in range(3)]


def edge_ref(e):
    return "%s %s %s" % (e["from"], e["type"], e["to"])


def without(obj, *keys):
    if obj is None:
        return None
    return {k: v for k, v in obj.items() if k not in keys}


def feed_manifest(i, gen):
    rnd = random.Random("f%d:%d" % (i, gen))
    edges = set()
    for s in rnd.sample(SVCS, 3):
        edges.add((s, "runs_on", rnd.choice(HOSTS)))
        edges.add((s, "depends_on", "database/f-db-%d" % rnd.randint(0, 2)))
    return {"manifest": "cmdb/v1", "source": "ci:f-src-%d" % i, "generation": gen,
            "nodes": [{"ref": r, "attributes": {"s%d" % i: gen}}
                      for r in rnd.sample(SVCS + HOSTS, 3)],
            "edges": [{"from": f, "type": t, "to": to, "attributes": {"g%d" % i: gen}}
                      for (f, t, to) in sorted(edges)]}


class ChangeFeed(ServerTestCase):
    server_name = "feed"

    # -- helpers

    def changes(self, since, limit=None, wait=None, token="read", timeout=30):
        q = "since=%d" % since
        if limit is not None:
            q += "&limit=%d" % limit
        if wait is not None:
            q += "&wait=%s" % wait
        return self.srv.request("GET", "/v1/changes?" + q, token=token, timeout=timeout)

    def check_page(self, resp, since, limit):
        """A page's own invariants; returns its changes."""
        body = self.assertStatus(resp, 200, "GET /v1/changes?since=%d" % since)
        self.assertEqual(set(body), {"changes", "next"}, self.ctx(resp))
        ch = body["changes"]
        self.assertLessEqual(len(ch), limit, "more than limit=%d changes" % limit)
        prev = since
        for c in ch:
            self.assertEqual(set(c), CHANGE_FIELDS, "change fields: %r" % c)
            self.assertIsInstance(c["seq"], int)
            self.assertGreater(c["seq"], prev, "seq strictly increasing and > since=%d: %r"
                               % (since, [x["seq"] for x in ch]))
            prev = c["seq"]
            self.assertIn(c["op"], OPS, c)
            self.assertTime(c["at"], "change.at")
            kind = c["op"].split(".")[0]
            obj = c["after"] if c["after"] is not None else c["before"]
            self.assertIsNotNone(obj, "before and after both null: %r" % c)
            self.assertEqual(c["after"] is None, c["op"].endswith(".deleted"), c)
            self.assertEqual(c["before"] is None, c["op"].endswith(".created"), c)
            if kind == "node":
                self.assertEqual(c["ref"], obj["ref"], c)
                self.assertNodeShape(obj, c["ref"])
            else:
                self.assertEqual(c["ref"], edge_ref(obj), c)
                self.assertEdgeShape(obj)
        self.assertEqual(body["next"], ch[-1]["seq"] if ch else since,
                         "next is the last seq returned (since on an empty page)")
        return ch

    def read_all(self, since=0, limit=1000):
        out = []
        while True:
            ch = self.check_page(self.changes(since, limit=limit), since, limit)
            if not ch:
                return out
            out += ch
            since = ch[-1]["seq"]

    # -- the big one

    def test_follower_rebuilds_the_map_under_concurrent_writers(self):
        srv = self.srv
        probs = Problems()
        received = []
        pages = []
        follower_err = []
        stop_at_ref = "service/f-marker"
        seen_marker = threading.Event()

        def follower():
            since = 0
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    resp = self.changes(since, limit=50, wait=5)
                    ch = self.check_page(resp, since, 50)
                    pages.append(len(ch))
                    received.extend(ch)
                    since = resp[2]["next"]
                    if any(c["ref"] == stop_at_ref for c in ch):
                        seen_marker.set()
                        return
                follower_err.append("follower timed out at since=%d" % since)
            except BaseException as e:           # reported by the main thread
                follower_err.append(repr(e))

        def manifests(i):
            for g in range(1, 9):
                m = feed_manifest(i, g)
                probs.expect("manifest %s gen %d" % (m["source"], g),
                             srv.post("/v1/manifests", m, token="write"), (200,))

        def hand_edits():
            for k in range(15):
                ref = "service/f-hand-%d" % (k % 4)
                probs.expect("PUT %s" % ref, srv.put_node(ref, {"k": k}, {"hand": str(k)}), (200, 201))
                probs.expect("PUT edge %s" % ref,
                             srv.put_edge(ref, "depends_on", SVCS[k % len(SVCS)], {"k": k}),
                             (200, 201, 422))   # 422 if the target was never created yet
                if k % 3 == 2:
                    probs.expect("DELETE edge", srv.delete(
                        "/v1/edges?from=%s&type=depends_on&to=%s" % (ref, SVCS[(k - 1) % len(SVCS)])),
                        (204, 404))

        def deleter():
            for k in range(10):
                ref = "host/f-tmp-%d" % k
                probs.expect("PUT %s" % ref, srv.put_node(ref, {"k": k}), (201,))
                probs.expect("PUT edge to %s" % ref,
                             srv.put_edge("service/f-hand-x", "runs_on", ref), (201,))
                if k % 2 == 0:
                    probs.expect("DELETE %s" % ref, srv.delete(node_path(ref)), (204,))

        def health():
            states = ["ok", "degraded", "down", "unknown"]
            for k in range(20):
                ref = SVCS[k % len(SVCS)]
                probs.expect("health %s" % ref,
                             srv.put(node_path(ref) + "/health",
                                     {"state": states[k % 4], "reason": "r%d" % k}),
                             (200, 404))   # 404 until a manifest created it

        self.assertStatus(srv.put_node("service/f-hand-x", {}), 201)
        ft = threading.Thread(target=follower, daemon=True)
        ft.start()
        time.sleep(0.3)        # the follower's first call waits on an empty feed
        with ThreadPoolExecutor(max_workers=7) as pool:
            futs = [pool.submit(manifests, i) for i in range(4)]
            futs += [pool.submit(f) for f in (hand_edits, deleter, health)]
            for f in futs:
                f.result()
        # Every writer has finished: the marker's seq is the highest one.
        self.assertStatus(srv.put_node(stop_at_ref, {"last": True}), 201)
        ft.join(60)
        self.assertFalse(ft.is_alive(), "the follower did not see the marker")
        self.assertFalse(follower_err, follower_err)
        self.assertFalse(probs.items, "unexpected responses:\n  " + "\n  ".join(probs.items[:30]))

        seqs = [c["seq"] for c in received]
        self.assertEqual(len(seqs), len(set(seqs)), "duplicate seqs delivered")
        self.assertEqual(seqs, sorted(seqs), "seq strictly increasing across pages")
        self.assertEqual(received[-1]["ref"], stop_at_ref, "the marker is the last change")
        full = self.read_all(0)
        self.assertEqual([c["seq"] for c in full], seqs,
                         "the follower missed or invented changes (re-read from 0 differs)")
        self.assertEqual(full, received, "a change's content differs between two reads")
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "seqs are 1..max with no hole")
        self.assertGreater(len(pages), 2, "the follower paged (limit=50): %r" % pages)
        sys.stderr.write("feed: %d changes in %d pages\n" % (len(received), len(pages)))
        ops = {c["op"] for c in received}
        self.assertEqual(ops, OPS, "every op was exercised")

        # Replay into a fresh model; `before` must be what the model holds.
        model_nodes, model_edges = {}, {}
        last_change = {}
        for c in received:
            store = model_nodes if c["op"].startswith("node.") else model_edges
            want = without(store.get(c["ref"]), "last_seen_at")
            got = without(c["before"], "last_seen_at")
            if got != want:
                prev = last_change[c["ref"]]
                diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got)
                        if want.get(k) != got.get(k)} if want and got else (want, got)
                self.fail("seq %d (%s %s by %s/%s at %s): `before` is not the state the feed "
                          "left at seq %d (%s by %s/%s at %s); field: (feed state, before) %s;"
                          " this change's after: %s"
                          % (c["seq"], c["op"], c["ref"], c["actor"], c["source"], c["at"],
                             prev["seq"], prev["op"], prev["actor"], prev["source"], prev["at"],
                             json.dumps(diff), json.dumps(c["after"])))
            last_change[c["ref"]] = c
            if c["after"] is None:
                del store[c["ref"]]
            else:
                store[c["ref"]] = c["after"]
        # An edge can not outlive its endpoints in the replay either.
        for r, e in model_edges.items():
            self.assertIn(e["from"], model_nodes, "replayed edge %s outlives its from-node" % r)
            self.assertIn(e["to"], model_nodes, "replayed edge %s outlives its to-node" % r)

        nodes, edges = fetch_map(srv)
        self.assertEqual(sorted(model_nodes), sorted(nodes), "the feed's node set")
        for ref, n in nodes.items():
            self.assertEqual(without(model_nodes[ref], "last_seen_at"), without(n, "last_seen_at"),
                             "node %s: feed replay vs GET /v1/nodes" % ref)
        self.assertEqual(sorted(model_edges), sorted(edge_ref(e) for e in edges.values()),
                         "the feed's edge set")
        for e in edges.values():
            self.assertEqual(model_edges[edge_ref(e)], e, "edge %s: feed replay vs API" % edge_ref(e))

        # Caught up: nothing newer, next stays.
        last = seqs[-1]
        resp = self.changes(last)
        self.assertEqual(self.check_page(resp, last, 1000), [])
        self.assertEqual(resp[2]["next"], last)

    # -- long polling

    def current_max(self):
        ch = self.read_all(0)
        return ch[-1]["seq"] if ch else 0

    def test_wait_returns_early_when_a_change_arrives(self):
        srv = self.srv
        self.assertStatus(srv.put_node("service/f-wait-seed", {}), (200, 201))
        since = self.current_max()
        out = {}

        def poll():
            t = time.monotonic()
            out["resp"] = self.changes(since, wait=20)
            out["took"] = time.monotonic() - t

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(1.0)
        self.assertTrue(t.is_alive(), "wait=20 on a caught-up feed answered at once: %r" % out)
        self.assertStatus(srv.put_node("service/f-wait-wakeup", {"x": 1}), 201)
        t.join(25)
        self.assertFalse(t.is_alive())
        ch = self.check_page(out["resp"], since, 1000)
        self.assertLess(out["took"], 5.0, "wait=20 must return soon after a change (took %.2f s)"
                        % out["took"])
        self.assertGreaterEqual(out["took"], 0.9)
        self.assertTrue(ch, "the change that woke the poll is in the answer")
        self.assertEqual(ch[0]["ref"], "service/f-wait-wakeup")
        self.assertEqual(ch[0]["op"], "node.created")
        self.assertEqual(ch[0]["actor"], "admin")
        self.assertEqual(ch[0]["source"], "api:admin")

    def test_wait_on_empty_feed_returns_after_the_wait(self):
        since = self.current_max()
        t = time.monotonic()
        resp = self.changes(since, wait=2)
        took = time.monotonic() - t
        body = self.assertStatus(resp, 200)
        self.assertEqual(body, {"changes": [], "next": since})
        self.assertGreaterEqual(took, 1.8, "returned before the wait (%.2f s)" % took)
        self.assertLess(took, 5.0, "wait=2 took %.2f s" % took)

    def test_wait_with_pending_changes_answers_at_once(self):
        self.assertStatus(self.srv.put_node("service/f-pending", {}), (200, 201))
        t = time.monotonic()
        resp = self.changes(0, wait=60, limit=1)
        took = time.monotonic() - t
        ch = self.check_page(resp, 0, 1)
        self.assertEqual(len(ch), 1)
        self.assertEqual(ch[0]["seq"], 1, "the first change is seq 1")
        self.assertLess(took, 2.0, "changes newer than since exist: no waiting (%.2f s)" % took)

    def test_bad_parameters(self):
        for q, param in (("since=-1", "since"), ("since=abc", "since"), ("since=1.5", "since"),
                         ("since=0&wait=61", "wait"), ("since=0&wait=3600", "wait"),
                         ("since=0&wait=-1", "wait"), ("since=0&wait=x", "wait"),
                         ("since=0&limit=-1", "limit"), ("since=0&limit=abc", "limit")):
            with self.subTest(q=q):
                resp = self.srv.get("/v1/changes?" + q, token="read")
                self.assertError(resp, 400, "bad_request", mentions=(param,),
                                 what="GET /v1/changes?" + q)

    def test_auth(self):
        resp = self.srv.get("/v1/changes?since=0", token=None)
        self.assertError(resp, 401)
        self.assertIn("bearer", resp[1].get("www-authenticate", "").lower())
        self.assertStatus(self.srv.get("/v1/changes?since=0", token="read"), 200)

    def test_deleted_node_history_is_kept(self):
        """DELETE of a node reports the node and each of its edges as deleted, with
        `before` the whole object, and the history before it stays readable."""
        srv = self.srv
        since = self.current_max()
        self.assertStatus(srv.put_node("service/f-del-a", {"a": 1}), 201)
        self.assertStatus(srv.put_node("service/f-del-b", {}), 201)
        self.assertStatus(srv.put_edge("service/f-del-a", "depends_on", "service/f-del-b",
                                       {"port": 1}), 201)
        self.assertStatus(srv.delete(node_path("service/f-del-b")), 204)
        ch = self.read_all(since)
        got = [(c["op"], c["ref"]) for c in ch]
        self.assertEqual(got[:3], [("node.created", "service/f-del-a"),
                                   ("node.created", "service/f-del-b"),
                                   ("edge.created", "service/f-del-a depends_on service/f-del-b")])
        self.assertCountEqual(got[3:], [("edge.deleted", "service/f-del-a depends_on service/f-del-b"),
                                        ("node.deleted", "service/f-del-b")],
                              "the edge goes with the node, and both are in the feed")
        for c in ch[3:]:
            self.assertIsNone(c["after"])
            self.assertIsNotNone(c["before"])
        edge_del = [c for c in ch if c["op"] == "edge.deleted"][0]
        self.assertEqual(edge_del["before"]["attributes"], {"port": 1})
        self.assertEqual(self.read_all(since), ch, "history is stable")


if __name__ == "__main__":
    unittest.main()
