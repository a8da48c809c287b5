/*
 * router.h — the static route table: method + path pattern → handler, the scope a
 * caller needs, and whether the route takes a JSON body.
 *
 * Matching works on percent-decoded path segments, so a node name may hold any
 * byte its encoding allows ("database/pg-main%3A5432", "%2F" for '/').
 */
#ifndef CMDB_ROUTER_H
#define CMDB_ROUTER_H

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

struct http_req;
struct route;

typedef void (*route_fn)(struct http_req *r);

enum router_result { ROUTER_OK, ROUTER_NOT_FOUND, ROUTER_BAD_METHOD };

/*
 * Splits a request path ("/v1/nodes/service/a%2Fb") into percent-decoded segments,
 * appending to segs[*nsegs..max): each is malloc'd and the caller's to free, on
 * failure too. A trailing slash adds no segment; "//" makes an empty one. Returns 0;
 * -1 when the path does not start with '/' or has a malformed percent-encoding (or
 * ENOMEM); 1 when it has more than max segments (no route has that many).
 */
int router_split_path(const char *path, char **segs, int max, int *nsegs);

/*
 * Finds the route for method and path segments. On ROUTER_OK and
 * ROUTER_BAD_METHOD *out is set (for the latter, to a route of that path, so
 * router_allowed() can list what is allowed). HEAD matches GET routes.
 */
enum router_result router_match(enum evhttp_cmd_type method, const char *const *segs, int nsegs,
				const struct route **out);

const char *router_route_name(const struct route *rt);
route_fn router_handler(const struct route *rt);
enum auth_scope router_scope(const struct route *rt);
bool router_takes_json(const struct route *rt);
/* The route takes JSON but its handler parses it (http_parse_json()); http.c only
 * reads the body into r->body. */
bool router_parses_json_late(const struct route *rt);

/* Path segment index of the route's i-th parameter, or -1. */
int router_param_segment(const struct route *rt, int i);

/* Comma list of the methods the route's path allows ("GET, PUT, DELETE"). */
void router_allowed(const struct route *rt, char *buf, size_t size);

/* Number of routes and the name of route i, for /metrics. */
size_t router_count(void);
const char *router_name_at(size_t i);

#endif
