/*
 * request.c - a request for a key: checked, with its defaults applied,
 * then walked down its chain (kw_resolve()) or traced (kw_explain()).
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <keyway/keyway.h>

#include "audit.h"
#include "chain.h"
#include "context.h"
#include "error.h"
#include "names.h"
#include "providers.h"
#include "quota.h"
#include "remote.h"
#include "request.h"
#include "secret.h"

void kw_request_init(kw_request *req)
{
	memset(req, 0, sizeof(*req));
	req->size = sizeof(*req);
}

#define REQ_HAS(r, f) ((r)->size >= offsetof(kw_request, f) + sizeof((r)->f))

/* Take the fields of req this library knows into in. */
static kw_status take_request(const kw_request *req, struct kwi_query_in *in)
{
	if (!REQ_HAS(req, provider))
		return kwi_error(KW_ERR_INVAL,
				 "request size %zu is too small; initialise it "
				 "with KW_REQUEST_INIT",
				 req->size);
	in->chain = req->chain;
	in->provider = req->provider;
	in->user = REQ_HAS(req, user) ? req->user : NULL;
	in->org = REQ_HAS(req, org) ? req->org : NULL;
	return KW_OK;
}

static kw_status check_names(const struct kwi_query_in *in)
{
	kw_status rc;

	if (in->provider == NULL)
		return kwi_error(KW_ERR_INVAL, "request names no provider");
	if ((rc = kwi_check_name("provider name", in->provider)) != KW_OK ||
	    (rc = kwi_check_name("user name", in->user)) != KW_OK ||
	    (rc = kwi_check_name("org name", in->org)) != KW_OK ||
	    (rc = kwi_check_name("chain name", in->chain)) != KW_OK)
		return rc;
	if (!kwi_valid_provider(in->provider))
		return kwi_error(KW_ERR_INVAL,
				 "invalid provider name (lower-case letters, "
				 "digits, '-', '_' and '.', at most %d)",
				 KWI_PROVIDER_MAX);
	if (in->user != NULL && !kwi_valid_identity(in->user))
		return kwi_error(KW_ERR_INVAL,
				 "invalid user name (printable, no spaces or "
				 "slashes, at most %d bytes)",
				 KWI_IDENTITY_MAX);
	if (in->org != NULL && !kwi_valid_identity(in->org))
		return kwi_error(KW_ERR_INVAL,
				 "invalid org name (printable, no spaces or "
				 "slashes, at most %d bytes)",
				 KWI_IDENTITY_MAX);
	return KW_OK;
}

/* The chain in names, "default" when it names none. */
static kw_status find_chain(kw_ctx *ctx, struct kwi_query_in *in,
			    const struct kwi_chain **c)
{
	if (in->chain == NULL) {
		in->chain = "default";
		*c = ctx->default_chain;
	} else {
		for (size_t i = 0; i < ctx->nchains && *c == NULL; i++)
			if (strcmp(ctx->chains[i].name, in->chain) == 0)
				*c = &ctx->chains[i];
	}
	if (*c == NULL)
		return kwi_error(KW_ERR_INVAL, "%s: no chain \"%.64s\"",
				 ctx->path, in->chain);
	return KW_OK;
}

/* What kw_resolve() and kw_explain() (fn) begin with: has_out says
 * whether they were given somewhere to put their result. */
static kw_status prepare(const char *fn, bool has_out, kw_ctx *ctx,
			 const kw_request *req, struct kwi_query_in *in,
			 const struct kwi_chain **c)
{
	kw_status rc;

	*c = NULL;
	if (!has_out)
		return kwi_error(KW_ERR_INVAL, "%s: out is NULL", fn);
	if (ctx == NULL || req == NULL)
		return kwi_error(KW_ERR_INVAL, "no context or no request");
	if (kwi_ctx_usable(ctx) != KW_OK)
		return KW_ERR_INVAL;
	if ((rc = take_request(req, in)) != KW_OK ||
	    (rc = check_names(in)) != KW_OK)
		return rc;
	/* keywayd knows the chains of a client. */
	if (ctx->remote != NULL)
		return KW_OK;
	return find_chain(ctx, in, c);
}

kw_status kw_resolve(kw_ctx *ctx, const kw_request *req, kw_secret **out)
{
	const struct kwi_chain *c;
	struct kwi_query_in in;
	kw_status rc;

	if (out != NULL)
		*out = NULL;
	rc = prepare("kw_resolve", out != NULL, ctx, req, &in, &c);
	if (rc != KW_OK)
		return rc;
	if (ctx->remote != NULL) {
		rc = kwi_remote_resolve(ctx->remote, &in, out);
		if (rc == KW_OK)
			(*out)->life = kwi_life_ref(ctx);
		return rc;
	}
	rc = kwi_walk(c, &in, NULL, out);
	if (rc == KW_OK)
		(*out)->life = kwi_life_ref(ctx);
	if (ctx->audit != NULL) {
		char why[1024];

		/* Writing the audit line must not lose the chain's message;
		 * a successful resolve has none to keep. */
		if (rc != KW_OK)
			snprintf(why, sizeof(why), "%s", kw_last_error());
		if (kwi_audit_resolve(ctx, &in, rc, *out) != KW_OK &&
		    *out != NULL) {
			/* Not audited, so not handed out. */
			snprintf(why, sizeof(why), "%s", kw_last_error());
			(*out)->outcome = KW_UNUSED;
			(void)kwi_quota_refund(&(*out)->charged);
			kw_secret_free(*out);
			*out = NULL;
			return kwi_error(KW_ERR_IO, "%s", why);
		}
		if (rc != KW_OK)
			kwi_error(rc, "%s", why);
	}
	return rc;
}

kw_status kw_explain(kw_ctx *ctx, const kw_request *req, kw_trace **out)
{
	const struct kwi_chain *c;
	struct kwi_query_in in;
	kw_secret *unused;
	kw_status rc;

	if (out != NULL)
		*out = NULL;
	rc = prepare("kw_explain", out != NULL, ctx, req, &in, &c);
	if (rc != KW_OK)
		return rc;
	if (ctx->remote != NULL)
		return kwi_remote_explain(ctx->remote, &in, out);
	rc = kwi_trace_new(c, out);
	if (rc != KW_OK)
		return kwi_error(rc, "out of memory");
	(void)kwi_walk(c, &in, *out, &unused);
	return KW_OK;
}
