-- walk_dependents.sql — pgbench script: "what depends on X" as WITH RECURSIVE, for the
-- roots cmdbd's dependents row queries (tables and roots: walk.sql). Same answer as
-- GET …/dependents with the default limit: each node impacted by X once, at its least
-- depth, with an edge that reached it from the level above, ordered by depth then ref;
-- the first 1000 and the count of all. walk_impact holds every impact-carrying edge
-- turned cause → affected, indexed both ways, so the walk is index-only probes; the
-- recursion keeps (node, depth) pairs (UNION drops repeats), the edge is found after.
-- pgbench sets :nroots; the depth cap only guards against cycles.
\set i random(1, :nroots)
WITH RECURSIVE w (id, depth) AS (
    SELECT r.id, 0 FROM walk_roots r WHERE r.what = 'dependents' AND r.i = :i
  UNION
    SELECT i.affected, w.depth + 1 FROM w JOIN walk_impact i ON i.cause = w.id
     WHERE w.depth < 64
), best AS (
    SELECT id, min(depth) AS depth FROM w GROUP BY id
), page AS (
    SELECT b.id, b.depth, n.kind || '/' || n.name AS ref, count(*) OVER () AS count
      FROM best b JOIN walk_nodes n ON n.id = b.id
     WHERE b.depth > 0
     ORDER BY b.depth, ref
     LIMIT 1000
), via AS (
    SELECT DISTINCT ON (p.id) p.id, i.edge_id
      FROM page p
      JOIN walk_impact i ON i.affected = p.id
      JOIN best c ON c.id = i.cause AND c.depth = p.depth - 1
     ORDER BY p.id, i.edge_id
)
SELECT p.ref, p.depth, f.kind || '/' || f.name AS via_from, e.type,
       t.kind || '/' || t.name AS via_to, p.count
  FROM page p
  JOIN via v ON v.id = p.id
  JOIN walk_edges e ON e.id = v.edge_id
  JOIN walk_nodes f ON f.id = e.from_id
  JOIN walk_nodes t ON t.id = e.to_id
 ORDER BY p.depth, p.ref;
