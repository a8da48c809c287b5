#!/usr/bin/env python3
"""test_webui.py — the web application (SPEC §8) in a real browser.

One cmdbd with the sample estate (examples/load-estate.sh) and a generated 2,000-node
blast radius; tests/e2e/webui_driver.mjs drives Debian's headless Chromium through
playwright-core (pinned by cmdbd/ui/package-lock.json, installed into build/node by
`make test`) as a person would: the token prompt of a pasted link, search with the
keyboard, a node's page and its owners, the blast radius and its filters, a click on a
drawn node, what the node needs, root cause, a change arriving in the live feed, the
2,000-node drawing (under 2 s, and still responsive), laptop and phone widths. Each
test here checks one part of the driver's report against the API's own answers.
Screenshots of every view go to build/ui-screenshots/.

The HTTP side (content types, caching, CSP, 304, no token needed) is checked directly.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

DRIVER = os.path.join(lib.HERE, "webui_driver.mjs")
NODE_DIR = os.path.join(lib.REPO, "build", "node")
SHOTS = os.path.join(lib.REPO, "build", "ui-screenshots")
BIG_ROOT = "database/webui-hub"
BIG_TIER1 = 40
BIG_TOTAL = 2000
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'; "
       "require-trusted-types-for 'script'; trusted-types 'none'")
FAILING = {"database/pg-main:5432": "down", "service/acme-psp": "down", "service/catalog": "degraded"}
FOCUS = "service/checkout"
# The blast radius followed through its filters: one with depth and types to tell apart.
BLAST = "database/pg-main:5432"


def big_manifest():
    """database/webui-hub with 2,000 dependents: 40 services need it, 1,960 need those
    (and a second tier-1 service each, so there is more than a tree to draw)."""
    nodes = [{"ref": BIG_ROOT}]
    edges = []
    for i in range(BIG_TIER1):
        nodes.append({"ref": "service/webui-t1-%02d" % i})
        edges.append({"from": "service/webui-t1-%02d" % i, "type": "depends_on", "to": BIG_ROOT})
    for i in range(BIG_TOTAL - BIG_TIER1):
        ref = "service/webui-t2-%04d" % i
        nodes.append({"ref": ref, "labels": {"tier": "2"}})
        edges.append({"from": ref, "type": "depends_on", "to": "service/webui-t1-%02d" % (i % BIG_TIER1)})
        if i % 3 == 0:
            edges.append({"from": ref, "type": "connects_to",
                          "to": "service/webui-t1-%02d" % ((i + 7) % BIG_TIER1)})
    return {"manifest": "cmdb/v1", "source": "test:webui-big", "nodes": nodes, "edges": edges}


class WebUI(lib.ServerTestCase):
    report = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.srv
        # The big map first: the estate's changes are then the latest, as on a map
        # whose nodes change now and then (a node's page reads recent changes only).
        st, _, body = s.post("/v1/manifests", big_manifest(), token="write")
        if st != 200:
            raise RuntimeError("big manifest: %s %s" % (st, body))
        env = dict(os.environ, CMDB_URL=s.url, CMDB_TOKEN=s.token("write"))
        p = subprocess.run(["sh", os.path.join(lib.REPO, "examples", "load-estate.sh")], env=env,
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("load-estate.sh failed: %s%s" % (p.stdout, p.stderr))
        for ref, state in FAILING.items():
            st, _, body = s.put(lib.node_path(ref) + "/health",
                                {"state": state, "reason": "webui test"}, token="write")
            if st != 200:
                raise RuntimeError("health %s: %s %s" % (ref, st, body))
        cls.report = cls.run_driver()

    @classmethod
    def run_driver(cls):
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed (cmdbd/dev/deps.sh test installs it)")
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")):
            raise RuntimeError("playwright-core is not in %s: run `make ui-test-deps`" % NODE_DIR)
        if os.path.isdir(SHOTS):
            shutil.rmtree(SHOTS)
        env = dict(os.environ, CMDB_UI_URL=cls.srv.url, CMDB_UI_TOKEN=cls.srv.token("read"),
                   CMDB_UI_WRITE_TOKEN=cls.srv.token("write"), CMDB_UI_SHOTS=SHOTS,
                   CMDB_UI_NODE_MODULES=NODE_DIR, CMDB_UI_BIG=BIG_ROOT, CMDB_UI_BLAST=BLAST)
        p = subprocess.run([node, DRIVER], env=env, capture_output=True, text=True, timeout=150)
        if p.returncode != 0:
            raise RuntimeError("the browser driver failed (%d):\n%s\n%s"
                               % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
        return json.loads(p.stdout.strip().splitlines()[-1])

    # -- helpers

    def step(self, name):
        st = self.report["steps"].get(name)
        self.assertIsNotNone(st, "the driver did not run step %s" % name)
        self.assertNotIn("error", st, "step %s failed in the browser:\n%s" % (name, st.get("error")))
        return st

    def api(self, path, body=None):
        resp = self.srv.post(path, body, token="read") if body is not None else \
            self.srv.get(path, token="read")
        self.assertStatus(resp, 200, path)
        return resp[2]

    def walk(self, ref, kind, **q):
        qs = "&".join("%s=%s" % (k, v) for k, v in q.items())
        return self.api(lib.node_path(ref) + "/" + kind + ("?" + qs if qs else ""))

    # -- the files

    def test_files_headers(self):
        s = self.srv
        st, h, _ = s.get("/ui", token=None)
        self.assertEqual(st, 308)
        self.assertEqual(h.get("location"), "/ui/")
        st, h, body = s.get("/ui/", token=None)
        self.assertEqual(st, 200, "the page needs no token")
        self.assertEqual(h["content-type"], "text/html; charset=utf-8")
        self.assertEqual(h["content-security-policy"], CSP)
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertEqual(h["cache-control"], "no-cache")
        etag = h["etag"]
        st, h2, _ = s.get("/ui/", token=None, headers={"If-None-Match": etag})
        self.assertEqual(st, 304)
        self.assertEqual(h2["etag"], etag)
        assets = re.findall(r'(?:src|href)="([0-9a-f]{16})/([a-z0-9._-]+)"', body)
        self.assertEqual({a[1] for a in assets}, {"app.js", "style.css", "icon.svg"}, body)
        build = assets[0][0]
        self.assertIn('src="%s/app.js"' % build, body)
        # The bytes served are the source files' (the index has its build id filled in).
        for name in ("app.js", "graph.js", "style.css"):
            with open(os.path.join(lib.REPO, "cmdbd", "ui", "src", name), encoding="utf-8") as f:
                self.assertEqual(s.get("/ui/%s/%s" % (build, name), token=None)[2], f.read(), name)
        types = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
                 "icon.svg": "image/svg+xml", "graph.js": "text/javascript; charset=utf-8"}
        for name, ctype in types.items():
            st, h, _ = s.get("/ui/%s/%s" % (build, name), token=None)
            self.assertEqual(st, 200, name)
            self.assertEqual(h["content-type"], ctype, name)
            self.assertEqual(h["cache-control"], "public, max-age=31536000, immutable", name)
            self.assertEqual(h["content-security-policy"], CSP, name)
        # Another build's directory, a missing file, the index under the build: 404.
        for path in ("/ui/0000000000000000/app.js", "/ui/%s/nope.js" % build,
                     "/ui/%s/index.html" % build, "/ui/%s/app.js/x" % build):
            self.assertError(s.get(path, token=None), 404, "not_found", what=path)
        st, h, _ = s.request("HEAD", "/ui/", token=None)
        self.assertEqual((st, h["content-type"]), (200, "text/html; charset=utf-8"))
        self.assertError(s.post("/ui/", {}, token=None), 405, what="POST /ui/")
        # The API the page calls still wants a token.
        self.assertEqual(s.get("/v1/nodes", token=None)[0], 401)

    # -- the browser

    def test_browser_clean(self):
        r = self.report
        self.assertEqual(r["page_errors"], [], "uncaught errors in the page")
        self.assertEqual(r["csp_violations"], [], "the page did something its CSP forbids")
        # The browser logs the 401s of the wrong token the token test types; nothing else.
        noise = [m for m in r["console"] if "status of 401" not in m]
        self.assertEqual(noise, [], "console errors or warnings")

    def test_pasted_link_asks_for_token(self):
        st = self.step("token")
        self.assertEqual(st["prompt"], "API token")
        self.assertIn("invalid token", st["refused"], "a wrong token is refused, saying why")
        self.assertEqual(st["after"], FOCUS, "the pasted link's view, once the token is in")
        self.assertTrue(st["stored"], "the token is kept in the tab's sessionStorage")
        self.assertEqual(st["local"], 0, "and nowhere that outlives the tab")

    def test_search_keyboard(self):
        st = self.step("search")
        self.assertEqual(st["focused"], "q", "/ focuses the search box")
        want = [n["ref"] for n in self.api("/v1/nodes?q=service/chec&limit=10")["items"]]
        self.assertEqual(st["options"], want)
        self.assertIn(FOCUS, st["options"])
        self.assertEqual(st["expanded"], "true")
        self.assertEqual(st["selected"], want[0], "ArrowDown chooses the first match")
        self.assertEqual(st["hash"], "#/node/" + want[0], "Enter opens it")

    def test_node_page(self):
        st = self.step("node")
        n = self.api(lib.node_path(FOCUS))
        self.assertEqual(st["health"], n["health"])
        got = [(o["ref"], o["rule"], o["chain"]) for o in st["owners"]]
        want = [(o["ref"], o["rule"], " → ".join(o["via"])) for o in n["owners"]]
        self.assertEqual(got, want)
        self.assertTrue(want, "the sample estate gives %s an owner" % FOCUS)
        for o, api_o in zip(st["owners"], n["owners"]):
            for k in ("email", "chat", "oncall", "phone"):
                if k in api_o["attributes"]:
                    self.assertIn("%s: %s" % (k, api_o["attributes"][k]), o["contacts"])
        self.assertEqual((st["edges_out"], st["edges_in"]), (n["edges"]["out"], n["edges"]["in"]))
        self.assertEqual(st["attributes"], sorted(n["attributes"]))
        self.assertEqual(st["labels"], sorted(n["labels"]))
        deps = self.api("/v1/deployments?node=%s&limit=10" % FOCUS)["items"]
        self.assertEqual(st["deployments"], len(deps))
        self.assertGreater(st["deployments"], 0, "the estate deploys %s" % FOCUS)
        self.assertGreater(st["changes"], 0, "the node's own changes are listed")

    def test_blast_radius_count(self):
        st = self.step("blast")
        api = self.walk(BLAST, "dependents", limit=100000)
        self.assertGreater(api["count"], 5, "pick a node with a real blast radius")
        self.assertEqual(st["drawn"], api["count"], "drawn nodes (root aside) = the API's count")
        self.assertEqual(st["painted"], api["count"] + 1, "all of them painted at the fitted zoom")
        self.assertEqual(st["listed"], min(api["count"], 100))
        self.assertEqual(st["root"], BLAST)
        self.assertEqual(st["hash"], "#/impact/" + BLAST)
        self.assertIn("%d node" % api["count"], st["summary"])
        # Health colours are the map's, the failing root's included.
        g = self.api("/v1/graph?root=%s&direction=dependents&depth=100000" % BLAST)
        want = {n["ref"]: n["health"] for n in g["nodes"] if n["ref"] in st["health"]}
        self.assertEqual(st["health"], want)
        self.assertEqual(st["health"][BLAST], "down")
        d1 = self.walk(BLAST, "dependents", depth=1, limit=100000)
        self.assertEqual(st["depth1"]["drawn"], d1["count"])
        self.assertLess(d1["count"], api["count"])
        self.assertEqual(st["depth1"]["hash"], "#/impact/%s?depth=1" % BLAST)
        ro = self.walk(BLAST, "dependents", depth=1, types="runs_on", limit=100000)
        self.assertEqual(st["runs_on"]["hash"], "#/impact/%s?depth=1&types=runs_on" % BLAST)
        self.assertEqual(st["runs_on"]["drawn"], ro["count"])

    def test_click_navigates(self):
        st = self.step("click_node")
        self.assertEqual(st["hash"], "#/node/" + st["target"])
        self.assertEqual(st["h1"], st["target"])

    def test_needs_count(self):
        st = self.step("needs")
        api = self.walk(FOCUS, "dependencies", limit=100000)
        self.assertGreater(api["count"], 0)
        self.assertEqual(st["drawn"], api["count"])

    def test_rootcause(self):
        st = self.step("rootcause")
        self.assertEqual(st["hash"], "#/rootcause")
        self.assertEqual(sorted(st["failing"]), sorted(FAILING))
        rc = self.api("/v1/rootcause", {"failing": sorted(FAILING)})
        self.assertEqual(st["root_causes"], rc["root_causes"])
        self.assertEqual(st["cover"], rc["minimal_cover"])
        self.assertIn("database/pg-main:5432", st["root_causes"])

    def test_live_feed(self):
        st = self.step("feed")
        self.assertEqual(st["status"], 201)
        self.assertIn(st["ref"], st["row"])
        self.assertIn("node.created", st["row"])
        self.assertIn(st["ref"], st["row"], "the newest change is on top")
        self.assertGreater(st["before"], 0, "the feed opens on the latest changes")
        self.assertLess(st["ms"], 5000, "the long poll shows a change within seconds")
        # Live through the long poll: after the first read, every request waits, and the
        # change came on one of the few parked ones, not on a stream of polls.
        self.assertGreaterEqual(len(st["polls"]), 2, st["polls"])
        self.assertIn("wait=0", st["polls"][0])
        for url in st["polls"][1:]:
            self.assertRegex(url, r"[?&]wait=[1-9][0-9]*(&|$)", st["polls"])
        self.assertLessEqual(len(st["polls"]), 4, st["polls"])

    def test_big_blast_radius_fast(self):
        st = self.step("big")
        print("2,000-node blast radius: %s ms in the page (wall %s ms; last run: fetch "
              "%d, draw %d), zoom frame %.0f ms, click to page %d ms"
              % ([round(r["pageMs"]) for r in st["runs"]], [r["wall"] for r in st["runs"]],
                 st["fetchMs"], st["drawMs"], st["zoomMs"], st["clickMs"]), file=sys.stderr)
        api = self.walk(BIG_ROOT, "dependents", limit=100000)
        self.assertEqual(api["count"], BIG_TOTAL)
        self.assertEqual(st["drawn"], BIG_TOTAL)
        self.assertEqual(st["painted"], BIG_TOTAL + 1)
        self.assertTrue(st["zoomMoved"], "the wheel zoomed")
        self.assertLess(st["pageMs"], 2000, "2,000 nodes drawn within 2 s (%s)" % st)
        self.assertLess(st["zoomMs"], 250, "a zoom is drawn at once")
        self.assertLess(st["clickMs"], 2000)
        self.assertEqual(st["hash"], "#/node/" + st["target"])

    def test_widths(self):
        st = self.step("widths")
        for width, views in st.items():
            if width == "ms":
                continue
            for view, v in views.items():
                self.assertLessEqual(v["overflow"], 0, "%s at %s width scrolls sideways" % (view, width))

    def test_accessibility(self):
        for name in ("node", "blast"):
            st = self.step(name)
            self.assertEqual(st["unlabelled"], [], "controls without a name on the %s view" % name)
        for name in ("node", "blast", "rootcause"):
            c = self.step(name)["contrast"]
            self.assertGreaterEqual(c["ratio"], 4.5, "text contrast on the %s view: %s" % (name, c))

    def test_screenshots(self):
        for name in ("search", "node", "blast-radius", "needs", "root-cause", "changes", "blast-radius-2000",
                     "node-phone"):
            path = os.path.join(SHOTS, name + ".png")
            self.assertTrue(os.path.isfile(path), path)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", path)


if __name__ == "__main__":
    unittest.main()
