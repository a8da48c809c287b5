-- Change log: numbering, contiguity, the feed function, and commit order under
-- concurrency (the latter through dblink; skipped with a warning when unavailable).
SELECT cmdb_test.reset();

DO $$
DECLARE
    r    jsonb;
    lastseq bigint;
BEGIN
    -- Nothing logged: NULL, counter untouched.
    PERFORM cmdb_test.eq(cmdb_commit_changes(), NULL::bigint, 'nothing to number');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), 0::bigint, 'counter untouched');

    -- Three rows in one transaction: numbered 1..3 in insertion order, one notify.
    PERFORM cmdb_log_change('t', 's', 'node.created', 'service/c', NULL, '{"n":3}');
    PERFORM cmdb_log_change('t', 's', 'node.created', 'service/a', NULL, '{"n":1}');
    PERFORM cmdb_log_change('t', 's', 'edge.created', 'service/a depends_on service/c', NULL, '{"n":2}');
    lastseq := cmdb_commit_changes();
    PERFORM cmdb_test.eq(lastseq, 3::bigint, 'last seq');
    PERFORM cmdb_test.eq(cmdb_test.log_since(0), ARRAY['1 node.created service/c', '2 node.created service/a',
                         '3 edge.created service/a depends_on service/c'], 'insertion order');
    PERFORM cmdb_test.eq(cmdb_commit_changes(), NULL::bigint, 'nothing left to number');

    -- Writers within one transaction each take the next contiguous block.
    PERFORM cmdb_node_put('service', 'x', NULL, NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_put('service', 'y', NULL, NULL, NULL, 'alice', 'api:alice');
    PERFORM cmdb_edge_put('service/x', 'depends_on', 'service/y', NULL, 'alice', 'api:alice');
    PERFORM cmdb_node_delete('service', 'x', NULL, 'alice', 'api:alice');
    PERFORM cmdb_test.eq((SELECT array_agg(seq ORDER BY local_id) FROM changes),
                         ARRAY[1, 2, 3, 4, 5, 6, 7, 8]::bigint[], 'contiguous, in insertion order');
    PERFORM cmdb_test.eq((SELECT last FROM change_seq), 8::bigint, 'counter = last seq');

    -- The feed: since/limit/next, the row shape.
    r := cmdb_test.status(cmdb_changes(0, 3), 200, 'feed');
    PERFORM cmdb_test.eq(jsonb_path_query_array(r, '$.body.changes[*].seq'), '[1,2,3]', 'first page');
    PERFORM cmdb_test.eq(r #> '{body,next}', '3', 'next = last returned');
    PERFORM cmdb_test.eq((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r #> '{body,changes,0}') k),
        ARRAY['actor','after','at','before','op','ref','seq','source'], 'change shape');
    r := cmdb_changes(3, 100);
    PERFORM cmdb_test.eq(jsonb_path_query_array(r, '$.body.changes[*].op'),
        '["node.created","node.created","edge.created","edge.deleted","node.deleted"]', 'rest');
    PERFORM cmdb_test.eq(r #> '{body,next}', '8', 'next at the end');
    r := cmdb_changes(8, 100);
    PERFORM cmdb_test.eq(r #> '{body,changes}', '[]', 'nothing newer');
    PERFORM cmdb_test.eq(r #> '{body,next}', '8', 'next = since when empty');
    PERFORM cmdb_test.eq(cmdb_changes(100, 10) #> '{body,next}', '100', 'since beyond the end');
END
$$;

-- Concurrency, through two extra sessions. The DO blocks below must not write: this
-- session's transaction would hold its locks (and the seq counter) until the block ends.
SELECT cmdb_test.reset();
SELECT cmdb_node_put('service', 'd', NULL, NULL, NULL, 'alice', 'api:alice');
CREATE TEMP TABLE conc (ok boolean);

DO $$
DECLARE
    conn text;
BEGIN
    CREATE EXTENSION IF NOT EXISTS dblink;
    conn := format('dbname=%s user=%s port=%s host=%s', current_database(), current_user,
                   current_setting('port'), split_part(current_setting('unix_socket_directories'), ',', 1));
    PERFORM dblink_connect('a', conn);
    PERFORM dblink_connect('b', conn);
    INSERT INTO conc VALUES (true);
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'concurrency tests skipped: %', SQLERRM;
END
$$;

-- Commit order = seq order: A numbers its change first but holds the counter; B waits.
-- B also loses the race to create service/a and must update it instead.
DO $$
DECLARE
    r  jsonb;
    s0 bigint := (SELECT last FROM change_seq);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conc) THEN RETURN; END IF;
    PERFORM dblink_exec('a', 'BEGIN');
    PERFORM * FROM dblink('a', $q$SELECT cmdb_node_put('service', 'a', NULL, NULL, NULL, 'a', 'api:a')::text$q$) AS t(x text);
    PERFORM dblink_send_query('b', $q$SELECT cmdb_node_put('service', 'a', '{"by":"b"}', NULL, NULL, 'b', 'api:b')::text$q$);
    PERFORM pg_sleep(0.3);
    PERFORM cmdb_test.eq(dblink_is_busy('b'), 1, 'B waits for A');
    PERFORM dblink_exec('a', 'COMMIT');
    SELECT x::jsonb INTO r FROM dblink_get_result('b') AS t(x text);
    PERFORM * FROM dblink_get_result('b') AS t(x text);
    PERFORM cmdb_test.status(r, 200, 'B updated what A created');
    PERFORM cmdb_test.eq(r #> '{body,sources}', '["api:a", "api:b"]', 'both sources');
    PERFORM cmdb_test.eq((r->>'seq')::bigint, s0 + 2, 'B seq after A');
    PERFORM cmdb_test.eq(cmdb_test.log_since(s0), ARRAY[(s0 + 1) || ' node.created service/a',
                         (s0 + 2) || ' node.updated service/a'], 'A then B');
END
$$;

-- An uncommitted change is invisible to the feed even though it holds a seq.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conc) THEN RETURN; END IF;
    PERFORM dblink_exec('a', 'BEGIN');
    PERFORM * FROM dblink('a', $q$SELECT cmdb_node_put('service', 'e', NULL, NULL, NULL, 'a', 'api:a')::text$q$) AS t(x text);
    PERFORM cmdb_test.eq(cmdb_changes(3, 10) #> '{body,changes}', '[]', 'uncommitted changes invisible');
    PERFORM dblink_exec('a', 'ROLLBACK');
END
$$;

-- Node delete vs edge put: the edge writer waits, then gets a 422, never an error or a
-- dangling edge.
DO $$
DECLARE
    r jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conc) THEN RETURN; END IF;
    PERFORM dblink_exec('a', 'BEGIN');
    PERFORM * FROM dblink('a', $q$SELECT cmdb_node_delete('service', 'd', NULL, 'a', 'api:a')::text$q$) AS t(x text);
    PERFORM dblink_send_query('b', $q$SELECT cmdb_edge_put('service/a', 'depends_on', 'service/d', NULL, 'b', 'api:b')::text$q$);
    PERFORM pg_sleep(0.3);
    PERFORM cmdb_test.eq(dblink_is_busy('b'), 1, 'edge put waits for the delete');
    PERFORM dblink_exec('a', 'COMMIT');
    SELECT x::jsonb INTO r FROM dblink_get_result('b') AS t(x text);
    PERFORM * FROM dblink_get_result('b') AS t(x text);
    PERFORM cmdb_test.status(r, 422, 'edge to a node deleted meanwhile', 'unprocessable');
    PERFORM cmdb_test.eq(r #> '{error,details,missing}', '["service/d"]', 'names the deleted node');
    PERFORM cmdb_test.eq((SELECT count(*) FROM edges), 0::bigint, 'no dangling edge');
END
$$;

-- Two sources applying manifests over the same nodes at once, both creating some of
-- them: the second waits for the first, adopts the nodes it created, and both apply
-- (no deadlock, no error).
DO $$
DECLARE
    r  jsonb;
    q1 text := $q$SELECT cmdb_apply_manifest('{"manifest":"cmdb/v1","source":"s1","nodes":[{"ref":"x/1"},{"ref":"x/2"}],
                    "edges":[{"from":"x/3","type":"depends_on","to":"x/1"},{"from":"service/a","type":"depends_on","to":"x/2"}]}',
                    't', 't', NULL, false)::text$q$;
    q2 text := $q$SELECT cmdb_apply_manifest('{"manifest":"cmdb/v1","source":"s2","nodes":[{"ref":"x/3"},{"ref":"x/2"}],
                    "edges":[{"from":"x/3","type":"depends_on","to":"x/1"},{"from":"x/2","type":"depends_on","to":"service/a"}]}',
                    't', 't', NULL, false)::text$q$;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM conc) THEN RETURN; END IF;
    PERFORM dblink_exec('a', 'BEGIN');
    SELECT x::jsonb INTO r FROM dblink('a', q1) AS t(x text);
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":3,"updated":1,"unchanged":0}', 'A creates x/1..3, asserts service/a');
    PERFORM dblink_send_query('b', q2);
    PERFORM pg_sleep(0.3);
    PERFORM cmdb_test.eq(dblink_is_busy('b'), 1, 'B waits for A');
    PERFORM dblink_exec('a', 'COMMIT');
    SELECT x::jsonb INTO r FROM dblink_get_result('b') AS t(x text);
    PERFORM * FROM dblink_get_result('b') AS t(x text);
    PERFORM cmdb_test.status(r, 200, 'B applied after A');
    PERFORM cmdb_test.eq(r #> '{body,nodes}', '{"created":0,"updated":4,"unchanged":0}', 'B adopted A''s nodes');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"created":1,"updated":1,"removed":0,"unchanged":0}', 'B shares one edge');
    PERFORM cmdb_test.eq(cmdb_node_get('x', '3') #> '{body,sources}', '["s1", "s2"]', 'shared node');
    PERFORM cmdb_test.eq((SELECT array_agg(seq ORDER BY seq) = array_agg(seq ORDER BY local_id) FROM changes), true,
                         'seq order = insertion order across transactions');
    PERFORM dblink_disconnect('a');
    PERFORM dblink_disconnect('b');
END
$$;
