-- Staleness (0007): the manifest ttl stored by cmdb_post_manifest_ttl(), the sweep
-- (expiry as an empty manifest, orphan purge), nodes.orphan_since kept by its trigger,
-- and what an expired source's next manifest does. Time passes by moving the stored
-- times back, not by sleeping.
SELECT cmdb_test.reset();

DO $$
DECLARE
    m    text := '{"manifest":"cmdb/v1","source":"cron:a","ttl":"1m",
                   "nodes":[{"ref":"service/a"}],
                   "edges":[{"from":"service/a","type":"depends_on","to":"database/shared"}]}';
    b    text := '{"manifest":"cmdb/v1","source":"ci:b",
                   "edges":[{"from":"service/b","type":"depends_on","to":"database/shared"}]}';
    r    jsonb;
    s0   bigint;
    fp   text := 'fp-a';
BEGIN
    r := cmdb_test.status(cmdb_post_manifest_ttl(m, 'cron:a', 't', 't', 'key1', false, fp, NULL, NULL, NULL, 60),
                          200, 'post with a ttl');
    PERFORM cmdb_test.eq((SELECT ttl FROM source_state WHERE source = 'cron:a'), interval '60 seconds',
                         'the ttl is stored');
    PERFORM cmdb_test.status(cmdb_post_manifest_ttl(b, 'ci:b', 't', 't', NULL, false, 'fp-b', NULL, NULL, NULL, NULL),
                             200, 'post without a ttl');
    PERFORM cmdb_test.eq((SELECT ttl FROM source_state WHERE source = 'ci:b'), NULL::interval, 'no ttl');
    -- A plan, and a refused manifest, store nothing.
    PERFORM cmdb_test.status(cmdb_post_manifest_ttl(b, 'ci:b', 't', 't', NULL, true, 'fp-b2', NULL, NULL, NULL, 5),
                             200, 'dry run');
    PERFORM cmdb_test.eq((SELECT ttl FROM source_state WHERE source = 'ci:b'), NULL::interval, 'dry run: no ttl');
    PERFORM cmdb_test.eq(cmdb_duration_text(interval '36 hours'), '36h', 'duration text: hours');
    PERFORM cmdb_test.eq(cmdb_duration_text(interval '7 days'), '7d', 'duration text: days');
    PERFORM cmdb_test.eq(cmdb_duration_text(interval '90 minutes'), '90m', 'duration text: minutes');
    PERFORM cmdb_test.eq(cmdb_duration_text(interval '61 seconds'), '61s', 'duration text: seconds');

    -- Nothing is due.
    r := cmdb_test.status(cmdb_sweep(NULL, NULL), 200, 'sweep, nothing due');
    PERFORM cmdb_test.eq(r->'body', '{"swept":true,"more":false}', 'nothing due: more false');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'nothing due: no seq');

    -- cron:a's minute passes. ci:b has no ttl and the server none: it never expires.
    UPDATE source_state SET last_applied_at = last_applied_at - interval '61 seconds'
     WHERE source IN ('cron:a', 'ci:b');
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_sweep(NULL, NULL), 200, 'sweep expires cron:a');
    PERFORM cmdb_test.eq(r #>> '{body,expired}', 'cron:a', 'the expired source');
    PERFORM cmdb_test.eq(r #> '{body,more}', 'true', 'more: call again');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[
        (s0 + 1) || ' edge.deleted service/a depends_on database/shared',
        (s0 + 2) || ' node.updated database/shared',
        (s0 + 3) || ' node.updated service/a'], 'the changes of an empty manifest');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 3, 'the reply''s seq');
    PERFORM cmdb_test.eq((SELECT array_agg(DISTINCT actor || ' ' || source) FROM changes WHERE seq > s0),
                         ARRAY['cmdbd cron:a'], 'actor cmdbd, source the expired one');
    PERFORM cmdb_test.eq((SELECT orphan FROM nodes WHERE name = 'a'), true, 'service/a: an orphan');
    PERFORM cmdb_test.ok((SELECT orphan_since FROM nodes WHERE name = 'a') IS NOT NULL,
                         'service/a: orphan_since set');
    PERFORM cmdb_test.eq((SELECT orphan FROM nodes WHERE name = 'shared'), false,
                         'database/shared: ci:b still asserts it');
    PERFORM cmdb_test.eq((SELECT orphan_since FROM nodes WHERE name = 'shared'), NULL::timestamptz,
                         'database/shared: no orphan_since');
    PERFORM cmdb_test.ok((SELECT expired_at IS NOT NULL AND stale FROM source_state WHERE source = 'cron:a'),
                         'cron:a: expired and stale');
    r := cmdb_test.status(cmdb_sources(NULL, 10, NULL), 200, 'sources');
    PERFORM cmdb_test.eq((r #> '{body,items,1}') - 'last_applied_at'::text - 'expires_at'::text,
                         '{"source":"cron:a","generation":null,"ttl":"1m","expired":true,"nodes":0,"edges":0}'::jsonb,
                         'sources: cron:a');
    PERFORM cmdb_test.eq((r #> '{body,items,0}') - 'last_applied_at'::text,
                         '{"source":"ci:b","generation":null,"ttl":null,"expires_at":null,"expired":false,"nodes":2,"edges":1}'::jsonb,
                         'sources: ci:b');

    -- Done: a second sweep finds nothing; a server default of 2 minutes leaves ci:b be.
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_sweep(interval '2 minutes', NULL), 200, 'sweep again');
    PERFORM cmdb_test.eq(r->'body', '{"swept":true,"more":false}', 'expired once');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), s0, 'nothing logged');

    -- The idempotent replay of cron:a's first post is an answer, not an apply: the
    -- source stays expired.
    r := cmdb_test.status(cmdb_post_manifest_ttl(m, 'cron:a', 't', 't', 'key1', false, fp, NULL, NULL, NULL, 60),
                          200, 'replay');
    PERFORM cmdb_test.ok(NOT r ? 'sighting', 'a replay is no sighting');
    PERFORM cmdb_test.ok((SELECT expired_at IS NOT NULL FROM source_state WHERE source = 'cron:a'),
                         'still expired after a replay');

    -- The very same manifest again (same fingerprint): applied in full, not the no-op.
    r := cmdb_test.status(cmdb_post_manifest_ttl(m, 'cron:a', 't', 't', NULL, false, fp, NULL, NULL, NULL, 60),
                          200, 're-post after expiry');
    PERFORM cmdb_test.ok(r #>> '{body,seq}' IS NOT NULL, 're-post: changes logged');
    PERFORM cmdb_test.eq(r #> '{body,edges,created}', '1', 're-post: the edge is back');
    PERFORM cmdb_test.ok((SELECT expired_at IS NULL AND NOT stale FROM source_state WHERE source = 'cron:a'),
                         'live again');
    PERFORM cmdb_test.eq((SELECT orphan::text || coalesce(orphan_since::text, '-') FROM nodes WHERE name = 'a'),
                         'false-', 'service/a: asserted again, orphan_since cleared');

    -- The server default expires ci:b (no ttl of its own).
    r := cmdb_test.status(cmdb_sweep(interval '1 minute', NULL), 200, 'sweep with a default ttl');
    PERFORM cmdb_test.eq(r #>> '{body,expired}', 'ci:b', 'ci:b expired by the default');
    PERFORM cmdb_test.eq((SELECT orphan FROM nodes WHERE name = 'b'), true, 'service/b: an orphan');
END
$$;

-- Orphan purge.
DO $$
DECLARE
    r  jsonb;
    s0 bigint;
BEGIN
    -- Not long enough, or purge off: nothing.
    r := cmdb_test.status(cmdb_sweep(NULL, interval '1 hour'), 200, 'purge, none old enough');
    PERFORM cmdb_test.eq(r #> '{body,more}', 'false', 'nothing purged');
    UPDATE nodes SET orphan_since = orphan_since - interval '2 hours' WHERE name = 'b';
    r := cmdb_test.status(cmdb_sweep(NULL, NULL), 200, 'purge off');
    PERFORM cmdb_test.eq(r #> '{body,more}', 'false', 'purge off: nothing purged');

    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_sweep(NULL, interval '1 hour'), 200, 'purge');
    PERFORM cmdb_test.eq(r #>> '{body,purged}', 'service/b', 'service/b purged');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[(s0 + 1) || ' node.deleted service/b'],
                         'logged as a delete');
    PERFORM cmdb_test.eq((SELECT actor || ' ' || source FROM changes WHERE seq = s0 + 1),
                         'cmdbd cmdbd:orphan-purge', 'by cmdbd');
    PERFORM cmdb_test.eq((SELECT (before->>'orphan')::boolean FROM changes WHERE seq = s0 + 1), true,
                         'history keeps the orphan');
    PERFORM cmdb_test.eq((SELECT count(*) FROM nodes WHERE name = 'b'), 0::bigint, 'gone from the map');
    r := cmdb_test.status(cmdb_sweep(NULL, interval '1 hour'), 200, 'purge again');
    PERFORM cmdb_test.eq(r #> '{body,more}', 'false', 'nothing more');

    -- A hand edit of an orphan clears it, and orphan_since with it.
    UPDATE source_state SET last_applied_at = last_applied_at - interval '2 minutes', expired_at = NULL
     WHERE source = 'cron:a';
    PERFORM cmdb_test.status(cmdb_sweep(NULL, NULL), 200, 'expire cron:a again');
    PERFORM cmdb_test.ok((SELECT orphan_since IS NOT NULL FROM nodes WHERE name = 'a'), 'orphan again');
    PERFORM cmdb_test.status(cmdb_node_put('service', 'a', '{"x":1}', NULL, NULL, 'me', 'api:me'),
                             200, 'hand edit of an orphan');
    PERFORM cmdb_test.eq((SELECT orphan::text || coalesce(orphan_since::text, '-') FROM nodes WHERE name = 'a'),
                         'false-', 'hand edit clears orphan_since');
END
$$;
