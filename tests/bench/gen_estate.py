#!/usr/bin/python3
"""gen_estate.py — the deterministic estate of `make bench` (standard library only).

    gen_estate.py --size s|l --out DIR [--seed 7]

Writes into DIR:
  gen1.bodies      first apply: one deploy manifest per service (generation 1), and a
                   few platform manifests (terraform:<hub>), as records "<len>\\n<json>"
  gen2.bodies      next generation: every manifest again with generation 2, a new
                   deployment version and one service dependency swapped
  catalog.bodies   a Backstage-like catalog fed per deploy: one small manifest per
                   component (source backstage:<component>), for an empty map
  catalog-bulk.bodies  the same catalog as one manifest (the per-manifest cost baseline)
  get-nodes.paths  GET /v1/nodes/{kind}/{name} for every node, shuffled
  get-owners.paths GET …/owners for every node, shuffled
  dependents.paths, dependencies.paths
                   the biggest hubs' dependents / the widest services' dependencies
                   (default limit), cycled to --requests requests
  walk-nodes.tsv, walk-edges.tsv, walk-dependents.roots, walk-dependencies.roots
                   the final map (after gen2) and the same roots, for the WITH RECURSIVE
                   baseline in PostgreSQL
  meta.json        counts and parameters (printed too)

The shape of the estate and where its parameters come from (README.md beside this file
says the same for readers of the table):

  * One deploy manifest per service, source capistrano:<service>: the service (labels,
    attributes), its team (contacts), and ~35 edges, the endpoints created bare. With
    ~2 nodes + ~36 edges that is about the "~37 nodes+edges" of issue 7.
  * Service-to-service depends_on is a DAG of TIERS tiers (edge, aggregation, domain,
    core, back end: a service only calls services of deeper tiers, so chains of calls
    are at most TIERS - 1 hops, the short call depths the Alibaba traces show) with
    heavy-tailed fan-in: callee popularity is Zipf
    (weight 1/rank^ZIPF_S, ranks shuffled), and fan-out lognormal (median ~6, long
    tail). Microservice call-graph studies report exactly this shape: Luo et al.,
    "Characterizing Microservice Dependency and Performance: Alibaba Trace Analysis"
    (SoCC 2021) find power-law-like in-degree — a few services (and the stateful
    back ends behind them) are called by a large share of all others — while most
    services call a handful; Gan et al.'s DeathStarBench (ASPLOS 2019) services have
    fan-outs in the same single-digit-to-tens range.
  * Platform hubs nearly every service needs, each with a probability per service:
    dns, vault, consul, kafka, a service mesh, log shipping, a registry, and a few shared databases and caches
    (picked Zipf among themselves): the shared infrastructure of a typical platform
    team, and the hot rows issue 7 is about.
  * Each service runs as replicas (1 + geometric, mean ~5.5) in containers; containers
    run on shared hosts (~12 containers a host, a common Kubernetes node density);
    ~60% of services own a database and ~30% a cache, each on a data host.
  * Kafka topics (0.5 per service): a service depends on the topics it produces to or
    consumes from (Zipf, mean ~4.5 draws).
  * Teams own ~8 services each (two-pizza teams owning a handful of services; Team
    Topologies' stream-aligned teams), systems group ~10 services and are owned by a
    team (asserted by every service in the system: a shared edge with many sources).
  * 20% of services sit behind one of 20 load balancers (connects_to).
  * The Backstage-like catalog follows Backstage's own benchmark catalog in ratio
    (2,190 entities, ~7,500 relations, i.e. ~6 relations per component): per component
    owned_by a group, part_of a system, depends_on ~2 resources and ~1.5 components,
    and consumes ~1.5 APIs.

Sizes: s = 1,200 manifests (~10k nodes, ~43k edges); l = 12,000 (~100k, ~430k). Hubs
stay the same set at both sizes, so at l they have ten times the dependents.
"""

import argparse
import bisect
import collections
import itertools
import json
import math
import os
import random

SIZES = {"s": 1200, "l": 12000}
ZIPF_S = 0.9               # callee / topic / shared-store popularity exponent
TIERS = 5                  # services call only services of deeper tiers
FANOUT_MU, FANOUT_SIGMA = 1.8, 0.8   # lognormal service fan-out: median e^1.8 ~ 6
REPLICA_P = 0.18           # replicas = 1 + geometric(p): mean 1 + (1-p)/p ~ 5.5
MAX_REPLICAS = 40
CONTAINERS_PER_HOST = 12
SERVICES_PER_TEAM = 8
SERVICES_PER_SYSTEM = 10
TOPICS_PER_SERVICE = 0.5
TOPIC_MEAN = 4.5
P_DATABASE, P_CACHE, P_LB = 0.6, 0.3, 0.2
N_LB = 20
PLATFORM = [  # (ref, probability that a service depends on it)
    ("service/dns", 0.95), ("service/vault", 0.80), ("service/consul", 0.60),
    ("queue/kafka-main", 0.50), ("service/otel-collector", 0.70),
    ("service/auth-gateway", 0.40), ("storage/s3-objects", 0.25),
    ("service/smtp-relay", 0.05), ("service/istiod", 0.60), ("service/fluent-bit", 0.70),
    ("service/feature-flags", 0.40), ("service/registry", 0.50),
]
SHARED_STORES = ["database/pg-shared-1", "database/pg-shared-2", "database/pg-shared-3",
                 "cache/redis-shared-1", "cache/redis-shared-2"]
P_SHARED_STORE = 0.7       # a service uses 1-2 shared stores with this probability
LANGS = ["go", "java", "python", "node", "ruby", "rust", "kotlin"]
IMPACT_BACK = {"depends_on", "runs_on", "connects_to"}   # source impacted by target
T0 = "2026-11-21T10:00:00Z"


class Zipf:
    """Weighted choice among items, weight 1/rank^s with ranks shuffled."""

    def __init__(self, items, rng, s=ZIPF_S):
        self.items = list(items)
        ranks = list(range(1, len(self.items) + 1))
        rng.shuffle(ranks)
        self.cum = list(itertools.accumulate(1.0 / r ** s for r in ranks))

    def pick(self, rng, lo=0):
        """One item with index >= lo (None when there is none)."""
        if lo >= len(self.items):
            return None
        base = self.cum[lo - 1] if lo else 0.0
        u = base + rng.random() * (self.cum[-1] - base)
        return self.items[min(bisect.bisect_left(self.cum, u), len(self.items) - 1)]


def geometric(rng, p):
    n = 0
    while rng.random() > p:
        n += 1
    return n


def poisson(rng, lam):
    """Knuth's method (small lam)."""
    limit, k, prod = math.exp(-lam), 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


class Estate:
    """The services of the estate and every edge each one's manifest asserts."""

    def __init__(self, n_services, rng):
        self.rng = rng
        self.n = n_services
        self.services = ["svc-%05d" % i for i in range(n_services)]
        self.teams = ["team-%04d" % i for i in range(max(1, n_services // SERVICES_PER_TEAM))]
        self.systems = ["sys-%04d" % i for i in range(max(1, n_services // SERVICES_PER_SYSTEM))]
        self.topics = ["topic-%05d" % i for i in range(int(n_services * TOPICS_PER_SERVICE))]
        self.callees = Zipf(range(n_services), rng)
        self.topic_pick = Zipf(self.topics, rng)
        self.store_pick = Zipf(SHARED_STORES, rng)
        self.system_owner = {s: rng.choice(self.teams) for s in self.systems}
        self.specs = [self.service_spec(i) for i in range(n_services)]
        n_containers = sum(len(s["containers"]) for s in self.specs)
        self.n_hosts = max(1, n_containers // CONTAINERS_PER_HOST)
        self.n_data_hosts = max(1, self.n_hosts // 8)
        for s in self.specs:
            s["hosts"] = [rng.randrange(self.n_hosts) for _ in s["containers"]]
            s["data_hosts"] = [rng.randrange(self.n_data_hosts) for _ in s["stores"]]

    def service_spec(self, i):
        rng, name = self.rng, self.services[i]
        fanout = int(round(math.exp(rng.gauss(FANOUT_MU, FANOUT_SIGMA))))
        deps = set()
        for _ in range(fanout * 2):
            if len(deps) >= fanout:
                break
            j = self.callees.pick(rng, self.next_tier(i))
            if j is not None:
                deps.add(j)
        platform = [ref for ref, p in PLATFORM if rng.random() < p]
        if rng.random() < P_SHARED_STORE:
            platform += sorted({self.store_pick.pick(rng) for _ in range(1 + (rng.random() < 0.4))})
        stores = []
        if rng.random() < P_DATABASE:
            stores.append("database/%s-db" % name)
        if rng.random() < P_CACHE:
            stores.append("cache/%s-redis" % name)
        replicas = min(MAX_REPLICAS, 1 + geometric(rng, REPLICA_P))
        return {
            "name": name,
            "team": self.teams[i // SERVICES_PER_TEAM % len(self.teams)],
            "system": self.systems[rng.randrange(len(self.systems))],
            "deps": sorted(deps),
            "platform": platform,
            "stores": stores,
            "topics": sorted({self.topic_pick.pick(rng) for _ in range(poisson(rng, TOPIC_MEAN))}),
            "containers": ["%s-%d" % (name, k) for k in range(replicas)],
            "lb": rng.randrange(N_LB) if rng.random() < P_LB else None,
            "lang": rng.choice(LANGS),
        }

    def next_tier(self, i):
        """Index of the first service in the tier after service i's (tier = i*TIERS//n)."""
        return -(-(i * TIERS // self.n + 1) * self.n // TIERS)

    def edges_of(self, s):
        """The edges service spec s asserts, as (from, type, to) refs."""
        svc = "service/" + s["name"]
        out = [(svc, "depends_on", "service/" + self.services[j]) for j in s["deps"]]
        out += [(svc, "depends_on", ref) for ref in s["platform"]]
        out += [(svc, "depends_on", "queue/" + t) for t in s["topics"]]
        for c, h in zip(s["containers"], s["hosts"]):
            out.append((svc, "runs_on", "container/" + c))
            out.append(("container/" + c, "runs_on", "host/node-%05d" % h))
        for st, h in zip(s["stores"], s["data_hosts"]):
            out.append((svc, "depends_on", st))
            out.append((st, "runs_on", "host/data-%04d" % h))
            out.append((st, "owned_by", "team/" + s["team"]))
        out.append((svc, "part_of", "system/" + s["system"]))
        out.append((svc, "owned_by", "team/" + s["team"]))
        out.append(("system/" + s["system"], "owned_by", "team/" + self.system_owner[s["system"]]))
        if s["lb"] is not None:
            out.append(("load_balancer/lb-%02d" % s["lb"], "connects_to", svc))
        return out

    def swap_one(self, i):
        """Gen 2: drop one service dependency and add another one (the last tier, which
        calls no services, adds or drops its smtp-relay dependency instead)."""
        s = dict(self.specs[i])
        deps = list(s["deps"])
        if deps:
            deps.remove(self.rng.choice(deps))
        for _ in range(20):
            j = self.callees.pick(self.rng, self.next_tier(i))
            if j is not None and j not in s["deps"]:
                deps.append(j)
                break
        if not deps and not s["deps"]:   # the last tier calls no services: toggle smtp
            smtp = "service/smtp-relay"
            s["platform"] = [p for p in s["platform"] if p != smtp] \
                if smtp in s["platform"] else s["platform"] + [smtp]
        s["deps"] = sorted(deps)
        return s


def team_node(team):
    return {"ref": "team/" + team,
            "attributes": {"email": team + "@corp.example.com", "chat": "#" + team,
                           "oncall": "https://pager.example.com/schedules/" + team}}


def service_manifest(est, s, gen):
    i = int(s["name"].split("-")[1])
    return {
        "manifest": "cmdb/v1",
        "source": "capistrano:" + s["name"],
        "generation": gen,
        "deployment": {"node": "service/" + s["name"], "version": "1.%d.%d" % (gen, i % 17),
                       "revision": "%07x" % ((i * 2654435761 + gen * 40503) % (1 << 28)),
                       "environment": "prod", "actor": "deploy-bot", "status": "succeeded",
                       "started_at": T0, "finished_at": T0},
        "nodes": [
            {"ref": "service/" + s["name"],
             "labels": {"env": "prod", "lang": s["lang"], "tier": str(1 + i * 4 // est.n)},
             "attributes": {"repo": "git@git.corp.example.com:%s.git" % s["name"],
                            "language": s["lang"], "port": 8000 + i % 1000,
                            "version": "1.%d.%d" % (gen, i % 17)}},
            team_node(s["team"]),
        ],
        "edges": [{"from": f, "type": t, "to": to} for f, t, to in est.edges_of(s)],
    }


def platform_manifests(est, gen):
    """terraform:<hub>: each hub, on its own hosts, owned by the platform team."""
    out = []
    for k, ref in enumerate([r for r, _ in PLATFORM] + SHARED_STORES):
        name = ref.split("/", 1)[1]
        edges = [{"from": ref, "type": "runs_on", "to": "host/infra-%s-%d" % (name, h)}
                 for h in range(3)]
        edges += [{"from": ref, "type": "owned_by", "to": "team/platform"},
                  {"from": ref, "type": "part_of", "to": "system/platform"}]
        if ref != "service/dns":
            edges.append({"from": ref, "type": "depends_on", "to": "service/dns"})
        out.append({"manifest": "cmdb/v1", "source": "terraform:" + name, "generation": gen,
                    "nodes": [{"ref": ref, "labels": {"tier": "0"},
                               "attributes": {"managed_by": "terraform", "rev": gen}},
                              team_node("platform")],
                    "edges": edges})
    return out


def catalog_manifests(n, rng):
    """A Backstage-like catalog for an empty map: one manifest per component."""
    groups = ["bs-group-%03d" % g for g in range(max(1, n // 20))]
    systems = ["bs-system-%03d" % g for g in range(max(1, n // 30))]
    resources = ["bs-resource-%04d" % r for r in range(max(1, n // 4))]
    apis = ["bs-api-%04d" % a for a in range(max(1, n // 3))]
    comps = ["bs-component-%05d" % c for c in range(n)]
    comp_pick, res_pick, api_pick = Zipf(range(n), rng), Zipf(resources, rng), Zipf(apis, rng)
    out = []
    for i, c in enumerate(comps):
        ref = "component/" + c
        deps = {("resource/" + res_pick.pick(rng)) for _ in range(poisson(rng, 2.0))}
        deps |= {"component/" + comps[j] for j in
                 (comp_pick.pick(rng, i + 1) for _ in range(poisson(rng, 1.5))) if j is not None}
        deps |= {("api/" + api_pick.pick(rng)) for _ in range(poisson(rng, 1.5))}
        edges = [{"from": ref, "type": "owned_by", "to": "group/" + rng.choice(groups)},
                 {"from": ref, "type": "part_of", "to": "system/" + rng.choice(systems)}]
        edges += [{"from": ref, "type": "depends_on", "to": d} for d in sorted(deps)]
        out.append({"manifest": "cmdb/v1", "source": "backstage:" + c, "generation": 1,
                    "nodes": [{"ref": ref, "labels": {"lifecycle": "production"},
                               "attributes": {"type": "service",
                                              "description": "Backstage component " + c}}],
                    "edges": edges})
    return out


def bulk_manifest(manifests):
    """All of the manifests' nodes and edges as one manifest of one source."""
    nodes, edges = {}, {}
    for m in manifests:
        nodes.update((n["ref"], n) for n in m["nodes"])
        edges.update(((e["from"], e["type"], e["to"]), e) for e in m["edges"])
    return {"manifest": "cmdb/v1", "source": "backstage:bulk", "generation": 1,
            "nodes": [nodes[k] for k in sorted(nodes)], "edges": [edges[k] for k in sorted(edges)]}


def write_bodies(path, manifests):
    with open(path, "wb") as f:
        for m in manifests:
            b = json.dumps(m, separators=(",", ":")).encode()
            f.write(b"%d\n" % len(b))
            f.write(b)


def final_map(manifests):
    """Nodes and edges of the map the manifests leave behind."""
    nodes, edges = set(), set()
    for m in manifests:
        nodes.update(n["ref"] for n in m["nodes"])
        for e in m["edges"]:
            edges.add((e["from"], e["type"], e["to"]))
            nodes.update((e["from"], e["to"]))
    return nodes, edges


def impact_adjacency(edges):
    """dependents: node -> nodes it impacts when it fails; dependencies: the reverse."""
    dependents, dependencies = collections.defaultdict(list), collections.defaultdict(list)
    for f, t, to in edges:
        if t in IMPACT_BACK:
            dependents[to].append(f)
            dependencies[f].append(to)
        elif t == "part_of":
            dependents[f].append(to)
            dependencies[to].append(f)
    return dependents, dependencies


def reach(adj, root):
    seen, frontier = {root}, [root]
    while frontier:
        nxt = []
        for n in frontier:
            for m in adj.get(n, ()):
                if m not in seen:
                    seen.add(m)
                    nxt.append(m)
        frontier = nxt
    return len(seen) - 1


def top_roots(adj, candidates, k):
    scored = sorted(((reach(adj, r), r) for r in candidates), key=lambda x: (-x[0], x[1]))
    return scored[:k]


def path_of(ref, suffix=""):
    kind, name = ref.split("/", 1)
    return "/v1/nodes/%s/%s%s" % (kind, name.replace("%", "%25").replace("/", "%2F")
                                  .replace(":", "%3A"), suffix)


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(x + "\n" for x in lines))


def write_walk(out, nodes, edges, dep_roots, need_roots):
    with open(os.path.join(out, "walk-nodes.tsv"), "w") as f:
        for ref in sorted(nodes):
            f.write("%s\t%s\n" % tuple(ref.split("/", 1)))
    with open(os.path.join(out, "walk-edges.tsv"), "w") as f:
        for e in sorted(edges):
            f.write("%s\t%s\t%s\n" % e)
    write_lines(os.path.join(out, "walk-dependents.roots"), [r for _, r in dep_roots])
    write_lines(os.path.join(out, "walk-dependencies.roots"), [r for _, r in need_roots])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="s")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--requests", type=int, default=400, help="per dependents/dependencies list")
    ap.add_argument("--roots", type=int, default=16)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)

    n_manifests = SIZES[a.size]
    n_platform = len(PLATFORM) + len(SHARED_STORES)
    est = Estate(n_manifests - n_platform, rng)
    gen1 = [service_manifest(est, s, 1) for s in est.specs] + platform_manifests(est, 1)
    gen2 = [service_manifest(est, est.swap_one(i), 2) for i in range(est.n)] + \
        platform_manifests(est, 2)
    # Posting order: shuffled (deploys do not arrive by service number), same for both.
    order = list(range(len(gen1)))
    rng.shuffle(order)
    write_bodies(os.path.join(a.out, "gen1.bodies"), [gen1[i] for i in order])
    write_bodies(os.path.join(a.out, "gen2.bodies"), [gen2[i] for i in order])
    catalog = catalog_manifests(SIZES["s"], random.Random(a.seed + 1))
    write_bodies(os.path.join(a.out, "catalog.bodies"), catalog)
    write_bodies(os.path.join(a.out, "catalog-bulk.bodies"), [bulk_manifest(catalog)])

    nodes, edges = final_map(gen2)
    g1_nodes, g1_edges = final_map(gen1)
    dependents, dependencies = impact_adjacency(edges)
    fan_in = sorted(nodes, key=lambda r: (-len(dependents.get(r, ())), r))
    dep_roots = top_roots(dependents, fan_in[:3 * a.roots], a.roots)
    widest = sorted(("service/" + s["name"] for s in est.specs[: max(a.roots * 4, est.n // 20)]),
                    key=lambda r: (-len(dependencies.get(r, ())), r))
    need_roots = top_roots(dependencies, widest[:3 * a.roots], a.roots)

    refs = sorted(nodes)
    rng.shuffle(refs)
    write_lines(os.path.join(a.out, "get-nodes.paths"), [path_of(r) for r in refs])
    write_lines(os.path.join(a.out, "get-owners.paths"), [path_of(r, "/owners") for r in refs])
    for name, roots, what in (("dependents", dep_roots, "/dependents"),
                              ("dependencies", need_roots, "/dependencies")):
        write_lines(os.path.join(a.out, name + ".paths"),
                    [path_of(roots[i % len(roots)][1], what) for i in range(a.requests)])
    write_walk(a.out, nodes, edges, dep_roots, need_roots)

    items = [len(m["nodes"]) + len(m["edges"]) for m in gen1]
    in_deg = sorted((len(dependents.get(r, ())) for r in refs), reverse=True)
    meta = {
        "size": a.size, "seed": a.seed, "manifests": len(gen1), "catalog_manifests": len(catalog),
        "nodes_gen1": len(g1_nodes), "edges_gen1": len(g1_edges),
        "nodes": len(nodes), "edges": len(edges),
        "items_per_manifest_mean": round(sum(items) / len(items), 1),
        "items_per_manifest_max": max(items),
        "catalog_nodes_edges": [len(x) for x in final_map(catalog)],
        "direct_dependents_top5": in_deg[:5],
        "direct_dependents_median": in_deg[len(in_deg) // 2],
        "dependents_roots": [{"ref": r, "dependents": n} for n, r in dep_roots],
        "dependencies_roots": [{"ref": r, "dependencies": n} for n, r in need_roots],
    }
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({k: v for k, v in meta.items() if not k.endswith("roots")}))


if __name__ == "__main__":
    main()
