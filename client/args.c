/*
 * args.c — a small long-option parser. Options may come before or after
 * the command and its positionals, so `cmdb get x --json` and
 * `cmdb --json get x` mean the same.
 */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static const struct arg_spec *
spec_find(const struct arg_spec *specs, const char *name, size_t len)
{
	for (const struct arg_spec *s = specs; s && s->name; s++)
		if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
			return s;
	return NULL;
}

/*
 * Looks up the option word `arg` (starting with "-"). Sets *spec and, for
 * "--name=value", *inline_value. Returns 0 or -1 (unknown option).
 */
static int
lookup_option(const char *arg, const struct arg_spec *global, const struct arg_spec *cmd,
	      const struct arg_spec **spec, const char **inline_value)
{
	const char *name;
	size_t len;
	*inline_value = NULL;
	if (strcmp(arg, "-h") == 0) {
		name = "help";
		len = 4;
	} else if (arg[1] == '-') {
		name = arg + 2;
		const char *eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if (eq)
			*inline_value = eq + 1;
	} else {
		return -1; /* no single-dash options besides -h */
	}
	*spec = spec_find(global, name, len);
	if (*spec == NULL)
		*spec = spec_find(cmd, name, len);
	return *spec ? 0 : -1;
}

/* An argument that reads as an option: "-x..." but not "-" alone. */
static int
is_option(const char *arg)
{
	return arg[0] == '-' && arg[1] != '\0';
}

int
cl_args_find_command(int argc, char *const *argv, const struct arg_spec *global, char *err,
		     size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--") == 0)
			return i + 1 < argc ? i + 1 : 0;
		if (!is_option(arg))
			return i;
		const struct arg_spec *spec;
		const char *inl;
		if (lookup_option(arg, global, NULL, &spec, &inl) < 0) {
			snprintf(err, errlen, "unknown option '%s' before the command", arg);
			return -1;
		}
		if (spec->type == ARG_VALUE && inl == NULL)
			i++; /* skip its value */
	}
	return 0;
}

static void
push_opt(struct args *a, const char *name, const char *value)
{
	a->opts = cl_xrealloc(a->opts, (a->nopts + 1) * sizeof *a->opts);
	a->opts[a->nopts].name = name;
	a->opts[a->nopts].value = value;
	a->nopts++;
}

static void
push_pos(struct args *a, const char *arg)
{
	a->pos = cl_xrealloc(a->pos, (a->npos + 1) * sizeof *a->pos);
	a->pos[a->npos++] = arg;
}

int
cl_args_parse(int argc, char *const *argv, int skip, const struct arg_spec *global,
	      const struct arg_spec *cmd, struct args *out, char *err, size_t errlen)
{
	struct args a = {NULL, 0, NULL, 0};
	int only_positionals = 0;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (i == skip)
			continue;
		if (only_positionals || !is_option(arg)) {
			push_pos(&a, arg);
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_positionals = 1;
			continue;
		}
		const struct arg_spec *spec;
		const char *value;
		if (lookup_option(arg, global, cmd, &spec, &value) < 0) {
			snprintf(err, errlen, "unknown option '%s'", arg);
			goto fail;
		}
		if (spec->type == ARG_FLAG) {
			if (value != NULL) {
				snprintf(err, errlen, "option --%s takes no value", spec->name);
				goto fail;
			}
		} else if (value == NULL) {
			if (i + 1 >= argc || i + 1 == skip) {
				snprintf(err, errlen, "option --%s needs a value", spec->name);
				goto fail;
			}
			value = argv[++i];
		}
		push_opt(&a, spec->name, value);
	}
	*out = a;
	return 0;

fail:
	cl_args_free(&a);
	*out = (struct args){NULL, 0, NULL, 0};
	return -1;
}

bool
cl_args_has(const struct args *a, const char *name)
{
	for (size_t i = 0; i < a->nopts; i++)
		if (strcmp(a->opts[i].name, name) == 0)
			return true;
	return false;
}

const char *
cl_args_get(const struct args *a, const char *name)
{
	const char *v = NULL;
	for (size_t i = 0; i < a->nopts; i++)
		if (strcmp(a->opts[i].name, name) == 0)
			v = a->opts[i].value;
	return v;
}

const char *
cl_args_next(const struct args *a, const char *name, size_t *iter)
{
	for (; *iter < a->nopts; (*iter)++) {
		if (strcmp(a->opts[*iter].name, name) == 0)
			return a->opts[(*iter)++].value;
	}
	return NULL;
}

int
cl_args_number(const struct args *a, const char *name, long long min, long long max, long long *out,
	       char *err, size_t errlen)
{
	const char *v = cl_args_get(a, name);
	if (v == NULL)
		return 0;
	char *end = NULL;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	/* strtoll accepts leading space and '+'; a number on a command line is digits */
	int digits_only =
	    (v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9');
	if (!digits_only || *end != '\0' || errno == ERANGE || n < min || n > max) {
		snprintf(err, errlen, "--%s must be a whole number from %lld to %lld (got '%s')",
			 name, min, max, v);
		return -1;
	}
	*out = n;
	return 1;
}

void
cl_args_free(struct args *a)
{
	free(a->pos);
	free(a->opts);
	a->pos = NULL;
	a->opts = NULL;
	a->npos = a->nopts = 0;
}
