/*
 * config_int.h - what the files that read keyway.conf share (config.c,
 * config_text.c, config_backends.c, config_chains.c).  Never installed,
 * and used by no other part: they receive what these files parsed.
 */
#ifndef KEYWAY_CONFIG_INT_H
#define KEYWAY_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libconfig.h>

#include <keyway/keyway.h>

struct kw_ctx;
struct kwi_diag;

/* A configuration being loaded: the context it goes into, and where its
 * problems go. */
struct kwi_loader {
	struct kw_ctx *ctx;
	struct kwi_diag *d;
};

/* Report a problem at setting s's file and line (config.c). */
void kwi_problem(struct kwi_loader *l, kw_status st,
		 const config_setting_t *s, const char *fmt, ...)
	KW_PRINTF(4, 5);
/* Whether setting g is a group; when it is not, the problem fmt says is
 * reported (KW_ERR_CONFIG) at g's file and line (config.c). */
bool kwi_config_group(struct kwi_loader *l, const config_setting_t *g,
		      const char *fmt, ...) KW_PRINTF(3, 4);
/* path, made absolute against the configuration's directory (malloc'd;
 * NULL when out of memory). */
char *kwi_config_abs(const struct kw_ctx *ctx, const char *path);
/*
 * Section g of the root, `name` ("backends"), must be a group of the
 * shape shown in messages, of at least one `item` ("backend"): returns n
 * zeroed items of size bytes for it (*n: how many), or NULL with the
 * problem reported.
 */
void *kwi_config_section(struct kwi_loader *l, const config_setting_t *g,
			 const char *name, const char *shape,
			 const char *item, size_t size, int *n);
/* "a group", "an integer", ... for a libconfig CONFIG_TYPE_* (config.c). */
const char *kwi_type_name(int type);

/*
 * Read the main file at path and what it includes into one text and parse
 * it into l->ctx->cfg (config_text.c).  False with the problem reported.
 */
bool kwi_config_read(struct kwi_loader *l, const char *path);

/* backends: { NAME: { module = ...; ... }; ... } (config_backends.c). */
void kwi_config_backends(struct kwi_loader *l, config_setting_t *g);
/* keyway.ledger (config_backends.c). */
void kwi_config_ledger(struct kwi_loader *l, config_setting_t *g);
/* Quotas count in the ledger: one must be configured if any is set
 * (config_backends.c). */
void kwi_config_quotas_need_ledger(struct kwi_loader *l);

/* keyway.daemon: the keywayd a client configuration asks
 * (config_remote.c). */
void kwi_config_daemon(struct kwi_loader *l, const config_setting_t *g);
/* Setting s, named `what` ("keyway.master_key", "backends"), refused in a
 * client configuration (config_remote.c). */
void kwi_config_not_client(struct kwi_loader *l, const config_setting_t *s,
			   const char *what);

/* chains: { NAME = ( { backend = ...; control = ...; }, ... ); ... }
 * (config_chains.c), after the backends. */
void kwi_config_chains(struct kwi_loader *l, const config_setting_t *g);

#endif /* KEYWAY_CONFIG_INT_H */
