-- 0006_errors.sql — the error policy (cmdbd/DESIGN.md, "Errors"): PostgreSQL's own
-- words never reach a client. A refusal the database makes (a constraint, a value it
-- cannot cast) is answered with a short factual message; the constraint's name or
-- PostgreSQL's message rides in error.log, which cmdbd writes to its log beside the
-- request id and strips from the reply.

CREATE OR REPLACE FUNCTION cmdb_constraint_error(constraint_name text) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_set(cmdb_error(400, 'bad_request', 'the data breaks a rule of the map'),
                     '{error,log}',
                     to_jsonb('violates ' || coalesce(constraint_name, 'a constraint')))
$$;

-- The manifest apply of 0004, unchanged but for its last handler: a value PostgreSQL
-- cannot cast (a deployment time C accepted but the calendar does not) no longer
-- quotes PostgreSQL's message to the client.
CREATE OR REPLACE FUNCTION cmdb_apply_manifest(manifest jsonb, actor text, token_name text,
                                    idem_key text, dry_run boolean, mhash text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    src    text := manifest->>'source';
    gen    bigint;
    -- Two fingerprints of the manifest. chash, of its jsonb text, decides what is "the
    -- same body" here (no-op, or 409 for an equal generation) and keys idempotency, as
    -- in 0003, so hashes stored before this migration keep matching. hash is the
    -- server's (mhash, over the parsed manifest), which lets cmdb_manifest_noop answer
    -- a re-post without parsing it; stored here for the next one.
    chash  text := encode(sha256(convert_to(manifest::text, 'UTF8')), 'hex');
    hash   text := coalesce(mhash, chash);
    req_hash text := chash;
    dep    jsonb := coalesce(manifest->'deployment', '{}');
    st     source_state;
    known  boolean;
    noop   boolean;
    stored idempotency;
    res    record;
    report jsonb;
    seq    bigint;
    dep_id uuid;
    reply  jsonb;
    detail text;
    cname  text;
BEGIN
    IF src LIKE 'api:%' THEN
        RETURN cmdb_error(400, 'bad_request',
                          'source: api:… sources are reserved for hand edits',
                          jsonb_build_object('field', 'source'));
    END IF;
    -- Idempotency (real applies only: a plan is not a request to remember). The key's
    -- lock makes a concurrent retry wait for the first attempt and then replay it.
    IF idem_key IS NOT NULL AND NOT dry_run THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.idem ' || token_name || ' ' || idem_key, 0));
        DELETE FROM idempotency WHERE ctid IN (
            SELECT ctid FROM idempotency
             WHERE created_at < now() - interval '24 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        SELECT * INTO stored FROM idempotency i
         WHERE i.token_name = cmdb_apply_manifest.token_name AND i.key = idem_key
           AND i.created_at >= now() - interval '24 hours';
        IF FOUND THEN
            IF stored.request_hash = req_hash THEN
                RETURN stored.response;
            END IF;
            RETURN cmdb_error(422, 'unprocessable',
                              'idempotency key "' || idem_key || '" was used with a different request',
                              jsonb_build_object('idempotency_key', idem_key));
        END IF;
    END IF;

    BEGIN
        gen := (manifest->>'generation')::bigint;
        -- One writer per source (its source_state row is locked only later, after the
        -- nodes and edges: hand deletes lock in that order).
        PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.source ' || src, 0));
        SELECT * INTO st FROM source_state WHERE source = src;
        known := FOUND;
        noop := known AND (st.content_hash = chash OR st.manifest_hash = hash) AND NOT st.stale;
        IF noop AND NOT dry_run THEN
            -- The sighting: the source's new last_applied_at. A hand delete may have
            -- marked the source stale since we read it: then this is a full apply.
            UPDATE source_state SET last_applied_at = greatest(last_applied_at, now()),
                                    manifest_hash = hash
             WHERE source = src AND NOT stale;
            noop := FOUND;
        END IF;

        IF noop THEN
            -- The fast no-op: the very manifest the source applied last. No node or
            -- edge row is touched.
            report := cmdb_manifest_noop_report(st.last_report);
            IF dry_run THEN
                RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                       || report, NULL, NULL);
            END IF;
        ELSIF known AND gen IS NOT NULL AND st.generation IS NOT NULL
              AND gen <= st.generation
              AND st.content_hash IS DISTINCT FROM chash AND st.manifest_hash <> hash THEN
            RETURN cmdb_error(409, 'conflict',
                              'generation ' || gen || ' of source ' || src
                              || ' is not newer than applied generation ' || st.generation,
                              jsonb_build_object('source', src, 'generation', gen,
                                                 'current_generation', st.generation));
        ELSE
            SELECT * INTO res FROM cmdb_manifest_apply(manifest, src, actor);
            report := res.report;
            IF dry_run THEN
                RAISE SQLSTATE 'CMDRY' USING MESSAGE = 'dry run', DETAIL = report::text;
            END IF;
            INSERT INTO source_state (source, generation, manifest_hash, content_hash,
                                      last_report, last_applied_at)
            VALUES (src, gen, hash, chash, report, now())
            ON CONFLICT (source) DO UPDATE
               SET generation = coalesce(EXCLUDED.generation, source_state.generation),
                   manifest_hash = EXCLUDED.manifest_hash,
                   content_hash = EXCLUDED.content_hash,
                   stale = false,
                   last_report = EXCLUDED.last_report,
                   last_applied_at = EXCLUDED.last_applied_at;
            -- Last: the counter row, held until commit.
            seq := cmdb_log_changes(actor, src, res.ops, res.refs, res.befores, res.afters);
        END IF;

        dep_id := gen_random_uuid();
        INSERT INTO deployments (id, source, node, version, revision, environment, actor,
                                 status, started_at, finished_at, applied_at, seq,
                                 generation, report, extensions)
        VALUES (dep_id, src, dep->>'node', dep->>'version', dep->>'revision',
                dep->>'environment', coalesce(dep->>'actor', actor), dep->>'status',
                (dep->>'started_at')::timestamptz, (dep->>'finished_at')::timestamptz,
                now(), seq, gen, report, manifest->'extensions');

        reply := cmdb_reply(200, jsonb_build_object('deployment_id', dep_id, 'seq', seq)
                                 || report, seq, NULL);
        IF idem_key IS NOT NULL THEN
            INSERT INTO idempotency (token_name, key, request_hash, response)
            VALUES (token_name, idem_key, req_hash, reply)
            ON CONFLICT ON CONSTRAINT idempotency_pkey DO UPDATE   -- expired, not yet purged
               SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response,
                   created_at = now();
        END IF;
        RETURN reply || jsonb_build_object('sighting', jsonb_build_object(
                            'source', src, 'at', cmdb_ts(now())));
    EXCEPTION
        WHEN SQLSTATE 'CMDRY' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN cmdb_reply(200, jsonb_build_object('deployment_id', NULL, 'seq', NULL)
                                   || detail::jsonb, NULL, NULL);
        WHEN SQLSTATE 'CMERR' THEN
            GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
            RETURN detail::jsonb;
        WHEN foreign_key_violation THEN
            -- A node we rely on was deleted under us (a hand delete): apply again.
            RAISE SQLSTATE '40001' USING MESSAGE = 'a node was deleted concurrently, retry the manifest';
        WHEN check_violation OR not_null_violation OR string_data_right_truncation THEN
            GET STACKED DIAGNOSTICS cname = CONSTRAINT_NAME;
            RETURN cmdb_constraint_error(cname);
        WHEN invalid_datetime_format OR datetime_field_overflow
             OR invalid_text_representation OR numeric_value_out_of_range THEN
            RETURN jsonb_set(cmdb_error(400, 'bad_request',
                                        'a manifest value is malformed (a time or a number)'),
                             '{error,log}', to_jsonb(SQLERRM));
    END;
END
$$;
