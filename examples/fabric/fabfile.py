"""Fabric 2 deploy task that reports each deployment to cmdbd.

    export CMDB_URL=http://127.0.0.1:8080 CMDB_TOKEN=...
    fab -r examples/fabric deploy --service payments --version 1.4.2 \
        --dep database/pg-payments:5432 --dep connects_to=load_balancer/egress-proxy.prod \
        --host vm/pay-01.prod --team payments --system payments-platform

The "deploy" itself is a local release-directory switch (releases/<stamp>, a `current`
symlink, old releases pruned) under --root, so the example runs anywhere; `fab -R` (Fabric's
own dry-run) only echoes those commands. After the deploy succeeds the task sends the
service's manifest (source `fabric:<service>`) to $CMDB_URL/v1/manifests and prints the
apply report. Because a source's next manifest replaces what it asserted before, a later
deploy without one of the --dep flags removes that edge from the map.

Only Python's standard library is used to talk to cmdbd, so a deploy host needs nothing
beyond Fabric itself.
"""

import datetime
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request

from fabric import task
from invoke.exceptions import Exit

EDGE_TYPES = ("depends_on", "runs_on", "connects_to", "part_of", "owned_by")
KEEP_RELEASES = 5
HTTP_TIMEOUT_S = 30


# ---------------------------------------------------------------------------- helpers

def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_ref(value, default_kind):
    """'web-01' -> 'host/web-01'; a value that already has a kind is kept as is."""
    return value if "/" in value else f"{default_kind}/{value}"


def _parse_dep(spec):
    """'REF' -> ('depends_on', REF); 'TYPE=REF' -> (TYPE, REF) for the impact types.

    A ref's kind never contains '=', so 'service/a=b' (a name with '=') stays a ref.
    """
    head, sep, tail = spec.partition("=")
    if sep and head in EDGE_TYPES:
        if head in ("owned_by", "part_of"):
            raise Exit(f"cmdb: --dep {spec}: use --team / --system for {head}", code=2)
        return head, tail
    return "depends_on", spec


def _git_revision(repo):
    """Short HEAD of the git checkout at repo, or None when it is not one."""
    try:
        out = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _sh(run, cmd, dry):
    """Run one deploy step; a failing step stops the deploy (Fabric raises).

    Under `fab -R` Fabric itself echoes the command instead of running it.
    """
    if not dry:
        print(f"deploy: {cmd}")
    return run(cmd, hide=True)


# ---------------------------------------------------------------------------- deploy

def _release(run, dry, root, service, version, revision, stamp):
    """Lay out root/releases/<stamp>, switch root/current to it, keep the newest few."""
    base = os.path.join(root, service)
    release = os.path.join(base, "releases", stamp)
    q = shlex.quote
    _sh(run, f"mkdir -p {q(release)}", dry)
    _sh(run, f"printf '%s\\n' {q(version)} > {q(os.path.join(release, 'VERSION'))}", dry)
    _sh(run, f"printf '%s\\n' {q(revision or 'unknown')} > {q(os.path.join(release, 'REVISION'))}", dry)
    # Atomic switch: a new symlink renamed over the old one.
    _sh(run, f"ln -sfn {q(release)} {q(base + '/current.tmp')} && "
             f"mv -T {q(base + '/current.tmp')} {q(base + '/current')}", dry)
    _sh(run, f"cd {q(base + '/releases')} && ls -1 | sort | head -n -{KEEP_RELEASES} | xargs -r rm -rf --", dry)


# ---------------------------------------------------------------------------- manifest

def build_manifest(service, version, revision, environment, actor, hosts, deps, team,
                   system, started, finished, generation):
    """The manifest for one service, as a dict (schema/manifest-v1.schema.json)."""
    ref = f"service/{service}"
    attributes = {"version": version, "deployed_at": _rfc3339(finished), "deployed_with": "fabric"}
    if revision:
        attributes["revision"] = revision
    edges = [{"from": ref, "type": "runs_on", "to": _as_ref(h, "host")} for h in hosts]
    for spec in deps:
        etype, to = _parse_dep(spec)
        edges.append({"from": ref, "type": etype, "to": to})
    if system:
        edges.append({"from": ref, "type": "part_of", "to": _as_ref(system, "system")})
    if team:
        edges.append({"from": ref, "type": "owned_by", "to": _as_ref(team, "team")})
    deployment = {"node": ref, "version": version, "environment": environment,
                  "actor": actor, "status": "succeeded",
                  "started_at": _rfc3339(started), "finished_at": _rfc3339(finished)}
    if revision:
        deployment["revision"] = revision
    return {
        "manifest": "cmdb/v1",
        "source": f"fabric:{service}",
        "generation": generation,
        "deployment": deployment,
        "nodes": [{"ref": ref, "labels": {"env": environment}, "attributes": attributes}],
        "edges": edges,
    }


def post_manifest(url, token, manifest, plan=False):
    """POST the manifest; return the parsed report or raise Exit with the server's reason."""
    endpoint = url.rstrip("/") + "/v1/manifests" + ("?dry_run=true" if plan else "")
    body = json.dumps(manifest).encode("utf-8")
    req = urllib.request.Request(endpoint, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        # A retry of this very manifest (same source and generation) is answered
        # from the server's idempotency store instead of being applied twice.
        "Idempotency-Key": f"{manifest['source']}:{manifest['generation']}",
    })
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        raw = e.read().decode("utf-8", "replace")
        try:
            err = json.loads(raw)["error"]
            reason = f"{err.get('code')}: {err.get('message')}"
            if err.get("details") is not None:
                reason += f" (details: {json.dumps(err['details'])})"
        except (ValueError, KeyError, TypeError):
            reason = raw.strip()[:500] or e.reason
        raise Exit(f"cmdb: {endpoint} refused the manifest: HTTP {e.code} {reason}", code=1)
    except (urllib.error.URLError, OSError) as e:
        raise Exit(f"cmdb: cannot reach {endpoint}: {getattr(e, 'reason', e)}", code=1)


def _print_report(source, report, plan):
    n, e = report.get("nodes", {}), report.get("edges", {})
    verb = "would apply (dry run)" if plan else "applied"
    print(f"cmdb: {verb} {source}: deployment {report.get('deployment_id')} seq {report.get('seq')}")
    print("cmdb:   nodes created {created} updated {updated} unchanged {unchanged}".format(
        **{k: n.get(k, 0) for k in ("created", "updated", "unchanged")}))
    print("cmdb:   edges created {created} updated {updated} removed {removed} unchanged {unchanged}".format(
        **{k: e.get(k, 0) for k in ("created", "updated", "removed", "unchanged")}))
    if report.get("orphaned"):
        print("cmdb:   orphaned: " + ", ".join(report["orphaned"]))
    print(json.dumps(report, indent=2, sort_keys=True))


# ---------------------------------------------------------------------------- the task

@task(iterable=["dep", "host"], help={
    "service": "service name; the node is service/NAME and the source fabric:NAME",
    "version": "version being deployed",
    "dep": "a dependency REF (depends_on), or TYPE=REF for runs_on/connects_to; repeat",
    "host": "where it runs: a ref or a host name (-> host/NAME); repeat; default this machine",
    "team": "owning team (NAME or REF) -> owned_by",
    "system": "system it belongs to (NAME or REF) -> part_of",
    "revision": "VCS revision; default: git rev-parse HEAD of --repo",
    "repo": "checkout to read the revision from (default: current directory)",
    "environment": "environment name (default: $CMDB_ENVIRONMENT or prod)",
    "root": "directory the local releases go to (default: $TMPDIR/fabric-deploys)",
    "plan": "ask cmdbd for a dry run: print what would change, write nothing",
})
def deploy(c, service, version, dep=None, host=None, team="", system="", revision="",
           repo=".", environment="", root="", plan=False):
    """Deploy SERVICE locally, then report the deployment to cmdbd."""
    url = os.environ.get("CMDB_URL", "http://127.0.0.1:8080")
    token = os.environ.get("CMDB_TOKEN")
    if not token:
        raise Exit("cmdb: CMDB_TOKEN is not set (a write token for source fabric:"
                   f"{service})", code=2)
    environment = environment or os.environ.get("CMDB_ENVIRONMENT", "prod")
    root = root or os.path.join(os.environ.get("TMPDIR", "/tmp"), "fabric-deploys")
    hosts = host or [socket.getfqdn()]
    revision = revision or _git_revision(repo)
    actor = os.environ.get("USER") or os.environ.get("LOGNAME") or "fabric"

    # With -H, Fabric hands us a Connection; deploy steps still run here (c.local),
    # since this example deploys to a local directory. Without -H, c.run is local.
    run = c.local if hasattr(c, "local") else c.run
    # `fab -R` (dry run) deploys nothing, so the server is only asked for a plan.
    dry = bool(c.config.run.dry)
    plan = plan or dry
    started = _now()
    _release(run, dry, root, service, version, revision, started.strftime("%Y%m%d%H%M%S%f"))
    finished = _now()

    # Generation: microseconds since the epoch, so a later deploy always supersedes an
    # earlier one even if their manifests reach the server out of order.
    generation = time.time_ns() // 1000
    manifest = build_manifest(service, version, revision, environment, actor, hosts,
                              dep or [], team, system, started, finished, generation)
    report = post_manifest(url, token, manifest, plan=plan)
    _print_report(manifest["source"], report, plan)
