-- Edges: put (create, update, no-op, 422s), delete, a node's edges.
SELECT cmdb_test.reset();

DO $$
DECLARE
    r  jsonb;
    s0 bigint;
BEGIN
    PERFORM cmdb_node_put('service', 'a', NULL, NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_put('service', 'b', NULL, NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_put('database', 'pg/main:5432', NULL, NULL, NULL, 'alice', 'api:alice');
    s0 := (SELECT last FROM change_seq);

    r := cmdb_test.status(cmdb_edge_put('service/a', 'depends_on', 'database/pg/main:5432', '{"port":5432}',
                                        'alice', 'api:alice'), 201, 'create edge');
    PERFORM cmdb_test.eq((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r->'body') k),
        ARRAY['attributes','created_at','from','sources','to','type','updated_at'], 'edge shape');
    PERFORM cmdb_test.eq(r #>> '{body,to}', 'database/pg/main:5432', 'to ref');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:alice"]', 'edge sources');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 1, 'edge seq');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0),
        ARRAY[(s0 + 1) || ' edge.created service/a depends_on database/pg/main:5432'], 'edge ref in log');

    r := cmdb_test.status(cmdb_edge_put('service/a', 'depends_on', 'database/pg/main:5432', NULL,
                                        'alice', 'api:alice'), 200, 'same edge, attributes kept');
    PERFORM cmdb_test.eq(r->'seq', 'null', 'no-op edge put logs nothing');
    PERFORM cmdb_test.eq(r #> '{body,attributes}', '{"port":5432}', 'NULL attributes = keep');

    r := cmdb_test.status(cmdb_edge_put('service/a', 'depends_on', 'database/pg/main:5432', '{"proto":"tcp"}',
                                        'bob', 'api:bob'), 200, 'update edge');
    PERFORM cmdb_test.eq(r #> '{body,attributes}', '{"proto":"tcp"}', 'edge attributes replaced');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:alice", "api:bob"]', 'second source');
    PERFORM cmdb_test.eq((SELECT op || ' ' || (before->'attributes')::text FROM changes WHERE seq = (r->>'seq')::bigint),
                         'edge.updated {"port": 5432}', 'edge.updated with before');

    -- Missing endpoints: 422 naming them; nothing written.
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_edge_put('service/x', 'depends_on', 'service/y', NULL, 'alice', 'api:alice'),
                          422, 'both missing', 'unprocessable');
    PERFORM cmdb_test.eq(r #> '{error,details,missing}', '["service/x", "service/y"]', 'missing listed');
    PERFORM cmdb_test.eq(r #>> '{error,message}', 'edge endpoints service/x, service/y not found', '422 message');
    r := cmdb_test.status(cmdb_edge_put('service/a', 'runs_on', 'host/gone', NULL, 'alice', 'api:alice'),
                          422, 'one missing', 'unprocessable');
    PERFORM cmdb_test.eq(r #> '{error,details,missing}', '["host/gone"]', 'one missing listed');
    r := cmdb_test.status(cmdb_edge_put('service/a', 'depends_on', 'service/a', NULL, 'alice', 'api:alice'),
                          422, 'self edge', 'unprocessable');
    PERFORM cmdb_test.status(cmdb_edge_put('service/a', 'likes', 'service/b', NULL, 'alice', 'api:alice'),
                             400, 'bad type reaching SQL', 'bad_request');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), s0, 'errors logged nothing');

    -- A node's edges: directions, type filter, sort by from, type, to.
    PERFORM cmdb_edge_put('service/b', 'depends_on', 'service/a', NULL, 'alice', 'api:alice');
    PERFORM cmdb_edge_put('service/a', 'connects_to', 'service/b', NULL, 'alice', 'api:alice');
    r := cmdb_test.status(cmdb_node_edges('service', 'a', 'both', NULL), 200, 'edges both');
    PERFORM cmdb_test.eq(jsonb_path_query_array(r, '$.body.edges[*].to'),
        '["service/b", "database/pg/main:5432", "service/a"]', 'sorted by from, type, to');
    r := cmdb_test.status(cmdb_node_edges('service', 'a', 'out', NULL), 200, 'edges out');
    PERFORM cmdb_test.eq(jsonb_array_length(r #> '{body,edges}'), 2, 'two out');
    r := cmdb_test.status(cmdb_node_edges('service', 'a', 'in', 'depends_on'), 200, 'edges in typed');
    PERFORM cmdb_test.eq(jsonb_path_query_array(r, '$.body.edges[*].from'), '["service/b"]', 'one in');
    r := cmdb_test.status(cmdb_node_edges('service', 'a', 'in', 'runs_on'), 200, 'none of a type');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '[]', 'empty edges list');
    PERFORM cmdb_test.status(cmdb_node_edges('service', 'zz', 'both', NULL), 404, 'edges of missing', 'not_found');
    PERFORM cmdb_test.eq(cmdb_node_get('service', 'a') #> '{body,edges}', '{"in":1,"out":2}', 'get counts');

    -- Delete.
    s0 := (SELECT last FROM change_seq);
    r := cmdb_test.status(cmdb_edge_delete('service/b', 'depends_on', 'service/a', 'alice', 'api:alice'), 204, 'edge delete');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[(s0 + 1) || ' edge.deleted service/b depends_on service/a'], 'edge delete log');
    r := cmdb_test.status(cmdb_edge_delete('service/b', 'depends_on', 'service/a', 'alice', 'api:alice'),
                          404, 'edge delete again', 'not_found');
    PERFORM cmdb_test.eq(r #>> '{error,message}', 'edge service/b depends_on service/a not found', 'edge 404 message');
    PERFORM cmdb_test.status(cmdb_edge_delete('service/nope', 'depends_on', 'service/a', 'alice', 'api:alice'),
                             404, 'edge delete with missing endpoint', 'not_found');
END
$$;
