/*
 * api.c - the public entry points of keyway.h.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

#define MAX_PROVIDER 64
#define MAX_IDENTITY 256

const char *kw_default_config(void)
{
	return KW_SYSCONFDIR "/keyway/keyway.conf";
}

static const char *config_path(const char *path)
{
	const char *env;

	if (path != NULL)
		return path;
	env = secure_getenv("KEYWAY_CONFIG");
	return env != NULL && env[0] != '\0' ? env : kw_default_config();
}

void kw_request_init(kw_request *req)
{
	memset(req, 0, sizeof(*req));
	req->size = sizeof(*req);
}

/* ---- fork() ---- */

/*
 * How many times this process and its ancestors have forked since the
 * library first opened a context: a context, a secret or a usage sink that
 * recorded another number was made in an ancestor.  Cheaper on every
 * resolve than getpid(), which is a system call.
 */
static atomic_uint forks;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/*
 * Guarded memory is handed out under locks: take them all around fork(),
 * so that the child gets them free and its free lists whole.  Before them,
 * wait for the usage thread to leave the modules (see usage.c): it may
 * take guarded memory's locks while it writes, so its lock comes first.
 * What the application's own threads are doing in keyway at fork() is
 * not waited for: a child of a process that forks while another thread
 * is inside a keyway call can rely on nothing but kw_close() (keyway.h).
 */
static void fork_prepare(void)
{
	kwi_usecount_fork_prepare();
	kwi_secmem_lock_all();
}

static void fork_parent(void)
{
	kwi_secmem_unlock_all();
	kwi_usecount_fork_done();
}

static void fork_child(void)
{
	kwi_secmem_unlock_all();
	kwi_usecount_fork_done();
	atomic_fetch_add(&forks, 1);
}

static void fork_watch(void)
{
	(void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

unsigned kwi_forks(void)
{
	return atomic_load_explicit(&forks, memory_order_relaxed);
}

kw_status kwi_ctx_usable(const kw_ctx *ctx)
{
	if (ctx->forks == kwi_forks())
		return KW_OK;
	return kwi_error(KW_ERR_INVAL,
			 "this context was opened by process %ld; open a new "
			 "one after fork()",
			 (long)ctx->pid);
}

/*
 * Load the configuration into a fresh context and open its backends;
 * `checking` for kw_check(), whose opens create nothing.
 */
/* A context with nothing loaded, stamped with the process it belongs to. */
static kw_status ctx_new(kw_ctx **out)
{
	kw_ctx *ctx;

	*out = NULL;
	if (sodium_init() < 0)
		return kwi_error(KW_ERR_INTERNAL, "libsodium failed to start");
	if (pthread_once(&fork_once, fork_watch) != 0)
		return kwi_error(KW_ERR_INTERNAL, "pthread_once failed");
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	ctx->pid = getpid();
	ctx->forks = kwi_forks();
	ctx->log_stderr = KWI_LOG_TERMINAL;
	ctx->log_level = KW_LOG_INFO;
	*out = ctx;
	return KW_OK;
}

static kw_status ctx_load(kw_ctx **out, const char *path, struct kwi_diag *d,
			  bool keep_going, bool checking)
{
	kw_ctx *ctx;
	kw_status rc;

	*out = NULL;
	rc = ctx_new(&ctx);
	if (rc != KW_OK)
		return rc;
	ctx->checking = checking;
	/* First of all: see kwi_usecount_start(). */
	if (kwi_usecount_start(ctx) != KW_OK) {
		free(ctx);
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	}
	/* A check goes on to the backends past an audit file it refused. */
	if (kwi_config_load(ctx, config_path(path), d) == KW_OK &&
	    (kwi_audit_open(ctx, d) == KW_OK || checking) &&
	    kwi_backends_open(ctx, d, keep_going) == KW_OK)
		kwi_usecount_settle(ctx);
	*out = ctx;
	return d->first;
}

kw_status kw_open(kw_ctx **ctx, const char *config_path_arg)
{
	struct kwi_diag d = { NULL, NULL, KW_OK, 0, NULL };
	kw_ctx *c;
	kw_status rc;

	if (ctx == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_open: ctx is NULL");
	*ctx = NULL;
	rc = ctx_load(&c, config_path_arg, &d, false, false);
	if (rc != KW_OK) {
		kw_close(c);
		return rc;
	}
	*ctx = c;
	return KW_OK;
}

void kw_close(kw_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->forks != kwi_forks()) {
		/*
		 * A copy inherited across fork(): the backends' connections,
		 * files and locks, the usage counts waiting to be written and
		 * the thread that writes them are the parent's.  Closing a
		 * backend here would speak for the parent (a checkpoint, a
		 * TLS close) or wait on a lock that a thread which did not
		 * survive the fork held, so the child leaves the backends and
		 * their modules as they are and frees only what is its own.
		 */
		kwi_usecount_abandon(ctx);
		ctx->modules = NULL;
		kwi_config_free(ctx);
		free(ctx);
		return;
	}
	kwi_usecount_stop(ctx);
	kwi_backends_close(ctx);
	kwi_config_free(ctx);
	free(ctx);
}

static kw_status check_config(const char *path, struct kwi_diag *d);

kw_status kw_check(const char *path, kw_report_fn *report, void *arg)
{
	struct kwi_diag d = { report, arg, KW_OK, 0, NULL };

	return check_config(path, &d);
}

kw_status kw_check_problems(const char *path, kw_problem_fn *fn, void *arg)
{
	struct kwi_diag d = { NULL, arg, KW_OK, 0, fn };

	return check_config(path, &d);
}

static kw_status check_config(const char *path, struct kwi_diag *d)
{
	kw_ctx *ctx;
	kw_status rc = ctx_load(&ctx, path, d, true, true);

	if (ctx == NULL)
		return rc;
	{
		/* Every backend that opened gets its health check. */
		for (size_t i = 0; ctx != NULL && i <= ctx->nbackends; i++) {
			struct kw_instance *b = i < ctx->nbackends
							? &ctx->backends[i]
							: ctx->ledger;
			struct kw_reply r;
			kw_status st;

			if (b == NULL || !b->opened ||
			    b->module->op_check == NULL)
				continue;
			kwi_reply_init(&r, b->name);
			st = b->module->op_check(b->state, &r);
			kwi_reply_clear(&r);
			if (st != KW_OK)
				kwi_diag(d, st, b->file, b->line,
					 "%s: health check: %s%s%s",
					 b->label, kw_status_str(st),
					 r.detail[0] != '\0' ? ": " : "",
					 r.detail);
		}
	}
	kw_close(ctx);
	return d->first;
}

/* The files a configuration names that init may make, missing before. */
struct init_file {
	const char *path;
	const char *label;  /* "backend \"NAME\"", "keyway.ledger", ... */
};

static bool file_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Note path unless it exists or is noted already. */
static kw_status note_missing(struct init_file **files, size_t *n,
			      const char *path, const char *label)
{
	struct init_file *grown;

	if (path == NULL || file_exists(path))
		return KW_OK;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*files)[i].path, path) == 0)
			return KW_OK;
	grown = realloc(*files, (*n + 1) * sizeof(**files));
	if (grown == NULL)
		return KW_ERR_NOMEM;
	*files = grown;
	(*files)[*n].path = path;
	(*files)[(*n)++].label = label;
	return KW_OK;
}

/*
 * What the modules create is what an ordinary open creates: init opens
 * everything as kw_open() does, and tells which of the paths it names did
 * not exist before and do now.
 */
kw_status kw_init(const char *path, kw_report_fn *created,
		  kw_report_fn *report, void *arg)
{
	struct kwi_diag d = { report, arg, KW_OK, 0, NULL };
	struct init_file *files = NULL;
	size_t n = 0;
	kw_ctx *ctx;
	kw_status rc = KW_OK;

	rc = ctx_new(&ctx);
	if (rc != KW_OK)
		return rc;
	if (kwi_config_load(ctx, config_path(path), &d) != KW_OK)
		goto out;
	for (size_t i = 0; rc == KW_OK && i <= ctx->nbackends; i++) {
		const struct kw_instance *b = i == 0 ? ctx->ledger
						     : &ctx->backends[i - 1];

		for (size_t j = 0; b != NULL && rc == KW_OK && j < b->npaths;
		     j++)
			rc = note_missing(&files, &n, b->paths[j].value,
					  b->label);
	}
	if (rc == KW_OK)
		rc = note_missing(&files, &n, kwi_audit_path(ctx),
				  "keyway.audit");
	if (rc != KW_OK) {
		kwi_diag(&d, rc, ctx->path, 0, "out of memory");
		goto out;
	}
	(void)kwi_audit_open(ctx, &d);
	(void)kwi_backends_open(ctx, &d, true);
	for (size_t i = 0; i < n; i++) {
		char line[1200];

		if (!file_exists(files[i].path))
			continue;
		snprintf(line, sizeof(line), "created %s (%s)", files[i].path,
			 files[i].label);
		if (created != NULL)
			created(arg, line);
	}
out:
	free(files);
	kw_close(ctx);
	return d.first;
}

/* ---- requests ---- */

bool kwi_valid_provider(const char *s)
{
	size_t n = 0;

	if (s == NULL || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	for (; *s != '\0'; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return n <= MAX_PROVIDER;
}

/* A user or org name: printable, no '/', not "." or "..": it may end up in
 * a path or a URL. */
/*
 * The length of the UTF-8 sequence at s, or 0 when it is not one: no
 * overlong forms, no surrogates, nothing past U+10FFFF (RFC 3629).
 */
static size_t utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		unsigned lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		unsigned hi = s[0] == 0xed ? 0x9f : 0xbf;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3
									 : 0;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		unsigned lo = s[0] == 0xf0 ? 0x90 : 0x80;
		unsigned hi = s[0] == 0xf4 ? 0x8f : 0xbf;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
				       (s[3] & 0xc0) == 0x80
			       ? 4
			       : 0;
	}
	return 0;
}

/* Characters that reorder the text around them when shown: U+061C,
 * U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069. */
static bool is_bidi(const unsigned char *p, size_t n)
{
	if (n == 2)
		return p[0] == 0xd8 && p[1] == 0x9c;
	if (n != 3 || p[0] != 0xe2)
		return false;
	return (p[1] == 0x80 &&
		(p[2] == 0x8e || p[2] == 0x8f ||
		 (p[2] >= 0xaa && p[2] <= 0xae))) ||
	       (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9);
}

/* U+2028 and U+2029: a line break to whatever shows the text. */
static bool is_separator(const unsigned char *p, size_t n)
{
	return n == 3 && p[0] == 0xe2 && p[1] == 0x80 &&
	       (p[2] == 0xa8 || p[2] == 0xa9);
}

/*
 * The first character of s that must not reach a terminal or a log as it
 * is, or NULL: a control character is an escape sequence the terminal
 * runs, a bidirectional control makes one text display as another, a line
 * or paragraph separator breaks a line, and a byte that is not UTF-8 may
 * be one of them (0x9b is CSI to a terminal that reads 8 bits).  *len:
 * its length in bytes, 1 for a byte that is not UTF-8; *why (when not
 * NULL): what it is.
 */
const char *kwi_unshowable(const char *s, size_t *len, const char **why)
{
	const unsigned char *p = (const unsigned char *)s;
	const char *what = NULL;
	size_t n;

	for (; *p != '\0'; p += n) {
		n = utf8_len(p);
		if (n == 0) {
			n = 1;
			what = "it is not valid UTF-8";
		/* C0, DEL, and C1 (U+0080 to U+009F: 0xc2 0x80..0x9f). */
		} else if (*p < 0x20 || *p == 0x7f ||
			   (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			what = "it holds a control character";
		} else if (is_bidi(p, n)) {
			what = "it holds a bidirectional text control";
		} else if (is_separator(p, n)) {
			what = "it holds a line or paragraph separator";
		}
		if (what != NULL)
			break;
	}
	if (what == NULL)
		return NULL;
	*len = n;
	if (why != NULL)
		*why = what;
	return (const char *)p;
}

/*
 * Why s cannot be shown as a name, or NULL: a name ends up on terminals
 * (keyway ls, keyway usage), in the audit trail and in messages
 * (kwi_unshowable() says what may not be in it).  *at: the byte it starts
 * at, from 1.
 */
static const char *name_flaw(const char *s, size_t *at)
{
	const char *p, *why = NULL;
	size_t n;

	p = kwi_unshowable(s, &n, &why);
	if (p == NULL)
		return NULL;
	*at = (size_t)(p - s) + 1;
	return why;
}

kw_status kwi_check_name(const char *what, const char *s)
{
	const char *why;
	size_t at = 0;

	if (s == NULL || (why = name_flaw(s, &at)) == NULL)
		return KW_OK;
	return kwi_error(KW_ERR_INVAL, "invalid %s: %s (at byte %zu)",
			 what != NULL ? what : "name", why, at);
}

kw_status kw_name_check(const char *what, const char *name)
{
	if (name == NULL)
		return kwi_error(KW_ERR_INVAL, "invalid %s: no name",
				 what != NULL ? what : "name");
	return kwi_check_name(what, name);
}

/* A user or org name: printable UTF-8 (as name_flaw() says), which the
 * audit trail and JSON output carry as it is. */
bool kwi_valid_identity(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (name_flaw(s, &n) != NULL || s[0] == '\0' || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return false;
	for (; *p != '\0'; p += n) {
		if (*p < 0x21 || *p == 0x7f || *p == '/' || *p == '\\')
			return false;
		if ((n = utf8_len(p)) == 0)
			return false;
	}
	return (size_t)(p - (const unsigned char *)s) <= MAX_IDENTITY;
}

#define REQ_HAS(r, f) ((r)->size >= offsetof(kw_request, f) + sizeof((r)->f))

static kw_status prepare(kw_ctx *ctx, const kw_request *req,
			 struct kwi_query_in *in, const struct kwi_chain **c)
{
	kw_status rc;

	*c = NULL;
	if (ctx == NULL || req == NULL)
		return kwi_error(KW_ERR_INVAL, "no context or no request");
	if (kwi_ctx_usable(ctx) != KW_OK)
		return KW_ERR_INVAL;
	if (!REQ_HAS(req, provider))
		return kwi_error(KW_ERR_INVAL,
				 "request size %zu is too small; initialise it "
				 "with KW_REQUEST_INIT",
				 req->size);
	in->chain = req->chain;
	in->provider = req->provider;
	in->user = REQ_HAS(req, user) ? req->user : NULL;
	in->org = REQ_HAS(req, org) ? req->org : NULL;

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
				 MAX_PROVIDER);
	if (in->user != NULL && !kwi_valid_identity(in->user))
		return kwi_error(KW_ERR_INVAL,
				 "invalid user name (printable, no spaces or "
				 "slashes, at most %d bytes)",
				 MAX_IDENTITY);
	if (in->org != NULL && !kwi_valid_identity(in->org))
		return kwi_error(KW_ERR_INVAL,
				 "invalid org name (printable, no spaces or "
				 "slashes, at most %d bytes)",
				 MAX_IDENTITY);

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

kw_status kw_resolve(kw_ctx *ctx, const kw_request *req, kw_secret **out)
{
	const struct kwi_chain *c;
	struct kwi_query_in in;
	kw_status rc;

	if (out == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_resolve: out is NULL");
	*out = NULL;
	rc = prepare(ctx, req, &in, &c);
	if (rc != KW_OK)
		return rc;
	rc = kwi_walk(c, &in, NULL, out);
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
			if ((*out)->charged != NULL)
				kwi_quota_refund((*out)->charged);
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

	if (out == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_explain: out is NULL");
	*out = NULL;
	rc = prepare(ctx, req, &in, &c);
	if (rc != KW_OK)
		return rc;
	rc = kwi_trace_new(c, out);
	if (rc != KW_OK)
		return kwi_error(rc, "out of memory");
	(void)kwi_walk(c, &in, *out, &unused);
	return KW_OK;
}

/* ---- secrets ---- */

const char *kw_secret_value(const kw_secret *s)
{
	return s != NULL ? s->value : NULL;
}

size_t kw_secret_len(const kw_secret *s)
{
	return s != NULL ? s->len : 0;
}

const char *kw_secret_backend(const kw_secret *s)
{
	return s != NULL ? s->data : NULL;
}

kw_status kw_secret_report(kw_secret *s, kw_outcome outcome)
{
	if (s == NULL)
		return kwi_error(KW_ERR_INVAL, "kw_secret_report: no secret");
	if (outcome != KW_USED && outcome != KW_UNUSED)
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: unknown outcome %d",
				 (int)outcome);
	if (s->forks != kwi_forks())
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: this secret was resolved "
				 "before fork(); the process that resolved it "
				 "reports it");
	if (s->reported)
		return kwi_error(KW_ERR_INVAL,
				 "kw_secret_report: this secret was already "
				 "reported");
	s->reported = true;
	s->outcome = outcome;
	if (outcome == KW_UNUSED && s->charged != NULL) {
		kw_status rc = kwi_quota_refund(s->charged);

		kwi_charged_free(s->charged);
		s->charged = NULL;
		return rc;
	}
	return KW_OK;
}

void kw_secret_free(kw_secret *s)
{
	kwi_secret_destroy(s);
}

/* The shortest secrets kw_mask() shows both ends of, and the end of. */
#define MASK_BOTH_MIN 24
#define MASK_TAIL_MIN 12

char *kw_mask(const char *secret, size_t len, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	/* A mask shows at most a third of a key: the first and last four
	 * of a long key, the last four of a short one, none of a shorter
	 * one. */
	if (secret != NULL && len >= MASK_BOTH_MIN)
		snprintf(buf, size, "%.4s****%.4s", secret, secret + len - 4);
	else if (secret != NULL && len >= MASK_TAIL_MIN)
		snprintf(buf, size, "****%.4s", secret + len - 4);
	else
		snprintf(buf, size, "****");
	return buf;
}
