#!/usr/bin/python3
"""The Backstage example (examples/backstage/): catalog-info.yaml → manifest → cmdbd →
catalog entities, against a real cmdbd.

- TestImport: backstage2cmdb.py on the example catalog (a Location with globbed
  targets, multi-document files, refs with and without kind and namespace, a second
  namespace, dependencyOf, Group children without parent, a case-different ref) gives
  the refs and edges Backstage's reference rules imply; bad catalogs are refused
  whole, each error named.
- TestRoundTrip: import → `cmdb push -` → cmdb2backstage.py → the same entities (kind,
  namespace, name, owner, system, dependsOn, …) modulo the documented normalisation
  (refs in full, lower case; dependencyOf as the other side's dependsOn; APIs and
  Locations not on the map), and importing the export gives the same manifest again.
- TestForeignNodes: nodes that did not come from Backstage (names like pg-main:5432,
  runs_on, no direct owner) export to valid entities whose cmdbd.io/ref annotation
  brings the same refs back on import.

The test's own normalisation of the input below reads the catalog with PyYAML and
applies Backstage's rules independently of examples/backstage/backstage.py.

Run: /usr/bin/python3 tests/e2e/test_backstage.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import REPO, ServerTestCase  # noqa: E402

try:
    import yaml
except ImportError:  # python3-yaml is in the test packages (cmdbd/dev/deps.sh)
    yaml = None

BS_DIR = os.path.join(REPO, "examples", "backstage")
CATALOG = os.path.join(BS_DIR, "example-catalog")
IMPORT = os.path.join(BS_DIR, "backstage2cmdb.py")
EXPORT = os.path.join(BS_DIR, "cmdb2backstage.py")
PYTHON = "/usr/bin/python3"

# Each field's default kind when a reference leaves it out (Backstage's processors).
DEFAULT_KIND = {"owner": "group", "system": "system", "domain": "domain",
                "subcomponentOf": "component", "subdomainOf": "domain", "parent": "group",
                "children": "group", "memberOf": "group"}
ON_MAP = ("component", "resource", "system", "domain", "group", "user")


def run(tool, *args, env=None, input=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([PYTHON, tool] + list(args), capture_output=True, text=True,
                          timeout=120, env=e, input=input)


def full_ref(ref, field, ns):
    """kind:namespace/name, lower case — Backstage's parseEntityRef with the field's
    default kind and the referring entity's namespace."""
    m = re.match(r"^(?:([^:/]+):)?(?:([^:/]+)/)?([^:/]+)$", ref)
    assert m, "bad ref in the fixture: %r" % ref
    kind = m.group(1) or DEFAULT_KIND[field]
    return ("%s:%s/%s" % (kind, m.group(2) or ns, m.group(3))).lower()


def load_entities(paths):
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            out += [d for d in yaml.safe_load_all(f) if d]
    return out


def catalog_files():
    out = []
    for root, _, files in os.walk(CATALOG):
        out += [os.path.join(root, f) for f in files if f.endswith(".yaml")]
    return sorted(out)


def normalise(entities):
    """{kind:ns/name: comparable fields} for the entities that belong on the map, with
    dependencyOf folded into the other side's dependsOn and children into parent."""
    out = {}
    for e in entities:
        kind = e["kind"].lower()
        if kind not in ON_MAP:
            continue
        meta, spec = e["metadata"], e.get("spec") or {}
        ns = meta.get("namespace", "default")
        key = "%s:%s/%s" % (kind, ns, meta["name"].lower())
        n = {"kind": e["kind"], "namespace": ns, "name": meta["name"]}
        for f in ("owner", "system", "domain", "subcomponentOf", "subdomainOf", "parent"):
            if spec.get(f):
                n[f] = full_ref(spec[f], f, ns)
        for f in ("type", "lifecycle"):
            if spec.get(f):
                n[f] = spec[f]
        for f in ("description", "title", "tags", "labels"):
            if meta.get(f):
                n[f] = meta[f]
        prof = spec.get("profile") or {}
        n["profile"] = {k: prof[k] for k in ("displayName", "email") if prof.get(k)}
        n["dependsOn"] = sorted(full_ref(r, None, ns) for r in spec.get("dependsOn") or []
                                if not r.lower().startswith("api:"))
        if kind == "group":
            n["children"] = sorted(full_ref(r, "children", ns) for r in spec.get("children") or [])
        if kind == "user":
            n["memberOf"] = sorted(full_ref(r, "memberOf", ns) for r in spec.get("memberOf") or [])
        n["_dependencyOf"] = [full_ref(r, None, ns) for r in spec.get("dependencyOf") or []]
        out[key] = n
    for key, n in out.items():
        for target in n.pop("_dependencyOf"):
            out[target]["dependsOn"] = sorted(set(out[target]["dependsOn"]) | {key})
    for key, n in out.items():
        if n.get("parent"):
            p = out[n["parent"]]
            p["children"] = sorted(set(p["children"]) | {key})
            # and a child named only by the parent's children gets its parent
    for key, n in out.items():
        for child in n.get("children", []):
            out[child].setdefault("parent", key)
    return out


@unittest.skipUnless(yaml, "PyYAML not installed (apt-get install python3-yaml)")
class TestImport(unittest.TestCase):
    def manifest(self, *paths):
        p = run(IMPORT, *paths)
        self.assertEqual(0, p.returncode, p.stderr)
        return json.loads(p.stdout), p.stderr

    def test_example_catalog(self):
        m, err = self.manifest(os.path.join(CATALOG, "all.yaml"))
        self.assertEqual("backstage:catalog", m["source"])
        refs = {n["ref"] for n in m["nodes"]}
        edges = {(e["from"], e["type"], e["to"]) for e in m["edges"]}
        # Every entity of the catalog but the API and the Location, once.
        self.assertEqual(len(m["nodes"]), len(refs))
        expected = normalise(load_entities(catalog_files()))
        self.assertEqual(len(expected), len(refs))
        for ref in ("service/artist-web", "database/artists-db", "cache/playback-cache",
                    "queue/playback-queue", "storage/wayback-archive-storage", "system/podcast",
                    "domain/playback", "team/team-a", "person/breanna.davison",
                    "service/payments/invoice-service", "team/payments/billing-team"):
            self.assertIn(ref, refs)
        for edge in [
                ("service/artist-web", "owned_by", "team/team-a"),
                ("service/artist-web", "part_of", "system/artist-engagement-portal"),
                ("service/artist-web", "depends_on", "database/artists-db"),
                # Component:Shuffle-API resolves to the entity shuffle-api
                ("service/playback-order", "depends_on", "service/shuffle-api"),
                ("service/playback-order", "owned_by", "person/breanna.davison"),
                # dependencyOf turns round
                ("service/shuffle-api", "depends_on", "cache/playback-cache"),
                ("service/payments/invoice-service", "depends_on", "queue/payments/ledger-queue"),
                # a ref without namespace stays in the entity's namespace ...
                ("system/payments/billing", "owned_by", "team/payments/billing-team"),
                ("service/payments/invoice-service", "depends_on", "database/payments/invoices-db"),
                # ... and default/ leaves it
                ("service/payments/invoice-service", "depends_on", "service/artist-lookup"),
                ("team/payments/billing-team", "part_of", "team/boxoffice"),
                # team-d is placed only by boxoffice's children
                ("team/team-d", "part_of", "team/boxoffice"),
                ("service/playback-lib", "part_of", "service/playback-order"),
                ("system/audio-playback", "part_of", "domain/playback")]:
            self.assertIn(edge, edges)
        self.assertEqual([], [r for r in refs if "artist-api" in r], "APIs are not on the map")
        self.assertIn("api:default/artist-api", err)
        a = {n["ref"]: n.get("attributes", {}) for n in m["nodes"]}["team/team-a"]
        self.assertEqual({"display_name": "Team A", "email": "team-a@acme.example.com",
                          "chat": "#team-a",
                          "oncall": "https://pager.acme.example.com/schedules/team-a"},
                         {k: a.get(k) for k in ("display_name", "email", "chat", "oncall")})

    def test_a_directory_is_the_same_as_the_location(self):
        by_dir, _ = self.manifest(CATALOG)
        by_loc, _ = self.manifest(os.path.join(CATALOG, "all.yaml"))
        self.assertEqual(by_loc, by_dir)

    def bad(self, text, *needles):
        d = tempfile.mkdtemp(prefix="cmdb-bs-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "catalog-info.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = run(IMPORT, path)
        self.assertEqual(1, p.returncode, p.stdout + p.stderr)
        self.assertEqual("", p.stdout, "no manifest on error")
        for n in needles:
            self.assertIn(n, p.stderr)

    def test_refused_catalogs(self):
        head = "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: %s\n"
        ok = "spec:\n  type: service\n  lifecycle: production\n  owner: team-a\n"
        # dependsOn has no default kind
        self.bad(head % "a" + ok + "  dependsOn: [b]\n",
                 "document 1 (component:default/a): spec.dependsOn", "names no kind")
        self.bad(head % "bad/name" + ok, "metadata.name 'bad/name'")
        self.bad(head % "a" + ok + "---\n" + head % "A" + ok, "document 2", "the same entity as")
        self.bad("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n", "apiVersion 'v1'")
        self.bad("kind: [\n", "catalog-info.yaml")
        ann = "  annotations:\n    cmdbd.io/ref: %s\n"
        self.bad(head % "a" + ann % "no-kind" + ok, "annotation cmdbd.io/ref 'no-kind'")
        # two entities that would be one node
        self.bad(head % "a" + ok + "---\n" + head % "b" + ann % "service/a" + ok,
                 "document 2 (component:default/b): is the node service/a, as is")
        self.bad(head % "a" + "  annotations: [x]\n" + ok, "metadata.annotations must be a mapping")
        self.bad(head % "a" + ok + "  dependsOn: component:b\n", "spec.dependsOn must be a list")

    def test_missing_owner_is_a_warning(self):
        """Backstage would refuse the entity; the map does not need an owner."""
        d = tempfile.mkdtemp(prefix="cmdb-bs-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "c.yaml"), "w") as f:
            f.write("apiVersion: backstage.io/v1alpha1\nkind: Resource\nmetadata:\n"
                    "  name: orphan-db\nspec:\n  type: database\n")
        m, err = self.manifest(d)
        self.assertEqual(["database/orphan-db"], [n["ref"] for n in m["nodes"]])
        self.assertEqual([], m["edges"])
        self.assertIn("(resource:default/orphan-db): spec.owner is missing", err)


class BackstageServerCase(ServerTestCase):
    def push(self, manifest_text):
        p = self.srv.cmdb("push", "-", input=manifest_text)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr + self.srv.log_tail(10))

    def export(self, *args):
        p = run(EXPORT, *args, env={"CMDB_URL": self.srv.url, "CMDB_TOKEN": self.srv.token("read")})
        self.assertEqual(0, p.returncode, p.stderr)
        return list(yaml.safe_load_all(p.stdout)), p.stderr

    def reimport(self, entities, source):
        d = tempfile.mkdtemp(prefix="cmdb-bs-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "exported.yaml")
        with open(path, "w") as f:
            yaml.safe_dump_all(entities, f, sort_keys=False)
        p = run(IMPORT, "--source", source, path)
        self.assertEqual(0, p.returncode, p.stderr)
        return json.loads(p.stdout)


@unittest.skipUnless(yaml, "PyYAML not installed (apt-get install python3-yaml)")
class TestRoundTrip(BackstageServerCase):
    server_name = "backstage"

    def test_catalog_to_map_to_catalog(self):
        p = run(IMPORT, CATALOG)
        self.assertEqual(0, p.returncode, p.stderr)
        first = json.loads(p.stdout)
        self.push(p.stdout)

        out, err = self.export()
        self.assertEqual("", err, "the example catalog exports without a warning")
        for e in out:
            self.assertEqual("backstage.io/v1alpha1", e["apiVersion"])
            ann = e["metadata"].get("annotations", {})
            self.assertEqual([], [a for a in ann if a.startswith("cmdbd.io/")],
                             "every name of the catalog maps back without help: %r" % e)
        want = normalise(load_entities(catalog_files()))
        got = normalise(out)
        self.assertEqual(sorted(want), sorted(got))
        for key in want:
            self.assertEqual(want[key], got[key], key)

        # Importing the export gives the manifest we started from.
        again = self.reimport(out, "backstage:catalog")
        self.assertEqual(sorted(first["nodes"], key=lambda n: n["ref"]),
                         sorted(again["nodes"], key=lambda n: n["ref"]))
        self.assertEqual(first["edges"], again["edges"])

        # Backstage's required fields are all there (catalog-model validation).
        for e in out:
            spec = e["spec"]
            req = {"Component": ("type", "lifecycle", "owner"), "Resource": ("type", "owner"),
                   "System": ("owner",), "Domain": ("owner",), "Group": ("type", "children"),
                   "User": ("memberOf",)}[e["kind"]]
            for f in req:
                self.assertIn(f, spec, e)


FOREIGN = {
    "manifest": "cmdb/v1", "source": "test:foreign",
    "nodes": [
        {"ref": "team/web", "attributes": {"email": "web@shop.example.com", "chat": "#web"}},
        {"ref": "system/shop"},
        {"ref": "service/checkout", "labels": {"tier": "1"}},
        {"ref": "database/pg-main:5432"},
        {"ref": "cache/pg-main-5432"},
        {"ref": "vm/app-01.prod"},
        {"ref": "host/hv-01.prod"},
        {"ref": "network/10.20.0.0/16"},
    ],
    "edges": [
        {"from": "system/shop", "type": "owned_by", "to": "team/web"},
        {"from": "service/checkout", "type": "part_of", "to": "system/shop"},
        {"from": "service/checkout", "type": "depends_on", "to": "database/pg-main:5432"},
        {"from": "service/checkout", "type": "runs_on", "to": "vm/app-01.prod"},
        {"from": "service/checkout", "type": "connects_to", "to": "cache/pg-main-5432"},
        {"from": "vm/app-01.prod", "type": "runs_on", "to": "host/hv-01.prod"},
        {"from": "host/hv-01.prod", "type": "depends_on", "to": "network/10.20.0.0/16"},
    ],
}


@unittest.skipUnless(yaml, "PyYAML not installed (apt-get install python3-yaml)")
class TestForeignNodes(BackstageServerCase):
    server_name = "backstage_foreign"

    def test_map_to_catalog_to_map(self):
        self.push(json.dumps(FOREIGN))
        out, err = self.export("--source", "test:foreign")
        by_name = {(e["kind"], e["metadata"]["name"]): e for e in out}
        self.assertEqual(len(FOREIGN["nodes"]), len(out), out)
        # A name Backstage would refuse is made up, and the ref kept in an annotation;
        # the collision with cache/pg-main-5432 is resolved with the kind.
        db = by_name[("Resource", "database-pg-main-5432")]
        self.assertEqual("database/pg-main:5432", db["metadata"]["annotations"]["cmdbd.io/ref"])
        self.assertEqual("database", db["spec"]["type"])
        cache = by_name[("Resource", "pg-main-5432")]
        self.assertNotIn("annotations", cache["metadata"])
        for kind, name in by_name:
            self.assertRegex(name, r"^[a-zA-Z0-9]+(?:[-_.][a-zA-Z0-9]+)*$")
        # No direct owner: the owners query's answer, marked as derived.
        co = by_name[("Component", "checkout")]
        self.assertEqual("group:default/web", co["spec"]["owner"])
        self.assertEqual("part_of", co["metadata"]["annotations"]["cmdbd.io/owner-rule"])
        self.assertEqual("system:default/shop", co["spec"]["system"])
        self.assertEqual(["resource:default/app-01.prod", "resource:default/database-pg-main-5432",
                          "resource:default/pg-main-5432"], co["spec"]["dependsOn"])
        self.assertEqual({"tier": "1"}, co["metadata"]["labels"])
        web = by_name[("Group", "web")]
        self.assertEqual({"email": "web@shop.example.com"}, web["spec"]["profile"])
        self.assertEqual("#web", web["metadata"]["annotations"]["slack.com/bot-notify"])
        self.assertIn("no owner on the map", err)  # the network has none at all

        # Back to a manifest: the same refs; runs_on/connects_to come back as
        # depends_on; derived owners do not become owned_by edges.
        m = self.reimport(out, "test:again")
        self.assertEqual(sorted(n["ref"] for n in FOREIGN["nodes"]),
                         sorted(n["ref"] for n in m["nodes"]))
        want = sorted((e["from"], "depends_on" if e["type"] in ("runs_on", "connects_to")
                       else e["type"], e["to"]) for e in FOREIGN["edges"])
        self.assertEqual(want, sorted((e["from"], e["type"], e["to"]) for e in m["edges"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
