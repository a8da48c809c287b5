-- Manifests: apply, merge, replacement, orphaning, generations, no-op, dry run,
-- idempotency, errors, deployments.
SELECT cmdb_test.reset();

-- A manifest builder: source, generation (NULL = none), nodes, edges.
CREATE FUNCTION pg_temp.m(src text, gen bigint, nodes jsonb, edges jsonb, extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object('manifest', 'cmdb/v1', 'source', src, 'generation', gen))
           || jsonb_build_object('nodes', nodes, 'edges', edges) || extra
$$;

-- The SPEC example.
DO $$
DECLARE
    m jsonb := '{"manifest":"cmdb/v1","source":"capistrano:billing-api","generation":42,
      "deployment":{"node":"service/billing-api","version":"1.4.2","revision":"9f1c2ab","environment":"prod",
                    "status":"succeeded","started_at":"2026-11-21T10:00:00Z","finished_at":"2026-11-21T10:03:10Z"},
      "nodes":[{"ref":"service/billing-api","labels":{"tier":"1"},"attributes":{"repo":"git@example.com:pay/billing.git"}},
               {"ref":"host/web-01.prod","attributes":{"ip":"10.0.0.5"}},
               {"ref":"team/payments","attributes":{"email":"payments@example.com"}}],
      "edges":[{"from":"service/billing-api","type":"runs_on","to":"host/web-01.prod"},
               {"from":"service/billing-api","type":"depends_on","to":"database/pg-main","attributes":{"port":5432}},
               {"from":"service/billing-api","type":"owned_by","to":"team/payments"}],
      "extensions":{"x-heroku":{"dynos":3}}}';
    r jsonb;
    d deployments;
BEGIN
    r := cmdb_test.status(cmdb_apply_manifest(m, 'deployer', 'deployer', NULL, false), 200, 'apply');
    PERFORM cmdb_test.eq((SELECT id::text FROM deployments), r #>> '{body,deployment_id}', 'deployment id');
    PERFORM cmdb_test.eq((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r->'body') k),
        ARRAY['deployment_id','edges','nodes','orphaned','seq'], 'report shape');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":4,"updated":0,"unchanged":0}', 'nodes created (incl. bare endpoint)');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":3,"updated":0,"removed":0,"unchanged":0}', 'edges created');
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '[]', 'none orphaned');
    PERFORM cmdb_test.eq(r->'seq', '7', 'reply seq');
    PERFORM cmdb_test.eq(r #> '{body,seq}', '7', 'body seq');
    PERFORM cmdb_test.eq(cmdb_test.log_since(0), ARRAY[
        '1 node.created database/pg-main', '2 node.created host/web-01.prod',
        '3 node.created service/billing-api', '4 node.created team/payments',
        '5 edge.created service/billing-api depends_on database/pg-main',
        '6 edge.created service/billing-api owned_by team/payments',
        '7 edge.created service/billing-api runs_on host/web-01.prod'], 'change log');
    PERFORM cmdb_test.ok((SELECT bool_and(actor = 'deployer' AND source = 'capistrano:billing-api') FROM changes),
                         'actor and source logged');
    r := cmdb_node_get('database', 'pg-main');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["capistrano:billing-api"]', 'bare endpoint asserted');
    PERFORM cmdb_test.eq(r #> '{body,attributes}', '{}', 'bare endpoint is bare');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'billing-api') #> '{body,labels}', '{"tier":"1"}', 'labels');
    PERFORM cmdb_test.eq(cmdb_node_edges('service', 'billing-api', 'out', 'depends_on') #> '{body,edges,0,attributes}',
                         '{"port":5432}', 'edge attributes');

    SELECT * INTO d FROM deployments;
    PERFORM cmdb_test.eq(d.actor, 'deployer', 'deployment.actor defaults to the token');
    PERFORM cmdb_test.eq(d.extensions, '{"x-heroku":{"dynos":3}}'::jsonb, 'extensions kept verbatim');
    PERFORM cmdb_test.eq(d.generation, 42::bigint, 'generation recorded');
    PERFORM cmdb_test.eq(d.seq, 7::bigint, 'deployment seq');
    PERFORM cmdb_test.eq(cmdb_ts(d.started_at), '2026-11-21T10:00:00.000000Z', 'started_at');
    PERFORM cmdb_test.eq(d.report #> '{nodes,created}', '4', 'report stored');
    PERFORM cmdb_test.eq((SELECT generation FROM source_state), 42::bigint, 'source_state generation');

    -- The same body again: the fast no-op (deployment recorded, nothing logged).
    r := cmdb_test.status(cmdb_apply_manifest(m, 'deployer', 'deployer', NULL, false), 200, 'no-op');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":0,"unchanged":4}', 'no-op nodes');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":0,"updated":0,"removed":0,"unchanged":3}', 'no-op edges');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'no-op seq null');
    PERFORM cmdb_test.ok(r #>> '{body,deployment_id}' IS NOT NULL, 'no-op has a deployment');
    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments), 2::bigint, 'no-op deployment row');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), 7::bigint, 'no-op logged nothing');

    -- Generations: equal with another body, older -> 409; nothing written.
    r := cmdb_test.status(cmdb_apply_manifest(m - 'extensions', 'deployer', 'deployer', NULL, false),
                          409, 'equal generation, other body', 'conflict');
    PERFORM cmdb_test.eq(r #> '{error,details}', '{"source":"capistrano:billing-api","generation":42,"current_generation":42}',
                         '409 details');
    PERFORM cmdb_test.eq(r #>> '{error,message}',
        'generation 42 of source capistrano:billing-api is not newer than applied generation 42', '409 message');
    PERFORM cmdb_test.status(cmdb_apply_manifest(jsonb_set(m, '{generation}', '7'), 'deployer', 'deployer', NULL, false),
                             409, 'older generation', 'conflict');
    PERFORM cmdb_test.status(cmdb_apply_manifest(jsonb_set(m, '{generation}', '7'), 'deployer', 'deployer', NULL, true),
                             409, 'older generation, dry run', 'conflict');
    PERFORM cmdb_test.eq((SELECT count(*) FROM deployments), 2::bigint, '409 recorded nothing');

    -- A newer generation with the same content: the full path, all unchanged.
    r := cmdb_test.status(cmdb_apply_manifest(jsonb_set(m, '{generation}', '43'), 'deployer', 'deployer', NULL, false),
                          200, 'newer generation, same content');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":0,"unchanged":4}', 'unchanged nodes');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":0,"updated":0,"removed":0,"unchanged":3}', 'unchanged edges');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'nothing logged');
    PERFORM cmdb_test.eq((SELECT version FROM nodes WHERE name = 'billing-api'), 1::bigint, 'version kept');

    -- Without a generation: accepted; the recorded generation stays 43.
    r := cmdb_test.status(cmdb_apply_manifest(m - 'generation', 'deployer', 'deployer', NULL, false), 200, 'no generation');
    PERFORM cmdb_test.eq((SELECT generation FROM source_state), 43::bigint, 'generation kept');
    PERFORM cmdb_test.status(cmdb_apply_manifest(jsonb_set(m, '{generation}', '43'), 'deployer', 'deployer', NULL, false),
                             409, 'still not newer than 43', 'conflict');
END
$$;

-- Merge key by key (manifest wins), hand edits, revival of orphans.
SELECT cmdb_test.reset();
DO $$
DECLARE
    r  jsonb;
    s0 bigint;
BEGIN
    PERFORM cmdb_node_put('service', 'a', '{"keep":1,"over":"hand"}', '{"env":"prod","tier":"3"}', NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_put('service', 'b', NULL, NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_edge_put('service/a', 'depends_on', 'service/b', '{"port":1,"proto":"tcp"}', 'alice', 'api:alice');
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 1,
            '[{"ref":"service/a","attributes":{"over":"ci","new":true},"labels":{"tier":"1"}},
              {"ref":"service/a","attributes":{"later":1}}]',
            '[{"from":"service/a","type":"depends_on","to":"service/b","attributes":{"port":2}}]'),
            'ci', 'ci', NULL, false), 200, 'merge apply');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":2,"unchanged":0}', 'both updated (new source)');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":0,"updated":1,"removed":0,"unchanged":0}', 'edge updated');
    r := cmdb_node_get('service', 'a');
    PERFORM cmdb_test.eq(r #> '{body,attributes}', '{"keep":1,"over":"ci","new":true,"later":1}', 'attributes merged');
    PERFORM cmdb_test.eq(r #> '{body,labels}', '{"env":"prod","tier":"1"}', 'labels merged');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:alice", "ci"]', 'sources');
    PERFORM cmdb_test.eq(r #> '{body,version}', '2', 'version bumped once');
    PERFORM cmdb_test.eq((cmdb_node_edges('service', 'a', 'out', NULL) #> '{body,edges,0}') - 'created_at' - 'updated_at',
        '{"from":"service/a","type":"depends_on","to":"service/b","attributes":{"port":2,"proto":"tcp"},"sources":["api:alice","ci"]}',
        'edge merged');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[(s0 + 1) || ' node.updated service/a',
        (s0 + 2) || ' node.updated service/b', (s0 + 3) || ' edge.updated service/a depends_on service/b'],
        'one change per visible change, nodes before edges');
    PERFORM cmdb_test.eq((SELECT before #> '{attributes,over}' FROM changes WHERE seq = s0 + 1), '"hand"', 'before is the old node');

    -- Dropping everything: hand-asserted nodes are not orphaned, edges keep the hand source.
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('ci', 2, '[]', '[]'), 'ci', 'ci', NULL, false), 200, 'empty');
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '[]', 'hand-edited nodes never orphaned');
    PERFORM cmdb_test.eq(r #> '{body,edges,removed}', '0', 'edge kept by its other source');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'a') #> '{body,sources}', '["api:alice"]', 'ci source gone');
END
$$;

-- Replacement across two sources sharing an edge; orphaning; revival.
SELECT cmdb_test.reset();
DO $$
DECLARE
    r  jsonb;
    s0 bigint;
    shared jsonb := '[{"from":"service/app","type":"depends_on","to":"database/db"}]';
BEGIN
    PERFORM cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s1', NULL, '[{"ref":"service/app"}]',
        shared || '[{"from":"service/app","type":"runs_on","to":"host/h1"}]'), 't', 't', NULL, false), 200, 's1');
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s2', NULL, '[]', shared), 't', 't', NULL, false), 200, 's2');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":0,"updated":1,"removed":0,"unchanged":0}', 's2 joins the edge');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":2,"unchanged":0}', 's2 asserts both ends');
    PERFORM cmdb_test.eq(cmdb_node_edges('service', 'app', 'out', 'depends_on') #> '{body,edges,0,sources}',
                         '["s1", "s2"]', 'shared edge has both sources');

    -- s1 drops the shared edge and host/h1: the edge loses s1 (stays), runs_on goes,
    -- host/h1 becomes an orphan; service/app stays (declared).
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s1', NULL, '[{"ref":"service/app"}]', '[]'), 't', 't', NULL, false),
                          200, 's1 drops');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":0,"updated":0,"removed":1,"unchanged":0}', 'one removed');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":0,"unchanged":1}', 'declared node unchanged');
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '["host/h1"]', 'host orphaned');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[
        (s0 + 1) || ' edge.updated service/app depends_on database/db',
        (s0 + 2) || ' edge.deleted service/app runs_on host/h1',
        (s0 + 3) || ' node.updated database/db',
        (s0 + 4) || ' node.updated host/h1'], 'replacement log');
    PERFORM cmdb_test.eq((SELECT after->'sources' FROM changes WHERE seq = s0 + 1), '["s2"]', 'edge lost s1');
    PERFORM cmdb_test.eq((SELECT after->'orphan' FROM changes WHERE seq = s0 + 4), 'true', 'orphan logged');
    PERFORM cmdb_test.eq((SELECT after->'sources' FROM changes WHERE seq = s0 + 3), '["s2"]', 'db lost s1, kept s2');
    r := cmdb_node_get('host', 'h1');
    PERFORM cmdb_test.status(r, 200, 'orphans are not deleted');
    PERFORM cmdb_test.eq(r #> '{body,orphan}', 'true', 'orphan flag');
    PERFORM cmdb_test.eq(r #> '{body,version}', '2', 'orphaning bumps version');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"orphan":true}'), '$.body.items[*].ref'), '["host/h1"]', 'listed');

    -- s2 drops the shared edge: now it goes; the database becomes an orphan too.
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s2', NULL, '[]', '[]'), 't', 't', NULL, false), 200, 's2 drops');
    PERFORM cmdb_test.eq(r #> '{body,edges,removed}', '1', 'shared edge removed with its last source');
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '["database/db"]', 'database orphaned');
    PERFORM cmdb_test.eq((SELECT count(*) FROM edges), 0::bigint, 'no edges left');

    -- Re-asserting an orphan revives it (a visible change).
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s3', NULL, '[{"ref":"host/h1"},{"ref":"x/z"},{"ref":"x/a"},{"ref":"x/m"}]', '[]'),
                                              't', 't', NULL, false), 200, 'revive');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":3,"updated":1,"unchanged":0}', 'revived counts as updated');
    PERFORM cmdb_test.eq(cmdb_node_get('host', 'h1') #> '{body,orphan}', 'false', 'orphan cleared');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[(s0 + 1) || ' node.updated host/h1',
        (s0 + 2) || ' node.created x/a', (s0 + 3) || ' node.created x/m', (s0 + 4) || ' node.created x/z'],
        'changes in ref order');
    r := cmdb_test.status(cmdb_apply_manifest(pg_temp.m('s3', NULL, '[]', '[]'), 't', 't', NULL, false), 200, 's3 drops');
    PERFORM cmdb_test.eq(r #> '{body,orphaned}', '["host/h1", "x/a", "x/m", "x/z"]', 'orphans sorted');
END
$$;
