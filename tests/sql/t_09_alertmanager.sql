-- The Alertmanager batch (0009): cmdb_alertmanager_apply.
SELECT cmdb_test.reset();

DO $$
DECLARE
    r      jsonb;
    before jsonb;
    s0     bigint;
BEGIN
    PERFORM cmdb_node_put('service', 'api', '{}', NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_put('database', 'pg:5432', '{}', NULL, NULL, 'alice', 'api:alice');
    s0 := (SELECT last FROM change_seq);

    -- Two nodes, an unknown one named by two alerts, and three alerts set aside by the
    -- caller (an invalid ref, two without cmdb_ref): one commit, one change row per
    -- changed node, in the order given (ref order).
    r := cmdb_test.status(cmdb_alertmanager_apply(
        '[{"kind":"database","name":"pg:5432","state":"down","reason":"PgDown: gone","alerts":1},
          {"kind":"service","name":"api","state":"degraded","reason":"Slow","alerts":3},
          {"kind":"service","name":"nope","state":"down","reason":"X","alerts":2}]',
        '["not a ref"]', 3, 'am', 'api:am'), 200, 'apply');
    PERFORM cmdb_test.eq(r #> '{body,updated}', '["database/pg:5432","service/api"]', 'updated');
    PERFORM cmdb_test.eq(r #> '{body,unknown}', '["not a ref","service/nope"]', 'unknown');
    PERFORM cmdb_test.eq(r #> '{body,ignored}', '5', 'ignored: set aside + the alerts of unknown refs');
    PERFORM cmdb_test.eq(r #> '{body,refresh}', '[]', 'nothing unchanged');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 2, 'seq: the last of the two rows');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0),
        ARRAY[(s0 + 1) || ' node.updated database/pg:5432', (s0 + 2) || ' node.updated service/api'],
        'change rows');
    PERFORM cmdb_test.eq((SELECT array_agg(DISTINCT actor || ' ' || source) FROM changes WHERE seq > s0),
        ARRAY['am api:am'], 'actor and source');
    PERFORM cmdb_test.eq((SELECT health || ' ' || health_reason FROM nodes WHERE name = 'pg:5432'),
        'down PgDown: gone', 'pg health');
    PERFORM cmdb_test.eq((SELECT after->>'health' FROM changes WHERE seq = s0 + 2), 'degraded',
        'after image');
    PERFORM cmdb_test.eq((SELECT count(*) FROM nodes WHERE name = 'nope'), 0::bigint,
        'an unknown ref creates nothing');

    -- The same again: no change row, seq null, health_at refreshed and reported.
    before := (SELECT to_jsonb(n) FROM nodes n WHERE name = 'api');
    r := cmdb_test.status(cmdb_alertmanager_apply(
        '[{"kind":"service","name":"api","state":"degraded","reason":"Slow"}]', '[]', 0,
        'am', 'api:am'), 200, 'repeat');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'repeat: seq null');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0 + 2), '{}'::text[], 'repeat: no change row');
    PERFORM cmdb_test.eq(r #>> '{body,refresh,0,ref}', 'service/api', 'refresh ref');
    PERFORM cmdb_test.eq(r #>> '{body,refresh,0,id}', before->>'id', 'refresh id');
    PERFORM cmdb_test.eq((SELECT version FROM nodes WHERE name = 'api'), (before->>'version')::bigint,
        'repeat: version kept');

    -- Nothing at all: a reply, no seq.
    r := cmdb_test.status(cmdb_alertmanager_apply('[]', '[]', 3, 'am', 'api:am'), 200, 'empty');
    PERFORM cmdb_test.eq(r->'body', '{"updated":[],"unknown":[],"refresh":[],"ignored":3}', 'empty body');

    -- A state the schema refuses rolls the whole batch back: 400, nothing written.
    r := cmdb_test.status(cmdb_alertmanager_apply(
        '[{"kind":"database","name":"pg:5432","state":"ok","reason":"fine"},
          {"kind":"service","name":"api","state":"broken","reason":"?"}]', '[]', 0,
        'am', 'api:am'), 400, 'bad state', 'bad_request');
    PERFORM cmdb_test.eq((SELECT health FROM nodes WHERE name = 'pg:5432')::text, 'down',
        'rolled back');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0 + 2), '{}'::text[], 'no change row');
END
$$;
