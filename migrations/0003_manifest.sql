-- 0003_manifest: applying manifests (SPEC §3) and listing deployments.
--
-- cmdb_apply_manifest() is the whole of POST /v1/manifests after the C side has checked
-- the manifest's syntax (required fields, refs, types, edge types, limits, unknown
-- fields). It is one transaction (the C side calls it in autocommit mode), set-wise
-- throughout so a 10,000-node, 10,000-edge manifest applies in seconds:
--
--   idempotency key -> per-source advisory lock -> fast no-op / generation check
--   -> cmdb_manifest_apply() (nodes, edges, replacement, orphaning, change rows)
--   -> cmdb_commit_changes() -> deployments row, source_state, idempotency row.
--
-- Locks: per key, then per source (advisory), then nodes in ref byte order, then edges
-- in id order -- the same order every writer uses (0002), so writers do not deadlock.
-- A dry run runs the very same code and then raises SQLSTATE 'CMDRY' carrying the
-- report, which rolls every write back: plan and apply cannot disagree.

-- Key-by-key merge of jsonb objects in aggregation order (later wins): used when a
-- manifest names the same node or edge twice.
CREATE AGGREGATE cmdb_jsonb_merge(jsonb) (
    SFUNC = jsonb_concat,
    STYPE = jsonb,
    INITCOND = '{}'
);

-- Raise a finished reply out of a nested block: SQLSTATE 'CMERR', the reply as DETAIL.
-- cmdb_apply_manifest() catches it, its subtransaction rolls back, and the reply is sent.
CREATE FUNCTION cmdb_raise_reply(reply jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE SQLSTATE 'CMERR' USING MESSAGE = reply #>> '{error,message}', DETAIL = reply::text;
END
$$;

-- The per-session scratch tables of an apply. Created once per connection (temporary,
-- ON COMMIT DELETE ROWS, so no catalog churn per manifest) and emptied on entry in case
-- one transaction applies twice. A rolled-back dry run drops them; they come back here.
CREATE FUNCTION cmdb_manifest_scratch() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('pg_temp.cmdb_m_nodes') IS NULL THEN
        -- Every node the manifest declares or its edges touch.
        CREATE TEMP TABLE cmdb_m_nodes (
            ref        text COLLATE "C" PRIMARY KEY,
            kind       text NOT NULL,
            name       text NOT NULL,
            attributes jsonb NOT NULL,      -- to merge in ('{}' for a bare endpoint)
            labels     jsonb NOT NULL,
            id         uuid,
            created    boolean NOT NULL DEFAULT false,
            changed    boolean NOT NULL DEFAULT false,
            before     jsonb
        ) ON COMMIT DELETE ROWS;
        -- Every edge the manifest declares.
        CREATE TEMP TABLE cmdb_m_edges (
            from_ref   text COLLATE "C" NOT NULL,
            type       text COLLATE "C" NOT NULL,
            to_ref     text COLLATE "C" NOT NULL,
            attributes jsonb NOT NULL,
            from_id    uuid,
            to_id      uuid,
            id         bigint,
            created    boolean NOT NULL DEFAULT false,
            changed    boolean NOT NULL DEFAULT false,
            before     jsonb,
            PRIMARY KEY (from_ref, type, to_ref)
        ) ON COMMIT DELETE ROWS;
        -- The replacement steps probe these by id (anti-joins against what the
        -- source asserted before): without an index that is a nested loop, O(n^2).
        CREATE INDEX ON cmdb_m_nodes (id);
        CREATE INDEX ON cmdb_m_edges (id);
        -- Edges / nodes the source asserted before and no longer does.
        CREATE TEMP TABLE cmdb_m_gone_edges (
            id      bigint PRIMARY KEY,
            before  jsonb NOT NULL,
            deleted boolean NOT NULL DEFAULT false
        ) ON COMMIT DELETE ROWS;
        CREATE TEMP TABLE cmdb_m_lost_nodes (
            id     uuid PRIMARY KEY,
            ref    text COLLATE "C" NOT NULL,
            before jsonb NOT NULL
        ) ON COMMIT DELETE ROWS;
    ELSE
        TRUNCATE cmdb_m_nodes, cmdb_m_edges, cmdb_m_gone_edges, cmdb_m_lost_nodes;
    END IF;
END
$$;

-- The apply proper: writes the map and its change rows (unnumbered) and returns the
-- report {"nodes":{created,updated,unchanged},"edges":{created,updated,removed,unchanged},
-- "orphaned":[refs]}. The caller holds the source's advisory lock and numbers the changes.
CREATE FUNCTION cmdb_manifest_apply(m jsonb, src text, p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    bad      text;
    nodes_r  jsonb;
    edges_r  jsonb;
    orphaned jsonb;
    removed  int;
BEGIN
    PERFORM cmdb_manifest_scratch();

    -- 1. Load. Declared nodes (a ref named twice merges in order), then the endpoints
    --    of edges that are not declared, as bare nodes; then the edges.
    INSERT INTO cmdb_m_nodes (ref, kind, name, attributes, labels)
    SELECT x.ref, cmdb_ref_kind(x.ref), cmdb_ref_name(x.ref),
           cmdb_jsonb_merge(coalesce(x.attributes, '{}') ORDER BY x.o),
           cmdb_jsonb_merge(coalesce(x.labels, '{}') ORDER BY x.o)
      FROM ROWS FROM (jsonb_to_recordset(coalesce(m->'nodes', '[]'))
                      AS (ref text, attributes jsonb, labels jsonb))
           WITH ORDINALITY AS x(ref, attributes, labels, o)
     GROUP BY x.ref;

    INSERT INTO cmdb_m_edges (from_ref, type, to_ref, attributes)
    SELECT x.from_ref, x.type, x.to_ref,
           cmdb_jsonb_merge(coalesce(x.attributes, '{}') ORDER BY x.o)
      FROM ROWS FROM (jsonb_to_recordset(coalesce(m->'edges', '[]'))
                      AS ("from" text, type text, "to" text, attributes jsonb))
           WITH ORDINALITY AS x(from_ref, type, to_ref, attributes, o)
     GROUP BY x.from_ref, x.type, x.to_ref;

    SELECT cmdb_edge_ref(from_ref, type, to_ref) INTO bad
      FROM cmdb_m_edges WHERE from_ref = to_ref
     ORDER BY from_ref, type LIMIT 1;
    IF bad IS NOT NULL THEN
        PERFORM cmdb_raise_reply(cmdb_error(422, 'unprocessable',
            'edge ' || bad || ' would connect a node to itself',
            jsonb_build_object('edge', bad)));
    END IF;

    INSERT INTO cmdb_m_nodes (ref, kind, name, attributes, labels)
    SELECT r, cmdb_ref_kind(r), cmdb_ref_name(r), '{}', '{}'
      FROM (SELECT from_ref AS r FROM cmdb_m_edges
            UNION SELECT to_ref FROM cmdb_m_edges) e
    ON CONFLICT (ref) DO NOTHING;

    IF (SELECT count(*) FROM cmdb_m_nodes) > 500 THEN
        ANALYZE cmdb_m_nodes, cmdb_m_edges;    -- temp tables have no statistics otherwise
    END IF;

    -- 2. Lock, in ref byte order, every existing node this apply may change: the ones
    --    named here and the ones the source asserted before. The ids are taken from
    --    the very statement that locks, so every node we use is one we hold.
    UPDATE cmdb_m_nodes mn SET id = l.id
      FROM (SELECT n.id, n.kind, n.name FROM nodes n
             WHERE n.id IN (SELECT x.id FROM nodes x
                              JOIN cmdb_m_nodes m ON x.kind = m.kind AND x.name = m.name
                            UNION ALL
                            SELECT s.node_id FROM node_sources s WHERE s.source = src)
             ORDER BY (n.kind || '/' || n.name) COLLATE "C"
               FOR NO KEY UPDATE OF n) l
     WHERE l.kind = mn.kind AND l.name = mn.name;

    -- 3. Create the missing nodes, in ref order, with what the manifest says.
    WITH ins AS (
        INSERT INTO nodes (id, kind, name, attributes, labels)
        SELECT gen_random_uuid(), kind, name, attributes, labels
          FROM cmdb_m_nodes WHERE id IS NULL ORDER BY ref
        ON CONFLICT (kind, name) DO NOTHING
        RETURNING id, kind, name)
    UPDATE cmdb_m_nodes mn SET id = ins.id, created = true
      FROM ins WHERE ins.kind = mn.kind AND ins.name = mn.name;

    IF EXISTS (SELECT 1 FROM cmdb_m_nodes WHERE id IS NULL) THEN
        -- Another writer created some of them after step 2 (we waited for its commit on
        -- the unique index): lock those too and treat them as existing.
        UPDATE cmdb_m_nodes mn SET id = l.id
          FROM (SELECT n.id, n.kind, n.name FROM nodes n
                 WHERE (n.kind, n.name) IN (SELECT kind, name FROM cmdb_m_nodes WHERE id IS NULL)
                 ORDER BY (n.kind || '/' || n.name) COLLATE "C"
                   FOR NO KEY UPDATE OF n) l
         WHERE mn.id IS NULL AND l.kind = mn.kind AND l.name = mn.name;
        IF EXISTS (SELECT 1 FROM cmdb_m_nodes WHERE id IS NULL) THEN
            RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent node changes, retry the manifest';
        END IF;
    END IF;

    -- 4. Existing nodes: merge key by key (the manifest wins). A node changes visibly when
    --    its attributes or labels change, when it was an orphan, or when this source
    --    did not assert it yet (its sources change).
    UPDATE cmdb_m_nodes mn
       SET changed = n.attributes || mn.attributes IS DISTINCT FROM n.attributes
                  OR n.labels || mn.labels IS DISTINCT FROM n.labels
                  OR n.orphan
                  OR NOT EXISTS (SELECT 1 FROM node_sources s
                                  WHERE s.node_id = n.id AND s.source = src),
           before = NULL
      FROM nodes n
     WHERE n.id = mn.id AND NOT mn.created;
    UPDATE cmdb_m_nodes mn SET before = cmdb_node_json(n)
      FROM nodes n WHERE n.id = mn.id AND mn.changed;

    INSERT INTO node_sources (node_id, source)
    SELECT id, src FROM cmdb_m_nodes ORDER BY ref
    ON CONFLICT DO NOTHING;

    -- Every assertion refreshes last_seen_at; only a visible change bumps the version.
    UPDATE nodes n
       SET attributes = n.attributes || mn.attributes,
           labels = n.labels || mn.labels,
           orphan = false,
           version = n.version + mn.changed::int,
           updated_at = CASE WHEN mn.changed THEN now() ELSE n.updated_at END,
           last_seen_at = now()
      FROM cmdb_m_nodes mn
     WHERE n.id = mn.id AND NOT mn.created;

    INSERT INTO changes (actor, source, op, ref, before, after)
    SELECT p_actor, src, CASE WHEN mn.created THEN 'node.created' ELSE 'node.updated' END,
           mn.ref, mn.before, cmdb_node_json(n)
      FROM cmdb_m_nodes mn JOIN nodes n ON n.id = mn.id
     WHERE mn.created OR mn.changed
     ORDER BY mn.ref;

    -- 5. Edges. Lock the existing ones this apply may change (named here or asserted by
    --    the source before) in id order, taking ids from the locking statement; their
    --    endpoints are all locked already.
    UPDATE cmdb_m_edges me SET from_id = f.id, to_id = t.id
      FROM cmdb_m_nodes f, cmdb_m_nodes t
     WHERE f.ref = me.from_ref AND t.ref = me.to_ref;
    UPDATE cmdb_m_edges me SET id = l.id
      FROM (SELECT e.id, e.from_id, e.type, e.to_id FROM edges e
             WHERE e.id IN (SELECT x.id FROM edges x
                              JOIN cmdb_m_edges m
                                ON x.from_id = m.from_id AND x.type = m.type AND x.to_id = m.to_id
                            UNION ALL
                            SELECT s.edge_id FROM edge_sources s WHERE s.source = src)
             ORDER BY e.id
               FOR UPDATE OF e) l
     WHERE l.from_id = me.from_id AND l.type = me.type AND l.to_id = me.to_id;

    WITH ins AS (
        INSERT INTO edges (from_id, type, to_id, attributes)
        SELECT from_id, type, to_id, attributes
          FROM cmdb_m_edges WHERE id IS NULL ORDER BY from_ref, type, to_ref
        ON CONFLICT (from_id, type, to_id) DO NOTHING
        RETURNING id, from_id, type, to_id)
    UPDATE cmdb_m_edges me SET id = ins.id, created = true
      FROM ins
     WHERE ins.from_id = me.from_id AND ins.type = me.type AND ins.to_id = me.to_id;

    IF EXISTS (SELECT 1 FROM cmdb_m_edges WHERE id IS NULL) THEN
        -- Created by a concurrent hand edit after the lock above: lock and adopt them.
        UPDATE cmdb_m_edges me SET id = l.id
          FROM (SELECT e.id, e.from_id, e.type, e.to_id FROM edges e
                 WHERE (e.from_id, e.type, e.to_id) IN
                       (SELECT from_id, type, to_id FROM cmdb_m_edges WHERE id IS NULL)
                 ORDER BY e.id
                   FOR UPDATE OF e) l
         WHERE me.id IS NULL
           AND l.from_id = me.from_id AND l.type = me.type AND l.to_id = me.to_id;
        IF EXISTS (SELECT 1 FROM cmdb_m_edges WHERE id IS NULL) THEN
            RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent edge changes, retry the manifest';
        END IF;
    END IF;

    UPDATE cmdb_m_edges me
       SET changed = e.attributes || me.attributes IS DISTINCT FROM e.attributes
                  OR NOT EXISTS (SELECT 1 FROM edge_sources s
                                  WHERE s.edge_id = e.id AND s.source = src)
      FROM edges e
     WHERE e.id = me.id AND NOT me.created;
    UPDATE cmdb_m_edges me SET before = cmdb_edge_json(me.id) WHERE me.changed;

    INSERT INTO edge_sources (edge_id, source)
    SELECT id, src FROM cmdb_m_edges ORDER BY id
    ON CONFLICT DO NOTHING;

    UPDATE edges e
       SET attributes = e.attributes || me.attributes, updated_at = now()
      FROM cmdb_m_edges me
     WHERE e.id = me.id AND me.changed;

    INSERT INTO changes (actor, source, op, ref, before, after)
    SELECT p_actor, src, CASE WHEN me.created THEN 'edge.created' ELSE 'edge.updated' END,
           cmdb_edge_ref(me.from_ref, me.type, me.to_ref), me.before, cmdb_edge_json(me.id)
      FROM cmdb_m_edges me
     WHERE me.created OR me.changed
     ORDER BY me.from_ref, me.type, me.to_ref;

    -- 6. Replacement of edges: those the source asserted before and no longer does lose
    --    the source; with no source left they are removed.
    INSERT INTO cmdb_m_gone_edges (id, before)
    SELECT s.edge_id, cmdb_edge_json(s.edge_id)
      FROM edge_sources s
     WHERE s.source = src
       AND NOT EXISTS (SELECT 1 FROM cmdb_m_edges me WHERE me.id = s.edge_id);
    DELETE FROM edge_sources s USING cmdb_m_gone_edges g
     WHERE s.edge_id = g.id AND s.source = src;
    UPDATE cmdb_m_gone_edges g
       SET deleted = NOT EXISTS (SELECT 1 FROM edge_sources s WHERE s.edge_id = g.id);
    UPDATE edges e SET updated_at = now()
      FROM cmdb_m_gone_edges g WHERE e.id = g.id AND NOT g.deleted;
    INSERT INTO changes (actor, source, op, ref, before, after)
    SELECT p_actor, src, CASE WHEN g.deleted THEN 'edge.deleted' ELSE 'edge.updated' END,
           cmdb_edge_ref(g.before->>'from', g.before->>'type', g.before->>'to'),
           g.before, CASE WHEN g.deleted THEN NULL ELSE cmdb_edge_json(g.id) END
      FROM cmdb_m_gone_edges g
     ORDER BY g.before->>'from' COLLATE "C", g.before->>'type' COLLATE "C",
              g.before->>'to' COLLATE "C";
    DELETE FROM edges e USING cmdb_m_gone_edges g WHERE e.id = g.id AND g.deleted;
    SELECT count(*) FILTER (WHERE deleted) INTO removed FROM cmdb_m_gone_edges;

    -- 7. Replacement of nodes: those the source asserted before and no longer does lose
    --    the source; with no source left they become orphans (never deleted). Either
    --    way their sources changed, so the version bumps and node.updated is logged.
    INSERT INTO cmdb_m_lost_nodes (id, ref, before)
    SELECT n.id, n.kind || '/' || n.name, cmdb_node_json(n)
      FROM node_sources s JOIN nodes n ON n.id = s.node_id
     WHERE s.source = src
       AND NOT EXISTS (SELECT 1 FROM cmdb_m_nodes mn WHERE mn.id = s.node_id);
    DELETE FROM node_sources s USING cmdb_m_lost_nodes l
     WHERE s.node_id = l.id AND s.source = src;
    UPDATE nodes n
       SET orphan = NOT EXISTS (SELECT 1 FROM node_sources s WHERE s.node_id = n.id),
           version = n.version + 1,
           updated_at = now()
      FROM cmdb_m_lost_nodes l
     WHERE n.id = l.id;
    INSERT INTO changes (actor, source, op, ref, before, after)
    SELECT p_actor, src, 'node.updated', l.ref, l.before, cmdb_node_json(n)
      FROM cmdb_m_lost_nodes l JOIN nodes n ON n.id = l.id
     ORDER BY l.ref;
    SELECT coalesce(jsonb_agg(l.ref ORDER BY l.ref), '[]') INTO orphaned
      FROM cmdb_m_lost_nodes l JOIN nodes n ON n.id = l.id
     WHERE n.orphan AND NOT (l.before->>'orphan')::boolean;

    -- 8. The report. Node counts cover the nodes the manifest declares or touches; edge
    --    counts cover its edges, plus the ones removed from the map.
    SELECT jsonb_build_object('created', count(*) FILTER (WHERE created),
                              'updated', count(*) FILTER (WHERE changed),
                              'unchanged', count(*) FILTER (WHERE NOT created AND NOT changed))
      INTO nodes_r FROM cmdb_m_nodes;
    SELECT jsonb_build_object('created', count(*) FILTER (WHERE created),
                              'updated', count(*) FILTER (WHERE changed),
                              'removed', removed,
                              'unchanged', count(*) FILTER (WHERE NOT created AND NOT changed))
      INTO edges_r FROM cmdb_m_edges;
    RETURN jsonb_build_object('nodes', nodes_r, 'edges', edges_r, 'orphaned', orphaned);
END
$$;

-- The report of the fast no-op: everything the last apply covered, unchanged.
CREATE FUNCTION cmdb_manifest_noop_report(last jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'nodes', jsonb_build_object(
            'created', 0, 'updated', 0,
            'unchanged', coalesce((last #>> '{nodes,created}')::bigint, 0)
                       + coalesce((last #>> '{nodes,updated}')::bigint, 0)
                       + coalesce((last #>> '{nodes,unchanged}')::bigint, 0)),
        'edges', jsonb_build_object(
            'created', 0, 'updated', 0, 'removed', 0,
            'unchanged', coalesce((last #>> '{edges,created}')::bigint, 0)
                       + coalesce((last #>> '{edges,updated}')::bigint, 0)
                       + coalesce((last #>> '{edges,unchanged}')::bigint, 0)),
        'orphaned', '[]'::jsonb)
$$;

-- POST /v1/manifests. manifest: the validated manifest v1; actor: the token's name
-- (deployment.actor defaults to it); token_name: the idempotency scope; idem_key: the
-- Idempotency-Key header or NULL; dry_run: compute the report, write nothing.
--
-- Replies: 200 {"deployment_id","seq","nodes":{…},"edges":{…},"orphaned":[…]} (reply seq
-- = body seq; both null for a dry run or a no-op), 409 conflict (generation not newer),
-- 422 unprocessable (idempotency key reused with another body; self-edge), 400
-- bad_request (a value the schema rejects, e.g. an unparsable deployment time).
CREATE FUNCTION cmdb_apply_manifest(manifest jsonb, actor text, token_name text,
                                    idem_key text, dry_run boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    src    text := manifest->>'source';
    gen    bigint;
    hash   text := encode(sha256(convert_to(manifest::text, 'UTF8')), 'hex');
    dep    jsonb := coalesce(manifest->'deployment', '{}');
    st     source_state;
    stored idempotency;
    report jsonb;
    seq    bigint;
    dep_id uuid;
    reply  jsonb;
    detail text;
    cname  text;
BEGIN
    IF src LIKE 'api:%' THEN
        RETURN cmdb_error(400, 'bad_request',
                          'source: api:… sources are reserved for hand edits',
                          jsonb_build_object('field', 'source'));
    END IF;
    -- Idempotency (real applies only: a plan is not a request to remember). The key's
    -- lock makes a concurrent retry wait for the first attempt and then replay it.
    IF idem_key IS NOT NULL AND NOT dry_run THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.idem ' || token_name || ' ' || idem_key, 0));
        DELETE FROM idempotency WHERE ctid IN (
            SELECT ctid FROM idempotency
             WHERE created_at < now() - interval '24 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        SELECT * INTO stored FROM idempotency i
         WHERE i.token_name = cmdb_apply_manifest.token_name AND i.key = idem_key
           AND i.created_at >= now() - interval '24 hours';
        IF FOUND THEN
            IF stored.request_hash = hash THEN
                RETURN stored.response;
            END IF;
            RETURN cmdb_error(422, 'unprocessable',
                              'idempotency key "' || idem_key || '" was used with a different request',
                              jsonb_build_object('idempotency_key', idem_key));
        END IF;
    END IF;

    BEGIN
        gen := (manifest->>'generation')::bigint;
        PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.source ' || src, 0));
        SELECT * INTO st FROM source_state WHERE source = src;

        IF FOUND AND st.manifest_hash = hash AND NOT st.stale THEN
            -- The fast no-op: the very manifest the source applied last.
            report := cmdb_manifest_noop_report(st.last_report);
            IF dry_run THEN
                RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                       || report, NULL, NULL);
            END IF;
            -- Still a sighting of everything it asserts (nodes locked in ref order).
            PERFORM 1 FROM nodes n
             WHERE n.id IN (SELECT node_id FROM node_sources WHERE source = src)
             ORDER BY (n.kind || '/' || n.name) COLLATE "C"
               FOR NO KEY UPDATE OF n;
            UPDATE nodes SET last_seen_at = now()
             WHERE id IN (SELECT node_id FROM node_sources WHERE source = src);
        ELSIF FOUND AND gen IS NOT NULL AND st.generation IS NOT NULL
              AND gen <= st.generation AND st.manifest_hash <> hash THEN
            RETURN cmdb_error(409, 'conflict',
                              'generation ' || gen || ' of source ' || src
                              || ' is not newer than applied generation ' || st.generation,
                              jsonb_build_object('source', src, 'generation', gen,
                                                 'current_generation', st.generation));
        ELSE
            report := cmdb_manifest_apply(manifest, src, actor);
            IF dry_run THEN
                RAISE SQLSTATE 'CMDRY' USING MESSAGE = 'dry run', DETAIL = report::text;
            END IF;
        END IF;

        seq := cmdb_commit_changes();
        dep_id := gen_random_uuid();
        INSERT INTO deployments (id, source, node, version, revision, environment, actor,
                                 status, started_at, finished_at, applied_at, seq,
                                 generation, report, extensions)
        VALUES (dep_id, src, dep->>'node', dep->>'version', dep->>'revision',
                dep->>'environment', coalesce(dep->>'actor', actor), dep->>'status',
                (dep->>'started_at')::timestamptz, (dep->>'finished_at')::timestamptz,
                now(), seq, gen, report, manifest->'extensions');
        INSERT INTO source_state (source, generation, manifest_hash, last_report, last_applied_at)
        VALUES (src, gen, hash, report, now())
        ON CONFLICT (source) DO UPDATE
           SET generation = coalesce(EXCLUDED.generation, source_state.generation),
               manifest_hash = EXCLUDED.manifest_hash,
               stale = false,
               last_report = EXCLUDED.last_report,
               last_applied_at = EXCLUDED.last_applied_at;

        reply := cmdb_reply(200, jsonb_build_object('deployment_id', dep_id, 'seq', seq)
                                 || report, seq, NULL);
        IF idem_key IS NOT NULL THEN
            INSERT INTO idempotency (token_name, key, request_hash, response)
            VALUES (token_name, idem_key, hash, reply)
            ON CONFLICT ON CONSTRAINT idempotency_pkey DO UPDATE   -- expired, not yet purged
               SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,
                   created_at = now();
        END IF;
        RETURN reply;
    EXCEPTION
        WHEN SQLSTATE 'CMDRY' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                   || detail::jsonb, NULL, NULL);
        WHEN SQLSTATE 'CMERR' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN detail::jsonb;
        WHEN check_violation OR not_null_violation OR string_data_right_truncation THEN
            GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
            RETURN cmdb_constraint_error(cname);
        WHEN invalid_datetime_format OR datetime_field_overflow
             OR invalid_text_representation OR numeric_value_out_of_range THEN
            RETURN cmdb_error(400, 'bad_request', 'invalid manifest value: ' || SQLERRM);
    END;
END
$$;

-- GET /v1/deployments?node=&limit=&cursor=: newest first, keyset paginated on
-- (applied_at DESC, id); the cursor is opaque (hex of "<applied_at> <id>").
CREATE FUNCTION cmdb_deployments(p_node text, lim int, p_cursor text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l      int := greatest(1, least(coalesce(lim, 100), 1000));
    c      text;
    c_at   timestamptz;
    c_id   uuid;
    items  jsonb[];
    keys   text[];
    n      int;
BEGIN
    IF p_cursor IS NOT NULL THEN
        c := cmdb_cursor_decode(p_cursor);
        BEGIN
            c_at := split_part(c, ' ', 1)::timestamptz;
            c_id := split_part(c, ' ', 2)::uuid;
        EXCEPTION WHEN OTHERS THEN
            c_at := NULL;
        END;
        IF c_at IS NULL OR c_id IS NULL THEN
            RETURN cmdb_error(400, 'bad_request', 'cursor: is not a cursor this server issued',
                              jsonb_build_object('field', 'cursor'));
        END IF;
    END IF;

    SELECT array_agg(jsonb_build_object(
               'id', d.id, 'source', d.source, 'node', d.node, 'version', d.version,
               'revision', d.revision, 'environment', d.environment, 'actor', d.actor,
               'status', d.status, 'started_at', cmdb_ts(d.started_at),
               'finished_at', cmdb_ts(d.finished_at), 'applied_at', cmdb_ts(d.applied_at),
               'seq', d.seq, 'report', d.report) ORDER BY d.applied_at DESC, d.id),
           array_agg(cmdb_ts(d.applied_at) || ' ' || d.id ORDER BY d.applied_at DESC, d.id)
      INTO items, keys
      FROM (SELECT * FROM deployments
             WHERE (p_node IS NULL OR node = p_node)
               AND (c_at IS NULL OR applied_at < c_at OR (applied_at = c_at AND id > c_id))
             ORDER BY applied_at DESC, id
             LIMIT l + 1) d;
    n := coalesce(array_length(items, 1), 0);
    RETURN cmdb_reply(200, jsonb_build_object(
        'items', coalesce(to_jsonb(items[1:l]), '[]'::jsonb),
        'next_cursor', CASE WHEN n > l THEN to_jsonb(cmdb_cursor_encode(keys[l])) END),
        NULL, NULL);
END
$$;
