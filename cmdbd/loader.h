/*
 * loader.h — loads the whole map from PostgreSQL into an in-memory graph.
 *
 * The map is read at one consistent snapshot (a REPEATABLE READ READ ONLY
 * transaction): the change-log high-water mark (change_seq.last, the seq the map
 * reflects), every source's sighting (source_state.last_applied_at), every node
 * with its image (a COPY of the nodes' columns, the image built as
 * cmdb_node_json() shapes it, with the stored last_seen_at; the derived one
 * follows from the sightings), then every edge (a binary COPY by node id).
 * From that seq on, the tailer (tailer.h) keeps the graph current.
 */
#ifndef CMDB_LOADER_H
#define CMDB_LOADER_H

#include <libpq-fe.h>

#include "graph.h"

/*
 * Loads into g (normally empty) over conn, which must be open with no
 * transaction in progress. Returns the seq the graph reflects, or -1 on error
 * (the reason is logged as event=graph_load_failed; the connection is usable
 * again, its transaction rolled back). On error g may hold part of the map:
 * throw it away. Blocks for the whole load.
 */
long long loader_load(PGconn *conn, graph *g);

#endif
