/*
 * server.h — the `cmdbd serve` process: wiring of the loop, the database pool, the
 * token cache, the in-memory graph and its tailer, and the HTTP front; signals
 * and graceful shutdown.
 *
 * There is one server per process. Handlers reach its shared parts through these
 * accessors (valid only while server_run() runs, on the loop thread).
 */
#ifndef CMDB_SERVER_H
#define CMDB_SERVER_H

#include "config.h"
#include "graph.h"

struct auth;
struct db;
struct tailer;
struct watch;

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int server_run(const struct cfg *cfg);

struct auth *server_auth(void);
struct db *server_db(void);
graph *server_graph(void);
/* NULL until the map has been loaded (see server_map_ready). */
struct tailer *server_tailer(void);
/* True once the map is loaded and followed: graph queries may be answered. */
bool server_map_ready(void);
/* The watch registry (watch.h); NULL until the map has been loaded. */
struct watch *server_watch(void);
const struct cfg *server_cfg(void);
struct event_base *server_base(void);
bool server_shutting_down(void);

#endif
