/*
 * providers.h - the providers keys are stored for, and the format of
 * their keys (built in, or set in keyway.providers).  Never installed.
 */
#ifndef KEYWAY_PROVIDERS_H
#define KEYWAY_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>

struct kw_ctx;

/* The longest provider name. */
#define KWI_PROVIDER_MAX 64

/* A provider's key format (keyway.providers, or built in). */
struct kwi_provider {
	char *name;
	char *prefix;
	size_t min_len;
	size_t max_len;
};

/* A provider name: lower-case letters, digits, '-', '_' and '.', starting
 * with a letter or digit, at most KWI_PROVIDER_MAX.  NULL is not one. */
bool kwi_valid_provider(const char *s);

/*
 * Make room in ctx for n providers of keyway.providers.  KW_OK or
 * KW_ERR_NOMEM.
 */
kw_status kwi_providers_alloc(struct kw_ctx *ctx, size_t n);
/*
 * Add provider `name` to ctx (room made by kwi_providers_alloc()), with
 * the built-in format of that name or the default one, for its settings
 * to change.  Returns it; NULL when out of memory (its strings, owned by
 * the context, may then be half made: kwi_providers_free() frees them).
 */
struct kwi_provider *kwi_provider_add(struct kw_ctx *ctx, const char *name);
/* Replace p's prefix with a copy of prefix: false when out of memory. */
bool kwi_provider_set_prefix(struct kwi_provider *p, const char *prefix);
void kwi_providers_free(struct kw_ctx *ctx);

/* Does value look like a key of this provider?  KW_OK, or KW_ERR_INVAL
 * with why it does not in why. */
kw_status kwi_provider_check(const struct kw_ctx *ctx, const char *provider,
			     const char *value, size_t len, char *why,
			     size_t whylen);

#endif /* KEYWAY_PROVIDERS_H */
