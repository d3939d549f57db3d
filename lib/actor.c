/*
 * actor.c - who may manage which keys, decided here once for every store
 * module and for the usage log: org keys by that org's owners and admins,
 * user keys by that user, system keys by a system administrator,
 * everything by a system administrator.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <keyway/keyway.h>

#include "actor.h"
#include "context.h"
#include "error.h"
#include "names.h"
#include "remote.h"

#define ACTOR_HAS(a, f) \
	((a)->size >= offsetof(kw_actor, f) + sizeof((a)->f))

bool kwi_same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

kw_status kwi_check_caller(const kw_ctx *ctx, const kw_actor *actor,
			   bool has_fn)
{
	kw_status rc = kwi_check_actor(actor);

	if (rc != KW_OK)
		return rc;
	if (ctx == NULL || !has_fn)
		return kwi_error(KW_ERR_INVAL, "no context or no callback");
	if (kwi_ctx_usable(ctx) != KW_OK)
		return KW_ERR_INVAL;
	if (ctx->remote != NULL)
		return kwi_remote_no_management(ctx->remote);
	return KW_OK;
}

bool kwi_may(const kw_actor *a, kw_scope scope, const char *owner)
{
	if (a->role == KW_ROLE_SYSADMIN)
		return true;
	switch (scope) {
	case KW_SCOPE_ORG:
		return kwi_same(a->org, owner) &&
		       (a->role == KW_ROLE_OWNER || a->role == KW_ROLE_ADMIN);
	case KW_SCOPE_USER:
		return kwi_same(a->user, owner);
	default:
		return false;
	}
}

kw_status kwi_refuse(kw_scope scope, const char *owner)
{
	switch (scope) {
	case KW_SCOPE_ORG:
		return kwi_error(KW_ERR_PERM,
				 "only an owner or admin of org \"%s\" may "
				 "manage its keys",
				 owner);
	case KW_SCOPE_USER:
		return kwi_error(KW_ERR_PERM,
				 "only user \"%s\" may manage that user's keys",
				 owner);
	default:
		return kwi_error(KW_ERR_PERM,
				 "only a system administrator may manage system "
				 "keys");
	}
}

kw_status kwi_check_actor(const kw_actor *a)
{
	if (a == NULL || !ACTOR_HAS(a, role))
		return kwi_error(KW_ERR_INVAL,
				 "no actor, or one not initialised with "
				 "KW_ACTOR_INIT");
	if (a->role < KW_ROLE_NONE || a->role > KW_ROLE_SYSADMIN)
		return kwi_error(KW_ERR_INVAL, "unknown actor role %d",
				 (int)a->role);
	if (kwi_check_name("actor user name", a->user) != KW_OK ||
	    kwi_check_name("actor org name", a->org) != KW_OK)
		return KW_ERR_INVAL;
	if ((a->user != NULL && !kwi_valid_identity(a->user)) ||
	    (a->org != NULL && !kwi_valid_identity(a->org)))
		return kwi_error(KW_ERR_INVAL, "invalid actor user or org name");
	return KW_OK;
}
