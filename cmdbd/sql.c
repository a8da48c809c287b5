/*
 * sql.c — the statement table (see sql.h). Parameters are always bound, never
 * spliced into SQL text.
 */
#include "sql.h"

const struct db_stmt sql_statements[SQL_COUNT] = {
    [SQL_READY] = {"ready", "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, false},
    [SQL_TOKENS_ALL] = {"tokens_all",
			"SELECT name, hash, scope, coalesce(source_glob, ''),"
			" coalesce(extract(epoch FROM expires_at)::bigint, 0),"
			" revoked_at IS NOT NULL FROM tokens",
			0, false},
    [SQL_TOKEN_ONE] = {"token_one",
		       "SELECT name, hash, scope, coalesce(source_glob, ''),"
		       " coalesce(extract(epoch FROM expires_at)::bigint, 0),"
		       " revoked_at IS NOT NULL FROM tokens WHERE hash = $1",
		       1, false},
    [SQL_NODE_GET] = {"node_get", "SELECT cmdb_node_get($1, $2)", 2, false},
    [SQL_NODE_PUT] = {"node_put", "SELECT cmdb_node_put($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7)",
		      7, true},
    [SQL_NODE_DELETE] = {"node_delete", "SELECT cmdb_node_delete($1, $2, $3, $4, $5)", 5, true},
    [SQL_NODE_LIST] = {"node_list", "SELECT cmdb_node_list($1::jsonb)", 1, false},
    [SQL_NODE_EDGES] = {"node_edges", "SELECT cmdb_node_edges($1, $2, $3, $4)", 4, false},
    [SQL_NODE_HEALTH] = {"node_health", "SELECT cmdb_node_health($1, $2, $3, $4, $5, $6)", 6, true},
    [SQL_EDGE_PUT] = {"edge_put", "SELECT cmdb_edge_put($1, $2, $3, $4::jsonb, $5, $6)", 6, true},
    [SQL_EDGE_DELETE] = {"edge_delete", "SELECT cmdb_edge_delete($1, $2, $3, $4, $5)", 5, true},
    [SQL_CHANGES] = {"changes", "SELECT cmdb_changes($1::bigint, $2::int)", 2, false},
    /* The tailer's read: just what the in-memory graph needs, in seq order. */
    [SQL_CHANGES_TAIL] = {"changes_tail",
			  "SELECT seq, op,"
			  " coalesce(after, before)->>'ref',"
			  " coalesce(after, before)->>'from',"
			  " coalesce(after, before)->>'type',"
			  " coalesce(after, before)->>'to',"
			  " after->>'health',"
			  " after->'attributes',"
			  /* the whole node: GET /v1/nodes/{kind}/{name} answers from it */
			  " CASE WHEN op LIKE 'node.%' THEN after::text END,"
			  /* its time: as-of points (history.h) */
			  " cmdb_ts(at)"
			  " FROM changes WHERE seq > $1::bigint ORDER BY seq LIMIT 20000",
			  1, false},
    /* The tailer's poll of manifest sightings (no-op re-posts log no change):
     * sources applied after $1 (NULL = all), and the cursor for the next poll:
     * 30 s behind now(), or the start of the oldest open transaction when that is
     * older, because last_applied_at is a transaction's start time and the
     * transaction may commit much later. Always one row. */
    [SQL_SOURCES_SEEN] = {"sources_seen",
			  "SELECT s.source, cmdb_ts(s.last_applied_at),"
			  " cmdb_ts(c.since)"
			  " FROM (SELECT least(now() - interval '30 seconds',"
			  " (SELECT min(xact_start) FROM pg_stat_activity"
			  " WHERE datname = current_database())) AS since) c"
			  " LEFT JOIN source_state s"
			  " ON $1::timestamptz IS NULL OR s.last_applied_at > $1::timestamptz",
			  1, false},
    /* body (text: parsed by PostgreSQL only when it must be applied), source,
     * actor, token, Idempotency-Key, dry_run, fingerprint, generation, deployment,
     * extensions (migrations/0004_ingest.sql) */
    [SQL_MANIFEST_APPLY] = {"manifest_apply",
			    "SELECT cmdb_post_manifest($1, $2, $3, $4, $5, $6::boolean, $7,"
			    " $8::bigint, $9::jsonb, $10::jsonb)",
			    10, true},
    [SQL_DEPLOYMENTS] = {"deployments", "SELECT cmdb_deployments($1, $2::int, $3)", 3, false},
    /* History (SPEC §5, migrations/0008_history.sql, cmdbd/history.c). */
    [SQL_HISTORY_POINT] = {"history_point",
			   "SELECT seq, at, cmdb_ts($2::timestamptz)"
			   " FROM cmdb_history_point($1::bigint, $2::timestamptz, $3::bigint)",
			   3, false},
    /* Rows (lo, hi] forward with their after images: replayed onto an empty graph. */
    [SQL_HISTORY_REDO] = {"history_redo",
			  "SELECT seq, op,"
			  " coalesce(after, before)->>'ref',"
			  " coalesce(after, before)->>'from',"
			  " coalesce(after, before)->>'type',"
			  " coalesce(after, before)->>'to',"
			  " after->>'health', after->'attributes', after IS NULL"
			  " FROM changes WHERE seq > $1::bigint AND seq <= $2::bigint"
			  " ORDER BY seq LIMIT 20000",
			  2, false},
    /* Rows (lo, hi] backward with their before images: undone on a copy of the map. */
    [SQL_HISTORY_UNDO] = {"history_undo",
			  "SELECT seq, op,"
			  " coalesce(before, after)->>'ref',"
			  " coalesce(before, after)->>'from',"
			  " coalesce(before, after)->>'type',"
			  " coalesce(before, after)->>'to',"
			  " before->>'health', before->'attributes', before IS NULL"
			  " FROM changes WHERE seq > $1::bigint AND seq <= $2::bigint"
			  " ORDER BY seq DESC LIMIT 20000",
			  2, false},
    [SQL_HISTORY_IMAGES] = {"history_images",
			    "SELECT cmdb_history_images(ARRAY(SELECT jsonb_array_elements_text("
			    "$1::jsonb)), $2::boolean, $3::bigint)",
			    3, false},
    [SQL_DIFF] = {"diff", "SELECT cmdb_diff($1, $2, $3::bigint)", 3, false},
};
