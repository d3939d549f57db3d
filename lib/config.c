/*
 * config.c - reading keyway.conf: the file as a whole and its keyway
 * section (keyway.providers, keyway.log, the master keys).
 *
 * libconfig parses the text of the file and of the files it includes,
 * which config_text.c reads; config.c, config_backends.c and
 * config_chains.c decide what it means.  Everything
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
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "config_audit.h"
#include "config_int.h"
#include "config_master.h"
#include "context.h"
#include "crypto.h"
#include "error.h"
#include "exec.h"
#include "providers.h"
#include "secmem.h"

void kwi_problem(struct kwi_loader *l, kw_status st,
		 const config_setting_t *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kwi_vdiag(l->d, st, kwi_source_path(l->ctx, s),
		  (int)config_setting_source_line(s), fmt, ap);
	va_end(ap);
}

bool kwi_config_group(struct kwi_loader *l, const config_setting_t *g,
		      const char *fmt, ...)
{
	va_list ap;

	if (config_setting_is_group(g))
		return true;
	va_start(ap, fmt);
	kwi_vdiag(l->d, KW_ERR_CONFIG, kwi_source_path(l->ctx, g),
		  (int)config_setting_source_line(g), fmt, ap);
	va_end(ap);
	return false;
}

char *kwi_config_abs(const struct kw_ctx *ctx, const char *path)
{
	char *abs;

	if (path[0] == '/')
		return strdup(path);
	if (asprintf(&abs, "%s/%s", ctx->dir, path) < 0)
		return NULL;
	return abs;
}

void *kwi_config_section(struct kwi_loader *l, const config_setting_t *g,
			 const char *name, const char *shape,
			 const char *item, size_t size, int *n)
{
	void *items;

	*n = 0;
	if (!kwi_config_group(l, g, "%s must be a group %s", name, shape))
		return NULL;
	*n = config_setting_length(g);
	if (*n == 0) {
		kwi_problem(l, KW_ERR_CONFIG, g, "%s: no %s declared", name,
			    item);
		return NULL;
	}
	items = calloc((size_t)*n, size);
	if (items == NULL)
		kwi_problem(l, KW_ERR_NOMEM, g, "out of memory");
	return items;
}

const char *kwi_type_name(int type)
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

/* ---- the keyway: { } section ---- */

/* keyway.master_key and keyway.old_master_keys. */
static void load_masters(struct kwi_loader *l, const config_setting_t *cur,
			 const config_setting_t *old)
{
	struct kw_ctx *ctx = l->ctx;
	size_t n = 1;

	if (old != NULL && !config_setting_is_list(old)) {
		kwi_problem(l, KW_ERR_CONFIG, old,
			    "keyway.old_master_keys must be a list ( { source "
			    "= ...; }, ... )");
		return;
	}
	if (old != NULL)
		n += (size_t)config_setting_length(old);
	ctx->masters_size = n * sizeof(*ctx->masters);
	ctx->masters = kwi_secure_alloc(ctx->masters_size);
	if (ctx->masters == NULL) {
		kwi_problem(l, KW_ERR_NOMEM, cur, "out of memory");
		return;
	}
	if (kwi_master_parse(&ctx->masters[0], cur,
			     kwi_source_path(ctx, cur), "keyway.master_key",
			     ctx->dir, l->d) != KW_OK)
		return;
	ctx->nmasters = 1;
	for (size_t i = 1; i < n; i++) {
		const config_setting_t *g =
			config_setting_get_elem(old, (unsigned)(i - 1));
		char what[64];

		snprintf(what, sizeof(what), "keyway.old_master_keys[%zu]",
			 i - 1);
		if (kwi_master_parse(&ctx->masters[i], g,
				     kwi_source_path(ctx, g), what, ctx->dir,
				     l->d) != KW_OK)
			return;
		ctx->nmasters++;
	}
}

/* One setting of keyway.providers.NAME into pr; false when out of
 * memory. */
static bool load_provider_setting(struct kwi_loader *l, struct kwi_provider *pr,
				  const config_setting_t *s)
{
	const char *name = pr->name;
	const char *key = config_setting_name(s);
	int type = config_setting_type(s);
	long long v;

	if (strcmp(key, "prefix") == 0 && type == CONFIG_TYPE_STRING) {
		if (kwi_provider_set_prefix(pr, config_setting_get_string(s)))
			return true;
		kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
		return false;
	}
	if ((strcmp(key, "min_length") == 0 ||
	     strcmp(key, "max_length") == 0) &&
	    (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)) {
		v = config_setting_get_int64(s);
		if (v < 1 || v > 65536)
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "keyway.providers.%s.%s must be between 1 "
				    "and 65536",
				    name, key);
		else if (key[1] == 'i')
			pr->min_len = (size_t)v;
		else
			pr->max_len = (size_t)v;
		return true;
	}
	if (strcmp(key, "prefix") == 0 || strcmp(key, "min_length") == 0 ||
	    strcmp(key, "max_length") == 0)
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "keyway.providers.%s.%s must be %s", name, key,
			    key[0] == 'p' ? "a string" : "an integer");
	else
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "keyway.providers.%s: unknown setting \"%s\" "
			    "(expected prefix, min_length or max_length)",
			    name, key);
	return true;
}

/* keyway.providers.NAME; false when out of memory. */
static bool load_provider(struct kwi_loader *l, const config_setting_t *p)
{
	const char *name = config_setting_name(p);
	struct kwi_provider *pr;

	if (!kwi_valid_provider(name)) {
		kwi_problem(l, KW_ERR_CONFIG, p,
			    "keyway.providers: invalid provider name \"%s\" "
			    "(lower-case letters, digits, '-', '_' and '.')",
			    name);
		return true;
	}
	if (!kwi_config_group(l, p,
			      "keyway.providers.%s must be a group "
			      "{ prefix = ...; }",
			      name))
		return true;
	pr = kwi_provider_add(l->ctx, name);
	if (pr == NULL) {
		kwi_problem(l, KW_ERR_NOMEM, p, "out of memory");
		return false;
	}
	for (int k = 0; k < config_setting_length(p); k++)
		if (!load_provider_setting(l, pr,
					   config_setting_get_elem(p, k)))
			return false;
	if (pr->min_len > pr->max_len)
		kwi_problem(l, KW_ERR_CONFIG, p,
			    "keyway.providers.%s: min_length is above "
			    "max_length",
			    name);
	return true;
}

/* keyway.providers: { name: { prefix = "..."; min_length = N; ... }; } */
static void load_providers(struct kwi_loader *l, const config_setting_t *g)
{
	int n;

	if (!kwi_config_group(l, g,
			      "keyway.providers must be a group { name: "
			      "{ prefix = ...; }; }"))
		return;
	n = config_setting_length(g);
	if (kwi_providers_alloc(l->ctx, (size_t)n) != KW_OK) {
		kwi_problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		if (!load_provider(l, config_setting_get_elem(g, i)))
			return;
}

/* keyway.log: where host->log() lines go besides syslog. */
static void load_log(struct kwi_loader *l, const config_setting_t *g)
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

	if (!kwi_config_group(l, g,
			      "keyway.log must be a group { stderr = true; }"))
		return;
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char *v;
		size_t k;

		if (strcmp(name, "stderr") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
				kwi_problem(l, KW_ERR_CONFIG, s,
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
				kwi_problem(l, KW_ERR_CONFIG, s,
					    "keyway.log.level must be "
					    "\"error\", \"warning\", \"info\" "
					    "or \"debug\"");
				continue;
			}
			l->ctx->log_level = levels[k].level;
			continue;
		}
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "keyway.log: unknown setting \"%s\" (expected "
			    "stderr or level)",
			    name);
	}
}

/* The keyway section; true when it makes the configuration a client of
 * keywayd (keyway.daemon), whether or not that setting is right. */
static bool load_keyway(struct kwi_loader *l, const config_setting_t *g)
{
	const config_setting_t *master = NULL, *old = NULL, *audit = NULL;
	bool client;
	int n;

	if (!kwi_config_group(l, g, "keyway must be a group { ... }"))
		return false;
	client = config_setting_get_member(g, "daemon") != NULL;
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		char what[128];

		if (strcmp(name, "daemon") == 0) {
			kwi_config_daemon(l, s);
			continue;
		}
		if (client) {
			snprintf(what, sizeof(what), "keyway.%s", name);
			kwi_config_not_client(l, s, what);
			continue;
		}

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
			kwi_config_ledger(l, (config_setting_t *)s);
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
		kwi_problem(l, KW_ERR_CONFIG, s,
			    "keyway: unknown setting \"%s\" (expected "
			    "master_key, old_master_keys, providers, ledger, "
			    "audit, log or daemon)",
			    name);
	}
	if (master != NULL) {
		load_masters(l, master, old);
		if (kwi_sensitive_env_note(l->ctx) != KW_OK)
			kwi_problem(l, KW_ERR_NOMEM, master, "out of memory");
	}
	else if (old != NULL)
		kwi_problem(l, KW_ERR_CONFIG, old,
			    "keyway.old_master_keys without keyway.master_key");
	/* The audit trail keys its fingerprints with the master key. */
	if (audit != NULL)
		(void)kwi_audit_parse(l->ctx, audit,
				      kwi_source_path(l->ctx, audit), l->d);
	return client;
}

kw_status kwi_config_load(struct kw_ctx *ctx, const char *path,
			  struct kwi_diag *d)
{
	struct kwi_loader l = { ctx, d };
	config_setting_t *root, *s;
	char *copy;
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

	if (!kwi_config_read(&l, path))
		return d->first;
	root = config_root_setting(&ctx->cfg);

	n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		s = config_setting_get_elem(root, i);
		const char *name = config_setting_name(s);

		/* "daemon" is keywayd(8)'s own, read by it alone. */
		if (strcmp(name, "keyway") == 0 ||
		    strcmp(name, "backends") == 0 ||
		    strcmp(name, "chains") == 0 ||
		    strcmp(name, "daemon") == 0)
			continue;
		kwi_problem(&l, KW_ERR_CONFIG, s,
			    "unknown setting \"%s\" (expected keyway, backends, "
			    "chains or daemon)",
			    name);
	}

	if ((s = config_setting_get_member(root, "keyway")) != NULL &&
	    load_keyway(&l, s)) {
		/* A client of keywayd: the daemon has the chains. */
		if ((s = config_setting_get_member(root, "backends")) != NULL)
			kwi_config_not_client(&l, s, "backends");
		if ((s = config_setting_get_member(root, "chains")) != NULL)
			kwi_config_not_client(&l, s, "chains");
		return d->first;
	}
	if ((s = config_setting_get_member(root, "backends")) != NULL)
		kwi_config_backends(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no backends section");
	if ((s = config_setting_get_member(root, "chains")) != NULL)
		kwi_config_chains(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no chains section");
	kwi_config_quotas_need_ledger(&l);
	return d->first;
}
