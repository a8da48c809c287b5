#!/usr/bin/python3
"""cmdb2backstage.py — export the map as Backstage catalog entities (one YAML stream).

    cmdb2backstage.py [--url URL] [--token-file FILE] [--source SRC] > catalog-info.yaml

Reads every node (GET /v1/nodes, all pages) and its outgoing edges (GET
/v1/nodes/{kind}/{name}/edges?direction=out); with --source, only the nodes that source
asserts (their edges may still name others). Each node becomes one entity:

  service → Component    system → System    domain → Domain
  team → Group           person → User      anything else → Resource (spec.type: the
                                            attribute `type`, else the cmdb kind)

  owned_by → spec.owner; part_of → spec.system (to a System), spec.subcomponentOf (to a
  Component), spec.domain / spec.subdomainOf (to a Domain), spec.parent (Group to
  Group; spec.children is derived); depends_on, runs_on and connects_to → spec.dependsOn.

A node imported by backstage2cmdb.py carries its entity reference (attribute
`backstage_ref`) and gets it back. Any other node is named by Backstage's rules from its
ref (KIND/NAME → default/NAME, KIND/NS/NAME → NS/NAME); where that is not a valid
Backstage name (`database/pg-main:5432`) the name is made up (`pg-main-5432`) and the
annotation cmdbd.io/ref keeps the ref, which backstage2cmdb.py honours. A Component,
Resource, System or Domain with no owned_by edge gets the owner the owners query finds
(part_of, runs_on rules), marked with the annotation cmdbd.io/owner-rule, so Backstage
accepts it; backstage2cmdb.py does not turn such an owner back into an owned_by edge.

Refs are written in full (`group:default/team-a`). Warnings (an edge Backstage has no
field for, a second owner) go to stderr. Exit: 0 written, 1 cmdbd error, 2 usage.
Needs Python 3 and PyYAML (Debian: python3-yaml).
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backstage as bs  # noqa: E402

HTTP_TIMEOUT_S = 30
API_VERSION = "backstage.io/v1alpha1"
KIND_ORDER = ("Domain", "System", "Group", "User", "Component", "Resource")
OWNED = ("Component", "Resource", "System", "Domain")
NEEDS = ("depends_on", "runs_on", "connects_to")


class CmdbError(Exception):
    pass


class Cmdb:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def get(self, path):
        req = urllib.request.Request(self.url + path)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            raise CmdbError("GET %s: HTTP %d %s" % (path, e.code, e.read()[:300].decode(
                "utf-8", "replace"))) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CmdbError("cannot reach %s: %s" % (self.url, getattr(e, "reason", e))) from None

    @staticmethod
    def node_path(ref):
        kind, name = ref.split("/", 1)
        return "/v1/nodes/%s/%s" % (kind, urllib.parse.quote(name, safe=""))

    def nodes(self):
        out, cursor = [], None
        while True:
            q = {"limit": "1000"}
            if cursor:
                q["cursor"] = cursor
            page = self.get("/v1/nodes?" + urllib.parse.urlencode(q))
            out += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def edges_out(self, ref):
        return self.get(self.node_path(ref) + "/edges?direction=out")["edges"]

    def owners(self, ref):
        return self.get(self.node_path(ref) + "/owners")["owners"]


class Exporter:
    def __init__(self, cmdb, nodes, warn):
        self.cmdb, self.warn = cmdb, warn
        self.nodes = {n["ref"]: n for n in nodes}
        self.ident = {}       # cmdb ref → (Kind, namespace, name)
        taken = set()
        # Imported identities first, so a made-up name never takes theirs.
        for ref in sorted(self.nodes, key=lambda r: (self.imported(r) is None, r)):
            kind, ns, name = self.imported(ref) or self.derived(ref)
            if (kind, ns, name.lower()) in taken:
                base = bs.made_up_name(ref)  # with the kind: cache-pg-main
                name, i = base, 2
                while (kind, ns, name.lower()) in taken:
                    name, i = "%s-%d" % (base[:bs.MAX_LEN - 4], i), i + 1
            taken.add((kind, ns, name.lower()))
            self.ident[ref] = (kind, ns, name)

    def imported(self, ref):
        """The identity a node imported from Backstage carries, if valid."""
        br = (self.nodes[ref].get("attributes") or {}).get("backstage_ref")
        try:
            kind, ns, name = bs.parse_ref(br)
        except bs.RefError:
            return None
        if kind not in bs.KINDS or not bs.valid_name(name) or not bs.valid_namespace(ns):
            return None
        return bs.KINDS[kind], ns, name

    def derived(self, ref):
        ckind = ref.split("/", 1)[0]
        kind = bs.BACKSTAGE_KIND.get(ckind, "Resource")
        ns, name = bs.entity_of_cmdb_ref(ref) or (bs.DEFAULT_NAMESPACE,
                                                  bs.made_up_name(ref.split("/", 1)[1]))
        return kind, ns, name

    def ref_of(self, cmdb_ref):
        """The entity reference of a node (one not on the map: as derived from its ref)."""
        kind, ns, name = self.ident.get(cmdb_ref) or self.derived(cmdb_ref)
        return bs.ref_string(kind, ns, name)

    def kind_of(self, cmdb_ref):
        return (self.ident.get(cmdb_ref) or self.derived(cmdb_ref))[0]

    def entity(self, ref, edges, children):
        n = self.nodes[ref]
        a = n.get("attributes") or {}
        kind, ns, name = self.ident[ref]
        ckind = ref.split("/", 1)[0]
        meta = {"name": name}
        if ns != bs.DEFAULT_NAMESPACE:
            meta["namespace"] = ns
        for key in ("title", "description"):
            if isinstance(a.get(key), str) and a[key]:
                meta[key] = a[key]
        if n.get("labels"):
            meta["labels"] = dict(sorted(n["labels"].items()))
        annotations = {}
        if isinstance(a.get("chat"), str):
            annotations["slack.com/bot-notify"] = a["chat"]
        spec_type = a.get("type") if isinstance(a.get("type"), str) else None
        if kind == "Resource" and not spec_type:
            spec_type = ckind
        if bs.cmdb_ref(bs.cmdb_kind(kind.lower(), spec_type), ns, name) != ref:
            annotations[bs.REF_ANNOTATION] = ref
        if isinstance(a.get("tags"), list) and a["tags"]:
            meta["tags"] = a["tags"]
        if isinstance(a.get("oncall"), str):
            meta["links"] = [{"url": a["oncall"], "title": "On-call", "type": "oncall"}]

        spec = {}
        if kind == "Component":
            spec["type"] = spec_type or "service"
            spec["lifecycle"] = a.get("lifecycle") or "production"
        elif kind == "Resource":
            spec["type"] = spec_type
        elif kind == "Group":
            spec["type"] = spec_type or "team"
        elif spec_type:
            spec["type"] = spec_type
        if kind in ("Group", "User"):
            profile = {}
            if a.get("display_name"):
                profile["displayName"] = a["display_name"]
            if a.get("email"):
                profile["email"] = a["email"]
            if profile:
                spec["profile"] = profile

        owners = sorted(e["to"] for e in edges if e["type"] == "owned_by")
        if kind in OWNED:
            if not owners:
                found = self.cmdb.owners(ref)
                if found:
                    owners = [found[0]["ref"]]
                    annotations[bs.OWNER_RULE_ANNOTATION] = found[0].get("rule") or "derived"
                else:
                    self.warn("%s: no owner on the map; Backstage requires spec.owner" % ref)
            if owners:
                spec["owner"] = self.ref_of(owners[0])
            if len(owners) > 1:
                self.warn("%s: owned by %s; Backstage has one owner: %s kept"
                          % (ref, ", ".join(owners), owners[0]))
        elif owners:
            self.warn("%s: a %s has no owner field; owned_by %s dropped"
                      % (ref, kind, ", ".join(owners)))

        for e in sorted(edges, key=lambda e: e["to"]):
            if e["type"] != "part_of":
                continue
            field = self.part_of_field(kind, self.kind_of(e["to"]))
            if field is None or field in spec:
                self.warn("%s part_of %s: no Backstage field for it; dropped" % (ref, e["to"]))
                continue
            spec[field] = self.ref_of(e["to"])
        if kind == "Group":
            spec["children"] = sorted(self.ref_of(c) for c in children.get(ref, ()))
        needs = sorted({self.ref_of(e["to"]) for e in edges if e["type"] in NEEDS})
        if needs and kind in ("Component", "Resource"):
            spec["dependsOn"] = needs
        elif needs:
            self.warn("%s: a %s has no dependsOn; %d dependencies dropped" % (ref, kind, len(needs)))
        if kind == "User":
            spec["memberOf"] = [m for m in a.get("member_of") or [] if isinstance(m, str)]
        if annotations:
            meta["annotations"] = dict(sorted(annotations.items()))
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}

    @staticmethod
    def part_of_field(kind, target_kind):
        if kind in ("Component", "Resource") and target_kind == "System":
            return "system"
        if kind == "Component" and target_kind == "Component":
            return "subcomponentOf"
        if kind == "System" and target_kind == "Domain":
            return "domain"
        if kind == "Domain" and target_kind == "Domain":
            return "subdomainOf"
        if kind == "Group" and target_kind == "Group":
            return "parent"
        return None


def export(cmdb, source=None, warn=None):
    """The entities (list of dicts), sorted by kind then namespace and name."""
    warn = warn or (lambda msg: print("cmdb2backstage: warning: " + msg, file=sys.stderr))
    nodes = cmdb.nodes()
    if source:
        nodes = [n for n in nodes if source in (n.get("sources") or [])]
    ex = Exporter(cmdb, nodes, warn)
    edges = {ref: ex.cmdb.edges_out(ref) for ref in sorted(ex.nodes)}
    children = {}
    for ref, es in edges.items():
        for e in es:
            if (e["type"] == "part_of" and ex.kind_of(ref) == "Group"
                    and ex.kind_of(e["to"]) == "Group"):
                children.setdefault(e["to"], []).append(ref)
    out = [ex.entity(ref, edges[ref], children) for ref in ex.nodes]
    out.sort(key=lambda e: (KIND_ORDER.index(e["kind"]), e["metadata"].get("namespace", ""),
                            e["metadata"]["name"]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="cmdb2backstage.py",
                                description="the cmdb map → Backstage catalog entities (YAML)")
    p.add_argument("--url", default=os.environ.get("CMDB_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token-file", help="else $CMDB_TOKEN (a read token is enough)")
    p.add_argument("--source", help="only the nodes this manifest source asserts")
    a = p.parse_args(argv)
    token = os.environ.get("CMDB_TOKEN", "")
    if a.token_file:
        try:
            with open(a.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            p.error("cannot read the token: %s" % e)
    try:
        entities = export(Cmdb(a.url, token), a.source)
    except CmdbError as e:
        print("cmdb2backstage: " + str(e), file=sys.stderr)
        return 1
    yaml.safe_dump_all(entities, sys.stdout, sort_keys=False, allow_unicode=True,
                       default_flow_style=False, explicit_start=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
