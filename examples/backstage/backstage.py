"""backstage.py — what backstage2cmdb.py and cmdb2backstage.py share: Backstage's entity
reference rules and the mapping between Backstage entities and cmdb nodes.

Entity references (Backstage's catalog model): `[<kind>:][<namespace>/]<name>`. The kind
is case-insensitive; when a field's reference leaves it out, the field's default kind
applies (spec.owner → Group, spec.system → System, spec.domain → Domain,
spec.subcomponentOf → Component, spec.parent/children → Group, spec.memberOf → Group);
spec.dependsOn and spec.dependencyOf have no default, so their references must name the
kind. A reference without a namespace is in the namespace of the entity that makes it
(`default` unless metadata.namespace says otherwise), as Backstage's processors read it.

Names on the map: a Backstage entity kind:namespace/name becomes the cmdb ref
`<cmdb kind>/<name>` in the namespace `default` and `<cmdb kind>/<namespace>/<name>` in
any other (a Backstage name never contains `/`, so the mapping can be read back). The
annotation `cmdbd.io/ref` overrides it; cmdb2backstage.py writes it where a cmdb name is
not a valid Backstage name (`database/pg-main:5432`), so such a node keeps its ref both
ways.

Python 3 standard library only.
"""

import re

# Backstage's own limits (catalog-model validation): a kind is letters and digits; a
# namespace is lower-case DNS-label-like; a name is [a-zA-Z0-9] runs joined by - _ .
KIND_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]+(?:-+[a-z0-9]+)*$")
NAME_RE = re.compile(r"^[a-zA-Z0-9]+(?:[-_.][a-zA-Z0-9]+)*$")
MAX_LEN = 63
DEFAULT_NAMESPACE = "default"
REF_ANNOTATION = "cmdbd.io/ref"
OWNER_RULE_ANNOTATION = "cmdbd.io/owner-rule"   # spec.owner derived by the owners query

# Canonical spelling of the kinds this mapping knows (keys are lower-case).
KINDS = {k.lower(): k for k in ("Component", "Resource", "System", "Domain", "Group", "User",
                                "API", "Location", "Template")}

# Backstage kind → cmdb kind. Resource goes by spec.type (RESOURCE_KIND), else `resource`.
CMDB_KIND = {"component": "service", "system": "system", "domain": "domain",
             "group": "team", "user": "person", "resource": "resource"}

# Resource spec.type → cmdb kind. The spec.type itself is kept in the attribute `type`,
# so the export gives back the type as written.
RESOURCE_KIND = {
    "database": "database", "db": "database", "postgres": "database",
    "postgresql": "database", "mysql": "database", "mongodb": "database",
    "cache": "cache", "redis": "cache", "memcached": "cache",
    "queue": "queue", "topic": "queue", "kafka-topic": "queue", "sqs-queue": "queue",
    "rabbitmq": "queue",
    "storage": "storage", "bucket": "storage", "s3-bucket": "storage", "gcs-bucket": "storage",
    "load-balancer": "load_balancer", "load_balancer": "load_balancer",
    "network": "network", "vpc": "network", "subnet": "network",
    "host": "host", "server": "host", "vm": "vm", "virtual-machine": "vm",
    "container": "container",
}

# cmdb kind → Backstage kind for the export; any other kind is a Resource whose
# spec.type is the cmdb kind (unless the node's attribute `type` says otherwise).
BACKSTAGE_KIND = {"service": "Component", "system": "System", "domain": "Domain",
                  "team": "Group", "person": "User"}


class RefError(ValueError):
    """A malformed entity reference; the message says why."""


def parse_ref(ref, default_kind=None, default_namespace=DEFAULT_NAMESPACE):
    """(kind lower-case, namespace, name) of an entity reference, Backstage's rules.
    Raises RefError when the kind is missing and the field has no default, or a part is
    empty or malformed."""
    if not isinstance(ref, str) or not ref.strip():
        raise RefError("an entity reference must be a non-empty string, not %r" % (ref,))
    ref = ref.strip()
    kind, sep, rest = ref.partition(":")
    if not sep:
        kind, rest = None, ref
    namespace, sep, name = rest.partition("/")
    if not sep:
        namespace, name = None, rest
    kind = kind if kind is not None else default_kind
    if not kind:
        raise RefError("entity reference %r names no kind, and this field has no default "
                       "(write kind:name, e.g. component:%s)" % (ref, rest))
    if not KIND_RE.match(kind):
        raise RefError("entity reference %r: kind %r is not letters and digits" % (ref, kind))
    namespace = namespace if namespace is not None else default_namespace
    if not namespace or not name:
        raise RefError("entity reference %r has an empty namespace or name" % ref)
    if "/" in name or ":" in name:
        raise RefError("entity reference %r: the name %r contains / or :" % (ref, name))
    return kind.lower(), namespace, name


def ref_string(kind, namespace, name):
    """The full, canonical reference: kind:namespace/name, the kind lower-case."""
    return "%s:%s/%s" % (kind.lower(), namespace, name)


CMDB_REF_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}/[^\x00-\x1f\x7f]{1,255}$")


def valid_cmdb_ref(ref):
    """KIND/NAME as cmdbd accepts it (kind [a-z][a-z0-9_]{0,31}; name 1–255 bytes, no
    control characters)."""
    return (isinstance(ref, str) and bool(CMDB_REF_RE.match(ref))
            and len(ref.split("/", 1)[1].encode("utf-8")) <= 255)


def valid_name(name):
    return isinstance(name, str) and len(name) <= MAX_LEN and bool(NAME_RE.match(name))


def valid_namespace(ns):
    return isinstance(ns, str) and len(ns) <= MAX_LEN and bool(NAMESPACE_RE.match(ns))


def cmdb_kind(kind, spec_type=None):
    """The cmdb kind of a Backstage entity (kind lower-case) of the given spec.type."""
    if kind == "resource":
        return RESOURCE_KIND.get((spec_type or "").lower(), "resource")
    return CMDB_KIND.get(kind)


def cmdb_ref(ckind, namespace, name):
    """The cmdb ref of a Backstage entity whose cmdb kind is ckind."""
    if namespace == DEFAULT_NAMESPACE:
        return "%s/%s" % (ckind, name)
    return "%s/%s/%s" % (ckind, namespace, name)


def entity_of_cmdb_ref(ref):
    """(namespace, name) a cmdb ref maps back to, or None when its name is not a
    Backstage [namespace/]name (then the export makes one up and writes the annotation)."""
    _, _, rest = ref.partition("/")
    ns, sep, name = rest.partition("/")
    if not sep:
        ns, name = DEFAULT_NAMESPACE, rest
    elif ns == DEFAULT_NAMESPACE:
        return None  # default/x would read back as x
    if valid_namespace(ns) and valid_name(name):
        return ns, name
    return None


def made_up_name(text):
    """A valid Backstage name made of text (a cmdb name that is not one): every run of
    other characters becomes '-', cut to 63 ('pg-main:5432' → 'pg-main-5432')."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")[:MAX_LEN].strip("-")
    return name or "unnamed"
