-- tests/bench/history.sql — synthetic history for the as_of figure of `make bench`
-- (psql -v n=N): about N more change rows, written by the same SQL functions the API
-- calls — 80% health changes of random nodes, 20% a random edge deleted and put back
-- by hand (a replaced edge: two rows) — committed every 5,000 calls. bench.sh then
-- spreads the `at` of every change row evenly over the last 30 days (the estate was
-- written in minutes), so that "one day back" is a real point 1/30 of the log ago.
SET bench.n = :n;
DO $$
DECLARE
    n      int := current_setting('bench.n')::int;
    states text[] := ARRAY['down', 'ok', 'degraded', 'ok'];
    ks     text[];
    ns     text[];
    ef     text[];
    et     text[];
    eto    text[];
    i      int := 0;
    done   int := 0;
    j      int;
BEGIN
    SELECT array_agg(kind), array_agg(name) INTO ks, ns FROM nodes;
    SELECT array_agg(f.kind || '/' || f.name), array_agg(e.type), array_agg(t.kind || '/' || t.name)
      INTO ef, et, eto
      FROM (SELECT * FROM edges WHERE type <> 'owned_by' LIMIT 200000) e
      JOIN nodes f ON f.id = e.from_id JOIN nodes t ON t.id = e.to_id;
    WHILE done < n LOOP
        IF random() < 0.8 THEN
            j := 1 + floor(random() * cardinality(ks))::int;
            PERFORM cmdb_node_health(ks[j], ns[j], states[1 + i % 4], 'bench churn', 'bench',
                                     'api:bench');
            done := done + 1;
        ELSE
            j := 1 + floor(random() * cardinality(ef))::int;
            PERFORM cmdb_edge_delete(ef[j], et[j], eto[j], 'bench', 'api:bench');
            PERFORM cmdb_edge_put(ef[j], et[j], eto[j], NULL, 'bench', 'api:bench');
            done := done + 2;
        END IF;
        i := i + 1;
        IF i % 5000 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;
UPDATE changes SET at = now() - interval '30 days' * ((m - seq)::float8 / m)
  FROM (SELECT max(seq) AS m FROM changes) x;
VACUUM ANALYZE changes;
SELECT max(seq) FROM changes;
