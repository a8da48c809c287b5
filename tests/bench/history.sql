-- tests/bench/history.sql — synthetic history for the as_of figure of `make bench`
-- (psql -v pairs=N): N pairs of change rows appended to the log, each pair leaving the
-- map as it was, so that the log still rebuilds exactly the stored map:
--   80%: a random node's health flipped (down <-> ok) and back (two node.updated rows,
--        whole images, as the API logs them; the version is not bumped);
--   20%: a random edge deleted and created again (edge.deleted + edge.created).
-- Written straight into `changes` in one statement (the API would take as long as the
-- ingest on a shared machine), numbered from change_seq like every writer, then
-- announced on cmdb_changes so the server applies them. Then the `at` of every change
-- row is spread evenly over the last 30 days (the estate was written in minutes), so
-- that "one day back" is a real point, 1/30 of the log ago.
BEGIN;
CREATE TEMP TABLE bench_ni AS
    SELECT row_number() OVER () AS i, n.kind || '/' || n.name AS ref, cmdb_node_json(n) AS img
      FROM nodes n;
CREATE TEMP TABLE bench_ei AS
    SELECT row_number() OVER () AS i, j AS img,
           cmdb_edge_ref(j->>'from', j->>'type', j->>'to') AS ref
      FROM (SELECT cmdb_edge_json(e.id) AS j FROM edges e) x;
WITH base AS (
    UPDATE change_seq SET last = last + 2 * :pairs RETURNING last - 2 * :pairs AS b
), p AS (
    SELECT g, random() < 0.8 OR NOT EXISTS (SELECT 1 FROM bench_ei) AS is_node,
           1 + floor(random() * (SELECT count(*) FROM bench_ni))::bigint AS ni,
           1 + floor(random() * (SELECT count(*) FROM bench_ei))::bigint AS ei
      FROM generate_series(1, :pairs) g
)
INSERT INTO changes (seq, actor, source, op, ref, before, after)
SELECT base.b + 2 * p.g - 1 + v.k, 'bench', 'api:bench', v.op, v.ref, v.before, v.after
  FROM base, p
  LEFT JOIN bench_ni n ON p.is_node AND n.i = p.ni
  LEFT JOIN bench_ei e ON NOT p.is_node AND e.i = p.ei
  CROSS JOIN LATERAL (
      SELECT n.img || jsonb_build_object('health',
                          CASE WHEN n.img->>'health' = 'down' THEN 'ok' ELSE 'down' END) AS flip
  ) f
  CROSS JOIN LATERAL (VALUES
      (0, CASE WHEN p.is_node THEN 'node.updated' ELSE 'edge.deleted' END,
       coalesce(n.ref, e.ref), coalesce(n.img, e.img), CASE WHEN p.is_node THEN f.flip END),
      (1, CASE WHEN p.is_node THEN 'node.updated' ELSE 'edge.created' END,
       coalesce(n.ref, e.ref), CASE WHEN p.is_node THEN f.flip END, coalesce(n.img, e.img))
  ) v(k, op, ref, before, after);
SELECT pg_notify('cmdb_changes', last::text) FROM change_seq;
COMMIT;
UPDATE changes SET at = now() - interval '30 days' * ((m - seq)::float8 / m)
  FROM (SELECT max(seq) AS m FROM changes) x;
VACUUM ANALYZE changes;
SELECT max(seq) FROM changes;
