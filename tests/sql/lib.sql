-- lib.sql: assertion helpers for the SQL tests (schema cmdb_test, loaded by run.sh
-- after the migrations). A failed assertion RAISEs, which stops psql (ON_ERROR_STOP)
-- and fails the test file.

DROP SCHEMA IF EXISTS cmdb_test CASCADE;
CREATE SCHEMA cmdb_test;

-- Fail with msg unless cond is true.
CREATE FUNCTION cmdb_test.ok(cond boolean, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cond IS NOT TRUE THEN
        RAISE EXCEPTION 'FAILED: %', msg;
    END IF;
END
$$;

-- Fail with msg unless got equals want (NULLs equal), showing both.
CREATE FUNCTION cmdb_test.eq(got anyelement, want anyelement, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'FAILED: %', msg USING DETAIL = format('got:  %s%swant: %s', got, E'\n', want);
    END IF;
END
$$;

-- Fail unless every node's and edge's `sources` column (a cache kept by the writers,
-- 0004) equals its node_sources / edge_sources rows, sorted in byte order. Checked after
-- every reply cmdb_test.status() looks at.
CREATE FUNCTION cmdb_test.sources_cached(msg text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    bad text;
BEGIN
    SELECT n.kind || '/' || n.name || ': ' || n.sources::text || ' <> ' || coalesce(a.s, '[]')::text
      INTO bad
      FROM nodes n
      LEFT JOIN (SELECT node_id, jsonb_agg(source ORDER BY source COLLATE "C") AS s
                   FROM node_sources GROUP BY node_id) a ON a.node_id = n.id
     WHERE n.sources <> coalesce(a.s, '[]')
     LIMIT 1;
    IF bad IS NULL THEN
        SELECT e.id || ': ' || e.sources::text || ' <> ' || coalesce(a.s, '[]')::text
          INTO bad
          FROM edges e
          LEFT JOIN (SELECT edge_id, jsonb_agg(source ORDER BY source COLLATE "C") AS s
                       FROM edge_sources GROUP BY edge_id) a ON a.edge_id = e.id
         WHERE e.sources <> coalesce(a.s, '[]')
         LIMIT 1;
    END IF;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'FAILED: % (sources column differs from its rows: %)', msg, bad;
    END IF;
END
$$;

-- Fail unless reply has the given status (and, for errors, the given code).
CREATE FUNCTION cmdb_test.status(reply jsonb, want int, msg text, code text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF (reply->>'status')::int IS DISTINCT FROM want
       OR (code IS NOT NULL AND reply #>> '{error,code}' IS DISTINCT FROM code) THEN
        RAISE EXCEPTION 'FAILED: % (want status % %)', msg, want, coalesce(code, '')
            USING DETAIL = 'reply: ' || reply::text;
    END IF;
    PERFORM cmdb_test.sources_cached(msg);
    RETURN reply;
END
$$;

-- Empty the map and its history so each test file starts from nothing.
CREATE FUNCTION cmdb_test.reset() RETURNS void
LANGUAGE sql AS $$
    TRUNCATE nodes, node_sources, edges, edge_sources, source_state, changes,
             deployments, idempotency CASCADE;
    UPDATE change_seq SET last = 0;
$$;

-- The change log as compact text rows 'seq op ref', in seq order, after a given seq.
CREATE FUNCTION cmdb_test.log_since(since bigint) RETURNS text[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(seq || ' ' || op || ' ' || ref ORDER BY seq), '{}')
      FROM changes WHERE seq > since
$$;

-- How many rows each table holds (for "left no trace" checks).
CREATE FUNCTION cmdb_test.footprint() RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'nodes', (SELECT count(*) FROM nodes),
        'node_sources', (SELECT count(*) FROM node_sources),
        'edges', (SELECT count(*) FROM edges),
        'edge_sources', (SELECT count(*) FROM edge_sources),
        'changes', (SELECT count(*) FROM changes),
        'deployments', (SELECT count(*) FROM deployments),
        'source_state', (SELECT count(*) FROM source_state),
        'idempotency', (SELECT count(*) FROM idempotency),
        'seq', (SELECT last FROM change_seq),
        'map', (SELECT coalesce(jsonb_agg(cmdb_node_json(n) ORDER BY n.kind, n.name), '[]')
                  FROM nodes n),
        'edge_map', (SELECT coalesce(jsonb_agg(cmdb_edge_json(e.id) ORDER BY e.id), '[]')
                       FROM edges e))
$$;
