/*
 * cmd_token.h — the `cmdbd token` command (cmd_token.c).
 */
#ifndef CMDBD_CMD_TOKEN_H
#define CMDBD_CMD_TOKEN_H

#include <libpq-fe.h>

/*
 * `cmdbd token ...`. argv[0] is "token" (main passes its argv from the subcommand on):
 *
 *   token create --name N --scope read|write|admin [--source GLOB] [--expires 90d]
 *   token list
 *   token revoke NAME
 *
 * create prints the new token alone on one line of stdout, once, and nothing else
 * there; list prints a table on stdout (never the hashes); messages go to stderr. After
 * create and revoke it notifies channel "cmdb_tokens" (payload: the token name) so that
 * running servers reload their token cache.
 *
 * The arguments are checked before conn is used, so a usage error returns 2 even when
 * conn is NULL. Blocks (synchronous libpq). Returns the process exit code: 0 ok,
 * 1 failure (database error, duplicate name, unknown name), 2 usage.
 */
int token_cli(int argc, char **argv, PGconn *conn);

#endif
