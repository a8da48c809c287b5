-- 0005_vocabulary: the map's vocabulary in one place in SQL (issue 8).
--
-- Until now the edge types, the health states and the source-name pattern were spelled
-- as a CHECK on each column that holds them (0001, widened for hand edits in 0002), and
-- every function that needed a node's ref spelled kind || '/' || name. Here:
--
--   * Domains carry the rules once: cmdb_edge_type, cmdb_health, cmdb_source (a manifest
--     source) and cmdb_asserter (a manifest source, or 'api:<token name>' for hand
--     edits). The columns take them and their per-column CHECKs are dropped. The C side
--     spells the same vocabulary once too, in cmdbd/model.h.
--   * nodes.ref is a stored generated column, kind || '/' || name, in the "C" collation
--     (refs sort in byte order everywhere: lists, cursors, lock order). The functions
--     that built refs from the columns read it instead (CREATE OR REPLACE below, each
--     otherwise as 0002/0004 left it). Refs built from a function's parameters (a node
--     that may not exist: 404 messages, change-log refs of deletes) stay as they are.
--
-- What this costs on a populated database, all under the migration's one transaction:
--
--   * nodes is rewritten once (adding a stored generated column always rewrites), with
--     its indexes rebuilt; the health column's new type rides in the same ALTER TABLE,
--     and the old ref expression index is dropped before, not rebuilt.
--   * edges, node_sources, edge_sources and source_state are NOT rewritten. A column
--     whose type becomes a domain WITH a check is rewritten and its indexes rebuilt
--     (PostgreSQL 15: the table's relfilenode changes); one that becomes a domain
--     without one is a catalog change (text and the domain are binary-coercible, the
--     indexes are kept). So the domains are created bare, the columns retyped, and the
--     checks added last with ALTER DOMAIN, which validates each column with one read of
--     its table. tests/e2e/test_migrate_0005.py checks the relfilenodes.

-- ---------------------------------------------------------------------------------
-- The domains (their checks are added at the end, once the columns use them)
-- ---------------------------------------------------------------------------------

-- An edge's type (SPEC §1): the four impact types, then owned_by.
CREATE DOMAIN cmdb_edge_type AS text;
-- A node's health.
CREATE DOMAIN cmdb_health AS text;
-- A manifest source: [a-z0-9][a-z0-9_.:-]{0,127}.
CREATE DOMAIN cmdb_source AS text;
-- Who asserts a node or an edge: a manifest source, or 'api:<token name>' (the token
-- name pattern of tokens.name) for hand edits.
CREATE DOMAIN cmdb_asserter AS text;

-- ---------------------------------------------------------------------------------
-- The columns
-- ---------------------------------------------------------------------------------

DROP INDEX nodes_ref_idx;
ALTER TABLE nodes
    DROP CONSTRAINT nodes_health_check,
    ALTER COLUMN health TYPE cmdb_health,
    ADD COLUMN ref text COLLATE "C" NOT NULL GENERATED ALWAYS AS (kind || '/' || name) STORED;
-- Byte-order listing, prefix search (starts_with uses a "C" btree) and look-ups by ref.
-- Not UNIQUE: (kind, name) is, which makes ref unique, and a second unique index would
-- turn a race between two INSERT ... ON CONFLICT (kind, name) DO NOTHING into an error
-- (ON CONFLICT only absorbs conflicts on its arbiter index).
CREATE INDEX nodes_ref_idx ON nodes (ref);

ALTER TABLE edges
    DROP CONSTRAINT edges_type_check,
    ALTER COLUMN type TYPE cmdb_edge_type;

ALTER TABLE node_sources
    DROP CONSTRAINT node_sources_source_check,
    ALTER COLUMN source TYPE cmdb_asserter;
ALTER TABLE edge_sources
    DROP CONSTRAINT edge_sources_source_check,
    ALTER COLUMN source TYPE cmdb_asserter;

-- 'api:…' sources belong to hand edits; a manifest may not speak for them.
ALTER TABLE source_state
    DROP CONSTRAINT source_state_source_check,
    ALTER COLUMN source TYPE cmdb_source,
    ADD CONSTRAINT source_state_not_api CHECK (source NOT LIKE 'api:%');

-- The checks, each validated by one read of the tables using the domain.
ALTER DOMAIN cmdb_edge_type ADD CONSTRAINT cmdb_edge_type_check
    CHECK (VALUE IN ('depends_on', 'runs_on', 'connects_to', 'part_of', 'owned_by'));
ALTER DOMAIN cmdb_health ADD CONSTRAINT cmdb_health_check
    CHECK (VALUE IN ('ok', 'degraded', 'down', 'unknown'));
ALTER DOMAIN cmdb_source ADD CONSTRAINT cmdb_source_check
    CHECK (VALUE ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$');
ALTER DOMAIN cmdb_asserter ADD CONSTRAINT cmdb_asserter_check
    CHECK (VALUE ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'
           OR VALUE ~ '^api:[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$');

-- ---------------------------------------------------------------------------------
-- The functions that spelled a node's ref from its columns, reading nodes.ref
-- ---------------------------------------------------------------------------------

-- A node exactly as SPEC §2 shapes it: the change log's image (0004).
CREATE OR REPLACE FUNCTION cmdb_node_json(n nodes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', n.id,
        'ref', n.ref,
        'kind', n.kind,
        'name', n.name,
        'attributes', n.attributes,
        'labels', n.labels,
        'health', n.health,
        'health_reason', n.health_reason,
        'health_at', cmdb_ts(n.health_at),
        'orphan', n.orphan,
        'sources', n.sources,
        'version', n.version,
        'created_at', cmdb_ts(n.created_at),
        'updated_at', cmdb_ts(n.updated_at),
        'last_seen_at', cmdb_ts(n.last_seen_at))
$$;

-- An edge exactly as SPEC §2 shapes it (from/to are refs); NULL when it does not exist.
CREATE OR REPLACE FUNCTION cmdb_edge_json(edge_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'from', f.ref,
        'type', e.type,
        'to', t.ref,
        'attributes', e.attributes,
        'sources', e.sources,
        'created_at', cmdb_ts(e.created_at),
        'updated_at', cmdb_ts(e.updated_at))
      FROM edges e
      JOIN nodes f ON f.id = e.from_id
      JOIN nodes t ON t.id = e.to_id
     WHERE e.id = edge_id
$$;

-- Lock both endpoints FOR KEY SHARE in ref order and return their ids; either id is
-- NULL when that node does not exist (0002).
CREATE OR REPLACE FUNCTION cmdb_edge_endpoints(from_ref text, to_ref text,
                                    OUT from_id uuid, OUT to_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT n.id, n.ref
               FROM nodes n
              WHERE n.ref IN (from_ref, to_ref)
              ORDER BY n.ref
                FOR KEY SHARE
    LOOP
        IF r.ref = from_ref THEN from_id := r.id; END IF;
        IF r.ref = to_ref THEN to_id := r.id; END IF;
    END LOOP;
END
$$;

-- GET /v1/nodes: keyset pagination in ref byte order (0004).
CREATE OR REPLACE FUNCTION cmdb_node_list(filter jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    f      jsonb := coalesce(filter, '{}');
    lim    int := greatest(1, least(coalesce((f->>'limit')::int, 100), 1000));
    after  text;
    owner  uuid;
    conds  text[] := ARRAY['true'];
    rows   jsonb[];
    refs   text[];
    n      int;
BEGIN
    IF f ? 'cursor' AND f->>'cursor' IS NOT NULL THEN
        after := cmdb_cursor_decode(f->>'cursor');
        IF after IS NULL THEN
            RETURN cmdb_error(400, 'bad_request', 'cursor: is not a cursor this server issued',
                              jsonb_build_object('field', 'cursor'));
        END IF;
        conds := conds || 'n.ref > $1'::text;
    END IF;
    IF f->>'kind' IS NOT NULL THEN
        conds := conds || 'n.kind = $2'::text;
    END IF;
    IF f->'labels' IS NOT NULL THEN
        conds := conds || 'n.labels @> $3'::text;
    END IF;
    IF f->>'owner' IS NOT NULL THEN
        SELECT id INTO owner FROM nodes
         WHERE kind = cmdb_ref_kind(f->>'owner') AND name = cmdb_ref_name(f->>'owner');
        IF owner IS NULL THEN
            -- Nobody can be owned by a node that does not exist: an empty list.
            RETURN cmdb_reply(200, jsonb_build_object('items', '[]'::jsonb,
                                                      'next_cursor', NULL), NULL, NULL);
        END IF;
        conds := conds || ('EXISTS (SELECT 1 FROM edges e WHERE e.from_id = n.id'
                           ' AND e.type = ''owned_by'' AND e.to_id = $4)')::text;
    END IF;
    IF f->>'q' IS NOT NULL THEN
        conds := conds || '(starts_with(n.ref, $5) OR starts_with(n.name, $5))'::text;
    END IF;
    IF f->>'orphan' IS NOT NULL THEN
        conds := conds || 'n.orphan = $6'::text;
    END IF;
    IF f->>'health' IS NOT NULL THEN
        conds := conds || 'n.health = $7'::text;
    END IF;

    -- One row more than the page tells whether there is a next page.
    EXECUTE format('SELECT array_agg(cmdb_node_view(p.node) ORDER BY p.ref),'
                   '       array_agg(p.ref ORDER BY p.ref)'
                   '  FROM (SELECT n AS node, n.ref'
                   '          FROM nodes n WHERE %s'
                   '         ORDER BY n.ref'
                   '         LIMIT $8) p',
                   array_to_string(conds, ' AND '))
       INTO rows, refs
      USING after, f->>'kind', f->'labels', owner, f->>'q',
            (f->>'orphan')::boolean, f->>'health', lim + 1;
    n := coalesce(array_length(rows, 1), 0);
    RETURN cmdb_reply(200, jsonb_build_object(
        'items', coalesce(to_jsonb(rows[1:lim]), '[]'::jsonb),
        'next_cursor', CASE WHEN n > lim THEN to_jsonb(cmdb_cursor_encode(refs[lim])) END),
        NULL, NULL);
END
$$;

-- One manifest's writes (0004; see there for the two phases and the lock order).
CREATE OR REPLACE FUNCTION cmdb_manifest_apply(m jsonb, src text, p_actor text,
                                    OUT report jsonb, OUT ops text[], OUT refs text[],
                                    OUT befores jsonb[], OUT afters jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
    mn      cmdb_mnode[];
    me      cmdb_medge[];
    bad     text;
    maybe_n uuid[];           -- named existing nodes that may change visibly
    lost_n  uuid[];           -- nodes the source asserted before and no longer does
    maybe_e bigint[];         -- named existing edges that may change visibly
    gone_e  bigint[];         -- edges the source asserted before and no longer does
    upd_n   cmdb_mchange[];   -- named nodes that do change (before and after images)
    los_n   cmdb_mchange[];   -- lost nodes (before and after images)
    upd_e   cmdb_mchange[];
    gon_e   cmdb_mchange[];
    pre     cmdb_mrow[];      -- change rows of what we created, built before any lock
    orphaned jsonb;
BEGIN
    -- ==== Phase 1: parse, resolve, create; nothing shared is locked ================

    -- Declared nodes (a ref named twice merges in order) and the endpoints of edges
    -- that are not declared (bare), with the ids of those that exist.
    WITH decl AS (
        SELECT x.ref, cmdb_jsonb_merge(coalesce(x.attributes, '{}') ORDER BY x.o) AS attributes,
               cmdb_jsonb_merge(coalesce(x.labels, '{}') ORDER BY x.o) AS labels
          FROM ROWS FROM (jsonb_to_recordset(coalesce(m->'nodes', '[]'))
                          AS (ref text, attributes jsonb, labels jsonb))
               WITH ORDINALITY AS x(ref, attributes, labels, o)
         GROUP BY x.ref),
    ends AS (
        SELECT e->>'from' AS ref FROM jsonb_array_elements(coalesce(m->'edges', '[]')) e
        UNION
        SELECT e->>'to' FROM jsonb_array_elements(coalesce(m->'edges', '[]')) e),
    want AS (
        SELECT coalesce(d.ref, x.ref) AS ref, coalesce(d.attributes, '{}') AS attributes,
               coalesce(d.labels, '{}') AS labels
          FROM decl d FULL JOIN ends x ON x.ref = d.ref)
    SELECT array_agg(ROW(w.ref, cmdb_ref_kind(w.ref), cmdb_ref_name(w.ref), w.attributes,
                         w.labels, NULL, false)::cmdb_mnode ORDER BY w.ref COLLATE "C")
      INTO mn
      FROM want w;

    -- The nodes that exist, locked FOR KEY SHARE in ref order, their ids taken from the
    -- locking statement itself (a node deleted while we waited is simply not there, and
    -- is created below). No other manifest or edge writer conflicts with that lock (a
    -- hub is shared, not queued on); a hand delete waits until we commit.
    SELECT array_agg(ROW(w.ref, w.kind, w.name, w.attributes, w.labels, l.id, false)::cmdb_mnode
                     ORDER BY w.ref COLLATE "C")
      INTO mn
      FROM unnest(mn) w
      LEFT JOIN (SELECT n.id, n.kind, n.name FROM nodes n
                  WHERE (n.kind, n.name) IN (SELECT x.kind, x.name FROM unnest(mn) x)
                  ORDER BY n.ref
                    FOR KEY SHARE) l ON l.kind = w.kind AND l.name = w.name;

    SELECT array_agg(ROW(x.f, x.t, x.d, x.attributes, NULL, NULL, NULL, false)::cmdb_medge
                     ORDER BY x.f COLLATE "C", x.t COLLATE "C", x.d COLLATE "C")
      INTO me
      FROM (SELECT y.f, y.t, y.d, cmdb_jsonb_merge(coalesce(y.attributes, '{}') ORDER BY y.o) AS attributes
              FROM ROWS FROM (jsonb_to_recordset(coalesce(m->'edges', '[]'))
                              AS ("from" text, type text, "to" text, attributes jsonb))
                   WITH ORDINALITY AS y(f, t, d, attributes, o)
             GROUP BY y.f, y.t, y.d) x;

    SELECT cmdb_edge_ref(e.from_ref, e.type, e.to_ref) INTO bad
      FROM unnest(me) e WHERE e.from_ref = e.to_ref
     ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C" LIMIT 1;
    IF bad IS NOT NULL THEN
        PERFORM cmdb_raise_reply(cmdb_error(422, 'unprocessable',
            'edge ' || bad || ' would connect a node to itself',
            jsonb_build_object('edge', bad)));
    END IF;

    -- Create the missing nodes, in ref order, with what the manifest says. A node
    -- another writer is creating at the same moment makes us wait for its commit (the
    -- unique index) and is then taken as existing.
    IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
        WITH ins AS (
            INSERT INTO nodes (id, kind, name, attributes, labels, sources)
            SELECT gen_random_uuid(), w.kind, w.name, w.attributes, w.labels, jsonb_build_array(src)
              FROM unnest(mn) w WHERE w.id IS NULL ORDER BY w.ref COLLATE "C"
            ON CONFLICT (kind, name) DO NOTHING
            RETURNING id, kind, name)
        SELECT array_agg(ROW(w.ref, w.kind, w.name, w.attributes, w.labels,
                             coalesce(w.id, i.id), i.id IS NOT NULL)::cmdb_mnode
                         ORDER BY w.ref COLLATE "C")
          INTO mn
          FROM unnest(mn) w LEFT JOIN ins i ON i.kind = w.kind AND i.name = w.name;
        IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
            SELECT array_agg(ROW(w.ref, w.kind, w.name, w.attributes, w.labels,
                                 coalesce(w.id, l.id), w.created)::cmdb_mnode
                             ORDER BY w.ref COLLATE "C")
              INTO mn
              FROM unnest(mn) w
              LEFT JOIN (SELECT n.id, n.kind, n.name FROM nodes n
                          WHERE (n.kind, n.name) IN (SELECT x.kind, x.name FROM unnest(mn) x
                                                      WHERE x.id IS NULL)
                          ORDER BY n.ref
                            FOR KEY SHARE) l
                ON w.id IS NULL AND l.kind = w.kind AND l.name = w.name;
            IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
                -- Created and deleted again while we waited: rare; start over.
                RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent node changes, retry the manifest';
            END IF;
        END IF;
        INSERT INTO node_sources (node_id, source)
        SELECT w.id, src FROM unnest(mn) w WHERE w.created;
    END IF;

    -- Existing nodes that may change visibly: the merge changes their attributes or
    -- labels, they are orphans, or this source does not assert them yet. The rest are
    -- not written at all (their last_seen_at is derived from source_state).
    SELECT array_agg(n.id) INTO maybe_n
      FROM unnest(mn) w JOIN nodes n ON n.id = w.id
     WHERE NOT w.created
       AND (n.attributes || w.attributes <> n.attributes OR n.labels || w.labels <> n.labels
            OR n.orphan
            OR NOT EXISTS (SELECT 1 FROM node_sources s WHERE s.node_id = n.id AND s.source = src));
    -- Nodes the source asserted before and no longer does.
    SELECT array_agg(s.node_id) INTO lost_n
      FROM node_sources s LEFT JOIN unnest(mn) w ON w.id = s.node_id
     WHERE s.source = src AND w.id IS NULL;

    -- Edges: endpoints' ids, then the existing edges' ids.
    SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, f.id, t.id, x.id, false)::cmdb_medge
                     ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
      INTO me
      FROM unnest(me) e
      JOIN unnest(mn) f ON f.ref = e.from_ref
      JOIN unnest(mn) t ON t.ref = e.to_ref
      LEFT JOIN edges x ON x.from_id = f.id AND x.type = e.type AND x.to_id = t.id;

    IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
        WITH ins AS (
            INSERT INTO edges (from_id, type, to_id, attributes, sources)
            SELECT e.from_id, e.type, e.to_id, e.attributes, jsonb_build_array(src)
              FROM unnest(me) e WHERE e.id IS NULL
             ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C"
            ON CONFLICT (from_id, type, to_id) DO NOTHING
            RETURNING id, from_id, type, to_id)
        SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, e.from_id, e.to_id,
                             coalesce(e.id, i.id), i.id IS NOT NULL)::cmdb_medge
                         ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
          INTO me
          FROM unnest(me) e
          LEFT JOIN ins i ON i.from_id = e.from_id AND i.type = e.type AND i.to_id = e.to_id;
        IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
            -- Created by a concurrent writer after our look-up: adopt them, locked as
            -- above so that a hand delete cannot take them from under us.
            SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, e.from_id, e.to_id,
                                 coalesce(e.id, x.id), e.created)::cmdb_medge
                             ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
              INTO me
              FROM unnest(me) e
              LEFT JOIN (SELECT y.id, y.from_id, y.type, y.to_id FROM edges y
                          WHERE (y.from_id, y.type, y.to_id) IN
                                (SELECT z.from_id, z.type, z.to_id FROM unnest(me) z WHERE z.id IS NULL)
                          ORDER BY y.id
                            FOR KEY SHARE) x
                ON e.id IS NULL AND x.from_id = e.from_id AND x.type = e.type AND x.to_id = e.to_id;
            IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
                RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent edge changes, retry the manifest';
            END IF;
        END IF;
        INSERT INTO edge_sources (edge_id, source)
        SELECT e.id, src FROM unnest(me) e WHERE e.created;
    END IF;

    SELECT array_agg(x.id) INTO maybe_e
      FROM unnest(me) e JOIN edges x ON x.id = e.id
     WHERE NOT e.created
       AND (x.attributes || e.attributes <> x.attributes
            OR NOT EXISTS (SELECT 1 FROM edge_sources s WHERE s.edge_id = x.id AND s.source = src));
    SELECT array_agg(s.edge_id) INTO gone_e
      FROM edge_sources s LEFT JOIN unnest(me) e ON e.id = s.edge_id
     WHERE s.source = src AND e.id IS NULL;

    -- This source's own rows for the nodes it starts to assert: nobody else writes
    -- them (we hold the source's lock), so they go in before the locked section.
    INSERT INTO node_sources (node_id, source)
    SELECT n.id, src FROM nodes n
     WHERE n.id = ANY (maybe_n) AND NOT n.sources ? src
    ON CONFLICT DO NOTHING;

    -- The change rows of what this manifest created need no lock (the rows are ours
    -- until we commit): their JSON is built now, outside the locked section.
    SELECT array_agg(q.r) INTO pre
      FROM (SELECT ROW(1, w.ref, '', '', 'node.created', w.ref, NULL, cmdb_node_json(n))::cmdb_mrow AS r
              FROM unnest(mn) w JOIN nodes n ON n.id = w.id
             WHERE w.created
            UNION ALL
            SELECT ROW(2, e.from_ref, e.type, e.to_ref, 'edge.created',
                       cmdb_edge_ref(e.from_ref, e.type, e.to_ref), NULL,
                       cmdb_edge_image(x, e.from_ref, e.to_ref))::cmdb_mrow
              FROM unnest(me) e JOIN edges x ON x.id = e.id
             WHERE e.created) q;

    -- ==== Phase 2: lock what may change, re-check, write ==========================

    IF maybe_n IS NOT NULL OR lost_n IS NOT NULL THEN
        PERFORM 1 FROM nodes n
         WHERE n.id = ANY (coalesce(maybe_n, '{}') || coalesce(lost_n, '{}'))
         ORDER BY n.ref
           FOR NO KEY UPDATE;
    END IF;
    IF maybe_e IS NOT NULL OR gone_e IS NOT NULL THEN
        PERFORM 1 FROM edges e
         WHERE e.id = ANY (coalesce(maybe_e, '{}') || coalesce(gone_e, '{}'))
         ORDER BY e.id
           FOR UPDATE;
    END IF;

    -- Then this source's own row, in the order hand deletes take them too (node, its
    -- edges, the source_state rows they mark stale). From here on nothing of the
    -- manifest can go away before we commit (its nodes are locked, a hand delete of an
    -- edge this source asserts marks the source stale and waits for this row). What
    -- went away before, while we read, is seen missing here: then apply again from the
    -- start, so that every node and edge of the manifest exists when we commit.
    PERFORM 1 FROM source_state WHERE source = src FOR UPDATE;
    IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = w.id)) THEN
        RAISE SQLSTATE '40001' USING MESSAGE = 'a node was deleted concurrently, retry the manifest';
    END IF;
    -- An edge another source withdrew (and so removed) after we read it: it is new
    -- again, created now (its endpoints are locked) and logged as created.
    IF EXISTS (SELECT 1 FROM unnest(me) e WHERE NOT EXISTS (SELECT 1 FROM edges x WHERE x.id = e.id)) THEN
        WITH ins AS (
            INSERT INTO edges (from_id, type, to_id, attributes, sources)
            SELECT e.from_id, e.type, e.to_id, e.attributes, jsonb_build_array(src)
              FROM unnest(me) e
             WHERE NOT EXISTS (SELECT 1 FROM edges x WHERE x.id = e.id)
             ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C"
            ON CONFLICT (from_id, type, to_id) DO NOTHING
            RETURNING id, from_id, type, to_id)
        SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, e.from_id, e.to_id,
                             coalesce(i.id, e.id), e.created OR i.id IS NOT NULL)::cmdb_medge
                         ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
          INTO me
          FROM unnest(me) e
          LEFT JOIN ins i ON i.from_id = e.from_id AND i.type = e.type AND i.to_id = e.to_id;
        IF EXISTS (SELECT 1 FROM unnest(me) e WHERE NOT EXISTS (SELECT 1 FROM edges x WHERE x.id = e.id)) THEN
            RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent edge changes, retry the manifest';
        END IF;
        INSERT INTO edge_sources (edge_id, source)
        SELECT e.id, src FROM unnest(me) e
         WHERE e.created AND NOT EXISTS (SELECT 1 FROM edge_sources s WHERE s.edge_id = e.id);
        pre := pre || ARRAY(
            SELECT ROW(2, e.from_ref, e.type, e.to_ref, 'edge.created',
                       cmdb_edge_ref(e.from_ref, e.type, e.to_ref), NULL,
                       cmdb_edge_image(x, e.from_ref, e.to_ref))::cmdb_mrow
              FROM unnest(me) e JOIN edges x ON x.id = e.id
             WHERE e.created
               AND NOT EXISTS (SELECT 1 FROM unnest(pre) p
                                WHERE p.part = 2 AND p.k1 = e.from_ref AND p.k2 = e.type
                                  AND p.k3 = e.to_ref));
    END IF;

    -- Nodes named here: re-checked against their latest committed version (this
    -- statement's snapshot is newer than the locks), written, both images taken, in one
    -- statement (this is the section other writers of a hub wait for).
    IF maybe_n IS NOT NULL THEN
        WITH b AS (
            SELECT n.id, w.ref, w.attributes, w.labels, cmdb_node_json(n) AS before
              FROM unnest(mn) w JOIN nodes n ON n.id = w.id
             WHERE n.id = ANY (maybe_n)
               AND (n.attributes || w.attributes <> n.attributes OR n.labels || w.labels <> n.labels
                    OR n.orphan
                    OR NOT n.sources ? src)),    -- the row's list: its node_sources row is in
        u AS (
            UPDATE nodes n
               SET attributes = n.attributes || b.attributes,
                   labels = n.labels || b.labels,
                   sources = cmdb_sources_add(n.sources, src),
                   orphan = false,
                   version = n.version + 1,
                   updated_at = now(),
                   last_seen_at = now()
              FROM b
             WHERE n.id = b.id
            RETURNING b.id, b.ref, b.before, cmdb_node_json(n) AS after)
        SELECT array_agg(ROW(u.id, NULL, u.ref, u.before, false, u.after)::cmdb_mchange)
          INTO upd_n
          FROM u;
    END IF;

    -- Nodes no longer asserted: they lose the source; with none left, orphans.
    IF lost_n IS NOT NULL THEN
        WITH b AS (
            SELECT n.id, n.ref, cmdb_node_json(n) AS before
              FROM nodes n
             WHERE n.id = ANY (lost_n) AND n.sources ? src),
        u AS (
            UPDATE nodes n
               SET sources = n.sources - src,
                   orphan = n.sources - src = '[]'::jsonb,
                   version = n.version + 1,
                   updated_at = now()
              FROM b
             WHERE n.id = b.id
            RETURNING b.id, b.ref, b.before, cmdb_node_json(n) AS after)
        SELECT array_agg(ROW(u.id, NULL, u.ref, u.before, false, u.after)::cmdb_mchange)
          INTO los_n
          FROM u;
        DELETE FROM node_sources s WHERE s.source = src AND s.node_id = ANY (lost_n);
    END IF;

    -- Edges named here.
    IF maybe_e IS NOT NULL THEN
        SELECT array_agg(ROW(NULL, x.id, NULL, cmdb_edge_image(x, e.from_ref, e.to_ref), false, NULL)::cmdb_mchange)
          INTO upd_e
          FROM unnest(me) e JOIN edges x ON x.id = e.id
         WHERE x.id = ANY (maybe_e)
           AND (x.attributes || e.attributes <> x.attributes
                OR NOT EXISTS (SELECT 1 FROM edge_sources s
                                WHERE s.edge_id = x.id AND s.source = src));
        IF upd_e IS NOT NULL THEN
            INSERT INTO edge_sources (edge_id, source)
            SELECT u.edge_id, src FROM unnest(upd_e) u
            ON CONFLICT DO NOTHING;
            UPDATE edges x
               SET attributes = x.attributes || e.attributes,
                   sources = cmdb_sources_add(x.sources, src), updated_at = now()
              FROM unnest(upd_e) u, unnest(me) e
             WHERE x.id = u.edge_id AND e.id = u.edge_id;
        END IF;
    END IF;

    -- Edges no longer asserted: they lose the source; with none left, removed.
    IF gone_e IS NOT NULL THEN
        SELECT array_agg(ROW(NULL, s.edge_id, NULL, cmdb_edge_json(s.edge_id),
                             NOT EXISTS (SELECT 1 FROM edge_sources o
                                          WHERE o.edge_id = s.edge_id AND o.source <> src), NULL)::cmdb_mchange)
          INTO gon_e
          FROM edge_sources s
         WHERE s.source = src AND s.edge_id = ANY (gone_e);
        DELETE FROM edge_sources s WHERE s.source = src AND s.edge_id = ANY (gone_e);
        UPDATE edges x SET sources = x.sources - src, updated_at = now()
          FROM unnest(gon_e) g WHERE x.id = g.edge_id AND NOT g.deleted;
        DELETE FROM edges x USING unnest(gon_e) g WHERE x.id = g.edge_id AND g.deleted;
    END IF;

    -- ==== The change rows, their JSON built once, in the order they are numbered ====
    --   nodes created or updated (ref order), edges created or updated, edges removed
    --   or withdrawn (edge ref order), then nodes no longer asserted (ref order).
    WITH c AS (
        SELECT p.part, p.k1, p.k2, p.k3, p.op, p.ref, p.before, p.after
          FROM unnest(pre) p
        UNION ALL
        SELECT 1, u.ref, '', '', 'node.updated', u.ref, u.before, u.after
          FROM unnest(upd_n) u
        UNION ALL
        SELECT 2, u.before->>'from', u.before->>'type', u.before->>'to',
               'edge.updated', cmdb_edge_ref(u.before->>'from', u.before->>'type', u.before->>'to'),
               u.before, cmdb_edge_image(x, u.before->>'from', u.before->>'to')
          FROM unnest(upd_e) u JOIN edges x ON x.id = u.edge_id
        UNION ALL
        SELECT 3, g.before->>'from', g.before->>'type', g.before->>'to',
               CASE WHEN g.deleted THEN 'edge.deleted' ELSE 'edge.updated' END,
               cmdb_edge_ref(g.before->>'from', g.before->>'type', g.before->>'to'),
               g.before, CASE WHEN g.deleted THEN NULL ELSE cmdb_edge_json(g.edge_id) END
          FROM unnest(gon_e) g
        UNION ALL
        SELECT 4, l.ref, '', '', 'node.updated', l.ref, l.before, l.after
          FROM unnest(los_n) l)
    SELECT array_agg(c.op ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.ref ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.before ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.after ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C")
      INTO ops, refs, befores, afters
      FROM c;

    SELECT coalesce(jsonb_agg(l.ref ORDER BY l.ref COLLATE "C"), '[]') INTO orphaned
      FROM unnest(los_n) l
     WHERE (l.after->>'orphan')::boolean AND NOT (l.before->>'orphan')::boolean;

    -- The report. Node counts cover the nodes the manifest declares or touches; edge
    -- counts cover its edges, plus the ones removed from the map.
    report := jsonb_build_object(
        'nodes', jsonb_build_object(
            'created', (SELECT count(*) FROM unnest(mn) w WHERE w.created),
            'updated', coalesce(cardinality(upd_n), 0),
            'unchanged', (SELECT count(*) FROM unnest(mn) w WHERE NOT w.created)
                         - coalesce(cardinality(upd_n), 0)),
        'edges', jsonb_build_object(
            'created', (SELECT count(*) FROM unnest(me) e WHERE e.created),
            'updated', coalesce(cardinality(upd_e), 0),
            'removed', (SELECT count(*) FROM unnest(gon_e) g WHERE g.deleted),
            'unchanged', (SELECT count(*) FROM unnest(me) e WHERE NOT e.created)
                         - coalesce(cardinality(upd_e), 0)),
        'orphaned', orphaned);
END
$$;
