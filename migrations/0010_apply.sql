-- 0010_apply: the manifest write path, shorter under the hubs' locks and cheaper per
-- manifest (issue 7). cmdbd/DESIGN.md "The manifest write path" has the measurements.
--
-- What 0004 left, measured with 8 clients on a first import: half of a manifest's time
-- was spent waiting for a hub's row lock. A manifest that adds its source to a shared
-- node (a platform service, a team, a host) must rewrite that node's row and log its
-- whole image; 0004 locked those rows at the start of its phase 2 and held them across
-- ~20 statements (the hubs' own update, the edges, the change rows' assembly, the
-- report, the source's row, the change log insert) and the commit. Every manifest
-- naming dns queued behind the one before it for all of that.
--
-- The shape now (cmdb_manifest_apply, redefined; its callers are unchanged):
--
--   * Phase 1 writes only what is nobody else's: the nodes and edges it creates, and
--     this source's own node_sources / edge_sources rows (the source's advisory lock
--     makes them ours). It locks nothing shared for writing. The foreign keys of those
--     rows share-lock (FOR KEY SHARE) the nodes and edges they point at, which keeps a
--     hand delete out and lets every other manifest through.
--   * The tail writes the shared rows that visibly change -- the source joins or leaves
--     a node or an edge (its `sources` list), or the merge changes attributes or labels
--     -- each set with two statements (lock in order; re-read, write and take both
--     images) right before the change counter. A hub is held from there to the commit:
--     the hubs' update, the change rows' insert and the commit, not all of phase 2.
--   * Nothing else is locked. A node or edge the source asserted before and asserts
--     unchanged is not touched at all; what keeps the manifest true is the source's
--     row: every hand delete of something a source asserts marks the source stale,
--     which UPDATEs its source_state row (0002). The tail locks that row first and
--     compares its xmin with the one read at the start: changed, the manifest is
--     applied again (40001, retried by the server). A source that starts stale (a hand
--     delete already happened) has everything it names share-locked instead, as 0004
--     did, since a delete does not update an already stale row.
--   * Fewer, set-wise statements: parse and resolve in one, the created rows' images
--     from their INSERTs' RETURNING, the change rows gathered as they are made and
--     sorted once; the caller writes the source's row and takes the counter right
--     after (cmdb_apply_manifest, 0006, unchanged).
--
-- Lock order (deadlock-free against hand edits and deletes, which take a node, then its
-- edges, then the source_state rows they mark stale, then the counter):
--   source advisory lock -> nodes FOR KEY SHARE (the ones the tail will write and did
--   not get a key-share lock on from a foreign key: visibly changed or no longer
--   asserted; all named ones for a stale source) -> inserts (their foreign keys
--   key-share the rows they point at) -> edges FOR UPDATE (changed or no longer
--   asserted; id order) -> [tail] the source's source_state row -> nodes FOR NO KEY
--   UPDATE (ref order) -> edges FOR NO KEY UPDATE (id order) -> [the caller]
--   change_seq.
-- Every row the tail locks for writing was share-locked by this transaction before it
-- took the source_state row, so a hand delete (FOR UPDATE) cannot hold one of them
-- while it waits for that row; until then we hold only key-share locks and rows of our
-- own, which a delete does not wait for (in any order: a key-share lock conflicts only
-- with FOR UPDATE, and a delete takes its node first). Manifests lock the tail's rows
-- in one order, and a key-share lock conflicts with no other manifest's lock.

-- ---------------------------------------------------------------------------------
-- Types: a node and an edge the manifest names, as phase 1 resolves them
-- ---------------------------------------------------------------------------------

CREATE TYPE cmdb_anode AS (
    ref        text,
    kind       text,
    name       text,
    attributes jsonb,       -- to merge in ('{}' for a bare endpoint)
    labels     jsonb,
    id         uuid,        -- NULL until resolved or created
    created    boolean,     -- created by this manifest
    asserted   boolean,     -- the source asserted it before (its node_sources row)
    visible    boolean      -- asserted, and the merge changes its attributes or labels
);

CREATE TYPE cmdb_aedge AS (
    from_ref   text,
    type       text,
    to_ref     text,
    attributes jsonb,
    from_id    uuid,
    to_id      uuid,
    id         bigint,
    created    boolean,
    asserted   boolean,
    visible    boolean
);

-- ---------------------------------------------------------------------------------
-- The apply
-- ---------------------------------------------------------------------------------

-- Writes the map for one manifest m of source src and returns its report
-- {"nodes":{created,updated,unchanged},"edges":{created,updated,removed,unchanged},
-- "orphaned":[refs]} and its change rows, sorted as they are to be numbered, for the
-- caller to log (cmdb_log_changes, 0004: the counter, then the insert) right after it
-- has written the source's row -- the end of the transaction, as before. The caller
-- holds the source's advisory lock (cmdb_apply_manifest, 0004/0006; the sweeper's
-- cmdb_source_expire, 0007). Same signature and contract as 0004's; the body is new.
--
-- Raises 40001 when a concurrent writer removed something the manifest relies on; the
-- server applies the whole manifest again.
--
-- Plans. Every statement reaches nodes, edges and their source rows by key: a look-up
-- per manifest item (LATERAL ... OFFSET 0, which the planner cannot turn into a join
-- over the whole table) or `id = ANY (array)`. And seq scans are off inside: the
-- session's generic plans are made once, often on a map of a few hundred rows (a
-- server starting on an empty database plans on its first manifests), and a seq scan
-- or a hash join over the table chosen then would stay for the session, growing with
-- the map (seen in 0004's: "Rows Removed by Filter" in the thousands under load). JIT
-- off with them: a plan holding a disabled seq scan costs more than jit_above_cost, and
-- compiling one took 120 ms per call. And generic plans, always: the plan cache kept
-- choosing custom plans for the statements over arrays (their generic estimate is never
-- below the custom ones), so each was planned again on every call -- a quarter of the
-- CPU of a next-generation manifest (perf: GetCachedPlan -> standard_planner). The
-- statements are written so that their generic plans are right for any size.
CREATE OR REPLACE FUNCTION cmdb_manifest_apply(m jsonb, src text, p_actor text,
                                               OUT report jsonb, OUT ops text[], OUT refs text[],
                                               OUT befores jsonb[], OUT afters jsonb[])
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET jit = off AS $$
DECLARE
    mn       cmdb_anode[];
    me       cmdb_aedge[];
    st_xmin  xid;             -- the source's source_state row as we start (NULL: none)
    st_stale boolean;
    now_xmin xid;
    bad      text;
    ids      uuid[];
    ids2     bigint[];
    lost     uuid[];          -- nodes the source asserted and no longer does
    gone     bigint[];        -- edges the source asserted and no longer does
    -- The change rows, in no order until sorted at the end: of the nodes and edges
    -- created, and of the tails' nodes and edges (four arrays, each built once: growing
    -- one array of images copied it each time).
    crn      cmdb_mrow[];
    cre      cmdb_mrow[];
    crtn     cmdb_mrow[];
    crte     cmdb_mrow[];
    -- The source as the type of node_sources/edge_sources.source, checked once: a text
    -- value is checked against the domain's two regexes in every row inserted (7% of a
    -- first import's CPU).
    asrt     cmdb_asserter := src;
    n_upd    int := 0;        -- named nodes updated
    e_upd    int := 0;        -- named edges updated
    e_rem    int := 0;        -- edges removed from the map
    orphaned jsonb := '[]';
    n        int;
BEGIN
    SELECT s.xmin, s.stale INTO st_xmin, st_stale FROM source_state s WHERE s.source = src;

    -- ==== Phase 1: parse, resolve, create; nothing shared is locked for writing ====

    -- Declared nodes (a ref named twice merges in order) and the endpoints of edges
    -- that are not declared (bare), with what the map holds of them.
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
    SELECT array_agg(ROW(w.ref, split_part(w.ref, '/', 1), substr(w.ref, strpos(w.ref, '/') + 1),
                         w.attributes, w.labels, n.id, false, coalesce(n.asserted, false),
                         coalesce(n.asserted AND (n.attributes || w.attributes <> n.attributes
                                                  OR n.labels || w.labels <> n.labels OR n.orphan),
                                  false))::cmdb_anode
                     ORDER BY w.ref COLLATE "C")
      INTO mn
      FROM want w
      LEFT JOIN LATERAL (
          SELECT n.id, n.attributes, n.labels, n.orphan,
                 EXISTS (SELECT 1 FROM node_sources s WHERE s.node_id = n.id AND s.source = src)
                     AS asserted
            FROM nodes n WHERE n.ref = w.ref OFFSET 0) n ON true;

    SELECT array_agg(ROW(x.f, x.t, x.d, x.attributes, NULL, NULL, NULL, false, false, false)::cmdb_aedge
                     ORDER BY x.f COLLATE "C", x.t COLLATE "C", x.d COLLATE "C"),
           min(cmdb_edge_ref(x.f, x.t, x.d) COLLATE "C") FILTER (WHERE x.f = x.d)
      INTO me, bad
      FROM (SELECT y.f, y.t, y.d, cmdb_jsonb_merge(coalesce(y.attributes, '{}') ORDER BY y.o) AS attributes
              FROM ROWS FROM (jsonb_to_recordset(coalesce(m->'edges', '[]'))
                              AS ("from" text, type text, "to" text, attributes jsonb))
                   WITH ORDINALITY AS y(f, t, d, attributes, o)
             GROUP BY y.f, y.t, y.d) x;
    IF bad IS NOT NULL THEN
        PERFORM cmdb_raise_reply(cmdb_error(422, 'unprocessable',
            'edge ' || bad || ' would connect a node to itself',
            jsonb_build_object('edge', bad)));
    END IF;

    -- Share-lock the existing nodes the tail will write without a foreign key having
    -- share-locked them for us: the asserted ones whose attributes or labels change, and
    -- the ones no longer asserted (found here); for a stale source every existing one
    -- it names. A node deleted since we read it: apply again.
    IF st_xmin IS NOT NULL THEN
        SELECT array_agg(s.node_id) INTO lost
          FROM node_sources s
         WHERE s.source = src
           AND NOT (s.node_id = ANY (ARRAY(SELECT w.id FROM unnest(mn) w WHERE w.id IS NOT NULL)));
        ids := ARRAY(SELECT w.id FROM unnest(mn) w WHERE w.id IS NOT NULL AND (w.visible OR st_stale))
               || lost;
        IF cardinality(ids) > 0 THEN
            SELECT count(*) INTO n FROM (SELECT 1 FROM nodes x WHERE x.id = ANY (ids) FOR KEY SHARE) l;
            IF n < cardinality(ids) THEN
                RAISE SQLSTATE '40001' USING MESSAGE = 'a node was deleted concurrently, retry the manifest';
            END IF;
        END IF;
        IF lost IS NOT NULL THEN
            DELETE FROM node_sources s WHERE s.source = src AND s.node_id = ANY (lost);
        END IF;
    END IF;

    -- Create the missing nodes, in ref order, with what the manifest says; their change
    -- rows' images come from the INSERT itself. A node another writer is creating at
    -- the same moment makes us wait for its commit (the unique index) and is then taken
    -- as existing: the tail adds the source to it.
    IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
        WITH ins AS (
            INSERT INTO nodes AS x (id, kind, name, attributes, labels, sources)
            SELECT gen_random_uuid(), w.kind, w.name, w.attributes, w.labels, jsonb_build_array(src)
              FROM unnest(mn) w WHERE w.id IS NULL ORDER BY w.ref COLLATE "C"
            ON CONFLICT (kind, name) DO NOTHING
            RETURNING x.id, x.ref, cmdb_node_json(x) AS img)
        SELECT array_agg(ROW(w.ref, w.kind, w.name, w.attributes, w.labels,
                             coalesce(w.id, i.id), i.id IS NOT NULL, w.asserted, w.visible)::cmdb_anode
                         ORDER BY w.ref COLLATE "C"),
               array_agg(ROW(1, w.ref, '', '', 'node.created', w.ref, NULL, i.img)::cmdb_mrow)
                   FILTER (WHERE i.id IS NOT NULL)
          INTO mn, crn
          FROM unnest(mn) w LEFT JOIN ins i ON i.ref = w.ref;
        IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
            SELECT array_agg(ROW(w.ref, w.kind, w.name, w.attributes, w.labels,
                                 coalesce(w.id, x.id), w.created, w.asserted, w.visible)::cmdb_anode
                             ORDER BY w.ref COLLATE "C")
              INTO mn
              FROM unnest(mn) w
              LEFT JOIN LATERAL (SELECT x.id FROM nodes x WHERE w.id IS NULL AND x.ref = w.ref
                                 OFFSET 0) x ON true;
            IF EXISTS (SELECT 1 FROM unnest(mn) w WHERE w.id IS NULL) THEN
                -- Created and deleted again while we waited: rare; start over.
                RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent node changes, retry the manifest';
            END IF;
        END IF;
    END IF;

    -- This source's own rows for the nodes it starts to assert. Their foreign key
    -- share-locks each node until we commit.
    INSERT INTO node_sources (node_id, source)
    SELECT w.id, asrt FROM unnest(mn) w WHERE NOT w.asserted;

    -- Edges: endpoints' ids, the existing edges' ids and what the source asserts.
    SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, f.id, t.id, x.id, false,
                         coalesce(x.asserted, false),
                         coalesce(x.asserted AND x.attributes || e.attributes <> x.attributes,
                                  false))::cmdb_aedge
                     ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
      INTO me
      FROM unnest(me) e
      JOIN unnest(mn) f ON f.ref = e.from_ref
      JOIN unnest(mn) t ON t.ref = e.to_ref
      LEFT JOIN LATERAL (
          SELECT x.id, x.attributes,
                 EXISTS (SELECT 1 FROM edge_sources s WHERE s.edge_id = x.id AND s.source = src)
                     AS asserted
            FROM edges x WHERE x.from_id = f.id AND x.type = e.type AND x.to_id = t.id
          OFFSET 0) x ON true;

    IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
        WITH ins AS (
            INSERT INTO edges AS x (from_id, type, to_id, attributes, sources)
            SELECT e.from_id, e.type, e.to_id, e.attributes, jsonb_build_array(src)
              FROM unnest(me) e WHERE e.id IS NULL
             ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C"
            ON CONFLICT (from_id, type, to_id) DO NOTHING
            RETURNING x AS r)
        SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, e.from_id, e.to_id,
                             coalesce(e.id, (i.r).id), (i.r).id IS NOT NULL, e.asserted,
                             e.visible)::cmdb_aedge
                         ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C"),
               array_agg(ROW(2, e.from_ref, e.type, e.to_ref, 'edge.created',
                             cmdb_edge_ref(e.from_ref, e.type, e.to_ref), NULL,
                             cmdb_edge_image(i.r, e.from_ref, e.to_ref))::cmdb_mrow)
                   FILTER (WHERE (i.r).id IS NOT NULL)
          INTO me, cre
          FROM unnest(me) e
          LEFT JOIN ins i ON (i.r).from_id = e.from_id AND (i.r).type = e.type AND (i.r).to_id = e.to_id;
        IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
            -- Created by a concurrent writer after our look-up: taken as existing (the
            -- tail adds the source to it).
            SELECT array_agg(ROW(e.from_ref, e.type, e.to_ref, e.attributes, e.from_id, e.to_id,
                                 coalesce(e.id, x.id), e.created, e.asserted, e.visible)::cmdb_aedge
                             ORDER BY e.from_ref COLLATE "C", e.type COLLATE "C", e.to_ref COLLATE "C")
              INTO me
              FROM unnest(me) e
              LEFT JOIN LATERAL (SELECT x.id FROM edges x
                                  WHERE e.id IS NULL AND x.from_id = e.from_id
                                    AND x.type = e.type AND x.to_id = e.to_id
                                 OFFSET 0) x ON true;
            IF EXISTS (SELECT 1 FROM unnest(me) e WHERE e.id IS NULL) THEN
                RAISE SQLSTATE '40001' USING MESSAGE = 'concurrent edge changes, retry the manifest';
            END IF;
        END IF;
    END IF;

    -- This source's own rows for the edges it starts to assert (their foreign key
    -- share-locks each edge). An edge another source removed since we read it fails
    -- the key: applied again (cmdb_apply_manifest turns the violation into 40001).
    INSERT INTO edge_sources (edge_id, source)
    SELECT e.id, asrt FROM unnest(me) e WHERE NOT e.asserted;

    -- Lock, in id order, the edges whose attributes change and the ones the source no
    -- longer asserts (found here; they may be removed, hence FOR UPDATE); a stale
    -- source share-locks every other existing edge it names first.
    IF st_xmin IS NOT NULL THEN
        IF st_stale THEN
            ids2 := ARRAY(SELECT e.id FROM unnest(me) e WHERE e.asserted AND NOT e.visible);
            SELECT count(*) INTO n FROM (SELECT 1 FROM edges x WHERE x.id = ANY (ids2) FOR KEY SHARE) l;
            IF n < cardinality(ids2) THEN
                RAISE SQLSTATE '40001' USING MESSAGE = 'an edge was deleted concurrently, retry the manifest';
            END IF;
        END IF;
        SELECT array_agg(s.edge_id) INTO gone
          FROM edge_sources s
         WHERE s.source = src AND NOT (s.edge_id = ANY (ARRAY(SELECT e.id FROM unnest(me) e)));
        ids2 := ARRAY(SELECT e.id FROM unnest(me) e WHERE e.visible) || gone;
        IF cardinality(ids2) > 0 THEN
            SELECT count(*) INTO n
              FROM (SELECT 1 FROM edges x WHERE x.id = ANY (ids2) ORDER BY x.id FOR UPDATE) l;
            IF n < cardinality(ids2) THEN
                RAISE SQLSTATE '40001' USING MESSAGE = 'an edge was deleted concurrently, retry the manifest';
            END IF;
        END IF;
        IF gone IS NOT NULL THEN
            DELETE FROM edge_sources s WHERE s.source = src AND s.edge_id = ANY (gone);
        END IF;
    END IF;

    -- ==== The tail: the shared rows that change, right before the counter ==========

    -- The source's row first: a hand delete of anything it asserts updated it (marked
    -- the source stale) since we started, or waits for us from now on.
    IF st_xmin IS NOT NULL THEN
        SELECT s.xmin INTO now_xmin FROM source_state s WHERE s.source = src FOR UPDATE;
        IF now_xmin IS DISTINCT FROM st_xmin THEN
            RAISE SQLSTATE '40001' USING MESSAGE = 'the source changed concurrently, retry the manifest';
        END IF;
    END IF;

    -- Nodes that change: the source joins them, their attributes or labels change, or
    -- the source leaves them (with no source left, orphans). Locked in ref order, then
    -- re-read at their latest version (a new statement's snapshot, after the locks),
    -- written and both images taken in one statement. (Locking and reading in one
    -- statement -- a whole-row lock returning the latest version -- cost 30% more: the
    -- row is flattened, toasted values and all, and copied through the sort.)
    ids := ARRAY(SELECT w.id FROM unnest(mn) w WHERE NOT w.created AND (NOT w.asserted OR w.visible))
           || lost;
    IF cardinality(ids) > 0 THEN
        PERFORM 1 FROM nodes x WHERE x.id = ANY (ids) ORDER BY x.ref FOR NO KEY UPDATE;
        WITH b AS MATERIALIZED (   -- inlined, it made a nested loop of nodes with itself
            SELECT x.id, x.ref, w.ref IS NULL AS lost, coalesce(w.asserted, true) AS asserted,
                   w.attributes, w.labels, x.orphan AS was_orphan, cmdb_node_json(x) AS before
              FROM nodes x LEFT JOIN unnest(mn) w ON w.id = x.id
             WHERE x.id = ANY (ids)
               AND (w.ref IS NULL OR NOT w.asserted OR x.orphan
                    OR x.attributes || w.attributes <> x.attributes OR x.labels || w.labels <> x.labels)),
        u AS (
            -- The new sources from the image's copy, not from x.sources: that is a toast
            -- pointer, detoasted again by every probe of cmdb_sources_add's binary search
            -- (a hub's list: ~10 fetches of its toast chunks). Unchanged values are the
            -- row's own (a toasted value assigned back is kept, not written again).
            UPDATE nodes x
               SET attributes = CASE WHEN b.lost OR b.attributes = '{}' THEN x.attributes
                                     ELSE x.attributes || b.attributes END,
                   labels = CASE WHEN b.lost OR b.labels = '{}' THEN x.labels
                                 ELSE x.labels || b.labels END,
                   sources = CASE WHEN b.lost THEN (b.before->'sources') - src
                                  WHEN b.asserted THEN x.sources
                                  ELSE cmdb_sources_add(b.before->'sources', src) END,
                   orphan = b.lost AND (b.before->'sources') - src = '[]'::jsonb,
                   version = x.version + 1,
                   updated_at = now(),
                   last_seen_at = CASE WHEN b.lost THEN x.last_seen_at ELSE now() END
              FROM b
             WHERE x.id = ANY (ids) AND x.id = b.id
            RETURNING b.lost, x.ref, x.orphan AND NOT b.was_orphan AS orphaned,
                      b.before, cmdb_node_json(x) AS after)
        SELECT array_agg(ROW(CASE WHEN u.lost THEN 4 ELSE 1 END, u.ref, '', '', 'node.updated',
                             u.ref, u.before, u.after)::cmdb_mrow),
               count(*) FILTER (WHERE NOT u.lost),
               coalesce(jsonb_agg(u.ref ORDER BY u.ref COLLATE "C") FILTER (WHERE u.lost AND u.orphaned),
                        '[]')
          INTO crtn, n_upd, orphaned
          FROM u;
    END IF;

    -- Edges that change: the source joins them, their attributes change, or the source
    -- leaves them (with no source left, removed).
    ids2 := ARRAY(SELECT e.id FROM unnest(me) e WHERE NOT e.created AND (NOT e.asserted OR e.visible))
            || gone;
    IF cardinality(ids2) > 0 THEN
        PERFORM 1 FROM edges y WHERE y.id = ANY (ids2) ORDER BY y.id FOR NO KEY UPDATE;
        WITH b AS (
            SELECT y.id, e.from_ref IS NULL AS gone, coalesce(e.asserted, true) AS asserted,
                   e.attributes, coalesce(e.from_ref, f.ref) AS from_ref,
                   coalesce(e.to_ref, t.ref) AS to_ref,
                   e.from_ref IS NULL AND y.sources - src = '[]'::jsonb AS removed,
                   cmdb_edge_image(y, coalesce(e.from_ref, f.ref), coalesce(e.to_ref, t.ref)) AS before
              FROM edges y
              LEFT JOIN unnest(me) e ON e.id = y.id
              LEFT JOIN LATERAL (SELECT f.ref FROM nodes f
                                  WHERE e.from_ref IS NULL AND f.id = y.from_id OFFSET 0) f ON true
              LEFT JOIN LATERAL (SELECT t.ref FROM nodes t
                                  WHERE e.from_ref IS NULL AND t.id = y.to_id OFFSET 0) t ON true
             WHERE y.id = ANY (ids2)
               AND (e.from_ref IS NULL OR NOT e.asserted OR y.attributes || e.attributes <> y.attributes)),
        u AS (
            UPDATE edges y
               SET attributes = CASE WHEN b.gone OR b.attributes = '{}' THEN y.attributes
                                     ELSE y.attributes || b.attributes END,
                   sources = CASE WHEN b.gone THEN (b.before->'sources') - src
                                  WHEN b.asserted THEN y.sources
                                  ELSE cmdb_sources_add(b.before->'sources', src) END,
                   updated_at = now()
              FROM b
             WHERE y.id = ANY (ids2) AND y.id = b.id AND NOT b.removed
            RETURNING b.gone, b.from_ref, y.type, b.to_ref, b.before,
                      cmdb_edge_image(y, b.from_ref, b.to_ref) AS after),
        d AS (
            DELETE FROM edges y
             USING b
             WHERE y.id = ANY (ids2) AND y.id = b.id AND b.removed
            RETURNING b.from_ref, y.type, b.to_ref, b.before),
        c AS (
            SELECT CASE WHEN u.gone THEN 3 ELSE 2 END AS part, u.from_ref, u.type, u.to_ref,
                   'edge.updated' AS op, u.before, u.after
              FROM u
            UNION ALL
            SELECT 3, d.from_ref, d.type, d.to_ref, 'edge.deleted', d.before, NULL
              FROM d)
        SELECT array_agg(ROW(c.part, c.from_ref, c.type, c.to_ref, c.op,
                             cmdb_edge_ref(c.from_ref, c.type, c.to_ref),
                             c.before, c.after)::cmdb_mrow),
               count(*) FILTER (WHERE c.part = 2),
               count(*) FILTER (WHERE c.op = 'edge.deleted')
          INTO crte, e_upd, e_rem
          FROM c;
    END IF;

    -- The report. Node counts cover the nodes the manifest declares or touches; edge
    -- counts cover its edges, plus the ones removed from the map.
    SELECT jsonb_build_object(
               'nodes', jsonb_build_object(
                   'created', count(*) FILTER (WHERE w.created),
                   'updated', n_upd,
                   'unchanged', count(*) FILTER (WHERE NOT w.created) - n_upd),
               'edges', (SELECT jsonb_build_object(
                   'created', count(*) FILTER (WHERE e.created),
                   'updated', e_upd,
                   'removed', e_rem,
                   'unchanged', count(*) FILTER (WHERE NOT e.created) - e_upd)
                         FROM unnest(me) e),
               'orphaned', orphaned)
      INTO report
      FROM unnest(mn) w;

    -- The change rows in the order they are numbered: nodes created or updated (ref
    -- order), edges created or updated, edges removed or withdrawn (edge ref order),
    -- then nodes no longer asserted (ref order). Sorted before the counter is taken.
    SELECT array_agg(c.op ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.ref ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.before ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C"),
           array_agg(c.after ORDER BY c.part, c.k1 COLLATE "C", c.k2 COLLATE "C", c.k3 COLLATE "C")
      INTO ops, refs, befores, afters
      FROM (SELECT * FROM unnest(crn) UNION ALL SELECT * FROM unnest(cre)
            UNION ALL SELECT * FROM unnest(crtn) UNION ALL SELECT * FROM unnest(crte)) c;
END
$$;
