/*
 * fakestore.c - kw_fakestore.so, a scoped test backend whose keys spell out
 * the query that reached it:
 *
 *     sk-SCOPE-OWNER-PROVIDER-0123456789
 *
 * with SCOPE "user", "org" or "system" and OWNER "none" for the system
 * scope, so a test can see which scope and owner the host passed.
 */
#include <stdio.h>
#include <stdlib.h>

#include <keyway/module.h>

struct fakestore {
	const kw_host *host;
};

static const kw_setting_spec fakestore_settings[] = {
	{ NULL, 0, 0 }
};

static kw_status fakestore_open(const kw_host *host, kw_instance *inst,
				void **state)
{
	struct fakestore *s;

	*state = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	s->host = host;
	*state = s;
	return KW_OK;
}

static void fakestore_close(void *state)
{
	free(state);
}

static kw_status fakestore_lookup(void *state, const kw_query *q)
{
	const struct fakestore *s = state;
	const kw_host *host = s->host;
	const char *word = kw_scope_name(q->scope);
	const char *owner = q->owner;
	char *buf = NULL;
	int n;
	kw_status rc;

	if ((q->scope == KW_SCOPE_USER || q->scope == KW_SCOPE_ORG) &&
	    (owner == NULL || owner[0] == '\0')) {
		host->reply_detail(q->reply, "fakestore %s: no owner", word);
		return KW_ERR_NOTFOUND;
	}
	if (owner == NULL)
		owner = "none";

	/* The length is known up front, so fill the host's buffer in place
	 * (it has room for the NUL that snprintf writes). */
	n = snprintf(NULL, 0, "sk-%s-%s-%s-0123456789", word, owner,
		     q->provider);
	if (n < 0) {
		host->reply_detail(q->reply, "fakestore %s %s: cannot format "
				   "the key", word, owner);
		return KW_ERR_INTERNAL;
	}
	rc = host->reply_buffer(q->reply, (size_t)n, &buf);
	if (rc != KW_OK) {
		host->reply_detail(q->reply, "fakestore %s %s: no reply "
				   "buffer", word, owner);
		return rc;
	}
	snprintf(buf, (size_t)n + 1, "sk-%s-%s-%s-0123456789", word, owner,
		 q->provider);
	host->reply_detail(q->reply, "fakestore %s %s", word, owner);
	return KW_OK;
}

static const struct kw_module fakestore_module = {
	KW_MODULE_HEADER,
	.name = "fakestore",
	.description = "scoped test backend whose keys name the scope, owner and provider",
	.caps = KW_CAP_LOOKUP | KW_CAP_SCOPED,
	.settings = fakestore_settings,
	.open = fakestore_open,
	.close = fakestore_close,
	.check = NULL,
	.lookup = fakestore_lookup,
};

KW_MODULE_EXPORT(fakestore_module)
