-- Node list: byte-order keyset pagination and every filter.
SELECT cmdb_test.reset();

DO $$
DECLARE
    r      jsonb;
    cursor text;
    seen   text[] := '{}';
    pages  int := 0;
    want   text[];
BEGIN
    -- Refs chosen so byte order differs from a linguistic collation.
    PERFORM cmdb_node_put(k, n, NULL, l, NULL, 'alice', 'api:alice')
       FROM (VALUES ('service', 'b', '{"tier":"1"}'::jsonb), ('service', 'B', '{}'), ('service', 'a_b', '{}'),
                    ('service', 'a%b', '{"tier":"2"}'), ('service', 'ab', '{}'), ('service', 'a/b', '{}'),
                    ('host', 'web-01', '{}'), ('team', 'payments', '{}'), ('service', 'Zed', '{}'),
                    ('service', 'é', '{}')) v(k, n, l);
    want := ARRAY(SELECT kind || '/' || name FROM nodes ORDER BY (kind || '/' || name) COLLATE "C");
    PERFORM cmdb_test.eq(want[1:3], ARRAY['host/web-01', 'service/B', 'service/Zed'], 'byte order sanity');

    LOOP
        r := cmdb_test.status(cmdb_node_list(jsonb_build_object('limit', 3, 'cursor', cursor)), 200, 'page');
        seen := seen || ARRAY(SELECT jsonb_array_elements_text(jsonb_path_query_array(r, '$.body.items[*].ref')));
        pages := pages + 1;
        cursor := r #>> '{body,next_cursor}';
        EXIT WHEN cursor IS NULL OR pages > 10;
    END LOOP;
    PERFORM cmdb_test.eq(seen, want, 'all pages in byte order, nothing twice');
    PERFORM cmdb_test.eq(pages, 4, '10 nodes / 3 per page');
    r := cmdb_node_list('{"limit":10}');
    PERFORM cmdb_test.eq(r #> '{body,next_cursor}', 'null', 'exact fit: no next page');
    PERFORM cmdb_test.eq(jsonb_array_length(r #> '{body,items}'), 10, 'exact fit: all items');
    PERFORM cmdb_test.eq(jsonb_array_length(cmdb_node_list('{}') #> '{body,items}'), 10, 'default limit');

    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"kind":"host"}'), '$.body.items[*].ref'),
                         '["host/web-01"]', 'kind filter');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"labels":{"tier":"1"}}'), '$.body.items[*].ref'),
                         '["service/b"]', 'label filter');
    -- q is a prefix, not a pattern: % and _ match only themselves.
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"q":"a%"}'), '$.body.items[*].ref'),
                         '["service/a%b"]', 'q with %');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"q":"a_"}'), '$.body.items[*].ref'),
                         '["service/a_b"]', 'q with _');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"q":"service/a"}'), '$.body.items[*].ref'),
                         '["service/a%b", "service/a/b", "service/a_b", "service/ab"]', 'q on ref');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"q":"a/"}'), '$.body.items[*].ref'),
                         '["service/a/b"]', 'q on a name with /');

    PERFORM cmdb_edge_put('service/b', 'owned_by', 'team/payments', NULL, 'alice', 'api:alice');
    PERFORM cmdb_edge_put('service/ab', 'owned_by', 'team/payments', NULL, 'alice', 'api:alice');
    PERFORM cmdb_edge_put('service/a/b', 'depends_on', 'team/payments', NULL, 'alice', 'api:alice');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"owner":"team/payments"}'), '$.body.items[*].ref'),
                         '["service/ab", "service/b"]', 'owner filter');
    PERFORM cmdb_test.eq(cmdb_node_list('{"owner":"team/none"}') #> '{body,items}', '[]', 'owner missing: empty');

    PERFORM cmdb_node_health('host', 'web-01', 'down', NULL, 'mon', 'api:mon');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"health":"down"}'), '$.body.items[*].ref'),
                         '["host/web-01"]', 'health filter');
    UPDATE nodes SET orphan = true WHERE name = 'Zed';
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"orphan":true}'), '$.body.items[*].ref'),
                         '["service/Zed"]', 'orphan filter');
    PERFORM cmdb_test.eq(jsonb_array_length(cmdb_node_list('{"orphan":false}') #> '{body,items}'), 9, 'orphan false');
    PERFORM cmdb_test.eq(jsonb_path_query_array(cmdb_node_list('{"kind":"service","q":"a","limit":2}'), '$.body.items[*].ref'),
                         '["service/a%b", "service/a/b"]', 'combined filters + limit');

    PERFORM cmdb_test.status(cmdb_node_list('{"cursor":"not-hex"}'), 400, 'bad cursor', 'bad_request');
    PERFORM cmdb_test.status(cmdb_node_list('{"cursor":"ff"}'), 400, 'cursor not UTF-8', 'bad_request');
END
$$;
