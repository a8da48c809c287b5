/*
 * sql.c — the statement table (see sql.h). Parameters are always bound, never
 * spliced into SQL text.
 */
#include "sql.h"

/* A change row's time in whole microseconds: what the tailer compares. */
#define SQL_CHANGE_AT "(extract(epoch FROM at) * 1000000)::bigint"

/* A field of a verification digest: "<bytes>:<value>" (graph.h, "Digests"). */
#define VERIFY_FIELD(x) "octet_length(" x ")::text || ':' || " x
/* The digest of a text: the first 16 bytes of its SHA-256, in hex. */
#define VERIFY_DIGEST(x) "encode(substr(sha256(convert_to(" x ", 'UTF8')), 1, 16), 'hex')"

const struct db_stmt sql_statements[SQL_COUNT] = {
    /* /readyz: the schema's version, and whether this is a standby (SPEC §7). */
    [SQL_READY] = {"ready",
		   "SELECT coalesce(max(version), 0), pg_is_in_recovery() FROM schema_migrations",
		   0, false},
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
			  " cmdb_ts(at),"
			  /* the row's identity across a failover (tailer.h) */
			  " " SQL_CHANGE_AT
			  " FROM changes WHERE seq > $1::bigint ORDER BY seq LIMIT 20000",
			  1, false},
    /* The tailer's poll of manifest sightings (no-op re-posts log no change):
     * sources applied after $1 (NULL = all), and the cursor for the next poll:
     * 30 s behind now(), or the start of the oldest open transaction when that is
     * older, because last_applied_at is a transaction's start time and the
     * transaction may commit much later. On a hot standby (SPEC §7) what the
     * primary committed arrives later still, and its open transactions are not
     * in the standby's pg_stat_activity: the cursor also stays 30 s behind the
     * last transaction replayed (pg_last_xact_replay_timestamp(): NULL on a
     * primary, which least() ignores). And the change log's high-water mark and
     * the time of change $2 (the last the map applied): the tailer checks that
     * the log has not gone back (tailer.h). Always one row. Last, the source's
     * fingerprint, NULL when it is stale (noop.h's memory). */
    [SQL_SOURCES_SEEN] = {"sources_seen",
			  "SELECT s.source, cmdb_ts(s.last_applied_at),"
			  " cmdb_ts(c.since), c.last, c.at,"
			  " CASE WHEN NOT s.stale THEN s.manifest_hash END"
			  " FROM (SELECT (SELECT last FROM change_seq) AS last,"
			  " (SELECT " SQL_CHANGE_AT " FROM changes WHERE seq = $2::bigint) AS at,"
			  " least(now() - interval '30 seconds',"
			  " pg_last_xact_replay_timestamp() - interval '30 seconds',"
			  " (SELECT min(xact_start) FROM pg_stat_activity"
			  " WHERE datname = current_database())) AS since) c"
			  " LEFT JOIN source_state s"
			  " ON $1::timestamptz IS NULL OR s.last_applied_at > $1::timestamptz",
			  2, false},
    /* body (text: parsed by PostgreSQL only when it must be applied), source,
     * actor, token, Idempotency-Key, dry_run, fingerprint, generation, deployment,
     * extensions (migrations/0004_ingest.sql), ttl in seconds (0007_sources.sql) */
    [SQL_MANIFEST_APPLY] = {"manifest_apply",
			    "SELECT cmdb_post_manifest_ttl($1, $2, $3, $4, $5, $6::boolean, $7,"
			    " $8::bigint, $9::jsonb, $10::jsonb, $11::bigint)",
			    11, true},
    /* Identical re-posts together (noop.h, migrations/0010_noop_batch.sql): the
     * items as a JSON array; a row (item, reply or NULL) per item. */
    [SQL_MANIFEST_NOOP_BATCH] = {"manifest_noop_batch",
				 "SELECT item, reply"
				 " FROM cmdb_manifest_noop_batch($1::jsonb)",
				 1, true},
    [SQL_DEPLOYMENTS] = {"deployments", "SELECT cmdb_deployments($1, $2::int, $3)", 3, false},
    /* A verification's view of the database (verify.h), one statement so one
     * snapshot: the seq it reflects ('s'), a digest per node ('n') and per node
     * with outgoing edges ('e', with their count), by ref in byte order. The
     * digests are graph.h's ("Digests"), field for field. */
    /* The digest expressions read best one field a line. */
    /* clang-format off */
	[SQL_VERIFY] = {"verify",
	    "SELECT * FROM ("
	    " SELECT 's' AS tag, NULL::text AS ref, last::text AS digest, NULL::text AS n"
	    " FROM change_seq"
	    " UNION ALL"
	    " SELECT 'n', n.ref, "
	    VERIFY_DIGEST(
		VERIFY_FIELD("n.id::text") " || "
		VERIFY_FIELD("n.ref") " || "
		VERIFY_FIELD("n.kind") " || "
		VERIFY_FIELD("n.name") " || "
		VERIFY_FIELD("n.health") " || "
		"coalesce(" VERIFY_FIELD("n.health_reason") ", '~') || "
		VERIFY_FIELD("(CASE WHEN n.orphan THEN 'true' ELSE 'false' END)") " || "
		VERIFY_FIELD("n.version::text") " || "
		VERIFY_FIELD("cmdb_ts(n.created_at)") " || "
		VERIFY_FIELD("cmdb_ts(n.updated_at)") " || "
		VERIFY_FIELD("n.attributes::text") " || "
		VERIFY_FIELD("n.labels::text") " || "
		VERIFY_FIELD("n.sources::text"))
	    ", NULL"
	    " FROM nodes n"
	    " UNION ALL"
	    " SELECT 'e', f.ref, "
	    VERIFY_DIGEST(
		"string_agg(" VERIFY_FIELD("e.type") " || " VERIFY_FIELD("t.ref")
		", '' ORDER BY e.type COLLATE \"C\", t.ref COLLATE \"C\")")
	    ", count(*)::text"
	    " FROM edges e JOIN nodes f ON f.id = e.from_id JOIN nodes t ON t.id = e.to_id"
	    " GROUP BY f.id, f.ref"
	    ") v ORDER BY tag, ref COLLATE \"C\"",
	    0, false},
    /* clang-format on */
    /* Staleness and drift (migrations/0007_sources.sql). Durations in seconds, NULL =
     * off. The sweep is one unit of work per call, in the instance holding its lock. */
    [SQL_SWEEP] = {"sweep",
		   "SELECT cmdb_sweep($1::bigint * interval '1 second',"
		   " $2::bigint * interval '1 second')",
		   2, true},
    [SQL_SOURCES] = {"sources",
		     "SELECT cmdb_sources($1::bigint * interval '1 second', $2::int, $3)", 3,
		     false},
    [SQL_DRIFT] = {"drift", "SELECT cmdb_drift($1, string_to_array($2, ','))", 2, false},
    /* updates, invalid refs, alerts without cmdb_ref, actor, source (0009) */
    [SQL_ALERTMANAGER] = {"alertmanager",
			  "SELECT cmdb_alertmanager_apply($1::jsonb, $2::jsonb, $3::int, $4, $5)",
			  5, true},
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

bool
sql_reads_only(int stmt)
{
	switch (stmt) {
	case SQL_NODE_GET:
	case SQL_NODE_LIST:
	case SQL_NODE_EDGES:
	case SQL_CHANGES:
	case SQL_DEPLOYMENTS:
	case SQL_SOURCES:
	case SQL_DRIFT:
		return true;
	default:
		return false;
	}
}
