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
