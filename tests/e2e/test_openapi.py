#!/usr/bin/python3
"""schema/openapi.yaml describes the HTTP API, and the server answers as it says.

Document: against the official OpenAPI 3.1 meta-schema (openapi_check.check_meta_schema),
and the checks of openapi_check.check_document (structure of the OpenAPI 3.1
objects, $refs, path parameters, every schema a valid JSON Schema 2020-12 schema, every
route of cmdbd/router.c described with its scope), and that each of those checks fails
on a document broken in its way.

Responses: every response the end-to-end suite received (every unit records them:
lib.record_response, CMDB_API_RECORD_DIR; this file runs after all the others,
E2E_RUN_LAST) must be described — its operation, its status, its required headers, its
body's schema. This file adds a tour of its own that exercises every served route once
or more, so the check never runs on nothing. Requests that no operation serves (unknown
paths, methods) are checked against the document's x-cmdb-unrouted responses.

Run alone (python3 tests/e2e/test_openapi.py) it checks its own tour only.
"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import openapi_check as oc  # noqa: E402

E2E_RUN_LAST = True

_tmp = None


def setUpModule():
    global _tmp
    if lib.RECORD_DIR is None:  # run alone: record our own tour
        _tmp = tempfile.mkdtemp(prefix="cmdb-openapi-")
        lib.RECORD_DIR = _tmp


def tearDownModule():
    if _tmp is not None:
        shutil.rmtree(_tmp, ignore_errors=True)


def _write(doc_text, name="openapi.yaml"):
    """A copy of schema/ with openapi.yaml replaced by doc_text; returns its path."""
    d = tempfile.mkdtemp(prefix="cmdb-openapi-doc-")
    shutil.copy(os.path.join(lib.REPO, "schema", "manifest-v1.schema.json"), d)
    p = os.path.join(d, name)
    with open(p, "w", encoding="utf-8") as f:
        f.write(doc_text)
    return p


class Document(unittest.TestCase):
    """The document itself."""

    @classmethod
    def setUpClass(cls):
        with open(oc.DOC, encoding="utf-8") as f:
            cls.text = f.read()
        cls.spec = oc.Spec()

    def test_document_is_sound(self):
        problems = oc.check_document(self.spec)
        self.assertEqual(problems, [], "schema/openapi.yaml:\n  " + "\n  ".join(problems))

    def test_official_meta_schema(self):
        problems = oc.check_meta_schema(self.spec)
        if problems is None:
            self.skipTest("%s is not installed: run npm ci --prefix tests/openapi (make "
                          "openapi-check and make test do when npm is there)" % oc.META)
        self.assertEqual(problems, [], "schema/openapi.yaml against the OpenAPI 3.1 "
                         "meta-schema:\n  " + "\n  ".join(problems))
        spec = oc.Spec()
        spec.doc["paths"]["/v1/path"]["get"]["parameters"][0]["in"] = "body"
        self.assertFinds(oc.check_meta_schema(spec), "#/paths//v1/path/get/parameters/0",
                         "'body' is not one of")

    def broken(self, mutate):
        """The problems check_document finds in a copy of the document after mutate(doc)
        (on the loaded data)."""
        spec = oc.Spec()
        mutate(spec.doc)
        return oc.check_document(spec)

    def assertFinds(self, problems, *words):
        text = "\n".join(problems)
        for w in words:
            self.assertIn(w, text, "expected a problem mentioning %r; got:\n%s" % (w, text))

    def test_finds_a_duplicate_key(self):
        text = self.text.replace("\n  /v1/edges:\n",
                                 "\n  /v1/edges:\n    get: {}\n  /v1/edges:\n", 1)
        self.assertNotEqual(text, self.text)
        p = _write(text)
        try:
            with self.assertRaisesRegex(Exception, "duplicate key '/v1/edges'"):
                oc.Spec(p)
        finally:
            shutil.rmtree(os.path.dirname(p))

    def test_finds_a_dangling_ref(self):
        def m(d):
            d["paths"]["/v1/changes"]["get"]["responses"]["200"]["content"][
                "application/json"]["schema"]["properties"]["changes"]["items"] = {
                    "$ref": "#/components/schemas/NoSuchThing"}
        self.assertFinds(self.broken(m), "NoSuchThing", "does not resolve")

    def test_finds_an_undeclared_path_parameter(self):
        def m(d):
            d["paths"]["/v1/nodes/{kind}/{name}/owners"]["parameters"].pop(1)
        self.assertFinds(self.broken(m), "/v1/nodes/{kind}/{name}/owners/get",
                         "{name} is not declared")

    def test_finds_an_invalid_schema(self):
        def m(d):
            d["components"]["schemas"]["Edge"]["properties"]["from"] = {"type": "text"}
        self.assertFinds(self.broken(m), "#/components/schemas/Edge",
                         "not a valid JSON Schema 2020-12 schema")

    def test_finds_an_unknown_field_and_a_bad_status(self):
        def m(d):
            op = d["paths"]["/v1/path"]["get"]
            op["respones"] = {}
            op["responses"]["20x"] = {"description": "x"}
        self.assertFinds(self.broken(m), "'respones' is not a field", "20x: not a status")

    def test_finds_an_undescribed_route_and_a_wrong_scope(self):
        def m(d):
            del d["paths"]["/v1/drift"]
            d["paths"]["/v1/admin/verify"]["get"]["x-cmdb-scope"] = "read"
        self.assertFinds(self.broken(m), "serves GET /v1/drift: not described",
                         "x-cmdb-scope is 'read'; cmdbd/router.c says 'admin'")

    def test_router_table_is_read(self):
        routes = oc.router_routes()
        self.assertIn(("PUT", "/v1/nodes/*/*", "write"), routes)
        self.assertIn(("GET", "/healthz", "none"), routes)
        self.assertGreaterEqual(len(routes), 20)


class Responses(lib.ServerTestCase):
    """Every recorded response is described by the document."""

    server_name = "openapi"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tour()

    @classmethod
    def tour(cls):
        """Requests through every served route: successes and the usual errors."""
        s = cls.srv
        a = "service/oa-api"
        s.put_node(a, {"repo": "x"}, {"tier": "1"})
        st, h, node = s.put_node("database/oa-db:5432")
        s.put_node("team/oa-team", {"email": "t@example.com"})
        s.put_node("host/oa-h1")
        s.put_edge(a, "depends_on", "database/oa-db:5432", {"port": 5432})
        s.put_edge(a, "owned_by", "team/oa-team")
        s.put_edge(a, "runs_on", "host/oa-h1")
        s.put_edge(a, "depends_on", "service/oa-missing")             # 422
        s.put(lib.node_path(a), {"bogus": 1})                         # 400
        s.put(lib.node_path(a), {}, headers={"If-Match": '"999"'})    # 412
        st, h, _ = s.get(lib.node_path(a))
        s.get(lib.node_path(a), headers={"If-None-Match": h.get("etag", '"1"')})  # 304
        s.get(lib.node_path("service/oa-nope"))                       # 404
        s.request("HEAD", lib.node_path(a))
        s.get("/v1/nodes?kind=service&label=tier:1&limit=1")
        s.get("/v1/nodes?limit=0")                                    # 400
        s.get("/v1/nodes", token=None)                                # 401
        s.get(lib.node_path(a) + "/edges?direction=both")
        s.put(lib.node_path(a) + "/health", {"state": "down", "reason": "tour"})
        s.put(lib.node_path(a) + "/health", {"state": "on fire"})    # 400
        s.get(lib.node_path("database/oa-db:5432") + "/dependents?depth=3")
        s.get(lib.node_path(a) + "/dependencies?types=depends_on")
        s.get(lib.node_path(a) + "/owners")
        s.get(lib.node_path("host/oa-h1") + "/owners?index=0&wait=0")
        s.get("/v1/path?from=%s&to=%s" % (a, "database/oa-db:5432"))
        s.get("/v1/path?from=%s&to=%s" % ("database/oa-db:5432", a))  # 404 no_path
        s.post("/v1/rootcause", {"failing": [a], "max_depth": 4})
        s.post("/v1/rootcause", {"failing": ["service/oa-nope"]})      # 404
        s.get("/v1/graph?root=%s&depth=2&format=json" % a)
        s.get("/v1/graph?root=%s&format=dot" % a)
        manifest = {"manifest": "cmdb/v1", "source": "tour:oa", "generation": 2,
                    "deployment": {"node": a, "version": "1.0"},
                    "nodes": [{"ref": a}],
                    "edges": [{"from": a, "type": "connects_to", "to": "cache/oa-c"}]}
        s.post("/v1/manifests?dry_run=true", manifest)
        s.post("/v1/manifests", manifest, headers={"Idempotency-Key": "oa-1"})
        s.post("/v1/manifests", manifest)                             # no-op
        s.post("/v1/manifests", dict(manifest, edges=[]))             # 409 generation
        s.post("/v1/manifests", dict(manifest, source="observed:oa"))
        s.post("/v1/manifests", {"manifest": "cmdb/v2", "source": "x"})  # 400
        s.post("/v1/manifests", manifest, token="read")               # 403
        s.get("/v1/deployments?node=%s&limit=5" % a)
        s.get("/v1/changes?since=0&limit=5")
        s.get("/v1/changes?wait=61")                                  # 400
        s.get("/v1/sources")
        s.get("/v1/drift")
        s.get("/v1/drift?observer=observed:nobody")                   # 404
        s.get("/v1/admin/verify?limit=5")
        s.get("/v1/admin/verify", token="read")                       # 403
        s.delete("/v1/edges?from=%s&type=runs_on&to=host/oa-h1" % a)
        s.delete("/v1/edges?from=%s&type=runs_on&to=host/oa-h1" % a)  # 404
        s.delete(lib.node_path("host/oa-h1"))
        s.get("/healthz")
        s.get("/readyz")
        s.get("/metrics")
        s.get("/v1/no-such-thing")                                    # 404 unrouted
        s.request("PATCH", lib.node_path(a), {})                      # 405 unrouted
        s.request("POST", "/v1/nodes", {})                            # 405 unrouted

    def records(self):
        """(every record, the tour's), read once (the suite's are some 100 MB)."""
        cls = type(self)
        if getattr(cls, "_recs", None) is None:
            recs = oc.read_records(lib.RECORD_DIR)
            cls._recs = (recs, [r for r in recs if r.get("unit") == "test_openapi.py"
                                and r.get("test") == "Responses.setUpClass"])
        return cls._recs

    def test_1_tour_is_recorded(self):
        _, mine = self.records()
        self.assertGreaterEqual(len(mine), 50,
                                "the tour's responses were not recorded in %s: is "
                                "lib.record_response broken?" % lib.RECORD_DIR)
        self.assertIn(409, {r["status"] for r in mine})
        self.assertIn(405, {r["status"] for r in mine})

    def test_2_recorded_responses_are_described(self):
        recs, _ = self.records()
        spec = oc.Spec()
        lines, seen = oc.check_records(spec, recs)
        ops = {(m, t) for m, t, _ in seen if t}
        print("%d responses checked (%d operations, %d statuses of them seen)"
              % (len(recs), len(ops), len(seen)))
        self.assertEqual(lines, [], "%d kinds of responses are not described by "
                         "schema/openapi.yaml:\n  %s" % (len(lines), "\n  ".join(lines)))

    def test_3_a_missing_status_is_named(self):
        """The check fails on a document without a status the tour saw, and names the
        operation, the status and the test that saw it."""
        recs, mine = self.records()
        spec = oc.Spec()
        del spec.doc["paths"]["/v1/manifests"]["post"]["responses"]["409"]
        lines, _ = oc.check_records(spec, mine)
        self.assertTrue(any("POST /v1/manifests: status 409 is not described" in ln and
                            "Responses.setUpClass" in ln for ln in lines),
                        "expected the 409 of POST /v1/manifests named, with the test; "
                        "got:\n" + "\n".join(lines))

    def test_4_a_wrong_body_schema_is_named(self):
        recs, mine = self.records()
        spec = oc.Spec()
        edge = spec.doc["components"]["schemas"]["Edge"]
        edge["required"] = edge["required"] + ["weight"]
        lines, _ = oc.check_records(spec, mine)
        self.assertTrue(any("PUT /v1/edges: status 201: body at (the body): 'weight' is a "
                            "required property" in ln for ln in lines),
                        "expected the edge body refused; got:\n" + "\n".join(lines))
        spec = oc.Spec()
        spec.doc["components"]["headers"]["WWW-Authenticate"]["schema"]["pattern"] = "^Basic"
        hdrs = spec.doc["components"]["responses"]["NotFound"]["headers"]
        hdrs["X-Cmdb-Index"] = {"$ref": "#/components/headers/X-Cmdb-Index"}
        lines, _ = oc.check_records(spec, mine)
        self.assertTrue(any("GET /v1/nodes: status 401: header WWW-Authenticate" in ln
                            for ln in lines), "got:\n" + "\n".join(lines))
        self.assertTrue(any("GET /v1/nodes/{kind}/{name}: status 404: required header "
                            "X-Cmdb-Index is missing" in ln for ln in lines),
                        "got:\n" + "\n".join(lines))


if __name__ == "__main__":
    unittest.main()
