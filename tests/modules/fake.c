/*
 * fake.c - kw_fake.so, a test backend that answers whatever its settings
 * tell it to.
 *
 *     answer       "found" | "notfound" | "denied" | "unavail" | "error"
 *                  (required): what every lookup answers
 *     value        the secret handed out on "found"; default
 *                  "sk-fake-NAME-0123456789abcdef", NAME the backend's name
 *     open_error   true: open() fails with KW_ERR_MODULE
 *     check_answer what check() answers, same words; default "found"
 *     providers    "a,b,c": providers not listed answer notfound
 *     nul_at       N: byte N of the value is a NUL byte (a broken module)
 *     status       N: lookup returns this number instead of the answer's
 *                  status (one no kw_status names, say), after replying
 *                  as the answer says
 *     log          text that every lookup logs through host->log() at
 *                  warning level, as it is (newlines too)
 *     usage_threads N: open() fails unless the process has exactly N
 *                  threads named "kw-usage" (libkeyway's usage writers)
 *                  when it runs, for tests of what exists before a
 *                  backend opens
 *
 * It also holds the host to the walk contract of module.h: a lookup that
 * carries KW_QUERY_WALK opens a walk of its backend on the calling thread,
 * which walk_end() on that thread closes.  A lookup on a backend whose
 * walk is still open (the host never said the last one was over) answers
 * error, "walk_end was not called".  So a chain must not name one fake
 * backend twice: the second lookup could not be told from a later walk.
 *
 * With KWTEST_FAKE_OLD_DESC=1 in the environment when the module is
 * loaded, the descriptor's size ends before walk_end, as that of a module
 * built before walk_end existed: the host must neither call it nor read
 * past the size.  The module then ignores the query's flags, as such a
 * module would, and counts any walk_end() call as the host's error.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/module.h>

struct fake_answer {
	const char *word;
	kw_status status;
};

static const struct fake_answer fake_answers[] = {
	{ "found", KW_OK },
	{ "notfound", KW_ERR_NOTFOUND },
	{ "denied", KW_ERR_DENIED },
	{ "unavail", KW_ERR_UNAVAIL },
	{ "error", KW_ERR_BACKEND },
};

#define FAKE_NANSWERS (sizeof(fake_answers) / sizeof(fake_answers[0]))

struct fake {
	const kw_host *host;
	const kw_instance *inst;
	const struct fake_answer *answer;
	const struct fake_answer *check;
	char *value;           /* guarded, NUL-terminated */
	size_t value_len;
	const char *providers; /* host's string; NULL: every provider */
	bool has_status;       /* status overrides the answer's */
	int status;
	const char *log;       /* host's string; NULL: log nothing */
	bool old_desc;         /* loaded with the descriptor before walk_end */
	atomic_ullong lookups; /* lookup() runs on many threads at once */
	atomic_bool stray_walk_end; /* walk_end() past the descriptor's size */
};

/*
 * The backends whose walk is open on this thread.  A walk touches a few
 * backends; more than FAKE_MAX_WALKS open at once means walk_end() is not
 * being called, which the lookup reports anyway.
 */
#define FAKE_MAX_WALKS 64

static __thread const struct fake *fake_walks[FAKE_MAX_WALKS];
static __thread size_t fake_nwalks;

static bool fake_walk_open(const struct fake *s)
{
	for (size_t i = 0; i < fake_nwalks; i++)
		if (fake_walks[i] == s)
			return true;
	return false;
}

/* False when there is no room left: too many walks were never ended. */
static bool fake_walk_begin(const struct fake *s)
{
	if (fake_nwalks == FAKE_MAX_WALKS)
		return false;
	fake_walks[fake_nwalks++] = s;
	return true;
}

static void fake_walk_finish(const struct fake *s)
{
	for (size_t i = 0; i < fake_nwalks; i++) {
		if (fake_walks[i] == s) {
			fake_walks[i] = fake_walks[--fake_nwalks];
			fake_walks[fake_nwalks] = NULL;
			return;
		}
	}
}

static const kw_setting_spec fake_settings[] = {
	{ "answer", KW_SETTING_STRING, KW_SETTING_REQUIRED },
	{ "value", KW_SETTING_STRING, 0 },
	{ "open_error", KW_SETTING_BOOL, 0 },
	{ "check_answer", KW_SETTING_STRING, 0 },
	{ "providers", KW_SETTING_STRING, 0 },
	{ "nul_at", KW_SETTING_INT, 0 },
	{ "status", KW_SETTING_INT, 0 },
	{ "log", KW_SETTING_STRING, 0 },
	{ "usage_threads", KW_SETTING_INT, 0 },
	{ NULL, 0, 0 }
};

/* Which descriptor the last load handed out: the backends opened right
 * after it belong to it. */
static atomic_bool fake_loaded_old;

/* Read answer word `setting` (dflt when absent, NULL: required). */
static kw_status fake_answer_setting(const kw_host *host, kw_instance *inst,
				     const char *setting, const char *dflt,
				     const struct fake_answer **out)
{
	const char *word = NULL;
	kw_status rc;

	*out = NULL;
	rc = host->setting_string(inst, setting, &word);
	if (rc == KW_ERR_NOTFOUND && dflt != NULL) {
		word = dflt;
	} else if (rc != KW_OK) {
		host->error(inst, setting, "missing setting \"%s\"", setting);
		return KW_ERR_CONFIG;
	}
	for (size_t i = 0; i < FAKE_NANSWERS; i++) {
		if (strcmp(word, fake_answers[i].word) == 0) {
			*out = &fake_answers[i];
			return KW_OK;
		}
	}
	host->error(inst, setting, "unknown answer \"%s\"", word);
	return KW_ERR_CONFIG;
}

/* How many threads of this process are named name; -1 if unknown. */
static long fake_threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[300], comm[64];
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL) {
			comm[strcspn(comm, "\n")] = '\0';
			n += strcmp(comm, name) == 0;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

static kw_status fake_open(const kw_host *host, kw_instance *inst,
			   void **state)
{
	struct fake *s = NULL;
	const char *value = NULL;
	bool open_error = false;
	int64_t n;
	kw_status rc;

	*state = NULL;

	if (host->setting_bool(inst, "open_error", &open_error) == KW_OK &&
	    open_error) {
		host->error(inst, "open_error", "refusing to open as asked");
		rc = KW_ERR_MODULE;
		goto out;
	}

	if (host->setting_int(inst, "usage_threads", &n) == KW_OK &&
	    fake_threads_named("kw-usage") != n) {
		host->error(inst, "usage_threads",
			    "%ld kw-usage threads at open, expected %lld",
			    fake_threads_named("kw-usage"), (long long)n);
		rc = KW_ERR_MODULE;
		goto out;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		host->error(inst, NULL, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	s->host = host;
	s->inst = inst;
	s->old_desc = atomic_load(&fake_loaded_old);
	atomic_init(&s->lookups, 0);
	atomic_init(&s->stray_walk_end, false);

	rc = fake_answer_setting(host, inst, "answer", NULL, &s->answer);
	if (rc != KW_OK)
		goto out;
	rc = fake_answer_setting(host, inst, "check_answer", "found",
				 &s->check);
	if (rc != KW_OK)
		goto out;

	if (host->setting_string(inst, "providers", &s->providers) != KW_OK)
		s->providers = NULL;

	if (host->setting_string(inst, "value", &value) == KW_OK) {
		s->value_len = strlen(value);
		s->value = host->secure_alloc(s->value_len + 1);
		if (s->value != NULL)
			memcpy(s->value, value, s->value_len + 1);
	} else {
		static const char pre[] = "sk-fake-";
		static const char post[] = "-0123456789abcdef";
		const char *name = host->instance_name(inst);

		s->value_len = strlen(pre) + strlen(name) + strlen(post);
		s->value = host->secure_alloc(s->value_len + 1);
		if (s->value != NULL)
			snprintf(s->value, s->value_len + 1, "%s%s%s", pre,
				 name, post);
	}
	if (s->value == NULL) {
		host->error(inst, NULL, "out of memory");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	if (host->setting_int(inst, "nul_at", &n) == KW_OK) {
		if (n < 0 || (uint64_t)n >= s->value_len) {
			host->error(inst, "nul_at", "nul_at is past the value");
			rc = KW_ERR_CONFIG;
			goto out;
		}
		s->value[n] = '\0';
	}
	if (host->setting_int(inst, "status", &n) == KW_OK) {
		s->has_status = true;
		s->status = (int)n;
	}
	if (host->setting_string(inst, "log", &s->log) != KW_OK)
		s->log = NULL;

	*state = s;
	s = NULL;
	rc = KW_OK;
out:
	if (s != NULL) {
		if (s->value != NULL)
			host->secure_free(s->value, s->value_len + 1);
		free(s);
	}
	return rc;
}

static void fake_close(void *state)
{
	struct fake *s = state;

	if (s == NULL)
		return;
	s->host->secure_free(s->value, s->value_len + 1);
	free(s);
}

/* Is provider one of the comma-separated names in list?  Blanks around a
 * name do not count. */
static bool fake_listed(const char *list, const char *provider)
{
	size_t plen = strlen(provider);
	const char *p = list;

	while (*p != '\0') {
		size_t n;

		p += strspn(p, " \t");
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == plen && strncmp(p, provider, n) == 0)
			return true;
		p += strcspn(p, ",");
		if (*p == ',')
			p++;
	}
	return false;
}

static kw_status fake_lookup(void *state, const kw_query *q)
{
	struct fake *s = state;
	const kw_host *host = s->host;
	kw_status rc;

	atomic_fetch_add_explicit(&s->lookups, 1, memory_order_relaxed);

	if (atomic_load(&s->stray_walk_end)) {
		host->reply_detail(q->reply, "walk_end was called past the "
				   "descriptor's size");
		return KW_ERR_BACKEND;
	}
	if (!s->old_desc) {
		const bool walk = KW_QUERY_HAS(q, flags) &&
				  (q->flags & KW_QUERY_WALK) != 0;

		if (fake_walk_open(s) || (walk && !fake_walk_begin(s))) {
			host->reply_detail(q->reply,
					   "walk_end was not called");
			return KW_ERR_BACKEND;
		}
	}
	if (s->log != NULL)
		host->log(s->inst, KW_LOG_WARNING, "%s", s->log);
	if (s->providers != NULL && !fake_listed(s->providers, q->provider)) {
		host->reply_detail(q->reply, "fake notfound: provider \"%s\" "
				   "is not in providers", q->provider);
		return KW_ERR_NOTFOUND;
	}
	if (s->answer->status == KW_OK) {
		rc = host->reply_secret(q->reply, s->value, s->value_len);
		if (rc != KW_OK) {
			host->reply_detail(q->reply, "fake found, but the "
					   "host refused the value");
			return rc;
		}
	}
	host->reply_detail(q->reply, "fake %s", s->answer->word);
	return s->has_status ? (kw_status)s->status : s->answer->status;
}

static kw_status fake_check(void *state, kw_reply *r)
{
	const struct fake *s = state;

	s->host->reply_detail(r, "fake check: %s", s->check->word);
	return s->check->status;
}

/* The walk of this backend on this thread is over. */
static void fake_walk_end(void *state)
{
	struct fake *s = state;

	if (s->old_desc) {
		atomic_store(&s->stray_walk_end, true);
		return;
	}
	fake_walk_finish(s);
}

static const struct kw_module fake_module = {
	KW_MODULE_HEADER,
	.name = "fake",
	.description = "test backend that answers as its settings say",
	.caps = KW_CAP_LOOKUP,
	.settings = fake_settings,
	.open = fake_open,
	.close = fake_close,
	.check = fake_check,
	.lookup = fake_lookup,
	.walk_end = fake_walk_end,
};

/* The same, as a module built before walk_end existed declares itself:
 * walk_end is there, past the size, where the host must not look. */
static const struct kw_module fake_module_old = {
	.abi = KW_MODULE_ABI,
	.size = (uint32_t)offsetof(struct kw_module, walk_end),
	.name = "fake",
	.description = "test backend that answers as its settings say",
	.caps = KW_CAP_LOOKUP,
	.settings = fake_settings,
	.open = fake_open,
	.close = fake_close,
	.check = fake_check,
	.lookup = fake_lookup,
	.walk_end = fake_walk_end,
};

KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void);
KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void)
{
	const char *v = getenv("KWTEST_FAKE_OLD_DESC");
	const bool old = v != NULL && strcmp(v, "1") == 0;

	atomic_store(&fake_loaded_old, old);
	return old ? &fake_module_old : &fake_module;
}
