-- Identical re-posts in one commit (0010): cmdb_manifest_noop_batch() answers each item
-- as cmdb_post_manifest_ttl() answers a fast no-op, writes one deployments row per item
-- and the sighting per source, logs nothing, and refuses (NULL) every item the single
-- call would not answer as a no-op: another fingerprint, an unknown, stale or expired
-- source, another ttl.
SELECT cmdb_test.reset();

DO $$
DECLARE
    ma   text := '{"manifest":"cmdb/v1","source":"cap:a","generation":2,
                   "deployment":{"node":"service/a","version":"1.0"},
                   "nodes":[{"ref":"service/a"}],
                   "edges":[{"from":"service/a","type":"depends_on","to":"service/dns"}]}';
    mb   text := '{"manifest":"cmdb/v1","source":"cap:b","ttl":"1h",
                   "edges":[{"from":"service/b","type":"depends_on","to":"service/dns"}]}';
    dep  jsonb := '{"node":"service/a","version":"1.0"}';
    one  jsonb;
    r    jsonb[];
    s0   bigint;
    n0   bigint;
    seen timestamptz;
    v    bigint;
BEGIN
    PERFORM cmdb_test.status(cmdb_post_manifest_ttl(ma, 'cap:a', 't', 't', NULL, false, 'fa', 2, dep, NULL, NULL),
                             200, 'apply cap:a');
    PERFORM cmdb_test.status(cmdb_post_manifest_ttl(mb, 'cap:b', 't', 't', NULL, false, 'fb', NULL, NULL, NULL, 3600),
                             200, 'apply cap:b with a ttl');
    -- The single no-op's reply, to compare the batch's with.
    one := cmdb_test.status(cmdb_post_manifest_ttl('not json: never parsed', 'cap:a', 't', 't', NULL, false, 'fa', 2,
                                                   dep, NULL, NULL), 200, 'the single no-op');
    PERFORM cmdb_test.ok(one ? 'sighting', 'the single no-op is a sighting');
    COMMIT;

    s0 := (SELECT last FROM change_seq);
    n0 := (SELECT count(*) FROM deployments);
    seen := (SELECT last_applied_at FROM source_state WHERE source = 'cap:a');
    v := (SELECT version FROM nodes WHERE name = 'dns');
    SELECT array_agg(b.reply ORDER BY b.item) INTO r FROM cmdb_manifest_noop_batch(
        '[["cap:a", "fa", 2, {"node":"service/a","version":"1.0"}, null, "t", null],
          ["cap:b", "fb", null, null, {"x":1}, "robot", 3600],
          ["cap:a", "fa", 2, {"node":"service/a","version":"1.0","actor":"ci"}, null, "t", null],
          ["cap:a", "other", 3, null, null, "t", null],
          ["cap:z", "fz", null, null, null, "t", null],
          ["cap:b", "fb", null, null, null, "t", 60],
          ["cap:b", "fb", null, null, null, "t", null]]'::jsonb) b;
    PERFORM cmdb_test.eq(cardinality(r), 7, 'one row per item');

    -- The no-ops: the single call's reply but for the deployment id and the time.
    PERFORM cmdb_test.eq(r[1] #- '{body,deployment_id}' #- '{sighting,at}',
                         one #- '{body,deployment_id}' #- '{sighting,at}', 'item 0: the single no-op''s reply');
    PERFORM cmdb_test.eq(r[2] #> '{body,edges}', '{"created":0,"updated":0,"removed":0,"unchanged":1}',
                         'item 1: cap:b''s own report');
    PERFORM cmdb_test.eq(r[2] #>> '{sighting,source}', 'cap:b', 'item 1: its source''s sighting');
    PERFORM cmdb_test.eq(r[3] #>> '{sighting,source}', 'cap:a', 'item 2: the same source twice');
    PERFORM cmdb_test.ok(r[1] #>> '{body,deployment_id}' <> r[3] #>> '{body,deployment_id}',
                         'item 0 and 2: a deployment each');
    PERFORM cmdb_test.eq(r[1] #>> '{sighting,at}', cmdb_ts(now()), 'sighting at: the commit''s transaction');

    -- The refused: another fingerprint (a newer generation), an unknown source, another ttl
    -- (the full path stores it), no ttl where the row has one.
    PERFORM cmdb_test.ok(r[4] IS NULL AND r[5] IS NULL AND r[6] IS NULL AND r[7] IS NULL,
                         'items 3-6 refused');

    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments), n0 + 3, 'three deployments rows');
    PERFORM cmdb_test.eq((SELECT array_agg(actor || ' ' || coalesce(version, '-') || ' ' || coalesce(generation::text, '-')
                                           || ' ' || coalesce(extensions::text, '-') ORDER BY actor)
                            FROM deployments WHERE id IN (SELECT (x #>> '{body,deployment_id}')::uuid
                                                            FROM unnest(r) x WHERE x IS NOT NULL)),
                         ARRAY['ci 1.0 2 -', 'robot - - {"x": 1}', 't 1.0 2 -'],
                         'the deployments rows carry each item''s fields');
    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments WHERE seq IS NOT NULL AND id IN (
                              SELECT (x #>> '{body,deployment_id}')::uuid FROM unnest(r) x WHERE x IS NOT NULL)),
                         0::bigint, 'no-op deployments have no seq');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), s0, 'nothing logged');
    PERFORM cmdb_test.eq((SELECT version FROM nodes WHERE name = 'dns'), v, 'the hub is not written');
    PERFORM cmdb_test.ok((SELECT last_applied_at FROM source_state WHERE source = 'cap:a') > seen,
                         'the sighting moves last_applied_at');
    PERFORM cmdb_test.eq((SELECT last_applied_at FROM source_state WHERE source = 'cap:b'), now(),
                         'cap:b sighted too');
    PERFORM cmdb_test.eq((SELECT ttl FROM source_state WHERE source = 'cap:b'), interval '1 hour',
                         'a refused ttl is not stored');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'dns') #>> '{body,last_seen_at}', cmdb_ts(now()),
                         'GET derives last_seen_at from the batch''s sighting');
    COMMIT;

    -- A hand delete makes cap:a stale: refused, and the full path applies it.
    PERFORM cmdb_test.status(cmdb_node_delete('service', 'dns', NULL, 'alice', 'api:alice'), 204, 'hand delete');
    SELECT array_agg(b.reply ORDER BY b.item) INTO r
      FROM cmdb_manifest_noop_batch('[["cap:a", "fa", 2, null, null, "t", null]]') b;
    PERFORM cmdb_test.ok(r[1] IS NULL, 'stale: refused');
    one := cmdb_test.status(cmdb_post_manifest_ttl(ma, 'cap:a', 't', 't', NULL, false, 'fa', 2, dep, NULL, NULL),
                            200, 'stale: the full path');
    PERFORM cmdb_test.ok(one->>'seq' IS NOT NULL, 'stale: applied in full');
    COMMIT;
    SELECT array_agg(b.reply ORDER BY b.item) INTO r
      FROM cmdb_manifest_noop_batch('[["cap:a", "fa", 2, null, null, "t", null]]') b;
    PERFORM cmdb_test.ok(r[1] IS NOT NULL, 'applied again: a no-op again');
    COMMIT;

    -- cap:b's hour passes and the sweeper expires it: refused; the full path applies it.
    UPDATE source_state SET last_applied_at = last_applied_at - interval '61 minutes' WHERE source = 'cap:b';
    PERFORM cmdb_test.status(cmdb_sweep(NULL, NULL), 200, 'sweep expires cap:b');
    PERFORM cmdb_test.ok((SELECT expired_at IS NOT NULL FROM source_state WHERE source = 'cap:b'), 'cap:b expired');
    SELECT array_agg(b.reply ORDER BY b.item) INTO r
      FROM cmdb_manifest_noop_batch('[["cap:b", "fb", null, null, null, "t", 3600]]') b;
    PERFORM cmdb_test.ok(r[1] IS NULL, 'expired: refused');
    one := cmdb_test.status(cmdb_post_manifest_ttl(mb, 'cap:b', 't', 't', NULL, false, 'fb', NULL, NULL, NULL, 3600),
                            200, 'expired: the full path');
    PERFORM cmdb_test.ok(one->>'seq' IS NOT NULL, 'expired: applied in full');
    PERFORM cmdb_test.ok((SELECT expired_at IS NULL AND NOT stale FROM source_state WHERE source = 'cap:b'),
                         'no longer expired');

    -- An empty batch is no error.
    PERFORM cmdb_test.eq((SELECT count(*) FROM cmdb_manifest_noop_batch('[]')), 0::bigint, 'empty batch');
END
$$;
