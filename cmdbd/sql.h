/*
 * sql.h — every statement the server runs on its request path, in one table.
 *
 * Statements are prepared per connection (db.c) and always take text parameters.
 * The write and list statements call the SQL functions of migrations/ and return
 * one jsonb reply (see DESIGN.md, "The C <-> SQL contract").
 */
#ifndef CMDB_SQL_H
#define CMDB_SQL_H

#include <stdbool.h>

#include "db.h"

enum sql_stmt {
	SQL_READY,
	SQL_TOKENS_ALL,
	SQL_TOKEN_ONE,
	SQL_NODE_GET,
	SQL_NODE_PUT,
	SQL_NODE_DELETE,
	SQL_NODE_LIST,
	SQL_NODE_EDGES,
	SQL_NODE_HEALTH,
	SQL_EDGE_PUT,
	SQL_EDGE_DELETE,
	SQL_CHANGES,
	SQL_CHANGES_TAIL,
	SQL_SOURCES_SEEN,
	SQL_MANIFEST_APPLY,
	SQL_MANIFEST_NOOP_BATCH,
	SQL_DEPLOYMENTS,
	SQL_VERIFY,
	SQL_SWEEP,
	SQL_SOURCES,
	SQL_DRIFT,
	SQL_ALERTMANAGER,
	SQL_HISTORY_POINT,
	SQL_HISTORY_REDO,
	SQL_HISTORY_UNDO,
	SQL_HISTORY_IMAGES,
	SQL_DIFF,
	SQL_COUNT
};

extern const struct db_stmt sql_statements[SQL_COUNT];

/*
 * True for the statements that only read and may run on a hot standby: lists,
 * node reads, the change feed (SPEC §7, CMDB_READ_DATABASE_URL). Writes, tokens,
 * the sweep and /readyz?for=write stay on the primary.
 */
bool sql_reads_only(int stmt);

#endif
