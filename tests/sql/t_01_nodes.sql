-- Nodes: put (create, update, no-op, If-Match), get, health, delete.
SELECT cmdb_test.reset();

DO $$
DECLARE
    r   jsonb;
    id1 text;
    s0  bigint;
BEGIN
    -- cmdb_ts: RFC 3339 UTC with microseconds, whatever the session time zone.
    SET LOCAL TIME ZONE 'America/New_York';
    PERFORM cmdb_test.eq(cmdb_ts('2026-11-21 05:00:00.123456-05'), '2026-11-21T10:00:00.123456Z', 'cmdb_ts');
    PERFORM cmdb_test.eq(cmdb_ts(NULL), NULL, 'cmdb_ts(NULL)');

    -- Create: 201, the full node shape, version 1, the hand-edit source, seq 1.
    r := cmdb_test.status(cmdb_node_put('service', 'billing-api', '{"repo":"git@x:pay"}',
                                        '{"tier":"1"}', NULL, 'alice', 'api:alice'), 201, 'create');
    PERFORM cmdb_test.eq((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r->'body') k),
        ARRAY['attributes','created_at','health','health_at','health_reason','id','kind',
              'labels','last_seen_at','name','orphan','ref','sources','updated_at','version'],
        'node shape');
    PERFORM cmdb_test.eq(r #>> '{body,ref}', 'service/billing-api', 'ref');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:alice"]', 'sources');
    PERFORM cmdb_test.eq(r #> '{body,health}', '"unknown"', 'default health');
    PERFORM cmdb_test.eq(r #> '{body,orphan}', 'false', 'orphan');
    PERFORM cmdb_test.eq(r->'etag', '"\"1\""', 'etag');
    PERFORM cmdb_test.eq(r->'seq', '1', 'seq of first change');
    PERFORM cmdb_test.ok(r #>> '{body,created_at}' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', 'time format');
    id1 := r #>> '{body,id}';

    -- Same again: 200, nothing logged, version unchanged, seq null.
    r := cmdb_test.status(cmdb_node_put('service', 'billing-api', '{"repo":"git@x:pay"}',
                                        NULL, NULL, 'alice', 'api:alice'), 200, 'no-op put');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'no-op: seq null');
    PERFORM cmdb_test.eq(r #> '{body,version}', '1', 'no-op: version kept');
    PERFORM cmdb_test.eq(r #> '{body,labels}', '{"tier":"1"}', 'labels NULL = keep');
    PERFORM cmdb_test.eq((SELECT count(*) FROM changes), 1::bigint, 'no-op logged nothing');

    -- Attributes replace wholesale; labels kept when not given.
    r := cmdb_test.status(cmdb_node_put('service', 'billing-api', '{"team":"pay"}', NULL,
                                        '"1"', 'alice', 'api:alice'), 200, 'update with If-Match');
    PERFORM cmdb_test.eq(r #> '{body,attributes}', '{"team":"pay"}', 'attributes replaced');
    PERFORM cmdb_test.eq(r #> '{body,version}', '2', 'version bumped');
    PERFORM cmdb_test.eq(r #>> '{body,id}', id1, 'id stable');
    PERFORM cmdb_test.eq(r->'seq', '2', 'update seq');
    PERFORM cmdb_test.eq((SELECT op || ' ' || ref || ' ' || (before->>'version') || '->' || (after->>'version')
                            FROM changes WHERE seq = 2),
                         'node.updated service/billing-api 1->2', 'update logged with before/after');

    -- A second hand editor joins the sources (a visible change).
    r := cmdb_test.status(cmdb_node_put('service', 'billing-api', NULL, NULL, '*', 'Bob@corp', 'api:Bob@corp'),
                          200, 'second editor');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:Bob@corp", "api:alice"]', 'sources sorted, both');
    PERFORM cmdb_test.eq(r #> '{body,version}', '3', 'source change bumps version');

    -- If-Match mismatch, and If-Match on a missing node: 412 with the current version.
    r := cmdb_test.status(cmdb_node_put('service', 'billing-api', '{}', NULL, '"1"', 'alice', 'api:alice'),
                          412, 'stale If-Match', 'precondition_failed');
    PERFORM cmdb_test.eq(r #> '{error,details,current_version}', '3', '412 details');
    PERFORM cmdb_test.eq(r #>> '{error,message}', 'node service/billing-api is at version 3 (If-Match "1")', '412 message');
    PERFORM cmdb_test.status(cmdb_node_put('service', 'nope', '{}', NULL, '*', 'alice', 'api:alice'),
                             412, 'If-Match * on a missing node', 'precondition_failed');
    PERFORM cmdb_test.ok(NOT EXISTS (SELECT 1 FROM nodes WHERE name = 'nope'), '412 created nothing');

    -- Names may hold '/' and ':'.
    r := cmdb_test.status(cmdb_node_put('database', 'pg/main:5432', NULL, NULL, NULL, 'alice', 'api:alice'),
                          201, 'name with / and :');
    PERFORM cmdb_test.eq(r #>> '{body,ref}', 'database/pg/main:5432', 'ref of slashed name');

    -- Get: node + edge counts + etag; 404 names the node.
    r := cmdb_test.status(cmdb_node_get('service', 'billing-api'), 200, 'get');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"in":0,"out":0}', 'edge counts');
    PERFORM cmdb_test.eq(r->>'etag', '"3"', 'get etag');
    r := cmdb_test.status(cmdb_node_get('service', 'x'), 404, 'get missing', 'not_found');
    PERFORM cmdb_test.eq(r #>> '{error,message}', 'node service/x not found', '404 message');

    -- Bad data that slipped past the C side: 400, never an exception.
    r := cmdb_test.status(cmdb_node_put('Service', 'x', NULL, NULL, NULL, 'alice', 'api:alice'),
                          400, 'bad kind', 'bad_request');
    PERFORM cmdb_test.status(cmdb_node_put('service', 'x', '[1]', NULL, NULL, 'alice', 'api:alice'),
                             400, 'attributes not an object', 'bad_request');

    -- Health: status, not an assertion; logged only when state/reason change.
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_node_health('service', 'billing-api', 'down', 'disk full', 'mon', 'api:mon'),
                          200, 'health');
    PERFORM cmdb_test.eq(r #>> '{body,health}', 'down', 'health set');
    PERFORM cmdb_test.eq(r #>> '{body,health_reason}', 'disk full', 'reason set');
    PERFORM cmdb_test.ok(r #>> '{body,health_at}' IS NOT NULL, 'health_at set');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:Bob@corp", "api:alice"]', 'health leaves sources');
    PERFORM cmdb_test.eq(r #> '{body,version}', '4', 'health bumps version');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 1, 'health seq');
    r := cmdb_test.status(cmdb_node_health('service', 'billing-api', 'down', 'disk full', 'mon', 'api:mon'),
                          200, 'same health');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'same health not logged');
    PERFORM cmdb_test.eq(r #> '{body,version}', '4', 'same health keeps version');
    PERFORM cmdb_test.status(cmdb_node_health('service', 'x', 'ok', NULL, 'mon', 'api:mon'),
                             404, 'health of missing', 'not_found');
    PERFORM cmdb_test.status(cmdb_node_health('service', 'billing-api', 'sideways', NULL, 'mon', 'api:mon'),
                             400, 'bad health state', 'bad_request');
END
$$;

-- Delete: edges logged first (sorted), then the node; cascade; 404; 412.
DO $$
DECLARE
    r  jsonb;
    s0 bigint;
BEGIN
    PERFORM cmdb_test.status(cmdb_node_put('host', 'web-01', NULL, NULL, NULL, 'alice', 'api:alice'), 201, 'host');
    PERFORM cmdb_test.status(cmdb_edge_put('service/billing-api', 'runs_on', 'host/web-01', NULL, 'alice', 'api:alice'), 201, 'e1');
    PERFORM cmdb_test.status(cmdb_edge_put('service/billing-api', 'depends_on', 'database/pg/main:5432', NULL, 'alice', 'api:alice'), 201, 'e2');
    PERFORM cmdb_test.status(cmdb_edge_put('host/web-01', 'depends_on', 'service/billing-api', NULL, 'alice', 'api:alice'), 201, 'e3');

    PERFORM cmdb_test.status(cmdb_node_delete('service', 'billing-api', '"1"', 'alice', 'api:alice'),
                             412, 'delete with stale If-Match', 'precondition_failed');
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_node_delete('service', 'billing-api', '"4"', 'alice', 'api:alice'), 204, 'delete');
    PERFORM cmdb_test.ok(NOT r ? 'body', '204 has no body');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 4, 'delete seq = last of 4 rows');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[
        (s0 + 1) || ' edge.deleted host/web-01 depends_on service/billing-api',
        (s0 + 2) || ' edge.deleted service/billing-api depends_on database/pg/main:5432',
        (s0 + 3) || ' edge.deleted service/billing-api runs_on host/web-01',
        (s0 + 4) || ' node.deleted service/billing-api'], 'delete log');
    PERFORM cmdb_test.ok((SELECT bool_and(after IS NULL AND before IS NOT NULL) FROM changes WHERE seq > s0),
                         'deletes carry before, no after');
    PERFORM cmdb_test.eq((SELECT before->>'from' FROM changes WHERE seq = s0 + 3), 'service/billing-api',
                         'edge before is the edge JSON');
    PERFORM cmdb_test.eq((SELECT count(*) FROM edges), 0::bigint, 'edges cascaded');
    PERFORM cmdb_test.status(cmdb_node_delete('service', 'billing-api', NULL, 'alice', 'api:alice'),
                             404, 'delete again', 'not_found');
END
$$;
