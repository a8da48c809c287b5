-- 0002_core: the SQL functions behind every node/edge write, list and the change feed.
--
-- The C <-> SQL contract (cmdbd/DESIGN.md): every function here returns ONE jsonb
-- shaped as a reply, {"status":200,"body":{...},"seq":N,"etag":"\"7\""} or
-- {"status":404,"error":{"code":"not_found","message":"...","details":...}}. The C side
-- has validated syntax (kinds, names, refs, JSON shapes) before the call and calls each
-- function as one statement in autocommit mode, so a function IS the transaction:
--   * semantic errors are decided before the first write, or raised inside an EXCEPTION
--     block (whose writes are then rolled back) and turned into a reply there;
--   * a raised error that escapes becomes a 500, so expected constraint errors are mapped;
--   * cmdb_commit_changes() is the last write of every writing function.
-- Writers of one node serialize on its row lock. Locks are always taken nodes first
-- (in ref byte order when several), then edges, so writers cannot deadlock each other.

-- ---------------------------------------------------------------------------------
-- Schema amendment: hand edits are recorded under the source 'api:<token name>', and
-- token names may hold upper case and '@' (tokens_name_check), which the manifest-source
-- pattern of 0001 rejects. Widen the two source checks to admit exactly those.
-- ---------------------------------------------------------------------------------
ALTER TABLE node_sources DROP CONSTRAINT node_sources_source_check;
ALTER TABLE node_sources ADD CONSTRAINT node_sources_source_check
    CHECK (source ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'
           OR source ~ '^api:[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$');
ALTER TABLE edge_sources DROP CONSTRAINT edge_sources_source_check;
ALTER TABLE edge_sources ADD CONSTRAINT edge_sources_source_check
    CHECK (source ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'
           OR source ~ '^api:[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$');

-- ---------------------------------------------------------------------------------
-- Small helpers: times, refs, replies.
-- ---------------------------------------------------------------------------------

-- RFC 3339 UTC with microseconds: 2026-11-21T10:00:00.123456Z (NULL stays NULL).
CREATE FUNCTION cmdb_ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- A ref splits at its FIRST '/': 'database/pg/main:5432' -> ('database', 'pg/main:5432').
CREATE FUNCTION cmdb_ref_kind(ref text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(ref, '/') > 0 THEN left(ref, strpos(ref, '/') - 1) END
$$;

CREATE FUNCTION cmdb_ref_name(ref text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(ref, '/') > 0 THEN substr(ref, strpos(ref, '/') + 1) END
$$;

-- How an edge is named in the change log and in messages: 'service/a depends_on database/b'.
CREATE FUNCTION cmdb_edge_ref(from_ref text, type text, to_ref text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT from_ref || ' ' || type || ' ' || to_ref
$$;

-- Opaque list cursors: the hex of a UTF-8 string (URL-safe, no escaping needed).
CREATE FUNCTION cmdb_cursor_encode(s text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(convert_to(s, 'UTF8'), 'hex')
$$;

-- NULL when the cursor is not one we made (the caller answers 400).
CREATE FUNCTION cmdb_cursor_decode(c text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(decode(c, 'hex'), 'UTF8');
EXCEPTION WHEN invalid_parameter_value OR character_not_in_repertoire
               OR untranslatable_character THEN
    RETURN NULL;
END
$$;

-- A success reply. body NULL (204) and etag NULL are left out; seq is always present
-- (null when the call committed no change).
CREATE FUNCTION cmdb_reply(status int, body jsonb, seq bigint, etag text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('status', status, 'seq', seq)
           || CASE WHEN body IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('body', body) END
           || CASE WHEN etag IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('etag', etag) END
$$;

-- An error reply; details left out when NULL.
CREATE FUNCTION cmdb_error(status int, code text, message text, details jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('status', status, 'error',
               jsonb_build_object('code', code, 'message', message)
               || CASE WHEN details IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('details', details) END)
$$;

-- The ETag value of a node version: "7" (with the quotes).
CREATE FUNCTION cmdb_etag(version bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT '"' || version || '"'
$$;

-- Does an If-Match value (NULL = none, '*', '7', '"7"' or 'W/"7"') admit this version?
-- version NULL means the node does not exist: only "no If-Match" admits that.
CREATE FUNCTION cmdb_if_match_ok(if_match text, version bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN if_match IS NULL THEN true
        WHEN version IS NULL THEN false
        WHEN btrim(if_match) = '*' THEN true
        ELSE regexp_replace(btrim(if_match), '^(W/)?"?([^"]*)"?$', '\2') = version::text
    END
$$;

-- The reply for a constraint the data violated (the C side should have caught it first):
-- a 400 naming the constraint, never a 500.
CREATE FUNCTION cmdb_constraint_error(constraint_name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cmdb_error(400, 'bad_request',
                      'invalid data: violates ' || coalesce(constraint_name, 'a constraint'),
                      jsonb_build_object('constraint', constraint_name))
$$;

-- ---------------------------------------------------------------------------------
-- JSON shapes of the contract.
-- ---------------------------------------------------------------------------------

-- A node exactly as SPEC §2 shapes it; sources sorted in byte order.
CREATE FUNCTION cmdb_node_json(n nodes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', n.id,
        'ref', n.kind || '/' || n.name,
        'kind', n.kind,
        'name', n.name,
        'attributes', n.attributes,
        'labels', n.labels,
        'health', n.health,
        'health_reason', n.health_reason,
        'health_at', cmdb_ts(n.health_at),
        'orphan', n.orphan,
        'sources', coalesce((SELECT jsonb_agg(s.source ORDER BY s.source COLLATE "C")
                               FROM node_sources s WHERE s.node_id = n.id), '[]'::jsonb),
        'version', n.version,
        'created_at', cmdb_ts(n.created_at),
        'updated_at', cmdb_ts(n.updated_at),
        'last_seen_at', cmdb_ts(n.last_seen_at))
$$;

-- An edge exactly as SPEC §2 shapes it (from/to are refs); NULL when it does not exist.
CREATE FUNCTION cmdb_edge_json(edge_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'from', f.kind || '/' || f.name,
        'type', e.type,
        'to', t.kind || '/' || t.name,
        'attributes', e.attributes,
        'sources', coalesce((SELECT jsonb_agg(s.source ORDER BY s.source COLLATE "C")
                               FROM edge_sources s WHERE s.edge_id = e.id), '[]'::jsonb),
        'created_at', cmdb_ts(e.created_at),
        'updated_at', cmdb_ts(e.updated_at))
      FROM edges e
      JOIN nodes f ON f.id = e.from_id
      JOIN nodes t ON t.id = e.to_id
     WHERE e.id = edge_id
$$;

-- ---------------------------------------------------------------------------------
-- Change log.
-- ---------------------------------------------------------------------------------

-- Append one change of this transaction; it is numbered by cmdb_commit_changes().
CREATE FUNCTION cmdb_log_change(actor text, source text, op text, ref text,
                                before jsonb, after jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO changes (actor, source, op, ref, before, after)
    VALUES (actor, source, op, ref, before, after)
$$;

-- The last write of every writing function: number this transaction's unnumbered change
-- rows in insertion order from the one counter row and notify the tailers. The counter's
-- row lock is held until commit, so seq order is commit order. Other transactions' NULL
-- seq rows are invisible to us (they are uncommitted), so we only number our own.
-- Returns the last seq, or NULL (counter untouched) when nothing was logged.
CREATE FUNCTION cmdb_commit_changes() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n    bigint;
    last bigint;
BEGIN
    SELECT count(*) INTO n FROM changes WHERE seq IS NULL;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE change_seq SET last = change_seq.last + n RETURNING change_seq.last INTO last;
    UPDATE changes c
       SET seq = last - n + p.rn
      FROM (SELECT local_id, row_number() OVER (ORDER BY local_id) AS rn
              FROM changes WHERE seq IS NULL) p
     WHERE c.local_id = p.local_id;
    PERFORM pg_notify('cmdb_changes', last::text);
    RETURN last;
END
$$;

-- GET /v1/changes: rows with seq > since in seq order, at most lim (clamped to 1..10000).
-- next = the last seq returned, or since when none (the C side does the waiting).
CREATE FUNCTION cmdb_changes(since bigint, lim int) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH page AS (
        SELECT seq, at, actor, source, op, ref, before, after
          FROM changes
         WHERE seq > since
         ORDER BY seq
         LIMIT greatest(1, least(coalesce(lim, 100), 10000))
    )
    SELECT cmdb_reply(200, jsonb_build_object(
               'changes', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                       'seq', seq, 'at', cmdb_ts(at), 'actor', actor,
                                       'source', source, 'op', op, 'ref', ref,
                                       'before', before, 'after', after) ORDER BY seq)
                                      FROM page), '[]'::jsonb),
               'next', coalesce((SELECT max(seq) FROM page), since)),
           NULL, NULL)
$$;

-- ---------------------------------------------------------------------------------
-- Nodes.
-- ---------------------------------------------------------------------------------

CREATE FUNCTION cmdb_node_not_found(kind text, name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT cmdb_error(404, 'not_found', 'node ' || kind || '/' || name || ' not found',
                      jsonb_build_object('ref', kind || '/' || name))
$$;

CREATE FUNCTION cmdb_precondition_failed(kind text, name text, if_match text, version bigint)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT cmdb_error(412, 'precondition_failed',
                      CASE WHEN version IS NULL
                           THEN 'node ' || kind || '/' || name || ' does not exist (If-Match ' || if_match || ')'
                           ELSE 'node ' || kind || '/' || name || ' is at version ' || version
                                || ' (If-Match ' || if_match || ')' END,
                      jsonb_build_object('ref', kind || '/' || name, 'if_match', if_match,
                                         'current_version', version))
$$;

-- GET /v1/nodes/{kind}/{name}: the node plus its edge counts {"in":N,"out":M}
-- (owners come from the in-memory graph on the C side). ETag = version.
CREATE FUNCTION cmdb_node_get(p_kind text, p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n nodes;
BEGIN
    SELECT * INTO n FROM nodes WHERE kind = p_kind AND name = p_name;
    IF NOT FOUND THEN
        RETURN cmdb_node_not_found(p_kind, p_name);
    END IF;
    RETURN cmdb_reply(200,
        cmdb_node_json(n) || jsonb_build_object('edges', jsonb_build_object(
            'in', (SELECT count(*) FROM edges WHERE to_id = n.id),
            'out', (SELECT count(*) FROM edges WHERE from_id = n.id))),
        NULL, cmdb_etag(n.version));
END
$$;

-- PUT /v1/nodes/{kind}/{name}: create (201) or update (200). attributes/labels replace
-- the stored objects wholesale when given (NULL = keep). A hand edit asserts the node
-- under p_source ('api:<token>') and clears orphan. The version bumps and node.updated
-- is logged only when something visible changed; last_seen_at = now() regardless.
CREATE FUNCTION cmdb_node_put(p_kind text, p_name text, p_attributes jsonb, p_labels jsonb,
                              p_if_match text, p_actor text, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ref     text := p_kind || '/' || p_name;
    n       nodes;
    before  jsonb;
    after   jsonb;
    changed boolean;
    cname   text;
BEGIN
    SELECT * INTO n FROM nodes WHERE kind = p_kind AND name = p_name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        IF p_if_match IS NOT NULL THEN
            RETURN cmdb_precondition_failed(p_kind, p_name, p_if_match, NULL);
        END IF;
        INSERT INTO nodes (id, kind, name, attributes, labels)
        VALUES (gen_random_uuid(), p_kind, p_name,
                coalesce(p_attributes, '{}'), coalesce(p_labels, '{}'))
        ON CONFLICT (kind, name) DO NOTHING
        RETURNING * INTO n;
        IF NOT FOUND THEN
            -- A concurrent writer created it first (and committed): update it instead.
            RETURN cmdb_node_put(p_kind, p_name, p_attributes, p_labels, p_if_match,
                                 p_actor, p_source);
        END IF;
        INSERT INTO node_sources (node_id, source) VALUES (n.id, p_source);
        after := cmdb_node_json(n);
        PERFORM cmdb_log_change(p_actor, p_source, 'node.created', ref, NULL, after);
        RETURN cmdb_reply(201, after, cmdb_commit_changes(), cmdb_etag(n.version));
    END IF;

    IF NOT cmdb_if_match_ok(p_if_match, n.version) THEN
        RETURN cmdb_precondition_failed(p_kind, p_name, p_if_match, n.version);
    END IF;

    changed := (p_attributes IS NOT NULL AND p_attributes IS DISTINCT FROM n.attributes)
            OR (p_labels IS NOT NULL AND p_labels IS DISTINCT FROM n.labels)
            OR n.orphan
            OR NOT EXISTS (SELECT 1 FROM node_sources
                            WHERE node_id = n.id AND source = p_source);
    IF NOT changed THEN
        UPDATE nodes SET last_seen_at = now() WHERE id = n.id RETURNING * INTO n;
        RETURN cmdb_reply(200, cmdb_node_json(n), NULL, cmdb_etag(n.version));
    END IF;

    before := cmdb_node_json(n);
    INSERT INTO node_sources (node_id, source) VALUES (n.id, p_source)
        ON CONFLICT DO NOTHING;
    UPDATE nodes
       SET attributes = coalesce(p_attributes, attributes),
           labels = coalesce(p_labels, labels),
           orphan = false,
           version = version + 1,
           updated_at = now(),
           last_seen_at = now()
     WHERE id = n.id
    RETURNING * INTO n;
    after := cmdb_node_json(n);
    PERFORM cmdb_log_change(p_actor, p_source, 'node.updated', ref, before, after);
    RETURN cmdb_reply(200, after, cmdb_commit_changes(), cmdb_etag(n.version));
EXCEPTION WHEN check_violation OR not_null_violation THEN
    GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
    RETURN cmdb_constraint_error(cname);
END
$$;

-- DELETE /v1/nodes/{kind}/{name}: 204. Logs edge.deleted for each of its edges (sorted)
-- then node.deleted, then deletes (the edges go by cascade). History keeps all three.
CREATE FUNCTION cmdb_node_delete(p_kind text, p_name text, p_if_match text,
                                 p_actor text, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n nodes;
BEGIN
    SELECT * INTO n FROM nodes WHERE kind = p_kind AND name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN cmdb_node_not_found(p_kind, p_name);
    END IF;
    IF NOT cmdb_if_match_ok(p_if_match, n.version) THEN
        RETURN cmdb_precondition_failed(p_kind, p_name, p_if_match, n.version);
    END IF;

    -- The node's row lock (FOR UPDATE) keeps new edges to it out from now on: an
    -- edge writer needs FOR KEY SHARE on both endpoints. Its existing edges are
    -- locked too, in id order, before they are logged: a concurrent delete of the
    -- other end may be removing the same edge, and only one of us may log it (the
    -- next statement's snapshot no longer sees an edge the other one deleted).
    PERFORM 1 FROM edges e WHERE e.from_id = n.id OR e.to_id = n.id ORDER BY e.id FOR UPDATE;
    -- Sources that asserted the node or its edges must re-apply in full next time.
    UPDATE source_state SET stale = true
     WHERE source IN (SELECT source FROM node_sources WHERE node_id = n.id
                      UNION
                      SELECT es.source FROM edge_sources es JOIN edges e ON e.id = es.edge_id
                       WHERE e.from_id = n.id OR e.to_id = n.id)
       AND NOT stale;
    PERFORM cmdb_log_change(p_actor, p_source, 'edge.deleted',
                            cmdb_edge_ref(j->>'from', j->>'type', j->>'to'), j, NULL)
       FROM (SELECT cmdb_edge_json(e.id) AS j
               FROM edges e
              WHERE e.from_id = n.id OR e.to_id = n.id) x
      ORDER BY j->>'from' COLLATE "C", j->>'type' COLLATE "C", j->>'to' COLLATE "C";
    PERFORM cmdb_log_change(p_actor, p_source, 'node.deleted', p_kind || '/' || p_name,
                            cmdb_node_json(n), NULL);
    DELETE FROM nodes WHERE id = n.id;
    RETURN cmdb_reply(204, NULL, cmdb_commit_changes(), NULL);
END
$$;

-- GET /v1/nodes?…: keyset pagination by ref in byte order. Filter keys (all optional,
-- validated by the C side): kind, labels (an object: every pair must match), owner (a ref: nodes with an
-- owned_by edge to it), q (ref or name starts with q), orphan (bool), health,
-- limit (1..1000, default 100), cursor (from a previous page's next_cursor).
CREATE FUNCTION cmdb_node_list(filter jsonb) RETURNS jsonb
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
        conds := conds || '(n.kind || ''/'' || n.name) COLLATE "C" > $1'::text;
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
        conds := conds || ('(starts_with(n.kind || ''/'' || n.name, $5)'
                           ' OR starts_with(n.name, $5))')::text;
    END IF;
    IF f->>'orphan' IS NOT NULL THEN
        conds := conds || 'n.orphan = $6'::text;
    END IF;
    IF f->>'health' IS NOT NULL THEN
        conds := conds || 'n.health = $7'::text;
    END IF;

    -- One row more than the page tells whether there is a next page.
    EXECUTE format('SELECT array_agg(cmdb_node_json(p.node) ORDER BY p.ref),'
                   '       array_agg(p.ref ORDER BY p.ref)'
                   '  FROM (SELECT n AS node, (n.kind || ''/'' || n.name) COLLATE "C" AS ref'
                   '          FROM nodes n WHERE %s'
                   '         ORDER BY (n.kind || ''/'' || n.name) COLLATE "C"'
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

-- PUT /v1/nodes/{kind}/{name}/health: status, not an assertion (sources untouched).
-- health_at is refreshed always; version bump + node.updated only when state or reason
-- changed.
CREATE FUNCTION cmdb_node_health(p_kind text, p_name text, p_state text, p_reason text,
                                 p_actor text, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n      nodes;
    before jsonb;
    after  jsonb;
    cname  text;
BEGIN
    SELECT * INTO n FROM nodes WHERE kind = p_kind AND name = p_name FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN cmdb_node_not_found(p_kind, p_name);
    END IF;
    IF n.health = p_state AND n.health_reason IS NOT DISTINCT FROM p_reason THEN
        UPDATE nodes SET health_at = now() WHERE id = n.id RETURNING * INTO n;
        RETURN cmdb_reply(200, cmdb_node_json(n), NULL, cmdb_etag(n.version));
    END IF;
    before := cmdb_node_json(n);
    UPDATE nodes
       SET health = p_state, health_reason = p_reason, health_at = now(),
           version = version + 1, updated_at = now()
     WHERE id = n.id
    RETURNING * INTO n;
    after := cmdb_node_json(n);
    PERFORM cmdb_log_change(p_actor, p_source, 'node.updated', p_kind || '/' || p_name,
                            before, after);
    RETURN cmdb_reply(200, after, cmdb_commit_changes(), cmdb_etag(n.version));
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
    RETURN cmdb_constraint_error(cname);
END
$$;

-- ---------------------------------------------------------------------------------
-- Edges.
-- ---------------------------------------------------------------------------------

CREATE FUNCTION cmdb_edge_not_found(from_ref text, type text, to_ref text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT cmdb_error(404, 'not_found',
                      'edge ' || cmdb_edge_ref(from_ref, type, to_ref) || ' not found',
                      jsonb_build_object('from', from_ref, 'type', type, 'to', to_ref))
$$;

-- Lock both endpoints FOR KEY SHARE in ref order (so no node delete can slip between our
-- check and our insert, and edge writers never deadlock each other) and return their
-- ids; either id is NULL when that node does not exist.
CREATE FUNCTION cmdb_edge_endpoints(from_ref text, to_ref text,
                                    OUT from_id uuid, OUT to_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT n.id, n.kind || '/' || n.name AS ref
               FROM nodes n
              WHERE (n.kind = cmdb_ref_kind(from_ref) AND n.name = cmdb_ref_name(from_ref))
                 OR (n.kind = cmdb_ref_kind(to_ref) AND n.name = cmdb_ref_name(to_ref))
              ORDER BY (n.kind || '/' || n.name) COLLATE "C"
                FOR KEY SHARE
    LOOP
        IF r.ref = from_ref THEN from_id := r.id; END IF;
        IF r.ref = to_ref THEN to_id := r.id; END IF;
    END LOOP;
END
$$;

-- PUT /v1/edges: create (201) or update (200). attributes replace wholesale when given
-- (NULL = keep). The hand edit asserts the edge under p_source. Both endpoints must
-- exist (422 naming the missing ones); an edge from a node to itself is a 422 too.
CREATE FUNCTION cmdb_edge_put(p_from text, p_type text, p_to text, p_attributes jsonb,
                              p_actor text, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ends    record;
    missing text[];
    e       edges;
    eref    text := cmdb_edge_ref(p_from, p_type, p_to);
    before  jsonb;
    after   jsonb;
    cname   text;
BEGIN
    IF p_from = p_to THEN
        RETURN cmdb_error(422, 'unprocessable',
                          'edge ' || eref || ' would connect a node to itself',
                          jsonb_build_object('from', p_from, 'to', p_to));
    END IF;
    SELECT * INTO ends FROM cmdb_edge_endpoints(p_from, p_to);
    IF ends.from_id IS NULL THEN missing := missing || p_from; END IF;
    IF ends.to_id IS NULL THEN missing := missing || p_to; END IF;
    IF missing IS NOT NULL THEN
        RETURN cmdb_error(422, 'unprocessable',
                          CASE WHEN cardinality(missing) = 1
                               THEN 'edge endpoint ' || missing[1] || ' not found'
                               ELSE 'edge endpoints ' || array_to_string(missing, ', ')
                                    || ' not found' END,
                          jsonb_build_object('missing', to_jsonb(missing)));
    END IF;

    SELECT * INTO e FROM edges
     WHERE from_id = ends.from_id AND type = p_type AND to_id = ends.to_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO edges (from_id, type, to_id, attributes)
        VALUES (ends.from_id, p_type, ends.to_id, coalesce(p_attributes, '{}'))
        ON CONFLICT (from_id, type, to_id) DO NOTHING
        RETURNING * INTO e;
        IF NOT FOUND THEN
            -- Created concurrently (and committed): update it instead.
            RETURN cmdb_edge_put(p_from, p_type, p_to, p_attributes, p_actor, p_source);
        END IF;
        INSERT INTO edge_sources (edge_id, source) VALUES (e.id, p_source);
        after := cmdb_edge_json(e.id);
        PERFORM cmdb_log_change(p_actor, p_source, 'edge.created', eref, NULL, after);
        RETURN cmdb_reply(201, after, cmdb_commit_changes(), NULL);
    END IF;

    IF (p_attributes IS NULL OR p_attributes = e.attributes)
       AND EXISTS (SELECT 1 FROM edge_sources WHERE edge_id = e.id AND source = p_source) THEN
        RETURN cmdb_reply(200, cmdb_edge_json(e.id), NULL, NULL);
    END IF;
    before := cmdb_edge_json(e.id);
    INSERT INTO edge_sources (edge_id, source) VALUES (e.id, p_source) ON CONFLICT DO NOTHING;
    UPDATE edges SET attributes = coalesce(p_attributes, attributes), updated_at = now()
     WHERE id = e.id;
    after := cmdb_edge_json(e.id);
    PERFORM cmdb_log_change(p_actor, p_source, 'edge.updated', eref, before, after);
    RETURN cmdb_reply(200, after, cmdb_commit_changes(), NULL);
EXCEPTION
    WHEN check_violation OR not_null_violation THEN
        GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
        RETURN cmdb_constraint_error(cname);
    WHEN foreign_key_violation THEN
        -- Not expected (the endpoints are locked), but never a 500 for it.
        RETURN cmdb_error(422, 'unprocessable',
                          'edge ' || eref || ': an endpoint was deleted concurrently',
                          jsonb_build_object('missing', jsonb_build_array(p_from, p_to)));
END
$$;

-- DELETE /v1/edges?from=&type=&to=: 204 (edge.deleted logged) or 404.
CREATE FUNCTION cmdb_edge_delete(p_from text, p_type text, p_to text,
                                 p_actor text, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ends record;
    eid  bigint;
BEGIN
    SELECT * INTO ends FROM cmdb_edge_endpoints(p_from, p_to);
    SELECT id INTO eid FROM edges
     WHERE from_id = ends.from_id AND type = p_type AND to_id = ends.to_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN cmdb_edge_not_found(p_from, p_type, p_to);
    END IF;
    UPDATE source_state SET stale = true
     WHERE source IN (SELECT source FROM edge_sources WHERE edge_id = eid) AND NOT stale;
    PERFORM cmdb_log_change(p_actor, p_source, 'edge.deleted',
                            cmdb_edge_ref(p_from, p_type, p_to), cmdb_edge_json(eid), NULL);
    DELETE FROM edges WHERE id = eid;
    RETURN cmdb_reply(204, NULL, cmdb_commit_changes(), NULL);
END
$$;

-- GET /v1/nodes/{kind}/{name}/edges?direction=in|out|both&type=: all of them (not
-- paginated), sorted by from, type, to in byte order.
CREATE FUNCTION cmdb_node_edges(p_kind text, p_name text, p_direction text, p_type text)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    nid uuid;
    dir text := coalesce(p_direction, 'both');
BEGIN
    SELECT id INTO nid FROM nodes WHERE kind = p_kind AND name = p_name;
    IF NOT FOUND THEN
        RETURN cmdb_node_not_found(p_kind, p_name);
    END IF;
    RETURN cmdb_reply(200, jsonb_build_object('edges', coalesce((
        SELECT jsonb_agg(j ORDER BY j->>'from' COLLATE "C", j->>'type' COLLATE "C",
                                    j->>'to' COLLATE "C")
          FROM (SELECT cmdb_edge_json(e.id) AS j
                  FROM edges e
                 WHERE ((dir IN ('out', 'both') AND e.from_id = nid)
                        OR (dir IN ('in', 'both') AND e.to_id = nid))
                   AND (p_type IS NULL OR e.type = p_type)) x), '[]'::jsonb)),
        NULL, NULL);
END
$$;
