-- walk.sql — the PostgreSQL baseline of the dependents/dependencies rows of `make bench`.
--
-- Loaded by tests/bench/bench.sh into a database of its own (`walk`) with psql
-- -v dir=ESTATE_DIR: the final map of the estate (the generator's walk-*.tsv, the same
-- nodes and edges cmdbd holds after the next generation) in two tables shaped and
-- indexed like cmdbd's own nodes and edges, the roots the cmdbd rows query, and
-- walk_impact: every edge that carries impact turned cause → affected (depends_on,
-- runs_on, connects_to: the target's failure affects the source; part_of: the
-- component's affects the system), indexed both ways for index-only walks. Then
-- pgbench runs walk_dependents.sql / walk_dependencies.sql against it.
\set ON_ERROR_STOP 1

CREATE TABLE walk_nodes (
    id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL,
    name text NOT NULL,
    UNIQUE (kind, name)
);
CREATE TABLE walk_edges (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id uuid NOT NULL REFERENCES walk_nodes (id),
    type    text NOT NULL,
    to_id   uuid NOT NULL REFERENCES walk_nodes (id),
    UNIQUE (from_id, type, to_id)
);
CREATE INDEX walk_edges_to_idx ON walk_edges (to_id);

CREATE TEMP TABLE in_nodes (kind text, name text);
CREATE TEMP TABLE in_edges (f text, type text, t text);
CREATE TEMP TABLE in_roots (ref text);
\set nodes_file :dir '/walk-nodes.tsv'
\set edges_file :dir '/walk-edges.tsv'
\set dependents_file :dir '/walk-dependents.roots'
\set dependencies_file :dir '/walk-dependencies.roots'
COPY in_nodes FROM :'nodes_file';
COPY in_edges FROM :'edges_file';

INSERT INTO walk_nodes (kind, name) SELECT kind, name FROM in_nodes;
INSERT INTO walk_edges (from_id, type, to_id)
SELECT f.id, e.type, t.id
  FROM in_edges e
  JOIN walk_nodes f ON f.kind = split_part(e.f, '/', 1) AND f.name = substr(e.f, strpos(e.f, '/') + 1)
  JOIN walk_nodes t ON t.kind = split_part(e.t, '/', 1) AND t.name = substr(e.t, strpos(e.t, '/') + 1);

CREATE TABLE walk_impact AS
SELECT CASE WHEN type = 'part_of' THEN from_id ELSE to_id END AS cause,
       CASE WHEN type = 'part_of' THEN to_id ELSE from_id END AS affected,
       id AS edge_id
  FROM walk_edges
 WHERE type IN ('depends_on', 'runs_on', 'connects_to', 'part_of');
CREATE INDEX walk_impact_cause_idx ON walk_impact (cause) INCLUDE (affected, edge_id);
CREATE INDEX walk_impact_affected_idx ON walk_impact (affected) INCLUDE (cause, edge_id);

-- The roots, numbered 1..n for pgbench's random(1, n).
CREATE TABLE walk_roots (what text, i int, id uuid, PRIMARY KEY (what, i));
COPY in_roots FROM :'dependents_file';
INSERT INTO walk_roots
SELECT 'dependents', row_number() OVER (), n.id FROM in_roots r
  JOIN walk_nodes n ON n.kind || '/' || n.name = r.ref;
TRUNCATE in_roots;
COPY in_roots FROM :'dependencies_file';
INSERT INTO walk_roots
SELECT 'dependencies', row_number() OVER (), n.id FROM in_roots r
  JOIN walk_nodes n ON n.kind || '/' || n.name = r.ref;

-- The walks join small CTE results whose sizes the planner cannot know; left to itself
-- it joins the page with the whole result by depth before probing the edges (~10×
-- slower). Keep the joins in the order written.
ALTER DATABASE :"DBNAME" SET join_collapse_limit = 1;

VACUUM ANALYZE walk_nodes;
VACUUM ANALYZE walk_edges;
VACUUM ANALYZE walk_roots;
VACUUM ANALYZE walk_impact;
SELECT (SELECT count(*) FROM walk_nodes) AS nodes, (SELECT count(*) FROM walk_edges) AS edges,
       (SELECT count(*) FROM walk_roots) AS roots;
