/*
 * api_integrations.c — POST /v1/integrations/alertmanager (SPEC §6): monitoring
 * sets health, and is told what the failures have in common.
 *
 * The body is Alertmanager's webhook notification, version 4, as Alertmanager
 * sends it. The fields cmdbd reads are type-checked (400 naming the field); any
 * other field is ignored rather than refused — unlike every other body — because
 * Alertmanager adds fields across releases and a refused notification is an alert
 * lost. Each alert whose labels carry cmdb_ref sets that node's health:
 *
 *	firing   → down, or degraded when label severity is warning or info
 *	resolved → ok
 *	reason   "<alertname>: <summary annotation>" (cut to the reason limit)
 *
 * The alerts of one node in one notification fold into one update: the worst
 * state wins (down > degraded > ok), the first alert of that state gives the
 * reason. All updates go to the database in one statement, one transaction, with
 * the rows locked in ref order (migrations/0009_alertmanager.sql). An alert
 * without cmdb_ref, and one whose cmdb_ref names no node (or is not a ref at all),
 * is counted in "ignored", never refused; the latter are listed in "unknown".
 * Once the graph has applied the write, the reply carries the rootcause answer
 * for every node now down or degraded.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "jv.h"
#include "log.h"
#include "model.h"
#include "app.h"
#include "sql.h"

/* Alerts in one notification; Alertmanager's max_alerts can keep it below this. */
#define AM_ALERTS_MAX 10000
#define AM_ROOTCAUSE_DEPTH 16

/* The fields of the notification and of an alert that cmdbd reads; others pass. */
static const struct jv_field am_fields[] = {
    {"version", JV_STRING, true},
    {"groupKey", JV_STRING, false},
    {"truncatedAlerts", JV_INTEGER, false},
    {"status", JV_STRING, false},
    {"receiver", JV_STRING, false},
    {"groupLabels", JV_STRING_MAP, false},
    {"commonLabels", JV_STRING_MAP, false},
    {"commonAnnotations", JV_STRING_MAP, false},
    {"externalURL", JV_STRING, false},
    {"alerts", JV_ARRAY, true},
    {NULL, JV_ANY, false},
};

static const struct jv_field am_alert_fields[] = {
    {"status", JV_STRING, true},	   {"labels", JV_STRING_MAP, true},
    {"annotations", JV_STRING_MAP, false}, {"startsAt", JV_STRING, false},
    {"endsAt", JV_STRING, false},	   {"generatorURL", JV_STRING, false},
    {"fingerprint", JV_STRING, false},	   {NULL, JV_ANY, false},
};

/*
 * Checks the listed fields of obj (path: its JSON path) and ignores the others:
 * jv_check_object() on a copy holding only the listed ones. Replies 400 (or 503)
 * and returns false when a field is missing or of the wrong type.
 */
static bool
check_known(struct http_req *r, json_t *obj, const char *path, const struct jv_field *fields)
{
	struct jv_err err = {0};
	json_t *known;
	bool ok;

	if (!json_is_object(obj)) {
		http_reply_bad(r, path, "must be an object");
		return false;
	}
	if ((known = json_object()) == NULL) {
		http_reply_nomem(r);
		return false;
	}
	for (const struct jv_field *f = fields; f->name != NULL; f++) {
		json_t *v = json_object_get(obj, f->name);

		if (v != NULL && json_object_set(known, f->name, v) != 0) {
			json_decref(known);
			http_reply_nomem(r);
			return false;
		}
	}
	ok = jv_check_object(known, path, fields, &err);
	json_decref(known);
	if (!ok) {
		if (err.status == 503)
			http_reply_nomem(r);
		else
			http_reply_bad(r, err.path, "%s", err.msg);
	}
	return ok;
}

/* down 2, degraded 1, ok 0: the order in which alerts of one node win. */
static int
state_rank(const char *state)
{
	return strcmp(state, "down") == 0 ? 2 : strcmp(state, "degraded") == 0 ? 1 : 0;
}

/* "<alertname>: <summary>" cut at a character boundary to the reason limit (NULL: ENOMEM). */
static json_t *
alert_reason(json_t *alert)
{
	const char *name =
	    json_string_value(json_object_get(json_object_get(alert, "labels"), "alertname"));
	const char *summary =
	    json_string_value(json_object_get(json_object_get(alert, "annotations"), "summary"));
	char buf[MODEL_HEALTH_REASON_MAX + 2]; /* one byte more: the first one cut */
	size_t n;

	if (summary != NULL && summary[0] != '\0')
		n = (size_t)snprintf(buf, sizeof(buf), "%s: %s", name ? name : "alert", summary);
	else
		n = (size_t)snprintf(buf, sizeof(buf), "%s", name ? name : "alert");
	if (n > MODEL_HEALTH_REASON_MAX) {
		/* buf[n] is the first byte cut: while it continues a character, that
		 * character would be split, so end before its first byte. */
		n = MODEL_HEALTH_REASON_MAX;
		while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
			n--;
		buf[n] = '\0';
	}
	return json_string(buf);
}

/*
 * Reads one alert into updates (ref → {"kind","name","state","reason","alerts"}: the
 * worst state per ref, and how many alerts named it) or counts it in *skipped (no
 * cmdb_ref, or one that is not a ref: that goes into the set invalid too).
 * Replies and returns false on a malformed alert.
 */
static bool
read_alert(struct http_req *r, json_t *alert, size_t i, json_t *updates, json_t *invalid,
	   long *skipped)
{
	char path[40], kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1];
	const char *status, *ref, *severity, *state;
	json_t *labels, *old, *u = NULL, *reason;
	json_int_t count = 1;

	snprintf(path, sizeof(path), "alerts[%zu]", i);
	if (!check_known(r, alert, path, am_alert_fields))
		return false;
	status = json_string_value(json_object_get(alert, "status"));
	if (strcmp(status, "firing") != 0 && strcmp(status, "resolved") != 0) {
		snprintf(path, sizeof(path), "alerts[%zu].status", i);
		http_reply_bad(r, path, "must be firing or resolved (got \"%.40s\")", status);
		return false;
	}
	labels = json_object_get(alert, "labels");
	ref = json_string_value(json_object_get(labels, "cmdb_ref"));
	if (ref == NULL) {
		(*skipped)++;
		return true;
	}
	if (model_ref_parse(ref, kind, name) != NULL) {
		(*skipped)++;
		if (json_object_set_new(invalid, ref, json_true()) == 0)
			return true;
		http_reply_nomem(r);
		return false;
	}
	severity = json_string_value(json_object_get(labels, "severity"));
	if (strcmp(status, "resolved") == 0)
		state = "ok";
	else if (severity != NULL &&
		 (strcasecmp(severity, "warning") == 0 || strcasecmp(severity, "info") == 0))
		state = "degraded";
	else
		state = "down";
	old = json_object_get(updates, ref);
	if (old != NULL)
		count = json_integer_value(json_object_get(old, "alerts")) + 1;
	if (old != NULL &&
	    state_rank(json_string_value(json_object_get(old, "state"))) >= state_rank(state)) {
		if (json_object_set_new(old, "alerts", json_integer(count)) == 0)
			return true;
	} else if ((reason = alert_reason(alert)) != NULL) {
		u = json_pack("{s:s,s:s,s:s,s:o,s:I}", "kind", kind, "name", name, "state", state,
			      "reason", reason, "alerts", count);
	}
	if (u == NULL || json_object_set_new(updates, ref, u) != 0) {
		http_reply_nomem(r);
		return false;
	}
	return true;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The updates as a JSON array text sorted by ref (byte order), or NULL (ENOMEM). */
static char *
sorted_updates(json_t *updates)
{
	size_t n = json_object_size(updates), i = 0;
	const char **refs = malloc((n ? n : 1) * sizeof(*refs));
	json_t *arr = json_array(), *v;
	const char *key;
	char *text = NULL;

	if (refs == NULL || arr == NULL)
		goto out;
	json_object_foreach(updates, key, v) refs[i++] = key;
	qsort(refs, n, sizeof(*refs), cmp_str);
	for (i = 0; i < n; i++)
		if (json_array_append(arr, json_object_get(updates, refs[i])) != 0)
			goto out;
	text = json_dumps(arr, JSON_COMPACT);
out:
	free(refs);
	json_decref(arr);
	return text;
}

/* Before replying: health_at of the nodes whose health did not change, into the graph. */
static json_t *
am_refresh(struct http_req *r, json_t *body, int *status)
{
	json_t *item;
	size_t i;

	(void)status;
	json_array_foreach(json_object_get(body, "refresh"), i, item)
	{
		if (graph_node_refresh(r->app->g, json_string_value(json_object_get(item, "ref")),
				       json_string_value(json_object_get(item, "id")), NULL,
				       json_string_value(json_object_get(item, "health_at"))) ==
		    GRAPH_ENOMEM)
			log_error("event=refresh_lost id=%s reason=\"out of memory\"", r->id);
	}
	json_object_del(body, "refresh");
	return body;
}

/* Once the graph has the write: the root cause of everything now failing. */
static json_t *
am_rootcause(struct http_req *r, json_t *body, int *status)
{
	int err;
	json_t *rc = api_rootcause_unhealthy(r->app->g, AM_ROOTCAUSE_DEPTH, &err);

	(void)status;
	if (rc == NULL) /* the health updates are committed: still a 200, without it */
		log_warn("event=rootcause_skipped id=%s reason=\"%s\"", r->id,
			 err == API_TOO_MANY_FAILING ? "too many nodes failing"
						     : graph_strerror(err));
	json_object_set_new(body, "rootcause", rc ? rc : json_null());
	return body;
}

static const struct api_db_hooks am_hooks = {am_refresh, am_rootcause};

void
api_alertmanager(struct http_req *r)
{
	static const char *const no_params[] = {NULL};
	json_t *alerts, *alert, *updates = NULL, *invalid = NULL, *invalid_refs = NULL, *v;
	const char *version;
	char *updates_text = NULL, *invalid_text = NULL, source[80], count[24];
	const char *key;
	long skipped = 0;
	size_t i;

	/* The reply's rootcause needs the map (503 while it loads: Alertmanager retries). */
	if (!api_query_only(r, no_params, NULL) || !api_require_map(r) ||
	    !check_known(r, r->json, "", am_fields))
		return;
	version = json_string_value(json_object_get(r->json, "version"));
	if (strcmp(version, "4") != 0) {
		http_reply_bad(r, "version",
			       "must be \"4\" (Alertmanager's webhook payload "
			       "version; got \"%.20s\")",
			       version);
		return;
	}
	alerts = json_object_get(r->json, "alerts");
	if (json_array_size(alerts) > AM_ALERTS_MAX) {
		http_reply_error(r, 413, "payload_too_large",
				 json_pack("{s:s,s:i}", "field", "alerts", "limit", AM_ALERTS_MAX),
				 "alerts: %zu alerts in one notification; the limit is %d (set "
				 "max_alerts in the webhook_config)",
				 json_array_size(alerts), AM_ALERTS_MAX);
		return;
	}
	if ((updates = json_object()) == NULL || (invalid = json_object()) == NULL ||
	    (invalid_refs = json_array()) == NULL) {
		http_reply_nomem(r);
		goto out;
	}
	json_array_foreach(alerts, i, alert)
	{
		if (!read_alert(r, alert, i, updates, invalid, &skipped))
			goto out;
	}
	json_object_foreach(invalid, key, v)
	{
		if (json_array_append_new(invalid_refs, json_string(key)) != 0) {
			http_reply_nomem(r);
			goto out;
		}
	}
	updates_text = sorted_updates(updates);
	invalid_text = json_dumps(invalid_refs, JSON_COMPACT);
	if (updates_text == NULL || invalid_text == NULL) {
		http_reply_nomem(r);
		goto out;
	}
	snprintf(count, sizeof(count), "%ld", skipped);
	api_actor_source(r, source); /* status, not an assertion: any write token */
	{
		const char *params[5] = {updates_text, invalid_text, count, r->tok.name, source};

		api_call_db_hooks(r, SQL_ALERTMANAGER, params, &am_hooks);
	}
out:
	free(updates_text);
	free(invalid_text);
	json_decref(updates);
	json_decref(invalid);
	json_decref(invalid_refs);
}
