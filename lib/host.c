/*
 * host.c - the services libkeyway offers its modules (struct kw_host), and
 * opening and closing backends.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "clock.h"
#include "conf.h"
#include "context.h"
#include "crypto.h"
#include "error.h"
#include "fsutil.h"
#include "host.h"
#include "loader.h"
#include "names.h"
#include "secmem.h"
#include "secret.h"

/* ---- settings ---- */

static const char *host_instance_name(const kw_instance *inst)
{
	return inst->name;
}

static const config_setting_t *member(const kw_instance *inst,
				      const char *name)
{
	return config_setting_get_member(inst->setting, name);
}

static kw_status host_setting_string(const kw_instance *inst,
				     const char *name, const char **value)
{
	const config_setting_t *s = member(inst, name);

	*value = NULL;
	if (s == NULL || config_setting_type(s) != CONFIG_TYPE_STRING)
		return KW_ERR_NOTFOUND;
	for (size_t i = 0; i < inst->npaths; i++) {
		if (strcmp(inst->paths[i].name, name) == 0) {
			*value = inst->paths[i].value;
			return KW_OK;
		}
	}
	*value = config_setting_get_string(s);
	return KW_OK;
}

static kw_status host_setting_int(const kw_instance *inst, const char *name,
				  int64_t *value)
{
	const config_setting_t *s = member(inst, name);

	*value = 0;
	if (s == NULL || (config_setting_type(s) != CONFIG_TYPE_INT &&
			  config_setting_type(s) != CONFIG_TYPE_INT64))
		return KW_ERR_NOTFOUND;
	*value = config_setting_get_int64(s);
	return KW_OK;
}

static kw_status host_setting_bool(const kw_instance *inst, const char *name,
				   bool *value)
{
	const config_setting_t *s = member(inst, name);

	*value = false;
	if (s == NULL || config_setting_type(s) != CONFIG_TYPE_BOOL)
		return KW_ERR_NOTFOUND;
	*value = config_setting_get_bool(s) != 0;
	return KW_OK;
}

static kw_status host_setting_map(const kw_instance *inst, const char *name,
				  size_t index, const char **key,
				  const char **value)
{
	const config_setting_t *s = member(inst, name);
	const config_setting_t *e;

	*key = NULL;
	*value = NULL;
	if (s == NULL || config_setting_type(s) != CONFIG_TYPE_GROUP ||
	    index >= (size_t)config_setting_length(s))
		return KW_ERR_NOTFOUND;
	e = config_setting_get_elem(s, (unsigned)index);
	*key = config_setting_name(e);
	*value = config_setting_get_string(e);
	return *value != NULL ? KW_OK : KW_ERR_NOTFOUND;
}

/* ---- diagnostics ---- */

static void host_log(const kw_instance *inst, int level, const char *fmt, ...)
	KW_PRINTF(3, 4);

static void host_error(kw_instance *inst, const char *setting,
		       const char *fmt, ...)
{
	const config_setting_t *s = setting != NULL ? member(inst, setting)
						    : NULL;
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/*
	 * error() belongs to open(): once open() has returned, the report it
	 * fed is gone.  A module that calls it later is told so in the log,
	 * and the call changes nothing.
	 */
	if (inst->diag == NULL) {
		host_log(inst, KW_LOG_WARNING,
			 "module \"%s\" called host->error() outside "
			 "open(), where it does nothing (use reply_detail() "
			 "or log()): %s",
			 inst->module->name, msg);
		return;
	}
	if (s == NULL)
		s = inst->setting;
	kwi_diag(inst->diag, KW_ERR_CONFIG, kwi_source_path(inst->ctx, s),
		 (int)config_setting_source_line(s), "%s: %s", inst->label,
		 msg);
}

/*
 * Make msg fit to show, in place: C0 controls and DEL (a module's newlines
 * and tabs) become spaces, and every other character kwi_unshowable()
 * finds (C1 controls, the byte 0x9b, bidirectional controls, U+2028,
 * U+2029, bytes that are not UTF-8) one '?'.
 */
static void blank_unshowable(char *msg)
{
	char *out = msg;
	const char *p = msg, *q;
	size_t n;

	while ((q = kwi_unshowable(p, &n, NULL)) != NULL) {
		memmove(out, p, (size_t)(q - p));
		out += q - p;
		*out++ = (unsigned char)*q < 0x20 || *q == 0x7f ? ' ' : '?';
		p = q + n;
	}
	memmove(out, p, strlen(p) + 1);
}

/*
 * A module's line goes to syslog and, for a person watching (keyway run in
 * a terminal, or keyway.log.stderr = true), to stderr, as one line that
 * names the backend: a module's newlines and other control characters
 * become spaces or '?' (blank_unshowable()), so that it can neither split
 * a line nor drive a terminal nor reorder what it shows.
 */
static void host_log(const kw_instance *inst, int level, const char *fmt, ...)
{
	const struct kw_ctx *ctx = inst->ctx;
	char msg[768], line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	blank_unshowable(msg);
	syslog(LOG_AUTHPRIV | (level & LOG_PRIMASK), "keyway: %s: %s",
	       inst->label, msg);
	if (level > ctx->log_level || ctx->log_stderr == KWI_LOG_NEVER ||
	    (ctx->log_stderr == KWI_LOG_TERMINAL && !isatty(STDERR_FILENO)))
		return;
	n = snprintf(line, sizeof(line), "keyway: %s: %s\n", inst->label,
		     msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write: lines of threads logging at once do not interleave. */
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

/* ---- replies ---- */

void kwi_reply_init(struct kw_reply *r, const char *backend)
{
	r->secret = NULL;
	r->charged = NULL;
	r->backend = backend;
	r->backend_len = strlen(backend);
	r->owner = NULL;
	r->provider = "";
	r->detail[0] = '\0';
}

void kwi_reply_clear(struct kw_reply *r)
{
	kwi_secret_destroy(r->secret);
	r->secret = NULL;
}

static kw_status host_reply_buffer(kw_reply *r, size_t len, char **buf)
{
	size_t size;
	struct kw_secret *s;

	size_t olen = r->owner != NULL ? strlen(r->owner) + 1 : 0;
	size_t plen = strlen(r->provider) + 1;
	char *p;

	*buf = NULL;
	if (len > (1u << 20))
		return KW_ERR_INVAL;
	size = sizeof(*s) + r->backend_len + 1 + len + 1 + olen + plen;
	s = kwi_secure_alloc(size);
	if (s == NULL)
		return KW_ERR_NOMEM;
	s->size = size;
	s->len = len;
	s->forks = kwi_forks();
	memcpy(s->data, r->backend, r->backend_len + 1);
	s->value = s->data + r->backend_len + 1;
	p = s->value + len + 1;
	if (r->owner != NULL) {
		memcpy(p, r->owner, olen);
		s->owner = p;
		p += olen;
	}
	memcpy(p, r->provider, plen);
	s->provider = p;
	/* A module replying twice replaces its first answer. */
	kwi_reply_clear(r);
	r->secret = s;
	*buf = s->value;
	return KW_OK;
}

static kw_status host_reply_secret(kw_reply *r, const char *value, size_t len)
{
	char *buf;
	kw_status rc = host_reply_buffer(r, len, &buf);

	if (rc == KW_OK)
		memcpy(buf, value, len);
	return rc;
}

static void host_reply_detail(kw_reply *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
	for (char *p = r->detail; (p = strpbrk(p, "\n\r")) != NULL; p++)
		*p = ' ';
}

/* ---- the rest ---- */

/*
 * The instance whose open() or close() runs on this thread, if any: what
 * it takes with secure_alloc() and gives back with secure_free() there is
 * counted, so that guarded memory open() made and close() did not free is
 * seen (close_one()).  Lookups are not counted: they run on many threads
 * at once, and this costs them no more than reading a thread's variable.
 */
static __thread struct kw_instance *opening;

static void *host_secure_alloc(size_t len)
{
	void *p = kwi_secure_alloc(len);

	if (p != NULL && opening != NULL)
		opening->secure_held += (int64_t)len;
	return p;
}

static void host_secure_free(void *p, size_t len)
{
	if (p != NULL && opening != NULL)
		opening->secure_held -= (int64_t)len;
	kwi_secure_free(p, len);
}

static int64_t host_now(void)
{
	return kwi_now();
}

static kw_status host_open_private(kw_instance *inst, const char *setting,
				   const char *path, int *fd)
{
	char why[512];
	kw_status rc = kwi_open_private(path, fd, why, sizeof(why));

	/* A file that is not there may be optional: the module decides. */
	if (rc != KW_OK && rc != KW_ERR_NOTFOUND)
		host_error(inst, setting, "%s", why);
	return rc;
}

static kw_instance_role host_instance_role(const kw_instance *inst);
static uint32_t host_open_flags(const kw_instance *inst);

static kw_scope host_instance_scope(const kw_instance *inst)
{
	return inst->scope;
}

static void host_random(void *buf, size_t len)
{
	randombytes_buf(buf, len);
}

static void host_mask(const char *value, size_t len, char *buf, size_t size)
{
	kw_mask(value, len, buf, size);
}

static kw_status host_keyring_open(kw_instance *inst,
				   const unsigned char salt[KW_SALT_SIZE],
				   kw_keyring **kr)
{
	char why[400];
	kw_status rc;

	*kr = NULL;
	if (inst->ctx->nmasters == 0) {
		host_error(inst, NULL,
			   "module \"%s\" seals the keys it stores: set "
			   "keyway.master_key",
			   inst->module->name);
		return KW_ERR_CONFIG;
	}
	rc = kwi_keyring_get(inst->ctx, salt, kr);
	if (rc != KW_OK) {
		host_error(inst, NULL, "cannot derive the master key: %s",
			   kw_status_str(rc));
		return rc;
	}
	/* A store that could not open what it holds fails here, at open. */
	rc = kwi_keyring_ready(*kr, why, sizeof(why));
	if (rc != KW_OK) {
		host_error(inst, NULL, "%s", why);
		*kr = NULL;
	}
	return rc;
}

/* Keyrings belong to the context, which frees them with itself. */
static void host_keyring_close(kw_keyring *kr)
{
	(void)kr;
}

const kw_host kwi_host = {
	.abi = KW_MODULE_ABI,
	.size = sizeof(kw_host),
	.instance_name = host_instance_name,
	.setting_string = host_setting_string,
	.setting_int = host_setting_int,
	.setting_bool = host_setting_bool,
	.setting_map = host_setting_map,
	.error = host_error,
	.log = host_log,
	.reply_secret = host_reply_secret,
	.reply_buffer = host_reply_buffer,
	.reply_detail = host_reply_detail,
	.secure_alloc = host_secure_alloc,
	.secure_free = host_secure_free,
	.wipe = kwi_wipe,
	.now = host_now,
	.open_private = host_open_private,
	.instance_scope = host_instance_scope,
	.random = host_random,
	.mask = host_mask,
	.keyring_open = host_keyring_open,
	.keyring_close = host_keyring_close,
	.keyring_id = kwi_keyring_id,
	.keyring_knows = kwi_keyring_knows,
	.seal = kwi_seal,
	.unseal = kwi_unseal,
	.sealed_key_id = kwi_sealed_key_id,
	.instance_role = host_instance_role,
	.open_flags = host_open_flags,
	.keyring_kdf = kwi_keyring_kdf,
	.reopen_private = kwi_open_private,
	.check_private = kwi_fd_private,
};

/* ---- opening backends ---- */

static kw_instance_role host_instance_role(const kw_instance *inst)
{
	return inst->role;
}

static uint32_t host_open_flags(const kw_instance *inst)
{
	return inst->ctx->checking ? KW_OPEN_CHECK : 0;
}

static kw_status open_one(struct kw_instance *b, struct kwi_diag *d)
{
	unsigned before = d->count;
	kw_status first = d->first;
	kw_status rc;

	b->diag = NULL;
	if (b->module->ops.open == NULL) {
		b->opened = true;
		return KW_OK;
	}
	b->diag = d;
	b->secure_held = 0;
	opening = b;
	rc = b->module->ops.open(&kwi_host, b, &b->state);
	opening = NULL;
	/* d lives for this call only: error() after open() is a no-op. */
	b->diag = NULL;
	if (rc == KW_OK) {
		b->opened = true;
		return KW_OK;
	}
	if (d->count == before)
		kwi_diag(d, rc, b->file, b->line,
			 "%s: module \"%s\" failed to open (%s)", b->label,
			 b->module->name, kw_status_str(rc));
	else if (first == KW_OK)
		d->first = kwi_answer_of(rc) == KWI_ERROR ? rc : KW_ERR_CONFIG;
	return rc;
}

static void close_one(struct kw_instance *b)
{
	if (b->opened && b->module->ops.close != NULL) {
		opening = b;
		b->module->ops.close(b->state);
		opening = NULL;
	}
	/* A module that frees in close() what a lookup allocated may count
	 * below zero; above it, close() forgot something. */
	if (b->opened && b->secure_held > 0)
		host_log(b, KW_LOG_WARNING,
			 "module \"%s\" left %lld bytes of guarded memory "
			 "allocated after close(): secure_free() everything "
			 "it took with secure_alloc()",
			 b->module->name, (long long)b->secure_held);
	b->secure_held = 0;
	b->opened = false;
	b->state = NULL;
}

kw_status kwi_backends_open(struct kw_ctx *ctx, struct kwi_diag *d,
			    bool keep_going)
{
	if (ctx->ledger != NULL && open_one(ctx->ledger, d) != KW_OK &&
	    !keep_going)
		goto fail;
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (open_one(&ctx->backends[i], d) != KW_OK && !keep_going)
			goto fail;
	return d->first;
fail:
	kwi_backends_close(ctx);
	return d->first;
}

void kwi_backends_close(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		close_one(&ctx->backends[i]);
	if (ctx->ledger != NULL)
		close_one(ctx->ledger);
}
