/*
 * config_audit.h - keyway.audit (config_audit.c).  Never installed.
 */
#ifndef KEYWAY_CONFIG_AUDIT_H
#define KEYWAY_CONFIG_AUDIT_H

#include <libconfig.h>

#include <keyway/keyway.h>

struct kw_ctx;
struct kwi_diag;

/*
 * Parse group g (declared in file) and give ctx its audit trail
 * (kwi_audit_new()); relative paths are taken from ctx->dir.  Opens
 * nothing.  KW_OK, or a failure said to d.
 */
kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d);

#endif /* KEYWAY_CONFIG_AUDIT_H */
