/*
 * context.c - a context's life: made, loaded from keyway.conf with its
 * backends opened (kw_open()), and torn down (kw_close()), also in a child
 * that inherited it across fork(), which the fork() watch here tells.
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

#include "audit.h"
#include "chain.h"
#include "conf.h"
#include "context.h"
#include "crypto.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "providers.h"
#include "remote.h"
#include "secmem.h"
#include "usecount.h"

const char *kw_default_config(void)
{
	return KW_SYSCONFDIR "/keyway/keyway.conf";
}

const char *kwi_config_path(const char *path)
{
	const char *env;

	if (path != NULL)
		return path;
	env = secure_getenv("KEYWAY_CONFIG");
	return env != NULL && env[0] != '\0' ? env : kw_default_config();
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
 * wait for the usage thread to leave the modules (see usecount.c): it may
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

kw_status kwi_ctx_new(kw_ctx **out)
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
	ctx->life = malloc(sizeof(*ctx->life));
	if (ctx->life == NULL) {
		free(ctx);
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	}
	atomic_init(&ctx->life->refs, 1);
	atomic_init(&ctx->life->closed, false);
	ctx->pid = getpid();
	ctx->forks = kwi_forks();
	ctx->log_stderr = KWI_LOG_TERMINAL;
	ctx->log_level = KW_LOG_INFO;
	*out = ctx;
	return KW_OK;
}

kw_status kwi_ctx_load(kw_ctx **out, const char *path, struct kwi_diag *d,
		       bool keep_going, bool checking)
{
	kw_ctx *ctx;
	kw_status rc;
	unsigned before;

	*out = NULL;
	rc = kwi_ctx_new(&ctx);
	if (rc != KW_OK)
		return rc;
	ctx->checking = checking;
	/* First of all: see kwi_usecount_start(). */
	if (kwi_usecount_start(ctx) != KW_OK) {
		kwi_life_put(ctx->life);
		free(ctx);
		return kwi_error(KW_ERR_NOMEM, "out of memory");
	}
	/* A check goes on to the backends past an audit file it refused,
	 * and past an audit trail that wants the master key (whose absence
	 * the stores that seal keys report too). */
	before = d->count;
	if ((kwi_config_load(ctx, kwi_config_path(path), d) == KW_OK ||
	     (checking && ctx->audit_wants_master &&
	      d->count == before + 1)) &&
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
	rc = kwi_ctx_load(&c, config_path_arg, &d, false, false);
	if (rc != KW_OK) {
		kw_close(c);
		return rc;
	}
	*ctx = c;
	return KW_OK;
}

/* ---- teardown ---- */

static void instance_free(struct kw_instance *b)
{
	for (size_t k = 0; k < b->npaths; k++)
		free(b->paths[k].value);
	free(b->paths);
	free(b->name);
	free(b->label);
	free(b->quotas);
}

/* Free everything the context holds but its backends' open state: the
 * caller closed the backends, or left them to the parent. */
static void ctx_free(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		instance_free(&ctx->backends[i]);
	free(ctx->backends);
	if (ctx->ledger != NULL) {
		instance_free(ctx->ledger);
		free(ctx->ledger);
	}
	for (size_t i = 0; i < ctx->nchains; i++) {
		free(ctx->chains[i].entries);
		free(ctx->chains[i].name);
	}
	free(ctx->chains);
	for (size_t i = 0; i < ctx->nsources; i++)
		free(ctx->sources[i].value);
	free(ctx->sources);
	kwi_module_unload_all(ctx->modules);
	kwi_audit_free(ctx);
	for (size_t i = 0;
	     ctx->sensitive_env != NULL && ctx->sensitive_env[i] != NULL; i++)
		free(ctx->sensitive_env[i]);
	free(ctx->sensitive_env);
	kwi_keyrings_free(ctx);
	for (size_t i = 0; i < ctx->nmasters; i++)
		kwi_master_free(&ctx->masters[i]);
	kwi_secure_free(ctx->masters, ctx->masters_size);
	kwi_providers_free(ctx);
	kwi_remote_put(ctx->remote);
	config_destroy(&ctx->cfg);
	free(ctx->path);
	free(ctx->dir);
	if (ctx->life != NULL)
		atomic_store(&ctx->life->closed, true);
	kwi_life_put(ctx->life);
	free(ctx);
}

struct kwi_life *kwi_life_ref(struct kw_ctx *ctx)
{
	if (ctx->life != NULL)
		atomic_fetch_add_explicit(&ctx->life->refs, 1,
					  memory_order_relaxed);
	return ctx->life;
}

void kwi_life_put(struct kwi_life *l)
{
	if (l != NULL && atomic_fetch_sub_explicit(&l->refs, 1,
						   memory_order_acq_rel) == 1)
		free(l);
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
		ctx_free(ctx);
		return;
	}
	kwi_usecount_stop(ctx);
	kwi_backends_close(ctx);
	ctx_free(ctx);
}

struct kw_instance *kwi_find_backend(const struct kw_ctx *ctx,
				     const char *name)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (strcmp(ctx->backends[i].name, name) == 0)
			return &ctx->backends[i];
	return NULL;
}
