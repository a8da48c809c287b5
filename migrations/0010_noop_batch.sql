-- 0010_noop_batch: identical re-posts share a commit (issue 7).
--
-- One commit per re-post bounds the no-op at the disk's flush rate (one fdatasync loop
-- here: ~3,700/s; pgbench -N ~2,300 tps). The server keeps, per source, the fingerprint
-- of its last applied manifest (learned from its replies and from the sightings poll)
-- and sends the re-posts that match it together, in one call of this function: one
-- statement, one transaction, one commit for all (cmdbd/DESIGN.md, "The manifest write
-- path"). Adds one function; redefines none.

-- items: a JSON array, one element per re-post, each an array
--   [source, fingerprint, generation, deployment, extensions, actor, ttl seconds]
-- (generation, deployment, extensions and ttl may be null), as cmdb_post_manifest_ttl
-- takes them. Returns one row per item, in item order from 0: its reply exactly as
-- cmdb_post_manifest_ttl would give it for the fast no-op (cmdb_manifest_noop's, with its
-- "sighting"), or NULL when the item is not a no-op here and now — then the server posts
-- it again alone, through cmdb_post_manifest_ttl, which decides in full.
--
-- An item is a no-op under cmdb_manifest_noop's rules: its fingerprint is the one the
-- source's row holds and the source is not stale; and under cmdb_post_manifest_ttl's,
-- which after a no-op stores the manifest's ttl and ends an expiry: here the row's ttl
-- must already be the item's and the source not expired (else that write is needed, and
-- the full path makes it). Each source's row gets the sighting (last_applied_at), each
-- item its deployments row.
--
-- Locks: just the sources' own rows, as the single no-op takes them (in source byte
-- order), and only those free at once (SKIP LOCKED). A row another transaction holds
-- belongs to an apply, an expiry or a hand delete of that source under way: its items
-- come back NULL and wait for it on the full path alone, rather than hold up the whole
-- batch. So a batch never waits on a row lock and takes part in no deadlock.
CREATE FUNCTION cmdb_manifest_noop_batch(items jsonb)
RETURNS TABLE (item int, reply jsonb)
LANGUAGE plpgsql AS $$
-- PL/pgSQL for its plan kept across calls (see cmdb_manifest_noop, 0004); one statement.
-- Sources are looked up through arrays (= ANY): each row by its key, never by a scan.
-- Planning the statement costs more than running it on a few items (~0.9 ms); its
-- estimates do not depend on the items (a function scan, arrays of InitPlans), so
-- after its first five calls in a session PL/pgSQL keeps the generic plan
-- (pg_stat_statements with track_planning on: 6 plans in 220 calls of a session).
DECLARE
    sighted text := cmdb_ts(now()); -- the sighting of every item: the transaction's time
BEGIN
    RETURN QUERY
    WITH it AS MATERIALIZED (
        SELECT (e.ord - 1)::int AS i, e.x->>0 AS src, e.x->>1 AS mhash,
               (e.x->>2)::bigint AS gen, nullif(e.x->3, 'null') AS dep,
               nullif(e.x->4, 'null') AS ext, e.x->>5 AS actor,
               (e.x->>6)::bigint * interval '1 second' AS ttl
          FROM jsonb_array_elements(items) WITH ORDINALITY AS e(x, ord)),
    -- The sources' rows that are free now, locked in byte order (the inner ARRAY, run
    -- once before the UPDATE reads); the UPDATE then checks each on its latest version.
    seen AS (
        UPDATE source_state s SET last_applied_at = greatest(s.last_applied_at, now())
         WHERE s.source = ANY (ARRAY(
                   SELECT l.source FROM source_state l
                    WHERE l.source = ANY (ARRAY(SELECT e->>0 FROM jsonb_array_elements(items) e))
                    ORDER BY l.source COLLATE "C"
                      FOR NO KEY UPDATE SKIP LOCKED))
           AND NOT s.stale AND s.expired_at IS NULL
           AND EXISTS (SELECT 1 FROM it
                        WHERE it.src = s.source AND it.mhash = s.manifest_hash
                          AND it.ttl IS NOT DISTINCT FROM s.ttl)
        RETURNING s.source, s.manifest_hash, s.ttl, cmdb_manifest_noop_report(s.last_report) AS report),
    ok AS MATERIALIZED (
        SELECT it.*, seen.report, gen_random_uuid() AS dep_id
          FROM it JOIN seen ON seen.source = it.src AND seen.manifest_hash = it.mhash
                           AND seen.ttl IS NOT DISTINCT FROM it.ttl),
    ins AS (
        INSERT INTO deployments (id, source, node, version, revision, environment, actor,
                                 status, started_at, finished_at, applied_at, seq,
                                 generation, report, extensions)
        SELECT ok.dep_id, ok.src, ok.dep->>'node', ok.dep->>'version', ok.dep->>'revision',
               ok.dep->>'environment', coalesce(ok.dep->>'actor', ok.actor), ok.dep->>'status',
               (ok.dep->>'started_at')::timestamptz, (ok.dep->>'finished_at')::timestamptz,
               now(), NULL, ok.gen, ok.report, ok.ext
          FROM ok)
    -- cmdb_reply(200, body, NULL, NULL) || {"sighting"}, spelled out: a call of it per
    -- item is not inlined (its body argument is used twice) and costs more than the rest.
    SELECT it.i,
           CASE WHEN ok.dep_id IS NOT NULL THEN
               jsonb_build_object(
                   'status', 200, 'seq', NULL,
                   'body', jsonb_build_object('deployment_id', ok.dep_id, 'seq', NULL) || ok.report,
                   'sighting', jsonb_build_object('source', it.src, 'at', sighted))
           END
      FROM it LEFT JOIN ok ON ok.i = it.i
     ORDER BY it.i;
END
$$;

-- An IMMUTABLE SQL function whose body is only STABLE (jsonb_build_object) is never
-- inlined, so each item paid a function call for its report; like cmdb_ts in 0004.
ALTER FUNCTION cmdb_manifest_noop_report(jsonb) STABLE;
