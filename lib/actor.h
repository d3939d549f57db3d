/*
 * actor.h - who is asking (kw_actor), and what they may manage.  Never
 * installed.
 */
#ifndef KEYWAY_ACTOR_H
#define KEYWAY_ACTOR_H

#include <stdbool.h>

#include <keyway/keyway.h>

/* Is actor a one this library can act for: initialised, of a known role,
 * with valid names?  KW_OK, or KW_ERR_INVAL with kw_last_error() saying
 * why. */
kw_status kwi_check_actor(const kw_actor *a);
/* What the calls that walk a list with a callback begin with: a valid
 * actor, a context of this process and a callback (has_fn).  KW_OK, or
 * KW_ERR_INVAL with kw_last_error() saying why. */
kw_status kwi_check_caller(const kw_ctx *ctx, const kw_actor *actor,
			   bool has_fn);
/* May actor a manage the keys of this scope and owner? */
bool kwi_may(const kw_actor *a, kw_scope scope, const char *owner);
/* KW_ERR_PERM, with kw_last_error() saying who may manage such keys. */
kw_status kwi_refuse(kw_scope scope, const char *owner);
/* Are a and b the same name (neither NULL)? */
bool kwi_same(const char *a, const char *b);

#endif /* KEYWAY_ACTOR_H */
