-- History (migrations/0008): points (seq, time), deployment bounds, images as of a seq,
-- and the diff. Change rows are written directly, with chosen times, to pin down what
-- the real writers can only produce by timing: `at` out of seq order, two deployments
-- back to back, a node whose ref reads like an edge's.
SELECT cmdb_test.reset();

DO $$
DECLARE
    t0 timestamptz := '2026-11-21T10:00:00Z';
    r  jsonb;
    d1 uuid := '11111111-1111-4111-8111-111111111111';
    d2 uuid := '22222222-2222-4222-8222-222222222222';
    d3 uuid := '33333333-3333-4333-8333-333333333333';
BEGIN
    -- seq 1..3: deployment d1 (source a, at t0+1s); 4..5: deployment d2 (source a,
    -- at t0+2s, right after d1); 6: a hand edit at t0+5s; 7: a transaction that started
    -- at t0+3s but committed last (at < the at of seq 6).
    INSERT INTO changes (seq, at, actor, source, op, ref, before, after) VALUES
      (1, t0 + '1s', 'x', 'a', 'node.created', 'service/a', NULL,
       '{"ref":"service/a","health":"unknown","version":1}'),
      (2, t0 + '1s', 'x', 'a', 'node.created', 'database/b', NULL,
       '{"ref":"database/b","health":"unknown","version":1}'),
      (3, t0 + '1s', 'x', 'a', 'edge.created', 'service/a depends_on database/b', NULL,
       '{"from":"service/a","type":"depends_on","to":"database/b","sources":["a"]}'),
      (4, t0 + '2s', 'x', 'a', 'node.updated', 'service/a',
       '{"ref":"service/a","health":"unknown","version":1}',
       '{"ref":"service/a","health":"down","version":2}'),
      (5, t0 + '2s', 'x', 'a', 'edge.deleted', 'service/a depends_on database/b',
       '{"from":"service/a","type":"depends_on","to":"database/b","sources":["a"]}', NULL),
      (6, t0 + '5s', 'x', 'api:x', 'node.created', 'service/a depends_on database/b', NULL,
       '{"ref":"service/a depends_on database/b","health":"ok","version":1}'),
      (7, t0 + '3s', 'x', 'api:y', 'node.deleted', 'database/b',
       '{"ref":"database/b","health":"unknown","version":1}', NULL);
    UPDATE change_seq SET last = 7;
    INSERT INTO deployments (id, source, applied_at, seq, report) VALUES
      (d1, 'a', t0 + '1s', 3, '{}'), (d2, 'a', t0 + '2s', 5, '{}'),
      (d3, 'a', t0 + '4s', NULL, '{}');

    -- Points by seq: clamped to what the server applied; 0 is the empty map.
    PERFORM cmdb_test.eq((SELECT row(seq, at)::text FROM cmdb_history_point(4, NULL, 7)),
                         row(4::bigint, '2026-11-21T10:00:02.000000Z')::text, 'seq 4');
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(99, NULL, 6)), 6::bigint,
                         'beyond the applied seq: the applied one');
    PERFORM cmdb_test.eq((SELECT row(seq, at)::text FROM cmdb_history_point(0, NULL, 7)),
                         row(0::bigint, NULL::text)::text, 'seq 0: no at');
    -- By time: the greatest seq whose at <= T (seq 7 started at +3s, before seq 6's +5s).
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(NULL, t0 + '3.5s', 7)), 7::bigint,
                         'T=+3.5s: seq 7 (at +3s) although seq 6 (at +5s) is not yet');
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(NULL, t0 + '2s', 7)), 5::bigint,
                         'T=+2s: at <= T, inclusive');
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(NULL, t0 + '1.9s', 7)), 3::bigint,
                         'T=+1.9s');
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(NULL, t0, 7)), 0::bigint,
                         'before everything: 0');
    PERFORM cmdb_test.eq((SELECT seq FROM cmdb_history_point(NULL, t0 + '1 year', 6)), 6::bigint,
                         'the future: the applied seq');

    -- Deployments: just before / just after their own rows, back to back too.
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d1, true, 7), 0::bigint, 'd1 from');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d1, false, 7), 3::bigint, 'd1 to');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d2, true, 7), 3::bigint,
                         'd2 from: d1 (same source, an at of its own) is not part of it');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d2, false, 7), 5::bigint, 'd2 to');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d3, true, 7), 7::bigint,
                         'a no-op deployment: the point of its applied_at (+4s: seq 7 at +3s)');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:' || d3, false, 7), 7::bigint,
                         'a no-op deployment: both ends alike');
    PERFORM cmdb_test.eq(cmdb_history_resolve('deployment:44444444-4444-4444-8444-444444444444',
                                              true, 7), NULL::bigint, 'unknown deployment');
    PERFORM cmdb_test.eq(cmdb_history_resolve('2026-11-21T10:00:01Z', true, 7), 3::bigint, 'time');
    PERFORM cmdb_test.eq(cmdb_history_resolve('4', true, 7), 4::bigint, 'seq');

    -- Images as of a seq: node and edge refs kept apart even when the strings match.
    PERFORM cmdb_test.eq(cmdb_history_images(ARRAY['service/a'], false, 3) #>> '{0,health}',
                         'unknown', 'service/a as of 3');
    PERFORM cmdb_test.eq(cmdb_history_images(ARRAY['service/a'], false, 4) #>> '{0,health}',
                         'down', 'service/a as of 4');
    PERFORM cmdb_test.eq(jsonb_array_length(cmdb_history_images(ARRAY['database/b'], false, 7)), 0,
                         'deleted: no image');
    PERFORM cmdb_test.eq(cmdb_history_images(ARRAY['service/a depends_on database/b'], true, 4)
                         #>> '{0,to}', 'database/b', 'the edge as of 4');
    PERFORM cmdb_test.eq(jsonb_array_length(
                           cmdb_history_images(ARRAY['service/a depends_on database/b'], true, 7)),
                         0, 'the edge was deleted at 5; the node of that name is not an edge');
    PERFORM cmdb_test.eq(cmdb_history_images(ARRAY['service/a depends_on database/b'], false, 7)
                         #>> '{0,health}', 'ok', 'the node of that name');

    -- Diff.
    r := cmdb_test.status(cmdb_diff('0', '7', 7), 200, 'diff 0..7');
    PERFORM cmdb_test.eq(r #> '{body,nodes}',
        '{"added":["service/a","service/a depends_on database/b"],"removed":[],"changed":[]}',
        'nodes 0..7: database/b came and went');
    PERFORM cmdb_test.eq(r #> '{body,edges}', '{"added":[],"removed":[],"changed":[]}', 'edges 0..7');
    r := cmdb_test.status(cmdb_diff('deployment:' || d2, 'deployment:' || d2, 7), 200, 'diff d2');
    PERFORM cmdb_test.eq(r #> '{body,from}', '{"seq":3,"at":"2026-11-21T10:00:01.000000Z"}', 'd2 from');
    PERFORM cmdb_test.eq(r #> '{body,nodes,changed}',
                         '[{"ref":"service/a","fields":["health","version"]}]', 'd2 changed fields');
    PERFORM cmdb_test.eq(r #> '{body,edges,removed,0,to}', '"database/b"', 'd2 removed the edge');
END
$$;

DO $$
BEGIN
    PERFORM cmdb_test.status(cmdb_diff('5', '2', 7), 400, 'from after to', 'bad_request');
    PERFORM cmdb_test.status(cmdb_diff('deployment:44444444-4444-4444-8444-444444444444', NULL, 7),
                             404, 'unknown deployment', 'not_found');
    PERFORM cmdb_test.eq(cmdb_diff('3', NULL, 7) #> '{body,to,seq}', '7', 'to defaults to the applied seq');
END
$$;
