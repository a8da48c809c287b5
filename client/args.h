/*
 * args.h — command-line parsing for cmdb: long options (--name, --name=value,
 * --name value) allowed anywhere on the line, positionals kept in order,
 * "--" ending options, "-" alone a positional (stdin).
 *
 * Pure, no I/O: unit-tested by tests/check_client_args.c.
 * Strings in struct args point into argv (or into spec names); argv must
 * outlive the struct. Only the arrays themselves are owned (cl_args_free).
 */
#ifndef CMDB_CLIENT_ARGS_H
#define CMDB_CLIENT_ARGS_H

#include <stdbool.h>
#include <stddef.h>

enum arg_type {
	ARG_FLAG,  /* --name, no value */
	ARG_VALUE, /* --name VALUE or --name=VALUE; may repeat */
};

/* One accepted option; arrays of these end with {NULL, 0}. */
struct arg_spec {
	const char *name; /* without the leading "--" */
	enum arg_type type;
};

struct arg_opt {
	const char *name;  /* the spec's name */
	const char *value; /* NULL for flags */
};

struct args {
	const char **pos; /* positionals, in order */
	size_t npos;
	struct arg_opt *opts; /* options, in order (repeats kept) */
	size_t nopts;
};

/*
 * Finds the command word: the first positional of argv[1..argc), skipping
 * global options (and their values). Returns its index, 0 when there is no
 * command, or -1 with a message in err (an unknown option before the command).
 */
int cl_args_find_command(int argc, char *const *argv, const struct arg_spec *global, char *err,
			 size_t errlen);

/*
 * Parses argv[1..argc) except index `skip` (the command word; pass 0 for
 * none) against the union of `global` and `cmd` (either may be NULL).
 * "-h" is read as "--help" when a "help" flag is in the specs.
 * Returns 0, or -1 with a message in err; on failure *out is left empty.
 */
int cl_args_parse(int argc, char *const *argv, int skip, const struct arg_spec *global,
		  const struct arg_spec *cmd, struct args *out, char *err, size_t errlen);

/* True when the option was given at least once. */
bool cl_args_has(const struct args *a, const char *name);
/* The last value given for the option, or NULL. */
const char *cl_args_get(const struct args *a, const char *name);
/* Iterates over the values of a repeatable option: pass *iter = 0 first;
 * returns NULL when done. */
const char *cl_args_next(const struct args *a, const char *name, size_t *iter);

/*
 * Reads the option as an integer in [min, max]. Returns 1 and sets *out when
 * present and valid, 0 when absent (*out untouched), -1 with a message in
 * err when it is not a whole decimal number in range.
 */
int cl_args_number(const struct args *a, const char *name, long long min, long long max,
		   long long *out, char *err, size_t errlen);

void cl_args_free(struct args *a);

#endif
