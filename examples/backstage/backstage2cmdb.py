#!/usr/bin/python3
"""backstage2cmdb.py — turn Backstage catalog-info.yaml files into one cmdb/v1 manifest.

    backstage2cmdb.py [--source backstage:catalog] [--generation N] PATH… > manifest.json
    backstage2cmdb.py catalog/ | cmdb push -

PATH is a YAML file (any number of `---`-separated entities) or a directory, searched
recursively for *.yaml and *.yml. Location entities are followed: each relative file
target (`./components/*.yaml`, globs allowed) is read too; url targets are skipped
with a warning.

What becomes what (see README.md for the whole table):

  Component  → service/NAME        spec.type, spec.lifecycle kept as attributes
  Resource   → KIND/NAME           KIND by spec.type (database, cache, queue, storage, …;
                                   anything else: resource); spec.type kept as `type`
  System     → system/NAME         Domain → domain/NAME
  Group      → team/NAME           spec.profile.displayName/email → display_name/email
  User       → person/NAME         annotation slack.com/bot-notify → chat,
                                   a link of type oncall → oncall
  spec.owner → owned_by            spec.system, spec.domain, spec.subdomainOf,
  spec.dependsOn → depends_on      spec.subcomponentOf, Group spec.parent → part_of
  spec.dependencyOf → depends_on, Group spec.children → part_of, the other way round

Names: kind:default/NAME → KIND/NAME, kind:NS/NAME → KIND/NS/NAME; the annotation
cmdbd.io/ref overrides. References resolve case-insensitively to the entities read;
one to an entity not read becomes a bare node, its name in lower case (as Backstage
writes relation targets). API entities (and
providesApis/consumesApis) have no place on the map: they are skipped with a warning.

Errors (an entity Backstage would reject for its apiVersion, kind, name or namespace, a
reference with no kind where the field has no default, the same entity twice) are all listed on stderr, and the exit status is 1
with no manifest written. Warnings go to stderr and do not change the status.

Needs Python 3 and PyYAML (Debian: python3-yaml).
"""

import argparse
import glob
import json
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backstage as bs  # noqa: E402

OWNED = ("component", "resource", "system", "domain", "api")
SKIPPED_KINDS = ("api", "template")


class Catalog:
    """The entities read so far, keyed by (kind, namespace, name) lower-case."""

    def __init__(self):
        self.entities = {}   # key → (entity dict, where)
        self.errors = []
        self.warnings = []
        self.seen_files = set()

    # -- reading

    def read_path(self, path):
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith((".yaml", ".yml")):
                        self.read_file(os.path.normpath(os.path.join(root, f)))
        else:
            self.read_file(path)

    def read_file(self, path):
        real = os.path.realpath(path)
        if real in self.seen_files:
            return
        self.seen_files.add(real)
        try:
            with open(path, encoding="utf-8") as f:
                # BaseLoader: every scalar a string, as Backstage's schema has them
                # (YAML 1.1 would turn `on` or `1.10` into something else).
                docs = list(yaml.load_all(f, Loader=yaml.BaseLoader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            self.errors.append("%s: %s" % (path, e))
            return
        for i, doc in enumerate(docs, 1):
            if doc is None or doc == "":
                continue  # an empty document (a trailing ---)
            self.add(doc, "%s: document %d" % (path, i), path)

    def add(self, e, where, path):
        if not isinstance(e, dict):
            self.errors.append("%s: an entity must be a mapping" % where)
            return
        api, kind = e.get("apiVersion"), e.get("kind")
        meta = e.get("metadata")
        if not isinstance(api, str) or not api.startswith("backstage.io/"):
            self.errors.append("%s: apiVersion %r is not backstage.io/…" % (where, api))
            return
        if not isinstance(kind, str) or not bs.KIND_RE.match(kind):
            self.errors.append("%s: kind %r is missing or not letters and digits" % (where, kind))
            return
        if not isinstance(meta, dict):
            self.errors.append("%s: metadata is missing" % where)
            return
        name, ns = meta.get("name"), meta.get("namespace", bs.DEFAULT_NAMESPACE)
        if not bs.valid_name(name):
            self.errors.append("%s: metadata.name %r is not a valid entity name "
                               "([a-zA-Z0-9] joined by - _ ., at most 63)" % (where, name))
            return
        if not bs.valid_namespace(ns):
            self.errors.append("%s: metadata.namespace %r is not a valid namespace" % (where, ns))
            return
        k = kind.lower()
        where = "%s (%s)" % (where, bs.ref_string(k, ns, name))
        if not isinstance(e.get("spec", {}), dict):
            self.errors.append("%s: spec must be a mapping" % where)
            return
        for f in ("annotations", "labels"):
            if not isinstance(meta.get(f, {}), dict):
                self.errors.append("%s: metadata.%s must be a mapping" % (where, f))
                return
        override = (meta.get("annotations") or {}).get(bs.REF_ANNOTATION)
        if override is not None and not bs.valid_cmdb_ref(override):
            self.errors.append("%s: annotation %s %r is not a cmdb ref (kind/name)"
                               % (where, bs.REF_ANNOTATION, override))
            return
        if k == "location":
            self.follow(e, where, path)
            return
        if k in SKIPPED_KINDS or k not in bs.CMDB_KIND:
            self.warnings.append("%s: kind %s is not on the map; skipped" % (where, kind))
            return
        key = (k, ns.lower(), name.lower())
        if key in self.entities:
            self.errors.append("%s: the same entity as %s" % (where, self.entities[key][1]))
            return
        self.entities[key] = (e, where)

    def follow(self, e, where, path):
        spec = e.get("spec") or {}
        targets = list(spec.get("targets") or [])
        if spec.get("target"):
            targets.append(spec["target"])
        base = os.path.dirname(path)
        for t in targets:
            if not isinstance(t, str) or "://" in t or spec.get("type", "file") != "file":
                self.warnings.append("%s: target %r is not a local file; skipped" % (where, t))
                continue
            matches = sorted(glob.glob(os.path.normpath(os.path.join(base, t))))
            if not matches:
                self.warnings.append("%s: target %r matches no file" % (where, t))
            for m in matches:
                self.read_file(m)

    # -- converting

    def ref_to(self, ref, default_kind, ns, where, field):
        """The cmdb ref an entity reference names, or None (after an error or warning)."""
        try:
            kind, rns, name = bs.parse_ref(ref, default_kind, ns)
        except bs.RefError as err:
            self.errors.append("%s: %s: %s" % (where, field, err))
            return None
        hit = self.entities.get((kind, rns.lower(), name.lower()))
        if hit:
            return self.node_ref(kind, hit[0])
        if kind not in bs.CMDB_KIND or kind in SKIPPED_KINDS:
            self.warnings.append("%s: %s: %s is a %s, not on the map; skipped"
                                 % (where, field, ref, kind))
            return None
        self.warnings.append("%s: %s: %s is not in the catalog read; it becomes a bare node"
                             % (where, field, bs.ref_string(kind, rns, name)))
        return bs.cmdb_ref(bs.cmdb_kind(kind), rns.lower(), name.lower())

    @staticmethod
    def node_ref(kind, e):
        meta, spec = e["metadata"], e.get("spec") or {}
        override = (meta.get("annotations") or {}).get(bs.REF_ANNOTATION)
        if override:
            return override
        return bs.cmdb_ref(bs.cmdb_kind(kind, spec.get("type")),
                           meta.get("namespace", bs.DEFAULT_NAMESPACE), meta["name"])

    def manifest(self, source, generation=None):
        nodes, edges = [], set()
        for (kind, _, _), (e, where) in self.entities.items():
            meta, spec = e["metadata"], e.get("spec") or {}
            ns = meta.get("namespace", bs.DEFAULT_NAMESPACE)
            ref = self.node_ref(kind, e)
            problems = []
            nodes.append(node_of(kind, ref, meta, spec, ns, problems))
            self.errors += ["%s: %s" % (where, p) for p in problems]

            def link(field, default_kind, etype, many=False, reverse=False):
                vals = spec.get(field)
                if vals is None:
                    return
                if many != isinstance(vals, list):
                    self.errors.append("%s: spec.%s must be %s" % (
                        where, field, "a list of references" if many else "one reference"))
                    return
                for v in (vals if many else [vals]):
                    to = self.ref_to(v, default_kind, ns, where, "spec." + field)
                    if to:
                        edges.add((to, etype, ref) if reverse else (ref, etype, to))

            if kind in OWNED:
                if not spec.get("owner"):
                    self.warnings.append("%s: spec.owner is missing (Backstage requires it)"
                                         % where)
                # An owner cmdb2backstage.py derived (owners query) is not declared here.
                elif bs.OWNER_RULE_ANNOTATION not in (meta.get("annotations") or {}):
                    link("owner", "Group", "owned_by")
            if kind in ("component", "resource"):
                link("system", "System", "part_of")
                link("dependsOn", None, "depends_on", many=True)
                link("dependencyOf", None, "depends_on", many=True, reverse=True)
            if kind == "component":
                link("subcomponentOf", "Component", "part_of")
                for f in ("providesApis", "consumesApis"):
                    if spec.get(f):
                        self.warnings.append("%s: spec.%s: APIs are not on the map; skipped"
                                             % (where, f))
            if kind == "system":
                link("domain", "Domain", "part_of")
            if kind == "domain":
                link("subdomainOf", "Domain", "part_of")
            if kind == "group":
                link("parent", "Group", "part_of")
                link("children", "Group", "part_of", many=True, reverse=True)
        first = {}
        for (e, where), n in zip(self.entities.values(), nodes):
            if n["ref"] in first:
                self.errors.append("%s: is the node %s, as is %s" % (where, n["ref"], first[n["ref"]]))
            first.setdefault(n["ref"], where)
        m = {"manifest": "cmdb/v1", "source": source}
        if generation is not None:
            m["generation"] = generation
        m["nodes"] = sorted(nodes, key=lambda n: n["ref"])
        m["edges"] = [{"from": f, "type": t, "to": to} for f, t, to in sorted(edges)]
        return m


def node_of(kind, ref, meta, spec, ns, errors):
    """The manifest node of one entity: its attributes and labels. Problems are appended
    to errors."""
    a = {"backstage_ref": bs.ref_string(kind, ns, meta["name"])}
    for key, val in (("title", meta.get("title")), ("description", meta.get("description")),
                     ("type", spec.get("type")), ("lifecycle", spec.get("lifecycle"))):
        if isinstance(val, str) and val:
            a[key] = val
    if isinstance(meta.get("tags"), list) and meta["tags"]:
        a["tags"] = [t for t in meta["tags"] if isinstance(t, str)]
    profile = spec.get("profile") if isinstance(spec.get("profile"), dict) else {}
    if profile.get("displayName") or meta.get("title"):
        a["display_name"] = profile.get("displayName") or meta.get("title")
    if profile.get("email"):
        a["email"] = profile["email"]
    chat = (meta.get("annotations") or {}).get("slack.com/bot-notify")
    if chat:
        a["chat"] = chat
    for link in meta.get("links") or []:
        if isinstance(link, dict) and link.get("type") == "oncall" and link.get("url"):
            a["oncall"] = link["url"]
            break
    if kind == "user" and isinstance(spec.get("memberOf"), list):
        # Membership has no edge type on the map: kept as an attribute, for the export.
        a["member_of"] = []
        for g in spec["memberOf"]:
            try:
                a["member_of"].append(bs.ref_string(*bs.parse_ref(g, "Group", ns)))
            except bs.RefError as err:
                errors.append("spec.memberOf: %s" % err)
    node = {"ref": ref, "attributes": a}
    labels = meta.get("labels")
    if isinstance(labels, dict) and labels:
        node["labels"] = {str(k): str(v) for k, v in labels.items()}
    return node


def main(argv=None):
    p = argparse.ArgumentParser(prog="backstage2cmdb.py",
                                description="Backstage catalog-info.yaml → cmdb/v1 manifest")
    p.add_argument("paths", nargs="+", metavar="PATH", help="catalog file or directory")
    p.add_argument("--source", default="backstage:catalog", help="manifest source (default %(default)s)")
    p.add_argument("--generation", type=int, help="manifest generation (must grow per source)")
    a = p.parse_args(argv)

    cat = Catalog()
    for path in a.paths:
        if not os.path.exists(path):
            cat.errors.append("%s: no such file or directory" % path)
            continue
        cat.read_path(path)
    m = cat.manifest(a.source, a.generation)
    for w in cat.warnings:
        print("backstage2cmdb: warning: " + w, file=sys.stderr)
    if cat.errors:
        for err in cat.errors:
            print("backstage2cmdb: error: " + err, file=sys.stderr)
        print("backstage2cmdb: %d error(s); no manifest written" % len(cat.errors), file=sys.stderr)
        return 1
    json.dump(m, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
