#!/usr/bin/python3
"""The manifest JSON Schema accepts every example manifest and rejects broken ones.

Needs no cmdbd: it checks schema/manifest-v1.schema.json with a Draft 2020-12 validator
(Debian's python3-jsonschema) against
  - every *.json manifest under examples/ (and any other *.json in the repo that is one,
    outside tests/, where bad input lives on purpose),
  - every ```json block in the repo's Markdown that is a manifest (same exclusions),
  - what the Fabric and Capistrano examples actually send (captured by a local HTTP
    listener; skipped when fab / cap are not installed),
  - a table of deliberately invalid manifests, each of which must fail for the stated
    reason.
When the e2e harness has a PostgreSQL cluster (tests/e2e/lib.py), TestServerAgrees also
sends every valid and invalid case to the real cmdbd with ?dry_run=true: the schema and
the server must agree, except where the schema is documented to be stricter.

Run: /usr/bin/python3 tests/e2e/test_schema.py   (exit status non-zero on failure)
"""

import copy
import datetime
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import jsonschema
from jsonschema import Draft202012Validator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA_PATH = os.path.join(ROOT, "schema", "manifest-v1.schema.json")
# tests/ holds deliberately broken request bodies; build/ and .cmdb/ are generated.
SKIP_DIRS = {".git", ".cmdb", "build", "tests", "node_modules", "__pycache__"}

# RFC 3339 section 5.6 date-time. Debian's jsonschema checks "date-time" only when the
# rfc3339-validator module (not packaged) is present, so the test brings its own.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def make_format_checker():
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def is_date_time(value):
        if not isinstance(value, str):
            return True
        if not RFC3339.match(value):
            return False
        # Range checks (month 13, hour 25, ...); fromisoformat parses this subset.
        datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return True

    return checker


def no_duplicate_keys(pairs):
    """object_pairs_hook: the server rejects duplicate keys, so the examples must not have any."""
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, object_pairs_hook=no_duplicate_keys)


def repo_files(suffix):
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith(suffix):
                yield os.path.join(dirpath, name)


def is_manifest(doc):
    return isinstance(doc, dict) and "manifest" in doc and "source" in doc


def markdown_manifests():
    """(where, doc) for each ```json block in the repo's Markdown that is a manifest."""
    fence = re.compile(r"^```json[^\n]*\n(.*?)^```", re.M | re.S)
    for path in repo_files(".md"):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in fence.finditer(text):
            try:
                doc = json.loads(m.group(1), object_pairs_hook=no_duplicate_keys)
            except ValueError:
                continue  # a fragment or a reply, not a manifest
            if is_manifest(doc):
                line = text.count("\n", 0, m.start()) + 1
                yield f"{os.path.relpath(path, ROOT)}:{line}", doc


class SchemaTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.schema = load_json(SCHEMA_PATH)
        cls.validator = Draft202012Validator(cls.schema, format_checker=make_format_checker())

    def errors(self, doc):
        return sorted(self.validator.iter_errors(doc), key=lambda e: list(e.absolute_path))

    def assertValid(self, doc, where):
        errs = self.errors(doc)
        self.assertEqual([], [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                              for e in errs])


# ------------------------------------------------------------------- the schema itself

class TestSchemaDocument(SchemaTestCase):
    def test_is_a_valid_draft_2020_12_schema(self):
        self.assertEqual("https://json-schema.org/draft/2020-12/schema", self.schema["$schema"])
        Draft202012Validator.check_schema(self.schema)

    def test_closed_objects(self):
        """additionalProperties: false on the manifest, deployment, node and edge."""
        self.assertIs(False, self.schema["additionalProperties"])
        for name in ("deployment", "node", "edge"):
            self.assertIs(False, self.schema["$defs"][name]["additionalProperties"], name)

    def test_edge_types_are_the_five(self):
        self.assertEqual({"depends_on", "runs_on", "connects_to", "part_of", "owned_by"},
                         set(self.schema["$defs"]["edgeType"]["enum"]))

    def test_date_time_format_is_checked(self):
        """Guard: the format checker really runs (else the date cases below prove nothing)."""
        doc = {"manifest": "cmdb/v1", "source": "s", "deployment": {"started_at": "yesterday"}}
        self.assertTrue(self.errors(doc))


# ------------------------------------------------------------------- valid manifests

class TestExamplesValidate(SchemaTestCase):
    def test_sample_estate(self):
        files = sorted(glob.glob(os.path.join(ROOT, "examples", "manifests", "*.json")))
        self.assertGreaterEqual(len(files), 8, "the sample estate is missing")
        for path in files:
            with self.subTest(path=os.path.relpath(path, ROOT)):
                self.assertValid(load_json(path), path)

    def test_sample_estate_uses_every_edge_type(self):
        used = set()
        for path in glob.glob(os.path.join(ROOT, "examples", "manifests", "*.json")):
            used |= {e["type"] for e in load_json(path).get("edges", [])}
        self.assertEqual({"depends_on", "runs_on", "connects_to", "part_of", "owned_by"}, used)

    def test_sample_estate_one_file_per_source(self):
        sources = [load_json(p)["source"]
                   for p in glob.glob(os.path.join(ROOT, "examples", "manifests", "*.json"))]
        self.assertEqual(len(sources), len(set(sources)))

    def test_every_other_manifest_in_the_repo(self):
        n = 0
        for path in repo_files(".json"):
            if os.path.samefile(path, SCHEMA_PATH):
                continue
            try:
                doc = load_json(path)
            except ValueError:
                continue  # not JSON we care about (fixtures of bad input, ...)
            if is_manifest(doc):
                n += 1
                with self.subTest(path=os.path.relpath(path, ROOT)):
                    self.assertValid(doc, path)
        self.assertGreater(n, 0)

    def test_manifests_in_markdown(self):
        for where, doc in markdown_manifests():
            with self.subTest(where=where):
                self.assertValid(doc, where)

    def test_edge_cases_that_are_valid(self):
        for name, doc in VALID_CASES.items():
            with self.subTest(case=name):
                self.assertValid(doc, name)


_BASE = {"manifest": "cmdb/v1", "source": "a"}
VALID_CASES = {
    "minimal": _BASE,
    "empty lists": dict(_BASE, nodes=[], edges=[]),
    "generation 0": dict(_BASE, generation=0),
    "ttl in hours": dict(_BASE, ttl="36h"),
    "ttl in days": dict(_BASE, ttl="7d"),
    "name with / and :": dict(_BASE, nodes=[{"ref": "network/10.0.0.0/8"},
                                            {"ref": "database/pg-main:5432"}]),
    "unicode name": dict(_BASE, nodes=[{"ref": "service/caf\u00e9-\u00fcber"}]),
    "255-character name": dict(_BASE, nodes=[{"ref": "host/" + "a" * 255}]),
    "32-character kind": dict(_BASE, nodes=[{"ref": "k" + "a" * 31 + "/x"}]),
    "128-character source": dict(_BASE, source="a" + "b" * 127),
    "source punctuation": dict(_BASE, source="0capistrano:billing-api_v2.prod"),
    "extensions anything": dict(_BASE, extensions={"x": [1, {"y": None}], "z": "w"}),
    "date-time with offset": dict(_BASE, deployment={
        "started_at": "2026-11-21T10:00:00.123+01:00", "finished_at": "2026-11-21T10:03:10Z"}),
    "edge with attributes": dict(_BASE, edges=[{"from": "service/a", "type": "depends_on",
                                                "to": "database/b", "attributes": {"port": 5432}}]),
    "10000 nodes": dict(_BASE, nodes=[{"ref": f"host/h{i}"} for i in range(10000)]),
}


# ------------------------------------------------------------------- invalid manifests

GOOD = {
    "manifest": "cmdb/v1",
    "source": "capistrano:billing-api",
    "generation": 42,
    "deployment": {"node": "service/billing-api", "version": "1.4.2", "status": "succeeded",
                   "started_at": "2026-11-21T10:00:00Z"},
    "nodes": [{"ref": "service/billing-api", "labels": {"tier": "1"}, "attributes": {"a": 1}}],
    "edges": [{"from": "service/billing-api", "type": "depends_on", "to": "database/pg-main"}],
}


def mutated(path, value, delete=False):
    """A deep copy of GOOD with the item at path (a tuple of keys/indexes) set or deleted."""
    doc = copy.deepcopy(GOOD)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


INVALID = [
    # (what, document, JSON path of the failing field)
    ("wrong manifest version", mutated(("manifest",), "cmdb/v2"), "manifest"),
    ("manifest missing", mutated(("manifest",), None, delete=True), ""),
    ("source missing", mutated(("source",), None, delete=True), ""),
    ("source reserved for hand edits", mutated(("source",), "api:alice"), "source"),
    ("unknown top-level field", mutated(("nodez",), []), ""),
    ("unknown node field", mutated(("nodes", 0, "health"), "down"), "nodes/0"),
    ("unknown edge field", mutated(("edges", 0, "weight"), 3), "edges/0"),
    ("unknown deployment field", mutated(("deployment", "host"), "x"), "deployment"),
    ("unknown edge type", mutated(("edges", 0, "type"), "calls"), "edges/0/type"),
    ("edge type wrong case", mutated(("edges", 0, "type"), "Depends_On"), "edges/0/type"),
    ("edge without to", mutated(("edges", 0, "to"), None, delete=True), "edges/0"),
    ("node without ref", mutated(("nodes", 0, "ref"), None, delete=True), "nodes/0"),
    ("ref without name", mutated(("nodes", 0, "ref"), "service/"), "nodes/0/ref"),
    ("ref without slash", mutated(("nodes", 0, "ref"), "service"), "nodes/0/ref"),
    ("ref upper-case kind", mutated(("nodes", 0, "ref"), "Service/x"), "nodes/0/ref"),
    ("ref kind starts with digit", mutated(("nodes", 0, "ref"), "1service/x"), "nodes/0/ref"),
    ("ref kind 33 characters", mutated(("nodes", 0, "ref"), "k" * 33 + "/x"), "nodes/0/ref"),
    ("ref name 256 characters", mutated(("nodes", 0, "ref"), "host/" + "a" * 256), "nodes/0/ref"),
    ("ref name with newline", mutated(("nodes", 0, "ref"), "service/a\nb"), "nodes/0/ref"),
    ("ref name ending in newline", mutated(("nodes", 0, "ref"), "service/a\n"), "nodes/0/ref"),
    ("ref name with NUL", mutated(("nodes", 0, "ref"), "service/a\u0000"), "nodes/0/ref"),
    ("ref name with C1 control", mutated(("nodes", 0, "ref"), "service/a\u0085b"), "nodes/0/ref"),
    ("ref name with DEL", mutated(("nodes", 0, "ref"), "service/a\u007fb"), "nodes/0/ref"),
    ("edge from bad ref", mutated(("edges", 0, "from"), "service"), "edges/0/from"),
    ("deployment node bad ref", mutated(("deployment", "node"), "billing"), "deployment/node"),
    ("source upper case", mutated(("source",), "Capistrano:x"), "source"),
    ("source empty", mutated(("source",), ""), "source"),
    ("source starts with dash", mutated(("source",), "-x"), "source"),
    ("source with space", mutated(("source",), "cap x"), "source"),
    ("source with slash", mutated(("source",), "cap/x"), "source"),
    ("source 129 characters", mutated(("source",), "a" * 129), "source"),
    ("source ending in newline", mutated(("source",), "cap\n"), "source"),
    ("generation negative", mutated(("generation",), -1), "generation"),
    ("generation fraction", mutated(("generation",), 1.5), "generation"),
    ("generation string", mutated(("generation",), "42"), "generation"),
    ("generation beyond int64", mutated(("generation",), 2 ** 63), "generation"),
    ("ttl without a unit", mutated(("ttl",), "36"), "ttl"),
    ("ttl zero", mutated(("ttl",), "0s"), "ttl"),
    ("ttl two units", mutated(("ttl",), "1h30m"), "ttl"),
    ("ttl a number", mutated(("ttl",), 3600), "ttl"),
    ("label value not a string", mutated(("nodes", 0, "labels", "tier"), 1), "nodes/0/labels/tier"),
    ("labels not an object", mutated(("nodes", 0, "labels"), ["a"]), "nodes/0/labels"),
    ("attributes not an object", mutated(("nodes", 0, "attributes"), "x"), "nodes/0/attributes"),
    ("NUL in an attribute", mutated(("nodes", 0, "attributes", "a"), ["x\u0000"]), "nodes/0/attributes/a/0"),
    ("extensions not an object", mutated(("extensions",), [1]), "extensions"),
    ("nodes not an array", mutated(("nodes",), {"ref": "service/x"}), "nodes"),
    ("started_at not a date", mutated(("deployment", "started_at"), "yesterday"), "deployment/started_at"),
    ("started_at with a space", mutated(("deployment", "started_at"), "2026-11-21 10:00:00Z"), "deployment/started_at"),
    ("started_at without offset", mutated(("deployment", "started_at"), "2026-11-21T10:00:00"), "deployment/started_at"),
    ("started_at month 13", mutated(("deployment", "started_at"), "2026-13-01T00:00:00Z"), "deployment/started_at"),
    ("version not a string", mutated(("deployment", "version"), 1.4), "deployment/version"),
    ("version 1025 characters", mutated(("deployment", "version"), "v" * 1025), "deployment/version"),
    ("too many nodes", mutated(("nodes",), [{"ref": f"host/h{i}"} for i in range(10001)]), "nodes"),
    ("too many edges", mutated(("edges",), [{"from": "service/a", "type": "runs_on", "to": f"host/h{i}"}
                                            for i in range(10001)]), "edges"),
    ("not an object", [GOOD], ""),
]


class TestInvalidManifests(SchemaTestCase):
    def test_each_fails_at_the_right_field(self):
        for what, doc, path in INVALID:
            with self.subTest(case=what):
                errs = self.errors(doc)
                self.assertTrue(errs, f"{what}: accepted")
                paths = {"/".join(map(str, e.absolute_path)) for e in errs}
                self.assertIn(path, paths, f"{what}: errors at {sorted(paths)}")

    def test_the_base_document_is_valid(self):
        """Guard: each invalid case fails for its mutation, not for the base."""
        self.assertValid(GOOD, "GOOD")


# ------------------------------------------------------------------- what the tools send

class _Capture(http.server.BaseHTTPRequestHandler):
    """Accepts POST /v1/manifests, records the body, answers with a plausible report."""
    bodies = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).bodies.append((self.path, json.loads(body, object_pairs_hook=no_duplicate_keys)))
        out = json.dumps({"deployment_id": "00000000-0000-0000-0000-000000000000", "seq": 1,
                          "nodes": {"created": 1, "updated": 0, "unchanged": 0},
                          "edges": {"created": 1, "updated": 0, "removed": 0, "unchanged": 0},
                          "orphaned": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class TestToolsSendValidManifests(SchemaTestCase):
    def setUp(self):
        _Capture.bodies = []
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), _Capture)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.tmp = tempfile.mkdtemp(prefix="cmdb-schema-")
        self.env = dict(os.environ, CMDB_URL=f"http://127.0.0.1:{self.httpd.server_port}",
                        CMDB_TOKEN="test-token", TMPDIR=self.tmp)

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_tool(self, argv, cwd):
        p = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(0, p.returncode, f"{argv}: {p.stdout}\n{p.stderr}")
        self.assertEqual(1, len(_Capture.bodies), "expected exactly one POST")
        path, doc = _Capture.bodies[0]
        self.assertEqual("/v1/manifests", path)
        self.assertValid(doc, argv[0])
        return doc

    @unittest.skipUnless(shutil.which("fab"), "fab not installed (apt-get install fabric)")
    def test_fabric(self):
        doc = self.run_tool(["fab", "-r", os.path.join(ROOT, "examples", "fabric"), "deploy",
                             "--service", "payments", "--version", "1.4.2", "--revision", "abc123",
                             "--dep", "database/pg-payments:5432",
                             "--dep", "connects_to=load_balancer/egress-proxy.prod",
                             "--host", "vm/pay-01.prod", "--team", "payments",
                             "--system", "payments-platform", "--root", self.tmp], cwd=self.tmp)
        self.assertEqual("fabric:payments", doc["source"])

    @unittest.skipUnless(shutil.which("cap"), "cap not installed (apt-get install capistrano)")
    def test_capistrano(self):
        self.env.update(CAP_DEPLOY_TO=os.path.join(self.tmp, "deploy"), REVISION="abc123")
        doc = self.run_tool(["cap", "local", "deploy"], cwd=os.path.join(ROOT, "examples", "capistrano"))
        self.assertEqual("capistrano:storefront", doc["source"])


# ------------------------------------------------------------------- the server agrees

# Cases the schema rejects but cmdbd accepts, each with the reason that is acceptable:
# the schema may be stricter than the server (every schema-valid manifest is still
# accepted), never looser.
SCHEMA_STRICTER = {
    "started_at with a space": "RFC 3339 section 5.6 lets applications agree on a space "
                               "for the T; JSON Schema's date-time does not",
}


class TestServerAgrees(ServerTestCase):
    """The schema describes the server: what it accepts, cmdbd accepts (dry run)."""

    server_name = "schema_agrees"

    def dry_run(self, doc):
        # The largest case (10,000 nodes) is a few seconds on a quiet machine; a
        # generous timeout keeps a loaded one from failing it for slowness alone.
        return self.srv.post("/v1/manifests?dry_run=true", doc, timeout=120)

    def test_examples_accepted(self):
        for path in sorted(glob.glob(os.path.join(ROOT, "examples", "manifests", "*.json"))):
            with self.subTest(path=os.path.basename(path)):
                self.assertStatus(self.dry_run(load_json(path)), 200, path)

    def test_valid_cases_accepted(self):
        for name, doc in VALID_CASES.items():
            with self.subTest(case=name):
                self.assertStatus(self.dry_run(doc), 200, name)

    def test_invalid_cases_rejected(self):
        for what, doc, _ in INVALID:
            if what in SCHEMA_STRICTER:
                continue
            with self.subTest(case=what):
                self.assertError(self.dry_run(doc), (400, 413), what=what)


if __name__ == "__main__":
    unittest.main(verbosity=2)
