/*
 * exec.c - what a program that runs others with keys in their environment
 * (keyway exec) asks of a context: which variables must not be passed on,
 * and the scope of the backends it reads.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>

#include "conf.h"
#include "context.h"
#include "crypto.h"
#include "error.h"
#include "exec.h"
#include "loader.h"
#include "names.h"
#include "remote.h"

/* Read for a master key whatever keyway.master_key says. */
static const char *const master_vars[] = { "KEYWAY_MASTER_KEY",
					   "API_KEY_ENCRYPTION_KEY",
					   "KEYWAY_PASSPHRASE" };
#define NMASTER_VARS (sizeof(master_vars) / sizeof(master_vars[0]))

/* The variables the master keys come from: a program that runs others
 * (keyway exec) must not pass them on.  One slot for each master key, so
 * that none is left out however many there are. */
kw_status kwi_sensitive_env_note(struct kw_ctx *ctx)
{
	size_t n = 0;
	char **env;

	env = calloc(NMASTER_VARS + ctx->nmasters + 1, sizeof(*env));
	if (env == NULL)
		return KW_ERR_NOMEM;
	ctx->sensitive_env = env;
	for (size_t i = 0; i < NMASTER_VARS; i++)
		if ((env[n++] = strdup(master_vars[i])) == NULL)
			return KW_ERR_NOMEM;
	for (size_t i = 0; i < ctx->nmasters; i++) {
		const struct kwi_master *m = &ctx->masters[i];
		bool known = m->source == KWI_KEY_FILE ||
			     m->source == KWI_KEY_CREDENTIAL;

		for (size_t k = 0; k < n && !known; k++)
			known = strcmp(env[k], m->var) == 0;
		if (!known && (env[n++] = strdup(m->var)) == NULL)
			return KW_ERR_NOMEM;
	}
	return KW_OK;
}

const char *const *kw_sensitive_env(const kw_ctx *ctx)
{
	return ctx != NULL ? (const char *const *)ctx->sensitive_env : NULL;
}

static bool same_name(const char *s, const char *name, size_t len)
{
	return s != NULL && strlen(s) == len && memcmp(s, name, len) == 0;
}

int kw_reads_env(const kw_ctx *ctx, const char *name)
{
	const struct kw_instance *b;
	size_t len, i;

	if (ctx == NULL || name == NULL)
		return 0;
	len = strcspn(name, "=");
	for (i = 0; i < NMASTER_VARS; i++)
		if (same_name(master_vars[i], name, len))
			return 1;
	for (i = 0; ctx->sensitive_env != NULL &&
		    ctx->sensitive_env[i] != NULL; i++)
		if (same_name(ctx->sensitive_env[i], name, len))
			return 1;
	for (i = 0; i < ctx->nbackends; i++) {
		b = &ctx->backends[i];
		if (b->opened && b->module->ops.reads_env != NULL &&
		    b->module->ops.reads_env(b->state, name, len))
			return 1;
	}
	return 0;
}

kw_status kw_backend_scope(const kw_ctx *ctx, const char *backend,
			   kw_scope *scope)
{
	const struct kw_instance *b;

	if (scope != NULL)
		*scope = KW_SCOPE_NONE;
	if (ctx == NULL || backend == NULL || scope == NULL)
		return kwi_error(KW_ERR_INVAL,
				 "no context, backend or scope");
	/* Not echoed below unless it is a name that can be shown. */
	if (kwi_check_name("backend name", backend) != KW_OK)
		return KW_ERR_INVAL;
	if (ctx->remote != NULL)
		return kwi_remote_no_management(ctx->remote);
	b = kwi_find_backend(ctx, backend);
	if (b != NULL) {
		*scope = b->scope;
		return KW_OK;
	}
	return kwi_error(KW_ERR_INVAL, "%s: no backend \"%.64s\"", ctx->path,
			 backend);
}
