/*
 * config_backends.c - the backends of keyway.conf and keyway.ledger: each
 * one's module loaded and its settings checked against what the module
 * declares, and the settings the host reads itself (scope, quotas,
 * on_unavailable).
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "conf.h"
#include "config_int.h"
#include "context.h"
#include "loader.h"
#include "quota.h"

static const kw_setting_spec *find_spec(const struct kwi_module *m,
					const char *name)
{
	for (const kw_setting_spec *sp = m->desc->settings;
	     sp != NULL && sp->name != NULL; sp++)
		if (strcmp(sp->name, name) == 0)
			return sp;
	return NULL;
}

/* "vars, dotenv" for the message about an unknown setting. */
static void spec_list(const struct kw_instance *b, char *buf, size_t len)
{
	const struct kwi_module *m = b->module;
	size_t used = 0;

	buf[0] = '\0';
	if ((m->desc->caps & KW_CAP_SCOPED) && b->role == KW_INSTANCE_BACKEND)
		used += (size_t)snprintf(buf, len, "scope");
	for (const kw_setting_spec *sp = m->desc->settings;
	     sp != NULL && sp->name != NULL && used < len; sp++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used > 0 ? ", " : "", sp->name);
	if (b->role == KW_INSTANCE_LEDGER && used < len)
		snprintf(buf + used, len - used, "%s%s",
			 used > 0 ? ", " : "", "on_unavailable");
	if (buf[0] == '\0')
		snprintf(buf, len, "nothing but module");
}

static bool is_abs_or_make(struct kwi_loader *l, struct kw_instance *b,
			   const config_setting_t *s, const char *value)
{
	struct kwi_path *grown;
	char *abs;

	abs = kwi_config_abs(l->ctx, value);
	grown = abs != NULL ? realloc(b->paths,
				      (b->npaths + 1) * sizeof(*b->paths))
			    : NULL;
	if (grown == NULL) {
		free(abs);
		kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
		return false;
	}
	b->paths = grown;
	b->paths[b->npaths].name = config_setting_name(s);
	b->paths[b->npaths].value = abs;
	b->npaths++;
	return true;
}

/* A KW_SETTING_STRMAP: a group of strings. */
static void check_strmap(struct kwi_loader *l, const struct kw_instance *b,
			 const config_setting_t *s)
{
	const char *name = config_setting_name(s);
	int type = config_setting_type(s);

	if (type != CONFIG_TYPE_GROUP) {
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "%s: %s must be a group { name = \"value\"; ... }, "
			    "not %s",
			    b->label, name, kwi_type_name(type));
		return;
	}
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);

		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			kwi_problem(l, KW_ERR_CONFIG, e,
				    "%s: %s.%s must be a string, not %s",
				    b->label, name, config_setting_name(e),
				    kwi_type_name(config_setting_type(e)));
	}
}

static void check_setting(struct kwi_loader *l, struct kw_instance *b,
			  const config_setting_t *s,
			  const kw_setting_spec *sp)
{
	const char *name = config_setting_name(s);
	int type = config_setting_type(s);

	switch (sp->type) {
	case KW_SETTING_STRING:
	case KW_SETTING_PATH:
		if (type != CONFIG_TYPE_STRING) {
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: %s must be a string, not %s",
				    b->label, name, kwi_type_name(type));
		} else if (sp->type == KW_SETTING_PATH) {
			const char *v = config_setting_get_string(s);

			if (v[0] == '\0')
				kwi_problem(l, KW_ERR_CONFIG, s,
					    "%s: %s is empty", b->label,
					    name);
			else
				is_abs_or_make(l, b, s, v);
		}
		break;
	case KW_SETTING_INT:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: %s must be an integer, not %s",
				    b->label, name, kwi_type_name(type));
		break;
	case KW_SETTING_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: %s must be true or false, "
				    "not %s",
				    b->label, name, kwi_type_name(type));
		break;
	case KW_SETTING_STRMAP:
		check_strmap(l, b, s);
		break;
	case KW_SETTING_INT_OR_STRING:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64 &&
		    type != CONFIG_TYPE_STRING)
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: %s must be an integer or a string, "
				    "not %s",
				    b->label, name, kwi_type_name(type));
		break;
	default:
		kwi_problem(l, KW_ERR_MODULE, s,
			    "%s: module \"%s\" declares %s with an "
			    "unknown type",
			    b->label, b->module->name, name);
	}
}

static void load_scope(struct kwi_loader *l, struct kw_instance *b,
		       const config_setting_t *s)
{
	static const char *const names[] = { NULL, "user", "org", "system" };
	const char *v = config_setting_get_string(s);

	if (!(b->module->desc->caps & KW_CAP_SCOPED)) {
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "%s: module \"%s\" takes no scope",
			    b->label, b->module->name);
		return;
	}
	for (int k = KW_SCOPE_USER; v != NULL && k <= KW_SCOPE_SYSTEM; k++) {
		if (strcmp(v, names[k]) == 0) {
			b->scope = (kw_scope)k;
			return;
		}
	}
	kwi_problem(l, KW_ERR_CONFIG, s,
		    "%s: scope must be \"user\", \"org\" or "
		    "\"system\"",
		    b->label);
}

/* ---- quotas ---- */

static bool parse_period(const config_setting_t *s, int64_t *period,
			 const char **word)
{
	static const struct {
		const char *name;
		int64_t seconds;
	} periods[] = {
		{ "minute", 60 }, { "hour", 3600 }, { "day", 86400 },
		{ "month", 0 },
	};

	if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64) {
		*period = config_setting_get_int64(s);
		*word = NULL;
		return *period >= 1 && *period <= 366LL * 86400;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return false;
	for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
		if (strcmp(config_setting_get_string(s), periods[i].name) == 0) {
			*period = periods[i].seconds;
			*word = periods[i].name;
			return true;
		}
	}
	return false;
}

/* The members of quota group g; false, with the problem reported, when
 * one of them is none of limit, period and per. */
static bool quota_members(struct kwi_loader *l, const struct kw_instance *b,
			  const config_setting_t *g, size_t index,
			  const config_setting_t *m[3])
{
	static const char *const names[3] = { "limit", "period", "per" };
	bool ok = true;

	m[0] = m[1] = m[2] = NULL;
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		int k = 0;

		while (k < 3 && strcmp(name, names[k]) != 0)
			k++;
		if (k < 3) {
			m[k] = s;
			continue;
		}
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "%s: quota %zu: unknown setting \"%s\" (expected "
			    "limit, period and per)",
			    b->label, index + 1, name);
		ok = false;
	}
	return ok;
}

/* Setting `what` of quota group g is missing. */
static bool quota_missing(struct kwi_loader *l, const struct kw_instance *b,
			  const config_setting_t *g, size_t index,
			  const char *what)
{
	kwi_problem(l, KW_ERR_CONFIG, g, "%s: quota %zu has no %s", b->label,
		    index + 1, what);
	return false;
}

static bool quota_limit(struct kwi_loader *l, const struct kw_instance *b,
			const config_setting_t *g,
			const config_setting_t *limit, size_t index,
			struct kwi_quota *q)
{
	if (limit == NULL)
		return quota_missing(l, b, g, index, "limit");
	if ((config_setting_type(limit) != CONFIG_TYPE_INT &&
	     config_setting_type(limit) != CONFIG_TYPE_INT64) ||
	    config_setting_get_int64(limit) < 1) {
		kwi_problem(l, KW_ERR_CONFIG, limit,
			    "%s: quota %zu: limit must be a whole number of "
			    "requests, 1 or more",
			    b->label, index + 1);
		return false;
	}
	q->limit = (uint64_t)config_setting_get_int64(limit);
	return true;
}

/* per, "global" when not given; *word: the word it was given as. */
static bool quota_per(struct kwi_loader *l, const struct kw_instance *b,
		      const config_setting_t *per, size_t index,
		      struct kwi_quota *q, const char **word)
{
	q->per = KWI_PER_GLOBAL;
	*word = "global";
	if (per == NULL)
		return true;
	*word = config_setting_type(per) == CONFIG_TYPE_STRING
			? config_setting_get_string(per)
			: "";
	if (kwi_per_parse(*word, &q->per))
		return true;
	kwi_problem(l, KW_ERR_CONFIG, per,
		    "%s: quota %zu: per must be \"user\", \"org\", "
		    "\"global\", \"provider\", \"user+provider\" or "
		    "\"org+provider\"",
		    b->label, index + 1);
	return false;
}

/* Quota number index (from 0) of b, group g, into q; false, with every
 * problem reported, when it is not one. */
static bool load_quota(struct kwi_loader *l, struct kw_instance *b,
		       const config_setting_t *g, size_t index,
		       struct kwi_quota *q)
{
	const config_setting_t *m[3]; /* limit, period, per */
	const char *word = NULL, *perword;
	bool ok;

	if (!kwi_config_group(l, g,
			      "%s: quota %zu must be a group { limit = ...; "
			      "period = ...; per = ...; }",
			      b->label, index + 1))
		return false;
	ok = quota_members(l, b, g, index, m);
	if (!quota_limit(l, b, g, m[0], index, q))
		ok = false;
	if (m[1] == NULL) {
		ok = quota_missing(l, b, g, index, "period");
	} else if (!parse_period(m[1], &q->period, &word)) {
		kwi_problem(l, KW_ERR_CONFIG, m[1],
			    "%s: quota %zu: period must be \"minute\", "
			    "\"hour\", \"day\", \"month\" or a number of "
			    "seconds (1 to 31622400)",
			    b->label, index + 1);
		ok = false;
	}
	if (!quota_per(l, b, m[2], index, q, &perword) || !ok)
		return false;
	if (word != NULL)
		snprintf(q->label, sizeof(q->label), "%llu/%s per %s",
			 (unsigned long long)q->limit, word, perword);
	else
		snprintf(q->label, sizeof(q->label), "%llu/%llds per %s",
			 (unsigned long long)q->limit, (long long)q->period,
			 perword);
	return true;
}

static void load_quotas(struct kwi_loader *l, struct kw_instance *b,
			const config_setting_t *s)
{
	int n;

	if (!config_setting_is_list(s) || config_setting_length(s) == 0) {
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "%s: quota must be a list ( { limit = ...; period "
			    "= ...; per = ...; }, ... )",
			    b->label);
		return;
	}
	n = config_setting_length(s);
	b->quotas = calloc((size_t)n, sizeof(*b->quotas));
	if (b->quotas == NULL) {
		kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		if (load_quota(l, b, config_setting_get_elem(s, i), (size_t)i,
			       &b->quotas[b->nquotas]))
			b->nquotas++;
}

/* ---- one instance: a backend, or the ledger ---- */

/* Settings the host reads itself, by role. */
static bool host_setting(struct kwi_loader *l, struct kw_instance *b,
			 const config_setting_t *s, const char *name)
{
	if (b->role == KW_INSTANCE_LEDGER) {
		const char *v;

		if (strcmp(name, "on_unavailable") != 0)
			return false;
		v = config_setting_type(s) == CONFIG_TYPE_STRING
			    ? config_setting_get_string(s)
			    : "";
		if (strcmp(v, "allow") == 0)
			l->ctx->ledger_allow = true;
		else if (strcmp(v, "deny") != 0)
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "keyway.ledger: on_unavailable must be "
				    "\"deny\" or \"allow\"");
		return true;
	}
	if (strcmp(name, "scope") == 0) {
		if (config_setting_type(s) == CONFIG_TYPE_STRING)
			load_scope(l, b, s);
		else
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: scope must be a string, not %s",
				    b->label,
				    kwi_type_name(config_setting_type(s)));
		return true;
	}
	if (strcmp(name, "quota") == 0) {
		load_quotas(l, b, s);
		return true;
	}
	return false;
}

/* The module of instance b, from its group g: loaded, and fit for its
 * role.  Returns the module setting, or NULL with the problem reported. */
static const config_setting_t *instance_module(struct kwi_loader *l,
					       struct kw_instance *b,
					       const config_setting_t *g)
{
	const config_setting_t *mod;
	char why[768];
	kw_status rc;

	mod = config_setting_get_member(g, "module");
	if (mod == NULL) {
		kwi_problem(l, KW_ERR_CONFIG, g, "%s: missing module",
			    b->label);
		return NULL;
	}
	if (config_setting_type(mod) != CONFIG_TYPE_STRING) {
		kwi_problem(l, KW_ERR_CONFIG, mod,
			    "%s: module must be a string, not %s", b->label,
			    kwi_type_name(config_setting_type(mod)));
		return NULL;
	}
	rc = kwi_module_load(&l->ctx->modules, config_setting_get_string(mod),
			     &b->module, why, sizeof(why));
	if (rc != KW_OK) {
		kwi_problem(l, rc, mod, "%s: %s", b->label,
			    rc == KW_ERR_NOMEM ? "out of memory" : why);
		return NULL;
	}
	if (b->role == KW_INSTANCE_LEDGER &&
	    !(b->module->desc->caps & KW_CAP_LEDGER)) {
		kwi_problem(l, KW_ERR_CONFIG, mod,
			    "keyway.ledger: module \"%s\" does not count "
			    "quotas",
			    b->module->name);
		return NULL;
	}
	return mod;
}

/* Every setting of b's group g but module: the host's own, or one its
 * module declares. */
static void instance_settings(struct kwi_loader *l, struct kw_instance *b,
			      const config_setting_t *g,
			      const config_setting_t *mod)
{
	char list[256];

	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const kw_setting_spec *sp;

		if (s == mod || host_setting(l, b, s, name))
			continue;
		if ((sp = find_spec(b->module, name)) != NULL) {
			check_setting(l, b, s, sp);
		} else {
			spec_list(b, list, sizeof(list));
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "%s: unknown setting \"%s\" (module \"%s\" "
				    "takes %s)",
				    b->label, name, b->module->name, list);
		}
	}
}

/* Whether a and b are at most two edits (a letter added, dropped or
 * changed) apart. */
static bool near_miss(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[33], cur[33];

	if (la > 32 || lb > 32 || (la > lb ? la - lb : lb - la) > 2)
		return false;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);

			if (prev[j] + 1 < best)
				best = prev[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			cur[j] = best;
		}
		memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
	}
	return prev[lb] <= 2;
}

/*
 * Whether g lacks setting name, and says nothing of it: a setting of g
 * whose name is a near miss ("scop") was reported as unknown already, and
 * that line explains this one.
 */
static bool lacks(const struct kw_instance *b, const config_setting_t *g,
		  const char *name)
{
	if (config_setting_get_member(g, name) != NULL)
		return false;
	for (int i = 0; i < config_setting_length(g); i++) {
		const char *other =
			config_setting_name(config_setting_get_elem(g, i));

		/* A setting of its own is no misspelling. */
		if (other == NULL || find_spec(b->module, other) != NULL ||
		    strcmp(other, "module") == 0 ||
		    strcmp(other, "scope") == 0 ||
		    strcmp(other, "quota") == 0 ||
		    strcmp(other, "on_unavailable") == 0)
			continue;
		if (near_miss(other, name))
			return false;
	}
	return true;
}

/* The settings b's group g must have and lacks. */
static void instance_required(struct kwi_loader *l,
			      const struct kw_instance *b,
			      const config_setting_t *g)
{
	for (const kw_setting_spec *sp = b->module->desc->settings;
	     sp != NULL && sp->name != NULL; sp++)
		if ((sp->flags & KW_SETTING_REQUIRED) &&
		    lacks(b, g, sp->name))
			kwi_problem(l, KW_ERR_CONFIG, g,
				    "%s: missing %s (module \"%s\" needs it)",
				    b->label, sp->name, b->module->name);
	if (b->role == KW_INSTANCE_BACKEND &&
	    (b->module->desc->caps & KW_CAP_SCOPED) &&
	    lacks(b, g, "scope"))
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "%s: missing scope (\"user\", \"org\" or "
			    "\"system\")",
			    b->label);
}

static void load_instance(struct kwi_loader *l, struct kw_instance *b,
			  config_setting_t *g)
{
	const config_setting_t *mod;

	b->setting = g;
	b->ctx = l->ctx;
	b->file = kwi_source_path(l->ctx, g);
	b->line = (int)config_setting_source_line(g);
	b->diag = l->d;
	if (!kwi_config_group(l, g,
			      "%s must be a group { module = ...; }", b->label))
		return;
	mod = instance_module(l, b, g);
	if (mod == NULL)
		return;
	instance_settings(l, b, g, mod);
	instance_required(l, b, g);
}

static bool set_label(struct kw_instance *b, const char *name,
		      kw_instance_role role)
{
	b->role = role;
	b->name = strdup(name);
	if (role == KW_INSTANCE_LEDGER)
		b->label = strdup("keyway.ledger");
	else if (asprintf(&b->label, "backend \"%s\"", name) < 0)
		b->label = NULL;
	return b->name != NULL && b->label != NULL;
}

void kwi_config_ledger(struct kwi_loader *l, config_setting_t *g)
{
	struct kw_instance *b = calloc(1, sizeof(*b));

	if (b == NULL || !set_label(b, "ledger", KW_INSTANCE_LEDGER)) {
		if (b != NULL) {
			free(b->name);
			free(b->label);
		}
		free(b);
		kwi_problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	l->ctx->ledger = b;
	load_instance(l, b, g);
}

void kwi_config_quotas_need_ledger(struct kwi_loader *l)
{
	struct kw_ctx *ctx = l->ctx;

	if (ctx->ledger != NULL)
		return;
	for (size_t i = 0; i < ctx->nbackends; i++) {
		const struct kw_instance *b = &ctx->backends[i];
		const config_setting_t *q =
			b->nquotas > 0
				? config_setting_get_member(b->setting, "quota")
				: NULL;

		if (q != NULL)
			kwi_problem(l, KW_ERR_CONFIG, q,
				    "%s: quotas count in a ledger: set "
				    "keyway.ledger = { module = \"sqlite\"; "
				    "path = \"...\"; }",
				    b->label);
	}
}

void kwi_config_backends(struct kwi_loader *l, config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	ctx->backends = kwi_config_section(l, g, "backends",
					   "{ name: { ... }; ... }", "backend",
					   sizeof(*ctx->backends), &n);
	for (int i = 0; ctx->backends != NULL && i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		struct kw_instance *b = &ctx->backends[ctx->nbackends++];

		if (!set_label(b, config_setting_name(s),
			       KW_INSTANCE_BACKEND)) {
			/* Not counted: a backend without a name is no
			 * backend a chain or a check can look up. */
			free(b->name);
			free(b->label);
			memset(b, 0, sizeof(*b));
			ctx->nbackends--;
			kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		load_instance(l, b, s);
	}
}
