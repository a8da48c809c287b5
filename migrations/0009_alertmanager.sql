-- 0009_alertmanager.sql — POST /v1/integrations/alertmanager (SPEC §6): the health
-- updates one Alertmanager notification carries, applied in one transaction.
--
-- cmdbd reads the notification, maps each alert to (ref, state, reason), folds the
-- alerts of one node into one update (the worst state wins) and calls this function
-- once with the updates sorted by ref: rows are locked in ref order, so two
-- notifications touching the same nodes cannot deadlock. Per node it does exactly what
-- cmdb_node_health (0004) does for PUT /v1/nodes/{kind}/{name}/health; all change rows
-- are numbered by one cmdb_commit_changes() at the end.

-- updates: [{"kind","name","state","reason","alerts"}...] sorted by ref, one per node
-- (alerts: how many alerts named it); invalid: the distinct cmdb_ref values that are not
-- refs; skipped: the alerts cmdbd set aside (no cmdb_ref, or not a ref).
-- Reply body: {"updated":[refs set],"ignored":N alerts not applied,
--              "unknown":[invalid refs, then refs naming no node],
--              "refresh":[{"ref","id","health_at"}...]} — refresh lists the nodes whose
-- health did not change (only health_at moved, no change row), which cmdbd merges
-- into its in-memory images as it does after a health PUT.
CREATE FUNCTION cmdb_alertmanager_apply(updates jsonb, invalid jsonb, skipped int,
                                        p_actor text, p_source text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    u       jsonb;
    n       nodes;
    ref     text;
    before  jsonb;
    updated jsonb := '[]';
    unknown jsonb := coalesce(invalid, '[]');
    refresh jsonb := '[]';
    ignored bigint := skipped;
    cname   text;
BEGIN
    FOR u IN SELECT value FROM jsonb_array_elements(updates) LOOP
        ref := (u->>'kind') || '/' || (u->>'name');
        SELECT * INTO n FROM nodes WHERE kind = u->>'kind' AND name = u->>'name'
           FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            unknown := unknown || to_jsonb(ref);
            ignored := ignored + coalesce((u->>'alerts')::int, 1);
            CONTINUE;
        END IF;
        updated := updated || to_jsonb(ref);
        IF n.health = u->>'state' AND n.health_reason IS NOT DISTINCT FROM u->>'reason' THEN
            UPDATE nodes SET health_at = now() WHERE id = n.id RETURNING * INTO n;
            refresh := refresh || jsonb_build_object('ref', ref, 'id', n.id,
                                                     'health_at', cmdb_ts(n.health_at));
            CONTINUE;
        END IF;
        before := cmdb_node_json(n);
        UPDATE nodes
           SET health = u->>'state', health_reason = u->>'reason', health_at = now(),
               version = version + 1, updated_at = now()
         WHERE id = n.id
        RETURNING * INTO n;
        PERFORM cmdb_log_change(p_actor, p_source, 'node.updated', ref, before,
                                cmdb_node_json(n));
    END LOOP;
    RETURN cmdb_reply(200, jsonb_build_object(
                               'updated', updated, 'unknown', unknown, 'refresh', refresh,
                               'ignored', ignored),
                      cmdb_commit_changes(), NULL);
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
    RETURN cmdb_constraint_error(cname);
END
$$;
