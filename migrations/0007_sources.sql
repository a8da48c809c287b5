-- 0007_sources: staleness (source TTLs, expiry, orphan purge) and drift (SPEC §5).
--
-- Redefines no function of 0001-0006. It adds:
--   * source_state.ttl / expired_at and nodes.orphan_since (+ the trigger that keeps it);
--   * cmdb_post_manifest_ttl(): cmdb_post_manifest() plus the manifest's `ttl`, stored in
--     the same transaction (the server calls this one now);
--   * cmdb_sweep(): one unit of the sweeper's work (expire one source, or purge one
--     orphan), only in the instance holding the sweep lock;
--   * cmdb_sources() (GET /v1/sources) and cmdb_drift() (GET /v1/drift).

-- ---------------------------------------------------------------------------------
-- Schema
-- ---------------------------------------------------------------------------------

-- ttl: the latest manifest's "ttl" (NULL: the server's --source-ttl applies).
-- expired_at: when the sweeper expired the source (withdrew everything it asserted);
-- NULL once it applies a manifest again.
ALTER TABLE source_state ADD COLUMN ttl interval CHECK (ttl > interval '0'),
                         ADD COLUMN expired_at timestamptz;

-- When the node last became an orphan (NULL while it is not one): the orphan purge
-- deletes the orphans whose orphan_since is older than --orphan-purge-after. Existing
-- orphans get their updated_at, a time at or after they became orphans (the purge may
-- come later than it should, never earlier).
ALTER TABLE nodes ADD COLUMN orphan_since timestamptz;
UPDATE nodes SET orphan_since = updated_at WHERE orphan;

-- Kept by a trigger rather than by the writers: orphan is set in cmdb_manifest_apply
-- (0004, a source no longer asserts a node) and cleared there and in cmdb_node_put
-- (0002/0004). Redefining those large functions to set one more column would put a copy
-- of each here, to be kept in step with every later redefinition (0005 re-creates
-- some); the trigger covers every writer, present and future. Its WHEN clause is
-- evaluated without a function call, so an update that leaves orphan as it was (most
-- of them) pays nothing, and orphan_since is not indexed, so HOT updates stay HOT.
CREATE FUNCTION cmdb_nodes_orphan_since() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.orphan_since := CASE WHEN NEW.orphan THEN now() END;
    RETURN NEW;
END
$$;

CREATE TRIGGER nodes_orphan_since_update BEFORE UPDATE OF orphan ON nodes
    FOR EACH ROW WHEN (OLD.orphan IS DISTINCT FROM NEW.orphan)
    EXECUTE FUNCTION cmdb_nodes_orphan_since();
CREATE TRIGGER nodes_orphan_since_insert BEFORE INSERT ON nodes
    FOR EACH ROW WHEN (NEW.orphan)
    EXECUTE FUNCTION cmdb_nodes_orphan_since();

-- ---------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------

-- A duration as the manifest and the flags spell it: the largest unit that divides it
-- (7d, 36h, 90m, 45s). NULL stays NULL.
CREATE FUNCTION cmdb_duration_text(d interval) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN s % 86400 = 0 THEN (s / 86400) || 'd'
                WHEN s % 3600 = 0 THEN (s / 3600) || 'h'
                WHEN s % 60 = 0 THEN (s / 60) || 'm'
                ELSE s || 's' END
      FROM (SELECT extract(epoch FROM d)::bigint AS s) x
$$;

-- When a source expires: its last apply plus its TTL (its manifest's, else the
-- server's default_ttl); NULL when no TTL applies.
CREATE FUNCTION cmdb_source_expires_at(st source_state, default_ttl interval)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT st.last_applied_at + coalesce(st.ttl, default_ttl)
$$;

-- ---------------------------------------------------------------------------------
-- POST /v1/manifests with a ttl
-- ---------------------------------------------------------------------------------

-- cmdb_post_manifest (0004) and then, when the manifest was applied (a fast no-op
-- included: the reply carries its "sighting"; a dry run, an error or an idempotent
-- replay does not), the source's ttl from this manifest (NULL: none) and the end of
-- an expiry. Both hashes of a manifest cover its ttl, so a no-op re-post has the ttl
-- stored already and writes nothing here; the row is the source's own, locked by the
-- apply already. p_ttl: the manifest's ttl in seconds, validated by the server.
CREATE FUNCTION cmdb_post_manifest_ttl(body text, src text, actor text, token_name text,
                                       idem_key text, dry_run boolean, mhash text,
                                       gen bigint, dep jsonb, ext jsonb, p_ttl bigint)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    reply jsonb := cmdb_post_manifest(body, src, actor, token_name, idem_key, dry_run, mhash,
                                      gen, dep, ext);
    t     interval := p_ttl * interval '1 second';
BEGIN
    IF reply ? 'sighting' THEN
        UPDATE source_state SET ttl = t, expired_at = NULL
         WHERE source = src AND (ttl IS DISTINCT FROM t OR expired_at IS NOT NULL);
    END IF;
    RETURN reply;
END
$$;

-- ---------------------------------------------------------------------------------
-- The sweeper
-- ---------------------------------------------------------------------------------

-- Expires source src if it is (still) due: applies an empty manifest of the source
-- (cmdb_manifest_apply, the very replacement a manifest does: its edges lose it, the
-- nodes nobody else asserts become orphans), logs the changes with actor 'cmdbd' and
-- source src, and marks the source expired and stale (its next manifest is applied in
-- full, even when it is the body it sent last). Takes the source's lock as a manifest
-- does, so it never runs beside an apply of the same source. last_applied_at and the
-- generation stay: they are what the source did.
CREATE FUNCTION cmdb_source_expire(src text, default_ttl interval) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st  source_state;
    res record;
    seq bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('cmdb.source ' || src, 0));
    SELECT * INTO st FROM source_state WHERE source = src;
    IF NOT FOUND OR st.expired_at IS NOT NULL OR cmdb_source_expires_at(st, default_ttl) > now() THEN
        RETURN NULL;
    END IF;
    BEGIN
        SELECT * INTO res
          FROM cmdb_manifest_apply(jsonb_build_object('manifest', 'cmdb/v1', 'source', src),
                                   src, 'cmdbd');
        -- The fast no-op of a re-post (cmdb_manifest_noop) takes no advisory lock, only
        -- this row: lock it and look again. A re-post that committed meanwhile made the
        -- source fresh: undo the apply. One that comes later waits for us and then
        -- finds the source stale, so it applies in full.
        SELECT * INTO st FROM source_state WHERE source = src FOR UPDATE;
        IF st.expired_at IS NOT NULL OR cmdb_source_expires_at(st, default_ttl) > now() THEN
            RAISE SQLSTATE 'CMSKP' USING MESSAGE = 'source re-posted while expiring';
        END IF;
    EXCEPTION WHEN SQLSTATE 'CMSKP' THEN
        RETURN NULL;
    END;
    UPDATE source_state SET stale = true, expired_at = now(), last_report = res.report
     WHERE source = src;
    -- Last: the counter row, held until commit.
    seq := cmdb_log_changes('cmdbd', src, res.ops, res.refs, res.befores, res.afters);
    RETURN cmdb_reply(200, jsonb_build_object('expired', src, 'report', res.report), seq, NULL);
END
$$;

-- Deletes orphan node id if it is (still) an orphan since before now() - purge_after,
-- as DELETE /v1/nodes does (its edges go too; history keeps all), by actor 'cmdbd'
-- under source 'cmdbd:orphan-purge'. NULL when there is nothing to do.
CREATE FUNCTION cmdb_orphan_purge(node_id uuid, purge_after interval) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n     nodes;
    reply jsonb;
BEGIN
    -- The row lock first (the order a hand delete takes), then the re-check: a
    -- manifest may have asserted the node again since it was picked.
    SELECT * INTO n FROM nodes WHERE id = node_id FOR UPDATE;
    IF NOT FOUND OR NOT n.orphan OR n.orphan_since > now() - purge_after THEN
        RETURN NULL;
    END IF;
    reply := cmdb_node_delete(n.kind, n.name, NULL, 'cmdbd', 'cmdbd:orphan-purge');
    IF (reply->>'status')::int <> 204 THEN
        RETURN NULL;
    END IF;
    RETURN cmdb_reply(200, jsonb_build_object('purged', n.kind || '/' || n.name),
                      (reply->>'seq')::bigint, NULL);
END
$$;

-- One unit of the sweeper's work, as its own transaction: expire the most overdue
-- source, else purge the oldest orphan past purge_after (NULL: never). Every cmdbd
-- calls it on a timer; pg_try_advisory_xact_lock lets one at a time in and the others
-- return at once ({"swept":false}). Replies
--   {"status":200,"seq":N,"body":{"swept":true,"more":true,"expired":SRC,"report":{…}}}
--   {"status":200,"seq":N,"body":{"swept":true,"more":true,"purged":REF}}
--   {"status":200,"seq":null,"body":{"swept":true,"more":false}}      nothing due
-- more: call again at once (there may be more to do). One unit per transaction keeps
-- the change counter's lock (taken last by each unit) as short as a manifest's.
CREATE FUNCTION cmdb_sweep(default_ttl interval, purge_after interval) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    src   text;
    nid   uuid;
    reply jsonb;
    done  jsonb := jsonb_build_object('swept', true, 'more', true);
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('cmdb.sweep', 0)) THEN
        RETURN cmdb_reply(200, jsonb_build_object('swept', false, 'more', false), NULL, NULL);
    END IF;

    SELECT s.source INTO src
      FROM source_state s
     WHERE s.expired_at IS NULL AND cmdb_source_expires_at(s, default_ttl) <= now()
     ORDER BY cmdb_source_expires_at(s, default_ttl), s.source COLLATE "C"
     LIMIT 1;
    IF src IS NOT NULL THEN
        reply := cmdb_source_expire(src, default_ttl);
        IF reply IS NULL THEN   -- re-posted meanwhile: look again
            RETURN cmdb_reply(200, done, NULL, NULL);
        END IF;
        RETURN jsonb_set(reply, '{body}', done || (reply->'body'));
    END IF;

    IF purge_after IS NOT NULL THEN
        SELECT n.id INTO nid
          FROM nodes n
         WHERE n.orphan AND n.orphan_since <= now() - purge_after
         ORDER BY n.orphan_since, n.id
         LIMIT 1;
        IF nid IS NOT NULL THEN
            reply := cmdb_orphan_purge(nid, purge_after);
            IF reply IS NULL THEN
                RETURN cmdb_reply(200, done, NULL, NULL);
            END IF;
            RETURN jsonb_set(reply, '{body}', done || (reply->'body'));
        END IF;
    END IF;
    RETURN cmdb_reply(200, jsonb_build_object('swept', true, 'more', false), NULL, NULL);
END
$$;

-- ---------------------------------------------------------------------------------
-- GET /v1/sources
-- ---------------------------------------------------------------------------------

-- Every manifest source in byte order, keyset paginated (cursor: hex of the last
-- source of the page). default_ttl: the server's --source-ttl (NULL: off). nodes and
-- edges: how many the source asserts now.
CREATE FUNCTION cmdb_sources(default_ttl interval, lim int, p_cursor text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    l     int := greatest(1, least(coalesce(lim, 100), 1000));
    after text;
    items jsonb[];
    keys  text[];
    n     int;
BEGIN
    IF p_cursor IS NOT NULL THEN
        after := cmdb_cursor_decode(p_cursor);
        IF after IS NULL THEN
            RETURN cmdb_error(400, 'bad_request', 'cursor: is not a cursor this server issued',
                              jsonb_build_object('field', 'cursor'));
        END IF;
    END IF;
    SELECT array_agg(jsonb_build_object(
               'source', s.source,
               'generation', s.generation,
               'last_applied_at', cmdb_ts(s.last_applied_at),
               'ttl', cmdb_duration_text(coalesce(s.ttl, default_ttl)),
               'expires_at', cmdb_ts(cmdb_source_expires_at(s, default_ttl)),
               'expired', s.expired_at IS NOT NULL,
               'nodes', (SELECT count(*) FROM node_sources x WHERE x.source = s.source),
               'edges', (SELECT count(*) FROM edge_sources x WHERE x.source = s.source))
               ORDER BY s.source COLLATE "C"),
           array_agg(s.source ORDER BY s.source COLLATE "C")
      INTO items, keys
      FROM (SELECT * FROM source_state
             WHERE after IS NULL OR source COLLATE "C" > after COLLATE "C"
             ORDER BY source COLLATE "C"
             LIMIT l + 1) s;
    n := coalesce(array_length(items, 1), 0);
    RETURN cmdb_reply(200, jsonb_build_object(
        'items', coalesce(to_jsonb(items[1:l]), '[]'::jsonb),
        'next_cursor', CASE WHEN n > l THEN to_jsonb(cmdb_cursor_encode(keys[l])) END),
        NULL, NULL);
END
$$;

-- ---------------------------------------------------------------------------------
-- GET /v1/drift
-- ---------------------------------------------------------------------------------

-- Is this the name of an observed source (traces, flow logs: what was seen on the wire)?
CREATE FUNCTION cmdb_source_observed(source text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT starts_with(source, 'observed:')
$$;

-- An edge as SPEC §2 shapes it plus "last_asserted": {source: when it last asserted
-- the edge} — a manifest source's last apply (by replacement its latest manifest
-- asserts exactly its rows), a hand edit's time for api:… sources.
CREATE FUNCTION cmdb_drift_edge(edge_id bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT cmdb_edge_json(edge_id) || jsonb_build_object('last_asserted', coalesce(
               (SELECT jsonb_object_agg(s.source, cmdb_ts(coalesce(st.last_applied_at, s.asserted_at)))
                  FROM edge_sources s LEFT JOIN source_state st ON st.source = s.source
                 WHERE s.edge_id = cmdb_drift_edge.edge_id), '{}'::jsonb))
$$;

-- observer: one observed source (NULL: every one); types: the edge types `unobserved`
-- covers. undeclared: edges asserted by an observer and by no source that is not an
-- observed one. unobserved: edges of those types asserted by some non-observed source
-- and by none of the observers, both of whose endpoints appear in the observers'
-- edges (an observer speaks only for what it instruments). 404 for an observer that
-- has sent no manifest.
CREATE FUNCTION cmdb_drift(p_observer text, p_types text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    obs text[];
BEGIN
    SELECT array_agg(source ORDER BY source COLLATE "C") INTO obs
      FROM source_state
     WHERE cmdb_source_observed(source) AND (p_observer IS NULL OR source = p_observer);
    IF p_observer IS NOT NULL AND obs IS NULL THEN
        RETURN cmdb_error(404, 'not_found', 'observer ' || p_observer || ' has sent no manifest',
                          jsonb_build_object('observer', p_observer));
    END IF;
    obs := coalesce(obs, '{}');
    RETURN cmdb_reply(200, (
        WITH seen AS (           -- edges the observers assert
            SELECT DISTINCT s.edge_id FROM edge_sources s WHERE s.source = ANY (obs)),
        instrumented AS (        -- the nodes they speak for: their edges' endpoints
            SELECT e.from_id AS id FROM edges e JOIN seen ON seen.edge_id = e.id
            UNION
            SELECT e.to_id FROM edges e JOIN seen ON seen.edge_id = e.id),
        undeclared AS (
            SELECT cmdb_drift_edge(seen.edge_id) AS j FROM seen
             WHERE NOT EXISTS (SELECT 1 FROM edge_sources s
                                WHERE s.edge_id = seen.edge_id
                                  AND NOT cmdb_source_observed(s.source))),
        unobserved AS (
            SELECT cmdb_drift_edge(e.id) AS j FROM edges e
             WHERE e.type = ANY (p_types)
               AND e.from_id IN (SELECT id FROM instrumented)
               AND e.to_id IN (SELECT id FROM instrumented)
               AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.edge_id = e.id)
               AND EXISTS (SELECT 1 FROM edge_sources s
                            WHERE s.edge_id = e.id AND NOT cmdb_source_observed(s.source)))
        SELECT jsonb_build_object(
            'observers', to_jsonb(obs),
            'undeclared', coalesce((SELECT jsonb_agg(j ORDER BY j->>'from' COLLATE "C",
                                                     j->>'type' COLLATE "C", j->>'to' COLLATE "C")
                                      FROM undeclared), '[]'::jsonb),
            'unobserved', coalesce((SELECT jsonb_agg(j ORDER BY j->>'from' COLLATE "C",
                                                     j->>'type' COLLATE "C", j->>'to' COLLATE "C")
                                      FROM unobserved), '[]'::jsonb))), NULL, NULL);
END
$$;
