-- The fast no-op (0004): cmdb_post_manifest() with the server's fingerprint answers an
-- identical re-post from the source's own row, writes no node, edge or change, and falls
-- back to the full apply whenever it must.
SELECT cmdb_test.reset();

DO $$
DECLARE
    m    jsonb := '{"manifest":"cmdb/v1","source":"cap:a","generation":3,
                    "deployment":{"node":"service/a","version":"1.0"},
                    "nodes":[{"ref":"service/a","attributes":{"x":1}}],
                    "edges":[{"from":"service/a","type":"depends_on","to":"service/dns"}]}';
    dep  jsonb := m->'deployment';
    r    jsonb;
    r2   jsonb;
    seen timestamptz;
    v    bigint;
    s0   bigint;
BEGIN
    r := cmdb_test.status(cmdb_post_manifest(m::text, 'cap:a', 't', 't', NULL, false, 'fp1', 3, dep, NULL),
                          200, 'first post applies in full');
    PERFORM cmdb_test.ok(r->>'seq' IS NOT NULL, 'first post logged changes');
    PERFORM cmdb_test.eq((SELECT manifest_hash FROM source_state WHERE source = 'cap:a'), 'fp1',
                         'the server''s fingerprint is stored');
    PERFORM cmdb_test.eq(r #>> '{sighting,source}', 'cap:a', 'a sighting comes back');
    seen := (SELECT last_applied_at FROM source_state WHERE source = 'cap:a');
    v := (SELECT version FROM nodes WHERE name = 'dns');
    s0 := (SELECT last FROM change_seq);
    COMMIT;

    -- Identical re-post: the fast path.
    r2 := cmdb_test.status(cmdb_post_manifest('not json: never parsed', 'cap:a', 't', 't', NULL, false, 'fp1', 3, dep, NULL),
                           200, 'identical re-post');
    PERFORM cmdb_test.eq(r2->'seq', 'null', 'no-op: no seq');
    PERFORM cmdb_test.eq(r2 #> '{body,nodes}', '{"created":0,"updated":0,"unchanged":2}', 'no-op report: nodes');
    PERFORM cmdb_test.eq(r2 #> '{body,edges}', '{"created":0,"updated":0,"removed":0,"unchanged":1}', 'no-op report: edges');
    PERFORM cmdb_test.ok(r2 #>> '{body,deployment_id}' IS NOT NULL, 'no-op: a deployment');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), s0, 'no-op: nothing logged');
    PERFORM cmdb_test.eq((SELECT version FROM nodes WHERE name = 'dns'), v, 'no-op: hub not written');
    PERFORM cmdb_test.ok((SELECT last_applied_at FROM source_state WHERE source = 'cap:a') > seen,
                         'no-op: the sighting moves last_applied_at');
    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments WHERE source = 'cap:a'), 2::bigint, 'two deployments');
    PERFORM cmdb_test.eq((SELECT version FROM deployments WHERE id = (r2 #>> '{body,deployment_id}')::uuid),
                         '1.0', 'the deployment row has the manifest''s fields');
    PERFORM cmdb_test.ok((SELECT last_seen_at FROM nodes WHERE name = 'dns')
                         < (SELECT last_applied_at FROM source_state WHERE source = 'cap:a'),
                         'the stored column is not written');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'dns') #>> '{body,last_seen_at}',
                         cmdb_ts((SELECT last_applied_at FROM source_state WHERE source = 'cap:a')),
                         'GET derives last_seen_at from the source''s last apply');

    -- A dry run and an idempotency key take the full path (which parses the body).
    r2 := cmdb_test.status(cmdb_post_manifest(m::text, 'cap:a', 't', 't', NULL, true, 'fp1', 3, dep, NULL),
                           200, 'dry run of the same');
    PERFORM cmdb_test.eq(r2 #> '{body,deployment_id}', 'null', 'dry run: no deployment');
    r2 := cmdb_test.status(cmdb_post_manifest(m::text, 'cap:a', 't', 't', 'k1', false, 'fp1', 3, dep, NULL),
                           200, 'with a key');
    PERFORM cmdb_test.eq(r2->'seq', 'null', 'with a key: still a no-op');
    PERFORM cmdb_test.eq((SELECT count(*) FROM idempotency WHERE key = 'k1'), 1::bigint, 'with a key: stored');

    -- Another fingerprint with the same generation: the full path answers 409.
    r2 := cmdb_test.status(cmdb_post_manifest((m || '{"extensions":{"x":1}}')::text, 'cap:a', 't', 't', NULL, false,
                                              'fp2', 3, dep, '{"x":1}'), 409, 'same generation, other body', 'conflict');

    -- A hand delete of what the source asserts makes the next identical post apply in full.
    PERFORM cmdb_test.status(cmdb_node_delete('service', 'dns', NULL, 'alice', 'api:alice'), 204, 'hand delete');
    r2 := cmdb_test.status(cmdb_post_manifest(m::text, 'cap:a', 't', 't', NULL, false, 'fp1', 3, dep, NULL),
                           200, 're-post after a hand delete');
    PERFORM cmdb_test.ok(r2->>'seq' IS NOT NULL, 'stale: applied in full');
    PERFORM cmdb_test.eq(r2 #> '{body,nodes,created}', '1', 'stale: the deleted node is back');
    PERFORM cmdb_test.eq((SELECT stale FROM source_state WHERE source = 'cap:a'), false, 'no longer stale');

    -- Another server fingerprint for the very same body (a source applied before 0004,
    -- or by a server that fingerprints differently): the same body by its jsonb hash, so
    -- a no-op, never a 409 for the equal generation; the new fingerprint is kept.
    UPDATE source_state SET manifest_hash = 'legacy' WHERE source = 'cap:a';
    r2 := cmdb_test.status(cmdb_post_manifest(m::text, 'cap:a', 't', 't', NULL, false, 'fp-new', 3, dep, NULL),
                           200, 'same body, other fingerprint');
    PERFORM cmdb_test.eq(r2->'seq', 'null', 'other fingerprint: still the no-op');
    PERFORM cmdb_test.eq((SELECT manifest_hash FROM source_state WHERE source = 'cap:a'), 'fp-new',
                         'the new fingerprint is stored');
    r2 := cmdb_test.status(cmdb_post_manifest('not json', 'cap:a', 't', 't', NULL, false, 'fp-new', 3, dep, NULL),
                           200, 'and the next re-post takes the fast path');

    -- An unknown source is never a no-op.
    r2 := cmdb_test.status(cmdb_post_manifest('{"manifest":"cmdb/v1","source":"cap:b"}', 'cap:b', 't', 't', NULL, false,
                                              'fp1', NULL, NULL, NULL), 200, 'unknown source');
    PERFORM cmdb_test.eq((SELECT manifest_hash FROM source_state WHERE source = 'cap:b'), 'fp1', 'applied and stored');
END
$$;
