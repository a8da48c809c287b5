-- 0008_history.sql — the map of a past moment and the difference between two
-- (SPEC §5 "As of", "Diff"). Read-only functions over the change log; nothing that
-- writes changes. cmdbd/DESIGN.md "History" says how the server uses them.

-- The image of a node or edge as of a seq: its latest change row at or before it.
CREATE INDEX changes_ref_seq_idx ON changes (ref, seq);
-- as_of=TIME: the greatest seq whose at <= TIME (cmdb_history_point), by index-only
-- scans from either end: the seq index carries `at` (rebuilt: the same unique
-- constraint, wider) and a new at index carries seq.
ALTER TABLE changes DROP CONSTRAINT changes_seq_key,
    ADD CONSTRAINT changes_seq_key UNIQUE (seq) INCLUDE (at);
CREATE INDEX changes_at_idx ON changes (at) INCLUDE (seq);

-- The seq a point of history names, as the reply's {"seq","at"}: p_seq (clamped to
-- p_applied, the latest seq this server has applied), or the greatest seq <= p_applied
-- whose at <= p_time. 0 (at NULL) when there is no such change: the empty map.
--
-- `at` is a transaction's start time and seq its commit order, so at is not monotonic
-- in seq and no index answers "the greatest seq whose at <= T" directly: the rows after
-- it must be seen to have at > T. So the cheaper side is read, index-only: for a recent
-- T, the seq index backwards from p_applied down to the first row old enough; for an
-- old T, every row with at <= T by the at index. Which side is smaller is judged by the
-- seq of the row with the greatest at <= T (one probe). Custom plans only: a generic
-- plan would pick one access path for every time. cmdbd caches the answer per TIME
-- (history.c), so this runs once per moment asked about.
CREATE FUNCTION cmdb_history_point(p_seq bigint, p_time timestamptz, p_applied bigint)
RETURNS TABLE (seq bigint, at text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    s  bigint;
    s0 bigint;
BEGIN
    IF p_seq IS NOT NULL THEN
        s := least(p_seq, p_applied);
    ELSE
        SELECT c.seq INTO s0 FROM changes c WHERE c.at <= p_time ORDER BY c.at DESC LIMIT 1;
        IF s0 IS NULL THEN
            s := 0;
        ELSIF p_applied - s0 <= s0 THEN
            SELECT c.seq INTO s FROM changes c
             WHERE c.at <= p_time AND c.seq <= p_applied
             ORDER BY c.seq DESC LIMIT 1;
        ELSE
            SELECT max(c.seq + 0) INTO s FROM changes c
             WHERE c.at <= p_time AND c.seq <= p_applied;
        END IF;
    END IF;
    s := coalesce(greatest(s, 0), 0);
    RETURN QUERY SELECT s, (SELECT cmdb_ts(c.at) FROM changes c WHERE c.seq = s);
END
$$;

-- A point given as text, as /v1/diff takes it: digits = a seq, 'deployment:<uuid>' =
-- the state just before (p_from) or just after that deployment's changes, else an
-- RFC 3339 time (the caller checked the syntax). NULL: no such deployment.
--
-- A deployment row keeps the LAST seq of its changes; its change rows are numbered
-- consecutively in its one transaction and carry its source and its now() (= the
-- row's applied_at), so the first is found by walking back from the last while they
-- match (a manifest writes at most ~40k rows). A deployment that changed nothing
-- (seq NULL) is the point of its applied_at, for both ends.
CREATE FUNCTION cmdb_history_resolve(p_spec text, p_from boolean, p_applied bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    d deployments;
    s bigint;
BEGIN
    IF p_spec ~ '^[0-9]+$' THEN
        RETURN (SELECT h.seq FROM cmdb_history_point(p_spec::bigint, NULL, p_applied) h);
    ELSIF p_spec LIKE 'deployment:%' THEN
        SELECT * INTO d FROM deployments WHERE id = substr(p_spec, 12)::uuid;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF d.seq IS NULL THEN
            RETURN (SELECT h.seq FROM cmdb_history_point(NULL, d.applied_at, p_applied) h);
        ELSIF NOT p_from THEN
            RETURN least(d.seq, p_applied);
        END IF;
        SELECT coalesce(max(c.seq), greatest(d.seq - 100000, 0)) INTO s FROM changes c
         WHERE c.seq <= d.seq AND c.seq > greatest(d.seq - 100000, 0)
           AND (c.at <> d.applied_at OR c.source <> d.source);
        RETURN least(s, p_applied);
    END IF;
    RETURN (SELECT h.seq FROM cmdb_history_point(NULL, p_spec::timestamptz, p_applied) h);
END
$$;

-- The after images (non-null) of the given node (p_edges false) or edge refs as of
-- p_seq, edges ordered by (from, type, to) and nodes by ref, byte order.
CREATE FUNCTION cmdb_history_images(p_refs text[], p_edges boolean, p_seq bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(x.after ORDER BY x.after->>'from' COLLATE "C",
                              x.after->>'type' COLLATE "C", x.after->>'to' COLLATE "C",
                              x.after->>'ref' COLLATE "C"), '[]'::jsonb)
      FROM unnest(p_refs) AS r(ref)
      CROSS JOIN LATERAL (SELECT c.after FROM changes c
                           WHERE c.ref = r.ref AND c.seq <= p_seq
                             AND (c.op LIKE 'edge.%') = p_edges
                           ORDER BY c.seq DESC LIMIT 1) x
     WHERE x.after IS NOT NULL
$$;

-- GET /v1/diff: what changed between two points (SPEC §5). The first and the last
-- change of every ref in (from, to] give its image at both ends; a node that is there
-- at both ends and differs is "changed", with the names of the fields that differ.
-- Reply as every cmdb_ function replies (DESIGN.md, "The C <-> SQL contract").
CREATE FUNCTION cmdb_diff(p_from text, p_to text, p_applied bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lo bigint := cmdb_history_resolve(p_from, true, p_applied);
    hi bigint := cmdb_history_resolve(coalesce(p_to, p_applied::text), false, p_applied);
    body jsonb;
BEGIN
    IF lo IS NULL OR hi IS NULL THEN
        RETURN cmdb_error(404, 'not_found',
                          format('deployment %s not found',
                                 substr(CASE WHEN lo IS NULL THEN p_from ELSE p_to END, 12)),
                          jsonb_build_object('field', CASE WHEN lo IS NULL THEN 'from'
                                                           ELSE 'to' END));
    END IF;
    IF lo > hi THEN
        RETURN cmdb_error(400, 'bad_request',
                          format('from (seq %s) is after to (seq %s)', lo, hi),
                          jsonb_build_object('field', 'from'));
    END IF;
    WITH r AS (SELECT c.seq, c.ref, c.op LIKE 'node.%' AS is_node, c.before, c.after
                 FROM changes c WHERE c.seq > lo AND c.seq <= hi),
         f AS (SELECT DISTINCT ON (ref, is_node) ref, is_node, before FROM r
                ORDER BY ref, is_node, seq),
         l AS (SELECT DISTINCT ON (ref, is_node) ref, is_node, after FROM r
                ORDER BY ref, is_node, seq DESC),
         d AS (SELECT f.ref, f.is_node, f.before AS b, l.after AS a,
                      CASE WHEN f.is_node AND f.before IS NOT NULL AND l.after IS NOT NULL THEN
                          (SELECT coalesce(jsonb_agg(k ORDER BY k), '[]'::jsonb)
                             FROM (SELECT jsonb_object_keys(f.before) AS k
                                   UNION SELECT jsonb_object_keys(l.after)) ks
                            WHERE f.before->k IS DISTINCT FROM l.after->k)
                      END AS fields
                 FROM f JOIN l USING (ref, is_node))
    SELECT jsonb_build_object(
        'nodes', jsonb_build_object(
            'added', coalesce((SELECT jsonb_agg(ref ORDER BY ref COLLATE "C") FROM d
                                WHERE is_node AND b IS NULL AND a IS NOT NULL), '[]'::jsonb),
            'removed', coalesce((SELECT jsonb_agg(ref ORDER BY ref COLLATE "C") FROM d
                                  WHERE is_node AND b IS NOT NULL AND a IS NULL), '[]'::jsonb),
            'changed', coalesce((SELECT jsonb_agg(jsonb_build_object('ref', ref, 'fields', fields)
                                                  ORDER BY ref COLLATE "C") FROM d
                                  WHERE is_node AND fields <> '[]'::jsonb), '[]'::jsonb)),
        'edges', jsonb_build_object(
            'added', coalesce((SELECT jsonb_agg(a ORDER BY a->>'from' COLLATE "C",
                                                a->>'type' COLLATE "C", a->>'to' COLLATE "C")
                                 FROM d WHERE NOT is_node AND b IS NULL AND a IS NOT NULL),
                              '[]'::jsonb),
            'removed', coalesce((SELECT jsonb_agg(b ORDER BY b->>'from' COLLATE "C",
                                                  b->>'type' COLLATE "C", b->>'to' COLLATE "C")
                                   FROM d WHERE NOT is_node AND b IS NOT NULL AND a IS NULL),
                                '[]'::jsonb),
            'changed', coalesce((SELECT jsonb_agg(a ORDER BY a->>'from' COLLATE "C",
                                                  a->>'type' COLLATE "C", a->>'to' COLLATE "C")
                                   FROM d WHERE NOT is_node AND b IS NOT NULL AND a IS NOT NULL
                                          AND a <> b), '[]'::jsonb)))
      INTO body;
    RETURN cmdb_reply(200,
        jsonb_build_object(
            'from', jsonb_build_object('seq', lo,
                                       'at', (SELECT cmdb_ts(c.at) FROM changes c WHERE c.seq = lo)),
            'to', jsonb_build_object('seq', hi,
                                     'at', (SELECT cmdb_ts(c.at) FROM changes c WHERE c.seq = hi)))
        || body, NULL, NULL);
END
$$;
