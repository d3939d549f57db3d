/*
 * providers.c - the providers keys are stored for: their names, and the
 * format of their keys, built in or set in keyway.providers (which
 * config.c parses), that a key is checked against before it is stored.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/keyway.h>

#include "context.h"
#include "providers.h"

bool kwi_valid_provider(const char *s)
{
	size_t n = 0;

	if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	for (; *s != '\0'; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return n <= KWI_PROVIDER_MAX;
}

static const struct kwi_provider builtin_providers[] = {
	{ (char *)"anthropic", (char *)"sk-ant-", 20, 4096 },
	{ (char *)"openai", (char *)"sk-", 20, 4096 },
	{ (char *)"google", (char *)"AIza", 30, 4096 },
};

/* The format of a provider keyway knows nothing of. */
static const struct kwi_provider any_provider = { NULL, (char *)"", 8, 4096 };

/* A built-in provider format, or NULL. */
static const struct kwi_provider *builtin_provider(const char *name)
{
	for (size_t i = 0;
	     i < sizeof(builtin_providers) / sizeof(builtin_providers[0]); i++)
		if (strcmp(builtin_providers[i].name, name) == 0)
			return &builtin_providers[i];
	return NULL;
}

kw_status kwi_providers_alloc(struct kw_ctx *ctx, size_t n)
{
	ctx->providers = calloc(n + 1, sizeof(*ctx->providers));
	return ctx->providers != NULL ? KW_OK : KW_ERR_NOMEM;
}

struct kwi_provider *kwi_provider_add(struct kw_ctx *ctx, const char *name)
{
	struct kwi_provider *pr = &ctx->providers[ctx->nproviders];
	/* An entry for a built-in provider changes what it sets and keeps
	 * the rest. */
	const struct kwi_provider *from = builtin_provider(name);

	if (from == NULL)
		from = &any_provider;
	pr->name = strdup(name);
	pr->prefix = strdup(from->prefix);
	pr->min_len = from->min_len;
	pr->max_len = from->max_len;
	ctx->nproviders++;
	return pr->name != NULL && pr->prefix != NULL ? pr : NULL;
}

bool kwi_provider_set_prefix(struct kwi_provider *p, const char *prefix)
{
	free(p->prefix);
	p->prefix = strdup(prefix);
	return p->prefix != NULL;
}

void kwi_providers_free(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nproviders; i++) {
		free(ctx->providers[i].name);
		free(ctx->providers[i].prefix);
	}
	free(ctx->providers);
	ctx->providers = NULL;
	ctx->nproviders = 0;
}

static const struct kwi_provider *find_provider(const struct kw_ctx *ctx,
						const char *name)
{
	for (size_t i = 0; i < ctx->nproviders; i++)
		if (strcmp(ctx->providers[i].name, name) == 0)
			return &ctx->providers[i];
	return builtin_provider(name);
}

kw_status kwi_provider_check(const struct kw_ctx *ctx, const char *provider,
			     const char *value, size_t len, char *why,
			     size_t whylen)
{
	const struct kwi_provider *p = find_provider(ctx, provider);

	if (p == NULL)
		p = &any_provider;
	/* Printable ASCII without blanks: what every API key is made of, and
	 * what survives a trip through an environment variable or a header. */
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)value[i] < 0x21 ||
		    (unsigned char)value[i] > 0x7e) {
			snprintf(why, whylen,
				 "the %s key holds a blank or a character that "
				 "is not printable ASCII (at byte %zu)",
				 provider, i + 1);
			return KW_ERR_INVAL;
		}
	}
	if ((len < p->min_len || len > p->max_len) &&
	    p->min_len == p->max_len) {
		snprintf(why, whylen,
			 "%s keys are %zu characters long, not %zu",
			 provider, p->min_len, len);
		return KW_ERR_INVAL;
	}
	if (len < p->min_len || len > p->max_len) {
		snprintf(why, whylen,
			 "%s keys are %zu to %zu characters long, not %zu",
			 provider, p->min_len, p->max_len, len);
		return KW_ERR_INVAL;
	}
	if (len < strlen(p->prefix) ||
	    memcmp(value, p->prefix, strlen(p->prefix)) != 0) {
		snprintf(why, whylen, "%s keys start with \"%s\"", provider,
			 p->prefix);
		return KW_ERR_INVAL;
	}
	return KW_OK;
}
