/*
 * exec.h - what a program that runs others (keyway exec) must keep from
 * them.  Never installed.
 */
#ifndef KEYWAY_EXEC_H
#define KEYWAY_EXEC_H

#include <keyway/keyway.h>

struct kw_ctx;

/* Note in ctx->sensitive_env the variables its master keys come from, and
 * the ones keyway reads for a master key by default.  KW_OK or
 * KW_ERR_NOMEM (what was noted is the context's to free either way). */
kw_status kwi_sensitive_env_note(struct kw_ctx *ctx);

#endif /* KEYWAY_EXEC_H */
