/*
 * sweeper.h — staleness (SPEC §5): expires sources whose last manifest is older than
 * their TTL, and purges nodes that have been orphans longer than --orphan-purge-after.
 *
 * Every cmdbd runs one; the work itself is the SQL function cmdb_sweep()
 * (migrations/0007_sources.sql), which lets one instance at a time in
 * (pg_try_advisory_xact_lock) and does one unit of work per call — expire one source
 * (an empty manifest of it, logged as changes by actor cmdbd) or purge one orphan —
 * so that no sweep holds the change counter longer than a manifest does. The sweeper
 * calls it every SWEEPER_INTERVAL_MS, and again at once while it answers "more".
 * One statement in flight at a time, on the pool; a failure waits for the next tick.
 * Never blocks the loop.
 *
 * The sweep runs even with --source-ttl off: a manifest may carry its own "ttl".
 */
#ifndef CMDB_SWEEPER_H
#define CMDB_SWEEPER_H

#include <event2/event.h>

#include "db.h"

#define SWEEPER_INTERVAL_MS 1000

struct sweeper;

/*
 * stmt: SQL_SWEEP (params: default TTL seconds, purge-after seconds; NULL = off).
 * source_ttl, purge_after: seconds, 0 = off. Starts ticking at once. NULL on ENOMEM.
 */
struct sweeper *sweeper_new(struct event_base *base, struct db *db, int stmt, long source_ttl,
			    long purge_after);

/* Stops ticking (shutdown); a statement in flight still completes. NULL-safe. */
void sweeper_stop(struct sweeper *s);

/* Frees it. Call after db_free() (which runs a pending callback). NULL-safe. */
void sweeper_free(struct sweeper *s);

#endif
