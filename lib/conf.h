/*
 * conf.h - keyway.conf as loaded: the backends it declares (struct
 * kw_instance) and loading it into a context.  Never installed.  (Not
 * "config.h": that name is the build's own.)
 */
#ifndef KEYWAY_CONF_H
#define KEYWAY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

struct kw_ctx;
struct kwi_diag;
struct kwi_module;
struct kwi_quota;

/* A path setting and its value made absolute (value malloc'd). */
struct kwi_path {
	const char *name;
	char *value;
};

/* One backend of keyway.conf, or the ledger: the kw_instance modules see. */
struct kw_instance {
	char *name;
	char *label;                /* "backend \"NAME\"" or "keyway.ledger" */
	kw_instance_role role;
	struct kwi_quota *quotas;
	size_t nquotas;
	const char *file;           /* where it is declared */
	int line;
	config_setting_t *setting;  /* its group */
	struct kwi_module *module;
	kw_scope scope;
	struct kwi_path *paths;     /* KW_SETTING_PATH values made absolute */
	size_t npaths;
	void *state;
	bool opened;
	struct kwi_diag *diag;      /* where open() errors go */
	struct kw_ctx *ctx;
	/* Bytes of host->secure_alloc() that open() and close() left
	 * allocated between them (host.c). */
	int64_t secure_held;
};

/*
 * Parse and validate the file, load the modules it names, check every
 * backend's settings against its module.  Does not open backends.  Every
 * problem goes to d; returns d->first.  What it loaded is the context's
 * (kw_close() frees it), also on failure.
 */
kw_status kwi_config_load(struct kw_ctx *ctx, const char *path,
			  struct kwi_diag *d);

/* The file a setting is written in: the configuration's path, or the
 * path of the included file (owned by the context). */
const char *kwi_source_path(struct kw_ctx *ctx, const config_setting_t *s);

#endif /* KEYWAY_CONF_H */
