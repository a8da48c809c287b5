-- Manifests: dry runs, idempotency keys, errors that must leave no trace, deployments.
SELECT cmdb_test.reset();

CREATE FUNCTION pg_temp.m(src text, gen bigint, nodes jsonb, edges jsonb, extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('manifest', 'cmdb/v1', 'source', src, 'generation', gen))
           || jsonb_build_object('nodes', nodes, 'edges', edges) || extra
$$;

-- Dry run: the same report as the real apply, and no trace at all.
DO $$
DECLARE
    m1   jsonb := pg_temp.m('ci', 1, '[{"ref":"service/a","attributes":{"x":1}},{"ref":"host/h"}]',
                        '[{"from":"service/a","type":"runs_on","to":"host/h"},
                          {"from":"service/a","type":"depends_on","to":"database/d"}]');
    m2   jsonb := pg_temp.m('ci', 2, '[{"ref":"service/a","attributes":{"x":2}}]',
                        '[{"from":"service/a","type":"depends_on","to":"database/d","attributes":{"p":1}}]');
    mf   jsonb;
    fp   jsonb;
    plan jsonb;
    r    jsonb;
BEGIN
    PERFORM cmdb_node_put('service', 'hand', NULL, NULL, NULL, 'alice', 'api:alice');
    FOREACH mf IN ARRAY ARRAY[m1, m2] LOOP
        fp := cmdb_test.footprint();
        plan := cmdb_test.status(cmdb_apply_manifest(mf, 't', 't', 'key-' || (mf->>'generation'), true), 200, 'dry run');
        PERFORM cmdb_test.eq(cmdb_test.footprint(), fp, 'dry run left no trace');
        PERFORM cmdb_test.eq(plan #> '{body,deployment_id}', 'null', 'dry run: no deployment');
        PERFORM cmdb_test.eq(plan->'seq', 'null', 'dry run: no seq');
        r := cmdb_test.status(cmdb_apply_manifest(mf, 't', 't', NULL, false), 200, 'real apply');
        PERFORM cmdb_test.eq((plan->'body') - 'deployment_id' - 'seq', (r->'body') - 'deployment_id' - 'seq',
                             'plan = apply');
    END LOOP;
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '["host/h"]', 'second step orphaned (sanity)');
    PERFORM cmdb_test.eq((SELECT count(*) FROM idempotency), 0::bigint, 'dry runs store no key');

    -- Dry run of the no-op: the no-op report, no deployment row.
    fp := cmdb_test.footprint();
    r := cmdb_test.status(cmdb_apply_manifest(m2, 't', 't', NULL, true), 200, 'dry no-op');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":0,"unchanged":2}', 'dry no-op report');
    PERFORM cmdb_test.eq(cmdb_test.footprint(), fp, 'dry no-op left no trace');
END
$$;

-- Idempotency keys.
SELECT cmdb_test.reset();
DO $$
DECLARE
    m  jsonb := pg_temp.m('ci', NULL, '[{"ref":"service/a"}]', '[]');
    r1 jsonb;
    r2 jsonb;
BEGIN
    r1 := cmdb_test.status(cmdb_apply_manifest(m, 'tok1', 'tok1', 'k', false), 200, 'first');
    r2 := cmdb_test.status(cmdb_apply_manifest(m, 'tok1', 'tok1', 'k', false), 200, 'retry');
    PERFORM cmdb_test.eq(r2, r1 - 'sighting', 'retry returns the first response verbatim (no new sighting)');
    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments), 1::bigint, 'retry applied nothing');
    r2 := cmdb_test.status(cmdb_apply_manifest(m - 'edges', 'tok1', 'tok1', 'k', false), 422, 'other body', 'unprocessable');
    PERFORM cmdb_test.eq(r2 #>> '{error,message}', 'idempotency key "k" was used with a different request', '422 message');
    -- Keys are per token.
    r2 := cmdb_test.status(cmdb_apply_manifest(m, 'tok2', 'tok2', 'k', false), 200, 'other token, same key');
    PERFORM cmdb_test.ok(r2 #>> '{body,deployment_id}' <> r1 #>> '{body,deployment_id}', 'a new apply');
    -- A dry run ignores the key (neither replays nor stores).
    r2 := cmdb_test.status(cmdb_apply_manifest(m - 'edges', 'tok1', 'tok1', 'k', true), 200, 'dry run ignores the key');
    -- Expired keys (over 24 h) are forgotten and purged.
    UPDATE idempotency SET created_at = now() - interval '25 hours' WHERE token_name = 'tok1';
    r2 := cmdb_test.status(cmdb_apply_manifest(m - 'edges', 'tok1', 'tok1', 'k', false), 200, 'expired key reusable');
    PERFORM cmdb_test.eq((SELECT count(*) FROM idempotency WHERE created_at < now() - interval '24 hours'), 0::bigint,
                         'expired purged');
    PERFORM cmdb_test.eq((SELECT response FROM idempotency WHERE token_name = 'tok1'), r2 - 'sighting', 'new response stored');
END
$$;

-- Errors leave no trace.
SELECT cmdb_test.reset();
DO $$
DECLARE
    fp jsonb;
    r  jsonb;
BEGIN
    PERFORM cmdb_apply_manifest(pg_temp.m('ci', 1, '[{"ref":"service/a"}]', '[]'), 't', 't', NULL, false);
    fp := cmdb_test.footprint();
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 2, '[{"ref":"service/b"}]',
            '[{"from":"service/b","type":"depends_on","to":"service/c"},{"from":"service/b","type":"depends_on","to":"service/b"}]'),
            't', 't', 'k1', false), 422, 'self edge', 'unprocessable');
    PERFORM cmdb_test.eq(r #>> '{error,message}', 'edge service/b depends_on service/b would connect a node to itself', 'self-edge message');
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 3, '[{"ref":"service/b"}]', '[]',
            '{"deployment":{"started_at":"not a time"}}'), 't', 't', 'k2', false), 400, 'bad time', 'bad_request');
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 4, '[{"ref":"Bad/kind"}]', '[]'), 't', 't', NULL, false),
                          400, 'bad kind reaching SQL', 'bad_request');
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 5, '[]', '[{"from":"service/a","type":"likes","to":"service/b"}]'),
                          't', 't', NULL, false), 400, 'bad edge type reaching SQL', 'bad_request');
    PERFORM cmdb_test.eq(cmdb_test.footprint(), fp, 'failed applies left no trace');
    -- Duplicates within one manifest merge in order.
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 6, '[{"ref":"service/a","attributes":{"x":1,"y":1}},{"ref":"service/a","attributes":{"x":2}}]',
            '[{"from":"service/a","type":"depends_on","to":"service/b","attributes":{"p":1}},
              {"from":"service/a","type":"depends_on","to":"service/b","attributes":{"q":2}}]'), 't', 't', NULL, false), 200, 'dups');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":1,"updated":0,"removed":0,"unchanged":0}', 'dup edges counted once');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'a') #> '{body,attributes}', '{"x":2,"y":1}', 'dup nodes merged in order');
    PERFORM cmdb_test.eq(cmdb_node_edges('service', 'a', 'out', NULL) #> '{body,edges,0,attributes}', '{"p":1,"q":2}', 'dup edges merged');
END
$$;

-- Deployments: newest first, keyset pages, node filter.
SELECT cmdb_test.reset();
DO $$
DECLARE
    r      jsonb;
    cursor text;
    ids    text[] := '{}';
    want   text[];
    i      int;
BEGIN
    FOR i IN 1..5 LOOP
        PERFORM cmdb_apply_manifest(pg_temp.m('ci', i, '[]', '[]',
            jsonb_build_object('deployment', jsonb_build_object('node', CASE WHEN i % 2 = 0 THEN 'service/even' ELSE 'service/odd' END,
                                                                'version', i::text, 'actor', 'bob'))),
            't', 't', NULL, false);
    END LOOP;
    -- Same applied_at within one transaction: the id breaks ties; make times distinct too.
    UPDATE deployments SET applied_at = applied_at + (version::int * interval '1 second');
    want := ARRAY(SELECT id::text FROM deployments ORDER BY applied_at DESC, id);
    LOOP
        r := cmdb_test.status(cmdb_deployments(NULL, 2, cursor), 200, 'page');
        ids := ids || ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array(r, '$.body.items[*].id')));
        cursor := r #>> '{body,next_cursor}';
        EXIT WHEN cursor IS NULL OR cardinality(ids) > 10;
    END LOOP;
    PERFORM cmdb_test.eq(ids, want, 'all deployments, newest first');
    r := cmdb_deployments(NULL, 1, NULL);
    PERFORM cmdb_test.eq(r #> '{body,items,0,version}', '"5"', 'newest first');
    PERFORM cmdb_test.eq(r #> '{body,items,0,actor}', '"bob"', 'deployment.actor kept');
    PERFORM cmdb_test.eq((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r #> '{body,items,0}') k),
        ARRAY['actor','applied_at','environment','finished_at','id','node','report','revision','seq',
              'source','started_at','status','version'], 'deployment shape');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_deployments('service/even', 100, NULL), '$.body.items[*].version'),
                         '["4", "2"]', 'node filter');
    PERFORM cmdb_test.eq(cmdb_deployments('service/none', 100, NULL) #> '{body}', '{"items":[],"next_cursor":null}', 'empty');
    PERFORM cmdb_test.status(cmdb_deployments(NULL, 10, 'zz'), 400, 'bad cursor', 'bad_request');
    PERFORM cmdb_test.status(cmdb_deployments(NULL, 10, cmdb_cursor_encode('yesterday x')), 400, 'bad cursor content', 'bad_request');
    -- Same applied_at: ties broken by id, no row lost.
    UPDATE deployments SET applied_at = '2026-01-01T00:00:00Z';
    ids := '{}'; cursor := NULL;
    LOOP
        r := cmdb_deployments(NULL, 2, cursor);
        ids := ids || ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array(r, '$.body.items[*].id')));
        cursor := r #>> '{body,next_cursor}';
        EXIT WHEN cursor IS NULL OR cardinality(ids) > 10;
    END LOOP;
    PERFORM cmdb_test.eq(ids, ARRAY(SELECT id::text FROM deployments ORDER BY id), 'ties paginate by id');
END
$$;
