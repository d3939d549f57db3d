/*
 * config_chains.c - the chains of keyway.conf: each entry's backend found
 * and its control compiled.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include <keyway/keyway.h>

#include "chain.h"
#include "conf.h"
#include "config_int.h"
#include "context.h"
#include "loader.h"

/* Entry i of chain c: its backend, from setting be (NULL: not given). */
static void entry_backend(struct kwi_loader *l, struct kwi_chain *c, size_t i,
			  const config_setting_t *g,
			  const config_setting_t *be)
{
	struct kwi_entry *e = &c->entries[i];

	if (be == NULL) {
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "chain \"%s\": entry %zu: missing backend", c->name,
			    i + 1);
	} else if (config_setting_type(be) != CONFIG_TYPE_STRING) {
		kwi_problem(l, KW_ERR_CONFIG, be,
			    "chain \"%s\": entry %zu: backend must be a string",
			    c->name, i + 1);
	} else {
		const char *name = config_setting_get_string(be);

		e->backend = kwi_find_backend(l->ctx, name);
		if (e->backend == NULL)
			kwi_problem(l, KW_ERR_CONFIG, be,
				    "chain \"%s\": unknown backend \"%s\"",
				    c->name, name);
		else if (e->backend->module != NULL &&
			 e->backend->module->ops.lookup == NULL)
			kwi_problem(l, KW_ERR_CONFIG, be,
				    "chain \"%s\": backend \"%s\" (module "
				    "\"%s\") cannot look keys up",
				    c->name, name, e->backend->module->name);
	}
}

/* Entry i of chain c: its control, from setting ctl (NULL: not given). */
static void entry_control(struct kwi_loader *l, struct kwi_chain *c, size_t i,
			  const config_setting_t *g,
			  const config_setting_t *ctl)
{
	struct kwi_entry *e = &c->entries[i];
	char why[256];

	if (ctl == NULL) {
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "chain \"%s\": entry %zu: missing control "
			    "(required, requisite, sufficient or optional)",
			    c->name, i + 1);
	} else if (config_setting_type(ctl) != CONFIG_TYPE_STRING) {
		kwi_problem(l, KW_ERR_CONFIG, ctl,
			    "chain \"%s\": entry %zu: control must be a string",
			    c->name, i + 1);
	} else if (kwi_control_parse(config_setting_get_string(ctl),
				     c->n - i - 1, e, why,
				     sizeof(why)) != KW_OK) {
		kwi_problem(l, KW_ERR_CONFIG, ctl,
			    "chain \"%s\": entry %zu: %s", c->name, i + 1,
			    why);
	}
}

static void load_entry(struct kwi_loader *l, struct kwi_chain *c, size_t i,
		       const config_setting_t *g)
{
	const config_setting_t *be = NULL, *ctl = NULL;
	int n;

	if (!kwi_config_group(l, g,
			      "chain \"%s\": entry %zu must be a group "
			      "{ backend = ...; control = ...; }",
			      c->name, i + 1))
		return;
	n = config_setting_length(g);
	for (int k = 0; k < n; k++) {
		const config_setting_t *s = config_setting_get_elem(g, k);
		const char *name = config_setting_name(s);

		if (strcmp(name, "backend") == 0)
			be = s;
		else if (strcmp(name, "control") == 0)
			ctl = s;
		else
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "chain \"%s\": entry %zu: unknown setting "
				    "\"%s\" (expected backend and control)",
				    c->name, i + 1, name);
	}

	entry_backend(l, c, i, g, be);
	entry_control(l, c, i, g, ctl);
}

void kwi_config_chains(struct kwi_loader *l, const config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	ctx->chains = kwi_config_section(l, g, "chains",
					 "{ name = ( ... ); ... }", "chain",
					 sizeof(*ctx->chains), &n);
	for (int i = 0; ctx->chains != NULL && i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		struct kwi_chain *c = &ctx->chains[ctx->nchains++];
		int len;

		c->name = strdup(config_setting_name(s));
		if (c->name == NULL) {
			kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		if (!config_setting_is_list(s)) {
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "chain \"%s\" must be a list ( { backend = "
				    "...; control = ...; }, ... )",
				    c->name);
			continue;
		}
		len = config_setting_length(s);
		if (len == 0) {
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "chain \"%s\" is empty", c->name);
			continue;
		}
		c->entries = calloc((size_t)len, sizeof(*c->entries));
		if (c->entries == NULL) {
			kwi_problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		c->n = (size_t)len;
		for (int k = 0; k < len; k++)
			load_entry(l, c, (size_t)k,
				   config_setting_get_elem(s, k));
		if (strcmp(c->name, "default") == 0)
			ctx->default_chain = c;
	}
}
