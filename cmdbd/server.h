/*
 * server.h — the `cmdbd serve` process: wiring of the loop, the database pool, the
 * token cache, the in-memory graph and its tailer, and the HTTP front; the map's
 * life (background loads, reloads, verification); signals and graceful shutdown.
 *
 * There is one server per process. Handlers reach its shared parts through the
 * application context it hands to every request (app.h), never through globals.
 */
#ifndef CMDB_SERVER_H
#define CMDB_SERVER_H

#include "config.h"

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int server_run(const struct cfg *cfg);

#endif
