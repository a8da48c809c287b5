-- 0004_ingest: manifests without hot rows (issue 7).
--
-- What 0003 did and why it was slow: every manifest locked (FOR NO KEY UPDATE) and
-- rewrote the row of EVERY node it named, shared hubs included (a platform service, a
-- team, a host), to refresh last_seen_at; it held those locks for its whole transaction
-- (~25 statements over temporary tables), so writers serialized on the hubs; and it
-- numbered its change rows by updating them a second time.
--
-- The shape now:
--
--   * Per-source facts live in per-source rows. That a source asserts a node or an edge
--     is its node_sources / edge_sources row; WHEN it last asserted it is its
--     source_state.last_applied_at (a source's latest manifest asserts exactly what its
--     rows say, by replacement). A node's last_seen_at is derived on read
--     (cmdb_node_json): the later of the stored column and its sources' last applies.
--     So a manifest writes a shared node or edge row only when something visible about
--     it changes: attributes, labels, orphan, its set of sources, or its existence.
--   * Two phases. Phase 1 reads and diffs without locking anything shared: it parses the
--     manifest once into arrays (no temporary tables), creates what is missing (a new
--     row is nobody else's), and finds the few existing rows that may change. Phase 2
--     locks just those (nodes in ref byte order, then edges in id order, as every other
--     writer does), re-checks them against their latest committed version, writes them,
--     and builds every change row's JSON once.
--   * Change rows are inserted once, already numbered (cmdb_log_changes): the counter
--     row is taken last, so the one serialized section of a manifest is that insert and
--     the commit.
--   * A no-op re-post (the source's last manifest, byte for byte as jsonb) is a hash
--     comparison, one deployments row and the source's own source_state row.

-- ---------------------------------------------------------------------------------
-- last_seen_at derived on read
-- ---------------------------------------------------------------------------------

-- A node's and an edge's `sources`, sorted in byte order, are kept on its row (a
-- cache of node_sources / edge_sources, written in the same statements under the row's
-- lock): the change log's images of a hub asserted by thousands of sources are then a
-- copy, not an aggregate and a sort (2.5 ms for 1,000 sources, under the hub's lock).
ALTER TABLE nodes ADD COLUMN sources jsonb NOT NULL DEFAULT '[]';
ALTER TABLE edges ADD COLUMN sources jsonb NOT NULL DEFAULT '[]';
UPDATE nodes n SET sources = s.sources
  FROM (SELECT node_id, jsonb_agg(source ORDER BY source COLLATE "C") AS sources
          FROM node_sources GROUP BY node_id) s
 WHERE s.node_id = n.id;
UPDATE edges e SET sources = s.sources
  FROM (SELECT edge_id, jsonb_agg(source ORDER BY source COLLATE "C") AS sources
          FROM edge_sources GROUP BY edge_id) s
 WHERE s.edge_id = e.id;

-- Big values (a hub's sources, the change log's images of it) are compressed with
-- lz4, several times faster than the default pglz for these. Node and edge rows leave
-- room on their page, so that an update that changes no indexed column (sources,
-- attributes, version, times) is a HOT update and writes no index entry.
ALTER TABLE nodes ALTER COLUMN sources SET COMPRESSION lz4,
                  ALTER COLUMN attributes SET COMPRESSION lz4,
                  SET (fillfactor = 80);
ALTER TABLE edges ALTER COLUMN sources SET COMPRESSION lz4,
                  ALTER COLUMN attributes SET COMPRESSION lz4,
                  SET (fillfactor = 80);
ALTER TABLE changes ALTER COLUMN before SET COMPRESSION lz4,
                    ALTER COLUMN after SET COMPRESSION lz4;

-- A sorted source list with src added (unchanged when it is there already): a binary
-- search over the jsonb array (element access by index is O(1)), then one insert.
CREATE FUNCTION cmdb_sources_add(s jsonb, src text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    lo  int := 0;
    hi  int := jsonb_array_length(s);
    mid int;
    v   text;
BEGIN
    WHILE lo < hi LOOP
        mid := (lo + hi) / 2;
        v := s->>mid;
        IF v = src THEN
            RETURN s;
        ELSIF v COLLATE "C" < src COLLATE "C" THEN
            lo := mid + 1;
        ELSE
            hi := mid;
        END IF;
    END LOOP;
    RETURN jsonb_insert(s, ARRAY[lo::text], to_jsonb(src));
END
$$;

-- A node exactly as SPEC §2 shapes it: the change log's image. Its last_seen_at is the
-- stored column; the API shows cmdb_node_view().
CREATE OR REPLACE FUNCTION cmdb_node_json(n nodes) RETURNS jsonb
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
        'sources', n.sources,
        'version', n.version,
        'created_at', cmdb_ts(n.created_at),
        'updated_at', cmdb_ts(n.updated_at),
        'last_seen_at', cmdb_ts(n.last_seen_at))
$$;

-- When a node was last asserted: the stored column (set when a manifest or a hand edit
-- changed it visibly, or a hand edit re-asserted it) or the newest last apply of a
-- manifest source asserting it, whichever is later.
CREATE FUNCTION cmdb_node_last_seen(n nodes) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT greatest(n.last_seen_at,
                    (SELECT max(st.last_applied_at)
                       FROM node_sources s JOIN source_state st ON st.source = s.source
                      WHERE s.node_id = n.id))
$$;

-- A node as the API shows it: the image with last_seen_at derived.
CREATE FUNCTION cmdb_node_view(n nodes) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT cmdb_node_json(n) || jsonb_build_object('last_seen_at', cmdb_ts(cmdb_node_last_seen(n)))
$$;

-- An edge exactly as SPEC §2 shapes it (from/to are refs); NULL when it does not exist.
CREATE OR REPLACE FUNCTION cmdb_edge_json(edge_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'from', f.kind || '/' || f.name,
        'type', e.type,
        'to', t.kind || '/' || t.name,
        'attributes', e.attributes,
        'sources', e.sources,
        'created_at', cmdb_ts(e.created_at),
        'updated_at', cmdb_ts(e.updated_at))
      FROM edges e
      JOIN nodes f ON f.id = e.from_id
      JOIN nodes t ON t.id = e.to_id
     WHERE e.id = edge_id
$$;

-- The jsonb-text hash 0003 stored as manifest_hash decides what is "the same body"
-- (cmdb_apply_manifest); manifest_hash becomes the server's fingerprint (cmdb_post_manifest).
ALTER TABLE source_state ADD COLUMN content_hash text;
UPDATE source_state SET content_hash = manifest_hash;

-- Other cmdbd processes learn of no-op re-posts (which log no change) by polling this.
CREATE INDEX source_state_applied_idx ON source_state (last_applied_at);

-- ---------------------------------------------------------------------------------
-- 0002's node and edge functions, again: GET and the list show last_seen_at derived
-- (cmdb_node_view), and hand edits keep the rows' `sources` lists.
-- ---------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION cmdb_node_get(p_kind text, p_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    n nodes;
BEGIN
    SELECT * INTO n FROM nodes WHERE kind = p_kind AND name = p_name;
    IF NOT FOUND THEN
        RETURN cmdb_node_not_found(p_kind, p_name);
    END IF;
    RETURN cmdb_reply(200,
        cmdb_node_view(n) || jsonb_build_object('edges', jsonb_build_object(
            'in', (SELECT count(*) FROM edges WHERE to_id = n.id),
            'out', (SELECT count(*) FROM edges WHERE from_id = n.id))),
        NULL, cmdb_etag(n.version));
END
$$;

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
    EXECUTE format('SELECT array_agg(cmdb_node_view(p.node) ORDER BY p.ref),'
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

CREATE OR REPLACE FUNCTION cmdb_node_put(p_kind text, p_name text, p_attributes jsonb, p_labels jsonb,
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
        INSERT INTO nodes (id, kind, name, attributes, labels, sources)
        VALUES (gen_random_uuid(), p_kind, p_name,
                coalesce(p_attributes, '{}'), coalesce(p_labels, '{}'), jsonb_build_array(p_source))
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
           sources = cmdb_sources_add(sources, p_source),
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

CREATE OR REPLACE FUNCTION cmdb_edge_put(p_from text, p_type text, p_to text, p_attributes jsonb,
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
        INSERT INTO edges (from_id, type, to_id, attributes, sources)
        VALUES (ends.from_id, p_type, ends.to_id, coalesce(p_attributes, '{}'),
                jsonb_build_array(p_source))
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
    UPDATE edges SET attributes = coalesce(p_attributes, attributes),
                     sources = cmdb_sources_add(sources, p_source), updated_at = now()
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

CREATE OR REPLACE FUNCTION cmdb_node_health(p_kind text, p_name text, p_state text, p_reason text,
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
        RETURN cmdb_reply(200, cmdb_node_view(n), NULL, cmdb_etag(n.version));
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
    RETURN cmdb_reply(200, cmdb_node_view(n), cmdb_commit_changes(), cmdb_etag(n.version));
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
    RETURN cmdb_constraint_error(cname);
END
$$;

-- ---------------------------------------------------------------------------------
-- The change log: insert numbered rows at once
-- ---------------------------------------------------------------------------------

-- Appends this transaction's change rows, already numbered, and notifies the tailers.
-- The arrays are parallel (op, ref, before, after), in the order the rows are to be
-- numbered. Takes the counter row last thing before the caller's commit: its lock is
-- held until commit, so seq order is commit order (0002, cmdb_commit_changes). Returns
-- the last seq, or NULL (counter untouched) when there is nothing to log.
CREATE FUNCTION cmdb_log_changes(p_actor text, p_source text, ops text[], refs text[],
                                 befores jsonb[], afters jsonb[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n    int := coalesce(cardinality(ops), 0);
    last bigint;
BEGIN
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE change_seq SET last = change_seq.last + n RETURNING change_seq.last INTO last;
    INSERT INTO changes (seq, actor, source, op, ref, before, after)
    SELECT last - n + c.o, p_actor, p_source, c.op, c.ref, c.before, c.after
      FROM unnest(ops, refs, befores, afters) WITH ORDINALITY AS c(op, ref, before, after, o);
    PERFORM pg_notify('cmdb_changes', last::text);
    RETURN last;
END
$$;

-- ---------------------------------------------------------------------------------
-- The apply
-- ---------------------------------------------------------------------------------

DROP FUNCTION cmdb_manifest_apply(jsonb, text, text);
DROP FUNCTION cmdb_manifest_scratch();

-- A node the manifest declares or its edges touch. id NULL until resolved or created.
CREATE TYPE cmdb_mnode AS (
    ref        text,
    kind       text,
    name       text,
    attributes jsonb,       -- to merge in ('{}' for a bare endpoint)
    labels     jsonb,
    id         uuid,
    created    boolean
);

-- An edge the manifest declares.
CREATE TYPE cmdb_medge AS (
    from_ref   text,
    type       text,
    to_ref     text,
    attributes jsonb,
    from_id    uuid,
    to_id      uuid,
    id         bigint,
    created    boolean
);

-- A row that changes, with its images (before NULL when it is new; after NULL until
-- written, or when it is deleted).
CREATE TYPE cmdb_mchange AS (
    node_id uuid,
    edge_id bigint,
    ref     text,
    before  jsonb,
    deleted boolean,
    after   jsonb
);

-- A change row being built: its sort keys (part, then refs) and its content.
CREATE TYPE cmdb_mrow AS (
    part   int,
    k1     text,
    k2     text,
    k3     text,
    op     text,
    ref    text,
    before jsonb,
    after  jsonb
);

-- An edge as SPEC §2 shapes it, from its row and its endpoints' refs when the caller
-- knows them (cmdb_edge_json looks them up): inlined, so set-wise callers pay no call.
CREATE FUNCTION cmdb_edge_image(e edges, from_ref text, to_ref text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'from', from_ref,
        'type', e.type,
        'to', to_ref,
        'attributes', e.attributes,
        'sources', e.sources,
        'created_at', cmdb_ts(e.created_at),
        'updated_at', cmdb_ts(e.updated_at))
$$;

-- Writes the map for one manifest of source `src` and returns the report
-- {"nodes":{created,updated,unchanged},"edges":{created,updated,removed,unchanged},
-- "orphaned":[refs]} and the change rows to log (cmdb_log_changes, by the caller, who
-- holds the source's advisory lock). Raises 40001 when a concurrent writer removed
-- something it relies on, so the whole manifest is retried.
CREATE FUNCTION cmdb_manifest_apply(m jsonb, src text, p_actor text,
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
                  ORDER BY (n.kind || '/' || n.name) COLLATE "C"
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
                          ORDER BY (n.kind || '/' || n.name) COLLATE "C"
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
         ORDER BY (n.kind || '/' || n.name) COLLATE "C"
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
            SELECT n.id, n.kind || '/' || n.name AS ref, cmdb_node_json(n) AS before
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

-- POST /v1/manifests, in full. manifest: the validated manifest v1; actor: the token's
-- name (deployment.actor defaults to it); token_name: the idempotency scope; idem_key:
-- the Idempotency-Key header or NULL; dry_run: compute the report, write nothing;
-- mhash: the server's fingerprint of the manifest (NULL: computed here).
--
-- Replies: 200 {"deployment_id","seq","nodes":{…},"edges":{…},"orphaned":[…]} (reply seq
-- = body seq; both null for a dry run or a no-op), 409 conflict (generation not newer),
-- 422 unprocessable (idempotency key reused with another body; self-edge), 400
-- bad_request (a value the schema rejects, e.g. an unparsable deployment time).
-- A real apply (no-op included) adds "sighting":{"source","at"} beside the body: the
-- source's new last_applied_at, from which the server derives last_seen_at in memory.
DROP FUNCTION cmdb_apply_manifest(jsonb, text, text, text, boolean);
CREATE FUNCTION cmdb_apply_manifest(manifest jsonb, actor text, token_name text,
                                    idem_key text, dry_run boolean, mhash text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    src    text := manifest->>'source';
    gen    bigint;
    -- Two fingerprints of the manifest. chash, of its jsonb text, decides what is "the
    -- same body" here (no-op, or 409 for an equal generation) and keys idempotency, as
    -- in 0003, so hashes stored before this migration keep matching. hash is the
    -- server's (mhash, over the parsed manifest), which lets cmdb_manifest_noop answer
    -- a re-post without parsing it; stored here for the next one.
    chash  text := encode(sha256(convert_to(manifest::text, 'UTF8')), 'hex');
    hash   text := coalesce(mhash, chash);
    req_hash text := chash;
    dep    jsonb := coalesce(manifest->'deployment', '{}');
    st     source_state;
    known  boolean;
    noop   boolean;
    stored idempotency;
    res    record;
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
            IF stored.request_hash = req_hash THEN
                RETURN stored.response;
            END IF;
            RETURN cmdb_error(422, 'unprocessable',
                              'idempotency key "' || idem_key || '" was used with a different request',
                              jsonb_build_object('idempotency_key', idem_key));
        END IF;
    END IF;

    BEGIN
        gen := (manifest->>'generation')::bigint;
        -- One writer per source (its source_state row is locked only later, after the
        -- nodes and edges: hand deletes lock in that order).
        PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.source ' || src, 0));
        SELECT * INTO st FROM source_state WHERE source = src;
        known := FOUND;
        noop := known AND (st.content_hash = chash OR st.manifest_hash = hash) AND NOT st.stale;
        IF noop AND NOT dry_run THEN
            -- The sighting: the source's new last_applied_at. A hand delete may have
            -- marked the source stale since we read it: then this is a full apply.
            UPDATE source_state SET last_applied_at = greatest(last_applied_at, now()),
                                    manifest_hash = hash
             WHERE source = src AND NOT stale;
            noop := FOUND;
        END IF;

        IF noop THEN
            -- The fast no-op: the very manifest the source applied last. No node or
            -- edge row is touched.
            report := cmdb_manifest_noop_report(st.last_report);
            IF dry_run THEN
                RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                       || report, NULL, NULL);
            END IF;
        ELSIF known AND gen IS NOT NULL AND st.generation IS NOT NULL
              AND gen <= st.generation
              AND st.content_hash IS DISTINCT FROM chash AND st.manifest_hash <> hash THEN
            RETURN cmdb_error(409, 'conflict',
                              'generation ' || gen || ' of source ' || src
                              || ' is not newer than applied generation ' || st.generation,
                              jsonb_build_object('source', src, 'generation', gen,
                                                 'current_generation', st.generation));
        ELSE
            SELECT * INTO res FROM cmdb_manifest_apply(manifest, src, actor);
            report := res.report;
            IF dry_run THEN
                RAISE SQLSTATE 'CMDRY' USING MESSAGE = 'dry run', DETAIL = report::text;
            END IF;
            INSERT INTO source_state (source, generation, manifest_hash, content_hash,
                                      last_report, last_applied_at)
            VALUES (src, gen, hash, chash, report, now())
            ON CONFLICT (source) DO UPDATE
               SET generation = coalesce(EXCLUDED.generation, source_state.generation),
                   manifest_hash = EXCLUDED.manifest_hash,
                   content_hash = EXCLUDED.content_hash,
                   stale = false,
                   last_report = EXCLUDED.last_report,
                   last_applied_at = EXCLUDED.last_applied_at;
            -- Last: the counter row, held until commit.
            seq := cmdb_log_changes(actor, src, res.ops, res.refs, res.befores, res.afters);
        END IF;

        dep_id := gen_random_uuid();
        INSERT INTO deployments (id, source, node, version, revision, environment, actor,
                                 status, started_at, finished_at, applied_at, seq,
                                 generation, report, extensions)
        VALUES (dep_id, src, dep->>'node', dep->>'version', dep->>'revision',
                dep->>'environment', coalesce(dep->>'actor', actor), dep->>'status',
                (dep->>'started_at')::timestamptz, (dep->>'finished_at')::timestamptz,
                now(), seq, gen, report, manifest->'extensions');

        reply := cmdb_reply(200, jsonb_build_object('deployment_id', dep_id, 'seq', seq)
                                 || report, seq, NULL);
        IF idem_key IS NOT NULL THEN
            INSERT INTO idempotency (token_name, key, request_hash, response)
            VALUES (token_name, idem_key, req_hash, reply)
            ON CONFLICT ON CONSTRAINT idempotency_pkey DO UPDATE   -- expired, not yet purged
               SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,
                   created_at = now();
        END IF;
        RETURN reply || jsonb_build_object('sighting', jsonb_build_object(
                            'source', src, 'at', cmdb_ts(now())));
    EXCEPTION
        WHEN SQLSTATE 'CMDRY' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                   || detail::jsonb, NULL, NULL);
        WHEN SQLSTATE 'CMERR' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN detail::jsonb;
        WHEN foreign_key_violation THEN
            -- A node we rely on was deleted under us (a hand delete): apply again.
            RAISE SQLSTATE '40001' USING MESSAGE = 'a node was deleted concurrently, retry the manifest';
        WHEN check_violation OR not_null_violation OR string_data_right_truncation THEN
            GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
            RETURN cmdb_constraint_error(cname);
        WHEN invalid_datetime_format OR datetime_field_overflow
             OR invalid_text_representation OR numeric_value_out_of_range THEN
            RETURN cmdb_error(400, 'bad_request', 'invalid manifest value: ' || SQLERRM);
    END;
END
$$;

-- ---------------------------------------------------------------------------------
-- The fast no-op, and the one statement the server calls
-- ---------------------------------------------------------------------------------

-- to_char() is STABLE, so cmdb_ts() declared IMMUTABLE could not be inlined: every
-- timestamp of every image was a function call (~150 per manifest).
ALTER FUNCTION cmdb_ts(timestamptz) STABLE;

-- The identical re-post (SPEC §3) without parsing the manifest or taking a lock beyond
-- the source's own row: when mhash is the fingerprint of the source's last applied
-- manifest and no hand delete made the source stale, record the sighting
-- (last_applied_at) and the deployment, and answer as cmdb_apply_manifest's no-op
-- does. NULL otherwise. A concurrent apply of the same source holds that row until it
-- commits; the UPDATE then re-checks the fingerprint against what it wrote.
CREATE FUNCTION cmdb_manifest_noop(src text, mhash text, gen bigint, dep jsonb, ext jsonb,
                                   p_actor text) RETURNS jsonb
LANGUAGE plpgsql AS $$
-- PL/pgSQL, not SQL: its plans are kept for the session (a SQL function's plan lives
-- only as long as the calling statement, so it was planned again on every call).
DECLARE
    last   jsonb;
    report jsonb;
    dep_id uuid := gen_random_uuid();
BEGIN
    UPDATE source_state SET last_applied_at = greatest(last_applied_at, now())
     WHERE source = src AND manifest_hash = mhash AND NOT stale
    RETURNING last_report INTO last;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    report := cmdb_manifest_noop_report(last);
    INSERT INTO deployments (id, source, node, version, revision, environment, actor, status,
                             started_at, finished_at, applied_at, seq, generation, report,
                             extensions)
    VALUES (dep_id, src, dep->>'node', dep->>'version', dep->>'revision', dep->>'environment',
            coalesce(dep->>'actor', p_actor), dep->>'status',
            (dep->>'started_at')::timestamptz, (dep->>'finished_at')::timestamptz,
            now(), NULL, gen, report, ext);
    RETURN cmdb_reply(200, jsonb_build_object('deployment_id', dep_id, 'seq', NULL) || report,
                      NULL, NULL)
           || jsonb_build_object('sighting', jsonb_build_object('source', src, 'at', cmdb_ts(now())));
END
$$;

-- POST /v1/manifests as the server calls it. body: the manifest as text (parsed into
-- jsonb only when it must be applied), src its source; the other arguments as
-- cmdb_apply_manifest and cmdb_manifest_noop take them. A dry run or an idempotency key always takes the full
-- path (a plan and a replay are answered there).
CREATE FUNCTION cmdb_post_manifest(body text, src text, actor text, token_name text,
                                   idem_key text, dry_run boolean, mhash text, gen bigint,
                                   dep jsonb, ext jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    reply jsonb;
BEGIN
    IF idem_key IS NULL AND NOT dry_run AND mhash IS NOT NULL THEN
        reply := cmdb_manifest_noop(src, mhash, gen, dep, ext, actor);
        IF reply IS NOT NULL THEN
            RETURN reply;
        END IF;
    END IF;
    RETURN cmdb_apply_manifest(body::jsonb, actor, token_name, idem_key, dry_run, mhash);
END
$$;
