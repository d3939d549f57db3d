/*
 * config.c - reading keyway.conf.
 *
 * libconfig parses the file; this file decides what it means.  Everything
 * is checked before anything is opened: unknown settings, wrong types,
 * modules that will not load, chains that name no backend, controls that do
 * not parse.  Every problem is reported as "file:line: message" and loading
 * goes on, so that `keyway check` can list them all; kw_open() refuses the
 * file if there was even one (fail closed).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct loader {
	struct kw_ctx *ctx;
	struct kwi_diag *d;
};

/*
 * libconfig names an included file as the @include line spells it, but
 * opens it relative to the include directory.
 */
static const char *resolve_source(struct kw_ctx *ctx, const char *f)
{
	struct kwi_path *grown;
	char *abs;

	if (f == NULL)
		return ctx->path;
	if (f[0] == '/')
		return f;
	for (size_t i = 0; i < ctx->nsources; i++)
		if (ctx->sources[i].name == f)
			return ctx->sources[i].value;
	if (asprintf(&abs, "%s/%s", ctx->dir, f) < 0)
		return f;
	grown = realloc(ctx->sources, (ctx->nsources + 1) * sizeof(*grown));
	if (grown == NULL) {
		free(abs);
		return f;
	}
	ctx->sources = grown;
	grown[ctx->nsources].name = f;
	grown[ctx->nsources].value = abs;
	ctx->nsources++;
	return abs;
}

const char *kwi_source_path(struct kw_ctx *ctx, const config_setting_t *s)
{
	return resolve_source(ctx, config_setting_source_file(s));
}

static const char *src_file(const struct loader *l, const config_setting_t *s)
{
	return kwi_source_path(l->ctx, s);
}

static void problem(struct loader *l, kw_status st, const config_setting_t *s,
		    const char *fmt, ...) KW_PRINTF(4, 5);

static void problem(struct loader *l, kw_status st, const config_setting_t *s,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kwi_vdiag(l->d, st, src_file(l, s), (int)config_setting_source_line(s),
		  fmt, ap);
	va_end(ap);
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

/*
 * The configuration file itself: opened once, checked on the descriptor
 * that is then parsed, so that what was checked is what is read.
 */
static FILE *open_config(struct loader *l, const char *path)
{
	char why[256];
	struct stat st;
	FILE *fp;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		kwi_diag(l->d, errno == ENOENT ? KW_ERR_CONFIG : KW_ERR_IO,
			 path, 0, "cannot open configuration: %s",
			 strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		kwi_diag(l->d, KW_ERR_CONFIG, path, 0,
			 "configuration is not a regular file");
		close(fd);
		return NULL;
	}
	if (!kwi_stat_trusted(&st, false, why, sizeof(why))) {
		if (st.st_uid != 0 && st.st_uid != geteuid())
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the configuration: it is %s "
				 "(chown %u %s)",
				 why, (unsigned)geteuid(), path);
		else
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the configuration: it is %s "
				 "(chmod go-w %s)",
				 why, path);
		close(fd);
		return NULL;
	}
	fp = fdopen(fd, "r");
	if (fp == NULL) {
		kwi_diag(l->d, KW_ERR_NOMEM, path, 0, "%s", strerror(errno));
		close(fd);
	}
	return fp;
}

/*
 * Files pulled in with @include are opened by libconfig; check them after
 * the fact, each once.
 */
static void check_includes(struct loader *l, const config_setting_t *s,
			   const char ***seen, size_t *nseen)
{
	const char *raw = config_setting_source_file(s);
	const char *f = raw != NULL ? resolve_source(l->ctx, raw) : NULL;
	int n;

	if (f != NULL && strcmp(f, l->ctx->path) != 0) {
		bool known = false;

		for (size_t i = 0; i < *nseen && !known; i++)
			known = (*seen)[i] == f || strcmp((*seen)[i], f) == 0;
		if (!known) {
			const char **grown;
			char why[256];
			struct stat st;

			grown = realloc(*seen, (*nseen + 1) * sizeof(**seen));
			if (grown != NULL) {
				*seen = grown;
				grown[(*nseen)++] = f;
			}
			if (stat(f, &st) != 0)
				kwi_diag(l->d, KW_ERR_IO, f, 0, "%s",
					 strerror(errno));
			else if (!kwi_stat_trusted(&st, false, why,
						   sizeof(why)))
				kwi_diag(l->d, KW_ERR_PERM, f, 0,
					 "refusing to read the included "
					 "configuration: it is %s (chmod go-w "
					 "%s)",
					 why, f);
		}
	}
	if (config_setting_is_aggregate(s)) {
		n = config_setting_length(s);
		for (int i = 0; i < n; i++)
			check_includes(l, config_setting_get_elem(s, i), seen,
				       nseen);
	}
}

/* ---- the keyway: { } section ---- */

static void load_ledger(struct loader *l, config_setting_t *g);

/* The variables the master keys come from: a program that runs others
 * (keyway exec) must not pass them on. */
static void note_sensitive_env(struct kw_ctx *ctx)
{
	static const char *const always[] = { "KEYWAY_MASTER_KEY",
					      "API_KEY_ENCRYPTION_KEY",
					      "KEYWAY_PASSPHRASE" };
	size_t n = 0, max = sizeof(ctx->sensitive_env) /
			    sizeof(ctx->sensitive_env[0]) - 1;

	for (size_t i = 0; i < sizeof(always) / sizeof(always[0]); i++)
		ctx->sensitive_env[n++] = strdup(always[i]);
	for (size_t i = 0; i < ctx->nmasters && n < max; i++) {
		const struct kwi_master *m = &ctx->masters[i];
		bool known = m->source == KWI_KEY_FILE;

		for (size_t k = 0; k < n && !known; k++)
			known = ctx->sensitive_env[k] != NULL &&
				strcmp(ctx->sensitive_env[k], m->var) == 0;
		if (!known)
			ctx->sensitive_env[n++] = strdup(m->var);
	}
}

/* keyway.master_key and keyway.old_master_keys. */
static void load_masters(struct loader *l, const config_setting_t *cur,
			 const config_setting_t *old)
{
	struct kw_ctx *ctx = l->ctx;
	size_t n = 1;

	if (old != NULL && !config_setting_is_list(old)) {
		problem(l, KW_ERR_CONFIG, old,
			"keyway.old_master_keys must be a list ( { source = "
			"...; }, ... )");
		return;
	}
	if (old != NULL)
		n += (size_t)config_setting_length(old);
	ctx->masters_size = n * sizeof(*ctx->masters);
	ctx->masters = kwi_secure_alloc(ctx->masters_size);
	if (ctx->masters == NULL) {
		problem(l, KW_ERR_NOMEM, cur, "out of memory");
		return;
	}
	if (kwi_master_parse(&ctx->masters[0], cur, src_file(l, cur),
			     "keyway.master_key", ctx->dir, l->d) != KW_OK)
		return;
	ctx->nmasters = 1;
	for (size_t i = 1; i < n; i++) {
		const config_setting_t *g =
			config_setting_get_elem(old, (unsigned)(i - 1));
		char what[64];

		snprintf(what, sizeof(what), "keyway.old_master_keys[%zu]",
			 i - 1);
		if (kwi_master_parse(&ctx->masters[i], g, src_file(l, g), what,
				     ctx->dir, l->d) != KW_OK)
			return;
		ctx->nmasters++;
	}
}

/* keyway.providers: { name: { prefix = "..."; min_length = N; ... }; } */
static void load_providers(struct loader *l, const config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"keyway.providers must be a group { name: { prefix = "
			"...; }; }");
		return;
	}
	n = config_setting_length(g);
	ctx->providers = calloc((size_t)n + 1, sizeof(*ctx->providers));
	if (ctx->providers == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *p = config_setting_get_elem(g, i);
		struct kwi_provider *pr = &ctx->providers[ctx->nproviders];
		const struct kwi_provider *builtin;
		const char *name = config_setting_name(p);
		long long v;

		if (!kwi_valid_provider(name)) {
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers: invalid provider name "
				"\"%s\" (lower-case letters, digits, '-', '_' "
				"and '.')",
				name);
			continue;
		}
		if (!config_setting_is_group(p)) {
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers.%s must be a group { prefix "
				"= ...; }",
				name);
			continue;
		}
		/* An entry for a built-in provider changes what it sets and
		 * keeps the rest. */
		builtin = kwi_builtin_provider(name);
		pr->name = strdup(name);
		pr->prefix = strdup(builtin != NULL ? builtin->prefix : "");
		pr->min_len = builtin != NULL ? builtin->min_len : 8;
		pr->max_len = builtin != NULL ? builtin->max_len : 4096;
		ctx->nproviders++;
		if (pr->name == NULL || pr->prefix == NULL) {
			problem(l, KW_ERR_NOMEM, p, "out of memory");
			return;
		}
		for (int k = 0; k < config_setting_length(p); k++) {
			const config_setting_t *s = config_setting_get_elem(p, k);
			const char *key = config_setting_name(s);
			int type = config_setting_type(s);

			if (strcmp(key, "prefix") == 0 &&
			    type == CONFIG_TYPE_STRING) {
				free(pr->prefix);
				pr->prefix = strdup(config_setting_get_string(s));
				if (pr->prefix == NULL) {
					problem(l, KW_ERR_NOMEM, s,
						"out of memory");
					return;
				}
				continue;
			}
			if ((strcmp(key, "min_length") == 0 ||
			     strcmp(key, "max_length") == 0) &&
			    (type == CONFIG_TYPE_INT ||
			     type == CONFIG_TYPE_INT64)) {
				v = config_setting_get_int64(s);
				if (v < 1 || v > 65536)
					problem(l, KW_ERR_CONFIG, s,
						"keyway.providers.%s.%s must "
						"be between 1 and 65536",
						name, key);
				else if (key[1] == 'i')
					pr->min_len = (size_t)v;
				else
					pr->max_len = (size_t)v;
				continue;
			}
			if (strcmp(key, "prefix") == 0 ||
			    strcmp(key, "min_length") == 0 ||
			    strcmp(key, "max_length") == 0)
				problem(l, KW_ERR_CONFIG, s,
					"keyway.providers.%s.%s must be %s",
					name, key,
					key[0] == 'p' ? "a string"
						      : "an integer");
			else
				problem(l, KW_ERR_CONFIG, s,
					"keyway.providers.%s: unknown setting "
					"\"%s\" (expected prefix, min_length "
					"or max_length)",
					name, key);
		}
		if (pr->min_len > pr->max_len)
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers.%s: min_length is above "
				"max_length",
				name);
	}
}

/* keyway.log: where host->log() lines go besides syslog. */
static void load_log(struct loader *l, const config_setting_t *g)
{
	static const struct {
		const char *word;
		int level;
	} levels[] = {
		{ "error", KW_LOG_ERR },
		{ "warning", KW_LOG_WARNING },
		{ "info", KW_LOG_INFO },
		{ "debug", KW_LOG_DEBUG },
	};
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"keyway.log must be a group { stderr = true; }");
		return;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char *v;
		size_t k;

		if (strcmp(name, "stderr") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
				problem(l, KW_ERR_CONFIG, s,
					"keyway.log.stderr must be true or "
					"false");
				continue;
			}
			l->ctx->log_stderr = config_setting_get_bool(s)
						     ? KWI_LOG_ALWAYS
						     : KWI_LOG_NEVER;
			continue;
		}
		if (strcmp(name, "level") == 0) {
			v = config_setting_get_string(s);
			for (k = 0; v != NULL && k < sizeof(levels) /
							     sizeof(levels[0]);
			     k++)
				if (strcmp(v, levels[k].word) == 0)
					break;
			if (v == NULL ||
			    k == sizeof(levels) / sizeof(levels[0])) {
				problem(l, KW_ERR_CONFIG, s,
					"keyway.log.level must be \"error\", "
					"\"warning\", \"info\" or \"debug\"");
				continue;
			}
			l->ctx->log_level = levels[k].level;
			continue;
		}
		problem(l, KW_ERR_CONFIG, s,
			"keyway.log: unknown setting \"%s\" (expected stderr "
			"or level)",
			name);
	}
}

static void load_keyway(struct loader *l, const config_setting_t *g)
{
	const config_setting_t *master = NULL, *old = NULL, *audit = NULL;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g, "keyway must be a group { ... }");
		return;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "master_key") == 0) {
			master = s;
			continue;
		}
		if (strcmp(name, "old_master_keys") == 0) {
			old = s;
			continue;
		}
		if (strcmp(name, "providers") == 0) {
			load_providers(l, s);
			continue;
		}
		if (strcmp(name, "ledger") == 0) {
			load_ledger(l, (config_setting_t *)s);
			continue;
		}
		if (strcmp(name, "audit") == 0) {
			audit = s;
			continue;
		}
		if (strcmp(name, "log") == 0) {
			load_log(l, s);
			continue;
		}
		problem(l, KW_ERR_CONFIG, s,
			"keyway: unknown setting \"%s\" (expected master_key, "
			"old_master_keys, providers, ledger, audit or log)",
			name);
	}
	if (master != NULL) {
		load_masters(l, master, old);
		note_sensitive_env(l->ctx);
	}
	else if (old != NULL)
		problem(l, KW_ERR_CONFIG, old,
			"keyway.old_master_keys without keyway.master_key");
	/* The audit trail keys its fingerprints with the master key. */
	if (audit != NULL)
		(void)kwi_audit_parse(l->ctx, audit, src_file(l, audit), l->d);
}

/* ---- backends: { } ---- */

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
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used > 0 ? ", " : "",
					 "on_unavailable");
	if (buf[0] == '\0')
		snprintf(buf, len, "nothing but module");
}

static bool is_abs_or_make(struct loader *l, struct kw_instance *b,
			   const config_setting_t *s, const char *value)
{
	struct kwi_path *grown;
	char *abs;

	if (value[0] == '/')
		abs = strdup(value);
	else if (asprintf(&abs, "%s/%s", l->ctx->dir, value) < 0)
		abs = NULL;
	grown = abs != NULL ? realloc(b->paths,
				      (b->npaths + 1) * sizeof(*b->paths))
			    : NULL;
	if (grown == NULL) {
		free(abs);
		problem(l, KW_ERR_NOMEM, s, "out of memory");
		return false;
	}
	b->paths = grown;
	b->paths[b->npaths].name = config_setting_name(s);
	b->paths[b->npaths].value = abs;
	b->npaths++;
	return true;
}

static void check_setting(struct loader *l, struct kw_instance *b,
			  const config_setting_t *s, const kw_setting_spec *sp)
{
	const char *name = config_setting_name(s);
	int type = config_setting_type(s);

	switch (sp->type) {
	case KW_SETTING_STRING:
	case KW_SETTING_PATH:
		if (type != CONFIG_TYPE_STRING) {
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be a string, not %s",
				b->label, name, type_name(type));
		} else if (sp->type == KW_SETTING_PATH) {
			const char *v = config_setting_get_string(s);

			if (v[0] == '\0')
				problem(l, KW_ERR_CONFIG, s,
					"%s: %s is empty", b->label,
					name);
			else
				is_abs_or_make(l, b, s, v);
		}
		break;
	case KW_SETTING_INT:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be an integer, not %s",
				b->label, name, type_name(type));
		break;
	case KW_SETTING_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be true or false, "
				"not %s",
				b->label, name, type_name(type));
		break;
	case KW_SETTING_STRMAP:
		if (type != CONFIG_TYPE_GROUP) {
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be a group "
				"{ name = \"value\"; ... }, not %s",
				b->label, name, type_name(type));
			break;
		}
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e =
				config_setting_get_elem(s, i);

			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				problem(l, KW_ERR_CONFIG, e,
					"%s: %s.%s must be a "
					"string, not %s",
					b->label, name, config_setting_name(e),
					type_name(config_setting_type(e)));
		}
		break;
	default:
		problem(l, KW_ERR_MODULE, s,
			"%s: module \"%s\" declares %s with an "
			"unknown type",
			b->label, b->module->name, name);
	}
}

static void load_scope(struct loader *l, struct kw_instance *b,
		       const config_setting_t *s)
{
	static const char *const names[] = { NULL, "user", "org", "system" };
	const char *v = config_setting_get_string(s);

	if (!(b->module->desc->caps & KW_CAP_SCOPED)) {
		problem(l, KW_ERR_CONFIG, s,
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
	problem(l, KW_ERR_CONFIG, s,
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

static bool load_quota(struct loader *l, struct kw_instance *b,
		       const config_setting_t *g, size_t index,
		       struct kwi_quota *q)
{
	const config_setting_t *limit = NULL, *period = NULL, *per = NULL;
	const char *word = NULL, *perword;
	bool ok = true;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"%s: quota %zu must be a group { limit = ...; period = "
			"...; per = ...; }",
			b->label, index + 1);
		return false;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "limit") == 0)
			limit = s;
		else if (strcmp(name, "period") == 0)
			period = s;
		else if (strcmp(name, "per") == 0)
			per = s;
		else {
			problem(l, KW_ERR_CONFIG, s,
				"%s: quota %zu: unknown setting \"%s\" "
				"(expected limit, period and per)",
				b->label, index + 1, name);
			ok = false;
		}
	}
	if (limit == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: quota %zu has no limit",
			b->label, index + 1);
		ok = false;
	} else if ((config_setting_type(limit) != CONFIG_TYPE_INT &&
		    config_setting_type(limit) != CONFIG_TYPE_INT64) ||
		   config_setting_get_int64(limit) < 1) {
		problem(l, KW_ERR_CONFIG, limit,
			"%s: quota %zu: limit must be a whole number of "
			"requests, 1 or more",
			b->label, index + 1);
		ok = false;
	} else {
		q->limit = (uint64_t)config_setting_get_int64(limit);
	}
	if (period == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: quota %zu has no period",
			b->label, index + 1);
		ok = false;
	} else if (!parse_period(period, &q->period, &word)) {
		problem(l, KW_ERR_CONFIG, period,
			"%s: quota %zu: period must be \"minute\", \"hour\", "
			"\"day\", \"month\" or a number of seconds (1 to "
			"31622400)",
			b->label, index + 1);
		ok = false;
	}
	q->per = KWI_PER_GLOBAL;
	perword = "global";
	if (per != NULL) {
		const char *v = config_setting_type(per) == CONFIG_TYPE_STRING
					? config_setting_get_string(per)
					: "";

		if (strcmp(v, "user") == 0)
			q->per = KWI_PER_USER;
		else if (strcmp(v, "org") == 0)
			q->per = KWI_PER_ORG;
		else if (strcmp(v, "global") != 0) {
			problem(l, KW_ERR_CONFIG, per,
				"%s: quota %zu: per must be \"user\", \"org\" "
				"or \"global\"",
				b->label, index + 1);
			ok = false;
		}
		perword = v;
	}
	if (!ok)
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

static void load_quotas(struct loader *l, struct kw_instance *b,
			const config_setting_t *s)
{
	int n;

	if (!config_setting_is_list(s) || config_setting_length(s) == 0) {
		problem(l, KW_ERR_CONFIG, s,
			"%s: quota must be a list ( { limit = ...; period = "
			"...; per = ...; }, ... )",
			b->label);
		return;
	}
	n = config_setting_length(s);
	b->quotas = calloc((size_t)n, sizeof(*b->quotas));
	if (b->quotas == NULL) {
		problem(l, KW_ERR_NOMEM, s, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		if (load_quota(l, b, config_setting_get_elem(s, i), (size_t)i,
			       &b->quotas[b->nquotas]))
			b->nquotas++;
}

/* ---- one instance: a backend, or the ledger ---- */

/* Settings the host reads itself, by role. */
static bool host_setting(struct loader *l, struct kw_instance *b,
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
			problem(l, KW_ERR_CONFIG, s,
				"keyway.ledger: on_unavailable must be "
				"\"deny\" or \"allow\"");
		return true;
	}
	if (strcmp(name, "scope") == 0) {
		if (config_setting_type(s) == CONFIG_TYPE_STRING)
			load_scope(l, b, s);
		else
			problem(l, KW_ERR_CONFIG, s,
				"%s: scope must be a string, not %s", b->label,
				type_name(config_setting_type(s)));
		return true;
	}
	if (strcmp(name, "quota") == 0) {
		load_quotas(l, b, s);
		return true;
	}
	return false;
}

static void load_instance(struct loader *l, struct kw_instance *b,
			  config_setting_t *g)
{
	const config_setting_t *mod;
	char why[768], list[256];
	kw_status rc;
	int n;

	b->setting = g;
	b->ctx = l->ctx;
	b->file = src_file(l, g);
	b->line = (int)config_setting_source_line(g);
	b->diag = l->d;
	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"%s must be a group { module = ...; }", b->label);
		return;
	}
	mod = config_setting_get_member(g, "module");
	if (mod == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: missing module", b->label);
		return;
	}
	if (config_setting_type(mod) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, mod,
			"%s: module must be a string, not %s", b->label,
			type_name(config_setting_type(mod)));
		return;
	}
	rc = kwi_module_load(&l->ctx->modules, config_setting_get_string(mod),
			     &b->module, why, sizeof(why));
	if (rc != KW_OK) {
		problem(l, rc, mod, "%s: %s", b->label,
			rc == KW_ERR_NOMEM ? "out of memory" : why);
		return;
	}
	if (b->role == KW_INSTANCE_LEDGER &&
	    !(b->module->desc->caps & KW_CAP_LEDGER)) {
		problem(l, KW_ERR_CONFIG, mod,
			"keyway.ledger: module \"%s\" does not count quotas",
			b->module->name);
		return;
	}

	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const kw_setting_spec *sp;

		if (s == mod || host_setting(l, b, s, name))
			continue;
		if ((sp = find_spec(b->module, name)) != NULL) {
			check_setting(l, b, s, sp);
		} else {
			spec_list(b, list, sizeof(list));
			problem(l, KW_ERR_CONFIG, s,
				"%s: unknown setting \"%s\" (module \"%s\" "
				"takes %s)",
				b->label, name, b->module->name, list);
		}
	}

	for (const kw_setting_spec *sp = b->module->desc->settings;
	     sp != NULL && sp->name != NULL; sp++)
		if ((sp->flags & KW_SETTING_REQUIRED) &&
		    config_setting_get_member(g, sp->name) == NULL)
			problem(l, KW_ERR_CONFIG, g,
				"%s: missing %s (module \"%s\" needs it)",
				b->label, sp->name, b->module->name);
	if (b->role == KW_INSTANCE_BACKEND &&
	    (b->module->desc->caps & KW_CAP_SCOPED) &&
	    config_setting_get_member(g, "scope") == NULL)
		problem(l, KW_ERR_CONFIG, g,
			"%s: missing scope (\"user\", \"org\" or \"system\")",
			b->label);
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

static void load_ledger(struct loader *l, config_setting_t *g)
{
	struct kw_instance *b = calloc(1, sizeof(*b));

	if (b == NULL || !set_label(b, "ledger", KW_INSTANCE_LEDGER)) {
		if (b != NULL) {
			free(b->name);
			free(b->label);
		}
		free(b);
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	l->ctx->ledger = b;
	load_instance(l, b, g);
}

/* Quotas count in the ledger: one must be configured if any is set. */
static void check_quotas_have_ledger(struct loader *l)
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
			problem(l, KW_ERR_CONFIG, q,
				"%s: quotas count in a ledger: set "
				"keyway.ledger = { module = \"sqlite\"; path = "
				"\"...\"; }",
				b->label);
	}
}

static void load_backends(struct loader *l, config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"backends must be a group { name: { ... }; ... }");
		return;
	}
	n = config_setting_length(g);
	if (n == 0) {
		problem(l, KW_ERR_CONFIG, g, "backends: no backend declared");
		return;
	}
	ctx->backends = calloc((size_t)n, sizeof(*ctx->backends));
	if (ctx->backends == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		struct kw_instance *b = &ctx->backends[ctx->nbackends++];

		if (!set_label(b, config_setting_name(s),
			       KW_INSTANCE_BACKEND)) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		load_instance(l, b, s);
	}
}

/* ---- chains: { } ---- */

static struct kw_instance *find_backend(struct kw_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (strcmp(ctx->backends[i].name, name) == 0)
			return &ctx->backends[i];
	return NULL;
}

static void load_entry(struct loader *l, struct kwi_chain *c, size_t i,
		       const config_setting_t *g)
{
	const config_setting_t *be = NULL, *ctl = NULL;
	struct kwi_entry *e = &c->entries[i];
	char why[256];
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu must be a group "
			"{ backend = ...; control = ...; }",
			c->name, i + 1);
		return;
	}
	n = config_setting_length(g);
	for (int k = 0; k < n; k++) {
		const config_setting_t *s = config_setting_get_elem(g, k);
		const char *name = config_setting_name(s);

		if (strcmp(name, "backend") == 0)
			be = s;
		else if (strcmp(name, "control") == 0)
			ctl = s;
		else
			problem(l, KW_ERR_CONFIG, s,
				"chain \"%s\": entry %zu: unknown setting "
				"\"%s\" (expected backend and control)",
				c->name, i + 1, name);
	}

	if (be == NULL) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu: missing backend", c->name,
			i + 1);
	} else if (config_setting_type(be) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, be,
			"chain \"%s\": entry %zu: backend must be a string",
			c->name, i + 1);
	} else {
		const char *name = config_setting_get_string(be);

		e->backend = find_backend(l->ctx, name);
		if (e->backend == NULL)
			problem(l, KW_ERR_CONFIG, be,
				"chain \"%s\": unknown backend \"%s\"",
				c->name, name);
		else if (e->backend->module != NULL &&
			 e->backend->module->op_lookup == NULL)
			problem(l, KW_ERR_CONFIG, be,
				"chain \"%s\": backend \"%s\" (module \"%s\") "
				"cannot look keys up",
				c->name, name, e->backend->module->name);
	}

	if (ctl == NULL) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu: missing control (required, "
			"requisite, sufficient or optional)",
			c->name, i + 1);
	} else if (config_setting_type(ctl) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, ctl,
			"chain \"%s\": entry %zu: control must be a string",
			c->name, i + 1);
	} else if (kwi_control_parse(config_setting_get_string(ctl),
				     c->n - i - 1, e, why,
				     sizeof(why)) != KW_OK) {
		problem(l, KW_ERR_CONFIG, ctl, "chain \"%s\": entry %zu: %s",
			c->name, i + 1, why);
	}
}

static void load_chains(struct loader *l, const config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"chains must be a group { name = ( ... ); ... }");
		return;
	}
	n = config_setting_length(g);
	if (n == 0) {
		problem(l, KW_ERR_CONFIG, g, "chains: no chain declared");
		return;
	}
	ctx->chains = calloc((size_t)n, sizeof(*ctx->chains));
	if (ctx->chains == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		struct kwi_chain *c = &ctx->chains[ctx->nchains++];
		int len;

		c->name = strdup(config_setting_name(s));
		if (c->name == NULL) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		if (!config_setting_is_list(s)) {
			problem(l, KW_ERR_CONFIG, s,
				"chain \"%s\" must be a list ( { backend = "
				"...; control = ...; }, ... )",
				c->name);
			continue;
		}
		len = config_setting_length(s);
		if (len == 0) {
			problem(l, KW_ERR_CONFIG, s, "chain \"%s\" is empty",
				c->name);
			continue;
		}
		c->entries = calloc((size_t)len, sizeof(*c->entries));
		if (c->entries == NULL) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		c->n = (size_t)len;
		for (int k = 0; k < len; k++)
			load_entry(l, c, (size_t)k,
				   config_setting_get_elem(s, k));
		if (strcmp(c->name, "default") == 0)
			ctx->default_chain = c;
	}
}

kw_status kwi_config_load(struct kw_ctx *ctx, const char *path,
			  struct kwi_diag *d)
{
	struct loader l = { ctx, d };
	config_setting_t *root, *s;
	const char **seen = NULL;
	size_t nseen = 0;
	char *copy;
	FILE *fp;
	int n;

	config_init(&ctx->cfg);
	ctx->path = strdup(path);
	copy = strdup(path);
	if (ctx->path == NULL || copy == NULL) {
		free(copy);
		kwi_diag(d, KW_ERR_NOMEM, path, 0, "out of memory");
		return d->first;
	}
	/* Relative paths in the file are taken against its directory, made
	 * absolute once here. */
	ctx->dir = realpath(dirname(copy), NULL);
	free(copy);
	if (ctx->dir == NULL) {
		kwi_diag(d, errno == ENOMEM ? KW_ERR_NOMEM : KW_ERR_CONFIG, path,
			 0, "cannot open configuration: %s", strerror(errno));
		return d->first;
	}

	fp = open_config(&l, path);
	if (fp == NULL)
		return d->first;
	config_set_include_dir(&ctx->cfg, ctx->dir);
	if (config_read(&ctx->cfg, fp) != CONFIG_TRUE) {
		const char *f = config_error_file(&ctx->cfg);

		kwi_diag(d, KW_ERR_CONFIG, resolve_source(ctx, f),
			 config_error_line(&ctx->cfg), "%s",
			 config_error_text(&ctx->cfg));
		fclose(fp);
		return d->first;
	}
	fclose(fp);

	root = config_root_setting(&ctx->cfg);
	check_includes(&l, root, &seen, &nseen);
	free(seen);

	n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		s = config_setting_get_elem(root, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "keyway") == 0 ||
		    strcmp(name, "backends") == 0 ||
		    strcmp(name, "chains") == 0)
			continue;
		problem(&l, KW_ERR_CONFIG, s,
			"unknown setting \"%s\" (expected keyway, backends or "
			"chains)",
			name);
	}

	if ((s = config_setting_get_member(root, "keyway")) != NULL)
		load_keyway(&l, s);
	if ((s = config_setting_get_member(root, "backends")) != NULL)
		load_backends(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no backends section");
	if ((s = config_setting_get_member(root, "chains")) != NULL)
		load_chains(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no chains section");
	check_quotas_have_ledger(&l);
	return d->first;
}

void kwi_config_free(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++) {
		struct kw_instance *b = &ctx->backends[i];

		for (size_t k = 0; k < b->npaths; k++)
			free(b->paths[k].value);
		free(b->paths);
		free(b->name);
		free(b->label);
		free(b->quotas);
	}
	free(ctx->backends);
	if (ctx->ledger != NULL) {
		for (size_t k = 0; k < ctx->ledger->npaths; k++)
			free(ctx->ledger->paths[k].value);
		free(ctx->ledger->paths);
		free(ctx->ledger->name);
		free(ctx->ledger->label);
		free(ctx->ledger);
	}
	for (size_t i = 0; i < ctx->nchains; i++) {
		free(ctx->chains[i].entries);
		free(ctx->chains[i].name);
	}
	free(ctx->chains);
	for (size_t i = 0; i < ctx->nsources; i++)
		free(ctx->sources[i].value);
	free(ctx->sources);
	kwi_module_unload_all(ctx->modules);
	kwi_audit_free(ctx);
	for (size_t i = 0; i < sizeof(ctx->sensitive_env) /
				       sizeof(ctx->sensitive_env[0]);
	     i++)
		free(ctx->sensitive_env[i]);
	kwi_keyrings_free(ctx);
	for (size_t i = 0; i < ctx->nmasters; i++)
		kwi_master_free(&ctx->masters[i]);
	kwi_secure_free(ctx->masters, ctx->masters_size);
	for (size_t i = 0; i < ctx->nproviders; i++) {
		free(ctx->providers[i].name);
		free(ctx->providers[i].prefix);
	}
	free(ctx->providers);
	config_destroy(&ctx->cfg);
	free(ctx->path);
	free(ctx->dir);
}
