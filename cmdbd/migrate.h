/*
 * migrate.h — schema migrations embedded in the binary (`cmdbd migrate`).
 *
 * The SQL files migrations/NNNN_name.sql are compiled into the table below by
 * cmdbd/dev/gen-migrations.sh (build/gen/migrations.c), sorted by version. The database
 * records what it has applied in schema_migrations(version, name, applied_at).
 *
 * Rules for migration files: never edit one that has been released, add a new one; no
 * transaction control inside (each file runs in its own transaction, so statements such
 * as CREATE INDEX CONCURRENTLY cannot be used).
 */
#ifndef CMDBD_MIGRATE_H
#define CMDBD_MIGRATE_H

#include "attrs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

struct migration {
	int version;	  /* NNNN of the file name */
	const char *name; /* the rest of the file name, without ".sql" */
	const char *sql;  /* the file's text */
};

/* Generated: all migrations, ascending by version; migrations_count >= 1. */
extern const struct migration migrations[];
extern const size_t migrations_count;

/*
 * Bring the database up to date, or report where it stands.
 *
 * status_only == false: under a session advisory lock (so concurrent runs are safe: the
 * second waits, then finds nothing to do), create schema_migrations if missing and apply
 * every pending migration in version order, each in its own transaction together with
 * its schema_migrations row. Writes one line per applied migration to `out`
 * ("event=migration_applied version=1 name=schema ms=12"), or one line saying the schema
 * is current. Stops at the first failure: that migration is rolled back, earlier ones
 * stay applied, and an "event=migration_failed" line with the file, the line and
 * PostgreSQL's message goes to `out`.
 *
 * status_only == true: changes nothing; writes one line per migration to `out`,
 * "0001_schema  applied 2026-11-21T10:00:00Z" or "0002_graph  pending" (and any version
 * the database has that this binary does not know).
 *
 * Blocks (synchronous libpq); for the CLI, not for the event loop. conn must be an open
 * connection with no transaction in progress. Returns 0 on success, -1 on any error.
 */
CMDB_MUST_USE int migrate_run(PGconn *conn, bool status_only, FILE *out);

/* The highest version this binary embeds: the database is current when its
 * max(schema_migrations.version) equals this (what /readyz checks). */
int migrate_latest_version(void);

#endif
